#include "privacy/noise.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "privacy/seeded_random_for_testing.h"

namespace passerelle::privacy {
namespace {

using testing::SeededRandomSource;

// A seeded source made thread-safe, for the pool's background thread.
class LockedSource : public RandomSource {
 public:
  explicit LockedSource(uint64_t seed) : inner_(seed) {}
  absl::Status Fill(absl::Span<uint8_t> out) override {
    absl::MutexLock lock(&mu_);
    if (fail_) return absl::UnavailableError("generator down");
    return inner_.Fill(out);
  }
  void Fail() {
    absl::MutexLock lock(&mu_);
    fail_ = true;
  }

 private:
  absl::Mutex mu_;
  SeededRandomSource inner_ ABSL_GUARDED_BY(mu_);
  bool fail_ ABSL_GUARDED_BY(mu_) = false;
};

TEST(NoiseSpecTest, LaplaceScaleIsExactAndConservative) {
  absl::StatusOr<NoiseSpec> s = LaplaceSpecForEpsilon(0.1);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->parameter.num, 10u);
  EXPECT_EQ(s->parameter.den, 1u);
  EXPECT_EQ(s->privacy_micros, 100000);
  // 0.1234567 is rounded down: t = 10^6 / 123456 >= 1 / 0.1234567.
  s = LaplaceSpecForEpsilon(0.1234567);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->privacy_micros, 123456);
  EXPECT_GE(static_cast<double>(s->parameter.num) / s->parameter.den,
            1 / 0.1234567);
  for (double bad : {0.0, 4e-7, 100.5, -1.0, std::nan("")}) {
    EXPECT_EQ(LaplaceSpecForEpsilon(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(NoiseSpecTest, GaussianVarianceFromRho) {
  absl::StatusOr<NoiseSpec> s = GaussianSpecForRho(0.5);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->mechanism, Mechanism::kDiscreteGaussian);
  EXPECT_EQ(s->parameter.num, 1u);  // sigma^2 = 1 / (2 rho) = 1.
  EXPECT_EQ(s->parameter.den, 1u);
  EXPECT_NE(s->Key(), LaplaceSpecForEpsilon(0.5)->Key());
}

double LaplaceMass(double t, int64_t m) {  // P[|Z| <= m].
  double mass = 0;
  for (int64_t k = -m; k <= m; ++k) {
    mass += std::tanh(1 / (2 * t)) *
            std::exp(-std::fabs(static_cast<double>(k)) / t);
  }
  return mass;
}

TEST(NoiseHalfWidthTest, SingleLaplaceIsTheSmallestCoveringWidth) {
  for (double eps : {0.1, 0.5, 1.0, 2.0}) {
    const NoiseSpec spec = LaplaceSpecForEpsilon(eps).value();
    const int64_t m = NoiseHalfWidth(spec, 1, 0.95).value();
    EXPECT_GE(LaplaceMass(1 / eps, m), 0.95) << eps;
    if (m > 0) {
      EXPECT_LT(LaplaceMass(1 / eps, m - 1), 0.95) << eps;
    }
  }
  EXPECT_EQ(NoiseHalfWidth(LaplaceSpecForEpsilon(1.0).value(), 1, 0.95).value(),
            3);
}

TEST(NoiseHalfWidthTest, SumOfTwoSitesByConvolution) {
  const double t = 2.0;
  const NoiseSpec spec = LaplaceSpecForEpsilon(1 / t).value();
  const int64_t m = NoiseHalfWidth(spec, 2, 0.95).value();
  auto mass = [t](int64_t h) {
    double total = 0;
    for (int64_t a = -200; a <= 200; ++a) {
      for (int64_t b = -200; b <= 200; ++b) {
        if (std::llabs(a + b) > h) continue;
        total += std::tanh(1 / (2 * t)) *
                 std::exp(-std::fabs(static_cast<double>(a)) / t) *
                 std::tanh(1 / (2 * t)) *
                 std::exp(-std::fabs(static_cast<double>(b)) / t);
      }
    }
    return total;
  };
  EXPECT_GE(mass(m), 0.95);
  EXPECT_LT(mass(m - 1), 0.95);
  EXPECT_GT(m, NoiseHalfWidth(spec, 1, 0.95).value());
}

TEST(NoiseHalfWidthTest, GaussianSingleMatchesPmf) {
  const NoiseSpec spec = GaussianSpecForRho(0.05).value();  // sigma^2 = 10.
  const int64_t m = NoiseHalfWidth(spec, 1, 0.95).value();
  double z = 0, in = 0, in_less = 0;
  for (int64_t k = -100; k <= 100; ++k) {
    const double w = std::exp(-static_cast<double>(k * k) / 20.0);
    z += w;
    if (std::llabs(k) <= m) in += w;
    if (std::llabs(k) <= m - 1) in_less += w;
  }
  EXPECT_GE(in / z, 0.95);
  EXPECT_LT(in_less / z, 0.95);
}

TEST(NoiseHalfWidthTest, LargeScalesUseAConservativeUnionBound) {
  const NoiseSpec spec = LaplaceSpecForEpsilon(0.00001).value();  // t = 10^5.
  const int64_t one = NoiseHalfWidth(spec, 1, 0.95).value();
  const int64_t two = NoiseHalfWidth(spec, 2, 0.95).value();
  EXPECT_EQ(two, 2 * NoiseHalfWidth(spec, 1, 0.975).value());
  EXPECT_GT(two, one);
  EXPECT_EQ(NoiseHalfWidth(spec, 0, 0.95).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DirectNoiseSourceTest, DrawsAndFailsClosed) {
  SeededRandomSource random(1);
  DirectNoiseSource source(&random);
  std::vector<int64_t> out(100, 12345);
  ASSERT_TRUE(
      source.Draw(LaplaceSpecForEpsilon(1).value(), absl::MakeSpan(out)).ok());
  int changed = 0;
  for (int64_t x : out) changed += x != 12345;
  EXPECT_EQ(changed, 100);
  random.FailFromNowOn();
  EXPECT_EQ(
      source.Draw(LaplaceSpecForEpsilon(1).value(), absl::MakeSpan(out)).code(),
      absl::StatusCode::kUnavailable);
}

NoisePoolOptions TestOptions(std::vector<absl::Duration>* sleeps) {
  NoisePoolOptions o;
  o.capacity = 256;
  o.refill_batch = 64;
  o.max_specs = 2;
  o.now = [] { return absl::FromUnixSeconds(1000); };  // Time stands still.
  o.sleep = [sleeps](absl::Duration d) { sleeps->push_back(d); };
  return o;
}

TEST(NoisePoolTest, PrewarmedDrawsComeFromThePool) {
  LockedSource random(2);
  std::vector<absl::Duration> sleeps;
  NoisePool pool(&random, TestOptions(&sleeps));
  const NoiseSpec spec = LaplaceSpecForEpsilon(0.5).value();
  ASSERT_TRUE(pool.Prewarm(spec).ok());
  EXPECT_EQ(pool.Ready(spec), 256u);
  std::vector<int64_t> out(100);
  ASSERT_TRUE(pool.Draw(spec, absl::MakeSpan(out)).ok());
  EXPECT_EQ(pool.slow_path_calls(), 0);
  EXPECT_TRUE(sleeps.empty());
  // Not all equal: these are real draws.
  int distinct = 0;
  for (size_t i = 1; i < out.size(); ++i) distinct += out[i] != out[0];
  EXPECT_GT(distinct, 0);
}

TEST(NoisePoolTest, ColdDrawIsPaddedToADeadlineFromTheCountAlone) {
  LockedSource random(3);
  std::vector<absl::Duration> sleeps;
  NoisePoolOptions o = TestOptions(&sleeps);
  o.slow_path_fixed = absl::Milliseconds(2);
  o.slow_path_per_sample = absl::Microseconds(10);
  NoisePool pool(&random, o);
  std::vector<int64_t> out(1000);  // More than the pool can hold.
  ASSERT_TRUE(
      pool.Draw(GaussianSpecForRho(0.1).value(), absl::MakeSpan(out)).ok());
  EXPECT_EQ(pool.slow_path_calls(), 1);
  ASSERT_EQ(sleeps.size(), 1u);
  EXPECT_EQ(sleeps[0], absl::Milliseconds(2) + absl::Microseconds(10) * 1000);
}

TEST(NoisePoolTest, TooManyDistributionsStillDrawButAreNotPooled) {
  LockedSource random(4);
  std::vector<absl::Duration> sleeps;
  NoisePool pool(&random, TestOptions(&sleeps));
  ASSERT_TRUE(pool.Prewarm(LaplaceSpecForEpsilon(1).value()).ok());
  ASSERT_TRUE(pool.Prewarm(LaplaceSpecForEpsilon(2).value()).ok());
  EXPECT_EQ(pool.Prewarm(LaplaceSpecForEpsilon(3).value()).code(),
            absl::StatusCode::kResourceExhausted);
  std::vector<int64_t> out(10);
  EXPECT_TRUE(
      pool.Draw(LaplaceSpecForEpsilon(3).value(), absl::MakeSpan(out)).ok());
}

TEST(NoisePoolTest, GeneratorFailureIsStickyAndDropsPooledNoise) {
  LockedSource random(5);
  std::vector<absl::Duration> sleeps;
  NoisePool pool(&random, TestOptions(&sleeps));
  const NoiseSpec warm = LaplaceSpecForEpsilon(1).value();
  ASSERT_TRUE(pool.Prewarm(warm).ok());
  random.Fail();
  std::vector<int64_t> out(10);
  // A cold distribution needs the generator: the failure surfaces...
  EXPECT_EQ(
      pool.Draw(LaplaceSpecForEpsilon(2).value(), absl::MakeSpan(out)).code(),
      absl::StatusCode::kUnavailable);
  // ...and from then on the pool refuses everything (fail closed).
  EXPECT_EQ(pool.Draw(warm, absl::MakeSpan(out)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(pool.Ready(warm), 0u);
}

// A generator whose draws are 0, 1, 2, ... in the order they are made, so a
// test can see which drawn value went to which request.
class CountingGenerator : public NoiseSource {
 public:
  absl::Status Draw(const NoiseSpec&, absl::Span<int64_t> out) override {
    absl::MutexLock lock(&mu_);
    for (int64_t& x : out) x = next_++;
    return absl::OkStatus();
  }

 private:
  absl::Mutex mu_;
  int64_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

// Exactness of a pool (noise.h): whatever the timing, requests receive the
// stream in the order it was drawn, each value once, nothing dropped. The
// pool is small so that requests often outrun the generator and wait, and
// some requests are larger than the whole pool.
TEST(NoisePoolTest, EveryDrawnValueIsHandedOutOnceInDrawOrder) {
  std::vector<absl::Duration> sleeps;
  NoisePoolOptions o = TestOptions(&sleeps);
  o.capacity = 64;
  o.refill_batch = 16;
  o.sleep = [](absl::Duration) {};  // Called from several threads here.
  NoisePool pool(std::make_unique<CountingGenerator>(), o);
  const NoiseSpec spec = GaussianSpecForRho(0.125).value();
  ASSERT_TRUE(pool.Prewarm(spec).ok());
  EXPECT_EQ(pool.Ready(spec), 64u);

  constexpr int kThreads = 4;
  constexpr int kRequests = 300;
  std::vector<std::vector<std::vector<int64_t>>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRequests; ++r) {
        // Sizes 1..97, and every 50th request larger than the pool.
        const size_t n = r % 50 == 49 ? 150 : 1 + (r * 7 + t * 13) % 97;
        std::vector<int64_t> out(n, -1);
        if (!pool.Draw(spec, absl::MakeSpan(out)).ok()) return;
        got[t].push_back(std::move(out));
      }
    });
  }
  for (std::thread& th : threads) th.join();

  std::vector<int64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(got[t].size(), static_cast<size_t>(kRequests)) << "thread " << t;
    for (size_t r = 1; r < got[t].size(); ++r) {
      // A thread's next request arrives after its last one: later positions.
      ASSERT_GT(got[t][r].front(), got[t][r - 1].back()) << "thread " << t;
    }
    for (const std::vector<int64_t>& request : got[t]) {
      // One request: consecutive positions of the stream.
      for (size_t i = 1; i < request.size(); ++i) {
        ASSERT_EQ(request[i], request[i - 1] + 1);
      }
      all.insert(all.end(), request.begin(), request.end());
    }
  }
  // All requests together: exactly the first values drawn, each once.
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(all[i], static_cast<int64_t>(i)) << "value " << i;
  }
  EXPECT_GT(pool.slow_path_calls(), 0);  // Some requests did wait.
}

// Draws 0, 1, 2, ... like CountingGenerator, but only as many as allowed so
// far, so a test can hold requests waiting; or fails once told to.
class GatedGenerator : public NoiseSource {
 public:
  absl::Status Draw(const NoiseSpec&, absl::Span<int64_t> out) override {
    absl::MutexLock lock(&mu_);
    for (int64_t& x : out) {
      mu_.Await(absl::Condition(this, &GatedGenerator::MayDraw));
      if (failing_) return absl::UnavailableError("generator down");
      x = next_++;
    }
    return absl::OkStatus();
  }
  void Allow(int64_t n) {
    absl::MutexLock lock(&mu_);
    allowed_ += n;
  }
  void Fail() {
    absl::MutexLock lock(&mu_);
    failing_ = true;
  }

 private:
  bool MayDraw() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return failing_ || next_ < allowed_;
  }
  absl::Mutex mu_;
  int64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t allowed_ ABSL_GUARDED_BY(mu_) = 0;
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
};

NoisePoolOptions QuietOptions() {
  NoisePoolOptions o;
  o.capacity = 64;
  o.refill_batch = 16;
  o.now = [] { return absl::FromUnixSeconds(1000); };
  o.sleep = [](absl::Duration) {};
  return o;
}

// Positions go by arrival: a small request that arrives while a large one
// waits gets the values after the large one's, even though its own could be
// drawn first (taking whatever is drawn first would favour quick draws).
TEST(NoisePoolTest, RequestsAreServedInArrivalOrder) {
  auto owned = std::make_unique<GatedGenerator>();
  GatedGenerator* generator = owned.get();
  NoisePool pool(std::move(owned), QuietOptions());
  const NoiseSpec spec = LaplaceSpecForEpsilon(0.5).value();
  std::vector<int64_t> large(100, -1), small(1, -1);
  absl::Status large_status, small_status;
  std::thread first(
      [&] { large_status = pool.Draw(spec, absl::MakeSpan(large)); });
  // Each request counts itself as waiting when it claims its positions.
  while (pool.slow_path_calls() < 1) std::this_thread::yield();
  std::thread second(
      [&] { small_status = pool.Draw(spec, absl::MakeSpan(small)); });
  while (pool.slow_path_calls() < 2) std::this_thread::yield();
  generator->Allow(1000);
  first.join();
  second.join();
  ASSERT_TRUE(large_status.ok()) << large_status;
  ASSERT_TRUE(small_status.ok()) << small_status;
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(large[i], i);
  EXPECT_EQ(small[0], 100);
}

// With the real samplers: whatever the request sizes (some served at once,
// some larger than the pool, so they wait), the pool releases exactly the
// sequence the sampler draws from the same seed, in order.
TEST(NoisePoolTest, ReleasesExactlyTheSamplersSequence) {
  for (const NoiseSpec& spec : {LaplaceSpecForEpsilon(0.5).value(),
                                GaussianSpecForRho(0.125).value()}) {
    constexpr size_t kTotal = 5000;
    LockedSource direct_random(42);
    DirectNoiseSource direct(&direct_random);
    std::vector<int64_t> want(kTotal);
    ASSERT_TRUE(direct.Draw(spec, absl::MakeSpan(want)).ok());

    LockedSource pool_random(42);
    NoisePool pool(&pool_random, QuietOptions());
    ASSERT_TRUE(pool.Prewarm(spec).ok());
    std::vector<int64_t> got;
    const size_t sizes[] = {1, 7, 300, 50, 2, 129};
    for (size_t i = 0; got.size() < kTotal; ++i) {
      std::vector<int64_t> out(std::min(sizes[i % 6], kTotal - got.size()));
      ASSERT_TRUE(pool.Draw(spec, absl::MakeSpan(out)).ok());
      got.insert(got.end(), out.begin(), out.end());
    }
    EXPECT_EQ(got, want) << spec.Key();
    EXPECT_GT(pool.slow_path_calls(), 0);  // The 300s waited.
  }
}

TEST(NoisePoolTest, AWaitingRequestFailsWithTheGenerator) {
  auto owned = std::make_unique<GatedGenerator>();
  GatedGenerator* generator = owned.get();
  NoisePool pool(std::move(owned), QuietOptions());
  const NoiseSpec spec = GaussianSpecForRho(0.5).value();
  std::vector<int64_t> out(10, -1);
  absl::Status status;
  std::thread waiting([&] { status = pool.Draw(spec, absl::MakeSpan(out)); });
  while (pool.slow_path_calls() < 1) std::this_thread::yield();
  generator->Fail();
  waiting.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(pool.Draw(spec, absl::MakeSpan(out)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(pool.Ready(spec), 0u);
}

TEST(NoisePoolTest, PrewarmReturnsWithAFullPoolWhileOthersDraw) {
  auto owned = std::make_unique<GatedGenerator>();
  GatedGenerator* generator = owned.get();
  NoisePool pool(std::move(owned), QuietOptions());
  const NoiseSpec spec = LaplaceSpecForEpsilon(1).value();
  generator->Allow(1 << 30);
  std::atomic<bool> stop{false};
  std::thread drawing([&] {
    std::vector<int64_t> one(1);
    while (!stop.load()) {
      if (!pool.Draw(spec, absl::MakeSpan(one)).ok()) return;
    }
  });
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(pool.Prewarm(spec).ok());
  stop.store(true);
  drawing.join();
}

TEST(ProductionNoiseSourceTest, NeedsARandomSource) {
  EXPECT_EQ(NewProductionNoiseSource(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace passerelle::privacy
