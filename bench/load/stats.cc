#include "bench/load/stats.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace passerelle::bench {
namespace {

double Ms(int64_t nanos) { return static_cast<double>(nanos) / 1e6; }

int64_t NearestRank(const std::vector<int64_t>& sorted, double p) {
  const size_t n = sorted.size();
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * n));
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

}  // namespace

LatencySummary Summarize(std::vector<int64_t>& nanos) {
  LatencySummary s;
  if (nanos.empty()) return s;
  std::sort(nanos.begin(), nanos.end());
  s.count = static_cast<int64_t>(nanos.size());
  long double sum = 0;
  for (int64_t v : nanos) sum += v;
  s.min_ms = Ms(nanos.front());
  s.max_ms = Ms(nanos.back());
  s.mean_ms = static_cast<double>(sum / nanos.size()) / 1e6;
  s.p50_ms = Ms(NearestRank(nanos, 50));
  s.p90_ms = Ms(NearestRank(nanos, 90));
  s.p99_ms = Ms(NearestRank(nanos, 99));
  return s;
}

void Recorder::RecordOk(int64_t nanos, bool complete, bool repeat,
                        double epsilon) {
  absl::MutexLock lock(&mu_);
  s_.ok_nanos.push_back(nanos);
  ++s_.ok;
  if (!complete) ++s_.partial;
  if (repeat) ++s_.repeats;
  s_.epsilon_charged += epsilon;
}

void Recorder::RecordError(const std::string& code,
                           const std::string& message) {
  absl::MutexLock lock(&mu_);
  ++s_.errors[code];
  s_.first_error.emplace(code, message);
}

Recorder::Snapshot Recorder::Take() {
  absl::MutexLock lock(&mu_);
  Snapshot out = std::move(s_);
  s_ = Snapshot();
  return out;
}

std::string StatusCodeName(int code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(std::size(kNames))) {
    return kNames[code];
  }
  return absl::StrCat("CODE_", code);
}

}  // namespace passerelle::bench
