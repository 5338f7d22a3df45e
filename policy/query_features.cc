#include "policy/query_features.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "query/cells.h"
#include "query/validate.h"
#include "query/vocabulary.h"

namespace passerelle::policy {
namespace {

namespace v1 = ::passerelle::v1;

// Largest breakdown we ever compute exactly; beyond it the count saturates.
constexpr int64_t kCellSaturation = std::numeric_limits<int32_t>::max();

absl::Status AddEvent(const v1::EventSpec& event, QueryFeatures& out) {
  if (event.domain() == v1::DOMAIN_UNSPECIFIED) {
    return absl::InvalidArgumentError("event without a domain");
  }
  std::string domain = DomainName(event.domain());
  if (domain.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown domain value ", static_cast<int>(event.domain())));
  }
  out.domains.insert(domain);
  if (event.codes().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty code set in a ", domain, " criterion"));
  }
  for (const v1::Code& code : event.codes()) {
    if (code.vocabulary().empty()) {
      return absl::InvalidArgumentError("code without a vocabulary");
    }
    out.vocabularies.insert(code.vocabulary());
  }
  if (event.has_value()) out.criteria.insert("value");
  return absl::OkStatus();
}

absl::Status Walk(const v1::Expr& expr, int depth, QueryFeatures& out) {
  // Protobuf parsing already bounds nesting at 100; this guards ASTs built
  // in code.
  if (depth > 200) return absl::InvalidArgumentError("query nested too deep");
  switch (expr.kind_case()) {
    case v1::Expr::kAnd:
      for (const v1::Expr& e : expr.and_().terms()) {
        PASSERELLE_RETURN_IF_ERROR(Walk(e, depth + 1, out));
      }
      return absl::OkStatus();
    case v1::Expr::kOr:
      for (const v1::Expr& e : expr.or_().terms()) {
        PASSERELLE_RETURN_IF_ERROR(Walk(e, depth + 1, out));
      }
      return absl::OkStatus();
    case v1::Expr::kNot:
      out.criteria.insert("not");
      return Walk(expr.not_(), depth + 1, out);
    case v1::Expr::kCriterion:
      break;
    case v1::Expr::KIND_NOT_SET:
      return absl::InvalidArgumentError("empty expression");
  }
  const v1::Criterion& c = expr.criterion();
  switch (c.kind_case()) {
    case v1::Criterion::kSex:
      out.criteria.insert("sex");
      return absl::OkStatus();
    case v1::Criterion::kBirthYear:
      out.criteria.insert("birth_year");
      return absl::OkStatus();
    case v1::Criterion::kAge:
      out.criteria.insert("age");
      return absl::OkStatus();
    case v1::Criterion::kDeceased:
      out.criteria.insert("deceased");
      return absl::OkStatus();
    case v1::Criterion::kEvent:
      out.criteria.insert("event");
      if (c.event().has_window()) out.criteria.insert("window");
      if (c.event().min_count() > 1) out.criteria.insert("count");
      return AddEvent(c.event().event(), out);
    case v1::Criterion::kSequence:
      out.criteria.insert("sequence");
      PASSERELLE_RETURN_IF_ERROR(AddEvent(c.sequence().first(), out));
      return AddEvent(c.sequence().second(), out);
    case v1::Criterion::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("empty criterion");
}

}  // namespace

absl::StatusOr<QueryFeatures> ExtractFeatures(const v1::Query& query) {
  // The query component's own checks first (vocabularies, codes, ranges,
  // limits), so the gateway, the nodes and the policy agree on what is a
  // query; the walk below only adds what the policy needs.
  PASSERELLE_RETURN_IF_ERROR(passerelle::query::ValidateQuery(query));
  QueryFeatures out;
  if (!query.has_where()) {
    return absl::InvalidArgumentError("query without a cohort expression");
  }
  PASSERELLE_RETURN_IF_ERROR(Walk(query.where(), 0, out));
  for (const v1::Dimension& d : query.group_by()) {
    std::string name = DimensionName(d.kind());
    if (name.empty()) {
      return absl::InvalidArgumentError("group by an unspecified dimension");
    }
    if (d.kind() == v1::Dimension::AGE_BAND) {
      if (d.width() < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("age_band width must be at least 1, got ", d.width()));
      }
      out.age_band_widths.push_back(d.width());
    }
    out.dimensions.push_back(std::move(name));
  }
  return out;
}

absl::StatusOr<int64_t> BreakdownCells(const v1::Query& query,
                                       int64_t site_count) {
  int64_t cells = 1;
  for (const v1::Dimension& d : query.group_by()) {
    int64_t n = 0;
    switch (d.kind()) {
      case v1::Dimension::SEX:
        n = 4;
        break;
      case v1::Dimension::AGE_BAND:
        if (d.width() < 1) {
          return absl::InvalidArgumentError(absl::StrCat(
              "age_band width must be at least 1, got ", d.width()));
        }
        n = passerelle::query::AgeBandCount(d.width());
        if (n == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("age_band width ", d.width(), " is out of range"));
        }
        break;
      case v1::Dimension::SITE:
        n = site_count;
        break;
      default:
        return absl::InvalidArgumentError("group by an unspecified dimension");
    }
    if (n == 0) return int64_t{0};
    cells = cells > kCellSaturation / n ? kCellSaturation : cells * n;
  }
  return cells;
}

const std::set<std::string>& KnownDomains() {
  static const auto* kSet = new std::set<std::string>{
      "condition", "drug", "procedure", "measurement", "visit", "observation"};
  return *kSet;
}

const std::set<std::string>& KnownVocabularies() {
  static const auto* kSet = [] {
    auto* set = new std::set<std::string>();
    for (absl::string_view v : passerelle::query::KnownVocabularies()) {
      set->insert(std::string(v));
    }
    return set;
  }();
  return *kSet;
}

const std::set<std::string>& KnownCriteria() {
  static const auto* kSet = new std::set<std::string>{
      "sex",      "birth_year", "age",    "deceased", "event",
      "sequence", "value",      "window", "count",    "not"};
  return *kSet;
}

const std::set<std::string>& KnownDimensions() {
  static const auto* kSet =
      new std::set<std::string>{"sex", "age_band", "site"};
  return *kSet;
}

bool VocabularyCovers(absl::string_view allowed, absl::string_view used) {
  return passerelle::query::VocabularyCovers(allowed, used);
}

std::string DomainName(v1::Domain domain) {
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

std::string DimensionName(v1::Dimension::Kind kind) {
  switch (kind) {
    case v1::Dimension::SEX:
      return "sex";
    case v1::Dimension::AGE_BAND:
      return "age_band";
    case v1::Dimension::SITE:
      return "site";
    default:
      return "";
  }
}

}  // namespace passerelle::policy
