#include "gateway/expansion.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/limits.h"
#include "common/status_macros.h"
#include "query/canonical.h"
#include "query/vocabulary.h"

namespace passerelle::gateway {
namespace {

// As the canonical form writes a code (query/canonical.cc).
std::string CodeText(const v1::Code& c) {
  return absl::StrCat(c.vocabulary(), ":", c.code(), c.prefix() ? "*" : "");
}

// Every (domain, code text) of the query, with the code's vocabulary.
struct QueryCodes {
  std::map<std::pair<int, std::string>, std::string> vocabulary_of;
  std::set<std::string> domains;  // Domain words.
};

void CollectSpec(const v1::EventSpec& spec, QueryCodes* out) {
  const absl::string_view word = query::DomainKeyword(spec.domain());
  if (!word.empty()) out->domains.insert(std::string(word));
  for (const v1::Code& c : spec.codes()) {
    out->vocabulary_of[{static_cast<int>(spec.domain()), CodeText(c)}] =
        c.vocabulary();
  }
}

void Collect(const v1::Expr& expr, QueryCodes* out) {
  switch (expr.kind_case()) {
    case v1::Expr::kCriterion: {
      const v1::Criterion& c = expr.criterion();
      if (c.has_event()) CollectSpec(c.event().event(), out);
      if (c.has_sequence()) {
        CollectSpec(c.sequence().first(), out);
        CollectSpec(c.sequence().second(), out);
      }
      break;
    }
    case v1::Expr::kAnd:
      for (const v1::Expr& e : expr.and_().terms()) Collect(e, out);
      break;
    case v1::Expr::kOr:
      for (const v1::Expr& e : expr.or_().terms()) Collect(e, out);
      break;
    case v1::Expr::kNot:
      Collect(expr.not_(), out);
      break;
    default:
      break;
  }
}

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::Status Invalid(absl::string_view field, absl::string_view why,
                     absl::string_view value) {
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid expansion: ", field, " ", why, ": ", limits::Quote(value)));
}

absl::Status CheckVocabulary(absl::string_view field, absl::string_view v) {
  if (v.size() > kMaxVocabularyNameBytes || !query::IsKnownVocabulary(v)) {
    return Invalid(field, "is not a known vocabulary", v);
  }
  return absl::OkStatus();
}

absl::Status CheckCount(absl::string_view field, int64_t n) {
  if (n < 0 || n > kMaxExpansionCount) {
    return absl::InvalidArgumentError(absl::StrCat("invalid expansion: ", field,
                                                   " is ", n, ", outside 0..",
                                                   kMaxExpansionCount));
  }
  return absl::OkStatus();
}

// A source code as a crosswalk may hold it: a valid code of its
// vocabulary, possibly ending with '*' (a Passerelle-form prefix row).
bool IsValidSourceCode(absl::string_view vocabulary, absl::string_view code) {
  if (absl::EndsWith(code, "*")) code.remove_suffix(1);
  return query::IsValidCode(vocabulary, code);
}

absl::Status CheckCodeExpansion(const std::string& at, const QueryCodes& codes,
                                v1::CodeMatching matching,
                                const v1::CodeExpansion& e) {
  auto it = codes.vocabulary_of.find(
      {static_cast<int>(e.domain()), std::string(e.code())});
  if (it == codes.vocabulary_of.end()) {
    return Invalid(absl::StrCat(at, ".code"),
                   absl::StrCat("is not a code of the query in domain ",
                                query::DomainKeyword(e.domain()).empty()
                                    ? "(none)"
                                    : query::DomainKeyword(e.domain())),
                   e.code());
  }
  PASSERELLE_RETURN_IF_ERROR(CheckVocabulary(
      absl::StrCat(at, ".site_vocabulary"), e.site_vocabulary()));
  if (e.crosswalk().empty()) {
    if (!query::VocabularyMatches(it->second, e.site_vocabulary())) {
      return Invalid(absl::StrCat(at, ".site_vocabulary"),
                     absl::StrCat("is reached without a crosswalk, but ",
                                  it->second, " does not match it"),
                     e.site_vocabulary());
    }
  } else {
    PASSERELLE_RETURN_IF_ERROR(limits::CheckId(
        absl::StrCat(at, ".crosswalk"), e.crosswalk(), kMaxCrosswalkNameBytes));
    if (matching == v1::CODE_MATCHING_EXACT) {
      return Invalid(absl::StrCat(at, ".crosswalk"),
                     "is used although the query says `codes exact`",
                     e.crosswalk());
    }
  }
  for (auto [name, n] : {std::pair<const char*, int64_t>{"rows", e.rows()},
                         {"source_codes", e.source_codes()},
                         {"equivalent_rows", e.equivalent_rows()},
                         {"narrower_rows", e.narrower_rows()},
                         {"broader_rows", e.broader_rows()},
                         {"approximate_rows", e.approximate_rows()},
                         {"combination_rows", e.combination_rows()}}) {
    PASSERELLE_RETURN_IF_ERROR(CheckCount(absl::StrCat(at, ".", name), n));
  }
  const int64_t by_relation = e.equivalent_rows() + e.narrower_rows() +
                              e.broader_rows() + e.approximate_rows();
  if (by_relation != e.rows() || e.combination_rows() > e.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid expansion: ", at, " counts ", e.rows(),
                     " rows, but ", by_relation, " by relation and ",
                     e.combination_rows(), " in combinations"));
  }
  if (matching == v1::CODE_MATCHING_EQUIVALENT &&
      (e.broader_rows() > 0 || e.approximate_rows() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid expansion: ", at,
        " uses broader or approximate rows although the query says `codes "
        "equivalent`"));
  }
  for (int i = 0; i < e.sample_source_codes_size(); ++i) {
    if (!IsValidSourceCode(e.site_vocabulary(), e.sample_source_codes(i))) {
      return Invalid(
          absl::StrCat(at, ".sample_source_codes[", i, "]"),
          absl::StrCat("is not a valid ", e.site_vocabulary(), " code"),
          e.sample_source_codes(i));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckUnreached(const std::string& at, const QueryCodes& codes,
                            absl::string_view u) {
  const size_t colon = u.find(": ");
  if (colon == absl::string_view::npos) {
    return Invalid(at, "is not \"<domain>: <vocabulary>\"", u);
  }
  if (codes.domains.count(std::string(u.substr(0, colon))) == 0) {
    return Invalid(at, "names a domain the query does not ask about", u);
  }
  return CheckVocabulary(at, u.substr(colon + 2));
}

// Removes the last code expansion (or, when none is left, the last
// unreached entry) and returns roughly how many bytes that saved.
size_t PopLast(v1::SiteExpansion* e, int* codes_cut, int* unreached_cut) {
  if (e->codes_size() > 0) {
    const size_t n = e->codes(e->codes_size() - 1).ByteSizeLong() + 3;
    e->mutable_codes()->RemoveLast();
    ++*codes_cut;
    return n;
  }
  if (e->unreached_size() > 0) {
    const size_t n = e->unreached(e->unreached_size() - 1).size() + 2;
    e->mutable_unreached()->RemoveLast();
    ++*unreached_cut;
    return n;
  }
  return 0;
}

int ClearSamples(v1::SiteExpansion* e) {
  int n = 0;
  for (v1::CodeExpansion& c : *e->mutable_codes()) {
    n += c.sample_source_codes_size();
    c.clear_sample_source_codes();
  }
  return n;
}

}  // namespace

absl::Status CheckSiteExpansion(const std::string& site, const v1::Query& query,
                                v1::SiteExpansion* expansion,
                                std::vector<std::string>* notes) {
  v1::SiteExpansion& e = *expansion;
  if (e.ByteSizeLong() == 0) return absl::OkStatus();
  if (e.site() != site) {
    return Invalid("site", absl::StrCat("is not \"", site, "\""), e.site());
  }
  if (e.code_matching() != query.code_matching()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid expansion: code_matching is ",
        v1::CodeMatching_Name(e.code_matching()), ", the query asks for ",
        v1::CodeMatching_Name(query.code_matching())));
  }
  if (!e.mapping_set().empty() &&
      (e.mapping_set().size() != 64 || !IsLowerHex(e.mapping_set()))) {
    return Invalid("mapping_set", "is not 64 lowercase hex digits",
                   e.mapping_set());
  }
  QueryCodes codes;
  Collect(query.where(), &codes);

  // Only too large: cut, and say so.
  if (e.codes_size() > kMaxCodeExpansions) {
    notes->push_back(
        absl::StrCat("EXPANSION: site ", site, " reported ", e.codes_size(),
                     " code expansions; the first ", kMaxCodeExpansions,
                     " are kept (the gateway's limit)"));
    e.mutable_codes()->DeleteSubrange(kMaxCodeExpansions,
                                      e.codes_size() - kMaxCodeExpansions);
  }
  if (e.unreached_size() > kMaxUnreached) {
    notes->push_back(
        absl::StrCat("EXPANSION: site ", site, " reported ", e.unreached_size(),
                     " unreached vocabularies; the first ", kMaxUnreached,
                     " are kept (the gateway's limit)"));
    e.mutable_unreached()->DeleteSubrange(kMaxUnreached,
                                          e.unreached_size() - kMaxUnreached);
  }
  bool samples_cut = false;
  for (v1::CodeExpansion& c : *e.mutable_codes()) {
    if (c.sample_source_codes_size() > kMaxExpansionSamples) {
      samples_cut = true;
      c.mutable_sample_source_codes()->DeleteSubrange(
          kMaxExpansionSamples,
          c.sample_source_codes_size() - kMaxExpansionSamples);
    }
  }
  if (samples_cut) {
    notes->push_back(absl::StrCat("EXPANSION: site ", site, " sent more than ",
                                  kMaxExpansionSamples,
                                  " sample codes for a code; the first ",
                                  kMaxExpansionSamples, " are kept"));
  }

  // What is kept must make sense.
  for (int i = 0; i < e.codes_size(); ++i) {
    PASSERELLE_RETURN_IF_ERROR(
        CheckCodeExpansion(absl::StrCat("codes[", i, "]"), codes,
                           query.code_matching(), e.codes(i)));
  }
  for (int i = 0; i < e.unreached_size(); ++i) {
    PASSERELLE_RETURN_IF_ERROR(CheckUnreached(
        absl::StrCat("unreached[", i, "]"), codes, e.unreached(i)));
  }

  const size_t size = e.ByteSizeLong();
  if (size > kMaxSiteExpansionBytes) {
    const int samples = ClearSamples(&e);
    int codes_cut = 0, unreached_cut = 0;
    while (e.ByteSizeLong() > kMaxSiteExpansionBytes &&
           PopLast(&e, &codes_cut, &unreached_cut) > 0) {
    }
    notes->push_back(absl::StrCat(
        "EXPANSION: site ", site, "'s expansion is ", size,
        " bytes, over the gateway's limit of ", kMaxSiteExpansionBytes, ": ",
        samples, " sample codes, ", codes_cut, " code expansions and ",
        unreached_cut, " unreached vocabularies are left out"));
  }
  return absl::OkStatus();
}

std::vector<std::string> UnreachedNotes(const std::string& site,
                                        const v1::SiteExpansion& expansion) {
  std::vector<std::string> notes;
  for (const std::string& u : expansion.unreached()) {
    notes.push_back(absl::StrCat(
        "UNREACHED: at site ", site, ", ", u,
        " is not reached by any code of the query; its records are not "
        "counted"));
  }
  return notes;
}

bool FitExpansions(v1::AuditEntry* entry, size_t max_bytes) {
  size_t size = entry->ByteSizeLong();
  if (size <= max_bytes) return true;
  // Room for the reason added below (bounded to kMaxReasonBytes).
  const size_t reserve = limits::kMaxReasonBytes + 64;
  const size_t target = max_bytes > reserve ? max_bytes - reserve : 0;
  int samples = 0;
  for (v1::AuditSiteStatus& s : *entry->mutable_sites()) {
    samples += ClearSamples(s.mutable_expansion());
  }
  std::vector<int> codes_cut(entry->sites_size(), 0);
  std::vector<int> unreached_cut(entry->sites_size(), 0);
  std::vector<int> codes_before(entry->sites_size(), 0);
  std::vector<int> unreached_before(entry->sites_size(), 0);
  for (int i = 0; i < entry->sites_size(); ++i) {
    codes_before[i] = entry->sites(i).expansion().codes_size();
    unreached_before[i] = entry->sites(i).expansion().unreached_size();
  }
  size = entry->ByteSizeLong();
  while (size > target) {
    // From the largest expansion: no site loses everything while another
    // keeps more than it.
    std::vector<size_t> sizes;
    for (const v1::AuditSiteStatus& s : entry->sites()) {
      sizes.push_back(s.expansion().ByteSizeLong());
    }
    size_t excess = size - target;
    bool cut_any = false;
    while (excess > 0) {
      auto largest = std::max_element(sizes.begin(), sizes.end());
      if (largest == sizes.end() || *largest == 0) break;
      const int i = static_cast<int>(largest - sizes.begin());
      const size_t saved = PopLast(entry->mutable_sites(i)->mutable_expansion(),
                                   &codes_cut[i], &unreached_cut[i]);
      if (saved == 0) {
        *largest = 0;
        continue;
      }
      cut_any = true;
      *largest = *largest > saved ? *largest - saved : 0;
      excess = excess > saved ? excess - saved : 0;
    }
    size = entry->ByteSizeLong();
    if (!cut_any) break;
  }
  std::vector<std::string> cut;
  for (int i = 0; i < entry->sites_size(); ++i) {
    if (codes_cut[i] == 0 && unreached_cut[i] == 0) continue;
    cut.push_back(absl::StrCat(entry->sites(i).site(), ": ", codes_cut[i],
                               " of ", codes_before[i], " code expansions and ",
                               unreached_cut[i], " of ", unreached_before[i],
                               " unreached vocabularies"));
  }
  std::string reason =
      absl::StrCat("expansions cut to keep this entry within ", max_bytes,
                   " bytes: ", samples, " sample codes left out");
  if (!cut.empty()) {
    absl::StrAppend(&reason, "; also left out: ", absl::StrJoin(cut, "; "));
  }
  absl::StrAppend(&reason, " (the response carried them)");
  entry->add_reasons(limits::BoundText(reason));
  return entry->ByteSizeLong() <= max_bytes;
}

}  // namespace passerelle::gateway
