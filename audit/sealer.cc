#include "audit/sealer.h"

#include <utility>

namespace passerelle::audit {

CheckpointSealer::CheckpointSealer(
    AuditLog* log, absl::Duration interval,
    std::function<void(const absl::Status&)> report)
    : log_(log), report_(std::move(report)) {
  if (interval <= absl::ZeroDuration()) return;
  thread_ = std::thread([this, interval] {
    while (!stopping_.WaitForNotificationWithTimeout(interval)) (void)Tick();
  });
}

CheckpointSealer::~CheckpointSealer() { Stop(); }

absl::StatusOr<bool> CheckpointSealer::Tick() {
  absl::StatusOr<bool> sealed = log_->SealTail();
  if (!sealed.ok() && report_) report_(sealed.status());
  return sealed;
}

void CheckpointSealer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_.Notify();
  if (thread_.joinable()) thread_.join();
  (void)Tick();
}

}  // namespace passerelle::audit
