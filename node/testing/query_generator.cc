#include "node/testing/query_generator.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "node/testing/rng.h"

namespace passerelle::node::difftest {

int32_t CivilToDays(int y, int m, int d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void DaysToCivil(int32_t z, int* year, int* month, int* day) {
  z += 719468;
  const int era = (z >= 0 ? z : z - 146096) / 146097;
  const int doe = z - era * 146097;
  const int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int mp = (5 * doy + 2) / 153;
  *day = doy - (153 * mp + 2) / 5 + 1;
  *month = mp < 10 ? mp + 3 : mp - 9;
  *year = yoe + era * 400 + (*month <= 2);
}

namespace {

const char* const kFeatures[] = {
    "sex",
    "birth_year_between",
    "birth_year_cmp",
    "age_between",
    "age_cmp",
    "deceased",
    "condition",
    "drug",
    "procedure",
    "measurement",
    "visit",
    "observation",
    "code_exact",
    "code_prefix",
    "code_set",
    "code_absent",
    "code_cross_domain",
    "icd_dot",
    "icd10_family",
    "icd9_family",
    "vocab_variant",
    "concept",
    "mixed_case",
    "window_between",
    "window_in",
    "at_least",
    "value_eq",
    "value_lt",
    "value_le",
    "value_gt",
    "value_ge",
    "sequence",
    "sequence_within",
    "and",
    "or",
    "not",
    "nested",
    "group_sex",
    "group_age_band",
    "group_both",
    "group_site",
    "as_of",
    "default_date",  // No `as of`: the engine's own date.
};

bool IsIcd10Variant(const std::string& v) {
  return v == "icd10cm" || v == "icd10ca" || v == "cim10";
}
bool IsIcd(const std::string& v) {
  return v == "icd10" || IsIcd10Variant(v) || v == "icd9" || v == "icd9cm";
}

// The contract's vocabularies.
const std::vector<std::string>& Vocabularies() {
  static const auto* const kVocabs = new std::vector<std::string>{
      "icd10", "icd10cm", "icd10ca", "cim10", "icd9", "icd9cm", "atc",
      "ccam",  "snomed",  "rxnorm",  "loinc", "ndc",  "concept"};
  return *kVocabs;
}

bool IsQueryVocabulary(const std::string& v) {
  const auto& all = Vocabularies();
  return std::find(all.begin(), all.end(), v) != all.end();
}

// Whether the parser can read the code as written after "VOCAB:": ICD codes
// are letters and digits, concept ids digits, others start with a letter or
// digit and go on with letters, digits, '.', '-' or '_'.
bool IsWritableCode(const std::string& vocab, const std::string& code) {
  if (code.empty() || code.size() > 40) return false;
  for (size_t i = 0; i < code.size(); ++i) {
    const char c = code[i];
    const bool alnum = absl::ascii_isdigit(c) || (c >= 'A' && c <= 'Z');
    if (vocab == "concept") {
      if (!absl::ascii_isdigit(c)) return false;
    } else if (IsIcd(vocab) || i == 0) {
      if (!alnum) return false;
    } else if (!alnum && c != '.' && c != '-' && c != '_') {
      return false;
    }
  }
  return true;
}

// Text the lexer reads as a number: -?digits[.digits][e[+-]digits].
bool IsNumberText(const std::string& s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  const size_t start = i;
  while (i < s.size() && absl::ascii_isdigit(s[i])) ++i;
  if (i == start) return false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const size_t f = i;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i;
    if (i == f) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    const size_t e = i;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i;
    if (i == e) return false;
  }
  return i == s.size();
}

int32_t ParseIsoDay(const std::string& s, int32_t fallback) {
  int y, m, d;
  if (s.size() == 10 && absl::SimpleAtoi(s.substr(0, 4), &y) &&
      absl::SimpleAtoi(s.substr(5, 2), &m) &&
      absl::SimpleAtoi(s.substr(8, 2), &d)) {
    return CivilToDays(y, m, d);
  }
  return fallback;
}

bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

struct Piece {
  v1::Expr expr;
  std::string text;
  enum Kind { kLeaf, kAnd, kOr, kNot } kind = kLeaf;
};

}  // namespace

class GenerationState {
 public:
  GenerationState(const QueryGenerator& g, uint64_t seed,
                  std::set<std::string>* features)
      : g_(g), rng_(seed), features_(features) {}

  GeneratedQuery Run() {
    GeneratedQuery out;
    Piece where = Expr(0);
    *out.ast.mutable_where() = std::move(where.expr);
    std::string text = where.text;
    if (rng_.Percent(5)) text = absl::StrCat("(", OptSp(), text, OptSp(), ")");
    if (rng_.Percent(5)) text = absl::StrCat(Sp(), text);
    GroupBy(&out.ast, &text);
    if (rng_.Percent(40)) {
      Feature("as_of");
      const v1::Date d = AsOfDate();
      *out.ast.mutable_as_of() = d;
      absl::StrAppend(&text, Sp(), Kw("as"), Sp(), Kw("of"), Sp(), DateText(d));
    } else {
      Feature("default_date");
    }
    if (rng_.Percent(5)) absl::StrAppend(&text, Sp());
    out.text = std::move(text);
    return out;
  }

 private:
  void Feature(const std::string& f) { features_->insert(f); }

  // ---- Surface variation ----

  std::string Kw(const std::string& word) {
    const int r = static_cast<int>(rng_.Below(100));
    if (r < 85) return word;
    Feature("mixed_case");
    if (r < 93) return absl::AsciiStrToUpper(word);
    std::string w = word;
    w[0] = absl::ascii_toupper(w[0]);
    return w;
  }
  std::string Sp() {
    switch (rng_.Weighted({85, 5, 4, 3, 3})) {
      case 0:
        return " ";
      case 1:
        return "  ";
      case 2:
        return "\n";
      case 3:
        return "\t";
      default:
        return " \n  ";
    }
  }
  std::string OptSp() { return rng_.Percent(80) ? "" : Sp(); }
  // The space before a keyword following `text`: whitespace is free, so none
  // is needed after '*', ']' or ')'.
  std::string SpAfter(const std::string& text) {
    const char last = text.empty() ? ' ' : text.back();
    if ((last == '*' || last == ']' || last == ')') && rng_.Percent(15)) {
      return "";
    }
    return Sp();
  }

  static std::string DateText(const v1::Date& d) {
    return absl::StrFormat("%04d-%02d-%02d", d.year(), d.month(), d.day());
  }
  static v1::Date ToDate(int32_t day) {
    v1::Date d;
    int y, m, dd;
    DaysToCivil(day, &y, &m, &dd);
    d.set_year(y);
    d.set_month(m);
    d.set_day(dd);
    return d;
  }

  // ---- Expressions ----

  Piece Expr(int depth) {
    static const int kLeafPercent[] = {35, 55, 75, 100};
    if (depth >= 3 || criteria_ >= 8 ||
        rng_.Percent(kLeafPercent[std::min(depth, 3)])) {
      Piece p;
      p.text = Criterion(p.expr.mutable_criterion());
      ++criteria_;
      return p;
    }
    if (depth >= 1) Feature("nested");
    Piece p;
    const size_t kind = rng_.Weighted({40, 35, 25});
    switch (kind) {
      case 0:
      case 1: {
        const bool is_and = kind == 0;
        p.kind = is_and ? Piece::kAnd : Piece::kOr;
        Feature(is_and ? "and" : "or");
        v1::ExprList* list =
            is_and ? p.expr.mutable_and_() : p.expr.mutable_or_();
        const int n = 2 + static_cast<int>(rng_.Weighted({60, 25, 15}));
        std::vector<std::string> texts;
        for (int i = 0; i < n; ++i) {
          Piece child = Expr(depth + 1);
          texts.push_back(Wrap(child, is_and ? Piece::kAnd : Piece::kOr));
          *list->add_terms() = std::move(child.expr);
        }
        p.text = texts[0];
        for (size_t i = 1; i < texts.size(); ++i) {
          // Whitespace is free: none is needed next to a parenthesis.
          const char last = p.text.back();
          const bool tight_left =
              (last == ')' || last == ']' || last == '*') && rng_.Percent(15);
          const bool tight_right = texts[i][0] == '(' && rng_.Percent(15);
          absl::StrAppend(&p.text, tight_left ? "" : Sp(),
                          Kw(is_and ? "and" : "or"), tight_right ? "" : Sp(),
                          texts[i]);
        }
        return p;
      }
      default: {
        Feature("not");
        p.kind = Piece::kNot;
        Piece child = Expr(depth + 1);
        const std::string inner = Wrap(child, Piece::kNot);
        p.text = absl::StrCat(
            Kw("not"), inner[0] == '(' && rng_.Percent(20) ? "" : Sp(), inner);
        *p.expr.mutable_not_() = std::move(child.expr);
        return p;
      }
    }
  }

  // The child's text inside a parent of kind `parent`: parentheses where the
  // grammar needs them to keep the tree (a nested and/or list), sometimes
  // where they change nothing.
  std::string Wrap(const Piece& child, Piece::Kind parent) {
    bool parens = false;
    if (child.kind == Piece::kAnd) {
      parens = parent != Piece::kOr || rng_.Percent(30);
    } else if (child.kind == Piece::kOr) {
      parens = true;
    } else {
      parens = rng_.Percent(10);
    }
    if (!parens) return child.text;
    return absl::StrCat("(", OptSp(), child.text, OptSp(), ")");
  }

  // ---- Criteria ----

  std::string Criterion(v1::Criterion* c) {
    switch (rng_.Weighted({46, 11, 9, 9, 14, 8})) {
      case 0:
        return Event(c->mutable_event());
      case 1:
        return Sequence(c->mutable_sequence());
      case 2: {
        Feature("sex");
        static const char* const kSex[] = {"female", "male", "other",
                                           "unknown"};
        const int s = static_cast<int>(rng_.Weighted({40, 40, 10, 10}));
        c->set_sex(static_cast<v1::Sex>(s + 1));
        return absl::StrCat(Kw("sex"), OptSp(), "=", OptSp(), Kw(kSex[s]));
      }
      case 3:
        return Range("birth_year", g_.profile_.min_birth_year - 3,
                     g_.profile_.max_birth_year + 3, 60,
                     c->mutable_birth_year());
      case 4:
        return Range("age", 0, 150, 0, c->mutable_age());
      default:
        Feature("deceased");
        c->set_deceased(true);
        return Kw("deceased");
    }
  }

  // `WORD between A and B` or `WORD CMP N` over [lo, hi].
  std::string Range(const std::string& word, int lo, int hi, int span,
                    v1::IntRange* r) {
    if (span == 0) span = 40;
    if (rng_.Percent(word == "age" ? 80 : 55)) {
      Feature(word + "_between");
      int a, b;
      if (word == "age") {
        a = static_cast<int>(rng_.Weighted({70, 20, 10})) == 0
                ? static_cast<int>(rng_.Range(0, 90))
                : static_cast<int>(rng_.Range(0, 125));
        b = std::min(hi, a + static_cast<int>(rng_.Range(0, span)));
      } else {
        a = static_cast<int>(rng_.Range(lo, hi));
        b = std::min(9999, a + static_cast<int>(rng_.Range(0, span)));
      }
      r->set_min(a);
      r->set_max(b);
      return absl::StrCat(Kw(word), Sp(), Kw("between"), Sp(), a, Sp(),
                          Kw("and"), Sp(), b);
    }
    Feature(word + "_cmp");
    static const char* const kOps[] = {"=", "<", "<=", ">", ">="};
    const int op = static_cast<int>(rng_.Below(5));
    int n = word == "age" ? static_cast<int>(rng_.Range(0, 120))
                          : static_cast<int>(rng_.Range(lo, hi));
    if (word == "age" && op == 1) n = std::max(n, 1);    // `< 0`: no one.
    if (word == "age" && op == 3) n = std::min(n, 149);  // `> 150`: no one.
    switch (op) {
      case 0:
        r->set_min(n);
        r->set_max(n);
        break;
      case 1:
        r->set_max(n - 1);
        break;
      case 2:
        r->set_max(n);
        break;
      case 3:
        r->set_min(n + 1);
        break;
      default:
        r->set_min(n);
    }
    return absl::StrCat(Kw(word), OptSp(), kOps[op], OptSp(), n);
  }

  std::string Event(v1::EventCriterion* e) {
    std::string text = Spec(e->mutable_event());
    if (rng_.Percent(35)) {
      v1::Window* w = e->mutable_window();
      if (rng_.Percent(50)) {
        Feature("window_between");
        const int32_t a = static_cast<int32_t>(
            rng_.Range(g_.min_day_ - 400, g_.max_day_ + 200));
        const int32_t b =
            rng_.Percent(5) ? a : a + static_cast<int32_t>(rng_.Range(0, 2500));
        *w->mutable_start() = ToDate(a);
        *w->mutable_end() = ToDate(b);
        absl::StrAppend(&text, SpAfter(text), Kw("between"), Sp(),
                        DateText(w->start()), Sp(), Kw("and"), Sp(),
                        DateText(w->end()));
      } else {
        Feature("window_in");
        int y0, y1, m, d;
        DaysToCivil(g_.min_day_, &y0, &m, &d);
        DaysToCivil(g_.max_day_, &y1, &m, &d);
        const int year = static_cast<int>(rng_.Range(y0 - 1, y1 + 1));
        w->mutable_start()->set_year(year);
        w->mutable_start()->set_month(1);
        w->mutable_start()->set_day(1);
        w->mutable_end()->set_year(year);
        w->mutable_end()->set_month(12);
        w->mutable_end()->set_day(31);
        if (rng_.Percent(80)) {
          absl::StrAppend(&text, SpAfter(text), Kw("in"), Sp(), year);
        } else {
          absl::StrAppend(&text, SpAfter(text), Kw("between"), Sp(),
                          DateText(w->start()), Sp(), Kw("and"), Sp(),
                          DateText(w->end()));
        }
      }
    }
    if (rng_.Percent(30)) {
      Feature("at_least");
      static const int kCounts[] = {1, 2, 3, 4, 5, 8};
      const int n = kCounts[rng_.Weighted({15, 40, 25, 10, 6, 4})];
      e->set_min_count(n);
      const bool singular = n == 1 ? rng_.Percent(60) : rng_.Percent(3);
      absl::StrAppend(&text, SpAfter(text), Kw("at"), Sp(), Kw("least"), Sp(),
                      n, Sp(), Kw(singular ? "time" : "times"));
    }
    return text;
  }

  std::string Sequence(v1::SequenceCriterion* s) {
    Feature("sequence");
    std::string first = Spec(s->mutable_first());
    std::string second;
    if (rng_.Percent(10)) {
      // The same events on both sides: one event can be its own successor.
      *s->mutable_second() = s->first();
      second = first;
    } else {
      second = Spec(s->mutable_second());
    }
    std::string text =
        absl::StrCat(first, SpAfter(first), Kw("before"), Sp(), second);
    if (rng_.Percent(60)) {
      Feature("sequence_within");
      static const int kDays[] = {0, 1, 2, 7, 30, 90, 180, 365, 730, 3650};
      int n = rng_.Percent(90) ? kDays[rng_.Below(10)]
                               : static_cast<int>(rng_.Range(0, 36600));
      s->set_has_within(true);
      s->set_within_days(n);
      const bool singular = n <= 1 ? rng_.Percent(50) : rng_.Percent(3);
      absl::StrAppend(&text, SpAfter(text), Kw("within"), Sp(), n, Sp(),
                      Kw(singular ? "day" : "days"));
    }
    return text;
  }

  // DOMAIN codeset [value CMP NUMBER]
  std::string Spec(v1::EventSpec* spec) {
    static const char* const kDomains[] = {"",           "condition",   "drug",
                                           "procedure",  "measurement", "visit",
                                           "observation"};
    int domain;
    std::vector<int> present;
    for (const auto& [d, codes] : g_.by_domain_) {
      if (!codes.empty()) present.push_back(d);
    }
    if (present.empty() || rng_.Percent(4)) {
      domain = 1 + static_cast<int>(rng_.Below(6));
    } else {
      domain = rng_.Pick(present);
    }
    spec->set_domain(static_cast<v1::Domain>(domain));
    Feature(kDomains[domain]);
    const int n = 1 + static_cast<int>(rng_.Weighted({62, 24, 9, 5}));
    if (n > 1) Feature("code_set");
    std::vector<std::string> codes;
    for (int i = 0; i < n; ++i)
      codes.push_back(Code(domain, spec->add_codes()));
    std::string text = absl::StrCat(Kw(kDomains[domain]), Sp());
    if (n == 1 && rng_.Percent(85)) {
      text += codes[0];
    } else {
      std::string sep =
          absl::StrCat(OptSp(), ",", rng_.Percent(70) ? " " : OptSp());
      absl::StrAppend(&text, "[", OptSp(), absl::StrJoin(codes, sep), OptSp(),
                      "]");
    }
    if ((domain == v1::DOMAIN_MEASUREMENT ||
         domain == v1::DOMAIN_OBSERVATION) &&
        rng_.Percent(45)) {
      static const char* const kOps[] = {"=", "<", "<=", ">", ">="};
      static const char* const kNames[] = {"value_eq", "value_lt", "value_le",
                                           "value_gt", "value_ge"};
      const int op = static_cast<int>(rng_.Below(5));
      Feature(kNames[op]);
      const std::string number = Number(*spec);
      double v = 0;
      // Number() writes a literal the lexer reads, so it always parses.
      if (!absl::SimpleAtod(number, &v)) std::abort();
      spec->mutable_value()->set_op(static_cast<v1::Comparison>(op + 1));
      spec->mutable_value()->set_number(v);
      absl::StrAppend(&text, SpAfter(text), Kw("value"), OptSp(), kOps[op],
                      OptSp(), number);
    }
    return text;
  }

  // A number near the values of the spec's codes, as text the lexer reads.
  std::string Number(const v1::EventSpec& spec) {
    std::vector<std::string> values;
    for (const v1::Code& c : spec.codes()) {
      for (size_t i : g_.queryable_) {
        const ProfileCode& pc = g_.profile_.codes[i];
        const bool match = c.prefix() ? absl::StartsWith(pc.code, c.code())
                                      : pc.code == c.code();
        if (pc.domain == spec.domain() && match && !pc.values.empty()) {
          values.insert(values.end(), pc.values.begin(), pc.values.end());
        }
      }
    }
    if (!values.empty() && rng_.Percent(85)) {
      std::string v = rng_.Pick(values);
      double x = 0;
      if (!absl::SimpleAtod(v, &x)) x = 0;
      if (rng_.Percent(25)) {
        x += static_cast<double>(rng_.Range(-20, 20)) / 4.0;
        return FormatSqlNumber(x);
      }
      return IsNumberText(v) ? v : FormatSqlNumber(x);
    }
    const double x = static_cast<double>(rng_.Range(-80, 3000)) /
                     (rng_.Percent(50) ? 1.0 : 10.0);
    std::string s = FormatSqlNumber(x);
    if (x == static_cast<int64_t>(x) && rng_.Percent(10) &&
        s.find('e') == std::string::npos) {
      s += ".0";
    }
    return s;
  }

  // One code of a code set, mostly from the data.
  std::string Code(int domain, v1::Code* code) {
    std::string vocab, value;
    const int r = static_cast<int>(rng_.Below(100));
    auto it = g_.by_domain_.find(domain);
    const bool has = it != g_.by_domain_.end() && !it->second.empty();
    const ProfileCode* pc = nullptr;
    if (r < 74 && has) {
      pc = &g_.profile_.codes[rng_.Pick(it->second)];
    } else if (r < 82 && !g_.queryable_.empty()) {
      Feature("code_cross_domain");
      pc = &g_.profile_.codes[rng_.Pick(g_.queryable_)];
    }
    if (pc != nullptr) {
      value = pc->code;
      vocab = pc->vocabulary;
      if (IsIcd10Variant(vocab) || vocab == "icd10") {
        const int v = static_cast<int>(rng_.Weighted({50, 40, 10}));
        if (v == 0) {
          vocab = "icd10";
        } else if (v == 2) {
          static const char* const kVariants[] = {"icd10cm", "icd10ca",
                                                  "cim10"};
          vocab = kVariants[rng_.Below(3)];
        }
      } else if (vocab == "icd9cm" || vocab == "icd9") {
        vocab = rng_.Percent(50) ? "icd9" : "icd9cm";
      }
    } else {
      Feature("code_absent");
      vocab = rng_.Pick(Vocabularies());
      value = AbsentCode(vocab);
    }
    if (vocab == "icd10") Feature("icd10_family");
    if (vocab == "icd9") Feature("icd9_family");
    if (IsIcd10Variant(vocab)) Feature("vocab_variant");
    if (vocab == "concept") Feature("concept");
    const bool prefix = rng_.Percent(35);
    if (prefix) {
      Feature("code_prefix");
      // Mostly a few characters off the end (a code family; one digit for
      // concept ids, which are not hierarchical); sometimes a short prefix
      // matching a whole chapter.
      const int64_t len = static_cast<int64_t>(value.size());
      const int64_t cut = vocab == "concept" ? 1 : 3;
      const int64_t keep =
          rng_.Percent(92) ? rng_.Range(std::max<int64_t>(1, len - cut), len)
                           : rng_.Range(1, len);
      value = value.substr(0, static_cast<size_t>(keep));
    } else {
      Feature("code_exact");
    }
    code->set_vocabulary(vocab);
    code->set_code(value);
    code->set_prefix(prefix);
    // The text: vocabulary in any case, optional spaces around ':', ICD dots.
    std::string written = value;
    if (IsIcd(vocab) && written.size() > 3 && rng_.Percent(45)) {
      Feature("icd_dot");
      size_t at = rng_.Percent(80) ? 3 : 1 + rng_.Below(written.size() - 1);
      std::string dot = ".";
      if (rng_.Percent(12)) {
        dot = absl::ascii_isdigit(written[at]) ? " . " : " .";
      }
      written = absl::StrCat(written.substr(0, at), dot, written.substr(at));
    } else if (IsIcd(vocab) && prefix && rng_.Percent(4)) {
      Feature("icd_dot");
      written += ".";
    }
    if (rng_.Percent(20)) {
      Feature("mixed_case");
      written = absl::AsciiStrToLower(written);
    }
    std::string colon = rng_.Percent(90) ? ":" : absl::StrCat(Sp(), ":", Sp());
    std::string star = prefix ? (rng_.Percent(90) ? "*" : " *") : "";
    return absl::StrCat(Kw(vocab), colon, written, star);
  }

  std::string AbsentCode(const std::string& vocab) {
    // Sometimes a present code with a suffix, otherwise a made-up one.
    if (rng_.Percent(30) && !g_.queryable_.empty()) {
      const ProfileCode& pc = g_.profile_.codes[rng_.Pick(g_.queryable_)];
      std::string c = pc.code + "9";
      if (IsWritableCode(vocab, c)) return c;
    }
    const int64_t n = rng_.Range(100, 999);
    if (IsIcd(vocab)) return absl::StrCat(rng_.Percent(50) ? "U" : "Q", n);
    if (vocab == "atc") return absl::StrCat("Z", n % 100, "ZZ", n % 100);
    if (vocab == "loinc") return absl::StrCat(n, "99-", n % 10);
    if (vocab == "ccam") return absl::StrCat("ZZZZ", n);
    if (vocab == "concept") return absl::StrCat(rng_.Range(1, 2147483647));
    return absl::StrCat(n, rng_.Range(10000, 99999));
  }

  // ---- group by, as of ----

  void GroupBy(v1::Query* q, std::string* text) {
    std::vector<v1::Dimension> dims;
    auto age_band = [&] {
      static const int kWidths[] = {10, 5, 20, 1, 7, 25, 50, 110, 111, 120};
      v1::Dimension d;
      d.set_kind(v1::Dimension::AGE_BAND);
      d.set_width(
          rng_.Percent(12)
              ? static_cast<int>(rng_.Range(1, 120))
              : kWidths[rng_.Weighted({30, 10, 15, 5, 8, 5, 5, 3, 3, 3})]);
      return d;
    };
    v1::Dimension sex;
    sex.set_kind(v1::Dimension::SEX);
    switch (rng_.Weighted({40, 18, 20, 17})) {
      case 1:
        dims = {sex};
        break;
      case 2:
        dims = {age_band()};
        break;
      case 3:
        dims = {sex, age_band()};
        if (rng_.Percent(50)) std::swap(dims[0], dims[1]);
        break;
      default:
        break;
    }
    if (rng_.Percent(5)) {
      v1::Dimension site;
      site.set_kind(v1::Dimension::SITE);
      dims.insert(dims.begin() + rng_.Below(dims.size() + 1), site);
    }
    if (dims.empty()) return;
    std::vector<std::string> texts;
    bool has_sex = false, has_age = false;
    for (const v1::Dimension& d : dims) {
      *q->add_group_by() = d;
      switch (d.kind()) {
        case v1::Dimension::SEX:
          has_sex = true;
          texts.push_back(Kw("sex"));
          break;
        case v1::Dimension::AGE_BAND:
          has_age = true;
          texts.push_back(absl::StrCat(Kw("age_band"), OptSp(), "(", OptSp(),
                                       d.width(), OptSp(), ")"));
          break;
        default:
          Feature("group_site");
          texts.push_back(Kw("site"));
      }
    }
    if (has_sex && has_age) {
      Feature("group_both");
    } else if (has_sex) {
      Feature("group_sex");
    } else if (has_age) {
      Feature("group_age_band");
    }
    std::string sep =
        absl::StrCat(OptSp(), ",", rng_.Percent(80) ? " " : OptSp());
    absl::StrAppend(text, Sp(), Kw("group"), Sp(), Kw("by"), Sp(),
                    absl::StrJoin(texts, sep));
  }

  v1::Date AsOfDate() {
    int y0, y1, m, d;
    DaysToCivil(g_.min_day_, &y0, &m, &d);
    DaysToCivil(g_.max_day_, &y1, &m, &d);
    switch (rng_.Weighted({55, 15, 10, 12, 8})) {
      case 0:
        return ToDate(
            static_cast<int32_t>(rng_.Range(g_.min_day_, g_.max_day_)));
      case 1: {
        // Around a leap day, where 29 February birthdays turn a year older.
        int year = static_cast<int>(rng_.Range(y0, y1));
        const int kind = static_cast<int>(rng_.Below(3));
        while (kind == 1 && !IsLeap(year)) ++year;
        v1::Date date;
        date.set_year(year);
        date.set_month(kind == 2 ? 3 : 2);
        date.set_day(kind == 0 ? 28 : kind == 1 ? 29 : 1);
        return date;
      }
      case 2:
        // Before the data: many patients not yet born.
        return ToDate(
            CivilToDays(static_cast<int>(rng_.Range(
                            g_.profile_.min_birth_year,
                            std::max(g_.profile_.min_birth_year, y0))),
                        static_cast<int>(rng_.Range(1, 12)),
                        static_cast<int>(rng_.Range(1, 28))));
      case 3: {
        // The birthday of many: 1 July (year-only births) and its eve.
        v1::Date date;
        date.set_year(static_cast<int>(rng_.Range(y0, y1)));
        date.set_month(rng_.Percent(50) ? 7 : 6);
        date.set_day(date.month() == 7 ? 1 : 30);
        return date;
      }
      default:
        return ToDate(
            static_cast<int32_t>(rng_.Range(g_.max_day_, g_.max_day_ + 20000)));
    }
  }

  const QueryGenerator& g_;
  Rng rng_;
  std::set<std::string>* features_;
  int criteria_ = 0;
};

QueryGenerator::QueryGenerator(DataProfile profile)
    : profile_(std::move(profile)) {
  for (size_t i = 0; i < profile_.codes.size(); ++i) {
    const ProfileCode& c = profile_.codes[i];
    if (!IsQueryVocabulary(c.vocabulary) ||
        !IsWritableCode(c.vocabulary, c.code)) {
      continue;
    }
    by_domain_[static_cast<int>(c.domain)].push_back(i);
    queryable_.push_back(i);
  }
  min_day_ = ParseIsoDay(profile_.min_date, CivilToDays(2010, 1, 1));
  max_day_ = ParseIsoDay(profile_.max_date, CivilToDays(2024, 12, 31));
  if (max_day_ < min_day_) std::swap(min_day_, max_day_);
}

GeneratedQuery QueryGenerator::Generate(uint64_t seed) const {
  std::set<std::string> features;
  GenerationState state(*this, seed, &features);
  GeneratedQuery q = state.Run();
  q.features = std::move(features);
  return q;
}

const std::vector<std::string>& QueryGenerator::AllFeatures() {
  static const auto* const kAll =
      new std::vector<std::string>(std::begin(kFeatures), std::end(kFeatures));
  return *kAll;
}

}  // namespace passerelle::node::difftest
