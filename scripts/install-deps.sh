#!/usr/bin/env bash
# Installs what podnet needs on a Debian machine (run as root). Idempotent: it only calls apt-get
# when a package is missing.
#   - build: a Rust toolchain (cargo) must already be on PATH; gcc for crates that build C.
#   - runtime and tests: nftables, iproute2 (ip, bridge), iputils-ping, curl, dnsutils (dig),
#     conntrack, python3 (test clients and bench scripts),
#     iperf3, and the CNI reference plugins (containernetworking-plugins) for side-by-side benches;
#     kubectl (Debian's kubernetes-client, unless a kubectl is already installed) for the lab's
#     Kubernetes API.
set -euo pipefail

packages=(ca-certificates gcc libc6-dev pkg-config python3 nftables iproute2 iputils-ping curl dnsutils iperf3 conntrack containernetworking-plugins)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is not on PATH; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
