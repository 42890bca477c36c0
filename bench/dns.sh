#!/usr/bin/env bash
# The cluster DNS benchmark (issue 5), side by side in the same run: podnet's DNS server
# (`podnet dns serve`) against Unbound 1.17 with the same records (local-data from
# `podnet check --dns`), both on loopback.
#  - Each server gets core 1 and one worker thread (Unbound: num-threads 1); dnsperf runs on
#    core 0. The servers run one after the other, twice, alternating.
#  - Throughput: dnsperf -c 4 -q 200 for ${SECS}s, the query mix of bench/dns_data.py (A, SRV,
#    PTR and NXDOMAIN search-path expansions).
#  - Latency: dnsperf -Q 10000 (a fixed 10k QPS) for ${SECS}s, p50/p99 from its per-response
#    latencies (-v).
#  - Memory: each server's RSS with ${MEM_N} Services loaded, minus its RSS with none.
# Only loopback is used; nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dnsperf >/dev/null && command -v unbound >/dev/null || { apt-get update -qq; apt-get install -y -qq dnsperf unbound >/dev/null; }
cargo build --release -q -p podnet
P=${PODNET_BIN:-$PWD/target/release/podnet}
N=${N:-1000}; MEM_N=${MEM_N:-10000}; SECS=${SECS:-10}
OURS=127.0.0.1:5301; UB_PORT=5302
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

python3 bench/dns_data.py manifests "$N" "$tmp/svc.yaml"
$P check -f "$tmp/svc.yaml" --dns > "$tmp/zone"
python3 bench/dns_data.py queries "$tmp/zone" "$tmp/queries"
python3 bench/dns_data.py unbound "$tmp/zone" "$tmp/local-data.conf"
n_records=$(grep -vc '^;' "$tmp/zone"); n_queries=$(wc -l < "$tmp/queries" | tr -d ' ')

unbound_conf() { # $1: local-data file
  cat <<CONF
server:
  interface: 127.0.0.1
  port: $UB_PORT
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$tmp"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-ip6: no
  module-config: "iterator"
  include: "$1"
remote-control:
  control-enable: no
CONF
}
unbound_conf "$tmp/local-data.conf" > "$tmp/unbound.conf"

wait_udp() { # $1 port: wait until the server answers
  for _ in $(seq 100); do dig @127.0.0.1 -p "$1" +time=1 +tries=1 dns-version.cluster.local TXT >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server on port $1 did not start" >&2; return 1
}
# Each sets $pid (no command substitution: the server must be a child of this shell).
start_ours() { taskset -c 1 $P dns serve -f "$1" --listen $OURS --threads 1 >/dev/null 2>&1 & pid=$!; pids+=("$pid"); wait_udp 5301; }
start_unbound() { taskset -c 1 unbound -c "$1" >/dev/null 2>&1 & pid=$!; pids+=("$pid"); wait_udp $UB_PORT; }
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

qps() { # $1 port -> queries per second
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$1" -d "$tmp/queries" -c 4 -q 200 -l "$SECS" 2>/dev/null | awk '/Queries per second/ {print $4}'
}
latency() { # $1 port -> "p50 p99 lost" in microseconds, at a fixed 10k QPS
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$1" -d "$tmp/queries" -Q 10000 -l "$SECS" -v 2>/dev/null \
    | python3 -c '
import sys
lat, lost, sent = [], 0, 0
for l in sys.stdin:
    w = l.split()
    if len(w) >= 4 and w[0] == ">":
        if w[1] == "T": lost += 1
        else: lat.append(float(w[-1]))
    elif "Queries sent:" in l: sent = int(l.split()[2])
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6
print(f"{pick(0.50):.0f} {pick(0.99):.0f} {lost} {sent}")'
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

declare -A Q L
for round in 1 2; do
  start_ours "$tmp/svc.yaml"; Q[ours$round]=$(qps 5301); L[ours$round]=$(latency 5301); stop "$pid"
  start_unbound "$tmp/unbound.conf"; Q[ub$round]=$(qps $UB_PORT); L[ub$round]=$(latency $UB_PORT); stop "$pid"
done

# Memory with MEM_N Services against none (the built-in Services only).
python3 bench/dns_data.py manifests "$MEM_N" "$tmp/mem.yaml"
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: ns0}\n' > "$tmp/empty.yaml"
$P check -f "$tmp/mem.yaml" --dns > "$tmp/mem.zone"; python3 bench/dns_data.py unbound "$tmp/mem.zone" "$tmp/mem.conf"
$P check -f "$tmp/empty.yaml" --dns > "$tmp/empty.zone"; python3 bench/dns_data.py unbound "$tmp/empty.zone" "$tmp/empty.conf"
unbound_conf "$tmp/mem.conf" > "$tmp/ub-mem.conf"; unbound_conf "$tmp/empty.conf" > "$tmp/ub-empty.conf"
python3 bench/dns_data.py queries "$tmp/mem.zone" "$tmp/queries"   # touch every record once
mem() { # $1 start function, $2 input, $3 port -> $kb
  $1 "$2"; taskset -c 0 dnsperf -s 127.0.0.1 -p "$3" -d "$tmp/queries" -n 1 >/dev/null 2>&1; kb=$(rss_kb "$pid"); stop "$pid"
}
mem start_ours "$tmp/mem.yaml" 5301; a=$kb; mem start_ours "$tmp/empty.yaml" 5301; m_ours=$((a - kb))
mem start_unbound "$tmp/ub-mem.conf" $UB_PORT; a=$kb; mem start_unbound "$tmp/ub-empty.conf" $UB_PORT; m_ub=$((a - kb))

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
echo "zone: $N Services ($n_records records); $n_queries distinct queries in the throughput mix"
echo
echo "| dnsperf, server on 1 core | podnet dns | Unbound $(unbound -V | awk 'NR==1 {print $2}') | podnet / Unbound |"
echo "|---|---|---|---|"
for round in 1 2; do
  echo "| max QPS, round $round | ${Q[ours$round]} | ${Q[ub$round]} | $(ratio "${Q[ours$round]}" "${Q[ub$round]}") |"
done
for round in 1 2; do
  read -r o50 o99 olost osent <<<"${L[ours$round]}"; read -r u50 u99 ulost usent <<<"${L[ub$round]}"
  echo "| at 10k QPS, round $round: p50 | ${o50} µs | ${u50} µs | $(ratio "$o50" "$u50") |"
  echo "| at 10k QPS, round $round: p99 | ${o99} µs | ${u99} µs | $(ratio "$o99" "$u99") |"
  echo "| at 10k QPS, round $round: lost / sent | ${olost} / ${osent} | ${ulost} / ${usent} | |"
done
echo "| RSS for $MEM_N Services ($(grep -vc '^;' "$tmp/mem.zone") records) | $((m_ours / 1024)) MiB | $((m_ub / 1024)) MiB | $(ratio "$m_ours" "$m_ub") |"
