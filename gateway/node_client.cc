#include "gateway/node_client.h"

#include <algorithm>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace passerelle::gateway {

v1::SiteStatus ToSiteStatus(SiteState s) {
  switch (s) {
    case SiteState::kOk:
      return v1::SITE_STATUS_OK;
    case SiteState::kTimedOut:
      return v1::SITE_STATUS_TIMED_OUT;
    case SiteState::kRefused:
      return v1::SITE_STATUS_REFUSED;
    case SiteState::kFailed:
      return v1::SITE_STATUS_FAILED;
  }
  return v1::SITE_STATUS_FAILED;
}
namespace {

SiteOutcome Classify(const std::string& site,
                     absl::StatusOr<v1::CountResponse> result) {
  SiteOutcome out;
  out.site = site;
  if (result.ok()) {
    if (result->site() != site) {
      out.state = SiteState::kFailed;
      out.reason = absl::StrCat("node answered as site \"", result->site(),
                                "\", expected \"", site, "\"");
      return out;
    }
    out.state = SiteState::kOk;
    out.response = std::move(*result);
    return out;
  }
  ClassifyError(result.status(), &out.state, &out.reason);
  return out;
}

}  // namespace

void ClassifyError(const absl::Status& s, SiteState* state,
                   std::string* reason) {
  switch (s.code()) {
    case absl::StatusCode::kDeadlineExceeded:
      *state = SiteState::kTimedOut;
      break;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      *state = SiteState::kRefused;
      break;
    default:
      *state = SiteState::kFailed;
  }
  *reason = absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
}

namespace {

// One site's call with its retries; owned by the callbacks it schedules.
struct Attempt : std::enable_shared_from_this<Attempt> {
  NodeClient* client;
  const v1::CountRequest* request;
  absl::Time deadline;
  FanOutOptions options;
  SiteOutcome* out;
  absl::BlockingCounter* done;
  int attempts = 0;  // Calls made so far.

  void Start() {
    ++attempts;
    auto self = shared_from_this();
    client->Count(*request, deadline,
                  [self](absl::StatusOr<v1::CountResponse> r) {
                    self->OnResult(std::move(r));
                  });
  }

  void OnResult(absl::StatusOr<v1::CountResponse> r) {
    if (!r.ok() && r.status().code() == absl::StatusCode::kUnavailable &&
        attempts < options.max_attempts) {
      const absl::Duration wait = RetryBackoff(options, attempts);
      if (absl::Now() + wait < deadline) {
        // Retrying off the callback thread keeps gRPC's threads free.
        auto self = shared_from_this();
        std::thread([self, wait, last = std::move(r)]() mutable {
          absl::SleepFor(wait);
          // A late wake-up (a loaded machine) must not start a call past
          // the deadline: the last error stands.
          if (absl::Now() >= self->deadline) {
            self->Finish(std::move(last));
          } else {
            self->Start();
          }
        }).detach();
        return;
      }
    }
    Finish(std::move(r));
  }

  void Finish(absl::StatusOr<v1::CountResponse> r) {
    const bool failed = !r.ok();
    *out = Classify(client->site(), std::move(r));
    if (failed && attempts > 1) {
      absl::StrAppend(&out->reason, " (", attempts, " attempts)");
    }
    done->DecrementCount();
  }
};

// One site's explain call with its retries (the same policy as Attempt),
// blocking on its own thread.
ExplainOutcome ExplainWithRetries(NodeClient* client,
                                  const v1::ExplainRequest& request,
                                  absl::Time deadline,
                                  const FanOutOptions& options) {
  ExplainOutcome out;
  out.site = client->site();
  int attempts = 0;
  absl::StatusOr<v1::SiteExpansion> r;
  while (true) {
    ++attempts;
    r = client->Explain(request, deadline);
    if (r.ok() || r.status().code() != absl::StatusCode::kUnavailable ||
        attempts >= options.max_attempts) {
      break;
    }
    const absl::Duration wait = RetryBackoff(options, attempts);
    if (absl::Now() + wait >= deadline) break;
    absl::SleepFor(wait);
    if (absl::Now() >= deadline) break;
  }
  if (r.ok()) {
    out.state = SiteState::kOk;
    out.expansion = *std::move(r);
    return out;
  }
  ClassifyError(r.status(), &out.state, &out.reason);
  if (attempts > 1) absl::StrAppend(&out.reason, " (", attempts, " attempts)");
  return out;
}

}  // namespace

std::vector<ExplainOutcome> FanOutExplain(
    const std::vector<NodeClient*>& clients,
    const std::vector<v1::ExplainRequest>& requests,
    const std::vector<absl::Time>& deadlines, const FanOutOptions& options) {
  std::vector<ExplainOutcome> outcomes(clients.size());
  std::vector<std::thread> callers;
  callers.reserve(clients.size());
  for (size_t i = 0; i < clients.size(); ++i) {
    callers.emplace_back([&, i] {
      outcomes[i] =
          ExplainWithRetries(clients[i], requests[i], deadlines[i], options);
    });
  }
  for (std::thread& t : callers) t.join();
  return outcomes;
}

absl::Duration RetryBackoff(const FanOutOptions& options, int retry) {
  absl::Duration wait = options.initial_backoff;
  for (int i = 1; i < retry && wait < options.max_backoff; ++i) wait *= 2;
  return std::min(wait, options.max_backoff);
}

const char* SiteStateName(SiteState state) {
  switch (state) {
    case SiteState::kOk:
      return "ok";
    case SiteState::kFailed:
      return "failed";
    case SiteState::kTimedOut:
      return "timed_out";
    case SiteState::kRefused:
      return "refused";
  }
  return "failed";
}

std::vector<SiteOutcome> FanOut(const std::vector<NodeClient*>& clients,
                                const std::vector<v1::CountRequest>& requests,
                                const std::vector<absl::Time>& deadlines,
                                const FanOutOptions& options) {
  std::vector<SiteOutcome> outcomes(clients.size());
  absl::BlockingCounter done(static_cast<int>(clients.size()));
  for (size_t i = 0; i < clients.size(); ++i) {
    auto attempt = std::make_shared<Attempt>();
    attempt->client = clients[i];
    attempt->request = &requests[i];
    attempt->deadline = deadlines[i];
    attempt->options = options;
    attempt->out = &outcomes[i];
    attempt->done = &done;
    attempt->Start();
  }
  done.Wait();
  return outcomes;
}

}  // namespace passerelle::gateway
