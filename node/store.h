// Persistence of node snapshots in RocksDB. A load writes a complete new
// snapshot under its own key prefix and then, in one synced write, makes it
// current: a failed or interrupted load leaves the previous snapshot serving.
//
// Layout (format 3): per code, its posting in a few large values of raw
// little-endian columns (patients, days, row ordinals, values), written as
// SST files and ingested in one step, so a load writes each byte once and an
// open is a few large sequential reads with no decoding or re-sorting. A
// code sharing its posting with a code earlier in key order (a concept id
// and its vocabulary code) is one alias value naming that code. Formats 1
// and 2 (no aliases) are still read.
#ifndef PASSERELLE_NODE_STORE_H_
#define PASSERELLE_NODE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "node/crosswalk.h"
#include "node/snapshot.h"

namespace rocksdb {
class DB;
}

namespace passerelle::node {

// The version of a snapshot loaded with crosswalk set `mapping_set` (hex
// SHA-256): `base` + "-m" + its first 12 digits, so that the snapshot
// identity (the gateway's release cache key, every audit entry) names the
// mapping set in force. `base` as it is for an empty mapping set.
std::string VersionWithMappingSet(absl::string_view base,
                                  absl::string_view mapping_set);
// The 12 digits a version names ("" when it names none).
std::string MappingSetOfVersion(absl::string_view version);

// Thread-safe; one process opens a store directory at a time (RocksDB lock).
class NodeStore {
 public:
  static absl::StatusOr<std::unique_ptr<NodeStore>> Open(
      const std::string& dir);
  ~NodeStore();

  // A fresh, monotonically increasing snapshot version for `site`.
  absl::StatusOr<std::string> NextVersion(absl::string_view site,
                                          int64_t now_unix);
  // Writes `snap` and makes it the current snapshot atomically, then drops
  // every other snapshot's keys.
  absl::Status Commit(const Snapshot& snap);
  // The current snapshot, or NOT_FOUND when nothing was loaded yet.
  absl::StatusOr<std::shared_ptr<Snapshot>> LoadCurrent();
  // A cheap check for health probes: the current-snapshot pointer and the
  // served snapshot's metadata read back from RocksDB, and the pointer
  // still names `version`. UNAVAILABLE naming what failed otherwise.
  absl::Status CheckReadable(absl::string_view version);

  // The crosswalk set stored with snapshot `version` (null: none). Commit
  // writes Snapshot::crosswalks under its own key before the switch and
  // LoadCurrent reads it back; a version that names a mapping set
  // (MappingSetOfVersion) without its stored set is DATA_LOSS, so tables are
  // never dropped silently.
  absl::StatusOr<std::shared_ptr<const CrosswalkSet>> ReadCrosswalks(
      absl::string_view version);

  // Events per stored posting chunk; smaller values exercise multi-chunk
  // postings in tests. Call before Commit.
  void set_posting_chunk_for_testing(uint32_t events) {
    absl::MutexLock lock(&mu_);
    posting_chunk_ = events > 0 ? events : kDefaultPostingChunk;
  }
  // Commit writes store format 2 (every code's columns, no aliases), as
  // earlier builds did, so that tests can check it is still read.
  void set_write_format2_for_testing() {
    absl::MutexLock lock(&mu_);
    write_format2_ = true;
  }

 private:
  NodeStore(rocksdb::DB* db, std::string dir) : db_(db), dir_(std::move(dir)) {}
  absl::Status DropAllExcept(const std::string& version);
  // Crosswalk keys ("x/<version>"), beside the snapshot's own keys.
  absl::Status PutCrosswalksLocked(const Snapshot& snap)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<const CrosswalkSet>> ReadCrosswalksLocked(
      absl::string_view version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the crosswalk sets of snapshots the store no longer holds.
  absl::Status DropOrphanCrosswalksLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  rocksdb::DB* const db_;
  const std::string dir_;
  // One RocksDB value holds at most this many events of a posting (6-10 MB:
  // below glibc's largest mmap threshold, so the read buffers are reused
  // rather than mapped and faulted in afresh for every value).
  static constexpr uint32_t kDefaultPostingChunk = 1 << 19;
  uint32_t posting_chunk_ ABSL_GUARDED_BY(mu_) = kDefaultPostingChunk;
  bool write_format2_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_STORE_H_
