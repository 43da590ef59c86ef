#!/usr/bin/env bash
# Load-tests the WorkOS-compatible endpoints of a release build over HTTP with
# wrk, on a fresh SQLite database filled by `flagpole seed-demo`:
#   GET /sdk/feature-flags                (the runtime client's poll)
#   GET /feature-flags                    (a page of 10 feature_flag objects)
#   GET /organizations/{id}/feature-flags (evaluation + a page)
#   POST /user_management/authenticate    (refresh: rotate, evaluate, sign ES256)
# Usage: benches/workos-http.sh [flags] [seconds]   (needs wrk, curl, jq)
set -euo pipefail
cd "$(dirname "$0")/.."

FLAGS="${1:-1000}"
SECONDS_EACH="${2:-10}"
BIN=target/release/flagpole
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
for tool in wrk curl jq; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done

DIR=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
BASE="http://127.0.0.1:$PORT"
export DATABASE_URL="sqlite://$DIR/bench.db" FLAGPOLE_BIND="127.0.0.1:$PORT" \
  FLAGPOLE_PUBLIC_URL="$BASE" FLAGPOLE_DATA_DIR="$DIR" RUST_LOG=error \
  FLAGPOLE_SECRET_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

"$BIN" seed-demo --flags "$FLAGS" >/dev/null
KEY=$("$BIN" api-key create --environment production --name bench)
"$BIN" serve & SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$DIR"' EXIT
until curl -sf "$BASE/healthz" >/dev/null; do sleep 0.1; done

auth=(-H "Authorization: Bearer $KEY")
ORG=$(curl -sf "${auth[@]}" "$BASE/api/v1/organizations?limit=1" | jq -r '.data[0].id')
USER=$(curl -sf "${auth[@]}" "$BASE/api/v1/organizations/$ORG/memberships?limit=1" | jq -r '.data[0].user_id')
CLIENT=$(curl -sf "${auth[@]}" -H 'content-type: application/json' \
  -d "{\"user_id\":\"$USER\",\"organization_id\":\"$ORG\"}" "$BASE/api/v1/sessions" |
  jq -r '.access_token | split(".")[1] | @base64d | fromjson | .aud')
echo "$FLAGS flags; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "sdk rule set: $(curl -sf "${auth[@]}" "$BASE/sdk/feature-flags" | wc -c) bytes"

run() {
  echo "== $1"
  shift
  wrk -d "${SECONDS_EACH}s" --latency "$@" | grep -E 'Requests/sec|Latency  |Non-2xx|  50%|  99%'
}
for c in 1 8; do
  run "GET /sdk/feature-flags, $c connections" -t "$(( c < 2 ? 1 : 2 ))" -c "$c" "${auth[@]}" "$BASE/sdk/feature-flags"
  run "GET /feature-flags, $c connections" -t "$(( c < 2 ? 1 : 2 ))" -c "$c" "${auth[@]}" "$BASE/feature-flags"
  run "GET /organizations/{id}/feature-flags, $c connections" -t "$(( c < 2 ? 1 : 2 ))" -c "$c" "${auth[@]}" "$BASE/organizations/$ORG/feature-flags"
done

# Refreshes: every connection chains its own session's refresh tokens.
for c in 1 8; do
  TOKENS=()
  for _ in $(seq "$c"); do
    TOKENS+=("$(curl -sf "${auth[@]}" -H 'content-type: application/json' \
      -d "{\"user_id\":\"$USER\",\"organization_id\":\"$ORG\"}" "$BASE/api/v1/sessions" | jq -r .refresh_token)")
  done
  cat >"$DIR/refresh.lua" <<LUA
local tokens = { $(printf '"%s",' "${TOKENS[@]}") }
local next_thread = 1
function setup(thread)
  thread:set("token", tokens[next_thread])
  next_thread = next_thread + 1
end
function request()
  return wrk.format("POST", "/user_management/authenticate",
    { ["Content-Type"] = "application/json" },
    '{"grant_type":"refresh_token","client_id":"$CLIENT","client_secret":"$KEY","refresh_token":"' .. token .. '"}')
end
function response(status, headers, body)
  local t = body:match('"refresh_token":"(rt_[0-9a-f]+)"')
  if t then token = t end
end
LUA
  run "POST /user_management/authenticate, $c sessions" -t "$c" -c "$c" -s "$DIR/refresh.lua" "$BASE"
done
