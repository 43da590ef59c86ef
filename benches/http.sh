#!/usr/bin/env bash
# Flagpole's HTTP benchmark: builds the release binary, loads a data set
# straight into a fresh database, starts the server and measures, in one
# run, `/healthz` and every hot path with wrk, printing each as a ratio to
# `/healthz`. Speed targets live here, never in the tests.
#
#   bash benches/http.sh                     # SQLite, 1M users
#   BACKEND=postgres bash benches/http.sh    # PostgreSQL (PG_URL), plus a second instance
#   USERS=20000 ORGS=2000 FLAGS=500 TARGETS=80 bash benches/http.sh
#   DASHBOARD=1 bash benches/http.sh         # also the dashboard at 5,000 flags
#   ONLY="evaluate sessions" bash benches/http.sh   # /healthz and these runs only
#   BIN=/path/to/another/flagpole bash benches/http.sh   # measure another build
#
# Needs wrk, curl and python3 (and psql for PostgreSQL). Each wrk run is
# one thread and CONNECTIONS connections for BENCH_SECONDS seconds (default 10), on the same
# machine as the server: the ratios, not the absolute numbers, carry over.
set -euo pipefail

USERS=${USERS:-1000000}
ORGS=${ORGS:-10000}
FLAGS=${FLAGS:-1000}
TARGETS=${TARGETS:-125}
SECONDS_EACH=${BENCH_SECONDS:-10}
CONNECTIONS=${CONNECTIONS:-32}
BACKEND=${BACKEND:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
DASHBOARD=${DASHBOARD:-0}
PORT=${PORT:-18080}
PORT2=$((PORT + 1))

cd "$(dirname "$0")/.."
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "benches/http.sh needs $tool" >&2; exit 1; }
done
cargo build --release --quiet
BIN=${BIN:-$PWD/target/release/flagpole}
WORK=$(mktemp -d)
RESULTS=$WORK/results.tsv
: > "$RESULTS"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${PG_DB:-}" ]; then psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

export FLAGPOLE_DATA_DIR=$WORK
export FLAGPOLE_SECRET_KEY=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
export RUST_LOG=warn
if [ "$BACKEND" = postgres ]; then
  PG_DB=flagpole_bench_$$
  psql "$PG_URL/postgres" -qc "CREATE DATABASE $PG_DB" >/dev/null
  export DATABASE_URL=$PG_URL/$PG_DB
else
  export DATABASE_URL=sqlite://$WORK/flagpole.db
fi

echo "== Flagpole HTTP benchmark: $BACKEND, $USERS users, $ORGS organizations, $FLAGS flags, $TARGETS targets per Some flag"
echo "   machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "   wrk: 1 thread, $CONNECTIONS connections, ${SECONDS_EACH} s per run, on the same machine"

started=$(date +%s.%N)
"$BIN" seed-demo --users "$USERS" --organizations "$ORGS" --flags "$FLAGS" --targets-per-flag "$TARGETS" 2>/dev/null | tail -1
echo "   loader: $(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')") s"
KEY=$("$BIN" api-key create --environment production --name bench --scope admin 2>/dev/null | grep -o "sk_[0-9a-f]*" | head -1)

start_server() { # port, log; sets SERVER_PID
  if curl -s -o /dev/null "http://127.0.0.1:$1/healthz"; then
    echo "port $1 is taken: set PORT to a free one" >&2
    exit 1
  fi
  FLAGPOLE_BIND=127.0.0.1:$1 FLAGPOLE_PUBLIC_URL=http://127.0.0.1:$1 "$BIN" serve >"$2" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}

launched=$(date +%s.%N)
start_server "$PORT" "$WORK/server.log"
SERVER=$SERVER_PID
BASE=http://127.0.0.1:$PORT
until curl -sf -o /dev/null -XPOST "$BASE/api/v1/evaluate" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"user_id":"u-1","organization_id":"o-1"}'; do sleep 0.01; done
ready=$(python3 -c "print(f'{$(date +%s.%N) - $launched:.2f}')")
rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$SERVER/status")
# Of the RSS, the pages of the database file that SQLite's mmap has
# touched are the kernel's page cache, shared and reclaimable; the rest
# (anonymous memory) is what the process itself holds, the model included.
anon=$(awk '/RssAnon/ {printf "%.0f", $2/1024}' "/proc/$SERVER/status")
echo "   start-up to the first evaluation: $ready s; RSS $rss MiB, of which $anon MiB the process's own (the rest mapped pages of the database file)"
printf 'startup\t%s\t%s\t%s\n' "$ready" "$rss" "$anon" >> "$RESULTS"

# --- wrk scripts --------------------------------------------------------
cat > "$WORK/common.lua" <<EOF
users, orgs, flags = $USERS, $ORGS, $FLAGS
key = "$KEY"
n = 0
function next_user()
  n = n + 1
  return (n * 7919) % users
end
EOF
lua() { # name, body of request()
  cat > "$WORK/$1.lua" <<EOF
dofile("$WORK/common.lua")
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["Content-Type"] = "application/json"
request = function()
  local u = next_user()
  local o = u % orgs
$2
end
EOF
}
lua evaluate '  return wrk.format("POST", "/api/v1/evaluate", nil, "{\"user_id\":\"u-" .. u .. "\",\"organization_id\":\"o-" .. o .. "\"}")'
lua user_list '  return wrk.format("GET", "/api/v1/users/u-" .. u .. "/feature-flags?organization_id=o-" .. o)'
lua ofrep_one '  return wrk.format("POST", "/ofrep/v1/evaluate/flags/load-" .. (u % flags), nil, "{\"context\":{\"targetingKey\":\"u-" .. u .. "\",\"organizationId\":\"o-" .. o .. "\"}}")'
lua ofrep_bulk '  return wrk.format("POST", "/ofrep/v1/evaluate/flags", nil, "{\"context\":{\"targetingKey\":\"u-" .. u .. "\",\"organizationId\":\"o-" .. o .. "\"}}")'
lua workos_org '  return wrk.format("GET", "/organizations/o-" .. o .. "/feature-flags")'
lua rule_set '  wrk.headers["Accept-Encoding"] = "gzip"
  return wrk.format("GET", "/sdk/feature-flags")'
lua sessions '  return wrk.format("POST", "/api/v1/sessions", nil, "{\"user_id\":\"u-" .. u .. "\",\"organization_id\":\"o-" .. o .. "\"}")'

# Refresh: each refresh token is used once; the answer's successor goes
# back into the pool, so no token is ever presented twice.
python3 - "$BASE" "$KEY" "$ORGS" > "$WORK/tokens.txt" <<'EOF'
import json, sys, urllib.request
base, key, orgs = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(512):
    body = json.dumps({"user_id": f"u-{i}", "organization_id": f"o-{i % orgs}"}).encode()
    req = urllib.request.Request(base + "/api/v1/sessions", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    print(json.load(urllib.request.urlopen(req))["refresh_token"])
EOF
cat > "$WORK/refresh.lua" <<EOF
local pool = {}
for line in io.lines("$WORK/tokens.txt") do pool[#pool + 1] = line end
wrk.headers["Content-Type"] = "application/json"
request = function()
  local token = table.remove(pool)
  return wrk.format("POST", "/api/v1/sessions/refresh", nil, "{\"refresh_token\":\"" .. token .. "\"}")
end
response = function(status, headers, body)
  local token = body:match('"refresh_token":"(rt_[^"]+)"')
  if token then pool[#pool + 1] = token end
end
EOF

# Whether a run is wanted: all of them, or /healthz and those ONLY names.
wanted() {
  [ -z "${ONLY:-}" ] || [ "$1" = healthz ] || [[ " $ONLY " == *" $1 "* ]]
}

run() { # name, script or "", path
  local name=$1 script=$2 path=${3:-}
  wanted "$name" || return 0
  local out
  if [ -n "$script" ]; then
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --latency -s "$WORK/$script.lua" "$BASE$path")
  else
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --latency "$BASE$path")
  fi
  local rps p50 p99 errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}" >> "$RESULTS"
  printf '   %-28s %10s req/s  p50 %8s  p99 %8s  non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}"
}

echo "== quiet"
run healthz "" /healthz
run evaluate evaluate
run user_list user_list
run ofrep_one ofrep_one
run ofrep_bulk ofrep_bulk
run workos_org workos_org
run rule_set rule_set
run sessions sessions
run refresh refresh

size=$(curl -s -H "Authorization: Bearer $KEY" -H 'Accept-Encoding: gzip' "$BASE/sdk/feature-flags" | wc -c)
plain=$(curl -s -H "Authorization: Bearer $KEY" "$BASE/sdk/feature-flags" | wc -c)
echo "   rule set: $((plain / 1024)) KiB, gzipped $((size / 1024)) KiB"
printf 'rule_set_size\t%s\t%s\n' "$plain" "$size" >> "$RESULTS"

# --- under changes -------------------------------------------------------
if wanted evaluate_under_changes; then
echo "== under 10 rule changes a second"
cat > "$WORK/changes.py" <<'EOF'
import json, random, sys, time, urllib.error, urllib.request
base, key, flags, seconds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
def call(method, path, body=None):
    req = urllib.request.Request(base + path, json.dumps(body).encode() if body is not None else None, headers, method=method)
    try:
        with urllib.request.urlopen(req) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        return e.code, None
rng = random.Random(7)
latencies, misses = [], 0
end = time.time() + seconds
while time.time() < end:
    tick = time.time()
    f = rng.randrange(flags)
    slug = f"load-{f}"
    user = f"u-{rng.randrange(1000)}"
    started = time.perf_counter()
    status, _ = call("POST", f"/api/v1/feature-flags/{slug}/environments/production/targets", {"type": "user", "id": user})
    added = status < 300
    if not added:
        status, _ = call("DELETE", f"/api/v1/feature-flags/{slug}/environments/production/targets/{user}")
    latencies.append(time.perf_counter() - started)
    # Read-your-writes: the next evaluation on this instance must see it.
    _, answer = call("POST", "/api/v1/evaluate", {"user_id": user})
    _, rule = call("GET", f"/api/v1/feature-flags/{slug}/environments/production")
    expected = rule["enabled"] and (rule["mode"] == "all" or (rule["mode"] == "some" and added))
    if expected != (slug in answer["feature_flags"]):
        misses += 1
    time.sleep(max(0.0, 0.1 - (time.time() - tick)))
latencies.sort()
p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
with open(out, "w") as f:
    f.write(f"{len(latencies)}\t{p(0.5):.1f}\t{p(0.95):.1f}\t{misses}\n")
EOF
python3 "$WORK/changes.py" "$BASE" "$KEY" "$FLAGS" "$SECONDS_EACH" "$WORK/changes.tsv" &
CHANGER=$!
run evaluate_under_changes evaluate
wait "$CHANGER"
read -r count p50 p95 misses < "$WORK/changes.tsv"
echo "   $count changes: visible on this instance when answered, p50 $p50 ms, p95 $p95 ms; answers that missed a change: $misses"
printf 'changes\t%s\t%s\t%s\t%s\n' "$count" "$p50" "$p95" "$misses" >> "$RESULTS"
fi

# --- under a bulk sync through the public API ---------------------------
if wanted evaluate_under_bulk_sync; then
echo "== under a bulk sync of users through POST /api/v1/users/bulk"
cat > "$WORK/bulk.py" <<'EOF'
import json, sys, time, urllib.request
base, key, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
end, sent, batch = time.time() + seconds, 0, 0
started = time.time()
while time.time() < end:
    data = [{"external_id": f"bulk-{batch}-{i}", "email": f"bulk{batch}.{i}@load.example",
             "first_name": "Bulk", "last_name": str(i)} for i in range(1000)]
    req = urllib.request.Request(base + "/api/v1/users/bulk", json.dumps({"data": data}).encode(), headers)
    urllib.request.urlopen(req).read()
    sent += 1000
    batch += 1
with open(out, "w") as f:
    f.write(f"{sent}\t{sent / (time.time() - started):.0f}\n")
EOF
python3 "$WORK/bulk.py" "$BASE" "$KEY" "$SECONDS_EACH" "$WORK/bulk.tsv" &
BULK=$!
run evaluate_under_bulk_sync evaluate
wait "$BULK"
read -r synced rate < "$WORK/bulk.tsv"
echo "   bulk sync: $synced users at $rate users/s (1M users in $(python3 -c "print(f'{1e6 / max($rate, 1):.0f}')") s)"
printf 'bulk\t%s\t%s\n' "$synced" "$rate" >> "$RESULTS"
fi

# --- a second instance (PostgreSQL) -------------------------------------
if [ "$BACKEND" = postgres ]; then
  echo "== a second instance on the same database"
  start_server "$PORT2" "$WORK/server2.log"
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT2/healthz"; do sleep 0.05; done
  python3 - "$BASE" "http://127.0.0.1:$PORT2" "$KEY" "$RESULTS" <<'EOF'
import json, sys, time, urllib.error, urllib.request
a, b, key, results = sys.argv[1:5]
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, json.dumps(body).encode() if body is not None else None, headers, method=method)
    try:
        with urllib.request.urlopen(req) as r:
            data = r.read()
            return json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        return None
seen = []
for i in range(40):
    user = f"propagation-{i}"
    call(a, "POST", "/api/v1/feature-flags/load-1/environments/production/targets", {"type": "user", "id": "u-1"})
    call(a, "PUT", "/api/v1/feature-flags/load-1/environments/production", {"mode": "some", "enabled": i % 2 == 0})
    changed = time.perf_counter()
    want = i % 2 == 0
    while ("load-1" in call(b, "POST", "/api/v1/evaluate", {"user_id": "u-1"})["feature_flags"]) != want:
        time.sleep(0.001)
    seen.append((time.perf_counter() - changed) * 1000)
seen.sort()
p50, p95 = seen[len(seen) // 2], seen[int(len(seen) * 0.95)]
print(f"   another instance serves a change after p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {seen[-1]:.1f} ms")
open(results, "a").write(f"propagation\t{p50:.1f}\t{p95:.1f}\t{seen[-1]:.1f}\n")
EOF
fi

# --- the dashboard at 5,000 flags ----------------------------------------
if [ "$DASHBOARD" = 1 ]; then
  echo "== the dashboard: 5,000 flags, 100,000 targets"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
  if [ "$BACKEND" = postgres ]; then
    psql "$PG_URL/postgres" -qc "DROP DATABASE $PG_DB" >/dev/null
    psql "$PG_URL/postgres" -qc "CREATE DATABASE $PG_DB" >/dev/null
  else
    rm -f "$WORK"/flagpole.db*
  fi
  "$BIN" seed-demo --users 100000 --organizations 1000 --flags 5000 --targets-per-flag 25 2>/dev/null | tail -1
  echo 'a long benchmark password' | "$BIN" admin create --email bench@example.com --password-stdin >/dev/null 2>&1
  start_server "$PORT" "$WORK/server.log"
  until curl -sf -o /dev/null "$BASE/healthz"; do sleep 0.05; done
  jar=$WORK/cookies
  csrf=$(curl -s -c "$jar" -b "$jar" "$BASE/login" | grep -o 'name="_csrf" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//')
  curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "_csrf=$csrf" --data-urlencode 'email=bench@example.com' \
    --data-urlencode 'password=a long benchmark password' --data-urlencode 'next=/flags' "$BASE/login"
  cookie=$(awk '$6 == "flagpole_session" {print $6 "=" $7}' "$jar")
  cat > "$WORK/dash_list.lua" <<EOF
wrk.headers["Cookie"] = "$cookie"
EOF
  cat > "$WORK/dash_editor.lua" <<EOF
wrk.headers["Cookie"] = "$cookie"
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/flags/load-" .. ((n * 7) % 5000) .. "/environments/production")
end
EOF
  run healthz_dashboard_data "" /healthz
  run dashboard_flags dash_list /flags
  run dashboard_rule_editor dash_editor
fi

# --- the table ------------------------------------------------------------
python3 - "$RESULTS" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
runs = {r[0]: r for r in rows if len(r) == 5 and r[0] != "changes"}
healthz = float(runs["healthz"][1])
print("\n| path | req/s | × /healthz | p50 | p99 |")
print("| --- | ---: | ---: | ---: | ---: |")
for name, r in runs.items():
    base = float(runs["healthz_dashboard_data"][1]) if name.startswith("dashboard") else healthz
    print(f"| {name} | {float(r[1]):,.0f} | {float(r[1]) / base:.2f} | {r[2]} | {r[3]} |")
quiet = float(runs["evaluate"][1]) if "evaluate" in runs else None
for name in ("evaluate_under_changes", "evaluate_under_bulk_sync"):
    if name in runs and quiet:
        print(f"\n{name}: {float(runs[name][1]) / quiet:.2f} of quiet evaluation")
EOF
