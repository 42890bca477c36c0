#!/usr/bin/env bash
# Cross-node pod-to-pod TCP throughput over the lab's VXLAN overlay for two podnet binaries,
# interleaved in the same run (A, B, A, B, ...), to tell a regression from the machine's drift:
#   bench/overlay_ab.sh OLD_PODNET NEW_PODNET [ROUNDS]
# Each round: lab up (2 pods on two nodes), iperf3 -t 5 from one pod to the other, lab down.
# Everything runs in namespaces the lab creates; the host's namespace is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2; ROUNDS=${3:-3}
tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; for p in "$A" "$B"; do "$p" lab down --name benchab >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
cleanup; tmp=$(mktemp -d)
one() {
  local P=$1
  "$P" lab up --name benchab -f bench/two-pods.yaml >/dev/null
  local sip
  sip=$("$P" lab status --name benchab -o json | python3 -c 'import json,sys; print([p["ip"] for p in json.load(sys.stdin)["pods"] if p["name"]=="server"][0])')
  "$P" lab exec --name benchab default/server -- iperf3 -s -1 -D
  sleep 0.3
  "$P" lab exec --name benchab default/client -- iperf3 -c "$sip" -t 5 -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
  "$P" lab down --name benchab >/dev/null
}
a=(); b=()
for _ in $(seq "$ROUNDS"); do a+=("$(one "$A")"); b+=("$(one "$B")"); done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ma=$(med "${a[@]}"); mb=$(med "${b[@]}")
echo "A ($A): ${a[*]} Gbit/s, median $ma"
echo "B ($B): ${b[*]} Gbit/s, median $mb"
echo "B / A: $(python3 -c "print(f'{$mb/$ma:.2f}')")x"
