#!/usr/bin/env bash
# The Debian packages some tests drive for real, installed by `make setup`:
#   prometheus  Prometheus + promtool for tests/deploy/test_prometheus.py (the real scrape test)
#   chromium    headless Chromium for tests/ui/test_browser.py (the real-browser UI test)
# Installs only what is missing, only as root with apt-get; otherwise says how and exits 0, so setup never
# fails because of it. The tests skip without these tools locally but FAIL under CI (env CI set).
set -u
missing=()
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
{ command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: not installed: ${missing[*]} (their tests skip); as root: apt-get install ${missing[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
# Package services are not started (no systemd in containers).
if ! install; then
    apt-get update -qq >/dev/null 2>&1 || true
    install || echo "note: apt-get install ${missing[*]} failed; their tests will skip (and fail under CI)" >&2
fi
exit 0
