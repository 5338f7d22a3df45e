#!/usr/bin/env bash
# Load benchmark of the gateway on a local two-site federation (loopback,
# mTLS everywhere, durable ledger and audit logs, no result cache):
#   1. builds `passerelle` and `passerelle_loadgen` (scripts/build.sh);
#   2. mints a fresh PKI (deploy/pki/mint.sh) and the audit signing keys;
#   3. generates and loads synthetic sites fr and qc;
#   4. starts node fr, node qc and the gateway as deploy/demo.sh does, with
#      the benchmark policy of bench/load/policy (project bench-load, whose
#      budget cap allows the whole run);
#   5. runs the driver: closed loop at --concurrency (default 16), then a
#      fixed-rate run (default: half the closed-loop throughput); every
#      request is a distinct query, so repeat protection never answers;
#   6. takes the project's budget, stops everything with SIGTERM, and checks
#      that `audit verify` passes on the three logs and that the ledger's
#      total equals the sum of epsilon_charged in the gateway's audit log.
# Everything it starts is stopped and its work directory removed on exit,
# also on failure (unless --keep).
# Usage: bench/load/run.sh [--patients N] [--concurrency C] [--duration D]
#          [--rate R|auto] [--rate-duration D] [--channels K] [--warmup N]
#          [--workdir DIR] [--keep] [--results DIR] [--trace-syncs] [--perf]
#          [--hold] [--passerelle BIN --loadgen BIN]
# Diagnosis (closed-loop run only): CPU seconds of each server are always
# reported; --trace-syncs attaches `strace -c -f` (fsync/fdatasync counts
# and time) to the three servers, --perf a `perf record` (DWARF call
# graphs) to each and prints the heaviest frames; both
# slow the servers down, so their figures are not the benchmark's.
# --hold: once the federation is up, print how to reach it and wait until
# the file <workdir>/continue exists before the driver runs (for runs by
# hand against the same federation, e.g. under perf or gdb).
# --workdir on a tmpfs (e.g. /dev/shm/x) makes every fsync free: a
# diagnosis of what the durable writes cost, not a durable benchmark.
# --passerelle/--loadgen: use these binaries and build nothing (e.g. to
# compare against an earlier build in the same session).
# Durations as the driver takes them ("20s", "500ms"). The build directory
# is $PASSERELLE_BUILD_DIR (default build/), built with $PASSERELLE_JOBS
# jobs (default 1: the machine is shared).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
patients=20000
concurrency=16
duration=20s
rate=auto
rate_duration=20s
channels=1
warmup=200
work=""
keep=0
results=""
trace_syncs=0
perf_record=0
hold=0
bin=""
loadgen=""
while [ $# -gt 0 ]; do
  case "$1" in
    --patients) patients="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --rate-duration) rate_duration="$2"; shift 2 ;;
    --channels) channels="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --workdir) work="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --results) results="$2"; shift 2 ;;
    --trace-syncs) trace_syncs=1; shift ;;
    --perf) perf_record=1; shift ;;
    --hold) hold=1; shift ;;
    --passerelle) bin="$2"; shift 2 ;;
    --loadgen) loadgen="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$patients" -lt 1000 ] || [ "$patients" -gt 100000 ]; then
  echo "run.sh: --patients must be in [1000, 100000]" >&2; exit 2
fi

if [ -n "$bin$loadgen" ]; then
  if [ ! -x "$bin" ] || [ ! -x "$loadgen" ]; then
    echo "run.sh: --passerelle and --loadgen must both name executables" >&2; exit 2
  fi
  echo "== using $bin and $loadgen (nothing built)"
else
  echo "== building passerelle and passerelle_loadgen"
  export PASSERELLE_JOBS="${PASSERELLE_JOBS:-1}"
  "$root/scripts/build.sh" --target passerelle passerelle_loadgen
  build="${PASSERELLE_BUILD_DIR:-$root/build}"
  bin="$build/cli/passerelle"
  loadgen="$build/bench/load/passerelle_loadgen"
fi
policy="$root/bench/load/policy"

if [ -z "$work" ]; then work="$(mktemp -d /tmp/passerelle-load.XXXXXX)"; fi
mkdir -p "$work"
pids=()
tracers=()
stop_tracers() {
  for pid in "${tracers[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${tracers[@]}"; do wait "$pid" 2>/dev/null || true; done
  tracers=()
}
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local rc=0
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  pids=()
  return $rc
}
cleanup() {
  local rc=$?
  stop_tracers
  stop_all || true
  if [ $rc -ne 0 ]; then
    for log in "$work"/fr/node.log "$work"/qc/node.log "$work"/gateway/gateway.log; do
      [ -s "$log" ] && { echo "--- tail of $log" >&2; tail -5 "$log" >&2; }
    done
  fi
  if [ "$keep" -eq 0 ]; then rm -rf "$work"; else echo "(kept $work)"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== policy check"
"$bin" policy check "$policy"/*.textproto >/dev/null

echo "== minting a fresh PKI and audit signing keys in $work/pki"
"$root/deploy/pki/mint.sh" "$work/pki" --local --users "loadgen dora" >/dev/null
for log in gateway fr qc; do
  mkdir -p "$work/$log"
  openssl genpkey -algorithm ed25519 -out "$work/$log/audit.key" 2>/dev/null
  chmod 600 "$work/$log/audit.key"
  openssl pkey -in "$work/$log/audit.key" -pubout -out "$work/pki/audit-$log.pub"
done

echo "== generating and loading $patients synthetic patients per site"
for site in fr qc; do
  seed=$([ "$site" = fr ] && echo 33 || echo 1608)
  "$bin" generate --patients "$patients" --seed "$seed" --site "$site" --coding uniform --out "$work/data/$site"
  "$bin" node load --store "$work/$site/store" --site "$site" --format omop "$work/data/$site"
done
rm -rf "$work/data"

for site in fr qc; do
  cat > "$work/$site/node.textproto" <<CFG
site: "$site"
listen: "127.0.0.1:0"
store_dir: "$work/$site/store"
audit_dir: "$work/$site/audit"
audit_key_file: "$work/$site/audit.key"
policy_files: "$policy/site-$site.textproto"
port_file: "$work/$site/port"
tls { ca_file: "$work/pki/ca.pem" cert_file: "$work/pki/node-$site.pem" key_file: "$work/pki/node-$site.key" }
CFG
done

wait_for_file() {
  local file="$1" pid="$2"
  for _ in $(seq 1 300); do
    [ -s "$file" ] && return 0
    kill -0 "$pid" 2>/dev/null || { echo "process $pid exited early" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for $file" >&2
  return 1
}

echo "== starting node fr and node qc (mTLS)"
declare -A server_pid
for site in fr qc; do
  "$bin" node serve --config "$work/$site/node.textproto" 2>"$work/$site/node.log" &
  pids+=($!)
  server_pid[$site]=$!
  wait_for_file "$work/$site/port" $!
done

cat > "$work/gateway/gateway.textproto" <<CFG
listen: "127.0.0.1:0"
port_file: "$work/gateway/port"
ledger_dir: "$work/gateway/ledger"
audit_dir: "$work/gateway/audit"
audit_key_file: "$work/gateway/audit.key"
default_timeout_ms: 5000
policy_files: "$policy/federation.textproto"
policy_files: "$policy/site-fr.textproto"
policy_files: "$policy/site-qc.textproto"
tls { ca_file: "$work/pki/ca.pem" cert_file: "$work/pki/gateway.pem" key_file: "$work/pki/gateway.key" }
sites { site: "fr" address: "127.0.0.1:$(cat "$work/fr/port")" tls_server_name: "localhost" }
sites { site: "qc" address: "127.0.0.1:$(cat "$work/qc/port")" tls_server_name: "localhost" }
CFG

echo "== starting the gateway (mTLS, policy, budget ledger, audit log)"
"$bin" gateway serve --config "$work/gateway/gateway.textproto" 2>"$work/gateway/gateway.log" &
pids+=($!)
server_pid[gateway]=$!
wait_for_file "$work/gateway/port" $!

cat > "$work/loadgen.textproto" <<CFG
gateway: "127.0.0.1:$(cat "$work/gateway/port")"
tls_server_name: "localhost"
project: "bench-load"
tls { ca_file: "$work/pki/ca.pem" cert_file: "$work/pki/loadgen.pem" key_file: "$work/pki/loadgen.key" }
CFG

json_field() {  # json_field FILE EXPR (a Python expression on `d`)
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

if [ "$hold" -eq 1 ]; then
  echo "== holding: the federation is up; pids gateway ${server_pid[gateway]}, fr ${server_pid[fr]}, qc ${server_pid[qc]}"
  echo "   $loadgen --config $work/loadgen.textproto ..."
  echo "   touch $work/continue  # to go on with the benchmark"
  while [ ! -e "$work/continue" ]; do sleep 1; done
fi

cpu_ticks() {  # utime + stime of a process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

sync_probe() {  # fdatasync latency of the work directory's file system
  python3 - "$work/sync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
ts = []
for _ in range(200):
    os.write(fd, b"x" * 256)
    t = time.perf_counter()
    os.fdatasync(fd)
    ts.append((time.perf_counter() - t) * 1e3)
os.close(fd)
os.unlink(sys.argv[1])
ts.sort()
print(f"fdatasync of a 256-byte append: p50 {ts[99]:.3f} ms, p90 {ts[179]:.3f} ms, "
      f"p99 {ts[197]:.3f} ms (one writer at a time: at most {1000 / max(ts[99], 1e-6):.0f} per second)")
PY
}

echo
echo "== the work directory's sync latency (what each durable write waits for)"
sync_probe | tee "$work/sync-probe.txt"

echo
echo "== load: closed loop, concurrency $concurrency, $duration (load before: $(uptime | sed 's/.*load average: //'))"
declare -A ticks_before
for p in gateway fr qc; do ticks_before[$p]=$(cpu_ticks "${server_pid[$p]}"); done
if [ "$trace_syncs" -eq 1 ]; then
  for p in gateway fr qc; do
    strace -f -c -w -e trace=fsync,fdatasync,sync_file_range,pwrite64,write \
      -o "$work/strace-$p.txt" -p "${server_pid[$p]}" 2>/dev/null &
    tracers+=($!)
  done
  sleep 1
fi
if [ "$perf_record" -eq 1 ]; then
  for p in gateway fr qc; do
    perf record -q -F "${PASSERELLE_PERF_FREQ:-299}" --call-graph dwarf,16384 -o "$work/perf-$p.data" -p "${server_pid[$p]}" 2>/dev/null &
    tracers+=($!)
  done
  sleep 1
fi
"$loadgen" --config "$work/loadgen.textproto" --concurrency "$concurrency" \
  --duration "$duration" --warmup "$warmup" --channels "$channels" \
  --label "closed c=$concurrency" --json "$work/closed.json"
stop_tracers
echo "-- sync latency right after the closed-loop run (the disk's latency changes over time):"
sync_probe | tee -a "$work/sync-probe.txt"
closed_total=$(json_field "$work/closed.json" 'd["measured"]["issued"] + (d["warmup"] or {}).get("issued", 0)')
hz=$(getconf CLK_TCK)
echo "-- CPU per query during the closed-loop run ($closed_total requests):"
for p in gateway fr qc; do
  t=$(( $(cpu_ticks "${server_pid[$p]}") - ${ticks_before[$p]} ))
  python3 -c "import sys; t,hz,n=map(float,sys.argv[2:]); print(f'   {sys.argv[1]:>8}: {t/hz:7.2f} s CPU, {1000*t/hz/n:.3f} ms per query')" "$p" "$t" "$hz" "$closed_total"
done
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f'     driver: {d[\"driver_cpu_s\"]:7.2f} s CPU, {1000*d[\"driver_cpu_s\"]/int(sys.argv[2]):.3f} ms per query')" "$work/closed.json" "$closed_total"
for p in gateway fr qc; do
  if [ -s "$work/strace-$p.txt" ]; then
    echo "-- strace -c of $p (syscalls of interest, during the closed-loop run):"
    sed -n '1,12p' "$work/strace-$p.txt"
  fi
  if [ -s "$work/perf-$p.data" ]; then
    echo "-- perf of $p: CPU by library (self), then inclusive time of the main frames"
    {
      perf report -i "$work/perf-$p.data" --stdio --no-children --sort dso 2>/dev/null \
        | grep -E '^ +[0-9.]+%' | head -12
      echo "   inclusive:"
      perf report -i "$work/perf-$p.data" --stdio --children --sort sym -g none 2>/dev/null \
        | grep -E '^ +[0-9.]+%' \
        | grep -E 'passerelle::|rocksdb::DBImpl::(Write|Get)$|WritableFileWriter::Sync$|grpc_pollset_work|ThreadManager::MainWorkLoop|SSL_read|SSL_write|ED25519_sign|EVP_DigestSign$|malloc$|_int_free$' \
        | awk '!seen[$NF]++' | head -40
    } > "$work/perf-$p.txt" || true
    cat "$work/perf-$p.txt"
  fi
done
next=$(json_field "$work/closed.json" 'd["next_index"]')
if [ "$rate" = auto ]; then
  rate=$(json_field "$work/closed.json" 'max(1, int(d["measured"]["throughput_qps"] / 2))')
fi
echo
echo "== load: fixed rate $rate/s (open loop), $rate_duration (load before: $(uptime | sed 's/.*load average: //'))"
"$loadgen" --config "$work/loadgen.textproto" --rate "$rate" \
  --duration "$rate_duration" --warmup 0 --channels "$channels" \
  --first-index "$next" --label "rate $rate" --json "$work/rate.json"
load_after="$(uptime | sed 's/.*load average: //')"

echo
echo "== the project's budget, before shutdown"
"$bin" budget show --config "$work/loadgen.textproto" --format json > "$work/budget.json"
cat "$work/budget.json"

echo
echo "== stopping the federation (SIGTERM)"
stop_all || { echo "a server exited with an error" >&2; exit 1; }

echo
echo "== verifying the audit logs (gateway, fr, qc)"
for log in gateway fr qc; do
  printf '%-8s ' "$log:"
  "$bin" audit verify --store "$work/$log/audit" --public-key "$work/pki/audit-$log.pub" | tail -1
done

echo
echo "== ledger total versus the gateway audit log's charges"
"$bin" audit export --store "$work/gateway/audit" --format jsonl > "$work/audit.jsonl"
python3 - "$hold" "$work/budget.json" "$work/audit.jsonl" "$work/closed.json" "$work/rate.json" <<'PY'
import json, math, sys
hold = sys.argv.pop(1) == "1"
budget = json.load(open(sys.argv[1]))
ledger = float(budget["project_account"]["epsilon_spent"])

def charges(obj):
    """Every epsilon_charged in an exported entry, wherever it is nested."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "epsilon_charged":
                yield float(v)
            else:
                yield from charges(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from charges(v)

entries = 0
charged_entries = 0
audit_micros = 0
for line in open(sys.argv[2]):
    line = line.strip()
    if not line:
        continue
    entries += 1
    c = list(charges(json.loads(line)))
    if any(x > 0 for x in c):
        charged_entries += 1
    # The ledger keeps micro-units; each entry's charge is on that grid.
    audit_micros += sum(round(x * 1e6) for x in c)
audit = audit_micros / 1e6
driver = sum(json.load(open(f))["epsilon_charged_all"] for f in sys.argv[3:])
ok = sum(json.load(open(f))["measured"]["ok"] + ((json.load(open(f))["warmup"] or {}).get("ok", 0))
         for f in sys.argv[3:])
# `budget show` prints 6 significant digits.
tol = 0.5 * 10 ** (math.floor(math.log10(audit)) - 5) if audit > 0 else 1e-9
print(f"audit log: {entries} entries, {charged_entries} charged, total epsilon {audit:.6f}")
print(f"ledger (budget show): {ledger}    driver (answers): {driver:.6f} over {ok} OK answers")
if abs(ledger - audit) > tol:
    print("MISMATCH: the ledger's total differs from the audit log's charges")
    sys.exit(1)
if hold:
    # Runs by hand during --hold are in the logs but not in the driver's files.
    print("ledger total == audit log charges (answers not compared: --hold)")
    sys.exit(0)
if abs(driver - audit) > 1e-6 * max(1, audit):
    print("MISMATCH: the answers' charges differ from the audit log's")
    sys.exit(1)
print("ledger total == audit log charges == answers' charges")
PY

echo
echo "== where a query's time goes, from the gateway's audit entries"
python3 - "$work/audit.jsonl" "$work/closed.json" <<'PY'
import json, sys
closed = json.load(open(sys.argv[2]))
n_closed = closed["measured"]["ok"] + (closed["warmup"] or {}).get("ok", 0)
lat = []
for line in open(sys.argv[1]):
    g = json.loads(line).get("record", {}).get("gateway")
    if g and g.get("operation", "") == "" and float(g.get("epsilon_charged", 0)) > 0:
        lat.append(int(g.get("latency_micros", 0)) / 1000)
def show(name, xs):
    xs = sorted(xs)
    if not xs:
        return
    pct = lambda p: xs[min(len(xs) - 1, max(0, -(-len(xs) * p // 100) - 1))]
    print(f"  {name}: p50 {pct(50):.2f} ms, p90 {pct(90):.2f} ms, "
          f"p99 {pct(99):.2f} ms over {len(xs)} queries")
print("gateway time from a query's start to just before its audit append "
      "(parse, policy, ledger reservation, both nodes, noise):")
show("closed loop (with warm-up)", lat[:n_closed])
show("fixed rate", lat[n_closed:])
PY

echo
echo "== summary"
python3 - "$work/closed.json" "$work/rate.json" "$load_after" "$patients" <<'PY'
import json, sys
for f in sys.argv[1:3]:
    d = json.load(open(f))
    m = d["measured"]
    lat = m["latency_ms"]
    errs = ", ".join(f"{k} {v}" for k, v in m["errors"].items()) or "none"
    print(f"{d['label']:>14}: {m['throughput_qps']:8.1f} q/s  p50 {lat['p50']:.2f} ms  "
          f"p90 {lat['p90']:.2f} ms  p99 {lat['p99']:.2f} ms  ({m['ok']} OK, errors: {errs}, "
          f"repeats {m['repeats']}, partial {m['partial']})")
print(f"{sys.argv[4]} patients per site; load average after the runs: {sys.argv[3]}")
PY
if [ -n "$results" ]; then
  mkdir -p "$results"
  cp "$work/closed.json" "$work/rate.json" "$work/budget.json" "$work/sync-probe.txt" "$results/"
  cp "$work"/strace-*.txt "$work"/perf-*.txt "$results/" 2>/dev/null || true
fi
