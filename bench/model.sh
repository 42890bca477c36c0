#!/usr/bin/env bash
# Issue 2's benchmark: building the model for 10k pods (1k Deployments × 10 replicas on 50
# nodes), 2k Services and 50k endpoints. Goal: under 200 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p podnet-model --features k8s-openapi/latest --bench model 2>&1 | grep -E "^model|^model/|time:"
