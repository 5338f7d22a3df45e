#include "gateway/gateway_service.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "tls/tls.h"

namespace passerelle::gateway {

namespace {

// The deadline node calls get from the caller's.
absl::Time NodeDeadline(const grpc::ServerContext& context) {
  const absl::Time now = absl::Now();
  absl::Time deadline = absl::FromChrono(context.deadline());
  // A client without a deadline still gets a bounded answer.
  deadline = std::min(deadline, now + absl::Minutes(2));
  // Node calls end a little before the caller's deadline, so that a partial
  // answer (disclosure control, the synced audit append) still reaches the
  // caller in time rather than turning into DEADLINE_EXCEEDED.
  if (deadline > now) {
    deadline -= std::min((deadline - now) / 5, absl::Milliseconds(500));
  }
  return deadline;
}

}  // namespace

grpc::Status GatewayServiceImpl::Query(grpc::ServerContext* context,
                                       const v1::QueryRequest* request,
                                       v1::QueryResponse* response) {
  absl::StatusOr<std::string> caller =
      tls::PeerIdentity(*context->auth_context());
  if (!caller.ok()) {
    CountRefusal(refusals_, refusal::kNoIdentity);
    return ToGrpcStatus(caller.status());
  }
  absl::StatusOr<v1::QueryResponse> result =
      core_->Query(*caller, *request, NodeDeadline(*context));
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status GatewayServiceImpl::Explain(grpc::ServerContext* context,
                                         const v1::QueryRequest* request,
                                         v1::ExplainResponse* response) {
  absl::StatusOr<std::string> caller =
      tls::PeerIdentity(*context->auth_context());
  if (!caller.ok()) {
    CountRefusal(refusals_, refusal::kNoIdentity);
    return ToGrpcStatus(caller.status());
  }
  absl::StatusOr<v1::ExplainResponse> result =
      core_->Explain(*caller, *request, NodeDeadline(*context));
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status GatewayServiceImpl::Budget(grpc::ServerContext* context,
                                        const v1::BudgetRequest* request,
                                        v1::BudgetResponse* response) {
  absl::StatusOr<std::string> caller =
      tls::PeerIdentity(*context->auth_context());
  if (!caller.ok()) {
    CountRefusal(refusals_, refusal::kNoIdentity);
    return ToGrpcStatus(caller.status());
  }
  absl::StatusOr<v1::BudgetResponse> result = core_->Budget(*caller, *request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace passerelle::gateway
