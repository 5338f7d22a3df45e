#include "tls/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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
using X509Ptr = std::unique_ptr<X509, X509Free>;

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
  if (!files.crl_dir.empty()) options.set_crl_directory(files.crl_dir);
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
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  if (!files.crl_dir.empty()) options.set_crl_directory(files.crl_dir);
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
