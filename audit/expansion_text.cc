#include "audit/expansion_text.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace passerelle::audit {
namespace {

std::string Plural(int64_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

// "(99 rows, approximate)", "(99 rows: 40 equivalent, 59 approximate)",
// with "; 12 in combinations" when some rows belong to a combination.
std::string RowsText(const v1::CodeExpansion& e) {
  std::vector<std::pair<int64_t, const char*>> by_relation;
  for (auto [n, name] :
       {std::pair<int64_t, const char*>{e.equivalent_rows(), "equivalent"},
        {e.narrower_rows(), "narrower"},
        {e.broader_rows(), "broader"},
        {e.approximate_rows(), "approximate"}}) {
    if (n > 0) by_relation.emplace_back(n, name);
  }
  std::string out = absl::StrCat("(", Plural(e.rows(), "row", "rows"));
  if (by_relation.size() == 1 && by_relation[0].first == e.rows()) {
    absl::StrAppend(&out, ", ", by_relation[0].second);
  } else if (!by_relation.empty()) {
    std::vector<std::string> parts;
    for (const auto& [n, name] : by_relation) {
      parts.push_back(absl::StrCat(n, " ", name));
    }
    absl::StrAppend(&out, ": ", absl::StrJoin(parts, ", "));
  }
  if (e.combination_rows() > 0) {
    absl::StrAppend(&out, "; ", e.combination_rows(), " in combinations");
  }
  return out + ")";
}

std::string CodeWithLabel(const std::string& code, const CodeLabelFn& labels) {
  std::string out = Printable(code);
  if (labels) {
    const std::string label = labels(code);
    if (!label.empty()) absl::StrAppend(&out, " (", Printable(label), ")");
  }
  return out;
}

}  // namespace

std::string CodeMatchingText(v1::CodeMatching matching) {
  switch (matching) {
    case v1::CODE_MATCHING_EQUIVALENT:
      return "codes equivalent";
    case v1::CODE_MATCHING_EXACT:
      return "codes exact";
    default:
      return "codes mapped";
  }
}

std::string Printable(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

std::string CodeExpansionText(const v1::CodeExpansion& e,
                              const CodeLabelFn& labels) {
  const std::string code = CodeWithLabel(e.code(), labels);
  const std::string vocabulary = Printable(e.site_vocabulary());
  if (e.crosswalk().empty()) {
    return absl::StrCat(code, " → ", vocabulary, " directly");
  }
  return absl::StrCat(code, " via ", Printable(e.crosswalk()), " → ",
                      vocabulary, ": ",
                      Plural(e.source_codes(), "source code", "source codes"),
                      " ", RowsText(e));
}

std::string SamplesText(const v1::CodeExpansion& e, int max) {
  if (e.sample_source_codes().empty() || max <= 0) return "";
  std::vector<std::string> shown;
  for (int i = 0; i < e.sample_source_codes_size() && i < max; ++i) {
    shown.push_back(Printable(e.sample_source_codes(i)));
  }
  std::string out = absl::StrCat("e.g. ", absl::StrJoin(shown, ", "));
  const int64_t more =
      std::max<int64_t>(e.source_codes(), e.sample_source_codes_size()) -
      static_cast<int64_t>(shown.size());
  if (more > 0) absl::StrAppend(&out, " and ", more, " more");
  return out;
}

std::string UnreachedText(absl::string_view unreached) {
  return absl::StrCat(Printable(unreached),
                      " is not reached by any code of the query; its records "
                      "are not counted");
}

bool ExpansionIsEmpty(const v1::SiteExpansion& e) {
  return e.ByteSizeLong() == 0;
}

std::string ExpansionSummaryText(const v1::SiteExpansion& e) {
  if (ExpansionIsEmpty(e)) {
    return "no expansion reported (the site does not say whether crosswalks "
           "were used)";
  }
  std::string out = CodeMatchingText(e.code_matching());
  if (e.code_matching() == v1::CODE_MATCHING_EXACT) {
    absl::StrAppend(&out, " (no crosswalk used)");
  } else if (e.mapping_set().empty()) {
    absl::StrAppend(&out, ", no crosswalk loaded");
  } else {
    absl::StrAppend(&out, ", mapping set ",
                    Printable(e.mapping_set().substr(0, 12)));
  }
  return out;
}

std::vector<std::string> SiteExpansionLines(const std::string& site,
                                            const v1::SiteExpansion& e,
                                            const CodeLabelFn& labels) {
  const std::string prefix =
      absl::StrCat(Printable(e.site().empty() ? site : e.site()), ": ");
  std::vector<std::string> lines;
  lines.push_back(prefix + ExpansionSummaryText(e));
  for (const v1::CodeExpansion& c : e.codes()) {
    lines.push_back(prefix + CodeExpansionText(c, labels));
  }
  for (const std::string& u : e.unreached()) {
    lines.push_back(absl::StrCat(prefix, "WARNING: ", UnreachedText(u)));
  }
  return lines;
}

}  // namespace passerelle::audit
