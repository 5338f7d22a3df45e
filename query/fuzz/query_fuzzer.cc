// libFuzzer harness: untrusted bytes -> ParseQuery / QueryFromJson ->
// ValidateQuery -> canonical round trip -> cells. Aborts on any broken
// promise. Built and run by scripts/fuzz.sh, or by hand:
//   build-fuzz/query/fuzz/query_fuzzer -max_total_time=60 /tmp/new \
//     query/fuzz/corpus
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "query/canonical.h"
#include "query/cells.h"
#include "query/parser.h"
#include "query/validate.h"

namespace {

namespace q = ::passerelle::query;

void CheckValid(const passerelle::v1::Query& query) {
  if (!q::ValidateQuery(query).ok()) std::abort();
  const std::string text = q::CanonicalText(query);
  absl::StatusOr<passerelle::v1::Query> back = q::ParseQuery(text);
  if (!back.ok() || q::CanonicalText(*back) != text) std::abort();
  if (q::EnumerateCells(query, {"fr", "qc"}).empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<passerelle::v1::Query> parsed = q::ParseQuery(input);
  if (parsed.ok()) {
    CheckValid(*parsed);
  } else if (parsed.status().code() != absl::StatusCode::kInvalidArgument) {
    std::abort();
  }
  absl::StatusOr<passerelle::v1::Query> json = q::QueryFromJson(input);
  if (json.ok()) CheckValid(*json);
  return 0;
}
