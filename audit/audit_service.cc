#include "audit/audit_service.h"

#include <string>
#include <utility>

#include "common/grpc_status.h"
#include "common/limits.h"
#include "tls/tls.h"

namespace passerelle::audit {
namespace {

namespace v1 = ::passerelle::v1;

// Identity from the peer, then the core's answer.
template <typename Request, typename Response, typename Method>
grpc::Status Serve(const AuditServiceCore* core, RefusalCounters* refusals,
                   Method method, grpc::ServerContext* context,
                   const Request* request, Response* response) {
  absl::StatusOr<std::string> caller =
      tls::PeerIdentity(*context->auth_context());
  if (!caller.ok()) {
    CountRefusal(refusals, refusal::kNoIdentity);
    return ToGrpcStatus(caller.status());
  }
  absl::StatusOr<Response> result = (core->*method)(*caller, *request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status AuditServiceImpl::GetEntries(
    grpc::ServerContext* context, const v1::AuditEntriesRequest* request,
    v1::AuditEntriesResponse* response) {
  return Serve(core_, refusals_, &AuditServiceCore::GetEntries, context,
               request, response);
}

grpc::Status AuditServiceImpl::SearchEntries(
    grpc::ServerContext* context, const v1::AuditSearchRequest* request,
    v1::AuditEntriesResponse* response) {
  // The filters are identifiers: bounded like every request field
  // (common/limits.h) before anything may record or echo them.
  absl::Status within =
      limits::CheckId("caller", request->caller(), limits::kMaxIdentityBytes);
  if (within.ok()) within = limits::CheckId("project", request->project());
  if (!within.ok()) return ToGrpcStatus(within);
  return Serve(core_, refusals_, &AuditServiceCore::SearchEntries, context,
               request, response);
}

grpc::Status AuditServiceImpl::GetCheckpoint(
    grpc::ServerContext* context, const v1::AuditCheckpointRequest* request,
    v1::AuditCheckpointResponse* response) {
  return Serve(core_, refusals_, &AuditServiceCore::GetCheckpoint, context,
               request, response);
}

grpc::Status AuditServiceImpl::ListCheckpoints(
    grpc::ServerContext* context, const v1::AuditCheckpointsRequest* request,
    v1::AuditCheckpointsResponse* response) {
  return Serve(core_, refusals_, &AuditServiceCore::ListCheckpoints, context,
               request, response);
}

grpc::Status AuditServiceImpl::GetPublicKey(
    grpc::ServerContext* context, const v1::AuditPublicKeyRequest* request,
    v1::AuditPublicKeyResponse* response) {
  return Serve(core_, refusals_, &AuditServiceCore::GetPublicKey, context,
               request, response);
}

grpc::Status AuditServiceImpl::GetInclusionProof(
    grpc::ServerContext* context, const v1::AuditInclusionProofRequest* request,
    v1::AuditInclusionProofResponse* response) {
  return Serve(core_, refusals_, &AuditServiceCore::GetInclusionProof, context,
               request, response);
}

grpc::Status AuditServiceImpl::GetConsistencyProof(
    grpc::ServerContext* context,
    const v1::AuditConsistencyProofRequest* request,
    v1::AuditConsistencyProofResponse* response) {
  return Serve(core_, refusals_, &AuditServiceCore::GetConsistencyProof,
               context, request, response);
}

}  // namespace passerelle::audit
