// gRPC adapter of the node: peer identity from the mTLS auth context, then
// the core call, then status mapping. No domain logic here.
#ifndef PASSERELLE_NODE_NODE_SERVICE_H_
#define PASSERELLE_NODE_NODE_SERVICE_H_

#include "common/refusal_counters.h"
#include "node/node_core.h"
#include "passerelle/v1/node.grpc.pb.h"

namespace passerelle::node {

class NodeServiceImpl final : public v1::NodeService::Service {
 public:
  // `refusals` (may be null) counts peers refused for having no identity.
  explicit NodeServiceImpl(NodeCore* core, RefusalCounters* refusals = nullptr)
      : core_(core), refusals_(refusals) {}

  grpc::Status Count(grpc::ServerContext* context,
                     const v1::CountRequest* request,
                     v1::CountResponse* response) override;
  grpc::Status GetInfo(grpc::ServerContext* context,
                       const v1::NodeInfoRequest* request,
                       v1::NodeInfo* response) override;
  grpc::Status Explain(grpc::ServerContext* context,
                       const v1::ExplainRequest* request,
                       v1::SiteExpansion* response) override;

 private:
  NodeCore* const core_;
  RefusalCounters* const refusals_;
};

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_NODE_SERVICE_H_
