#include "query/validate.h"

#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "query/limits.h"
#include "query/vocabulary.h"

namespace passerelle::query {
namespace {

namespace v1 = ::passerelle::v1;

absl::Status Error(const std::string& path, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
}

std::string Field(const std::string& path, absl::string_view name) {
  return path.empty() ? std::string(name) : absl::StrCat(path, ".", name);
}

std::string Index(const std::string& path, int i) {
  return absl::StrCat(path, "[", i, "]");
}

// An untrusted string, escaped and shortened for an error message.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 48;
  if (s.size() > kMax) {
    return absl::StrCat("\"", absl::CEscape(s.substr(0, kMax)), "...\"");
  }
  return absl::StrCat("\"", absl::CEscape(s), "\"");
}

std::string DateText(const v1::Date& d) {
  return absl::StrFormat("%04d-%02d-%02d", d.year(), d.month(), d.day());
}

// Counts what the size limits bound while walking the tree.
struct Budget {
  int criteria = 0;
  int nodes = 0;
  int codes = 0;
};

absl::Status ValidateDate(const std::string& path, const v1::Date& d) {
  if (!IsValidDate(d)) {
    return Error(path, absl::StrCat("invalid date ", DateText(d)));
  }
  return absl::OkStatus();
}

absl::Status ValidateRange(const std::string& path, const v1::IntRange& r,
                           int lo, int hi) {
  if (!r.has_min() && !r.has_max()) {
    return Error(path, "range has neither min nor max");
  }
  if (r.has_min() && (r.min() < lo || r.min() > hi)) {
    return Error(Field(path, "min"),
                 absl::StrCat(r.min(), " is outside [", lo, ", ", hi, "]"));
  }
  if (r.has_max() && (r.max() < lo || r.max() > hi)) {
    return Error(Field(path, "max"),
                 absl::StrCat(r.max(), " is outside [", lo, ", ", hi, "]"));
  }
  if (r.has_min() && r.has_max() && r.min() > r.max()) {
    return Error(path, absl::StrCat("inverted range: min ", r.min(),
                                    " is greater than max ", r.max()));
  }
  return absl::OkStatus();
}

absl::Status ValidateEventSpec(const std::string& path, const v1::EventSpec& e,
                               Budget& budget) {
  if (e.domain() <= v1::DOMAIN_UNSPECIFIED ||
      e.domain() > v1::DOMAIN_OBSERVATION) {
    return Error(Field(path, "domain"),
                 absl::StrCat("invalid domain ", static_cast<int>(e.domain())));
  }
  if (e.codes().empty()) return Error(Field(path, "codes"), "empty code set");
  budget.codes += e.codes_size();
  if (budget.codes > kMaxCodes) {
    return Error(Field(path, "codes"),
                 absl::StrCat("more than ", kMaxCodes, " codes in the query"));
  }
  for (int i = 0; i < e.codes_size(); ++i) {
    const v1::Code& c = e.codes(i);
    const std::string p = Index(Field(path, "codes"), i);
    if (!IsKnownVocabulary(c.vocabulary())) {
      return Error(p,
                   absl::StrCat("unknown vocabulary ", Quote(c.vocabulary())));
    }
    if (c.code().empty()) return Error(p, "empty code");
    if (c.code().size() > kMaxCodeLength) {
      return Error(
          p, absl::StrCat("code longer than ", kMaxCodeLength, " characters"));
    }
    const std::string normal = NormalizeCode(c.vocabulary(), c.code());
    if (normal != c.code()) {
      return Error(
          p, absl::StrCat("code ", Quote(c.code()),
                          " is not normalised (expected ", Quote(normal), ")"));
    }
    if (!IsValidCode(c.vocabulary(), c.code())) {
      return Error(p, absl::StrCat("malformed ", c.vocabulary(), " code ",
                                   Quote(c.code())));
    }
  }
  if (e.has_value()) {
    const std::string p = Field(path, "value");
    if (e.domain() != v1::DOMAIN_MEASUREMENT &&
        e.domain() != v1::DOMAIN_OBSERVATION) {
      return Error(p,
                   "a value filter applies only to measurement or "
                   "observation");
    }
    if (e.value().op() <= v1::COMPARISON_UNSPECIFIED ||
        e.value().op() > v1::COMPARISON_GE) {
      return Error(Field(p, "op"),
                   absl::StrCat("invalid comparison ",
                                static_cast<int>(e.value().op())));
    }
    if (!std::isfinite(e.value().number())) {
      return Error(Field(p, "number"), "not a finite number");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCriterion(const std::string& path, const v1::Criterion& c,
                               Budget& budget) {
  if (++budget.criteria > kMaxCriteria) {
    return Error(path, absl::StrCat("more than ", kMaxCriteria,
                                    " criteria in the query"));
  }
  switch (c.kind_case()) {
    case v1::Criterion::kSex:
      if (c.sex() <= v1::SEX_UNSPECIFIED || c.sex() > v1::SEX_UNKNOWN) {
        return Error(Field(path, "sex"),
                     absl::StrCat("invalid sex ", static_cast<int>(c.sex())));
      }
      return absl::OkStatus();
    case v1::Criterion::kBirthYear:
      return ValidateRange(Field(path, "birth_year"), c.birth_year(), kMinYear,
                           kMaxYear);
    case v1::Criterion::kAge:
      return ValidateRange(Field(path, "age"), c.age(), kMinAge, kMaxAge);
    case v1::Criterion::kDeceased:
      if (!c.deceased()) return Error(Field(path, "deceased"), "must be true");
      return absl::OkStatus();
    case v1::Criterion::kEvent: {
      const std::string p = Field(path, "event");
      const v1::EventCriterion& e = c.event();
      if (!e.has_event()) return Error(Field(p, "event"), "missing event");
      PASSERELLE_RETURN_IF_ERROR(
          ValidateEventSpec(Field(p, "event"), e.event(), budget));
      if (e.has_window()) {
        const std::string w = Field(p, "window");
        if (!e.window().has_start()) return Error(Field(w, "start"), "missing");
        if (!e.window().has_end()) return Error(Field(w, "end"), "missing");
        PASSERELLE_RETURN_IF_ERROR(
            ValidateDate(Field(w, "start"), e.window().start()));
        PASSERELLE_RETURN_IF_ERROR(
            ValidateDate(Field(w, "end"), e.window().end()));
        if (CompareDates(e.window().start(), e.window().end()) > 0) {
          return Error(
              w, absl::StrCat("inverted window: start ",
                              DateText(e.window().start()), " is after end ",
                              DateText(e.window().end())));
        }
      }
      if (e.min_count() < 0 || e.min_count() > kMaxCount) {
        return Error(
            Field(p, "min_count"),
            absl::StrCat(e.min_count(), " is outside [0, ", kMaxCount, "]"));
      }
      return absl::OkStatus();
    }
    case v1::Criterion::kSequence: {
      const std::string p = Field(path, "sequence");
      const v1::SequenceCriterion& s = c.sequence();
      if (!s.has_first()) return Error(Field(p, "first"), "missing event");
      if (!s.has_second()) return Error(Field(p, "second"), "missing event");
      PASSERELLE_RETURN_IF_ERROR(
          ValidateEventSpec(Field(p, "first"), s.first(), budget));
      PASSERELLE_RETURN_IF_ERROR(
          ValidateEventSpec(Field(p, "second"), s.second(), budget));
      if (s.has_within()) {
        if (s.within_days() < 0 || s.within_days() > kMaxWithinDays) {
          return Error(Field(p, "within_days"),
                       absl::StrCat(s.within_days(), " is outside [0, ",
                                    kMaxWithinDays, "]"));
        }
      } else if (s.within_days() != 0) {
        return Error(Field(p, "within_days"), "set without has_within");
      }
      return absl::OkStatus();
    }
    case v1::Criterion::KIND_NOT_SET:
      break;
  }
  return Error(path, "empty criterion");
}

absl::Status ValidateExpr(const std::string& path, const v1::Expr& e, int depth,
                          Budget& budget) {
  if (++budget.nodes > kMaxExprNodes) {
    return Error(path, absl::StrCat("more than ", kMaxExprNodes,
                                    " expression nodes in the query"));
  }
  switch (e.kind_case()) {
    case v1::Expr::kCriterion:
      return ValidateCriterion(Field(path, "criterion"), e.criterion(), budget);
    case v1::Expr::kAnd:
    case v1::Expr::kOr: {
      const bool is_and = e.kind_case() == v1::Expr::kAnd;
      if (depth >= kMaxDepth) {
        return Error(
            path, absl::StrCat("nested more than ", kMaxDepth, " levels deep"));
      }
      const v1::ExprList& list = is_and ? e.and_() : e.or_();
      const std::string p = Field(path, is_and ? "and" : "or");
      if (list.terms().empty()) return Error(p, "empty term list");
      for (int i = 0; i < list.terms_size(); ++i) {
        PASSERELLE_RETURN_IF_ERROR(ValidateExpr(
            Index(Field(p, "terms"), i), list.terms(i), depth + 1, budget));
      }
      return absl::OkStatus();
    }
    case v1::Expr::kNot:
      if (depth >= kMaxDepth) {
        return Error(
            path, absl::StrCat("nested more than ", kMaxDepth, " levels deep"));
      }
      return ValidateExpr(Field(path, "not"), e.not_(), depth + 1, budget);
    case v1::Expr::KIND_NOT_SET:
      break;
  }
  return Error(path, "empty expression (none of criterion, and, or, not)");
}

}  // namespace

bool IsValidDate(const v1::Date& d) {
  if (d.year() < kMinYear || d.year() > kMaxYear) return false;
  if (d.month() < 1 || d.month() > 12) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  const int y = d.year();
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  const int days = kDays[d.month() - 1] + (d.month() == 2 && leap ? 1 : 0);
  return d.day() >= 1 && d.day() <= days;
}

int CompareDates(const v1::Date& a, const v1::Date& b) {
  if (a.year() != b.year()) return a.year() < b.year() ? -1 : 1;
  if (a.month() != b.month()) return a.month() < b.month() ? -1 : 1;
  if (a.day() != b.day()) return a.day() < b.day() ? -1 : 1;
  return 0;
}

absl::Status ValidateQuery(const v1::Query& query) {
  if (!query.has_where()) return Error("where", "missing expression");
  Budget budget;
  PASSERELLE_RETURN_IF_ERROR(ValidateExpr("where", query.where(), 0, budget));
  bool seen[4] = {false, false, false, false};
  for (int i = 0; i < query.group_by_size(); ++i) {
    const v1::Dimension& d = query.group_by(i);
    const std::string p = Index("group_by", i);
    if (d.kind() <= v1::Dimension::KIND_UNSPECIFIED ||
        d.kind() > v1::Dimension::SITE) {
      return Error(Field(p, "kind"), absl::StrCat("invalid dimension kind ",
                                                  static_cast<int>(d.kind())));
    }
    if (seen[d.kind()]) {
      return Error(p, absl::StrCat("dimension \"",
                                   absl::AsciiStrToLower(
                                       v1::Dimension::Kind_Name(d.kind())),
                                   "\" repeated"));
    }
    seen[d.kind()] = true;
    if (d.kind() == v1::Dimension::AGE_BAND) {
      if (d.width() < kMinBandWidth || d.width() > kMaxBandWidth) {
        return Error(Field(p, "width"),
                     absl::StrCat("age band width ", d.width(), " is outside [",
                                  kMinBandWidth, ", ", kMaxBandWidth, "]"));
      }
    } else if (d.width() != 0) {
      return Error(Field(p, "width"), "set on a dimension other than AGE_BAND");
    }
  }
  if (query.has_as_of()) {
    PASSERELLE_RETURN_IF_ERROR(ValidateDate("as_of", query.as_of()));
  }
  if (!v1::CodeMatching_IsValid(query.code_matching())) {
    return Error("code_matching",
                 absl::StrCat("unknown code matching ", query.code_matching(),
                              " (mapped, equivalent or exact)"));
  }
  return absl::OkStatus();
}

}  // namespace passerelle::query
