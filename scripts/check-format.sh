#!/usr/bin/env bash
# Checks that every C++ source under version control is formatted as
# .clang-format says (clang-format 14, as scripts/install-deps.sh installs).
# Lists each file that differs and exits non-zero; `clang-format -i FILE`
# fixes one. Run by the test suite (ctest -R format_check).
#
# Exit status 77 (the suite counts it as skipped) when clang-format or git
# is missing, or when the tree is not a git checkout.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fmt="$(command -v clang-format-14 || command -v clang-format || true)"
if [ -z "$fmt" ] || ! command -v git >/dev/null; then
  echo "check-format: skipped: clang-format-14 or git not found (scripts/install-deps.sh installs them)"
  exit 77
fi
if ! git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "check-format: skipped: $root is not a git checkout"
  exit 77
fi
files=()
while IFS= read -r -d '' f; do
  [ -f "$root/$f" ] && files+=("$f")
done < <(git -C "$root" ls-files -z -- '*.cc' '*.h')
# One clang-format process for every file; it names each file that differs.
bad="$(cd "$root" && "$fmt" --dry-run -Werror --style=file "${files[@]}" 2>&1 |
  sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' |
  sort -u)"
for f in $bad; do
  echo "check-format: $f is not clang-formatted (run: clang-format -i $f)"
done
n=0
[ -z "$bad" ] || n=$(echo "$bad" | wc -l)
echo "check-format: ${#files[@]} files checked, $n not formatted"
[ "$n" -eq 0 ]
