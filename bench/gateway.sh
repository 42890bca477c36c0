#!/usr/bin/env bash
# The Gateway path against the Ingress path (issue 14), side by side in the same run: the same
# edge proxy (bench example `edge_bench`), its configuration computed from manifests by the
# Ingress controller's function (an Ingress) or the Gateway's (a Gateway and an HTTPRoute),
# one route for every host and path to one backend; both run on core 1, loaded in turn:
#  - the backend: nginx on core 0 answering 200 "hello" from memory;
#  - the load on core 0: wrk (HTTP/1.1, plain and TLS) and h2load (HTTP/2 over TLS) at 1, 16
#    and 256 connections for ${SECS}s each, ingress and gateway alternating point by point
#    (the order swapped every round), ${ROUNDS} rounds.
# Everything listens on 127.0.0.1; nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null && command -v wrk >/dev/null && command -v h2load >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk nghttp2-client >/dev/null
}
cargo build --release -q -p podnet-gateway --example edge_bench
ulimit -n "$(ulimit -Hn)"
exec python3 bench/gateway_bench.py "$PWD/target/release/examples/edge_bench" \
  "${SECS:-5}" "${ROUNDS:-2}"
