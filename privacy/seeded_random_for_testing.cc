#include "privacy/seeded_random_for_testing.h"

namespace passerelle::privacy::testing {
namespace {

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

SeededRandomSource::SeededRandomSource(uint64_t seed) {
  for (uint64_t& s : s_) s = SplitMix64(seed);
}

uint64_t SeededRandomSource::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

absl::Status SeededRandomSource::Fill(absl::Span<uint8_t> out) {
  if (failing_) return absl::UnavailableError("seeded source told to fail");
  for (uint8_t& b : out) {
    if (left_ == 0) {
      word_ = Next();
      left_ = 8;
    }
    b = static_cast<uint8_t>(word_);
    word_ >>= 8;
    --left_;
  }
  return absl::OkStatus();
}

}  // namespace passerelle::privacy::testing
