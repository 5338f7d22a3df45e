#!/usr/bin/env bash
# Installs the Debian packages Passerelle needs (Debian 12).
#
#   scripts/install-deps.sh                 everything to build, test and run
#                                           the demo (developer machines, CI)
#   scripts/install-deps.sh --runtime       only what the passerelle binary
#                                           needs to run (production hosts:
#                                           no compiler, no headers, no tests)
#   scripts/install-deps.sh --list-runtime  prints the runtime packages, one
#                                           a line, and installs nothing
#
# Idempotent: packages already present are skipped, and apt is only asked
# when something is missing. Must run as root (or with sudo available).
set -euo pipefail

# The shared libraries of the passerelle binary (`ldd`), by package: what a
# production host needs (docs/operator.md). tests/deploy_test checks that it
# covers every library `ldd` lists for the built binary (by dpkg's file lists).
RUNTIME_PACKAGES=(
  libc6 libgcc-s1 libstdc++6
  libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libc-ares2 libre2-9
  librocksdb7.8 libsnappy1v5 liblz4-1 libzstd1 libbz2-1.0 zlib1g libgflags2.2
  libssl3 libroaring0 libjemalloc2
)

mode=all
case "${1:-}" in
  "") ;;
  --runtime) mode=runtime ;;
  --list-runtime)
    printf '%s\n' "${RUNTIME_PACKAGES[@]}"
    exit 0
    ;;
  *)
    echo "usage: $0 [--runtime | --list-runtime]" >&2
    exit 2
    ;;
esac

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librocksdb-dev libssl-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev libroaring-dev libjemalloc-dev
  sqlite3 postgresql libsqlite3-dev libpq-dev
  python3 iproute2
  # The suite's format check (scripts/check-format.sh).
  clang-format-14
  # Sanitizer and fuzz runs (scripts/sanitize.sh, scripts/fuzz.sh): clang,
  # its sanitizer runtimes, libFuzzer, and llvm-symbolizer (in llvm-14) for
  # readable reports.
  clang-14 libclang-rt-14-dev libfuzzer-14-dev llvm-14
)

if [ "$mode" = runtime ]; then
  PACKAGES=("${RUNTIME_PACKAGES[@]}")
else
  PACKAGES+=("${RUNTIME_PACKAGES[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# FHIR validators for tests/fhir/validate_auditevents.js (npm packages pinned
# by tests/fhir/package-lock.json), installed with `npm ci` outside the repo
# and only when the installed lockfile differs from the repo's. Without npm,
# or when the install fails, a loud warning and the FHIR export test skips;
# the rest of this script goes on either way.
fhir_src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/fhir"
fhir_dir="${PASSERELLE_FHIR_VALIDATOR_DIR:-/opt/passerelle-tools/fhir-validator}"
if [ "$mode" = runtime ]; then
  :  # Production hosts run no tests.
elif ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: WARNING: npm not found: FHIR validators not installed" \
       "in $fhir_dir (tests/fhir_export_test will skip)" >&2
elif ! cmp -s "$fhir_src/package-lock.json" "$fhir_dir/.installed-lock.json" ||
     [ ! -f "$fhir_dir/node_modules/fhir/package.json" ]; then
  echo "install-deps: installing FHIR validators (npm ci) into $fhir_dir" >&2
  if mkdir -p "$fhir_dir" && rm -f "$fhir_dir/.installed-lock.json" &&
     cp "$fhir_src/package.json" "$fhir_src/package-lock.json" "$fhir_dir/" &&
     npm ci --prefix "$fhir_dir" --no-audit --no-fund --loglevel=error >&2 &&
     cp "$fhir_src/package-lock.json" "$fhir_dir/.installed-lock.json"; then
    :
  else
    echo "install-deps: ERROR: npm ci of the FHIR validators into $fhir_dir" \
         "failed (see above); tests/fhir_export_test will skip" >&2
  fi
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
