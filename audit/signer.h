// Ed25519 keys for signing audit checkpoints, through OpenSSL EVP only.
#ifndef PASSERELLE_AUDIT_SIGNER_H_
#define PASSERELLE_AUDIT_SIGNER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace passerelle::audit {

inline constexpr size_t kEd25519PublicKeySize = 32;
inline constexpr size_t kEd25519SignatureSize = 64;

// Owns an EVP_PKEY (the CT log's ScopedEVP_PKEY).
struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* key) const;
};
using ScopedEvpPkey = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

// An Ed25519 private key. Safe for concurrent use from multiple threads: all
// methods are const and OpenSSL signs with a fresh context per call.
class SigningKey {
 public:
  static absl::StatusOr<std::unique_ptr<SigningKey>> Generate();
  // From a raw 32-byte Ed25519 private key (seed); for tests and imports.
  static absl::StatusOr<std::unique_ptr<SigningKey>> FromSeed(
      absl::string_view seed);
  // Parses a PKCS#8 PEM private key ("-----BEGIN PRIVATE KEY-----").
  static absl::StatusOr<std::unique_ptr<SigningKey>> FromPem(
      absl::string_view pem);

  // Ed25519 signature (64 bytes) of `message`.
  absl::StatusOr<std::string> Sign(absl::string_view message) const;
  // The raw 32-byte public key.
  const std::string& public_key() const { return public_key_; }
  absl::StatusOr<std::string> PrivateKeyPem() const;
  // SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----").
  absl::StatusOr<std::string> PublicKeyPem() const;

 private:
  SigningKey(ScopedEvpPkey key, std::string public_key)
      : key_(std::move(key)), public_key_(std::move(public_key)) {}
  ScopedEvpPkey key_;
  std::string public_key_;
};

// An Ed25519 public key. A value type; thread-compatible.
class VerifyingKey {
 public:
  static absl::StatusOr<VerifyingKey> FromRaw(absl::string_view raw);
  // Parses a SubjectPublicKeyInfo PEM public key.
  static absl::StatusOr<VerifyingKey> FromPem(absl::string_view pem);

  // OK iff `signature` is a valid Ed25519 signature of `message`;
  // kUnauthenticated otherwise.
  absl::Status Verify(absl::string_view message,
                      absl::string_view signature) const;
  const std::string& raw() const { return raw_; }
  absl::StatusOr<std::string> ToPem() const;

 private:
  VerifyingKey(std::string raw, std::shared_ptr<EVP_PKEY> key)
      : raw_(std::move(raw)), key_(std::move(key)) {}
  std::string raw_;
  // Parsed once; OpenSSL allows concurrent verification with one EVP_PKEY.
  std::shared_ptr<EVP_PKEY> key_;
};

// Loads the PEM private key at `path`, or creates one there (mode 0600,
// created exclusively and synced) when the file does not exist. Refuses a key
// file readable by group or others (kFailedPrecondition).
absl::StatusOr<std::unique_ptr<SigningKey>> LoadOrCreateSigningKey(
    const std::string& path);

// Reads a PEM public key file.
absl::StatusOr<VerifyingKey> ReadPublicKeyFile(const std::string& path);

// Writes `contents` to `path` through a synced temporary file with `mode`,
// then moves it into place. With `exclusive`, fails with kAlreadyExists
// rather than replace an existing file.
absl::Status WriteFileSynced(const std::string& path,
                             absl::string_view contents, int mode,
                             bool exclusive);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_SIGNER_H_
