#include "audit/log.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "audit/merkle.h"
#include "common/crash_point.h"
#include "common/status_macros.h"

namespace passerelle::audit {

namespace log_keys {

std::string EncodeU64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

std::optional<uint64_t> DecodeU64(absl::string_view bytes) {
  if (bytes.size() != 8) return std::nullopt;
  uint64_t v = 0;
  for (char c : bytes) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

std::string Entry(uint64_t index) {
  return absl::StrCat(kEntryPrefix, EncodeU64(index));
}

std::string Node(int level, uint64_t index) {
  return absl::StrCat(kNodePrefix, std::string(1, static_cast<char>(level)),
                      EncodeU64(index));
}

std::string Sidecar(uint64_t index) {
  return absl::StrCat(kSidecarPrefix, EncodeU64(index));
}

std::string CheckpointKey(uint64_t size) {
  return absl::StrCat(kCheckpointPrefix, EncodeU64(size));
}

}  // namespace log_keys

namespace {

using log_keys::DecodeU64;
using log_keys::EncodeU64;

absl::Status CheckOrigin(absl::string_view origin) {
  if (origin.empty()) {
    return absl::InvalidArgumentError("audit log origin is empty");
  }
  for (char c : origin) {
    if (c == '+' || static_cast<unsigned char>(c) <= ' ') {
      return absl::InvalidArgumentError(absl::StrCat(
          "audit log origin '", origin, "' contains '+' or whitespace"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<uint64_t>> GetU64(const LogStore& store,
                                               absl::string_view key) {
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> raw, store.Get(key));
  if (!raw.has_value()) return std::optional<uint64_t>();
  std::optional<uint64_t> v = DecodeU64(*raw);
  if (!v.has_value()) {
    return absl::DataLossError(absl::StrCat("malformed ", key, " in store"));
  }
  return v;
}

// A problem found by Verify, at the first index it makes untrustworthy.
struct Problem {
  uint64_t index;
  std::string what;
};

void Keep(std::optional<Problem>* best, uint64_t index, std::string what) {
  if (!best->has_value() || index < (*best)->index) {
    *best = Problem{index, std::move(what)};
  }
}

}  // namespace

// Reads perfect-subtree hashes from the store.
class AuditLog::StoreNodes : public NodeSource {
 public:
  explicit StoreNodes(const LogStore& store) : store_(store) {}
  absl::StatusOr<std::string> GetNode(int level,
                                      uint64_t index) const override {
    PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> h,
                                store_.Get(log_keys::Node(level, index)));
    if (!h.has_value() || h->size() != kHashSize) {
      return absl::DataLossError(absl::StrCat(
          "audit store lacks the subtree hash at level ", level, " index ",
          index, " (covering entries from ", index << level, ")"));
    }
    return *std::move(h);
  }

 private:
  const LogStore& store_;
};

// Store nodes plus the ones an append has not committed yet.
class AuditLog::OverlayNodes : public NodeSource {
 public:
  explicit OverlayNodes(const LogStore& store) : base_(store) {}
  void Add(int level, uint64_t index, const std::string& hash) {
    pending_[{level, index}] = hash;
  }
  absl::StatusOr<std::string> GetNode(int level,
                                      uint64_t index) const override {
    auto it = pending_.find({level, index});
    if (it != pending_.end()) return it->second;
    return base_.GetNode(level, index);
  }

 private:
  StoreNodes base_;
  std::map<std::pair<int, uint64_t>, std::string> pending_;
};

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(
    std::unique_ptr<LogStore> store, AuditLogOptions options) {
  if (store == nullptr) return absl::InvalidArgumentError("null store");
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> stored_origin,
                              store->Get(log_keys::kOrigin));
  if (!stored_origin.has_value() && options.signing_key == nullptr) {
    return absl::NotFoundError(
        "no audit log in this store (it has no origin); open it with a "
        "signing key to create one");
  }
  if (stored_origin.has_value() && !options.origin.empty() &&
      *stored_origin != options.origin) {
    return absl::FailedPreconditionError(
        absl::StrCat("audit log origin is '", *stored_origin, "', not '",
                     options.origin, "'"));
  }
  std::string origin = stored_origin.value_or(options.origin);
  PASSERELLE_RETURN_IF_ERROR(CheckOrigin(origin));
  std::unique_ptr<AuditLog> log(
      new AuditLog(std::move(store), std::move(options), std::move(origin)));
  PASSERELLE_RETURN_IF_ERROR(log->Load());
  return log;
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::OpenDirectory(
    const std::string& dir, AuditLogOptions options) {
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<LogStore> store,
      OpenRocksDbLogStore(dir, /*read_only=*/options.signing_key == nullptr));
  return Open(std::move(store), std::move(options));
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(
    const std::string& dir, const std::string& key_file,
    const std::string& origin) {
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<SigningKey> key,
                              LoadOrCreateSigningKey(key_file));
  AuditLogOptions options;
  options.origin = origin;
  options.signing_key = std::shared_ptr<const SigningKey>(std::move(key));
  options.checkpoint_interval = kDefaultCheckpointInterval;
  options.checkpoint_lag = kDefaultCheckpointLag;
  return OpenDirectory(dir, std::move(options));
}

absl::Status AuditLog::Load() {
  absl::MutexLock lock(&mu_);
  std::vector<LogStore::KeyValue> meta;
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<uint64_t> interval,
                              GetU64(*store_, log_keys::kCheckpointInterval));
  checkpoint_interval_ = interval.value_or(options_.checkpoint_interval);
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<uint64_t> lag,
                              GetU64(*store_, log_keys::kCheckpointLag));
  if (!interval.has_value()) {
    // A new log: both are fixed now.
    meta.emplace_back(log_keys::kCheckpointInterval,
                      EncodeU64(checkpoint_interval_));
    checkpoint_lag_ = lag.value_or(options_.checkpoint_lag);
    if (!lag.has_value() && checkpoint_lag_ > 0) {
      meta.emplace_back(log_keys::kCheckpointLag, EncodeU64(checkpoint_lag_));
    }
  } else {
    checkpoint_lag_ = lag.value_or(0);  // Created before the lag existed.
  }
  if (checkpoint_lag_ >= (uint64_t{1} << 32)) {
    return absl::DataLossError(
        absl::StrCat("implausible checkpoint lag ", checkpoint_lag_));
  }
  max_batch_ = checkpoint_lag_ > 0 ? static_cast<size_t>(checkpoint_lag_) + 1
                                   : kMaxBatchEntries;

  PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> stored_key,
                              store_->Get(log_keys::kPublicKey));
  if (options_.signing_key != nullptr) {
    if (stored_key.has_value()) {
      PASSERELLE_ASSIGN_OR_RETURN(VerifyingKey stored,
                                  VerifyingKey::FromPem(*stored_key));
      if (stored.raw() != options_.signing_key->public_key()) {
        return absl::FailedPreconditionError(
            "the signing key is not the key this audit log was created with");
      }
    } else {
      PASSERELLE_ASSIGN_OR_RETURN(std::string pem,
                                  options_.signing_key->PublicKeyPem());
      meta.emplace_back(log_keys::kPublicKey, std::move(pem));
    }
    PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> stored_origin,
                                store_->Get(log_keys::kOrigin));
    if (!stored_origin.has_value()) {
      meta.emplace_back(log_keys::kOrigin, origin_);
    }
    if (!meta.empty()) PASSERELLE_RETURN_IF_ERROR(store_->Commit(meta));
  }

  PASSERELLE_ASSIGN_OR_RETURN(std::optional<uint64_t> size,
                              GetU64(*store_, log_keys::kSize));
  size_ = size.value_or(0);
  // The frontier: the perfect subtrees of the binary decomposition of size_.
  frontier_.clear();
  StoreNodes nodes(*store_);
  uint64_t start = 0;
  for (int level = 63; level >= 0; --level) {
    if ((size_ >> level & 1) == 0) continue;
    absl::StatusOr<std::string> h = nodes.GetNode(level, start >> level);
    if (!h.ok()) {
      // A reader still opens a damaged store so that Verify can say where
      // it is damaged; a writer must not build on it.
      if (options_.signing_key != nullptr) return h.status();
      frontier_.clear();
      frontier_valid_ = false;
      break;
    }
    frontier_.push_back({level, *std::move(h)});
    start += uint64_t{1} << level;
  }

  latest_.reset();
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<LogStore::KeyValue> last,
                              store_->Last(log_keys::kCheckpointPrefix));
  if (options_.signing_key == nullptr) {
    // Read-only: keep what parses; Verify() reports anything wrong.
    if (last.has_value()) {
      absl::StatusOr<Checkpoint> cp = ParseCheckpointNote(last->second);
      if (cp.ok()) latest_ = *std::move(cp);
    }
    return absl::OkStatus();
  }
  // The writer: the checkpoint of the last interval multiple must be there,
  // or we could not tell whether what we sign is consistent with it.
  const uint64_t due =
      checkpoint_interval_ == 0 ? 0 : size_ - size_ % checkpoint_interval_;
  if (!last.has_value()) {
    if (due > 0) {
      return absl::DataLossError(
          absl::StrCat("no signed checkpoint in a log of ", size_,
                       " entries (one for size ", due, " is due); run verify"));
    }
    return absl::OkStatus();
  }
  const std::string* note = &last->second;
  PASSERELLE_ASSIGN_OR_RETURN(
      VerifyingKey own,
      VerifyingKey::FromRaw(options_.signing_key->public_key()));
  absl::StatusOr<Checkpoint> cp = OpenCheckpoint(*note, origin_, own);
  if (!cp.ok()) {
    return absl::DataLossError(absl::StrCat(
        "latest checkpoint does not verify: ", cp.status().message()));
  }
  if (cp->size < due) {
    return absl::DataLossError(absl::StrCat("the signed checkpoint for size ",
                                            due, " is missing (latest is for ",
                                            cp->size, "); run verify"));
  }
  latest_ = *std::move(cp);
  return CheckLatestCheckpoint();
}

absl::Status AuditLog::CheckLatestCheckpoint() {
  if (!latest_.has_value()) return absl::OkStatus();
  if (latest_->size > size_) {
    return absl::DataLossError(
        absl::StrCat("the latest signed checkpoint covers ", latest_->size,
                     " entries but the store holds ", size_, " (truncated)"));
  }
  PASSERELLE_ASSIGN_OR_RETURN(
      std::string root, audit::RootAt(StoreNodes(*store_), latest_->size));
  if (root != latest_->root_hash) {
    return absl::DataLossError(absl::StrCat(
        "the stored tree does not match the latest signed checkpoint (size ",
        latest_->size, "); run verify"));
  }
  return absl::OkStatus();
}

std::string AuditLog::FoldFrontier(const std::vector<FrontierNode>& frontier) {
  if (frontier.empty()) return EmptyRoot();
  std::string h = frontier.back().hash;
  for (size_t i = frontier.size() - 1; i-- > 0;) {
    h = HashChildren(frontier[i].hash, h);
  }
  return h;
}

absl::Status AuditLog::AddCheckpoint(
    uint64_t size, const std::string& root, const NodeSource& nodes,
    std::optional<Checkpoint>* latest,
    std::vector<LogStore::KeyValue>* puts) const {
  if (latest->has_value()) {
    const Checkpoint& prev = **latest;
    if (prev.size > size) {
      return absl::DataLossError(absl::StrCat("refusing to sign size ", size,
                                              ": a checkpoint for size ",
                                              prev.size, " exists"));
    }
    if (prev.size == size) {
      if (root != prev.root_hash) {
        return absl::DataLossError(
            absl::StrCat("refusing to sign: root for size ", size,
                         " differs from the signed one"));
      }
      return absl::OkStatus();  // Already signed.
    }
    if (prev.size > 0) {
      PASSERELLE_ASSIGN_OR_RETURN(
          std::vector<std::string> proof,
          audit::ConsistencyProof(nodes, prev.size, size));
      absl::Status consistent =
          VerifyConsistency(prev.size, size, proof, prev.root_hash, root);
      if (!consistent.ok()) {
        return absl::DataLossError(
            absl::StrCat("refusing to sign a checkpoint for size ", size,
                         " inconsistent with the one for size ", prev.size,
                         ": ", consistent.message()));
      }
    }
  }
  Checkpoint cp{origin_, size, root};
  PASSERELLE_ASSIGN_OR_RETURN(
      std::string note,
      audit::SignCheckpoint(cp, origin_, *options_.signing_key));
  puts->emplace_back(log_keys::CheckpointKey(size), std::move(note));
  *latest = std::move(cp);
  return absl::OkStatus();
}

absl::Status AuditLog::WriteBatch(const std::vector<PendingAppend*>& batch,
                                  uint64_t* size,
                                  std::vector<FrontierNode>* frontier,
                                  std::optional<Checkpoint>* latest) const {
  std::vector<LogStore::KeyValue> puts;
  puts.reserve(batch.size() * 3 + 2);
  OverlayNodes overlay(*store_);
  bool checkpoint_due = false;
  for (PendingAppend* p : batch) {
    const uint64_t index = *size;
    std::string h = HashLeaf(p->entry);
    puts.emplace_back(log_keys::Entry(index), std::move(p->entry));
    puts.emplace_back(log_keys::Node(0, index), h);
    if (!p->sidecar.empty()) {
      puts.emplace_back(log_keys::Sidecar(index), std::move(p->sidecar));
    }
    overlay.Add(0, index, h);
    int level = 0;
    uint64_t node_index = index;
    while (!frontier->empty() && frontier->back().level == level) {
      h = HashChildren(frontier->back().hash, h);
      frontier->pop_back();
      ++level;
      node_index >>= 1;
      puts.emplace_back(log_keys::Node(level, node_index), h);
      overlay.Add(level, node_index, h);
    }
    frontier->push_back({level, std::move(h)});
    *size = index + 1;
    if (checkpoint_interval_ > 0 && *size % checkpoint_interval_ == 0) {
      if (checkpoint_lag_ == 0) {
        PASSERELLE_RETURN_IF_ERROR(AddCheckpoint(*size, FoldFrontier(*frontier),
                                                 overlay, latest, &puts));
      } else {
        checkpoint_due = true;
      }
    }
  }
  if (checkpoint_due) {
    // One checkpoint for the whole batch, at its last size: within the lag
    // of every due size in it, since a batch has at most lag + 1 entries.
    PASSERELLE_RETURN_IF_ERROR(
        AddCheckpoint(*size, FoldFrontier(*frontier), overlay, latest, &puts));
  }
  puts.emplace_back(log_keys::kSize, EncodeU64(*size));
  PASSERELLE_CRASH_POINT("audit.append.before_commit");
  return store_->Commit(puts);
}

absl::StatusOr<uint64_t> AuditLog::Append(std::string entry_bytes) {
  return Append(std::move(entry_bytes), std::string());
}

absl::StatusOr<uint64_t> AuditLog::Append(std::string entry_bytes,
                                          std::string sidecar) {
  if (options_.signing_key == nullptr) {
    return absl::FailedPreconditionError(
        "audit log is open read-only (no signing key)");
  }
  PendingAppend self{this, std::move(entry_bytes), std::move(sidecar)};
  mu_.Lock();
  queue_.push_back(&self);
  // Wait until a leader has written our entry, or until nobody is writing
  // and we lead.
  mu_.Await(absl::Condition(&DoneOrIdle, &self));
  if (!self.done) {
    committing_ = true;
    while (!self.done) {
      // Everything queued while the previous batch was written (FIFO, so
      // indices follow the queue).
      std::vector<PendingAppend*> batch;
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
      uint64_t size = size_;
      std::vector<FrontierNode> frontier = frontier_;
      std::optional<Checkpoint> latest = latest_;
      const uint64_t first = size;
      mu_.Unlock();
      // Hashing, signing and the synced write happen without the lock, so
      // the next appends can queue meanwhile.
      absl::Status written = WriteBatch(batch, &size, &frontier, &latest);
      if (written.ok()) PASSERELLE_CRASH_POINT("audit.append.after_commit");
      mu_.Lock();
      if (written.ok()) {
        // Published only once durable; a failed batch changes nothing.
        size_ = size;
        frontier_ = std::move(frontier);
        latest_ = std::move(latest);
      }
      for (size_t i = 0; i < batch.size(); ++i) {
        if (written.ok()) {
          batch[i]->result = first + i;
        } else {
          batch[i]->result = written;
        }
        batch[i]->done = true;
      }
    }
    committing_ = false;
  }
  absl::StatusOr<uint64_t> result = std::move(self.result);
  mu_.Unlock();
  return result;
}

absl::StatusOr<std::string> AuditLog::SignCheckpoint() {
  if (options_.signing_key == nullptr) {
    return absl::FailedPreconditionError(
        "audit log is open read-only (no signing key)");
  }
  absl::MutexLock lock(&mu_, absl::Condition(this, &AuditLog::Idle));
  if (size_ == 0) {
    return absl::FailedPreconditionError("the audit log is empty");
  }
  std::vector<LogStore::KeyValue> puts;
  std::optional<Checkpoint> latest = latest_;
  PASSERELLE_RETURN_IF_ERROR(AddCheckpoint(
      size_, FoldFrontier(frontier_), StoreNodes(*store_), &latest, &puts));
  if (!puts.empty()) PASSERELLE_RETURN_IF_ERROR(store_->Commit(puts));
  latest_ = std::move(latest);
  PASSERELLE_ASSIGN_OR_RETURN(
      std::optional<std::string> note,
      store_->Get(log_keys::CheckpointKey(latest_->size)));
  if (!note.has_value()) {
    return absl::DataLossError("latest checkpoint missing from store");
  }
  return *std::move(note);
}

uint64_t AuditLog::UnsignedTail() const {
  absl::MutexLock lock(&mu_);
  return size_ - (latest_.has_value() ? latest_->size : 0);
}

absl::StatusOr<bool> AuditLog::SealTail() {
  if (options_.signing_key == nullptr || UnsignedTail() == 0) return false;
  PASSERELLE_RETURN_IF_ERROR(SignCheckpoint().status());
  return true;
}

void AuditLog::AwaitQueuedForTesting(size_t n) const {
  struct Arg {
    const std::deque<PendingAppend*>* queue;
    size_t n;
  } arg{&queue_, n};
  absl::MutexLock lock(
      &mu_, absl::Condition(
                +[](Arg* a) { return a->queue->size() >= a->n; }, &arg));
}

uint64_t AuditLog::Size() const {
  absl::MutexLock lock(&mu_);
  return size_;
}

absl::Status AuditLog::CheckReadable() const {
  const uint64_t size = Size();
  if (size == 0) return absl::OkStatus();
  absl::StatusOr<std::string> last = Get(size - 1);
  if (!last.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot read entry ", size - 1,
                                               ": ", last.status().message()));
  }
  return absl::OkStatus();
}

std::string AuditLog::Root() const {
  absl::MutexLock lock(&mu_);
  if (!frontier_valid_) return "";
  return FoldFrontier(frontier_);
}

absl::Status AuditLog::CheckSize(uint64_t size) const {
  const uint64_t current = Size();
  if (size > current) {
    return absl::OutOfRangeError(
        absl::StrCat("tree size ", size, " is beyond the log size ", current));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> AuditLog::RootAt(uint64_t size) const {
  PASSERELLE_RETURN_IF_ERROR(CheckSize(size));
  return audit::RootAt(StoreNodes(*store_), size);
}

absl::StatusOr<std::string> AuditLog::Get(uint64_t index) const {
  if (index >= Size()) {
    return absl::OutOfRangeError(
        absl::StrCat("no entry ", index, " (log size ", Size(), ")"));
  }
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> entry,
                              store_->Get(log_keys::Entry(index)));
  if (!entry.has_value()) {
    return absl::DataLossError(
        absl::StrCat("entry ", index, " is missing from the store"));
  }
  return *std::move(entry);
}

absl::StatusOr<std::optional<std::string>> AuditLog::Sidecar(
    uint64_t index) const {
  if (index >= Size()) {
    return absl::OutOfRangeError(
        absl::StrCat("no entry ", index, " (log size ", Size(), ")"));
  }
  return store_->Get(log_keys::Sidecar(index));
}

absl::StatusOr<std::string> AuditLog::LeafHash(uint64_t index) const {
  if (index >= Size()) {
    return absl::OutOfRangeError(
        absl::StrCat("no entry ", index, " (log size ", Size(), ")"));
  }
  return StoreNodes(*store_).GetNode(0, index);
}

absl::StatusOr<std::vector<std::string>> AuditLog::InclusionProof(
    uint64_t index, uint64_t size) const {
  PASSERELLE_RETURN_IF_ERROR(CheckSize(size));
  return audit::InclusionProof(StoreNodes(*store_), index, size);
}

absl::StatusOr<std::vector<std::string>> AuditLog::ConsistencyProof(
    uint64_t size1, uint64_t size2) const {
  PASSERELLE_RETURN_IF_ERROR(CheckSize(size2));
  return audit::ConsistencyProof(StoreNodes(*store_), size1, size2);
}

absl::StatusOr<std::optional<std::string>> AuditLog::LatestCheckpoint() const {
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<LogStore::KeyValue> last,
                              store_->Last(log_keys::kCheckpointPrefix));
  if (!last.has_value()) return std::optional<std::string>();
  return std::optional<std::string>(std::move(last->second));
}

absl::StatusOr<std::vector<std::string>> AuditLog::Checkpoints() const {
  std::vector<std::string> notes;
  PASSERELLE_RETURN_IF_ERROR(
      store_->Scan(log_keys::kCheckpointPrefix,
                   [&](absl::string_view, absl::string_view value) {
                     notes.emplace_back(value);
                     return true;
                   }));
  return notes;
}

absl::StatusOr<std::optional<std::string>> AuditLog::CheckpointAt(
    uint64_t size) const {
  return store_->Get(log_keys::CheckpointKey(size));
}

absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>>
AuditLog::CheckpointsBetween(uint64_t min_size, uint64_t max_size,
                             size_t limit) const {
  std::vector<std::pair<uint64_t, std::string>> out;
  if (limit == 0) return out;
  const size_t prefix_len = strlen(log_keys::kCheckpointPrefix);
  absl::Status bad;
  PASSERELLE_RETURN_IF_ERROR(store_->Scan(
      log_keys::kCheckpointPrefix,
      [&](absl::string_view k, absl::string_view v) {
        std::optional<uint64_t> size = DecodeU64(k.substr(prefix_len));
        if (!size.has_value()) {
          bad = absl::DataLossError("malformed checkpoint key in store");
          return false;
        }
        if (*size < min_size) return true;
        if (max_size != 0 && *size > max_size) return false;
        out.emplace_back(*size, std::string(v));
        return out.size() < limit;
      }));
  PASSERELLE_RETURN_IF_ERROR(bad);
  return out;
}

absl::StatusOr<VerifyingKey> AuditLog::StoredPublicKey() const {
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> pem,
                              store_->Get(log_keys::kPublicKey));
  if (!pem.has_value()) {
    return absl::NotFoundError("the audit store holds no public key");
  }
  return VerifyingKey::FromPem(*pem);
}

absl::Status AuditLog::Verify(
    const VerifyingKey& key, VerifySummary* summary,
    const std::vector<std::string>& trusted_checkpoints) const {
  for (const std::string& note : trusted_checkpoints) {
    absl::StatusOr<Checkpoint> cp = OpenCheckpoint(note, origin_, key);
    if (!cp.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "trusted checkpoint does not verify: ", cp.status().message()));
    }
  }
  // Not while a batch is being written: the store would change under us.
  absl::MutexLock lock(&mu_, absl::Condition(this, &AuditLog::Idle));
  VerifySummary local;
  return VerifyLocked(key, summary != nullptr ? summary : &local,
                      trusted_checkpoints);
}

absl::Status AuditLog::VerifyLocked(
    const VerifyingKey& key, VerifySummary* summary,
    const std::vector<std::string>& trusted) const {
  *summary = VerifySummary();
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<uint64_t> stored_size,
                              GetU64(*store_, log_keys::kSize));
  const uint64_t n = stored_size.value_or(0);
  summary->size = n;
  std::optional<Problem> problem;

  // 1. Every entry, in order, against its stored leaf hash; the recomputed
  //    leaves build the reference tree.
  InMemoryTree tree;
  const size_t entry_prefix_len = strlen(log_keys::kEntryPrefix);
  absl::Status read_error;
  PASSERELLE_RETURN_IF_ERROR(store_->Scan(
      log_keys::kEntryPrefix, [&](absl::string_view k, absl::string_view v) {
        const uint64_t expected = tree.size();
        std::optional<uint64_t> index = DecodeU64(k.substr(entry_prefix_len));
        if (!index.has_value()) {
          Keep(&problem, expected, "malformed entry key in store");
          return false;
        }
        if (*index != expected) {
          Keep(&problem, expected,
               *index > expected
                   ? absl::StrCat("entry ", expected, " is missing")
                   : absl::StrCat("entry key out of order at ", *index));
          return false;
        }
        if (expected >= n) {
          Keep(&problem, expected,
               absl::StrCat("entry ", expected, " lies beyond the log size ", n,
                            " (not in the tree)"));
          return false;
        }
        std::string leaf = HashLeaf(v);
        absl::StatusOr<std::optional<std::string>> stored =
            store_->Get(log_keys::Node(0, expected));
        if (!stored.ok()) {
          read_error = stored.status();
          return false;
        }
        if (!stored->has_value()) {
          Keep(&problem, expected,
               absl::StrCat("leaf hash of entry ", expected, " is missing"));
          return false;
        }
        if (**stored != leaf) {
          Keep(&problem, expected,
               absl::StrCat("entry ", expected,
                            " does not match its recorded leaf hash (entry "
                            "changed, replaced or reordered)"));
          return false;
        }
        tree.AppendLeafHash(std::move(leaf));
        return true;
      }));
  PASSERELLE_RETURN_IF_ERROR(read_error);
  const uint64_t good = tree.size();
  if (!problem.has_value() && good < n) {
    Keep(&problem, good,
         absl::StrCat("entries ", good, "..", n - 1,
                      " are missing (log truncated)"));
  }
  summary->entries_verified = good;

  // 2. Stored subtree hashes within the intact prefix must match, and none
  //    may be missing (appends and proofs rely on them).
  std::map<int, uint64_t> next_at_level;
  const size_t node_prefix_len = strlen(log_keys::kNodePrefix);
  PASSERELLE_RETURN_IF_ERROR(store_->Scan(
      log_keys::kNodePrefix, [&](absl::string_view k, absl::string_view v) {
        k.remove_prefix(node_prefix_len);
        if (k.size() != 9) {
          Keep(&problem, 0, "malformed subtree key in store");
          return false;
        }
        const int level = static_cast<unsigned char>(k[0]);
        const uint64_t index = *DecodeU64(k.substr(1));
        if (level == 0 || level >= 64 || ((index + 1) << level) > good) {
          return true;  // Leaves were checked above; beyond `good` unknown.
        }
        uint64_t& next = next_at_level[level];
        if (index != next) {
          Keep(&problem, next << level,
               absl::StrCat("subtree hash at level ", level, " index ", next,
                            " is missing"));
        }
        next = index + 1;
        absl::StatusOr<std::string> want = tree.GetNode(level, index);
        if (!want.ok() || *want != v) {
          Keep(&problem, index << level,
               absl::StrCat("stored subtree hash at level ", level, " index ",
                            index, " differs from the recomputed one"));
        }
        return true;
      }));
  for (int level = 1; level < 64 && (uint64_t{1} << level) <= good; ++level) {
    const uint64_t want = good >> level;
    const uint64_t have = next_at_level[level];
    if (have < want) {
      Keep(&problem, have << level,
           absl::StrCat("subtree hash at level ", level, " index ", have,
                        " is missing"));
    }
  }

  // 3. Checkpoints: signature, placement, root, and consistency with the
  //    previous one. A bad checkpoint makes its entries since the previous
  //    good checkpoint untrustworthy.
  std::vector<std::pair<std::string, std::string>> notes;
  PASSERELLE_RETURN_IF_ERROR(
      store_->Scan(log_keys::kCheckpointPrefix,
                   [&](absl::string_view k, absl::string_view v) {
                     notes.emplace_back(std::string(k), std::string(v));
                     return true;
                   }));
  const size_t cp_prefix_len = strlen(log_keys::kCheckpointPrefix);
  std::optional<Checkpoint> prev;
  std::vector<uint64_t> signed_sizes;
  for (const auto& [k, note] : notes) {
    const uint64_t covered = prev.has_value() ? prev->size : 0;
    std::optional<uint64_t> key_size =
        DecodeU64(absl::string_view(k).substr(cp_prefix_len));
    absl::StatusOr<Checkpoint> cp = OpenCheckpoint(note, origin_, key);
    if (!key_size.has_value()) {
      Keep(&problem, covered, "malformed checkpoint key in store");
      break;
    }
    if (!cp.ok()) {
      Keep(&problem, covered,
           absl::StrCat("checkpoint for size ", *key_size,
                        " is not validly signed: ", cp.status().message()));
      break;
    }
    if (cp->size != *key_size || cp->origin != origin_) {
      Keep(&problem, covered,
           absl::StrCat("checkpoint stored for size ", *key_size, " is for ",
                        cp->origin, " size ", cp->size));
      break;
    }
    if (cp->size > n) {
      Keep(&problem, n,
           absl::StrCat("a signed checkpoint covers ", cp->size,
                        " entries but the log has ", n, " (log truncated)"));
      break;
    }
    if (cp->size > good) break;  // An entry problem below it is reported.
    PASSERELLE_ASSIGN_OR_RETURN(std::string root,
                                audit::RootAt(tree, cp->size));
    if (root != cp->root_hash) {
      Keep(&problem, covered,
           absl::StrCat("the first ", cp->size,
                        " entries do not hash to the signed root for that "
                        "size"));
      break;
    }
    if (prev.has_value()) {
      PASSERELLE_ASSIGN_OR_RETURN(
          std::vector<std::string> proof,
          audit::ConsistencyProof(tree, prev->size, cp->size));
      absl::Status consistent = VerifyConsistency(
          prev->size, cp->size, proof, prev->root_hash, cp->root_hash);
      if (!consistent.ok()) {
        Keep(&problem, covered,
             absl::StrCat("checkpoint for size ", cp->size,
                          " is inconsistent with the one for size ", prev->size,
                          ": ", consistent.message()));
        break;
      }
    }
    signed_sizes.push_back(cp->size);
    prev = *std::move(cp);
    ++summary->checkpoints_verified;
  }
  // Every multiple s of the interval must have been signed in its batch: at
  // s itself with lag 0, at most `lag` entries later otherwise.
  if (checkpoint_interval_ > 0) {
    size_t i = 0;
    const uint64_t limit = std::min(n, good);
    for (uint64_t s = checkpoint_interval_; s <= limit;
         s += checkpoint_interval_) {
      while (i < signed_sizes.size() && signed_sizes[i] < s) ++i;
      if (i == signed_sizes.size() || signed_sizes[i] - s > checkpoint_lag_) {
        if (problem.has_value() && problem->index < s) break;
        Keep(&problem, s - checkpoint_interval_,
             absl::StrCat("the signed checkpoint for size ", s, " is missing"));
        break;
      }
    }
  }

  // 4. Checkpoints the auditor kept must still be extended by the log.
  for (const std::string& note : trusted) {
    absl::StatusOr<Checkpoint> cp = OpenCheckpoint(note, origin_, key);
    if (!cp.ok()) return cp.status();  // Checked by Verify() already.
    if (cp->size > n) {
      Keep(&problem, n,
           absl::StrCat("a trusted checkpoint covers ", cp->size,
                        " entries but the log has ", n, " (log truncated)"));
      continue;
    }
    if (cp->size > good) continue;  // An entry problem below it is reported.
    PASSERELLE_ASSIGN_OR_RETURN(std::string root,
                                audit::RootAt(tree, cp->size));
    if (root != cp->root_hash) {
      Keep(&problem, 0,
           absl::StrCat("the log does not extend the trusted checkpoint for "
                        "size ",
                        cp->size, " (rewritten or forked)"));
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
