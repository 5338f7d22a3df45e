#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs the whole test suite
# (unit tests beside the code, multi-process mTLS tests in tests/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PASSERELLE_BUILD_DIR:-$root/build}"

start=$(date +%s)
"$root/scripts/build.sh"
built=$(date +%s)
echo "build: $((built - start)) s"

cd "$build"
status=0
ctest --output-on-failure -j "${PASSERELLE_TEST_JOBS:-2}" --timeout 600 || status=$?
echo "tests: $(( $(date +%s) - built )) s"
exit $status
