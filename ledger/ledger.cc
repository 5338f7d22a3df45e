#include "ledger/ledger.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/crash_point.h"
#include "common/status_macros.h"
#include "privacy/units.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace passerelle::ledger {
namespace {

using privacy::MicrosToString;

// Keys. Names may not contain '\0', so "\0" separates them unambiguously.
//   "a\0<project>\0"              the project's account in its window
//   "a\0<project>\0<researcher>"  a researcher's account
//   "c\0<20-digit id>"            a charge
//   "m\0next_id"                  the next charge id
const std::string kAccountPrefix("a\0", 2);
const std::string kChargePrefix("c\0", 2);
const std::string kNextIdKey("m\0next_id", 9);

std::string AccountKey(const std::string& project,
                       const std::string& researcher) {
  return absl::StrCat(kAccountPrefix, project, std::string(1, '\0'),
                      researcher);
}

std::string ChargeKey(uint64_t id) {
  return absl::StrCat(kChargePrefix, absl::StrFormat("%020d", id));
}

// Values: "name=value" lines, values C-escaped.
using Fields = std::map<std::string, std::string>;

std::string Encode(const Fields& fields) {
  std::string out;
  for (const auto& [k, v] : fields)
    absl::StrAppend(&out, k, "=", absl::CEscape(v), "\n");
  return out;
}

absl::StatusOr<Fields> Decode(const std::string& value) {
  Fields fields;
  for (absl::string_view line :
       absl::StrSplit(value, '\n', absl::SkipEmpty())) {
    const size_t eq = line.find('=');
    std::string v;
    if (eq == absl::string_view::npos ||
        !absl::CUnescape(line.substr(eq + 1), &v)) {
      return absl::DataLossError("ledger: corrupt record");
    }
    fields[std::string(line.substr(0, eq))] = std::move(v);
  }
  return fields;
}

absl::StatusOr<int64_t> Int(const Fields& f, const std::string& name) {
  auto it = f.find(name);
  int64_t v = 0;
  if (it == f.end() || !absl::SimpleAtoi(it->second, &v)) {
    return absl::DataLossError(absl::StrCat("ledger: record lacks ", name));
  }
  return v;
}

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("ledger ", what, ": ", s.ToString()));
}

// An account's state in the store.
struct Stored {
  int64_t period = 0;
  int64_t epsilon = 0;
  int64_t rho = 0;
  // Project accounts also keep the caps last used, for Show.
  Caps caps;
};

std::string EncodeStored(const Stored& s, bool with_caps) {
  Fields f = {{"period", absl::StrCat(s.period)},
              {"epsilon", absl::StrCat(s.epsilon)},
              {"rho", absl::StrCat(s.rho)}};
  if (with_caps) {
    f["cap_epsilon"] = absl::StrCat(s.caps.project_epsilon_micros);
    f["cap_rho"] = absl::StrCat(s.caps.project_rho_micros);
    f["cap_researcher_epsilon"] =
        absl::StrCat(s.caps.researcher_epsilon_micros);
    f["cap_researcher_rho"] = absl::StrCat(s.caps.researcher_rho_micros);
    f["reset_seconds"] =
        absl::StrCat(absl::ToInt64Seconds(s.caps.reset_period));
  }
  return Encode(f);
}

absl::StatusOr<Stored> DecodeStored(const std::string& value, bool with_caps) {
  PASSERELLE_ASSIGN_OR_RETURN(Fields f, Decode(value));
  Stored s;
  PASSERELLE_ASSIGN_OR_RETURN(s.period, Int(f, "period"));
  PASSERELLE_ASSIGN_OR_RETURN(s.epsilon, Int(f, "epsilon"));
  PASSERELLE_ASSIGN_OR_RETURN(s.rho, Int(f, "rho"));
  if (with_caps) {
    PASSERELLE_ASSIGN_OR_RETURN(s.caps.project_epsilon_micros,
                                Int(f, "cap_epsilon"));
    PASSERELLE_ASSIGN_OR_RETURN(s.caps.project_rho_micros, Int(f, "cap_rho"));
    PASSERELLE_ASSIGN_OR_RETURN(s.caps.researcher_epsilon_micros,
                                Int(f, "cap_researcher_epsilon"));
    PASSERELLE_ASSIGN_OR_RETURN(s.caps.researcher_rho_micros,
                                Int(f, "cap_researcher_rho"));
    PASSERELLE_ASSIGN_OR_RETURN(int64_t reset, Int(f, "reset_seconds"));
    s.caps.reset_period = absl::Seconds(reset);
  }
  return s;
}

std::string EncodeCharge(const Charge& c) {
  return Encode({{"id", absl::StrCat(c.id)},
                 {"project", c.project},
                 {"researcher", c.researcher},
                 {"pure", c.pure ? "1" : "0"},
                 {"epsilon", absl::StrCat(c.epsilon_micros)},
                 {"rho", absl::StrCat(c.rho_micros)},
                 {"time_micros", absl::StrCat(absl::ToUnixMicros(c.time))},
                 {"period", absl::StrCat(c.period)},
                 {"refunded", c.refunded ? "1" : "0"}});
}

absl::StatusOr<Charge> DecodeCharge(const std::string& value) {
  PASSERELLE_ASSIGN_OR_RETURN(Fields f, Decode(value));
  Charge c;
  PASSERELLE_ASSIGN_OR_RETURN(int64_t id, Int(f, "id"));
  c.id = static_cast<uint64_t>(id);
  c.project = f["project"];
  c.researcher = f["researcher"];
  c.pure = f["pure"] == "1";
  PASSERELLE_ASSIGN_OR_RETURN(c.epsilon_micros, Int(f, "epsilon"));
  PASSERELLE_ASSIGN_OR_RETURN(c.rho_micros, Int(f, "rho"));
  PASSERELLE_ASSIGN_OR_RETURN(int64_t t, Int(f, "time_micros"));
  c.time = absl::FromUnixMicros(t);
  PASSERELLE_ASSIGN_OR_RETURN(c.period, Int(f, "period"));
  c.refunded = f["refunded"] == "1";
  return c;
}

int64_t PeriodOf(absl::Time now, absl::Duration period) {
  if (period <= absl::ZeroDuration()) return 0;
  absl::Duration rem;
  const int64_t q = absl::IDivDuration(now - absl::UnixEpoch(), period, &rem);
  return rem < absl::ZeroDuration() ? q - 1 : q;  // Floor, also before 1970.
}

absl::Status CheckName(const std::string& name, const char* what) {
  if (name.empty())
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " contains a NUL byte"));
  }
  return absl::OkStatus();
}

// Reads an account; absent means nothing spent. A stored window older than
// `period` counts as nothing spent (the budget has reset).
absl::StatusOr<Stored> ReadAccount(rocksdb::DB* db, const std::string& key,
                                   bool with_caps, int64_t period) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), key, &value);
  Stored stored;
  stored.period = period;
  if (s.IsNotFound()) return stored;
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read"));
  PASSERELLE_ASSIGN_OR_RETURN(Stored old, DecodeStored(value, with_caps));
  stored.caps = old.caps;
  // A window in the future (the clock went back) keeps its spending.
  if (old.period >= period) {
    stored.period = old.period;
    stored.epsilon = old.epsilon;
    stored.rho = old.rho;
  }
  return stored;
}

std::string CapText(int64_t micros) { return MicrosToString(micros); }

// Checks one cap; `label` is e.g. "project \"p\" epsilon cap".
absl::Status CheckCap(const std::string& label, int64_t cap, int64_t spent,
                      int64_t cost, std::optional<absl::Time> next_reset) {
  if (cap <= 0) return absl::OkStatus();
  if (spent + cost <= cap) return absl::OkStatus();
  const int64_t remaining = std::max<int64_t>(0, cap - spent);
  return absl::ResourceExhaustedError(absl::StrCat(
      label, " ", CapText(cap), " would be exceeded: spent ", CapText(spent),
      ", remaining ", CapText(remaining), ", this query costs ", CapText(cost),
      next_reset ? absl::StrCat("; the budget resets at ",
                                absl::FormatTime(absl::RFC3339_sec, *next_reset,
                                                 absl::UTCTimeZone()))
                 : std::string("; the budget does not reset")));
}

std::optional<absl::Time> NextReset(const Caps& caps, int64_t period) {
  if (caps.reset_period <= absl::ZeroDuration()) return std::nullopt;
  return absl::UnixEpoch() + caps.reset_period * (period + 1);
}

Account MakeAccount(const std::string& researcher, const Stored& s,
                    int64_t eps_cap, int64_t rho_cap) {
  Account a;
  a.researcher = researcher;
  a.epsilon_spent_micros = s.epsilon;
  a.rho_spent_micros = s.rho;
  a.epsilon_cap_micros = eps_cap;
  a.rho_cap_micros = rho_cap;
  if (eps_cap > 0)
    a.epsilon_remaining_micros = std::max<int64_t>(0, eps_cap - s.epsilon);
  if (rho_cap > 0)
    a.rho_remaining_micros = std::max<int64_t>(0, rho_cap - s.rho);
  return a;
}

}  // namespace

Caps CapsFromBudget(const passerelle::v1::Budget& budget) {
  Caps caps;
  auto convert = [&caps](double v, const char* name, int64_t* out) {
    absl::StatusOr<int64_t> m = privacy::ToMicrosFloor(v, name);
    if (!m.ok()) {
      if (caps.error.empty()) caps.error = std::string(m.status().message());
      return;
    }
    *out = *m;
  };
  convert(budget.epsilon_cap(), "budget.epsilon_cap",
          &caps.project_epsilon_micros);
  convert(budget.rho_cap(), "budget.rho_cap", &caps.project_rho_micros);
  convert(budget.researcher_epsilon_cap(), "budget.researcher_epsilon_cap",
          &caps.researcher_epsilon_micros);
  convert(budget.researcher_rho_cap(), "budget.researcher_rho_cap",
          &caps.researcher_rho_micros);
  if (budget.reset_period_days() < 0) {
    if (caps.error.empty()) caps.error = "budget.reset_period_days is negative";
  } else {
    caps.reset_period = absl::Hours(24) * budget.reset_period_days();
  }
  return caps;
}

absl::StatusOr<std::unique_ptr<BudgetLedger>> BudgetLedger::Open(
    const std::string& path, Clock* clock) {
  if (path.empty()) return absl::InvalidArgumentError("ledger: empty path");
  if (clock == nullptr) return absl::InvalidArgumentError("ledger: no clock");
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  PASSERELLE_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, path, &raw),
                                       absl::StrCat("open ", path)));
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string value;
  uint64_t next_id = 1;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), kNextIdKey, &value);
  if (s.ok()) {
    if (!absl::SimpleAtoi(value, &next_id)) {
      return absl::DataLossError("ledger: corrupt next charge id");
    }
  } else if (!s.IsNotFound()) {
    PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read"));
  }
  return std::unique_ptr<BudgetLedger>(
      new BudgetLedger(std::move(db), clock, next_id));
}

BudgetLedger::BudgetLedger(std::unique_ptr<rocksdb::DB> db, Clock* clock,
                           uint64_t next_id)
    : db_(std::move(db)), clock_(clock), next_id_(next_id) {}

BudgetLedger::~BudgetLedger() {
  if (db_ != nullptr) db_->Close().PermitUncheckedError();
}

absl::StatusOr<Charge> BudgetLedger::Reserve(const std::string& project,
                                             const std::string& researcher,
                                             const privacy::QueryCost& cost,
                                             const Caps& caps, absl::Time now) {
  PASSERELLE_RETURN_IF_ERROR(CheckName(project, "project"));
  PASSERELLE_RETURN_IF_ERROR(CheckName(researcher, "researcher"));
  if (!caps.error.empty()) return absl::InvalidArgumentError(caps.error);
  if (cost.epsilon_micros < 0 || cost.rho_micros < 0 ||
      (!cost.pure && cost.epsilon_micros != 0)) {
    return absl::InvalidArgumentError("ledger: invalid query cost");
  }
  if (caps.project_epsilon_micros < 0 || caps.project_rho_micros < 0 ||
      caps.researcher_epsilon_micros < 0 || caps.researcher_rho_micros < 0) {
    return absl::InvalidArgumentError("ledger: negative cap");
  }
  const int64_t period = PeriodOf(now, caps.reset_period);
  const std::string project_key = AccountKey(project, "");
  const std::string researcher_key = AccountKey(project, researcher);

  absl::MutexLock lock(&mu_);
  PASSERELLE_ASSIGN_OR_RETURN(
      Stored p, ReadAccount(db_.get(), project_key, true, period));
  PASSERELLE_ASSIGN_OR_RETURN(
      Stored r, ReadAccount(db_.get(), researcher_key, false, period));
  const std::optional<absl::Time> next_reset = NextReset(caps, period);
  const std::string project_label = absl::StrCat("project \"", project, "\"");
  const std::string researcher_label = absl::StrCat(
      "researcher \"", researcher, "\" in project \"", project, "\"");
  if (!cost.pure) {
    if (caps.project_epsilon_micros > 0 || caps.researcher_epsilon_micros > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          caps.project_epsilon_micros > 0 ? project_label : researcher_label,
          " has a pure epsilon cap; a zCDP (discrete Gaussian) query has no "
          "pure epsilon cost and cannot be charged against it"));
    }
  }
  PASSERELLE_RETURN_IF_ERROR(CheckCap(project_label + " epsilon cap",
                                      caps.project_epsilon_micros, p.epsilon,
                                      cost.epsilon_micros, next_reset));
  PASSERELLE_RETURN_IF_ERROR(CheckCap(project_label + " rho cap",
                                      caps.project_rho_micros, p.rho,
                                      cost.rho_micros, next_reset));
  PASSERELLE_RETURN_IF_ERROR(CheckCap(researcher_label + " epsilon cap",
                                      caps.researcher_epsilon_micros, r.epsilon,
                                      cost.epsilon_micros, next_reset));
  PASSERELLE_RETURN_IF_ERROR(CheckCap(researcher_label + " rho cap",
                                      caps.researcher_rho_micros, r.rho,
                                      cost.rho_micros, next_reset));

  Charge charge;
  charge.id = next_id_;
  charge.project = project;
  charge.researcher = researcher;
  charge.pure = cost.pure;
  charge.epsilon_micros = cost.epsilon_micros;
  charge.rho_micros = cost.rho_micros;
  charge.time = now;
  charge.period = p.period;
  p.epsilon += cost.epsilon_micros;
  p.rho += cost.rho_micros;
  p.caps = caps;
  r.epsilon += cost.epsilon_micros;
  r.rho += cost.rho_micros;
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(ChargeKey(charge.id), EncodeCharge(charge));
  if (s.ok()) s = batch.Put(project_key, EncodeStored(p, true));
  if (s.ok()) s = batch.Put(researcher_key, EncodeStored(r, false));
  if (s.ok()) s = batch.Put(kNextIdKey, absl::StrCat(charge.id + 1));
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "batch"));
  PASSERELLE_CRASH_POINT("ledger.reserve.before_commit");
  rocksdb::WriteOptions sync;
  sync.sync = true;
  PASSERELLE_RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), "write"));
  PASSERELLE_CRASH_POINT("ledger.reserve.after_commit");
  ++next_id_;
  return charge;
}

absl::Status BudgetLedger::Refund(uint64_t charge_id) {
  absl::MutexLock lock(&mu_);
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), ChargeKey(charge_id), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("ledger: no charge ", charge_id));
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read"));
  PASSERELLE_ASSIGN_OR_RETURN(Charge charge, DecodeCharge(value));
  if (charge.refunded) {
    return absl::FailedPreconditionError(
        absl::StrCat("ledger: charge ", charge_id, " was already refunded"));
  }
  charge.refunded = true;
  rocksdb::WriteBatch batch;
  s = batch.Put(ChargeKey(charge_id), EncodeCharge(charge));
  for (const auto& [key, with_caps] :
       {std::make_pair(AccountKey(charge.project, ""), true),
        std::make_pair(AccountKey(charge.project, charge.researcher), false)}) {
    if (!s.ok()) break;
    std::string v;
    rocksdb::Status g = db_->Get(rocksdb::ReadOptions(), key, &v);
    if (g.IsNotFound()) continue;
    PASSERELLE_RETURN_IF_ERROR(FromRocks(g, "read"));
    PASSERELLE_ASSIGN_OR_RETURN(Stored a, DecodeStored(v, with_caps));
    if (a.period != charge.period) continue;  // That window is over.
    a.epsilon = std::max<int64_t>(0, a.epsilon - charge.epsilon_micros);
    a.rho = std::max<int64_t>(0, a.rho - charge.rho_micros);
    s = batch.Put(key, EncodeStored(a, with_caps));
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "batch"));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocks(db_->Write(sync, &batch), "write");
}

absl::StatusOr<BudgetView> BudgetLedger::Show(const std::string& project) {
  PASSERELLE_RETURN_IF_ERROR(CheckName(project, "project"));
  absl::MutexLock lock(&mu_);
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), AccountKey(project, ""), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("ledger: project \"", project,
                                            "\" has no reservation yet"));
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read"));
  PASSERELLE_ASSIGN_OR_RETURN(Stored stored, DecodeStored(value, true));
  return ShowLocked(project, stored.caps);
}

absl::StatusOr<BudgetView> BudgetLedger::Show(const std::string& project,
                                              const Caps& caps) {
  PASSERELLE_RETURN_IF_ERROR(CheckName(project, "project"));
  if (!caps.error.empty()) return absl::InvalidArgumentError(caps.error);
  absl::MutexLock lock(&mu_);
  return ShowLocked(project, caps);
}

absl::StatusOr<BudgetView> BudgetLedger::ShowLocked(const std::string& project,
                                                    const Caps& caps) {
  const absl::Time now = clock_->Now();
  const int64_t period = PeriodOf(now, caps.reset_period);
  PASSERELLE_ASSIGN_OR_RETURN(
      Stored p, ReadAccount(db_.get(), AccountKey(project, ""), true, period));
  BudgetView view;
  view.project = project;
  view.project_account =
      MakeAccount("", p, caps.project_epsilon_micros, caps.project_rho_micros);
  view.next_reset = NextReset(caps, p.period);
  const std::string prefix = AccountKey(project, "");
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    const std::string researcher = it->key().ToString().substr(prefix.size());
    if (researcher.empty()) continue;
    PASSERELLE_ASSIGN_OR_RETURN(
        Stored r, ReadAccount(db_.get(), it->key().ToString(), false, period));
    view.researchers.push_back(MakeAccount(researcher, r,
                                           caps.researcher_epsilon_micros,
                                           caps.researcher_rho_micros));
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(it->status(), "scan"));
  return view;
}

absl::StatusOr<std::vector<Charge>> BudgetLedger::ListCharges(
    const std::string& project) {
  std::vector<Charge> out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kChargePrefix);
       it->Valid() && it->key().starts_with(kChargePrefix); it->Next()) {
    PASSERELLE_ASSIGN_OR_RETURN(Charge c, DecodeCharge(it->value().ToString()));
    if (project.empty() || c.project == project) out.push_back(std::move(c));
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(it->status(), "scan"));
  return out;
}

absl::StatusOr<ChargeTotals> BudgetLedger::SumCharges(
    const std::string& project) {
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<Charge> charges,
                              ListCharges(project));
  ChargeTotals totals;
  for (const Charge& c : charges) {
    if (c.refunded) {
      ++totals.refunded;
      continue;
    }
    ++totals.charges;
    totals.epsilon_micros += c.epsilon_micros;
    totals.rho_micros += c.rho_micros;
  }
  return totals;
}

}  // namespace passerelle::ledger
