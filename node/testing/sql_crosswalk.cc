#include "node/testing/sql_crosswalk.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace passerelle::node::difftest {
namespace {

constexpr char kIcd[] =
    "('icd10', 'icd10cm', 'icd10ca', 'cim10', 'icd9', 'icd9cm')";

std::string Q(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// The data vocabularies a query (or row source) vocabulary matches: the
// icd10 and icd9 families, otherwise itself.
std::vector<std::string> Family(const std::string& v) {
  if (v == "icd10") return {"icd10", "icd10cm", "icd10ca", "cim10"};
  if (v == "icd9") return {"icd9", "icd9cm"};
  return {v};
}

// Upper case, ICD dots and blanks removed (SQL over column `c` with the
// vocabulary in column `v`).
std::string Norm(const std::string& v, const std::string& c) {
  return absl::StrCat("CASE WHEN ", v, " IN ", kIcd,
                      " THEN upper(replace(replace(trim(", c,
                      "), '.', ''), ' ', '')) ELSE upper(trim(", c, ")) END");
}

}  // namespace

std::string CrosswalkTablesSql() {
  std::string s =
      "CREATE TABLE XW(tname TEXT, sv TEXT, sc TEXT, sp INTEGER, tv TEXT, tc "
      "TEXT, rel TEXT);\n"
      "CREATE TABLE XA(tname TEXT, sv TEXT, sc TEXT, sp INTEGER, tv TEXT, tc "
      "TEXT, rel TEXT, rollup INTEGER);\n"
      "CREATE INDEX XA_target ON XA(tv, tc);\n"
      "CREATE TABLE SVM(sv TEXT, vocab TEXT);\n";
  for (const char* v : {"icd10", "icd10cm", "icd10ca", "cim10", "icd9",
                        "icd9cm", "atc", "ccam", "cci", "din", "cip13", "ucd",
                        "snomed", "rxnorm", "loinc", "ndc", "concept"}) {
    for (const std::string& d : Family(v)) {
      absl::StrAppend(&s, "INSERT INTO SVM VALUES (", Q(v), ", ", Q(d), ");\n");
    }
  }
  return s;
}

absl::StatusOr<std::string> CrosswalkImportScript(
    const std::vector<SqlCrosswalkFile>& files) {
  std::string s = "DELETE FROM XW;\nDELETE FROM XA;\n";
  for (size_t i = 0; i < files.size(); ++i) {
    const SqlCrosswalkFile& f = files[i];
    if (f.path.find('\'') != std::string::npos) {
      return absl::InvalidArgumentError("quote in path " + f.path);
    }
    const std::string raw = absl::StrCat("xraw_", i);
    absl::StrAppend(&s, ".import --csv '", f.path, "' ", raw, "\n");
    const std::string sv =
        f.source_vocabulary.empty() ? "" : Q(f.source_vocabulary);
    if (f.form == "passerelle") {
      const std::string src =
          sv.empty() ? "lower(trim(source_vocabulary))" : sv;
      absl::StrAppend(
          &s, "INSERT INTO XW SELECT ", Q(f.name),
          ", sv, CASE WHEN substr(sc0, "
          "-1) = '*' THEN substr(sc0, 1, length(sc0) - 1) ELSE sc0 END, "
          "substr(sc0, -1) = '*', tv, ",
          Norm("tv", "target_code"), ", lower(trim(relation)) FROM (SELECT ",
          src, " AS sv, ", Norm(src, "source_code"),
          " AS sc0, lower(trim(target_vocabulary)) "
          "AS tv, target_code, relation FROM ",
          raw, ");\n");
    } else if (f.form == "gem-forward" || f.form == "gem-backward") {
      const bool forward = f.form == "gem-forward";
      const std::string src_col = forward ? "icd9cm" : "icd10cm";
      const std::string dst_col = forward ? "icd10cm" : "icd9cm";
      absl::StrAppend(
          &s, "INSERT INTO XW SELECT ", Q(f.name), ", ",
          sv.empty() ? Q(src_col) : sv, ", upper(", src_col, "), 0, ",
          Q(dst_col), ", upper(", dst_col,
          "), CASE approximate WHEN '0' THEN 'equivalent' ELSE 'approximate' "
          "END FROM ",
          raw, " WHERE no_map = '0' AND ", dst_col, " != 'NoDx';\n");
    } else {
      return absl::InvalidArgumentError("unknown form " + f.form);
    }
  }
  // Rows, then the rollups: every proper prefix of 3 or more characters of
  // an exact ICD source code that is not itself an exact source code of the
  // same table (and vocabulary) reaches the row's target, as broader.
  absl::StrAppend(
      &s,
      "INSERT INTO XA SELECT tname, sv, sc, sp, tv, tc, rel, 0 FROM XW;\n"
      "CREATE TEMP TABLE N(n INTEGER);\n"
      "WITH RECURSIVE k(n) AS (SELECT 3 UNION ALL SELECT n + 1 FROM k WHERE n "
      "< 40) INSERT INTO N SELECT n FROM k;\n"
      "CREATE INDEX XW_source ON XW(tname, sv, sc, sp);\n"
      "INSERT INTO XA SELECT x.tname, x.sv, substr(x.sc, 1, N.n), 0, x.tv, "
      "x.tc, 'broader', 1 FROM XW x JOIN N ON N.n < length(x.sc) WHERE x.sp = "
      "0 AND x.sv IN ",
      kIcd,
      " AND NOT EXISTS (SELECT 1 FROM XW y WHERE y.tname = x.tname AND y.sv = "
      "x.sv AND y.sc = substr(x.sc, 1, N.n) AND y.sp = 0);\n"
      "DROP TABLE N;\n");
  return s;
}

std::vector<std::string> MappedCodeArms(const v1::Code& code, int domain,
                                        v1::CodeMatching mode,
                                        const std::string& columns,
                                        const std::string& common) {
  if (mode == v1::CODE_MATCHING_EXACT) return {};
  std::vector<std::string> tv;
  for (const std::string& v : Family(code.vocabulary())) tv.push_back(Q(v));
  // The code is normalised in the AST already.
  const std::string c = code.code();
  std::string target =
      code.prefix() ? absl::StrCat("m.tc >= ", Q(c), " AND m.tc < ", Q(c),
                                   " || char(1114111) AND substr(m.tc, 1, ",
                                   c.size(), ") = ", Q(c))
                    : absl::StrCat("m.tc = ", Q(c));
  std::string relation;
  if (mode == v1::CODE_MATCHING_EQUIVALENT) {
    relation = " AND m.rel IN ('equivalent', 'narrower') AND m.rollup = 0";
  }
  const std::string from =
      absl::StrCat("SELECT ", columns,
                   " FROM XA m JOIN SVM s ON s.sv = m.sv JOIN EV x ON "
                   "x.domain = ",
                   domain, " AND x.vocab = s.vocab AND ");
  const std::string where = absl::StrCat(
      " WHERE m.tv IN (", absl::StrJoin(tv, ", "), ") AND ", target, relation);
  return {
      // Exact source rows: the site code is the row's source code.
      absl::StrCat(from, "x.code = m.sc", where, " AND m.sp = 0", common),
      // Prefix source rows: every site code starting with it.
      absl::StrCat(from,
                   "x.code >= m.sc AND x.code < m.sc || char(1114111) AND "
                   "substr(x.code, 1, length(m.sc)) = m.sc",
                   where, " AND m.sp = 1", common),
  };
}

}  // namespace passerelle::node::difftest
