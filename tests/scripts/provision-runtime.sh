#!/bin/sh
# What running the platform needs on this machine, for `npm start` and the test
# suite alike: Redis answering (when REDIS_URL is unset: the local one), a
# Docker engine, Caddy (the ingress proxy; the platform starts it, see
# INGRESS_PROXY) and the local image the catalogue's busybox entry runs (no
# registry is reachable, so it is imported from Debian's busybox-static).
# It installs and starts what is missing when it can (root, or passwordless
# sudo). When it cannot, it names exactly what is missing and how to get it,
# and exits 0 so the platform still starts (the API works; instances need
# Docker, their URLs need Caddy).
set -e
cd "$(dirname "$0")/../.."
log() { echo "provision: $*" >&2; }
missing=""
miss() { missing="$missing
  - $*"; }
can_root() { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
apt_install() {
  if ! can_root; then
    miss "$* (install: sudo apt-get install -y --no-install-recommends $*)"
    return 1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 ||
    { as_root apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

# Redis: queues and rate limits. Only the default local one is ours to start.
if [ -z "${REDIS_URL:-}" ] && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools || true
  if command -v redis-server >/dev/null 2>&1; then
    log "Redis is not answering; starting it"
    if [ "$(id -u)" = 0 ]; then
      mkdir -p /var/lib/redis /var/log/redis
      redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --dir /var/lib/redis --logfile /var/log/redis/sahary.log \
        --appendonly yes --maxmemory-policy noeviction || miss "a running Redis (redis-server failed to start; see /var/log/redis/sahary.log)"
    else
      dir="${DATA_DIR:-./data}/redis"
      mkdir -p "$dir"
      redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --dir "$dir" --logfile "$(cd "$dir" && pwd)/redis.log" \
        --appendonly yes --maxmemory-policy noeviction || miss "a running Redis (redis-server failed to start; see $dir/redis.log)"
    fi
  fi
fi

# Docker: the engine instances run on.
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io || true
  if command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    if docker info 2>&1 | grep -qi "permission denied"; then
      miss "access to the Docker engine for $(id -un) (sudo usermod -aG docker $(id -un), then log in again)"
    elif can_root; then
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
        [ $i -gt 60 ] && { miss "a running Docker engine (dockerd did not come up; see /var/log/dockerd.log)"; break; }
        sleep 1
      done
    else
      miss "a running Docker engine (sudo dockerd, or sudo systemctl start docker)"
    fi
  fi
fi

# Caddy: the ingress proxy. Debian's package starts its own caddy.service on :80
# with a Caddyfile; the platform runs its own instance instead, so that unit is stopped.
if ! command -v caddy >/dev/null 2>&1; then
  if apt_install caddy; then
    if [ -d /run/systemd/system ]; then
      as_root systemctl disable --now caddy.service >/dev/null 2>&1 || true
      log "stopped Debian's caddy.service (the platform runs its own Caddy)"
    fi
  fi
fi

# The proxy opens a connection to an instance per request when the instance closes each one (BusyBox httpd does):
# without reuse of TIME_WAIT ports for outgoing connections (Linux reuses them only on loopback by default), one
# instance is capped at ~470 new connections/s (28k ephemeral ports per minute). Timestamps keep reuse safe.
if [ "$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null)" != 1 ]; then
  as_root sh -c 'echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse' 2>/dev/null && log "set net.ipv4.tcp_tw_reuse=1 (the proxy's connections to instances)"
fi

# Sized volumes: an ext4 file per volume on a loop device (fallocate and losetup from util-linux, mkfs.ext4 from
# e2fsprogs); the workers must run as root for them (hosts.volumes_note says why when they cannot).
for tool in fallocate losetup mkfs.ext4; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v $tool >/dev/null 2>&1; then apt_install util-linux e2fsprogs || true; break; fi
done

# The catalogue's busybox image.
IMAGE=sahary/busybox:1.35
if docker info >/dev/null 2>&1 && ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "building $IMAGE from Debian's busybox-static"
  work=$(mktemp -d)
  (cd "$work" && apt-get download busybox-static >/dev/null 2>&1) || { apt_install busybox-static && cp /bin/busybox "$work/busybox"; } || true
  mkdir -p "$work/root/bin" "$work/root/etc" "$work/root/tmp" "$work/root/proc" "$work/root/sys" "$work/root/dev" "$work/root/www"
  if ls "$work"/busybox-static_*.deb >/dev/null 2>&1; then
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/x" && cp "$work/x/bin/busybox" "$work/root/bin/busybox"
  elif [ -x "$work/busybox" ]; then
    cp "$work/busybox" "$work/root/bin/busybox"
  fi
  if [ -x "$work/root/bin/busybox" ]; then
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
  else
    miss "the image $IMAGE (needs Debian's busybox-static package)"
  fi
  rm -rf "$work"
fi

if [ -n "$missing" ]; then
  log "not provided (install these, then run the command again):$missing"
else
  log "ready: redis, docker ($(docker version --format '{{.Server.Version}}')), caddy ($(caddy version | cut -d' ' -f1)), $IMAGE"
fi
