// Outcome recording for the load driver: every latency of a phase (exact
// percentiles, no histogram buckets), errors by gRPC status code, and what
// the answers said (partial, repeat, charged epsilon).
#ifndef PASSERELLE_BENCH_LOAD_STATS_H_
#define PASSERELLE_BENCH_LOAD_STATS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace passerelle::bench {

struct LatencySummary {
  int64_t count = 0;
  double min_ms = 0, mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0,
         max_ms = 0;
};

// Nearest-rank percentiles (p in [0, 100]) of `nanos`, which it sorts.
LatencySummary Summarize(std::vector<int64_t>& nanos);

// One phase's outcomes. Thread-safe: Record* may be called concurrently.
class Recorder {
 public:
  struct Snapshot {
    std::vector<int64_t> ok_nanos;  // Latency of every OK answer.
    // grpc::StatusCode name -> count, and the first message seen.
    std::map<std::string, int64_t> errors;
    std::map<std::string, std::string> first_error;
    int64_t ok = 0, partial = 0, repeats = 0;
    double epsilon_charged = 0;
  };

  void RecordOk(int64_t nanos, bool complete, bool repeat, double epsilon);
  void RecordError(const std::string& code, const std::string& message);
  Snapshot Take();

 private:
  absl::Mutex mu_;
  Snapshot s_ ABSL_GUARDED_BY(mu_);
};

// "OK", "CANCELLED", ... for grpc::StatusCode values.
std::string StatusCodeName(int code);

}  // namespace passerelle::bench

#endif  // PASSERELLE_BENCH_LOAD_STATS_H_
