// mTLS credentials for every Passerelle hop, and the caller's identity.
//
// Every server requires and verifies a client certificate issued by the
// federation CA; every client verifies the server against the same CA. The
// files are watched: a rotated certificate, key or CA bundle is picked up
// without a restart. When a CRL directory is given, a peer whose certificate
// a CRL there revokes is refused at the handshake; the directory is read as
// it is at each handshake, so a new revocation applies at once, without a
// restart.
//
// Identities are SPIFFE IDs, e.g. `spiffe://passerelle/site/fr/node`, taken
// from a certificate's URI SANs only (never its CN or DNS names): it must
// carry exactly one URI SAN, a valid `spiffe://` ID in the federation's trust
// domain; any other certificate is refused at the handshake, with the reason.
// A client also names the identity of the server it must reach (the gateway
// `spiffe://<td>/gateway`, site S's node `spiffe://<td>/site/S/node`) and
// refuses any other server at the handshake, before a request is sent.
#ifndef PASSERELLE_TLS_TLS_H_
#define PASSERELLE_TLS_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/auth_context.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace passerelle::tls {

struct TlsFiles {
  std::string ca_file;    // Federation CA certificate(s), PEM.
  std::string cert_file;  // This process's certificate chain, PEM.
  std::string key_file;   // Its private key, PEM.
  // Optional: directory of PEM CRLs of the CA (deploy/pki/mint.sh writes
  // one, hashed as `openssl rehash` would). Files starting with '.' are
  // ignored; CRLs not signed by a CA of ca_file are ignored. With it, a peer
  // needs a current CRL of its issuer that does not list it (fail closed).
  std::string crl_dir;
  // How often the files are re-read for rotation.
  unsigned refresh_interval_sec = 60;
  // The SPIFFE trust domain every peer's identity must be in (e.g.
  // "passerelle"); empty: the trust domain of cert_file's own identity.
  std::string trust_domain;
};

// The trust domain peers are checked against: files.trust_domain, or that of
// cert_file's identity. INVALID_ARGUMENT when neither is usable.
absl::StatusOr<std::string> TrustDomain(const TlsFiles& files);

// The identities the federation's servers present in trust domain `td`.
std::string GatewayIdentity(absl::string_view trust_domain);
std::string NodeIdentity(absl::string_view trust_domain,
                         absl::string_view site);

// Checks that the files exist, parse, and that the certificate matches the
// key and was issued by the CA, and (with crl_dir) that a current CRL of the
// CA is there and does not revoke the certificate: a clear error at start-up
// instead of a handshake failure later. INVALID_ARGUMENT names the file;
// FAILED_PRECONDITION when the key file is readable or writable by group or
// others (its mode is named; chmod 600 it), as for the audit signing key.
absl::Status CheckTlsFiles(const TlsFiles& files);

// Server credentials that require and verify a client certificate.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files);

// Client credentials presenting `files.cert_file`, verifying the server: its
// chain against the CA (and the CRLs), its host name against the target
// name, and that its identity is exactly `server_identity` (a SPIFFE ID in
// the trust domain; INVALID_ARGUMENT otherwise). A server with another
// identity, even one of the federation, fails the handshake.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const TlsFiles& files,
                       const std::string& server_identity);

// The caller's SPIFFE identity, from the verified certificate of the
// connection (the rules above). UNAUTHENTICATED when there is none.
absl::StatusOr<std::string> PeerIdentity(const grpc::AuthContext& context);

// Clients this process's servers refused at the TLS handshake (no valid
// identity in the trust domain, or revoked), since start. Such a client
// never reaches a service, so this is the only trace it leaves besides the
// line on stderr; the daemons serve it on their MetricsService as
// `tls_handshake`.
uint64_t RefusedClientHandshakes();

// The identity of the first certificate of a PEM text, by the rules above;
// with `trust_domain` non-empty it must be in it. UNAUTHENTICATED, with the
// reason, when the certificate carries no valid identity.
absl::StatusOr<std::string> PemCertificateIdentity(
    absl::string_view pem, absl::string_view trust_domain = "");

// The identity of a PEM certificate file, by the rules above (any trust
// domain). NOT_FOUND when it carries no valid identity, INVALID_ARGUMENT when
// the file cannot be read or parsed.
absl::StatusOr<std::string> CertificateIdentity(const std::string& cert_file);

// The trust domain of a SPIFFE ID ("passerelle" for
// "spiffe://passerelle/gateway"); empty when it is not one.
std::string TrustDomainOf(absl::string_view identity);

// True when `identity` looks like `spiffe://<trust-domain>/<path>`.
bool IsSpiffeId(absl::string_view identity);

}  // namespace passerelle::tls

#endif  // PASSERELLE_TLS_TLS_H_
