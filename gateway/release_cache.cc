#include "gateway/release_cache.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"

namespace passerelle::gateway {
namespace {

void AppendField(std::string* out, absl::string_view field) {
  absl::StrAppend(out, field.size(), ":", field, ";");
}

class RocksDbReleaseCache : public ReleaseCache {
 public:
  explicit RocksDbReleaseCache(std::unique_ptr<rocksdb::DB> db)
      : db_(std::move(db)) {}

  absl::StatusOr<std::optional<v1::CachedRelease>> Get(
      const std::string& key) override {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), key, &value);
    if (s.IsNotFound()) return std::optional<v1::CachedRelease>();
    if (!s.ok())
      return absl::UnavailableError(
          absl::StrCat("release cache: ", s.ToString()));
    v1::CachedRelease release;
    if (!release.ParseFromString(value)) {
      return absl::DataLossError(
          "release cache: a stored release does not parse");
    }
    return std::optional<v1::CachedRelease>(std::move(release));
  }

  absl::Status Put(const std::string& key,
                   const v1::CachedRelease& release) override {
    // Not synced: the WAL survives a process crash; a machine crash may lose
    // the latest entries, and then a repeat is charged again with fresh
    // noise, which the budget already accounts for. Saves an fsync per query.
    rocksdb::WriteOptions options;
    options.sync = false;
    rocksdb::Status s = db_->Put(options, key, release.SerializeAsString());
    if (!s.ok())
      return absl::UnavailableError(
          absl::StrCat("release cache: ", s.ToString()));
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace

std::string ReleaseKey(const std::string& project,
                       const std::string& canonical_query,
                       const v1::Obligations& ob,
                       const std::vector<SiteSnapshot>& sites) {
  std::string key = "release/v1/";
  AppendField(&key, project);
  AppendField(&key, canonical_query);
  // Only what shapes the released numbers (not the caller's role or purpose).
  v1::Obligations shape;
  shape.set_federation_min_cell_size(ob.federation_min_cell_size());
  shape.set_min_cell_size(ob.min_cell_size());
  shape.set_mechanism(ob.mechanism());
  shape.set_epsilon_per_query(ob.epsilon_per_query());
  shape.set_rho_per_query(ob.rho_per_query());
  shape.set_rounding(ob.rounding());
  shape.set_exact_mode(ob.exact_mode());
  std::string shape_bytes;
  shape.SerializeToString(&shape_bytes);  // Deterministic for these scalars.
  AppendField(&key, shape_bytes);
  for (const SiteSnapshot& s : sites) {
    AppendField(&key, s.site);
    AppendField(&key, absl::StrCat(s.min_cell_size));
    AppendField(&key, s.snapshot);
  }
  return key;
}

absl::StatusOr<std::optional<v1::CachedRelease>> MemoryReleaseCache::Get(
    const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::optional<v1::CachedRelease>();
  return std::optional<v1::CachedRelease>(it->second);
}

absl::Status MemoryReleaseCache::Put(const std::string& key,
                                     const v1::CachedRelease& release) {
  absl::MutexLock lock(&mu_);
  entries_[key] = release;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ReleaseCache>> OpenRocksDbReleaseCache(
    const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot create release cache directory ", dir, ": ", ec.message()));
  }
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot open release cache at ", dir, ": ", s.ToString()));
  }
  return std::unique_ptr<ReleaseCache>(
      new RocksDbReleaseCache(std::unique_ptr<rocksdb::DB>(db)));
}

}  // namespace passerelle::gateway
