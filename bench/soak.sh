#!/usr/bin/env bash
# The soak (issue 20), needs root: CYCLES (default 100) whole lab lives of the seeds with both
# cores kept busy: `lab up`, every pod probed against every pod and held against the static
# answer, `lab apply` of a change (my-app scaled, the frontends isolated by a new policy),
# probed again, `lab down`. The same test as the suite's (10 cycles there), run longer.
#   bench/soak.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cycles=${1:-100}
PODNET_SOAK_CYCLES=$cycles cargo test -q -p podnet --test lab soak -- --nocapture 2>&1 \
  | grep -E '^soak:|panicked|test result' 
