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
#   podnet           `podnet lab up`, a pod on node-0 to a pod on node-1
# Throughput: iperf3 SECS s (Gbit/s). Everything runs in namespaces named podnet-ovl-* and
# podnet-benchovl; the host's network is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet
P=$PWD/target/release/podnet
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-5}
VARIANTS=${VARIANTS:-"veth vxlan-nocsum vxlan-csum native podnet"}
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

# One measurement of a variant: Gbit/s.
measure() {
  local v=$1 out
  case $v in
    veth)
      ip netns add podnet-ovl-a; ip netns add podnet-ovl-b
      ip -n podnet-ovl-a link add eth0 type veth peer name eth0 netns podnet-ovl-b
      ip -n podnet-ovl-a addr add 10.99.0.1/24 dev eth0; ip -n podnet-ovl-a link set eth0 up
      ip -n podnet-ovl-b addr add 10.99.0.2/24 dev eth0; ip -n podnet-ovl-b link set eth0 up
      x podnet-ovl-b iperf3 -s -1 -D; sleep 0.3
      out=$(x podnet-ovl-a iperf3 -c 10.99.0.2 -t "$SECS" -J | gbps);;
    podnet)
      $P lab up --name benchovl -f bench/two-pods.yaml >/dev/null
      local sip
      sip=$($P lab status --name benchovl -o json | python3 -c 'import json,sys; print([p["ip"] for p in json.load(sys.stdin)["pods"] if p["name"]=="server"][0])')
      $P lab exec --name benchovl default/server -- iperf3 -s -1 -D; sleep 0.3
      out=$($P lab exec --name benchovl default/client -- iperf3 -c "$sip" -t "$SECS" -J | gbps)
      $P lab down --name benchovl >/dev/null;;
    *)
      hand "$v"
      x podnet-ovl-p1 iperf3 -s -1 -D; sleep 0.3
      out=$(x podnet-ovl-p0 iperf3 -c 10.250.1.2 -t "$SECS" -J | gbps);;
  esac
  for ns in $(nss); do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns"; done
  echo "$out"
}


declare -A got
for v in $VARIANTS; do got[$v]=""; done
for r in $(seq "$ROUNDS"); do
  # Who goes first turns from round to round.
  set -- $VARIANTS
  k=$(( (r - 1) % $# )); order="${*:k+1} ${*:1:k}"
  for v in $order; do got[$v]+=" $(measure "$v")"; done
done
echo "| path (iperf3 ${SECS} s, Gbit/s) | median | rounds | median / veth |"
echo "|---|---|---|---|"
for v in $VARIANTS; do
  # shellcheck disable=SC2086
  python3 - "$v" "${got[veth]:-}" ${got[$v]} <<'PY'
import statistics, sys
v, base, vals = sys.argv[1], sys.argv[2].split(), [float(x) for x in sys.argv[3:]]
m = statistics.median(vals)
ratio = f"{m / statistics.median(map(float, base)):.2f}x" if base else "-"
print(f"| {v} | {m:.2f} | {', '.join(f'{x:.2f}' for x in vals)} | {ratio} |")
PY
done
