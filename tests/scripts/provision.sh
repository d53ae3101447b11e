#!/bin/sh
# Brings a fresh machine to what the test suite needs, and says what it did:
# PostgreSQL and Redis answering, the tools the tests drive (socat for the
# serial tests, openssl for a local TLS receiver, PostgreSQL/Redis binaries,
# iproute2 and nsenter for the fault suite's own services, curl, Chromium for
# the browser tests, debootstrap and docker-compose for the production-stack
# test), and what running the platform needs (provision-runtime.sh: a Docker
# engine, Caddy, the local test image). The suite fails loudly, naming it,
# when something is still missing.
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
# The webhook tests make a self-signed certificate for a local TLS receiver.
command -v openssl >/dev/null 2>&1 || apt_install openssl
# The fault suite (tests/faults) runs its own PostgreSQL cluster, Redis and dockerd (in a network namespace).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v ip >/dev/null 2>&1 || apt_install iproute2
command -v nsenter >/dev/null 2>&1 || apt_install util-linux
command -v curl >/dev/null 2>&1 || apt_install curl
# The browser tests drive Debian's Chromium (the pages behind the account emails, /docs).
[ -x /usr/bin/chromium ] || apt_install chromium
# The production-stack test builds images from a debootstrapped base and starts them with Debian's docker-compose.
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
# The benchmarks (bench:ingress, ../shared/bench/api-ratio.sh) drive HTTP load with wrk.
command -v wrk >/dev/null 2>&1 || apt_install wrk

# The workload tests push images to a registry they run themselves on loopback (docker-registry serve).
if ! command -v docker-registry >/dev/null 2>&1; then
  log "installing docker-registry"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends docker-registry >/dev/null 2>&1 ||
    { as_root apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends docker-registry >/dev/null; }
  # Debian starts its own service on :5000 with a configuration that refuses every request; the tests run their own.
  if [ -d /run/systemd/system ]; then as_root systemctl disable --now docker-registry.service >/dev/null 2>&1 || true; fi
fi

sh tests/scripts/provision-runtime.sh
log "ready: postgres, socat, openssl, fault-suite tools, curl, chromium, debootstrap, docker-compose, docker-registry, wrk"
