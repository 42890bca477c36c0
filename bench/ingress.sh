#!/usr/bin/env bash
# The Ingress proxy benchmark (issue 13), side by side in the same run: podnet's edge proxy
# (the `Edge` that `podnet ingress watch` runs, bench example `edge_bench ingress`) against nginx
# 1.22 and HAProxy 2.6 from Debian, configured alike:
#  - one worker on core 1 each (nginx: worker_processes 1; HAProxy: nbthread 1; podnet: one
#    tokio worker), no access log, keep-alive to the backend (nginx: upstream keepalive;
#    HAProxy: http-reuse always; podnet: its pools), the same ECDSA P-256 certificate, the same
#    forwarded headers (X-Forwarded-For/-Proto/-Host/-Port, X-Real-IP, X-Request-ID);
#  - the backend: another nginx on core 0 answering 200 "hello" from memory;
#  - the load on core 0: wrk (HTTP/1.1, plain and TLS) and h2load (HTTP/2 over TLS) at 1, 16
#    and 256 connections for ${SECS}s each, the three proxies in turn, ${ROUNDS} rounds;
#  - memory: each proxy's RSS with ${IDLE} (9,000: the machine's descriptor limit is 20,000 and
#    HAProxy wants two per connection) idle keep-alive connections (each served one request)
#    minus its RSS before.
# Everything listens on 127.0.0.1; nothing else is touched. Needs no root (but ulimit -n).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null && command -v haproxy >/dev/null && command -v wrk >/dev/null \
  && command -v h2load >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy wrk nghttp2-client >/dev/null
}
cargo build --release -q -p podnet-gateway --example edge_bench
ulimit -n "$(ulimit -Hn)"  # 10,000 idle connections need as many descriptors
# BASELINE=<edge_bench of another build> adds it to the rounds, for an A/B.
exec python3 bench/ingress_bench.py "$PWD/target/release/examples/edge_bench" \
  "${SECS:-8}" "${ROUNDS:-1}" "${IDLE:-9000}"
