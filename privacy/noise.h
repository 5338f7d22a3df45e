// Noise for sensitivity-1 counts: the parameters, the distribution's
// intervals, and the sources the disclosure step draws from.
//
// Parameter handling. Policy gives epsilon (discrete Laplace) or rho
// (discrete Gaussian) as doubles. They are converted to micro-units rounding
// DOWN (privacy/units.h), and the noise is calibrated with that smaller
// value: scale t = 10^6 / epsilon_micros, sigma^2 = 10^6 / (2 rho_micros),
// exact rationals. The noise is therefore at least as large as the policy
// claims, and never smaller than what the cost (rounded UP) pays for.
// Supported: epsilon and rho in [1e-6, 100].
//
// Timing (privacy.md requirement 10). The production source is a NoisePool:
// a background thread pre-draws samples for each (mechanism, parameter) it
// has seen (the gateway prewarms every distribution its policy can produce
// before that policy serves) and the request path only pops integers
// already drawn, so the
// time to answer does not depend on the values released. When a pool cannot
// serve a request at once (first use of a parameter that was not prewarmed,
// or a burst larger than what is ready), the call waits for its samples and
// is padded to a deadline computed from the number of samples alone
// (slow_path_fixed + n * slow_path_per_sample).
//
// What the timing can still show, and when. Whether a request waited (and
// was padded) is visible. It depends on how many samples the generator had
// drawn when the request arrived, so on the draw times of every sample since
// the pool was last full, the request's own among them (a rejection sampler
// takes longer for larger values). That is a faint signal, and it exists
// only while a pool is below one request's worth of samples: a cold
// distribution (every request waits, whatever the values) or a sustained
// load above what one thread draws (about a million samples per second; a
// query takes tens). A wait longer than the deadline would also show: a
// draw slower than slow_path_per_sample per sample (not observed for the
// supported parameters), or a request queued behind a larger one still
// being drawn (requests are served in arrival order).
// Exactness of a pool. Which values a request receives must not depend on
// the values, nor on how long they took to draw (a rejection sampler takes
// longer for some values than for others). So, per distribution: one thread
// draws, one sample at a time, and appends each to a stream in the order
// drawn; a request is assigned the next n positions of the stream when it
// arrives and receives exactly those values, waiting for them if they are
// not drawn yet; nothing drawn is ever dropped or reordered, except that the
// whole pool is discarded when the generator fails. The i-th value released
// is then the i-th value drawn, whatever the timing. (An earlier pool let
// two threads draw batches at once and cut the batch that finished last to
// fit the capacity: the values kept were biased toward the quick-to-draw
// ones, which privacy/tools/noise_check.py caught for the discrete Gaussian
// at p < 1e-6 in about one run in four.)
#ifndef PASSERELLE_PRIVACY_NOISE_H_
#define PASSERELLE_PRIVACY_NOISE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "privacy/random.h"
#include "privacy/samplers.h"

namespace passerelle::privacy {

enum class Mechanism {
  kDiscreteLaplace,   // Pure epsilon-DP; the default.
  kDiscreteGaussian,  // rho-zCDP.
};

// "discrete_laplace" | "discrete_gaussian" (as in Precision.mechanism).
const char* MechanismName(Mechanism m);

// One noise distribution, exactly.
struct NoiseSpec {
  Mechanism mechanism = Mechanism::kDiscreteLaplace;
  // Laplace: the scale t. Gaussian: sigma^2. Reduced.
  Rational parameter;
  // The epsilon or rho (micro-units) the parameter was derived from.
  int64_t privacy_micros = 0;

  std::string Key() const;  // Identifies the distribution (for pools).
};

// Sensitivity-1 discrete Laplace for `epsilon` (rounded down to 1e-6).
absl::StatusOr<NoiseSpec> LaplaceSpecForEpsilon(double epsilon);
// Sensitivity-1 discrete Gaussian for `rho` (rounded down to 1e-6).
absl::StatusOr<NoiseSpec> GaussianSpecForRho(double rho);

// One exact draw.
absl::StatusOr<int64_t> SampleNoise(RandomSource& random,
                                    const NoiseSpec& spec);

// The smallest m >= 0 such that P[|Z_1 + ... + Z_k| <= m] >= level for k
// independent draws of `spec`, computed from the exact pmf (in floating
// point: this is metadata, not sampling). When the exact convolution would be
// too large, a conservative union bound is used instead (k times the
// single-draw half-width at level 1 - (1 - level)/k), which covers at least
// `level`.
absl::StatusOr<int64_t> NoiseHalfWidth(const NoiseSpec& spec, int k,
                                       double level);

// Where the disclosure step gets its noise. Implementations are thread-safe.
class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  // Fills `out` with independent draws of `spec`. Any error stops the query.
  virtual absl::Status Draw(const NoiseSpec& spec, absl::Span<int64_t> out) = 0;
  // Prepares to serve `spec` quickly (a pool fills itself); a no-op for
  // sources that draw inline.
  virtual absl::Status Prewarm(const NoiseSpec& spec) {
    (void)spec;
    return absl::OkStatus();
  }
  // Forgets what was prepared for distributions other than `keep` (a pool
  // drops their samples); a no-op for sources that draw inline.
  virtual void Retain(const std::vector<NoiseSpec>& keep) { (void)keep; }
};

// Draws inline from `random` (which must outlive it and be thread-safe if
// the source is shared). Thread-safe if `random` is. For tests and as the
// pool's backend; the gateway uses NewProductionNoiseSource.
class DirectNoiseSource : public NoiseSource {
 public:
  explicit DirectNoiseSource(RandomSource* random) : random_(random) {}
  absl::Status Draw(const NoiseSpec& spec, absl::Span<int64_t> out) override;

 private:
  RandomSource* const random_;
};

struct NoisePoolOptions {
  // Samples kept ready (drawn and not yet assigned) per distribution.
  size_t capacity = 16384;
  // Refilling starts when fewer than capacity - refill_batch are ready, and
  // goes on up to capacity.
  size_t refill_batch = 1024;
  // Distinct distributions pooled at once; more is RESOURCE_EXHAUSTED.
  size_t max_specs = 64;
  // Slow-path padding (see the file comment).
  absl::Duration slow_path_fixed = absl::Milliseconds(2);
  absl::Duration slow_path_per_sample = absl::Microseconds(10);
  // How to wait until a deadline; tests inject a no-op.
  std::function<void(absl::Duration)> sleep = [](absl::Duration d) {
    absl::SleepFor(d);
  };
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

// Pre-draws noise off the request path (see the file comment). Safe for
// concurrent use from multiple threads.
class NoisePool : public NoiseSource {
 public:
  // `random` must be thread-safe and outlive the pool.
  NoisePool(RandomSource* random, NoisePoolOptions options);
  // Draws from `generator` (one sample per Draw call, from the pool's own
  // thread, or inline for distributions that are not pooled). For tests that
  // need to see which drawn value went where.
  NoisePool(std::unique_ptr<NoiseSource> generator, NoisePoolOptions options);
  // No call may be in progress.
  ~NoisePool() override;
  NoisePool(const NoisePool&) = delete;
  NoisePool& operator=(const NoisePool&) = delete;

  absl::Status Draw(const NoiseSpec& spec, absl::Span<int64_t> out) override;

  // Returns once the pool for `spec` holds `capacity` ready samples (at
  // startup and before each new policy version serves, for every
  // distribution the policy can produce).
  absl::Status Prewarm(const NoiseSpec& spec) override;

  // Drops the pools of distributions not in `keep` that no request waits on
  // (after a policy reload, so that max_specs bounds the distributions of
  // the policy in force rather than of every version ever loaded).
  void Retain(const std::vector<NoiseSpec>& keep) override;

  // Whether `spec` was prewarmed (and its pool not dropped since).
  bool Prewarmed(const NoiseSpec& spec) const;
  // Draw calls for a distribution that had not been prewarmed (their time
  // can differ from a prewarmed one's: the pool starts cold). For tests.
  int64_t unprewarmed_draws() const;

  // Samples drawn and not yet assigned for `spec` (for tests and health
  // checks).
  size_t Ready(const NoiseSpec& spec) const;
  // Draw calls that had to wait and were padded (for tests and metrics).
  int64_t slow_path_calls() const;

 private:
  // One distribution's stream. Positions [front, front + ready.size()) are
  // drawn and not yet handed out; [front, claimed) are assigned to requests.
  struct Pool {
    explicit Pool(const NoiseSpec& s) : spec(s) {}

    NoiseSpec spec;
    std::deque<int64_t> ready;
    uint64_t front = 0;
    uint64_t claimed = 0;
    bool filling = false;    // Refilling up to capacity.
    bool prewarmed = false;  // A Prewarm call completed.
    int prewarming = 0;      // Prewarm calls waiting for a full pool.

    uint64_t drawn() const { return front + ready.size(); }
    // Drawn and not assigned; negative when requests wait for samples.
    int64_t unassigned() const {
      return static_cast<int64_t>(drawn()) - static_cast<int64_t>(claimed);
    }
  };
  struct Claim;
  // The pool a waiter waits on, or nullptr when it must stop waiting
  // (shutdown, generator failure). With mu_ held.
  static const Pool* WaitedPool(const Claim* claim);
  static bool ClaimServable(Claim* claim);
  static bool PoolFull(Claim* claim);

  void RefillLoop();
  bool RefillWanted() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The pool the generator should draw for next, or nullptr.
  const std::pair<const std::string, Pool>* Neediest() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fail(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Pad(absl::Time start, size_t n) const;

  const std::unique_ptr<NoiseSource> generator_;
  const NoisePoolOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, Pool> pools_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // Sticky generator failure.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t slow_path_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t unprewarmed_draws_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread refiller_;
};

// The gateway's source: a NoisePool with default options over `random`
// (an OpenSslRandomSource), which must outlive it.
absl::StatusOr<std::unique_ptr<NoiseSource>> NewProductionNoiseSource(
    RandomSource* random);

}  // namespace passerelle::privacy

#endif  // PASSERELLE_PRIVACY_NOISE_H_
