// Prewarming the gateway's noise (privacy.md requirement 11): every noise
// distribution the policy in force can oblige a query to is drawn ahead,
// at start and before each new policy version serves, so that no query's
// answer time depends on whether its distribution's pool was cold.
#ifndef PASSERELLE_GATEWAY_NOISE_PREWARM_H_
#define PASSERELLE_GATEWAY_NOISE_PREWARM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "policy/policy.h"
#include "policy/store.h"
#include "privacy/disclosure.h"
#include "privacy/noise.h"

namespace passerelle::gateway {

// The disclosure parameters of an allowed decision's obligations (as the
// gateway's request path builds them).
privacy::DisclosureParams DisclosureParamsFor(const v1::Obligations& ob);

// Every noise distribution `policy` can produce (Policy::NoiseParameterSets,
// as the disclosure step asks for them), without duplicates. Parameters no
// sampler supports are left out: a query with them fails before drawing.
std::vector<privacy::NoiseSpec> PolicyNoiseSpecs(const policy::Policy& policy);

// Prewarms each of them in `noise`; returns once all are ready.
absl::Status PrewarmPolicyNoise(const policy::Policy& policy,
                                privacy::NoiseSource* noise);

// A PolicyStore whose every version is prewarmed in `noise` (which must
// outlive it) before it is put in force; a version that cannot be
// prewarmed is rejected like an invalid one.
absl::StatusOr<std::unique_ptr<policy::PolicyStore>> NewPrewarmedPolicyStore(
    std::vector<std::string> paths, privacy::NoiseSource* noise);

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_NOISE_PREWARM_H_
