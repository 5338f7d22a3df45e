// Minimal flag parsing for the CLI: `--name value`, `--name=value`, boolean
// `--name`, and positional arguments. Unknown flags are errors.
#ifndef PASSERELLE_CLI_FLAGS_H_
#define PASSERELLE_CLI_FLAGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace passerelle::cli {

struct ParsedFlags {
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> positional;

  bool Has(const std::string& name) const { return values.count(name) > 0; }
  std::string Get(const std::string& name, std::string fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second.back();
  }
  std::vector<std::string> GetAll(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
  absl::StatusOr<int64_t> GetInt(const std::string& name,
                                 int64_t fallback) const {
    if (!Has(name)) return fallback;
    int64_t v;
    if (!absl::SimpleAtoi(Get(name), &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": \"", Get(name), "\" is not an integer"));
    }
    return v;
  }
};

// `with_value` flags take an argument; `booleans` do not.
inline absl::StatusOr<ParsedFlags> ParseFlags(
    const std::vector<std::string>& args,
    const std::set<std::string>& with_value,
    const std::set<std::string>& booleans = {}) {
  ParsedFlags out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() > 2 && a[0] == '-' && a[1] == '-') {
      std::string name = a.substr(2), value;
      const size_t eq = name.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      if (booleans.count(name)) {
        out.values[name].push_back("true");
      } else if (with_value.count(name)) {
        if (!inline_value) {
          if (i + 1 >= args.size()) {
            return absl::InvalidArgumentError(
                absl::StrCat("--", name, " needs a value"));
          }
          value = args[++i];
        }
        out.values[name].push_back(value);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag --", name));
      }
    } else {
      out.positional.push_back(a);
    }
  }
  return out;
}

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_FLAGS_H_
