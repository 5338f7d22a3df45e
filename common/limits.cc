#include "common/limits.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace passerelle::limits {
namespace {

// The largest n <= max such that text[0, n) does not end inside a UTF-8
// sequence.
size_t Utf8Cut(absl::string_view text, size_t max) {
  if (text.size() <= max) return text.size();
  size_t n = max;
  // Back off continuation bytes (10xxxxxx), then the lead byte if its
  // sequence does not fit.
  size_t back = 0;
  while (n > 0 && back < 4 &&
         (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) {
    --n;
    ++back;
  }
  return n;
}

bool HasControl(absl::string_view value) {
  for (char c : value) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return true;
  }
  return false;
}

}  // namespace

std::string Quote(absl::string_view raw, size_t max_bytes) {
  const size_t n = Utf8Cut(raw, max_bytes);
  std::string out =
      absl::StrCat("\"", absl::Utf8SafeCHexEscape(raw.substr(0, n)), "\"");
  if (n < raw.size()) absl::StrAppend(&out, "... (", raw.size(), " bytes)");
  return out;
}

std::string BoundText(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  const size_t n = Utf8Cut(text, max_bytes);
  return absl::StrCat(text.substr(0, n), " [... ", text.size() - n,
                      " bytes omitted]");
}

absl::Status CheckSize(absl::string_view field, size_t size, size_t max) {
  if (size <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, " is ", size, " bytes, over the limit of ", max, " bytes"));
}

absl::Status CheckId(absl::string_view field, absl::string_view value,
                     size_t max_bytes, bool required) {
  if (required && value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  }
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " bytes, over the limit of ",
                     max_bytes, " bytes: ", Quote(value)));
  }
  if (HasControl(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " contains a control character: ", Quote(value)));
  }
  return absl::OkStatus();
}

absl::Status CheckRequestId(absl::string_view field, absl::string_view value) {
  bool ok = !value.empty() && value.size() <= kMaxRequestIdBytes;
  for (size_t i = 0; ok && i < value.size(); ++i) {
    const char c = value[i];
    ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-';
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " must be 1 to ", kMaxRequestIdBytes,
                   " characters of [0-9A-Za-z._-], got ", value.size(),
                   " bytes: ", Quote(value)));
}

std::string RecordedIdentity(absl::string_view identity) {
  if (identity.size() <= kMaxIdentityBytes && !HasControl(identity)) {
    return std::string(identity);
  }
  return Quote(identity, kMaxIdentityBytes / 2);
}

}  // namespace passerelle::limits
