// File-level building blocks of the node store's layout (node/store.h):
// durable atomic replacement of small files, advisory locks that the kernel
// releases when a process dies, and the seal that says a snapshot directory
// is complete and unchanged.
#ifndef PASSERELLE_NODE_SNAPSHOT_FILES_H_
#define PASSERELLE_NODE_SNAPSHOT_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace passerelle::node {

// Writes `content` to `path` so that a crash at any moment leaves either the
// old file or the new one, whole: a temporary file beside it, fsync, rename
// over `path`, fsync of the directory.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view content);
// fsync of a directory (after a rename or a removal in it).
absl::Status SyncDirectory(const std::string& dir);
// The whole file, or NOT_FOUND / UNAVAILABLE naming it.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          size_t max_bytes = 1 << 20);

// A flock(2) on a file: shared or exclusive, released on destruction (or by
// the kernel when the process dies, so a crash never leaves it held).
class FileLock {
 public:
  enum class Mode { kShared, kExclusive };
  // NOT_FOUND when `path` does not exist and !create; RESOURCE_EXHAUSTED
  // when `wait` is false and another open file description holds a
  // conflicting lock.
  static absl::StatusOr<FileLock> Acquire(const std::string& path, Mode mode,
                                          bool wait, bool create);
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();
  // Whether `path` still names the locked file (not renamed or removed
  // since): a lock on a file moved away protects nothing at `path`.
  bool StillAt(const std::string& path) const;
  // Gives up ownership of the descriptor (and with it the lock, which lasts
  // until it is closed).
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The seal of a snapshot directory (file SEAL in it): the site and version
// it holds and every file under it (path relative to the directory, size,
// SHA-256), then a SHA-256 of those lines. Written last, once every file is
// durable; a directory without a valid seal is not a snapshot.
struct SealedFile {
  std::string path;
  uint64_t size = 0;
  std::string sha256_hex;
};
struct Seal {
  std::string site;
  std::string version;
  std::vector<SealedFile> files;
};
inline constexpr char kSealFile[] = "SEAL";

// Hashes and fsyncs every regular file under `dir` (except SEAL and the
// lease file), fsyncs the directories, then writes SEAL atomically.
absl::Status WriteSeal(const std::string& dir, const std::string& site,
                       const std::string& version,
                       const std::vector<std::string>& skip);
// Reads SEAL and checks its own checksum (not the files).
absl::StatusOr<Seal> ReadSeal(const std::string& dir);
// Reads and checks SEAL and that every sealed file has its size; with
// `contents`, also that every file's SHA-256 matches (reads everything).
// DATA_LOSS naming the directory and the first file that differs.
absl::StatusOr<Seal> VerifySeal(const std::string& dir, bool contents);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_SNAPSHOT_FILES_H_
