// gRPC adapter of the gateway: peer identity from the mTLS auth context,
// the core call, status mapping. No domain logic here.
#ifndef PASSERELLE_GATEWAY_GATEWAY_SERVICE_H_
#define PASSERELLE_GATEWAY_GATEWAY_SERVICE_H_

#include "common/refusal_counters.h"
#include "gateway/gateway_core.h"
#include "passerelle/v1/gateway.grpc.pb.h"

namespace passerelle::gateway {

class GatewayServiceImpl final : public v1::GatewayService::Service {
 public:
  // `refusals` (may be null) counts peers refused for having no identity.
  explicit GatewayServiceImpl(GatewayCore* core,
                              RefusalCounters* refusals = nullptr)
      : core_(core), refusals_(refusals) {}
  grpc::Status Query(grpc::ServerContext* context,
                     const v1::QueryRequest* request,
                     v1::QueryResponse* response) override;
  grpc::Status Explain(grpc::ServerContext* context,
                       const v1::QueryRequest* request,
                       v1::ExplainResponse* response) override;
  grpc::Status Budget(grpc::ServerContext* context,
                      const v1::BudgetRequest* request,
                      v1::BudgetResponse* response) override;

 private:
  GatewayCore* const core_;
  RefusalCounters* const refusals_;
};

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_GATEWAY_SERVICE_H_
