#!/usr/bin/env bash
# make demo: a three-host Skein lab in network namespaces, containers talking
# across hosts over the VXLAN overlay, then a NetworkPolicy taking effect.
# KEEP=1 leaves the lab running; BACKEND=bgp routes with BGP instead, and
# TOR=bird|frr adds a top-of-rack route reflector with hosts on two subnets.
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}
skein="$BIN/skein"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "make demo needs root (network namespaces)"; exit 1; }
"$skein" lab down >/dev/null 2>&1 || true
trap '[ "${KEEP:-0}" = 1 ] || "$skein" lab down' EXIT

BACKEND=${BACKEND:-vxlan}
up=(--hosts 3 --containers-per-host 2 --backend "$BACKEND")
[ -n "${TOR:-}" ] && up+=(--tor "$TOR" --subnets 2)
step "bring up 3 hosts x 2 containers, backend $BACKEND (real skeind per host, real skein-cni via libcni)"
"$skein" lab up "${up[@]}"
export SKEIN_ETCD_ENDPOINTS=$("$skein" lab status -o json | sed -n 's/.*"etcdEndpoint": *"\([^"]*\)".*/\1/p' | head -1)

step "the cluster as the admin CLI sees it"
"$skein" node list -o wide
"$skein" ipam show
"$skein" endpoint list

step "every container pings every other (same host and across hosts)"
fail=0
# BGP sessions take a second or two to come up after the agents are ready.
for _ in $(seq 1 20); do "$skein" lab check >/dev/null 2>&1 && break; sleep 1; done
"$skein" lab check || fail=1

if [ "$BACKEND" = vxlan ]; then
  step "the overlay on host h1: vxlan device, neighbours, FDB and routes"
  "$skein" lab exec h1 -- ip -d link show skein.vxlan | head -3
  "$skein" lab exec h1 -- ip route show proto 78
  "$skein" lab exec h1 -- ip neigh show dev skein.vxlan
  "$skein" lab exec h1 -- bridge fdb show dev skein.vxlan
else
  step "BGP on host h1: routes learned from peers (protocol 78), sessions"
  "$skein" lab exec h1 -- ip route show proto 78
  "$skein" bgp status || true
  [ -n "${TOR:-}" ] && "$skein" lab exec tor -- birdc -s /run/skein-lab/sklab/tor/bird.ctl show route 2>/dev/null | head -12 || true
fi

step "network policy: only clients may reach the database pod"
db_ip=$("$skein" endpoint list | awk '$2=="h3-c1"{print $4}')
"$skein" endpoint label default/h3-c1 app=db
try() { if "$skein" lab exec h1-c1 -- ping -c1 -W2 -q "$db_ip" >/dev/null 2>&1; then echo "  h1-c1 -> h3-c1 ($db_ip): reachable"; else echo "  h1-c1 -> h3-c1 ($db_ip): BLOCKED"; fi; }
try
policy=$(mktemp)
cat > "$policy" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-clients-only, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
YAML
cat "$policy"
"$skein" policy apply -f "$policy"
rm -f "$policy"
sleep 1
try
"$skein" policy trace --from default/h1-c1 --to default/h3-c1 --port 5432 --protocol TCP
echo; echo "  label h1-c1 as a client:"
"$skein" endpoint label default/h1-c1 role=client
sleep 1
try
"$skein" policy trace --from default/h1-c1 --to default/h3-c1 --port 5432 --protocol TCP
"$skein" policy matrix --ports 5432

if [ "${KEEP:-0}" = 1 ]; then
  step "lab left running: try \`$skein lab status\`, \`$skein lab exec h1-c1 -- ping <ip>\`; \`$skein lab down\` removes it"
else
  step "tearing the lab down (KEEP=1 make demo leaves it running)"
fi
exit $fail
