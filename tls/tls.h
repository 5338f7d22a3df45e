// mTLS credentials for every Passerelle hop, and the caller's identity.
//
// Every server requires and verifies a client certificate issued by the
// federation CA; every client verifies the server against the same CA. The
// files are watched: a rotated certificate, key or CA bundle is picked up
// without a restart. When a CRL directory is given, a peer whose certificate
// a CRL there revokes is refused at the handshake; the directory is read as
// it is at each handshake, so a new revocation applies at once, without a
// restart. Identities are SPIFFE-style URI SANs, e.g.
// `spiffe://passerelle/site/fr/node`.
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
};

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

// Client credentials presenting `files.cert_file`, verifying the server.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const TlsFiles& files);

// The caller's SPIFFE identity (the `spiffe://` URI SAN of its verified
// certificate). UNAUTHENTICATED when the peer presented none.
absl::StatusOr<std::string> PeerIdentity(const grpc::AuthContext& context);

// The `spiffe://` URI SANs of a PEM certificate file (first one returned).
absl::StatusOr<std::string> CertificateIdentity(const std::string& cert_file);

// True when `identity` looks like `spiffe://<trust-domain>/<path>`.
bool IsSpiffeId(absl::string_view identity);

}  // namespace passerelle::tls

#endif  // PASSERELLE_TLS_TLS_H_
