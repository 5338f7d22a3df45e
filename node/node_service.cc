#include "node/node_service.h"

#include "common/grpc_status.h"
#include "tls/tls.h"

namespace passerelle::node {

grpc::Status NodeServiceImpl::Count(grpc::ServerContext* context,
                                    const v1::CountRequest* request,
                                    v1::CountResponse* response) {
  absl::StatusOr<std::string> caller =
      tls::PeerIdentity(*context->auth_context());
  if (!caller.ok()) {
    CountRefusal(refusals_, refusal::kNoIdentity);
    return ToGrpcStatus(caller.status());
  }
  absl::StatusOr<v1::CountResponse> result = core_->Count(*caller, *request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status NodeServiceImpl::GetInfo(grpc::ServerContext* context,
                                      const v1::NodeInfoRequest*,
                                      v1::NodeInfo* response) {
  absl::StatusOr<std::string> caller =
      tls::PeerIdentity(*context->auth_context());
  if (!caller.ok()) {
    CountRefusal(refusals_, refusal::kNoIdentity);
    return ToGrpcStatus(caller.status());
  }
  absl::StatusOr<v1::NodeInfo> info = core_->Info(*caller);
  if (!info.ok()) return ToGrpcStatus(info.status());
  *response = *std::move(info);
  return grpc::Status::OK;
}

grpc::Status NodeServiceImpl::Explain(grpc::ServerContext* context,
                                      const v1::ExplainRequest* request,
                                      v1::SiteExpansion* response) {
  absl::StatusOr<std::string> caller =
      tls::PeerIdentity(*context->auth_context());
  if (!caller.ok()) {
    CountRefusal(refusals_, refusal::kNoIdentity);
    return ToGrpcStatus(caller.status());
  }
  absl::StatusOr<v1::SiteExpansion> result = core_->Explain(*caller, *request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace passerelle::node
