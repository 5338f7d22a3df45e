#include "cli/expansion_format.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "query/canonical.h"

namespace passerelle::cli {
namespace {

const char* StatusWord(v1::SiteStatus s) {
  switch (s) {
    case v1::SITE_STATUS_OK:
      return "ok";
    case v1::SITE_STATUS_FAILED:
      return "failed";
    case v1::SITE_STATUS_TIMED_OUT:
      return "timed_out";
    case v1::SITE_STATUS_REFUSED:
      return "refused";
    default:
      return "unspecified";
  }
}

const char* MatchingWord(v1::CodeMatching m) {
  switch (m) {
    case v1::CODE_MATCHING_EQUIVALENT:
      return "equivalent";
    case v1::CODE_MATCHING_EXACT:
      return "exact";
    default:
      return "mapped";
  }
}

bool Answered(const SiteExpansionView& s) {
  return s.status == v1::SITE_STATUS_OK && s.expansion != nullptr;
}

}  // namespace

std::vector<SiteExpansionView> ExpansionViews(const v1::QueryResponse& r) {
  std::vector<SiteExpansionView> out;
  for (const v1::SiteResult& s : r.sites()) {
    out.push_back({s.site(), s.status(), s.reason(), &s.expansion()});
  }
  return out;
}

std::vector<SiteExpansionView> ExpansionViews(const v1::ExplainResponse& r) {
  std::vector<SiteExpansionView> out;
  for (const v1::SiteExplanation& s : r.sites()) {
    out.push_back({s.site(), s.status(), s.reason(), &s.expansion()});
  }
  return out;
}

std::string ExpansionTable(const std::vector<SiteExpansionView>& sites,
                           const audit::CodeLabelFn& labels) {
  std::string out =
      "code expansion (how the query's codes reach each site's "
      "vocabularies):\n";
  for (const SiteExpansionView& s : sites) {
    if (!Answered(s)) {
      absl::StrAppend(&out, "  ", audit::Printable(s.site), ": ",
                      StatusWord(s.status), " - ", audit::Printable(s.reason),
                      "\n");
      continue;
    }
    const v1::SiteExpansion& e = *s.expansion;
    const std::string prefix =
        absl::StrCat("  ", audit::Printable(s.site), ": ");
    absl::StrAppend(&out, prefix, audit::ExpansionSummaryText(e), "\n");
    for (const v1::CodeExpansion& c : e.codes()) {
      absl::StrAppend(&out, prefix, audit::CodeExpansionText(c, labels), "\n");
      const std::string samples = audit::SamplesText(c);
      if (!samples.empty()) {
        absl::StrAppend(&out, std::string(prefix.size() + 4, ' '), samples,
                        "\n");
      }
    }
    for (const std::string& u : e.unreached()) {
      absl::StrAppend(&out, prefix, "WARNING: ", audit::UnreachedText(u), "\n");
    }
  }
  return out;
}

std::string UnreachedWarning(const std::vector<SiteExpansionView>& sites) {
  std::vector<std::string> missed;
  for (const SiteExpansionView& s : sites) {
    if (!Answered(s)) continue;
    for (const std::string& u : s.expansion->unreached()) {
      missed.push_back(
          absl::StrCat(audit::Printable(u), " at ", audit::Printable(s.site)));
    }
  }
  if (missed.empty()) return "";
  return absl::StrCat(
      "WARNING: the cohort may be incomplete: the query's codes reach no "
      "code of ",
      absl::StrJoin(missed, ", "),
      " (records coded only there are not counted; see the code expansion)\n");
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string ExpansionCsv(const std::vector<SiteExpansionView>& sites) {
  std::string out =
      "site,kind,code,domain,site_vocabulary,crosswalk,source_codes,rows,"
      "equivalent_rows,narrower_rows,broader_rows,approximate_rows,"
      "combination_rows,code_matching,mapping_set,sample_source_codes,note\n";
  auto row = [&out](const std::vector<std::string>& fields) {
    std::vector<std::string> quoted;
    for (const std::string& f : fields) quoted.push_back(CsvField(f));
    // 17 columns, always.
    while (quoted.size() < 17) quoted.emplace_back();
    absl::StrAppend(&out, absl::StrJoin(quoted, ","), "\n");
  };
  for (const SiteExpansionView& s : sites) {
    if (s.status != v1::SITE_STATUS_OK) {
      std::vector<std::string> f(17);
      f[0] = s.site;
      f[1] = StatusWord(s.status);
      f[16] = s.reason;
      row(f);
      continue;
    }
    if (s.expansion == nullptr || audit::ExpansionIsEmpty(*s.expansion)) {
      std::vector<std::string> f(17);
      f[0] = s.site;
      f[1] = "not_reported";
      f[16] = "the site does not say whether crosswalks were used";
      row(f);
      continue;
    }
    const v1::SiteExpansion& e = *s.expansion;
    {
      std::vector<std::string> f(17);
      f[0] = s.site;
      f[1] = "summary";
      f[13] = MatchingWord(e.code_matching());
      f[14] = e.mapping_set();
      row(f);
    }
    for (const v1::CodeExpansion& c : e.codes()) {
      row({s.site, "code", c.code(),
           std::string(query::DomainKeyword(c.domain())), c.site_vocabulary(),
           c.crosswalk(), absl::StrCat(c.source_codes()),
           absl::StrCat(c.rows()), absl::StrCat(c.equivalent_rows()),
           absl::StrCat(c.narrower_rows()), absl::StrCat(c.broader_rows()),
           absl::StrCat(c.approximate_rows()),
           absl::StrCat(c.combination_rows()), "", "",
           absl::StrJoin(c.sample_source_codes(), " "), ""});
    }
    for (const std::string& u : e.unreached()) {
      const size_t colon = u.find(": ");
      std::vector<std::string> f(17);
      f[0] = s.site;
      f[1] = "unreached";
      f[3] = colon == std::string::npos ? "" : u.substr(0, colon);
      f[4] = colon == std::string::npos ? u : u.substr(colon + 2);
      f[16] = "not reached by any code of the query; not counted";
      row(f);
    }
  }
  return out;
}

std::string ExpansionJson(const v1::SiteExpansion& e) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(e, &json, options).ok()) {
    return "null";
  }
  return json;
}

}  // namespace passerelle::cli
