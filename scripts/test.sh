#!/usr/bin/env bash
# The test suite: formatting, lints and every test of the workspace.
set -euo pipefail
# A fresh clone gains nothing from incremental compilation, and its caches fill the disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
cd "$(dirname "$0")/.."
scripts/install-deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
host=$(mktemp)
scripts/host-check.sh snapshot "$host"
cargo test --workspace
# The lab's tests again with every pair of nodes over the VXLAN overlay (the run above routes
# the lab's nodes natively: they share one subnet, and routing is auto by default).
echo "== the lab's tests over VXLAN (PODNET_LAB_ROUTING=vxlan)"
PODNET_LAB_ROUTING=vxlan cargo test -p podnet --test lab
echo "== the host after the tests"
scripts/host-check.sh compare "$host"
rm -f "$host"
