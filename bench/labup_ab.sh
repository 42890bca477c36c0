#!/usr/bin/env bash
# A/B of `lab up` (3 nodes x 300 pods) and `lab down` between two podnet binaries, interleaved
# in the same run: bench/labup_ab.sh <podnet A> <podnet B> (ROUNDS=3). As root; everything runs
# in namespaces named podnet-*.
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2"); ROUNDS=${ROUNDS:-3}
cd "$(dirname "$0")/.."
cleanup() { "$A" lab down --name benchab >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup   # leftovers of an interrupted run
t() { python3 -c "import time; print(time.time())"; }
for r in $(seq 1 "$ROUNDS"); do
  for which in A B; do
    P=${!which}
    s=$(t); "$P" lab up --name benchab --nodes 3 -f bench/web-300.yaml >/dev/null; e=$(t)
    s2=$(t); "$P" lab down --name benchab >/dev/null; e2=$(t)
    python3 -c "print(f'round $r $which up {$e-$s:.2f} s down {$e2-$s2:.2f} s')"
  done
done
