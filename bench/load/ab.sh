#!/usr/bin/env bash
# A/B of two builds under the load benchmark, in alternating rounds:
#   bench/load/ab.sh [--rounds N] NAME_A PASSERELLE_A NAME_B PASSERELLE_B [LOADGEN]
# Each round runs bench/load/run.sh (closed loop c=16 for 20 s, fixed rate
# for 3 s) once with A's `passerelle`, then once with B's, both driven by
# the same LOADGEN (default build/bench/load/passerelle_loadgen). One line
# per run: throughput, p99, CPU per query of each process, and the
# gateway's and a node's CPU per query divided by the driver's. The driver
# is the same binary in every run, so its CPU per query tracks the
# machine's speed, which drifts between runs on a shared machine: compare
# the normalised columns, not the raw throughput.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rounds=3
if [ "${1:-}" = "--rounds" ]; then rounds="$2"; shift 2; fi
if [ $# -lt 4 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
name_a="$1"; bin_a="$2"; name_b="$3"; bin_b="$4"
loadgen="${5:-$root/build/bench/load/passerelle_loadgen}"
for f in "$bin_a" "$bin_b" "$loadgen"; do
  [ -x "$f" ] || { echo "ab.sh: not an executable: $f" >&2; exit 2; }
done
printf '%-12s %9s %8s  %-31s %8s %8s\n' run q/s p99_ms \
  "cpu/query ms: gw fr qc driver" gw/drv fr/drv
for _ in $(seq 1 "$rounds"); do
  for side in a b; do
    if [ "$side" = a ]; then name="$name_a"; bin="$bin_a"; else name="$name_b"; bin="$bin_b"; fi
    out="$("$root/bench/load/run.sh" --passerelle "$bin" --loadgen "$loadgen" \
             --rate-duration 3s 2>&1)" || { echo "$out" | tail -20 >&2; exit 1; }
    echo "$out" | awk -v name="$name" '
      /closed c=16:/ { qps = $3; p99 = $9 }
      /ms per query/ { cpu[$1] = $5 }
      END {
        printf "%-12s %9s %8s  %6s %6s %6s %6s        %8.2f %8.2f\n", name, qps, p99,
          cpu["gateway:"], cpu["fr:"], cpu["qc:"], cpu["driver:"],
          cpu["gateway:"] / cpu["driver:"], cpu["fr:"] / cpu["driver:"]
      }'
  done
done
