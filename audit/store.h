// The key-value seam under the audit log (the CT log's ConsistentStore):
// an ordered byte store with atomic, durable batch writes. The production
// implementation is RocksDB; tests wrap it to inject failures.
#ifndef PASSERELLE_AUDIT_STORE_H_
#define PASSERELLE_AUDIT_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace passerelle::audit {

// Implementations are safe for concurrent use from multiple threads.
class LogStore {
 public:
  using KeyValue = std::pair<std::string, std::string>;

  virtual ~LogStore() = default;

  // The value at `key`, or nullopt when absent.
  virtual absl::StatusOr<std::optional<std::string>> Get(
      absl::string_view key) const = 0;
  // Writes every pair atomically and durably (fsync'd) before returning OK;
  // on error none of them may be visible.
  virtual absl::Status Commit(const std::vector<KeyValue>& puts) = 0;
  // The greatest key starting with `prefix` and its value, if any.
  virtual absl::StatusOr<std::optional<KeyValue>> Last(
      absl::string_view prefix) const = 0;
  // Calls `fn` for each key starting with `prefix`, in byte order, until it
  // returns false.
  virtual absl::Status Scan(
      absl::string_view prefix,
      const std::function<bool(absl::string_view key, absl::string_view value)>&
          fn) const = 0;
};

// Opens (creating if missing, unless `read_only`) a RocksDB store at `dir`.
// A read-only store can be opened while a writer has the same directory
// open; its Commit always fails.
absl::StatusOr<std::unique_ptr<LogStore>> OpenRocksDbLogStore(
    const std::string& dir, bool read_only);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_STORE_H_
