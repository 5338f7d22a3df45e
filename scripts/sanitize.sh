#!/usr/bin/env bash
# Builds Passerelle with AddressSanitizer + UndefinedBehaviorSanitizer
# (clang-14) into build-asan/ (or $PASSERELLE_ASAN_BUILD_DIR) and runs the
# ctest suite under them. Any sanitizer report fails the test that hit it
# (UBSan halts on the first error, ASan always does; leaks are checked at
# exit). Extra arguments go to ctest, e.g. `scripts/sanitize.sh -R query_`.
#
# Every component is built, benchmarks included (bench/ has unit tests in
# the suite too). The project's -Wall -Wextra -Werror stay on: code that
# clang warns about is fixed, not silenced.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PASSERELLE_ASAN_BUILD_DIR:-$root/build-asan}"
jobs="${PASSERELLE_JOBS:-$(nproc)}"

"$root/scripts/install-deps.sh"

cxx="$(command -v clang++-14 || command -v clang++ || true)"
if [ -z "$cxx" ]; then
  echo "sanitize: clang++-14 not found (scripts/install-deps.sh installs clang-14)" >&2
  exit 1
fi

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# clang checks the ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED
# annotations here (with -Werror: a member read without its lock fails the
# build).
tsa="-Wthread-safety"

start=$(date +%s)
if [ ! -f "$build/build.ninja" ]; then
  # -O1 with line tables: readable stacks at a fraction of -O2 -g's build
  # time. NDEBUG is not defined, so assert()s are checked too.
  cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS="$san $tsa" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
    -DCMAKE_EXE_LINKER_FLAGS="$san" \
    -DCMAKE_SHARED_LINKER_FLAGS="$san" >/dev/null
fi
cmake --build "$build" -j "$jobs"
built=$(date +%s)
echo "sanitize: build: $((built - start)) s"

# Child processes (the multi-process tests start `passerelle` daemons)
# inherit these, so the daemons run under the sanitizers as well.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1:strict_init_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  for s in llvm-symbolizer-14 llvm-symbolizer; do
    if command -v "$s" >/dev/null; then
      export ASAN_SYMBOLIZER_PATH="$(command -v "$s")"
      break
    fi
  done
fi

cd "$build"
status=0
ctest --output-on-failure -j "${PASSERELLE_TEST_JOBS:-2}" --timeout 600 "$@" \
  || status=$?
echo "sanitize: tests: $(( $(date +%s) - built )) s"
exit $status
