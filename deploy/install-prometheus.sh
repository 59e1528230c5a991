#!/usr/bin/env bash
# Prometheus and promtool for tests/deploy/test_prometheus.py, from Debian's `prometheus` package.
# Called by `make setup`. Installs only as root with apt-get; otherwise says how and exits 0:
# setup never fails because of it (the test skips without Prometheus, except under CI=... where it fails).
set -u
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: Prometheus not installed (the scrape test will skip); as root: apt-get install prometheus" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; }
# The package's service is not started (no systemd in containers; policy-rc.d where there is one).
if ! install; then
    apt-get update -qq >/dev/null 2>&1 || true
    install || echo "note: apt-get install prometheus failed; the Prometheus scrape test will skip" >&2
fi
exit 0
