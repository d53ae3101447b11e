#!/bin/sh
# Builds the Debian base image the production images start from, with
# debootstrap and `docker import`: no registry can be pulled from here. The
# image is tagged by a hash of what defines it (this script, the suite, the
# mirror), so an existing one is reused and the script is cheap to call.
# Prints the tag on stdout (progress goes to stderr).
#
#   sh scripts/build-base-image.sh            # -> sahary/debian-base:bookworm-<hash>
#   DEBIAN_MIRROR=http://mirror.local/debian sh scripts/build-base-image.sh
set -eu
cd "$(dirname "$0")/.."
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "build-base-image: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

hash=$( (cat scripts/build-base-image.sh; echo "$suite $mirror") | sha256sum | cut -c1-12)
tag="sahary/debian-base:$suite-$hash"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1 ||
    { as_root apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends debootstrap >/dev/null; }
fi

work=$(mktemp -d)
trap 'as_root rm -rf "$work"' EXIT
log "debootstrap $suite from $mirror (a minute or two)"
as_root debootstrap --variant=minbase --include=ca-certificates "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# Images install with --no-install-recommends and without the docs; downloaded packages and lists are not kept.
as_root sh -c "
  printf 'APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n' > '$work/rootfs/etc/apt/apt.conf.d/01-sahary-minimal'
  printf 'path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\npath-exclude=/usr/share/info/*\n' > '$work/rootfs/etc/dpkg/dpkg.cfg.d/01-sahary-nodoc'
  rm -rf '$work/rootfs/var/cache/apt/archives/'*.deb '$work/rootfs/var/lib/apt/lists/'* '$work/rootfs/usr/share/doc/'* '$work/rootfs/usr/share/man/'*
"
as_root tar -C "$work/rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap --variant=minbase $suite $mirror" - "$tag" >/dev/null
docker tag "$tag" "sahary/debian-base:$suite"
log "built $tag"
echo "$tag"
