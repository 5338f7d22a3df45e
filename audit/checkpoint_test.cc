#include "audit/checkpoint.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "audit/merkle.h"
#include "gtest/gtest.h"

namespace passerelle::audit {
namespace {

// The example key and note of golang.org/x/mod/sumdb/note (an independent
// implementation of the signed-note format).
constexpr char kGoSkeyB64[] = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
constexpr char kGoVkey[] =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr char kGoText[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
constexpr char kGoNote[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\xE2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdng"
    "otpRZb6KE6RyyBwJnAM=\n";

std::unique_ptr<SigningKey> GoKey() {
  std::string skey;
  EXPECT_TRUE(absl::Base64Unescape(kGoSkeyB64, &skey));
  auto key = SigningKey::FromSeed(skey.substr(1));  // Drop the 0x01 type.
  EXPECT_TRUE(key.ok()) << key.status();
  return *std::move(key);
}

TEST(NoteTest, MatchesGoSumdbNoteExample) {
  std::unique_ptr<SigningKey> key = GoKey();
  EXPECT_EQ(NoteVerifierKey("PeterNeumann", key->public_key()), kGoVkey);
  auto note = SignNote(kGoText, "PeterNeumann", *key);
  ASSERT_TRUE(note.ok()) << note.status();
  EXPECT_EQ(*note, kGoNote);
  auto pub = VerifyingKey::FromRaw(key->public_key());
  ASSERT_TRUE(pub.ok());
  auto text = OpenNote(kGoNote, "PeterNeumann", *pub);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, kGoText);
  EXPECT_EQ(OpenNote(kGoNote, "PaulNeumann", *pub).status().code(),
            absl::StatusCode::kUnauthenticated);
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = *SigningKey::Generate();
    pub_ = std::make_unique<VerifyingKey>(
        *VerifyingKey::FromRaw(key_->public_key()));
    cp_.origin = "passerelle.test/gateway";
    cp_.size = 42;
    cp_.root_hash = Sha256("root");
  }
  std::unique_ptr<SigningKey> key_;
  std::unique_ptr<VerifyingKey> pub_;
  Checkpoint cp_;
};

TEST_F(CheckpointTest, FormatIsTlogCheckpointSignedNote) {
  auto note = SignCheckpoint(cp_, cp_.origin, *key_);
  ASSERT_TRUE(note.ok()) << note.status();
  const std::string prefix = absl::StrCat(
      "passerelle.test/gateway\n42\n", absl::Base64Escape(cp_.root_hash),
      "\n\n\xE2\x80\x94 passerelle.test/gateway ");
  ASSERT_EQ(note->substr(0, prefix.size()), prefix);
  std::string blob;
  ASSERT_TRUE(absl::Base64Unescape(
      note->substr(prefix.size(), note->size() - prefix.size() - 1), &blob));
  EXPECT_EQ(blob.size(), 4 + kEd25519SignatureSize);
  EXPECT_EQ(blob.substr(0, 4), NoteKeyHash(cp_.origin, key_->public_key()));
  EXPECT_EQ(note->back(), '\n');

  auto opened = OpenCheckpoint(*note, cp_.origin, *pub_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, cp_);
  auto parsed = ParseCheckpointNote(*note);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, cp_);
}

TEST_F(CheckpointTest, TamperingIsUnauthenticated) {
  const std::string note = *SignCheckpoint(cp_, cp_.origin, *key_);
  // A different size.
  std::string changed = note;
  changed.replace(changed.find("\n42\n"), 4, "\n43\n");
  EXPECT_EQ(OpenCheckpoint(changed, cp_.origin, *pub_).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A different root, re-signed by another key.
  Checkpoint forged = cp_;
  forged.root_hash = Sha256("other");
  auto other_key = *SigningKey::Generate();
  const std::string forged_note =
      *SignCheckpoint(forged, cp_.origin, *other_key);
  EXPECT_EQ(OpenCheckpoint(forged_note, cp_.origin, *pub_).status().code(),
            absl::StatusCode::kUnauthenticated);
  // Another signature under the right name and key hash.
  std::string bad_sig = note;
  bad_sig[bad_sig.size() - 10] =
      bad_sig[bad_sig.size() - 10] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(OpenCheckpoint(bad_sig, cp_.origin, *pub_).ok());
}

TEST_F(CheckpointTest, MalformedNotesAreInvalidArgument) {
  for (const std::string& bad :
       {std::string("no blank line\n"), std::string("origin\n1\n\n"),
        absl::StrCat("o\n01\n", absl::Base64Escape(cp_.root_hash),
                     "\n\n\xE2\x80\x94 o AAAA\n"),
        absl::StrCat("o\n1\nshort\n\n\xE2\x80\x94 o AAAA\n"),
        absl::StrCat("o\n1\n", absl::Base64Escape(cp_.root_hash),
                     "\n\n- o AAAA\n")}) {
    EXPECT_EQ(OpenCheckpoint(bad, "o", *pub_).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(SignCheckpoint(cp_, "bad name", *key_).status().code(),
            absl::StatusCode::kInvalidArgument);
  Checkpoint short_root = cp_;
  short_root.root_hash = "x";
  EXPECT_EQ(SignCheckpoint(short_root, "o", *key_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace passerelle::audit
