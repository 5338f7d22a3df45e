#include "audit/service_core.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "audit/checkpoint.h"
#include "audit/records.h"
#include "common/status_macros.h"

namespace passerelle::audit {
namespace {

namespace v1 = ::passerelle::v1;

// Whether an entry's content may go to a caller with `scope`: a project
// auditor sees the AuditRecords of their projects only, and nobody is
// served an entry that holds true counts.
bool Visible(const AuditScope& scope, absl::string_view entry) {
  absl::StatusOr<v1::AuditRecord> record = DecodeRecord(entry);
  if (record.ok() && !RemotelyServable(*record)) return false;
  if (scope.everything) return true;
  return record.ok() && scope.Covers(ViewOf(*record).project);
}

// At most `max` bytes of `s`, cut at a UTF-8 character boundary.
std::string TruncateUtf8(absl::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

v1::AuditReadEntry Read(absl::string_view rpc, uint64_t start = 0,
                        uint64_t end = 0, uint64_t tree_size = 0) {
  v1::AuditReadEntry read;
  read.set_rpc(std::string(rpc));
  read.set_start(start);
  read.set_end(end);
  read.set_tree_size(tree_size);
  return read;
}

uint32_t PageLimit(uint32_t asked, uint32_t limit) {
  return asked == 0 ? limit : std::min(asked, limit);
}

}  // namespace

absl::StatusOr<AuditScope> FederationAuditAuthorizer::ScopeOf(
    absl::string_view identity) const {
  if (identity.empty()) {
    return absl::UnauthenticatedError("audit log: the caller has no identity");
  }
  std::shared_ptr<const policy::Policy> policy = policy_();
  if (policy == nullptr) return absl::UnavailableError("no policy loaded");
  AuditScope scope;
  if (policy->DecideRole(identity, v1::Member::AUDITOR, "").allow()) {
    scope.everything = true;
    return scope;
  }
  for (const std::string& project : policy->ProjectIds()) {
    if (policy->DecideRole(identity, v1::Member::AUDITOR, project).allow()) {
      scope.projects.insert(project);
    }
  }
  if (scope.projects.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("audit log: \"", identity,
                     "\" is not an auditor of the federation or of any "
                     "project (policy ",
                     policy->version().substr(0, 12), ")"));
  }
  return scope;
}

absl::StatusOr<AuditScope> SiteAuditAuthorizer::ScopeOf(
    absl::string_view identity) const {
  if (identity.empty()) {
    return absl::UnauthenticatedError("audit log: the caller has no identity");
  }
  if (!policy_) {
    return absl::PermissionDeniedError(absl::StrCat(
        "audit log of site ", site_,
        ": this node runs without a site policy, so it has no remote "
        "auditors (audit its store directory instead)"));
  }
  std::shared_ptr<const policy::Policy> policy = policy_();
  if (policy == nullptr) return absl::UnavailableError("no policy loaded");
  const v1::SitePolicy* site = policy->FindSite(site_);
  if (site != nullptr &&
      std::find(site->auditors().begin(), site->auditors().end(), identity) !=
          site->auditors().end()) {
    AuditScope scope;
    scope.everything = true;
    return scope;
  }
  return absl::PermissionDeniedError(
      absl::StrCat("audit log of site ", site_, ": \"", identity,
                   "\" is not one of the site policy's auditors"));
}

absl::Status LogReadRecorder::Record(v1::AuditReadEntry read) {
  read.set_time_unix_micros(absl::ToUnixMicros(clock_->Now()));
  return log_->Append(EncodeRecord(read)).status();
}

absl::StatusOr<AuditScope> AuditServiceCore::Authorize(
    absl::string_view caller, v1::AuditReadEntry read) const {
  absl::StatusOr<AuditScope> scope = authorizer_->ScopeOf(caller);
  // A peer without identity is refused before it reads anything and is not
  // recorded (the servers count those refusals).
  if (recorder_ != nullptr && !caller.empty()) {
    read.set_caller(TruncateUtf8(caller, kMaxReadCallerBytes));
    read.set_decision(scope.ok() ? v1::AUDIT_DECISION_ALLOWED
                                 : v1::AUDIT_DECISION_DENIED);
    absl::Status recorded = recorder_->Record(std::move(read));
    if (!recorded.ok()) {
      // Audit before release: an unrecorded read answers nothing.
      return absl::UnavailableError(
          "audit log unavailable: the read could not be recorded, nothing "
          "served");
    }
  }
  return scope;
}

absl::Status AuditServiceCore::Range(uint64_t start, uint64_t end,
                                     uint64_t* size,
                                     uint64_t* clamped_end) const {
  *size = log_->Size();
  if (start > *size) {
    return absl::OutOfRangeError(
        absl::StrCat("start ", start, " is beyond the log's size ", *size));
  }
  *clamped_end = end == 0 ? *size : std::min(end, *size);
  if (*clamped_end < start) {
    return absl::InvalidArgumentError(
        absl::StrCat("end ", end, " is before start ", start));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AuditEntriesResponse> AuditServiceCore::GetEntries(
    absl::string_view caller, const v1::AuditEntriesRequest& request) const {
  PASSERELLE_ASSIGN_OR_RETURN(
      AuditScope scope,
      Authorize(caller, Read("GetEntries", request.start(), request.end())));
  uint64_t size = 0, end = 0;
  PASSERELLE_RETURN_IF_ERROR(
      Range(request.start(), request.end(), &size, &end));
  const uint32_t max = PageLimit(request.max_entries(), limits_.max_entries);
  v1::AuditEntriesResponse response;
  response.set_tree_size(size);
  size_t bytes = 0;
  uint64_t i = request.start();
  while (i < end && static_cast<uint32_t>(response.entries_size()) < max) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string entry, log_->Get(i));
    const bool visible = Visible(scope, entry);
    const size_t cost = visible ? entry.size() : kHashSize;
    if (response.entries_size() > 0 && bytes + cost > limits_.max_bytes) break;
    v1::AuditLogEntry* e = response.add_entries();
    e->set_index(i);
    if (visible) {
      e->set_entry(std::move(entry));
    } else {
      PASSERELLE_ASSIGN_OR_RETURN(std::string leaf, log_->LeafHash(i));
      e->set_withheld(true);
      e->set_leaf_hash(std::move(leaf));
    }
    bytes += cost;
    ++i;
  }
  response.set_next_index(i);
  return response;
}

absl::StatusOr<v1::AuditEntriesResponse> AuditServiceCore::SearchEntries(
    absl::string_view caller, const v1::AuditSearchRequest& request) const {
  v1::AuditReadEntry read =
      Read("SearchEntries", request.start(), request.end());
  read.set_filtered_caller(request.has_caller());
  read.set_filtered_project(request.has_project());
  PASSERELLE_ASSIGN_OR_RETURN(AuditScope scope,
                              Authorize(caller, std::move(read)));
  if (request.has_project() && !scope.Covers(request.project())) {
    return absl::PermissionDeniedError(absl::StrCat(
        "audit log: you audit project(s) ", absl::StrJoin(scope.projects, ", "),
        ", not \"", request.project(), "\""));
  }
  uint64_t size = 0, end = 0;
  PASSERELLE_RETURN_IF_ERROR(
      Range(request.start(), request.end(), &size, &end));
  RecordFilter filter;
  if (request.has_caller()) filter.caller = request.caller();
  if (request.has_project()) filter.project = request.project();
  if (request.has_since_unix_micros()) {
    filter.since = absl::FromUnixMicros(request.since_unix_micros());
  }
  if (request.has_until_unix_micros()) {
    filter.until = absl::FromUnixMicros(request.until_unix_micros());
  }
  if (request.outcome() != v1::AUDIT_DECISION_UNSPECIFIED) {
    filter.outcome = request.outcome();
  }
  const uint32_t max = PageLimit(request.max_entries(), limits_.max_entries);
  v1::AuditEntriesResponse response;
  response.set_tree_size(size);
  size_t bytes = 0;
  uint64_t scanned = 0;
  uint64_t i = request.start();
  while (i < end && static_cast<uint32_t>(response.entries_size()) < max &&
         scanned < limits_.max_scanned) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string entry, log_->Get(i));
    absl::StatusOr<v1::AuditRecord> record = DecodeRecord(entry);
    if (record.ok() && RemotelyServable(*record) &&
        scope.Covers(ViewOf(*record).project) && Matches(*record, filter)) {
      if (response.entries_size() > 0 &&
          bytes + entry.size() > limits_.max_bytes) {
        break;
      }
      bytes += entry.size();
      v1::AuditLogEntry* e = response.add_entries();
      e->set_index(i);
      e->set_entry(std::move(entry));
    }
    ++scanned;
    ++i;
  }
  response.set_next_index(i);
  return response;
}

absl::StatusOr<v1::AuditCheckpointResponse> AuditServiceCore::GetCheckpoint(
    absl::string_view caller, const v1::AuditCheckpointRequest& request) const {
  PASSERELLE_RETURN_IF_ERROR(
      Authorize(caller, Read("GetCheckpoint", 0, 0, request.tree_size()))
          .status());
  if (request.tree_size() == 0 && sealer_ != nullptr) {
    // A failed seal is reported by the sealer; the latest one still serves.
    (void)sealer_->Tick();
  }
  v1::AuditCheckpointResponse response;
  response.set_log_size(log_->Size());
  std::optional<std::string> note;
  if (request.tree_size() == 0) {
    PASSERELLE_ASSIGN_OR_RETURN(note, log_->LatestCheckpoint());
  } else {
    PASSERELLE_ASSIGN_OR_RETURN(note, log_->CheckpointAt(request.tree_size()));
    if (!note.has_value()) {
      return absl::NotFoundError(absl::StrCat(
          "no checkpoint was signed for tree size ", request.tree_size()));
    }
  }
  if (note.has_value()) response.set_note(*std::move(note));
  return response;
}

absl::StatusOr<v1::AuditCheckpointsResponse> AuditServiceCore::ListCheckpoints(
    absl::string_view caller,
    const v1::AuditCheckpointsRequest& request) const {
  PASSERELLE_RETURN_IF_ERROR(
      Authorize(caller,
                Read("ListCheckpoints", request.min_size(), request.max_size()))
          .status());
  const uint32_t max = PageLimit(request.max_notes(), limits_.max_notes);
  PASSERELLE_ASSIGN_OR_RETURN(
      auto notes, log_->CheckpointsBetween(request.min_size(),
                                           request.max_size(), max + 1));
  v1::AuditCheckpointsResponse response;
  if (notes.size() > max) {
    response.set_more(true);
    response.set_next_min_size(notes[max].first);
    notes.resize(max);
  }
  for (auto& [unused, note] : notes) response.add_notes(std::move(note));
  return response;
}

absl::StatusOr<v1::AuditPublicKeyResponse> AuditServiceCore::GetPublicKey(
    absl::string_view caller, const v1::AuditPublicKeyRequest&) const {
  PASSERELLE_RETURN_IF_ERROR(Authorize(caller, Read("GetPublicKey")).status());
  PASSERELLE_ASSIGN_OR_RETURN(VerifyingKey key, log_->StoredPublicKey());
  PASSERELLE_ASSIGN_OR_RETURN(std::string pem, key.ToPem());
  v1::AuditPublicKeyResponse response;
  response.set_origin(log_->origin());
  response.set_public_key_pem(std::move(pem));
  response.set_note_verifier_key(NoteVerifierKey(log_->origin(), key.raw()));
  return response;
}

absl::StatusOr<v1::AuditInclusionProofResponse>
AuditServiceCore::GetInclusionProof(
    absl::string_view caller,
    const v1::AuditInclusionProofRequest& request) const {
  // Hashes only: any auditor may prove any index (withheld entries' leaf
  // hashes are part of GetEntries already).
  PASSERELLE_RETURN_IF_ERROR(
      Authorize(caller, Read("GetInclusionProof", request.index(), 0,
                             request.tree_size()))
          .status());
  const uint64_t size =
      request.tree_size() == 0 ? log_->Size() : request.tree_size();
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<std::string> proof,
                              log_->InclusionProof(request.index(), size));
  PASSERELLE_ASSIGN_OR_RETURN(std::string leaf,
                              log_->LeafHash(request.index()));
  PASSERELLE_ASSIGN_OR_RETURN(std::string root, log_->RootAt(size));
  v1::AuditInclusionProofResponse response;
  response.set_index(request.index());
  response.set_tree_size(size);
  response.set_leaf_hash(std::move(leaf));
  response.set_root(std::move(root));
  for (std::string& h : proof) response.add_proof(std::move(h));
  return response;
}

absl::StatusOr<v1::AuditConsistencyProofResponse>
AuditServiceCore::GetConsistencyProof(
    absl::string_view caller,
    const v1::AuditConsistencyProofRequest& request) const {
  PASSERELLE_RETURN_IF_ERROR(
      Authorize(caller,
                Read("GetConsistencyProof", request.size1(), request.size2()))
          .status());
  const uint64_t size2 = request.size2() == 0 ? log_->Size() : request.size2();
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<std::string> proof,
                              log_->ConsistencyProof(request.size1(), size2));
  PASSERELLE_ASSIGN_OR_RETURN(std::string root1, log_->RootAt(request.size1()));
  PASSERELLE_ASSIGN_OR_RETURN(std::string root2, log_->RootAt(size2));
  v1::AuditConsistencyProofResponse response;
  response.set_size1(request.size1());
  response.set_size2(size2);
  response.set_root1(std::move(root1));
  response.set_root2(std::move(root2));
  for (std::string& h : proof) response.add_proof(std::move(h));
  return response;
}

}  // namespace passerelle::audit
