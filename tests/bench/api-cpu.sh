#!/bin/bash
# CPU time per request of the project's hot authenticated queries and of the bare-stack anchor
# (../shared/bench/anchor-server.ts), each under wrk at 64 connections: the server process, the
# PostgreSQL backends of the run's database and (anchor only) the Redis server. A companion to
# api-ratio.sh for a machine shared with other work: throughput there depends on how the
# scheduler splits the cores (the anchor spreads its work over three processes, the API over
# one), CPU per request much less. Redis is machine-wide, so its figure is an upper bound.
#
# usage: npm run bench:api-cpu -- [ROUNDS]       (from the project root)
# env:   DUR (8), PG_URL (postgres://root@127.0.0.1:5432), REDIS_URL (redis://127.0.0.1:6379),
#        ANCHOR_DIR (../shared/bench), POOL (DATABASE_POOL_MAX for the API, default 10),
#        PATHS (default: "auth.me compute.instances.list?input=%7B%7D")
set -u
ROUNDS=${1:-3}; DUR=${DUR:-8}; PG_URL=${PG_URL:-postgres://root@127.0.0.1:5432}; REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
ANCHOR_DIR=${ANCHOR_DIR:-../shared/bench}; PATHS=${PATHS:-"auth.me compute.instances.list?input=%7B%7D"}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -f "$ANCHOR_DIR/anchor-server.ts" ] || { echo "no anchor-server.ts in $ANCHOR_DIR (set ANCHOR_DIR)" >&2; exit 1; }
CO=$PWD; DB=apicpu_$$; TMP=$(mktemp -d); TCK=$(getconf CLK_TCK)
ln -s "$CO/node_modules" "$TMP/node_modules"; cp "$ANCHOR_DIR/anchor-server.ts" "$TMP/"
export DATABASE_URL=$PG_URL/$DB REDIS_URL REDIS_PREFIX=apicpu$$ LOG_LEVEL=error DATA_DIR=$TMP/data PORT=3142 DOCKER_NAMESPACE=apicpu$$
SP=
cleanup() {
  [ -n "$SP" ] && kill "$SP" 2>/dev/null; wait 2>/dev/null
  psql "$PG_URL/postgres" -qc "drop database if exists $DB with (force)" >/dev/null
  redis-cli -u "$REDIS_URL" --scan --pattern "apicpu$$*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null
  redis-cli -u "$REDIS_URL" del anchor-bench:session:anchor-token >/dev/null; rm -rf "$TMP"
}
trap cleanup EXIT
psql "$PG_URL/postgres" -qc "create database $DB" >/dev/null || exit 1
psql "$DATABASE_URL" -qc "create table anchor_users(id int primary key, name text not null, email text not null); insert into anchor_users select i, 'user '||i, 'u'||i||'@example.com' from generate_series(1,10000) i" >/dev/null
redis-cli -u "$REDIS_URL" set anchor-bench:session:anchor-token '{"userId":42,"expiresAt":4102444800000}' >/dev/null

wait_up() { for _ in $(seq 150); do curl -sf -o /dev/null ${2:+-H "$2"} "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
sum_ticks() { local t=0; for p in "$@"; do t=$((t + $(ticks "$p"))); done; echo $t; }
backends() { psql -Atqc "select pid from pg_stat_activity where datname = '$DB' and pid <> pg_backend_pid()" "$PG_URL/postgres"; }
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | awk -F: '/^process_id/{print $2+0}')
start_api() { RATE_LIMIT_ACCOUNT_PER_MINUTE=${RATE_LIMIT_ACCOUNT_PER_MINUTE:-1000000000} DATABASE_POOL_MAX=${POOL:-10} "$CO/node_modules/.bin/bun" server/api.ts >/dev/null 2>&1 & SP=$!; wait_up http://127.0.0.1:3142/health; }
start_anchor() { (cd "$TMP" && ANCHOR_PG=$DATABASE_URL ANCHOR_REDIS=$REDIS_URL exec "$CO/node_modules/.bin/bun" anchor-server.ts 3141) >/dev/null 2>&1 & SP=$!; wait_up http://127.0.0.1:3141/trpc/user "Authorization: Bearer anchor-token"; }
stop() { kill "$SP"; wait "$SP" 2>/dev/null; SP=; }

start_api
post() { curl -s -X POST -H 'content-type: application/json' --data "$2" "http://127.0.0.1:3142/trpc/$1"; }
post auth.register '{"email":"cpu@example.com","password":"Qz8-vR3!tundra-owl-77","name":"Load Test"}' >/dev/null
psql "$DATABASE_URL" -qc "update users set email_verified_at = now(), status = 'active'" >/dev/null
TOKEN=$(post auth.login '{"email":"cpu@example.com","password":"Qz8-vR3!tundra-owl-77"}' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "could not get a token" >&2; exit 1; }
stop

# One measurement: warm up, then wrk for DUR seconds; CPU deltas divided by the requests served.
measure() { # name url token
  wrk -t1 -c64 -d3s -H "Authorization: Bearer $3" "$2" >/dev/null
  local pg; pg=$(backends); local s0 p0 r0 s1 p1 r1 out n
  s0=$(ticks "$SP"); p0=$(sum_ticks $pg); r0=$(ticks "$REDIS_PID")
  out=$(wrk -t1 -c64 -d"${DUR}s" -H "Authorization: Bearer $3" "$2")
  s1=$(ticks "$SP"); p1=$(sum_ticks $pg); r1=$(ticks "$REDIS_PID")
  n=$(echo "$out" | awk '/requests in/{print $1}')
  awk -v r="$ROUND" -v c="$1" -v s=$((s1 - s0)) -v p=$((p1 - p0)) -v x=$((r1 - r0)) -v n="$n" -v t="$TCK" -v q="$(echo "$out" | awk '/Requests\/sec/{print $2}')" -v red="$4" \
    'BEGIN { k = 1e6 / t / n; printf "%s\t%s\t%.0f\t%.0f\t%s\t%.0f\t%s\n", r, c, s * k, p * k, red ? sprintf("%.0f", x * k) : "-", (s + p + (red ? x : 0)) * k, q }' | tee -a "$TMP/rows"
}
printf 'round\tcase\tserver_us\tpostgres_us\tredis_us\ttotal_us\treq_s\n'
for ROUND in $(seq 1 "$ROUNDS"); do
  start_anchor; measure anchor http://127.0.0.1:3141/trpc/user anchor-token 1; stop
  start_api; for p in $PATHS; do measure "${p%%\?*}" "http://127.0.0.1:3142/trpc/$p" "$TOKEN" ""; done; stop
done
echo "median CPU per request as a fraction of the anchor's (same round; lower is better):"
awk -F'\t' '{ v[$1,$2]=$6; cases[$2]=1; rounds[$1]=1 }
  END { for (c in cases) if (c != "anchor") { n=0; for (r in rounds) if (v[r,"anchor"] > 0) a[++n]=v[r,c]/v[r,"anchor"];
        asort(a); m = (n % 2) ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2; printf "  %s %.2f\n", c, m; delete a } }' "$TMP/rows"
