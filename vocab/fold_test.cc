#include "vocab/fold.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::vocab {
namespace {

using ::testing::ElementsAre;

TEST(FoldTest, AccentsCaseAndPunctuation) {
  EXPECT_EQ(Fold("Diabète sucré"), "diabete sucre");
  EXPECT_EQ(Fold("DIABÈTE SUCRÉ"), "diabete sucre");
  EXPECT_EQ(Fold("diabete-sucre"), "diabete sucre");
  EXPECT_EQ(Fold("  Reflux gastro-œsophagien (RGO)  "),
            "reflux gastro oesophagien rgo");
  EXPECT_EQ(Fold("Œdème, Ærosol, Straße"), "oedeme aerosol strasse");
  EXPECT_EQ(Fold("l’ulcère « peptique »"), "l ulcere peptique");
  EXPECT_EQ(Fold("500 µg/ml"), "500 ug ml");
  EXPECT_EQ(Fold("Ça, Ñandú, Łódź"), "ca nandu lodz");
  EXPECT_EQ(Fold("E11.9"), "e11 9");
  EXPECT_EQ(Fold(""), "");
  EXPECT_EQ(Fold("--- ,;"), "");
}

TEST(FoldTest, DecomposedAccentsFoldLikeComposedOnes) {
  // "é" as e + U+0301 COMBINING ACUTE ACCENT.
  EXPECT_EQ(Fold("diabe\xCC\x81te"), "diabete");
  EXPECT_EQ(Fold("diabe\xCC\x81te"), Fold("diabète"));
}

TEST(FoldTest, OtherScriptsAreKeptAndInvalidBytesSeparate) {
  EXPECT_EQ(Fold("bêta β"), "beta β");
  EXPECT_EQ(Fold("ab\xFF"
                 "cd"),
            "ab cd");
  EXPECT_EQ(Fold("ab\xC3"), "ab");
  EXPECT_EQ(Fold("\xE9t\xE9"), "t");  // cp1252 "été"
}

TEST(FoldTest, Words) {
  EXPECT_THAT(FoldWords("Diabète sucré de type 2, sans complication"),
              ElementsAre("diabete", "sucre", "de", "type", "2", "sans",
                          "complication"));
  EXPECT_TRUE(FoldWords(" ;, ").empty());
}

TEST(Utf8Test, ValidAndInvalid) {
  EXPECT_TRUE(IsValidUtf8("Diabète sucré œ β 😀"));
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_FALSE(IsValidUtf8("Diab\xE8te"));        // cp1252
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation
}

}  // namespace
}  // namespace passerelle::vocab
