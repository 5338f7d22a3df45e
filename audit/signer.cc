#include "audit/signer.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace passerelle::audit {

void EvpPkeyDeleter::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

namespace {

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using ScopedBio = std::unique_ptr<BIO, BioDeleter>;

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using ScopedMdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

// Converts the OpenSSL error queue into a status (and clears it).
absl::Status OpenSslError(absl::StatusCode code, absl::string_view what) {
  std::string detail;
  unsigned long err;
  while ((err = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!detail.empty()) detail += "; ";
    detail += buf;
  }
  return absl::Status(code, detail.empty() ? std::string(what)
                                           : absl::StrCat(what, ": ", detail));
}

absl::StatusOr<std::string> RawPublicKey(EVP_PKEY* key) {
  size_t len = kEd25519PublicKeySize;
  std::string out(len, '\0');
  if (EVP_PKEY_get_raw_public_key(
          key, reinterpret_cast<unsigned char*>(out.data()), &len) != 1 ||
      len != kEd25519PublicKeySize) {
    return OpenSslError(absl::StatusCode::kInternal,
                        "cannot extract Ed25519 public key");
  }
  return out;
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, len > 0 ? len : 0);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

absl::StatusOr<ScopedEvpPkey> PublicKeyFromRaw(absl::string_view raw) {
  ScopedEvpPkey key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr,
      reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));
  if (key == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "not an Ed25519 public key");
  }
  return key;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::Generate() {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (raw == nullptr) {
    return OpenSslError(absl::StatusCode::kInternal,
                        "Ed25519 key generation failed");
  }
  ScopedEvpPkey key(raw);
  PASSERELLE_ASSIGN_OR_RETURN(std::string pub, RawPublicKey(key.get()));
  return std::unique_ptr<SigningKey>(
      new SigningKey(std::move(key), std::move(pub)));
}

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::FromSeed(
    absl::string_view seed) {
  if (seed.size() != 32) {
    return absl::InvalidArgumentError("Ed25519 seed must be 32 bytes");
  }
  ScopedEvpPkey key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr,
      reinterpret_cast<const unsigned char*>(seed.data()), seed.size()));
  if (key == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "not an Ed25519 private key");
  }
  PASSERELLE_ASSIGN_OR_RETURN(std::string pub, RawPublicKey(key.get()));
  return std::unique_ptr<SigningKey>(
      new SigningKey(std::move(key), std::move(pub)));
}

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::FromPem(
    absl::string_view pem) {
  ScopedBio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  ScopedEvpPkey key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "cannot parse PEM private key");
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("private key is not Ed25519");
  }
  PASSERELLE_ASSIGN_OR_RETURN(std::string pub, RawPublicKey(key.get()));
  return std::unique_ptr<SigningKey>(
      new SigningKey(std::move(key), std::move(pub)));
}

absl::StatusOr<std::string> SigningKey::Sign(absl::string_view message) const {
  ScopedMdCtx ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return absl::ResourceExhaustedError("EVP_MD_CTX_new");
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) !=
      1) {
    return OpenSslError(absl::StatusCode::kInternal, "EVP_DigestSignInit");
  }
  size_t len = kEd25519SignatureSize;
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()),
                     &len,
                     reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1 ||
      len != kEd25519SignatureSize) {
    return OpenSslError(absl::StatusCode::kInternal, "Ed25519 signing failed");
  }
  return sig;
}

absl::StatusOr<std::string> SigningKey::PrivateKeyPem() const {
  ScopedBio bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0,
                               nullptr, nullptr) != 1) {
    return OpenSslError(absl::StatusCode::kInternal,
                        "cannot encode private key");
  }
  return BioContents(bio.get());
}

absl::StatusOr<std::string> SigningKey::PublicKeyPem() const {
  ScopedBio bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal,
                        "cannot encode public key");
  }
  return BioContents(bio.get());
}

absl::StatusOr<VerifyingKey> VerifyingKey::FromRaw(absl::string_view raw) {
  if (raw.size() != kEd25519PublicKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("Ed25519 public key is ", raw.size(), " bytes, want 32"));
  }
  PASSERELLE_ASSIGN_OR_RETURN(ScopedEvpPkey key, PublicKeyFromRaw(raw));
  return VerifyingKey(std::string(raw),
                      std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free));
}

absl::StatusOr<VerifyingKey> VerifyingKey::FromPem(absl::string_view pem) {
  ScopedBio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  ScopedEvpPkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "cannot parse PEM public key");
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("public key is not Ed25519");
  }
  PASSERELLE_ASSIGN_OR_RETURN(std::string raw, RawPublicKey(key.get()));
  return VerifyingKey(std::move(raw),
                      std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free));
}

absl::Status VerifyingKey::Verify(absl::string_view message,
                                  absl::string_view signature) const {
  ScopedMdCtx ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return absl::ResourceExhaustedError("EVP_MD_CTX_new");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) !=
      1) {
    return OpenSslError(absl::StatusCode::kInternal, "EVP_DigestVerifyInit");
  }
  const int rc = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
      signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
      message.size());
  ERR_clear_error();
  if (rc != 1) {
    return absl::UnauthenticatedError("Ed25519 signature does not verify");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> VerifyingKey::ToPem() const {
  ScopedBio bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal,
                        "cannot encode public key");
  }
  return BioContents(bio.get());
}

absl::Status WriteFileSynced(const std::string& path,
                             absl::string_view contents, int mode,
                             bool exclusive) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  ::unlink(tmp.c_str());
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  }
  // The umask may have narrowed `mode`; never widen it, but make it exact.
  ::fchmod(fd, mode);
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n =
        ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::InternalError(
          absl::StrCat("cannot write ", tmp, ": ", std::strerror(err)));
    }
    done += n;
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot sync ", tmp, ": ", std::strerror(err)));
  }
  // link() fails if `path` exists, so an exclusive write never clobbers a
  // file created concurrently; rename() replaces atomically otherwise.
  const int rc = exclusive ? ::link(tmp.c_str(), path.c_str())
                           : ::rename(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    const std::string msg = absl::StrCat("cannot move ", tmp, " to ", path,
                                         ": ", std::strerror(err));
    return err == EEXIST ? absl::AlreadyExistsError(msg)
                         : absl::InternalError(msg);
  }
  // Sync the directory so the new name survives a crash.
  const std::string::size_type slash = path.rfind('/');
  const std::string dir = slash == std::string::npos
                              ? std::string(".")
                              : path.substr(0, slash == 0 ? 1 : slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SigningKey>> LoadOrCreateSigningKey(
    const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if ((st.st_mode & 077) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("signing key ", path,
                       " is accessible by group or others; chmod 600 it"));
    }
    PASSERELLE_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
    return SigningKey::FromPem(pem);
  }
  if (errno != ENOENT) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<SigningKey> key,
                              SigningKey::Generate());
  PASSERELLE_ASSIGN_OR_RETURN(std::string pem, key->PrivateKeyPem());
  absl::Status written = WriteFileSynced(path, pem, 0600, /*exclusive=*/true);
  if (absl::IsAlreadyExists(written)) {
    // Another process created it first: use theirs.
    return LoadOrCreateSigningKey(path);
  }
  PASSERELLE_RETURN_IF_ERROR(written);
  return key;
}

absl::StatusOr<VerifyingKey> ReadPublicKeyFile(const std::string& path) {
  PASSERELLE_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  return VerifyingKey::FromPem(pem);
}

}  // namespace passerelle::audit
