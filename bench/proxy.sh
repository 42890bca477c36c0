#!/usr/bin/env bash
# The service proxy's benchmark (issue 4), as root, side by side in the same run:
#  1. cold load of 10k Services x 2 endpoints, and adding one Service at 10k, through `nft -f`:
#     podnet's ruleset against a kube-proxy-shaped one (3 chains per Service), each in a scratch
#     namespace of its own;
#  2. first-connection latency through a ClusterIP with 10k Services loaded, against 1 Service;
#  3. TCP throughput (iperf3, 5 s) through a ClusterIP against the pod IP directly, in a lab.
# Everything runs in namespaces named podnet-*; the host's namespace is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet
cargo build --release -q -p podnet-proxy --example ruleset
R=target/release/examples/ruleset
P=target/release/podnet
N=${N:-10000}
tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; for ns in podnet-benchp-ours podnet-benchp-kp podnet-benchp-lat; do ip netns del $ns 2>/dev/null || true; done; $P lab down --name benchproxy >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup; tmp=$(mktemp -d)   # leftovers of an interrupted run
ms() { python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / 1e6:.1f}')" "$1" "$2"; }

$R full "$N" 2 > "$tmp/ours-full.nft"; $R add-one "$N" 2 > "$tmp/ours-add.nft"
python3 bench/kube_proxy_shape.py full "$N" 2 > "$tmp/kp-full.nft"; python3 bench/kube_proxy_shape.py add-one "$N" 2 > "$tmp/kp-add.nft"
declare -A cold add
for which in ours kp; do
  ns=podnet-benchp-$which; ip netns add $ns
  s=$(date +%s%N); ip netns exec $ns nft -f "$tmp/$which-full.nft"; e=$(date +%s%N); cold[$which]=$(ms "$s" "$e")
  s=$(date +%s%N); ip netns exec $ns nft -f "$tmp/$which-add.nft"; e=$(date +%s%N); add[$which]=$(ms "$s" "$e")
done
echo "| ${N} Services x 2 endpoints, nft -f | podnet (maps, chains per endpoint count) | kube-proxy shape (3 chains per Service) | ratio |"
echo "|---|---|---|---|"
echo "| cold load | ${cold[ours]} ms | ${cold[kp]} ms | $(python3 -c "print(f'{${cold[ours]}/${cold[kp]}:.3f}x')") |"
echo "| add one Service at ${N} | ${add[ours]} ms | ${add[kp]} ms | $(python3 -c "print(f'{${add[ours]}/${add[kp]}:.3f}x')") |"

# 2. First-connection latency: 2000 sequential connects to the first Service's VIP, whose two
#    endpoints listen on lo, with N Services loaded, then with 1.
lat() {
  local ns=podnet-benchp-lat; ip netns add $ns
  ip -n $ns link set lo up; ip -n $ns addr add 10.244.0.2/32 dev lo; ip -n $ns addr add 10.244.0.3/32 dev lo
  ip -n $ns route add 10.96.0.0/16 dev lo
  $R full "$1" 2 > "$tmp/lat.nft"; ip netns exec $ns nft -f "$tmp/lat.nft"
  ip netns exec $ns python3 - <<'PY'
import socket, threading, time, statistics
def serve(ip):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((ip, 8080)); s.listen(1024)
    while True:
        c, _ = s.accept(); c.close()
for ip in ("10.244.0.2", "10.244.0.3"):
    threading.Thread(target=serve, args=(ip,), daemon=True).start()
time.sleep(0.2)
t = []
for _ in range(2000):
    a = time.perf_counter_ns(); c = socket.create_connection(("10.96.0.1", 80), timeout=2); t.append(time.perf_counter_ns() - a); c.close()
print(f"{statistics.median(t) / 1000:.1f}")
PY
  ip netns del $ns
}
# Interleaved, five times each, to keep the machine's drift out of the ratio.
many=(); one=()
for _ in 1 2 3 4 5; do one+=("$(lat 1)"); many+=("$(lat "$N")"); done
med() { python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
l_many=$(med "${many[@]}"); l_one=$(med "${one[@]}")
echo "| first connection through a ClusterIP (median of 5 runs of 2000) | ${l_many} µs with ${N} Services | ${l_one} µs with 1 Service | $(python3 -c "print(f'{${l_many}/${l_one}:.2f}x')") |"

# 3. Throughput through a ClusterIP against the pod IP, across nodes. The lab's test servers
# listen on every port a Service selects a pod on, so the Service reaches iperf3's port through
# an EndpointSlice of its own (no selector, no targetRef), written once the pod has its address.
cat > "$tmp/perf.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: iperf}}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-0, containers: [{name: c, image: x}]}
YAML
$P lab up --name benchproxy -f "$tmp/perf.yaml" >/dev/null
sip=$($P lab status --name benchproxy -o json | python3 -c 'import json,sys; print([p["ip"] for p in json.load(sys.stdin)["pods"] if p["name"]=="server"][0])')
cat >> "$tmp/perf.yaml" <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: iperf}
spec: {clusterIP: 10.96.52.1, ports: [{port: 5201}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: iperf-1, labels: {kubernetes.io/service-name: iperf}}
addressType: IPv4
ports: [{port: 5201}]
endpoints: [{addresses: [$sip]}]
YAML
$P lab apply --name benchproxy -f "$tmp/perf.yaml" >/dev/null
gbps() { $P lab exec --name benchproxy default/server -- iperf3 -s -1 -D; sleep 0.3; $P lab exec --name benchproxy default/client -- iperf3 -c "$1" -t 5 -J | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d.get("error"); sys.exit("iperf3: " + e) if e else print("%.2f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))'; }
# Interleaved, three times each; medians.
d=(); v=()
for _ in 1 2 3; do d+=("$(gbps "$sip")"); v+=("$(gbps 10.96.52.1)"); done
direct=$(med "${d[@]}"); viaip=$(med "${v[@]}")
echo "| iperf3 TCP across nodes (median of 3 runs of 5 s) | ${viaip} Gbit/s through the ClusterIP | ${direct} Gbit/s to the pod IP | $(python3 -c "print(f'{${viaip}/${direct}:.2f}x')") |"
