#include "synth/snapshot_sink.h"

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/engine.h"
#include "node/omop_loader.h"
#include "node/store.h"
#include "query/parser.h"
#include "query/validate.h"
#include "synth/omop_writer.h"

namespace passerelle::synth {
namespace {

using node::Posting;
using node::Snapshot;
using node::SnapshotBuilder;

class SnapshotSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/snapshot_sink_test_XXXXXX";
    dir_ = ::mkdtemp(pattern.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::unique_ptr<Generator> MakeGenerator(
      int64_t patients, const std::string& site,
      Coding coding = Coding::kSite) {
    GeneratorOptions options;
    options.patients = patients;
    options.seed = 20240601;
    options.site = site;
    options.coding = coding;
    auto generator = Generator::Create(options);
    EXPECT_TRUE(generator.ok()) << generator.status();
    return std::move(*generator);
  }

  static std::shared_ptr<Snapshot> Direct(const Generator& g) {
    SnapshotBuilder builder(g.options().site);
    EXPECT_TRUE(FillSnapshot(g, &builder).ok());
    return builder.Build("v-1", 1);
  }

  std::shared_ptr<Snapshot> ViaCsv(const Generator& g, const std::string& sub) {
    const std::string csv = dir_ + "/" + sub;
    EXPECT_TRUE(WriteOmopCsv(g, csv).ok());
    SnapshotBuilder builder(g.options().site);
    node::LoadReport report;
    absl::Status st = node::LoadOmopDirectory(csv, {}, &builder, &report);
    EXPECT_TRUE(st.ok()) << st;
    EXPECT_EQ(report.rejected, 0);
    return builder.Build("v-1", 1);
  }

  std::string dir_;
};

bool SameBits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() &&
         (a.empty() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

// Equal snapshots. Row ordinals (`events`) are compared exactly, or, when
// `exact_events` is false, up to one renumbering consistent across every
// posting (the CSV loader numbers rows table by table, the direct path
// patient by patient; queries only compare ordinals for equality).
void ExpectSameSnapshot(const Snapshot& a, const Snapshot& b,
                        bool exact_events) {
  EXPECT_EQ(a.meta.site, b.meta.site);
  EXPECT_EQ(a.meta.persons, b.meta.persons);
  EXPECT_EQ(a.meta.events, b.meta.events);
  EXPECT_EQ(a.birth_keys, b.birth_keys);
  EXPECT_EQ(a.sex, b.sex);
  EXPECT_TRUE(a.deceased == b.deceased);
  ASSERT_EQ(a.tables.size(), b.tables.size());
  absl::flat_hash_map<uint32_t, uint32_t> forward, backward;
  int64_t postings = 0, entries = 0, mismatches = 0;
  for (auto ia = a.tables.begin(), ib = b.tables.begin(); ia != a.tables.end();
       ++ia, ++ib) {
    ASSERT_EQ(ia->first, ib->first);
    ASSERT_EQ(ia->second.codes, ib->second.codes) << ia->first.second;
    ASSERT_EQ(ia->second.postings.size(), ia->second.codes.size());
    for (size_t c = 0; c < ia->second.postings.size(); ++c) {
      const Posting& pa = *ia->second.postings[c];
      const Posting& pb = *ib->second.postings[c];
      const std::string what = ia->first.second + ":" + ia->second.codes[c];
      ++postings;
      entries += static_cast<int64_t>(pa.size());
      if (pa.patients != pb.patients || pa.days != pb.days ||
          !SameBits(pa.values, pb.values) || !(pa.bitmap == pb.bitmap)) {
        ADD_FAILURE() << "posting " << what << " differs";
        if (++mismatches > 5) return;
        continue;
      }
      if (exact_events) {
        if (pa.events != pb.events) {
          ADD_FAILURE() << "row ordinals of " << what << " differ";
          if (++mismatches > 5) return;
        }
        continue;
      }
      for (size_t i = 0; i < pa.size(); ++i) {
        auto f = forward.emplace(pa.events[i], pb.events[i]).first;
        auto r = backward.emplace(pb.events[i], pa.events[i]).first;
        if (f->second != pb.events[i] || r->second != pa.events[i]) {
          ADD_FAILURE() << "row ordinals of " << what
                        << " are not one renumbering";
          if (++mismatches > 5) return;
          break;
        }
      }
    }
  }
  EXPECT_GT(postings, 100);
  EXPECT_GT(entries,
            a.meta.events);  // Each row under its concept and its code.
}

const char* const kQueries[] = {
    "condition icd10:E11* and sex = male and birth_year between 1940 and 1960",
    "condition icd10:E11* and sex = female and age between 40 and 65",
    "condition icd10:E11* group by sex, age_band(10)",
    "condition icd10:E11* before drug atc:A10BA02 within 365 days",
    "condition [icd10:I10, icd10:I11*, icd10:I15*] or drug atc:C09*",
    "condition icd10:I10* at least 3 times",
    "measurement loinc:4548-4 value > 6.5",
    // The site codings' own vocabularies.
    "condition icd9:250* or condition icd9:401",
    "drug din:02099233 or drug [cip13:3400927967184, cip13:3400927970207]",
    "drug ucd:0000009210845 or drug ucd:0000009412796",
};

std::vector<int64_t> Counts(std::shared_ptr<Snapshot> snap) {
  std::unique_ptr<node::CohortEngine> engine =
      node::NewIndexEngine(std::move(snap));
  std::vector<int64_t> out;
  for (const char* text : kQueries) {
    absl::StatusOr<v1::Query> q = query::ParseQuery(text);
    EXPECT_TRUE(q.ok()) << text << ": " << q.status();
    if (!q.ok()) continue;
    absl::StatusOr<std::vector<v1::Cell>> cells = engine->Count(*q);
    EXPECT_TRUE(cells.ok()) << text << ": " << cells.status();
    if (!cells.ok()) continue;
    for (const v1::Cell& c : *cells) out.push_back(c.count());
  }
  return out;
}

// The vocabularies (domain, vocabulary) a snapshot holds codes in.
std::set<std::string> Vocabularies(const Snapshot& snap) {
  std::set<std::string> out;
  for (const auto& [key, table] : snap.tables) {
    if (key.second != "concept") {
      out.insert(absl::StrCat(v1::Domain_Name(key.first), ":", key.second));
    }
  }
  return out;
}

TEST_F(SnapshotSinkTest, DirectPathEqualsCsvLoadedPath) {
  for (const char* site : {"fr", "qc", "zz"}) {
    for (Coding coding : {Coding::kSite, Coding::kUniform}) {
      SCOPED_TRACE(absl::StrCat(site, " ", CodingName(coding)));
      std::unique_ptr<Generator> g = MakeGenerator(1500, site, coding);
      std::shared_ptr<Snapshot> csv =
          ViaCsv(*g, absl::StrCat(site, CodingName(coding)));
      std::shared_ptr<Snapshot> direct = Direct(*g);
      EXPECT_EQ(csv->meta.persons, 1500);
      ExpectSameSnapshot(*csv, *direct, /*exact_events=*/false);
      const std::vector<int64_t> counts = Counts(direct);
      EXPECT_EQ(Counts(csv), counts);
      int64_t nonzero = 0;
      for (int64_t c : counts) nonzero += c > 0;
      EXPECT_GT(nonzero, 5) << "the queries should find patients";
      // The loader reads the site codings' vocabulary_ids as the query
      // language's vocabularies.
      const std::set<std::string> vocabularies = Vocabularies(*csv);
      EXPECT_EQ(Vocabularies(*direct), vocabularies);
      const bool site_coded =
          coding == Coding::kSite && std::string(site) != "zz";
      EXPECT_EQ(vocabularies.count("DOMAIN_DRUG:atc"), site_coded ? 0u : 1u);
      if (site_coded && std::string(site) == "qc") {
        EXPECT_TRUE(vocabularies.count("DOMAIN_CONDITION:icd9"));
        EXPECT_TRUE(vocabularies.count("DOMAIN_CONDITION:icd10ca"));
        EXPECT_TRUE(vocabularies.count("DOMAIN_DRUG:din"));
      } else if (site_coded) {
        EXPECT_TRUE(vocabularies.count("DOMAIN_CONDITION:cim10"));
        EXPECT_TRUE(vocabularies.count("DOMAIN_DRUG:cip13"));
        EXPECT_TRUE(vocabularies.count("DOMAIN_DRUG:ucd"));
      }
    }
  }
}

TEST_F(SnapshotSinkTest, SameSeedSameSnapshotDifferentSeedNot) {
  std::unique_ptr<Generator> g = MakeGenerator(800, "fr");
  ExpectSameSnapshot(*Direct(*g), *Direct(*g), /*exact_events=*/true);
  GeneratorOptions other = g->options();
  other.seed += 1;
  auto g2 = Generator::Create(other);
  ASSERT_TRUE(g2.ok());
  EXPECT_NE(Direct(*g)->birth_keys, Direct(**g2)->birth_keys);
}

TEST_F(SnapshotSinkTest, StoreRoundTripIsExactAlsoWithManyChunks) {
  std::unique_ptr<Generator> g = MakeGenerator(1000, "qc");
  std::shared_ptr<Snapshot> direct = Direct(*g);
  for (uint32_t chunk : {0u, 7u}) {  // 0: the default chunk size.
    SCOPED_TRACE(chunk);
    const std::string store_dir = dir_ + "/store" + std::to_string(chunk);
    auto store = node::NodeStore::Open(store_dir);
    ASSERT_TRUE(store.ok()) << store.status();
    if (chunk > 0) (*store)->set_posting_chunk_for_testing(chunk);
    auto version = (*store)->NextVersion("qc", 1);
    ASSERT_TRUE(version.ok());
    direct->meta.version = *version;
    ASSERT_TRUE((*store)->Commit(*direct).ok());
    store->reset();
    auto reopened = node::NodeStore::Open(store_dir);
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    auto loaded = (*reopened)->LoadCurrent();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ((*loaded)->meta.version, *version);
    ExpectSameSnapshot(*direct, **loaded, /*exact_events=*/true);
    EXPECT_EQ(Counts(*loaded), Counts(direct));
  }
}

TEST_F(SnapshotSinkTest, RefusesABuilderThatHasPersons) {
  std::unique_ptr<Generator> g = MakeGenerator(10, "fr");
  SnapshotBuilder builder("fr");
  ASSERT_TRUE(builder.AddPerson(1, 19500701, v1::SEX_MALE).ok());
  EXPECT_EQ(FillSnapshot(*g, &builder).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace passerelle::synth
