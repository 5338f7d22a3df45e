// Loading and validation of policy files (Policy::Load and friends).
#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "common/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "policy/policy.h"
#include "policy/query_features.h"

namespace passerelle::policy {

namespace v1 = ::passerelle::v1;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::TextFormat;

namespace {

std::string Basename(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// Collects the text format parser's errors as "file:line:column: message".
class Collector : public google::protobuf::io::ErrorCollector {
 public:
  Collector(const std::string& file, std::vector<std::string>* errors,
            std::vector<std::string>* warnings)
      : file_(file), errors_(errors), warnings_(warnings) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_->push_back(
        absl::StrCat(file_, ":", line + 1, ":", column + 1, ": ", message));
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
    warnings_->push_back(
        absl::StrCat(file_, ":", line + 1, ":", column + 1, ": ", message));
  }

 private:
  const std::string& file_;
  std::vector<std::string>* errors_;
  std::vector<std::string>* warnings_;
};

// Where a message (and its fields) sits in a policy file.
// The ledger keeps caps in whole micro-units (ledger/ledger.h,
// privacy/units.h).
constexpr double kLedgerUnitsPerCap = 1e6;

class Where {
 public:
  Where(const std::string* file, const TextFormat::ParseInfoTree* tree,
        const Descriptor* desc, int line, int column)
      : file_(file), tree_(tree), desc_(desc), line_(line), column_(column) {}

  // "file:line:column" of this message.
  std::string Here() const { return Format(line_, column_); }
  // "basename:line" of this message, for decision reasons.
  std::string Short() const {
    return absl::StrCat(Basename(*file_), ":", line_ + 1);
  }
  // "file:line:column" of field `name` (element `index` when repeated), or of
  // this message when the field was not written.
  std::string At(absl::string_view name, int index = -1) const {
    const FieldDescriptor* f = Field(name);
    if (tree_ != nullptr && f != nullptr) {
      if (!f->is_repeated()) {
        auto loc = tree_->GetLocation(f, -1);
        if (loc.line >= 0) return Format(loc.line, loc.column);
      } else {
        // The parser records one location per occurrence of the field, so
        // the elements of a list `[a, b]` share the first one's.
        for (int i = std::max(index, 0); i >= 0; --i) {
          auto loc = tree_->GetLocation(f, i);
          if (loc.line >= 0) return Format(loc.line, loc.column);
        }
      }
    }
    return Here();
  }
  // Whether field `name` was written in the file (even with a zero value).
  bool Has(absl::string_view name) const {
    const FieldDescriptor* f = Field(name);
    if (tree_ == nullptr || f == nullptr || f->is_repeated()) return false;
    return tree_->GetLocation(f, -1).line >= 0;
  }
  Where Nested(absl::string_view name, int index = -1) const {
    const FieldDescriptor* f = Field(name);
    if (f == nullptr || f->message_type() == nullptr) return *this;
    int idx = f->is_repeated() ? index : -1;
    const TextFormat::ParseInfoTree* sub = nullptr;
    int line = line_, column = column_;
    if (tree_ != nullptr) {
      auto loc = tree_->GetLocation(f, idx);
      if (loc.line >= 0) {
        line = loc.line;
        column = loc.column;
        sub = tree_->GetTreeForNested(f, idx);
      }
    }
    return Where(file_, sub, f->message_type(), line, column);
  }

 private:
  const FieldDescriptor* Field(absl::string_view name) const {
    return desc_->FindFieldByName(std::string(name));
  }
  std::string Format(int line, int column) const {
    return absl::StrCat(*file_, ":", line + 1, ":", column + 1);
  }

  const std::string* file_;
  const TextFormat::ParseInfoTree* tree_;
  const Descriptor* desc_;
  int line_;
  int column_;
};

bool ValidSiteId(absl::string_view id) {
  if (id.empty() || id.size() > 32) return false;
  for (char c : id) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' ||
          c == '_')) {
      return false;
    }
  }
  return true;
}

bool ValidDuo(absl::string_view code) {
  if (code.size() != 11 || !absl::StartsWith(code, "DUO:")) return false;
  for (char c : code.substr(4)) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

absl::StatusOr<absl::CivilDay> ParseDay(absl::string_view text) {
  absl::CivilDay day;
  if (text.size() != 10 || text[4] != '-' || text[7] != '-' ||
      !absl::ParseCivilTime(text, &day)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a date YYYY-MM-DD"));
  }
  return day;
}

absl::Status Sha256Hex(const std::vector<PolicySource>& sources,
                       std::string* out) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              &EVP_MD_CTX_free);
  if (ctx == nullptr ||
      EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("SHA-256 unavailable");
  }
  for (const PolicySource& s : sources) {
    unsigned char len[8];
    uint64_t n = s.contents.size();
    for (int i = 7; i >= 0; --i) {
      len[i] = static_cast<unsigned char>(n & 0xff);
      n >>= 8;
    }
    if (EVP_DigestUpdate(ctx.get(), len, sizeof(len)) != 1 ||
        EVP_DigestUpdate(ctx.get(), s.contents.data(), s.contents.size()) !=
            1) {
      return absl::InternalError("SHA-256 update failed");
    }
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &md_len) != 1) {
    return absl::InternalError("SHA-256 final failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out->clear();
  for (unsigned int i = 0; i < md_len; ++i) {
    out->push_back(kHex[md[i] >> 4]);
    out->push_back(kHex[md[i] & 0xf]);
  }
  return absl::OkStatus();
}

}  // namespace

// Builds a Policy from parsed files; collects every error before failing.
class PolicyBuilder {
 public:
  absl::StatusOr<std::shared_ptr<const Policy>> Build(
      std::vector<PolicySource> sources);

 private:
  struct Item {
    const v1::PolicyFile* file;
    Where where;  // Of the whole file.
  };

  void Error(const std::string& where, absl::string_view message) {
    errors_.push_back(absl::StrCat(where, ": ", message));
  }
  void Warn(const std::string& where, absl::string_view message) {
    policy_->warnings_.push_back(absl::StrCat(where, ": ", message));
  }

  void CheckNames(const google::protobuf::RepeatedPtrField<std::string>& names,
                  const std::set<std::string>& known, absl::string_view kind,
                  const Where& w, absl::string_view field);
  void CheckScope(const v1::Scope& scope, const Where& w);
  void CheckDisclosure(const v1::Disclosure& d, const Where& w,
                       bool federation);
  void CheckMembers(
      const google::protobuf::RepeatedPtrField<v1::Member>& members,
      const Where& w, bool federation);
  void CheckForbid(const v1::ForbidRule& rule, const Where& w);
  void CheckProject(const v1::Project& p, const Where& w);
  // Each of `fields` (doubles of `b`) finite, > 0 when written, and not
  // below the ledger's resolution.
  void CheckCaps(const v1::Budget& b, const Where& bw,
                 std::initializer_list<const char*> fields);
  // The federation's researcher_budget.
  void CheckResearcherBudget(const v1::Budget& b, const Where& bw);
  void CheckSite(const v1::SitePolicy& s, const Where& w);
  void CheckRefs(const google::protobuf::RepeatedPtrField<std::string>& refs,
                 const std::set<std::string>& known, absl::string_view kind,
                 const Where& w, absl::string_view field);

  std::shared_ptr<Policy> policy_;
  std::vector<std::string> errors_;
  std::set<std::string> federation_sites_;
};

void PolicyBuilder::CheckNames(
    const google::protobuf::RepeatedPtrField<std::string>& names,
    const std::set<std::string>& known, absl::string_view kind, const Where& w,
    absl::string_view field) {
  std::set<std::string> seen;
  for (int i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    if (known.count(n) == 0) {
      Error(w.At(field, i),
            absl::StrCat("unknown ", kind, " \"", n,
                         "\" (known: ", absl::StrJoin(known, ", "), ")"));
    } else if (!seen.insert(n).second) {
      Error(w.At(field, i), absl::StrCat(kind, " \"", n, "\" listed twice"));
    }
  }
}

void PolicyBuilder::CheckRefs(
    const google::protobuf::RepeatedPtrField<std::string>& refs,
    const std::set<std::string>& known, absl::string_view kind, const Where& w,
    absl::string_view field) {
  std::set<std::string> seen;
  for (int i = 0; i < refs.size(); ++i) {
    if (known.count(refs[i]) == 0) {
      Error(w.At(field, i),
            absl::StrCat("unknown ", kind, " \"", refs[i], "\""));
    } else if (!seen.insert(refs[i]).second) {
      Error(w.At(field, i),
            absl::StrCat(kind, " \"", refs[i], "\" listed twice"));
    }
  }
}

void PolicyBuilder::CheckScope(const v1::Scope& scope, const Where& w) {
  CheckNames(scope.domains(), KnownDomains(), "domain", w, "domains");
  CheckNames(scope.vocabularies(), KnownVocabularies(), "vocabulary", w,
             "vocabularies");
  CheckNames(scope.criteria(), KnownCriteria(), "criterion kind", w,
             "criteria");
  CheckNames(scope.dimensions(), KnownDimensions(), "dimension", w,
             "dimensions");
  if (scope.min_age_band_width() < 0) {
    Error(w.At("min_age_band_width"), "min_age_band_width must be >= 0");
  }
  if (scope.max_breakdown_cells() < 0 ||
      (w.Has("max_breakdown_cells") && scope.max_breakdown_cells() == 0)) {
    Error(w.At("max_breakdown_cells"),
          "max_breakdown_cells must be > 0 (omit it for no limit)");
  }
}

void PolicyBuilder::CheckDisclosure(const v1::Disclosure& d, const Where& w,
                                    bool federation) {
  if (d.min_cell_size() < 0 ||
      (w.Has("min_cell_size") && d.min_cell_size() == 0)) {
    Error(w.At("min_cell_size"),
          "min_cell_size must be >= 1 (omit it to inherit)");
  }
  for (const char* field : {"epsilon_per_query", "rho_per_query"}) {
    double v = std::string(field) == "epsilon_per_query" ? d.epsilon_per_query()
                                                         : d.rho_per_query();
    if (!std::isfinite(v) || v < 0 || (w.Has(field) && v == 0)) {
      Error(w.At(field), absl::StrCat(field, " must be a finite number > 0"));
    }
  }
  if (d.rounding() < 0) Error(w.At("rounding"), "rounding must be >= 0");
  if (d.mechanism() != v1::Disclosure::MECHANISM_UNSPECIFIED &&
      !v1::Disclosure::Mechanism_IsValid(d.mechanism())) {
    Error(w.At("mechanism"), "unknown mechanism");
  }
  if (d.mechanism() == v1::Disclosure::LAPLACE && d.epsilon_per_query() <= 0 &&
      federation) {
    Error(w.At("mechanism"), "mechanism LAPLACE needs epsilon_per_query");
  }
  if (d.mechanism() == v1::Disclosure::GAUSSIAN && d.rho_per_query() <= 0 &&
      federation) {
    Error(w.At("mechanism"), "mechanism GAUSSIAN needs rho_per_query");
  }
  if (federation) {
    if (d.mechanism() == v1::Disclosure::MECHANISM_UNSPECIFIED) {
      Error(w.Here(),
            "the federation's disclosure needs a mechanism (LAPLACE, "
            "GAUSSIAN or EXACT)");
    }
    if (d.min_cell_size() <= 0) {
      Error(w.Here(), "the federation's disclosure needs min_cell_size");
    }
    if (d.mechanism() == v1::Disclosure::EXACT && !d.exact_mode_allowed()) {
      Error(w.At("mechanism"),
            "mechanism EXACT needs exact_mode_allowed: true");
    }
  }
}

void PolicyBuilder::CheckMembers(
    const google::protobuf::RepeatedPtrField<v1::Member>& members,
    const Where& w, bool federation) {
  std::set<std::pair<std::string, int>> seen;
  for (int i = 0; i < members.size(); ++i) {
    const v1::Member& m = members[i];
    Where mw = w.Nested("member", i);
    if (m.identity().empty()) Error(mw.Here(), "member without identity");
    if (m.role() == v1::Member::ROLE_UNSPECIFIED ||
        !v1::Member::Role_IsValid(m.role())) {
      Error(mw.At("role"),
            "member needs a role: RESEARCHER, STEWARD or AUDITOR");
    } else if (federation && m.role() == v1::Member::RESEARCHER) {
      Error(mw.At("role"),
            "researchers are members of a project, not of the federation");
    }
    if (!seen.insert({m.identity(), m.role()}).second) {
      Error(mw.Here(), absl::StrCat("member \"", m.identity(), "\" with role ",
                                    RoleName(m.role()), " listed twice"));
    }
  }
}

void PolicyBuilder::CheckForbid(const v1::ForbidRule& r, const Where& w) {
  if (r.id().empty()) Error(w.Here(), "forbid rule without id");
  bool any = !r.identities().empty() || !r.projects().empty() ||
             !r.sites().empty() || !r.purposes().empty() ||
             !r.domains().empty() || !r.vocabularies().empty() ||
             !r.criteria().empty() || !r.dimensions().empty() ||
             r.min_cell_size_below() != 0 || r.epsilon_above() != 0 ||
             r.rho_above() != 0 || r.has_exact_mode() || !r.roles().empty();
  if (!any) {
    Error(w.Here(), absl::StrCat("forbid rule \"", r.id(),
                                 "\" has no condition (it would deny "
                                 "everything; say what it forbids)"));
  }
  CheckNames(r.domains(), KnownDomains(), "domain", w, "domains");
  CheckNames(r.vocabularies(), KnownVocabularies(), "vocabulary", w,
             "vocabularies");
  CheckNames(r.criteria(), KnownCriteria(), "criterion kind", w, "criteria");
  CheckNames(r.dimensions(), KnownDimensions(), "dimension", w, "dimensions");
  for (int i = 0; i < r.purposes().size(); ++i) {
    if (!ValidDuo(r.purposes(i))) {
      Error(w.At("purposes", i),
            absl::StrCat("\"", r.purposes(i),
                         "\" is not a DUO code (DUO:0000000)"));
    }
  }
  for (int i = 0; i < r.roles().size(); ++i) {
    if (r.roles(i) == v1::Member::ROLE_UNSPECIFIED ||
        !v1::Member::Role_IsValid(r.roles(i))) {
      Error(w.At("roles", i), "unknown role");
    }
  }
  if (r.min_cell_size_below() < 0) {
    Error(w.At("min_cell_size_below"), "min_cell_size_below must be >= 0");
  }
  if (!std::isfinite(r.epsilon_above()) || r.epsilon_above() < 0 ||
      (w.Has("epsilon_above") && r.epsilon_above() == 0)) {
    Error(w.At("epsilon_above"), "epsilon_above must be a finite number > 0");
  }
  if (!std::isfinite(r.rho_above()) || r.rho_above() < 0 ||
      (w.Has("rho_above") && r.rho_above() == 0)) {
    Error(w.At("rho_above"), "rho_above must be a finite number > 0");
  }
  if (policy_->federation_) {
    std::set<std::string> projects;
    for (const auto& [id, p] : policy_->projects_) projects.insert(id);
    CheckRefs(r.projects(), projects, "project", w, "projects");
    CheckRefs(r.sites(), federation_sites_, "site", w, "sites");
  }
}

void PolicyBuilder::CheckProject(const v1::Project& p, const Where& w) {
  if (p.purposes().empty()) {
    Error(w.Here(), absl::StrCat("project \"", p.id(),
                                 "\" needs at least one purpose (a DUO code)"));
  }
  for (int i = 0; i < p.purposes().size(); ++i) {
    if (!ValidDuo(p.purposes(i))) {
      Error(w.At("purposes", i),
            absl::StrCat("\"", p.purposes(i),
                         "\" is not a DUO code (DUO:0000000)"));
    }
  }
  CheckMembers(p.member(), w, /*federation=*/false);
  std::optional<absl::CivilDay> from, until;
  if (!p.valid_from().empty()) {
    auto d = ParseDay(p.valid_from());
    if (!d.ok()) {
      Error(w.At("valid_from"), d.status().message());
    } else {
      from = *d;
    }
  }
  if (p.valid_until().empty()) {
    Error(w.Here(), absl::StrCat("project \"", p.id(),
                                 "\" needs valid_until (YYYY-MM-DD)"));
  } else {
    auto d = ParseDay(p.valid_until());
    if (!d.ok()) {
      Error(w.At("valid_until"), d.status().message());
    } else {
      until = *d;
    }
  }
  if (from && until && *until < *from) {
    Error(w.At("valid_until"),
          absl::StrCat("valid_until ", p.valid_until(),
                       " is before valid_from ", p.valid_from()));
  }
  if (p.sites().empty()) {
    Error(w.Here(), absl::StrCat("project \"", p.id(),
                                 "\" needs the sites it may query"));
  }
  CheckRefs(p.sites(), federation_sites_, "site", w, "sites");
  if (p.has_allow()) CheckScope(p.allow(), w.Nested("allow"));
  if (p.has_disclosure()) {
    CheckDisclosure(p.disclosure(), w.Nested("disclosure"), false);
  }
  const v1::Disclosure& fd = policy_->federation_->disclosure();
  v1::Disclosure::Mechanism mech =
      p.disclosure().mechanism() != v1::Disclosure::MECHANISM_UNSPECIFIED
          ? p.disclosure().mechanism()
          : fd.mechanism();
  if (mech == v1::Disclosure::EXACT) return;
  if (!p.has_budget()) {
    Error(w.Here(), absl::StrCat("project \"", p.id(),
                                 "\" needs a budget (epsilon_cap or rho_cap)"));
    return;
  }
  const v1::Budget& b = p.budget();
  Where bw = w.Nested("budget");
  CheckCaps(b, bw,
            {"epsilon_cap", "rho_cap", "researcher_epsilon_cap",
             "researcher_rho_cap"});
  if (b.epsilon_cap() <= 0 && b.rho_cap() <= 0) {
    Error(bw.Here(), "budget needs epsilon_cap or rho_cap");
  }
  if (b.reset_period_days() < 0) {
    Error(bw.At("reset_period_days"), "reset_period_days must be >= 0");
  }
  // A cap no single query fits in is a mistake, not a policy.
  double eps = fd.epsilon_per_query();
  if (p.disclosure().epsilon_per_query() > 0 &&
      (eps <= 0 || p.disclosure().epsilon_per_query() < eps)) {
    eps = p.disclosure().epsilon_per_query();
  }
  double rho = fd.rho_per_query();
  if (p.disclosure().rho_per_query() > 0 &&
      (rho <= 0 || p.disclosure().rho_per_query() < rho)) {
    rho = p.disclosure().rho_per_query();
  }
  if (mech == v1::Disclosure::LAPLACE) rho = eps * eps / 2;
  if (mech == v1::Disclosure::LAPLACE) {
    if (b.epsilon_cap() > 0 && eps > b.epsilon_cap()) {
      Error(bw.At("epsilon_cap"),
            absl::StrCat("epsilon_cap ", b.epsilon_cap(),
                         " is below one query's epsilon ", eps));
    }
    if (b.researcher_epsilon_cap() > 0 && eps > b.researcher_epsilon_cap()) {
      Error(bw.At("researcher_epsilon_cap"),
            absl::StrCat("researcher_epsilon_cap ", b.researcher_epsilon_cap(),
                         " is below one query's epsilon ", eps));
    }
  }
  if (b.rho_cap() > 0 && rho > b.rho_cap()) {
    Error(bw.At("rho_cap"), absl::StrCat("rho_cap ", b.rho_cap(),
                                         " is below one query's rho ", rho));
  }
  if (b.researcher_rho_cap() > 0 && rho > b.researcher_rho_cap()) {
    Error(bw.At("researcher_rho_cap"),
          absl::StrCat("researcher_rho_cap ", b.researcher_rho_cap(),
                       " is below one query's rho ", rho));
  }
}

void PolicyBuilder::CheckCaps(const v1::Budget& b, const Where& bw,
                              std::initializer_list<const char*> fields) {
  for (const char* f : fields) {
    const FieldDescriptor* fd_field = b.GetDescriptor()->FindFieldByName(f);
    double v = b.GetReflection()->GetDouble(b, fd_field);
    if (!std::isfinite(v) || v < 0 || (bw.Has(f) && v == 0)) {
      Error(bw.At(f), absl::StrCat(f, " must be a finite number > 0"));
    } else if (v > 0 && v * kLedgerUnitsPerCap + 1e-6 < 1) {
      // The ledger keeps whole micro-units and rounds caps down: this cap
      // would be 0, which means no cap at all.
      Error(bw.At(f),
            absl::StrCat(f, " ", v,
                         " is below the ledger's resolution of 0.000001 (it "
                         "would round down to 0, which means no cap)"));
    }
  }
}

void PolicyBuilder::CheckResearcherBudget(const v1::Budget& b,
                                          const Where& bw) {
  for (const char* f : {"epsilon_cap", "rho_cap"}) {
    if (bw.Has(f)) {
      Error(bw.At(f),
            absl::StrCat(f,
                         " does not apply to the federation's "
                         "researcher_budget (only researcher_epsilon_cap, "
                         "researcher_rho_cap and reset_period_days do)"));
    }
  }
  CheckCaps(b, bw, {"researcher_epsilon_cap", "researcher_rho_cap"});
  if (b.researcher_epsilon_cap() <= 0 && b.researcher_rho_cap() <= 0) {
    Error(bw.Here(),
          "researcher_budget needs researcher_epsilon_cap or "
          "researcher_rho_cap");
  }
  if (b.reset_period_days() < 0) {
    Error(bw.At("reset_period_days"), "reset_period_days must be >= 0");
  }
}

void PolicyBuilder::CheckSite(const v1::SitePolicy& s, const Where& w) {
  if (s.callers().empty()) {
    Error(w.Here(), absl::StrCat("site \"", s.id(),
                                 "\" lists no callers (the node would answer "
                                 "nobody); add the gateway's identity"));
  }
  std::set<std::string> seen;
  for (int i = 0; i < s.callers().size(); ++i) {
    if (s.callers(i).empty()) Error(w.At("callers", i), "empty caller");
    if (!seen.insert(s.callers(i)).second) {
      Error(w.At("callers", i),
            absl::StrCat("caller \"", s.callers(i), "\" listed twice"));
    }
  }
  std::set<std::string> auditors;
  for (int i = 0; i < s.auditors().size(); ++i) {
    if (s.auditors(i).empty()) Error(w.At("auditors", i), "empty auditor");
    if (!auditors.insert(s.auditors(i)).second) {
      Error(w.At("auditors", i),
            absl::StrCat("auditor \"", s.auditors(i), "\" listed twice"));
    }
  }
  if (s.has_disclosure()) {
    CheckDisclosure(s.disclosure(), w.Nested("disclosure"), false);
  }
  if (s.has_allow()) CheckScope(s.allow(), w.Nested("allow"));
  std::set<std::string> rule_ids;
  for (int i = 0; i < s.forbid().size(); ++i) {
    Where rw = w.Nested("forbid", i);
    CheckForbid(s.forbid(i), rw);
    if (!s.forbid(i).id().empty() &&
        !rule_ids.insert(s.forbid(i).id()).second) {
      Error(rw.At("id"),
            absl::StrCat("duplicate forbid rule id \"", s.forbid(i).id(),
                         "\" in site \"", s.id(), "\""));
    }
  }
  if (policy_->federation_) {
    if (federation_sites_.count(s.id()) == 0) {
      Error(w.At("id"), absl::StrCat("site \"", s.id(),
                                     "\" is not a site of the federation"));
    }
    std::set<std::string> projects;
    for (const auto& [id, p] : policy_->projects_) projects.insert(id);
    CheckRefs(s.projects(), projects, "project", w, "projects");
    const std::string& gw = policy_->federation_->gateway_identity();
    if (!gw.empty() && std::find(s.callers().begin(), s.callers().end(), gw) ==
                           s.callers().end()) {
      Warn(w.At("callers"),
           absl::StrCat("site \"", s.id(), "\" does not answer the gateway \"",
                        gw, "\""));
    }
  }
}

absl::StatusOr<std::shared_ptr<const Policy>> PolicyBuilder::Build(
    std::vector<PolicySource> sources) {
  std::sort(sources.begin(), sources.end(),
            [](const PolicySource& a, const PolicySource& b) {
              return a.path < b.path;
            });
  policy_ = std::shared_ptr<Policy>(new Policy());
  if (sources.empty()) {
    return absl::InvalidArgumentError("no policy files given");
  }
  for (size_t i = 1; i < sources.size(); ++i) {
    if (sources[i].path == sources[i - 1].path) {
      return absl::InvalidArgumentError(
          absl::StrCat(sources[i].path, ": given twice"));
    }
  }

  // Phase 1: parse every file.
  std::vector<std::unique_ptr<v1::PolicyFile>> files;
  std::vector<std::unique_ptr<TextFormat::ParseInfoTree>> trees;
  std::vector<Item> items;
  for (const PolicySource& s : sources) {
    policy_->files_.push_back(s.path);
    auto file = std::make_unique<v1::PolicyFile>();
    auto tree = std::make_unique<TextFormat::ParseInfoTree>();
    Collector collector(s.path, &errors_, &policy_->warnings_);
    TextFormat::Parser parser;
    parser.RecordErrorsTo(&collector);
    parser.WriteLocationsTo(tree.get());
    if (!parser.ParseFromString(s.contents, file.get())) {
      continue;  // The collector has the errors.
    }
    items.push_back(
        Item{file.get(),
             Where(&s.path, tree.get(), v1::PolicyFile::descriptor(), 0, 0)});
    files.push_back(std::move(file));
    trees.push_back(std::move(tree));
  }
  PASSERELLE_RETURN_IF_ERROR(Sha256Hex(sources, &policy_->version_));

  // Phase 2: merge, with duplicates reported where the second one is.
  const Item* federation_item = nullptr;
  for (const Item& item : items) {
    const v1::PolicyFile& f = *item.file;
    if (f.has_federation()) {
      Where fw = item.where.Nested("federation");
      if (policy_->federation_) {
        Error(fw.Here(), absl::StrCat("a second federation block (the first "
                                      "is at ",
                                      policy_->federation_where_, ")"));
      } else {
        policy_->federation_ = f.federation();
        federation_item = &item;
        policy_->federation_where_ = fw.Short();
        policy_->federation_allow_where_ = fw.Nested("allow").Short();
        for (int i = 0; i < f.federation().site().size(); ++i) {
          const v1::SiteRef& s = f.federation().site(i);
          if (!ValidSiteId(s.id())) {
            Error(
                fw.Nested("site", i).At("id"),
                absl::StrCat("site id \"", s.id(),
                             "\" must be lower-case letters, digits, - or _"));
          } else if (!federation_sites_.insert(s.id()).second) {
            Error(fw.Nested("site", i).At("id"),
                  absl::StrCat("duplicate site id \"", s.id(), "\""));
          }
        }
      }
    }
    for (int i = 0; i < f.project().size(); ++i) {
      const v1::Project& p = f.project(i);
      Where pw = item.where.Nested("project", i);
      if (p.id().empty()) {
        Error(pw.Here(), "project without id");
        continue;
      }
      auto [it, inserted] = policy_->projects_.emplace(
          p.id(), Policy::Located<v1::Project>{p, pw.Short(),
                                               pw.Nested("allow").Short()});
      if (!inserted) {
        Error(pw.At("id"),
              absl::StrCat("duplicate project id \"", p.id(), "\" (first at ",
                           it->second.where, ")"));
      }
    }
    for (int i = 0; i < f.site().size(); ++i) {
      const v1::SitePolicy& s = f.site(i);
      Where sw = item.where.Nested("site", i);
      if (!ValidSiteId(s.id())) {
        Error(sw.At("id"),
              absl::StrCat("site id \"", s.id(),
                           "\" must be lower-case letters, digits, - or _"));
        continue;
      }
      auto [it, inserted] = policy_->sites_.emplace(
          s.id(), Policy::Located<v1::SitePolicy>{s, sw.Short(),
                                                  sw.Nested("allow").Short()});
      if (!inserted) {
        Error(sw.At("id"),
              absl::StrCat("duplicate site policy \"", s.id(), "\" (first at ",
                           it->second.where, ")"));
        continue;
      }
      std::vector<std::string>& wheres = policy_->site_forbid_where_[s.id()];
      for (int j = 0; j < s.forbid().size(); ++j) {
        wheres.push_back(sw.Nested("forbid", j).Short());
      }
    }
    for (int i = 0; i < f.forbid().size(); ++i) {
      policy_->forbids_.push_back(Policy::Located<v1::ForbidRule>{
          f.forbid(i), item.where.Nested("forbid", i).Short(), ""});
    }
  }

  // Phase 3: validate each part now that every id is known.
  std::set<std::string> forbid_ids;
  for (const Item& item : items) {
    const v1::PolicyFile& f = *item.file;
    if (&item == federation_item) {
      const v1::Federation& fed = f.federation();
      Where fw = item.where.Nested("federation");
      if (fed.id().empty()) Error(fw.Here(), "federation without id");
      if (fed.gateway_identity().empty()) {
        Error(fw.Here(), "federation needs gateway_identity");
      }
      if (fed.site().empty()) Error(fw.Here(), "federation lists no site");
      CheckMembers(fed.member(), fw, /*federation=*/true);
      if (!fed.has_disclosure()) {
        Error(fw.Here(), "federation needs a disclosure block");
      } else {
        CheckDisclosure(fed.disclosure(), fw.Nested("disclosure"), true);
      }
      if (!fed.has_allow()) {
        Error(fw.Here(),
              "federation needs an allow block (default deny: nothing is "
              "allowed otherwise)");
      } else {
        CheckScope(fed.allow(), fw.Nested("allow"));
      }
      if (fed.has_researcher_budget()) {
        CheckResearcherBudget(fed.researcher_budget(),
                              fw.Nested("researcher_budget"));
      }
      for (const std::string& site : federation_sites_) {
        if (policy_->sites_.count(site) == 0) {
          Warn(fw.Here(), absl::StrCat("no site policy loaded for site \"",
                                       site, "\"; queries to it are denied"));
        }
      }
    }
    if (!policy_->federation_ &&
        (!f.project().empty() || !f.forbid().empty())) {
      Error(item.where.Here(),
            "projects and federation forbid rules need the federation block "
            "in the same policy set (load federation.textproto too)");
      continue;
    }
    for (int i = 0; i < f.project().size(); ++i) {
      CheckProject(f.project(i), item.where.Nested("project", i));
    }
    for (int i = 0; i < f.site().size(); ++i) {
      CheckSite(f.site(i), item.where.Nested("site", i));
    }
    for (int i = 0; i < f.forbid().size(); ++i) {
      Where rw = item.where.Nested("forbid", i);
      CheckForbid(f.forbid(i), rw);
      if (!f.forbid(i).id().empty() &&
          !forbid_ids.insert(f.forbid(i).id()).second) {
        Error(rw.At("id"), absl::StrCat("duplicate forbid rule id \"",
                                        f.forbid(i).id(), "\""));
      }
    }
  }

  // A guard rail the configuration itself breaks is an error now rather
  // than a denial of every query later.
  if (policy_->federation_) {
    int64_t fed_min = policy_->federation_->disclosure().min_cell_size();
    for (const auto& rule : policy_->forbids_) {
      const v1::ForbidRule& r = rule.msg;
      bool only_min = r.min_cell_size_below() > 0 && r.identities().empty() &&
                      r.projects().empty() && r.sites().empty() &&
                      r.purposes().empty() && r.domains().empty() &&
                      r.vocabularies().empty() && r.criteria().empty() &&
                      r.dimensions().empty() && r.epsilon_above() == 0 &&
                      r.rho_above() == 0 && !r.has_exact_mode() &&
                      r.roles().empty();
      if (only_min && fed_min > 0 && fed_min < r.min_cell_size_below()) {
        errors_.push_back(absl::StrCat(
            policy_->federation_where_, ": federation min_cell_size ", fed_min,
            " breaks forbid rule \"", r.id(), "\" (", rule.where, ")"));
      }
      if (!only_min) continue;
      // Lower values elsewhere are harmless (the strictest wins) but
      // misleading to whoever reads that file.
      for (const auto& [id, site] : policy_->sites_) {
        int64_t m = site.msg.disclosure().min_cell_size();
        if (m > 0 && m < r.min_cell_size_below()) {
          Warn(site.where,
               absl::StrCat("site \"", id, "\" min_cell_size ", m,
                            " is below forbid rule \"", r.id(), "\" (",
                            rule.where, "); the federation's ", fed_min,
                            " applies"));
        }
      }
      for (const auto& [id, project] : policy_->projects_) {
        int64_t m = project.msg.disclosure().min_cell_size();
        if (m > 0 && m < r.min_cell_size_below()) {
          Warn(project.where,
               absl::StrCat("project \"", id, "\" min_cell_size ", m,
                            " is below forbid rule \"", r.id(), "\" (",
                            rule.where, "); the federation's ", fed_min,
                            " applies"));
        }
      }
    }
  }

  if (!errors_.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
  }
  return std::shared_ptr<const Policy>(std::move(policy_));
}

absl::StatusOr<std::shared_ptr<const Policy>> Policy::LoadFromSources(
    std::vector<PolicySource> sources) {
  PolicyBuilder builder;
  return builder.Build(std::move(sources));
}

absl::StatusOr<std::vector<std::string>> ExpandPolicyPaths(
    const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    fs::file_status st = fs::status(p, ec);
    if (ec || !fs::exists(st)) {
      return absl::NotFoundError(
          absl::StrCat(p, ": no such file or directory"));
    }
    if (fs::is_directory(st)) {
      std::vector<std::string> in_dir;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        if (entry.is_regular_file() &&
            entry.path().extension() == ".textproto") {
          in_dir.push_back(entry.path().string());
        }
      }
      if (ec) {
        return absl::UnavailableError(
            absl::StrCat(p, ": cannot list: ", ec.message()));
      }
      std::sort(in_dir.begin(), in_dir.end());
      out.insert(out.end(), in_dir.begin(), in_dir.end());
    } else {
      out.push_back(p);
    }
  }
  return out;
}

absl::StatusOr<std::vector<PolicySource>> ReadPolicySources(
    const std::vector<std::string>& paths) {
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<std::string> files,
                              ExpandPolicyPaths(paths));
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no *.textproto policy files in ", absl::StrJoin(paths, ", ")));
  }
  std::sort(files.begin(), files.end());
  std::vector<PolicySource> sources;
  for (const std::string& path : files) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::UnavailableError(absl::StrCat(path, ": cannot read"));
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) {
      return absl::UnavailableError(absl::StrCat(path, ": read error"));
    }
    sources.push_back(PolicySource{path, buf.str()});
  }
  return sources;
}

std::string PolicyVersion(std::vector<PolicySource> sources) {
  std::sort(sources.begin(), sources.end(),
            [](const PolicySource& a, const PolicySource& b) {
              return a.path < b.path;
            });
  std::string out;
  if (!Sha256Hex(sources, &out).ok()) return "";
  return out;
}

absl::StatusOr<std::shared_ptr<const Policy>> Policy::Load(
    const std::vector<std::string>& paths) {
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<PolicySource> sources,
                              ReadPolicySources(paths));
  return LoadFromSources(std::move(sources));
}

absl::StatusOr<absl::Time> ParsePolicyTime(absl::string_view text) {
  if (text.size() == 10) {
    PASSERELLE_ASSIGN_OR_RETURN(absl::CivilDay day, ParseDay(text));
    return absl::FromCivil(day, absl::UTCTimeZone());
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(text), &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\" is neither YYYY-MM-DD nor an RFC 3339 time"));
  }
  return t;
}

std::string RoleName(v1::Member::Role role) {
  switch (role) {
    case v1::Member::RESEARCHER:
      return "researcher";
    case v1::Member::STEWARD:
      return "steward";
    case v1::Member::AUDITOR:
      return "auditor";
    default:
      return "unspecified";
  }
}

std::optional<v1::Member::Role> ParseRole(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(name);
  if (n == "researcher") return v1::Member::RESEARCHER;
  if (n == "steward") return v1::Member::STEWARD;
  if (n == "auditor") return v1::Member::AUDITOR;
  return std::nullopt;
}

}  // namespace passerelle::policy
