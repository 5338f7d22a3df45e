// The gateway's view of a data node: an asynchronous count call with a
// deadline. The gRPC implementation lives in grpc_node_client.h; tests use
// in-process fakes.
#ifndef PASSERELLE_GATEWAY_NODE_CLIENT_H_
#define PASSERELLE_GATEWAY_NODE_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "passerelle/v1/gateway.pb.h"
#include "passerelle/v1/node.pb.h"

namespace passerelle::gateway {

// Implementations are thread-safe.
class NodeClient {
 public:
  using CountCallback = std::function<void(absl::StatusOr<v1::CountResponse>)>;
  virtual ~NodeClient() = default;
  virtual const std::string& site() const = 0;
  // Calls `done` exactly once, on any thread, by `deadline` at the latest
  // (with DEADLINE_EXCEEDED when it passes).
  virtual void Count(const v1::CountRequest& request, absl::Time deadline,
                     CountCallback done) = 0;
  // The node's metadata (site, snapshot version, vocabularies); no data.
  // Blocking; bounded by `deadline`.
  virtual absl::StatusOr<v1::NodeInfo> Info(absl::Time deadline) {
    (void)deadline;
    return absl::UnimplementedError("node info not supported by this client");
  }
  // How the query's codes would reach the node's vocabularies (no data is
  // read). Blocking; bounded by `deadline`.
  virtual absl::StatusOr<v1::SiteExpansion> Explain(
      const v1::ExplainRequest& request, absl::Time deadline) {
    (void)request;
    (void)deadline;
    return absl::UnimplementedError("explain not supported by this client");
  }
};

enum class SiteState { kOk, kFailed, kTimedOut, kRefused };

// The wire form of a site's outcome.
v1::SiteStatus ToSiteStatus(SiteState s);

struct SiteOutcome {
  std::string site;
  SiteState state = SiteState::kFailed;
  std::string reason;
  v1::CountResponse response;  // Meaningful when state == kOk.
};

// Sends requests[i] to clients[i], all in parallel, and waits for all of
// them, each bounded by deadlines[i]. Outcomes are in client order. Only
// UNAVAILABLE is retried (a node that is down, restarting or unreachable;
// never a refusal, a timeout or an error of the node), with capped
// exponential backoff: the first retry `initial_backoff` after the failure,
// each wait doubling up to `max_backoff`, at most `max_attempts` calls in
// all, and no retry that could not start before the deadline. A site that
// still fails names the last error and the number of attempts.
struct FanOutOptions {
  int max_attempts = 4;
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Milliseconds(500);
};
// The waits before retries 1..n of one site under `options` (for tests and
// the docs): initial_backoff * 2^k, capped at max_backoff.
absl::Duration RetryBackoff(const FanOutOptions& options, int retry);
std::vector<SiteOutcome> FanOut(const std::vector<NodeClient*>& clients,
                                const std::vector<v1::CountRequest>& requests,
                                const std::vector<absl::Time>& deadlines,
                                const FanOutOptions& options = {});

// The explain fan-out: requests[i] to clients[i] (NodeClient::Explain), in
// parallel, with the same deadlines and retries as FanOut. An answer is
// kOk only when it is a SiteExpansion (site names are checked by the
// caller, against the query; gateway/expansion.h).
struct ExplainOutcome {
  std::string site;
  SiteState state = SiteState::kFailed;
  std::string reason;
  v1::SiteExpansion expansion;  // Meaningful when state == kOk.
};
std::vector<ExplainOutcome> FanOutExplain(
    const std::vector<NodeClient*>& clients,
    const std::vector<v1::ExplainRequest>& requests,
    const std::vector<absl::Time>& deadlines,
    const FanOutOptions& options = {});

const char* SiteStateName(SiteState state);

// How a node's error is reported: DEADLINE_EXCEEDED is a timeout;
// PERMISSION_DENIED, UNAUTHENTICATED, INVALID_ARGUMENT and
// FAILED_PRECONDITION a refusal; anything else a failure. `reason` is
// "<CODE>: <message>".
void ClassifyError(const absl::Status& status, SiteState* state,
                   std::string* reason);

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_NODE_CLIENT_H_
