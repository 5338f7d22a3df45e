#!/usr/bin/env bash
# Mints a fresh federation PKI into DIR (never committed: run at deploy or
# test time). Everything is ECDSA P-256, signed by one federation CA:
#   ca.pem / ca.key                 the federation CA (keep ca.key offline)
#   gateway.pem / .key              spiffe://passerelle/gateway
#   node-<site>.pem / .key          spiffe://passerelle/site/<site>/node
#   <user>.pem / .key               spiffe://passerelle/user/<user>
#   ca.crl.pem, crl/                the CRL, and its hashed directory for servers
# Server certificates also carry DNS:localhost and IP:127.0.0.1 for loopback.
# Usage: deploy/pki/mint.sh DIR [--sites "fr qc"] [--users "alice bob ..."] [--days N]
#        deploy/pki/mint.sh DIR --issue NAME SPIFFE_ID [server]
#            one more leaf, or a renewal of NAME (rotation): the new key and
#            certificate replace NAME.key and NAME.pem only once signed
#        deploy/pki/mint.sh DIR --issue-expired NAME SPIFFE_ID
#            a client leaf whose validity ended yesterday (for negative tests)
#        deploy/pki/mint.sh DIR --revoke NAME            (add NAME.pem to the CRL)
#        deploy/pki/mint.sh DIR --refresh-crl [--days N]
#            a new CRL (same revocations); servers with tls.crl_dir refuse
#            every peer once the CRL in force is past its next update (N days)
set -euo pipefail
usage() {
  echo "usage: $0 DIR [--sites LIST] [--users LIST] [--days N]" >&2
  echo "       $0 DIR --issue NAME ID [server] | DIR --issue-expired NAME ID | DIR --revoke NAME" >&2
  echo "       $0 DIR --refresh-crl [--days N]" >&2
  exit 2
}
if [ $# -lt 1 ]; then usage; fi
dir="$1"; shift
sites="fr qc"
users="alice bob carol dora erin"
days=30
mkdir -p "$dir/crl"
cd "$dir"

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

# leaf NAME SPIFFE_ID [server|client|expired]
# Writes NAME.key and NAME.pem; a running server watching them sees either the
# old pair or the new one (each file is replaced by a rename once signed).
leaf() {
  local name="$1" id="$2" kind="${3:-client}"
  local san="URI:$id"
  local eku="clientAuth"
  local validity=(-days "$days")
  if [ "$kind" = server ]; then san="$san,DNS:localhost,IP:127.0.0.1"; eku="serverAuth,clientAuth"; fi
  if [ "$kind" = expired ]; then
    validity=(-startdate "$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)"
              -enddate "$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)")
  fi
  (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key.new" 2>/dev/null)
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
    echo "mint.sh: cannot issue $name" >&2
    exit 1
  fi
  rm -f "$name.csr" "$name.ext" "$name.err"
  mv -f "$name.key.new" "$name.key"
  mv -f "$name.pem.new" "$name.pem"
}

refresh_crl() {
  openssl ca -config ca.cnf -gencrl -out ca.crl.pem.new 2>/dev/null
  mv -f ca.crl.pem.new ca.crl.pem
  local h f
  h="$(openssl crl -in ca.crl.pem -noout -hash)"
  # Replaced by a rename: a server reading the directory at a handshake sees
  # the previous CRL or the new one, never none.
  cp ca.crl.pem "crl/.$h.tmp"
  mv -f "crl/.$h.tmp" "crl/$h.r0"
  for f in crl/*; do [ "$f" = "crl/$h.r0" ] || rm -f "$f"; done
}

if [ "${1:-}" = "--issue" ]; then
  [ $# -ge 3 ] || usage
  case "${4:-client}" in server|client) ;; *) usage ;; esac
  ca_conf; leaf "$2" "$3" "${4:-client}"; exit 0
fi
if [ "${1:-}" = "--issue-expired" ]; then
  [ $# -eq 3 ] || usage
  ca_conf; leaf "$2" "$3" expired; exit 0
fi
if [ "${1:-}" = "--refresh-crl" ]; then
  if [ $# -eq 3 ] && [ "$2" = "--days" ]; then days="$3"
  elif [ $# -ne 1 ]; then usage; fi
  ca_conf; refresh_crl; exit 0
fi
if [ "${1:-}" = "--revoke" ]; then
  [ $# -eq 2 ] || usage
  ca_conf; openssl ca -config ca.cnf -revoke "$2.pem" 2>/dev/null; refresh_crl; exit 0
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --sites) sites="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    *) echo "mint.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

rm -f index.txt* serial* crlnumber* newcerts/* 2>/dev/null || true
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
chmod 600 ca.key
openssl req -new -x509 -key ca.key -days "$days" -sha256 \
  -subj "/O=Passerelle/CN=Passerelle federation CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem 2>/dev/null
ca_conf

leaf gateway "spiffe://passerelle/gateway" server
for site in $sites; do leaf "node-$site" "spiffe://passerelle/site/$site/node" server; done
for user in $users; do leaf "$user" "spiffe://passerelle/user/$user"; done
refresh_crl
echo "minted federation CA and certificates in $(pwd)"
