// A tamper-evident, append-only audit log: opaque entries are the leaves of
// an RFC 6962 Merkle tree kept in a LogStore (RocksDB), with Ed25519-signed
// checkpoints in the C2SP tlog-checkpoint format (audit/checkpoint.h).
//
// Store layout (all integers 8-byte big-endian, so keys sort by index):
//   "entry/"      + be64(index)              -> entry bytes
//   "node/"       + u8(level) + be64(index)  -> 32-byte hash of the perfect
//                   subtree covering leaves [index << level,
//                   (index + 1) << level); level 0 is the leaf hash
//   "checkpoint/" + be64(tree size)          -> signed checkpoint note
//   "meta/size"                              -> be64(number of entries)
//   "meta/origin"                            -> checkpoint origin (key name)
//   "meta/public_key"                        -> PEM public key of the signer
//   "meta/checkpoint_interval"               -> be64(interval)
//   "meta/checkpoint_lag"                    -> be64(lag); absent: 0
//   "sidecar/"    + be64(index)              -> the entry's sidecar: bytes
//                   kept with the entry, written in its batch, outside the
//                   Merkle tree (a node entry's NodeCellsOpening)
// Group commit: concurrent Appends are written together. One synced batch
// holds every entry queued while the previous batch was being written (at
// most lag + 1 of them, or kMaxBatchEntries with lag 0), their leaf hashes,
// every subtree they complete, the new size and the checkpoints due; each
// Append returns once its batch is durable. The latest checkpoint is the
// last "checkpoint/" key; there is no pointer to it that could be rewound
// separately.
#ifndef PASSERELLE_AUDIT_LOG_H_
#define PASSERELLE_AUDIT_LOG_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "audit/checkpoint.h"
#include "audit/merkle.h"
#include "audit/signer.h"
#include "audit/store.h"

namespace passerelle::audit {

// Store keys, exposed for tools and tamper tests.
namespace log_keys {
inline constexpr char kEntryPrefix[] = "entry/";
inline constexpr char kNodePrefix[] = "node/";
inline constexpr char kCheckpointPrefix[] = "checkpoint/";
inline constexpr char kSidecarPrefix[] = "sidecar/";
inline constexpr char kSize[] = "meta/size";
inline constexpr char kOrigin[] = "meta/origin";
inline constexpr char kPublicKey[] = "meta/public_key";
inline constexpr char kCheckpointInterval[] = "meta/checkpoint_interval";
inline constexpr char kCheckpointLag[] = "meta/checkpoint_lag";

std::string Entry(uint64_t index);
std::string Node(int level, uint64_t index);
std::string CheckpointKey(uint64_t size);
std::string Sidecar(uint64_t index);
std::string EncodeU64(uint64_t v);
// Decodes an 8-byte big-endian integer.
std::optional<uint64_t> DecodeU64(absl::string_view bytes);
}  // namespace log_keys

struct AuditLogOptions {
  // Checkpoint origin line and note key name, e.g. "passerelle/gateway-fr".
  // Empty: use the one stored (required for a new log).
  std::string origin;
  // The log's signing key. Null opens the log read-only (for auditors).
  std::shared_ptr<const SigningKey> signing_key;
  // Sign a checkpoint in the same batch as every N-th append (1: every
  // append, which lets Verify locate a rewritten entry exactly). 0: only on
  // explicit SignCheckpoint(). Fixed when the log is created.
  uint64_t checkpoint_interval = 1;
  // How far past a due size (a multiple of the interval) its checkpoint may
  // be signed. 0: a checkpoint for exactly every multiple, also when
  // several appends share a batch (one signature per due size). L > 0: one
  // checkpoint per batch, for the batch's last size, whenever the batch
  // reaches a multiple; batches hold at most L + 1 entries, so the
  // checkpoint due at size s is signed at a size in [s, s + L] and Verify
  // checks exactly that. Fixed when the log is created (a log created
  // before this option existed has 0).
  uint64_t checkpoint_lag = 0;
};

// The checkpoint interval and lag of logs opened by AuditLog::Open(dir,
// key_file, origin), the gateway's and the nodes': a checkpoint is due every
// 16 entries and signed in the batch that reaches it, at most 63 entries
// later. One Ed25519 signature per query cost a node ~13% of its CPU under
// load; the servers also seal the tail (SealTail) every second and at
// shutdown, so no entry stays unsigned for long. Logs created before keep
// the interval they were created with (1).
inline constexpr uint64_t kDefaultCheckpointInterval = 16;
inline constexpr uint64_t kDefaultCheckpointLag = 63;
// Most entries in one batch when the lag is 0.
inline constexpr size_t kMaxBatchEntries = 64;

// What Verify looked at, filled in whether or not it succeeded.
struct VerifySummary {
  uint64_t size = 0;              // Entries the log claims.
  uint64_t entries_verified = 0;  // Leading entries found intact.
  uint64_t checkpoints_verified = 0;
  std::string root;  // Recomputed root of the verified prefix.
  std::optional<Checkpoint> latest_checkpoint;  // Latest valid one.
  std::optional<uint64_t> first_bad_index;      // Set on failure.
  std::string problem;                          // Set on failure.
};

// Thread-safe: appends are sequenced and group-committed (one leader writes
// a batch while the others queue); reads and proofs may run concurrently
// with appends and see a consistent, durable prefix. Verify and
// SignCheckpoint wait for the batch being written and block appends while
// they run.
class AuditLog {
 public:
  // Opens the log in `store`. With a signing key, creates the log if empty
  // and refuses (kDataLoss) a store whose tree does not match its latest
  // signed checkpoint, or (kFailedPrecondition) whose origin or public key
  // differs from the options'.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(
      std::unique_ptr<LogStore> store, AuditLogOptions options);
  // Open over RocksDB at `dir`; read-only unless a signing key is given.
  static absl::StatusOr<std::unique_ptr<AuditLog>> OpenDirectory(
      const std::string& dir, AuditLogOptions options);
  // The writer's usual open: RocksDB at `dir`, signing with the Ed25519 key
  // at `key_file` (created with mode 0600 if missing, see
  // LoadOrCreateSigningKey), checkpoint origin `origin`; a new log gets
  // checkpoint interval kDefaultCheckpointInterval and lag
  // kDefaultCheckpointLag.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(
      const std::string& dir, const std::string& key_file,
      const std::string& origin);

  // Durably appends `entry_bytes` (synced before returning) and returns its
  // index. Concurrent calls share one synced write. On error nothing was
  // appended (for every caller of the failed batch: the size, the tree and
  // the latest checkpoint are unchanged) and the caller must release
  // nothing.
  absl::StatusOr<uint64_t> Append(std::string entry_bytes)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The same, with `sidecar` stored beside the entry in the same synced
  // batch (all or nothing) but outside the Merkle tree: the tree, proofs and
  // checkpoints never depend on it, so it can stay private to the log's
  // owner (a node keeps the opening of its entry's count commitment there).
  absl::StatusOr<uint64_t> Append(std::string entry_bytes, std::string sidecar)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Signs a checkpoint of the current tree if it is newer than the latest
  // one (after checking consistency with it) and returns the latest note.
  absl::StatusOr<std::string> SignCheckpoint() ABSL_LOCKS_EXCLUDED(mu_);
  // Signs a checkpoint of the current tree when entries follow the latest
  // checkpoint (the "tail"); returns whether it signed one. An empty log
  // or a read-only one has nothing to seal (false).
  absl::StatusOr<bool> SealTail() ABSL_LOCKS_EXCLUDED(mu_);
  // Entries after the latest signed checkpoint.
  uint64_t UnsignedTail() const ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t Size() const ABSL_LOCKS_EXCLUDED(mu_);
  // A cheap liveness check for health probes: the latest entry reads back
  // from the store (OK for an empty log); UNAVAILABLE naming it otherwise.
  absl::Status CheckReadable() const ABSL_LOCKS_EXCLUDED(mu_);
  // Root of the current tree (EmptyRoot() when empty). Empty string in a
  // read-only log whose store lacks the tree's edge hashes (see Verify).
  std::string Root() const ABSL_LOCKS_EXCLUDED(mu_);
  // Root of the first `size` entries; kOutOfRange beyond Size().
  absl::StatusOr<std::string> RootAt(uint64_t size) const;
  absl::StatusOr<std::string> Get(uint64_t index) const;
  absl::StatusOr<std::string> LeafHash(uint64_t index) const;
  // The sidecar stored with entry `index`, if it was appended with one.
  absl::StatusOr<std::optional<std::string>> Sidecar(uint64_t index) const;
  absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index,
                                                          uint64_t size) const;
  absl::StatusOr<std::vector<std::string>> ConsistencyProof(
      uint64_t size1, uint64_t size2) const;

  // The latest signed checkpoint note, if any.
  absl::StatusOr<std::optional<std::string>> LatestCheckpoint() const;
  // Every stored checkpoint note, by increasing tree size.
  absl::StatusOr<std::vector<std::string>> Checkpoints() const;
  // The checkpoint note stored for tree size `size`, if any.
  absl::StatusOr<std::optional<std::string>> CheckpointAt(uint64_t size) const;
  // Up to `limit` (size, note) pairs for tree sizes in [min_size, max_size],
  // by increasing size; max_size 0 means no upper bound.
  absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>>
  CheckpointsBetween(uint64_t min_size, uint64_t max_size, size_t limit) const;
  // The public key stored with the log (trust it only as far as the store).
  absl::StatusOr<VerifyingKey> StoredPublicKey() const;
  const std::string& origin() const { return origin_; }

  // Test seam: blocks until at least `n` appends wait for the next batch.
  void AwaitQueuedForTesting(size_t n) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t checkpoint_lag() const { return checkpoint_lag_; }

  // Recomputes every leaf hash from the stored entries and the whole tree,
  // compares the stored subtree hashes, checks every checkpoint's signature
  // against `key`, its root, and its consistency with the previous one.
  // `trusted_checkpoints` are notes the auditor kept from earlier (e.g. from
  // a witness); the log must still contain and extend each of them, which
  // catches a truncation that also removed the later checkpoints.
  // kDataLoss naming the first bad index when anything was changed,
  // deleted, reordered or truncated; kInvalidArgument when a trusted
  // checkpoint does not verify; other codes for I/O errors.
  absl::Status Verify(const VerifyingKey& key, VerifySummary* summary = nullptr,
                      const std::vector<std::string>& trusted_checkpoints = {})
      const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct FrontierNode {
    int level;
    std::string hash;
  };
  class StoreNodes;
  class OverlayNodes;
  // One Append waiting in the queue; lives on the caller's stack.
  struct PendingAppend {
    PendingAppend(const AuditLog* l, std::string e, std::string s)
        : log(l), entry(std::move(e)), sidecar(std::move(s)) {}
    const AuditLog* log;
    std::string entry;
    std::string sidecar;  // Empty: none.
    bool done = false;
    absl::StatusOr<uint64_t> result = absl::UnknownError("not written");
  };

  AuditLog(std::unique_ptr<LogStore> store, AuditLogOptions options,
           std::string origin)
      : store_(std::move(store)),
        options_(std::move(options)),
        origin_(std::move(origin)) {}

  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CheckLatestCheckpoint() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds a signed checkpoint of (size, root) to `puts` and makes it
  // `*latest`, after checking it is consistent with `*latest` through
  // `nodes`; nothing when `*latest` is already for (size, root).
  absl::Status AddCheckpoint(uint64_t size, const std::string& root,
                             const NodeSource& nodes,
                             std::optional<Checkpoint>* latest,
                             std::vector<LogStore::KeyValue>* puts) const;
  // The leader's work: appends `batch` to the tree (`*size`, `*frontier`,
  // `*latest`, copies of the published state) and writes it in one synced
  // commit. Runs without mu_; only the leader calls it.
  absl::Status WriteBatch(const std::vector<PendingAppend*>& batch,
                          uint64_t* size, std::vector<FrontierNode>* frontier,
                          std::optional<Checkpoint>* latest) const;
  // Await conditions (mu_ is held when absl evaluates them).
  static bool DoneOrIdle(PendingAppend* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return p->done || !p->log->committing_;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !committing_; }
  absl::Status CheckSize(uint64_t size) const ABSL_LOCKS_EXCLUDED(mu_);
  static std::string FoldFrontier(const std::vector<FrontierNode>& frontier);
  absl::Status VerifyLocked(const VerifyingKey& key, VerifySummary* summary,
                            const std::vector<std::string>& trusted) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::unique_ptr<LogStore> store_;
  const AuditLogOptions options_;
  const std::string origin_;
  uint64_t checkpoint_interval_ = 0;  // Set in Load(), then constant.
  uint64_t checkpoint_lag_ = 0;       // Set in Load(), then constant.
  size_t max_batch_ = 1;              // Set in Load(), then constant.

  mutable absl::Mutex mu_;
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  // Perfect subtrees covering [0, size_), largest first.
  std::vector<FrontierNode> frontier_ ABSL_GUARDED_BY(mu_);
  bool frontier_valid_ ABSL_GUARDED_BY(mu_) = true;
  std::optional<Checkpoint> latest_ ABSL_GUARDED_BY(mu_);
  // Appends not yet taken by a leader, oldest first.
  std::deque<PendingAppend*> queue_ ABSL_GUARDED_BY(mu_);
  // A leader is writing a batch (size_, frontier_, latest_ are its to
  // change).
  bool committing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_LOG_H_
