#!/usr/bin/env bash
# CNI ADD and DEL latency, p50 and p99 over 100 pods: podnet-cni against the reference bridge +
# host-local plugins (Debian's containernetworking-plugins), in the same run. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet-cni --bin podnet-cni --example cni_latency
target/release/examples/cni_latency target/release/podnet-cni "${1:-100}" /usr/lib/cni
