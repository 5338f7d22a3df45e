#!/usr/bin/env bash
# The engine benchmark: Passerelle's cohort engine against PostgreSQL 15 and
# SQLite on the same generated data and queries (bench/README.md).
#
#   bench/engine/run.sh [--patients N] [--seed S] [--runs N] [--ref-runs N]
#                       [--cli-runs N] [--results FILE] [--keep]
#
# Generates N patients (default 1000000) as OMOP CSV, loads them into a node
# store, into SQLite (.import) and into a PostgreSQL it starts itself (initdb
# into the temporary directory, Unix socket only, as the `postgres` user when
# run as root), checks that every engine gives the same counts, then times.
# Everything lives in one temporary directory, removed at the end (unless
# --keep); PostgreSQL is stopped at the end, also on failure. Installs
# nothing beyond scripts/install-deps.sh; builds into $PASSERELLE_BENCH_BUILD
# (default build-bench) with -j${PASSERELLE_JOBS:-1}.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
patients=1000000
seed=20240601
site=fr
runs=30
ref_runs=""
cli_runs=3
results=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --patients) patients="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --ref-runs) ref_runs="$2"; shift 2 ;;
    --cli-runs) cli_runs="$2"; shift 2 ;;
    --results) results="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# Each reference query takes ~1 s at 1M patients: 7 runs there, more below.
if [ -z "$ref_runs" ]; then
  if [ "$patients" -ge 500000 ]; then ref_runs=7; else ref_runs=30; fi
fi

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

"$root/scripts/install-deps.sh"

build="${PASSERELLE_BENCH_BUILD:-$root/build-bench}"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j "${PASSERELLE_JOBS:-1}" --target passerelle engine_bench >&2
passerelle="$build/cli/passerelle"
bench="$build/bench/engine/engine_bench"
[ -x "$bench" ] || { echo "run.sh: $bench was not built (libpq-dev and libsqlite3-dev needed)" >&2; exit 1; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/passerelle-engine-bench.XXXXXX")"
chmod 755 "$tmp"  # The postgres user reaches its data directory through it.
pgdata="$tmp/pg"
pgsock="$tmp/pgsock"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi
pg_bin="$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)"
[ -x "$pg_bin/initdb" ] || pg_bin="/usr/lib/postgresql/15/bin"

cleanup() {
  local rc=$?
  if [ -f "$pgdata/postmaster.pid" ]; then
    log "stopping PostgreSQL"
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ "$keep" -eq 1 ]; then
    log "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

summary="$tmp/summary.md"
{
  echo "## Engine benchmark run $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); uptime at start: $(uptime | sed 's/.*load/load/')"
  echo "Command: bench/engine/run.sh --patients $patients --seed $seed"
  echo
} >"$summary"

# 1. Data.
log "generating $patients patients (seed $seed, site $site)"
t=$(now)
"$passerelle" generate --patients "$patients" --seed "$seed" --site "$site" --coding uniform --out "$tmp/csv" >&2
echo "- generate: $(elapsed "$t") s, CSV $(du -sh "$tmp/csv" | cut -f1)" >>"$summary"

# 2. Passerelle node store.
log "passerelle node load"
t=$(now)
"$passerelle" node load --store "$tmp/store" --site "$site" "$tmp/csv" | tee "$tmp/node-load.txt" >&2
echo "- passerelle node load (CSV -> RocksDB store): $(elapsed "$t") s, store $(du -sh "$tmp/store" | cut -f1): $(head -1 "$tmp/node-load.txt")" >>"$summary"

# 3. SQLite.
log "sqlite3 import"
t=$(now)
sed -e "s|@CSV@|$tmp/csv|g" -e "s|@DB@|$tmp/bench.sqlite|g" \
  "$root/bench/engine/sqlite_import.sql" >"$tmp/sqlite_import.sql"
sqlite3 -batch -bail "$tmp/raw.sqlite" <"$tmp/sqlite_import.sql" | tee "$tmp/sqlite-load.txt" >&2
rm -f "$tmp/raw.sqlite"
echo "- sqlite3 $(sqlite3 --version | cut -d' ' -f1) import (.import, P/EV, indexes, ANALYZE): $(elapsed "$t") s, database $(du -sh "$tmp/bench.sqlite" | cut -f1) ($(cat "$tmp/sqlite-load.txt"))" >>"$summary"

# 4. PostgreSQL: own cluster, Unix socket only.
log "PostgreSQL: initdb and start"
mkdir -p "$pgdata" "$pgsock"
if [ ${#as_pg[@]} -gt 0 ]; then chown postgres: "$pgdata" "$pgsock"; fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pgdata" -U postgres --auth=trust --no-locale -E UTF8 >"$tmp/initdb.log" 2>&1
# Memory for the whole working set; durability off (a throw-away cluster).
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 120 \
  -o "-c listen_addresses='' -c unix_socket_directories='$pgsock' \
      -c shared_buffers=3GB -c effective_cache_size=8GB -c work_mem=256MB \
      -c maintenance_work_mem=1GB -c max_wal_size=8GB -c fsync=off \
      -c synchronous_commit=off -c full_page_writes=off -c random_page_cost=1.1" \
  start >/dev/null
psql_args=(-X -q -v ON_ERROR_STOP=1 -h "$pgsock" -U postgres)
psql "${psql_args[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null

log "PostgreSQL import"
t=$(now)
{
  echo '\set ON_ERROR_STOP on'
  for pair in person:raw_person concept:raw_concept condition_occurrence:raw_condition \
              drug_exposure:raw_drug death:raw_death; do
    file="$tmp/csv/${pair%%:*}.csv"
    table="${pair##*:}"
    cols="$(head -1 "$file" | tr -d '\r' | sed -e 's/,/ text, /g') text"
    echo "CREATE UNLOGGED TABLE $table ($cols);"
    echo "\\copy $table FROM '$file' WITH (FORMAT csv, HEADER true)"
  done
  cat "$root/bench/engine/pg_import.sql"
} >"$tmp/pg_import.sql"
psql "${psql_args[@]}" -d bench -A -t -f "$tmp/pg_import.sql" | tee "$tmp/pg-load.txt" >&2
echo "- PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') import (COPY, P/EV, indexes, VACUUM ANALYZE): $(elapsed "$t") s ($(tr '\n' ' ' <"$tmp/pg-load.txt"))" >>"$summary"

# 5. Check and time.
log "engine_bench (uptime: $(uptime | sed 's/.*load/load/'))"
"$bench" --store "$tmp/store" --sqlite "$tmp/bench.sqlite" \
  --pg "host=$pgsock user=postgres dbname=bench" --site "$site" \
  --runs "$runs" --ref-runs "$ref_runs" --cli-runs "$cli_runs" \
  --cli "$passerelle" --sqlite-cli "$(command -v sqlite3)" \
  --psql-cli "$(command -v psql)" --psql-args "-h $pgsock -U postgres -d bench" \
  --scratch "$tmp" --markdown "$tmp/table.md" | tee "$tmp/bench.txt" >&2
{
  echo
  cat "$tmp/table.md"
} >>"$summary"

echo
cat "$summary"
if [ -n "$results" ]; then cp "$summary" "$results"; fi
