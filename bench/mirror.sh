#!/usr/bin/env bash
# The cost of a 100% RequestMirror on the client's latency (issue 26): see bench/mirror_bench.py.
# Everything listens on 127.0.0.1; nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
}
cargo build --release -q -p podnet-gateway --example edge_bench
ulimit -n "$(ulimit -Hn)"
exec python3 bench/mirror_bench.py "$PWD/target/release/examples/edge_bench" \
  "${SECS:-5}" "${ROUNDS:-4}"
