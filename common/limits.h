// Size limits on everything a server receives and records (architecture
// invariant 8: no request, of any size, grows a store by more than a fixed
// bound). Every field a caller sends is checked against these before any of
// it reaches an audit entry; a field over its limit is refused with
// INVALID_ARGUMENT naming the field and the limit, and the refusal records
// only a short, escaped prefix of it (Quote).
//
// The limits are chosen so that the largest entry either log can be asked
// to write stays well under kMaxAuditEntryBytes (checked by unit tests of
// both cores and by tests/flood_test.cc), while a legitimate long cohort
// definition (hundreds of codes) still fits.
#ifndef PASSERELLE_COMMON_LIMITS_H_
#define PASSERELLE_COMMON_LIMITS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace passerelle::limits {

// No audit entry (gateway or node) is ever larger than this.
inline constexpr size_t kMaxAuditEntryBytes = 64 * 1024;

// Largest message any Passerelle server accepts (gRPC max receive size);
// larger requests are refused by the transport (RESOURCE_EXHAUSTED) before
// any handler runs, and are therefore not audited.
inline constexpr int kMaxReceiveMessageBytes = 256 * 1024;

// Identifiers a caller names: project, site, audit search filters.
inline constexpr size_t kMaxIdBytes = 128;
// The caller's own identity (from its certificate) as recorded.
inline constexpr size_t kMaxIdentityBytes = 256;
// A declared purpose (a DUO code such as "DUO:0000006", or a short text).
inline constexpr size_t kMaxPurposeBytes = 256;
// A request id the gateway sends a node: 1 to kMaxRequestIdBytes characters
// of [0-9A-Za-z._-] (the gateway's own are 32 lowercase hex digits).
inline constexpr size_t kMaxRequestIdBytes = 64;
// Cohort text a researcher sends the gateway; a serialized AST, to the
// gateway or to a node; and the canonical text recorded in audit entries.
inline constexpr size_t kMaxQueryTextBytes = 16 * 1024;
inline constexpr size_t kMaxQueryAstBytes = 64 * 1024;
inline constexpr size_t kMaxCanonicalQueryBytes = 16 * 1024;
// Sites one request may name.
inline constexpr int kMaxSites = 32;
// Released cells one gateway entry records: the combined cells plus every
// site's own (a breakdown over more cells is refused before any budget is
// reserved). 384 lets `sex, age_band(5)` (92 cells) be released over two
// sites and the combined table (276), or three sites (368); with a
// 16 KiB cohort definition such an entry stays near 50 KiB.
inline constexpr size_t kMaxReleasedCells = 384;
// One recorded reason, and the reasons one entry keeps.
inline constexpr size_t kMaxReasonBytes = 1024;
inline constexpr int kMaxReasons = 16;
// The prefix of a refused value quoted in a reason.
inline constexpr size_t kMaxEchoBytes = 48;

// `raw` in double quotes, C-escaped (control characters, quotes and
// backslashes; valid UTF-8 is kept), cut to at most `max_bytes` of input;
// a cut value is followed by "... (N bytes)". Safe to put in any reason.
std::string Quote(absl::string_view raw, size_t max_bytes = kMaxEchoBytes);

// `text` cut to at most `max_bytes` (on a UTF-8 boundary) with
// " [... N bytes omitted]" appended when cut. For reasons built from
// sources that are not checked field by field (a node's error message).
std::string BoundText(absl::string_view text,
                      size_t max_bytes = kMaxReasonBytes);

// OK when `value` has at most `max_bytes` bytes and no control character;
// otherwise INVALID_ARGUMENT naming `field`, the limit and a quoted prefix.
// `required`: empty is refused too.
absl::Status CheckId(absl::string_view field, absl::string_view value,
                     size_t max_bytes = kMaxIdBytes, bool required = false);

// OK for 1 to kMaxRequestIdBytes characters of [0-9A-Za-z._-].
absl::Status CheckRequestId(absl::string_view field, absl::string_view value);

// OK when `size` <= `max`; otherwise INVALID_ARGUMENT "<field> is <size>
// bytes, over the limit of <max>".
absl::Status CheckSize(absl::string_view field, size_t size, size_t max);

// The identity as recorded: itself when within kMaxIdentityBytes and free of
// control characters, else its quoted prefix (so an oversized identity is
// still attributable and bounded).
std::string RecordedIdentity(absl::string_view identity);

}  // namespace passerelle::limits

#endif  // PASSERELLE_COMMON_LIMITS_H_
