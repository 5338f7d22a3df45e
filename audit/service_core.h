// The AuditService (proto/passerelle/v1/audit_service.proto) without the
// network: who may read an audit log remotely, and the answers. The gRPC
// adapter (audit/audit_service.h) only takes the caller's identity from the
// mTLS peer and maps statuses.
//
//   FederationAuditAuthorizer authorizer([&] { return policies->Current(); });
//   AuditServiceCore core(log.get(), &authorizer);
//   AuditServiceImpl service(&core);   // builder.RegisterService(&service)
#ifndef PASSERELLE_AUDIT_SERVICE_CORE_H_
#define PASSERELLE_AUDIT_SERVICE_CORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/log.h"
#include "audit/remote.h"
#include "audit/sealer.h"
#include "common/clock.h"
#include "passerelle/v1/audit_service.pb.h"
#include "policy/policy.h"

namespace passerelle::audit {

// What one auditor may read: the whole log, or the entries of some projects
// (the others are withheld: index and leaf hash only).
struct AuditScope {
  bool everything = false;
  std::set<std::string, std::less<>> projects;

  bool Covers(absl::string_view project) const {
    return everything || projects.count(project) > 0;
  }
};

// Decides who is an auditor. Implementations are thread-safe.
class AuditAuthorizer {
 public:
  virtual ~AuditAuthorizer() = default;
  // The caller's scope; PERMISSION_DENIED with the reason for anyone who is
  // not an auditor, UNAUTHENTICATED for an empty identity.
  virtual absl::StatusOr<AuditScope> ScopeOf(
      absl::string_view identity) const = 0;
};

using PolicyGetter = std::function<std::shared_ptr<const policy::Policy>()>;

// The gateway's rule: Policy::DecideRole(identity, AUDITOR, "") (a
// federation-wide auditor) sees everything; DecideRole(identity, AUDITOR, p)
// grants project p. Thread-safe; the policy is read on every call (hot
// reload).
class FederationAuditAuthorizer : public AuditAuthorizer {
 public:
  explicit FederationAuditAuthorizer(PolicyGetter policy)
      : policy_(std::move(policy)) {}
  absl::StatusOr<AuditScope> ScopeOf(absl::string_view identity) const override;

 private:
  const PolicyGetter policy_;
};

// A node's rule: the identities in its site policy's `auditors` list see the
// whole site log; nobody else (the gateway and researchers included). A null
// getter (a node run without site policy files) refuses everyone.
// Thread-safe.
class SiteAuditAuthorizer : public AuditAuthorizer {
 public:
  SiteAuditAuthorizer(std::string site, PolicyGetter policy)
      : site_(std::move(site)), policy_(std::move(policy)) {}
  absl::StatusOr<AuditScope> ScopeOf(absl::string_view identity) const override;

 private:
  const std::string site_;
  const PolicyGetter policy_;
};

// Records each AuditService read in the log that is read, before anything
// is answered (refused reads too): who, which RPC, which range. Only
// bounded fields are recorded (AuditReadEntry), and a read records exactly
// one entry whatever it returns, so reading the log grows it by one bounded
// entry per call, never recursively. Thread-safe.
class AuditReadRecorder {
 public:
  virtual ~AuditReadRecorder() = default;
  // Durably records `read` (its time is set here); an error means the read
  // must not be answered.
  virtual absl::Status Record(passerelle::v1::AuditReadEntry read) = 0;
};

// Appends each read to `log` (the log being read), stamped with `clock`.
// Neither is owned. Thread-safe (the log is).
class LogReadRecorder : public AuditReadRecorder {
 public:
  LogReadRecorder(AuditLog* log, Clock* clock) : log_(log), clock_(clock) {}
  absl::Status Record(passerelle::v1::AuditReadEntry read) override;

 private:
  AuditLog* const log_;
  Clock* const clock_;
};

// Most bytes of a reader's identity kept in its read entry.
inline constexpr size_t kMaxReadCallerBytes = 256;

// Page limits of the answers.
struct AuditServiceLimits {
  uint32_t max_entries = 1000;   // Per GetEntries / SearchEntries answer.
  size_t max_bytes = 1 << 20;    // Entry bytes per answer (at least one).
  uint64_t max_scanned = 10000;  // Entries a SearchEntries call examines.
  uint32_t max_notes = 1000;     // Per ListCheckpoints answer.
};

// The answers of every AuditService RPC for an authenticated `caller`.
// Every call first asks the authorizer and, with a recorder, records the
// read (allowed or refused) before answering; then it returns the
// authorizer's refusal (PERMISSION_DENIED) to non-auditors. Entries that
// carry true counts in their hashed bytes (node entries written before
// count commitments) are never served: they come back withheld. Without a
// recorder reads are not logged (in-process tools and tests). Thread-safe
// (the log, the recorder and the authorizer are).
class AuditServiceCore {
 public:
  // `log` and `authorizer` are not owned and must outlive the core.
  AuditServiceCore(const AuditLog* log, const AuditAuthorizer* authorizer,
                   AuditServiceLimits limits = {})
      : log_(log), authorizer_(authorizer), limits_(limits) {}
  // The writer's service: a request for the latest checkpoint first seals
  // the log's tail (`sealer` signs one if entries follow the latest), so an
  // auditor always receives a signed head over every entry. Not owned.
  AuditServiceCore(const AuditLog* log, CheckpointSealer* sealer,
                   const AuditAuthorizer* authorizer,
                   AuditServiceLimits limits = {})
      : log_(log), sealer_(sealer), authorizer_(authorizer), limits_(limits) {}
  // A served log: as above, and every read is recorded by `recorder` (not
  // owned; normally a LogReadRecorder over the same log).
  AuditServiceCore(const AuditLog* log, CheckpointSealer* sealer,
                   AuditReadRecorder* recorder,
                   const AuditAuthorizer* authorizer,
                   AuditServiceLimits limits = {})
      : log_(log),
        sealer_(sealer),
        recorder_(recorder),
        authorizer_(authorizer),
        limits_(limits) {}

  absl::StatusOr<passerelle::v1::AuditEntriesResponse> GetEntries(
      absl::string_view caller,
      const passerelle::v1::AuditEntriesRequest& request) const;
  absl::StatusOr<passerelle::v1::AuditEntriesResponse> SearchEntries(
      absl::string_view caller,
      const passerelle::v1::AuditSearchRequest& request) const;
  absl::StatusOr<passerelle::v1::AuditCheckpointResponse> GetCheckpoint(
      absl::string_view caller,
      const passerelle::v1::AuditCheckpointRequest& request) const;
  absl::StatusOr<passerelle::v1::AuditCheckpointsResponse> ListCheckpoints(
      absl::string_view caller,
      const passerelle::v1::AuditCheckpointsRequest& request) const;
  absl::StatusOr<passerelle::v1::AuditPublicKeyResponse> GetPublicKey(
      absl::string_view caller,
      const passerelle::v1::AuditPublicKeyRequest& request) const;
  absl::StatusOr<passerelle::v1::AuditInclusionProofResponse> GetInclusionProof(
      absl::string_view caller,
      const passerelle::v1::AuditInclusionProofRequest& request) const;
  absl::StatusOr<passerelle::v1::AuditConsistencyProofResponse>
  GetConsistencyProof(
      absl::string_view caller,
      const passerelle::v1::AuditConsistencyProofRequest& request) const;

 private:
  // The caller's scope, after recording the read (`read` names the RPC
  // and its range); UNAVAILABLE when the read cannot be recorded.
  absl::StatusOr<AuditScope> Authorize(
      absl::string_view caller, passerelle::v1::AuditReadEntry read) const;
  // [start, end) clamped to the log's size; kOutOfRange past it.
  absl::Status Range(uint64_t start, uint64_t end, uint64_t* size,
                     uint64_t* clamped_end) const;

  const AuditLog* const log_;
  CheckpointSealer* const sealer_ = nullptr;
  AuditReadRecorder* const recorder_ = nullptr;
  const AuditAuthorizer* const authorizer_;
  const AuditServiceLimits limits_;
};

// The core as an AuditReader for one caller, in process: what the CLI's
// gRPC reader does, without the network (tests, local tools). Not
// thread-safe (like any AuditReader).
class CoreAuditReader : public AuditReader {
 public:
  CoreAuditReader(const AuditServiceCore* core, std::string caller)
      : core_(core), caller_(std::move(caller)) {}

  absl::StatusOr<passerelle::v1::AuditEntriesResponse> GetEntries(
      const passerelle::v1::AuditEntriesRequest& r) override {
    return core_->GetEntries(caller_, r);
  }
  absl::StatusOr<passerelle::v1::AuditEntriesResponse> SearchEntries(
      const passerelle::v1::AuditSearchRequest& r) override {
    return core_->SearchEntries(caller_, r);
  }
  absl::StatusOr<passerelle::v1::AuditCheckpointResponse> GetCheckpoint(
      const passerelle::v1::AuditCheckpointRequest& r) override {
    return core_->GetCheckpoint(caller_, r);
  }
  absl::StatusOr<passerelle::v1::AuditCheckpointsResponse> ListCheckpoints(
      const passerelle::v1::AuditCheckpointsRequest& r) override {
    return core_->ListCheckpoints(caller_, r);
  }
  absl::StatusOr<passerelle::v1::AuditPublicKeyResponse> GetPublicKey(
      const passerelle::v1::AuditPublicKeyRequest& r) override {
    return core_->GetPublicKey(caller_, r);
  }
  absl::StatusOr<passerelle::v1::AuditInclusionProofResponse> GetInclusionProof(
      const passerelle::v1::AuditInclusionProofRequest& r) override {
    return core_->GetInclusionProof(caller_, r);
  }
  absl::StatusOr<passerelle::v1::AuditConsistencyProofResponse>
  GetConsistencyProof(
      const passerelle::v1::AuditConsistencyProofRequest& r) override {
    return core_->GetConsistencyProof(caller_, r);
  }

 private:
  const AuditServiceCore* const core_;
  const std::string caller_;
};

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_SERVICE_CORE_H_
