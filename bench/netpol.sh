#!/usr/bin/env bash
# NetworkPolicy benchmarks (issue 11), as root:
#  1. compile the policy table of a node with 10,000 pods and 1,000 policies, and load it cold
#     with nft -f into a scratch namespace (goal: under 1 s together);
#  2. one pod's labels change: the transaction of set elements, loaded on top (goal: < 10 ms).
# Everything runs in a namespace named podnet-benchnp; the host's namespace is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet-policy --example policy_bench
tmp=$(mktemp -d)
ns=podnet-benchnp
cleanup() { rm -rf "$tmp"; ip netns del $ns 2>/dev/null || true; }
trap cleanup EXIT
ip netns del $ns 2>/dev/null || true
ms() { python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / 1e6:.1f}')" "$1" "$2"; }
target/release/examples/policy_bench "$tmp" "${PER_APP:-100}" "${POLICIES:-1000}"
ip netns add $ns
s=$(date +%s%N); ip netns exec $ns nft -f "$tmp/full.nft"; e=$(date +%s%N)
echo "cold load of the table (nft -f): $(ms "$s" "$e") ms ($(wc -c < "$tmp/full.nft") bytes)"
s=$(date +%s%N); ip netns exec $ns nft -f "$tmp/label.nft"; e=$(date +%s%N)
echo "one pod's labels change, one transaction (nft -f): $(ms "$s" "$e") ms ($(wc -l < "$tmp/label.nft") lines)"
