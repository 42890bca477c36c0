#!/usr/bin/env bash
# The host's own network, to prove the tests leave it alone:
#   scripts/host-check.sh snapshot FILE   writes the root namespace's links, addresses, routes,
#                                          rules and nftables ruleset to FILE;
#   scripts/host-check.sh compare FILE     fails if they differ from FILE now, or if any podnet
#                                          namespace, /run/podnet entry, /etc/netns entry or
#                                          lab server process is left.
# Needs root (nft list ruleset); without it, it says why it checks nothing, and under CI=true
# that is a failure.
set -euo pipefail
what=$1 file=$2
if [ "$(id -u)" -ne 0 ]; then
  echo "host-check: SKIP: needs root to read the ruleset" >&2
  [ "${CI:-}" = true ] && { echo "host-check: skipped under CI=true" >&2; exit 1; }
  exit 0
fi
state() {
  echo "== links"; ip -d link show
  echo "== addresses"; ip addr show
  echo "== routes"; ip route show table all; ip -6 route show table all
  echo "== rules"; ip rule show; ip -6 rule show
  echo "== nftables"; nft list ruleset
}
case "$what" in
  snapshot) state > "$file" ;;
  compare)
    now=$(mktemp); state > "$now"
    if ! diff -u "$file" "$now"; then
      echo "host-check: the host's root namespace changed during the tests (diff above)" >&2
      rm -f "$now"; exit 1
    fi
    rm -f "$now"
    left=$( { ls /run/netns 2>/dev/null | grep '^podnet' || true; ls /etc/netns 2>/dev/null | grep '^podnet' || true; ls -A /run/podnet 2>/dev/null || true; pgrep -af ' lab serve --name ' || true; } )
    if [ -n "$left" ]; then
      echo "host-check: the tests left these behind:" >&2; echo "$left" >&2; exit 1
    fi
    echo "host-check: the root namespace is byte-identical to before; no podnet namespace, /run/podnet entry or lab process is left"
    ;;
  *) echo "usage: $0 snapshot|compare FILE" >&2; exit 2 ;;
esac
