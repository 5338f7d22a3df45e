// The TLS files of a configuration's `tls { ... }` block (config.proto),
// as the credential builders of tls/tls.h take them. Header-only: its users
// already link the protos.
#ifndef PASSERELLE_TLS_CONFIG_H_
#define PASSERELLE_TLS_CONFIG_H_

#include "passerelle/v1/config.pb.h"
#include "tls/tls.h"

namespace passerelle::tls {

inline TlsFiles TlsFilesFrom(const v1::TlsConfig& c) {
  TlsFiles files;
  files.ca_file = c.ca_file();
  files.cert_file = c.cert_file();
  files.key_file = c.key_file();
  files.crl_dir = c.crl_dir();
  files.trust_domain = c.trust_domain();
  if (c.refresh_interval_sec() > 0) {
    files.refresh_interval_sec = c.refresh_interval_sec();
  }
  return files;
}

}  // namespace passerelle::tls

#endif  // PASSERELLE_TLS_CONFIG_H_
