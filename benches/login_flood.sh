#!/usr/bin/env bash
# A flood of bogus sign-ins against the release server: 64 connections of
# wrong passwords for 10 s, each from its own address (the server trusts
# X-Forwarded-For here, so the per-client throttle does not stop them and
# every attempt reaches the password hasher), while /readyz and
# POST /api/v1/evaluate are measured beside it. Prints the server's RSS
# before and after, and the latencies. Then the cost of SQLite durability
# on the session benchmark.
#
#   bash benches/login_flood.sh
#
# Needs wrk, curl and python3.
set -euo pipefail

SECONDS_EACH=${BENCH_SECONDS:-10}
PORT=${PORT:-18090}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/flagpole
WORK=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export FLAGPOLE_DATA_DIR=$WORK
export FLAGPOLE_SECRET_KEY=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
export RUST_LOG=warn
BASE=http://127.0.0.1:$PORT

start() { # extra environment
  env "$@" FLAGPOLE_BIND=127.0.0.1:$PORT "$BIN" serve >"$WORK/server.log" 2>&1 &
  PID=$!
  until curl -sf -o /dev/null "$BASE/healthz"; do sleep 0.05; done
}
stop() {
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}
rss() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$PID/status"; }

export DATABASE_URL=sqlite://$WORK/flood.db
"$BIN" seed-demo --users 10000 --organizations 100 --flags 100 --targets-per-flag 20 >/dev/null 2>&1
echo 'a long benchmark password' | "$BIN" admin create --email owner@example.com --password-stdin >/dev/null 2>&1
KEY=$("$BIN" api-key create --environment production --name bench --scope admin 2>/dev/null | grep -o "sk_[0-9a-f]*")
start FLAGPOLE_TRUST_PROXY=true

jar=$WORK/cookies
csrf=$(curl -s -c "$jar" -b "$jar" "$BASE/login" | grep -o 'name="_csrf" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//')
cookie=$(awk '$6 == "flagpole_session" {print $6 "=" $7}' "$jar")
cat > "$WORK/flood.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "$cookie"
local n = 0
request = function()
  n = n + 1
  wrk.headers["X-Forwarded-For"] = "10." .. (n % 250) .. "." .. (math.floor(n / 250) % 250) .. "." .. (n % 199 + 1)
  return wrk.format(nil, "/login", nil, "_csrf=$csrf&email=owner%40example.com&password=guess" .. n .. "&next=%2Fflags")
end
EOF
cat > "$WORK/evaluate.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"user_id":"u-1","organization_id":"o-1"}'
EOF

before=$(rss)
echo "== 64 connections of bogus sign-ins for ${SECONDS_EACH} s; RSS before: $before MiB"
wrk -t1 -c64 -d"${SECONDS_EACH}s" -s "$WORK/flood.lua" "$BASE" > "$WORK/flood.txt" &
FLOOD=$!
sleep 1
ready=$(wrk -t1 -c2 -d"$((SECONDS_EACH - 2))s" --latency "$BASE/readyz")
api=$(wrk -t1 -c2 -d"$((SECONDS_EACH - 2))s" --latency -s "$WORK/evaluate.lua" "$BASE")
wait "$FLOOD"
after=$(rss)
answers=$(curl -s "$BASE/metrics" | awk '/^flagpole_http_requests_total/ && /route="\/login"/ && /method="POST"/ {match($0, /status="[0-9]+"/); printf "%s %s, ", substr($0, RSTART + 8, 3), $NF}')
echo "   sign-ins: $(awk '/Requests\/sec/ {print $2}' "$WORK/flood.txt") req/s; answers by status: ${answers%, }"
echo "   /readyz meanwhile: p50 $(echo "$ready" | awk '$1 == "50%" {print $2}'), p99 $(echo "$ready" | awk '$1 == "99%" {print $2}')"
echo "   POST /api/v1/evaluate meanwhile: p50 $(echo "$api" | awk '$1 == "50%" {print $2}'), p99 $(echo "$api" | awk '$1 == "99%" {print $2}')"
echo "   RSS after: $after MiB (grew $((after - before)) MiB)"
stop

echo "== SQLite durability on POST /api/v1/sessions (32 connections, ${SECONDS_EACH} s)"
cat > "$WORK/sessions.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local u = (n * 7919) % 10000
  return wrk.format(nil, "/api/v1/sessions", nil, '{"user_id":"u-' .. u .. '","organization_id":"o-' .. (u % 100) .. '"}')
end
EOF
for durability in changes normal full; do
  start FLAGPOLE_SQLITE_DURABILITY=$durability
  out=$(wrk -t1 -c32 -d"${SECONDS_EACH}s" --latency -s "$WORK/sessions.lua" "$BASE")
  printf '   %-8s %8s sessions/s  p99 %s\n' "$durability" "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" "$(echo "$out" | awk '$1 == "99%" {print $2}')"
  stop
done
echo "== SQLite durability on a rule change (PUT, one at a time, 200 changes)"
for durability in changes normal full; do
  start FLAGPOLE_SQLITE_DURABILITY=$durability
  python3 - "$BASE" "$KEY" "$durability" <<'EOF'
import json, sys, time, urllib.request
base, key, durability = sys.argv[1:4]
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
took = []
for i in range(200):
    body = json.dumps({"mode": "some", "enabled": i % 2 == 0}).encode()
    req = urllib.request.Request(f"{base}/api/v1/feature-flags/load-1/environments/production", body, headers, method="PUT")
    started = time.perf_counter()
    urllib.request.urlopen(req).read()
    took.append((time.perf_counter() - started) * 1000)
took.sort()
print(f"   {durability:<8} p50 {took[100]:.1f} ms  p95 {took[190]:.1f} ms")
EOF
  stop
done
