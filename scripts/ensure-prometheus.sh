#!/usr/bin/env bash
# Makes `prometheus` and `promtool` available (Debian's `prometheus` package) for the
# observability tests. Idempotent: does nothing when both are on PATH. Installs only as root with
# apt-get; the Debian service it brings is not started. Exit 1 when they cannot be had (the test
# then skips, loudly).
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-prometheus: prometheus/promtool not found and cannot install them (need root and apt-get): apt-get install prometheus" >&2
  exit 1
fi
echo "ensure-prometheus: installing Debian's prometheus package" >&2
# The package's maintainer scripts would start a system Prometheus on :9090; policy-rc.d says no.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  added_policy=1
fi
cleanup() { if [ "$added_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
