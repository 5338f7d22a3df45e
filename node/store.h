// Persistence of node snapshots in RocksDB. A load writes a complete new
// snapshot under its own key prefix and then, in one synced write, makes it
// current: a failed or interrupted load leaves the previous snapshot serving.
#ifndef PASSERELLE_NODE_STORE_H_
#define PASSERELLE_NODE_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "node/snapshot.h"

namespace rocksdb {
class DB;
}

namespace passerelle::node {

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

 private:
  explicit NodeStore(rocksdb::DB* db) : db_(db) {}
  absl::Status DropAllExcept(const std::string& version);

  absl::Mutex mu_;
  rocksdb::DB* const db_;
};

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_STORE_H_
