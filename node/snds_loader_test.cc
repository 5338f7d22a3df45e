#include "node/snds_loader.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "csv/csv_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/engine.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "psnds-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& content) const {
    std::ofstream(fs::path(path_) / name) << content;
    return (fs::path(path_) / name).string();
  }

 private:
  std::string path_;
};

using Row = std::map<std::string, std::string>;

std::vector<Row> ReadRows(const std::string& path) {
  std::vector<Row> rows;
  auto reader = csv::CsvReader::Open(path);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return rows;
  while (true) {
    auto next = (*reader)->Next();
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok() || !*next) break;
    Row row;
    for (size_t i = 0; i < (*reader)->header().size(); ++i) {
      row[(*reader)->header()[i]] = std::string((*reader)->field(i));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

int64_t Count(const std::shared_ptr<Snapshot>& snap, const std::string& text) {
  auto q = query::ParseQuery(text);
  EXPECT_TRUE(q.ok()) << text << ": " << q.status();
  if (!q.ok()) return -1;
  auto cells = NewIndexEngine(snap)->Count(*q);
  EXPECT_TRUE(cells.ok()) << text << ": " << cells.status();
  if (!cells.ok()) return -1;
  return (*cells)[0].count();
}

std::string SharedSndsTables() {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  if (src == nullptr) return "";
  const fs::path dir =
      fs::path(src) / ".." / "shared" / "data" / "snds" / "tables";
  return fs::exists(dir / "IR_BEN_R.csv") ? dir.string() : "";
}

// What the published fake rows should give, worked out here from the CSV
// with the documented linkage rules (not from the loader).
struct Expected {
  int64_t conditions = 0, procedures = 0, rejected = 0;
};

Expected ExpectFromFakeRows(const std::string& dir, bool check_codes) {
  Expected e;
  std::map<std::string, int> psa_count;
  for (const Row& b : ReadRows(dir + "/IR_BEN_R.csv"))
    ++psa_count[b.at("BEN_NIR_PSA")];
  std::map<std::string, int> stay_rows;
  const std::vector<Row> c_rows = ReadRows(dir + "/T_MCOaaC.csv");
  for (const Row& c : c_rows)
    ++stay_rows[c.at("ETA_NUM") + "|" + c.at("RSA_NUM")];
  std::set<std::string> linked;
  for (const Row& c : c_rows) {
    const std::string key = c.at("ETA_NUM") + "|" + c.at("RSA_NUM");
    bool ok = stay_rows[key] == 1 && psa_count[c.at("NIR_ANO_17")] == 1 &&
              !c.at("EXE_SOI_DTD").empty();
    if (check_codes) {
      for (const char* code :
           {"NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET",
            "DAT_RET", "COH_NAI_RET", "COH_SEX_RET"}) {
        ok &= c.at(code) == "0";
      }
    }
    if (ok) {
      linked.insert(key);
    } else {
      ++e.rejected;
    }
  }
  for (const Row& b : ReadRows(dir + "/T_MCOaaB.csv")) {
    if (linked.count(b.at("ETA_NUM") + "|" + b.at("RSA_NUM"))) {
      e.conditions += 1 + !b.at("DGN_REL").empty();
    } else {
      ++e.rejected;
    }
  }
  for (const Row& d : ReadRows(dir + "/T_MCOaaD.csv")) {
    if (linked.count(d.at("ETA_NUM") + "|" + d.at("RSA_NUM"))) {
      ++e.conditions;
    } else {
      ++e.rejected;
    }
  }
  for (const Row& a : ReadRows(dir + "/T_MCOaaA.csv")) {
    if (linked.count(a.at("ETA_NUM") + "|" + a.at("RSA_NUM"))) {
      ++e.procedures;
    } else {
      ++e.rejected;
    }
  }
  // DCIR: every ER_PHA_F row is a dispensing of a known beneficiary, but
  // there is no ATC code for its CIP13 (no PHA_ATC_C07, no IR_PHA_R): noted,
  // not loaded. Rows with a negative quantity are reversals.
  return e;
}

class SharedSndsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = SharedSndsTables();
    if (dir_.empty()) {
      GTEST_SKIP() << "../shared/data/snds/tables is absent (set "
                      "PASSERELLE_SOURCE_DIR to the repository root)";
    }
  }
  std::string dir_;
};

TEST_F(SharedSndsTest, FakeRowsLoadAsFormatFixturesWithUnlinkedRowsRejected) {
  for (bool check_codes : {true, false}) {
    SCOPED_TRACE(check_codes ? "with linkage return codes" : "without");
    SndsOptions snds;
    snds.require_valid_linkage_codes = check_codes;
    SnapshotBuilder builder("fr");
    LoadReport report;
    // Format fixtures with random dates, some after today: every row is
    // kept, as the counts below read them all from the CSV.
    LoadOptions options;
    options.future_events = FutureEvents::kKeep;
    absl::Status st = LoadSndsDirectory(dir_, options, &builder, &report, snds);
    ASSERT_TRUE(st.ok()) << st;
    auto snap = builder.Build("v", 0);

    const std::vector<Row> ben = ReadRows(dir_ + "/IR_BEN_R.csv");
    int64_t male = 0, female = 0, deceased = 0;
    std::set<std::string> identifiers;
    for (const Row& b : ben) {
      male += b.at("BEN_SEX_COD") == "1";
      female += b.at("BEN_SEX_COD") == "2";
      deceased += !b.at("BEN_DCD_DTE").empty() &&
                  b.at("BEN_DCD_DTE").rfind("1600", 0) != 0;
      identifiers.insert(b.at("BEN_NIR_PSA"));
    }
    EXPECT_EQ(report.persons, static_cast<int64_t>(ben.size()));
    EXPECT_EQ(Count(snap, "sex = male"), male);
    EXPECT_EQ(Count(snap, "sex = female"), female);
    EXPECT_EQ(Count(snap, "sex = unknown"),
              static_cast<int64_t>(ben.size()) - male - female);
    EXPECT_EQ(Count(snap, "deceased"), deceased);
    // Birth years come from BEN_NAI_ANN.
    EXPECT_EQ(Count(snap, "birth_year = " + ben[0].at("BEN_NAI_ANN")),
              static_cast<int64_t>(
                  std::count_if(ben.begin(), ben.end(), [&](const Row& b) {
                    return b.at("BEN_NAI_ANN") == ben[0].at("BEN_NAI_ANN");
                  })));

    const Expected e = ExpectFromFakeRows(dir_, check_codes);
    EXPECT_EQ(report.rejected, e.rejected);
    EXPECT_EQ(report.events, e.conditions + e.procedures);
    if (!check_codes) {
      EXPECT_GT(report.events, 0);
    }
    int64_t pha_rows =
        static_cast<int64_t>(ReadRows(dir_ + "/ER_PHA_F.csv").size());
    int64_t reversals = 0;
    for (const Row& p : ReadRows(dir_ + "/ER_PHA_F.csv"))
      reversals += p.at("PHA_ACT_QSN")[0] == '-';
    EXPECT_THAT(report.notes,
                Contains(HasSubstr(absl::StrCat(
                    pha_rows - reversals,
                    " dispensings have a CIP13 code with no ATC"))));
    for (const RejectedRow& r : report.rejected_samples) {
      EXPECT_TRUE(absl::StartsWith(r.file, dir_)) << r.file;
      EXPECT_GE(r.line, 2);
      EXPECT_LE(r.line, 11);
      EXPECT_FALSE(r.reason.empty());
      for (const std::string& id : identifiers) {
        EXPECT_EQ(r.reason.find(id), std::string::npos) << r.reason;
      }
    }
  }
}

TEST_F(SharedSndsTest, ZeroRejectLimitFailsOnTheFirstUnlinkedStay) {
  LoadOptions options;
  options.max_rejected = 0;
  SnapshotBuilder builder("fr");
  LoadReport report;
  absl::Status st = LoadSndsDirectory(dir_, options, &builder, &report);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("T_MCOaaC.csv:2: "));
}

// A small linked extract, ';'-separated like real SNDS exports, one PMSI
// year (19). Identifiers are long so a leak into messages would show.
void WriteLinkedExtract(const TempDir& dir) {
  dir.Write("IR_BEN_R.csv",
            "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN;BEN_NAI_MOI;BEN_"
            "DCD_DTE\n"
            "PSA_AAAAAAAAAAAA1;1;2;1950;03;1600-01-01\n"  // Alive (sentinel).
            "PSA_AAAAAAAAAAAA2;1;1;1960;11;01MAY2020:00:00:00\n"
            "PSA_AAAAAAAAAAAT1;1;2;1990;07;\n"  // Twins: one
            "PSA_AAAAAAAAAAAT1;2;2;1990;07;\n"  // BEN_NIR_PSA.
            "PSA_AAAAAAAAAAAA3;01;9;1975;;\n");
  dir.Write(
      "T_MCO19C.csv",
      "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD;ENT_DAT;NIR_RET;NAI_RET;SEX_RET;"
      "SEJ_RET;FHO_RET;PMS_RET;DAT_RET\n"
      "E1;0001;PSA_AAAAAAAAAAAA1;15JAN2019:00:00:00;;0;0;0;0;0;0;0\n"
      "E1;0002;PSA_AAAAAAAAAAAA2;;03022019;0;0;0;0;0;0;0\n"
      "E1;0003;PSA_AAAAAAAAAAAT1;2019-03-01;;0;0;0;0;0;0;0\n"  // Twins.
      "E1;0004;PSA_AAAAAAAAAAAA1;2019-04-01;;1;0;0;0;0;0;0\n"  // NIR_RET.
      "E1;0005;PSA_UNKNOWNUNKNOW;2019-05-01;;0;0;0;0;0;0;0\n"
      "E2;0001;PSA_AAAAAAAAAAAA3;01/06/2019;;0;0;0;0;0;0;0\n");
  dir.Write("T_MCO19B.csv",
            "ETA_NUM;RSA_NUM;DGN_PAL;DGN_REL\n"
            "E1;0001;E11.9;I10\n"
            "E1;0002;e11 9;\n"
            "E1;0003;J45;\n"
            "E1;0004;J45;\n"
            "E1;0009;J45;\n"
            "E2;0001;I10;E66.0\n");
  dir.Write("T_MCO19D.csv",
            "ETA_NUM;RSA_NUM;ASS_DGN\n"
            "E1;0001;E78.5\n"
            "E1;0001;I10 \n"
            "E1;0005;Z00\n"
            "E2;0001;E11-9\n");
  dir.Write("T_MCO19A.csv",
            "ETA_NUM;RSA_NUM;CDC_ACT;ENT_DAT_DEL\n"
            "E1;0001;DEQP003;2\n"
            "E1;0002;ahqp001;\n"
            "E1;0002;YYYY010;x\n");
  dir.Write("IR_PHA_R.csv", "PHA_CIP_C13;PHA_ATC_C07\n3400930000001;A10BA02\n");
  const std::string keys =
      "DCT_ORD_NUM;FLX_DIS_DTD;FLX_EMT_NUM;FLX_EMT_ORD;FLX_EMT_TYP;FLX_TRT_DTD;"
      "ORG_CLE_NUM;PRS_ORD_NUM;REM_TYP_AFF";
  auto key = [](int k) {
    return absl::StrCat(k, ";2019-04-01;1;1;1;2019-04-02;01C;1;1");
  };
  dir.Write(
      "ER_PRS_F.csv",
      absl::StrCat(
          "BEN_NIR_PSA;BEN_RNG_GEM;EXE_SOI_DTD;DPN_QLF;", keys, "\n",
          "PSA_AAAAAAAAAAAA1;1;2019-03-10;0;", key(1), "\n",
          "PSA_AAAAAAAAAAAA2;1;11/03/2019;0;", key(2), "\n",
          "PSA_AAAAAAAAAAAA1;2;2019-03-11;0;", key(3), "\n",    // No rank 2.
          "PSA_AAAAAAAAAAAA3;1;2019-03-12;71;", key(4), "\n",   // Info only.
          "PSA_AAAAAAAAAAAT1;2;2019-03-13;0;", key(5), "\n",    // Twin 2.
          "PSA_AAAAAAAAAAAA3;1;2019-03-14;0;", key(9), "\n"));  // Not pharmacy.
  dir.Write("ER_PHA_F.csv",
            absl::StrCat("PHA_PRS_C13;PHA_ACT_QSN;", keys, "\n",
                         "3400930000001;1;", key(1), "\n", "3400930000002;1;",
                         key(1), "\n",                       // No ATC known.
                         "3400930000001;-1;", key(2), "\n",  // Reversal.
                         "3400930000001;2;", key(2), "\n", "3400930000001;1;",
                         key(3), "\n",  // Unknown beneficiary.
                         "3400930000001;1;", key(4), "\n", "3400930000001;1;",
                         key(5), "\n", "3400930000001;1;", key(7),
                         "\n"));  // No ER_PRS_F row.
}

struct Loaded {
  absl::Status status;
  LoadReport report;
  std::shared_ptr<Snapshot> snap;
};

Loaded Load(const std::string& dir, int64_t max_rejected = 1000) {
  Loaded out;
  LoadOptions options;
  options.max_rejected = max_rejected;
  SnapshotBuilder builder("fr");
  out.status = LoadSndsDirectory(dir, options, &builder, &out.report);
  if (out.status.ok()) out.snap = builder.Build("v", 0);
  return out;
}

const RejectedRow* Find(const LoadReport& report, const std::string& file,
                        int64_t line) {
  for (const RejectedRow& r : report.rejected_samples) {
    if (fs::path(r.file).filename() == file && r.line == line) return &r;
  }
  return nullptr;
}

TEST(SndsLoaderTest, LinkedExtractGivesTheExpectedPersonsEventsAndRejects) {
  TempDir dir;
  WriteLinkedExtract(dir);
  Loaded l = Load(dir.path());
  ASSERT_TRUE(l.status.ok()) << l.status;
  EXPECT_EQ(l.report.persons, 5);
  // B: 2 + 1 + 2, D: 2, A: 2, DCIR: 3 (beneficiary 1, beneficiary 2, twin 2).
  EXPECT_EQ(l.report.events, 12);
  // C: 3, B: 3, D: 2, A: 1, ER_PHA_F: 2.
  EXPECT_EQ(l.report.rejected, 11);
  for (const RejectedRow& r : l.report.rejected_samples) {
    EXPECT_EQ(r.reason.find("PSA_"), std::string::npos) << r.reason;
  }
  for (const std::string& n : l.report.notes)
    EXPECT_EQ(n.find("PSA_"), std::string::npos) << n;

  auto reason = [&](const std::string& file, int64_t line) {
    const RejectedRow* r = Find(l.report, file, line);
    return r == nullptr ? std::string("(not rejected)") : r->reason;
  };
  EXPECT_THAT(reason("T_MCO19C.csv", 4), HasSubstr("no twin rank"));
  EXPECT_THAT(reason("T_MCO19C.csv", 5), HasSubstr("NIR_RET=1"));
  EXPECT_THAT(reason("T_MCO19C.csv", 6), HasSubstr("matches no BEN_NIR_PSA"));
  EXPECT_THAT(reason("T_MCO19B.csv", 4), HasSubstr("line 4) was rejected"));
  EXPECT_THAT(reason("T_MCO19B.csv", 6), HasSubstr("has no T_MCO19C.csv row"));
  EXPECT_THAT(reason("T_MCO19D.csv", 5), HasSubstr("not a valid CIM-10 code"));
  EXPECT_THAT(reason("T_MCO19A.csv", 4), HasSubstr("ENT_DAT_DEL"));
  EXPECT_THAT(reason("ER_PHA_F.csv", 6), HasSubstr("not in IR_BEN_R"));
  EXPECT_THAT(reason("ER_PHA_F.csv", 9), HasSubstr("no ER_PRS_F.csv row"));
  EXPECT_THAT(
      l.report.notes,
      Contains(HasSubstr("1 dispensings have a CIP13 code with no ATC")));
  EXPECT_THAT(l.report.notes,
              Contains(HasSubstr("1 ER_PHA_F rows with PHA_ACT_QSN <= 0")));
  EXPECT_THAT(l.report.notes,
              Contains(HasSubstr(
                  "1 ER_PHA_F rows belong to prestations with DPN_QLF 71")));

  const auto& snap = l.snap;
  EXPECT_EQ(Count(snap, "sex = female"), 3);
  EXPECT_EQ(Count(snap, "sex = male"), 1);
  EXPECT_EQ(Count(snap, "sex = unknown"), 1);
  EXPECT_EQ(Count(snap, "deceased"), 1);
  EXPECT_EQ(Count(snap, "birth_year between 1990 and 1990"), 2);
  // Year-only births: 1 July of the year.
  EXPECT_EQ(
      Count(snap,
            "birth_year = 1950 and age between 69 and 69 as of 2020-06-30"),
      1);
  EXPECT_EQ(
      Count(snap,
            "birth_year = 1950 and age between 70 and 70 as of 2020-07-01"),
      1);
  // CIM-10 normalised: "E11.9" and "e11 9" are E119.
  EXPECT_EQ(Count(snap, "condition icd10:E11*"), 2);
  EXPECT_EQ(Count(snap, "condition cim10:E11.9"), 2);
  EXPECT_EQ(Count(snap, "condition icd10cm:E11*"), 0);
  EXPECT_EQ(Count(snap, "condition icd10:I10"), 2);
  // Beneficiary 1: I10 as related diagnosis (B) and as secondary one (D).
  EXPECT_EQ(Count(snap, "condition icd10:I10 at least 2 times"), 1);
  EXPECT_EQ(Count(snap, "condition icd10:E78.5 in 2019"), 1);
  EXPECT_EQ(Count(snap, "condition icd10:E66*"), 1);
  // Entry date + ENT_DAT_DEL; ENT_DAT (DDMMYYYY) when EXE_SOI_DTD is empty.
  EXPECT_EQ(
      Count(snap, "procedure ccam:DEQP003 between 2019-01-17 and 2019-01-17"),
      1);
  EXPECT_EQ(
      Count(snap, "procedure ccam:AHQP001 between 2019-02-03 and 2019-02-03"),
      1);
  EXPECT_EQ(
      Count(snap, "condition icd10:E11* between 2019-02-03 and 2019-02-03"), 1);
  // Dispensings: ATC through IR_PHA_R, dated by ER_PRS_F.EXE_SOI_DTD.
  EXPECT_EQ(Count(snap, "drug atc:A10BA02"), 3);
  EXPECT_EQ(Count(snap, "drug atc:A10* between 2019-03-10 and 2019-03-10"), 1);
  EXPECT_EQ(
      Count(snap,
            "condition icd10:E11* before drug atc:A10BA02 within 60 days"),
      2);
  EXPECT_EQ(Count(snap, "condition icd10:E11* and deceased"), 1);
}

TEST(SndsLoaderTest, AtcColumnInErPhaFIsUsedAndCheckedWithoutReferential) {
  TempDir dir;
  dir.Write(
      "IR_BEN_R.csv",
      "BEN_NIR_PSA,BEN_RNG_GEM,BEN_SEX_COD,BEN_NAI_ANN\nPSA_B1,1,1,1970\n");
  const std::string keys =
      "DCT_ORD_NUM,FLX_DIS_DTD,FLX_EMT_NUM,FLX_EMT_ORD,FLX_EMT_TYP,FLX_TRT_DTD,"
      "ORG_CLE_NUM,PRS_ORD_NUM,REM_TYP_AFF";
  dir.Write("ER_PRS_F.csv",
            absl::StrCat("BEN_NIR_PSA,BEN_RNG_GEM,EXE_SOI_DTD,", keys, "\n",
                         "PSA_B1,1,2021-05-01,1,a,1,1,1,b,c,1,1\n"));
  dir.Write("ER_PHA_F.csv",
            absl::StrCat("PHA_PRS_C13,PHA_ATC_C07,", keys, "\n",
                         "3400000000001,c09aa05,1,a,1,1,1,b,c,1,1\n",
                         "3400000000002,C09 AA!,1,a,1,1,1,b,c,1,1\n"));
  Loaded l = Load(dir.path());
  ASSERT_TRUE(l.status.ok()) << l.status;
  EXPECT_EQ(l.report.events, 1);
  EXPECT_EQ(Count(l.snap, "drug atc:C09AA05 in 2021"), 1);
  ASSERT_EQ(l.report.rejected, 1);
  EXPECT_EQ(l.report.rejected_samples[0].line, 3);
  EXPECT_THAT(l.report.rejected_samples[0].reason,
              HasSubstr("not a valid ATC code"));
}

TEST(SndsLoaderTest, RejectsOverTheLimitFail) {
  TempDir dir;
  WriteLinkedExtract(dir);
  Loaded over = Load(dir.path(), 10);
  EXPECT_EQ(over.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(over.status.message()),
              HasSubstr("more than 10 rejected rows"));
  EXPECT_THAT(std::string(over.status.message()), HasSubstr("T_MCO19C.csv:4"));
  EXPECT_TRUE(Load(dir.path(), 11).status.ok());
}

TEST(SndsLoaderTest, MalformedDateNamesFileAndLine) {
  TempDir dir;
  dir.Write(
      "IR_BEN_R.csv",
      "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\nPSA_B1;1;1;1970\n");
  dir.Write("T_MCOaaC.csv",
            "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD\nE;1;PSA_B1;31FEB2019\n");
  Loaded l = Load(dir.path(), 0);
  ASSERT_FALSE(l.status.ok());
  EXPECT_THAT(
      std::string(l.status.message()),
      HasSubstr("T_MCOaaC.csv:2: EXE_SOI_DTD: invalid date \"31FEB2019\""));

  TempDir ben;
  ben.Write("IR_BEN_R.csv",
            "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN;BEN_DCD_DTE\n"
            "PSA_B1;1;1;1970;\nPSA_B2;1;1;1970;2020-02-30\n");
  l = Load(ben.path(), 0);
  EXPECT_THAT(std::string(l.status.message()),
              HasSubstr("IR_BEN_R.csv:3: BEN_DCD_DTE"));
}

TEST(SndsLoaderTest, StructuralErrorsFailTheLoad) {
  TempDir empty;
  EXPECT_EQ(Load(empty.path()).status.code(), absl::StatusCode::kNotFound);

  TempDir no_sex;
  no_sex.Write("IR_BEN_R.csv",
               "BEN_NIR_PSA;BEN_RNG_GEM;BEN_NAI_ANN\nPSA_B1;1;1970\n");
  absl::Status st = Load(no_sex.path()).status;
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("IR_BEN_R.csv"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("\"BEN_SEX_COD\""));

  TempDir no_linkage;
  no_linkage.Write(
      "IR_BEN_R.csv",
      "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\nPSA_B1;1;1;1970\n");
  no_linkage.Write("T_MCO20B.csv", "ETA_NUM;RSA_NUM;DGN_PAL\nE;1;I10\n");
  st = Load(no_linkage.path()).status;
  EXPECT_THAT(std::string(st.message()), HasSubstr("needs T_MCO20C.csv"));

  TempDir no_diag;
  no_diag.Write(
      "IR_BEN_R.csv",
      "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\nPSA_B1;1;1;1970\n");
  no_diag.Write(
      "T_MCOaaC.csv",
      "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD\nE;1;PSA_B1;2020-01-01\n");
  no_diag.Write("T_MCOaaB.csv", "ETA_NUM;RSA_NUM;DGN_REL\nE;1;I10\n");
  st = Load(no_diag.path()).status;
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("T_MCOaaB.csv: required column \"DGN_PAL\""));

  TempDir lone_pha;
  lone_pha.Write(
      "IR_BEN_R.csv",
      "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\nPSA_B1;1;1;1970\n");
  lone_pha.Write("ER_PHA_F.csv", "PHA_PRS_C13\n1\n");
  EXPECT_THAT(std::string(Load(lone_pha.path()).status.message()),
              HasSubstr("needs ER_PRS_F"));
}

TEST(SndsLoaderTest, RepeatedStayKeyIsAmbiguousOnEveryRow) {
  TempDir dir;
  dir.Write("IR_BEN_R.csv",
            "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\nPSA_B1;1;1;"
            "1970\nPSA_B2;1;2;1980\n");
  dir.Write("T_MCOaaC.csv",
            "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD\n"
            "E;1;PSA_B1;2020-01-01\n"
            "E;1;PSA_B2;2020-01-01\n"
            "E;2;PSA_B2;2020-01-02\n");
  dir.Write("T_MCOaaB.csv",
            "ETA_NUM;RSA_NUM;DGN_PAL\nE;1;I10\nE;2;I10\nE;2;I11\n");
  Loaded l = Load(dir.path());
  ASSERT_TRUE(l.status.ok()) << l.status;
  EXPECT_EQ(l.report.events, 1);
  EXPECT_EQ(Count(l.snap, "condition icd10:I10 and sex = female"), 1);
  // C lines 2 and 3, B line 2 (ambiguous stay), B line 4 (stay described
  // twice).
  EXPECT_EQ(l.report.rejected, 4);
  EXPECT_NE(Find(l.report, "T_MCOaaC.csv", 2), nullptr);
  EXPECT_NE(Find(l.report, "T_MCOaaC.csv", 3), nullptr);
  EXPECT_THAT(Find(l.report, "T_MCOaaB.csv", 2)->reason,
              HasSubstr("ambiguous"));
  EXPECT_THAT(Find(l.report, "T_MCOaaB.csv", 4)->reason,
              HasSubstr("already described"));
}

// One person may hold several (BEN_NIR_PSA, BEN_RNG_GEM) pairs; keyed on
// the pair, their stays and dispensings made two patients of one, so one
// person moved a count by 2 and a sequence across their pairs was missed.
TEST(SndsLoaderTest, PairsOfOnePersonShareBenIdtAnoAndCountOnce) {
  TempDir dir;
  dir.Write("IR_BEN_R.csv",
            "BEN_NIR_PSA;BEN_RNG_GEM;BEN_IDT_ANO;BEN_SEX_COD;BEN_NAI_ANN;"
            "BEN_DCD_DTE\n"
            "PSA_P1;1;ANO_P;2;1960;\n"  // Person P, first NIR.
            "PSA_P2;1;ANO_P;2;1960;\n"  // Person P, second NIR.
            "PSA_P2;2;ANO_P;2;1960;\n"  // Person P, another rank.
            "PSA_Q1;1;ANO_Q;1;1950;\n"  // Person Q: the pairs disagree
            "PSA_Q2;1;ANO_Q;2;1948;2020-05-01\n"  // on sex, year, death.
            "PSA_U1;1;;1;1970;\n"                 // No BEN_IDT_ANO: the pair.
            "PSA_U2;1;;1;1970;\n");
  dir.Write("T_MCOaaC.csv",
            "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD\n"
            "E;1;PSA_P1;2020-01-01\n"
            "E;2;PSA_P2;2020-01-05\n"  // Two ranks, one person: linked.
            "E;3;PSA_U1;2020-01-01\n"
            "E;4;PSA_U2;2020-01-01\n");
  dir.Write("T_MCOaaB.csv",
            "ETA_NUM;RSA_NUM;DGN_PAL\nE;1;E11\nE;2;E11\nE;3;E11\nE;4;E11\n");
  const std::string keys =
      "DCT_ORD_NUM;FLX_DIS_DTD;FLX_EMT_NUM;FLX_EMT_ORD;FLX_EMT_TYP;FLX_TRT_DTD;"
      "ORG_CLE_NUM;PRS_ORD_NUM;REM_TYP_AFF";
  auto key = [](int k) {
    return absl::StrCat(k, ";2020-02-01;1;1;1;2020-02-02;01C;1;1");
  };
  dir.Write("ER_PRS_F.csv",
            absl::StrCat("BEN_NIR_PSA;BEN_RNG_GEM;EXE_SOI_DTD;", keys, "\n",
                         "PSA_P2;2;2020-02-01;", key(1), "\n"));
  dir.Write("ER_PHA_F.csv",
            absl::StrCat("PHA_PRS_C13;PHA_ACT_QSN;PHA_ATC_C07;", keys, "\n",
                         "3400930000001;1;A10BA02;", key(1), "\n"));
  Loaded l = Load(dir.path());
  ASSERT_TRUE(l.status.ok()) << l.status;
  EXPECT_EQ(l.report.rejected, 0);
  // P, Q, and the two unmapped pairs.
  EXPECT_EQ(l.report.persons, 4);
  EXPECT_EQ(Count(l.snap, "condition icd10:E11*"), 3);
  EXPECT_EQ(Count(l.snap, "condition icd10:E11* and birth_year = 1960"), 1);
  // The stay on one NIR and the dispensing on another are one person's.
  EXPECT_EQ(Count(l.snap,
                  "condition icd10:E11* before drug atc:A10BA02 within 60 "
                  "days"),
            1);
  // Q: sex unknown, the earliest birth year, deceased.
  EXPECT_EQ(Count(l.snap, "sex = unknown"), 1);
  EXPECT_EQ(Count(l.snap, "birth_year = 1948 and deceased"), 1);
  EXPECT_EQ(Count(l.snap, "birth_year = 1950"), 0);
  EXPECT_THAT(l.report.notes,
              Contains(HasSubstr("3 (BEN_NIR_PSA, BEN_RNG_GEM) pairs were "
                                 "merged into 2 persons")));
  EXPECT_THAT(l.report.notes,
              Contains(HasSubstr("2 pairs have no BEN_IDT_ANO and count as "
                                 "persons of their own")));
  EXPECT_THAT(l.report.notes,
              Contains(HasSubstr("1 on sex (loaded as unknown), 1 on birth "
                                 "year (the earliest kept), 1 on death date")));
  for (const std::string& n : l.report.notes) {
    EXPECT_EQ(n.find("ANO_"), std::string::npos) << n;
    EXPECT_EQ(n.find("PSA_"), std::string::npos) << n;
  }
}

TEST(SndsLoaderTest, WithoutBenIdtAnoTheUnitIsThePairAndTheReportSaysSo) {
  TempDir dir;
  dir.Write("IR_BEN_R.csv",
            "BEN_NIR_PSA;BEN_RNG_GEM;BEN_SEX_COD;BEN_NAI_ANN\n"
            "PSA_A;1;1;1970\nPSA_B;1;2;1980\n");
  Loaded l = Load(dir.path());
  ASSERT_TRUE(l.status.ok()) << l.status;
  EXPECT_EQ(l.report.persons, 2);
  EXPECT_THAT(l.report.notes,
              Contains(HasSubstr("2 pairs have no BEN_IDT_ANO (IR_BEN_R has "
                                 "no BEN_IDT_ANO column) and count as persons "
                                 "of their own: for them the unit is the "
                                 "pair")));
}

// The published sample rows plus a second pair for the first row's person
// (same BEN_IDT_ANO): still one person per BEN_IDT_ANO.
TEST_F(SharedSndsTest, ASecondPairOfAPublishedBeneficiaryIsTheSamePerson) {
  std::ifstream in(dir_ + "/IR_BEN_R.csv");
  std::string header, first, line, rest;
  std::getline(in, header);
  std::getline(in, first);
  rest = first + "\n";
  while (std::getline(in, line)) rest += line + "\n";
  const std::vector<Row> ben = ReadRows(dir_ + "/IR_BEN_R.csv");
  ASSERT_FALSE(ben.empty());
  ASSERT_TRUE(ben[0].count("BEN_IDT_ANO") && !ben[0].at("BEN_IDT_ANO").empty())
      << "the sample IR_BEN_R has no BEN_IDT_ANO";
  // The first row again under another BEN_NIR_PSA (first field).
  const std::string second =
      "PSA_SECOND_PAIR_X" + first.substr(first.find(','));
  TempDir dir;
  dir.Write("IR_BEN_R.csv", header + "\n" + rest + second + "\n");
  Loaded l = Load(dir.path());
  ASSERT_TRUE(l.status.ok()) << l.status;
  EXPECT_EQ(l.report.persons, static_cast<int64_t>(ben.size()));
  EXPECT_THAT(l.report.notes,
              Contains(HasSubstr("1 (BEN_NIR_PSA, BEN_RNG_GEM) pairs were "
                                 "merged into 1 persons")));
}

TEST(SndsLoaderTest, DatesInTheFormsExtractsUse) {
  EXPECT_EQ(*ParseSndsDate("2019-01-15"), DaysFromCivil(2019, 1, 15));
  EXPECT_EQ(*ParseSndsDate("2019-01-15 00:00:00"), DaysFromCivil(2019, 1, 15));
  EXPECT_EQ(*ParseSndsDate("15/01/2019"), DaysFromCivil(2019, 1, 15));
  EXPECT_EQ(*ParseSndsDate("15JAN2019:13:14:15"), DaysFromCivil(2019, 1, 15));
  EXPECT_EQ(*ParseSndsDate("02Jan2007:22:12:17"), DaysFromCivil(2007, 1, 2));
  EXPECT_EQ(*ParseSndsDate("29feb2020"), DaysFromCivil(2020, 2, 29));
  EXPECT_EQ(*ParseDdmmyyyy("11041902"), DaysFromCivil(1902, 4, 11));
  for (const char* bad :
       {"", "20190115", "29FEB2019", "15XXX2019", "32/01/2019", "2019-02-30"}) {
    EXPECT_FALSE(ParseSndsDate(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseDdmmyyyy("2019011").ok());
  EXPECT_FALSE(ParseDdmmyyyy("31022019").ok());
}

}  // namespace
}  // namespace passerelle::node
