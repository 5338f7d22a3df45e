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
//   "a\0\0<researcher>"           a researcher's federation-wide account
//                                  (project names are never empty)
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

// An account's state in the store: its current window's start and what was
// spent in it.
struct Stored {
  absl::Time window_start = absl::UnixEpoch();
  int64_t epsilon = 0;
  int64_t rho = 0;
  // Project accounts also keep the caps last used, for Show.
  Caps caps;
};

std::string EncodeStored(const Stored& s, bool with_caps) {
  Fields f = {
      {"window_start_micros", absl::StrCat(absl::ToUnixMicros(s.window_start))},
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

// `legacy_reset`: for a record written before windows had a stored start
// (it has the index k of the window [k P, (k+1) P) from the epoch instead),
// the period P it was counted with.
absl::StatusOr<Stored> DecodeStored(const std::string& value, bool with_caps,
                                    absl::Duration legacy_reset) {
  PASSERELLE_ASSIGN_OR_RETURN(Fields f, Decode(value));
  Stored s;
  if (f.count("window_start_micros") > 0) {
    PASSERELLE_ASSIGN_OR_RETURN(int64_t start, Int(f, "window_start_micros"));
    s.window_start = absl::FromUnixMicros(start);
  } else {
    PASSERELLE_ASSIGN_OR_RETURN(int64_t period, Int(f, "period"));
    if (with_caps) {
      PASSERELLE_ASSIGN_OR_RETURN(int64_t reset, Int(f, "reset_seconds"));
      legacy_reset = absl::Seconds(reset);
    }
    s.window_start = absl::UnixEpoch() + legacy_reset * period;
  }
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
                 {"window_project_micros",
                  absl::StrCat(absl::ToUnixMicros(c.project_window))},
                 {"window_researcher_micros",
                  absl::StrCat(absl::ToUnixMicros(c.researcher_window))},
                 {"window_federation_micros",
                  absl::StrCat(absl::ToUnixMicros(c.federation_window))},
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
  // A charge written before windows had a stored start matches no window:
  // refunding it marks it refunded and gives nothing back.
  for (auto [name, out] :
       {std::pair{"window_project_micros", &c.project_window},
        std::pair{"window_researcher_micros", &c.researcher_window},
        std::pair{"window_federation_micros", &c.federation_window}}) {
    *out = absl::InfinitePast();
    if (f.count(name) == 0) continue;
    PASSERELLE_ASSIGN_OR_RETURN(int64_t w, Int(f, name));
    *out = absl::FromUnixMicros(w);
  }
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

// The start of an account's first window: with a reset period P, the
// window [k P, (k+1) P) from the Unix epoch (UTC) that holds `now`; without
// one, `now` to the microsecond (as stored, so that a charge's window
// compares equal to its account's after a restart).
absl::Time FirstWindowStart(absl::Time now, absl::Duration reset) {
  if (reset <= absl::ZeroDuration()) {
    return absl::FromUnixMicros(absl::ToUnixMicros(now));
  }
  return absl::UnixEpoch() + reset * PeriodOf(now, reset);
}

// An account as kept in memory: its stored value, if any.
struct AccountState {
  bool exists = false;
  Stored stored;
};

// The account at `now` under reset period `reset`. The window keeps its
// stored start whatever the period was when it opened; it ends at
// start + reset (never without a reset period), and then the window that
// holds `now` in the sequence start + k * reset opens with nothing spent.
// So a change of period neither wipes the current window's spending (it is
// kept until the new period ends the window) nor freezes it (a shorter
// period ends it sooner, a longer one later). A window that starts after
// `now` (the clock went back) keeps its spending.
Stored View(const AccountState& a, absl::Time now, absl::Duration reset) {
  Stored v;
  if (!a.exists) {
    v.window_start = FirstWindowStart(now, reset);
    return v;
  }
  v = a.stored;
  if (reset > absl::ZeroDuration() && now >= v.window_start + reset) {
    absl::Duration rem;
    v.window_start +=
        reset * absl::IDivDuration(now - v.window_start, reset, &rem);
    v.epsilon = 0;
    v.rho = 0;
  }
  return v;
}

// Reads an account's stored value (absent: exists = false). See
// DecodeStored for `legacy_reset`.
absl::StatusOr<AccountState> LoadAccount(rocksdb::DB* db,
                                         const std::string& key, bool with_caps,
                                         absl::Duration legacy_reset) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), key, &value);
  AccountState a;
  if (s.IsNotFound()) return a;
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read"));
  PASSERELLE_ASSIGN_OR_RETURN(a.stored,
                              DecodeStored(value, with_caps, legacy_reset));
  a.exists = true;
  return a;
}

// A reservation of (epsilon, rho) at `now` on an account; returns the start
// of the window it was counted in.
absl::Time ApplyReserve(AccountState* a, absl::Time now, absl::Duration reset,
                        int64_t epsilon, int64_t rho, const Caps* caps) {
  Stored v = View(*a, now, reset);
  v.epsilon += epsilon;
  v.rho += rho;
  if (caps != nullptr) v.caps = *caps;
  a->exists = true;
  a->stored = std::move(v);
  return a->stored.window_start;
}

// A refund of `charge` on an account: only within the window it was
// counted in.
void ApplyRefund(AccountState* a, absl::Time window, const Charge& charge) {
  if (!a->exists || a->stored.window_start != window) return;
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

std::optional<absl::Time> NextReset(absl::Duration reset,
                                    absl::Time window_start) {
  if (reset <= absl::ZeroDuration()) return std::nullopt;
  return window_start + reset;
}

Account MakeAccount(const std::string& researcher, const Stored& s,
                    int64_t eps_cap, int64_t rho_cap, absl::Duration reset) {
  Account a;
  a.next_reset = NextReset(reset, s.window_start);
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

namespace {

// One cap to micro-units. A positive cap that rounds down to zero would read
// as "no cap": it is an error instead.
void ConvertCap(double v, const char* name, int64_t* out, Caps* caps) {
  absl::StatusOr<int64_t> m = privacy::ToMicrosFloor(v, name);
  if (m.ok() && *m == 0 && v > 0) {
    m = absl::InvalidArgumentError(
        absl::StrCat(name, " ", v, " is below the ledger's resolution of ",
                     MicrosToString(1), " (it would mean no cap)"));
  }
  if (!m.ok()) {
    if (caps->error.empty()) caps->error = std::string(m.status().message());
    return;
  }
  *out = *m;
}

}  // namespace

Caps CapsFromBudget(const passerelle::v1::Budget& budget) {
  Caps caps;
  auto convert = [&caps](double v, const char* name, int64_t* out) {
    ConvertCap(v, name, out, &caps);
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

Caps CapsFromBudgets(const passerelle::v1::Budget& project,
                     const passerelle::v1::Budget& federation) {
  Caps caps = CapsFromBudget(project);
  ConvertCap(federation.researcher_epsilon_cap(),
             "federation researcher_budget.researcher_epsilon_cap",
             &caps.federation_researcher_epsilon_micros, &caps);
  ConvertCap(federation.researcher_rho_cap(),
             "federation researcher_budget.researcher_rho_cap",
             &caps.federation_researcher_rho_micros, &caps);
  if (federation.reset_period_days() < 0) {
    if (caps.error.empty()) {
      caps.error = "federation researcher_budget.reset_period_days is negative";
    }
  } else {
    caps.federation_reset_period =
        absl::Hours(24) * federation.reset_period_days();
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
  // One account the operation changes.
  struct Slot {
    std::string key;
    absl::Duration reset;  // A reservation's reset period for it.
    absl::Time* window;    // The charge's field for its window.
    bool project = false;  // The project's own account (keeps the caps).
  };
  const BudgetLedger* ledger;
  bool refund = false;
  Charge charge;  // The record to write (a refund's with refunded = true).
  Caps caps;      // A reservation's caps (kept with the project).
  // Project, researcher in the project, researcher federation-wide.
  std::vector<Slot> slots;
  bool done = false;
  absl::Status status;

  void SetSlots(const Caps& c) {
    slots = {{AccountKey(charge.project, ""), c.reset_period,
              &charge.project_window, true},
             {AccountKey(charge.project, charge.researcher), c.reset_period,
              &charge.researcher_window, false},
             {AccountKey("", charge.researcher), c.federation_reset_period,
              &charge.federation_window, false}};
  }
  // Applies the reservation or the refund to `accounts` (which hold every
  // slot's account); a reservation records its windows in the charge.
  void ApplyTo(std::map<std::string, AccountState>* accounts) {
    for (Slot& slot : slots) {
      AccountState* a = &(*accounts)[slot.key];
      if (refund) {
        ApplyRefund(a, *slot.window, charge);
      } else {
        *slot.window =
            ApplyReserve(a, charge.time, slot.reset, charge.epsilon_micros,
                         charge.rho_micros, slot.project ? &caps : nullptr);
      }
    }
  }
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

  // Loads an account into both maps if needed. A researcher's account in
  // a project needs the project's loaded first (for records written before
  // windows had a stored start).
  absl::Status Ensure(rocksdb::DB* db, const Op::Slot& slot) {
    const std::string& key = slot.key;
    if (durable.count(key) > 0) return absl::OkStatus();
    absl::Duration legacy_reset;
    if (!slot.project) {
      const size_t end = key.find('\0', kAccountPrefix.size());
      auto p = durable.find(key.substr(0, end + 1));
      if (p != durable.end()) legacy_reset = p->second.stored.caps.reset_period;
    }
    PASSERELLE_ASSIGN_OR_RETURN(
        AccountState a, LoadAccount(db, key, slot.project, legacy_reset));
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
    for (const Op::Slot& slot : op->slots) {
      if (!status.ok()) break;
      status = st.Ensure(db_.get(), slot);
      if (status.ok() && after.count(slot.key) == 0)
        after[slot.key] = st.durable[slot.key];
    }
    if (!status.ok()) break;
    // A reservation's windows are those of the durable accounts plus the
    // batch's earlier operations, as written.
    op->ApplyTo(&after);
    if (!op->refund) max_id = std::max(max_id, op->charge.id);
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
      // The budget comes back now that the refund is durable.
      if (op->refund) op->ApplyTo(&st.effective);
    }
  } else {
    ++st.stats.failed_writes;
    // Roll back: each account touched is its durable value plus the
    // reservations still queued (they were admitted against more spending
    // than remains, so they still fit).
    std::set<std::string> touched;
    for (Op* op : batch) {
      for (const Op::Slot& slot : op->slots) touched.insert(slot.key);
    }
    for (const std::string& key : touched) {
      auto d = st.durable.find(key);
      if (d == st.durable.end()) continue;  // Never loaded: nothing applied.
      AccountState a = d->second;
      for (const Op* q : st.queue) {
        if (q->refund) continue;
        for (const Op::Slot& slot : q->slots) {
          if (slot.key != key) continue;
          ApplyReserve(&a, q->charge.time, slot.reset, q->charge.epsilon_micros,
                       q->charge.rho_micros, slot.project ? &q->caps : nullptr);
        }
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
      caps.researcher_epsilon_micros < 0 || caps.researcher_rho_micros < 0 ||
      caps.federation_researcher_epsilon_micros < 0 ||
      caps.federation_researcher_rho_micros < 0) {
    return absl::InvalidArgumentError("ledger: negative cap");
  }
  Op op(this);
  op.charge.project = project;
  op.charge.researcher = researcher;
  op.charge.pure = cost.pure;
  op.charge.epsilon_micros = cost.epsilon_micros;
  op.charge.rho_micros = cost.rho_micros;
  op.charge.time = now;
  op.charge.request_id = request_id;
  op.caps = caps;
  op.SetSlots(caps);

  absl::MutexLock lock(&mu_);
  State& st = *state_;
  for (const Op::Slot& slot : op.slots) {
    PASSERELLE_RETURN_IF_ERROR(st.Ensure(db_.get(), slot));
  }
  // Checked against durable spending plus every reservation in flight, all
  // three accounts before any is charged (all or nothing).
  const std::string project_label = absl::StrCat("project \"", project, "\"");
  const std::string researcher_label = absl::StrCat(
      "researcher \"", researcher, "\" in project \"", project, "\"");
  const std::string federation_label = absl::StrCat(
      "researcher \"", researcher,
      "\" across all projects (federation-wide researcher_budget)");
  struct Check {
    const std::string* label;
    int64_t epsilon_cap;
    int64_t rho_cap;
  };
  const Check checks[] = {
      {&project_label, caps.project_epsilon_micros, caps.project_rho_micros},
      {&researcher_label, caps.researcher_epsilon_micros,
       caps.researcher_rho_micros},
      {&federation_label, caps.federation_researcher_epsilon_micros,
       caps.federation_researcher_rho_micros}};
  if (!cost.pure) {
    for (const Check& c : checks) {
      if (c.epsilon_cap <= 0) continue;
      return absl::FailedPreconditionError(absl::StrCat(
          *c.label,
          " has a pure epsilon cap; a zCDP (discrete Gaussian) query has no "
          "pure epsilon cost and cannot be charged against it"));
    }
  }
  for (size_t i = 0; i < op.slots.size(); ++i) {
    const Op::Slot& slot = op.slots[i];
    const Stored v = View(st.effective[slot.key], now, slot.reset);
    const std::optional<absl::Time> next_reset =
        NextReset(slot.reset, v.window_start);
    PASSERELLE_RETURN_IF_ERROR(CheckCap(*checks[i].label + " epsilon cap",
                                        checks[i].epsilon_cap, v.epsilon,
                                        cost.epsilon_micros, next_reset));
    PASSERELLE_RETURN_IF_ERROR(CheckCap(*checks[i].label + " rho cap",
                                        checks[i].rho_cap, v.rho,
                                        cost.rho_micros, next_reset));
  }

  op.charge.id = st.next_id++;
  // Counted now, so that the next reservation sees it; rolled back if the
  // write fails.
  op.ApplyTo(&st.effective);
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
  op.SetSlots(Caps());
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
  PASSERELLE_ASSIGN_OR_RETURN(Stored stored,
                              DecodeStored(value, true, absl::ZeroDuration()));
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
  const std::string prefix = AccountKey(project, "");
  PASSERELLE_ASSIGN_OR_RETURN(
      AccountState pa,
      LoadAccount(db_.get(), prefix, true, absl::ZeroDuration()));
  const Stored p = View(pa, now, caps.reset_period);
  BudgetView view;
  view.project = project;
  view.project_account =
      MakeAccount("", p, caps.project_epsilon_micros, caps.project_rho_micros,
                  caps.reset_period);
  view.next_reset = view.project_account.next_reset;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    const std::string researcher = it->key().ToString().substr(prefix.size());
    if (researcher.empty()) continue;
    PASSERELLE_ASSIGN_OR_RETURN(
        AccountState ra, LoadAccount(db_.get(), it->key().ToString(), false,
                                     pa.stored.caps.reset_period));
    view.researchers.push_back(
        MakeAccount(researcher, View(ra, now, caps.reset_period),
                    caps.researcher_epsilon_micros, caps.researcher_rho_micros,
                    caps.reset_period));
    PASSERELLE_ASSIGN_OR_RETURN(
        AccountState fa, LoadAccount(db_.get(), AccountKey("", researcher),
                                     false, absl::ZeroDuration()));
    view.federation_researchers.push_back(MakeAccount(
        researcher, View(fa, now, caps.federation_reset_period),
        caps.federation_researcher_epsilon_micros,
        caps.federation_researcher_rho_micros, caps.federation_reset_period));
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
