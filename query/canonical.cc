#include "query/canonical.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "google/protobuf/util/json_util.h"
#include "query/limits.h"
#include "query/validate.h"
#include "query/vocabulary.h"

namespace passerelle::query {
namespace {

namespace v1 = ::passerelle::v1;

// ---- Printing (of canonical ASTs; total on any AST) ----

std::string DateText(const v1::Date& d) {
  return absl::StrFormat("%04d-%02d-%02d", d.year(), d.month(), d.day());
}

// The shortest text that reads back as exactly `x`.
std::string NumberText(double x) {
  if (x == 0) return "0";
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, x);
    double back;
    if (absl::SimpleAtod(buf, &back) && back == x) break;
  }
  return buf;
}

std::string DomainText(v1::Domain d) {
  const absl::string_view keyword = DomainKeyword(d);
  return keyword.empty() ? "<invalid domain>" : std::string(keyword);
}

const char* ComparisonText(v1::Comparison c) {
  switch (c) {
    case v1::COMPARISON_EQ:
      return "=";
    case v1::COMPARISON_LT:
      return "<";
    case v1::COMPARISON_LE:
      return "<=";
    case v1::COMPARISON_GT:
      return ">";
    case v1::COMPARISON_GE:
      return ">=";
    default:
      return "<invalid comparison>";
  }
}

const char* SexText(v1::Sex s) {
  switch (s) {
    case v1::SEX_FEMALE:
      return "female";
    case v1::SEX_MALE:
      return "male";
    case v1::SEX_OTHER:
      return "other";
    case v1::SEX_UNKNOWN:
      return "unknown";
    default:
      return "<invalid sex>";
  }
}

std::string CodeText(const v1::Code& c) {
  return absl::StrCat(c.vocabulary(), ":", c.code(), c.prefix() ? "*" : "");
}

std::string SpecText(const v1::EventSpec& e) {
  std::string out = absl::StrCat(DomainText(e.domain()), " ");
  if (e.codes_size() == 1) {
    absl::StrAppend(&out, CodeText(e.codes(0)));
  } else {
    absl::StrAppend(&out, "[",
                    absl::StrJoin(e.codes(), ", ",
                                  [](std::string* o, const v1::Code& c) {
                                    o->append(CodeText(c));
                                  }),
                    "]");
  }
  if (e.has_value()) {
    absl::StrAppend(&out, " value ", ComparisonText(e.value().op()), " ",
                    NumberText(e.value().number()));
  }
  return out;
}

std::string RangeText(absl::string_view name, const v1::IntRange& r) {
  if (r.has_min() && r.has_max()) {
    if (r.min() == r.max()) return absl::StrCat(name, " = ", r.min());
    return absl::StrCat(name, " between ", r.min(), " and ", r.max());
  }
  if (r.has_min()) return absl::StrCat(name, " >= ", r.min());
  if (r.has_max()) return absl::StrCat(name, " <= ", r.max());
  return absl::StrCat(name, " <empty range>");
}

bool IsWholeYear(const v1::Window& w) {
  return w.start().year() == w.end().year() && w.start().month() == 1 &&
         w.start().day() == 1 && w.end().month() == 12 && w.end().day() == 31;
}

std::string CriterionText(const v1::Criterion& c) {
  switch (c.kind_case()) {
    case v1::Criterion::kSex:
      return absl::StrCat("sex = ", SexText(c.sex()));
    case v1::Criterion::kBirthYear:
      return RangeText("birth_year", c.birth_year());
    case v1::Criterion::kAge:
      return RangeText("age", c.age());
    case v1::Criterion::kDeceased:
      return "deceased";
    case v1::Criterion::kEvent: {
      const v1::EventCriterion& e = c.event();
      std::string out = SpecText(e.event());
      if (e.has_window()) {
        if (IsWholeYear(e.window())) {
          absl::StrAppend(&out, " in ", e.window().start().year());
        } else {
          absl::StrAppend(&out, " between ", DateText(e.window().start()),
                          " and ", DateText(e.window().end()));
        }
      }
      if (e.min_count() > 1) {
        absl::StrAppend(&out, " at least ", e.min_count(), " times");
      }
      return out;
    }
    case v1::Criterion::kSequence: {
      const v1::SequenceCriterion& s = c.sequence();
      std::string out =
          absl::StrCat(SpecText(s.first()), " before ", SpecText(s.second()));
      if (s.has_within()) {
        absl::StrAppend(&out, " within ", s.within_days(), " days");
      }
      return out;
    }
    case v1::Criterion::KIND_NOT_SET:
      break;
  }
  return "<empty criterion>";
}

std::string ExprText(const v1::Expr& e);

std::string ListText(const v1::ExprList& list, bool is_and) {
  std::vector<std::string> parts;
  parts.reserve(list.terms_size());
  for (const v1::Expr& t : list.terms()) {
    // `and` binds tighter than `or`: only an `or` inside an `and` (or a
    // non-canonical nested list of the same kind) needs parentheses.
    const bool paren = t.has_or_() || (is_and && t.has_and_());
    parts.push_back(paren ? absl::StrCat("(", ExprText(t), ")") : ExprText(t));
  }
  if (parts.empty()) return is_and ? "<empty and>" : "<empty or>";
  return absl::StrJoin(parts, is_and ? " and " : " or ");
}

std::string ExprText(const v1::Expr& e) {
  switch (e.kind_case()) {
    case v1::Expr::kCriterion:
      return CriterionText(e.criterion());
    case v1::Expr::kAnd:
      return ListText(e.and_(), /*is_and=*/true);
    case v1::Expr::kOr:
      return ListText(e.or_(), /*is_and=*/false);
    case v1::Expr::kNot: {
      const v1::Expr& x = e.not_();
      if (x.has_and_() || x.has_or_()) {
        return absl::StrCat("not (", ExprText(x), ")");
      }
      return absl::StrCat("not ", ExprText(x));
    }
    case v1::Expr::KIND_NOT_SET:
      break;
  }
  return "<empty expression>";
}

// ---- Canonicalization ----

bool CodeLess(const v1::Code& a, const v1::Code& b) {
  if (a.vocabulary() != b.vocabulary()) return a.vocabulary() < b.vocabulary();
  if (a.code() != b.code()) return a.code() < b.code();
  return a.prefix() < b.prefix();
}

bool CodeEqual(const v1::Code& a, const v1::Code& b) {
  return a.vocabulary() == b.vocabulary() && a.code() == b.code() &&
         a.prefix() == b.prefix();
}

// Sorts and deduplicates the codes and drops every code another code of the
// set covers. Covering needs a wider-or-equal vocabulary and a prefix code
// that is a prefix of the code (or an equal exact code), so no two distinct
// codes cover each other and dropping is order-independent.
void CanonicalizeCodes(v1::EventSpec* spec) {
  std::vector<v1::Code> codes(spec->codes().begin(), spec->codes().end());
  std::sort(codes.begin(), codes.end(), CodeLess);
  codes.erase(std::unique(codes.begin(), codes.end(), CodeEqual), codes.end());
  std::set<std::pair<std::string, std::string>> prefixes;
  std::set<std::pair<std::string, std::string>> exacts;
  for (const v1::Code& c : codes) {
    (c.prefix() ? prefixes : exacts).emplace(c.vocabulary(), c.code());
  }
  spec->clear_codes();
  for (const v1::Code& c : codes) {
    bool covered = false;
    for (absl::string_view wide : KnownVocabularies()) {
      if (covered) break;
      if (!VocabularyCovers(wide, c.vocabulary())) continue;
      const bool same_vocab = wide == c.vocabulary();
      const std::string w(wide);
      for (size_t len = 1; len <= c.code().size() && !covered; ++len) {
        const bool itself = same_vocab && c.prefix() && len == c.code().size();
        covered = !itself && prefixes.count({w, c.code().substr(0, len)}) > 0;
      }
      if (!covered && !c.prefix() && !same_vocab) {
        covered = exacts.count({w, c.code()}) > 0;
      }
    }
    if (!covered) *spec->add_codes() = c;
  }
}

void CanonicalizeSpec(v1::EventSpec* spec) {
  CanonicalizeCodes(spec);
  if (spec->has_value() && spec->value().number() == 0) {
    spec->mutable_value()->set_number(0);  // -0 and 0 are the same filter.
  }
}

v1::Criterion CanonicalCriterion(const v1::Criterion& in) {
  v1::Criterion c = in;
  switch (c.kind_case()) {
    case v1::Criterion::kDeceased:
      c.set_deceased(true);
      break;
    case v1::Criterion::kEvent: {
      v1::EventCriterion* e = c.mutable_event();
      CanonicalizeSpec(e->mutable_event());
      if (e->min_count() == 1) e->set_min_count(0);
      break;
    }
    case v1::Criterion::kSequence: {
      v1::SequenceCriterion* s = c.mutable_sequence();
      CanonicalizeSpec(s->mutable_first());
      CanonicalizeSpec(s->mutable_second());
      if (!s->has_within()) s->set_within_days(0);
      break;
    }
    default:
      break;
  }
  return c;
}

using Terms = std::vector<std::pair<std::string, v1::Expr>>;

// In an `and`, replaces every age (or birth_year) criterion by their
// intersection, unless it is empty (then the terms stay: no criterion
// expresses "no one").
void MergeRanges(Terms* terms, v1::Criterion::KindCase kind) {
  auto range_of = [kind](v1::Expr& e) -> v1::IntRange* {
    if (!e.has_criterion() || e.criterion().kind_case() != kind) return nullptr;
    return kind == v1::Criterion::kAge
               ? e.mutable_criterion()->mutable_age()
               : e.mutable_criterion()->mutable_birth_year();
  };
  v1::IntRange merged;
  int count = 0;
  for (auto& t : *terms) {
    const v1::IntRange* r = range_of(t.second);
    if (r == nullptr) continue;
    ++count;
    if (r->has_min() && (!merged.has_min() || r->min() > merged.min())) {
      merged.set_min(r->min());
    }
    if (r->has_max() && (!merged.has_max() || r->max() < merged.max())) {
      merged.set_max(r->max());
    }
  }
  if (count < 2) return;
  if (merged.has_min() && merged.has_max() && merged.min() > merged.max()) {
    return;
  }
  Terms out;
  bool placed = false;
  for (auto& t : *terms) {
    v1::IntRange* r = range_of(t.second);
    if (r == nullptr) {
      out.push_back(std::move(t));
    } else if (!placed) {
      *r = merged;
      t.first = ExprText(t.second);
      out.push_back(std::move(t));
      placed = true;
    }
  }
  *terms = std::move(out);
}

v1::Expr CanonicalExpr(const v1::Expr& e) {
  v1::Expr out;
  switch (e.kind_case()) {
    case v1::Expr::kCriterion:
      *out.mutable_criterion() = CanonicalCriterion(e.criterion());
      return out;
    case v1::Expr::kNot: {
      v1::Expr child = CanonicalExpr(e.not_());
      if (child.has_not_()) return std::move(*child.mutable_not_());
      *out.mutable_not_() = std::move(child);
      return out;
    }
    case v1::Expr::kAnd:
    case v1::Expr::kOr: {
      const bool is_and = e.has_and_();
      const v1::ExprList& list = is_and ? e.and_() : e.or_();
      Terms terms;
      auto add = [&terms](v1::Expr&& t) {
        std::string text = ExprText(t);
        terms.emplace_back(std::move(text), std::move(t));
      };
      for (const v1::Expr& t : list.terms()) {
        v1::Expr c = CanonicalExpr(t);
        const bool same = is_and ? c.has_and_() : c.has_or_();
        if (same) {
          v1::ExprList* sub = is_and ? c.mutable_and_() : c.mutable_or_();
          for (v1::Expr& s : *sub->mutable_terms()) add(std::move(s));
        } else {
          add(std::move(c));
        }
      }
      if (is_and) {
        MergeRanges(&terms, v1::Criterion::kAge);
        MergeRanges(&terms, v1::Criterion::kBirthYear);
      }
      std::sort(terms.begin(), terms.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      terms.erase(std::unique(terms.begin(), terms.end(),
                              [](const auto& a, const auto& b) {
                                return a.first == b.first;
                              }),
                  terms.end());
      if (terms.size() == 1) return std::move(terms[0].second);
      v1::ExprList* out_list = is_and ? out.mutable_and_() : out.mutable_or_();
      for (auto& t : terms) *out_list->add_terms() = std::move(t.second);
      return out;
    }
    case v1::Expr::KIND_NOT_SET:
      break;
  }
  return out;
}

}  // namespace

v1::Query Canonicalize(const v1::Query& query) {
  v1::Query out;
  if (query.has_where()) *out.mutable_where() = CanonicalExpr(query.where());
  for (const v1::Dimension& d : query.group_by()) {
    v1::Dimension* c = out.add_group_by();
    *c = d;
    if (d.kind() != v1::Dimension::AGE_BAND) c->clear_width();
  }
  if (query.has_as_of()) *out.mutable_as_of() = query.as_of();
  out.set_code_matching(query.code_matching());
  return out;
}

absl::string_view DomainKeyword(v1::Domain domain) {
  switch (domain) {
    case v1::DOMAIN_CONDITION:
      return "condition";
    case v1::DOMAIN_DRUG:
      return "drug";
    case v1::DOMAIN_PROCEDURE:
      return "procedure";
    case v1::DOMAIN_MEASUREMENT:
      return "measurement";
    case v1::DOMAIN_VISIT:
      return "visit";
    case v1::DOMAIN_OBSERVATION:
      return "observation";
    default:
      return "";
  }
}

std::string CanonicalText(const v1::Query& query) {
  const v1::Query q = Canonicalize(query);
  std::string out =
      q.has_where() ? ExprText(q.where()) : std::string("<empty expression>");
  if (!q.group_by().empty()) {
    std::vector<std::string> dims;
    for (const v1::Dimension& d : q.group_by()) {
      switch (d.kind()) {
        case v1::Dimension::SEX:
          dims.push_back("sex");
          break;
        case v1::Dimension::AGE_BAND:
          dims.push_back(absl::StrCat("age_band(", d.width(), ")"));
          break;
        case v1::Dimension::SITE:
          dims.push_back("site");
          break;
        default:
          dims.push_back("<invalid dimension>");
          break;
      }
    }
    absl::StrAppend(&out, " group by ", absl::StrJoin(dims, ", "));
  }
  if (q.has_as_of()) absl::StrAppend(&out, " as of ", DateText(q.as_of()));
  // The default (codes mapped) is not written.
  if (q.code_matching() == v1::CODE_MATCHING_EQUIVALENT) {
    absl::StrAppend(&out, " codes equivalent");
  } else if (q.code_matching() == v1::CODE_MATCHING_EXACT) {
    absl::StrAppend(&out, " codes exact");
  } else if (q.code_matching() != v1::CODE_MATCHING_MAPPED) {
    absl::StrAppend(&out, " codes <invalid>");
  }
  return out;
}

absl::StatusOr<std::string> QueryToJson(const v1::Query& query) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status =
      google::protobuf::util::MessageToJsonString(query, &json, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("query to JSON: ", std::string(status.message())));
  }
  return json;
}

absl::StatusOr<v1::Query> QueryFromJson(absl::string_view json) {
  if (json.size() > kMaxJsonBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("query JSON is ", json.size(),
                     " bytes, longer than the limit of ", kMaxJsonBytes));
  }
  v1::Query query;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &query, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid query JSON: ", std::string(status.message())));
  }
  absl::Status valid = ValidateQuery(query);
  if (!valid.ok()) return valid;
  return query;
}

v1::Date UtcDate(absl::Time t) {
  const absl::CivilDay day = absl::ToCivilDay(t, absl::UTCTimeZone());
  v1::Date date;
  date.set_year(static_cast<int32_t>(day.year()));
  date.set_month(day.month());
  date.set_day(day.day());
  return date;
}

void PinReferenceDate(absl::Time now, v1::Query* query) {
  if (!query->has_as_of()) *query->mutable_as_of() = UtcDate(now);
}

}  // namespace passerelle::query
