#include "cli/privacy_cmd.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/flags.h"
#include "privacy/disclosure.h"
#include "privacy/noise.h"
#include "privacy/random.h"

namespace passerelle::cli {
namespace {

constexpr char kUsage[] =
    R"(usage: passerelle privacy sample --mechanism laplace|gaussian
                                (--epsilon E | --rho R) --count C --n N

  Draws N noisy releases of the true count C (sensitivity 1) through the
  gateway's production noise path: the policy's epsilon (discrete Laplace)
  or rho (discrete Gaussian) rounded down to 1e-6, the exact integer
  samplers, the noise pool and OpenSSL's CSPRNG. Prints one integer per line
  (C + noise; no threshold, no rounding).

  --mechanism  laplace (pure epsilon-DP, scale 1/epsilon) or gaussian
               (rho-zCDP, sigma^2 = 1/(2 rho))
  --epsilon    per-release epsilon in [0.000001, 100] (laplace only)
  --rho        per-release rho in [0.000001, 100] (gaussian only)
  --count      the true count, an integer >= 0
  --n          how many releases, 1 to 10000000
)";

constexpr int64_t kMaxN = 10'000'000;
constexpr int64_t kMaxCount = int64_t{1} << 50;

int Usage(std::ostream& err, const std::string& message) {
  err << "passerelle privacy: " << message << "\n\n" << kUsage;
  return 2;
}

bool ParseDouble(const std::string& text, double* out) {
  return absl::SimpleAtod(text, out);
}

int RunSample(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(args, {"mechanism", "epsilon", "rho", "count", "n"}, {"help"});
  if (!flags.ok()) return Usage(err, std::string(flags.status().message()));
  if (flags->Has("help")) {
    out << kUsage;
    return 0;
  }
  if (!flags->positional.empty()) {
    return Usage(err, absl::StrCat("unexpected argument \"",
                                   flags->positional[0], "\""));
  }
  const std::string mechanism = flags->Get("mechanism");
  privacy::DisclosureParams params;
  if (mechanism == "laplace") {
    params.mechanism = privacy::Mechanism::kDiscreteLaplace;
    if (flags->Has("rho"))
      return Usage(err, "--rho is for --mechanism gaussian");
    if (!flags->Has("epsilon")) return Usage(err, "laplace needs --epsilon");
    if (!ParseDouble(flags->Get("epsilon"), &params.epsilon)) {
      return Usage(err, absl::StrCat("--epsilon: \"", flags->Get("epsilon"),
                                     "\" is not a number"));
    }
  } else if (mechanism == "gaussian") {
    params.mechanism = privacy::Mechanism::kDiscreteGaussian;
    if (flags->Has("epsilon")) {
      return Usage(err, "--epsilon is for --mechanism laplace");
    }
    if (!flags->Has("rho")) return Usage(err, "gaussian needs --rho");
    if (!ParseDouble(flags->Get("rho"), &params.rho)) {
      return Usage(err, absl::StrCat("--rho: \"", flags->Get("rho"),
                                     "\" is not a number"));
    }
  } else if (mechanism.empty()) {
    return Usage(err, "--mechanism is required");
  } else {
    return Usage(err, absl::StrCat("--mechanism must be laplace or gaussian, "
                                   "got \"",
                                   mechanism, "\""));
  }
  if (!flags->Has("count")) return Usage(err, "--count is required");
  if (!flags->Has("n")) return Usage(err, "--n is required");
  absl::StatusOr<int64_t> count = flags->GetInt("count", 0);
  if (!count.ok()) return Usage(err, std::string(count.status().message()));
  if (*count < 0 || *count > kMaxCount) {
    return Usage(err, "--count must be an integer >= 0");
  }
  absl::StatusOr<int64_t> n = flags->GetInt("n", 0);
  if (!n.ok()) return Usage(err, std::string(n.status().message()));
  if (*n < 1 || *n > kMaxN) {
    return Usage(err, absl::StrCat("--n must be between 1 and ", kMaxN));
  }
  // The same parameter handling as the gateway's disclosure step.
  absl::StatusOr<privacy::NoiseSpec> spec = privacy::NoiseSpecFor(params);
  if (!spec.ok()) return Usage(err, std::string(spec.status().message()));

  privacy::OpenSslRandomSource random;
  absl::StatusOr<std::unique_ptr<privacy::NoiseSource>> noise =
      privacy::NewProductionNoiseSource(&random);
  if (!noise.ok()) {
    err << "passerelle privacy: " << noise.status().message() << "\n";
    return 1;
  }
  // Chunks no larger than the pool, each drawn after a synchronous refill,
  // so every value comes from the pool (the fast path the gateway uses).
  constexpr int64_t kChunk = 4096;
  std::vector<int64_t> draws;
  std::string buffer;
  for (int64_t done = 0; done < *n; done += kChunk) {
    draws.resize(static_cast<size_t>(std::min(kChunk, *n - done)));
    absl::Status s = (*noise)->Prewarm(*spec);
    if (s.ok()) s = (*noise)->Draw(*spec, absl::MakeSpan(draws));
    if (!s.ok()) {
      err << "passerelle privacy: no noise released: " << s.message() << "\n";
      return 1;
    }
    buffer.clear();
    for (int64_t x : draws) absl::StrAppend(&buffer, *count + x, "\n");
    out << buffer;
  }
  out.flush();
  if (!out) {
    err << "passerelle privacy: cannot write the output\n";
    return 1;
  }
  return 0;
}

}  // namespace

int RunPrivacyCommand(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err) {
  if (args.empty()) return Usage(err, "missing command");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    out << kUsage;
    return 0;
  }
  if (args[0] == "sample") {
    return RunSample(std::vector<std::string>(args.begin() + 1, args.end()),
                     out, err);
  }
  return Usage(err, absl::StrCat("unknown command \"", args[0], "\""));
}

int RunPrivacyCommand(const std::vector<std::string>& args) {
  return RunPrivacyCommand(args, std::cout, std::cerr);
}

}  // namespace passerelle::cli
