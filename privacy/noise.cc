#include "privacy/noise.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "privacy/units.h"

namespace passerelle::privacy {
namespace {

constexpr int64_t kMinMicros = 1;
constexpr int64_t kMaxMicros = 100 * kMicrosPerUnit;

// Largest pmf support (2M+1 points) built in memory for intervals.
constexpr int64_t kMaxSupport = 4'000'001;
// Largest convolution work (multiply-adds) before the union bound is used.
constexpr double kMaxConvolutionWork = 3e7;

absl::StatusOr<int64_t> ParameterMicros(double value, const char* name) {
  absl::StatusOr<int64_t> micros = ToMicrosFloor(value, name);
  if (!micros.ok()) return micros.status();
  if (*micros < kMinMicros || *micros > kMaxMicros) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be in [0.000001, 100], got ", value));
  }
  return *micros;
}

double ScaleAsDouble(const Rational& r) {
  return static_cast<double>(r.num) / static_cast<double>(r.den);
}

// Half-width of the support [-M, M] outside which the mass is < 1e-15.
int64_t SupportHalfWidth(const NoiseSpec& spec) {
  if (spec.mechanism == Mechanism::kDiscreteLaplace) {
    const double t = ScaleAsDouble(spec.parameter);
    return static_cast<int64_t>(std::ceil(t * 35.0)) + 1;
  }
  const double sigma = std::sqrt(ScaleAsDouble(spec.parameter));
  return static_cast<int64_t>(std::ceil(sigma * 9.0)) + 2;
}

// The pmf on [-m, m] (index i is value i - m).
std::vector<double> Pmf(const NoiseSpec& spec, int64_t m) {
  std::vector<double> pmf(2 * m + 1);
  if (spec.mechanism == Mechanism::kDiscreteLaplace) {
    const double inv_t = static_cast<double>(spec.parameter.den) /
                         static_cast<double>(spec.parameter.num);
    const double norm = std::tanh(inv_t / 2.0);
    for (int64_t i = 0; i <= 2 * m; ++i) {
      pmf[i] = norm * std::exp(-std::fabs(static_cast<double>(i - m)) * inv_t);
    }
    return pmf;
  }
  const double two_sigma2 = 2.0 * ScaleAsDouble(spec.parameter);
  double total = 0;
  for (int64_t i = 0; i <= 2 * m; ++i) {
    const double x = static_cast<double>(i - m);
    pmf[i] = std::exp(-x * x / two_sigma2);
    total += pmf[i];
  }
  for (double& p : pmf) p /= total;
  return pmf;
}

// Smallest h with mass of [-h, h] >= level, for a pmf centred at index c.
int64_t HalfWidthOf(const std::vector<double>& pmf, int64_t c, double level) {
  double mass = pmf[c];
  int64_t h = 0;
  const int64_t max_h = static_cast<int64_t>(pmf.size()) - 1 - c;
  while (mass < level && h < max_h) {
    ++h;
    mass += pmf[c - h] + pmf[c + h];
  }
  return h;
}

absl::StatusOr<int64_t> SingleHalfWidth(const NoiseSpec& spec, double level) {
  if (spec.mechanism == Mechanism::kDiscreteLaplace) {
    // P[|Z| > m] = 2 p^(m+1) / (1 + p), p = e^(-1/t).
    const double inv_t = static_cast<double>(spec.parameter.den) /
                         static_cast<double>(spec.parameter.num);
    const double p = std::exp(-inv_t);
    auto tail = [&](int64_t m) {
      return 2.0 * std::exp(-inv_t * static_cast<double>(m + 1)) / (1.0 + p);
    };
    const double target = 1.0 - level;
    int64_t m = 0;
    if (p > 0) {
      m = std::max<int64_t>(
          0, static_cast<int64_t>(
                 std::floor(std::log(target * (1.0 + p) / 2.0) / -inv_t)) -
                 2);
    }
    while (tail(m) > target) ++m;
    return m;
  }
  const int64_t m = SupportHalfWidth(spec);
  if (2 * m + 1 > kMaxSupport) {
    return absl::InvalidArgumentError("noise scale too large for intervals");
  }
  return HalfWidthOf(Pmf(spec, m), m, level);
}

}  // namespace

const char* MechanismName(Mechanism m) {
  return m == Mechanism::kDiscreteGaussian ? "discrete_gaussian"
                                           : "discrete_laplace";
}

std::string NoiseSpec::Key() const {
  return absl::StrCat(MechanismName(mechanism), ":",
                      RationalToString(parameter));
}

absl::StatusOr<NoiseSpec> LaplaceSpecForEpsilon(double epsilon) {
  absl::StatusOr<int64_t> micros = ParameterMicros(epsilon, "epsilon");
  if (!micros.ok()) return micros.status();
  // t = 1/epsilon' with epsilon' = micros / 10^6 <= epsilon.
  absl::StatusOr<Rational> t = MakeRational(kMicrosPerUnit, *micros);
  if (!t.ok()) return t.status();
  return NoiseSpec{Mechanism::kDiscreteLaplace, *t, *micros};
}

absl::StatusOr<NoiseSpec> GaussianSpecForRho(double rho) {
  absl::StatusOr<int64_t> micros = ParameterMicros(rho, "rho");
  if (!micros.ok()) return micros.status();
  // sigma^2 = 1/(2 rho') with rho' = micros / 10^6 <= rho.
  absl::StatusOr<Rational> sigma2 = MakeRational(kMicrosPerUnit, 2 * *micros);
  if (!sigma2.ok()) return sigma2.status();
  return NoiseSpec{Mechanism::kDiscreteGaussian, *sigma2, *micros};
}

absl::StatusOr<int64_t> SampleNoise(RandomSource& random,
                                    const NoiseSpec& spec) {
  if (spec.mechanism == Mechanism::kDiscreteGaussian) {
    return SampleDiscreteGaussian(random, spec.parameter);
  }
  return SampleDiscreteLaplace(random, spec.parameter);
}

absl::StatusOr<int64_t> NoiseHalfWidth(const NoiseSpec& spec, int k,
                                       double level) {
  if (k < 1) return absl::InvalidArgumentError("interval over < 1 draw");
  if (!(level > 0 && level < 1)) {
    return absl::InvalidArgumentError("interval level must be in (0, 1)");
  }
  if (spec.parameter.num == 0 || spec.parameter.den == 0) {
    return absl::InvalidArgumentError("noise parameter must be positive");
  }
  if (k == 1) return SingleHalfWidth(spec, level);
  const int64_t m = SupportHalfWidth(spec);
  const double width = static_cast<double>(2 * m + 1);
  if (2 * m + 1 <= kMaxSupport &&
      width * width * (k - 1) * k / 2.0 <= kMaxConvolutionWork) {
    const std::vector<double> one = Pmf(spec, m);
    std::vector<double> sum = one;
    for (int i = 1; i < k; ++i) {
      std::vector<double> next(sum.size() + one.size() - 1, 0.0);
      for (size_t a = 0; a < sum.size(); ++a) {
        if (sum[a] == 0) continue;
        for (size_t b = 0; b < one.size(); ++b) next[a + b] += sum[a] * one[b];
      }
      sum = std::move(next);
    }
    // A small margin absorbs rounding in the sums (conservative).
    return HalfWidthOf(sum, static_cast<int64_t>(sum.size() / 2),
                       std::min(level + 1e-12, 1.0 - 1e-15));
  }
  absl::StatusOr<int64_t> single =
      SingleHalfWidth(spec, 1.0 - (1.0 - level) / k);
  if (!single.ok()) return single.status();
  return *single * k;
}

absl::Status DirectNoiseSource::Draw(const NoiseSpec& spec,
                                     absl::Span<int64_t> out) {
  for (int64_t& x : out) {
    absl::StatusOr<int64_t> v = SampleNoise(*random_, spec);
    if (!v.ok()) return v.status();
    x = *v;
  }
  return absl::OkStatus();
}

NoisePool::NoisePool(RandomSource* random, NoisePoolOptions options)
    : NoisePool(std::make_unique<DirectNoiseSource>(random),
                std::move(options)) {}

NoisePool::NoisePool(std::unique_ptr<NoiseSource> generator,
                     NoisePoolOptions options)
    : generator_(std::move(generator)), options_(std::move(options)) {
  refiller_ = std::thread([this] { RefillLoop(); });
}

NoisePool::~NoisePool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  refiller_.join();
}

// A request's positions [start, end) in the stream of `key`, or (Prewarm)
// just the stream it waits on.
struct NoisePool::Claim {
  NoisePool* self;
  const std::string* key;
  uint64_t start;
  uint64_t end;
};

// Await conditions: evaluated with mu_ held.
const NoisePool::Pool* NoisePool::WaitedPool(const Claim* claim) {
  const NoisePool& self = *claim->self;
  self.mu_.AssertHeld();
  if (self.stopping_ || !self.failure_.ok()) return nullptr;
  auto it = self.pools_.find(*claim->key);
  return it == self.pools_.end() ? nullptr : &it->second;
}

bool NoisePool::ClaimServable(Claim* claim) {
  const Pool* pool = WaitedPool(claim);
  // Earlier claims are served first, so positions never change hands.
  return pool == nullptr ||
         (pool->front == claim->start && pool->drawn() >= claim->end);
}

bool NoisePool::PoolFull(Claim* claim) {
  const Pool* pool = WaitedPool(claim);
  return pool == nullptr ||
         pool->unassigned() >=
             static_cast<int64_t>(claim->self->options_.capacity);
}

const std::pair<const std::string, NoisePool::Pool>* NoisePool::Neediest()
    const {
  // Requests waiting for samples (negative unassigned) first, then the
  // emptiest pool that is refilling.
  const std::pair<const std::string, Pool>* best = nullptr;
  for (const auto& entry : pools_) {
    const Pool& pool = entry.second;
    const bool wanted =
        pool.unassigned() < 0 || pool.filling ||
        (pool.prewarming > 0 &&
         pool.unassigned() < static_cast<int64_t>(options_.capacity));
    if (!wanted) continue;
    if (best == nullptr || pool.unassigned() < best->second.unassigned()) {
      best = &entry;
    }
  }
  return best;
}

bool NoisePool::RefillWanted() const {
  if (stopping_) return true;
  return failure_.ok() && Neediest() != nullptr;
}

void NoisePool::Fail(const absl::Status& s) {
  // Fail closed: no more noise from this pool, ever; waiters wake up to it.
  failure_ = s;
  pools_.clear();
}

void NoisePool::Pad(absl::Time start, size_t n) const {
  const absl::Time deadline =
      start + options_.slow_path_fixed +
      options_.slow_path_per_sample * static_cast<int64_t>(n);
  const absl::Time now = options_.now();
  if (now < deadline) options_.sleep(deadline - now);
}

void NoisePool::RefillLoop() {
  // The only thread that draws for pools: one sample at a time, appended in
  // the order drawn (see "Exactness of a pool" in noise.h).
  while (true) {
    std::string key;
    NoiseSpec spec;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &NoisePool::RefillWanted));
      if (stopping_) return;
      const auto* next = Neediest();
      key = next->first;
      spec = next->second.spec;
    }
    int64_t value = 0;
    absl::Status s = generator_->Draw(spec, absl::MakeSpan(&value, 1));
    absl::MutexLock lock(&mu_);
    if (!s.ok()) {
      Fail(s);
      continue;
    }
    auto it = pools_.find(key);
    if (it == pools_.end()) continue;
    Pool& pool = it->second;
    pool.ready.push_back(value);
    if (pool.unassigned() >= static_cast<int64_t>(options_.capacity)) {
      pool.filling = false;
    }
  }
}

absl::Status NoisePool::Prewarm(const NoiseSpec& spec) {
  const std::string key = spec.Key();
  absl::MutexLock lock(&mu_);
  if (!failure_.ok()) return failure_;
  auto it = pools_.find(key);
  if (it == pools_.end()) {
    if (pools_.size() >= options_.max_specs) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "noise pool already holds ", options_.max_specs, " distributions"));
    }
    it = pools_.try_emplace(key, spec).first;
  }
  // While a Prewarm waits, the generator keeps drawing for the pool until it
  // is full (a Draw may take samples between the generator reaching
  // capacity and this thread waking up).
  ++it->second.prewarming;
  Claim claim{this, &key, 0, 0};
  mu_.Await(absl::Condition(&NoisePool::PoolFull, &claim));
  auto warmed = pools_.find(key);
  if (warmed != pools_.end()) --warmed->second.prewarming;
  if (!failure_.ok()) return failure_;
  if (stopping_) return absl::UnavailableError("noise pool is shutting down");
  if (warmed != pools_.end()) warmed->second.prewarmed = true;
  return absl::OkStatus();
}

void NoisePool::Retain(const std::vector<NoiseSpec>& keep) {
  std::set<std::string> keys;
  for (const NoiseSpec& spec : keep) keys.insert(spec.Key());
  absl::MutexLock lock(&mu_);
  for (auto it = pools_.begin(); it != pools_.end();) {
    const Pool& pool = it->second;
    // A request waiting for samples (unassigned < 0) or a Prewarm keeps it.
    const bool busy = pool.unassigned() < 0 || pool.prewarming > 0;
    if (keys.count(it->first) == 0 && !busy) {
      it = pools_.erase(it);
    } else {
      ++it;
    }
  }
}

bool NoisePool::Prewarmed(const NoiseSpec& spec) const {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(spec.Key());
  return it != pools_.end() && it->second.prewarmed;
}

int64_t NoisePool::unprewarmed_draws() const {
  absl::MutexLock lock(&mu_);
  return unprewarmed_draws_;
}

absl::Status NoisePool::Draw(const NoiseSpec& spec, absl::Span<int64_t> out) {
  if (out.empty()) return absl::OkStatus();
  const absl::Time start = options_.now();
  const std::string key = spec.Key();
  bool pooled = false;
  {
    absl::MutexLock lock(&mu_);
    if (!failure_.ok()) return failure_;
    auto it = pools_.find(key);
    if (it == pools_.end() && pools_.size() < options_.max_specs) {
      it = pools_.try_emplace(key, spec).first;
    }
    pooled = it != pools_.end();
    if (!pooled || !it->second.prewarmed) ++unprewarmed_draws_;
    if (pooled) {
      Pool& pool = it->second;
      // This request's positions, fixed now, before looking at what is
      // drawn: it receives exactly these values.
      Claim claim{this, &key, pool.claimed, pool.claimed + out.size()};
      pool.claimed = claim.end;
      if (pool.unassigned() + static_cast<int64_t>(options_.refill_batch) <=
          static_cast<int64_t>(options_.capacity)) {
        pool.filling = true;
      }
      const bool wait = !ClaimServable(&claim);
      if (wait) {
        ++slow_path_calls_;  // Counted before waiting (tests watch it).
        mu_.Await(absl::Condition(&NoisePool::ClaimServable, &claim));
        if (!failure_.ok()) return failure_;
        if (stopping_) {
          return absl::UnavailableError("noise pool is shutting down");
        }
        it = pools_.find(key);
        if (it == pools_.end()) {
          return absl::InternalError("noise pool lost a waiting request");
        }
      }
      Pool& served = it->second;
      for (int64_t& x : out) {
        x = served.ready.front();
        served.ready.pop_front();
      }
      served.front += out.size();
      if (!wait) return absl::OkStatus();
    } else {
      ++slow_path_calls_;
    }
  }
  if (!pooled) {
    // Too many distributions to pool this one: fresh draws, inline.
    absl::Status s = generator_->Draw(spec, out);
    if (!s.ok()) {
      absl::MutexLock lock(&mu_);
      Fail(s);
      return s;
    }
  }
  Pad(start, out.size());
  return absl::OkStatus();
}

size_t NoisePool::Ready(const NoiseSpec& spec) const {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(spec.Key());
  if (it == pools_.end()) return 0;
  return static_cast<size_t>(std::max<int64_t>(0, it->second.unassigned()));
}

int64_t NoisePool::slow_path_calls() const {
  absl::MutexLock lock(&mu_);
  return slow_path_calls_;
}

absl::StatusOr<std::unique_ptr<NoiseSource>> NewProductionNoiseSource(
    RandomSource* random) {
  if (random == nullptr) {
    return absl::InvalidArgumentError("noise source needs a random source");
  }
  return std::unique_ptr<NoiseSource>(
      std::make_unique<NoisePool>(random, NoisePoolOptions{}));
}

}  // namespace passerelle::privacy
