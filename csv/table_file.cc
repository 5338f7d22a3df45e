#include "csv/table_file.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace passerelle::csv {

absl::StatusOr<std::string> FindTableFile(const std::string& dir,
                                          absl::string_view table,
                                          absl::string_view extension) {
  std::string wanted(table);
  if (!absl::EndsWithIgnoreCase(wanted, extension)) {
    absl::StrAppend(&wanted, extension);
  }
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot list directory ", dir, ": ", ec.message()));
  }
  std::vector<std::string> matches;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    if (!absl::EqualsIgnoreCase(name, wanted)) continue;
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec) && !it->is_symlink(type_ec)) continue;
    matches.push_back(name);
  }
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot list directory ", dir, ": ", ec.message()));
  }
  if (matches.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no ", wanted, " (in any letter case) in ", dir));
  }
  if (matches.size() > 1) {
    std::sort(matches.begin(), matches.end());
    return absl::InvalidArgumentError(
        absl::StrCat("several files in ", dir, " match ", wanted, ": ",
                     absl::StrJoin(matches, ", ")));
  }
  return (std::filesystem::path(dir) / matches.front()).string();
}

}  // namespace passerelle::csv
