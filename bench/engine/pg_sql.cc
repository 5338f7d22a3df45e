#include "bench/engine/pg_sql.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "query/vocabulary.h"

namespace passerelle::bench {
namespace {

std::string Quote(absl::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += "'";
  return out;
}

std::string DateLiteral(const v1::Date& d) {
  return absl::StrFormat("DATE '%04d-%02d-%02d'", d.year(), d.month(), d.day());
}

// Shortest decimal text that reads back as exactly `v`.
std::string Number(double v) {
  for (int precision = 1; precision <= 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    if (std::stod(s) == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

const char* Op(v1::Comparison op) {
  switch (op) {
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
      return "<>";
  }
}

// The rows of EV matching the spec: one SELECT per code of the set, combined
// with UNION ALL, so that each is one range of the (domain, vocab, code, ...)
// index.
std::string SpecRows(const v1::EventSpec& spec, const std::string& columns,
                     const std::string& extra) {
  std::string common;
  if (spec.has_value()) {
    absl::StrAppend(&common, " AND x.value IS NOT NULL AND x.value ",
                    Op(spec.value().op()), " ", Number(spec.value().number()));
  }
  absl::StrAppend(&common, extra);
  std::vector<std::string> arms;
  for (const v1::Code& c : spec.codes()) {
    std::vector<std::string> vocabs;
    for (absl::string_view v : query::KnownVocabularies()) {
      if (query::VocabularyMatches(c.vocabulary(), v))
        vocabs.push_back(Quote(v));
    }
    const std::string code = query::NormalizeCode(c.vocabulary(), c.code());
    std::string match;
    if (c.prefix()) {
      // LIKE 'CODE%' with the C collation: the planner turns it into an
      // index range and estimates its rows from the statistics (a range
      // with a computed bound and a left() filter was estimated at ~50 rows
      // for 122k, which led to nested loops).
      std::string pattern;
      for (char ch : code) {
        if (ch == '%' || ch == '_' || ch == '\\') pattern += '\\';
        pattern += ch;
      }
      match = absl::StrCat("x.code LIKE ", Quote(pattern + "%"));
    } else {
      match = absl::StrCat("x.code = ", Quote(code));
    }
    arms.push_back(
        absl::StrCat("SELECT ", columns, " FROM EV x WHERE x.domain = ",
                     static_cast<int>(spec.domain()), " AND x.vocab IN (",
                     absl::StrJoin(vocabs, ", "), ") AND ", match, common));
  }
  return absl::StrJoin(arms, " UNION ALL ");
}

std::string Range(const std::string& column, const v1::IntRange& r,
                  bool nonnegative) {
  std::vector<std::string> terms;
  if (r.has_min()) terms.push_back(absl::StrCat(column, " >= ", r.min()));
  if (nonnegative && (!r.has_min() || r.min() < 0)) {
    terms.push_back(absl::StrCat(column, " >= 0"));
  }
  if (r.has_max()) terms.push_back(absl::StrCat(column, " <= ", r.max()));
  if (terms.empty()) return "TRUE";
  return absl::StrCat("(", absl::StrJoin(terms, " AND "), ")");
}

std::string Expr(const v1::Expr& e);

std::string Criterion(const v1::Criterion& c) {
  switch (c.kind_case()) {
    case v1::Criterion::kSex: {
      const char* label = "unknown";
      if (c.sex() == v1::SEX_FEMALE) label = "female";
      if (c.sex() == v1::SEX_MALE) label = "male";
      if (c.sex() == v1::SEX_OTHER) label = "other";
      return absl::StrCat("p.sex = '", label, "'");
    }
    case v1::Criterion::kBirthYear:
      return Range("p.by", c.birth_year(), false);
    case v1::Criterion::kAge:
      // The unborn (born after the reference date) have no age.
      return Range("p.age", c.age(), true);
    case v1::Criterion::kDeceased:
      return "p.pid IN (SELECT pid FROM D)";
    case v1::Criterion::kEvent: {
      const v1::EventCriterion& ev = c.event();
      std::string window;
      if (ev.has_window()) {
        window = absl::StrCat(" AND x.d >= ", DateLiteral(ev.window().start()),
                              " AND x.d <= ", DateLiteral(ev.window().end()));
      }
      const int n = std::max(1, ev.min_count());
      if (n == 1) {
        return absl::StrCat("p.pid IN (", SpecRows(ev.event(), "x.pid", window),
                            ")");
      }
      // At least n distinct event rows.
      return absl::StrCat(
          "p.pid IN (SELECT s.pid FROM (",
          SpecRows(ev.event(), "x.pid, x.eid", window),
          ") s GROUP BY s.pid HAVING COUNT(DISTINCT s.eid) >= ", n, ")");
    }
    case v1::Criterion::kSequence: {
      const v1::SequenceCriterion& s = c.sequence();
      std::string gap = "b.d >= a.d";
      if (s.has_within()) {
        absl::StrAppend(&gap, " AND b.d <= a.d + ", s.within_days());
      }
      return absl::StrCat("p.pid IN (SELECT a.pid FROM (",
                          SpecRows(s.first(), "x.pid, x.d", ""),
                          ") a WHERE EXISTS (SELECT 1 FROM (",
                          SpecRows(s.second(), "x.pid, x.d", ""),
                          ") b WHERE b.pid = a.pid AND ", gap, "))");
    }
    default:
      return "FALSE";
  }
}

std::string Expr(const v1::Expr& e) {
  switch (e.kind_case()) {
    case v1::Expr::kCriterion:
      return Criterion(e.criterion());
    case v1::Expr::kAnd:
    case v1::Expr::kOr: {
      const bool is_and = e.kind_case() == v1::Expr::kAnd;
      const v1::ExprList& list = is_and ? e.and_() : e.or_();
      if (list.terms().empty()) return is_and ? "TRUE" : "FALSE";
      std::vector<std::string> terms;
      for (const v1::Expr& t : list.terms()) terms.push_back(Expr(t));
      return absl::StrCat("(", absl::StrJoin(terms, is_and ? " AND " : " OR "),
                          ")");
    }
    case v1::Expr::kNot:
      // Predicates are never NULL, so NOT is the complement in P.
      return absl::StrCat("(NOT ", Expr(e.not_()), ")");
    default:
      return "FALSE";
  }
}

}  // namespace

std::string PgQueryToSql(const v1::Query& query, int index,
                         absl::string_view site) {
  std::string y = "(SELECT y FROM SNAP)", md = "(SELECT md FROM SNAP)";
  if (query.has_as_of()) {
    y = absl::StrCat(query.as_of().year());
    md = absl::StrCat(query.as_of().month() * 100 + query.as_of().day());
  }
  // Whole years on the reference date: one less before the birthday.
  const std::string persons =
      absl::StrCat("(SELECT pid, sex, by, ", y, " - by - CASE WHEN ", md,
                   " < bmd THEN 1 ELSE 0 END AS age FROM P) p");
  std::vector<std::string> keys;
  bool by_age = false;
  for (const v1::Dimension& dim : query.group_by()) {
    switch (dim.kind()) {
      case v1::Dimension::SEX:
        keys.push_back("p.sex");
        break;
      case v1::Dimension::AGE_BAND: {
        by_age = true;
        const int w = dim.width();
        const int open = (110 + w - 1) / w * w;
        keys.push_back(absl::StrCat("CASE WHEN p.age >= ", open, " THEN '",
                                    open, "+' ELSE (p.age / ", w, " * ", w,
                                    ")::text || '-' || (p.age / ", w, " * ", w,
                                    " + ", w - 1, ")::text END"));
        break;
      }
      case v1::Dimension::SITE:
        keys.push_back(Quote(site));
        break;
      default:
        keys.push_back("'?'");
    }
  }
  std::string where = Expr(query.where());
  if (by_age) where = absl::StrCat("(", where, ") AND p.age >= 0");
  std::string sql = absl::StrCat("SELECT '", index, "'");
  for (const std::string& k : keys) absl::StrAppend(&sql, ", ", k);
  absl::StrAppend(&sql, ", COUNT(*)::text FROM ", persons, " WHERE ", where);
  if (!keys.empty()) {
    absl::StrAppend(&sql, " GROUP BY ");
    for (size_t i = 0; i < keys.size(); ++i) {
      absl::StrAppend(&sql, i ? ", " : "", i + 2);
    }
  }
  return sql;
}

}  // namespace passerelle::bench
