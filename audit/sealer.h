// Keeps an audit log's tail signed: every `interval`, and once more when
// stopped, signs a checkpoint of the log if entries follow the latest one
// (AuditLog::SealTail). With a checkpoint interval above 1 the last entries
// of a busy log wait for the next due size; the sealer bounds that wait in
// time, and a clean shutdown leaves the whole log under a signature.
#ifndef PASSERELLE_AUDIT_SEALER_H_
#define PASSERELLE_AUDIT_SEALER_H_

#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "audit/log.h"

namespace passerelle::audit {

// Thread-safe: Tick may run concurrently with the log's appends; Stop (or
// the destructor) once, from the owner.
class CheckpointSealer {
 public:
  // `report` hears every failed seal (e.g. to log it); may be empty.
  // `interval` <= 0 starts no thread: only Tick and Stop seal.
  CheckpointSealer(AuditLog* log, absl::Duration interval,
                   std::function<void(const absl::Status&)> report = {});
  CheckpointSealer(const CheckpointSealer&) = delete;
  CheckpointSealer& operator=(const CheckpointSealer&) = delete;
  ~CheckpointSealer();  // Stop().

  // One seal now; what SealTail returned.
  absl::StatusOr<bool> Tick();
  // Stops the thread, then seals a last time (reported on failure).
  void Stop();

 private:
  AuditLog* const log_;
  const std::function<void(const absl::Status&)> report_;
  absl::Notification stopping_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_SEALER_H_
