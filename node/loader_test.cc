#include "node/loader.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/engine.h"
#include "node/store.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ploader-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const {
    fs::create_directories(fs::path(path_) / name);
    return (fs::path(path_) / name).string();
  }

 private:
  std::string path_;
};

void Write(const std::string& dir, const std::string& name,
           const std::string& content) {
  std::ofstream(fs::path(dir) / name) << content;
}

int64_t Count(std::shared_ptr<Snapshot> snap, const char* text) {
  auto q = query::ParseQuery(text);
  EXPECT_TRUE(q.ok()) << q.status();
  auto cells = NewIndexEngine(std::move(snap))->Count(*q);
  EXPECT_TRUE(cells.ok()) << cells.status();
  return cells.ok() ? (*cells)[0].count() : -1;
}

TEST(LoaderRegistryTest, KnowsTheThreeFormats) {
  std::vector<std::string> names;
  for (const Loader* loader : Loaders()) {
    names.emplace_back(loader->name());
    EXPECT_FALSE(loader->description().empty());
    EXPECT_EQ(FindLoader(loader->name()), loader);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"omop", "synthea", "snds"}));
  EXPECT_EQ(LoaderNamesJoined("|"), "omop|synthea|snds");
  EXPECT_EQ(FindLoader("OMOP"), nullptr);
  absl::StatusOr<const Loader*> unknown = GetLoader("fhir");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("\"fhir\" (known: omop, synthea, snds)"));
}

// The same two patients and one diabetes diagnosis in each format.
void WriteSites(const TempDir& dir) {
  const std::string omop = dir.sub("omop");
  Write(
      omop, "person.csv",
      "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n"
      "1,8532,1970,3,1\n2,8507,1980,,\n");
  Write(omop, "condition_occurrence.csv",
        "condition_occurrence_id,person_id,condition_concept_id,condition_"
        "start_date\n"
        "1,1,201826,2020-01-05\n");
  const std::string synthea = dir.sub("synthea");
  Write(synthea, "patients.csv",
        "Id,BIRTHDATE,DEATHDATE,GENDER\nu1,1970-03-01,,F\nu2,1980-01-01,,M\n");
  Write(synthea, "conditions.csv",
        "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n2020-01-05,,u1,e,"
        "44054006,T2D\n");
  const std::string snds = dir.sub("snds");
  Write(snds, "IR_BEN_R.csv",
        "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\nA;1;2;1970\nB;1;1;"
        "1980\n");
  Write(snds, "T_MCOaaC.csv",
        "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD\nE;1;A;2020-01-05\n");
  Write(snds, "T_MCOaaB.csv", "ETA_NUM;RSA_NUM;DGN_PAL;DGN_REL\nE;1;E11.9;\n");
}

TEST(LoaderRegistryTest, EachFormatLoadsThroughTheInterface) {
  TempDir dir;
  WriteSites(dir);
  const std::map<std::string, const char*> query = {
      {"omop", "condition concept:201826"},
      {"synthea", "condition snomed:44054006"},
      {"snds", "condition icd10:E11*"}};
  for (const Loader* loader : Loaders()) {
    SCOPED_TRACE(std::string(loader->name()));
    SnapshotBuilder builder("xx");
    LoadReport report;
    ASSERT_TRUE(loader
                    ->Load(dir.path() + "/" + std::string(loader->name()),
                           LoadOptions(), &builder, &report)
                    .ok());
    EXPECT_EQ(report.persons, 2);
    EXPECT_EQ(report.events, 1);
    EXPECT_EQ(report.rejected, 0);
    auto snap = builder.Build("v", 0);
    EXPECT_EQ(Count(snap, query.at(std::string(loader->name()))), 1);
    EXPECT_EQ(Count(snap, "sex = female"), 1);
  }
}

// What `passerelle node load` does: load, and only on success build, take a
// new version and commit.
absl::Status LoadAndCommit(NodeStore* store, const Loader& loader,
                           const std::string& dir, const LoadOptions& options,
                           int64_t now) {
  SnapshotBuilder builder("fr");
  LoadReport report;
  absl::Status st = loader.Load(dir, options, &builder, &report);
  if (!st.ok()) return st;
  absl::StatusOr<std::string> version = store->NextVersion("fr", now);
  if (!version.ok()) return version.status();
  return store->Commit(*builder.Build(*version, now));
}

TEST(LoaderRegistryTest,
     FailedLoadLeavesThePreviousSnapshotAndEachLoadIsANewVersion) {
  TempDir dir;
  const std::string site = dir.sub("site");
  Write(site, "IR_BEN_R.csv",
        "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\nA;1;2;1970\nB;1;1;"
        "1980\n");
  Write(site, "T_MCOaaC.csv",
        "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD\nE;1;A;2020-01-05\n");
  Write(site, "T_MCOaaB.csv", "ETA_NUM;RSA_NUM;DGN_PAL\nE;1;E11.9\n");
  auto store = NodeStore::Open(dir.sub("store"));
  ASSERT_TRUE(store.ok()) << store.status();
  const Loader& snds = **GetLoader("snds");
  ASSERT_TRUE(LoadAndCommit(store->get(), snds, site, LoadOptions(), 100).ok());
  auto first = (*store)->LoadCurrent();
  ASSERT_TRUE(first.ok());
  const std::string v1 = (*first)->meta.version;
  EXPECT_EQ(Count(*first, "condition icd10:E11*"), 1);

  // A new extract with two unlinkable stays, over a limit of one: the load
  // fails and the store still serves the first snapshot.
  Write(site, "T_MCOaaB.csv",
        "ETA_NUM;RSA_NUM;DGN_PAL\nE;1;E11.9\nE;2;I10\nE;3;I10\n");
  LoadOptions strict;
  strict.max_rejected = 1;
  absl::Status failed = LoadAndCommit(store->get(), snds, site, strict, 200);
  EXPECT_THAT(std::string(failed.message()),
              HasSubstr("more than 1 rejected rows"));
  auto still = (*store)->LoadCurrent();
  ASSERT_TRUE(still.ok());
  EXPECT_EQ((*still)->meta.version, v1);
  EXPECT_EQ(Count(*still, "condition icd10:I10"), 0);

  // The same extract within the limit: a new version, same second or not.
  LoadOptions lenient;
  lenient.max_rejected = 2;
  ASSERT_TRUE(LoadAndCommit(store->get(), snds, site, lenient, 100).ok());
  auto second = (*store)->LoadCurrent();
  ASSERT_TRUE(second.ok());
  EXPECT_NE((*second)->meta.version, v1);
  EXPECT_EQ(Count(*second, "condition icd10:E11*"), 1);
}

// Two patients; four diabetes events, one dated the load day (2026-12-07,
// not in the future), two after it: a mis-dated record the day after and a
// date-shifted one in 2031.
void WriteFutureSites(const TempDir& dir) {
  const std::string omop = dir.sub("omop");
  Write(
      omop, "person.csv",
      "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n"
      "1,8532,1970,3,1\n2,8507,1980,,\n");
  Write(omop, "condition_occurrence.csv",
        "condition_occurrence_id,person_id,condition_concept_id,condition_"
        "start_date\n"
        "1,1,201826,2020-01-05\n2,1,201826,2026-12-07\n"
        "3,1,201826,2026-12-08\n4,2,201826,2031-05-02\n");
  const std::string synthea = dir.sub("synthea");
  Write(synthea, "patients.csv",
        "Id,BIRTHDATE,DEATHDATE,GENDER\nu1,1970-03-01,,F\nu2,1980-01-01,,M\n");
  Write(synthea, "conditions.csv",
        "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n"
        "2020-01-05,,u1,e,44054006,T2D\n2026-12-07,,u1,e,44054006,T2D\n"
        "2026-12-08,,u1,e,44054006,T2D\n2031-05-02,,u2,e,44054006,T2D\n");
  const std::string snds = dir.sub("snds");
  Write(snds, "IR_BEN_R.csv",
        "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\nA;1;2;1970\nB;1;1;"
        "1980\n");
  Write(snds, "T_MCOaaC.csv",
        "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD\nE;1;A;2020-01-05\n"
        "E;2;A;2026-12-07\nE;3;A;2026-12-08\nE;4;B;2031-05-02\n");
  Write(snds, "T_MCOaaB.csv",
        "ETA_NUM;RSA_NUM;DGN_PAL;DGN_REL\nE;1;E11.9;\nE;2;E11.9;\n"
        "E;3;E11.9;\nE;4;E11.9;\n");
}

// Events dated after the load date are reported (count, file:line, date);
// the steward decides whether they are kept or left out, and without a
// decision the load fails: nothing is kept silently.
TEST(LoaderRegistryTest, FutureDatedEventsAreReportedAndTheStewardDecides) {
  TempDir dir;
  WriteFutureSites(dir);
  const std::map<std::string, std::string> file = {
      {"omop", "condition_occurrence.csv"},
      {"synthea", "conditions.csv"},
      {"snds", "T_MCOaaB.csv"}};
  const std::map<std::string, std::string> code = {
      {"omop", "condition concept:201826"},
      {"synthea", "condition snomed:44054006"},
      {"snds", "condition icd10:E11*"}};
  for (const Loader* loader : Loaders()) {
    const std::string name(loader->name());
    SCOPED_TRACE(name);
    const std::string site = dir.path() + "/" + name;
    LoadOptions options;
    options.load_day = DaysFromCivil(2026, 12, 7);
    auto expect_report = [&](const LoadReport& report) {
      EXPECT_EQ(report.future_events, 2);
      ASSERT_EQ(report.future_samples.size(), 2u);
      EXPECT_THAT(report.future_samples[0].file, HasSubstr(file.at(name)));
      EXPECT_EQ(report.future_samples[0].line, 4);
      EXPECT_THAT(report.future_samples[0].reason,
                  HasSubstr("dated 2026-12-08, after the load date "
                            "2026-12-07"));
      EXPECT_EQ(report.future_samples[1].line, 5);
      EXPECT_THAT(report.future_samples[1].reason, HasSubstr("2031-05-02"));
    };

    // No decision: refused, with the count, the first row and the choice.
    {
      SnapshotBuilder builder("xx");
      LoadReport report;
      absl::Status st = loader->Load(site, options, &builder, &report);
      EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
      EXPECT_THAT(std::string(st.message()),
                  HasSubstr("2 events are dated after the load date "
                            "2026-12-07"));
      EXPECT_THAT(std::string(st.message()),
                  HasSubstr(file.at(name) + ":4: dated 2026-12-08"));
      EXPECT_THAT(std::string(st.message()), HasSubstr("--future-events keep"));
      EXPECT_THAT(std::string(st.message()),
                  HasSubstr("--future-events reject"));
      expect_report(report);
    }
    // Kept: every event, as dated (queried with `as of`).
    {
      options.future_events = FutureEvents::kKeep;
      SnapshotBuilder builder("xx");
      LoadReport report;
      absl::Status st = loader->Load(site, options, &builder, &report);
      ASSERT_TRUE(st.ok()) << st;
      EXPECT_EQ(report.events, 4);
      expect_report(report);
      auto snap = builder.Build("v", 0);
      EXPECT_EQ(Count(snap, (code.at(name) + " in 2031").c_str()), 1);
      EXPECT_EQ(
          Count(snap,
                (code.at(name) + " between 2026-12-08 and 2026-12-08").c_str()),
          1);
    }
    // Left out: the events up to the load date only.
    {
      options.future_events = FutureEvents::kReject;
      SnapshotBuilder builder("xx");
      LoadReport report;
      absl::Status st = loader->Load(site, options, &builder, &report);
      ASSERT_TRUE(st.ok()) << st;
      EXPECT_EQ(report.events, 2);
      EXPECT_EQ(report.rejected, 0);
      expect_report(report);
      auto snap = builder.Build("v", 0);
      EXPECT_EQ(Count(snap, code.at(name).c_str()), 1);
      EXPECT_EQ(Count(snap, (code.at(name) + " in 2031").c_str()), 0);
      EXPECT_EQ(
          Count(snap,
                (code.at(name) + " between 2026-12-07 and 2026-12-07").c_str()),
          1);
    }
    // Nothing after the load date: no decision needed.
    {
      LoadOptions later;
      later.load_day = DaysFromCivil(2031, 5, 2);
      SnapshotBuilder builder("xx");
      LoadReport report;
      absl::Status st = loader->Load(site, later, &builder, &report);
      ASSERT_TRUE(st.ok()) << st;
      EXPECT_EQ(report.events, 4);
      EXPECT_EQ(report.future_events, 0);
    }
  }
}

}  // namespace
}  // namespace passerelle::node
