#include "audit/log.h"

#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "audit/merkle.h"
#include "audit/sealer.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"

namespace passerelle::audit {
namespace {

namespace fs = std::filesystem;

// An in-memory store that tests can tamper with underneath an open log and
// make fail on demand. Thread-safe.
class MemLogStore : public LogStore {
 public:
  absl::StatusOr<std::optional<std::string>> Get(
      absl::string_view key) const override {
    absl::MutexLock lock(&mu_);
    auto it = data_.find(std::string(key));
    if (it == data_.end()) return std::nullopt;
    return it->second;
  }
  absl::Status Commit(const std::vector<KeyValue>& puts) override {
    absl::MutexLock lock(&mu_);
    if (fail_commits_) return absl::UnavailableError("injected disk failure");
    for (const auto& [k, v] : puts) data_[k] = v;
    return absl::OkStatus();
  }
  absl::Status Scan(
      absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn)
      const override {
    std::map<std::string, std::string> copy;
    {
      absl::MutexLock lock(&mu_);
      copy = data_;
    }
    for (auto it = copy.lower_bound(std::string(prefix));
         it != copy.end() && absl::StartsWith(it->first, prefix); ++it) {
      if (!fn(it->first, it->second)) break;
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<KeyValue>> Last(
      absl::string_view prefix) const override {
    absl::MutexLock lock(&mu_);
    std::optional<KeyValue> last;
    for (auto it = data_.lower_bound(std::string(prefix));
         it != data_.end() && absl::StartsWith(it->first, prefix); ++it) {
      last = *it;
    }
    return last;
  }
  void Put(const std::string& k, const std::string& v) {
    absl::MutexLock lock(&mu_);
    data_[k] = v;
  }
  void set_fail_commits(bool fail) {
    absl::MutexLock lock(&mu_);
    fail_commits_ = fail;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  bool fail_commits_ ABSL_GUARDED_BY(mu_) = false;
};

// Forwards to a shared MemLogStore so the test keeps a handle on it.
class SharedStore : public LogStore {
 public:
  explicit SharedStore(std::shared_ptr<MemLogStore> s) : s_(std::move(s)) {}
  absl::StatusOr<std::optional<std::string>> Get(
      absl::string_view key) const override {
    return s_->Get(key);
  }
  absl::Status Commit(const std::vector<KeyValue>& puts) override {
    return s_->Commit(puts);
  }
  absl::StatusOr<std::optional<KeyValue>> Last(
      absl::string_view prefix) const override {
    return s_->Last(prefix);
  }
  absl::Status Scan(
      absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn)
      const override {
    return s_->Scan(prefix, fn);
  }

 private:
  std::shared_ptr<MemLogStore> s_;
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "audit_log_test.XXXXXX");
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string EntryText(int i) {
  return absl::StrCat("{\"request\":", i, ",\"payload\":\"",
                      std::string(i % 7, 'x'), "\"}");
}

std::shared_ptr<const SigningKey> NewKey() {
  auto key = SigningKey::Generate();
  EXPECT_TRUE(key.ok()) << key.status();
  return std::shared_ptr<const SigningKey>(*std::move(key));
}

VerifyingKey PublicOf(const SigningKey& key) {
  return *VerifyingKey::FromRaw(key.public_key());
}

AuditLogOptions Options(std::shared_ptr<const SigningKey> key,
                        uint64_t interval = 1) {
  AuditLogOptions o;
  o.origin = "passerelle.test/gateway";
  o.signing_key = std::move(key);
  o.checkpoint_interval = interval;
  return o;
}

TEST(AuditLogTest, AppendsAndProvesAgainstAReferenceTree) {
  TempDir dir;
  auto key = NewKey();
  auto log = AuditLog::OpenDirectory(dir.path(), Options(key));
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->Size(), 0u);
  EXPECT_EQ((*log)->Root(), EmptyRoot());

  std::vector<std::string> leaves;
  std::vector<std::string> roots = {EmptyRoot()};
  for (int i = 0; i < 37; ++i) {
    auto index = (*log)->Append(EntryText(i));
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(*index, static_cast<uint64_t>(i));
    leaves.push_back(HashLeaf(EntryText(i)));
    roots.push_back(RootOfLeafHashes(leaves));
    EXPECT_EQ((*log)->Root(), roots.back());
  }
  AuditLog& l = **log;
  EXPECT_EQ(l.Size(), 37u);
  EXPECT_EQ(*l.Get(12), EntryText(12));
  EXPECT_EQ(l.Get(37).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*l.LeafHash(3), leaves[3]);
  for (uint64_t size = 1; size <= 37; ++size) {
    ASSERT_EQ(*l.RootAt(size), roots[size]);
    for (uint64_t i = 0; i < size; ++i) {
      auto proof = l.InclusionProof(i, size);
      ASSERT_TRUE(proof.ok()) << proof.status();
      EXPECT_TRUE(
          VerifyInclusion(leaves[i], i, size, *proof, roots[size]).ok());
    }
    for (uint64_t size1 = 1; size1 <= size; ++size1) {
      auto proof = l.ConsistencyProof(size1, size);
      ASSERT_TRUE(proof.ok()) << proof.status();
      EXPECT_TRUE(
          VerifyConsistency(size1, size, *proof, roots[size1], roots[size])
              .ok());
    }
  }
  EXPECT_EQ(l.InclusionProof(0, 38).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(l.ConsistencyProof(1, 38).status().code(),
            absl::StatusCode::kOutOfRange);

  // One checkpoint per append, the latest for the whole log.
  auto notes = l.Checkpoints();
  ASSERT_TRUE(notes.ok());
  EXPECT_EQ(notes->size(), 37u);
  auto latest = l.LatestCheckpoint();
  ASSERT_TRUE(latest.ok() && latest->has_value());
  auto cp = OpenCheckpoint(**latest, l.origin(), PublicOf(*key));
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(cp->size, 37u);
  EXPECT_EQ(cp->root_hash, roots[37]);

  VerifySummary summary;
  EXPECT_TRUE(l.Verify(PublicOf(*key), &summary).ok());
  EXPECT_EQ(summary.entries_verified, 37u);
  EXPECT_EQ(summary.checkpoints_verified, 37u);
  EXPECT_EQ(summary.root, roots[37]);
  EXPECT_FALSE(summary.first_bad_index.has_value());
}

TEST(AuditLogTest, ReopenContinuesTheSameTree) {
  TempDir dir;
  auto key = NewKey();
  std::vector<std::string> leaves;
  for (int round = 0; round < 3; ++round) {
    auto log = AuditLog::OpenDirectory(dir.path(), Options(key));
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_EQ((*log)->Size(), leaves.size());
    for (int i = 0; i < 5 + round; ++i) {
      const std::string e = EntryText(leaves.size());
      ASSERT_TRUE((*log)->Append(e).ok());
      leaves.push_back(HashLeaf(e));
    }
    EXPECT_EQ((*log)->Root(), RootOfLeafHashes(leaves));
  }
  auto ro = AuditLog::OpenDirectory(dir.path(), AuditLogOptions());
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_EQ((*ro)->origin(), "passerelle.test/gateway");
  auto stored = (*ro)->StoredPublicKey();
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->raw(), key->public_key());
  EXPECT_TRUE((*ro)->Verify(*stored).ok());
  EXPECT_EQ((*ro)->Append("x").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(AuditLogTest, OpenWithKeyFileCreatesKeyAndLog) {
  TempDir dir;
  const std::string store = dir.path() + "/audit";
  const std::string key_file = dir.path() + "/audit.key";
  {
    auto log = AuditLog::Open(store, key_file, "passerelle/site/fr");
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE((*log)->Append("a").ok());
  }
  EXPECT_TRUE(fs::exists(key_file));
  auto again = AuditLog::Open(store, key_file, "passerelle/site/fr");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->Size(), 1u);
  auto key = LoadOrCreateSigningKey(key_file);
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE((*again)->Verify(PublicOf(**key)).ok());
  // One writer at a time.
  EXPECT_EQ(
      AuditLog::Open(store, key_file, "passerelle/site/fr").status().code(),
      absl::StatusCode::kFailedPrecondition);
  again->reset();
  EXPECT_EQ(
      AuditLog::Open(store, key_file, "passerelle/site/qc").status().code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST(AuditLogTest, RefusesAnotherKeyOrOrigin) {
  TempDir dir;
  auto key = NewKey();
  {
    auto log = AuditLog::OpenDirectory(dir.path(), Options(key));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Append("a").ok());
  }
  EXPECT_EQ(
      AuditLog::OpenDirectory(dir.path(), Options(NewKey())).status().code(),
      absl::StatusCode::kFailedPrecondition);
  AuditLogOptions other = Options(key);
  other.origin = "passerelle.test/other";
  EXPECT_EQ(AuditLog::OpenDirectory(dir.path(), other).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(AuditLog::Open(std::make_unique<MemLogStore>(), AuditLogOptions())
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  AuditLogOptions bad = Options(key);
  bad.origin = "has space";
  EXPECT_EQ(
      AuditLog::Open(std::make_unique<MemLogStore>(), bad).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(AuditLogTest, CheckpointIntervalAndExplicitSigning) {
  auto key = NewKey();
  auto log = AuditLog::Open(std::make_unique<MemLogStore>(), Options(key, 4));
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->SignCheckpoint().status().code(),
            absl::StatusCode::kFailedPrecondition);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*log)->Append(EntryText(i)).ok());
  std::vector<uint64_t> sizes;
  auto notes = (*log)->Checkpoints();
  ASSERT_TRUE(notes.ok());
  for (const std::string& note : *notes) {
    sizes.push_back(ParseCheckpointNote(note)->size);
  }
  EXPECT_EQ(sizes, (std::vector<uint64_t>{4, 8}));
  auto note = (*log)->SignCheckpoint();
  ASSERT_TRUE(note.ok()) << note.status();
  EXPECT_EQ(ParseCheckpointNote(*note)->size, 10u);
  // Signing again at the same size returns the same note.
  EXPECT_EQ(*(*log)->SignCheckpoint(), *note);
  EXPECT_TRUE((*log)->Verify(PublicOf(*key)).ok());
}

TEST(AuditLogTest, ServerLogsCheckpointEvery16AndSealTheTail) {
  TempDir dir;
  const std::string key_file = dir.path() + "/audit.key";
  auto log =
      AuditLog::Open(dir.path() + "/log", key_file, "passerelle/site/fr");
  ASSERT_TRUE(log.ok()) << log.status();
  // Nothing to seal in an empty log.
  EXPECT_FALSE(*(*log)->SealTail());
  for (int i = 0; i < 37; ++i) ASSERT_TRUE((*log)->Append(EntryText(i)).ok());
  auto sizes = [&] {
    std::vector<uint64_t> out;
    absl::StatusOr<std::vector<std::string>> notes = (*log)->Checkpoints();
    if (!notes.ok()) return out;
    for (const std::string& note : *notes) {
      out.push_back(ParseCheckpointNote(note)->size);
    }
    return out;
  };
  // One append per batch here: checkpoints exactly at the due sizes.
  EXPECT_EQ(sizes(), (std::vector<uint64_t>{16, 32}));
  EXPECT_EQ((*log)->UnsignedTail(), 5u);
  auto sealed = (*log)->SealTail();
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_TRUE(*sealed);
  EXPECT_EQ((*log)->UnsignedTail(), 0u);
  EXPECT_FALSE(*(*log)->SealTail());  // Already sealed: no new signature.
  EXPECT_EQ(sizes(), (std::vector<uint64_t>{16, 32, 37}));
  auto key = LoadOrCreateSigningKey(key_file);
  ASSERT_TRUE(key.ok());
  VerifySummary summary;
  EXPECT_TRUE((*log)->Verify(PublicOf(**key), &summary).ok())
      << summary.problem;
  EXPECT_EQ(summary.checkpoints_verified, 3u);

  // The sealer signs on Tick and once more when stopped.
  {
    CheckpointSealer sealer(log->get(), absl::ZeroDuration());
    ASSERT_TRUE((*log)->Append(EntryText(37)).ok());
    EXPECT_TRUE(*sealer.Tick());
    EXPECT_FALSE(*sealer.Tick());
    ASSERT_TRUE((*log)->Append(EntryText(38)).ok());
    EXPECT_EQ((*log)->UnsignedTail(), 1u);
  }
  EXPECT_EQ((*log)->UnsignedTail(), 0u);
  EXPECT_EQ(sizes().back(), 39u);
  EXPECT_TRUE((*log)->Verify(PublicOf(**key), &summary).ok())
      << summary.problem;

  // A read-only log has no tail to seal.
  log->reset();
  AuditLogOptions read_only;
  auto reader = AuditLog::OpenDirectory(dir.path() + "/log", read_only);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_FALSE(*(*reader)->SealTail());
}

TEST(AuditLogTest, SealerReportsAFailedSeal) {
  auto mem = std::make_shared<MemLogStore>();
  auto key = NewKey();
  auto log =
      AuditLog::Open(std::make_unique<SharedStore>(mem), Options(key, 16));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Append(EntryText(0)).ok());
  std::vector<std::string> reports;
  CheckpointSealer sealer(log->get(), absl::ZeroDuration(),
                          [&](const absl::Status& s) {
                            reports.push_back(std::string(s.message()));
                          });
  mem->set_fail_commits(true);
  EXPECT_FALSE(sealer.Tick().ok());
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ((*log)->UnsignedTail(), 1u);  // Nothing half-signed.
  mem->set_fail_commits(false);
  EXPECT_TRUE(*sealer.Tick());
  EXPECT_EQ((*log)->UnsignedTail(), 0u);
}

TEST(AuditLogTest, FailedDurableWriteReturnsErrorAndChangesNothing) {
  auto mem = std::make_shared<MemLogStore>();
  auto key = NewKey();
  auto log = AuditLog::Open(std::make_unique<SharedStore>(mem), Options(key));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Append("first").ok());
  const std::string root = (*log)->Root();

  mem->set_fail_commits(true);
  auto failed = (*log)->Append("second");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*log)->Size(), 1u);
  EXPECT_EQ((*log)->Root(), root);
  EXPECT_EQ((*log)->Get(1).status().code(), absl::StatusCode::kOutOfRange);

  mem->set_fail_commits(false);
  auto retried = (*log)->Append("second");
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(*retried, 1u);
  EXPECT_EQ((*log)->Root(),
            RootOfLeafHashes({HashLeaf("first"), HashLeaf("second")}));
  EXPECT_TRUE((*log)->Verify(PublicOf(*key)).ok());
}

TEST(AuditLogTest, WriteToReadOnlyRocksDbFails) {
  TempDir dir;
  auto key = NewKey();
  {
    auto log = AuditLog::OpenDirectory(dir.path(), Options(key));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Append("a").ok());
  }
  auto store = OpenRocksDbLogStore(dir.path(), /*read_only=*/true);
  ASSERT_TRUE(store.ok()) << store.status();
  auto log = AuditLog::Open(*std::move(store), Options(key));
  ASSERT_TRUE(log.ok()) << log.status();
  auto appended = (*log)->Append("b");
  EXPECT_FALSE(appended.ok());
  EXPECT_EQ(appended.status().code(), absl::StatusCode::kFailedPrecondition)
      << appended.status();
  EXPECT_EQ((*log)->Size(), 1u);
}

TEST(AuditLogTest, NeverSignsACheckpointInconsistentWithAnEarlierOne) {
  auto mem = std::make_shared<MemLogStore>();
  auto key = NewKey();
  auto log =
      AuditLog::Open(std::make_unique<SharedStore>(mem), Options(key, 0));
  ASSERT_TRUE(log.ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*log)->Append(EntryText(i)).ok());
  ASSERT_TRUE((*log)->SignCheckpoint().ok());
  // Rewrite the stored subtree over entries 0..3 behind the log's back.
  mem->Put(log_keys::Node(2, 0), Sha256("forged"));
  ASSERT_TRUE((*log)->Append(EntryText(5)).ok());  // No checkpoint due.
  auto signed_note = (*log)->SignCheckpoint();
  EXPECT_EQ(signed_note.status().code(), absl::StatusCode::kDataLoss)
      << signed_note.status();
  EXPECT_EQ((*log)->Checkpoints()->size(), 1u);
  // And a fresh open for appending refuses the store outright.
  EXPECT_EQ(AuditLog::Open(std::make_unique<SharedStore>(mem), Options(key, 0))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

TEST(AuditLogTest, ConcurrentAppendsGetDistinctIndices) {
  auto key = NewKey();
  auto log = AuditLog::Open(std::make_unique<MemLogStore>(), Options(key));
  ASSERT_TRUE(log.ok());
  absl::Mutex mu;
  std::set<uint64_t> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        auto index = (*log)->Append(absl::StrCat("t", t, "-", i));
        ASSERT_TRUE(index.ok());
        absl::MutexLock lock(&mu);
        EXPECT_TRUE(seen.insert(*index).second);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ((*log)->Size(), 100u);
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_TRUE((*log)->Verify(PublicOf(*key)).ok());
}

TEST(AuditLogTest, ProofsDuringAppendsVerify) {
  auto key = NewKey();
  auto log = AuditLog::Open(std::make_unique<MemLogStore>(), Options(key));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Append("seed").ok());
  std::thread writer([&] {
    for (int i = 0; i < 150; ++i)
      ASSERT_TRUE((*log)->Append(EntryText(i)).ok());
  });
  // Each proof is for a size the log had; it must verify against that
  // size's root whatever the writer does meanwhile.
  int checked = 0;
  for (uint64_t round = 0; round < 300; ++round) {
    const uint64_t size = (*log)->Size();
    const uint64_t index = round % size;
    auto root = (*log)->RootAt(size);
    auto leaf = (*log)->LeafHash(index);
    auto proof = (*log)->InclusionProof(index, size);
    ASSERT_TRUE(root.ok() && leaf.ok() && proof.ok());
    EXPECT_TRUE(VerifyInclusion(*leaf, index, size, *proof, *root).ok());
    if (size > 1) {
      auto cons = (*log)->ConsistencyProof(size / 2 + 1, size);
      ASSERT_TRUE(cons.ok());
      EXPECT_TRUE(VerifyConsistency(size / 2 + 1, size, *cons,
                                    *(*log)->RootAt(size / 2 + 1), *root)
                      .ok());
    }
    ++checked;
  }
  writer.join();
  EXPECT_EQ(checked, 300);
  EXPECT_EQ((*log)->Size(), 151u);
  EXPECT_TRUE((*log)->Verify(PublicOf(*key)).ok());
}

// ---------------------------------------------------------------------------
// Group commit.

// A MemLogStore whose next Commit can be held until the test releases it
// (so that appends queue behind it), or made to fail, and which records how
// many entries each commit of entries carried.
class GatedStore : public SharedStore {
 public:
  explicit GatedStore(std::shared_ptr<MemLogStore> s)
      : SharedStore(std::move(s)) {}
  absl::Status Commit(const std::vector<KeyValue>& puts) override {
    absl::Notification* entered = nullptr;
    absl::Notification* release = nullptr;
    bool fail = false;
    {
      absl::MutexLock lock(&mu_);
      std::swap(entered, entered_);
      std::swap(release, release_);
      fail = fail_next_;
      fail_next_ = false;
    }
    if (entered != nullptr) entered->Notify();
    if (release != nullptr) release->WaitForNotification();
    if (fail) return absl::UnavailableError("injected batch failure");
    absl::Status st = SharedStore::Commit(puts);
    int entries = 0;
    for (const auto& [k, v] : puts) {
      entries += absl::StartsWith(k, log_keys::kEntryPrefix) ? 1 : 0;
    }
    absl::MutexLock lock(&mu_);
    if (st.ok() && entries > 0) entries_per_commit_.push_back(entries);
    return st;
  }
  // The next Commit notifies `entered`, then waits for `release`.
  void HoldNext(absl::Notification* entered, absl::Notification* release) {
    absl::MutexLock lock(&mu_);
    entered_ = entered;
    release_ = release;
  }
  void FailNext() {
    absl::MutexLock lock(&mu_);
    fail_next_ = true;
  }
  std::vector<int> entries_per_commit() const {
    absl::MutexLock lock(&mu_);
    return entries_per_commit_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Notification* entered_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Notification* release_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool fail_next_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<int> entries_per_commit_ ABSL_GUARDED_BY(mu_);
};

AuditLogOptions LagOptions(std::shared_ptr<const SigningKey> key,
                           uint64_t lag) {
  AuditLogOptions o = Options(std::move(key));
  o.checkpoint_lag = lag;
  return o;
}

std::vector<uint64_t> CheckpointSizes(const AuditLog& log) {
  std::vector<uint64_t> sizes;
  absl::StatusOr<std::vector<std::string>> notes = log.Checkpoints();
  EXPECT_TRUE(notes.ok()) << notes.status();
  if (!notes.ok()) return sizes;
  for (const std::string& note : *notes) {
    sizes.push_back(ParseCheckpointNote(note)->size);
  }
  return sizes;
}

// One append is held in its synced write while `queued` more queue behind
// it; then all are released. Returns each queued append's result.
std::vector<absl::StatusOr<uint64_t>> AppendBehindAHeldWrite(AuditLog& log,
                                                             GatedStore& store,
                                                             int queued,
                                                             bool fail_second) {
  absl::Notification entered, release;
  store.HoldNext(&entered, &release);
  absl::StatusOr<uint64_t> first = absl::UnknownError("not run");
  std::thread holder([&] { first = log.Append("held"); });
  entered.WaitForNotification();
  if (fail_second) store.FailNext();
  std::vector<absl::StatusOr<uint64_t>> results(queued,
                                                absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < queued; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = log.Append(absl::StrCat("queued-", i)); });
  }
  log.AwaitQueuedForTesting(queued);
  release.Notify();
  holder.join();
  for (auto& t : threads) t.join();
  EXPECT_TRUE(first.ok()) << first.status();
  return results;
}

TEST(AuditLogGroupCommitTest, QueuedAppendsShareOneWriteAndOneCheckpoint) {
  auto mem = std::make_shared<MemLogStore>();
  auto gated = std::make_unique<GatedStore>(mem);
  GatedStore& store = *gated;
  auto key = NewKey();
  auto log = AuditLog::Open(std::move(gated), LagOptions(key, 63));
  ASSERT_TRUE(log.ok()) << log.status();
  constexpr int kQueued = 15;
  auto results = AppendBehindAHeldWrite(**log, store, kQueued, false);
  std::set<uint64_t> indices;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    indices.insert(*r);
  }
  // The held append got 0, the queued ones 1..15 in one batch.
  EXPECT_EQ(indices.size(), static_cast<size_t>(kQueued));
  EXPECT_EQ(*indices.begin(), 1u);
  EXPECT_EQ(*indices.rbegin(), static_cast<uint64_t>(kQueued));
  EXPECT_EQ(store.entries_per_commit(), (std::vector<int>{1, kQueued}));
  EXPECT_EQ(CheckpointSizes(**log),
            (std::vector<uint64_t>{1, static_cast<uint64_t>(kQueued + 1)}));
  // Every entry is where its index says, and proves into the signed root.
  const uint64_t size = (*log)->Size();
  ASSERT_EQ(size, static_cast<uint64_t>(kQueued + 1));
  auto cp = OpenCheckpoint(**(*log)->LatestCheckpoint(), (*log)->origin(),
                           PublicOf(*key));
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(cp->root_hash, (*log)->Root());
  for (int i = 0; i < kQueued; ++i) {
    const uint64_t index = *results[i];
    EXPECT_EQ(*(*log)->Get(index), absl::StrCat("queued-", i));
    auto proof = (*log)->InclusionProof(index, size);
    ASSERT_TRUE(proof.ok());
    EXPECT_TRUE(VerifyInclusion(HashLeaf(absl::StrCat("queued-", i)), index,
                                size, *proof, cp->root_hash)
                    .ok());
  }
  EXPECT_TRUE((*log)->Verify(PublicOf(*key)).ok());
}

TEST(AuditLogGroupCommitTest, LagZeroStillSignsEverySizeInABatch) {
  auto mem = std::make_shared<MemLogStore>();
  auto gated = std::make_unique<GatedStore>(mem);
  GatedStore& store = *gated;
  auto key = NewKey();
  auto log = AuditLog::Open(std::move(gated), Options(key));
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->checkpoint_lag(), 0u);
  auto results = AppendBehindAHeldWrite(**log, store, 9, false);
  for (const auto& r : results) ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(store.entries_per_commit(), (std::vector<int>{1, 9}));
  std::vector<uint64_t> want;
  for (uint64_t s = 1; s <= 10; ++s) want.push_back(s);
  EXPECT_EQ(CheckpointSizes(**log), want);
  EXPECT_TRUE((*log)->Verify(PublicOf(*key)).ok());
}

TEST(AuditLogGroupCommitTest, FailedBatchFailsEveryCallerAndChangesNothing) {
  auto mem = std::make_shared<MemLogStore>();
  auto gated = std::make_unique<GatedStore>(mem);
  GatedStore& store = *gated;
  auto key = NewKey();
  auto log = AuditLog::Open(std::move(gated), LagOptions(key, 63));
  ASSERT_TRUE(log.ok()) << log.status();
  // The held write (entry 0) succeeds; the batch queued behind it fails.
  auto results = AppendBehindAHeldWrite(**log, store, 8, true);
  for (const auto& r : results) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  }
  EXPECT_EQ((*log)->Size(), 1u);
  EXPECT_EQ((*log)->Root(), RootOfLeafHashes({HashLeaf("held")}));
  EXPECT_EQ(CheckpointSizes(**log), (std::vector<uint64_t>{1}));
  EXPECT_EQ((*log)->Get(1).status().code(), absl::StatusCode::kOutOfRange);
  // The log goes on from the unchanged state.
  auto next = (*log)->Append("after");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, 1u);
  EXPECT_EQ((*log)->Root(),
            RootOfLeafHashes({HashLeaf("held"), HashLeaf("after")}));
  EXPECT_TRUE((*log)->Verify(PublicOf(*key)).ok());
  // And a writer reopening the store agrees.
  auto again =
      AuditLog::Open(std::make_unique<SharedStore>(mem), LagOptions(key, 63));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->Size(), 2u);
}

TEST(AuditLogGroupCommitTest, ManyThreadsAppendAndEveryProofVerifies) {
  auto key = NewKey();
  auto log =
      AuditLog::Open(std::make_unique<MemLogStore>(), LagOptions(key, 7));
  ASSERT_TRUE(log.ok()) << log.status();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 40;
  absl::Mutex mu;
  std::map<uint64_t, std::string> by_index;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string e = absl::StrCat("t", t, "-", i);
        auto index = (*log)->Append(e);
        ASSERT_TRUE(index.ok()) << index.status();
        absl::MutexLock lock(&mu);
        EXPECT_TRUE(by_index.emplace(*index, std::move(e)).second);
      }
    });
  }
  for (auto& th : threads) th.join();
  const uint64_t n = kThreads * kPerThread;
  ASSERT_EQ((*log)->Size(), n);
  ASSERT_EQ(by_index.size(), n);
  EXPECT_EQ(by_index.rbegin()->first, n - 1);
  std::vector<std::string> leaves;
  for (const auto& [index, e] : by_index) {
    EXPECT_EQ(*(*log)->Get(index), e);
    leaves.push_back(HashLeaf(e));
  }
  EXPECT_EQ((*log)->Root(), RootOfLeafHashes(leaves));
  for (uint64_t i = 0; i < n; i += 7) {
    auto proof = (*log)->InclusionProof(i, n);
    ASSERT_TRUE(proof.ok());
    EXPECT_TRUE(VerifyInclusion(leaves[i], i, n, *proof, (*log)->Root()).ok());
  }
  // Checkpoints: the last covers the whole log, consecutive ones are at
  // most lag + 1 apart, and Verify accepts them.
  std::vector<uint64_t> sizes = CheckpointSizes(**log);
  ASSERT_FALSE(sizes.empty());
  EXPECT_EQ(sizes.back(), n);
  uint64_t prev = 0;
  for (uint64_t s : sizes) {
    EXPECT_LE(s - prev, 8u);
    prev = s;
  }
  EXPECT_TRUE((*log)->Verify(PublicOf(*key)).ok());
}

TEST(AuditLogGroupCommitTest, VerifyChecksTheLagAndTheLagIsStored) {
  auto mem = std::make_shared<MemLogStore>();
  auto key = NewKey();
  {
    auto log =
        AuditLog::Open(std::make_unique<SharedStore>(mem), LagOptions(key, 3));
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 12; ++i) {
      ASSERT_TRUE((*log)->Append(EntryText(i)).ok());  // One per batch.
    }
  }
  // Reopened with other options, the log keeps the lag it was created with.
  auto reopened =
      AuditLog::Open(std::make_unique<SharedStore>(mem), Options(key));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->checkpoint_lag(), 3u);
  reopened->reset();
  auto verify = [&]() -> int64_t {
    auto log =
        AuditLog::Open(std::make_unique<SharedStore>(mem), AuditLogOptions());
    EXPECT_TRUE(log.ok());
    VerifySummary summary;
    if ((*log)->Verify(PublicOf(*key), &summary).ok()) return -1;
    return static_cast<int64_t>(summary.first_bad_index.value_or(-3));
  };
  EXPECT_EQ(verify(), -1);
  // A copy of the store without the checkpoints for sizes [from, to].
  auto drop = [&](uint64_t from, uint64_t to) {
    std::shared_ptr<MemLogStore> copy = std::make_shared<MemLogStore>();
    EXPECT_TRUE(mem->Scan("",
                          [&](absl::string_view k, absl::string_view v) {
                            std::string key_s(k);
                            bool skip = false;
                            for (uint64_t s = from; s <= to; ++s) {
                              skip |= key_s == log_keys::CheckpointKey(s);
                            }
                            if (!skip) copy->Put(key_s, std::string(v));
                            return true;
                          })
                    .ok());
    return copy;
  };
  // Checkpoints 5..7 gone: the one for size 8 is within the lag of each.
  mem = drop(5, 7);
  EXPECT_EQ(verify(), -1);
  // Sizes 5..8 gone: nothing signed within 3 of size 5.
  mem = drop(5, 8);
  EXPECT_EQ(verify(), 4);
}

// ---------------------------------------------------------------------------
// Tampering with the RocksDB store directly, then verifying read-only.

class TamperTest : public ::testing::Test {
 protected:
  static constexpr int kEntries = 10;

  void SetUp() override {
    key_ = NewKey();
    auto log = AuditLog::OpenDirectory(dir_.path(), Options(key_));
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < kEntries; ++i) {
      ASSERT_TRUE((*log)->Append(EntryText(i)).ok());
    }
    ASSERT_TRUE((*log)->Verify(PublicOf(*key_)).ok());
  }

  // Runs `fn` on the raw RocksDB store (the log is closed).
  void Tamper(const std::function<void(rocksdb::DB*)>& fn) {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_.path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    fn(db.get());
  }

  static std::string Read(rocksdb::DB* db, const std::string& key) {
    std::string v;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), key, &v).ok()) << key;
    return v;
  }
  static void Write(rocksdb::DB* db, const std::string& key,
                    const std::string& value) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  }
  static void Delete(rocksdb::DB* db, const std::string& key) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), key).ok());
  }

  // Verifies read-only with `key` (default: the log's) and returns the
  // first bad index, or -1 when verification passes.
  int64_t FirstBadIndex(const VerifyingKey* key = nullptr) {
    auto log = AuditLog::OpenDirectory(dir_.path(), AuditLogOptions());
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return -2;
    VerifySummary summary;
    absl::Status st =
        (*log)->Verify(key != nullptr ? *key : PublicOf(*key_), &summary);
    if (st.ok()) return -1;
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_TRUE(summary.first_bad_index.has_value());
    EXPECT_NE(st.message().find(
                  absl::StrCat("first bad index ", *summary.first_bad_index)),
              absl::string_view::npos)
        << st;
    return static_cast<int64_t>(summary.first_bad_index.value_or(-3));
  }

  TempDir dir_;
  std::shared_ptr<const SigningKey> key_;
};

TEST_F(TamperTest, UntouchedStoreVerifies) { EXPECT_EQ(FirstBadIndex(), -1); }

TEST_F(TamperTest, FlippedByteInAnEntry) {
  Tamper([](rocksdb::DB* db) {
    std::string e = Read(db, log_keys::Entry(5));
    e[3] ^= 0x01;
    Write(db, log_keys::Entry(5), e);
  });
  EXPECT_EQ(FirstBadIndex(), 5);
}

TEST_F(TamperTest, DeletedEntry) {
  Tamper([](rocksdb::DB* db) { Delete(db, log_keys::Entry(4)); });
  EXPECT_EQ(FirstBadIndex(), 4);
}

TEST_F(TamperTest, SwappedEntries) {
  Tamper([](rocksdb::DB* db) {
    const std::string a = Read(db, log_keys::Entry(2));
    const std::string b = Read(db, log_keys::Entry(7));
    Write(db, log_keys::Entry(2), b);
    Write(db, log_keys::Entry(7), a);
  });
  EXPECT_EQ(FirstBadIndex(), 2);
}

TEST_F(TamperTest, TruncatedTailEntriesOnly) {
  Tamper([](rocksdb::DB* db) {
    for (int i = 7; i < kEntries; ++i) Delete(db, log_keys::Entry(i));
  });
  EXPECT_EQ(FirstBadIndex(), 7);
}

TEST_F(TamperTest, TruncatedTailWithSizeAndTreeRewound) {
  // A careful truncation: entries, their hashes and the size are rewound;
  // only the signed checkpoints beyond betray it.
  Tamper([](rocksdb::DB* db) {
    for (int i = 7; i < kEntries; ++i) {
      Delete(db, log_keys::Entry(i));
      Delete(db, log_keys::Node(0, i));
    }
    Write(db, log_keys::kSize, log_keys::EncodeU64(7));
  });
  EXPECT_EQ(FirstBadIndex(), 7);
}

TEST_F(TamperTest, RewrittenEntryWithRecomputedTree) {
  // A careful rewrite: entry 3 and every stored hash recomputed to match.
  // Only the signed checkpoints can tell, and they locate it exactly.
  Tamper([](rocksdb::DB* db) {
    Write(db, log_keys::Entry(3), "{\"request\":3,\"payload\":\"benign\"}");
    InMemoryTree tree;
    for (int i = 0; i < kEntries; ++i) {
      tree.AppendLeafHash(HashLeaf(Read(db, log_keys::Entry(i))));
    }
    for (size_t level = 0; level < tree.levels().size(); ++level) {
      for (size_t i = 0; i < tree.levels()[level].size(); ++i) {
        Write(db, log_keys::Node(level, i), tree.levels()[level][i]);
      }
    }
  });
  EXPECT_EQ(FirstBadIndex(), 3);
}

TEST_F(TamperTest, ForgedLatestCheckpoint) {
  // Replaced by one for a different root, signed by another key.
  Tamper([](rocksdb::DB* db) {
    Checkpoint forged{"passerelle.test/gateway", kEntries, Sha256("forged")};
    auto other = SigningKey::Generate();
    auto note = SignCheckpoint(forged, forged.origin, **other);
    ASSERT_TRUE(note.ok());
    Write(db, log_keys::CheckpointKey(kEntries), *note);
  });
  EXPECT_EQ(FirstBadIndex(), kEntries - 1);
}

TEST_F(TamperTest, ReplacedMiddleCheckpoint) {
  // The checkpoint for size 6 replaced by the (genuine) one for size 5.
  Tamper([](rocksdb::DB* db) {
    Write(db, log_keys::CheckpointKey(6), Read(db, log_keys::CheckpointKey(5)));
  });
  EXPECT_EQ(FirstBadIndex(), 5);
}

TEST_F(TamperTest, DeletedCheckpoint) {
  Tamper([](rocksdb::DB* db) { Delete(db, log_keys::CheckpointKey(6)); });
  EXPECT_EQ(FirstBadIndex(), 5);
}

TEST_F(TamperTest, DeletedLatestCheckpointStopsTheWriter) {
  Tamper(
      [](rocksdb::DB* db) { Delete(db, log_keys::CheckpointKey(kEntries)); });
  EXPECT_EQ(FirstBadIndex(), kEntries - 1);
  EXPECT_EQ(AuditLog::OpenDirectory(dir_.path(), Options(key_)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(TamperTest, TruncationWithCheckpointsRemovedNeedsATrustedCheckpoint) {
  std::string kept;  // What an auditor saved after the 10th entry.
  {
    auto log = AuditLog::OpenDirectory(dir_.path(), AuditLogOptions());
    ASSERT_TRUE(log.ok());
    kept = **(*log)->LatestCheckpoint();
  }
  // Remove every trace of entries 7..9, checkpoints included.
  Tamper([](rocksdb::DB* db) {
    for (int i = 7; i < kEntries; ++i) {
      Delete(db, log_keys::Entry(i));
      Delete(db, log_keys::Node(0, i));
      Delete(db, log_keys::CheckpointKey(i + 1));
    }
    Write(db, log_keys::kSize, log_keys::EncodeU64(7));
  });
  EXPECT_EQ(FirstBadIndex(), -1);  // Undetectable from the store alone...
  auto log = AuditLog::OpenDirectory(dir_.path(), AuditLogOptions());
  ASSERT_TRUE(log.ok());
  VerifySummary summary;
  absl::Status st = (*log)->Verify(PublicOf(*key_), &summary, {kept});
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);  // ...but not with it.
  EXPECT_EQ(summary.first_bad_index, 7u);
  // A trusted checkpoint that does not verify is the caller's error.
  Checkpoint bogus{"passerelle.test/gateway", 3, Sha256("x")};
  auto other = SigningKey::Generate();
  EXPECT_EQ((*log)
                ->Verify(PublicOf(*key_), nullptr,
                         {*SignCheckpoint(bogus, bogus.origin, **other)})
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TamperTest, ChangedStoredSubtreeHash) {
  Tamper([](rocksdb::DB* db) {
    Write(db, log_keys::Node(2, 1), Sha256("forged"));  // Entries 4..7.
  });
  EXPECT_EQ(FirstBadIndex(), 4);
}

TEST_F(TamperTest, ChangedFrontierHashStopsTheWriter) {
  Tamper([](rocksdb::DB* db) {
    Write(db, log_keys::Node(1, 4), Sha256("forged"));  // Entries 8..9.
  });
  EXPECT_EQ(FirstBadIndex(), 8);
  // The writer refuses to continue on a store that no longer matches its
  // latest signed checkpoint.
  EXPECT_EQ(AuditLog::OpenDirectory(dir_.path(), Options(key_)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(TamperTest, DeletedFrontierHashIsReportedNotFatalToReaders) {
  Tamper([](rocksdb::DB* db) { Delete(db, log_keys::Node(1, 4)); });
  EXPECT_EQ(FirstBadIndex(), 8);
  EXPECT_EQ(AuditLog::OpenDirectory(dir_.path(), Options(key_)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(TamperTest, WrongPublicKeyFailsAtTheFirstCheckpoint) {
  auto other = NewKey();
  const VerifyingKey wrong = PublicOf(*other);
  EXPECT_EQ(FirstBadIndex(&wrong), 0);
}

}  // namespace
}  // namespace passerelle::audit
