#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs the whole test suite
# (unit tests beside the code, multi-process mTLS tests in tests/).
#
# On CI (CI=true) and with PASSERELLE_FULL_TESTS=1, two more parts follow
# the normal suite: the suite again under AddressSanitizer +
# UndefinedBehaviorSanitizer (scripts/sanitize.sh, build-asan/) and a bounded
# run of every libFuzzer harness (scripts/fuzz.sh, build-fuzz/;
# PASSERELLE_FUZZ_SECONDS per harness, default 20). PASSERELLE_FULL_TESTS=0
# runs the normal suite alone, also on CI. Every part runs even if an earlier
# one failed; the exit status is non-zero if any failed. The last lines are
# always the normal suite's ctest summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PASSERELLE_BUILD_DIR:-$root/build}"

full=0
if [ "${PASSERELLE_FULL_TESTS:-}" = "1" ] ||
  { [ "${CI:-}" = "true" ] && [ "${PASSERELLE_FULL_TESTS:-}" != "0" ]; }; then
  full=1
fi

start=$(date +%s)
"$root/scripts/build.sh"
built=$(date +%s)
echo "build: $((built - start)) s"
if [ $full -eq 0 ]; then
  echo "test.sh: normal suite only (the sanitizer and fuzz parts run on CI=true or with PASSERELLE_FULL_TESTS=1)"
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
# Runs a command with its output shown and kept in the file $1; returns the
# command's status.
run_logged() {
  local out="$1"
  shift
  "$@" 2>&1 | tee "$out"
  return "${PIPESTATUS[0]}"
}

cd "$build"
status=0
ctest_status=0
run_logged "$logs/normal" \
  ctest --output-on-failure -j "${PASSERELLE_TEST_JOBS:-2}" --timeout 600 \
  || ctest_status=$?
status=$ctest_status
tested=$(date +%s)

if [ $full -eq 0 ]; then
  echo "tests: $((tested - built)) s"
  exit $status
fi

# The summary ctest printed: from "N% tests passed" to the end.
summary() { sed -n '/tests passed, /,$p' "$1"; }
first_line() { summary "$1" | head -n 1; }
verdict() { if [ "$1" -eq 0 ]; then echo ok; else echo FAILED; fi; }

echo
echo "== test.sh: sanitizer suite (ASan + UBSan, scripts/sanitize.sh) =="
san_status=0
run_logged "$logs/sanitize" "$root/scripts/sanitize.sh" || san_status=$?
sanitized=$(date +%s)

echo
echo "== test.sh: bounded fuzz run (scripts/fuzz.sh) =="
fuzz_status=0
run_logged "$logs/fuzz" "$root/scripts/fuzz.sh" \
  --seconds "${PASSERELLE_FUZZ_SECONDS:-20}" || fuzz_status=$?
fuzzed=$(date +%s)

san_result="$(first_line "$logs/sanitize")"
[ -n "$san_result" ] || san_result="did not reach its tests (see above)"
fuzz_result="$(grep '^fuzz: .* harnesses, ' "$logs/fuzz" | tail -n 1)"
[ -n "$fuzz_result" ] || fuzz_result="fuzz: did not reach its runs (see above)"
echo
echo "== test.sh summary =="
printf 'normal suite:    %s [%s] (build %d s, tests %d s)\n' \
  "$(first_line "$logs/normal")" "$(verdict "$ctest_status")" \
  $((built - start)) $((tested - built))
printf 'sanitizer suite: %s [%s] (%d s with its build)\n' \
  "$san_result" "$(verdict "$san_status")" $((sanitized - tested))
printf 'fuzz:            %s [%s] (%d s with its build)\n' \
  "${fuzz_result#fuzz: }" "$(verdict "$fuzz_status")" $((fuzzed - sanitized))
[ "$san_status" -eq 0 ] || status=$san_status
[ "$fuzz_status" -eq 0 ] || status=$fuzz_status
echo
summary "$logs/normal"
echo "tests: $((tested - built)) s"
exit $status
