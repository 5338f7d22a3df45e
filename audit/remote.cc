#include "audit/remote.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "audit/merkle.h"
#include "common/status_macros.h"

namespace passerelle::audit {
namespace {

namespace v1 = ::passerelle::v1;

std::vector<std::string> ProofOf(
    const google::protobuf::RepeatedPtrField<std::string>& proof) {
  return {proof.begin(), proof.end()};
}

// The lowest-index problem found so far.
struct Problem {
  uint64_t index;
  std::string what;
};
void Keep(std::optional<Problem>* problem, uint64_t index, std::string what) {
  if (!problem->has_value() || index < (*problem)->index) {
    *problem = Problem{index, std::move(what)};
  }
}

}  // namespace

absl::Status FetchEntries(AuditReader& reader, uint64_t start, uint64_t end,
                          std::vector<FetchedEntry>* out) {
  uint64_t next = start;
  while (next < end) {
    v1::AuditEntriesRequest request;
    request.set_start(next);
    request.set_end(end);
    PASSERELLE_ASSIGN_OR_RETURN(v1::AuditEntriesResponse response,
                                reader.GetEntries(request));
    if (response.entries().empty()) {
      return absl::DataLossError(
          absl::StrCat("the server returned no entry at index ", next,
                       " (it reports ", response.tree_size(), " entries)"));
    }
    for (v1::AuditLogEntry& e : *response.mutable_entries()) {
      if (next >= end) break;  // More than asked for: ignored.
      if (e.index() != next) {
        return absl::DataLossError(absl::StrCat("the server returned entry ",
                                                e.index(), " where ", next,
                                                " was expected"));
      }
      FetchedEntry f;
      f.index = next;
      f.withheld = e.withheld();
      if (f.withheld) {
        if (e.leaf_hash().size() != kHashSize) {
          return absl::DataLossError(
              absl::StrCat("the server withheld entry ", next,
                           " without a 32-byte leaf hash"));
        }
        f.leaf_hash = e.leaf_hash();
      } else {
        f.bytes = std::move(*e.mutable_entry());
        f.leaf_hash = HashLeaf(f.bytes);
      }
      out->push_back(std::move(f));
      ++next;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Checkpoint> OpenRemoteCheckpoint(absl::string_view note,
                                                const VerifyingKey& key,
                                                absl::string_view origin) {
  std::string name(origin);
  if (name.empty()) {
    PASSERELLE_ASSIGN_OR_RETURN(Checkpoint parsed, ParseCheckpointNote(note));
    name = parsed.origin;
  }
  PASSERELLE_ASSIGN_OR_RETURN(Checkpoint cp, OpenCheckpoint(note, name, key));
  if (cp.origin != name) {
    return absl::UnauthenticatedError(absl::StrCat(
        "checkpoint is for origin '", cp.origin, "', not '", name, "'"));
  }
  return cp;
}

absl::StatusOr<std::optional<Checkpoint>> FetchLatestCheckpoint(
    AuditReader& reader, const VerifyingKey& key, absl::string_view origin,
    std::string* note) {
  PASSERELLE_ASSIGN_OR_RETURN(v1::AuditCheckpointResponse response,
                              reader.GetCheckpoint({}));
  if (note != nullptr) *note = response.note();
  if (response.note().empty()) return std::optional<Checkpoint>();
  absl::StatusOr<Checkpoint> cp =
      OpenRemoteCheckpoint(response.note(), key, origin);
  if (!cp.ok()) {
    return absl::DataLossError(absl::StrCat(
        "the server's latest checkpoint does not verify with the given "
        "public key: ",
        cp.status().message()));
  }
  return std::optional<Checkpoint>(*std::move(cp));
}

absl::Status AnchorRoot(AuditReader& reader, const Checkpoint& checkpoint,
                        uint64_t size, absl::string_view root) {
  if (size > checkpoint.size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tree size ", size, " is beyond the latest signed checkpoint (size ",
        checkpoint.size, "): nothing vouches for its root"));
  }
  if (size == checkpoint.size || size == 0) {
    const std::string want = size == 0 ? EmptyRoot() : checkpoint.root_hash;
    if (root != want) {
      return absl::DataLossError(absl::StrCat(
          "the root for size ", size, " is not the signed root for that size"));
    }
    return absl::OkStatus();
  }
  v1::AuditConsistencyProofRequest request;
  request.set_size1(size);
  request.set_size2(checkpoint.size);
  PASSERELLE_ASSIGN_OR_RETURN(v1::AuditConsistencyProofResponse response,
                              reader.GetConsistencyProof(request));
  if (response.size1() != size || response.size2() != checkpoint.size) {
    return absl::DataLossError(absl::StrCat(
        "asked for a consistency proof ", size, " -> ", checkpoint.size,
        ", the server answered ", response.size1(), " -> ", response.size2()));
  }
  // Our roots, never the server's.
  absl::Status st =
      VerifyConsistency(size, checkpoint.size, ProofOf(response.proof()), root,
                        checkpoint.root_hash);
  if (!st.ok()) {
    return absl::DataLossError(
        absl::StrCat("the root for size ", size,
                     " is not consistent with the signed checkpoint (size ",
                     checkpoint.size, "): ", st.message()));
  }
  return absl::OkStatus();
}

absl::Status VerifyRemoteInclusion(AuditReader& reader,
                                   const Checkpoint& checkpoint, uint64_t index,
                                   absl::string_view leaf_hash) {
  if (index >= checkpoint.size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "entry ", index, " is not yet covered by a signed checkpoint (size ",
        checkpoint.size, ")"));
  }
  v1::AuditInclusionProofRequest request;
  request.set_index(index);
  request.set_tree_size(checkpoint.size);
  PASSERELLE_ASSIGN_OR_RETURN(v1::AuditInclusionProofResponse response,
                              reader.GetInclusionProof(request));
  if (response.index() != index || response.tree_size() != checkpoint.size) {
    return absl::DataLossError(absl::StrCat(
        "asked for an inclusion proof of entry ", index, " in size ",
        checkpoint.size, ", the server answered entry ", response.index(),
        " in size ", response.tree_size()));
  }
  absl::Status st =
      VerifyInclusion(leaf_hash, index, checkpoint.size,
                      ProofOf(response.proof()), checkpoint.root_hash);
  if (!st.ok()) {
    return absl::DataLossError(absl::StrCat(
        "entry ", index, " is not included in the signed checkpoint (size ",
        checkpoint.size, "): ", st.message()));
  }
  return absl::OkStatus();
}

absl::Status VerifyRemote(AuditReader& reader, const VerifyingKey& key,
                          const std::vector<std::string>& trusted_checkpoints,
                          absl::string_view origin,
                          RemoteVerifySummary* summary) {
  *summary = RemoteVerifySummary();
  std::optional<Problem> problem;

  PASSERELLE_ASSIGN_OR_RETURN(v1::AuditCheckpointResponse latest,
                              reader.GetCheckpoint({}));
  const uint64_t n = latest.log_size();
  summary->log_size = n;
  summary->size = n;

  // The origin: pinned by the caller, else the latest note's (the key is
  // what vouches for it: the note's signature line names it).
  std::string name(origin);
  uint64_t claimed = 0;  // The latest note's size, before any check.
  if (!latest.note().empty()) {
    absl::StatusOr<Checkpoint> parsed = ParseCheckpointNote(latest.note());
    if (parsed.ok()) {
      if (name.empty()) name = parsed->origin;
      claimed = parsed->size;
    } else {
      Keep(&problem, 0,
           absl::StrCat("the latest checkpoint is malformed: ",
                        parsed.status().message()));
    }
  } else if (n > 0) {
    Keep(&problem, 0,
         absl::StrCat("the log has ", n,
                      " entries but no signed checkpoint vouches for them"));
  }
  std::vector<Checkpoint> trusted;
  for (const std::string& note : trusted_checkpoints) {
    absl::StatusOr<Checkpoint> cp = OpenRemoteCheckpoint(note, key, name);
    if (!cp.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "trusted checkpoint does not verify: ", cp.status().message()));
    }
    if (name.empty()) name = cp->origin;
    trusted.push_back(*std::move(cp));
  }
  summary->origin = name;

  // 1. Every entry the server reported, leaf hashes recomputed here.
  std::vector<FetchedEntry> entries;
  absl::Status fetched = FetchEntries(reader, 0, n, &entries);
  if (absl::IsDataLoss(fetched)) {
    Keep(&problem, entries.size(), std::string(fetched.message()));
  } else if (!fetched.ok()) {
    return fetched;
  }
  InMemoryTree tree;
  for (FetchedEntry& e : entries) {
    if (e.withheld) ++summary->withheld;
    tree.AppendLeafHash(std::move(e.leaf_hash));
  }
  const uint64_t good = tree.size();
  summary->entries_verified = good;

  // 2. Every checkpoint up to the latest one (and that one, whatever the
  //    list says), by increasing size: signature, size, root.
  std::vector<std::string> notes;
  const uint64_t max_size = std::max(n, claimed);
  uint64_t next = 0;
  while (true) {
    v1::AuditCheckpointsRequest request;
    request.set_min_size(next);
    request.set_max_size(max_size);
    PASSERELLE_ASSIGN_OR_RETURN(v1::AuditCheckpointsResponse page,
                                reader.ListCheckpoints(request));
    for (std::string& note : *page.mutable_notes()) {
      notes.push_back(std::move(note));
    }
    if (!page.more()) break;
    if (page.next_min_size() <= next) {
      Keep(&problem, 0, "the server's checkpoint list does not progress");
      break;
    }
    next = page.next_min_size();
    if (max_size != 0 && next > max_size) break;
  }
  if (!latest.note().empty()) notes.push_back(latest.note());
  std::vector<std::pair<uint64_t, std::string>> sorted;
  for (std::string& note : notes) {
    absl::StatusOr<Checkpoint> parsed = ParseCheckpointNote(note);
    sorted.emplace_back(parsed.ok() ? parsed->size : 0, std::move(note));
  }
  std::stable_sort(
      sorted.begin(), sorted.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());

  std::optional<Checkpoint> prev;
  for (const auto& [unused, note] : sorted) {
    const uint64_t covered = prev.has_value() ? prev->size : 0;
    absl::StatusOr<Checkpoint> cp = OpenRemoteCheckpoint(note, key, name);
    if (!cp.ok()) {
      Keep(&problem, covered,
           absl::StrCat("a checkpoint is not validly signed: ",
                        cp.status().message()));
      break;
    }
    if (prev.has_value() && cp->size == prev->size) {
      if (cp->root_hash != prev->root_hash) {
        Keep(&problem, covered,
             absl::StrCat("two signed checkpoints for size ", cp->size,
                          " disagree (a fork)"));
        break;
      }
      continue;
    }
    if (cp->size > n) {
      Keep(&problem, n,
           absl::StrCat("a signed checkpoint covers ", cp->size,
                        " entries but the log has ", n, " (log truncated)"));
      break;
    }
    if (cp->size > good) break;  // An entry problem below it is reported.
    PASSERELLE_ASSIGN_OR_RETURN(std::string root, RootAt(tree, cp->size));
    if (root != cp->root_hash) {
      Keep(&problem, covered,
           absl::StrCat("the first ", cp->size,
                        " entries do not hash to the signed root for that "
                        "size"));
      break;
    }
    // Both roots come from the one tree rebuilt here, so each verified
    // checkpoint is consistent with the previous one by construction.
    prev = *std::move(cp);
    ++summary->checkpoints_verified;
  }
  if (!problem.has_value() && claimed > 0 &&
      (!prev.has_value() || prev->size < claimed)) {
    Keep(&problem, prev.has_value() ? prev->size : 0,
         absl::StrCat("the latest checkpoint (size ", claimed,
                      ") does not verify"));
  }

  // 3. Checkpoints the auditor kept must still be extended by the log.
  for (const Checkpoint& cp : trusted) {
    if (cp.size > n) {
      Keep(&problem, n,
           absl::StrCat("a trusted checkpoint covers ", cp.size,
                        " entries but the log has ", n, " (log truncated)"));
      continue;
    }
    if (cp.size > good) continue;  // An entry problem below it is reported.
    PASSERELLE_ASSIGN_OR_RETURN(std::string root, RootAt(tree, cp.size));
    if (root != cp.root_hash) {
      Keep(&problem, 0,
           absl::StrCat("the log does not extend the trusted checkpoint for "
                        "size ",
                        cp.size, " (rewritten or forked)"));
    }
  }

  summary->root = tree.Root();
  summary->latest_checkpoint = prev;
  if (problem.has_value()) {
    summary->first_bad_index = problem->index;
    summary->problem = problem->what;
    return absl::DataLossError(
        absl::StrCat("audit log verification failed: first bad index ",
                     problem->index, ": ", problem->what));
  }
  return absl::OkStatus();
}

}  // namespace passerelle::audit
