#!/bin/sh
# Refreshes the vendored Scalar API reference bundle served at /docs.
# The npm package needs ~280 dependencies (300 MB) for the one browser file
# the page loads, and /docs must work offline, so that file is kept in the
# repository instead: `npm pack` fetches only the package's own tarball.
# Usage: sh scripts/vendor-scalar.sh [version]
set -eu
cd "$(dirname "$0")/.."
version=${1:-1.76.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@scalar/api-reference@$version" >/dev/null)
tar -xzf "$work"/scalar-api-reference-"$version".tgz -C "$work" package/dist/browser/standalone.js package/package.json
dest=server/openapi/vendor
# Without its source map (not shipped), the trailing reference would only earn a 404.
sed '/^\/\/# sourceMappingURL=/d' "$work/package/dist/browser/standalone.js" > "$dest/scalar-api-reference.js"
license=$(node -p "require('$work/package/package.json').license")
echo "@scalar/api-reference $version ($license licence, https://github.com/scalar/scalar), dist/browser/standalone.js" > "$dest/scalar-api-reference.source"
echo "vendored @scalar/api-reference $version ($(wc -c < "$dest/scalar-api-reference.js") bytes)"
