// Crosswalks in the engine and at the node: a mapped query counts exactly
// what the same query listing the mapped site codes counts (windows, at
// least N times over distinct rows, values, sequences); the expansion never
// depends on the data; Explain answers the gateway only, reads no data and
// is audited; Count carries the expansion in its answer and audit record.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/crosswalk_loader.h"
#include "node/engine.h"
#include "node/node_core.h"
#include "query/canonical.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

using ::testing::HasSubstr;

constexpr char kGateway[] = "spiffe://passerelle/gateway";
constexpr char kMallory[] = "spiffe://passerelle/user/mallory";

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pxeng-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = (std::filesystem::path(path_) / name).string();
    std::ofstream(p) << text;
    return p;
  }

 private:
  std::string path_;
};

// A Quebec-like site: RAMQ ICD-9 claims (3-5 characters), ICD-10-CA stays,
// DIN drugs, and a measurement; random patients and events.
std::shared_ptr<Snapshot> RandomSite(uint32_t seed, int persons,
                                     std::shared_ptr<const CrosswalkSet> xw) {
  std::mt19937 rng(seed);
  SnapshotBuilder b("qc");
  for (int i = 0; i < persons; ++i) {
    EXPECT_TRUE(b.AddPerson(i,
                            BirthKey(1930 + static_cast<int>(rng() % 70),
                                     1 + rng() % 12, 1 + rng() % 28),
                            static_cast<v1::Sex>(1 + rng() % 2))
                    .ok());
  }
  b.FinishPersons();
  const char* icd9[] = {"250",  "2500", "25000", "25002", "25010",
                        "4010", "401",  "4939",  "493",   "V5867"};
  const char* icd10ca[] = {"E119", "E109", "I10", "J45"};
  const char* din[] = {"02099233", "02242974", "02245678"};
  for (int e = 0; e < persons * 6; ++e) {
    const int64_t person = rng() % persons;
    const int32_t day = DaysFromCivil(2015, 1, 1) + rng() % 3000;
    const int kind = rng() % 4;
    EXPECT_TRUE(b.BeginEvent(person, day, (rng() % 100) / 10.0).ok());
    if (kind == 0 || kind == 1) {
      b.AddEventCode(v1::DOMAIN_CONDITION, "icd9", icd9[rng() % 10]);
      // Some rows carry a second code of the same claim.
      if (rng() % 5 == 0)
        b.AddEventCode(v1::DOMAIN_CONDITION, "icd9", icd9[rng() % 10]);
    } else if (kind == 2) {
      b.AddEventCode(v1::DOMAIN_CONDITION, "icd10ca", icd10ca[rng() % 4]);
    } else {
      b.AddEventCode(v1::DOMAIN_DRUG, "din", din[rng() % 3]);
    }
  }
  std::shared_ptr<Snapshot> s = b.Build("qc-test-1", 0);
  s->crosswalks = std::move(xw);
  return s;
}

class CrosswalkEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string gem = dir_.Write(
        "gem.csv",
        "icd9cm,icd10cm,flags,approximate,no_map,combination,scenario,"
        "choice_list\n"
        "25000,E119,10000,1,0,0,0,0\n"
        "25001,E109,10000,1,0,0,0,0\n"
        "25002,E1165,10000,1,0,0,0,0\n"
        "25010,E1310,10000,1,0,0,0,0\n"
        "4010,I10,00000,0,0,0,0,0\n"
        "V5867,Z794,00000,0,0,0,0,0\n");
    const std::string steward = dir_.Write(
        "steward.csv",
        "source_vocabulary,source_code,target_vocabulary,target_code,"
        "relation\n"
        "din,02099233,atc,A10BA02,narrower\n"
        "din,02242974,atc,A10BD07,narrower\n"
        "icd9,493*,icd10ca,J45,broader\n");
    CrosswalkLoadReport report;
    auto set = LoadCrosswalks({gem + ",source=icd9,name=ramq-gem", steward},
                              InvalidCrosswalkRows::kRefuse, &report);
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = *set;
  }
  TempDir dir_;
  std::shared_ptr<const CrosswalkSet> set_;
};

v1::Query Parse(const std::string& text) {
  absl::StatusOr<v1::Query> q = query::ParseQuery(text);
  EXPECT_TRUE(q.ok()) << text << ": " << q.status();
  v1::Query out = q.ok() ? *q : v1::Query();
  query::PinReferenceDate(absl::FromUnixSeconds(1800000000), &out);
  return out;
}

std::vector<int64_t> Counts(const CohortEngine& e, const v1::Query& q) {
  absl::StatusOr<std::vector<v1::Cell>> cells = e.Count(q);
  EXPECT_TRUE(cells.ok()) << cells.status();
  std::vector<int64_t> out;
  if (cells.ok()) {
    for (const v1::Cell& c : *cells) out.push_back(c.count());
  }
  return out;
}

// Each pair: a mapped query, and the same cohort with the site codes the
// crosswalks give written out (and `codes exact`, so nothing more maps).
TEST_F(CrosswalkEngineTest, MappedQueryCountsWhatTheListedCodesCount) {
  const std::unique_ptr<CohortEngine> engine =
      NewIndexEngine(RandomSite(7, 400, set_));
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"condition icd10:E11*",
       "condition [icd10:E11*, icd9:250, icd9:2500, icd9:25000, icd9:25002] "
       "codes exact"},
      {"condition icd10:E11* codes equivalent",
       "condition icd10:E11* codes exact"},
      {"condition icd10:I10 codes equivalent",
       "condition [icd10:I10, icd9:4010] codes exact"},
      {"condition icd10:I10 at least 3 times group by sex",
       "condition [icd10:I10, icd9:401, icd9:4010] at least 3 times group by "
       "sex codes exact"},
      {"condition icd10:E1* in 2018 at least 2 times",
       "condition [icd10:E1*, icd9:250, icd9:2500, icd9:25000, icd9:25001, "
       "icd9:25002, icd9:2501, icd9:25010] in 2018 at least 2 times codes "
       "exact"},
      {"condition icd10ca:J45 between 2016-01-01 and 2019-06-30",
       "condition [icd10ca:J45, icd9:493*] between 2016-01-01 and 2019-06-30 "
       "codes exact"},
      {"condition icd10:E11* before drug atc:A10BA02 within 365 days",
       "condition [icd10:E11*, icd9:250, icd9:2500, icd9:25000, icd9:25002] "
       "before drug [atc:A10BA02, din:02099233] within 365 days codes exact"},
      {"drug atc:A10B* at least 4 times and not condition icd10:Z794 group by "
       "age_band(20)",
       "drug [atc:A10B*, din:02099233, din:02242974] at least 4 times and not "
       "condition [icd10:Z794, icd9:V58, icd9:V586, icd9:V5867] group by "
       "age_band(20) codes exact"},
  };
  int nonzero = 0;
  for (const auto& [mapped, listed] : pairs) {
    const std::vector<int64_t> a = Counts(*engine, Parse(mapped));
    const std::vector<int64_t> b = Counts(*engine, Parse(listed));
    EXPECT_EQ(a, b) << mapped << "\n" << listed;
    for (int64_t c : a) nonzero += c > 0;
  }
  EXPECT_GT(nonzero, 8);
  // And exact differs from mapped where the site's codes are ICD-9 only.
  EXPECT_NE(Counts(*engine, Parse("condition icd10:E11* codes exact")),
            Counts(*engine, Parse("condition icd10:E11*")));
}

// The expansion is a function of the query, the tables and the
// vocabularies held: two sites with different data give the same one.
TEST_F(CrosswalkEngineTest, ExpansionDoesNotDependOnTheData) {
  const std::unique_ptr<CohortEngine> a =
      NewIndexEngine(RandomSite(1, 300, set_));
  const std::unique_ptr<CohortEngine> b =
      NewIndexEngine(RandomSite(2, 50, set_));
  int compared = 0;
  for (const char* text :
       {"condition icd10:E11*", "condition icd10:E1* codes equivalent",
        "condition icd10:I10 and drug atc:A10B*",
        "condition icd10ca:J45 before drug atc:A10BA02",
        "condition icd10:E11* codes exact", "condition snomed:44054006"}) {
    const v1::Query q = Parse(text);
    const v1::SiteExpansion ea = a->Explain(q);
    const v1::SiteExpansion eb = b->Explain(q);
    EXPECT_EQ(ea.SerializeAsString(), eb.SerializeAsString()) << text;
    v1::SiteExpansion counted;
    ASSERT_TRUE(a->CountExpanded(q, &counted).ok());
    EXPECT_EQ(counted.SerializeAsString(), ea.SerializeAsString()) << text;
    EXPECT_EQ(ea.mapping_set(), set_->id());
    ++compared;
  }
  EXPECT_EQ(compared, 6);
  // A site whose data lacks a mapped code still reports it: the count of
  // source codes is the table's, not the data's.
  const v1::SiteExpansion e = b->Explain(Parse("condition icd10:Z794"));
  ASSERT_EQ(e.codes_size(), 1);
  EXPECT_EQ(e.codes(0).source_codes(), 3);  // V5867 and its rollups.
  EXPECT_THAT(e.codes(0).sample_source_codes(),
              ::testing::ElementsAre("V58", "V586", "V5867"));
}

// --- At the node. ---

class MemorySink : public NodeAuditSink {
 public:
  absl::StatusOr<uint64_t> Record(NodeAuditRecord& r) override {
    absl::MutexLock lock(&mu_);
    records_.push_back({r.operation, r.caller, r.answered, r.reason,
                        r.expansion.SerializeAsString(), r.cells.size()});
    return records_.size();
  }
  struct Rec {
    std::string operation, caller;
    bool answered;
    std::string reason, expansion;
    int cells;
  };
  std::vector<Rec> records() {
    absl::MutexLock lock(&mu_);
    return records_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Rec> records_ ABSL_GUARDED_BY(mu_);
};

TEST_F(CrosswalkEngineTest, NodeFillsExpansionAndExplainsToTheGatewayOnly) {
  FakeClock clock(absl::FromUnixSeconds(1800000000));
  AllowListAuthorizer authorizer({kGateway}, 1);
  MemorySink sink;
  NodeCore core("qc", NewIndexEngine(RandomSite(3, 200, set_)), &authorizer,
                &sink, &clock);
  v1::CountRequest count;
  count.set_request_id("req-1");
  count.set_project("diabetes");
  count.set_min_cell_size(1);
  *count.mutable_query() = Parse("condition icd10:E11* group by sex");
  absl::StatusOr<v1::CountResponse> answer = core.Count(kGateway, count);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->expansion().codes_size(), 1);
  EXPECT_EQ(answer->expansion().site(), "qc");
  EXPECT_EQ(answer->expansion().codes(0).site_vocabulary(), "icd9");
  EXPECT_EQ(answer->expansion().codes(0).crosswalk(), "ramq-gem");

  v1::ExplainRequest explain;
  explain.set_request_id("req-2");
  explain.set_project("diabetes");
  *explain.mutable_query() = count.query();
  absl::StatusOr<v1::SiteExpansion> e = core.Explain(kGateway, explain);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->SerializeAsString(), answer->expansion().SerializeAsString());

  // Anyone else: refused, recorded without the request's fields.
  absl::StatusOr<v1::SiteExpansion> refused = core.Explain(kMallory, explain);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  // A malformed request from the gateway: refused too.
  explain.set_request_id("bad id with spaces");
  EXPECT_FALSE(core.Explain(kGateway, explain).ok());
  explain.set_request_id("req-3");
  explain.mutable_query()->clear_where();
  EXPECT_FALSE(core.Explain(kGateway, explain).ok());

  const std::vector<MemorySink::Rec> records = sink.records();
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[0].operation, "count");
  EXPECT_EQ(records[0].expansion, answer->expansion().SerializeAsString());
  EXPECT_GT(records[0].cells, 0);
  EXPECT_EQ(records[1].operation, "explain");
  EXPECT_TRUE(records[1].answered);
  EXPECT_EQ(records[1].cells, 0);  // No data read, nothing counted.
  EXPECT_EQ(records[1].expansion, e->SerializeAsString());
  EXPECT_EQ(records[2].operation, "explain");
  EXPECT_FALSE(records[2].answered);
  EXPECT_EQ(records[2].caller, kMallory);
  EXPECT_THAT(records[2].reason, HasSubstr("not allowed"));
  EXPECT_TRUE(records[2].expansion.empty());
  EXPECT_FALSE(records[3].answered);
  EXPECT_FALSE(records[4].answered);

  // GetInfo names the mapping set and its tables.
  absl::StatusOr<v1::NodeInfo> info = core.Info(kGateway);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->mapping_set(), set_->id());
  ASSERT_EQ(info->crosswalks_size(), 2);
  EXPECT_EQ(info->crosswalks(0).name(), "ramq-gem");
  EXPECT_EQ(info->crosswalks(0).form(), "gem");
  EXPECT_EQ(info->crosswalks(0).rows(), 6);
  EXPECT_EQ(info->crosswalks(0).source_vocabularies(0), "icd9");
  EXPECT_EQ(info->crosswalks(0).target_vocabularies(0), "icd10cm");
}

}  // namespace
}  // namespace passerelle::node
