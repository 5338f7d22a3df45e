#!/usr/bin/env bash
# The main job: a local two-site federation end to end.
#   1. installs what is missing and builds `passerelle`;
#   2. mints a fresh federation CA and certificates (deploy/pki/mint.sh);
#   3. generates synthetic OMOP data for sites fr and qc, each in its real
#      coding (fr: CIM-10, CCAM, CIP13/UCD drugs; qc: ICD-9 physician claims
#      beside ICD-10-CA stays, DIN drugs), and loads each into its node's
#      RocksDB store with the public crosswalks from ../shared (qc: the CMS
#      ICD-9-CM -> ICD-10-CM GEM applied to RAMQ ICD-9, Health Canada DIN ->
#      ATC; fr: BDPM CIP13 -> ATC);
#   4. starts node fr, node qc and the gateway, all over mTLS on loopback;
#   5. shows how one query's ICD-10 and ATC codes reach each site's codes
#      (`query --explain`, free), then runs cross-border cohort counts as
#      researcher alice, printing the per-site and combined results and how
#      each site was reached;
#   6. verifies the audit logs and shuts everything down cleanly.
# Usage: deploy/demo.sh [--patients N] [--workdir DIR] [--keep]
# The crosswalks are read from $PASSERELLE_SHARED_DIR (default: ../shared
# beside the repository). Without them the sites are generated in uniform
# ICD-10 / ATC coding instead, and the demo says so.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${PASSERELLE_SHARED_DIR:-$root/../shared}"
patients=20000
work=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --patients) patients="$2"; shift 2 ;;
    --workdir) work="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

echo "== building passerelle"
"$root/scripts/build.sh" --target passerelle
bin="${PASSERELLE_BUILD_DIR:-$root/build}/cli/passerelle"

if [ -z "$work" ]; then work="$(mktemp -d /tmp/passerelle-demo.XXXXXX)"; fi
mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$keep" -eq 0 ]; then rm -rf "$work"; else echo "(kept $work)"; fi
}
trap cleanup EXIT

if [ -f "$work/pki/ca.pem" ]; then
  echo "== reusing the federation CA and certificates in $work/pki"
else
  echo "== minting a fresh federation CA and certificates in $work/pki"
  # --local: every server certificate names localhost (this machine only).
  "$root/deploy/pki/mint.sh" "$work/pki" --local >/dev/null
fi

echo "== minting each log's Ed25519 signing key; auditors keep the public halves"
for log in gateway fr qc; do
  mkdir -p "$work/$log"
  openssl genpkey -algorithm ed25519 -out "$work/$log/audit.key" 2>/dev/null
  chmod 600 "$work/$log/audit.key"
  openssl pkey -in "$work/$log/audit.key" -pubout -out "$work/pki/audit-$log.pub"
done

crosswalks="$shared/data/crosswalks"
if [ -f "$crosswalks/cms_gem2018_icd9cm_to_icd10cm.csv" ] &&
   [ -f "$crosswalks/hc_dpd_din_to_atc.csv" ] &&
   [ -f "$crosswalks/fr_bdpm_cip13_to_atc.csv" ]; then
  coding=site
  # RAMQ claims carry WHO ICD-9: the steward applies the ICD-9-CM GEM to
  # them (source=icd9). The DPD table has known bad rows (UNASSIGN,
  # L04AA40*): load anyway, listing the skipped rows in the load report.
  crosswalk_qc=(--crosswalk "$crosswalks/cms_gem2018_icd9cm_to_icd10cm.csv,source=icd9"
                --crosswalk "$crosswalks/hc_dpd_din_to_atc.csv" --crosswalk-invalid skip)
  crosswalk_fr=(--crosswalk "$crosswalks/fr_bdpm_cip13_to_atc.csv")
  # The researcher's CLI shows the query's codes with their labels from the
  # public nomenclatures (docs/labels.md), unless told otherwise.
  export PASSERELLE_NOMENCLATURES="${PASSERELLE_NOMENCLATURES:-$shared/data}"
else
  coding=uniform
  crosswalk_qc=()
  crosswalk_fr=()
  echo "== $crosswalks is absent: generating both sites in uniform ICD-10 / ATC"
  echo "   coding, without crosswalks (set PASSERELLE_SHARED_DIR to use them)"
fi

echo "== generating $patients synthetic patients per site ($coding coding) and loading the node stores"
for site in fr qc; do
  seed=$([ "$site" = fr ] && echo 33 || echo 1608)
  "$bin" generate --patients "$patients" --seed "$seed" --site "$site" --coding "$coding" --out "$work/data/$site"
  if [ "$site" = fr ]; then xw=("${crosswalk_fr[@]}"); else xw=("${crosswalk_qc[@]}"); fi
  "$bin" node load --store "$work/$site/store" --site "$site" --format omop ${xw[@]+"${xw[@]}"} "$work/data/$site"
done

# Configuration files (protobuf text format), one per process.
for site in fr qc; do
  cat > "$work/$site/node.textproto" <<CFG
site: "$site"
listen: "127.0.0.1:0"
store_dir: "$work/$site/store"
audit_dir: "$work/$site/audit"
audit_key_file: "$work/$site/audit.key"
policy_files: "$root/deploy/policy/site-$site.textproto"
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
for site in fr qc; do
  "$bin" node serve --config "$work/$site/node.textproto" 2>"$work/$site/node.log" &
  pids+=($!)
  wait_for_file "$work/$site/port" $! || { cat "$work/$site/node.log" >&2; exit 1; }
done

mkdir -p "$work/gateway"
cat > "$work/gateway/gateway.textproto" <<CFG
listen: "127.0.0.1:0"
port_file: "$work/gateway/port"
ledger_dir: "$work/gateway/ledger"
audit_dir: "$work/gateway/audit"
audit_key_file: "$work/gateway/audit.key"
default_timeout_ms: 5000
policy_files: "$root/deploy/policy/federation.textproto"
policy_files: "$root/deploy/policy/site-fr.textproto"
policy_files: "$root/deploy/policy/site-qc.textproto"
tls { ca_file: "$work/pki/ca.pem" cert_file: "$work/pki/gateway.pem" key_file: "$work/pki/gateway.key" }
sites { site: "fr" address: "127.0.0.1:$(cat "$work/fr/port")" tls_server_name: "localhost" }
sites { site: "qc" address: "127.0.0.1:$(cat "$work/qc/port")" tls_server_name: "localhost" }
CFG

echo "== starting the gateway (mTLS, policy, budget ledger, audit log)"
"$bin" gateway serve --config "$work/gateway/gateway.textproto" 2>"$work/gateway/gateway.log" &
pids+=($!)
wait_for_file "$work/gateway/port" $! || { cat "$work/gateway/gateway.log" >&2; exit 1; }

cat > "$work/alice.textproto" <<CFG
gateway: "127.0.0.1:$(cat "$work/gateway/port")"
tls_server_name: "localhost"
project: "diabetes-fr-qc"
tls { ca_file: "$work/pki/ca.pem" cert_file: "$work/pki/alice.pem" key_file: "$work/pki/alice.key" }
CFG

query='condition icd10:E11* and age between 40 and 79 group by sex, age_band(20)'
treated='condition icd10:E11* before drug atc:A10BA02 within 365 days group by sex'
if [ "$coding" = site ]; then
  echo
  echo "== before spending anything, alice asks how her codes reach each site's own codes"
  echo "   (qc claims are ICD-9 and its drugs DINs; fr drugs are CIP13 presentations):"
  echo "   $treated"
  echo
  "$bin" query --config "$work/alice.textproto" --explain "$treated"
fi

echo
echo "== alice (researcher, project diabetes-fr-qc) asks across the border:"
echo "   $query"
echo
"$bin" query --config "$work/alice.textproto" "$query"

echo
echo "== alice asks for type 2 diabetes treated with metformin within a year:"
echo "   $treated"
echo
"$bin" query --config "$work/alice.textproto" "$treated"

echo
echo "== the project's privacy budget after those queries:"
"$bin" budget show --config "$work/alice.textproto"

echo
echo "== alice asks the same cohort again, written differently: the same answer, no cost"
"$bin" query --config "$work/alice.textproto" \
  "$(echo "$query" | sed 's/icd10:E11\*/ICD10:e11*/')" | grep -E "^(privacy cost|repeat of)"

echo
echo "== dora (federation auditor) verifies the gateway's log remotely over mTLS, with the key she kept:"
"$bin" audit verify --gateway "127.0.0.1:$(cat "$work/gateway/port")" --server-name localhost \
  --ca "$work/pki/ca.pem" --cert "$work/pki/dora.pem" --key "$work/pki/dora.key" \
  --public-key "$work/pki/audit-gateway.pub" | tail -1
"$bin" audit search --gateway "127.0.0.1:$(cat "$work/gateway/port")" --server-name localhost \
  --ca "$work/pki/ca.pem" --cert "$work/pki/dora.pem" --key "$work/pki/dora.key" \
  --public-key "$work/pki/audit-gateway.pub"
echo "== dora, named auditor in each site policy, verifies each node's own log remotely:"
for site in fr qc; do
  printf '%-3s ' "$site:"
  "$bin" audit verify --node "127.0.0.1:$(cat "$work/$site/port")" --node-site "$site" --server-name localhost \
    --ca "$work/pki/ca.pem" --cert "$work/pki/dora.pem" --key "$work/pki/dora.key" \
    --public-key "$work/pki/audit-$site.pub" | tail -1
done

echo
echo "== shutting down"
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do wait "$pid" || { echo "a server exited with an error" >&2; exit 1; }; done
pids=()

echo
echo "== for comparison, each site's steward sees exact local counts (no network):"
for site in fr qc; do
  echo
  "$bin" node count --store "$work/$site/store" 'condition icd10:E11* and age between 40 and 79'
done
if [ "$coding" = site ]; then
  echo
  echo "== and without the crosswalks (codes exact), qc's ICD-9 claims are missed:"
  "$bin" node count --store "$work/qc/store" 'condition icd10:E11* and age between 40 and 79 codes exact'
fi

echo
echo "== verifying the audit logs (gateway, fr, qc)"
for log in gateway fr qc; do
  printf '%-8s ' "$log:"
  "$bin" audit verify --store "$work/$log/audit" --public-key "$work/pki/audit-$log.pub" | tail -1
done
echo "demo complete"
