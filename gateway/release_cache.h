// Repeat protection: released answers keyed by everything that determines
// them (project, canonical query, disclosure parameters, each site's
// minimum and data snapshot). Asking again returns the stored answer and
// costs nothing; a new snapshot at any site is a new key, hence fresh noise.
#ifndef PASSERELLE_GATEWAY_RELEASE_CACHE_H_
#define PASSERELLE_GATEWAY_RELEASE_CACHE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "passerelle/v1/policy.pb.h"
#include "passerelle/v1/store.pb.h"

namespace passerelle::gateway {

// Implementations are thread-safe.
class ReleaseCache {
 public:
  virtual ~ReleaseCache() = default;
  // nullopt when absent.
  virtual absl::StatusOr<std::optional<v1::CachedRelease>> Get(
      const std::string& key) = 0;
  // Written through (not synced) when the implementation is persistent.
  virtual absl::Status Put(const std::string& key,
                           const v1::CachedRelease& release) = 0;
};

// One site's part of a key.
struct SiteSnapshot {
  std::string site;
  int64_t min_cell_size = 0;
  std::string snapshot;
};

// The key of a release: project, canonical query, the disclosure
// obligations that shape the answer, and every asked site's minimum and
// snapshot, in the obligations' site order. Injective (length-prefixed
// fields), so distinct inputs never share a key.
std::string ReleaseKey(const std::string& project,
                       const std::string& canonical_query,
                       const v1::Obligations& obligations,
                       const std::vector<SiteSnapshot>& sites);

// In memory only (tests, or a gateway run without a cache directory).
class MemoryReleaseCache : public ReleaseCache {
 public:
  absl::StatusOr<std::optional<v1::CachedRelease>> Get(
      const std::string& key) override;
  absl::Status Put(const std::string& key,
                   const v1::CachedRelease& release) override;

 private:
  absl::Mutex mu_;
  std::map<std::string, v1::CachedRelease> entries_ ABSL_GUARDED_BY(mu_);
};

// Persistent, in a RocksDB store at `dir` (created if absent); survives
// restarts so a restart does not reopen a repeated query to fresh noise.
absl::StatusOr<std::unique_ptr<ReleaseCache>> OpenRocksDbReleaseCache(
    const std::string& dir);

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_RELEASE_CACHE_H_
