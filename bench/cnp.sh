#!/usr/bin/env bash
# ClusterNetworkPolicy benchmarks (issue 27), as root:
#  1. the NetworkPolicy bench's node (10,000 pods, 1,000 policies) with 100 ClusterNetworkPolicies
#     on top (50 Admin, 50 Baseline; rules of alternating actions, so that no runs of rules merge):
#     compile, render and load the table cold, and one pod's labels change (RUNS times);
#  2. the cost per connection: a server pod that 1,000 NetworkPolicies (10,000 ipBlocks) and
#     100 ClusterNetworkPolicies select (each with a Deny and a Pass that the client does not
#     match: 100 alternating Admin rules before NetworkPolicy allows it), the client's
#     egress through 100 alternating Baseline rules, against the same pods with no policy; interleaved
#     in both orders (ABBA), ROUNDS rounds. First connection (median of 2000 connects) and
#     iperf3 TCP throughput (5 s).
# Everything runs in namespaces of its own; the host's namespace is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet-node --example policy_bench
cargo build --release -q -p podnet
tmp=$(mktemp -d)
P=target/release/podnet
lab=benchcnp
cleanup() { rm -rf "$tmp"; $P lab down --name $lab >/dev/null 2>&1 || true; }
trap cleanup EXIT
for run in $(seq "${RUNS:-3}"); do
  echo "run $run:"
  target/release/examples/policy_bench "$tmp" "${PER_APP:-100}" "${POLICIES:-1000}" "${CLUSTER:-100}"
done
[ "${PARTS:-all}" = "load" ] && exit 0

$P lab down --name $lab >/dev/null 2>&1 || true
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
for c in range(100):
    if c % 2 == 0:
        # Admin, on the server: a Deny and a Pass of pods the client is not.
        docs.append(f"apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: admin{c}}}\nspec:\n  tier: Admin\n  priority: {c}\n  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: srv}}}}}}}}\n  ingress:\n  - {{name: deny, action: Deny, from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: x{c}}}}}}}}}]}}\n  - {{name: pass, action: Pass, from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: y{c}}}}}}}}}]}}\n")
    else:
        # Baseline, on the client: a Deny of networks and an Accept of ports that are not its.
        docs.append(f"apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: base{c}}}\nspec:\n  tier: Baseline\n  priority: {c}\n  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: cli}}}}}}}}\n  egress:\n  - {{name: deny, action: Deny, to: [{{networks: [192.168.{c}.0/24]}}]}}\n  - {{name: accept, action: Accept, to: [{{networks: [10.0.0.0/8]}}], protocols: [{{tcp: {{destinationPort: {{number: {20000 + c}}}}}}}]}}\n")
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
for round in $(seq "${ROUNDS:-3}"); do
  if [ $((round % 2)) = 1 ]; then none; many; else many; none; fi
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ln=$(med "${lat_none[@]}"); lm=$(med "${lat_many[@]}"); bn=$(med "${bw_none[@]}"); bm=$(med "${bw_many[@]}")
echo "first connection, median of ${ROUNDS:-3} runs of 2000: no policy ${ln} us (${lat_none[*]}); 1,000 NetworkPolicies and 100 ClusterNetworkPolicies ${lm} us (${lat_many[*]}); ratio $(python3 -c "print(f'{$lm/$ln:.3f}')")x"
echo "iperf3 TCP 5 s, median of ${ROUNDS:-3}: no policy ${bn} Gbit/s (${bw_none[*]}); with the policies ${bm} Gbit/s (${bw_many[*]}); ratio $(python3 -c "print(f'{$bm/$bn:.3f}')")x"
