#include "common/refusal_limiter.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace passerelle {

void RefusalLimiter::Refill(Bucket& b, absl::Time now) const {
  if (now > b.refilled) {
    b.tokens = std::min(options_.burst,
                        b.tokens + absl::ToDoubleSeconds(now - b.refilled) *
                                       options_.per_second);
  }
  b.refilled = std::max(b.refilled, now);
}

bool RefusalLimiter::Admit(absl::string_view identity) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(identity);
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.max_identities) {
      // Drop the idle: full buckets with nothing pending.
      for (auto b = buckets_.begin(); b != buckets_.end();) {
        Refill(b->second, now);
        if (b->second.pending.count == 0 &&
            b->second.tokens >= options_.burst &&
            b->first != kOtherIdentities) {
          b = buckets_.erase(b);
        } else {
          ++b;
        }
      }
    }
    if (buckets_.size() >= options_.max_identities) {
      identity = kOtherIdentities;
      it = buckets_.find(identity);
    }
    if (it == buckets_.end()) {
      Bucket fresh;
      // The shared bucket never records in full: its callers are counted.
      fresh.tokens = identity == kOtherIdentities ? 0 : options_.burst;
      fresh.refilled = now;
      it = buckets_.emplace(std::string(identity), std::move(fresh)).first;
    }
  }
  Bucket& b = it->second;
  if (it->first != kOtherIdentities) {
    Refill(b, now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
  }
  if (b.pending.count == 0) {
    b.pending.identity = it->first;
    b.pending.first = now;
  }
  ++b.pending.count;
  b.pending.last = now;
  ++aggregated_;
  return false;
}

std::vector<RefusalLimiter::Summary> RefusalLimiter::Take(bool all) {
  const absl::Time now = clock_->Now();
  std::vector<Summary> out;
  absl::MutexLock lock(&mu_);
  for (auto& [identity, b] : buckets_) {
    if (b.pending.count == 0) continue;
    if (!all && now < b.pending.first + options_.summary_period) continue;
    out.push_back(std::move(b.pending));
    b.pending = Summary();
  }
  summaries_ += out.size();
  return out;
}

std::vector<RefusalLimiter::Summary> RefusalLimiter::TakeDue() {
  return Take(false);
}

std::vector<RefusalLimiter::Summary> RefusalLimiter::TakeAll() {
  return Take(true);
}

uint64_t RefusalLimiter::aggregated() const {
  absl::MutexLock lock(&mu_);
  return aggregated_;
}

uint64_t RefusalLimiter::summaries() const {
  absl::MutexLock lock(&mu_);
  return summaries_;
}

size_t RefusalLimiter::tracked() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

std::string RefusalLimiter::Describe(const Summary& s) const {
  return absl::StrCat(
      s.count, " refused requests from this identity between ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", s.first, absl::UTCTimeZone()),
      " and ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", s.last, absl::UTCTimeZone()),
      " were answered RESOURCE_EXHAUSTED and are not recorded one by one "
      "(refusal rate limit: ",
      options_.burst, " then ", options_.per_second,
      " per second per identity)");
}

}  // namespace passerelle
