// A TCP proxy for fault-injection tests: listens on an ephemeral port and
// forwards every connection to a target, and on command stalls (accepts and
// holds the bytes), refuses (resets every connection, old and new), delays
// each chunk by a fixed time, or recovers (forwards again, flushing what it
// held). It counts what it sees so tests can assert on attempts.
#ifndef PASSERELLE_TESTS_TCP_PROXY_H_
#define PASSERELLE_TESTS_TCP_PROXY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace passerelle::testing {

struct TcpProxyOptions {
  std::string listen_host =
      "127.0.0.1";  // IPv4 literal; the port is ephemeral.
  std::string target_host = "127.0.0.1";  // IPv4 literal.
  int target_port = 0;
  // Non-empty: the proxy's sockets live in this network namespace
  // (/var/run/netns/<name>, as made by `ip netns add`), not the caller's.
  std::string netns;
};

// What the proxy has seen so far.
struct TcpProxyStats {
  int64_t accepted = 0;    // Connections accepted (forwarded, held or reset).
  int64_t reset = 0;       // Connections it reset (refuse mode).
  int64_t open = 0;        // Connections currently open.
  int64_t bytes_up = 0;    // Bytes read from clients.
  int64_t bytes_down = 0;  // Bytes read from the target.
  std::vector<absl::Time> accept_times;  // When each connection was accepted.
};

// Thread-safe: every method may be called from any thread while the proxy's
// own thread forwards.
class TcpProxy {
 public:
  enum class Mode {
    kForward,  // Pass bytes through (after the delay, if any).
    kStall,    // Accept and read, hold every byte: nothing goes through.
    kRefuse,   // Reset every open connection and each new one at accept.
  };

  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(
      const TcpProxyOptions& options);
  ~TcpProxy();  // Stops the thread, closes every socket.

  int port() const { return port_; }
  std::string address() const;  // "listen_host:port".

  void Forward();  // Recover: held bytes go through, in order.
  void Stall();
  void Refuse();
  // Each chunk is forwarded no earlier than `delay` after it was read, in
  // both directions (0: none). Applies in kForward mode.
  void SetDelay(absl::Duration delay);
  Mode mode() const;

  TcpProxyStats stats() const;
  // Waits until `pred(stats())` holds; false when `timeout` passes first.
  bool WaitFor(const std::function<bool(const TcpProxyStats&)>& pred,
               absl::Duration timeout) const;

 private:
  struct Conn;
  TcpProxy() = default;
  void Run();
  void Wake();

  TcpProxyOptions options_;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};
  std::thread thread_;

  mutable absl::Mutex mu_;
  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kForward;
  absl::Duration delay_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  TcpProxyStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace passerelle::testing

#endif  // PASSERELLE_TESTS_TCP_PROXY_H_
