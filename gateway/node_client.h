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
};

enum class SiteState { kOk, kFailed, kTimedOut, kRefused };

struct SiteOutcome {
  std::string site;
  SiteState state = SiteState::kFailed;
  std::string reason;
  v1::CountResponse response;  // Meaningful when state == kOk.
};

// Sends requests[i] to clients[i], all in parallel, and waits for all of
// them, each bounded by deadlines[i]. Outcomes are in client order. Only
// UNAVAILABLE is retried, with capped exponential backoff, within the
// deadline.
struct FanOutOptions {
  int max_attempts = 3;
  absl::Duration initial_backoff = absl::Milliseconds(20);
  absl::Duration max_backoff = absl::Milliseconds(200);
};
std::vector<SiteOutcome> FanOut(const std::vector<NodeClient*>& clients,
                                const std::vector<v1::CountRequest>& requests,
                                const std::vector<absl::Time>& deadlines,
                                const FanOutOptions& options = {});

const char* SiteStateName(SiteState state);

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_NODE_CLIENT_H_
