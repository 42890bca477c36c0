#!/bin/bash
# The agent process at 10,000 Services, 10,000 pods and 1,000 policies, two builds in turn:
# RSS once programmed, right after 100 events and 3 s later, and each event's latency.
# Usage: bench/agent_ab.sh <podnet A> <podnet B> [rounds, default 5]
# Needs root and the release example: cargo build --release -p podnet-agent --example agent_bench
set -euo pipefail
A=$1 B=$2 N=${3:-5}
bench=$(dirname "$0")/../target/release/examples/agent_bench
for i in $(seq 1 "$N"); do
  for b in A B; do
    bin=$A; [ "$b" = B ] && bin=$B
    out=$(PODNET_BIN=$bin "$bench" 10000 1000 200 2>&1)
    echo "$out" | grep -E 'from start to node-0|through the API|local pod.s labels' \
      | sed "s/^ */round $i $b: /"
  done
done
