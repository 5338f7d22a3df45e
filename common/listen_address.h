// The listen address of a daemon (`listen` in config.proto): it must name
// the interface to listen on. A wildcard host (0.0.0.0, [::], an empty host
// as in ":7443", or any spelling the resolver reads as one, e.g. "0") listens
// on every interface of the host, so it is refused unless the configuration
// says so explicitly (`listen_all_interfaces: true`).
#ifndef PASSERELLE_COMMON_LISTEN_ADDRESS_H_
#define PASSERELLE_COMMON_LISTEN_ADDRESS_H_

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace passerelle {

// True when `host` (without brackets) is, or resolves to, a wildcard
// address. A name that does not resolve is not a wildcard (binding it fails
// later with its own error).
inline bool IsWildcardHost(const std::string& host) {
  if (host.empty() || host == "*") return true;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return false;
  bool wildcard = false;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      if (in->sin_addr.s_addr == htonl(INADDR_ANY)) wildcard = true;
    } else if (a->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      const in6_addr& x = in6->sin6_addr;
      bool mapped_any = IN6_IS_ADDR_V4MAPPED(&x);
      for (int i = 12; i < 16; ++i)
        mapped_any = mapped_any && x.s6_addr[i] == 0;
      if (IN6_IS_ADDR_UNSPECIFIED(&x) || mapped_any) wildcard = true;
    }
  }
  freeaddrinfo(found);
  return wildcard;
}

// OK when `listen` ("host:port", "[v6]:port" or a "unix:" path) names an
// interface, or when `all_interfaces` allows a wildcard. INVALID_ARGUMENT
// names `what` (e.g. "node config") and the address otherwise.
inline absl::Status CheckListenAddress(absl::string_view what,
                                       const std::string& listen,
                                       bool all_interfaces) {
  if (listen.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": listen is required"));
  }
  if (absl::StartsWith(listen, "unix:") ||
      absl::StartsWith(listen, "unix-abstract:")) {
    return absl::OkStatus();  // A local socket: no network interface.
  }
  std::string host;
  if (listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() ||
        listen[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": listen \"", listen, "\" is not [address]:port"));
    }
    host = listen.substr(1, close - 1);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": listen \"", listen, "\" is not host:port"));
    }
    host = listen.substr(0, colon);
  }
  if (!all_interfaces && IsWildcardHost(host)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": listen \"", listen,
        "\" listens on every interface of this host; name the interface's "
        "address (e.g. 127.0.0.1:7443, or the address the federation "
        "reaches) or set listen_all_interfaces: true"));
  }
  return absl::OkStatus();
}

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_LISTEN_ADDRESS_H_
