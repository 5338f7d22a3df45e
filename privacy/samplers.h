// Exact samplers of Canonne, Kamath and Steinke, "The Discrete Gaussian for
// Differential Privacy" (NeurIPS 2020), Algorithms 1-3. Only integer and
// rational arithmetic (unsigned __int128, checked) is used: no floating
// point anywhere on the sampling path. Every random integer comes from
// UniformBelow (rejection, never modulo).
//
// Supported range: numerators and denominators of parameters in [1, 2^40].
// An intermediate that would overflow 128 bits returns OUT_OF_RANGE; for the
// supported parameters this needs a draw more than 10^6 scales from zero,
// an event of probability below exp(-10^6), and fails closed.
#ifndef PASSERELLE_PRIVACY_SAMPLERS_H_
#define PASSERELLE_PRIVACY_SAMPLERS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "privacy/random.h"

namespace passerelle::privacy {

// A non-negative rational num/den, den > 0.
struct Rational {
  uint64_t num = 0;
  uint64_t den = 1;
};

// Largest numerator or denominator accepted by the samplers.
inline constexpr uint64_t kMaxRationalPart = uint64_t{1} << 40;

// Reduces by the gcd; INVALID_ARGUMENT if den is 0 or a part exceeds
// kMaxRationalPart after reduction.
absl::StatusOr<Rational> MakeRational(uint64_t num, uint64_t den);

std::string RationalToString(const Rational& r);

// Bernoulli(num/den) for 0 <= num <= den.
absl::StatusOr<bool> SampleBernoulli(RandomSource& random,
                                     unsigned __int128 num,
                                     unsigned __int128 den);

// Bernoulli(exp(-gamma)) for gamma = num/den >= 0 (CKS Algorithm 1).
absl::StatusOr<bool> SampleBernoulliExp(RandomSource& random,
                                        unsigned __int128 num,
                                        unsigned __int128 den);

// Geometric: the number of successes of Bernoulli(exp(-gamma)) before the
// first failure, P[k] = (1 - e^-gamma) e^(-gamma k). gamma > 0.
absl::StatusOr<uint64_t> SampleGeometric(RandomSource& random,
                                         const Rational& gamma);

// Discrete Laplace with scale t > 0: P[x] = tanh(1/2t) e^(-|x|/t)
// (CKS Algorithm 2). Noise with scale 1/epsilon is epsilon-DP for a
// sensitivity-1 count.
absl::StatusOr<int64_t> SampleDiscreteLaplace(RandomSource& random,
                                              const Rational& scale);

// Discrete Gaussian with variance parameter sigma^2 > 0:
// P[x] proportional to e^(-x^2 / 2 sigma^2) (CKS Algorithm 3). Noise with
// sigma^2 = 1/(2 rho) is rho-zCDP for a sensitivity-1 count.
absl::StatusOr<int64_t> SampleDiscreteGaussian(RandomSource& random,
                                               const Rational& sigma2);

}  // namespace passerelle::privacy

#endif  // PASSERELLE_PRIVACY_SAMPLERS_H_
