// The snapshot a serving node answers from, switched without a restart.
//
// The node watches its store's pointer (node/store.h). When it names a
// snapshot other than the one served, the node opens it beside the old one
// (checking its seal, every file's size and SHA-256, its site and that it
// reads), builds its engine, and swaps it in with one pointer exchange:
// queries already running finish on the old engine, which is released
// (database closed, lease dropped) when the last of them ends; old
// snapshots beyond retention are then removed. A snapshot that fails any
// check is refused: logged, counted (`snapshot_refused` in the metrics),
// and the old one keeps serving; the node stays SERVING throughout. It is
// tried again only when the pointer names yet another snapshot, or after
// `retry_refused_after`.
#ifndef PASSERELLE_NODE_LIVE_SNAPSHOT_H_
#define PASSERELLE_NODE_LIVE_SNAPSHOT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "node/engine.h"
#include "node/store.h"

namespace passerelle::node {

// The metrics reason counted for each refused snapshot.
inline constexpr char kSnapshotRefused[] = "snapshot_refused";

struct LiveSnapshotOptions {
  std::string site;  // A snapshot of another site is refused.
  // Sealed snapshots kept, the current one included (at least 1).
  int snapshots_kept = 2;
  // Check every file's SHA-256 before serving a snapshot at start (a switch
  // always does: the old snapshot serves meanwhile).
  bool verify_contents_at_start = false;
  // How often the pointer is read.
  absl::Duration check_interval = absl::Seconds(1);
  // A refused snapshot still named by the pointer is tried again after this
  // long (a file put back, a disk fixed).
  absl::Duration retry_refused_after = absl::Minutes(5);
  // Builds the engine of a snapshot (NewIndexEngine by default).
  std::function<std::unique_ptr<CohortEngine>(std::shared_ptr<const Snapshot>)>
      make_engine;
  // Log lines (the daemon's stderr by default).
  std::function<void(const std::string&)> log;
  // Counts refused snapshots (may be null).
  std::function<void()> count_refused;
};

// Thread-safe.
class LiveSnapshot {
 public:
  using Install = std::function<void(std::shared_ptr<const CohortEngine>)>;

  LiveSnapshot(NodeStore* store, LiveSnapshotOptions options, Clock* clock);
  ~LiveSnapshot();

  // Opens the current snapshot for the start of the node: its engine, or
  // the reason it cannot serve (no snapshot, another site, unreadable).
  absl::StatusOr<std::shared_ptr<const CohortEngine>> OpenInitial();
  // Where switched engines go (NodeCore::SetEngine). Set before Check.
  void set_install(Install install);

  // Reads the pointer; when it names a snapshot not served (and not
  // refused), opens, checks and installs it; then removes old snapshots
  // beyond retention that nothing uses. OK when nothing changed or the
  // switch happened; the refusal's reason otherwise.
  absl::Status Check();
  // Checks every check_interval, and at once after a snapshot was released,
  // until `stop` is notified.
  void RunUntil(absl::Notification* stop);

  // The version served now.
  std::string served_version() const;
  // For the health probe: the served snapshot reads back. (The pointer
  // naming another snapshot, or being unreadable, is logged by Check and is
  // not a failure: the served snapshot still answers.)
  absl::Status CheckReadable() const;
  int64_t switches() const;
  int64_t refused() const;

 private:
  struct Wakeup;
  absl::StatusOr<std::shared_ptr<const CohortEngine>> OpenEngine(
      const std::string& version, bool verify_contents);
  void Prune();
  void Log(const std::string& line) const;

  NodeStore* const store_;
  const LiveSnapshotOptions options_;
  Clock* const clock_;
  // Shared with the store's release callback, which may outlive this.
  std::shared_ptr<Wakeup> wakeup_;
  absl::Mutex check_mu_;  // One Check at a time.
  mutable absl::Mutex mu_;
  Install install_ ABSL_GUARDED_BY(mu_);
  std::string served_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const SnapshotHandle> served_handle_ ABSL_GUARDED_BY(mu_);
  std::string refused_ ABSL_GUARDED_BY(mu_);
  absl::Time refused_at_ ABSL_GUARDED_BY(mu_);
  int64_t switches_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refused_count_ ABSL_GUARDED_BY(mu_) = 0;
  // The last errors logged, so that a lasting one is logged once.
  std::string pointer_error_ ABSL_GUARDED_BY(mu_);
  std::string prune_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_LIVE_SNAPSHOT_H_
