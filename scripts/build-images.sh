#!/bin/sh
# Builds the production images from the local Debian base (no registry is
# pulled from): the app, PostgreSQL and Redis. Each is tagged by a hash of its
# build context and base, so unchanged images are reused (seconds) and a
# changed one is rebuilt. The app's production dependencies are installed here
# on the host (npm ci --omit=dev, from npm's cache when it has them) and
# become an image of their own, tagged by the lockfile's hash: build
# containers have no route to the npm registry. Also tags them under the names compose.yaml uses by
# default. Prints the tags as compose variables (for .env, or `export`):
#
#   sh scripts/build-images.sh >> .env      # or: export $(sh scripts/build-images.sh)
set -eu
cd "$(dirname "$0")/.."
log() { echo "build-images: $*" >&2; }

base=$(sh scripts/build-base-image.sh)
# A hash of the files under the given paths (as the build would copy them) and the base.
context_hash() {
  { echo "$base"; for path in "$@"; do find "$path" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; done; } | sha256sum | cut -c1-12
}
build() {
  tag=$1 alias=$2 context=$3
  shift 3
  if docker image inspect "$tag" >/dev/null 2>&1; then
    log "$tag is up to date"
  else
    log "building $tag"
    started=$(date +%s)
    # Build steps only fetch Debian packages: on the host's network they do not depend on the
    # engine's default bridge (docker0), which a shared engine can lose.
    DOCKER_BUILDKIT=0 docker build --network host --build-arg BASE="$base" "$@" -t "$tag" "$context" >&2
    log "built $tag in $(( $(date +%s) - started )) s"
  fi
  docker tag "$tag" "$alias"
}

# Tagged by everything that makes it: the lockfile, the patches and this recipe.
deps="sahary/app-deps:$(cat package-lock.json patches/*.patch ops/app-deps/Dockerfile scripts/build-images.sh | sha256sum | cut -c1-12)"
if ! docker image inspect "$deps" >/dev/null 2>&1; then
  stage=.build/app-deps
  rm -rf "$stage" && mkdir -p "$stage"
  cp -r package.json package-lock.json patches ops/app-deps/Dockerfile "$stage/"
  log "installing the production dependencies (npm ci --omit=dev)"
  # The project's postinstall is patch-package, a dev tool: the staged manifest drops it and the
  # project's own patch-package applies patches/ (dependencies' install scripts, Bun's included, still run).
  node -e 'const f=process.argv[1], p=JSON.parse(require("fs").readFileSync(f)); delete p.scripts.postinstall; require("fs").writeFileSync(f, JSON.stringify(p, null, 2))' "$stage/package.json"
  (cd "$stage" && npm ci --omit=dev --prefer-offline --no-audit --no-fund --loglevel=error >&2 &&
    "$OLDPWD/node_modules/.bin/patch-package" --error-on-fail >&2 && rm -rf patches)
  # npm's bun package holds its 100 MB binary three times (bun, bunx, the platform package): keep one.
  (cd "$stage/node_modules" && ln -sf bun.exe bun/bin/bunx.exe && for copy in @oven/bun-linux-*/bin/bun; do [ -f "$copy" ] && ln -sf "../../../bun/bin/bun.exe" "$copy"; done; true)
  build "$deps" sahary/app-deps:latest "$stage"
  rm -rf "$stage"
fi
docker tag "$deps" sahary/app-deps:latest

postgres="sahary/postgres:15-$(context_hash ops/postgres)"
redis="sahary/redis:7-$(context_hash ops/redis)"
app="sahary/app:$( (echo "$deps"; context_hash Dockerfile .dockerignore package.json bunfig.toml tsconfig.json db hardware server workers) | sha256sum | cut -c1-12)"
build "$postgres" sahary/postgres:15 ops/postgres
build "$redis" sahary/redis:7 ops/redis
proxy="sahary/proxy:2.6-$(context_hash ops/proxy)"
build "$proxy" sahary/proxy:2.6 ops/proxy
build "$app" sahary/app:latest . --build-arg DEPS="$deps"

# Keep the five newest app images (they differ only in their source layers); an image still in use is left alone.
docker image ls sahary/app --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' | grep -v ':latest$' | sort -r | tail -n +6 | cut -f2 |
  while read -r old; do [ "$old" = "$app" ] || docker rmi "$old" >/dev/null 2>&1 || true; done

echo "SAHARY_BASE_IMAGE=$base"
echo "SAHARY_IMAGE=$app"
echo "SAHARY_POSTGRES_IMAGE=$postgres"
echo "SAHARY_REDIS_IMAGE=$redis"
echo "SAHARY_PROXY_IMAGE=$proxy"
