#include "vocab/fold.h"

#include <cstdint>

namespace passerelle::vocab {
namespace {

// Decodes the code point at text[*pos], advancing *pos past it. Returns false
// (advancing by one byte) for an invalid sequence.
bool DecodeOne(absl::string_view text, size_t* pos, uint32_t* cp) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const size_t i = *pos;
  const unsigned char b0 = s[i];
  if (b0 < 0x80) {
    *cp = b0;
    *pos = i + 1;
    return true;
  }
  int len;
  uint32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    *cp = b0 & 0x1F;
    min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    *cp = b0 & 0x0F;
    min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    *cp = b0 & 0x07;
    min = 0x10000;
  } else {
    *pos = i + 1;
    return false;
  }
  if (i + len > n) {
    *pos = i + 1;
    return false;
  }
  for (int k = 1; k < len; ++k) {
    if ((s[i + k] & 0xC0) != 0x80) {
      *pos = i + 1;
      return false;
    }
    *cp = (*cp << 6) | (s[i + k] & 0x3F);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) {
    *pos = i + 1;
    return false;
  }
  *pos = i + len;
  return true;
}

// Base letters of U+00C0..U+00FF; "" marks a separator (× and ÷).
constexpr const char* kLatin1[64] = {
    "a", "a", "a", "a", "a",  "a",  "ae", "c", "e", "e", "e",  "e", "i",
    "i", "i", "i", "d", "n",  "o",  "o",  "o", "o", "o", "",   "o", "u",
    "u", "u", "u", "y", "th", "ss", "a",  "a", "a", "a", "a",  "a", "ae",
    "c", "e", "e", "e", "e",  "i",  "i",  "i", "i", "d", "n",  "o", "o",
    "o", "o", "o", "",  "o",  "u",  "u",  "u", "u", "y", "th", "y"};

// Base letters of Latin Extended-A, U+0100..U+017F, by ranges.
struct Range {
  uint32_t first, last;
  const char* base;
};
constexpr Range kLatinExtendedA[] = {
    {0x100, 0x105, "a"}, {0x106, 0x10D, "c"},  {0x10E, 0x111, "d"},
    {0x112, 0x11B, "e"}, {0x11C, 0x123, "g"},  {0x124, 0x127, "h"},
    {0x128, 0x131, "i"}, {0x132, 0x133, "ij"}, {0x134, 0x135, "j"},
    {0x136, 0x138, "k"}, {0x139, 0x142, "l"},  {0x143, 0x14B, "n"},
    {0x14C, 0x151, "o"}, {0x152, 0x153, "oe"}, {0x154, 0x159, "r"},
    {0x15A, 0x161, "s"}, {0x162, 0x167, "t"},  {0x168, 0x173, "u"},
    {0x174, 0x175, "w"}, {0x176, 0x178, "y"},  {0x179, 0x17E, "z"},
    {0x17F, 0x17F, "s"}};

// What a code point folds to: nullptr to drop it (combining accents), "" for
// a separator, otherwise the replacement text; *keep set when the code point
// stays as it is.
const char* FoldCodePoint(uint32_t cp, bool* keep) {
  *keep = false;
  if (cp < 0x80) return "";  // ASCII is handled by the caller.
  if (cp >= 0xC0 && cp <= 0xFF) return kLatin1[cp - 0xC0];
  if (cp == 0xB5 || cp == 0x3BC) return "u";  // micro sign, Greek mu
  if (cp == 0xAA) return "a";
  if (cp == 0xBA) return "o";
  if (cp < 0xC0) return "";  // Latin-1 symbols, no-break space, « », °
  if (cp >= 0x100 && cp <= 0x17F) {
    for (const Range& r : kLatinExtendedA) {
      if (cp >= r.first && cp <= r.last) return r.base;
    }
  }
  if (cp >= 0x300 && cp <= 0x36F) return nullptr;
  if (cp >= 0x2000 && cp <= 0x206F) return "";
  *keep = true;
  return "";
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  size_t pos = 0;
  uint32_t cp;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    if (!DecodeOne(text, &pos, &cp)) return false;
  }
  return true;
}

void FoldInto(absl::string_view text, std::string* out) {
  out->clear();
  bool pending_space = false;
  auto append = [&](absl::string_view s) {
    if (pending_space && !out->empty()) out->push_back(' ');
    pending_space = false;
    out->append(s.data(), s.size());
  };
  size_t pos = 0;
  while (pos < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[pos]);
    if (c < 0x80) {
      ++pos;
      if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
        if (pending_space && !out->empty()) out->push_back(' ');
        pending_space = false;
        out->push_back(static_cast<char>(c));
      } else if (c >= 'A' && c <= 'Z') {
        if (pending_space && !out->empty()) out->push_back(' ');
        pending_space = false;
        out->push_back(static_cast<char>(c - 'A' + 'a'));
      } else {
        pending_space = true;
      }
      continue;
    }
    const size_t start = pos;
    uint32_t cp;
    if (!DecodeOne(text, &pos, &cp)) {
      pending_space = true;
      continue;
    }
    bool keep;
    const char* folded = FoldCodePoint(cp, &keep);
    if (keep) {
      append(text.substr(start, pos - start));
    } else if (folded == nullptr) {
      // A combining accent: part of the letter before it.
    } else if (*folded == '\0') {
      pending_space = true;
    } else {
      append(folded);
    }
  }
}

std::string Fold(absl::string_view text) {
  std::string out;
  FoldInto(text, &out);
  return out;
}

std::vector<std::string> FoldWords(absl::string_view text) {
  std::vector<std::string> words;
  const std::string folded = Fold(text);
  size_t start = 0;
  while (start < folded.size()) {
    size_t end = folded.find(' ', start);
    if (end == std::string::npos) end = folded.size();
    words.push_back(folded.substr(start, end - start));
    start = end + 1;
  }
  return words;
}

}  // namespace passerelle::vocab
