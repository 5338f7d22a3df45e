#include "node/crosswalk.h"

#include <algorithm>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "openssl/evp.h"
#include "query/canonical.h"
#include "query/vocabulary.h"

namespace passerelle::node {
namespace {

constexpr char kSetHeader[] = "passerelle crosswalk set 1";

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A, A00, A00A, A00AA, A00AA00 (WHO ATC levels 1-5).
bool IsAtc(absl::string_view c) {
  static constexpr char kShape[] = "ADDAADD";  // A: letter, D: digit.
  if (c.empty() || c.size() > 7 || c.size() == 2 || c.size() == 6) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    if (kShape[i] == 'A' ? !IsUpper(c[i]) : !IsDigit(c[i])) return false;
  }
  return true;
}

std::string HexSha256(absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

bool ValidTableName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  return true;
}

bool ValidFlagWord(absl::string_view w) {
  if (w.empty() || w.size() > 32) return false;
  for (char c : w) {
    if (!((c >= 'a' && c <= 'z') || IsDigit(c) || c == '=' || c == '_' ||
          c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

absl::string_view DomainName(int domain) {
  const absl::string_view keyword =
      query::DomainKeyword(static_cast<v1::Domain>(domain));
  return keyword.empty() ? "unspecified" : keyword;
}

std::string CodeText(const v1::Code& c) {
  return absl::StrCat(c.vocabulary(), ":", c.code(), c.prefix() ? "*" : "");
}

// Every event spec of an expression, in a fixed (depth-first) order.
template <typename ExprT, typename Fn>
void ForEachSpec(ExprT* e, Fn fn) {
  switch (e->kind_case()) {
    case v1::Expr::kCriterion: {
      auto* c = e->has_criterion() ? e->mutable_criterion() : nullptr;
      if (c == nullptr) return;
      if (c->has_event()) fn(c->mutable_event()->mutable_event());
      if (c->has_sequence()) {
        fn(c->mutable_sequence()->mutable_first());
        fn(c->mutable_sequence()->mutable_second());
      }
      return;
    }
    case v1::Expr::kAnd:
      for (auto& t : *e->mutable_and_()->mutable_terms()) ForEachSpec(&t, fn);
      return;
    case v1::Expr::kOr:
      for (auto& t : *e->mutable_or_()->mutable_terms()) ForEachSpec(&t, fn);
      return;
    case v1::Expr::kNot:
      ForEachSpec(e->mutable_not_(), fn);
      return;
    default:
      return;
  }
}

// The same walk over a const expression.
template <typename Fn>
void ForEachConstSpec(const v1::Expr& e, Fn fn) {
  switch (e.kind_case()) {
    case v1::Expr::kCriterion:
      if (e.criterion().has_event()) fn(e.criterion().event().event());
      if (e.criterion().has_sequence()) {
        fn(e.criterion().sequence().first());
        fn(e.criterion().sequence().second());
      }
      return;
    case v1::Expr::kAnd:
      for (const auto& t : e.and_().terms()) ForEachConstSpec(t, fn);
      return;
    case v1::Expr::kOr:
      for (const auto& t : e.or_().terms()) ForEachConstSpec(t, fn);
      return;
    case v1::Expr::kNot:
      ForEachConstSpec(e.not_(), fn);
      return;
    default:
      return;
  }
}

}  // namespace

absl::string_view RelationName(Relation r) {
  switch (r) {
    case Relation::kEquivalent:
      return "equivalent";
    case Relation::kNarrower:
      return "narrower";
    case Relation::kBroader:
      return "broader";
    case Relation::kApproximate:
      return "approximate";
  }
  return "approximate";
}

bool ParseRelation(absl::string_view text, Relation* r) {
  for (Relation c : {Relation::kEquivalent, Relation::kNarrower,
                     Relation::kBroader, Relation::kApproximate}) {
    if (text == RelationName(c)) {
      *r = c;
      return true;
    }
  }
  return false;
}

std::string CrosswalkRow::CanonicalLine() const {
  return absl::StrCat(source_vocabulary, "\t", source_code,
                      source_prefix ? "*" : "", "\t", target_vocabulary, "\t",
                      target_code, "\t", RelationName(relation), "\t", flags);
}

bool IsWellFormedCrosswalkCode(absl::string_view vocab, absl::string_view c) {
  if (!query::IsValidCode(vocab, c)) return false;
  if (vocab == "din") return c.size() == 8 && AllDigits(c);
  if (vocab == "cip13") return c.size() == 13 && AllDigits(c);
  if (vocab == "ucd") return (c.size() == 7 || c.size() == 13) && AllDigits(c);
  if (vocab == "atc") {
    return IsAtc(c) || (c.size() > 1 && c[0] == 'Q' && IsAtc(c.substr(1)));
  }
  if (vocab == "icd9cm" || vocab == "icd9") {
    // 3-5 digits; V + 2-4 digits; E + 3-4 digits (RAMQ's ICD-9 is of the
    // same shape, mostly 3-4 characters).
    if (AllDigits(c)) return c.size() >= 3 && c.size() <= 5;
    if (c[0] == 'V')
      return c.size() >= 3 && c.size() <= 5 && AllDigits(c.substr(1));
    if (c[0] == 'E')
      return c.size() >= 4 && c.size() <= 5 && AllDigits(c.substr(1));
    return false;
  }
  if (query::IsIcdVocabulary(vocab)) {
    // Letter, digit, then up to five letters or digits (ICD-10-CM's
    // seventh character included).
    if (c.size() < 3 || c.size() > 7 || !IsUpper(c[0]) || !IsDigit(c[1]))
      return false;
    return true;  // IsValidCode: [A-Z0-9] only.
  }
  return true;
}

absl::Status CheckCrosswalkRow(const CrosswalkRow& row) {
  if (!query::IsKnownVocabulary(row.source_vocabulary)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown source vocabulary \"", row.source_vocabulary, "\""));
  }
  if (!query::IsKnownVocabulary(row.target_vocabulary)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown target vocabulary \"", row.target_vocabulary, "\""));
  }
  if (row.source_prefix
          ? !query::IsValidCode(row.source_vocabulary, row.source_code)
          : !IsWellFormedCrosswalkCode(row.source_vocabulary,
                                       row.source_code)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "source code \"", row.source_code, row.source_prefix ? "*" : "",
        "\" is not a valid ", row.source_vocabulary, " code"));
  }
  if (!IsWellFormedCrosswalkCode(row.target_vocabulary, row.target_code)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target code \"", row.target_code, "\" is not a valid ",
                     row.target_vocabulary, " code"));
  }
  if (!row.flags.empty()) {
    for (absl::string_view w : absl::StrSplit(row.flags, ';')) {
      if (!ValidFlagWord(w)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "flag \"", w,
            "\" is not 1-32 of [a-z0-9=_.-] (flags are ;-separated words)"));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> CrosswalkTable::SourceVocabularies() const {
  std::set<std::string> s;
  for (const CrosswalkRow& r : rows) s.insert(r.source_vocabulary);
  return {s.begin(), s.end()};
}

std::vector<std::string> CrosswalkTable::TargetVocabularies() const {
  std::set<std::string> s;
  for (const CrosswalkRow& r : rows) s.insert(r.target_vocabulary);
  return {s.begin(), s.end()};
}

absl::StatusOr<std::shared_ptr<const CrosswalkSet>> CrosswalkSet::Make(
    std::vector<CrosswalkTable> tables) {
  std::sort(tables.begin(), tables.end(),
            [](const CrosswalkTable& a, const CrosswalkTable& b) {
              return a.name < b.name;
            });
  for (size_t i = 0; i < tables.size(); ++i) {
    if (!ValidTableName(tables[i].name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("crosswalk name \"", tables[i].name,
                       "\" must be 1-64 of [A-Za-z0-9._-] (use name=)"));
    }
    if (i > 0 && tables[i].name == tables[i - 1].name) {
      return absl::InvalidArgumentError(
          absl::StrCat("two crosswalks are named \"", tables[i].name,
                       "\"; give one another name with name="));
    }
    std::string prev;
    for (size_t r = 0; r < tables[i].rows.size(); ++r) {
      std::string line = tables[i].rows[r].CanonicalLine();
      if (r > 0 && !(prev < line)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "crosswalk ", tables[i].name, ": rows not sorted or not distinct"));
      }
      prev = std::move(line);
    }
  }
  auto set = std::shared_ptr<CrosswalkSet>(new CrosswalkSet());
  set->tables_ = std::move(tables);
  if (!set->tables_.empty()) set->id_ = HexSha256(set->CanonicalText());
  return std::shared_ptr<const CrosswalkSet>(std::move(set));
}

int64_t CrosswalkSet::rows() const {
  int64_t n = 0;
  for (const CrosswalkTable& t : tables_) n += t.rows.size();
  return n;
}

std::string CrosswalkSet::CanonicalText() const {
  std::string out = absl::StrCat(kSetHeader, "\n");
  for (const CrosswalkTable& t : tables_) {
    absl::StrAppend(&out, "table ", t.name, "\n");
    for (const CrosswalkRow& r : t.rows) {
      absl::StrAppend(&out, r.CanonicalLine(), "\n");
    }
  }
  return out;
}

std::string CrosswalkSet::Encode() const {
  std::string out = CanonicalText();
  for (const CrosswalkTable& t : tables_) {
    absl::StrAppend(&out, "meta ", t.name, " ", t.form, " ", t.skipped_rows,
                    " ", t.no_map_rows, " ", t.merged_rows, "\n");
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const CrosswalkSet>> CrosswalkSet::Decode(
    absl::string_view stored, absl::string_view expected_id) {
  auto corrupt = [](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("node store: corrupt crosswalk set: ", what));
  };
  std::vector<absl::string_view> lines = absl::StrSplit(stored, '\n');
  if (lines.empty() || lines[0] != kSetHeader) return corrupt("header");
  std::vector<CrosswalkTable> tables;
  std::map<std::string, size_t> by_name;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (line.empty()) continue;
    if (absl::ConsumePrefix(&line, "table ")) {
      by_name[std::string(line)] = tables.size();
      tables.emplace_back().name = std::string(line);
      continue;
    }
    if (absl::ConsumePrefix(&line, "meta ")) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      auto it = by_name.find(f.empty() ? "" : f[0]);
      if (f.size() != 5 || it == by_name.end()) return corrupt("meta line");
      CrosswalkTable& t = tables[it->second];
      t.form = f[1];
      if (!absl::SimpleAtoi(f[2], &t.skipped_rows) ||
          !absl::SimpleAtoi(f[3], &t.no_map_rows) ||
          !absl::SimpleAtoi(f[4], &t.merged_rows)) {
        return corrupt("meta counts");
      }
      continue;
    }
    if (tables.empty()) return corrupt("row before a table");
    std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
    if (f.size() != 6) return corrupt("row width");
    CrosswalkRow row;
    row.source_vocabulary = std::string(f[0]);
    absl::string_view source = f[1];
    row.source_prefix = absl::ConsumeSuffix(&source, "*");
    row.source_code = std::string(source);
    row.target_vocabulary = std::string(f[2]);
    row.target_code = std::string(f[3]);
    if (!ParseRelation(f[4], &row.relation)) return corrupt("relation");
    row.flags = std::string(f[5]);
    for (absl::string_view w : absl::StrSplit(row.flags, ';')) {
      if (w == "combination") row.combination = true;
    }
    if (!CheckCrosswalkRow(row).ok()) return corrupt("row");
    tables.back().rows.push_back(std::move(row));
  }
  absl::StatusOr<std::shared_ptr<const CrosswalkSet>> set =
      Make(std::move(tables));
  if (!set.ok()) return corrupt(set.status().message());
  if ((*set)->id() != expected_id) return corrupt("id does not match");
  return set;
}

void CrosswalkSet::Describe(v1::NodeInfo* info) const {
  info->set_mapping_set(id_);
  for (const CrosswalkTable& t : tables_) {
    v1::CrosswalkTableInfo* c = info->add_crosswalks();
    c->set_name(t.name);
    c->set_form(t.form);
    for (const std::string& v : t.SourceVocabularies())
      c->add_source_vocabularies(v);
    for (const std::string& v : t.TargetVocabularies())
      c->add_target_vocabularies(v);
    c->set_rows(static_cast<int64_t>(t.rows.size()));
    c->set_skipped_rows(t.skipped_rows);
    c->set_no_map_rows(t.no_map_rows);
    c->set_merged_rows(t.merged_rows);
  }
}

// ---------------------------------------------------------------------------
// The index.

CrosswalkIndex::CrosswalkIndex(std::shared_ptr<const CrosswalkSet> set,
                               SiteVocabularies site)
    : set_(std::move(set)), site_(std::move(site)) {
  if (set_ == nullptr) return;
  by_target_.resize(set_->tables().size());
  target_vocabs_.resize(set_->tables().size());
  for (size_t t = 0; t < set_->tables().size(); ++t) {
    const std::vector<CrosswalkRow>& rows = set_->tables()[t].rows;
    target_vocabs_[t] = set_->tables()[t].TargetVocabularies();
    std::vector<Entry>& entries = by_target_[t];
    // The table's exact source codes, per source vocabulary: a rollup code
    // that is itself one of them is not rolled up.
    absl::flat_hash_set<std::pair<std::string, std::string>> exact;
    for (const CrosswalkRow& r : rows) {
      if (!r.source_prefix) exact.insert({r.source_vocabulary, r.source_code});
    }
    for (uint32_t i = 0; i < rows.size(); ++i) {
      const CrosswalkRow& r = rows[i];
      entries.push_back({i, 0});
      if (r.source_prefix || !query::IsIcdVocabulary(r.source_vocabulary))
        continue;
      for (size_t len = 3; len < r.source_code.size(); ++len) {
        if (exact.contains(
                {r.source_vocabulary, r.source_code.substr(0, len)})) {
          continue;
        }
        entries.push_back({i, static_cast<uint8_t>(len)});
      }
    }
    std::sort(entries.begin(), entries.end(),
              [&](const Entry& a, const Entry& b) {
                const CrosswalkRow& x = rows[a.row];
                const CrosswalkRow& y = rows[b.row];
                return std::tie(x.target_vocabulary, x.target_code, a.row,
                                a.rollup_len) < std::tie(y.target_vocabulary,
                                                         y.target_code, b.row,
                                                         b.rollup_len);
              });
  }
}

const std::string& CrosswalkIndex::mapping_set() const {
  static const std::string kNone;
  return set_ == nullptr ? kNone : set_->id();
}

void CrosswalkIndex::Lookup(size_t t, const v1::Code& code,
                            v1::CodeMatching mode,
                            std::vector<Entry>* out) const {
  const std::vector<CrosswalkRow>& rows = set_->tables()[t].rows;
  const std::vector<Entry>& entries = by_target_[t];
  for (const std::string& tv : target_vocabs_[t]) {
    if (!query::VocabularyMatches(code.vocabulary(), tv)) continue;
    auto lo = std::lower_bound(
        entries.begin(), entries.end(), code.code(),
        [&](const Entry& e, const std::string& c) {
          const CrosswalkRow& r = rows[e.row];
          return r.target_vocabulary < tv ||
                 (r.target_vocabulary == tv && r.target_code < c);
        });
    for (auto it = lo; it != entries.end(); ++it) {
      const CrosswalkRow& r = rows[it->row];
      if (r.target_vocabulary != tv) break;
      if (code.prefix() ? !absl::StartsWith(r.target_code, code.code())
                        : r.target_code != code.code()) {
        break;
      }
      if (mode == v1::CODE_MATCHING_EQUIVALENT &&
          (it->rollup_len > 0 || (r.relation != Relation::kEquivalent &&
                                  r.relation != Relation::kNarrower))) {
        continue;
      }
      out->push_back(*it);
    }
  }
}

bool CrosswalkIndex::Expand(const v1::Query& query, const std::string& site,
                            v1::Query* expanded,
                            v1::SiteExpansion* report) const {
  const v1::CodeMatching mode = query.code_matching();
  const bool use =
      set_ != nullptr && !set_->empty() && mode != v1::CODE_MATCHING_EXACT;
  // Per spec (in walk order): the site codes it gains.
  using SiteCode = std::tuple<std::string, std::string, bool>;
  std::vector<std::vector<SiteCode>> added;
  bool any = false;
  // Report entries by (domain, query code, site vocabulary, crosswalk).
  struct Account {
    v1::CodeExpansion e;
    std::set<std::string> sources;
  };
  std::map<std::tuple<int, std::string, std::string, std::string>, Account>
      accounts;
  // Per domain: the site vocabularies reached (directly or mapped).
  std::map<int, std::set<std::string>> reached;
  // (domain, query code) already accounted: a code written in two specs is
  // reported once.
  std::set<std::pair<int, std::string>> accounted;
  std::vector<Entry> hits;
  if (query.has_where()) {
    ForEachConstSpec(query.where(), [&](const v1::EventSpec& spec) {
      const int domain = static_cast<int>(spec.domain());
      static const std::vector<std::string> kNone;
      auto sv = site_.find(domain);
      const std::vector<std::string>& vocabs =
          sv == site_.end() ? kNone : sv->second;
      std::set<std::string>& reached_here = reached[domain];
      std::set<SiteCode> codes;
      for (const v1::Code& code : spec.codes()) {
        for (const std::string& w : vocabs) {
          if (query::VocabularyMatches(code.vocabulary(), w))
            reached_here.insert(w);
        }
        if (!use || vocabs.empty()) continue;
        const std::string text = CodeText(code);
        const bool account =
            report != nullptr && accounted.insert({domain, text}).second;
        for (size_t t = 0; t < by_target_.size(); ++t) {
          hits.clear();
          Lookup(t, code, mode, &hits);
          if (hits.empty()) continue;
          const CrosswalkTable& table = set_->tables()[t];
          for (const Entry& h : hits) {
            const CrosswalkRow& r = table.rows[h.row];
            std::string source = h.rollup_len > 0
                                     ? r.source_code.substr(0, h.rollup_len)
                                     : r.source_code;
            bool used = false;
            for (const std::string& w : vocabs) {
              if (!query::VocabularyMatches(r.source_vocabulary, w)) continue;
              used = true;
              reached_here.insert(w);
              if (!account) continue;
              Account& a = accounts[{domain, text, w, table.name}];
              v1::CodeExpansion& e = a.e;
              e.set_rows(e.rows() + 1);
              const Relation rel =
                  h.rollup_len > 0 ? Relation::kBroader : r.relation;
              switch (rel) {
                case Relation::kEquivalent:
                  e.set_equivalent_rows(e.equivalent_rows() + 1);
                  break;
                case Relation::kNarrower:
                  e.set_narrower_rows(e.narrower_rows() + 1);
                  break;
                case Relation::kBroader:
                  e.set_broader_rows(e.broader_rows() + 1);
                  break;
                case Relation::kApproximate:
                  e.set_approximate_rows(e.approximate_rows() + 1);
                  break;
              }
              if (r.combination)
                e.set_combination_rows(e.combination_rows() + 1);
              a.sources.insert(
                  absl::StrCat(source, r.source_prefix ? "*" : ""));
            }
            if (used) {
              codes.insert({r.source_vocabulary, std::move(source),
                            r.source_prefix && h.rollup_len == 0});
            }
          }
        }
      }
      // A spec that repeats a code (or two codes reaching the same rows)
      // counts each row once per spec in the engine; the report counts the
      // rows per query code.
      // A mapped code the spec already lists adds nothing.
      for (const v1::Code& code : spec.codes()) {
        codes.erase({code.vocabulary(), code.code(), code.prefix()});
      }
      added.emplace_back(codes.begin(), codes.end());
      any |= !codes.empty();
    });
  }
  if (report != nullptr) {
    report->Clear();
    report->set_site(site);
    report->set_mapping_set(mapping_set());
    report->set_code_matching(mode);
    int samples = 0;
    for (auto& [key, a] : accounts) {
      if (report->codes_size() >= kMaxExpansionEntries) break;
      v1::CodeExpansion* e = report->add_codes();
      *e = std::move(a.e);
      e->set_code(std::get<1>(key));
      e->set_domain(static_cast<v1::Domain>(std::get<0>(key)));
      e->set_site_vocabulary(std::get<2>(key));
      e->set_crosswalk(std::get<3>(key));
      e->set_source_codes(static_cast<int64_t>(a.sources.size()));
      for (const std::string& s : a.sources) {
        if (e->sample_source_codes_size() >= kMaxExpansionSamples ||
            samples >= kMaxExpansionSampleTotal) {
          break;
        }
        e->add_sample_source_codes(s);
        ++samples;
      }
    }
    for (const auto& [domain, got] : reached) {
      auto sv = site_.find(domain);
      if (sv == site_.end()) continue;
      for (const std::string& w : sv->second) {
        // OMOP concept ids name the same rows as their vocabulary codes
        // (the loaders index both): not a separate body of records.
        if (w == "concept") continue;
        if (got.count(w) == 0) {
          report->add_unreached(absl::StrCat(DomainName(domain), ": ", w));
        }
      }
    }
  }
  if (!any || expanded == nullptr) return any;
  *expanded = query;
  size_t i = 0;
  ForEachSpec(expanded->mutable_where(), [&](v1::EventSpec* spec) {
    for (const SiteCode& c : added[i]) {
      v1::Code* code = spec->add_codes();
      code->set_vocabulary(std::get<0>(c));
      code->set_code(std::get<1>(c));
      code->set_prefix(std::get<2>(c));
    }
    ++i;
  });
  return true;
}

}  // namespace passerelle::node
