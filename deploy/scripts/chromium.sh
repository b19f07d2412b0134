#!/usr/bin/env bash
# A headless Chromium for the test that renders the HTML report: print the path of a chromium
# binary, installing Debian's `chromium` package with apt-get when there is none.
#
#   deploy/scripts/chromium.sh
#
# Environment:
#   CHROMIUM   a browser binary to use instead of looking for one
set -euo pipefail

die() { echo "chromium: $*" >&2; exit 1; }

find_browser() {
  local candidate
  for candidate in chromium chromium-browser google-chrome-stable google-chrome; do
    command -v "$candidate" && return 0
  done
  return 1
}

if [[ -n "${CHROMIUM:-}" ]]; then
  command -v "$CHROMIUM" || die "CHROMIUM=$CHROMIUM is not an executable"
  exit 0
fi
find_browser && exit 0
[[ -z "${REBOUND_NO_APT:-}" ]] || die "no chromium found, and REBOUND_NO_APT is set: install Chromium and set CHROMIUM"
command -v apt-get >/dev/null || die "no chromium found and no apt-get to install it; install Chromium and set CHROMIUM"
[[ "$(id -u)" -eq 0 ]] || die "no chromium found; install it (sudo apt-get install chromium) or run this as root"
echo "chromium: installing Debian's chromium package (log: /tmp/rebound-chromium-apt.log)" >&2
{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } \
  >/tmp/rebound-chromium-apt.log 2>&1 \
  || die "apt-get install chromium failed, see /tmp/rebound-chromium-apt.log"
find_browser || die "chromium was installed but no chromium binary is on PATH"
