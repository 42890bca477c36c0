#!/usr/bin/env bash
# Cross-node pod-to-pod TCP (issue 24), as root: podnet's lab against the same hops built by
# hand with no podnet rules at all, and against one plain veth pair, in the same run, the
# variants taking turns in each round; prints every round, the median and the worst.
#   hand-built: two "node" namespaces joined by a veth pair (the underlay, MTU 1500), a "pod"
#   namespace behind each on a veth pair, static routes only:
#     vxlan-nocsum   VXLAN (MTU 1450) without outer UDP checksums (the kernel's default)
#     vxlan-csum     VXLAN with outer UDP checksums (the receiver can aggregate: GRO)
#     native         no encapsulation: each node routes the other's pod range via its address
#   veth             one veth pair between two namespaces
#   podnet-native    `podnet lab up --routing native`, a pod on node-0 to a pod on node-1
#   podnet-vxlan     `podnet lab up --routing vxlan`, the same over the overlay
# Throughput: iperf3 SECS s (Gbit/s). Request/response: sockperf ping-pong over one TCP
# connection for SECS s, 64-byte messages (round trips per second). Everything runs in
# namespaces named podnet-ovl-* and podnet-benchovl; the host's network is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet
P=$PWD/target/release/podnet
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-5}
VARIANTS=${VARIANTS:-"veth vxlan-csum native podnet-native podnet-vxlan"}
command -v sockperf >/dev/null || { apt-get update -qq; apt-get install -y -qq sockperf >/dev/null; }
tmp=$(mktemp -d)
nss() { ip netns list | awk '/^podnet-ovl-/ {print $1}'; }
cleanup() {
  for ns in $(nss); do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; done
  $P lab down --name benchovl >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cleanup; tmp=$(mktemp -d)

x() { ip netns exec "$@"; }

# Two nodes and their pods, wired as $1 (vxlan-nocsum, vxlan-csum, native); the server pod's
# address is 10.250.1.2.
hand() {
  local mode=$1 mtu=1450
  [ "$mode" = native ] && mtu=1500
  for i in 0 1; do ip netns add podnet-ovl-n$i; ip netns add podnet-ovl-p$i; done
  ip -n podnet-ovl-n0 link add eth0 type veth peer name eth0 netns podnet-ovl-n1
  for i in 0 1; do
    local n=podnet-ovl-n$i p=podnet-ovl-p$i j=$((1 - i))
    x $n sysctl -qw net.ipv4.ip_forward=1
    ip -n $n link set lo up; ip -n $p link set lo up
    ip -n $n addr add 172.31.0.$((i + 1))/24 dev eth0; ip -n $n link set eth0 up
    ip -n $n link add pod type veth peer name eth0 netns $p
    ip -n $n link set pod mtu "$mtu" up; ip -n $n addr add 10.250.$i.1/24 dev pod
    ip -n $p link set eth0 mtu "$mtu" up; ip -n $p addr add 10.250.$i.2/24 dev eth0
    ip -n $p route add default via 10.250.$i.1
    if [ "$mode" = native ]; then
      ip -n $n route add 10.250.$j.0/24 via 172.31.0.$((j + 1)) dev eth0
    else
      local csum=noudpcsum
      [ "$mode" = vxlan-csum ] && csum=udpcsum
      ip -n $n link add vxlan0 type vxlan id 42 dstport 4789 local 172.31.0.$((i + 1)) dev eth0 nolearning $csum
      ip -n $n link set vxlan0 address 02:70:6e:00:00:0$i mtu 1450 up
      ip -n $n addr add 10.250.$i.0/32 dev vxlan0
      ip -n $n route add 10.250.$j.0/24 via 10.250.$j.0 dev vxlan0 onlink
      ip -n $n neigh add 10.250.$j.0 lladdr 02:70:6e:00:00:0$j dev vxlan0 nud permanent
      x $n bridge fdb append 02:70:6e:00:00:0$j dev vxlan0 dst 172.31.0.$((j + 1))
    fi
  done
}

gbps() { python3 -c 'import json,sys; b = json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]; print("%.2f" % (b / 1e9))'; }

# Round trips per second of a sockperf ping-pong run (its summary line).
rps() { python3 -c '
import re, sys
t = sys.stdin.read()
m = re.search(r"RunTime=([0-9.]+) sec; SentMessages=([0-9]+); ReceivedMessages=([0-9]+)", t)
print("%.0f" % (int(m.group(3)) / float(m.group(1))) if m else "nan")'; }

# One measurement of a variant, between two namespaces ($1 client, $2 server, run through
# $3: "x" or "lab") to address $4: "Gbit/s round-trips/s".
pair() {
  local run=$1 c=$2 s=$3 ip=$4 g r
  $run "$s" iperf3 -s -1 -D; $run "$s" sockperf server --tcp -i 0.0.0.0 -p 11111 --daemonize >/dev/null
  sleep 0.3
  g=$($run "$c" iperf3 -c "$ip" -t "$SECS" -J | gbps)
  r=$($run "$c" sockperf ping-pong --tcp -i "$ip" -p 11111 -t "$SECS" -m 64 2>&1 | rps)
  echo "$g $r"
}
lab() { $P lab exec --name benchovl "$1" -- "${@:2}"; }

measure() {
  local v=$1 out
  case $v in
    veth)
      ip netns add podnet-ovl-a; ip netns add podnet-ovl-b
      ip -n podnet-ovl-a link add eth0 type veth peer name eth0 netns podnet-ovl-b
      ip -n podnet-ovl-a addr add 10.99.0.1/24 dev eth0; ip -n podnet-ovl-a link set eth0 up
      ip -n podnet-ovl-b addr add 10.99.0.2/24 dev eth0; ip -n podnet-ovl-b link set eth0 up
      for n in a b; do ip -n podnet-ovl-$n link set lo up; done
      out=$(pair x podnet-ovl-a podnet-ovl-b 10.99.0.2);;
    podnet-*)
      $P lab up --name benchovl --routing "${v#podnet-}" -f bench/two-pods.yaml >/dev/null
      local sip
      sip=$($P lab status --name benchovl -o json | python3 -c 'import json,sys; print([p["ip"] for p in json.load(sys.stdin)["pods"] if p["name"]=="server"][0])')
      out=$(pair lab default/client default/server "$sip")
      $P lab down --name benchovl >/dev/null;;
    *)
      hand "$v"
      out=$(pair x podnet-ovl-p0 podnet-ovl-p1 10.250.1.2);;
  esac
  for ns in $(nss); do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns"; done
  echo "$out"
}

declare -A tput rr
for v in $VARIANTS; do tput[$v]=""; rr[$v]=""; done
for r in $(seq "$ROUNDS"); do
  # Who goes first turns from round to round.
  set -- $VARIANTS
  k=$(( (r - 1) % $# )); order="${*:k+1} ${*:1:k}"
  for v in $order; do
    read -r g q < <(measure "$v")
    echo "round $r $v: $g Gbit/s, $q round trips/s" >&2
    tput[$v]+=" $g"; rr[$v]+=" $q"
  done
done
# Each variant against the baselines, round by round (the ratio of each round's pair, as the
# variants of one round ran side by side), then the median and the worst round.
table() {
  local -n vals=$1; local unit=$2
  echo "| path ($unit) | median | rounds | / veth (median, worst) | / hand-built (median, worst) |"
  echo "|---|---|---|---|---|"
  for v in $VARIANTS; do
    local hand=""
    case $v in podnet-native) hand=${vals[native]:-};; podnet-vxlan) hand=${vals[vxlan-csum]:-};; esac
    # shellcheck disable=SC2086
    python3 - "$v" "${vals[veth]:-}" "$hand" ${vals[$v]} <<'PY'
import statistics, sys
v, veth, hand, vals = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), [float(x) for x in sys.argv[4:]]
def ratio(base):
    if not base: return "-"
    r = [a / float(b) for a, b in zip(vals, base)]
    return f"{statistics.median(r):.2f}x, {min(r):.2f}x"
m = statistics.median(vals)
fmt = (lambda x: f"{x:.2f}") if m < 1000 else (lambda x: f"{x:.0f}")
print(f"| {v} | {fmt(m)} | {', '.join(fmt(x) for x in vals)} | {ratio(veth)} | {ratio(hand)} |")
PY
  done
}
table tput "iperf3 ${SECS} s, Gbit/s"
echo
table rr "sockperf ping-pong ${SECS} s, 64 B, round trips/s"
