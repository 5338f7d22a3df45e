#include "audit/store.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/write_batch.h"

namespace passerelle::audit {
namespace {

absl::Status FromRocksDb(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNotSupported()) return absl::FailedPreconditionError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

rocksdb::Slice ToSlice(absl::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

// The key families of the log (log.h: "entry/", "node/" plus the level byte,
// "checkpoint/", "meta/"), each written in increasing order: the memtable
// keeps an insert hint per family and skips most of its skip-list search.
class LogKeyFamily : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "passerelle.audit.KeyFamily"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), FamilyLength(key));
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return FamilyLength(key) > 0;
  }

 private:
  static size_t FamilyLength(const rocksdb::Slice& key) {
    const absl::string_view k(key.data(), key.size());
    const size_t slash = k.find('/');
    if (slash == absl::string_view::npos) return 0;
    if (k.substr(0, slash + 1) == "node/") {
      return k.size() > slash + 1 ? slash + 2 : 0;  // One family per level.
    }
    return slash + 1;
  }
};

// Thread-safe because rocksdb::DB is.
class RocksDbLogStore : public LogStore {
 public:
  explicit RocksDbLogStore(std::unique_ptr<rocksdb::DB> db)
      : db_(std::move(db)) {}

  absl::StatusOr<std::optional<std::string>> Get(
      absl::string_view key) const override {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
    if (s.IsNotFound()) return std::nullopt;
    if (!s.ok()) return FromRocksDb(s, "audit store read");
    return value;
  }

  absl::Status Commit(const std::vector<KeyValue>& puts) override {
    rocksdb::WriteBatch batch;
    for (const auto& [key, value] : puts) {
      rocksdb::Status s = batch.Put(ToSlice(key), ToSlice(value));
      if (!s.ok()) return FromRocksDb(s, "audit store batch");
    }
    rocksdb::WriteOptions options;
    options.sync = true;  // Durable before we return: audit before release.
    return FromRocksDb(db_->Write(options, &batch), "audit store write");
  }

  absl::StatusOr<std::optional<KeyValue>> Last(
      absl::string_view prefix) const override {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    // Every key of ours under a prefix is shorter than prefix + 16 x 0xff.
    const std::string upper = absl::StrCat(prefix, std::string(16, '\xff'));
    it->SeekForPrev(upper);
    if (it->Valid() && it->key().starts_with(ToSlice(prefix))) {
      return std::optional<KeyValue>(
          KeyValue(it->key().ToString(), it->value().ToString()));
    }
    PASSERELLE_RETURN_IF_ERROR(FromRocksDb(it->status(), "audit store seek"));
    return std::optional<KeyValue>();
  }

  absl::Status Scan(
      absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn)
      const override {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
      const rocksdb::Slice key = it->key();
      if (!key.starts_with(ToSlice(prefix))) break;
      const rocksdb::Slice value = it->value();
      if (!fn(absl::string_view(key.data(), key.size()),
              absl::string_view(value.data(), value.size()))) {
        break;
      }
    }
    return FromRocksDb(it->status(), "audit store scan");
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LogStore>> OpenRocksDbLogStore(
    const std::string& dir, bool read_only) {
  rocksdb::Options options;
  options.create_if_missing = !read_only;
  options.paranoid_checks = true;
  // One writer at a time (AuditLog's group commit): hinted inserts, which
  // RocksDB only uses without concurrent memtable writes.
  options.allow_concurrent_memtable_write = false;
  options.memtable_insert_with_hint_prefix_extractor =
      std::make_shared<LogKeyFamily>();
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = read_only
                          ? rocksdb::DB::OpenForReadOnly(options, dir, &raw)
                          : rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "audit store ", dir,
          " is open for writing by another process: ", s.ToString()));
    }
    return FromRocksDb(s, absl::StrCat("cannot open audit store ", dir));
  }
  return std::unique_ptr<LogStore>(
      new RocksDbLogStore(std::unique_ptr<rocksdb::DB>(raw)));
}

}  // namespace passerelle::audit
