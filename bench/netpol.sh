#!/usr/bin/env bash
# NetworkPolicy benchmarks (issue 11), as root:
#  1. compile the policy table of a node with 10,000 pods and 1,000 policies, and load it cold
#     with nft -f into a scratch namespace (goal: under 1 s together);
#  2. one pod's labels change: the transaction of set elements, loaded on top (goal: < 10 ms).
# Everything runs in a namespace named podnet-benchnp; the host's namespace is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet-node --example policy_bench
tmp=$(mktemp -d)
ns=podnet-benchnp
cleanup() { rm -rf "$tmp"; ip netns del $ns 2>/dev/null || true; }
trap cleanup EXIT
ip netns del $ns 2>/dev/null || true
ms() { python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / 1e6:.1f}')" "$1" "$2"; }
target/release/examples/policy_bench "$tmp" "${PER_APP:-100}" "${POLICIES:-1000}"
ip netns add $ns
# Timed inside the namespace, as podnet's applier runs nft (from a thread already in it):
# `ip netns exec` itself costs about 4 ms, which is not the dataplane's.
nft_ms() { ip netns exec $ns python3 -c 'import subprocess, sys, time; t = time.perf_counter(); subprocess.run(["nft", "-f", sys.argv[1]], check=True); print(f"{(time.perf_counter() - t) * 1e3:.1f}")' "$1"; }
echo "cold load of the table (nft -f): $(nft_ms "$tmp/full.nft") ms ($(wc -c < "$tmp/full.nft") bytes)"
echo "for comparison, the same label change by a process of its own (nft -f, which waits at exit for the kernel to free what it deleted): $(nft_ms "$tmp/label.nft") ms ($(wc -l < "$tmp/label.nft") lines)"
echo "add element ip podnet-policy local { 10.9.0.0/24 }" > "$tmp/one.nft"
echo "for comparison, one element alone (nft -f): $(nft_ms "$tmp/one.nft") ms"

[ "${PARTS:-all}" = "load" ] && exit 0

# 3. The cost per connection: a server pod that 1,000 policies select, with 10,000 ipBlock
#    entries among their peers (and the client allowed by one of them), against the same pod
#    with no policy; interleaved, in one lab. First-connection latency (median of 2000
#    sequential connects) and iperf3 TCP throughput (5 s).
P=target/release/podnet
cargo build --release -q -p podnet
lab=benchnpc
$P lab down --name $lab >/dev/null 2>&1 || true
trap 'cleanup; $P lab down --name $lab >/dev/null 2>&1 || true' EXIT
cat > "$tmp/base.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: srv, labels: {app: srv}}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: cli, labels: {app: cli}}
spec: {nodeName: node-0, containers: [{name: c, image: x}]}
YAML
python3 - "$tmp/base.yaml" "$tmp/policies.yaml" <<'PY'
import sys
base, out = sys.argv[1], sys.argv[2]
docs = [open(base).read()]
for p in range(1000):
    blocks = "".join(f"    - ipBlock: {{cidr: 100.{p // 100}.{p % 100 * 2}.{b * 16}/28}}\n" for b in range(10))
    docs.append(f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{p}}}\nspec:\n  podSelector: {{matchLabels: {{app: srv}}}}\n  ingress:\n  - from:\n{blocks}    ports: [{{port: {9000 + p}}}]\n")
docs.append("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-cli}\nspec:\n  podSelector: {matchLabels: {app: srv}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: cli}}}]}]\n")
open(out, "w").write("\n---\n".join(docs))
PY
$P lab up --name $lab -f "$tmp/base.yaml" >/dev/null
srv=$($P lab status --name $lab -o json | python3 -c 'import json,sys; print([p["ip"] for p in json.load(sys.stdin)["pods"] if p["name"]=="srv"][0])')
latency() {
  $P lab exec --name $lab default/cli -- python3 -c "
import socket, time, statistics
t = []
for _ in range(2000):
    a = time.perf_counter_ns(); c = socket.create_connection(('$srv', 8080), timeout=2); t.append(time.perf_counter_ns() - a); c.close()
print(f'{statistics.median(t) / 1000:.1f}')"
}
throughput() {
  $P lab exec --name $lab default/srv -- iperf3 -s -1 -D
  sleep 0.3
  $P lab exec --name $lab default/cli -- iperf3 -c "$srv" -t 5 -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
declare -a lat_none lat_many bw_none bw_many
none() { $P lab apply --name $lab -f "$tmp/base.yaml" >/dev/null; lat_none+=("$(latency)"); bw_none+=("$(throughput)"); }
many() { $P lab apply --name $lab -f "$tmp/policies.yaml" >/dev/null; lat_many+=("$(latency)"); bw_many+=("$(throughput)"); }
# Interleaved, and in both orders (ABBA), so that drift over the run favours neither.
for round in $(seq "${ROUNDS:-3}"); do
  if [ $((round % 2)) = 1 ]; then none; many; else many; none; fi
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ln=$(med "${lat_none[@]}"); lm=$(med "${lat_many[@]}"); bn=$(med "${bw_none[@]}"); bm=$(med "${bw_many[@]}")
echo "first connection, median of ${ROUNDS:-3} runs of 2000: no policy ${ln} us (${lat_none[*]}); 1,000 policies and 10,000 ipBlocks ${lm} us (${lat_many[*]}); ratio $(python3 -c "print(f'{$lm/$ln:.3f}')")x"
echo "iperf3 TCP 5 s, median of ${ROUNDS:-3}: no policy ${bn} Gbit/s (${bw_none[*]}); 1,000 policies ${bm} Gbit/s (${bw_many[*]}); ratio $(python3 -c "print(f'{$bm/$bn:.3f}')")x"
