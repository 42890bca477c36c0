#!/usr/bin/env bash
# The lab's benchmarks (issue 3), needs root:
#  1. `lab up` for 3 nodes x 100 pods (goal: under 10 s), and `lab down`;
#  2. cross-node pod-to-pod TCP throughput (iperf3, 5 s) over the VXLAN overlay, against a plain
#     veth pair between two namespaces, in the same run.
# Everything runs in namespaces named podnet-*; the host's namespace is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet
P=target/release/podnet
tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; $P lab down --name bench >/dev/null 2>&1 || true; $P lab down --name benchperf >/dev/null 2>&1 || true; ip netns del podnet-benchveth-a 2>/dev/null || true; ip netns del podnet-benchveth-b 2>/dev/null || true; }
trap cleanup EXIT
cleanup; tmp=$(mktemp -d)   # leftovers of an interrupted run

start=$(date +%s.%N)
$P lab up --name bench --nodes 3 -f bench/web-300.yaml >/dev/null
up=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")
reach=$($P lab probe --name bench --port 80 -o json | python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(map(sum, m["reachable"])), len(m["pods"])**2)')
start=$(date +%s.%N)
$P lab down --name bench >/dev/null
down=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")
echo "lab up, 3 nodes x 100 pods: ${up} s (probe: ${reach% *} of ${reach#* } pairs reach); lab down: ${down} s"

cat > "$tmp/perf.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: server}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 5201}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-0, containers: [{name: c, image: x}]}
YAML
# The lab's own server would hold 5201; iperf3 needs the port, so the pod declares none there.
sed -i 's/, ports: \[{containerPort: 5201}\]//' "$tmp/perf.yaml"
$P lab up --name benchperf -f "$tmp/perf.yaml" >/dev/null
sip=$($P lab status --name benchperf -o json | python3 -c 'import json,sys; print([p["ip"] for p in json.load(sys.stdin)["pods"] if p["name"]=="server"][0])')
$P lab exec --name benchperf default/server -- iperf3 -s -1 -D
sleep 0.3
overlay=$($P lab exec --name benchperf default/client -- iperf3 -c "$sip" -t 5 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
$P lab down --name benchperf >/dev/null

ip netns add podnet-benchveth-a; ip netns add podnet-benchveth-b
ip -n podnet-benchveth-a link add eth0 type veth peer name eth0 netns podnet-benchveth-b
ip -n podnet-benchveth-a addr add 10.99.0.1/24 dev eth0; ip -n podnet-benchveth-a link set eth0 up
ip -n podnet-benchveth-b addr add 10.99.0.2/24 dev eth0; ip -n podnet-benchveth-b link set eth0 up
ip netns exec podnet-benchveth-b iperf3 -s -1 -D
sleep 0.3
veth=$(ip netns exec podnet-benchveth-a iperf3 -c 10.99.0.2 -t 5 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
ratio=$(python3 -c "print(f'{$overlay/$veth:.2f}')")
printf 'iperf3 TCP, 5 s: cross-node pod to pod over VXLAN %.2f Gbit/s; plain veth %.2f Gbit/s; ratio %sx\n' "$overlay" "$veth" "$ratio"
