#!/usr/bin/env bash
# gRPC and TLS passthrough through the Gateway (issue 26): see bench/grpc_tls_bench.py.
# Everything listens on 127.0.0.1; nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null && command -v h2load >/dev/null && command -v curl >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light nghttp2-client curl >/dev/null
}
cargo build --release -q -p podnet-gateway --example edge_bench
ulimit -n "$(ulimit -Hn)"
exec python3 bench/grpc_tls_bench.py "$PWD/target/release/examples/edge_bench" \
  "${SECS:-5}" "${ROUNDS:-4}"
