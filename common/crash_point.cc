#include "common/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace passerelle::crash_point {
namespace {

struct Config {
  bool armed = false;
  std::string name;
  long hit = 1;  // The hit that crashes, from 1.
};

const Config& GetConfig() {
  static const Config* const config = [] {
    auto* c = new Config;
    const char* env = std::getenv("PASSERELLE_CRASH_AT");
    if (env == nullptr || *env == '\0') return c;
    std::string spec(env);
    const size_t colon = spec.rfind(':');
    if (colon != std::string::npos) {
      char* end = nullptr;
      const long n = std::strtol(spec.c_str() + colon + 1, &end, 10);
      if (end != nullptr && *end == '\0' && n >= 1) {
        c->hit = n;
        spec.resize(colon);
      }
    }
    c->name = spec;
    c->armed = !c->name.empty();
    return c;
  }();
  return *config;
}

std::atomic<long> hits{0};

void WriteAll(const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = write(STDERR_FILENO, s.data() + done, s.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

bool Armed() { return GetConfig().armed; }

void Hit(const char* name) {
  const Config& c = GetConfig();
  if (!c.armed || c.name != name) return;
  const long n = hits.fetch_add(1) + 1;
  if (n != c.hit) return;
  WriteAll(std::string("passerelle: crash point ") + name + " hit " +
           std::to_string(n) + ": SIGKILL\n");
  raise(SIGKILL);
  _exit(137);  // Not reached: SIGKILL cannot be caught.
}

}  // namespace passerelle::crash_point
