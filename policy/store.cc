#include "policy/store.h"

#include <chrono>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace passerelle::policy {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<PolicyStore>> PolicyStore::Create(
    std::vector<std::string> paths, Prepare prepare) {
  std::unique_ptr<PolicyStore> store(
      new PolicyStore(std::move(paths), std::move(prepare)));
  {
    absl::MutexLock lock(&store->reload_mu_);
    PASSERELLE_RETURN_IF_ERROR(store->ReloadLocked());
  }
  return store;
}

std::shared_ptr<const Policy> PolicyStore::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::Status PolicyStore::last_error() const {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

absl::Status PolicyStore::Reload() {
  absl::MutexLock lock(&reload_mu_);
  return ReloadLocked();
}

absl::StatusOr<std::vector<PolicyStore::FileStamp>> PolicyStore::Stamp() const {
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<std::string> files,
                              ExpandPolicyPaths(paths_));
  std::vector<FileStamp> out;
  for (const std::string& f : files) {
    std::error_code ec;
    FileStamp s;
    s.path = f;
    s.size = fs::file_size(f, ec);
    if (ec) return absl::UnavailableError(absl::StrCat(f, ": ", ec.message()));
    auto t = fs::last_write_time(f, ec);
    if (ec) return absl::UnavailableError(absl::StrCat(f, ": ", ec.message()));
    s.mtime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                     t.time_since_epoch())
                     .count();
    out.push_back(std::move(s));
  }
  return out;
}

absl::Status PolicyStore::ReloadLocked() {
  absl::StatusOr<std::vector<FileStamp>> stamps = Stamp();
  absl::Status status;
  std::shared_ptr<const Policy> loaded;
  absl::StatusOr<std::vector<PolicySource>> sources =
      stamps.ok() ? ReadPolicySources(paths_)
                  : absl::StatusOr<std::vector<PolicySource>>(stamps.status());
  if (sources.ok()) {
    attempted_version_ = PolicyVersion(*sources);
    auto policy = Policy::LoadFromSources(*std::move(sources));
    if (policy.ok()) {
      loaded = *std::move(policy);
    } else {
      status = policy.status();
    }
  } else {
    status = sources.status();
  }
  if (stamps.ok()) stamps_ = *std::move(stamps);
  if (status.ok() && prepare_) {
    std::string in_force;
    {
      absl::MutexLock lock(&mu_);
      if (current_ != nullptr) in_force = current_->version();
    }
    // Without mu_: Current() keeps serving the previous version meanwhile.
    if (loaded->version() != in_force) {
      absl::Status prepared = prepare_(*loaded);
      if (!prepared.ok()) {
        status = absl::Status(
            prepared.code(),
            absl::StrCat("policy version ", loaded->version().substr(0, 12),
                         " could not be prepared: ", prepared.message()));
      }
    }
  }

  absl::MutexLock lock(&mu_);
  if (!status.ok()) {
    last_error_ = status;
    std::cerr << "policy: reload rejected, "
              << (current_ ? absl::StrCat("still serving version ",
                                          current_->version())
                           : std::string("no policy in force"))
              << ":\n"
              << status.message() << "\n";
    return status;
  }
  last_error_ = absl::OkStatus();
  if (current_ == nullptr || current_->version() != loaded->version()) {
    current_ = std::move(loaded);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PolicyStore::MaybeReload() {
  absl::MutexLock lock(&reload_mu_);
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<FileStamp> stamps, Stamp());
  if (stamps == stamps_) {
    // Same sizes and times. A file rewritten within the file system's
    // timestamp granularity keeps its time, so files modified in the last
    // few seconds are compared by content too (as git does for "racily
    // clean" entries).
    auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   fs::file_time_type::clock::now().time_since_epoch())
                   .count();
    constexpr int64_t kRacyNs = int64_t{3} * 1000 * 1000 * 1000;
    bool racy = false;
    for (const FileStamp& s : stamps) {
      if (now - s.mtime_ns < kRacyNs) racy = true;
    }
    if (!racy) return false;
    PASSERELLE_ASSIGN_OR_RETURN(std::vector<PolicySource> sources,
                                ReadPolicySources(paths_));
    if (PolicyVersion(std::move(sources)) == attempted_version_) return false;
  }
  std::string before;
  {
    absl::MutexLock lock2(&mu_);
    if (current_) before = current_->version();
  }
  std::string previous_attempt = attempted_version_;
  absl::Status status = ReloadLocked();
  if (!status.ok()) {
    // Report an invalid version once, not on every poll.
    if (attempted_version_ == previous_attempt) return false;
    return status;
  }
  absl::MutexLock lock2(&mu_);
  return current_->version() != before;
}

}  // namespace passerelle::policy
