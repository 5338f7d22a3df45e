// A daemon's periodic health probe: named cheap checks of what it cannot
// serve without (store, snapshot, policy, audit log, ledger), run every
// interval; the daemon maps the verdict onto grpc.health.v1 (SERVING /
// NOT_SERVING) and refuses requests while it is unhealthy. No gRPC here, so
// unit tests drive it with a FakeClock.
#ifndef PASSERELLE_COMMON_HEALTH_PROBE_H_
#define PASSERELLE_COMMON_HEALTH_PROBE_H_

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace passerelle {

// Thread-safe. Checks are added before the first probe; each must be cheap
// (a stat, a read of a few keys), never a write of data.
class HealthProbe {
 public:
  using Check = std::function<absl::Status()>;
  // Called on the probing thread when the verdict flips (and on the first
  // probe): serving or not, and the reason ("" when serving).
  using OnChange = std::function<void(bool serving, const std::string& why)>;

  HealthProbe(Clock* clock, absl::Duration interval, OnChange on_change)
      : clock_(clock), interval_(interval), on_change_(std::move(on_change)) {}

  void AddCheck(std::string name, Check check) {
    absl::MutexLock lock(&mu_);
    checks_.emplace_back(std::move(name), std::move(check));
  }

  // Runs every check now; returns OK or the failures ("name: message; ...").
  absl::Status ProbeNow() {
    std::vector<std::pair<std::string, Check>> checks;
    {
      absl::MutexLock lock(&mu_);
      checks = checks_;
      last_run_ = clock_->Now();
      ran_ = true;
    }
    std::string failures;
    std::vector<std::string> failing;
    for (const auto& [name, check] : checks) {
      absl::Status st = check();
      if (!st.ok()) {
        absl::StrAppend(&failures, failures.empty() ? "" : "; ", name, ": ",
                        st.message());
        failing.push_back(name);
      }
    }
    const bool serving = failures.empty();
    bool changed;
    {
      absl::MutexLock lock(&mu_);
      changed = !reported_ || serving != serving_ || failures != why_;
      reported_ = true;
      serving_ = serving;
      why_ = failures;
      failing_ = std::move(failing);
    }
    if (changed && on_change_) on_change_(serving, failures);
    return serving ? absl::OkStatus() : absl::UnavailableError(failures);
  }

  // The daemon is shutting down: NOT_SERVING ("draining") from now on. Stop
  // the probing thread first, or a probe may mark it SERVING again.
  void SetDraining() {
    {
      absl::MutexLock lock(&mu_);
      reported_ = true;
      serving_ = false;
      why_ = "draining";
      failing_ = {"draining"};
    }
    if (on_change_) on_change_(false, "draining");
  }

  // Probes when `interval` has passed since the last probe (or none ran);
  // true when it did.
  bool MaybeProbe() {
    {
      absl::MutexLock lock(&mu_);
      if (ran_ && clock_->Now() < last_run_ + interval_) return false;
    }
    (void)ProbeNow();
    return true;
  }

  // The last verdict (serving before any probe ran).
  bool serving() const {
    absl::MutexLock lock(&mu_);
    return serving_;
  }
  // The failures in detail (may name paths): for the daemon's own log only.
  std::string why() const {
    absl::MutexLock lock(&mu_);
    return why_;
  }
  // The names of the failing checks, nothing more: what callers are told.
  std::vector<std::string> failing_checks() const {
    absl::MutexLock lock(&mu_);
    return failing_;
  }
  // "unhealthy: store; audit log (details in the server's log)", or "" when
  // serving: the reason to put in answers to callers.
  std::string CallerReason() const {
    absl::MutexLock lock(&mu_);
    if (serving_) return "";
    std::string names;
    for (const std::string& n : failing_) {
      absl::StrAppend(&names, names.empty() ? "" : "; ", n);
    }
    return absl::StrCat("unhealthy: ", names, " (details in the server's log)");
  }

  // Probes every interval (real time) until `stop` is notified.
  void RunUntil(absl::Notification* stop) {
    while (!stop->WaitForNotificationWithTimeout(interval_)) MaybeProbe();
  }

 private:
  Clock* const clock_;
  const absl::Duration interval_;
  const OnChange on_change_;
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, Check>> checks_ ABSL_GUARDED_BY(mu_);
  bool ran_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_run_ ABSL_GUARDED_BY(mu_);
  bool reported_ ABSL_GUARDED_BY(mu_) = false;
  bool serving_ ABSL_GUARDED_BY(mu_) = true;
  std::string why_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> failing_ ABSL_GUARDED_BY(mu_);
};

// Checks that a directory a daemon opened (a RocksDB store) is still the one
// it opened and can take writes: it exists, is the same inode (not removed
// or replaced), still holds `marker` (RocksDB's CURRENT), and its file
// system is writable with at least `min_free_bytes` free. A RocksDB that
// keeps writing into a removed directory would lose everything at restart.
// Thread-safe (immutable after construction).
class DirectoryCheck {
 public:
  static constexpr uint64_t kDefaultMinFreeBytes = 1 << 20;

  // Records the directory's identity now (call right after opening it).
  explicit DirectoryCheck(std::string path, std::string marker = "CURRENT",
                          uint64_t min_free_bytes = kDefaultMinFreeBytes)
      : path_(std::move(path)),
        marker_(std::move(marker)),
        min_free_bytes_(min_free_bytes) {
    struct stat st;
    if (stat(path_.c_str(), &st) == 0) {
      dev_ = st.st_dev;
      ino_ = st.st_ino;
      known_ = true;
    }
  }

  absl::Status operator()() const {
    struct stat st;
    if (stat(path_.c_str(), &st) != 0) {
      return absl::UnavailableError(
          absl::StrCat(path_, ": ", std::strerror(errno)));
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::UnavailableError(absl::StrCat(path_, " is not a directory"));
    }
    if (!known_ || st.st_dev != dev_ || st.st_ino != ino_) {
      return absl::UnavailableError(
          absl::StrCat(path_, " was removed or replaced since it was opened"));
    }
    if (!marker_.empty()) {
      const std::string marker = path_ + "/" + marker_;
      if (stat(marker.c_str(), &st) != 0) {
        return absl::UnavailableError(
            absl::StrCat(marker, ": ", std::strerror(errno)));
      }
    }
    struct statvfs fs;
    if (statvfs(path_.c_str(), &fs) != 0) {
      return absl::UnavailableError(
          absl::StrCat("statvfs ", path_, ": ", std::strerror(errno)));
    }
    if (fs.f_flag & ST_RDONLY) {
      return absl::UnavailableError(
          absl::StrCat(path_, " is on a read-only file system"));
    }
    const uint64_t free_bytes =
        static_cast<uint64_t>(fs.f_bavail) * static_cast<uint64_t>(fs.f_frsize);
    if (free_bytes < min_free_bytes_) {
      return absl::UnavailableError(absl::StrCat(path_, ": only ", free_bytes,
                                                 " bytes free (needs ",
                                                 min_free_bytes_, ")"));
    }
    return absl::OkStatus();
  }

 private:
  const std::string path_;
  const std::string marker_;
  const uint64_t min_free_bytes_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool known_ = false;
};

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_HEALTH_PROBE_H_
