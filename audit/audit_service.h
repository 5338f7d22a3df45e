// The gRPC adapter of the AuditService: the caller's identity from the mTLS
// peer certificate (tls::PeerIdentity), the answer from AuditServiceCore
// (audit/service_core.h), its status mapped to gRPC. No logic of its own.
#ifndef PASSERELLE_AUDIT_AUDIT_SERVICE_H_
#define PASSERELLE_AUDIT_AUDIT_SERVICE_H_

#include "audit/service_core.h"
#include "common/refusal_counters.h"
#include "passerelle/v1/audit_service.grpc.pb.h"

namespace passerelle::audit {

// Thread-safe (the core is).
class AuditServiceImpl final : public passerelle::v1::AuditService::Service {
 public:
  // `core` is not owned and must outlive the service.
  // `refusals` (may be null) counts peers refused for having no identity.
  explicit AuditServiceImpl(const AuditServiceCore* core,
                            RefusalCounters* refusals = nullptr)
      : core_(core), refusals_(refusals) {}

  grpc::Status GetEntries(
      grpc::ServerContext* context,
      const passerelle::v1::AuditEntriesRequest* request,
      passerelle::v1::AuditEntriesResponse* response) override;
  grpc::Status SearchEntries(
      grpc::ServerContext* context,
      const passerelle::v1::AuditSearchRequest* request,
      passerelle::v1::AuditEntriesResponse* response) override;
  grpc::Status GetCheckpoint(
      grpc::ServerContext* context,
      const passerelle::v1::AuditCheckpointRequest* request,
      passerelle::v1::AuditCheckpointResponse* response) override;
  grpc::Status ListCheckpoints(
      grpc::ServerContext* context,
      const passerelle::v1::AuditCheckpointsRequest* request,
      passerelle::v1::AuditCheckpointsResponse* response) override;
  grpc::Status GetPublicKey(
      grpc::ServerContext* context,
      const passerelle::v1::AuditPublicKeyRequest* request,
      passerelle::v1::AuditPublicKeyResponse* response) override;
  grpc::Status GetInclusionProof(
      grpc::ServerContext* context,
      const passerelle::v1::AuditInclusionProofRequest* request,
      passerelle::v1::AuditInclusionProofResponse* response) override;
  grpc::Status GetConsistencyProof(
      grpc::ServerContext* context,
      const passerelle::v1::AuditConsistencyProofRequest* request,
      passerelle::v1::AuditConsistencyProofResponse* response) override;

 private:
  const AuditServiceCore* const core_;
  RefusalCounters* const refusals_;
};

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_AUDIT_SERVICE_H_
