// Differential test of the cohort engine: random queries from the grammar,
// counted by the engine on a snapshot loaded from OMOP CSV files and by
// plain SQL (node/testing/sql_reference.h) in sqlite3 over the same files.
// Every cell of every breakdown must be equal. The parser must also turn
// each query's text into exactly the AST the generator built.
//
// Sites: generated ones (synth fr and qc), trap datasets (node/testing/
// trap_dataset.h, one of them entirely before 1970) and, when ../shared is
// present, the MIMIC-IV demo.
//
// Crosswalks: some sites load crosswalk tables (random ones drawn from the
// data's codes in the Passerelle form, the real CMS GEMs for the MIMIC
// demo); the reference imports the same files into sqlite3 and applies them
// by a join (node/testing/sql_crosswalk.h), and each query is drawn with
// `codes mapped`, `codes equivalent` or `codes exact`.
//
// Replay: PASSERELLE_DIFF_SEED=<seed> runs only that query (and prints its
// text, AST, SQL and cells); PASSERELLE_DIFF_QUERIES=<n> changes the number
// of queries per site; PASSERELLE_DIFF_BASE_SEED=<s> draws other queries.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "common/clock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "node/crosswalk_loader.h"
#include "node/engine.h"
#include "node/omop_loader.h"
#include "node/snapshot.h"
#include "node/store.h"
#include "node/testing/query_generator.h"
#include "node/testing/rng.h"
#include "node/testing/sql_crosswalk.h"
#include "node/testing/sql_reference.h"
#include "node/testing/trap_dataset.h"
#include "query/cells.h"
#include "query/parser.h"
#include "query/validate.h"
#include "query/vocabulary.h"
#include "synth/generator.h"
#include "synth/omop_writer.h"

namespace passerelle::node {
namespace {

namespace fs = std::filesystem;
using difftest::DataProfile;
using difftest::GeneratedQuery;
using difftest::QueryGenerator;
using difftest::SqlVocabularyRule;

constexpr uint64_t kDefaultBaseSeed = 20240917;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pdiff-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    // PASSERELLE_DIFF_KEEP=1 keeps the databases and scripts for a look.
    if (std::getenv("PASSERELLE_DIFF_KEEP") != nullptr) {
      std::cout << "kept " << path_ << "\n";
    } else if (!path_.empty()) {
      fs::remove_all(path_, ec);
    }
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const {
    return (fs::path(path_) / name).string();
  }

 private:
  std::string path_;
};

bool WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  out.close();
  return static_cast<bool>(out);
}

bool EnvU64(const char* name, uint64_t* value) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && absl::SimpleAtoi(v, value);
}

std::string SharedDir() {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  const fs::path shared = fs::path(src ? src : ".") / ".." / "shared";
  std::error_code ec;
  return fs::is_directory(shared / "data", ec) ? shared.string() : "";
}

std::string CellName(const v1::CellKey& key) {
  if (key.values().empty()) return "total";
  std::vector<std::string> parts;
  for (const v1::DimensionValue& v : key.values()) {
    parts.push_back(absl::StrCat(v.dimension(), "=", v.value()));
  }
  return absl::StrJoin(parts, ",");
}

struct Site {
  std::string label;      // In messages.
  std::string test_name;  // For the replay command line.
  std::string csv_dir;
  std::string site_id;
  std::vector<SqlVocabularyRule> rules;
  int queries = 0;
  uint64_t tag = 0;  // Separates the query streams of the sites.
  // Crosswalks: random ones drawn from the data's codes, and files.
  bool random_crosswalks = false;
  std::vector<difftest::SqlCrosswalkFile> crosswalks;
  // Queries run before the random ones (text, with `as of` pinned).
  std::vector<std::string> fixed_queries;
};

// Random crosswalk tables in the Passerelle form over the data's codes:
// each of a third of the codes maps to one to three target codes
// (snomed, or rxnorm for drugs) from a small pool, so that targets are
// shared (many-to-many) and prefixes of targets span several; every
// relation, combination flags, source-prefix rows, family source
// vocabularies (icd10, icd9), ICD codes long enough to roll up, and rows
// chaining a target to another target (which must not be followed: one
// hop). The targets join the profile so that queries name them.
std::vector<difftest::SqlCrosswalkFile> WriteRandomCrosswalks(
    DataProfile* profile, uint64_t seed, const TempDir& work) {
  difftest::Rng rng(seed);
  const char* kRelations[] = {"equivalent", "narrower", "broader",
                              "approximate"};
  std::map<std::string, std::set<std::string>> tables;  // name -> lines
  std::map<std::tuple<int, std::string, std::string>, difftest::ProfileCode>
      targets;
  std::vector<std::string> chained;
  const std::vector<difftest::ProfileCode> codes = profile->codes;
  for (const difftest::ProfileCode& c : codes) {
    if (!query::IsKnownVocabulary(c.vocabulary) ||
        !IsWellFormedCrosswalkCode(c.vocabulary, c.code) || rng.Below(3) != 0) {
      continue;
    }
    const int rows = 1 + static_cast<int>(rng.Below(3));
    for (int k = 0; k < rows; ++k) {
      const bool drug = c.domain == v1::DOMAIN_DRUG;
      const std::string tv = drug ? "rxnorm" : "snomed";
      std::string tc = absl::StrCat(drug ? "8" : "7", 100 + rng.Below(30));
      if (rng.Below(4) == 0) absl::StrAppend(&tc, rng.Below(10));
      std::string sv = c.vocabulary;
      if (rng.Below(4) == 0) {
        if (sv == "cim10" || sv == "icd10cm" || sv == "icd10ca") sv = "icd10";
        if (sv == "icd9cm") sv = "icd9";
      }
      std::string sc = c.code;
      if (rng.Below(8) == 0 && sc.size() > 3) sc = sc.substr(0, 3) + "*";
      const std::string flags =
          rng.Below(6) == 0 ? "combination;scenario=1;choice=1" : "";
      tables[rng.Below(2) == 0 ? "xa" : "xb"].insert(
          absl::StrCat(sv, ",", sc, ",", tv, ",", tc, ",",
                       kRelations[rng.Below(4)], ",", flags));
      difftest::ProfileCode& t = targets[{c.domain, tv, tc}];
      t.domain = c.domain;
      t.vocabulary = tv;
      t.code = tc;
      t.patients += c.patients;
      if (t.values.empty()) t.values = c.values;
      if (rng.Below(10) == 0) chained.push_back(absl::StrCat(tv, ",", tc));
    }
  }
  // A target mapped again: a query for the second target reaches the
  // first target's site codes only if hops were chained.
  for (const std::string& t : chained) {
    const std::string second = absl::StrCat("9", t.substr(t.size() - 3));
    tables["xb"].insert(absl::StrCat(t, ",snomed,", second, ",equivalent,"));
    for (int domain : {v1::DOMAIN_CONDITION, v1::DOMAIN_DRUG}) {
      difftest::ProfileCode& p = targets[{domain, "snomed", second}];
      p.domain = static_cast<v1::Domain>(domain);
      p.vocabulary = "snomed";
      p.code = second;
      p.patients = std::max<int64_t>(p.patients, 1);
    }
  }
  std::vector<difftest::SqlCrosswalkFile> files;
  for (const auto& [name, lines] : tables) {
    const std::string path = work.Sub(absl::StrCat("crosswalk-", name, ".csv"));
    std::string text =
        "source_vocabulary,source_code,target_vocabulary,target_code,"
        "relation,flags\n";
    for (const std::string& l : lines) absl::StrAppend(&text, l, "\n");
    EXPECT_TRUE(WriteFile(path, text));
    files.push_back({path, "passerelle", name, ""});
  }
  for (auto& [key, t] : targets) profile->codes.push_back(std::move(t));
  return files;
}

struct Case {
  uint64_t seed = 0;
  GeneratedQuery generated;
  std::string sql;
  std::vector<v1::Cell> engine;
  std::vector<v1::Cell> store_engine;
};

void RunDifferential(const Site& site) {
  const auto started = std::chrono::steady_clock::now();
  ASSERT_FALSE(difftest::FindSqlite().empty())
      << "sqlite3 is required as the reference engine (Debian package "
         "sqlite3); it is part of the machine image";
  TempDir work;
  ASSERT_FALSE(work.path().empty());

  // The reference database and the data profile.
  absl::StatusOr<std::string> import =
      difftest::OmopImportScript(site.csv_dir, site.rules);
  ASSERT_TRUE(import.ok()) << import.status();
  ASSERT_TRUE(WriteFile(work.Sub("import.sql"), *import));
  const std::string db = work.Sub("reference.db");
  absl::StatusOr<std::string> profile_text =
      difftest::RunSqlite(db, work.Sub("import.sql"), work.path());
  ASSERT_TRUE(profile_text.ok()) << profile_text.status();
  absl::StatusOr<DataProfile> profile = difftest::ParseProfile(*profile_text);
  ASSERT_TRUE(profile.ok()) << profile.status();
  // The crosswalks, imported into the reference and loaded by the node.
  std::vector<difftest::SqlCrosswalkFile> crosswalk_files = site.crosswalks;
  if (site.random_crosswalks) {
    for (difftest::SqlCrosswalkFile& f : WriteRandomCrosswalks(
             &*profile, difftest::MixSeed(site.tag, 77), work)) {
      crosswalk_files.push_back(std::move(f));
    }
  }
  std::shared_ptr<const CrosswalkSet> crosswalks;
  if (!crosswalk_files.empty()) {
    absl::StatusOr<std::string> xsql =
        difftest::CrosswalkImportScript(crosswalk_files);
    ASSERT_TRUE(xsql.ok()) << xsql.status();
    ASSERT_TRUE(WriteFile(work.Sub("crosswalks.sql"), *xsql));
    absl::StatusOr<std::string> xout =
        difftest::RunSqlite(db, work.Sub("crosswalks.sql"), work.path());
    ASSERT_TRUE(xout.ok()) << xout.status();
    std::vector<std::string> specs;
    for (const difftest::SqlCrosswalkFile& f : crosswalk_files) {
      std::string spec = absl::StrCat(f.path, ",name=", f.name);
      if (!f.source_vocabulary.empty()) {
        absl::StrAppend(&spec, ",source=", f.source_vocabulary);
      }
      specs.push_back(std::move(spec));
    }
    CrosswalkLoadReport xreport;
    absl::StatusOr<std::shared_ptr<const CrosswalkSet>> set =
        LoadCrosswalks(specs, InvalidCrosswalkRows::kRefuse, &xreport);
    ASSERT_TRUE(set.ok()) << set.status();
    crosswalks = *set;
  }
  const auto imported = std::chrono::steady_clock::now();

  // The node's snapshot from the same files, in memory and read back from
  // its RocksDB store.
  LoadOptions options;
  // Loaded as dated, as the sqlite import does (the MIMIC demo's dates are
  // shifted into the next century).
  options.future_events = FutureEvents::kKeep;
  if (!site.rules.empty()) {
    options.vocabulary_rules_file = work.Sub("vocabulary-rules.txt");
    ASSERT_TRUE(WriteFile(options.vocabulary_rules_file,
                          difftest::VocabularyRulesText(site.rules)));
  }
  SnapshotBuilder builder(site.site_id);
  LoadReport report;
  absl::Status loaded =
      LoadOmopDirectory(site.csv_dir, options, &builder, &report);
  ASSERT_TRUE(loaded.ok()) << loaded;
  std::shared_ptr<Snapshot> snap = builder.Build(
      VersionWithMappingSet(absl::StrCat(site.site_id, "-diff-1"),
                            crosswalks == nullptr ? "" : crosswalks->id()),
      0);
  snap->crosswalks = crosswalks;
  std::string rejected;
  for (const RejectedRow& r : report.rejected_samples) {
    absl::StrAppend(&rejected, "\n  ", r.file, ":", r.line, ": ", r.reason);
  }
  EXPECT_EQ(snap->meta.persons, profile->persons)
      << site.label << ", the loader rejected:" << rejected;
  EXPECT_EQ(report.events, profile->events)
      << site.label << ", the loader rejected:" << rejected;
  // The engines' date for queries without `as of`: a date the test injects,
  // the last day of the data's events, so that ages span the data's range
  // (the engine never takes it from the data itself).
  absl::StatusOr<int32_t> last_day = ParseDay(profile->max_date);
  ASSERT_TRUE(last_day.ok()) << site.label << ": " << last_day.status();
  int ry, rm, rd;
  CivilFromDays(*last_day, &ry, &rm, &rd);
  v1::Date reference;
  reference.set_year(ry);
  reference.set_month(rm);
  reference.set_day(rd);
  FakeClock clock(absl::FromCivil(absl::CivilSecond(ry, rm, rd, 12, 0, 0),
                                  absl::UTCTimeZone()));
  IndexEngineOptions engine_options;
  engine_options.clock = &clock;
  const auto built = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<NodeStore>> store =
      NodeStore::Open(work.Sub("store"));
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Commit(*snap).ok());
  absl::StatusOr<std::shared_ptr<Snapshot>> stored = (*store)->LoadCurrent();
  ASSERT_TRUE(stored.ok()) << stored.status();
  const auto loaded_at = std::chrono::steady_clock::now();
  std::unique_ptr<CohortEngine> engine = NewIndexEngine(snap, engine_options);
  std::unique_ptr<CohortEngine> store_engine =
      NewIndexEngine(*stored, engine_options);

  // The queries.
  uint64_t base = kDefaultBaseSeed, replay = 0, n = 0;
  EnvU64("PASSERELLE_DIFF_BASE_SEED", &base);
  const bool replaying = EnvU64("PASSERELLE_DIFF_SEED", &replay);
  const int fixed = replaying ? 0 : static_cast<int>(site.fixed_queries.size());
  const int count = fixed + (replaying ? 1
                                       : (EnvU64("PASSERELLE_DIFF_QUERIES", &n)
                                              ? static_cast<int>(n)
                                              : site.queries));
  QueryGenerator generator(*profile);
  std::vector<Case> cases(count);
  std::vector<v1::Query> asts;
  std::map<std::string, int> features;
  std::string sql = ".mode list\n.separator |\n";
  int parse_failures = 0;
  for (int i = 0; i < count; ++i) {
    Case& c = cases[i];
    c.seed = replaying
                 ? replay
                 : difftest::MixSeed(difftest::MixSeed(base, site.tag), i);
    if (i < fixed) {
      // A fixed query: its own text and AST.
      c.generated.text = site.fixed_queries[i];
      absl::StatusOr<v1::Query> ast = query::ParseQuery(c.generated.text);
      ASSERT_TRUE(ast.ok()) << ast.status() << "\n  " << c.generated.text;
      c.generated.ast = *std::move(ast);
    } else {
      c.generated = generator.Generate(c.seed);
    }
    if (crosswalks != nullptr && i >= fixed) {
      // Each matching mode: mapped (half), equivalent, exact.
      const uint64_t mode = difftest::MixSeed(c.seed, 12) % 4;
      if (mode == 2) {
        c.generated.ast.set_code_matching(v1::CODE_MATCHING_EQUIVALENT);
        absl::StrAppend(&c.generated.text, " codes equivalent");
      } else if (mode == 3) {
        c.generated.ast.set_code_matching(v1::CODE_MATCHING_EXACT);
        absl::StrAppend(&c.generated.text, " CODES exact");
      } else if (mode == 1) {
        absl::StrAppend(&c.generated.text, " codes mapped");
      }
    }
    for (const std::string& f : c.generated.features) ++features[f];
    const v1::Query& ast = c.generated.ast;
    const std::string replay_hint =
        absl::StrCat("replay: PASSERELLE_DIFF_SEED=", c.seed,
                     " node_differential_test --gtest_filter=DifferentialTest.",
                     site.test_name);
    absl::Status valid = query::ValidateQuery(ast);
    ASSERT_TRUE(valid.ok())
        << "generator bug: " << valid << "\n  text: " << c.generated.text
        << "\n  " << replay_hint;
    absl::StatusOr<v1::Query> parsed = query::ParseQuery(c.generated.text);
    if (!parsed.ok()) {
      ADD_FAILURE() << "[" << site.label << "] the parser rejects a query of "
                    << "the grammar: " << parsed.status()
                    << "\n  text: " << c.generated.text << "\n  "
                    << replay_hint;
      ++parse_failures;
    } else {
      std::string diff;
      google::protobuf::util::MessageDifferencer differ;
      differ.ReportDifferencesToString(&diff);
      if (!differ.Compare(ast, *parsed)) {
        ADD_FAILURE() << "[" << site.label << "] the parser's AST differs from "
                      << "the contract's\n  text: " << c.generated.text
                      << "\n  expected: " << ast.ShortDebugString()
                      << "\n  parsed:   " << parsed->ShortDebugString()
                      << "\n  diff: " << diff << "  " << replay_hint;
        ++parse_failures;
      }
    }
    absl::StatusOr<std::vector<v1::Cell>> cells = engine->Count(ast);
    ASSERT_TRUE(cells.ok())
        << cells.status() << "\n  text: " << c.generated.text;
    c.engine = *std::move(cells);
    absl::StatusOr<std::vector<v1::Cell>> stored_cells =
        store_engine->Count(ast);
    ASSERT_TRUE(stored_cells.ok()) << stored_cells.status();
    c.store_engine = *std::move(stored_cells);
    c.sql = difftest::QueryToSql(ast, i, site.site_id, reference);
    sql += c.sql;
    asts.push_back(ast);
  }
  const auto engine_done = std::chrono::steady_clock::now();

  // One sqlite3 run for all of them.
  ASSERT_TRUE(WriteFile(work.Sub("queries.sql"), sql));
  absl::StatusOr<std::string> out =
      difftest::RunSqlite(db, work.Sub("queries.sql"), work.path());
  ASSERT_TRUE(out.ok()) << out.status();
  absl::StatusOr<std::vector<std::vector<int64_t>>> expected =
      difftest::ParseCellCounts(*out, asts, site.site_id);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto sqlite_done = std::chrono::steady_clock::now();

  int mismatches = 0, nonzero = 0;
  for (int i = 0; i < count; ++i) {
    const Case& c = cases[i];
    const std::vector<v1::CellKey> keys =
        query::EnumerateCells(c.generated.ast, {site.site_id});
    const std::vector<int64_t>& want = (*expected)[i];
    std::string diffs;
    int differing = 0;
    bool any = false;
    if (c.engine.size() != keys.size()) {
      diffs = absl::StrCat("    engine returned ", c.engine.size(),
                           " cells, the public domain has ", keys.size(), "\n");
      differing = 1;
    }
    for (size_t k = 0; k < keys.size() && k < c.engine.size(); ++k) {
      const int64_t got = c.engine[k].count();
      const int64_t stored_got =
          k < c.store_engine.size() ? c.store_engine[k].count() : -1;
      any |= want[k] != 0;
      const bool key_ok = google::protobuf::util::MessageDifferencer::Equals(
          c.engine[k].key(), keys[k]);
      if (got != want[k] || stored_got != got || !key_ok) {
        if (++differing <= 20) {
          absl::StrAppend(&diffs, "    cell ", CellName(keys[k]), ": engine ",
                          got, ", engine on the stored snapshot ", stored_got,
                          ", sqlite ", want[k],
                          key_ok ? "" : " (engine cell key differs)", "\n");
        }
      }
    }
    nonzero += any;
    if (replaying) {
      std::cout << "seed " << c.seed << "\ntext: " << c.generated.text
                << "\nast: " << c.generated.ast.ShortDebugString()
                << "\nsql: " << c.sql;
      for (size_t k = 0; k < keys.size() && k < c.engine.size(); ++k) {
        std::cout << "  " << CellName(keys[k]) << ": engine "
                  << c.engine[k].count() << ", sqlite " << want[k] << "\n";
      }
    }
    if (differing == 0) continue;
    if (++mismatches <= 8) {
      ADD_FAILURE()
          << "[" << site.label << "] query " << i << " of " << count << ": "
          << differing << " cells differ\n  replay: "
          << "PASSERELLE_DIFF_SEED=" << c.seed
          << " node_differential_test --gtest_filter=DifferentialTest."
          << site.test_name << "\n  text: " << c.generated.text
          << "\n  ast: " << c.generated.ast.ShortDebugString()
          << "\n  sql: " << c.sql << diffs;
    }
  }
  EXPECT_EQ(mismatches, 0) << "[" << site.label << "] " << mismatches << " of "
                           << count << " queries differ (first 8 shown)";
  EXPECT_EQ(parse_failures, 0);
  if (!replaying) {
    // Most queries must count someone, or the test proves little.
    EXPECT_GE(nonzero, count / 2) << "[" << site.label << "] only " << nonzero
                                  << " of " << count << " queries count anyone";
  }
  const auto ms = [](auto a, auto b) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
  };
  std::cout << "[" << site.label << "] " << count << " queries, " << nonzero
            << " non-empty, " << mismatches << " differing; "
            << profile->persons << " persons, " << profile->events
            << " events, " << profile->codes.size() << " codes; sqlite import "
            << ms(started, imported) << " ms, node load " << ms(imported, built)
            << " ms, store " << ms(built, loaded_at)
            << " ms, generate and engine " << ms(loaded_at, engine_done)
            << " ms, sqlite " << ms(engine_done, sqlite_done) << " ms\n";
  std::vector<std::string> missing;
  for (const std::string& f : QueryGenerator::AllFeatures()) {
    if (features[f] == 0) missing.push_back(f);
  }
  std::cout << "[" << site.label << "] grammar features never drawn: "
            << (missing.empty() ? "none" : absl::StrJoin(missing, ", "))
            << "\n";
}

TEST(DifferentialTest, SynthFr) {
  TempDir data;
  synth::GeneratorOptions options;
  options.patients = 2500;
  options.seed = 11;
  options.site = "fr";
  auto generator = synth::Generator::Create(options);
  ASSERT_TRUE(generator.ok()) << generator.status();
  ASSERT_TRUE(synth::WriteOmopCsv(**generator, data.path()).ok());
  RunDifferential({"synth fr", "SynthFr", data.path(), "fr", {}, 1000, 1});
}

TEST(DifferentialTest, SynthQc) {
  TempDir data;
  synth::GeneratorOptions options;
  options.patients = 1000;
  options.seed = 12;
  options.site = "qc";
  auto generator = synth::Generator::Create(options);
  ASSERT_TRUE(generator.ok()) << generator.status();
  ASSERT_TRUE(synth::WriteOmopCsv(**generator, data.path()).ok());
  Site site{"synth qc", "SynthQc", data.path(), "qc", {}, 200, 2};
  site.random_crosswalks = true;
  RunDifferential(site);
}

TEST(DifferentialTest, Traps) {
  TempDir data;
  difftest::TrapDatasetOptions options;
  options.persons = 600;
  options.seed = 3;
  options.upper_case_files = true;
  auto rules = difftest::WriteTrapDataset(data.path(), options);
  ASSERT_TRUE(rules.ok()) << rules.status();
  Site site{"traps", "Traps", data.path(), "trap", *rules, 300, 3};
  site.random_crosswalks = true;
  RunDifferential(site);
}

TEST(DifferentialTest, TrapsBefore1970) {
  TempDir data;
  difftest::TrapDatasetOptions options;
  options.persons = 400;
  options.seed = 4;
  options.before_1970 = true;
  auto rules = difftest::WriteTrapDataset(data.path(), options);
  ASSERT_TRUE(rules.ok()) << rules.status();
  Site site{"traps before 1970",
            "TrapsBefore1970",
            data.path(),
            "old",
            *rules,
            200,
            4};
  site.random_crosswalks = true;
  RunDifferential(site);
}

TEST(DifferentialTest, MimicDemo) {
  const std::string shared = SharedDir();
  if (shared.empty()) {
    GTEST_SKIP() << "../shared is absent (looked in $PASSERELLE_SOURCE_DIR/"
                    "../shared): the MIMIC-IV demo data is not available";
  }
  const std::string mimic = shared + "/data/mimic-iv-demo-omop";
  if (!fs::exists(fs::path(mimic) / "person.csv")) {
    GTEST_SKIP() << mimic << "/person.csv is absent";
  }
  // No CONCEPT table: the steward's rules (../shared/data/README.md) say
  // which source concept ids carry ICD-9-CM, ICD-10-CM and NDC values.
  const std::vector<SqlVocabularyRule> rules = {
      {"condition", "448*", "icd9cm"},
      {"condition", "352*", "icd10cm"},
      {"condition", "455*", "icd10cm"},
      {"condition", "456*", "icd10cm"},
      {"drug", "4*", "ndc"},
  };
  Site site{"mimic demo", "MimicDemo", mimic, "mimic", rules, 300, 5};
  // Its mixed ICD-9-CM / ICD-10-CM conditions, reached through the CMS GEMs
  // in both directions (the real files, as published).
  const std::string gems = shared + "/data/crosswalks/";
  site.crosswalks = {{gems + "cms_gem2018_icd9cm_to_icd10cm.csv", "gem-forward",
                      "gem-fwd", ""},
                     {gems + "cms_gem2018_icd10cm_to_icd9cm.csv",
                      "gem-backward", "gem-bwd", ""}};
  site.fixed_queries = {
      "condition icd10:E11*",
      "condition icd10:E11* codes equivalent",
      "condition icd10:E11* codes exact",
      "condition icd10cm:E11* group by sex",
      "condition icd9cm:250* group by age_band(20)",
      "condition icd10:I10 at least 2 times",
      "condition icd10:E11* before condition icd10:N18* within 3650 days",
      "condition icd9:4* and not condition icd10:E* codes equivalent",
  };
  RunDifferential(site);
}

// The MIMIC demo's ICD-9-CM diabetes records are reached by an ICD-10
// query through the forward GEM: `condition icd10:E11*` finds the 250.x0
// and 250.x2 patients that `codes exact` misses (the differential test
// above checks the counts against SQL).
TEST(DifferentialTest, MimicDemoGemReachesIcd9Diabetes) {
  const std::string shared = SharedDir();
  if (shared.empty()) {
    GTEST_SKIP() << "../shared is absent (looked in $PASSERELLE_SOURCE_DIR/"
                    "../shared): the MIMIC-IV demo data is not available";
  }
  const std::string mimic = shared + "/data/mimic-iv-demo-omop";
  if (!fs::exists(fs::path(mimic) / "person.csv")) {
    GTEST_SKIP() << mimic << "/person.csv is absent";
  }
  TempDir work;
  LoadOptions options;
  options.future_events = FutureEvents::kKeep;
  options.vocabulary_rules_file = work.Sub("rules.txt");
  ASSERT_TRUE(WriteFile(options.vocabulary_rules_file,
                        "condition source_concept_id 448* icd9cm\n"
                        "condition source_concept_id 352* icd10cm\n"
                        "condition source_concept_id 455* icd10cm\n"
                        "condition source_concept_id 456* icd10cm\n"));
  SnapshotBuilder builder("mimic");
  LoadReport report;
  ASSERT_TRUE(LoadOmopDirectory(mimic, options, &builder, &report).ok());
  CrosswalkLoadReport xreport;
  absl::StatusOr<std::shared_ptr<const CrosswalkSet>> gem = LoadCrosswalks(
      {shared + "/data/crosswalks/cms_gem2018_icd9cm_to_icd10cm.csv"},
      InvalidCrosswalkRows::kRefuse, &xreport);
  ASSERT_TRUE(gem.ok()) << gem.status();
  // As published: 24,860 rows, 422 of them no-map (NoDx).
  EXPECT_EQ((*gem)->tables()[0].rows.size() + (*gem)->tables()[0].no_map_rows,
            24860u);
  EXPECT_EQ((*gem)->tables()[0].no_map_rows, 422);
  std::shared_ptr<Snapshot> snap = builder.Build("mimic-1", 0);
  snap->crosswalks = *gem;
  const std::unique_ptr<CohortEngine> engine = NewIndexEngine(snap);
  auto count = [&](const std::string& text) -> int64_t {
    absl::StatusOr<v1::Query> q = query::ParseQuery(text + " as of 2200-01-01");
    EXPECT_TRUE(q.ok()) << q.status();
    if (!q.ok()) return -1;
    absl::StatusOr<std::vector<v1::Cell>> cells = engine->Count(*q);
    EXPECT_TRUE(cells.ok()) << cells.status();
    return cells.ok() ? (*cells)[0].count() : -1;
  };
  const int64_t icd9_type2 = count(
      "condition [icd9cm:25000, icd9cm:25002, icd9cm:25040, icd9cm:25042, "
      "icd9cm:25050, icd9cm:25060, icd9cm:25062, icd9cm:25080, "
      "icd9cm:25092]");
  const int64_t exact = count("condition icd10:E11* codes exact");
  const int64_t mapped = count("condition icd10:E11*");
  EXPECT_GT(icd9_type2, 0) << "the demo holds ICD-9-CM type 2 diabetes";
  EXPECT_GT(mapped, exact);
  // Every patient with one of those codes is in the mapped cohort.
  EXPECT_EQ(count("condition [icd9cm:25000, icd9cm:25002, icd9cm:25040, "
                  "icd9cm:25042, icd9cm:25050, icd9cm:25060, icd9cm:25062, "
                  "icd9cm:25080, icd9cm:25092] and not condition icd10:E11*"),
            0);
  // And none of them under `codes exact` unless also coded in ICD-10-CM.
  EXPECT_EQ(count("condition icd10:E11* codes exact and not condition "
                  "icd10:E11*"),
            0);
  absl::StatusOr<v1::Query> q =
      query::ParseQuery("condition icd10:E11* as of 2200-01-01");
  ASSERT_TRUE(q.ok());
  const v1::SiteExpansion e = engine->Explain(*q);
  ASSERT_EQ(e.codes_size(), 1) << e.ShortDebugString();
  EXPECT_EQ(e.codes(0).site_vocabulary(), "icd9cm");
  EXPECT_EQ(e.codes(0).crosswalk(), "cms_gem2018_icd9cm_to_icd10cm");
  // The README's count: 48 forward rows from 250.* to E11 (plus other
  // ICD-9-CM codes mapped into E11, and the rollups 250 and 250x).
  EXPECT_GE(e.codes(0).rows(), 48);
  EXPECT_GE(e.codes(0).approximate_rows(), 48);
  EXPECT_EQ(e.codes(0).sample_source_codes(0), "250");
}

// Without `as of` the reference date is the engine's clock's date, whatever
// the data holds: an event dated decades later moves no age.
TEST(DifferentialTest, DefaultReferenceDateIsTheClocksNotTheData) {
  SnapshotBuilder b("fr");
  ASSERT_TRUE(b.AddPerson(1, BirthKey(1920, 5, 3), v1::SEX_FEMALE).ok());
  ASSERT_TRUE(b.AddPerson(2, BirthKey(1930, 0, 0), v1::SEX_MALE).ok());
  b.FinishPersons();
  ASSERT_TRUE(b.BeginEvent(1, DaysFromCivil(1961, 2, 1), NAN).ok());
  b.AddEventCode(v1::DOMAIN_CONDITION, "icd10", "I10");
  ASSERT_TRUE(b.BeginEvent(2, DaysFromCivil(2031, 3, 1), NAN).ok());
  b.AddEventCode(v1::DOMAIN_CONDITION, "icd10", "E119");
  ASSERT_TRUE(b.MarkDeceased(1, DaysFromCivil(1969, 5, 1)).ok());
  std::shared_ptr<Snapshot> snap = b.Build("fr-1", 0);
  FakeClock clock(absl::FromCivil(absl::CivilSecond(1965, 3, 1, 23, 59, 59),
                                  absl::UTCTimeZone()));
  IndexEngineOptions options;
  options.clock = &clock;
  // On 1965-03-01 person 1 is 44 and person 2 (1 July 1930) is 34.
  absl::StatusOr<v1::Query> q = query::ParseQuery("age between 44 and 44");
  ASSERT_TRUE(q.ok()) << q.status();
  absl::StatusOr<std::vector<v1::Cell>> cells =
      NewIndexEngine(snap, options)->Count(*q);
  ASSERT_TRUE(cells.ok()) << cells.status();
  EXPECT_EQ((*cells)[0].count(), 1);
}

// The generator alone: deterministic, every grammar feature drawn, and the
// parser agrees with it on many more queries than the sites above run.
TEST(DifferentialTest, GeneratorCoversTheGrammar) {
  DataProfile profile;
  profile.persons = 1;
  auto add = [&](v1::Domain d, const char* vocab, const char* code,
                 std::vector<std::string> values = {}) {
    difftest::ProfileCode c;
    c.domain = d;
    c.vocabulary = vocab;
    c.code = code;
    c.patients = 10;
    c.values = std::move(values);
    profile.codes.push_back(c);
  };
  add(v1::DOMAIN_CONDITION, "cim10", "E119");
  add(v1::DOMAIN_CONDITION, "icd10cm", "E1165");
  add(v1::DOMAIN_CONDITION, "icd9cm", "25000");
  add(v1::DOMAIN_CONDITION, "concept", "201826");
  add(v1::DOMAIN_DRUG, "atc", "A10BA02");
  add(v1::DOMAIN_PROCEDURE, "ccam", "DEQP003");
  add(v1::DOMAIN_MEASUREMENT, "loinc", "4548-4", {"6.5", "7", "1e1"});
  add(v1::DOMAIN_OBSERVATION, "snomed", "77176002", {"1"});
  add(v1::DOMAIN_VISIT, "concept", "9202");
  QueryGenerator generator(profile);
  std::map<std::string, int> seen;
  for (uint64_t seed = 0; seed < 3000; ++seed) {
    const GeneratedQuery q = generator.Generate(seed);
    for (const std::string& f : q.features) ++seen[f];
    EXPECT_EQ(q.text, generator.Generate(seed).text);
    absl::StatusOr<v1::Query> parsed = query::ParseQuery(q.text);
    ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n  " << q.text;
    EXPECT_TRUE(
        google::protobuf::util::MessageDifferencer::Equals(*parsed, q.ast))
        << q.text << "\n  expected " << q.ast.ShortDebugString()
        << "\n  parsed " << parsed->ShortDebugString();
  }
  for (const std::string& f : QueryGenerator::AllFeatures()) {
    EXPECT_GE(seen[f], 10) << "feature " << f << " is (almost) never drawn";
  }
}

}  // namespace
}  // namespace passerelle::node
