#!/usr/bin/env bash
# The demo: builds podnet and plans a cluster from the seeds' examples (examples/seeds): nodes
# with their podCIDRs, pods with their IPs, and Services with ClusterIPs and endpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet
echo "== podnet check -f examples/seeds"
target/release/podnet check -f examples/seeds
echo
echo "== the same plan as JSON (excerpt: my-service)"
target/release/podnet check -f examples/seeds -o json | python3 -c '
import json, sys
plan = json.load(sys.stdin)
svc = next(s for s in plan["services"] if s["name"] == "my-service")
print(json.dumps({k: svc[k] for k in ("name", "type", "clusterIPs", "ports")}, indent=2))
print("endpoints:", [e["addresses"][0] for sl in svc["endpointSlices"] for e in sl["endpoints"]])'
