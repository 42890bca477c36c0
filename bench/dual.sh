#!/usr/bin/env bash
# IPv6 against IPv4 in the same run (issue 23), as root, each measure ROUNDS times with the
# two families interleaved; prints every round, the median and the worst ratio:
#  1. the proxy's tables: cold load and one Service added at N Services x 2 endpoints, the way
#     the agent does both (`nft -f`; one netlink batch), IPv4 only (ip table), IPv6 only (ip6
#     table), and dual-stack (both tables, N Services in each), in scratch namespaces;
#  2. a dual-stack lab: cross-node pod-to-pod TCP throughput (iperf3, 5 s) over each family,
#     and the first connection (300 sequential connects over each family, taking turns) to a
#     pod on another node and to a ClusterIP;
#  3. the cluster DNS server: queries per second (dnsperf, the mix of bench/dns_data.py) of
#     a zone of N Services of an IPv4 cluster (A, in-addr.arpa) against the same of an IPv6
#     cluster (AAAA, ip6.arpa).
# Everything runs in namespaces named podnet-* and on loopback; the host's network is not
# touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v dnsperf >/dev/null || { apt-get update -qq; apt-get install -y -qq dnsperf >/dev/null; }
cargo build --release -q -p podnet
P=$PWD/target/release/podnet
N=${N:-10000}; ROUNDS=${ROUNDS:-3}; SECS=${SECS:-5}
ONLY=${ONLY:-}   # ONLY=proxy: the proxy's tables alone
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
  $P lab down --name benchdual >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup; tmp=$(mktemp -d)   # leftovers of an interrupted run
summary() { # label, lower|higher (which is better), v4 values, "--", v6 values: the median of
              # each, the IPv6/IPv4 ratio of each round, and the worst round's
  python3 - "$@" <<'PY'
import statistics, sys
label, better, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
cut = rest.index("--")
a, b = [float(x) for x in rest[:cut]], [float(x) for x in rest[cut + 1:]]
r = [y / x for x, y in zip(a, b)]
worst = max(r) if better == "lower" else min(r)
print(f"| {label} | {statistics.median(a):.2f} | {statistics.median(b):.2f} | "
      f"{statistics.median(r):.2f}x (rounds {', '.join(f'{x:.2f}' for x in r)}; worst {worst:.2f}x) |")
PY
}

# 1. The proxy's tables, through the node's own effects (crates/podnet-node/examples/
# proxy_family.rs): per round, LOADS cold loads of each family side by side and ADDS Services
# added after each; a single load varies by a third on this machine whichever the family, so a
# round's figure is the median of the ratios of the pairs measured side by side.
cargo build --release -q -p podnet-node --example proxy_family
"target/release/examples/proxy_family" "$N" "$ROUNDS" "${LOADS:-9}" "${ADDS:-10}" > "$tmp/proxy"
col() { awk -v f="$1" -v c="$2" '$1 == f { for (i = 2; i < NF; i += 2) if ($i == c) print $(i + 1) }' "$tmp/proxy" | tr '\n' ' '; }
ratios() { # label, values of IPv4, "--", values of the other, "--", the rounds' ratios
  python3 - "$@" <<'PY'
import statistics, sys
label, rest = sys.argv[1], sys.argv[2:]
a = [float(x) for x in rest[:rest.index("--")]]
rest = rest[rest.index("--") + 1:]
b = [float(x) for x in rest[:rest.index("--")]]
r = [float(x) for x in rest[rest.index("--") + 1:]]
print(f"| {label} | {statistics.median(a):.2f} | {statistics.median(b):.2f} | "
      f"{statistics.median(r):.2f}x (rounds {', '.join(f'{x:.2f}' for x in r)}; worst {max(r):.2f}x) |")
PY
}
echo "| measure | IPv4 | IPv6 | IPv6 / IPv4 |"
echo "|---|---|---|---|"
# shellcheck disable=SC2046
ratios "proxy cold load, $N Services x 2 (ms)" $(col ipv4 cold) -- $(col ipv6 cold) -- $(col ipv6 cold_ratio)
# shellcheck disable=SC2046
ratios "proxy: one Service added at $N (ms)" $(col ipv4 add) -- $(col ipv6 add) -- $(col ipv6 add_ratio)
# shellcheck disable=SC2046
ratios "proxy cold load, $N dual-stack Services (both tables) against IPv4 only (ms)" $(col ipv4 cold) -- $(col dual cold) -- $(col dual cold_ratio)
# shellcheck disable=SC2046
ratios "proxy: one dual-stack Service added at $N against IPv4 (ms)" $(col ipv4 add) -- $(col dual add) -- $(col dual add_ratio)

[ "$ONLY" = proxy ] && exit 0

# 2. A dual-stack lab: throughput and first connections, each family.
cat > "$tmp/perf.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-0, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ipFamilyPolicy: RequireDualStack, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
YAML
$P lab up --name benchdual --ip-family dual -f "$tmp/perf.yaml" >/dev/null
read -r s4 s6 < <($P lab status --name benchdual -o json | python3 -c 'import json,sys; print(*[p["ips"] for p in json.load(sys.stdin)["pods"] if p["name"]=="server"][0])')
read -r v4 v6 < <($P check -f "$tmp/perf.yaml" --ip-family dual -o json | python3 -c 'import json,sys; print(*[s["clusterIPs"] for s in json.load(sys.stdin)["services"] if s["name"]=="web"][0])')
iperf() { # $1 server address
  $P lab exec --name benchdual default/server -- iperf3 -s -1 -D -p 5202
  sleep 0.3
  $P lab exec --name benchdual default/client -- iperf3 -c "$1" -p 5202 -t "$SECS" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
}
pairs() { # $1 $2: IPv4 address and port, $3 $4: IPv6's; 300 sequential connects to each, taking
          # turns, in one process: the medians (µs) and the median of the ratios of the pairs
  $P lab exec --name benchdual default/client -- python3 -c "
import socket, time, statistics
def once(a, p):
    t = time.perf_counter_ns(); c = socket.create_connection((a, p), timeout=2); t = time.perf_counter_ns() - t; c.close(); return t
v4, v6 = [], []
for i in range(300):
    if i % 2: v6.append(once('$3', $4)); v4.append(once('$1', $2))
    else: v4.append(once('$1', $2)); v6.append(once('$3', $4))
print(f'{statistics.median(v4) / 1000:.1f} {statistics.median(v6) / 1000:.1f} {statistics.median(b / a for a, b in zip(v4, v6)):.3f}')"
}
t4=""; t6=""; p4=""; p6=""; pr=""; c4=""; c6=""; cr=""
for _ in $(seq "$ROUNDS"); do
  t4+=" $(iperf "$s4")"; t6+=" $(iperf "$s6")"
  read -r a b r < <(pairs "$s4" 8080 "$s6" 8080); p4+=" $a"; p6+=" $b"; pr+=" $r"
  read -r a b r < <(pairs "$v4" 80 "$v6" 80); c4+=" $a"; c6+=" $b"; cr+=" $r"
done
$P lab down --name benchdual >/dev/null
# shellcheck disable=SC2086
summary "cross-node pod to pod, iperf3 ${SECS} s (Gbit/s; the ratio: higher is better)" higher $t4 -- $t6
# shellcheck disable=SC2086
ratios "first connection to a pod on another node (µs; the connects of each family taking turns)" $p4 -- $p6 -- $pr
# shellcheck disable=SC2086
ratios "first connection through a ClusterIP to a pod on another node (µs; taking turns)" $c4 -- $c6 -- $cr

# 3. DNS: A against AAAA.
python3 bench/dns_data.py manifests 1000 "$tmp/svc.yaml"
$P check -f "$tmp/svc.yaml" --ip-family ipv4 --dns > "$tmp/zone4"
$P check -f "$tmp/svc.yaml" --ip-family ipv6 --dns > "$tmp/zone6"
python3 bench/dns_data.py queries "$tmp/zone4" "$tmp/queries4"
python3 bench/dns_data.py queries "$tmp/zone6" "$tmp/queries6"
wait_udp() {
  for _ in $(seq 100); do dig @127.0.0.1 -p 5311 +time=1 +tries=1 dns-version.cluster.local TXT >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the DNS server did not start" >&2; return 1
}
qps() { # $1 the cluster's family, $2 queries: the server computes its zone from the manifests
  taskset -c 1 $P dns serve -f "$tmp/svc.yaml" --ip-family "$1" --listen 127.0.0.1:5311 --threads 1 >/dev/null 2>&1 & pid=$!; pids+=("$pid")
  wait_udp
  taskset -c 0 dnsperf -s 127.0.0.1 -p 5311 -d "$2" -c 4 -q 200 -l "$SECS" 2>/dev/null | awk '/Queries per second/ {print $4}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
q4=""; q6=""
for _ in $(seq "$ROUNDS"); do
  q4+=" $(qps ipv4 "$tmp/queries4")"; q6+=" $(qps ipv6 "$tmp/queries6")"
done
# shellcheck disable=SC2086
summary "DNS queries per second, 1000 Services' zone (A and in-addr.arpa against AAAA and ip6.arpa; higher is better)" higher $q4 -- $q6
