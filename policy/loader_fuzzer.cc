// libFuzzer harness: bytes -> policy file -> validation -> decisions. Policy
// files come from stewards, not attackers, but a typo must never crash the
// gateway's hot reload. Built and run by scripts/fuzz.sh (seeds in
// fuzz/corpus/), or by hand:
//   build-fuzz/policy/policy_loader_fuzzer -max_total_time=60 /tmp/new \
//     policy/fuzz/corpus
#include <cstddef>
#include <cstdint>
#include <string>

#include "google/protobuf/text_format.h"
#include "policy/policy.h"

namespace {

namespace v1 = ::passerelle::v1;

// A site file every input is loaded with, so cross-file checks run too.
constexpr char kSite[] =
    "site { id: \"qc\" callers: [\"spiffe://passerelle/gateway\"] "
    "disclosure { min_cell_size: 5 } }";

constexpr char kQuery[] =
    "where { and { terms { criterion { event { event { domain: "
    "DOMAIN_CONDITION codes { vocabulary: \"icd10\" code: \"E11\" prefix: "
    "true } } } } } terms { not { criterion { sex: SEX_MALE } } } } } "
    "group_by { kind: SEX } group_by { kind: AGE_BAND width: 10 }";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const v1::Query* query = [] {
    auto* q = new v1::Query();
    google::protobuf::TextFormat::ParseFromString(kQuery, q);
    return q;
  }();
  std::string text(reinterpret_cast<const char*>(data), size);
  auto policy = passerelle::policy::Policy::LoadFromSources(
      {{"fuzz.textproto", text}, {"site-qc.textproto", kSite}});
  if (!policy.ok()) return 0;
  const passerelle::policy::Policy& p = **policy;
  absl::Time now = absl::FromUnixSeconds(1795000000);
  for (const char* identity :
       {"spiffe://passerelle/user/alice", "spiffe://passerelle/gateway", ""}) {
    for (const char* project : {"diabetes-fr-qc", "p1", ""}) {
      passerelle::policy::AccessRequest req;
      req.identity = identity;
      req.project = project;
      req.query = query;
      req.now = now;
      (void)p.Decide(req);
      v1::CountRequest count;
      *count.mutable_query() = *query;
      count.set_project(project);
      count.set_min_cell_size(5);
      (void)p.DecideNode("qc", identity, count, now);
      (void)p.DecideNode("fr", identity, count, now);
      (void)p.DecideRole(identity, v1::Member::AUDITOR, project);
    }
  }
  return 0;
}
