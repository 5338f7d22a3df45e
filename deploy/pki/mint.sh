#!/usr/bin/env bash
# Mints a federation PKI into DIR (never committed: run at deploy or test
# time). Everything is ECDSA P-256, signed by one federation CA:
#   ca.pem / ca.key                 the federation CA (keep ca.key offline)
#   gateway.pem / .key              spiffe://<td>/gateway
#   node-<site>.pem / .key          spiffe://<td>/site/<site>/node
#   <user>.pem / .key               spiffe://<td>/user/<user>
#   ca.crl.pem, crl/                the CRL, and its hashed directory for servers
#   trust-domain                    the trust domain <td> (default passerelle)
# Every certificate carries exactly one URI SAN, its SPIFFE ID (the identity
# peers check). Server certificates also carry the DNS names clients dial:
# by default their own name (gateway, node-<site>), or the names given with
# --dns; --local gives every server DNS:localhost and IP:127.0.0.1 instead
# (the local demo and tests only). Keys are created 0600 (umask 077).
# Usage:
#   deploy/pki/mint.sh DIR [--sites "fr qc"] [--users "alice bob ..."] [--days N]
#          [--trust-domain TD] [--local] [--dns NAME=HOST[,HOST...]]...
#       a new CA and its certificates; NAME is gateway or a site. Refused
#       when DIR already holds a CA (ca.pem or ca.key): never overwritten.
#   deploy/pki/mint.sh DIR --issue NAME SPIFFE_ID [server] [--dns HOST[,HOST...]]
#          [--local] [--days N]
#       one more leaf, or a renewal of NAME (rotation): the new key and
#       certificate replace NAME.key and NAME.pem only once signed. The ID
#       must be a valid spiffe:// ID in DIR's trust domain. A server leaf gets
#       DNS:NAME unless --dns or --local is given.
#   deploy/pki/mint.sh DIR --issue-expired NAME SPIFFE_ID
#       a client leaf whose validity ended yesterday (for negative tests)
#   deploy/pki/mint.sh DIR --revoke NAME [--days N]
#       revokes the current NAME.pem and issues a new CRL valid N days
#   deploy/pki/mint.sh DIR --revoke-serial SERIAL [--days N]
#       revokes any certificate this CA issued by its serial (hex, as
#       `openssl x509 -noout -serial` or DIR/index.txt show it), e.g. one a
#       renewal replaced
#   deploy/pki/mint.sh DIR --refresh-crl [--days N]
#       a new CRL (same revocations); servers with tls.crl_dir refuse every
#       peer once the CRL in force is past its next update (N days, default 30)
set -euo pipefail
umask 077
usage() {
  echo "usage: $0 DIR [--sites LIST] [--users LIST] [--days N] [--trust-domain TD] [--local] [--dns NAME=HOSTS]..." >&2
  echo "       $0 DIR --issue NAME ID [server] [--dns HOSTS] [--local] [--days N]" >&2
  echo "       $0 DIR --issue-expired NAME ID" >&2
  echo "       $0 DIR --revoke NAME [--days N] | DIR --revoke-serial SERIAL [--days N]" >&2
  echo "       $0 DIR --refresh-crl [--days N]" >&2
  exit 2
}
die() { echo "mint.sh: $*" >&2; exit 1; }
if [ $# -lt 1 ]; then usage; fi
dir="$1"; shift
sites="fr qc"
users="alice bob carol dora erin"
days=30
trust_domain=passerelle
local_names=0
declare -A dns=()

# SPIFFE ID syntax (the SPIFFE standard): spiffe://<trust domain>/<path>,
# trust domain [a-z0-9._-], path segments [A-Za-z0-9._-], none empty, "." or
# "..". The same rule as tls::IsSpiffeId.
valid_spiffe_id() {
  local id="$1" path seg
  [[ "$id" =~ ^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+$ ]] || return 1
  path="${id#spiffe://*/}"
  IFS=/ read -r -a segs <<< "$path"
  for seg in "${segs[@]}"; do
    if [ "$seg" = . ] || [ "$seg" = .. ]; then return 1; fi
  done
  return 0
}
check_id() {
  local id="$1" td
  valid_spiffe_id "$id" || die "\"$id\" is not a valid SPIFFE ID (spiffe://<trust domain>/<path>, trust domain [a-z0-9._-], path segments [A-Za-z0-9._-])"
  td="${id#spiffe://}"; td="${td%%/*}"
  [ "$td" = "$trust_domain" ] || die "\"$id\" is not in this PKI's trust domain \"$trust_domain\""
}
check_name() {
  [[ "$1" =~ ^[A-Za-z0-9_-][A-Za-z0-9._-]*$ ]] || die "\"$1\" is not a valid $2 name ([A-Za-z0-9._-], not starting with a dot)"
}
check_days() {
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "--days needs a positive whole number of days, not \"$1\""
}
check_hosts() {
  [[ "$1" =~ ^[A-Za-z0-9.:_-]+(,[A-Za-z0-9.:_-]+)*$ ]] || die "\"$1\" is not a comma-separated list of host names or IP addresses"
}

ca_conf() {
  cat > ca.cnf <<CNF
[ ca ]
default_ca = fed
[ fed ]
dir = .
database = index.txt
new_certs_dir = newcerts
certificate = ca.pem
private_key = ca.key
serial = serial
crlnumber = crlnumber
default_md = sha256
default_crl_days = $days
unique_subject = no
policy = any
[ any ]
commonName = supplied
CNF
  mkdir -p newcerts
  [ -f index.txt ] || : > index.txt
  # Renewals reuse a subject; the attribute file overrides ca.cnf, and PKI
  # directories minted before this line say "yes".
  echo "unique_subject = no" > index.txt.attr
  [ -f serial ] || echo 1000 > serial
  [ -f crlnumber ] || echo 1000 > crlnumber
}

# The SAN entries for a comma-separated list of host names and IP addresses.
san_hosts() {
  local out="" h
  IFS=, read -r -a hs <<< "$1"
  for h in "${hs[@]}"; do
    if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then out="$out,IP:$h"; else out="$out,DNS:$h"; fi
  done
  echo "$out"
}

# leaf NAME SPIFFE_ID [server|client|expired] [HOSTS]
# Writes NAME.key and NAME.pem; a running server watching them sees either the
# old pair or the new one (each file is replaced by a rename once signed).
leaf() {
  local name="$1" id="$2" kind="${3:-client}" hosts="${4:-}"
  local san="URI:$id"
  local eku="clientAuth"
  local validity=(-days "$days")
  if [ "$kind" = server ]; then san="$san$(san_hosts "$hosts")"; eku="serverAuth,clientAuth"; fi
  if [ "$kind" = expired ]; then
    validity=(-startdate "$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)"
              -enddate "$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)")
  fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key.new" 2>/dev/null
  openssl req -new -key "$name.key.new" -subj "/O=Passerelle/CN=$name" -out "$name.csr" 2>/dev/null
  cat > "$name.ext" <<EXT
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = $eku
subjectAltName = $san
EXT
  if ! openssl ca -batch -config ca.cnf -notext "${validity[@]}" -in "$name.csr" \
      -extfile "$name.ext" -out "$name.pem.new" 2>"$name.err"; then
    cat "$name.err" >&2
    rm -f "$name.csr" "$name.ext" "$name.err" "$name.key.new" "$name.pem.new"
    die "cannot issue $name"
  fi
  rm -f "$name.csr" "$name.ext" "$name.err"
  chmod 644 "$name.pem.new"  # Public; the key stays 0600.
  mv -f "$name.key.new" "$name.key"
  mv -f "$name.pem.new" "$name.pem"
}

refresh_crl() {
  openssl ca -config ca.cnf -gencrl -crldays "$days" -out ca.crl.pem.new 2>/dev/null
  chmod 644 ca.crl.pem.new
  mv -f ca.crl.pem.new ca.crl.pem
  local h f
  h="$(openssl crl -in ca.crl.pem -noout -hash)"
  # Replaced by a rename: a server reading the directory at a handshake sees
  # the previous CRL or the new one, never none.
  cp -p ca.crl.pem "crl/.$h.tmp"
  mv -f "crl/.$h.tmp" "crl/$h.r0"
  for f in crl/*; do [ "$f" = "crl/$h.r0" ] || rm -f "$f"; done
}

# revoke CERT_FILE WHAT: marks it revoked in index.txt (already revoked: a
# note, and the CRL is still issued again).
revoke() {
  if ! openssl ca -config ca.cnf -revoke "$1" 2>revoke.err; then
    if grep -q "Already revoked" revoke.err; then
      echo "mint.sh: $2 was already revoked" >&2
    else
      cat revoke.err >&2; rm -f revoke.err; die "cannot revoke $2"
    fi
  fi
  rm -f revoke.err
}

# Options after the leading action's arguments: --days N, and for --issue
# --dns HOSTS / --local.
extra_hosts=""
parse_tail() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --days) [ $# -ge 2 ] || usage; check_days "$2"; days="$2"; shift 2 ;;
      --dns) [ $# -ge 2 ] || usage; check_hosts "$2"; extra_hosts="${extra_hosts:+$extra_hosts,}$2"; shift 2 ;;
      --local) local_names=1; shift ;;
      *) echo "mint.sh: unknown argument $1" >&2; usage ;;
    esac
  done
}

# An existing PKI directory: its trust domain (older ones have no file:
# passerelle, what they were minted with).
open_pki() {
  [ -f "$dir/ca.pem" ] && [ -f "$dir/ca.key" ] || die "$dir holds no CA (ca.pem, ca.key): mint one first"
  cd "$dir"
  mkdir -p crl
  if [ -f trust-domain ]; then trust_domain="$(cat trust-domain)"; fi
}

case "${1:-}" in
  --issue|--issue-expired)
    action="$1"
    [ $# -ge 3 ] || usage
    name="$2"; id="$3"; shift 3
    kind=client
    if [ "$action" = --issue ] && [ "${1:-}" = server ]; then kind=server; shift
    elif [ "$action" = --issue ] && [ "${1:-}" = client ]; then shift; fi
    if [ "$action" = --issue-expired ]; then
      [ $# -eq 0 ] || usage
      kind=expired
    fi
    parse_tail "$@"
    if [ "$kind" != server ] && { [ -n "$extra_hosts" ] || [ "$local_names" = 1 ]; }; then
      die "--dns and --local are for server certificates"
    fi
    check_name "$name" certificate
    open_pki
    check_id "$id"
    hosts="$extra_hosts"
    if [ "$local_names" = 1 ]; then hosts="${hosts:+$hosts,}localhost,127.0.0.1"; fi
    [ -n "$hosts" ] || hosts="$name"
    ca_conf; leaf "$name" "$id" "$kind" "$hosts"; exit 0 ;;
  --refresh-crl)
    shift; parse_tail "$@"
    [ -z "$extra_hosts" ] && [ "$local_names" = 0 ] || usage
    open_pki; ca_conf; refresh_crl; exit 0 ;;
  --revoke)
    [ $# -ge 2 ] || usage
    name="$2"; shift 2; parse_tail "$@"
    [ -z "$extra_hosts" ] && [ "$local_names" = 0 ] || usage
    check_name "$name" certificate
    open_pki
    [ -f "$name.pem" ] || die "no certificate $name.pem in $dir"
    ca_conf
    revoke "$name.pem" "$name"; refresh_crl; exit 0 ;;
  --revoke-serial)
    [ $# -ge 2 ] || usage
    serial="$2"; shift 2; parse_tail "$@"
    [ -z "$extra_hosts" ] && [ "$local_names" = 0 ] || usage
    [[ "$serial" =~ ^(0[xX])?[0-9A-Fa-f]+$ ]] || die "\"$serial\" is not a hexadecimal serial number"
    serial="${serial#0[xX]}"; serial="${serial^^}"
    # Serials as OpenSSL names them in newcerts/: even number of digits.
    while [ $(( ${#serial} % 2 )) -ne 0 ] || { [ ${#serial} -gt 2 ] && [ "${serial:0:2}" = 00 ]; }; do
      if [ $(( ${#serial} % 2 )) -ne 0 ]; then serial="0$serial"; else serial="${serial:2}"; fi
    done
    open_pki
    [ -f "newcerts/$serial.pem" ] || die "this CA issued no certificate with serial $serial (see $dir/index.txt)"
    ca_conf
    revoke "newcerts/$serial.pem" "serial $serial"; refresh_crl; exit 0 ;;
esac

while [ $# -gt 0 ]; do
  case "$1" in
    --sites) [ $# -ge 2 ] || usage; sites="$2"; shift 2 ;;
    --users) [ $# -ge 2 ] || usage; users="$2"; shift 2 ;;
    --days) [ $# -ge 2 ] || usage; check_days "$2"; days="$2"; shift 2 ;;
    --trust-domain) [ $# -ge 2 ] || usage; trust_domain="$2"; shift 2 ;;
    --local) local_names=1; shift ;;
    --dns)
      [ $# -ge 2 ] && [[ "$2" == *=* ]] || die "--dns takes NAME=HOST[,HOST...] (NAME: gateway or a site)"
      check_hosts "${2#*=}"; dns["${2%%=*}"]="${2#*=}"; shift 2 ;;
    *) echo "mint.sh: unknown argument $1" >&2; usage ;;
  esac
done
[[ "$trust_domain" =~ ^[a-z0-9._-]+$ ]] || die "\"$trust_domain\" is not a SPIFFE trust domain ([a-z0-9._-]+)"
for site in $sites; do check_name "$site" site; done
for user in $users; do check_name "$user" user; done
for n in "${!dns[@]}"; do
  [ "$n" = gateway ] || [[ " $sites " == *" $n "* ]] || die "--dns $n=...: $n is neither gateway nor one of the sites ($sites)"
done
# Never overwrite a CA: every certificate it issued would stop verifying,
# and its key could not be recovered.
if [ -e "$dir/ca.key" ] || [ -e "$dir/ca.pem" ]; then
  die "$dir already holds a CA (ca.pem/ca.key); refusing to overwrite it (use --issue, or another DIR)"
fi
mkdir -p "$dir/crl"
cd "$dir"
chmod 755 . crl

hosts_of() {  # hosts_of NAME CERT_NAME
  if [ -n "${dns[$1]:-}" ]; then echo "${dns[$1]}"
  elif [ "$local_names" = 1 ]; then echo "localhost,127.0.0.1"
  else echo "$2"; fi
}

rm -f index.txt* serial* crlnumber* newcerts/* 2>/dev/null || true
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
openssl req -new -x509 -key ca.key -days "$days" -sha256 \
  -subj "/O=Passerelle/CN=Passerelle federation CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem 2>/dev/null
chmod 644 ca.pem
echo "$trust_domain" > trust-domain
chmod 644 trust-domain
ca_conf

leaf gateway "spiffe://$trust_domain/gateway" server "$(hosts_of gateway gateway)"
for site in $sites; do
  leaf "node-$site" "spiffe://$trust_domain/site/$site/node" server "$(hosts_of "$site" "node-$site")"
done
for user in $users; do leaf "$user" "spiffe://$trust_domain/user/$user"; done
refresh_crl
echo "minted federation CA and certificates in $(pwd)"
