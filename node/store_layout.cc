// The store directory's layout and lifecycle (node/store.h): the pointer,
// versions, sealing, leases, retention and the migration of the earlier
// single-RocksDB layout. One snapshot's own keys are in node/store.cc.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/crash_point.h"
#include "common/status_macros.h"
#include "node/snapshot_files.h"
#include "node/store.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/checkpoint.h"

namespace passerelle::node {
namespace {

namespace fs = std::filesystem;

constexpr char kPointerFile[] = "current-snapshot";
constexpr char kPointerHeader[] = "passerelle node store 1";
constexpr char kSequenceFile[] = "sequence";
constexpr char kWriterLock[] = "writer.lock";
constexpr char kSnapshotsDir[] = "snapshots";
constexpr char kTrashDir[] = "trash";
constexpr char kPartialSuffix[] = ".partial";
constexpr char kLeaseFile[] = "lease";
constexpr char kDbDir[] = "db";
// How long a load waits for another writer (a removal, a migration, another
// load) before giving up with a message.
constexpr absl::Duration kWriterWait = absl::Seconds(60);

// Versions are "<site>-<UTC time>-<sequence>" of [A-Za-z0-9_-] (the CLI
// checks the site): nothing that could step out of snapshots/.
bool SafeVersion(absl::string_view v) {
  if (v.empty() || v.size() > 128 || v[0] == '.') return false;
  for (char c : v) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_')) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<FileLock> AcquireWriter(const std::string& dir, bool wait) {
  const std::string path = (fs::path(dir) / kWriterLock).string();
  const absl::Time give_up =
      absl::Now() + (wait ? kWriterWait : absl::ZeroDuration());
  for (;;) {
    absl::StatusOr<FileLock> lock = FileLock::Acquire(
        path, FileLock::Mode::kExclusive, /*wait=*/false, /*create=*/true);
    if (lock.ok() || !absl::IsResourceExhausted(lock.status())) return lock;
    if (absl::Now() >= give_up) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "node store ", dir,
          ": another process is changing it (a load, a removal of old "
          "snapshots or a migration holds ",
          kWriterLock, ")", wait ? "; try again when it is done" : ""));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

std::string PointerText(const std::string& version) {
  return absl::StrCat(kPointerHeader, "\ncurrent ", version, "\n");
}

absl::Status RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot remove ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t VersionSequence(absl::string_view version) {
  // A version loaded with crosswalks ends with "-m<mapping set>"
  // (VersionWithMappingSet): the sequence comes before it.
  if (!MappingSetOfVersion(version).empty()) {
    version = version.substr(0, version.rfind("-m"));
  }
  const size_t dash = version.rfind('-');
  int64_t seq = -1;
  if (dash == absl::string_view::npos ||
      !absl::SimpleAtoi(version.substr(dash + 1), &seq)) {
    return -1;
  }
  return seq;
}

SnapshotHandle::~SnapshotHandle() {
  delete db_;
  if (lease_fd_ >= 0) close(lease_fd_);  // Drops the shared lease.
  if (on_release_) on_release_();
}

absl::Status SnapshotHandle::CheckReadable() const {
  std::string meta;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(),
                               absl::StrCat("s/", version_, "/meta"), &meta);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "snapshot ", version_, " metadata unreadable: ", s.ToString()));
  }
  return absl::OkStatus();
}

std::string NodeStore::SnapshotDir(const std::string& version) const {
  return (fs::path(dir_) / kSnapshotsDir / version).string();
}

std::string NodeStore::SnapshotDbDirForTesting(
    const std::string& version) const {
  return (fs::path(SnapshotDir(version)) / kDbDir).string();
}

absl::Status NodeStore::ResealForTesting(const std::string& version) {
  PASSERELLE_ASSIGN_OR_RETURN(Seal seal, ReadSeal(SnapshotDir(version)));
  return WriteSeal(SnapshotDir(version), seal.site, version, {kLeaseFile});
}

absl::StatusOr<std::unique_ptr<NodeStore>> NodeStore::Open(
    const std::string& dir) {
  std::error_code ec;
  fs::create_directories(fs::path(dir) / kSnapshotsDir, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot create node store directory ", dir, ": ", ec.message()));
  }
  std::unique_ptr<NodeStore> store(new NodeStore(dir));
  // The earlier layout: RocksDB's own CURRENT file at the top.
  if (fs::exists(fs::path(dir) / "CURRENT")) {
    PASSERELLE_RETURN_IF_ERROR(store->MigrateEarlierLayout());
  }
  return store;
}

NodeStore::~NodeStore() = default;

absl::StatusOr<std::string> NodeStore::NextVersion(absl::string_view site,
                                                   int64_t now_unix) {
  PASSERELLE_ASSIGN_OR_RETURN(FileLock writer, AcquireWriter(dir_, true));
  const std::string path = (fs::path(dir_) / kSequenceFile).string();
  int64_t seq = 0;
  absl::StatusOr<std::string> text = ReadSmallFile(path);
  if (text.ok()) {
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &seq)) {
      return absl::DataLossError(
          absl::StrCat("node store: corrupt snapshot sequence in ", path));
    }
  } else if (!absl::IsNotFound(text.status())) {
    return text.status();
  }
  ++seq;
  PASSERELLE_RETURN_IF_ERROR(
      WriteFileAtomically(path, absl::StrCat(seq, "\n")));
  return absl::StrCat(
      site, "-",
      absl::FormatTime("%Y%m%dT%H%M%SZ", absl::FromUnixSeconds(now_unix),
                       absl::UTCTimeZone()),
      "-", seq);
}

absl::Status NodeStore::Commit(const Snapshot& snap) {
  const std::string& version = snap.meta.version;
  if (!SafeVersion(version)) {
    return absl::InvalidArgumentError(
        absl::StrCat("node store: bad snapshot version \"", version, "\""));
  }
  PASSERELLE_ASSIGN_OR_RETURN(FileLock writer, AcquireWriter(dir_, true));
  const std::string final_dir = SnapshotDir(version);
  if (fs::exists(final_dir)) {
    return absl::AlreadyExistsError(
        absl::StrCat("node store ", dir_, " already holds snapshot ", version));
  }
  // Leftovers of interrupted loads and removals go first: no other writer
  // runs while this one holds the lock.
  PASSERELLE_RETURN_IF_ERROR(RemoveLeftovers(nullptr));
  const std::string partial = final_dir + kPartialSuffix;
  const std::string db_dir = (fs::path(partial) / kDbDir).string();
  std::error_code ec;
  fs::create_directories(db_dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", db_dir, ": ", ec.message()));
  }
  // A failed write leaves nothing: the partial directory goes.
  struct RemoveOnFailure {
    const std::string& path;
    bool done = false;
    ~RemoveOnFailure() {
      if (!done) (void)RemoveTree(path);
    }
  } cleanup{partial};
  {
    PASSERELLE_ASSIGN_OR_RETURN(rocksdb::DB * raw,
                                OpenSnapshotDb(db_dir, /*read_only=*/false));
    std::unique_ptr<rocksdb::DB> db(raw);
    PASSERELLE_RETURN_IF_ERROR(WriteSnapshotDb(
        db.get(), (fs::path(partial) / "ingest.tmp").string(), snap));
    rocksdb::Status closed = db->Close();
    if (!closed.ok()) {
      return absl::InternalError(absl::StrCat(
          "node store: close snapshot ", version, ": ", closed.ToString()));
    }
  }
  // Every byte durable, then the seal, then the directory in place.
  PASSERELLE_CRASH_POINT("node.store.commit.before_seal");
  PASSERELLE_RETURN_IF_ERROR(
      WriteSeal(partial, snap.meta.site, version, {kLeaseFile}));
  {
    const int fd = open((fs::path(partial) / kLeaseFile).c_str(),
                        O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot create the lease of ", partial));
    }
    close(fd);
  }
  if (rename(partial.c_str(), final_dir.c_str()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot rename ", partial, " to ", final_dir));
  }
  cleanup.done = true;
  PASSERELLE_RETURN_IF_ERROR(
      SyncDirectory((fs::path(dir_) / kSnapshotsDir).string()));
  // The switch is the pointer's atomic replacement.
  PASSERELLE_CRASH_POINT("node.store.commit.before_switch");
  PASSERELLE_RETURN_IF_ERROR(WriteFileAtomically(
      (fs::path(dir_) / kPointerFile).string(), PointerText(version)));
  PASSERELLE_CRASH_POINT("node.store.commit.after_switch");
  return absl::OkStatus();
}

absl::StatusOr<std::string> NodeStore::CurrentVersion() const {
  const std::string path = (fs::path(dir_) / kPointerFile).string();
  absl::StatusOr<std::string> text = ReadSmallFile(path, 4096);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(
        absl::StrCat("node store ", dir_,
                     " holds no snapshot yet (run `passerelle node load`)"));
  }
  PASSERELLE_RETURN_IF_ERROR(text.status());
  std::vector<absl::string_view> lines =
      absl::StrSplit(*text, '\n', absl::SkipEmpty());
  absl::string_view version;
  if (lines.size() != 2 || lines[0] != kPointerHeader ||
      !absl::ConsumePrefix(&lines[1], "current ") ||
      !SafeVersion(version = lines[1])) {
    return absl::DataLossError(
        absl::StrCat(path, ":1: not a snapshot pointer (expected \"",
                     kPointerHeader, "\" then \"current <version>\")"));
  }
  return std::string(version);
}

absl::Status NodeStore::CheckReadable() const {
  absl::StatusOr<std::string> v = CurrentVersion();
  if (!v.ok()) {
    return absl::UnavailableError(
        absl::StrCat("node store ", dir_,
                     ": current snapshot unreadable: ", v.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<OpenedSnapshot> NodeStore::OpenCurrent(
    const SnapshotOpenOptions& options) {
  // A removal can take a snapshot that stopped being current between the
  // pointer's read and its lease: read the pointer again then.
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string version, CurrentVersion());
    absl::StatusOr<OpenedSnapshot> opened = OpenSnapshot(version, options);
    if (!absl::IsNotFound(opened.status())) return opened;
    last = opened.status();
  }
  return last;
}

absl::StatusOr<std::shared_ptr<Snapshot>> NodeStore::LoadCurrent() {
  PASSERELLE_ASSIGN_OR_RETURN(OpenedSnapshot opened, OpenCurrent());
  return std::move(opened.snapshot);
}

absl::StatusOr<OpenedSnapshot> NodeStore::OpenSnapshot(
    const std::string& version, const SnapshotOpenOptions& options) {
  if (!SafeVersion(version)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad snapshot version \"", version, "\""));
  }
  const std::string dir = SnapshotDir(version);
  const std::string lease_path = (fs::path(dir) / kLeaseFile).string();
  absl::StatusOr<FileLock> lease = FileLock::Acquire(
      lease_path, FileLock::Mode::kShared, /*wait=*/true, /*create=*/false);
  if (absl::IsNotFound(lease.status()) ||
      (lease.ok() && !lease->StillAt(lease_path))) {
    return absl::NotFoundError(absl::StrCat("node store ", dir_,
                                            " holds no snapshot ", version,
                                            " (never completed, or removed)"));
  }
  PASSERELLE_RETURN_IF_ERROR(lease.status());
  PASSERELLE_ASSIGN_OR_RETURN(Seal seal,
                              VerifySeal(dir, options.verify_contents));
  if (seal.version != version) {
    return absl::DataLossError(absl::StrCat(
        "snapshot ", dir, ": its seal names version ", seal.version));
  }
  auto handle = std::shared_ptr<SnapshotHandle>(new SnapshotHandle());
  handle->version_ = version;
  handle->site_ = seal.site;
  handle->dir_ = dir;
  {
    absl::MutexLock lock(&mu_);
    handle->on_release_ = on_release_;
  }
  PASSERELLE_ASSIGN_OR_RETURN(handle->db_,
                              OpenSnapshotDb((fs::path(dir) / kDbDir).string(),
                                             /*read_only=*/true));
  // The lease's descriptor moves into the handle.
  handle->lease_fd_ = lease->Release();
  PASSERELLE_ASSIGN_OR_RETURN(std::shared_ptr<Snapshot> snap,
                              ReadSnapshotDb(handle->db_, version));
  if (snap->meta.site != seal.site) {
    return absl::DataLossError(
        absl::StrCat("snapshot ", dir, ": its seal says site ", seal.site,
                     ", its data site ", snap->meta.site));
  }
  OpenedSnapshot out;
  out.handle = handle;
  // The snapshot holds the handle: the files stay leased while it lives.
  Snapshot* raw = snap.get();
  out.snapshot = std::shared_ptr<Snapshot>(
      raw, [snap = std::move(snap), handle](Snapshot*) mutable {
        snap.reset();
        handle.reset();
      });
  return out;
}

absl::Status NodeStore::MakeCurrent(const std::string& version) {
  if (!SafeVersion(version)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad snapshot version \"", version, "\""));
  }
  PASSERELLE_ASSIGN_OR_RETURN(FileLock writer, AcquireWriter(dir_, true));
  // Under the writer lock nothing removes it between the check and the
  // switch.
  PASSERELLE_ASSIGN_OR_RETURN(Seal seal,
                              VerifySeal(SnapshotDir(version), false));
  if (seal.version != version) {
    return absl::DataLossError(absl::StrCat("snapshot ", SnapshotDir(version),
                                            ": its seal names version ",
                                            seal.version));
  }
  return WriteFileAtomically((fs::path(dir_) / kPointerFile).string(),
                             PointerText(version));
}

absl::StatusOr<std::vector<StoredSnapshotInfo>> NodeStore::List() const {
  absl::StatusOr<std::string> current = CurrentVersion();
  if (!current.ok() && !absl::IsNotFound(current.status())) {
    return current.status();
  }
  std::vector<StoredSnapshotInfo> out;
  std::error_code ec;
  for (fs::directory_iterator it(fs::path(dir_) / kSnapshotsDir, ec), end;
       !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!it->is_directory() || !SafeVersion(name) ||
        !fs::exists(it->path() / kSealFile)) {
      continue;  // A partial load, or not a snapshot.
    }
    StoredSnapshotInfo info;
    info.version = name;
    info.sequence = VersionSequence(name);
    info.current = current.ok() && *current == name;
    absl::StatusOr<FileLock> probe =
        FileLock::Acquire((it->path() / kLeaseFile).string(),
                          FileLock::Mode::kExclusive, false, false);
    info.in_use = absl::IsResourceExhausted(probe.status());
    out.push_back(std::move(info));
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot list ", dir_, "/", kSnapshotsDir, ": ", ec.message()));
  }
  std::sort(out.begin(), out.end(),
            [](const StoredSnapshotInfo& a, const StoredSnapshotInfo& b) {
              return a.sequence != b.sequence ? a.sequence < b.sequence
                                              : a.version < b.version;
            });
  return out;
}

absl::Status NodeStore::RemoveLeftovers(std::vector<std::string>* removed) {
  // Only with the writer lock held: no load is writing a partial snapshot.
  std::vector<std::string> doomed;
  std::error_code ec;
  for (fs::directory_iterator it(fs::path(dir_) / kSnapshotsDir, ec), end;
       !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (absl::EndsWith(name, kPartialSuffix) ||
        (it->is_directory() && !fs::exists(it->path() / kSealFile))) {
      doomed.push_back(it->path().string());
    }
  }
  for (fs::directory_iterator it(fs::path(dir_) / kTrashDir, ec), end;
       !ec && it != end; it.increment(ec)) {
    doomed.push_back(it->path().string());
  }
  for (const char* tmp : {"current-snapshot.tmp", "sequence.tmp"}) {
    if (fs::exists(fs::path(dir_) / tmp)) {
      doomed.push_back((fs::path(dir_) / tmp).string());
    }
  }
  for (const std::string& path : doomed) {
    PASSERELLE_RETURN_IF_ERROR(RemoveTree(path));
    if (removed != nullptr) {
      removed->push_back(fs::path(path).filename().string());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PruneResult> NodeStore::Prune(int keep_old) {
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<StoredSnapshotInfo> all, List());
  PruneResult result;
  bool leftovers = fs::exists(fs::path(dir_) / kTrashDir) &&
                   !fs::is_empty(fs::path(dir_) / kTrashDir);
  std::error_code ec;
  for (fs::directory_iterator it(fs::path(dir_) / kSnapshotsDir, ec), end;
       !ec && it != end && !leftovers; it.increment(ec)) {
    leftovers = !fs::exists(it->path() / kSealFile);
  }
  int old = 0;
  for (const StoredSnapshotInfo& s : all) old += s.current ? 0 : 1;
  if (old <= keep_old && !leftovers) return result;  // Nothing to do.
  absl::StatusOr<FileLock> writer = AcquireWriter(dir_, false);
  PASSERELLE_RETURN_IF_ERROR(writer.status());
  // Again under the lock: the pointer cannot move now.
  PASSERELLE_ASSIGN_OR_RETURN(all, List());
  PASSERELLE_RETURN_IF_ERROR(RemoveLeftovers(&result.leftovers));
  std::vector<const StoredSnapshotInfo*> older;
  for (const StoredSnapshotInfo& s : all) {
    if (!s.current) older.push_back(&s);
  }
  // Newest first: the first keep_old stay.
  std::reverse(older.begin(), older.end());
  const std::string trash = (fs::path(dir_) / kTrashDir).string();
  for (size_t i = std::max(keep_old, 0); i < older.size(); ++i) {
    const std::string& version = older[i]->version;
    const std::string dir = SnapshotDir(version);
    const std::string lease_path = (fs::path(dir) / kLeaseFile).string();
    absl::StatusOr<FileLock> lease = FileLock::Acquire(
        lease_path, FileLock::Mode::kExclusive, /*wait=*/false, false);
    if (absl::IsResourceExhausted(lease.status())) {
      result.in_use.push_back(version);
      continue;
    }
    PASSERELLE_RETURN_IF_ERROR(lease.status());
    // Out of snapshots/ in one rename while no reader can take the lease;
    // a reader waiting for it then finds it moved away.
    fs::create_directories(trash, ec);
    const std::string target = (fs::path(trash) / version).string();
    PASSERELLE_RETURN_IF_ERROR(RemoveTree(target));
    if (rename(dir.c_str(), target.c_str()) != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot move ", dir, " to ", target));
    }
    PASSERELLE_RETURN_IF_ERROR(
        SyncDirectory((fs::path(dir_) / kSnapshotsDir).string()));
    PASSERELLE_CRASH_POINT("node.store.prune.after_move");
    PASSERELLE_RETURN_IF_ERROR(RemoveTree(target));
    result.removed.push_back(version);
  }
  return result;
}

absl::Status NodeStore::MigrateEarlierLayout() {
  PASSERELLE_ASSIGN_OR_RETURN(FileLock writer, AcquireWriter(dir_, true));
  const fs::path root(dir_);
  if (!fs::exists(root / "CURRENT"))
    return absl::OkStatus();  // Done meanwhile.
  if (!fs::exists(root / kPointerFile)) {
    // Open the old database with its own lock: an earlier build's node
    // still serving it must be stopped first.
    absl::StatusOr<rocksdb::DB*> raw = OpenSnapshotDb(dir_, false);
    if (!raw.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "node store ", dir_,
          " is in the layout of earlier builds (one RocksDB for every "
          "snapshot) and cannot be migrated now: ",
          raw.status().message(),
          ". If a node of an earlier build still serves it, stop it, then "
          "run any `passerelle node` command on the store (or start the "
          "node) to migrate it"));
    }
    std::unique_ptr<rocksdb::DB> db(*raw);
    std::string version, seq_text;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), "CURRENT", &version);
    if (!s.ok() && !s.IsNotFound()) {
      return absl::InternalError(
          absl::StrCat("node store ", dir_,
                       ": cannot read the earlier layout's current "
                       "snapshot: ",
                       s.ToString()));
    }
    if (db->Get(rocksdb::ReadOptions(), "SEQ", &seq_text).ok()) {
      PASSERELLE_RETURN_IF_ERROR(WriteFileAtomically(
          (root / kSequenceFile).string(), absl::StrCat(seq_text, "\n")));
    }
    if (s.ok()) {
      if (!SafeVersion(version)) {
        return absl::DataLossError(absl::StrCat(
            "node store ", dir_, ": the earlier layout names snapshot \"",
            version, "\", not a valid version"));
      }
      PASSERELLE_RETURN_IF_ERROR(RemoveLeftovers(nullptr));
      // Read it once: a snapshot that does not read is not migrated.
      PASSERELLE_ASSIGN_OR_RETURN(std::shared_ptr<Snapshot> snap,
                                  ReadSnapshotDb(db.get(), version));
      const std::string partial = SnapshotDir(version) + kPartialSuffix;
      fs::create_directories(partial);
      rocksdb::Checkpoint* checkpoint = nullptr;
      rocksdb::Status cs = rocksdb::Checkpoint::Create(db.get(), &checkpoint);
      std::unique_ptr<rocksdb::Checkpoint> owned(checkpoint);
      if (cs.ok()) {
        cs =
            checkpoint->CreateCheckpoint((fs::path(partial) / kDbDir).string());
      }
      if (!cs.ok()) {
        return absl::InternalError(absl::StrCat("node store ", dir_,
                                                ": cannot migrate snapshot ",
                                                version, ": ", cs.ToString()));
      }
      db.reset();
      PASSERELLE_RETURN_IF_ERROR(
          WriteSeal(partial, snap->meta.site, version, {kLeaseFile}));
      const int fd = open((fs::path(partial) / kLeaseFile).c_str(),
                          O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0) close(fd);
      if (rename(partial.c_str(), SnapshotDir(version).c_str()) != 0) {
        return absl::UnavailableError(absl::StrCat("cannot rename ", partial));
      }
      PASSERELLE_RETURN_IF_ERROR(
          SyncDirectory((root / kSnapshotsDir).string()));
      PASSERELLE_CRASH_POINT("node.store.migrate.before_switch");
      PASSERELLE_RETURN_IF_ERROR(WriteFileAtomically(
          (root / kPointerFile).string(), PointerText(version)));
      std::cerr << "passerelle: node store " << dir_
                << " migrated to one RocksDB per snapshot (snapshot " << version
                << " is current)\n";
    }
  }
  // The pointer is durable: the earlier layout's files go, CURRENT last
  // (its presence is what says a migration is unfinished).
  std::error_code ec;
  std::vector<fs::path> old;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == "IDENTITY" || name == "LOCK" || name == "ingest.tmp" ||
        absl::StartsWith(name, "LOG") || absl::StartsWith(name, "MANIFEST-") ||
        absl::StartsWith(name, "OPTIONS-") || absl::EndsWith(name, ".sst") ||
        absl::EndsWith(name, ".log") || absl::EndsWith(name, ".blob")) {
      old.push_back(it->path());
    }
  }
  for (const fs::path& p : old) {
    PASSERELLE_RETURN_IF_ERROR(RemoveTree(p.string()));
  }
  PASSERELLE_RETURN_IF_ERROR(RemoveTree((root / "CURRENT").string()));
  return SyncDirectory(dir_);
}

}  // namespace passerelle::node
