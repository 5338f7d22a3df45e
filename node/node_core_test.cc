// The node's request path against oversized and unauthorized requests: the
// caller is authorized before anything it sent is recorded, fields are
// checked against common/limits.h, records stay within the bound, and
// refusals beyond the per-identity rate become one summary record.
#include "node/node_core.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/limits.h"
#include "common/refusal_limiter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "passerelle/v1/audit.pb.h"
#include "query/cells.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

using ::testing::HasSubstr;

constexpr char kGateway[] = "spiffe://passerelle/gateway";
constexpr char kMallory[] = "spiffe://passerelle/user/mallory";
const absl::Time kStart = absl::FromUnixSeconds(1800000000);

// One count per public cell.
class FakeEngine : public CohortEngine {
 public:
  FakeEngine() {
    meta_.site = "fr";
    meta_.version = "snap-1";
  }
  absl::StatusOr<std::vector<v1::Cell>> Count(
      const v1::Query& query) const override {
    std::vector<v1::Cell> cells;
    for (v1::CellKey& key : query::EnumerateCells(query, {"fr"})) {
      v1::Cell& c = cells.emplace_back();
      *c.mutable_key() = std::move(key);
      c.set_count(42);
    }
    return cells;
  }
  const SnapshotMeta& meta() const override { return meta_; }
  std::vector<std::string> Vocabularies() const override { return {}; }

 private:
  SnapshotMeta meta_;
};

// Records serialized roughly as the node's log does (the size that counts).
class MemorySink : public NodeAuditSink {
 public:
  absl::StatusOr<uint64_t> Record(NodeAuditRecord& r) override {
    absl::MutexLock lock(&mu_);
    v1::NodeAuditEntry e;
    e.set_time_unix_micros(absl::ToUnixMicros(r.time));
    e.set_request_id(r.request_id);
    e.set_caller(r.caller);
    e.set_project(r.project);
    e.set_canonical_query(r.canonical_query);
    e.set_snapshot(r.snapshot);
    e.set_reason(r.reason);
    *e.mutable_cells() = r.cells;
    entries_.push_back(e);
    return entries_.size();
  }
  std::vector<v1::NodeAuditEntry> entries() {
    absl::MutexLock lock(&mu_);
    return entries_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::NodeAuditEntry> entries_ ABSL_GUARDED_BY(mu_);
};

class NodeCoreLimitsTest : public ::testing::Test {
 protected:
  NodeCoreLimitsTest()
      : clock_(kStart),
        authorizer_({kGateway}, 1),
        refusals_(Options(), &clock_),
        core_("fr", std::make_unique<FakeEngine>(), &authorizer_, &sink_,
              &clock_, &refusals_) {}
  static RefusalLimiterOptions Options() {
    RefusalLimiterOptions o;
    o.per_second = 1;
    o.burst = 3;
    o.summary_period = absl::Minutes(1);
    return o;
  }
  static v1::CountRequest Request() {
    v1::CountRequest r;
    r.set_request_id("0123456789abcdef0123456789abcdef");
    *r.mutable_query() =
        *query::ParseQuery("condition icd10:E11* group by sex");
    r.set_project("exact");
    r.set_min_cell_size(1);
    return r;
  }
  void ExpectWithinBound() {
    for (const v1::NodeAuditEntry& e : sink_.entries()) {
      v1::AuditRecord record;
      *record.mutable_node() = e;
      EXPECT_LE(record.ByteSizeLong(), limits::kMaxAuditEntryBytes);
    }
  }

  FakeClock clock_;
  AllowListAuthorizer authorizer_;
  MemorySink sink_;
  RefusalLimiter refusals_;
  NodeCore core_;
};

TEST_F(NodeCoreLimitsTest, TheGatewayIsAnswered) {
  absl::StatusOr<v1::CountResponse> r = core_.Count(kGateway, Request());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(sink_.entries().size(), 1u);
  EXPECT_EQ(sink_.entries()[0].project(), "exact");
  EXPECT_FALSE(sink_.entries()[0].canonical_query().empty());
}

TEST_F(NodeCoreLimitsTest, AnUnauthorizedCallersFieldsAreNeverRecorded) {
  const std::string huge(3 * 1024 * 1024, 'z');
  v1::CountRequest request = Request();
  request.set_request_id(huge);
  request.set_project(huge);
  absl::StatusOr<v1::CountResponse> r = core_.Count(kMallory, request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  ASSERT_EQ(sink_.entries().size(), 1u);
  const v1::NodeAuditEntry e = sink_.entries()[0];
  EXPECT_EQ(e.caller(), kMallory);
  EXPECT_TRUE(e.request_id().empty());
  EXPECT_TRUE(e.project().empty());
  EXPECT_TRUE(e.canonical_query().empty());
  EXPECT_LE(e.ByteSizeLong(), 1024u);
}

TEST_F(NodeCoreLimitsTest, OversizedFieldsFromTheGatewayAreRefusedBounded) {
  const std::string huge(3 * 1024 * 1024, 'z');
  struct Case {
    std::string name;
    void (*set)(v1::CountRequest&, const std::string&);
    std::string message;
  };
  const std::vector<Case> cases = {
      {"request id",
       [](v1::CountRequest& r, const std::string& h) { r.set_request_id(h); },
       "request_id must be 1 to 64 characters of [0-9A-Za-z._-], got 3145728"},
      {"request id with a quote",
       [](v1::CountRequest& r, const std::string&) {
         r.set_request_id("a\"b");
       },
       "request_id must be"},
      {"project",
       [](v1::CountRequest& r, const std::string& h) { r.set_project(h); },
       "project is 3145728 bytes, over the limit of 128 bytes"},
      {"query",
       [](v1::CountRequest& r, const std::string&) {
         for (int i = 0; i < 50000; ++i)
           *r.mutable_query()->add_group_by() = v1::Dimension();
       },
       "query (AST) is"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    clock_.Advance(absl::Seconds(5));  // Within the refusal rate.
    v1::CountRequest request = Request();
    c.set(request, huge);
    const size_t before = sink_.entries().size();
    absl::StatusOr<v1::CountResponse> r = core_.Count(kGateway, request);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
    ASSERT_EQ(sink_.entries().size(), before + 1);
    const v1::NodeAuditEntry e = sink_.entries().back();
    EXPECT_TRUE(e.request_id().empty());
    EXPECT_TRUE(e.project().empty());
    EXPECT_LE(e.ByteSizeLong(), 1024u);
  }
  ExpectWithinBound();
}

TEST_F(NodeCoreLimitsTest, RefusalsBeyondTheRateBecomeOneSummary) {
  v1::CountRequest request = Request();
  int exhausted = 0;
  for (int i = 0; i < 500; ++i) {
    absl::StatusOr<v1::CountResponse> r = core_.Count(kMallory, request);
    if (r.status().code() == absl::StatusCode::kResourceExhausted) ++exhausted;
  }
  EXPECT_EQ(exhausted, 497);
  EXPECT_EQ(sink_.entries().size(), 3u);
  EXPECT_EQ(refusals_.aggregated(), 497u);
  // The gateway is still answered, and recorded.
  ASSERT_TRUE(core_.Count(kGateway, request).ok());
  EXPECT_EQ(sink_.entries().size(), 4u);
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(core_.FlushRefusalSummaries().ok());
  std::vector<v1::NodeAuditEntry> entries = sink_.entries();
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries.back().caller(), kMallory);
  EXPECT_THAT(entries.back().reason(),
              HasSubstr("refusal summary: 497 refused requests"));
  ExpectWithinBound();
}

}  // namespace
}  // namespace passerelle::node
