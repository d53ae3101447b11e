#!/bin/sh
# Installs the locked dependencies (Bun included) when node_modules is missing
# or older than package-lock.json or the patches applied to it (patches/, by
# patch-package at postinstall). Quiet when there is nothing to do.
set -e
cd "$(dirname "$0")/../.."
stamp=node_modules/.sahary-lock-sha
want=$(cat package-lock.json patches/*.patch | sha256sum | cut -d' ' -f1)
if [ ! -x node_modules/.bin/bun ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing dependencies (npm ci)…" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi
