#!/bin/sh
# Brings a fresh machine to what the test suite needs, and says what it did:
# PostgreSQL and Redis answering, a Docker engine (docker.io installed and
# dockerd started when none answers), socat, curl, Chromium, debootstrap,
# docker-compose, and the local test image (no registry is reachable, so it is
# imported from Debian's busybox-static).
set -e
cd "$(dirname "$0")/../.."
log() { echo "provision: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 ||
    { as_root apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

# PostgreSQL and Redis are started before a session begins; restart them if they stopped.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  log "PostgreSQL is not answering; starting it"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "Redis is not answering; starting it"
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi

command -v socat >/dev/null 2>&1 || apt_install socat
command -v curl >/dev/null 2>&1 || apt_install curl
# The browser tests drive Debian's Chromium (the pages behind the account emails, /docs).
[ -x /usr/bin/chromium ] || apt_install chromium
# The production-stack test builds images from a debootstrapped base and starts them with Debian's docker-compose.
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  if ! docker info >/dev/null 2>&1; then
    # Each tenant gets its own bridge network; Docker's default pools hold only ~30 of them.
    # /24s from one private /16 give a host room for 256 tenants.
    if [ ! -e /etc/docker/daemon.json ]; then
      as_root mkdir -p /etc/docker
      echo '{"default-address-pools":[{"base":"10.213.0.0/16","size":24}]}' | as_root tee /etc/docker/daemon.json >/dev/null
      log "wrote /etc/docker/daemon.json (tenant network address pool 10.213.0.0/16 in /24s)"
    fi
    log "starting dockerd"
    as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
    i=0
    until docker info >/dev/null 2>&1; do
      i=$((i + 1))
      [ $i -gt 60 ] && { log "dockerd did not come up; see /var/log/dockerd.log"; exit 1; }
      sleep 1
    done
  fi
fi

IMAGE=sahary/busybox:1.35
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "building $IMAGE from Debian's busybox-static"
  work=$(mktemp -d)
  (cd "$work" && apt-get download busybox-static >/dev/null 2>&1) || { apt_install busybox-static && cp /bin/busybox "$work/busybox"; }
  mkdir -p "$work/root/bin" "$work/root/etc" "$work/root/tmp" "$work/root/proc" "$work/root/sys" "$work/root/dev" "$work/root/www"
  if ls "$work"/busybox-static_*.deb >/dev/null 2>&1; then
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/x" && cp "$work/x/bin/busybox" "$work/root/bin/busybox"
  else
    cp "$work/busybox" "$work/root/bin/busybox"
  fi
  for applet in $("$work/root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$work/root/bin/$applet"
  done
  echo "root:x:0:0:root:/root:/bin/sh" > "$work/root/etc/passwd"
  echo "nobody:x:65534:65534:nobody:/:/bin/false" >> "$work/root/etc/passwd"
  echo "root:x:0:" > "$work/root/etc/group"
  echo "<h1>Sahary</h1>" > "$work/root/www/index.html"
  tar -C "$work/root" -c . | docker import \
    -c 'CMD ["/bin/sh", "-c", "httpd -f -p 8080 -h /www"]' \
    -c 'ENV PATH=/bin' \
    -c 'LABEL org.opencontainers.image.source=debian:busybox-static' - "$IMAGE" >/dev/null
  rm -rf "$work"
fi
log "ready: postgres, redis, docker ($(docker version --format '{{.Server.Version}}')), socat, curl, chromium, debootstrap, docker-compose, $IMAGE"
