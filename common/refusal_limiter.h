// Per-identity rate limit on audited refusals, so that a certificate holder
// sending invalid or unauthorized requests in a loop grows an audit log by a
// bounded amount per period.
//
// Each identity has a token bucket (`burst` tokens, refilled at
// `per_second`, on an injected clock). A refusal that finds a token is
// recorded in full as usual; one that finds none is answered
// RESOURCE_EXHAUSTED and only counted: the counts are handed out as one
// summary per identity and period (TakeDue), which the server records as a
// single audit entry. So per identity and period the log grows by at most
// burst + per_second * period full refusal entries (each within
// limits::kMaxAuditEntryBytes) plus one summary entry.
//
// The identities tracked are bounded too (max_identities): idle buckets are
// dropped first; beyond that, the refusals of new identities are counted
// under one shared summary whose identity is kOtherIdentities.
//
// The counters (aggregated(), summaries()) are monotonic since start, for a
// health or metrics endpoint. Thread-safe.
#ifndef PASSERELLE_COMMON_REFUSAL_LIMITER_H_
#define PASSERELLE_COMMON_REFUSAL_LIMITER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace passerelle {

struct RefusalLimiterOptions {
  double per_second = 0.5;  // Sustained refusals recorded in full.
  double burst = 20;        // Recorded in full before the rate applies.
  // A summary is due this long after the first refusal it counts.
  absl::Duration summary_period = absl::Minutes(1);
  size_t max_identities = 4096;
};

class RefusalLimiter {
 public:
  static constexpr absl::string_view kOtherIdentities = "(other identities)";

  struct Summary {
    std::string identity;
    uint64_t count = 0;  // Refusals counted, not recorded one by one.
    absl::Time first;    // Of the first and last counted.
    absl::Time last;
  };

  // `clock` is not owned and must outlive the limiter.
  RefusalLimiter(RefusalLimiterOptions options, const Clock* clock)
      : options_(options), clock_(clock) {}

  // True when a refusal of `identity`'s request may be recorded in full
  // (a token is taken); false when it is counted into the identity's
  // pending summary instead.
  bool Admit(absl::string_view identity) ABSL_LOCKS_EXCLUDED(mu_);

  // Pending summaries whose period has ended, removed from the limiter.
  std::vector<Summary> TakeDue() ABSL_LOCKS_EXCLUDED(mu_);
  // Every pending summary (at shutdown).
  std::vector<Summary> TakeAll() ABSL_LOCKS_EXCLUDED(mu_);

  // Refusals counted instead of recorded, since start.
  uint64_t aggregated() const ABSL_LOCKS_EXCLUDED(mu_);
  // Summaries handed out, since start.
  uint64_t summaries() const ABSL_LOCKS_EXCLUDED(mu_);
  // Identities currently tracked (at most max_identities + 1).
  size_t tracked() const ABSL_LOCKS_EXCLUDED(mu_);

  const RefusalLimiterOptions& options() const { return options_; }

  // The reason a summary entry records: how many refusals of the identity,
  // between which times, and the rate limit that counted them.
  std::string Describe(const Summary& summary) const;

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time refilled;
    Summary pending;  // count 0: none.
  };
  void Refill(Bucket& b, absl::Time now) const;
  std::vector<Summary> Take(bool all) ABSL_LOCKS_EXCLUDED(mu_);

  const RefusalLimiterOptions options_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, Bucket, std::less<>> buckets_ ABSL_GUARDED_BY(mu_);
  uint64_t aggregated_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t summaries_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_REFUSAL_LIMITER_H_
