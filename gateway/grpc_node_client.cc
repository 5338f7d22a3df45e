#include "gateway/grpc_node_client.h"

#include <algorithm>

#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "grpcpp/grpcpp.h"
#include "passerelle/v1/node.grpc.pb.h"

namespace passerelle::gateway {
namespace {

class GrpcNodeClient : public NodeClient {
 public:
  GrpcNodeClient(std::string site, std::shared_ptr<grpc::Channel> channel)
      : site_(std::move(site)), stub_(v1::NodeService::NewStub(channel)) {}

  const std::string& site() const override { return site_; }

  void Count(const v1::CountRequest& request, absl::Time deadline,
             CountCallback done) override {
    struct Call {
      grpc::ClientContext context;
      v1::CountRequest request;
      v1::CountResponse response;
      CountCallback done;
    };
    auto* call = new Call;
    call->context.set_deadline(absl::ToChronoTime(deadline));
    call->request = request;
    call->done = std::move(done);
    stub_->async()->Count(&call->context, &call->request, &call->response,
                          [call](grpc::Status status) {
                            std::unique_ptr<Call> owned(call);
                            if (status.ok()) {
                              owned->done(std::move(owned->response));
                            } else {
                              owned->done(FromGrpcStatus(status));
                            }
                          });
  }

  absl::StatusOr<v1::NodeInfo> Info(absl::Time deadline) override {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    v1::NodeInfoRequest request;
    v1::NodeInfo info;
    grpc::Status status = stub_->GetInfo(&context, request, &info);
    if (!status.ok()) return FromGrpcStatus(status);
    if (info.site() != site_) {
      return absl::FailedPreconditionError(
          "node at this address says it is site \"" + info.site() +
          "\", expected \"" + site_ + "\"");
    }
    return info;
  }

  absl::StatusOr<v1::SiteExpansion> Explain(const v1::ExplainRequest& request,
                                            absl::Time deadline) override {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    v1::SiteExpansion expansion;
    grpc::Status status = stub_->Explain(&context, request, &expansion);
    if (!status.ok()) return FromGrpcStatus(status);
    return expansion;
  }

 private:
  const std::string site_;
  std::unique_ptr<v1::NodeService::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<NodeClient>> NewGrpcNodeClient(
    const std::string& site, const std::string& address,
    const std::string& server_name,
    std::shared_ptr<grpc::ChannelCredentials> credentials,
    const FanOutOptions& retry) {
  if (address.empty()) {
    return absl::InvalidArgumentError("site " + site + ": empty node address");
  }
  grpc::ChannelArguments args;
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  // gRPC's reconnect backoff grows by 1.6 with +/-20% jitter; half of the
  // fan-out's (which doubles) keeps it below every retry's wait. The
  // minimum connect timeout (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS) stays at
  // its default: a slow handshake is not a failure.
  const auto half_ms = [](absl::Duration d) {
    return static_cast<int>(
        std::max<int64_t>(10, absl::ToInt64Milliseconds(d) / 2));
  };
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              half_ms(retry.initial_backoff));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, half_ms(retry.max_backoff));
  // The fan-out retries by itself (only UNAVAILABLE, within the deadline);
  // gRPC's own retry layer would only buffer every call.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  ApplyLowOverheadChannelArgs(&args);
  return std::unique_ptr<NodeClient>(new GrpcNodeClient(
      site, grpc::CreateCustomChannel(address, credentials, args)));
}

}  // namespace passerelle::gateway
