#include "tls/tls.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
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
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
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

// The URI SANs of `cert`, in order (other subjectAltNames are not read).
std::vector<std::string> UriSans(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                     static_cast<size_t>(ASN1_STRING_length(uri)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

// Printable, bounded form of a certificate-supplied string for messages.
std::string Printable(absl::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e || c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  if (s.size() > 200) out += "...";
  return out;
}

// The identity of `cert`: its one URI SAN, a valid SPIFFE ID, in
// `trust_domain` when that is not empty. UNAUTHENTICATED with the reason
// otherwise. CN and DNS names are never read.
absl::StatusOr<std::string> IdentityOf(X509* cert,
                                       absl::string_view trust_domain) {
  std::vector<std::string> uris = UriSans(cert);
  if (uris.empty()) {
    return absl::UnauthenticatedError(
        "certificate has no URI SAN: an identity is a spiffe:// URI SAN "
        "(CN and DNS names are not identities)");
  }
  if (uris.size() > 1) {
    std::string list;
    for (const std::string& u : uris) {
      absl::StrAppend(&list, list.empty() ? "" : ", ", "\"", Printable(u),
                      "\"");
    }
    return absl::UnauthenticatedError(
        absl::StrCat("certificate has ", uris.size(), " URI SANs (", list,
                     "): an identity is exactly one"));
  }
  if (!IsSpiffeId(uris[0])) {
    return absl::UnauthenticatedError(
        absl::StrCat("certificate's URI SAN \"", Printable(uris[0]),
                     "\" is not a valid spiffe:// ID"));
  }
  if (!trust_domain.empty() && TrustDomainOf(uris[0]) != trust_domain) {
    return absl::UnauthenticatedError(absl::StrCat("identity ", uris[0],
                                                   " is not in trust domain \"",
                                                   trust_domain, "\""));
  }
  return uris[0];
}

absl::StatusOr<X509Ptr> ParsePemCertificate(absl::string_view pem) {
  std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::UnauthenticatedError("no peer certificate to check");
  }
  return cert;
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
      // Every loaded CRL has a nextUpdate (RefreshLocked refuses others).
      const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
      if (next == nullptr || X509_cmp_current_time(next) < 0) continue;
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
      std::string why;
      for (const std::string& r : refused_) absl::StrAppend(&why, "; ", r);
      return absl::UnauthenticatedError(absl::StrCat(
          "no current CRL of the certificate's issuer in ", dir_, why));
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
    std::vector<std::string> refused;
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
        if (!verified) {
          std::cerr << "tls: ignoring a CRL in " << path
                    << " not signed by a CA of " << ca_file_ << "\n";
        } else if (X509_CRL_get0_nextUpdate(crl.get()) == nullptr) {
          // Without a nextUpdate a CRL would stay "current" for ever: a
          // stolen old CRL could then hide every later revocation.
          refused.push_back(absl::StrCat(
              "refused the CRL in ", path,
              ": it has no nextUpdate (deploy/pki/mint.sh --refresh-crl "
              "issues one that has)"));
          std::cerr << "tls: " << refused.back() << "\n";
        } else {
          crls.push_back(std::move(crl));
        }
      }
    }
    crls_ = std::move(crls);
    refused_ = std::move(refused);
    bytes_ = std::move(bytes);
    return absl::OkStatus();
  }

  const std::string ca_file_;
  const std::string dir_;
  absl::Mutex mu_;
  std::string bytes_ ABSL_GUARDED_BY(mu_);  // What crls_ was parsed from.
  std::vector<CrlPtr> crls_ ABSL_GUARDED_BY(mu_);
  // Why CRLs of the directory signed by the CA were not loaded.
  std::vector<std::string> refused_ ABSL_GUARDED_BY(mu_);
};

// Checks a peer at the handshake, after gRPC verified its chain against the
// CA: a CRL of the directory (if any) must not revoke it, read as the
// directory is at each handshake; its identity must follow the rules of
// tls.h in `trust_domain`; a client's server must have exactly the expected
// identity; then defers to `next` (the client's host name check), if any.
//
// gRPC's own CRL option hands the directory to OpenSSL, which caches the
// CRLs it loaded for the life of the TLS context: a certificate revoked after
// start-up would be accepted until the next certificate rotation, and once the
// cached CRL passed its nextUpdate every peer would be refused although a
// fresh CRL is on disk. Thread-safe.
std::atomic<uint64_t> refused_client_handshakes{0};

class PeerVerifier : public grpc::experimental::ExternalCertificateVerifier {
 public:
  // `expected` empty: a server's verifier (any identity of the trust domain;
  // the service authorizes it). `crl_dir` empty: no revocation check.
  PeerVerifier(std::string trust_domain, std::string expected,
               const std::string& ca_file, const std::string& crl_dir,
               std::shared_ptr<grpc::experimental::CertificateVerifier> next)
      : trust_domain_(std::move(trust_domain)),
        expected_(std::move(expected)),
        crls_(crl_dir.empty()
                  ? nullptr
                  : std::make_unique<CrlDirectory>(ca_file, crl_dir)),
        next_(std::move(next)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> callback,
              grpc::Status* sync_status) override {
    const grpc::string_ref pem = request->peer_cert();
    absl::Status status = CheckPeer(absl::string_view(pem.data(), pem.size()));
    if (!status.ok()) {
      if (expected_.empty()) {
        refused_client_handshakes.fetch_add(1, std::memory_order_relaxed);
      }
      std::string who;
      for (const grpc::string_ref& uri : request->uri_names()) {
        absl::StrAppend(&who, who.empty() ? "" : ",",
                        Printable(absl::string_view(uri.data(), uri.size())));
      }
      const grpc::string_ref target = request->target_name();
      std::cerr << "tls: refusing "
                << (expected_.empty() ? "client " : "server ")
                << (who.empty() ? "?" : who);
      if (!expected_.empty()) {
        std::cerr << " at " << std::string(target.data(), target.size());
      }
      std::cerr << ": " << status.message() << "\n";
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
  absl::Status CheckPeer(absl::string_view pem) {
    ClearOpenSslErrorsOnExit clear_errors;
    PASSERELLE_ASSIGN_OR_RETURN(X509Ptr cert, ParsePemCertificate(pem));
    if (crls_ != nullptr) PASSERELLE_RETURN_IF_ERROR(crls_->Check(cert.get()));
    absl::StatusOr<std::string> id = IdentityOf(cert.get(), trust_domain_);
    if (!id.ok()) {
      return absl::UnauthenticatedError(absl::StrCat(
          expected_.empty() ? "client " : "server ", id.status().message()));
    }
    if (!expected_.empty() && *id != expected_) {
      return absl::UnauthenticatedError(
          absl::StrCat("server identity mismatch: the server is ", *id,
                       ", expected ", expected_));
    }
    return absl::OkStatus();
  }

  const std::string trust_domain_;
  const std::string expected_;
  const std::unique_ptr<CrlDirectory> crls_;
  const std::shared_ptr<grpc::experimental::CertificateVerifier> next_;
};

std::shared_ptr<grpc::experimental::CertificateProviderInterface> Provider(
    const TlsFiles& files) {
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.ca_file,
      files.refresh_interval_sec);
}

}  // namespace

uint64_t RefusedClientHandshakes() {
  return refused_client_handshakes.load(std::memory_order_relaxed);
}

// SPIFFE ID syntax (the SPIFFE standard, section 2): lower-case trust
// domain of [a-z0-9._-], a path of one or more segments of [A-Za-z0-9._-],
// none empty, "." or "..", no query or fragment.
bool IsSpiffeId(absl::string_view identity) {
  constexpr absl::string_view kScheme = "spiffe://";
  if (identity.size() > 2048 || !absl::StartsWith(identity, kScheme))
    return false;
  absl::string_view rest = identity.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == 0 || slash == absl::string_view::npos) return false;
  for (char c : rest.substr(0, slash)) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-' || c == '_')) {
      return false;
    }
  }
  for (absl::string_view segment :
       absl::StrSplit(rest.substr(slash + 1), '/')) {
    if (segment.empty() || segment == "." || segment == "..") return false;
    for (char c : segment) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
          c != '-' && c != '_') {
        return false;
      }
    }
  }
  return true;
}

std::string TrustDomainOf(absl::string_view identity) {
  if (!IsSpiffeId(identity)) return "";
  absl::string_view rest = identity.substr(sizeof("spiffe://") - 1);
  return std::string(rest.substr(0, rest.find('/')));
}

std::string GatewayIdentity(absl::string_view trust_domain) {
  return absl::StrCat("spiffe://", trust_domain, "/gateway");
}

std::string NodeIdentity(absl::string_view trust_domain,
                         absl::string_view site) {
  return absl::StrCat("spiffe://", trust_domain, "/site/", site, "/node");
}

absl::StatusOr<std::string> TrustDomain(const TlsFiles& files) {
  if (!files.trust_domain.empty()) {
    if (TrustDomainOf(absl::StrCat("spiffe://", files.trust_domain, "/x")) !=
        files.trust_domain) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls: trust_domain \"", Printable(files.trust_domain),
                       "\" is not a SPIFFE trust domain ([a-z0-9._-]+)"));
    }
    return files.trust_domain;
  }
  absl::StatusOr<std::string> own = CertificateIdentity(files.cert_file);
  if (!own.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: no trust domain configured and none from the certificate: ",
        own.status().message()));
  }
  return TrustDomainOf(*own);
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
  if (!files.trust_domain.empty()) {
    PASSERELLE_RETURN_IF_ERROR(TrustDomain(files).status());
  }
  absl::StatusOr<std::string> own =
      IdentityOf(chain[0].get(), files.trust_domain);
  if (!own.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: certificate ", files.cert_file, ": ", own.status().message()));
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
  PASSERELLE_ASSIGN_OR_RETURN(const std::string trust_domain,
                              TrustDomain(files));
  grpc::experimental::TlsServerCredentialsOptions options(Provider(files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  // Identity and revocation are checked by PeerVerifier, not gRPC's
  // set_crl_directory (see there why).
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<PeerVerifier>(
          trust_domain, "", files.ca_file, files.crl_dir, nullptr));
  std::shared_ptr<grpc::ServerCredentials> creds =
      grpc::experimental::TlsServerCredentials(options);
  if (creds == nullptr)
    return absl::InternalError("tls: cannot build server credentials");
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const TlsFiles& files,
                       const std::string& server_identity) {
  PASSERELLE_RETURN_IF_ERROR(CheckTlsFiles(files));
  PASSERELLE_ASSIGN_OR_RETURN(const std::string trust_domain,
                              TrustDomain(files));
  if (!IsSpiffeId(server_identity)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: expected server identity \"",
                     Printable(server_identity), "\" is not a spiffe:// ID"));
  }
  if (TrustDomainOf(server_identity) != trust_domain) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: expected server identity ", server_identity,
                     " is not in trust domain \"", trust_domain, "\""));
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<PeerVerifier>(
          trust_domain, server_identity, files.ca_file, files.crl_dir,
          std::make_shared<grpc::experimental::HostNameCertificateVerifier>()));
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
  std::vector<grpc::string_ref> pems =
      context.FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pems.empty()) {
    return absl::UnauthenticatedError("no verified client certificate");
  }
  // The handshake checked the trust domain (PeerVerifier); the identity
  // rules are applied again to what this connection actually carries.
  return PemCertificateIdentity(
      absl::string_view(pems.front().data(), pems.front().size()));
}

absl::StatusOr<std::string> PemCertificateIdentity(
    absl::string_view pem, absl::string_view trust_domain) {
  ClearOpenSslErrorsOnExit clear_errors;
  PASSERELLE_ASSIGN_OR_RETURN(X509Ptr cert, ParsePemCertificate(pem));
  return IdentityOf(cert.get(), trust_domain);
}

absl::StatusOr<std::string> CertificateIdentity(const std::string& cert_file) {
  ClearOpenSslErrorsOnExit clear_errors;
  PASSERELLE_ASSIGN_OR_RETURN(std::string pem,
                              ReadFile("certificate", cert_file));
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<X509Ptr> chain,
                              ParseCertificates("certificate", cert_file, pem));
  absl::StatusOr<std::string> id = IdentityOf(chain[0].get(), "");
  if (!id.ok()) {
    return absl::NotFoundError(absl::StrCat("tls: certificate ", cert_file,
                                            ": ", id.status().message()));
  }
  return id;
}

}  // namespace passerelle::tls
