#include "tls/tls.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace passerelle::tls {
namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;

// Empties this thread's OpenSSL error queue on scope exit. Parsing PEM until
// EOF always leaves PEM_R_NO_START_LINE there (and failed checks leave more);
// OpenSSL requires an empty queue before SSL I/O for SSL_get_error() to be
// reliable, and gRPC's synchronous calls run handshakes on the caller's thread.
class ClearOpenSslErrorsOnExit {
 public:
  ClearOpenSslErrorsOnExit() = default;
  ClearOpenSslErrorsOnExit(const ClearOpenSslErrorsOnExit&) = delete;
  ClearOpenSslErrorsOnExit& operator=(const ClearOpenSslErrorsOnExit&) = delete;
  ~ClearOpenSslErrorsOnExit() { ERR_clear_error(); }
};

absl::StatusOr<std::string> ReadFile(const std::string& what,
                                     const std::string& path) {
  if (path.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("tls: ", what, " file not set"));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: cannot read ", what, " file ", path));
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A private key file readable or writable by group or others is refused,
// as the audit signing key is (audit/signer.h): the mode is checked where the
// key is loaded at start-up, before any credential is built from it.
absl::Status CheckKeyFileMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: cannot stat key file ", path, ": ", std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "tls: key file %s has mode %04o: readable or writable by group or "
        "others; chmod 600 it",
        path, static_cast<unsigned>(st.st_mode & 07777)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& what,
                                                       const std::string& path,
                                                       const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(x);
  }
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: ", what, " file ", path, " holds no PEM certificate"));
  }
  return certs;
}

std::vector<std::string> SpiffeUris(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    std::string s(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                  static_cast<size_t>(ASN1_STRING_length(uri)));
    if (IsSpiffeId(s)) out.push_back(std::move(s));
  }
  GENERAL_NAMES_free(names);
  return out;
}

// The CRLs of a hashed CRL directory, each verified against a CA of the
// CA file; re-read whenever the files' bytes change. Thread-safe.
class CrlDirectory {
 public:
  CrlDirectory(std::string ca_file, std::string dir)
      : ca_file_(std::move(ca_file)), dir_(std::move(dir)) {}

  // OK when a current CRL of `cert`'s issuer is loaded and does not list
  // it; UNAUTHENTICATED otherwise (revoked, or no current CRL: fail closed,
  // as OpenSSL's CRL check does).
  absl::Status Check(X509* cert) {
    ClearOpenSslErrorsOnExit clear_errors;
    absl::MutexLock lock(&mu_);
    PASSERELLE_RETURN_IF_ERROR(RefreshLocked());
    const X509_NAME* issuer = X509_get_issuer_name(cert);
    bool current = false;
    for (const CrlPtr& crl : crls_) {
      if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), issuer) != 0) continue;
      const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
      if (next != nullptr && X509_cmp_current_time(next) < 0) continue;
      if (X509_cmp_current_time(X509_CRL_get0_lastUpdate(crl.get())) > 0)
        continue;
      current = true;
      X509_REVOKED* revoked = nullptr;
      if (X509_CRL_get0_by_cert(crl.get(), &revoked, cert) == 1) {
        return absl::UnauthenticatedError(
            absl::StrCat("certificate serial ", Serial(cert),
                         " is revoked (CRL in ", dir_, ")"));
      }
    }
    if (!current) {
      return absl::UnauthenticatedError(
          absl::StrCat("no current CRL of the certificate's issuer in ", dir_));
    }
    return absl::OkStatus();
  }

 private:
  static std::string Serial(X509* cert) {
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
    if (bn == nullptr) return "?";
    char* hex = BN_bn2hex(bn);
    std::string out = hex != nullptr ? hex : "?";
    OPENSSL_free(hex);
    BN_free(bn);
    return out;
  }

  // Re-reads the directory (every file but dot files) and the CA file; parses
  // again only when their bytes changed. Reading a few small files costs far
  // less than the handshake it guards, and sees every change at once.
  absl::Status RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || name[0] == '.' || !entry.is_regular_file(ec))
        continue;
      names.push_back(name);
    }
    if (ec) {
      return absl::UnauthenticatedError(
          absl::StrCat("cannot read CRL directory ", dir_, ": ", ec.message()));
    }
    std::sort(names.begin(), names.end());
    PASSERELLE_ASSIGN_OR_RETURN(std::string ca_pem, ReadFile("CA", ca_file_));
    std::string bytes = absl::StrCat(ca_pem.size(), ":", ca_pem);
    std::vector<std::pair<std::string, std::string>> files;
    for (const std::string& name : names) {
      const std::string path = dir_ + "/" + name;
      absl::StatusOr<std::string> pem = ReadFile("CRL", path);
      if (!pem.ok()) continue;  // Removed since the listing.
      absl::StrAppend(&bytes, name.size(), ":", name, pem->size(), ":", *pem);
      files.emplace_back(path, *std::move(pem));
    }
    if (bytes == bytes_) return absl::OkStatus();

    absl::StatusOr<std::vector<X509Ptr>> cas =
        ParseCertificates("CA", ca_file_, ca_pem);
    if (!cas.ok()) return absl::UnauthenticatedError(cas.status().message());
    std::vector<CrlPtr> crls;
    for (const auto& [path, pem] : files) {
      std::unique_ptr<BIO, BioFree> bio(
          BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
      while (X509_CRL* raw =
                 PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
        CrlPtr crl(raw);
        bool verified = false;
        for (const X509Ptr& ca : *cas) {
          if (X509_NAME_cmp(X509_get_subject_name(ca.get()),
                            X509_CRL_get_issuer(crl.get())) == 0 &&
              X509_CRL_verify(crl.get(), X509_get0_pubkey(ca.get())) == 1) {
            verified = true;
          }
        }
        if (verified) {
          crls.push_back(std::move(crl));
        } else {
          std::cerr << "tls: ignoring a CRL in " << path
                    << " not signed by a CA of " << ca_file_ << "\n";
        }
      }
    }
    crls_ = std::move(crls);
    bytes_ = std::move(bytes);
    return absl::OkStatus();
  }

  const std::string ca_file_;
  const std::string dir_;
  absl::Mutex mu_;
  std::string bytes_ ABSL_GUARDED_BY(mu_);  // What crls_ was parsed from.
  std::vector<CrlPtr> crls_ ABSL_GUARDED_BY(mu_);
};

// Refuses a peer whose certificate a CRL of the directory revokes, checking
// the directory as it is at each handshake; then defers to `next` (the
// client's host name check), if any.
//
// gRPC's own CRL option hands the directory to OpenSSL, which caches the
// CRLs it loaded for the life of the TLS context: a certificate revoked after
// start-up would be accepted until the next certificate rotation, and once the
// cached CRL passed its nextUpdate every peer would be refused although a
// fresh CRL is on disk. Thread-safe.
class CrlVerifier : public grpc::experimental::ExternalCertificateVerifier {
 public:
  CrlVerifier(std::string ca_file, std::string crl_dir,
              std::shared_ptr<grpc::experimental::CertificateVerifier> next)
      : crls_(std::move(ca_file), std::move(crl_dir)), next_(std::move(next)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> callback,
              grpc::Status* sync_status) override {
    const grpc::string_ref pem = request->peer_cert();
    absl::Status status = CheckPeer(std::string(pem.data(), pem.size()));
    if (!status.ok()) {
      std::string who;
      for (const grpc::string_ref& uri : request->uri_names()) {
        who = std::string(uri.data(), uri.size());
      }
      std::cerr << "tls: refusing peer " << (who.empty() ? "?" : who) << ": "
                << status.message() << "\n";
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  std::string(status.message()));
      return true;
    }
    if (next_ != nullptr) {
      return next_->Verify(request, std::move(callback), sync_status);
    }
    *sync_status = grpc::Status::OK;
    return true;
  }

  void Cancel(
      grpc::experimental::TlsCustomVerificationCheckRequest* request) override {
    if (next_ != nullptr) next_->Cancel(request);
  }

 private:
  absl::Status CheckPeer(const std::string& pem) {
    ClearOpenSslErrorsOnExit clear_errors;
    std::unique_ptr<BIO, BioFree> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) {
      return absl::UnauthenticatedError("no peer certificate to check");
    }
    return crls_.Check(cert.get());
  }

  CrlDirectory crls_;
  const std::shared_ptr<grpc::experimental::CertificateVerifier> next_;
};

std::shared_ptr<grpc::experimental::CertificateProviderInterface> Provider(
    const TlsFiles& files) {
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.ca_file,
      files.refresh_interval_sec);
}

}  // namespace

bool IsSpiffeId(absl::string_view identity) {
  constexpr absl::string_view kScheme = "spiffe://";
  if (!absl::StartsWith(identity, kScheme)) return false;
  absl::string_view rest = identity.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == 0 || slash == absl::string_view::npos ||
      slash + 1 == rest.size())
    return false;
  for (char c : rest) {
    if (c <= ' ' || c == '?' || c == '#' || c == '%' ||
        static_cast<unsigned char>(c) > 126) {
      return false;
    }
  }
  return true;
}

absl::Status CheckTlsFiles(const TlsFiles& files) {
  ClearOpenSslErrorsOnExit clear_errors;
  PASSERELLE_ASSIGN_OR_RETURN(std::string ca_pem,
                              ReadFile("CA", files.ca_file));
  PASSERELLE_ASSIGN_OR_RETURN(std::string cert_pem,
                              ReadFile("certificate", files.cert_file));
  PASSERELLE_ASSIGN_OR_RETURN(std::string key_pem,
                              ReadFile("key", files.key_file));
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<X509Ptr> cas,
                              ParseCertificates("CA", files.ca_file, ca_pem));
  PASSERELLE_ASSIGN_OR_RETURN(
      std::vector<X509Ptr> chain,
      ParseCertificates("certificate", files.cert_file, cert_pem));
  std::unique_ptr<BIO, BioFree> kbio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: key file ", files.key_file, " holds no PEM private key"));
  }
  PASSERELLE_RETURN_IF_ERROR(CheckKeyFileMode(files.key_file));
  if (X509_check_private_key(chain[0].get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: key file ", files.key_file,
                     " does not match certificate ", files.cert_file));
  }
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  for (const X509Ptr& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (size_t i = 1; i < chain.size(); ++i)
    sk_X509_push(untrusted, chain[i].get());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), chain[0].get(), untrusted);
  const int ok = X509_verify_cert(ctx.get());
  const int err = X509_STORE_CTX_get_error(ctx.get());
  sk_X509_free(untrusted);
  if (ok != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: certificate ", files.cert_file, " does not verify against CA ",
        files.ca_file, ": ", X509_verify_cert_error_string(err)));
  }
  if (SpiffeUris(chain[0].get()).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: certificate ", files.cert_file,
                     " has no spiffe:// URI SAN (identity)"));
  }
  if (!files.crl_dir.empty()) {
    // A current CRL of our own issuer must be there, or every peer of this
    // CA would be refused; and peers would refuse a revoked certificate of
    // ours. Say so now rather than at each handshake.
    CrlDirectory crls(files.ca_file, files.crl_dir);
    absl::Status st = crls.Check(chain[0].get());
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tls: certificate ", files.cert_file, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files) {
  PASSERELLE_RETURN_IF_ERROR(CheckTlsFiles(files));
  grpc::experimental::TlsServerCredentialsOptions options(Provider(files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  // Revocation is checked by CrlVerifier, not gRPC's set_crl_directory (see
  // there why).
  if (!files.crl_dir.empty()) {
    options.set_certificate_verifier(
        grpc::experimental::ExternalCertificateVerifier::Create<CrlVerifier>(
            files.ca_file, files.crl_dir, nullptr));
  }
  std::shared_ptr<grpc::ServerCredentials> creds =
      grpc::experimental::TlsServerCredentials(options);
  if (creds == nullptr)
    return absl::InternalError("tls: cannot build server credentials");
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const TlsFiles& files) {
  PASSERELLE_RETURN_IF_ERROR(CheckTlsFiles(files));
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  auto host_name =
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>();
  if (files.crl_dir.empty()) {
    options.set_certificate_verifier(host_name);
  } else {
    options.set_certificate_verifier(
        grpc::experimental::ExternalCertificateVerifier::Create<CrlVerifier>(
            files.ca_file, files.crl_dir, host_name));
  }
  std::shared_ptr<grpc::ChannelCredentials> creds =
      grpc::experimental::TlsCredentials(options);
  if (creds == nullptr)
    return absl::InternalError("tls: cannot build channel credentials");
  return creds;
}

absl::StatusOr<std::string> PeerIdentity(const grpc::AuthContext& context) {
  if (!context.IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no verified client certificate");
  }
  for (const grpc::string_ref& v :
       context.FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    std::string s(v.data(), v.size());
    if (IsSpiffeId(s)) return s;
  }
  for (const grpc::string_ref& v :
       context.FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME)) {
    std::string s(v.data(), v.size());
    if (IsSpiffeId(s)) return s;
  }
  return absl::UnauthenticatedError(
      "client certificate carries no spiffe:// identity");
}

absl::StatusOr<std::string> CertificateIdentity(const std::string& cert_file) {
  ClearOpenSslErrorsOnExit clear_errors;
  PASSERELLE_ASSIGN_OR_RETURN(std::string pem,
                              ReadFile("certificate", cert_file));
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<X509Ptr> chain,
                              ParseCertificates("certificate", cert_file, pem));
  std::vector<std::string> ids = SpiffeUris(chain[0].get());
  if (ids.empty()) {
    return absl::NotFoundError(absl::StrCat("tls: certificate ", cert_file,
                                            " has no spiffe:// URI SAN"));
  }
  return ids[0];
}

}  // namespace passerelle::tls
