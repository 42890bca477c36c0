#!/usr/bin/env bash
# How fast the lab's kube-dns follows `lab apply` (issue 5: a new or changed Service or endpoint
# is answered within 100 ms). Needs root. A lab from the seeds' examples plus ${EXTRA} Services;
# then ${ROUNDS} times: `lab apply` with one more Service, and one query for it from the client
# pod right after apply returns. Reported:
#  - the whole `lab apply` (model, proxy on every node, state, DNS reload), start to return;
#  - the DNS pods' reload alone (serve.log: new state read, zone built, swapped in);
#  - how many of the first queries after apply returned the new Service's address.
# Every round ends by removing the Service again (a second apply), whose name must then be
# NXDOMAIN at once. Namespaces are podnet-dnslive-*; the host's namespace is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet
P=$PWD/target/release/podnet
EXTRA=${EXTRA:-200}; ROUNDS=${ROUNDS:-20}
LAB=dnslive
tmp=$(mktemp -d)
cleanup() { $P lab down --name $LAB >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
$P lab down --name $LAB >/dev/null 2>&1 || true

cp examples/seeds/*.yaml "$tmp/"
python3 - "$EXTRA" > "$tmp/extra.yaml" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: extra-{i}}}\n"
          f"spec: {{selector: {{app: my-app}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}")
PY
$P lab up --name $LAB -f "$tmp" >/dev/null
log=/run/podnet/$LAB/serve.log
ms() { python3 -c "print(f'{($2 - $1) / 1e6:.1f}')"; }
applies=(); removes=(); first_ok=0; gone_ok=0
for i in $(seq "$ROUNDS"); do
  printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: live-%s}\nspec: {selector: {app: my-app}, ports: [{name: http, port: 80, targetPort: 8080}]}\n' "$i" > "$tmp/live.yaml"
  t0=$(date +%s%N); $P lab apply --name $LAB -f "$tmp" >/dev/null; t1=$(date +%s%N)
  got=$($P lab exec --name $LAB default/client -- dig +short +time=1 +tries=1 "live-$i.default.svc.cluster.local")
  want=$($P check -f "$tmp" -o json 2>/dev/null | python3 -c "import json,sys; print([s['clusterIPs'][0] for s in json.load(sys.stdin)['services'] if s['name']=='live-$i'][0])")
  [ "$got" = "$want" ] && first_ok=$((first_ok + 1))
  applies+=("$(ms "$t0" "$t1")")
  rm "$tmp/live.yaml"
  t0=$(date +%s%N); $P lab apply --name $LAB -f "$tmp" >/dev/null; t1=$(date +%s%N)
  $P lab exec --name $LAB default/client -- dig +time=1 +tries=1 "live-$i.default.svc.cluster.local" | grep -q "status: NXDOMAIN" && gone_ok=$((gone_ok + 1))
  removes+=("$(ms "$t0" "$t1")")
done
reloads=$(grep -o 'done in [0-9.]* ms' "$log" | awk '{print $3}' | tail -n $((2 * ROUNDS)))
stats() { python3 -c '
import sys
v = sorted(float(x) for x in sys.argv[1:])
print(f"{v[len(v) // 2]:.1f} ms | {v[-1]:.1f} ms")' "$@"; }
echo "lab: the seeds' examples + $EXTRA Services; $ROUNDS rounds"
echo
echo "| | median | max |"
echo "|---|---|---|"
echo "| \`lab apply\` adding a Service, start to return | $(stats "${applies[@]}") |"
echo "| \`lab apply\` removing it | $(stats "${removes[@]}") |"
echo "| the DNS pods' reload alone (serve.log) | $(stats $reloads) |"
echo
echo "first query after apply returned: new Service answered $first_ok/$ROUNDS, removed one NXDOMAIN $gone_ok/$ROUNDS"
