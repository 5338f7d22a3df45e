// A hand-written lexer and recursive-descent parser. The lexer is on demand
// (one token of look-ahead) because codes after "VOCAB:" are scanned with
// their own rules (LOINC "4548-4", ICD "E11 . 9").
#include "query/parser.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "query/limits.h"
#include "query/validate.h"
#include "query/vocabulary.h"

namespace passerelle::query {
namespace {

namespace v1 = ::passerelle::v1;

enum class Tok {
  kEnd,
  kWord,
  kInt,
  kNumber,
  kDate,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kComma,
  kColon,
  kStar,
  kEq,
  kLt,
  kLe,
  kGt,
  kGe,
  kBad,
};

struct Token {
  Tok kind = Tok::kEnd;
  size_t offset = 0;  // First byte.
  size_t end = 0;     // One past the last byte.
  absl::string_view text;
  std::string lower;  // kWord only: the word in lower case.
};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool IsAlnum(char c) { return IsDigit(c) || IsAlpha(c); }
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

bool IsComparison(Tok t) {
  return t == Tok::kEq || t == Tok::kLt || t == Tok::kLe || t == Tok::kGt ||
         t == Tok::kGe;
}

v1::Comparison ToComparison(Tok t) {
  switch (t) {
    case Tok::kEq:
      return v1::COMPARISON_EQ;
    case Tok::kLt:
      return v1::COMPARISON_LT;
    case Tok::kLe:
      return v1::COMPARISON_LE;
    case Tok::kGt:
      return v1::COMPARISON_GT;
    case Tok::kGe:
      return v1::COMPARISON_GE;
    default:
      return v1::COMPARISON_UNSPECIFIED;
  }
}

bool ToDomain(absl::string_view word, v1::Domain* domain) {
  static constexpr std::pair<absl::string_view, v1::Domain> kDomains[] = {
      {"condition", v1::DOMAIN_CONDITION},
      {"drug", v1::DOMAIN_DRUG},
      {"procedure", v1::DOMAIN_PROCEDURE},
      {"measurement", v1::DOMAIN_MEASUREMENT},
      {"visit", v1::DOMAIN_VISIT},
      {"observation", v1::DOMAIN_OBSERVATION},
  };
  for (const auto& [name, d] : kDomains) {
    if (word == name) {
      *domain = d;
      return true;
    }
  }
  return false;
}

bool ToSex(absl::string_view word, v1::Sex* sex) {
  static constexpr std::pair<absl::string_view, v1::Sex> kSexes[] = {
      {"female", v1::SEX_FEMALE},
      {"male", v1::SEX_MALE},
      {"other", v1::SEX_OTHER},
      {"unknown", v1::SEX_UNKNOWN},
  };
  for (const auto& [name, s] : kSexes) {
    if (word == name) {
      *sex = s;
      return true;
    }
  }
  return false;
}

// An expression and the number of and/or/not nodes on its longest path.
struct Node {
  v1::Expr expr;
  int depth = 0;
};

class Parser {
 public:
  explicit Parser(absl::string_view text) : text_(text) {}

  absl::StatusOr<v1::Query> Run() {
    v1::Query query;
    PASSERELLE_ASSIGN_OR_RETURN(Node where, ParseOr(0));
    *query.mutable_where() = std::move(where.expr);
    const char* expected =
        "\"and\", \"or\", \"group by\", \"as of\", \"codes\" or end of "
        "input";
    if (PeekWord("group")) {
      Next();
      PASSERELLE_RETURN_IF_ERROR(ExpectWord("by"));
      bool seen[4] = {false, false, false, false};
      PASSERELLE_RETURN_IF_ERROR(ParseDimension(query, seen));
      while (Peek().kind == Tok::kComma) {
        Next();
        PASSERELLE_RETURN_IF_ERROR(ParseDimension(query, seen));
      }
      expected = "\",\", \"as of\", \"codes\" or end of input";
    }
    if (PeekWord("as")) {
      Next();
      PASSERELLE_RETURN_IF_ERROR(ExpectWord("of"));
      PASSERELLE_RETURN_IF_ERROR(ParseDate(query.mutable_as_of()));
      expected = "\"codes\" or end of input";
    }
    if (PeekWord("codes")) {
      // codes mapped|equivalent|exact: how codes reach a site's other
      // vocabularies through its crosswalks (docs/vocabulary.md).
      Next();
      if (PeekWord("mapped")) {
        query.set_code_matching(v1::CODE_MATCHING_MAPPED);
      } else if (PeekWord("equivalent")) {
        query.set_code_matching(v1::CODE_MATCHING_EQUIVALENT);
      } else if (PeekWord("exact")) {
        query.set_code_matching(v1::CODE_MATCHING_EXACT);
      } else {
        return Expected("mapped, equivalent or exact", Peek());
      }
      Next();
      expected = "end of input";
    }
    if (Peek().kind != Tok::kEnd) return Expected(expected, Peek());
    // A safety net: the parser's checks are meant to imply the validator's.
    absl::Status valid = ValidateQuery(query);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("1:1: query rejected by validation: ", valid.message()));
    }
    return query;
  }

 private:
  // ---- Lexer ----

  Token Lex(size_t pos) const {
    const size_t n = text_.size();
    while (pos < n && IsSpace(text_[pos])) ++pos;
    Token t;
    t.offset = pos;
    if (pos == n) {
      t.kind = Tok::kEnd;
      t.end = pos;
      return t;
    }
    const char c = text_[pos];
    size_t i = pos + 1;
    if (IsAlpha(c) || c == '_') {
      while (i < n && (IsAlnum(text_[i]) || text_[i] == '_')) ++i;
      t.kind = Tok::kWord;
      t.lower = absl::AsciiStrToLower(text_.substr(pos, i - pos));
    } else if (IsDigit(c) || (c == '-' && i < n && IsDigit(text_[i]))) {
      while (i < n && IsDigit(text_[i])) ++i;
      t.kind = Tok::kInt;
      if (c != '-' && i - pos == 4 && i + 1 < n && text_[i] == '-' &&
          IsDigit(text_[i + 1])) {
        while (i < n && (IsDigit(text_[i]) || text_[i] == '-')) ++i;
        t.kind = Tok::kDate;
      } else {
        if (i + 1 < n && text_[i] == '.' && IsDigit(text_[i + 1])) {
          i += 1;
          while (i < n && IsDigit(text_[i])) ++i;
          t.kind = Tok::kNumber;
        }
        if (i < n && (text_[i] == 'e' || text_[i] == 'E')) {
          size_t j = i + 1;
          if (j < n && (text_[j] == '+' || text_[j] == '-')) ++j;
          if (j < n && IsDigit(text_[j])) {
            i = j;
            while (i < n && IsDigit(text_[i])) ++i;
            t.kind = Tok::kNumber;
          }
        }
      }
    } else {
      switch (c) {
        case '(':
          t.kind = Tok::kLParen;
          break;
        case ')':
          t.kind = Tok::kRParen;
          break;
        case '[':
          t.kind = Tok::kLBracket;
          break;
        case ']':
          t.kind = Tok::kRBracket;
          break;
        case ',':
          t.kind = Tok::kComma;
          break;
        case ':':
          t.kind = Tok::kColon;
          break;
        case '*':
          t.kind = Tok::kStar;
          break;
        case '=':
          t.kind = Tok::kEq;
          break;
        case '<':
          t.kind = Tok::kLt;
          if (i < n && text_[i] == '=') {
            ++i;
            t.kind = Tok::kLe;
          }
          break;
        case '>':
          t.kind = Tok::kGt;
          if (i < n && text_[i] == '=') {
            ++i;
            t.kind = Tok::kGe;
          }
          break;
        default:
          t.kind = Tok::kBad;
          break;
      }
    }
    t.end = i;
    t.text = text_.substr(pos, i - pos);
    return t;
  }

  const Token& Peek() {
    if (!has_peek_) {
      peek_ = Lex(pos_);
      has_peek_ = true;
    }
    return peek_;
  }

  Token Next() {
    Peek();
    has_peek_ = false;
    pos_ = peek_.end;
    return std::move(peek_);
  }

  bool PeekWord(absl::string_view word) {
    const Token& t = Peek();
    return t.kind == Tok::kWord && t.lower == word;
  }

  // ---- Errors ----

  absl::Status ErrorAt(size_t offset, absl::string_view message) const {
    int line = 1;
    int column = 1;
    for (size_t i = 0; i < offset && i < text_.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(text_[i]);
      if (c == '\n') {
        ++line;
        column = 1;
      } else if ((c & 0xC0) != 0x80) {  // Count UTF-8 code points.
        ++column;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat(line, ":", column, ": ", message));
  }

  static std::string Describe(const Token& t) {
    if (t.kind == Tok::kEnd) return "end of input";
    if (t.kind == Tok::kBad) {
      const unsigned char c = static_cast<unsigned char>(t.text[0]);
      if (c >= 0x20 && c < 0x7F) return absl::StrCat("\"", t.text, "\"");
      return absl::StrFormat("byte 0x%02X", c);
    }
    if (t.text.size() > 24)
      return absl::StrCat("\"", t.text.substr(0, 24), "...\"");
    return absl::StrCat("\"", t.text, "\"");
  }

  absl::Status Expected(absl::string_view what, const Token& found) const {
    return ErrorAt(found.offset, absl::StrCat("expected ", what, ", found ",
                                              Describe(found)));
  }

  absl::Status ExpectWord(absl::string_view word) {
    if (PeekWord(word)) {
      Next();
      return absl::OkStatus();
    }
    return Expected(absl::StrCat("\"", word, "\""), Peek());
  }

  absl::Status ExpectToken(Tok kind, absl::string_view what) {
    if (Peek().kind == kind) {
      Next();
      return absl::OkStatus();
    }
    return Expected(what, Peek());
  }

  // ---- Literals ----

  // An integer literal; the caller checks its range.
  absl::Status ParseInt(int64_t* value, size_t* offset) {
    const Token& t = Peek();
    if (t.kind != Tok::kInt) return Expected("an integer", t);
    *offset = t.offset;
    if (t.text.size() > 12 || !absl::SimpleAtoi(t.text, value)) {
      return ErrorAt(t.offset,
                     absl::StrCat("integer ", Describe(t), " is out of range"));
    }
    Next();
    return absl::OkStatus();
  }

  absl::Status ParseIntIn(int64_t lo, int64_t hi, absl::string_view what,
                          int64_t* value, size_t* offset) {
    PASSERELLE_RETURN_IF_ERROR(ParseInt(value, offset));
    if (*value < lo || *value > hi) {
      return ErrorAt(*offset, absl::StrCat(what, " must be in [", lo, ", ", hi,
                                           "], found ", *value));
    }
    return absl::OkStatus();
  }

  absl::Status ParseDate(v1::Date* date, size_t* offset = nullptr) {
    const Token& t = Peek();
    if (t.kind != Tok::kDate) return Expected("a date (YYYY-MM-DD)", t);
    if (offset != nullptr) *offset = t.offset;
    const absl::string_view s = t.text;
    bool shape = s.size() == 10 && s[4] == '-' && s[7] == '-';
    for (size_t i = 0; shape && i < s.size(); ++i) {
      if (i != 4 && i != 7 && !IsDigit(s[i])) shape = false;
    }
    if (!shape) {
      return ErrorAt(t.offset, absl::StrCat("invalid date ", Describe(t),
                                            ", expected YYYY-MM-DD"));
    }
    auto digits = [&](size_t from, size_t len) {
      int v = 0;
      for (size_t i = from; i < from + len; ++i) v = v * 10 + (s[i] - '0');
      return v;
    };
    date->set_year(digits(0, 4));
    date->set_month(digits(5, 2));
    date->set_day(digits(8, 2));
    if (!IsValidDate(*date)) {
      return ErrorAt(t.offset, absl::StrCat("invalid date ", Describe(t)));
    }
    Next();
    return absl::OkStatus();
  }

  // ---- Expressions ----

  absl::Status CountNode(size_t offset) {
    if (++nodes_ > kMaxExprNodes) {
      return ErrorAt(offset, absl::StrCat("more than ", kMaxExprNodes,
                                          " expression nodes in the query"));
    }
    return absl::OkStatus();
  }

  absl::Status CheckDepth(const Node& node, size_t offset) const {
    if (node.depth > kMaxDepth) {
      return ErrorAt(offset, absl::StrCat("expression nested more than ",
                                          kMaxDepth, " levels deep"));
    }
    return absl::OkStatus();
  }

  // Parses `sub { word sub }` into an and/or node (or the single operand).
  template <typename Sub>
  absl::StatusOr<Node> ParseList(absl::string_view word, bool is_and, Sub sub) {
    const size_t start = Peek().offset;
    PASSERELLE_ASSIGN_OR_RETURN(Node first, sub());
    if (!PeekWord(word)) return first;
    Node node;
    v1::ExprList* list =
        is_and ? node.expr.mutable_and_() : node.expr.mutable_or_();
    int depth = first.depth;
    *list->add_terms() = std::move(first.expr);
    while (PeekWord(word)) {
      Next();
      PASSERELLE_ASSIGN_OR_RETURN(Node next, sub());
      depth = std::max(depth, next.depth);
      *list->add_terms() = std::move(next.expr);
    }
    node.depth = depth + 1;
    PASSERELLE_RETURN_IF_ERROR(CountNode(start));
    PASSERELLE_RETURN_IF_ERROR(CheckDepth(node, start));
    return node;
  }

  absl::StatusOr<Node> ParseOr(int nesting) {
    return ParseList("or", /*is_and=*/false,
                     [this, nesting] { return ParseAnd(nesting); });
  }

  absl::StatusOr<Node> ParseAnd(int nesting) {
    return ParseList("and", /*is_and=*/true,
                     [this, nesting] { return ParseUnary(nesting); });
  }

  absl::StatusOr<Node> ParseUnary(int nesting) {
    const Token& t = Peek();
    const size_t start = t.offset;
    const bool is_not = t.kind == Tok::kWord && t.lower == "not";
    if (is_not || t.kind == Tok::kLParen) {
      // Bounds the recursion itself: parentheses add no node.
      if (nesting >= kMaxDepth) {
        return ErrorAt(start, absl::StrCat("expression nested more than ",
                                           kMaxDepth, " levels deep"));
      }
      Next();
      if (is_not) {
        PASSERELLE_ASSIGN_OR_RETURN(Node child, ParseUnary(nesting + 1));
        Node node;
        *node.expr.mutable_not_() = std::move(child.expr);
        node.depth = child.depth + 1;
        PASSERELLE_RETURN_IF_ERROR(CountNode(start));
        PASSERELLE_RETURN_IF_ERROR(CheckDepth(node, start));
        return node;
      }
      PASSERELLE_ASSIGN_OR_RETURN(Node inner, ParseOr(nesting + 1));
      PASSERELLE_RETURN_IF_ERROR(
          ExpectToken(Tok::kRParen, "\"and\", \"or\" or \")\""));
      return inner;
    }
    Node node;
    PASSERELLE_RETURN_IF_ERROR(ParseCriterion(node.expr.mutable_criterion()));
    PASSERELLE_RETURN_IF_ERROR(CountNode(start));
    return node;
  }

  // ---- Criteria ----

  absl::Status ParseCriterion(v1::Criterion* c) {
    const Token& t = Peek();
    static constexpr absl::string_view kWhat =
        "a criterion (sex, birth_year, age, deceased, condition, drug, "
        "procedure, measurement, visit, observation, \"not\" or \"(\")";
    if (t.kind != Tok::kWord) return Expected(kWhat, t);
    if (++criteria_ > kMaxCriteria) {
      return ErrorAt(t.offset, absl::StrCat("more than ", kMaxCriteria,
                                            " criteria in the query"));
    }
    const std::string word = t.lower;
    v1::Domain domain;
    if (word == "sex") {
      Next();
      PASSERELLE_RETURN_IF_ERROR(ExpectToken(Tok::kEq, "\"=\""));
      v1::Sex sex;
      if (Peek().kind != Tok::kWord || !ToSex(Peek().lower, &sex)) {
        return Expected("female, male, other or unknown", Peek());
      }
      Next();
      c->set_sex(sex);
      return absl::OkStatus();
    }
    if (word == "birth_year") {
      Next();
      return ParseRange("birth year", kMinYear, kMaxYear,
                        c->mutable_birth_year());
    }
    if (word == "age") {
      Next();
      return ParseRange("age", kMinAge, kMaxAge, c->mutable_age());
    }
    if (word == "deceased") {
      Next();
      c->set_deceased(true);
      return absl::OkStatus();
    }
    if (!ToDomain(word, &domain)) return Expected(kWhat, t);
    v1::EventSpec first;
    PASSERELLE_RETURN_IF_ERROR(ParseEventSpec(&first));
    if (PeekWord("before")) {
      Next();
      v1::SequenceCriterion* s = c->mutable_sequence();
      *s->mutable_first() = std::move(first);
      if (Peek().kind != Tok::kWord || !ToDomain(Peek().lower, &domain)) {
        return Expected(
            "an event (condition, drug, procedure, measurement, visit or "
            "observation)",
            Peek());
      }
      PASSERELLE_RETURN_IF_ERROR(ParseEventSpec(s->mutable_second()));
      if (PeekWord("within")) {
        Next();
        int64_t days;
        size_t offset;
        PASSERELLE_RETURN_IF_ERROR(
            ParseIntIn(0, kMaxWithinDays, "within days", &days, &offset));
        s->set_has_within(true);
        s->set_within_days(static_cast<int32_t>(days));
        if (PeekWord("day")) return ExpectWord("day");
        PASSERELLE_RETURN_IF_ERROR(ExpectWord("days"));
      }
      return absl::OkStatus();
    }
    v1::EventCriterion* e = c->mutable_event();
    *e->mutable_event() = std::move(first);
    if (PeekWord("between")) {
      Next();
      size_t offset;
      v1::Window* w = e->mutable_window();
      PASSERELLE_RETURN_IF_ERROR(ParseDate(w->mutable_start(), &offset));
      PASSERELLE_RETURN_IF_ERROR(ExpectWord("and"));
      PASSERELLE_RETURN_IF_ERROR(ParseDate(w->mutable_end()));
      if (CompareDates(w->start(), w->end()) > 0) {
        return ErrorAt(
            offset, absl::StrFormat("inverted window: %04d-%02d-%02d is after "
                                    "%04d-%02d-%02d",
                                    w->start().year(), w->start().month(),
                                    w->start().day(), w->end().year(),
                                    w->end().month(), w->end().day()));
      }
    } else if (PeekWord("in")) {
      Next();
      int64_t year;
      size_t offset;
      if (Peek().kind == Tok::kDate) {
        return Expected("a year (use \"between DATE and DATE\" for dates)",
                        Peek());
      }
      PASSERELLE_RETURN_IF_ERROR(
          ParseIntIn(kMinYear, kMaxYear, "year", &year, &offset));
      v1::Window* w = e->mutable_window();
      w->mutable_start()->set_year(static_cast<int32_t>(year));
      w->mutable_start()->set_month(1);
      w->mutable_start()->set_day(1);
      w->mutable_end()->set_year(static_cast<int32_t>(year));
      w->mutable_end()->set_month(12);
      w->mutable_end()->set_day(31);
    }
    if (PeekWord("at")) {
      Next();
      PASSERELLE_RETURN_IF_ERROR(ExpectWord("least"));
      int64_t n;
      size_t offset;
      PASSERELLE_RETURN_IF_ERROR(ParseIntIn(kMinCount, kMaxCount,
                                            "the count in \"at least N times\"",
                                            &n, &offset));
      e->set_min_count(static_cast<int32_t>(n));
      if (PeekWord("time")) return ExpectWord("time");
      PASSERELLE_RETURN_IF_ERROR(ExpectWord("times"));
    }
    return absl::OkStatus();
  }

  // `between INT and INT` or `CMP INT`, as an inclusive range in [lo, hi].
  absl::Status ParseRange(absl::string_view what, int lo, int hi,
                          v1::IntRange* range) {
    int64_t a;
    size_t a_offset;
    if (PeekWord("between")) {
      Next();
      PASSERELLE_RETURN_IF_ERROR(ParseIntIn(lo, hi, what, &a, &a_offset));
      PASSERELLE_RETURN_IF_ERROR(ExpectWord("and"));
      int64_t b;
      size_t b_offset;
      PASSERELLE_RETURN_IF_ERROR(ParseIntIn(lo, hi, what, &b, &b_offset));
      if (a > b) {
        return ErrorAt(a_offset,
                       absl::StrCat("inverted range \"between ", a, " and ", b,
                                    "\": the lower bound is greater than the "
                                    "upper bound"));
      }
      range->set_min(static_cast<int32_t>(a));
      range->set_max(static_cast<int32_t>(b));
      return absl::OkStatus();
    }
    const Tok op = Peek().kind;
    if (!IsComparison(op)) {
      return Expected("\"between\", \"=\", \"<\", \"<=\", \">\" or \">=\"",
                      Peek());
    }
    Next();
    PASSERELLE_RETURN_IF_ERROR(ParseIntIn(lo, hi, what, &a, &a_offset));
    const int32_t n = static_cast<int32_t>(a);
    switch (op) {
      case Tok::kEq:
        range->set_min(n);
        range->set_max(n);
        break;
      case Tok::kLe:
        range->set_max(n);
        break;
      case Tok::kGe:
        range->set_min(n);
        break;
      case Tok::kLt:
        if (n - 1 < lo) {
          return ErrorAt(a_offset,
                         absl::StrCat(what, " < ", n, " matches no one"));
        }
        range->set_max(n - 1);
        break;
      case Tok::kGt:
        if (n + 1 > hi) {
          return ErrorAt(a_offset,
                         absl::StrCat(what, " > ", n, " matches no one"));
        }
        range->set_min(n + 1);
        break;
      default:
        break;
    }
    return absl::OkStatus();
  }

  // DOMAIN codeset [value CMP NUMBER]; the current token is the domain.
  absl::Status ParseEventSpec(v1::EventSpec* spec) {
    v1::Domain domain = v1::DOMAIN_UNSPECIFIED;
    ToDomain(Next().lower, &domain);
    spec->set_domain(domain);
    if (Peek().kind == Tok::kLBracket) {
      Next();
      if (Peek().kind == Tok::kRBracket) {
        return ErrorAt(Peek().offset, "empty code set");
      }
      while (true) {
        PASSERELLE_RETURN_IF_ERROR(ParseCode(spec));
        if (Peek().kind == Tok::kRBracket) {
          Next();
          break;
        }
        PASSERELLE_RETURN_IF_ERROR(ExpectToken(Tok::kComma, "\",\" or \"]\""));
      }
    } else {
      PASSERELLE_RETURN_IF_ERROR(ParseCode(spec));
    }
    if (PeekWord("value")) {
      const size_t offset = Peek().offset;
      if (domain != v1::DOMAIN_MEASUREMENT &&
          domain != v1::DOMAIN_OBSERVATION) {
        return ErrorAt(offset,
                       "a value filter applies only to measurement or "
                       "observation");
      }
      Next();
      const Tok op = Peek().kind;
      if (!IsComparison(op)) {
        return Expected("a comparison (=, <, <=, >, >=)", Peek());
      }
      Next();
      const Token& t = Peek();
      double number;
      if ((t.kind != Tok::kInt && t.kind != Tok::kNumber)) {
        return Expected("a number", t);
      }
      if (!absl::SimpleAtod(t.text, &number) || !std::isfinite(number)) {
        return ErrorAt(
            t.offset, absl::StrCat("number ", Describe(t), " is out of range"));
      }
      Next();
      spec->mutable_value()->set_op(ToComparison(op));
      spec->mutable_value()->set_number(number);
    }
    return absl::OkStatus();
  }

  // VOCAB ":" CODE ["*"]
  absl::Status ParseCode(v1::EventSpec* spec) {
    const Token& t = Peek();
    static constexpr absl::string_view kWhat = "a code (VOCAB:CODE)";
    if (t.kind != Tok::kWord) return Expected(kWhat, t);
    const std::string vocab = t.lower;
    const size_t vocab_offset = t.offset;
    const bool known = IsKnownVocabulary(vocab);
    if (!known && Lex(t.end).kind != Tok::kColon) return Expected(kWhat, t);
    if (!known) {
      return ErrorAt(vocab_offset,
                     absl::StrCat("unknown vocabulary \"", vocab, "\""));
    }
    Next();
    PASSERELLE_RETURN_IF_ERROR(
        ExpectToken(Tok::kColon, absl::StrCat("\":\" after \"", vocab, "\"")));
    // The code has its own lexical rules: scan it from the raw text.
    const size_t n = text_.size();
    size_t start = pos_;
    while (start < n && IsSpace(text_[start])) ++start;
    const bool icd = IsIcdVocabulary(vocab);
    size_t i = start;
    if (i < n && IsAlnum(text_[i])) {
      while (i < n) {
        const char c = text_[i];
        if (IsAlnum(c) || c == '.' || (!icd && (c == '-' || c == '_'))) {
          ++i;
          continue;
        }
        if (icd && IsBlank(c)) {
          // Spaces around an ICD dot are part of the code: "E11 . 9".
          size_t j = i;
          while (j < n && IsBlank(text_[j])) ++j;
          const bool before_dot = j < n && text_[j] == '.';
          const bool after_dot =
              text_[i - 1] == '.' && j < n && IsDigit(text_[j]);
          if (before_dot || after_dot) {
            i = j;
            continue;
          }
        }
        break;
      }
    }
    if (i == start) {
      return ErrorAt(start, absl::StrCat("expected a code after \"", vocab,
                                         ":\", found ", Describe(Lex(start))));
    }
    pos_ = i;
    has_peek_ = false;
    const absl::string_view raw = text_.substr(start, i - start);
    std::string code = NormalizeCode(vocab, raw);
    if (code.size() > kMaxCodeLength) {
      return ErrorAt(start, absl::StrCat("code longer than ", kMaxCodeLength,
                                         " characters"));
    }
    if (!IsValidCode(vocab, code)) {
      return ErrorAt(
          start,
          absl::StrCat("malformed ", vocab, " code \"", raw, "\"",
                       vocab == "concept" ? " (concept ids are digits)" : ""));
    }
    if (++codes_ > kMaxCodes) {
      return ErrorAt(
          start, absl::StrCat("more than ", kMaxCodes, " codes in the query"));
    }
    v1::Code* c = spec->add_codes();
    c->set_vocabulary(vocab);
    c->set_code(std::move(code));
    if (Peek().kind == Tok::kStar) {
      Next();
      c->set_prefix(true);
    }
    return absl::OkStatus();
  }

  // ---- group by ----

  absl::Status ParseDimension(v1::Query& query, bool seen[4]) {
    const Token& t = Peek();
    const size_t offset = t.offset;
    v1::Dimension d;
    if (PeekWord("sex")) {
      d.set_kind(v1::Dimension::SEX);
      Next();
    } else if (PeekWord("site")) {
      d.set_kind(v1::Dimension::SITE);
      Next();
    } else if (PeekWord("age_band")) {
      d.set_kind(v1::Dimension::AGE_BAND);
      Next();
      PASSERELLE_RETURN_IF_ERROR(ExpectToken(Tok::kLParen, "\"(\""));
      int64_t width;
      size_t width_offset;
      PASSERELLE_RETURN_IF_ERROR(ParseIntIn(kMinBandWidth, kMaxBandWidth,
                                            "age band width", &width,
                                            &width_offset));
      d.set_width(static_cast<int32_t>(width));
      PASSERELLE_RETURN_IF_ERROR(ExpectToken(Tok::kRParen, "\")\""));
    } else {
      return Expected("a dimension (sex, age_band(W) or site)", t);
    }
    if (seen[d.kind()]) {
      static constexpr const char* kNames[] = {"", "sex", "age_band", "site"};
      return ErrorAt(offset, absl::StrCat("dimension \"", kNames[d.kind()],
                                          "\" repeated in group by"));
    }
    seen[d.kind()] = true;
    *query.add_group_by() = std::move(d);
    return absl::OkStatus();
  }

  absl::string_view text_;
  size_t pos_ = 0;
  bool has_peek_ = false;
  Token peek_;
  int criteria_ = 0;
  int codes_ = 0;
  int nodes_ = 0;
};

}  // namespace

absl::StatusOr<v1::Query> ParseQuery(absl::string_view text) {
  if (text.size() > kMaxQueryBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("1:1: query text is ", text.size(),
                     " bytes, longer than the limit of ", kMaxQueryBytes));
  }
  return Parser(text).Run();
}

}  // namespace passerelle::query
