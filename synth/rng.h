// A small, fully specified pseudo-random generator for the data generator.
//
// Output depends only on the seed, never on the standard library version:
// SplitMix64 (Steele, Lea, Flood 2014) derives seeds, xoshiro256** (Blackman,
// Vigna 2018) produces the stream, and bounded integers use Lemire's
// multiply-shift, all in integer arithmetic. Not for cryptographic use.
#ifndef PASSERELLE_SYNTH_RNG_H_
#define PASSERELLE_SYNTH_RNG_H_

#include <cstdint>

namespace passerelle::synth {

// One SplitMix64 step: advances `*state` and returns a well-mixed value.
inline uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Mixes two 64-bit values into one (for per-stream seeds).
inline uint64_t MixSeed(uint64_t a, uint64_t b) {
  uint64_t state = a ^ (b * 0xD1B54A32D192ED03ULL);
  SplitMix64(&state);
  return SplitMix64(&state);
}

// xoshiro256**. A Rng is a value type, not thread-safe; give each thread (or
// each patient) its own.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t state = seed;
    for (uint64_t& word : s_) word = SplitMix64(&state);
  }

  uint64_t Next() {
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

  // Uniform in [0, n) for n > 0 (multiply-shift; the bias is below 2^-32
  // for the small n used here and the result is fully deterministic).
  uint32_t Below(uint32_t n) {
    return static_cast<uint32_t>(((Next() >> 32) * static_cast<uint64_t>(n)) >>
                                 32);
  }

  // Uniform in [lo, hi] (inclusive), lo <= hi.
  int32_t Range(int32_t lo, int32_t hi) {
    return lo + static_cast<int32_t>(Below(static_cast<uint32_t>(hi - lo) + 1));
  }

  // True with probability permille / 1000.
  bool Permille(uint32_t permille) { return Below(1000) < permille; }

  // Roughly bell-shaped in [lo, hi]: the mean of four uniforms (Irwin-Hall).
  int32_t Bell(int32_t lo, int32_t hi) {
    const uint32_t span = static_cast<uint32_t>(hi - lo) + 1;
    uint64_t sum = 0;
    for (int i = 0; i < 4; ++i) sum += Below(span);
    return lo + static_cast<int32_t>(sum / 4);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace passerelle::synth

#endif  // PASSERELLE_SYNTH_RNG_H_
