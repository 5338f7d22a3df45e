#include "audit/signer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace passerelle::audit {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "signer_test.XXXXXX");
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(SignerTest, SignAndVerify) {
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok()) << key.status();
  auto sig = (*key)->Sign("hello");
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(sig->size(), kEd25519SignatureSize);
  auto pub = VerifyingKey::FromRaw((*key)->public_key());
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_TRUE(pub->Verify("hello", *sig).ok());
  EXPECT_EQ(pub->Verify("hellO", *sig).code(),
            absl::StatusCode::kUnauthenticated);
  std::string bad = *sig;
  bad[10] ^= 1;
  EXPECT_EQ(pub->Verify("hello", bad).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(pub->Verify("hello", "short").code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(SignerTest, PemRoundTrips) {
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  auto priv_pem = (*key)->PrivateKeyPem();
  ASSERT_TRUE(priv_pem.ok());
  EXPECT_NE(priv_pem->find("BEGIN PRIVATE KEY"), std::string::npos);
  auto again = SigningKey::FromPem(*priv_pem);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->public_key(), (*key)->public_key());

  auto pub_pem = (*key)->PublicKeyPem();
  ASSERT_TRUE(pub_pem.ok());
  auto pub = VerifyingKey::FromPem(*pub_pem);
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(pub->raw(), (*key)->public_key());
  auto pem2 = pub->ToPem();
  ASSERT_TRUE(pem2.ok());
  EXPECT_EQ(*pem2, *pub_pem);

  EXPECT_EQ(SigningKey::FromPem("garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyingKey::FromPem("garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyingKey::FromRaw("short").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SignerTest, LoadOrCreateWritesPrivateFileOnceAndReloadsIt) {
  TempDir dir;
  const std::string path = dir.path() + "/log.key";
  auto created = LoadOrCreateSigningKey(path);
  ASSERT_TRUE(created.ok()) << created.status();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto loaded = LoadOrCreateSigningKey(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->public_key(), (*created)->public_key());
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(SignerTest, RefusesKeyReadableByOthers) {
  TempDir dir;
  const std::string path = dir.path() + "/log.key";
  ASSERT_TRUE(LoadOrCreateSigningKey(path).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  EXPECT_EQ(LoadOrCreateSigningKey(path).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SignerTest, PublicKeyFile) {
  TempDir dir;
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  const std::string path = dir.path() + "/log.pub";
  ASSERT_TRUE(WriteFileSynced(path, *(*key)->PublicKeyPem(), 0644, false).ok());
  auto pub = ReadPublicKeyFile(path);
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(pub->raw(), (*key)->public_key());
  EXPECT_EQ(ReadPublicKeyFile(dir.path() + "/missing").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(WriteFileSynced(path, "x", 0644, /*exclusive=*/true).code(),
            absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace passerelle::audit
