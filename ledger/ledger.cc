#include "ledger/ledger.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <set>
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
                 {"refunded", c.refunded ? "1" : "0"},
                 {"request_id", c.request_id}});
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
  c.request_id = f["request_id"];  // Absent in charges of older ledgers.
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

// An account as kept in memory: its stored value, if any.
struct AccountState {
  bool exists = false;
  Stored stored;
};

// Reads an account's stored value (absent: exists = false).
absl::StatusOr<AccountState> LoadAccount(rocksdb::DB* db,
                                         const std::string& key,
                                         bool with_caps) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), key, &value);
  AccountState a;
  if (s.IsNotFound()) return a;
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read"));
  PASSERELLE_ASSIGN_OR_RETURN(a.stored, DecodeStored(value, with_caps));
  a.exists = true;
  return a;
}

// The account as ReadAccount would return it in window `period`.
Stored View(const AccountState& a, int64_t period) {
  Stored v;
  v.period = period;
  if (!a.exists) return v;
  v.caps = a.stored.caps;
  // A window in the future (the clock went back) keeps its spending.
  if (a.stored.period >= period) {
    v.period = a.stored.period;
    v.epsilon = a.stored.epsilon;
    v.rho = a.stored.rho;
  }
  return v;
}

// A reservation of `charge` (counted from window `period`) on an account.
void ApplyReserve(AccountState* a, int64_t period, const Charge& charge,
                  const Caps* caps) {
  Stored v = View(*a, period);
  v.epsilon += charge.epsilon_micros;
  v.rho += charge.rho_micros;
  if (caps != nullptr) v.caps = *caps;
  a->exists = true;
  a->stored = std::move(v);
}

// A refund of `charge` on an account: only within the charge's window.
void ApplyRefund(AccountState* a, const Charge& charge) {
  if (!a->exists || a->stored.period != charge.period) return;
  a->stored.epsilon =
      std::max<int64_t>(0, a->stored.epsilon - charge.epsilon_micros);
  a->stored.rho = std::max<int64_t>(0, a->stored.rho - charge.rho_micros);
}

// Most operations in one synced write.
constexpr size_t kMaxBatch = 256;

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

// A reservation or refund waiting for its synced write; lives on the
// caller's stack.
struct BudgetLedger::Op {
  explicit Op(const BudgetLedger* l) : ledger(l) {}
  const BudgetLedger* ledger;
  bool refund = false;
  Charge charge;       // The record to write (a refund's with refunded = true).
  int64_t period = 0;  // A reservation's window (PeriodOf(now, caps)).
  Caps caps;           // A reservation's caps (kept with the project).
  std::string project_key;
  std::string researcher_key;
  bool done = false;
  absl::Status status;
};

struct BudgetLedger::State {
  explicit State(uint64_t id) : next_id(id) {}
  // What the store holds, for every account loaded so far.
  std::map<std::string, AccountState> durable;
  // The same accounts with every queued or in-flight reservation applied:
  // what caps are checked against. Refunds count only once durable.
  std::map<std::string, AccountState> effective;
  std::deque<Op*> queue;         // Not yet taken by a writer, oldest first.
  std::set<uint64_t> refunding;  // Charge ids with a refund queued.
  bool committing = false;       // A leader is writing a batch.
  uint64_t next_id;
  std::function<absl::Status(size_t)> write_hook;
  CommitStats stats;

  // Loads an account into both maps if needed.
  absl::Status Ensure(rocksdb::DB* db, const std::string& key, bool with_caps) {
    if (durable.count(key) > 0) return absl::OkStatus();
    PASSERELLE_ASSIGN_OR_RETURN(AccountState a,
                                LoadAccount(db, key, with_caps));
    durable[key] = a;
    effective[key] = std::move(a);
    return absl::OkStatus();
  }
};

BudgetLedger::BudgetLedger(std::unique_ptr<rocksdb::DB> db, Clock* clock,
                           uint64_t next_id)
    : db_(std::move(db)),
      clock_(clock),
      state_(std::make_unique<State>(next_id)) {}

bool BudgetLedger::DoneOrIdle(Op* op) {
  return op->done || !op->ledger->state_->committing;
}

void BudgetLedger::Commit(Op* op) {
  State& st = *state_;
  st.queue.push_back(op);
  // Wait until a writer has written our operation, or until nobody writes
  // and we do.
  mu_.Await(absl::Condition(&DoneOrIdle, op));
  if (op->done) return;
  st.committing = true;
  while (!op->done) WriteOneBatch();
  st.committing = false;
}

void BudgetLedger::WriteOneBatch() {
  State& st = *state_;
  std::vector<Op*> batch;
  while (!st.queue.empty() && batch.size() < kMaxBatch) {
    batch.push_back(st.queue.front());
    st.queue.pop_front();
  }
  // The accounts after this batch, from their durable values.
  std::map<std::string, AccountState> after;
  rocksdb::WriteBatch wb;
  rocksdb::Status s;
  absl::Status status;
  uint64_t max_id = 0;
  for (Op* op : batch) {
    for (const std::string* key : {&op->project_key, &op->researcher_key}) {
      if (!status.ok()) break;
      status = st.Ensure(db_.get(), *key, key == &op->project_key);
      if (status.ok() && after.count(*key) == 0) after[*key] = st.durable[*key];
    }
    if (!status.ok()) break;
    if (op->refund) {
      ApplyRefund(&after[op->project_key], op->charge);
      ApplyRefund(&after[op->researcher_key], op->charge);
    } else {
      ApplyReserve(&after[op->project_key], op->period, op->charge, &op->caps);
      ApplyReserve(&after[op->researcher_key], op->period, op->charge, nullptr);
      max_id = std::max(max_id, op->charge.id);
    }
    if (s.ok()) s = wb.Put(ChargeKey(op->charge.id), EncodeCharge(op->charge));
  }
  for (const auto& [key, a] : after) {
    if (!a.exists) continue;  // A refund on an account never written.
    const bool with_caps = key.back() == '\0';  // The project's own key.
    if (s.ok()) s = wb.Put(key, EncodeStored(a.stored, with_caps));
  }
  if (s.ok() && max_id > 0) s = wb.Put(kNextIdKey, absl::StrCat(max_id + 1));
  if (status.ok()) status = FromRocks(s, "batch");

  if (status.ok()) {
    // The synced write, without the lock: new operations queue meanwhile.
    const std::function<absl::Status(size_t)>& hook = st.write_hook;
    mu_.Unlock();
    if (hook) status = hook(batch.size());
    if (status.ok()) {
      rocksdb::WriteOptions sync;
      sync.sync = true;
      status = FromRocks(db_->Write(sync, &wb), "write");
    }
    mu_.Lock();
  }

  if (status.ok()) {
    ++st.stats.writes;
    st.stats.operations += batch.size();
    st.stats.largest_batch =
        std::max<uint64_t>(st.stats.largest_batch, batch.size());
    for (auto& [key, a] : after) st.durable[key] = std::move(a);
    for (Op* op : batch) {
      if (!op->refund) continue;
      // The budget comes back now that the refund is durable.
      ApplyRefund(&st.effective[op->project_key], op->charge);
      ApplyRefund(&st.effective[op->researcher_key], op->charge);
    }
  } else {
    ++st.stats.failed_writes;
    // Roll back: each account touched is its durable value plus the
    // reservations still queued (they were admitted against more spending
    // than remains, so they still fit).
    std::set<std::string> touched;
    for (Op* op : batch) {
      touched.insert(op->project_key);
      touched.insert(op->researcher_key);
    }
    for (const std::string& key : touched) {
      auto d = st.durable.find(key);
      if (d == st.durable.end()) continue;  // Never loaded: nothing applied.
      AccountState a = d->second;
      for (const Op* q : st.queue) {
        if (q->refund) continue;
        if (q->project_key == key)
          ApplyReserve(&a, q->period, q->charge, &q->caps);
        if (q->researcher_key == key)
          ApplyReserve(&a, q->period, q->charge, nullptr);
      }
      st.effective[key] = std::move(a);
    }
    // Give the ids back unless a later reservation already holds one.
    bool later_reserve = false;
    for (const Op* q : st.queue) later_reserve |= !q->refund;
    if (!later_reserve) {
      for (const Op* op : batch) {
        if (!op->refund) st.next_id = std::min(st.next_id, op->charge.id);
      }
    }
  }
  for (Op* op : batch) {
    if (op->refund) st.refunding.erase(op->charge.id);
    op->status = status;
    op->done = true;
  }
}

BudgetLedger::CommitStats BudgetLedger::Stats() const {
  absl::MutexLock lock(&mu_);
  return state_->stats;
}

void BudgetLedger::SetWriteHookForTesting(
    std::function<absl::Status(size_t)> hook) {
  absl::MutexLock lock(&mu_);
  state_->write_hook = std::move(hook);
}

void BudgetLedger::AwaitQueuedForTesting(size_t n) const {
  struct Arg {
    const State* st;
    size_t n;
  } arg{state_.get(), n};
  absl::MutexLock lock(
      &mu_, absl::Condition(
                +[](Arg* a) { return a->st->queue.size() >= a->n; }, &arg));
}

BudgetLedger::~BudgetLedger() {
  if (db_ != nullptr) db_->Close().PermitUncheckedError();
}

absl::StatusOr<Charge> BudgetLedger::Reserve(const std::string& project,
                                             const std::string& researcher,
                                             const privacy::QueryCost& cost,
                                             const Caps& caps, absl::Time now,
                                             const std::string& request_id) {
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
  State& st = *state_;
  PASSERELLE_RETURN_IF_ERROR(st.Ensure(db_.get(), project_key, true));
  PASSERELLE_RETURN_IF_ERROR(st.Ensure(db_.get(), researcher_key, false));
  // Checked against durable spending plus every reservation in flight.
  const Stored p = View(st.effective[project_key], period);
  const Stored r = View(st.effective[researcher_key], period);
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

  Op op(this);
  op.charge.id = st.next_id++;
  op.charge.project = project;
  op.charge.researcher = researcher;
  op.charge.pure = cost.pure;
  op.charge.epsilon_micros = cost.epsilon_micros;
  op.charge.rho_micros = cost.rho_micros;
  op.charge.time = now;
  op.charge.request_id = request_id;
  op.charge.period = p.period;
  op.period = period;
  op.caps = caps;
  op.project_key = project_key;
  op.researcher_key = researcher_key;
  // Counted now, so that the next reservation sees it; rolled back if the
  // write fails.
  ApplyReserve(&st.effective[project_key], period, op.charge, &caps);
  ApplyReserve(&st.effective[researcher_key], period, op.charge, nullptr);
  PASSERELLE_CRASH_POINT("ledger.reserve.before_commit");
  Commit(&op);
  PASSERELLE_RETURN_IF_ERROR(op.status);
  PASSERELLE_CRASH_POINT("ledger.reserve.after_commit");
  return op.charge;
}

absl::Status BudgetLedger::Refund(uint64_t charge_id) {
  absl::MutexLock lock(&mu_);
  State& st = *state_;
  if (st.refunding.count(charge_id) > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ledger: charge ", charge_id, " is already being refunded"));
  }
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), ChargeKey(charge_id), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("ledger: no charge ", charge_id));
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read"));
  Op op(this);
  op.refund = true;
  PASSERELLE_ASSIGN_OR_RETURN(op.charge, DecodeCharge(value));
  if (op.charge.refunded) {
    return absl::FailedPreconditionError(
        absl::StrCat("ledger: charge ", charge_id, " was already refunded"));
  }
  op.charge.refunded = true;
  op.project_key = AccountKey(op.charge.project, "");
  op.researcher_key = AccountKey(op.charge.project, op.charge.researcher);
  st.refunding.insert(charge_id);
  Commit(&op);
  return op.status;
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
