#include "node/live_snapshot.h"

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"

namespace passerelle::node {

// Wakes the checking thread early (a snapshot was released: prune now).
struct LiveSnapshot::Wakeup {
  absl::Mutex mu;
  bool pending ABSL_GUARDED_BY(mu) = false;
  void Notify() {
    absl::MutexLock lock(&mu);
    pending = true;
  }
  // Waits until notified or `timeout` passed (false), or `stop` (true).
  bool Wait(absl::Duration timeout, absl::Notification* stop) {
    absl::MutexLock lock(&mu);
    const absl::Time until = absl::Now() + timeout;
    while (!pending && !stop->HasBeenNotified()) {
      // Short slices so that `stop` is noticed promptly.
      const absl::Duration slice =
          std::min(absl::Milliseconds(50), until - absl::Now());
      if (slice <= absl::ZeroDuration()) break;
      mu.AwaitWithTimeout(absl::Condition(&pending), slice);
    }
    pending = false;
    return stop->HasBeenNotified();
  }
};

LiveSnapshot::LiveSnapshot(NodeStore* store, LiveSnapshotOptions options,
                           Clock* clock)
    : store_(store),
      options_(std::move(options)),
      clock_(clock),
      wakeup_(std::make_shared<Wakeup>()) {
  store_->set_on_release([w = std::weak_ptr<Wakeup>(wakeup_)] {
    if (std::shared_ptr<Wakeup> s = w.lock()) s->Notify();
  });
}

LiveSnapshot::~LiveSnapshot() { store_->set_on_release(nullptr); }

void LiveSnapshot::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::cerr << "passerelle node " << options_.site << ": " << line << "\n";
  }
}

void LiveSnapshot::set_install(Install install) {
  absl::MutexLock lock(&mu_);
  install_ = std::move(install);
}

absl::StatusOr<std::shared_ptr<const CohortEngine>> LiveSnapshot::OpenEngine(
    const std::string& version, bool verify_contents) {
  SnapshotOpenOptions open;
  open.verify_contents = verify_contents;
  PASSERELLE_ASSIGN_OR_RETURN(OpenedSnapshot opened,
                              store_->OpenSnapshot(version, open));
  if (opened.handle->site() != options_.site ||
      opened.snapshot->meta.site != options_.site) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot ", version, " holds site \"", opened.snapshot->meta.site,
        "\", this node serves \"", options_.site, "\""));
  }
  std::unique_ptr<CohortEngine> engine =
      options_.make_engine ? options_.make_engine(opened.snapshot)
                           : NewIndexEngine(opened.snapshot);
  if (engine == nullptr) {
    return absl::InternalError(
        absl::StrCat("no engine for snapshot ", version));
  }
  // The engine keeps the snapshot (and its lease) for as long as any query
  // holds it, whatever the engine itself keeps.
  CohortEngine* raw = engine.release();
  std::shared_ptr<const CohortEngine> shared(
      raw, [snap = opened.snapshot](const CohortEngine* e) mutable {
        delete e;
        snap.reset();
      });
  {
    absl::MutexLock lock(&mu_);
    served_handle_ = opened.handle;
    served_ = version;
  }
  return shared;
}

absl::StatusOr<std::shared_ptr<const CohortEngine>>
LiveSnapshot::OpenInitial() {
  absl::MutexLock check(&check_mu_);
  PASSERELLE_ASSIGN_OR_RETURN(std::string version, store_->CurrentVersion());
  return OpenEngine(version, options_.verify_contents_at_start);
}

absl::Status LiveSnapshot::Check() {
  absl::MutexLock check(&check_mu_);
  absl::StatusOr<std::string> current = store_->CurrentVersion();
  absl::Status result;
  bool attempt = false;
  if (current.ok()) {
    absl::MutexLock lock(&mu_);
    attempt = *current != served_ &&
              (*current != refused_ ||
               clock_->Now() >= refused_at_ + options_.retry_refused_after);
  }
  // An unreadable pointer changes nothing: the served snapshot, leased and
  // open, keeps answering (a missing pointer fails the health probe).
  {
    const std::string error = current.ok() || absl::IsNotFound(current.status())
                                  ? ""
                                  : std::string(current.status().message());
    absl::MutexLock lock(&mu_);
    if (error != pointer_error_ && !error.empty()) {
      Log(absl::StrCat("the store's pointer is unreadable, ", served_,
                       " keeps serving: ", error));
    }
    pointer_error_ = error;
  }
  if (attempt) {
    const std::string old = served_version();
    Log(absl::StrCat("new current snapshot ", *current, ", opening it beside ",
                     old));
    const absl::Time start = absl::Now();
    // The old snapshot's handle stays until the new one is installed.
    std::shared_ptr<const SnapshotHandle> keep;
    {
      absl::MutexLock lock(&mu_);
      keep = served_handle_;
    }
    absl::StatusOr<std::shared_ptr<const CohortEngine>> engine =
        OpenEngine(*current, /*verify_contents=*/true);
    if (!engine.ok()) {
      {
        absl::MutexLock lock(&mu_);
        served_handle_ = keep;
        served_ = old;
        refused_ = *current;
        refused_at_ = clock_->Now();
        ++refused_count_;
      }
      if (options_.count_refused) options_.count_refused();
      Log(absl::StrCat("snapshot ", *current, " refused, ", old,
                       " keeps serving: ", engine.status().message()));
      result = engine.status();
    } else {
      Install install;
      {
        absl::MutexLock lock(&mu_);
        install = install_;
        ++switches_;
        refused_.clear();
      }
      const int64_t persons = (*engine)->meta().persons;
      if (install) install(*std::move(engine));
      keep.reset();
      Log(absl::StrCat("switched from snapshot ", old, " to ", *current, " (",
                       persons, " persons) in ",
                       absl::FormatDuration(absl::Now() - start),
                       "; queries in flight finish on ", old));
    }
  }
  Prune();
  return result;
}

void LiveSnapshot::Prune() {
  absl::StatusOr<PruneResult> pruned =
      store_->Prune(std::max(options_.snapshots_kept, 1) - 1);
  // Another writer (a load) holding the store is no error: next time.
  const std::string error =
      pruned.ok() || absl::IsResourceExhausted(pruned.status())
          ? ""
          : std::string(pruned.status().message());
  {
    absl::MutexLock lock(&mu_);
    if (error != prune_error_ && !error.empty()) {
      Log(absl::StrCat("old snapshots not removed: ", error));
    }
    prune_error_ = error;
  }
  if (!pruned.ok()) return;
  if (!pruned->removed.empty()) {
    Log(absl::StrCat("removed old snapshot(s) ",
                     absl::StrJoin(pruned->removed, ", ")));
  }
  if (!pruned->leftovers.empty()) {
    Log(absl::StrCat("removed leftovers of interrupted loads: ",
                     absl::StrJoin(pruned->leftovers, ", ")));
  }
}

void LiveSnapshot::RunUntil(absl::Notification* stop) {
  while (!wakeup_->Wait(options_.check_interval, stop)) (void)Check();
}

std::string LiveSnapshot::served_version() const {
  absl::MutexLock lock(&mu_);
  return served_;
}

absl::Status LiveSnapshot::CheckReadable() const {
  std::shared_ptr<const SnapshotHandle> handle;
  {
    absl::MutexLock lock(&mu_);
    handle = served_handle_;
  }
  if (handle == nullptr) {
    return absl::UnavailableError("no snapshot served");
  }
  return handle->CheckReadable();
}

int64_t LiveSnapshot::switches() const {
  absl::MutexLock lock(&mu_);
  return switches_;
}

int64_t LiveSnapshot::refused() const {
  absl::MutexLock lock(&mu_);
  return refused_count_;
}

}  // namespace passerelle::node
