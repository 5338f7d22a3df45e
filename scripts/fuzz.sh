#!/usr/bin/env bash
# Builds every libFuzzer harness (the */fuzz/ folders and policy's loader
# fuzzer) with clang-14 and -fsanitize=fuzzer,address,undefined into
# build-fuzz/ (or $PASSERELLE_FUZZ_BUILD_DIR), then runs each one for a
# bounded time on its seed corpus. Exits non-zero if any harness crashes,
# leaks, times out or breaks one of its checks; the input that did it is
# kept in build-fuzz/fuzz-work/<name>/ with the log.
#
#   scripts/fuzz.sh [--seconds N] [NAME...]
#
# --seconds N   time per harness (default 20); NAME... runs only those.
#
# Seed corpora live in the repository beside each harness and are never
# written to: libFuzzer adds what it finds to build-fuzz/fuzz-work/<name>/
# corpus, which later runs start from. A seed named *.textproto is a
# request in protobuf text format whose first line reads
#   # fuzz-input: 0xHH passerelle.v1.MessageType
# and is encoded here (header byte HH, then the wire bytes) with protoc;
# without "0xHH " the seed is the wire bytes alone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PASSERELLE_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${PASSERELLE_JOBS:-$(nproc)}"
seconds=20
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#--seconds=}"; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) only+=("$1"); shift ;;
  esac
done

if [[ ! "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: --seconds wants a positive whole number, got '$seconds'" >&2
  exit 2
fi

"$root/scripts/install-deps.sh"

cxx="$(command -v clang++-14 || command -v clang++ || true)"
if [ -z "$cxx" ]; then
  echo "fuzz: clang++-14 not found (scripts/install-deps.sh installs clang-14)" >&2
  exit 1
fi

# The components the harnesses need (no CLI, end-to-end tests, benchmarks).
components="proto;common;csv;query;privacy;ledger;policy;audit;tls;node;gateway"
# Coverage and sanitizers in every library, not only in the harnesses.
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

start=$(date +%s)
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DPASSERELLE_FUZZ=ON \
    -DPASSERELLE_COMPONENTS="$components" >/dev/null
fi
cmake --build "$build" -j "$jobs" --target passerelle_fuzzers
built=$(date +%s)
echo "fuzz: build: $((built - start)) s"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  for s in llvm-symbolizer-14 llvm-symbolizer; do
    if command -v "$s" >/dev/null; then
      export ASAN_SYMBOLIZER_PATH="$(command -v "$s")"
      break
    fi
  done
fi

# Encodes a *.textproto seed (see the header) into `out`.
encode_seed() {
  local seed="$1" out="$2" header byte type
  header="$(head -n 1 "$seed")"
  if [[ ! "$header" =~ ^#\ fuzz-input:\ (0x([0-9a-fA-F]{2})\ )?([A-Za-z0-9_.]+)$ ]]; then
    echo "fuzz: $seed: first line must be '# fuzz-input: [0xHH] passerelle.v1.Type'" >&2
    return 1
  fi
  byte="${BASH_REMATCH[2]}"
  type="${BASH_REMATCH[3]}"
  {
    if [ -n "$byte" ]; then printf "\\x$byte"; fi
    protoc --encode="$type" -I "$root/proto" "$root"/proto/passerelle/v1/*.proto \
      < "$seed"
  } > "$out"
}

shopt -s nullglob
manifests=("$build"/fuzzers/*.txt)
if [ ${#manifests[@]} -eq 0 ]; then
  echo "fuzz: no harness in $build/fuzzers" >&2
  exit 1
fi

failed=()
ran=0
passed=0
for manifest in "${manifests[@]}"; do
  name="$(basename "$manifest" .txt)"
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then
    continue
  fi
  bin="$(sed -n 1p "$manifest")"
  seeds="$(sed -n 2p "$manifest")"
  work="$build/fuzz-work/$name"
  rm -rf "$work/seeds" "$work/artifacts"
  mkdir -p "$work/corpus" "$work/seeds" "$work/artifacts"
  for s in "$seeds"/*; do
    [ -f "$s" ] || continue
    case "$s" in
      *.textproto) encode_seed "$s" "$work/seeds/$(basename "$s" .textproto).bin" ;;
      *) cp "$s" "$work/seeds/" ;;
    esac
  done
  ran=$((ran + 1))
  t0=$(date +%s)
  status=0
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    "$work/corpus" "$work/seeds" > "$work/log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)"
  cov="$(grep -o 'cov: [0-9]*' "$work/log" | tail -n 1 | cut -d' ' -f2 || true)"
  if [ $status -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz: $name: ok, ${execs:-?} runs, ${cov:-?} coverage points, $(( $(date +%s) - t0 )) s"
  else
    failed+=("$name")
    echo "fuzz: $name: FAILED (exit $status) after $(( $(date +%s) - t0 )) s; log: $work/log"
    { grep -E -m 6 '==[0-9]+==ERROR|broken promise|runtime error' "$work/log"
      grep -E -m 8 '^ +#[0-9]+ .* in .*(passerelle|LLVMFuzzerTestOneInput)' "$work/log"
      grep -E -m 2 'SUMMARY|Test unit written' "$work/log"; } | sed 's/^ */  /' || true
  fi
done

for name in "${only[@]}"; do
  if [ ! -f "$build/fuzzers/$name.txt" ]; then
    echo "fuzz: no harness named $name (see $build/fuzzers/)"
    failed+=("$name")
  fi
done

echo "fuzz: $ran harnesses, $seconds s each, $(( $(date +%s) - built )) s; $passed passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
