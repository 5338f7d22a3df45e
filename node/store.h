// Persistence of node snapshots. A store is a directory holding one RocksDB
// per snapshot and a pointer naming the current one, so that a loader
// process writes a new snapshot while a serving node reads the old one:
// no process ever holds a lock the other needs for long.
//
// Layout of a store directory:
//   current-snapshot          the pointer: "passerelle node store 1" and
//                             "current <version>"; replaced atomically (a
//                             temporary file, fsync, rename, fsync of the
//                             directory), only after the snapshot it names
//                             is durably complete and sealed.
//   sequence                  the last snapshot sequence number (versions
//                             are <site>-<UTC time>-<sequence>).
//   writer.lock               flock(2) held by whoever changes the layout:
//                             a load (NextVersion, Commit), a switch of the
//                             pointer (MakeCurrent), a removal (Prune), a
//                             migration. One at a time; readers never take it.
//   snapshots/<version>/      one snapshot: db/ (its RocksDB, opened
//                             read-only by readers, so it never changes once
//                             sealed), SEAL (every file's size and SHA-256,
//                             written last: node/snapshot_files.h) and lease
//                             (flock(2): every process reading the snapshot
//                             holds it shared; a removal needs it
//                             exclusively, so a snapshot in use is never
//                             removed, and the kernel drops the locks of a
//                             process that dies).
//   snapshots/<version>.partial/  a snapshot being written (a load or a
//                             migration); never read, removed by the next
//                             writer when its writer is gone.
//   trash/                    snapshots being removed: a removal renames the
//                             directory here first (atomic), then deletes it.
//
// A crash at any point leaves the pointer naming a complete, sealed
// snapshot (the previous one until the new pointer is renamed into place),
// plus leftovers (.partial, trash/, a pointer's .tmp) that the next writer
// removes. A store of the earlier layout (one RocksDB at the top of the
// directory, every snapshot under a key prefix) is migrated when it is first
// opened: its current snapshot becomes snapshots/<version>/ (a RocksDB
// checkpoint: hard links, no copy), then the pointer is written, then the
// old files are removed.
//
// Inside one snapshot's RocksDB (format 3): per code, its posting in a few
// large values of raw little-endian columns (patients, days, row ordinals,
// values), written as SST files and ingested in one step, so a load writes
// each byte once and an open is a few large sequential reads with no
// decoding or re-sorting. A code sharing its posting with a code earlier in
// key order (a concept id and its vocabulary code) is one alias value naming
// that code. Formats 1 and 2 (no aliases) are still read. Keys are under
// "s/<version>/" as in the earlier layout, so a migrated snapshot is read by
// the same code.
#ifndef PASSERELLE_NODE_STORE_H_
#define PASSERELLE_NODE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "node/crosswalk.h"
#include "node/snapshot.h"

namespace rocksdb {
class DB;
}

namespace passerelle::node {

// One snapshot opened for reading: its read-only RocksDB and its shared
// lease. Released (database closed, lease dropped) with the last reference.
class SnapshotHandle {
 public:
  ~SnapshotHandle();
  const std::string& version() const { return version_; }
  const std::string& site() const { return site_; }
  const std::string& dir() const { return dir_; }
  rocksdb::DB* db() const { return db_; }
  // A point read of the snapshot's metadata: UNAVAILABLE naming what
  // failed. Cheap (health probes).
  absl::Status CheckReadable() const;

 private:
  friend class NodeStore;
  SnapshotHandle() = default;
  std::string version_, site_, dir_;
  rocksdb::DB* db_ = nullptr;
  int lease_fd_ = -1;
  std::function<void()> on_release_;
};

// A snapshot read from the store. `snapshot` keeps `handle` alive (its
// deleter releases it), so the files stay leased while anything uses it.
struct OpenedSnapshot {
  std::shared_ptr<Snapshot> snapshot;
  std::shared_ptr<const SnapshotHandle> handle;
};

struct SnapshotOpenOptions {
  // Also check every file's SHA-256 against the seal (reads every byte);
  // otherwise the seal and every file's size are checked, and RocksDB's
  // block checksums as the data is read.
  bool verify_contents = false;
};

// What the store holds, for `node info` and the daemon's log.
struct StoredSnapshotInfo {
  std::string version;
  int64_t sequence = 0;
  bool current = false;
  bool in_use = false;  // Leased by some process (a node, a `node count`).
};

struct PruneResult {
  std::vector<std::string> removed;    // Old snapshots removed.
  std::vector<std::string> in_use;     // Beyond retention but still in use.
  std::vector<std::string> leftovers;  // Partial loads and trash removed.
};

// Thread-safe. Any number of processes may open a store at once: readers
// (a serving node, `node count`) and at most one writer at a time.

// The version of a snapshot loaded with crosswalk set `mapping_set` (hex
// SHA-256): `base` + "-m" + its first 12 digits, so that the snapshot
// identity (the gateway's release cache key, every audit entry) names the
// mapping set in force. `base` as it is for an empty mapping set.
std::string VersionWithMappingSet(absl::string_view base,
                                  absl::string_view mapping_set);
// The 12 digits a version names ("" when it names none).
std::string MappingSetOfVersion(absl::string_view version);

class NodeStore {
 public:
  // Creates the directory when missing; migrates a store of the earlier
  // layout (FAILED_PRECONDITION, saying what to do, when another process
  // still holds it open).
  static absl::StatusOr<std::unique_ptr<NodeStore>> Open(
      const std::string& dir);
  ~NodeStore();

  // A fresh, monotonically increasing snapshot version for `site`.
  absl::StatusOr<std::string> NextVersion(absl::string_view site,
                                          int64_t now_unix);
  // Writes `snap` as a new snapshot (WriteSnapshotDb), seals it and makes it
  // current (the pointer). Older snapshots stay until Prune removes them.
  absl::Status Commit(const Snapshot& snap);
  // The current snapshot, or NOT_FOUND when nothing was loaded yet.
  absl::StatusOr<std::shared_ptr<Snapshot>> LoadCurrent();
  absl::StatusOr<OpenedSnapshot> OpenCurrent(
      const SnapshotOpenOptions& options = {});
  // A given snapshot (it must be sealed; not necessarily the current one).
  absl::StatusOr<OpenedSnapshot> OpenSnapshot(
      const std::string& version, const SnapshotOpenOptions& options = {});
  // The version the pointer names; NOT_FOUND when nothing was loaded yet.
  absl::StatusOr<std::string> CurrentVersion() const;
  // Makes a retained snapshot current again (a rollback): it must be
  // sealed, with every file of its size.
  absl::Status MakeCurrent(const std::string& version);
  // The sealed snapshots, oldest first.
  absl::StatusOr<std::vector<StoredSnapshotInfo>> List() const;
  // Removes sealed snapshots beyond the current one and the `keep_old` most
  // recent others, skipping any in use, plus leftovers of interrupted loads
  // and removals. Never waits: when another writer holds the store, does
  // nothing (RESOURCE_EXHAUSTED) and a later call does it.
  absl::StatusOr<PruneResult> Prune(int keep_old);
  // A cheap check for health probes: the directory holds a readable
  // pointer. It may name another snapshot than the one served (a switch
  // pending or refused): that is not a failure.
  absl::Status CheckReadable() const;

  // Called (on any thread) whenever a snapshot opened by this store is
  // released by its last user; a node prunes then.
  void set_on_release(std::function<void()> f) {
    absl::MutexLock lock(&mu_);
    on_release_ = std::move(f);
  }
  const std::string& dir() const { return dir_; }
  // Where a snapshot's RocksDB lives, and resealing it after a test changed
  // its keys (tests of the decoder, which the seal would otherwise refuse).
  std::string SnapshotDbDirForTesting(const std::string& version) const;
  absl::Status ResealForTesting(const std::string& version);

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
  explicit NodeStore(std::string dir) : dir_(std::move(dir)) {}
  // The per-snapshot parts: one snapshot's keys into an empty RocksDB
  // (`scratch`: a directory for its SST files), and one snapshot read back.
  absl::Status WriteSnapshotDb(rocksdb::DB* db, const std::string& scratch,
                               const Snapshot& snap);
  static absl::StatusOr<std::shared_ptr<Snapshot>> ReadSnapshotDb(
      rocksdb::DB* db, const std::string& version);
  // One snapshot's database: read-only (a reader: nothing is written, no
  // lock taken) or read-write (a load writing it, a migration).
  static absl::StatusOr<rocksdb::DB*> OpenSnapshotDb(const std::string& path,
                                                     bool read_only);
  // Layout (node/store_layout.cc).
  absl::Status MigrateEarlierLayout();
  absl::Status RemoveLeftovers(std::vector<std::string>* removed);
  std::string SnapshotDir(const std::string& version) const;
  // Crosswalk sets (node/crosswalk.h) live in the snapshot's own database
  // under "x/<version>" = "<id>\n<encoded set>", written before the seal.
  static absl::Status PutCrosswalks(rocksdb::DB* db, const Snapshot& snap);
  static absl::StatusOr<std::shared_ptr<const CrosswalkSet>> ReadCrosswalks(
      rocksdb::DB* db, absl::string_view version);

  const std::string dir_;
  mutable absl::Mutex mu_;
  std::function<void()> on_release_ ABSL_GUARDED_BY(mu_);
  // One RocksDB value holds at most this many events of a posting (6-10 MB:
  // below glibc's largest mmap threshold, so the read buffers are reused
  // rather than mapped and faulted in afresh for every value).
  static constexpr uint32_t kDefaultPostingChunk = 1 << 19;
  uint32_t posting_chunk_ ABSL_GUARDED_BY(mu_) = kDefaultPostingChunk;
  bool write_format2_ ABSL_GUARDED_BY(mu_) = false;
};

// The sequence number at the end of a version ("fr-20261207T...Z-12": 12),
// or -1.
int64_t VersionSequence(absl::string_view version);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_STORE_H_
