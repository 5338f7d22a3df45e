#!/usr/bin/env bash
# Installs what is missing, then configures and builds Passerelle into
# build/ (or $PASSERELLE_BUILD_DIR). Extra arguments go to the build step,
# e.g. `scripts/build.sh --target passerelle`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PASSERELLE_BUILD_DIR:-$root/build}"

"$root/scripts/install-deps.sh"

jobs="${PASSERELLE_JOBS:-$(nproc)}"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j "$jobs" "$@"
