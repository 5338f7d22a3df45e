// libFuzzer harness: untrusted bytes through every parser and verifier an
// auditor runs on data they did not produce (checkpoint notes, entries,
// proofs). Built and run by scripts/fuzz.sh (seeds in corpus/).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "audit/checkpoint.h"
#include "audit/merkle.h"
#include "audit/records.h"

namespace {

using passerelle::audit::VerifyingKey;

const VerifyingKey& Key() {
  static const VerifyingKey* const key = [] {
    auto k = VerifyingKey::FromRaw(std::string(32, '\x07'));
    if (!k.ok()) {
      k = VerifyingKey::FromRaw(
          passerelle::audit::Sha256("passerelle audit fuzzer"));
    }
    return new VerifyingKey(*k);
  }();
  return *key;
}

uint64_t TakeU64(std::string* s) {
  uint64_t v = 0;
  for (int i = 0; i < 8 && !s->empty(); ++i) {
    v = (v << 8) | static_cast<unsigned char>((*s)[0]);
    s->erase(0, 1);
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  namespace audit = passerelle::audit;

  (void)audit::ParseCheckpointNote(input);
  (void)audit::OpenCheckpoint(input, "passerelle/gateway", Key());

  auto record = audit::DecodeRecord(input);
  if (record.ok()) {
    (void)audit::RecordToJson(*record, true);
    (void)audit::ToFhirAuditEvent(*record, 1, audit::HashLeaf(input), "o",
                                  false);
  }
  (void)audit::JsonlRow(0, input, audit::HashLeaf(input));

  // Proof verification with attacker-chosen sizes and hashes.
  std::string rest = input;
  const uint64_t a = TakeU64(&rest) % 1024;
  const uint64_t b = TakeU64(&rest) % 1024;
  std::vector<std::string> hashes;
  while (rest.size() >= audit::kHashSize && hashes.size() < 40) {
    hashes.push_back(rest.substr(0, audit::kHashSize));
    rest.erase(0, audit::kHashSize);
  }
  if (hashes.size() >= 2) {
    const std::string h0 = hashes[0];
    const std::string h1 = hashes[1];
    std::vector<std::string> proof(hashes.begin() + 2, hashes.end());
    (void)audit::VerifyInclusion(h0, a, b, proof, h1);
    (void)audit::VerifyConsistency(a, b, proof, h0, h1);
  }
  return 0;
}
