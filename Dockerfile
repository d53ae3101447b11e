# Production image: Bun runs the platform; Node runs only the serial bridge
# (serialport's native binding cannot load in Bun). No registry is reachable
# here, so it starts from the local Debian base image (Debian's packages):
#
#   sh scripts/build-images.sh          # the base, the dependencies and every image, tagged by content
#   # then, by hand if wanted:
#   DOCKER_BUILDKIT=0 docker build --build-arg BASE=<base tag> --build-arg DEPS=<deps tag> -t sahary/app .
ARG BASE=sahary/debian-base:bookworm
ARG DEPS=sahary/app-deps:latest

FROM ${BASE} AS runtime
RUN apt-get update && apt-get install -y nodejs tini && rm -rf /var/lib/apt/lists/* \
  && groupadd --gid 10001 sahary \
  && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin sahary \
  && mkdir -p /data && chown sahary:sahary /data

# The locked production dependencies (Bun included): an image built by
# scripts/build-images.sh from `npm ci --omit=dev` run on the host
# (ops/app-deps/Dockerfile), since build containers cannot reach the npm
# registry. Its tag is the package-lock.json hash.
FROM ${DEPS} AS deps

FROM runtime
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 DATA_DIR=/data
COPY --from=deps /app/node_modules ./node_modules
COPY package.json bunfig.toml tsconfig.json ./
COPY db ./db
COPY hardware ./hardware
COPY workers ./workers
COPY server ./server
USER sahary
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["tini", "--", "node_modules/.bin/bun"]
# All-in-one by default; compose runs server/api.ts and workers/main.ts separately.
CMD ["server/main.ts"]
