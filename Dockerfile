# Production image. Node is the base because the serial bridge runs under Node
# (serialport's native binding cannot load in Bun) and npm installs Bun itself.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
# patch-package (a dev dependency) applies patches/ at postinstall; the dev tools are pruned after.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund

# The ingress proxy (compose's `proxy` service): Debian's Caddy 2.6, started with a
# bootstrap configuration that sets only its admin socket; the workers load the
# rest through it. Not root: the binary may bind 80/443 by file capability.
FROM debian:bookworm-slim AS proxy
RUN apt-get update && apt-get install -y --no-install-recommends caddy ca-certificates tini libcap2-bin \
  && setcap cap_net_bind_service=+ep /usr/bin/caddy && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /etc/sahary /run/sahary-proxy /data \
  && echo '{"admin":{"listen":"unix//run/sahary-proxy/admin.sock","config":{"persist":false}}}' > /etc/sahary/proxy-bootstrap.json \
  && chown caddy:caddy /run/sahary-proxy /data
# Certificates, ACME account and the local CA live under $XDG_DATA_HOME/caddy.
ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/data
USER caddy
VOLUME ["/data", "/run/sahary-proxy"]
ENTRYPOINT ["tini", "--", "caddy", "run", "--config", "/etc/sahary/proxy-bootstrap.json"]

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends tini ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 DATA_DIR=/data
COPY --from=deps /app/node_modules ./node_modules
COPY package.json bunfig.toml tsconfig.json ./
COPY server ./server
COPY workers ./workers
COPY db ./db
COPY hardware ./hardware
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["tini", "--", "node_modules/.bin/bun"]
# All-in-one by default; compose runs server/api.ts and workers/main.ts separately.
CMD ["server/main.ts"]
