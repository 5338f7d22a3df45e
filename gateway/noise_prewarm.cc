#include "gateway/noise_prewarm.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace passerelle::gateway {

privacy::DisclosureParams DisclosureParamsFor(const v1::Obligations& ob) {
  privacy::DisclosureParams params;
  params.exact_mode = ob.exact_mode();
  params.mechanism = ob.mechanism() == v1::Disclosure::GAUSSIAN
                         ? privacy::Mechanism::kDiscreteGaussian
                         : privacy::Mechanism::kDiscreteLaplace;
  params.epsilon = ob.epsilon_per_query();
  params.rho = ob.rho_per_query();
  params.federation_min_cell_size = ob.federation_min_cell_size();
  params.rounding = ob.rounding();
  return params;
}

std::vector<privacy::NoiseSpec> PolicyNoiseSpecs(const policy::Policy& policy) {
  std::vector<privacy::NoiseSpec> specs;
  std::set<std::string> keys;
  for (const policy::NoiseParameters& n : policy.NoiseParameterSets()) {
    v1::Obligations ob;
    ob.set_mechanism(n.mechanism);
    if (n.mechanism == v1::Disclosure::LAPLACE)
      ob.set_epsilon_per_query(n.epsilon);
    if (n.mechanism == v1::Disclosure::GAUSSIAN) ob.set_rho_per_query(n.rho);
    absl::StatusOr<privacy::NoiseSpec> spec =
        privacy::NoiseSpecFor(DisclosureParamsFor(ob));
    if (!spec.ok()) continue;
    if (keys.insert(spec->Key()).second) specs.push_back(*std::move(spec));
  }
  return specs;
}

absl::Status PrewarmPolicyNoise(const policy::Policy& policy,
                                privacy::NoiseSource* noise) {
  const std::vector<privacy::NoiseSpec> specs = PolicyNoiseSpecs(policy);
  for (const privacy::NoiseSpec& spec : specs) {
    absl::Status s = noise->Prewarm(spec);
    if (!s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("prewarming the ", specs.size(),
                                       " noise distributions the policy can "
                                       "produce: ",
                                       s.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<policy::PolicyStore>> NewPrewarmedPolicyStore(
    std::vector<std::string> paths, privacy::NoiseSource* noise) {
  return policy::PolicyStore::Create(std::move(paths),
                                     [noise](const policy::Policy& p) {
                                       return PrewarmPolicyNoise(p, noise);
                                     });
}

}  // namespace passerelle::gateway
