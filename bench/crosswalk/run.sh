#!/usr/bin/env bash
# The crosswalk expansion's engine cost (bench/README.md, "Crosswalks").
# Usage: bench/crosswalk/run.sh [--patients N] [--runs R]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
crosswalks="${PASSERELLE_CROSSWALKS:-$root/../shared/data/crosswalks}"
[ -d "$crosswalks" ] || { echo "no crosswalk tables at $crosswalks" >&2; exit 2; }
cmake --build "$root/build" --target crosswalk_bench -j2 >/dev/null
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$root/build/bench/crosswalk/crosswalk_bench" --crosswalks "$crosswalks" "$@"
