// TEST ONLY. A deterministic, seeded RandomSource (xoshiro256**) so that
// statistical tests are reproducible. It lives in its own library,
// passerelle_privacy_testing, which only test targets link: production code
// cannot obtain deterministic noise.
#ifndef PASSERELLE_PRIVACY_SEEDED_RANDOM_FOR_TESTING_H_
#define PASSERELLE_PRIVACY_SEEDED_RANDOM_FOR_TESTING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "privacy/random.h"

namespace passerelle::privacy::testing {

// Not thread-safe: use one instance per thread.
class SeededRandomSource : public RandomSource {
 public:
  explicit SeededRandomSource(uint64_t seed);
  absl::Status Fill(absl::Span<uint8_t> out) override;
  // Makes every later Fill fail (to test fail-closed behaviour).
  void FailFromNowOn() { failing_ = true; }

 private:
  uint64_t Next();
  uint64_t s_[4];
  uint64_t word_ = 0;
  int left_ = 0;  // Unused bytes of word_.
  bool failing_ = false;
};

}  // namespace passerelle::privacy::testing

#endif  // PASSERELLE_PRIVACY_SEEDED_RANDOM_FOR_TESTING_H_
