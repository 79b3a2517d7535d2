#!/usr/bin/env bash
# Installs what the browser test (local-server/tests/browser.rs) needs, from the package registries:
#  - Debian's chromium (/usr/bin/chromium) and fonts-noto-cjk (the page is in Chinese), with apt-get as
#    root, when missing;
#  - playwright-core, pinned in local-server/browser/package-lock.json, with `npm ci` (it drives the
#    installed Chromium; it never downloads a browser).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
if ! command -v fc-list >/dev/null || [ -z "$(fc-list :lang=zh family 2>/dev/null)" ]; then
  missing+=(fonts-noto-cjk)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/browser.sh: the browser test needs the Debian packages ${missing[*]}; install them as root" >&2
    exit 1
  fi
  echo "== apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v npm >/dev/null; then
  echo "scripts/browser.sh: the browser test needs Node.js and npm" >&2
  exit 1
fi
lock=local-server/browser/package-lock.json
stamp=local-server/browser/node_modules/.installed-lock
if ! cmp -s "$lock" "$stamp" 2>/dev/null; then
  echo "== npm ci (local-server/browser)"
  (cd local-server/browser && npm ci --no-audit --no-fund --loglevel=error)
  cp "$lock" "$stamp"
fi
