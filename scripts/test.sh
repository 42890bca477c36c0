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
echo "== the host after the tests"
scripts/host-check.sh compare "$host"
rm -f "$host"
