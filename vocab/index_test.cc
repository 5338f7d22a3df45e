#include "vocab/index.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "vocab/labels.h"
#include "vocab/search.h"
#include "vocab/test_fixture.h"

namespace passerelle::vocab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::WriteFixtureNomenclatures;

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFixtureNomenclatures(dir_);
    absl::StatusOr<std::unique_ptr<Labels>> labels = Labels::Load(dir_.path());
    ASSERT_TRUE(labels.ok()) << labels.status();
    labels_ = std::move(*labels);
    index_ = (fs::path(out_.path()) / "index").string();
  }

  // Rewrites one key of the built index.
  void Poke(const std::string& key, const std::string& value) {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), index_, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
    ASSERT_TRUE(db->Close().ok());
  }

  TempDir dir_, out_;
  std::unique_ptr<Labels> labels_;
  std::string index_;
};

TEST_F(IndexTest, GivesExactlyWhatTheFilesGive) {
  ASSERT_TRUE(BuildIndex(*labels_, dir_.path(), index_).ok());
  std::string stale = "unset";
  absl::StatusOr<std::unique_ptr<Labels>> indexed =
      Labels::LoadIndex(index_, {}, &stale);
  ASSERT_TRUE(indexed.ok()) << indexed.status();
  EXPECT_EQ(stale, "");
  ASSERT_EQ((*indexed)->tables().size(), labels_->tables().size());
  for (size_t t = 0; t < labels_->tables().size(); ++t) {
    const Labels::Table& a = labels_->tables()[t];
    const Labels::Table& b = (*indexed)->tables()[t];
    EXPECT_EQ(a.vocabulary, b.vocabulary);
    ASSERT_EQ(a.entries.size(), b.entries.size()) << a.vocabulary;
    for (size_t i = 0; i < a.entries.size(); ++i) {
      EXPECT_EQ(a.entries[i].code, b.entries[i].code);
      EXPECT_EQ(a.entries[i].label, b.entries[i].label);
      EXPECT_EQ(a.entries[i].folded, b.entries[i].folded);
      EXPECT_EQ(a.Get(i).source, b.Get(i).source);
    }
  }
  ASSERT_EQ((*indexed)->sources().size(), labels_->sources().size());
  for (size_t i = 0; i < labels_->sources().size(); ++i) {
    const SourceReport& a = labels_->sources()[i];
    const SourceReport& b = (*indexed)->sources()[i];
    EXPECT_EQ(a.file, b.file);
    EXPECT_EQ(a.present, b.present);
    EXPECT_EQ(a.rows, b.rows);
    EXPECT_EQ(a.labelled, b.labelled);
    EXPECT_EQ(a.invalid, b.invalid);
    EXPECT_EQ(a.invalid_examples, b.invalid_examples);
  }
  absl::StatusOr<SearchResult> r = Search(**indexed, "diabète");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->total, Search(*labels_, "diabète")->total);
  EXPECT_EQ((*indexed)->Find("icd10", "E11.9")->en(),
            "Type 2 diabetes mellitus without complications");
  // Only the vocabularies asked for are read.
  LoadOptions atc;
  atc.vocabularies = {"atc"};
  indexed = Labels::LoadIndex(index_, atc);
  ASSERT_TRUE(indexed.ok());
  EXPECT_EQ((*indexed)->tables().size(), 1u);
  EXPECT_EQ((*indexed)->Find("atc", "A10BA02")->fr(), "METFORMINE");
}

TEST_F(IndexTest, RebuildReplacesAndChangedFilesAreStale) {
  ASSERT_TRUE(BuildIndex(*labels_, dir_.path(), index_).ok());
  dir_.Write("snds/nomenclatures/openmedic_ATC2.csv",
             "ATC2;Libellé ATC2\nA10;MEDICAMENTS UTILISES DANS LE DIABETE\n");
  std::string stale;
  ASSERT_TRUE(Labels::LoadIndex(index_, {}, &stale).ok());
  EXPECT_THAT(stale, HasSubstr("have changed"));
  absl::StatusOr<std::unique_ptr<Labels>> fresh = Labels::Load(dir_.path());
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(BuildIndex(**fresh, dir_.path(), index_).ok());
  absl::StatusOr<std::unique_ptr<Labels>> indexed =
      Labels::LoadIndex(index_, {}, &stale);
  ASSERT_TRUE(indexed.ok());
  EXPECT_EQ(stale, "");
  EXPECT_EQ((*indexed)->Find("atc", "A10")->fr(),
            "MEDICAMENTS UTILISES DANS LE DIABETE");
  // Nothing is left beside it.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(out_.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST_F(IndexTest, NeverOverwritesSomethingElse) {
  fs::create_directories(index_);
  out_.Write("index/notes.txt", "precious");
  absl::Status s = BuildIndex(*labels_, dir_.path(), index_);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("not a vocabulary index"));
  EXPECT_TRUE(fs::exists(fs::path(index_) / "notes.txt"));
  out_.Write("file", "x");
  EXPECT_EQ(BuildIndex(*labels_, dir_.path(), out_.path() + "/file").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(IndexTest, DamagedOrMissingIndexesAreRefusedClearly) {
  absl::StatusOr<std::unique_ptr<Labels>> r = Labels::LoadIndex(index_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("passerelle vocab index"));

  ASSERT_TRUE(BuildIndex(*labels_, dir_.path(), index_).ok());
  // A chunk cut short.
  Poke("t:cim10:000000", std::string("\x05\x00\x00\x00"
                                     "E1",
                                     6));
  r = Labels::LoadIndex(index_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("chunk 0 of cim10 is truncated"));
  // A length that claims more than the value holds (4 GiB).
  Poke("t:cim10:000000", std::string("\xFF\xFF\xFF\xFF"
                                     "E11",
                                     7));
  EXPECT_EQ(Labels::LoadIndex(index_).status().code(),
            absl::StatusCode::kDataLoss);
  // Codes out of order.
  std::string two;
  for (const char* code : {"E11", "E10"}) {
    two += std::string("\x03\x00\x00\x00", 4) + code;
    for (int field = 0; field < 2; ++field) {
      two += std::string("\x01\x00\x00\x00", 4) + "x";
      two += std::string("\x00\x00\x00\x00", 4);
    }
  }
  Poke("t:cim10:000000", two);
  EXPECT_THAT(Labels::LoadIndex(index_).status().message(),
              HasSubstr("out of order"));
  // A chunk missing from the sequence.
  ASSERT_TRUE(BuildIndex(*labels_, dir_.path(), index_).ok());
  Poke("t:cim10:000002", two);
  EXPECT_THAT(Labels::LoadIndex(index_).status().message(),
              HasSubstr("out of sequence"));
  // Damage to a vocabulary not asked for does not matter.
  LoadOptions atc;
  atc.vocabularies = {"atc"};
  EXPECT_TRUE(Labels::LoadIndex(index_, atc).ok());
  // Another format.
  Poke("m:format", "passerelle-vocab-index-99");
  r = Labels::LoadIndex(index_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("rebuild"));
  Poke("m:sources", "garbage");
  Poke("m:format", "passerelle-vocab-index-1");
  EXPECT_EQ(Labels::LoadIndex(index_).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace passerelle::vocab
