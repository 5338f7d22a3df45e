#!/usr/bin/env bash
# Builds the production binary: build-release/cli/passerelle (or
# $PASSERELLE_RELEASE_DIR/cli/passerelle), with the crash points of the
# crash-safety tests compiled out (-DPASSERELLE_CRASH_POINTS=OFF, see
# common/crash_point.h) and otherwise as the test build (RelWithDebInfo,
# jemalloc). Extra arguments go to the build step, e.g. `--target deploy_test`
# to build the check of the binary as well (then, in build-release:
# `ctest -R CrashPointBuild`). Install on production hosts as in
# docs/operator.md ("Install"); they need only `scripts/install-deps.sh
# --runtime`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PASSERELLE_RELEASE_DIR:-$root/build-release}"

"$root/scripts/install-deps.sh"

jobs="${PASSERELLE_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPASSERELLE_CRASH_POINTS=OFF >/dev/null
if [ $# -eq 0 ]; then set -- --target passerelle; fi
cmake --build "$build" -j "$jobs" "$@"
echo "build-release: $build/cli/passerelle (crash points compiled out)" >&2
