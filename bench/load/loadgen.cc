// passerelle_loadgen: a load driver for the gateway (async gRPC callback API,
// mTLS). See bench/README.md, section "Load driver (bench/load)".
//
// Closed loop (--concurrency C): C requests in flight; each completion lets
// the next one go. Latency is send to completion.
// Fixed rate (--rate R): request k is scheduled at start + k/R whatever the
// answers do (open loop); its latency is measured from that scheduled time,
// so a stalled gateway shows up in the percentiles instead of slowing the
// sender down (no coordinated omission). In-flight requests are capped by
// --max-outstanding; a send held back by the cap is still timed from its
// schedule.
// Every request is a distinct query (bench/load/queries.h): the gateway's
// repeat protection would otherwise answer from its release cache.

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/load/queries.h"
#include "bench/load/stats.h"
#include "cli/flags.h"
#include "common/grpc_server.h"
#include "common/status_macros.h"
#include "common/textproto.h"
#include "grpcpp/grpcpp.h"
#include "passerelle/v1/config.pb.h"
#include "passerelle/v1/gateway.grpc.pb.h"
#include "tls/tls.h"

namespace passerelle::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "usage: passerelle_loadgen (--config CLIENT.textproto | --gateway "
    "HOST:PORT --ca F --cert F --key F [--server-name N])\n"
    "         [--project P] [--concurrency C | --rate R] [--duration D] "
    "[--requests N]\n"
    "         [--warmup N] [--channels K] [--timeout-ms MS] "
    "[--max-outstanding M]\n"
    "         [--mix count,breakdown,sequence | --queries FILE... | --query "
    "Q...] [--no-vary]\n"
    "         [--first-index I] [--json FILE] [--label L] [--print-queries "
    "N]\n"
    "Closed loop with --concurrency (default 16); fixed rate (open loop, "
    "latency from the\n"
    "scheduled send time) with --rate per second. Stops after --requests N "
    "measured requests\n"
    "or --duration D (\"10s\", \"500ms\"; default 10s), whichever comes "
    "first, after --warmup\n"
    "requests (default 200, closed loop, not measured). Loopback gateways "
    "only; at most\n"
    "600 s and 5,000,000 requests per phase. Each request is a distinct "
    "query from\n"
    "--first-index on (the default mix, or the list cycled with a different "
    "`as of`\n"
    "date each cycle unless --no-vary).\n";

constexpr absl::Duration kMaxDuration = absl::Seconds(600);
constexpr int64_t kMaxRequests = 5'000'000;

struct Options {
  v1::ClientConfig client;
  int concurrency = 16;
  double rate = 0;  // > 0: open loop.
  int64_t requests = 0;
  absl::Duration duration = absl::ZeroDuration();
  int64_t warmup = 200;
  int channels = 1;
  int timeout_ms = 10000;
  int64_t max_outstanding = 4096;
  uint64_t first_index = 0;
  std::string json_path;
  std::string label;
  int64_t print_queries = -1;
};

bool IsLoopback(const std::string& address) {
  std::string host = address;
  if (absl::StartsWith(host, "ipv4:")) host = host.substr(5);
  if (absl::StartsWith(host, "ipv6:")) host = host.substr(5);
  if (!host.empty() && host[0] == '[') {
    const size_t end = host.find(']');
    if (end == std::string::npos) return false;
    host = host.substr(1, end - 1);
  } else {
    const size_t colon = host.rfind(':');
    if (colon != std::string::npos) host = host.substr(0, colon);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args,
                                     std::unique_ptr<QuerySource>* source) {
  PASSERELLE_ASSIGN_OR_RETURN(
      cli::ParsedFlags flags,
      cli::ParseFlags(args, {"config",       "gateway",     "ca",
                             "cert",         "key",         "server-name",
                             "project",      "concurrency", "rate",
                             "duration",     "requests",    "warmup",
                             "channels",     "timeout-ms",  "max-outstanding",
                             "mix",          "queries",     "query",
                             "first-index",  "json",        "label",
                             "print-queries"},
                      {"no-vary", "help"}));
  if (flags.Has("help")) return absl::CancelledError(kUsage);
  if (!flags.positional.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", flags.positional[0], "\""));
  }
  Options o;
  if (flags.Has("config")) {
    PASSERELLE_RETURN_IF_ERROR(
        LoadTextProtoFile(flags.Get("config"), &o.client));
  }
  if (flags.Has("gateway")) o.client.set_gateway(flags.Get("gateway"));
  if (flags.Has("server-name"))
    o.client.set_tls_server_name(flags.Get("server-name"));
  if (flags.Has("ca")) o.client.mutable_tls()->set_ca_file(flags.Get("ca"));
  if (flags.Has("cert"))
    o.client.mutable_tls()->set_cert_file(flags.Get("cert"));
  if (flags.Has("key")) o.client.mutable_tls()->set_key_file(flags.Get("key"));
  if (flags.Has("project")) o.client.set_project(flags.Get("project"));

  auto get_int = [&](const char* name, int64_t fallback, int64_t lo,
                     int64_t hi) -> absl::StatusOr<int64_t> {
    PASSERELLE_ASSIGN_OR_RETURN(int64_t v, flags.GetInt(name, fallback));
    if (v < lo || v > hi) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must be in [", lo, ", ", hi, "]"));
    }
    return v;
  };
  PASSERELLE_ASSIGN_OR_RETURN(o.concurrency,
                              get_int("concurrency", 16, 1, 1024));
  PASSERELLE_ASSIGN_OR_RETURN(o.requests,
                              get_int("requests", 0, 0, kMaxRequests));
  PASSERELLE_ASSIGN_OR_RETURN(o.warmup, get_int("warmup", 200, 0, 100000));
  PASSERELLE_ASSIGN_OR_RETURN(o.channels, get_int("channels", 1, 1, 64));
  PASSERELLE_ASSIGN_OR_RETURN(o.timeout_ms,
                              get_int("timeout-ms", 10000, 1, 600000));
  PASSERELLE_ASSIGN_OR_RETURN(o.max_outstanding,
                              get_int("max-outstanding", 4096, 1, 100000));
  PASSERELLE_ASSIGN_OR_RETURN(int64_t first,
                              get_int("first-index", 0, 0, int64_t{1} << 50));
  o.first_index = static_cast<uint64_t>(first);
  PASSERELLE_ASSIGN_OR_RETURN(o.print_queries,
                              get_int("print-queries", -1, -1, 1000000));
  if (flags.Has("rate")) {
    if (!absl::SimpleAtod(flags.Get("rate"), &o.rate) || !(o.rate > 0) ||
        o.rate > 100000) {
      return absl::InvalidArgumentError("--rate must be in (0, 100000]");
    }
    if (flags.Has("concurrency")) {
      return absl::InvalidArgumentError(
          "--rate (open loop) and --concurrency (closed loop) exclude each "
          "other");
    }
  }
  if (flags.Has("duration")) {
    const std::string d = flags.Get("duration");
    double seconds;
    if (absl::SimpleAtod(d, &seconds)) {
      o.duration = absl::Seconds(seconds);
    } else if (!absl::ParseDuration(d, &o.duration)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--duration: \"", d, "\" is not a duration"));
    }
    if (o.duration <= absl::ZeroDuration() || o.duration > kMaxDuration) {
      return absl::InvalidArgumentError("--duration must be in (0, 600s]");
    }
  } else {
    o.duration = o.requests > 0 ? kMaxDuration : absl::Seconds(10);
  }
  o.json_path = flags.Get("json");
  o.label = flags.Get("label");

  // Queries.
  std::vector<std::string> list;
  for (const std::string& f : flags.GetAll("queries")) {
    PASSERELLE_ASSIGN_OR_RETURN(std::vector<std::string> lines,
                                ReadQueryFile(f));
    list.insert(list.end(), lines.begin(), lines.end());
  }
  for (const std::string& q : flags.GetAll("query")) list.push_back(q);
  if (!list.empty()) {
    if (flags.Has("mix")) {
      return absl::InvalidArgumentError(
          "--mix chooses the default queries; it excludes --queries/--query");
    }
    PASSERELLE_ASSIGN_OR_RETURN(
        *source, NewListSource(std::move(list), !flags.Has("no-vary")));
  } else {
    PASSERELLE_ASSIGN_OR_RETURN(
        std::vector<Shape> shapes,
        ParseShapes(flags.Get("mix", "count,breakdown,sequence")));
    PASSERELLE_ASSIGN_OR_RETURN(*source, NewDefaultMix(std::move(shapes)));
  }
  if (o.print_queries >= 0) return o;

  if (o.client.gateway().empty()) {
    return absl::InvalidArgumentError("no gateway: give --gateway or --config");
  }
  if (!IsLoopback(o.client.gateway())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gateway ", o.client.gateway(),
        " is not a loopback address: the load driver only targets the local "
        "federation"));
  }
  if (o.client.project().empty()) {
    return absl::InvalidArgumentError("no project: give --project or --config");
  }
  return o;
}

// What a fixed-rate phase adds: how far behind schedule the sender got.
struct SendLag {
  int64_t late_1ms = 0;  // Sent more than 1 ms after its scheduled time.
  double max_ms = 0;
};

struct PhaseResult {
  std::string name;
  int64_t issued = 0;
  double elapsed_s = 0;
  Recorder::Snapshot outcomes;
  LatencySummary latency;
  SendLag lag;
};

// Issues requests and waits for them. Run and the index accessors are
// called from one thread; gRPC's callback threads only record outcomes.
class Driver {
 public:
  Driver(std::vector<std::unique_ptr<v1::GatewayService::Stub>> stubs,
         const QuerySource* source, std::string project, absl::Duration timeout)
      : stubs_(std::move(stubs)),
        source_(source),
        project_(std::move(project)),
        timeout_(absl::ToChronoNanoseconds(timeout)) {}

  uint64_t next_index() const { return next_index_; }
  void set_next_index(uint64_t i) { next_index_ = i; }

  // Closed loop (rate == 0; at most `limit` in flight) or open loop at
  // `rate` per second (at most `limit` in flight). Stops after `count`
  // requests (0: no count limit) or when `duration` has passed.
  PhaseResult Run(std::string name, double rate, int64_t limit, int64_t count,
                  absl::Duration duration) {
    PhaseResult result;
    result.name = std::move(name);
    Recorder recorder;
    const auto start = SteadyClock::now();
    const auto end = start + absl::ToChronoNanoseconds(duration);
    const std::chrono::duration<double> period(rate > 0 ? 1.0 / rate : 0.0);
    {
      absl::MutexLock lock(&mu_);
      limit_ = limit;
      last_done_ = start;
    }
    int64_t k = 0;
    for (; count == 0 || k < count; ++k) {
      SteadyClock::time_point intended;
      if (rate > 0) {
        intended = start + std::chrono::duration_cast<SteadyClock::duration>(
                               period * static_cast<double>(k));
        if (intended >= end) break;
        std::this_thread::sleep_until(intended);
      }
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &Driver::HasRoom));
        ++outstanding_;
      }
      const auto now = SteadyClock::now();
      if (rate > 0) {
        const double lag_ms =
            std::chrono::duration<double, std::milli>(now - intended).count();
        if (lag_ms > 1.0) ++result.lag.late_1ms;
        result.lag.max_ms = std::max(result.lag.max_ms, lag_ms);
      } else {
        if (now >= end) {
          absl::MutexLock lock(&mu_);
          --outstanding_;
          break;
        }
        intended = now;
      }
      Issue(next_index_++, intended, &recorder);
    }
    result.issued = k;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Driver::Idle));
      result.elapsed_s =
          std::chrono::duration<double>(last_done_ - start).count();
    }
    result.outcomes = recorder.Take();
    result.latency = Summarize(result.outcomes.ok_nanos);
    return result;
  }

 private:
  struct Call {
    grpc::ClientContext context;
    v1::QueryRequest request;
    v1::QueryResponse response;
    SteadyClock::time_point intended;
  };

  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return outstanding_ < limit_;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return outstanding_ == 0;
  }

  void Issue(uint64_t index, SteadyClock::time_point intended,
             Recorder* recorder) {
    auto* call = new Call;
    call->intended = intended;
    call->request.set_text(source_->Query(index));
    call->request.set_project(project_);
    call->context.set_deadline(std::chrono::system_clock::now() + timeout_);
    v1::GatewayService::Stub* stub = stubs_[index % stubs_.size()].get();
    stub->async()->Query(
        &call->context, &call->request, &call->response,
        [this, call, recorder](grpc::Status status) {
          const auto done = SteadyClock::now();
          std::unique_ptr<Call> owned(call);
          if (status.ok()) {
            recorder->RecordOk(
                std::chrono::duration_cast<std::chrono::nanoseconds>(
                    done - owned->intended)
                    .count(),
                owned->response.complete(), owned->response.repeat(),
                owned->response.epsilon_charged());
          } else {
            recorder->RecordError(StatusCodeName(status.error_code()),
                                  status.error_message());
          }
          // Freed before the phase can see the call as done, so nothing of
          // it outlives the driver.
          owned.reset();
          absl::MutexLock lock(&mu_);
          --outstanding_;
          if (done > last_done_) last_done_ = done;
        });
  }

  const std::vector<std::unique_ptr<v1::GatewayService::Stub>> stubs_;
  const QuerySource* const source_;
  const std::string project_;
  const SteadyClock::duration timeout_;
  uint64_t next_index_ = 0;  // Only the phase's sending thread touches it.

  absl::Mutex mu_;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t limit_ ABSL_GUARDED_BY(mu_) = 1;
  SteadyClock::time_point last_done_ ABSL_GUARDED_BY(mu_);
};

std::string ErrorsText(const Recorder::Snapshot& s) {
  if (s.errors.empty()) return "none";
  std::vector<std::string> parts;
  for (const auto& [code, n] : s.errors) {
    parts.push_back(absl::StrCat(code, " ", n, " (first: \"",
                                 s.first_error.at(code), "\")"));
  }
  return absl::StrJoin(parts, ", ");
}

void PrintPhase(const PhaseResult& r, const Options& o) {
  const Recorder::Snapshot& s = r.outcomes;
  const double qps = r.elapsed_s > 0 ? s.ok / r.elapsed_s : 0;
  std::cout << absl::StrFormat(
      "%s: %d requests in %.2f s -> %.1f OK queries/s\n", r.name, r.issued,
      r.elapsed_s, qps);
  std::cout << absl::StrFormat(
      "  latency (ms, OK answers%s): min %.2f  p50 %.2f  p90 %.2f  p99 %.2f  "
      "max %.2f  mean %.2f\n",
      o.rate > 0 ? ", from the scheduled send time" : "", r.latency.min_ms,
      r.latency.p50_ms, r.latency.p90_ms, r.latency.p99_ms, r.latency.max_ms,
      r.latency.mean_ms);
  std::cout << absl::StrFormat(
      "  ok %d (partial %d, repeats %d), epsilon charged %.6f\n", s.ok,
      s.partial, s.repeats, s.epsilon_charged);
  std::cout << "  errors by status code: " << ErrorsText(s) << "\n";
  if (o.rate > 0) {
    std::cout << absl::StrFormat(
        "  sender: %d sends more than 1 ms behind schedule, max %.2f ms\n",
        r.lag.late_1ms, r.lag.max_ms);
  }
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string PhaseJson(const PhaseResult& r) {
  const Recorder::Snapshot& s = r.outcomes;
  std::vector<std::string> errors;
  for (const auto& [code, n] : s.errors) {
    errors.push_back(absl::StrCat(JsonString(code), ": ", n));
  }
  return absl::StrFormat(
      "{\"name\": %s, \"issued\": %d, \"elapsed_s\": %.6f, \"ok\": %d, "
      "\"throughput_qps\": %.3f, \"partial\": %d, \"repeats\": %d, "
      "\"epsilon_charged\": %.6f, \"errors\": {%s}, \"latency_ms\": {\"min\": "
      "%.4f, \"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, \"max\": %.4f, "
      "\"mean\": %.4f}, \"late_sends_1ms\": %d, \"max_send_lag_ms\": %.4f}",
      JsonString(r.name), r.issued, r.elapsed_s, s.ok,
      r.elapsed_s > 0 ? s.ok / r.elapsed_s : 0.0, s.partial, s.repeats,
      s.epsilon_charged, absl::StrJoin(errors, ", "), r.latency.min_ms,
      r.latency.p50_ms, r.latency.p90_ms, r.latency.p99_ms, r.latency.max_ms,
      r.latency.mean_ms, r.lag.late_1ms, r.lag.max_ms);
}

absl::Status Main(const std::vector<std::string>& args) {
  std::unique_ptr<QuerySource> source;
  PASSERELLE_ASSIGN_OR_RETURN(Options o, ParseOptions(args, &source));
  if (o.print_queries >= 0) {
    for (int64_t i = 0; i < o.print_queries; ++i) {
      std::cout << source->Query(o.first_index + i) << "\n";
    }
    return absl::OkStatus();
  }

  tls::TlsFiles files;
  files.ca_file = o.client.tls().ca_file();
  files.cert_file = o.client.tls().cert_file();
  files.key_file = o.client.tls().key_file();
  files.crl_dir = o.client.tls().crl_dir();
  files.trust_domain = o.client.tls().trust_domain();
  PASSERELLE_RETURN_IF_ERROR(tls::CheckTlsFiles(files));
  PASSERELLE_ASSIGN_OR_RETURN(const std::string trust_domain,
                              tls::TrustDomain(files));
  PASSERELLE_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ChannelCredentials> creds,
      tls::MakeChannelCredentials(files, tls::GatewayIdentity(trust_domain)));
  std::vector<std::unique_ptr<v1::GatewayService::Stub>> stubs;
  for (int i = 0; i < o.channels; ++i) {
    grpc::ChannelArguments args;
    if (!o.client.tls_server_name().empty()) {
      args.SetSslTargetNameOverride(o.client.tls_server_name());
    }
    // One TCP connection per channel: no subchannel sharing between them.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);  // Every error is reported.
    passerelle::ApplyLowOverheadChannelArgs(&args);
    args.SetInt("passerelle.loadgen.channel", i);
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(o.client.gateway(), creds, args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(10))) {
      return absl::UnavailableError(absl::StrCat(
          "cannot connect to the gateway at ", o.client.gateway()));
    }
    stubs.push_back(v1::GatewayService::NewStub(channel));
  }

  const uint64_t needed =
      o.first_index + static_cast<uint64_t>(o.warmup) +
      static_cast<uint64_t>(o.requests > 0 ? o.requests
                            : o.rate > 0
                                ? o.rate * absl::ToDoubleSeconds(o.duration)
                                : 0);
  if (needed > source->DistinctCount()) {
    std::cerr << "passerelle_loadgen: warning: the query source has "
              << source->DistinctCount() << " distinct queries, the run needs "
              << needed << ": repeats will be answered from the release cache"
              << "\n";
  }

  Driver driver(std::move(stubs), source.get(), o.client.project(),
                absl::Milliseconds(o.timeout_ms));
  driver.set_next_index(o.first_index);
  const std::string mode =
      o.rate > 0 ? absl::StrFormat("fixed rate %g/s", o.rate)
                 : absl::StrCat("closed loop, concurrency ", o.concurrency);
  std::cout << "passerelle_loadgen: " << o.client.gateway() << ", project "
            << o.client.project() << ", " << mode << ", " << o.channels
            << " channel(s), queries from index " << o.first_index << "\n";

  std::vector<PhaseResult> phases;
  if (o.warmup > 0) {
    phases.push_back(
        driver.Run("warm-up", 0, o.concurrency, o.warmup, kMaxDuration));
    PrintPhase(phases.back(), Options{});
  }
  phases.push_back(
      driver.Run(o.rate > 0 ? absl::StrFormat("fixed rate %g/s", o.rate)
                            : absl::StrCat("closed loop c=", o.concurrency),
                 o.rate, o.rate > 0 ? o.max_outstanding : o.concurrency,
                 o.requests, o.duration));
  PrintPhase(phases.back(), o);
  std::cout << "next query index: " << driver.next_index() << "\n";

  double epsilon_all = 0;
  int64_t errors_all = 0, repeats_all = 0;
  for (const PhaseResult& p : phases) {
    epsilon_all += p.outcomes.epsilon_charged;
    repeats_all += p.outcomes.repeats;
    for (const auto& [code, n] : p.outcomes.errors) errors_all += n;
  }
  // The driver's own CPU, so a reader can tell whether it was the limit.
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double cpu_s = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
                       (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  std::cout << absl::StrFormat("driver CPU: %.2f s\n", cpu_s);
  if (!o.json_path.empty()) {
    std::ofstream out(o.json_path, std::ios::trunc);
    out << absl::StrFormat(
        "{\"label\": %s, \"gateway\": %s, \"mode\": %s, \"concurrency\": %d, "
        "\"rate\": %g, \"channels\": %d, \"first_index\": %d, "
        "\"next_index\": %d, \"epsilon_charged_all\": %.6f, "
        "\"errors_all\": %d, \"repeats_all\": %d, \"driver_cpu_s\": %.3f, "
        "\"measured\": %s, "
        "\"warmup\": %s}\n",
        JsonString(o.label), JsonString(o.client.gateway()),
        JsonString(o.rate > 0 ? "fixed_rate" : "closed_loop"), o.concurrency,
        o.rate, o.channels, o.first_index, driver.next_index(), epsilon_all,
        errors_all, repeats_all, cpu_s, PhaseJson(phases.back()),
        phases.size() > 1 ? PhaseJson(phases.front()) : "null");
    if (!out) {
      return absl::InternalError(absl::StrCat("cannot write ", o.json_path));
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace passerelle::bench

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::Status s = passerelle::bench::Main(args);
  if (absl::IsCancelled(s)) {  // --help
    std::cout << s.message();
    return 0;
  }
  if (!s.ok()) {
    std::cerr << "passerelle_loadgen: " << s << "\n";
    return absl::IsInvalidArgument(s) ? 2 : 1;
  }
  return 0;
}
