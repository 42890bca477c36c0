#!/usr/bin/env bash
# CNI ADD latency with the wait for the node's agent (issue 20), needs root. A lab of 3 nodes
# and one pod under a NetworkPolicy; `lab apply` then scales it to N+1 replicas: N pods
# created one at a time, each CNI ADD returning only once its node's agent has read back the
# pod's policy entries from the kernel. The same in the same run with `--no-agents` (the lab
# programs the nodes itself: the ADD does not wait), for the ratio. Prints p50 / p99 / max of
# each new pod's namespace + ADD time, per run, and the agents' own wait (their histogram's
# mean). RUNS runs (default 3), N pods each (default 100).
#   [PODNET_BIN=<podnet>] bench/cni_wait.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# PODNET_BIN=<podnet> measures that build instead of building this tree's (an A/B between
# builds: run the script once with each).
if [ -z "${PODNET_BIN:-}" ]; then
  cargo build --release -q -p podnet
fi
P=${PODNET_BIN:-target/release/podnet}
n=${1:-100}
runs=${2:-3}
dir=$(mktemp -d /tmp/podnet-cni-wait.XXXXXX)
trap 'rm -rf "$dir"; $P lab down --name benchcni >/dev/null 2>&1 || true' EXIT
manifest() {
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: $1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 8080}]}]
EOF
}
manifest 1 >"$dir/one.yaml"
manifest $((n + 1)) >"$dir/many.yaml"
stats() {
  python3 -c '
import re, sys
ms = sorted(float(m) for m in re.findall(r"CNI ADD: ([0-9.]+) ms", sys.stdin.read()))
if not ms:
    sys.exit("no pod was created")
q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
print(f"{len(ms)} pods: p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {ms[-1]:.2f} ms")
'
}
for run in $(seq 1 "$runs"); do
  for mode in agents no-agents; do
    extra=()
    [ "$mode" = no-agents ] && extra=(--no-agents)
    $P lab up --name benchcni -f "$dir/one.yaml" "${extra[@]}" >/dev/null
    out=$($P lab apply --name benchcni -f "$dir/many.yaml")
    line=$(echo "$out" | stats)
    wait=""
    if [ "$mode" = agents ]; then
      wait=$(for node in node-0 node-1 node-2; do
        $P lab exec --name benchcni "node/$node" -- curl -s http://127.0.0.1:9641/metrics
      done | python3 -c '
import sys
s = c = 0.0
for l in sys.stdin:
    if l.startswith("podnet_agent_cni_add_wait_seconds_sum "): s += float(l.split()[1])
    if l.startswith("podnet_agent_cni_add_wait_seconds_count "): c += float(l.split()[1])
print(f"; the agents waited {s / c * 1e3:.2f} ms on average over {int(c)} ADDs")
')
    fi
    echo "run $run, $mode: $line$wait"
    $P lab down --name benchcni >/dev/null
  done
done
