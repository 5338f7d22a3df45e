// Hot reload: the current policy snapshot, swapped atomically when the files
// change; an invalid new version is rejected and the previous one keeps
// serving.
#ifndef PASSERELLE_POLICY_STORE_H_
#define PASSERELLE_POLICY_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "policy/policy.h"

namespace passerelle::policy {

// Holds the current Policy for a set of paths (files or directories of
// *.textproto). Thread-safe: Current() may run concurrently with Reload() and
// MaybeReload(); reloads are serialised.
class PolicyStore {
 public:
  // Runs on every new version after it validates and before it is put in
  // force (at Create and on each reload that changes the version), while
  // the previous version keeps serving; an error rejects the version like a
  // validation error. The gateway prewarms the noise the version needs.
  using Prepare = std::function<absl::Status(const Policy&)>;

  // Loads the policy once; fails if the first version is invalid (or
  // `prepare` fails on it).
  static absl::StatusOr<std::unique_ptr<PolicyStore>> Create(
      std::vector<std::string> paths, Prepare prepare = nullptr);

  // The snapshot in force. Callers keep it for the whole request so one
  // request sees one version.
  std::shared_ptr<const Policy> Current() const;

  // Re-reads every file. On error the previous snapshot stays in force, the
  // error is logged to stderr and returned; last_error() keeps it.
  absl::Status Reload();

  // Reloads only when the set of files or a file's size, modification time
  // or content hash changed since the last attempt; cheap otherwise (one
  // stat per file and directory listing). Returns whether a new snapshot is
  // now in force; an invalid change returns the error (once per change).
  absl::StatusOr<bool> MaybeReload();

  // The error of the last reload attempt, OK if it succeeded.
  absl::Status last_error() const;

 private:
  struct FileStamp {
    std::string path;
    uintmax_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp& o) const {
      return path == o.path && size == o.size && mtime_ns == o.mtime_ns;
    }
  };

  PolicyStore(std::vector<std::string> paths, Prepare prepare)
      : paths_(std::move(paths)), prepare_(std::move(prepare)) {}
  absl::StatusOr<std::vector<FileStamp>> Stamp() const;
  absl::Status ReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);

  const std::vector<std::string> paths_;
  const Prepare prepare_;
  // Serialises reloads (held while reading files, never by Current()).
  absl::Mutex reload_mu_;
  std::vector<FileStamp> stamps_ ABSL_GUARDED_BY(reload_mu_);
  // Version (hash) of the last attempt, valid or not.
  std::string attempted_version_ ABSL_GUARDED_BY(reload_mu_);

  mutable absl::Mutex mu_;
  std::shared_ptr<const Policy> current_ ABSL_GUARDED_BY(mu_);
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace passerelle::policy

#endif  // PASSERELLE_POLICY_STORE_H_
