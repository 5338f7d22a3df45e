// Randomness behind an interface: production draws from OpenSSL's CSPRNG;
// tests inject a deterministic source from the separate, test-only library
// passerelle_privacy_testing (privacy/seeded_random_for_testing.h), which no
// production target links.
#ifndef PASSERELLE_PRIVACY_RANDOM_H_
#define PASSERELLE_PRIVACY_RANDOM_H_

#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace passerelle::privacy {

// A source of uniformly random bytes. Implementations say whether they are
// thread-safe; callers must treat any error as fatal for the current query
// (never fall back to a weaker generator).
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Fills `out` entirely with random bytes, or returns an error.
  virtual absl::Status Fill(absl::Span<uint8_t> out) = 0;
};

// OpenSSL RAND_priv_bytes, read in blocks of kBufferSize bytes. A failure of
// the generator is returned as UNAVAILABLE and leaves no partial output in
// use. Safe for concurrent use from multiple threads.
class OpenSslRandomSource : public RandomSource {
 public:
  static constexpr size_t kBufferSize = 4096;
  OpenSslRandomSource() = default;
  OpenSslRandomSource(const OpenSslRandomSource&) = delete;
  OpenSslRandomSource& operator=(const OpenSslRandomSource&) = delete;
  ~OpenSslRandomSource() override;

  absl::Status Fill(absl::Span<uint8_t> out) override;

 private:
  absl::Mutex mu_;
  uint8_t buffer_[kBufferSize] ABSL_GUARDED_BY(mu_);
  size_t available_ ABSL_GUARDED_BY(mu_) = 0;  // Unused bytes at the end.
};

// A uniformly random integer in [0, n), n >= 1, by rejection sampling on the
// smallest covering power of two (never by modulo). INVALID_ARGUMENT if n is 0.
absl::StatusOr<uint64_t> UniformBelow(RandomSource& random, uint64_t n);

// The same for 128-bit bounds (used by the exact samplers).
absl::StatusOr<unsigned __int128> UniformBelow128(RandomSource& random,
                                                  unsigned __int128 n);

}  // namespace passerelle::privacy

#endif  // PASSERELLE_PRIVACY_RANDOM_H_
