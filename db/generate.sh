#!/bin/sh
# drizzle-kit runs under Node: under Bun its old zx dependency misbehaves.
set -e
cd "$(dirname "$0")/.."
exec npx --no-install drizzle-kit generate "$@"
