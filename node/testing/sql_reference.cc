#include "node/testing/sql_reference.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "node/testing/sql_crosswalk.h"
#include "query/cells.h"

extern char** environ;

namespace passerelle::node::difftest {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Import.

struct EventTableDef {
  const char* name;
  int domain;  // v1::Domain
  const char* prefix;
  const char* date_column;
  bool has_value;
};

// The tables the node's OMOP loader reads, with the columns it uses.
const EventTableDef kEventTables[] = {
    {"condition_occurrence", v1::DOMAIN_CONDITION, "condition",
     "condition_start_date", false},
    {"drug_exposure", v1::DOMAIN_DRUG, "drug", "drug_exposure_start_date",
     false},
    {"procedure_occurrence", v1::DOMAIN_PROCEDURE, "procedure",
     "procedure_date", false},
    {"measurement", v1::DOMAIN_MEASUREMENT, "measurement", "measurement_date",
     true},
    {"visit_occurrence", v1::DOMAIN_VISIT, "visit", "visit_start_date", false},
    {"observation", v1::DOMAIN_OBSERVATION, "observation", "observation_date",
     true},
};

// The ICD vocabularies: their codes ignore dots and whitespace.
const char kIcdList[] =
    "('icd10', 'icd10cm', 'icd10ca', 'cim10', 'icd9', 'icd9cm')";

// ASCII whitespace as the loader strips it.
const char kWs[] = "char(32, 9, 10, 11, 12, 13)";

std::string Strip(const std::string& x) {
  return absl::StrCat("trim(COALESCE(", x, ", ''), ", kWs, ")");
}

// True when the (already stripped) text is a decimal integer.
std::string IsInt(const std::string& t) {
  return absl::StrCat("(", t, " != '' AND (", t,
                      " NOT GLOB '*[^0-9]*' OR (substr(", t,
                      ", 1, 1) IN ('-', '+') AND length(", t,
                      ") > 1 AND substr(", t, ", 2) NOT GLOB '*[^0-9]*')))");
}

std::string IdOrZero(const std::string& t) {
  return absl::StrCat("CASE WHEN ", IsInt(t), " THEN CAST(", t,
                      " AS INTEGER) ELSE 0 END");
}

// The normal form of a code: trimmed, upper case; for ICD vocabularies
// without dots or whitespace anywhere.
std::string NormalizeSql(const std::string& vocab, const std::string& code) {
  std::string icd = absl::StrCat("replace(", code, ", '.', '')");
  for (int c : {32, 9, 10, 11, 12, 13}) {
    icd = absl::StrCat("replace(", icd, ", char(", c, "), '')");
  }
  return absl::StrCat("CASE WHEN ", vocab, " IN ", kIcdList, " THEN upper(",
                      icd, ") ELSE upper(trim(", code, ", ", kWs, ")) END");
}

// OMOP vocabulary_id -> canonical name: lower case without spaces, '-', '_'.
std::string VocabularySql(const std::string& x) {
  return absl::StrCat("lower(replace(replace(replace(", Strip(x),
                      ", ' ', ''), '-', ''), '_', ''))");
}

// An OMOP date ("YYYY-MM-DD", optionally followed by a time, or "YYYYMMDD")
// as ISO text, NULL when malformed; `t` is stripped. Real dates only: the
// caller also checks date(d) = d.
std::string DateSql(const std::string& t) {
  return absl::StrCat(
      "CASE WHEN length(", t, ") = 8 AND ", t,
      " NOT GLOB '*[^0-9]*' THEN substr(", t, ", 1, 4) || '-' || substr(", t,
      ", 5, 2) || '-' || substr(", t, ", 7, 2) WHEN length(", t,
      ") >= 10 AND substr(", t,
      ", 1, 10) GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]' AND (length(",
      t, ") = 10 OR substr(", t, ", 11, 1) IN (' ', 'T')) THEN substr(", t,
      ", 1, 10) ELSE NULL END");
}

std::string Quote(absl::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += "'";
  return out;
}

// The header of a CSV file, lower-cased.
absl::StatusOr<std::vector<std::string>> ReadHeader(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  }
  if (absl::StartsWith(line, "\xEF\xBB\xBF")) line = line.substr(3);
  std::vector<std::string> columns;
  for (absl::string_view c : absl::StrSplit(line, ',')) {
    c = absl::StripAsciiWhitespace(c);
    if (c.size() >= 2 && c.front() == '"' && c.back() == '"') {
      c = c.substr(1, c.size() - 2);
    }
    columns.push_back(absl::AsciiStrToLower(c));
  }
  return columns;
}

// The file `name`.csv in `dir`, any letter case; "" when absent.
std::string FindCsv(const std::string& dir, const std::string& name) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (absl::EqualsIgnoreCase(entry.path().filename().string(),
                               name + ".csv")) {
      return entry.path().string();
    }
  }
  return "";
}

// A column of an imported table, or '' when the file lacks it (the loader
// reads a missing optional column as empty).
std::string Column(const std::vector<std::string>& header,
                   const std::string& name) {
  if (std::find(header.begin(), header.end(), name) != header.end()) {
    return absl::StrCat("\"", name, "\"");
  }
  return "''";
}

// ---------------------------------------------------------------------------
// Queries.

std::string DateText(const v1::Date& d) {
  return absl::StrFormat("%04d-%02d-%02d", d.year(), d.month(), d.day());
}

bool IsIcd(const std::string& vocab) {
  return vocab == "icd10" || vocab == "icd10cm" || vocab == "icd10ca" ||
         vocab == "cim10" || vocab == "icd9" || vocab == "icd9cm";
}

// The data vocabularies a query vocabulary matches: `icd10` is the ICD-10
// family (the contract); `icd9` likewise covers ICD-9-CM (query/vocabulary.h
// extends the contract in the same spirit).
std::vector<std::string> DataVocabularies(const std::string& vocab) {
  if (vocab == "icd10") return {"icd10", "icd10cm", "icd10ca", "cim10"};
  if (vocab == "icd9") return {"icd9", "icd9cm"};
  return {vocab};
}

// The contract's comparison of codes: case-insensitive, ICD dots and spaces
// ignored.
std::string NormalizeQueryCode(const std::string& vocab,
                               const std::string& code) {
  std::string out;
  for (char c : std::string(absl::StripAsciiWhitespace(code))) {
    if (IsIcd(vocab) && (c == '.' || absl::ascii_isspace(c))) continue;
    out += absl::ascii_toupper(c);
  }
  return out;
}

const char* SqlOp(v1::Comparison op) {
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
      return "<>";  // Unreachable for valid queries.
  }
}

// The rows of EV matching the event spec (domain, any code of the set, the
// value condition, and `extra`), as `SELECT <columns> FROM EV x ...`: one
// SELECT per code, combined with UNION ALL so that each is an index lookup.
std::string SpecRows(const v1::EventSpec& spec, v1::CodeMatching matching,
                     const std::string& columns, const std::string& extra) {
  std::string common;
  if (spec.has_value()) {
    absl::StrAppend(&common, " AND x.value IS NOT NULL AND x.value ",
                    SqlOp(spec.value().op()), " ",
                    FormatSqlNumber(spec.value().number()));
  }
  absl::StrAppend(&common, extra);
  std::vector<std::string> arms;
  for (const v1::Code& c : spec.codes()) {
    std::vector<std::string> vocabs;
    for (const std::string& v : DataVocabularies(c.vocabulary())) {
      vocabs.push_back(Quote(v));
    }
    const std::string code = NormalizeQueryCode(c.vocabulary(), c.code());
    std::string match;
    if (c.prefix()) {
      // The range only lets sqlite use the index; substr() is the meaning.
      match =
          absl::StrCat("x.code >= ", Quote(code), " AND x.code < ", Quote(code),
                       " || char(1114111) AND substr(x.code, 1, ", code.size(),
                       ") = ", Quote(code));
    } else {
      match = absl::StrCat("x.code = ", Quote(code));
    }
    arms.push_back(
        absl::StrCat("SELECT ", columns, " FROM EV x WHERE x.domain = ",
                     static_cast<int>(spec.domain()), " AND x.vocab IN (",
                     absl::StrJoin(vocabs, ", "), ") AND ", match, common));
    // The site codes the crosswalks map to it (sql_crosswalk.h).
    for (std::string& arm : MappedCodeArms(c, static_cast<int>(spec.domain()),
                                           matching, columns, common)) {
      arms.push_back(std::move(arm));
    }
  }
  return absl::StrJoin(arms, " UNION ALL ");
}

std::string RangeSql(const std::string& column, const v1::IntRange& r,
                     bool nonnegative) {
  std::vector<std::string> terms;
  if (r.has_min()) {
    terms.push_back(absl::StrCat(column, " >= ", r.min()));
  }
  if (nonnegative && (!r.has_min() || r.min() < 0)) {
    terms.push_back(absl::StrCat(column, " >= 0"));
  }
  if (r.has_max()) terms.push_back(absl::StrCat(column, " <= ", r.max()));
  if (terms.empty()) return "1";
  return absl::StrCat("(", absl::StrJoin(terms, " AND "), ")");
}

// Statements a query's SELECT needs first (and the clean-up after it).
struct SqlContext {
  int query = 0;
  v1::CodeMatching matching = v1::CODE_MATCHING_MAPPED;
  int sequences = 0;
  std::string setup;
  std::string teardown;
};

std::string ExprSql(const v1::Expr& e, SqlContext* ctx);

std::string CriterionSql(const v1::Criterion& c, SqlContext* ctx) {
  switch (c.kind_case()) {
    case v1::Criterion::kSex: {
      const char* label = "unknown";
      if (c.sex() == v1::SEX_FEMALE) label = "female";
      if (c.sex() == v1::SEX_MALE) label = "male";
      if (c.sex() == v1::SEX_OTHER) label = "other";
      return absl::StrCat("p.sex = '", label, "'");
    }
    case v1::Criterion::kBirthYear:
      return RangeSql("p.by", c.birth_year(), false);
    case v1::Criterion::kAge:
      // Age exists from birth on: the unborn (born after the reference date)
      // have no age, as they have no age band.
      return RangeSql("p.age", c.age(), true);
    case v1::Criterion::kDeceased:
      return "p.pid IN (SELECT pid FROM D)";
    case v1::Criterion::kEvent: {
      const v1::EventCriterion& ev = c.event();
      std::string window;
      if (ev.has_window()) {
        window =
            absl::StrCat(" AND x.d >= '", DateText(ev.window().start()),
                         "' AND x.d <= '", DateText(ev.window().end()), "'");
      }
      const int n = std::max(1, ev.min_count());
      if (n == 1) {
        return absl::StrCat(
            "p.pid IN (", SpecRows(ev.event(), ctx->matching, "x.pid", window),
            ")");
      }
      // At least n distinct event rows (a row carrying several codes of the
      // set counts once).
      return absl::StrCat(
          "p.pid IN (SELECT pid FROM (",
          SpecRows(ev.event(), ctx->matching, "x.pid, x.eid", window),
          ") GROUP BY pid HAVING COUNT(DISTINCT eid) >= ", n, ")");
    }
    case v1::Criterion::kSequence: {
      const v1::SequenceCriterion& s = c.sequence();
      std::string gap = "b.d >= a.d";
      if (s.has_within()) {
        absl::StrAppend(&gap, " AND b.d <= date(a.d, '+", s.within_days(),
                        " days')");
      }
      // The (patient, date) pairs of each side, in temporary tables; the
      // index on the second side keeps the EXISTS a range lookup whatever
      // the query planner estimates.
      const std::string a =
          absl::StrCat("seq_a_", ctx->query, "_", ctx->sequences);
      const std::string b =
          absl::StrCat("seq_b_", ctx->query, "_", ctx->sequences);
      ++ctx->sequences;
      absl::StrAppend(&ctx->setup, "CREATE TEMP TABLE ", a,
                      " AS SELECT DISTINCT pid, d FROM (",
                      SpecRows(s.first(), ctx->matching, "x.pid, x.d", ""),
                      ");\nCREATE TEMP TABLE ", b,
                      " AS SELECT DISTINCT pid, d FROM (",
                      SpecRows(s.second(), ctx->matching, "x.pid, x.d", ""),
                      ");\nCREATE INDEX temp.", b, "_i ON ", b, "(pid, d);\n");
      absl::StrAppend(&ctx->teardown, "DROP TABLE temp.", a,
                      ";\nDROP TABLE temp.", b, ";\n");
      return absl::StrCat("p.pid IN (SELECT a.pid FROM ", a,
                          " a WHERE EXISTS (SELECT 1 FROM ", b,
                          " b WHERE b.pid = a.pid AND ", gap, "))");
    }
    default:
      return "0";
  }
}

std::string ExprSql(const v1::Expr& e, SqlContext* ctx) {
  switch (e.kind_case()) {
    case v1::Expr::kCriterion:
      return CriterionSql(e.criterion(), ctx);
    case v1::Expr::kAnd:
    case v1::Expr::kOr: {
      const bool is_and = e.kind_case() == v1::Expr::kAnd;
      const v1::ExprList& list = is_and ? e.and_() : e.or_();
      if (list.terms().empty()) return is_and ? "1" : "0";
      std::vector<std::string> terms;
      for (const v1::Expr& t : list.terms()) {
        terms.push_back(ExprSql(t, ctx));
      }
      return absl::StrCat("(", absl::StrJoin(terms, is_and ? " AND " : " OR "),
                          ")");
    }
    case v1::Expr::kNot:
      // Predicates are never NULL, so NOT is the complement in P.
      return absl::StrCat("(NOT ", ExprSql(e.not_(), ctx), ")");
    default:
      return "0";
  }
}

}  // namespace

std::string FormatSqlNumber(double v) {
  for (int precision = 1; precision <= 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    double back = 0;
    if (absl::SimpleAtod(s, &back) && back == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

std::string VocabularyRulesText(const std::vector<SqlVocabularyRule>& rules) {
  std::string out = "# Generated by the differential test.\n";
  for (const SqlVocabularyRule& r : rules) {
    absl::StrAppend(&out, r.domain, " source_concept_id ", r.pattern, " ",
                    r.vocabulary, "\n");
  }
  return out;
}

absl::StatusOr<std::string> OmopImportScript(
    const std::string& csv_dir, const std::vector<SqlVocabularyRule>& rules) {
  std::string s =
      ".output /dev/null\nPRAGMA journal_mode = OFF;\n"
      "PRAGMA synchronous = OFF;\nPRAGMA temp_store = MEMORY;\n"
      ".output stdout\n";
  auto import = [&](const std::string& name, const std::string& table)
      -> absl::StatusOr<std::vector<std::string>> {
    const std::string path = FindCsv(csv_dir, name);
    if (path.empty()) return std::vector<std::string>();
    if (path.find('\'') != std::string::npos) {
      return absl::InvalidArgumentError("quote in path " + path);
    }
    absl::StrAppend(&s, ".import --csv '", path, "' ", table, "\n");
    return ReadHeader(path);
  };

  // Persons: the loader's acceptance rules and sex mapping.
  absl::StatusOr<std::vector<std::string>> person =
      import("person", "raw_person");
  if (!person.ok()) return person.status();
  if (person->empty()) {
    return absl::NotFoundError(absl::StrCat("no person.csv in ", csv_dir));
  }
  const auto& ph = *person;
  absl::StrAppend(&s, "CREATE TABLE P0 AS SELECT rowid AS r, ",
                  Strip(Column(ph, "person_id")), " AS id, ",
                  Strip(Column(ph, "gender_concept_id")), " AS g, ",
                  Strip(Column(ph, "year_of_birth")), " AS y, COALESCE(",
                  Column(ph, "month_of_birth"), ", '') AS m, COALESCE(",
                  Column(ph, "day_of_birth"), ", '') AS dd, upper(",
                  Strip(Column(ph, "gender_source_value")),
                  ") AS gs FROM raw_person;\n");
  absl::StrAppend(
      &s, "CREATE TABLE P1 AS SELECT r, CAST(id AS INTEGER) AS pid, ",
      IdOrZero("g"),
      " AS gid, gs, CAST(y AS INTEGER) AS by, (m != '' AND dd != '') AS full, ",
      Strip("m"), " AS ms, ", Strip("dd"), " AS ds FROM P0 WHERE ", IsInt("id"),
      " AND ", IsInt("y"), " AND CAST(y AS INTEGER) BETWEEN 1800 AND 2300;\n");
  absl::StrAppend(&s, "DELETE FROM P1 WHERE full AND NOT (", IsInt("ms"),
                  " AND ", IsInt("ds"),
                  " AND date(julianday(printf('%04d-%02d-%02d', by, CAST(ms AS "
                  "INTEGER), CAST(ds AS "
                  "INTEGER)))) IS printf('%04d-%02d-%02d', by, CAST(ms AS "
                  "INTEGER), CAST(ds "
                  "AS INTEGER)));\n");
  absl::StrAppend(
      &s,
      "CREATE TABLE P(pid INTEGER NOT NULL, sex TEXT NOT NULL, by INTEGER NOT "
      "NULL, bmd INTEGER NOT NULL);\n"
      "INSERT INTO P SELECT pid, CASE gid WHEN 8532 THEN 'female' WHEN 8507 "
      "THEN 'male' WHEN 8521 THEN 'other' WHEN 8570 THEN 'other' ELSE CASE gs "
      "WHEN 'F' THEN 'female' WHEN 'FEMALE' THEN 'female' WHEN 'M' THEN 'male' "
      "WHEN 'MALE' THEN 'male' ELSE 'unknown' END END, by, CASE WHEN full THEN "
      "CAST(ms AS INTEGER) * 100 + CAST(ds AS INTEGER) ELSE 701 END FROM P1 "
      "WHERE r IN (SELECT min(r) FROM P1 GROUP BY pid);\n"
      "CREATE UNIQUE INDEX P_pid ON P(pid);\n");

  // Concepts (the last row of an id wins, as in the loader's map).
  absl::StatusOr<std::vector<std::string>> concept_header =
      import("concept", "raw_concept");
  if (!concept_header.ok()) return concept_header.status();
  s += "CREATE TABLE C(id INTEGER PRIMARY KEY, vocab TEXT, code TEXT);\n";
  if (!concept_header->empty()) {
    const auto& ch = *concept_header;
    absl::StrAppend(
        &s, "CREATE TABLE C0 AS SELECT rowid AS r, CAST(",
        Strip(Column(ch, "concept_id")), " AS INTEGER) AS id, ",
        VocabularySql(Column(ch, "vocabulary_id")), " AS vocab, ",
        Column(ch, "concept_code"), " AS raw FROM raw_concept;\n",
        "INSERT INTO C SELECT id, vocab, ", NormalizeSql("vocab", "raw"),
        " FROM C0 WHERE r IN (SELECT max(r) FROM C0 GROUP BY id);\n");
  }

  // Rules.
  s += "CREATE TABLE R(idx INTEGER PRIMARY KEY, domain TEXT, pattern TEXT, "
       "vocab TEXT);\n";
  for (size_t i = 0; i < rules.size(); ++i) {
    absl::StrAppend(&s, "INSERT INTO R VALUES (", i, ", ",
                    Quote(rules[i].domain), ", ", Quote(rules[i].pattern), ", ",
                    Quote(absl::AsciiStrToLower(rules[i].vocabulary)), ");\n");
  }

  // Events: the accepted rows of every table, then the codes each carries.
  s += "CREATE TABLE E0s(eid INTEGER, domain INTEGER, dname TEXT, id TEXT, dt "
       "TEXT, vt TEXT, c TEXT, sc TEXT, sv TEXT);\n";
  for (const EventTableDef& t : kEventTables) {
    const std::string raw = absl::StrCat("raw_", t.prefix);
    absl::StatusOr<std::vector<std::string>> header = import(t.name, raw);
    if (!header.ok()) return header.status();
    if (header->empty()) continue;
    const auto& h = *header;
    const std::string p = t.prefix;
    absl::StrAppend(
        &s, "INSERT INTO E0s SELECT ", t.domain, " * 10000000000 + rowid, ",
        t.domain, ", '", p, "', ", Strip(Column(h, "person_id")), ", ",
        Strip(Column(h, t.date_column)), ", ",
        t.has_value ? Strip(Column(h, "value_as_number")) : std::string("NULL"),
        ", ", Strip(Column(h, p + "_concept_id")), ", ",
        Strip(Column(h, p + "_source_concept_id")), ", ",
        Column(h, p + "_source_value"), " FROM ", raw, ";\n");
  }
  absl::StrAppend(
      &s,
      "CREATE TABLE E0(eid INTEGER PRIMARY KEY, domain INTEGER, dname TEXT, "
      "pid "
      "INTEGER, d TEXT, value REAL, vtext TEXT, cid INTEGER, scid INTEGER, sv "
      "TEXT);\n"
      "INSERT INTO E0 SELECT eid, domain, dname, CAST(id AS INTEGER), dd, CASE "
      "WHEN vt IS NULL OR vt = '' THEN NULL ELSE CAST(vt AS REAL) END, "
      "NULLIF(vt, ''), ",
      IdOrZero("c"), ", ", IdOrZero("sc"), ", sv FROM (SELECT *, ",
      DateSql("dt"), " AS dd FROM E0s) WHERE ", IsInt("id"),
      " AND dd IS NOT NULL AND date(julianday(dd)) IS dd AND CAST(id AS "
      "INTEGER) IN "
      "(SELECT pid FROM P);\n");
  absl::StrAppend(
      &s,
      "CREATE TABLE EV(domain INTEGER, vocab TEXT, code TEXT, eid INTEGER, pid "
      "INTEGER, d TEXT, value REAL);\n"
      "INSERT INTO EV SELECT domain, 'concept', CAST(cid AS TEXT), eid, pid, "
      "d, "
      "value FROM E0 WHERE cid != 0;\n"
      // (A source concept equal to the concept adds nothing: skipped.)
      "INSERT INTO EV SELECT domain, 'concept', CAST(scid AS TEXT), eid, pid, "
      "d, value FROM E0 WHERE scid != 0 AND scid != cid;\n"
      "INSERT INTO EV SELECT e.domain, c.vocab, c.code, e.eid, e.pid, e.d, "
      "e.value FROM E0 e JOIN C c ON c.id = e.cid WHERE e.cid != 0;\n"
      "INSERT INTO EV SELECT e.domain, c.vocab, c.code, e.eid, e.pid, e.d, "
      "e.value FROM E0 e JOIN C c ON c.id = e.scid WHERE e.scid != 0 AND "
      "e.scid != e.cid;\n"
      // A source value no CONCEPT row codes takes the first matching rule.
      "INSERT INTO EV SELECT e.domain, r.vocab, ",
      NormalizeSql("r.vocab", "e.sv"),
      ", e.eid, e.pid, e.d, e.value FROM E0 e JOIN R r ON r.idx = (SELECT "
      "min(r2.idx) FROM R r2 WHERE (r2.domain = '*' OR r2.domain = e.dname) "
      "AND CASE WHEN substr(r2.pattern, -1) = '*' THEN substr(CAST(e.scid AS "
      "TEXT), 1, length(r2.pattern) - 1) = substr(r2.pattern, 1, "
      "length(r2.pattern) - 1) ELSE CAST(e.scid AS TEXT) = r2.pattern END) "
      "WHERE ",
      Strip("e.sv"),
      " != '' AND NOT (e.scid != 0 AND e.scid IN (SELECT id FROM C));\n"
      "CREATE INDEX EV_code ON EV(domain, vocab, code, pid, d, eid, value);\n");
  // The crosswalk tables, empty until CrosswalkImportScript fills them.
  s += CrosswalkTablesSql();

  // Deaths of known persons with a valid date.
  absl::StatusOr<std::vector<std::string>> death = import("death", "raw_death");
  if (!death.ok()) return death.status();
  s += "CREATE TABLE D(pid INTEGER PRIMARY KEY);\n";
  if (!death->empty()) {
    absl::StrAppend(
        &s, "INSERT OR IGNORE INTO D SELECT CAST(id AS INTEGER) FROM (SELECT ",
        Strip(Column(*death, "person_id")), " AS id, ",
        DateSql(Strip(Column(*death, "death_date"))),
        " AS dd FROM raw_death) WHERE ", IsInt("id"),
        " AND dd IS NOT NULL AND date(julianday(dd)) IS dd AND CAST(id AS "
        "INTEGER) IN "
        "(SELECT pid FROM P);\n");
  }

  // The profile.
  s += ".mode list\n.separator |\n"
       "SELECT 'persons', COUNT(*) FROM P;\n"
       "SELECT 'events', COUNT(*) FROM E0;\n"
       "SELECT 'dates', min(d), max(d) FROM E0;\n"
       "SELECT 'births', min(by), max(by) FROM P;\n"
       "SELECT 'code', domain, vocab, COUNT(DISTINCT pid), code FROM EV GROUP "
       "BY domain, vocab, code ORDER BY domain, vocab, code;\n"
       // A deterministic sample of the values each code has.
       "SELECT DISTINCT 'value', v.domain, v.vocab, e.vtext, v.code FROM EV v "
       "JOIN E0 e ON e.eid = v.eid WHERE e.vtext IS NOT NULL AND (v.eid % 41 "
       "= 0 OR v.eid IN (SELECT min(eid) FROM E0 WHERE vtext IS NOT NULL "
       "GROUP BY domain, cid)) ORDER BY 2, 3, 5, 4;\n";
  return s;
}

absl::StatusOr<DataProfile> ParseProfile(absl::string_view output) {
  DataProfile profile;
  std::map<std::tuple<int, std::string, std::string>, size_t> index;
  for (absl::string_view line :
       absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    // The code is the last field and may itself hold '|'.
    std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::MaxSplits('|', 4));
    auto bad = [&] {
      return absl::InvalidArgumentError(
          absl::StrCat("bad profile line: ", line));
    };
    if (f[0] == "persons" && f.size() == 2) {
      if (!absl::SimpleAtoi(f[1], &profile.persons)) return bad();
    } else if (f[0] == "events" && f.size() == 2) {
      if (!absl::SimpleAtoi(f[1], &profile.events)) return bad();
    } else if (f[0] == "dates" && f.size() == 3) {
      profile.min_date = std::string(f[1]);
      profile.max_date = std::string(f[2]);
    } else if (f[0] == "births" && f.size() == 3) {
      if (!absl::SimpleAtoi(f[1], &profile.min_birth_year) ||
          !absl::SimpleAtoi(f[2], &profile.max_birth_year)) {
        return bad();
      }
    } else if ((f[0] == "code" || f[0] == "value") && f.size() == 5) {
      int domain;
      if (!absl::SimpleAtoi(f[1], &domain)) return bad();
      auto key = std::make_tuple(domain, std::string(f[2]), std::string(f[4]));
      if (f[0] == "code") {
        ProfileCode& c = profile.codes.emplace_back();
        c.domain = static_cast<v1::Domain>(domain);
        c.vocabulary = std::string(f[2]);
        c.code = std::string(f[4]);
        if (!absl::SimpleAtoi(f[3], &c.patients)) return bad();
        index[key] = profile.codes.size() - 1;
      } else {
        auto it = index.find(key);
        if (it == index.end()) return bad();
        std::vector<std::string>& values = profile.codes[it->second].values;
        if (values.size() < 12) values.push_back(std::string(f[3]));
      }
    } else {
      return bad();
    }
  }
  if (profile.persons == 0) {
    return absl::InvalidArgumentError("the profile names no persons");
  }
  return profile;
}

std::string QueryToSql(const v1::Query& query, int index,
                       absl::string_view site, const v1::Date& reference) {
  // The reference date: `as of`, else the given one.
  const v1::Date& ref = query.has_as_of() ? query.as_of() : reference;
  const std::string y = absl::StrCat(ref.year());
  const std::string md = absl::StrCat(ref.month() * 100 + ref.day());
  // Whole years on the reference date: one less before the birthday (1 July
  // when only the birth year is known).
  const std::string persons = absl::StrCat(
      "(SELECT pid, sex, by, ", y, " - by - (", md, " < bmd) AS age FROM P) p");
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
        // Bands [0,W), [W,2W), ... and an open band from the first multiple
        // of W at or above 110.
        const int open = (110 + w - 1) / w * w;
        keys.push_back(absl::StrCat("CASE WHEN p.age >= ", open, " THEN '",
                                    open, "+' ELSE (p.age / ", w, " * ", w,
                                    ") || '-' || (p.age / ", w, " * ", w, " + ",
                                    w - 1, ") END"));
        break;
      }
      case v1::Dimension::SITE:
        keys.push_back(Quote(site));
        break;
      default:
        keys.push_back("'?'");
    }
  }
  SqlContext ctx;
  ctx.query = index;
  ctx.matching = query.code_matching();
  std::string where = ExprSql(query.where(), &ctx);
  if (by_age) where = absl::StrCat("(", where, ") AND p.age >= 0");
  std::string sql = absl::StrCat(ctx.setup, "SELECT ", index);
  for (const std::string& k : keys) absl::StrAppend(&sql, ", ", k);
  absl::StrAppend(&sql, ", COUNT(*) FROM ", persons, " WHERE ", where);
  if (!keys.empty()) {
    absl::StrAppend(&sql, " GROUP BY ");
    for (size_t i = 0; i < keys.size(); ++i) {
      absl::StrAppend(&sql, i ? ", " : "", i + 2);
    }
  }
  absl::StrAppend(&sql, ";\n", ctx.teardown);
  return sql;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> ParseCellCounts(
    absl::string_view output, const std::vector<v1::Query>& queries,
    absl::string_view site) {
  std::vector<std::vector<int64_t>> counts(queries.size());
  std::vector<absl::flat_hash_map<std::string, size_t>> cell_index(
      queries.size());
  for (size_t q = 0; q < queries.size(); ++q) {
    const std::vector<v1::CellKey> keys =
        query::EnumerateCells(queries[q], {std::string(site)});
    counts[q].assign(keys.size(), 0);
    for (size_t k = 0; k < keys.size(); ++k) {
      std::vector<std::string> values;
      for (const v1::DimensionValue& v : keys[k].values()) {
        values.push_back(v.value());
      }
      cell_index[q][absl::StrJoin(values, "|")] = k;
    }
  }
  for (absl::string_view line :
       absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, '|');
    size_t q;
    int64_t n;
    if (f.size() < 2 || !absl::SimpleAtoi(f.front(), &q) ||
        q >= queries.size() || !absl::SimpleAtoi(f.back(), &n) ||
        f.size() != 2 + static_cast<size_t>(queries[q].group_by_size())) {
      return absl::InvalidArgumentError(absl::StrCat("bad count line: ", line));
    }
    const std::string key = absl::StrJoin(
        std::vector<std::string>(f.begin() + 1, f.end() - 1), "|");
    auto it = cell_index[q].find(key);
    if (it == cell_index[q].end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("query ", q, ": sqlite counted cell \"", key,
                       "\" which is not in the public cell domain"));
    }
    counts[q][it->second] = n;
  }
  return counts;
}

std::string FindSqlite() {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path ? path : "", ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/sqlite3");
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  if (access("/usr/bin/sqlite3", X_OK) == 0) return "/usr/bin/sqlite3";
  return "";
}

absl::StatusOr<std::string> RunSqlite(const std::string& db,
                                      const std::string& script_path,
                                      const std::string& scratch_dir) {
  const std::string sqlite = FindSqlite();
  if (sqlite.empty()) {
    return absl::NotFoundError(
        "sqlite3 is not installed (apt-get install sqlite3)");
  }
  const std::string out_path = (fs::path(scratch_dir) / "sqlite.out").string();
  const std::string err_path = (fs::path(scratch_dir) / "sqlite.err").string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, script_path.c_str(), O_RDONLY,
                                   0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> args = {sqlite, "-batch", "-bail", db};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  const int rc = posix_spawn(&pid, sqlite.c_str(), &actions, nullptr,
                             argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", sqlite, ": errno ", rc));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError("waitpid failed");
  }
  auto slurp = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  std::string out = slurp(out_path);
  std::string err = slurp(err_path);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !err.empty()) {
    return absl::InternalError(absl::StrCat("sqlite3 failed (status ", status,
                                            "): ", err.substr(0, 4000)));
  }
  return out;
}

}  // namespace passerelle::node::difftest
