#include "privacy/random.h"

#include <cmath>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "privacy/seeded_random_for_testing.h"

namespace passerelle::privacy {
namespace {

// Returns scripted bytes, to observe rejection.
class ScriptedSource : public RandomSource {
 public:
  explicit ScriptedSource(std::deque<uint8_t> bytes)
      : bytes_(std::move(bytes)) {}
  absl::Status Fill(absl::Span<uint8_t> out) override {
    for (uint8_t& b : out) {
      if (bytes_.empty()) return absl::UnavailableError("script exhausted");
      b = bytes_.front();
      bytes_.pop_front();
    }
    return absl::OkStatus();
  }
  size_t left() const { return bytes_.size(); }

 private:
  std::deque<uint8_t> bytes_;
};

TEST(UniformBelowTest, ZeroIsInvalid) {
  testing::SeededRandomSource random(1);
  EXPECT_EQ(UniformBelow(random, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(UniformBelowTest, OneNeedsNoRandomness) {
  ScriptedSource random({});
  absl::StatusOr<uint64_t> x = UniformBelow(random, 1);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(*x, 0u);
}

TEST(UniformBelowTest, RejectsInsteadOfReducingModulo) {
  // n = 3 uses 2 bits: 3 is rejected (modulo would have returned 0), then 2.
  ScriptedSource random({0x03, 0x02});
  absl::StatusOr<uint64_t> x = UniformBelow(random, 3);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(*x, 2u);
  EXPECT_EQ(random.left(), 0u);
}

TEST(UniformBelowTest, MasksToTheCoveringPowerOfTwo) {
  // n = 5 uses 3 bits: 0xFD & 7 = 5 is rejected, 0x0C & 7 = 4 accepted.
  ScriptedSource random({0xFD, 0x0C});
  absl::StatusOr<uint64_t> x = UniformBelow(random, 5);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(*x, 4u);
}

TEST(UniformBelowTest, IsUniform) {
  testing::SeededRandomSource random(7);
  constexpr int kN = 6;
  constexpr int kDraws = 600000;
  std::vector<int> counts(kN, 0);
  for (int i = 0; i < kDraws; ++i) {
    absl::StatusOr<uint64_t> x = UniformBelow(random, kN);
    ASSERT_TRUE(x.ok());
    ASSERT_LT(*x, static_cast<uint64_t>(kN));
    ++counts[*x];
  }
  const double expected = static_cast<double>(kDraws) / kN;
  const double sd = std::sqrt(expected * (1.0 - 1.0 / kN));
  for (int c : counts) EXPECT_NEAR(c, expected, 5 * sd);
}

TEST(UniformBelowTest, Handles128BitBounds) {
  testing::SeededRandomSource random(3);
  const unsigned __int128 n =
      (static_cast<unsigned __int128>(1) << 100) + 12345;
  bool high_seen = false;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<unsigned __int128> x = UniformBelow128(random, n);
    ASSERT_TRUE(x.ok());
    EXPECT_LT(*x, n);
    if (*x >> 64 != 0) high_seen = true;
  }
  EXPECT_TRUE(high_seen);
}

TEST(UniformBelowTest, GeneratorFailureIsReturned) {
  testing::SeededRandomSource random(3);
  random.FailFromNowOn();
  EXPECT_EQ(UniformBelow(random, 10).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(SeededRandomSourceTest, IsReproducible) {
  testing::SeededRandomSource a(42), b(42), c(43);
  uint8_t x[32], y[32], z[32];
  ASSERT_TRUE(a.Fill(absl::MakeSpan(x)).ok());
  ASSERT_TRUE(b.Fill(absl::MakeSpan(y)).ok());
  ASSERT_TRUE(c.Fill(absl::MakeSpan(z)).ok());
  EXPECT_EQ(std::memcmp(x, y, sizeof(x)), 0);
  EXPECT_NE(std::memcmp(x, z, sizeof(x)), 0);
}

TEST(OpenSslRandomSourceTest, FillsAcrossBufferBoundaries) {
  OpenSslRandomSource random;
  std::vector<uint8_t> a(OpenSslRandomSource::kBufferSize * 2 + 17);
  std::vector<uint8_t> b(a.size());
  ASSERT_TRUE(random.Fill(absl::MakeSpan(a)).ok());
  ASSERT_TRUE(random.Fill(absl::MakeSpan(b)).ok());
  EXPECT_NE(a, b);
  // Not all zero, and every byte value appears roughly as often.
  std::vector<int> counts(256, 0);
  for (uint8_t v : a) ++counts[v];
  int seen = 0;
  for (int c : counts) seen += c > 0 ? 1 : 0;
  EXPECT_GT(seen, 200);
}

TEST(OpenSslRandomSourceTest, IsThreadSafe) {
  OpenSslRandomSource random;
  std::vector<std::thread> threads;
  std::vector<std::vector<uint8_t>> out(4, std::vector<uint8_t>(10000));
  std::vector<absl::Status> status(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 10 && status[i].ok(); ++j) {
        status[i] = random.Fill(absl::MakeSpan(out[i]));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(status[i].ok()) << status[i];
  EXPECT_NE(out[0], out[1]);
  EXPECT_NE(out[2], out[3]);
}

}  // namespace
}  // namespace passerelle::privacy
