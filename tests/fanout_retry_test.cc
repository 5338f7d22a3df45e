// gateway::FanOut's retry policy against fake node clients: only
// UNAVAILABLE is retried, the waits double up to the cap, attempts stop at
// max_attempts and at the deadline, and a failed site names its attempts.
// (The same across real processes: tests/fault_test.cc.)
#include <atomic>
#include <deque>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gateway/node_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Answers each call with the next scripted status (the last one repeats),
// OK meaning a response for its site; records when each call came.
class ScriptedNode : public NodeClient {
 public:
  ScriptedNode(std::string site, std::deque<absl::Status> script)
      : site_(std::move(site)), script_(std::move(script)) {}
  const std::string& site() const override { return site_; }
  void Count(const v1::CountRequest&, absl::Time, CountCallback done) override {
    absl::Status st;
    {
      absl::MutexLock lock(&mu_);
      times_.push_back(absl::Now());
      st = script_.front();
      if (script_.size() > 1) script_.pop_front();
    }
    if (!st.ok()) return done(st);
    v1::CountResponse r;
    r.set_site(site_);
    done(r);
  }
  std::vector<absl::Time> times() {
    absl::MutexLock lock(&mu_);
    return times_;
  }

 private:
  const std::string site_;
  absl::Mutex mu_;
  std::deque<absl::Status> script_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> times_ ABSL_GUARDED_BY(mu_);
};

SiteOutcome AskOnce(ScriptedNode& node, const FanOutOptions& options,
                    absl::Duration timeout = absl::Seconds(10)) {
  std::vector<SiteOutcome> out =
      FanOut({&node}, {v1::CountRequest()}, {absl::Now() + timeout}, options);
  return out.at(0);
}

TEST(RetryBackoffTest, DoublesFromTheInitialWaitUpToTheCap) {
  FanOutOptions o;
  o.initial_backoff = absl::Milliseconds(50);
  o.max_backoff = absl::Milliseconds(500);
  std::vector<int64_t> ms;
  for (int retry = 1; retry <= 7; ++retry) {
    ms.push_back(absl::ToInt64Milliseconds(RetryBackoff(o, retry)));
  }
  EXPECT_EQ(ms, (std::vector<int64_t>{50, 100, 200, 400, 500, 500, 500}));
  // Far retries neither overflow nor pass the cap.
  EXPECT_EQ(RetryBackoff(o, 1000), absl::Milliseconds(500));
}

TEST(FanOutRetryTest, UnavailableIsRetriedUntilItSucceeds) {
  ScriptedNode node(
      "fr", {absl::UnavailableError("connection refused"),
             absl::UnavailableError("connection reset"), absl::OkStatus()});
  FanOutOptions o;
  o.max_attempts = 5;
  o.initial_backoff = absl::Milliseconds(10);
  o.max_backoff = absl::Milliseconds(40);
  SiteOutcome out = AskOnce(node, o);
  EXPECT_EQ(out.state, SiteState::kOk) << out.reason;
  std::vector<absl::Time> t = node.times();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_GE(t[1] - t[0], absl::Milliseconds(10));
  EXPECT_GE(t[2] - t[1], absl::Milliseconds(20));
}

TEST(FanOutRetryTest, OtherErrorsAreNotRetried) {
  for (const absl::Status& st :
       {absl::PermissionDeniedError("site fr refuses"),
        absl::InvalidArgumentError("bad query"),
        absl::DeadlineExceededError("slow"), absl::InternalError("boom"),
        absl::FailedPreconditionError("wrong site")}) {
    ScriptedNode node("fr", {st, absl::OkStatus()});
    SiteOutcome out = AskOnce(node, FanOutOptions());
    EXPECT_EQ(node.times().size(), 1u) << st;
    EXPECT_NE(out.state, SiteState::kOk) << st;
    EXPECT_THAT(out.reason, Not(HasSubstr("attempts"))) << out.reason;
  }
}

TEST(FanOutRetryTest, AttemptsStopAtTheMaximumAndAreNamed) {
  ScriptedNode node("fr", {absl::UnavailableError("connection refused")});
  FanOutOptions o;
  o.max_attempts = 4;
  o.initial_backoff = absl::Milliseconds(1);
  o.max_backoff = absl::Milliseconds(2);
  SiteOutcome out = AskOnce(node, o);
  EXPECT_EQ(node.times().size(), 4u);
  EXPECT_EQ(out.state, SiteState::kFailed);
  EXPECT_THAT(out.reason, HasSubstr("UNAVAILABLE: connection refused"));
  EXPECT_THAT(out.reason, HasSubstr("(4 attempts)"));
}

TEST(FanOutRetryTest, NoRetryThatCouldNotStartBeforeTheDeadline) {
  ScriptedNode node("fr", {absl::UnavailableError("connection refused")});
  FanOutOptions o;
  o.max_attempts = 1000;
  o.initial_backoff = absl::Milliseconds(100);
  o.max_backoff = absl::Milliseconds(100);
  const absl::Time start = absl::Now();
  SiteOutcome out = AskOnce(node, o, absl::Milliseconds(450));
  const absl::Duration took = absl::Now() - start;
  // Calls at about 0, 100, 200, 300, 400 ms; none at 500.
  EXPECT_LE(node.times().size(), 5u);
  EXPECT_GE(node.times().size(), 2u);
  EXPECT_LT(took, absl::Milliseconds(450) + absl::Milliseconds(500));
  EXPECT_EQ(out.state, SiteState::kFailed);
  for (absl::Time t : node.times()) {
    EXPECT_LT(t, start + absl::Milliseconds(460));
  }
}

TEST(FanOutRetryTest, SitesAreRetriedIndependently) {
  ScriptedNode fr("fr", {absl::UnavailableError("down"), absl::OkStatus()});
  ScriptedNode qc("qc", {absl::PermissionDeniedError("refuses")});
  FanOutOptions o;
  o.initial_backoff = absl::Milliseconds(5);
  std::vector<SiteOutcome> out = FanOut(
      {&fr, &qc}, {v1::CountRequest(), v1::CountRequest()},
      {absl::Now() + absl::Seconds(10), absl::Now() + absl::Seconds(10)}, o);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].state, SiteState::kOk);
  EXPECT_EQ(out[1].state, SiteState::kRefused);
  EXPECT_EQ(fr.times().size(), 2u);
  EXPECT_EQ(qc.times().size(), 1u);
}

}  // namespace
}  // namespace passerelle::gateway
