// Visible expansion end to end (issue 12 item 3), with real processes: QC's
// claims are coded in ICD-9 and its steward loads an ICD-9 -> ICD-10-CM
// crosswalk ("ramq", GEM form); FR codes in ICD-10-CM and loads none. The
// researcher's `passerelle query --explain` shows how `icd10:E11*` reaches
// each site (and that QC's SNOMED conditions are out of reach) without
// spending budget; the real query counts QC's mapped patients and says so
// in the table, JSON and CSV; the gateway's and QC's audit entries record
// the expansion and `audit show` prints it.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/federation.h"

namespace passerelle::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kCohort[] = "condition icd10:E11*";

// FR: two patients with E11.9 and one with I10, in ICD-10-CM.
void WriteFr(const std::string& dir) {
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/person.csv",
            "person_id,gender_concept_id,year_of_birth\n1,8532,1950\n"
            "2,8507,1960\n3,8507,1970\n");
  WriteFile(dir + "/concept.csv",
            "concept_id,vocabulary_id,concept_code\n"
            "2000000001,ICD10CM,E11.9\n2000000003,ICD10CM,I10\n");
  WriteFile(dir + "/condition_occurrence.csv",
            "person_id,condition_concept_id,condition_start_date,"
            "condition_source_value,condition_source_concept_id\n"
            "1,2000000001,2020-01-05,E11.9,2000000001\n"
            "2,2000000001,2020-01-05,E11.9,2000000001\n"
            "3,2000000003,2020-01-05,I10,2000000003\n");
}

// QC: RAMQ-like claims in ICD-9 (250 and 25000: diabetes; 4019:
// hypertension) and one SNOMED-coded diabetes no ICD-10 code reaches.
void WriteQc(const std::string& dir, const std::string& rules,
             const std::string& gem) {
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/person.csv",
            "person_id,gender_concept_id,year_of_birth\n1,8532,1950\n"
            "2,8507,1960\n3,8507,1970\n4,8532,1980\n");
  WriteFile(dir + "/condition_occurrence.csv",
            "condition_occurrence_id,person_id,condition_concept_id,"
            "condition_start_date,condition_source_concept_id,"
            "condition_source_value\n"
            "1,1,0,2020-01-05,44800001,250\n"
            "2,2,0,2020-02-05,44800002,25000\n"
            "3,3,0,2020-03-05,44800003,4019\n"
            "4,4,0,2020-04-05,44900001,44054006\n");
  WriteFile(rules,
            "condition source_concept_id 448* icd9\n"
            "condition source_concept_id 449* snomed\n");
  WriteFile(gem,
            "icd9cm,icd10cm,flags,approximate,no_map,combination,scenario,"
            "choice_list\n"
            "25000,E119,10000,1,0,0,0,0\n"
            "25002,E1165,10000,1,0,0,0,0\n"
            "4019,I10,00000,0,0,0,0,0\n");
}

google::protobuf::Struct ParseJson(const std::string& json) {
  google::protobuf::Struct s;
  auto st = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << json;
  return s;
}

const google::protobuf::Struct& Field(const google::protobuf::Struct& s,
                                      const std::string& name) {
  static const google::protobuf::Struct* const kEmpty =
      new google::protobuf::Struct;
  auto it = s.fields().find(name);
  return it == s.fields().end() ? *kEmpty : it->second.struct_value();
}

class ExpansionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    setup_ = new absl::Status(Prepare());
  }
  static absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    WriteFr(fed_->Path("data/fr"));
    WriteQc(fed_->Path("data/qc"), fed_->Path("qc-rules.txt"),
            fed_->Path("ramq-gem.csv"));
    PASSERELLE_RETURN_IF_ERROR(fed_->LoadSite("fr", fed_->Path("data/fr")));
    absl::Status qc = fed_->LoadSite(
        "qc", fed_->Path("data/qc"),
        {"--vocabulary-rules", fed_->Path("qc-rules.txt"), "--crosswalk",
         fed_->Path("ramq-gem.csv") + ",source=icd9,name=ramq"});
    if (absl::StrContains(qc.message(), "unknown flag --crosswalk")) {
      node_side_missing_ = true;
      return absl::OkStatus();
    }
    PASSERELLE_RETURN_IF_ERROR(qc);
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("fr"));
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("qc"));
    return fed_->StartGateway(TestPolicy());
  }
  void SetUp() override {
    ASSERT_TRUE(setup_->ok()) << *setup_;
    if (node_side_missing_) {
      GTEST_SKIP() << "the node does not load crosswalks yet (`node load "
                      "--crosswalk`, NodeService.Explain: branch i12-vmap); "
                      "this test runs once that is merged";
    }
  }
  static void TearDownTestSuite() {
    delete fed_;
    delete dir_;
    delete setup_;
  }

  // `passerelle query ARGS` as alice against the gateway.
  static CommandResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        PasserelleBin(), "query",
        "--gateway",     fed_->Address("gateway"),
        "--ca",          fed_->Path("pki/ca.pem"),
        "--cert",        fed_->Path("pki/alice.pem"),
        "--key",         fed_->Path("pki/alice.key"),
        "--server-name", "localhost",
        "--purpose",     "DUO:0000006"};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult();
  }
  // `passerelle audit show INDEX --store` of the gateway's or a site's log.
  static google::protobuf::Struct Show(const std::string& log, uint64_t index) {
    absl::StatusOr<CommandResult> r =
        RunCommand({PasserelleBin(), "audit", "show", absl::StrCat(index),
                    "--store", fed_->Path(log + "/audit")});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->exit_code, 0) << r->err;
    return ParseJson(r->out);
  }
  static std::vector<std::string> Lines(const google::protobuf::Struct& s) {
    std::vector<std::string> out;
    auto it = s.fields().find("expansion_lines");
    if (it == s.fields().end()) return out;
    for (const auto& v : it->second.list_value().values())
      out.push_back(v.string_value());
    return out;
  }
  static double EpsilonSpent() {
    v1::BudgetResponse budget;
    grpc::Status st = fed_->Budget("noised", &budget);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return budget.project_account().epsilon_spent();
  }

  static TempDir* dir_;
  static Federation* fed_;
  static absl::Status* setup_;
  static bool node_side_missing_;
};
absl::Status* ExpansionTest::setup_ = nullptr;
TempDir* ExpansionTest::dir_ = nullptr;
Federation* ExpansionTest::fed_ = nullptr;
bool ExpansionTest::node_side_missing_ = false;

// "qc: icd10:E11* via ramq → icd9: N source codes (M rows...)".
const std::regex kQcLine(
    R"(qc: icd10:E11\* via ramq → icd9: [0-9]+ source codes? \([0-9]+ rows?)");

TEST_F(ExpansionTest, ExplainShowsEachSitesExpansionAndSpendsNothing) {
  const double before = EpsilonSpent();
  CommandResult r = Cli({"--project", "noised", "--explain", kCohort});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(std::regex_search(r.out, kQcLine)) << r.out;
  EXPECT_THAT(r.out, HasSubstr("no budget was charged"));
  EXPECT_THAT(r.out, HasSubstr("fr: codes mapped, no crosswalk loaded"));
  EXPECT_THAT(r.out, HasSubstr("qc: codes mapped, mapping set "));
  // QC's SNOMED conditions: out of reach, and said at the top.
  EXPECT_THAT(r.out,
              HasSubstr("qc: WARNING: condition: snomed is not reached"));
  EXPECT_THAT(r.out, HasSubstr("WARNING: the cohort may be incomplete"));
  EXPECT_EQ(EpsilonSpent(), before);

  // The JSON form reads back as an ExplainResponse; its entry in the
  // gateway's log is an "explain" with the expansions.
  CommandResult j =
      Cli({"--project", "noised", "--format", "json", "--explain", kCohort});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  v1::ExplainResponse explained;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(j.out, &explained).ok())
      << j.out;
  ASSERT_EQ(explained.sites_size(), 2);
  const v1::SiteExplanation& qc = explained.sites(1);
  ASSERT_EQ(qc.site(), "qc");
  ASSERT_EQ(qc.status(), v1::SITE_STATUS_OK) << qc.reason();
  ASSERT_GE(qc.expansion().codes_size(), 1);
  EXPECT_EQ(qc.expansion().codes(0).crosswalk(), "ramq");
  EXPECT_EQ(qc.expansion().codes(0).site_vocabulary(), "icd9");
  EXPECT_GE(qc.expansion().codes(0).source_codes(), 2);
  EXPECT_THAT(qc.expansion().codes(0).sample_source_codes(),
              ::testing::Contains("25000"));
  EXPECT_EQ(qc.expansion().mapping_set().size(), 64u);
  const google::protobuf::Struct entry =
      Show("gateway", explained.audit_index());
  EXPECT_EQ(Field(Field(entry, "record"), "gateway")
                .fields()
                .at("operation")
                .string_value(),
            "explain");
  const std::vector<std::string> lines = Lines(entry);
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return std::regex_search(l, kQcLine);
  })) << ::testing::PrintToString(lines);
  EXPECT_EQ(EpsilonSpent(), before);

  // `codes exact`: no crosswalk is used, and the site says so.
  CommandResult exact = Cli({"--project", "noised", "--explain",
                             absl::StrCat(kCohort, " codes exact")});
  ASSERT_EQ(exact.exit_code, 0) << exact.err;
  EXPECT_THAT(exact.out, HasSubstr("qc: codes exact (no crosswalk used)"));
  EXPECT_FALSE(std::regex_search(exact.out, kQcLine)) << exact.out;
  EXPECT_THAT(exact.out, HasSubstr("condition: icd9 is not reached"));

  // Someone outside the project is refused, as for a query (the later
  // --cert and --key win).
  CommandResult refused =
      Cli({"--project", "noised", "--cert", fed_->Path("pki/carol.pem"),
           "--key", fed_->Path("pki/carol.key"), "--explain", kCohort});
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  EXPECT_THAT(refused.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(refused.out, Not(HasSubstr("ramq")));
}

TEST_F(ExpansionTest, ExplainShowsLabelsFromTheNamedNomenclatures) {
  // A CIM-10 label file in the SNDS form (docs/labels.md).
  const std::string nomenclatures = dir_->Sub("nomenclatures");
  std::filesystem::create_directories(nomenclatures + "/snds/nomenclatures");
  {
    std::ofstream f(nomenclatures + "/snds/nomenclatures/IR_CIM_V.csv");
    f << "CIM_COD;CIM_LIB;ALD_030_COD;CAT_CIM_COD;VER_CPT_COD;VER_CPT_DTE;"
         "CAT_TUM_COD;TEC_COL\n"
         "E11;Diab\xc3\xa8te sucr\xc3\xa9 de type 2;8;E11;V8.0;"
         "02JUL2017:00:00:00;99;0\n";
  }
  CommandResult r = Cli({"--project", "noised", "--nomenclatures",
                         nomenclatures, "--explain", kCohort});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("qc: icd10:E11* (Diab\xc3\xa8te sucr\xc3\xa9 de "
                               "type 2) via ramq"));
  // Without labels the line names the code alone.
  CommandResult plain = Cli({"--project", "noised", "--explain", kCohort});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_THAT(plain.out, Not(HasSubstr("type 2")));
  // A directory the researcher names that cannot be read is an error naming
  // it, before anything is asked of the gateway.
  CommandResult missing =
      Cli({"--project", "noised", "--nomenclatures",
           dir_->Sub("no-such-directory"), "--explain", kCohort});
  EXPECT_NE(missing.exit_code, 0) << missing.out;
  EXPECT_THAT(missing.err, HasSubstr("no-such-directory"));
  CommandResult bad_lang =
      Cli({"--project", "noised", "--lang", "de", "--explain", kCohort});
  EXPECT_EQ(bad_lang.exit_code, 2) << bad_lang.out;
  EXPECT_THAT(bad_lang.err, HasSubstr("--lang"));
}

TEST_F(ExpansionTest, AQueryCountsTheMappedCodesAndSaysHow) {
  CommandResult t = Cli({"--project", "exact", kCohort});
  ASSERT_EQ(t.exit_code, 0) << t.out << t.err;
  EXPECT_TRUE(std::regex_search(t.out, kQcLine)) << t.out;
  EXPECT_THAT(t.out, HasSubstr("WARNING: the cohort may be incomplete"));
  // FR's two E11.9 patients and QC's two ICD-9 diabetics (250 and 25000).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(t.out, m, std::regex(R"(\nall +2 +2 +4 )")))
      << t.out;

  // JSON: each site's expansion object; the site's count is the mapped one.
  CommandResult j = Cli({"--project", "exact", "--format", "json", kCohort});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const google::protobuf::Struct json = ParseJson(j.out);
  const auto& sites = json.fields().at("sites").list_value();
  ASSERT_EQ(sites.values_size(), 2);
  const google::protobuf::Struct& qc = sites.values(1).struct_value();
  EXPECT_EQ(qc.fields().at("site").string_value(), "qc");
  v1::SiteExpansion expansion;
  {
    std::string text;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(
                    qc.fields().at("expansion"), &text)
                    .ok());
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(text, &expansion).ok());
  }
  ASSERT_GE(expansion.codes_size(), 1);
  EXPECT_EQ(expansion.codes(0).crosswalk(), "ramq");
  EXPECT_THAT(expansion.unreached(), ::testing::Contains("condition: snomed"));
  // A repeat (same query, same snapshots): the stored release, with its
  // expansion.
  EXPECT_TRUE(json.fields().at("repeat").bool_value());

  // CSV: the cells section, then the expansion section.
  CommandResult c = Cli({"--project", "exact", "--format", "csv", kCohort});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const size_t blank = c.out.find("\n\n");
  ASSERT_NE(blank, std::string::npos) << c.out;
  EXPECT_THAT(c.out.substr(0, blank), HasSubstr("\ncombined,4,exact,"));
  EXPECT_THAT(c.out.substr(blank), HasSubstr("\nqc,code,icd10:E11*,condition,"
                                             "icd9,ramq,"));
  EXPECT_THAT(c.out.substr(blank), HasSubstr("\nqc,unreached,,condition,"
                                             "snomed,"));

  // The audit entries: the gateway's (first release) and QC's own.
  absl::StatusOr<CommandResult> search =
      RunCommand({PasserelleBin(), "audit", "search", "--store",
                  fed_->Path("gateway/audit"), "--project", "exact"});
  ASSERT_TRUE(search.ok());
  // The first `exact` release is the first matching line.
  uint64_t index = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      std::vector<std::string>(absl::StrSplit(search->out, '\t'))[0], &index))
      << search->out;
  const google::protobuf::Struct gateway = Show("gateway", index);
  const std::vector<std::string> lines = Lines(gateway);
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return std::regex_search(l, kQcLine);
  })) << ::testing::PrintToString(lines);
  const auto& audited_sites = Field(Field(gateway, "record"), "gateway")
                                  .fields()
                                  .at("sites")
                                  .list_value();
  ASSERT_EQ(audited_sites.values_size(), 2);
  // A uint64 in the proto JSON mapping is a string.
  uint64_t node_index = 0;
  ASSERT_TRUE(absl::SimpleAtoi(audited_sites.values(1)
                                   .struct_value()
                                   .fields()
                                   .at("node_audit_index")
                                   .string_value(),
                               &node_index));
  const std::vector<std::string> node_lines = Lines(Show("qc", node_index));
  // The gateway's log and each site's agree, explains included (matched by
  // request id: they reference no node entry).
  for (const char* site : {"fr", "qc"}) {
    absl::StatusOr<CommandResult> cross =
        RunCommand({PasserelleBin(), "audit", "crosscheck", "--store",
                    fed_->Path("gateway/audit"), "--node-store",
                    fed_->Path(absl::StrCat(site, "/audit")), "--site", site});
    ASSERT_TRUE(cross.ok());
    EXPECT_EQ(cross->exit_code, 0) << cross->out << cross->err;
    EXPECT_THAT(cross->out, HasSubstr("OK: gateway and node logs agree"))
        << cross->out;
  }
  EXPECT_TRUE(std::any_of(
      node_lines.begin(), node_lines.end(),
      [](const std::string& l) { return std::regex_search(l, kQcLine); }))
      << ::testing::PrintToString(node_lines);
}

}  // namespace
}  // namespace passerelle::testing
