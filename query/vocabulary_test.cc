#include "query/vocabulary.h"

#include "gtest/gtest.h"

namespace passerelle::query {
namespace {

TEST(VocabularyTest, KnownVocabularies) {
  for (const char* v :
       {"icd10", "icd10cm", "icd10ca", "cim10", "icd9", "icd9cm", "atc", "ccam",
        "snomed", "rxnorm", "loinc", "ndc", "concept"}) {
    EXPECT_TRUE(IsKnownVocabulary(v)) << v;
  }
  EXPECT_EQ(KnownVocabularies().size(), 17u);
  EXPECT_TRUE(IsKnownVocabulary("din"));
  EXPECT_TRUE(IsKnownVocabulary("cip13"));
  EXPECT_TRUE(IsKnownVocabulary("ucd"));
  EXPECT_TRUE(IsKnownVocabulary("cci"));
  for (const char* v : {"", "icd11", "ICD10", "icd-10", "omop", "icd10 "}) {
    EXPECT_FALSE(IsKnownVocabulary(v)) << v;
  }
}

TEST(VocabularyTest, IcdFamily) {
  for (const char* v :
       {"icd10", "icd10cm", "icd10ca", "cim10", "icd9", "icd9cm"}) {
    EXPECT_TRUE(IsIcdVocabulary(v)) << v;
  }
  for (const char* v : {"atc", "ccam", "snomed", "loinc", "concept", "icd11"}) {
    EXPECT_FALSE(IsIcdVocabulary(v)) << v;
  }
}

TEST(VocabularyTest, NormalizeCode) {
  EXPECT_EQ(NormalizeCode("icd10", "E11.9"), "E119");
  EXPECT_EQ(NormalizeCode("icd10", "e119"), "E119");
  EXPECT_EQ(NormalizeCode("cim10", "I10    "), "I10");
  EXPECT_EQ(NormalizeCode("icd10cm", " e11 . 9 "), "E119");
  EXPECT_EQ(NormalizeCode("icd9", "250.00"), "25000");
  EXPECT_EQ(NormalizeCode("atc", " a10ba02\t"), "A10BA02");
  // Outside ICD, dots and inner characters are kept.
  EXPECT_EQ(NormalizeCode("loinc", "4548-4"), "4548-4");
  EXPECT_EQ(NormalizeCode("snomed", " 44054006 "), "44054006");
  EXPECT_EQ(NormalizeCode("ndc", "0002-8215.01"), "0002-8215.01");
  EXPECT_EQ(NormalizeCode("icd10", ""), "");
  EXPECT_EQ(NormalizeCode("icd10", "   "), "");
}

TEST(VocabularyTest, IsValidCode) {
  EXPECT_TRUE(IsValidCode("icd10", "E119"));
  EXPECT_FALSE(IsValidCode("icd10", "E11.9"));  // Not normalised.
  EXPECT_FALSE(IsValidCode("icd10", "e119"));
  EXPECT_FALSE(IsValidCode("icd10", ""));
  EXPECT_FALSE(IsValidCode("icd10", "E11-9"));
  EXPECT_TRUE(IsValidCode("concept", "201826"));
  EXPECT_FALSE(IsValidCode("concept", "2018A"));
  EXPECT_TRUE(IsValidCode("loinc", "4548-4"));
  EXPECT_FALSE(IsValidCode("loinc", "-4548"));
  EXPECT_FALSE(IsValidCode("loinc", "45 48"));
  EXPECT_TRUE(IsValidCode("atc", std::string(40, 'A')));
  EXPECT_FALSE(IsValidCode("atc", std::string(41, 'A')));
}

TEST(VocabularyTest, Matches) {
  for (const char* d : {"icd10", "icd10cm", "icd10ca", "cim10"}) {
    EXPECT_TRUE(VocabularyMatches("icd10", d)) << d;
  }
  EXPECT_FALSE(VocabularyMatches("icd10", "icd9"));
  EXPECT_FALSE(VocabularyMatches("icd10cm", "icd10"));
  EXPECT_FALSE(VocabularyMatches("icd10cm", "cim10"));
  EXPECT_TRUE(VocabularyMatches("cim10", "cim10"));
  EXPECT_TRUE(VocabularyMatches("icd9", "icd9cm"));
  EXPECT_TRUE(VocabularyMatches("icd9", "icd9"));
  EXPECT_FALSE(VocabularyMatches("icd9cm", "icd9"));
  EXPECT_FALSE(VocabularyMatches("icd9", "icd10"));
  EXPECT_TRUE(VocabularyMatches("atc", "atc"));
  EXPECT_FALSE(VocabularyMatches("atc", "ATC"));
  EXPECT_FALSE(VocabularyMatches("atc", "rxnorm"));
}

TEST(VocabularyTest, Covers) {
  EXPECT_TRUE(VocabularyCovers("icd10", "icd10cm"));
  EXPECT_TRUE(VocabularyCovers("icd10", "icd10"));
  EXPECT_FALSE(VocabularyCovers("icd10cm", "icd10"));
  EXPECT_FALSE(VocabularyCovers("icd10cm", "cim10"));
  EXPECT_TRUE(VocabularyCovers("icd9", "icd9cm"));
  EXPECT_FALSE(VocabularyCovers("atc", "foo"));
  EXPECT_FALSE(VocabularyCovers("foo", "atc"));
}

}  // namespace
}  // namespace passerelle::query
