// The MetricsService (proto/passerelle/v1/metrics.proto) of a daemon: its
// health verdict with the failing checks by name only, and its refusal
// counters. Header-only; the servers register it beside their services.
#ifndef PASSERELLE_COMMON_METRICS_SERVICE_H_
#define PASSERELLE_COMMON_METRICS_SERVICE_H_

#include <cstdint>
#include <functional>
#include <utility>

#include "common/health_probe.h"
#include "common/refusal_counters.h"
#include "grpcpp/grpcpp.h"
#include "passerelle/v1/metrics.grpc.pb.h"

namespace passerelle {

// Thread-safe (the probe and the counters are). Neither is owned.
class MetricsServiceImpl final
    : public passerelle::v1::MetricsService::Service {
 public:
  // `handshake_refusals`, when set, counts clients refused before any
  // service saw them (at the TLS handshake), served as `tls_handshake`.
  MetricsServiceImpl(const HealthProbe* health, const RefusalCounters* counters,
                     std::function<uint64_t()> handshake_refusals = nullptr)
      : health_(health),
        counters_(counters),
        handshake_refusals_(std::move(handshake_refusals)) {}

  grpc::Status GetMetrics(grpc::ServerContext*,
                          const passerelle::v1::MetricsRequest*,
                          passerelle::v1::MetricsResponse* response) override {
    response->set_serving(health_->serving());
    for (std::string& name : health_->failing_checks()) {
      response->add_failing_checks(std::move(name));
    }
    for (const auto& [reason, count] : counters_->Snapshot()) {
      (*response->mutable_refusals())[reason] = count;
    }
    if (handshake_refusals_ != nullptr) {
      (*response->mutable_refusals())["tls_handshake"] = handshake_refusals_();
    }
    return grpc::Status::OK;
  }

 private:
  const HealthProbe* const health_;
  const RefusalCounters* const counters_;
  const std::function<uint64_t()> handshake_refusals_;
};

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_METRICS_SERVICE_H_
