#!/usr/bin/env bash
# Scale benchmark: generate N patients straight into a node store (and, with
# --csv, through CSV + `passerelle node load` for comparison), then measure
# the store (size), the open (time, resident memory) and the target queries
# in process (scale_bench). See bench/README.md, "Scale".
#
#   bench/scale/run.sh [--patients N]... [--seed S] [--site ID] [--runs N]
#                      [--workdir DIR] [--csv] [--keep]
#
# Default: --patients 1000000. Each N is measured in turn and its data
# removed afterwards (--keep keeps it). Peak RSS and wall time come from
# /usr/bin/time -v.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${PASSERELLE_BENCH_BUILD:-$ROOT/build-scale}"
JOBS="${PASSERELLE_JOBS:-1}"
SEED=20240601
SITE=fr
RUNS=30
WORKDIR=""
CSV=0
KEEP=0
PATIENTS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --patients) PATIENTS+=("$2"); shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --site) SITE="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --csv) CSV=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ ${#PATIENTS[@]} -gt 0 ]] || PATIENTS=(1000000)

if [[ -z "${PASSERELLE_BENCH_NO_BUILD:-}" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPASSERELLE_COMPONENTS="proto;common;csv;query;privacy;ledger;policy;audit;tls;synth;node;gateway;cli;bench" >/dev/null
  cmake --build "$BUILD" -j"$JOBS" --target passerelle scale_bench
fi
PASSERELLE="$BUILD/cli/passerelle"
BENCH="$BUILD/bench/scale/scale_bench"

if [[ -z "$WORKDIR" ]]; then
  WORKDIR="$(mktemp -d /tmp/passerelle-scale.XXXXXX)"
  CREATED=1
else
  mkdir -p "$WORKDIR"
  CREATED=0
fi
cleanup() {
  if [[ "$KEEP" == 0 ]]; then
    if [[ "$CREATED" == 1 ]]; then rm -rf "$WORKDIR"; else rm -rf "$WORKDIR"/n*; fi
  fi
}
trap cleanup EXIT

timed() {  # timed LABEL CMD...: runs CMD under /usr/bin/time -v, prints wall and peak RSS.
  local label="$1"; shift
  local log="$WORKDIR/time.log"
  /usr/bin/time -v "$@" 2>"$log" | sed "s/^/  /"
  local wall rss
  wall="$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")"
  rss="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")"
  echo "$label: wall $wall, peak RSS $((rss / 1024)) MiB"
}

echo "scale benchmark: $(date -u +%FT%TZ), commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
df -h "$WORKDIR" | tail -1
for n in "${PATIENTS[@]}"; do
  dir="$WORKDIR/n$n"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "== $n patients (seed $SEED, site $SITE), load $(cut -d' ' -f1-3 /proc/loadavg)"
  timed "generate --into-store" "$PASSERELLE" generate --patients "$n" --seed "$SEED" \
    --site "$SITE" --coding uniform --into-store "$dir/store"
  echo "store size: $(du -sm "$dir/store" | cut -f1) MiB"
  if [[ "$CSV" == 1 ]]; then
    timed "generate --out (CSV)" "$PASSERELLE" generate --patients "$n" --seed "$SEED" \
      --site "$SITE" --coding uniform --out "$dir/csv"
    echo "CSV size: $(du -sm "$dir/csv" | cut -f1) MiB"
    timed "node load (CSV -> store)" "$PASSERELLE" node load --store "$dir/store-csv" \
      --site "$SITE" "$dir/csv"
    rm -rf "$dir/csv"
    echo "== counts, direct path vs CSV path (must be equal)"
    for q in "condition icd10:E11* and sex = female and age between 40 and 65" \
             "condition icd10:E11* before drug atc:A10BA02 within 365 days"; do
      a="$("$PASSERELLE" node count --store "$dir/store" --format csv "$q" | tail -n +2)"
      b="$("$PASSERELLE" node count --store "$dir/store-csv" --format csv "$q" | tail -n +2)"
      echo "  $q: $a | $b"
      [[ "$a" == "$b" ]] || { echo "MISMATCH" >&2; exit 1; }
    done
    rm -rf "$dir/store-csv"
  fi
  timed "node count (open + one query)" "$PASSERELLE" node count --store "$dir/store" \
    "condition icd10:E11* and sex = female and age between 40 and 65"
  echo "load before queries: $(cut -d' ' -f1-3 /proc/loadavg)"
  timed "scale_bench" "$BENCH" --store "$dir/store" --runs "$RUNS"
  echo "load after queries: $(cut -d' ' -f1-3 /proc/loadavg)"
  [[ "$KEEP" == 1 ]] || rm -rf "$dir"
done
