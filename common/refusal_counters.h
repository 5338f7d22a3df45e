// Counts of requests a daemon refused before or outside its audited request
// path (no caller identity, not serving, the noise generator failing), by
// reason, for its metrics surface (common/metrics_service.h). Reasons are
// the fixed names below, so the set of counters is bounded whatever callers
// send.
#ifndef PASSERELLE_COMMON_REFUSAL_COUNTERS_H_
#define PASSERELLE_COMMON_REFUSAL_COUNTERS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace passerelle {

namespace refusal {
// The peer presented no usable identity (no SPIFFE ID in its certificate).
inline constexpr char kNoIdentity[] = "no_identity";
// The daemon was NOT_SERVING (a store, policy or audit log unusable, or
// draining) and answered UNAVAILABLE.
inline constexpr char kNotServing[] = "not_serving";
// The disclosure step failed: the noise generator gave no sample.
inline constexpr char kNoiseFailure[] = "noise_failure";
// The random source for request ids failed.
inline constexpr char kRandomFailure[] = "random_failure";
}  // namespace refusal

// Thread-safe.
class RefusalCounters {
 public:
  void Add(absl::string_view reason) {
    absl::MutexLock lock(&mu_);
    ++counts_[std::string(reason)];
  }
  uint64_t Get(absl::string_view reason) const {
    absl::MutexLock lock(&mu_);
    auto it = counts_.find(reason);
    return it == counts_.end() ? 0 : it->second;
  }
  std::map<std::string, uint64_t, std::less<>> Snapshot() const {
    absl::MutexLock lock(&mu_);
    return counts_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, uint64_t, std::less<>> counts_ ABSL_GUARDED_BY(mu_);
};

// Adds to `counters` when it is set.
inline void CountRefusal(RefusalCounters* counters, absl::string_view reason) {
  if (counters != nullptr) counters->Add(reason);
}

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_REFUSAL_COUNTERS_H_
