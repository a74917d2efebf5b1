#!/usr/bin/env bash
# Redis cost of the admission tick against the number of waiting users.
# For each N: a fresh redis-server, N waiting users put in line with the
# same layout joins produce (queue, seq, deadline), the worker ticking every
# 100 ms and admitting one user a tick; then over a fixed window, from
# INFO: commands processed per tick, and Redis CPU (usec) per admit script
# call; and Redis memory per waiting user.
# Loopback only; bounded in time; cleans up after itself.
#
# Usage: bench/tick_cost.sh [SECONDS] N...     e.g. bench/tick_cost.sh 10 1000 100000
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; shift || true
sizes=("$@")
[ $# -eq 0 ] && sizes=(1000 100000)
bin=$(scripts/build.sh | tail -n 1)
run=$(mktemp -d /tmp/waitroom-tick.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/secret.key"
stat() { redis-cli -p "$1" info "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k {print $2}'; }

for n in "${sizes[@]}"; do
  redis=$(port)
  redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$run/redis-$n.log" 2>&1 & rpid=$!; pids+=($rpid)
  for _ in $(seq 100); do redis-cli -p "$redis" ping >/dev/null 2>&1 && break; sleep 0.1; done
  cat > "$run/w-$n.json" <<JSON
{ "log_level": "warn", "redis": {"port": $redis},
  "tokens": {"keys": [{"kid": "k1", "secret_file": "secret.key"}]},
  "rooms": [{"name": "booking", "path": "/book", "backend": "http://127.0.0.1:9",
             "total_active_users": 10000000, "new_users_per_minute": 600, "session_duration": "1h",
             "abandon_grace": "1h"}] }
JSON
  mem0=$(stat "$redis" memory used_memory)
  # N users in line, 10,000 per script call: uid, queue number, deadline.
  for ((start = 1; start <= n; start += 10000)); do
    redis-cli -p "$redis" eval "
      local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000
      for i = tonumber(ARGV[1]), math.min(tonumber(ARGV[1]) + 9999, tonumber(ARGV[2])) do
        local uid = string.format('%032x', i)
        redis.call('ZADD', KEYS[1], i, uid)
        redis.call('ZADD', KEYS[2], now + 3600000, uid)
      end
      redis.call('SET', KEYS[3], ARGV[2])
      return 1" 3 'wr:{booking}:queue' 'wr:{booking}:deadline' 'wr:{booking}:seq' "$start" "$n" >/dev/null
  done
  mem1=$(stat "$redis" memory used_memory)
  "$bin/worker/waitroom-worker" -c "$run/w-$n.json" 2>"$run/worker-$n.log" & wpid=$!; pids+=($wpid)
  sleep 2  # let the worker settle into its ticks before the window opens
  c0=$(stat "$redis" stats total_commands_processed)
  e0=$(redis-cli -p "$redis" info commandstats | tr -d '\r' | awk -F'[:=,]' '/cmdstat_evalsha/ {print $3, $5}')
  t0=$(date +%s.%N)
  sleep "$secs"
  c1=$(stat "$redis" stats total_commands_processed)
  e1=$(redis-cli -p "$redis" info commandstats | tr -d '\r' | awk -F'[:=,]' '/cmdstat_evalsha/ {print $3, $5}')
  t1=$(date +%s.%N)
  kill "$wpid"; wait "$wpid" 2>/dev/null || true
  /usr/bin/python3 - "$n" "$c0" "$c1" "$e0" "$e1" "$t0" "$t1" "$mem0" "$mem1" <<'PY'
import json, sys
n, c0, c1 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
calls0, usec0 = map(int, sys.argv[4].split()); calls1, usec1 = map(int, sys.argv[5].split())
t = float(sys.argv[7]) - float(sys.argv[6]); ticks = t / 0.1
mem0, mem1 = int(sys.argv[8]), int(sys.argv[9])
print(json.dumps({"waiting": n, "window_s": round(t, 2), "ticks": round(ticks),
                  "commands_per_tick": round((c1 - c0 - 2) / ticks, 3),
                  "admit_calls": calls1 - calls0,
                  "redis_usec_per_admit": round((usec1 - usec0) / max(1, calls1 - calls0), 2),
                  "redis_bytes_per_waiting_user": round((mem1 - mem0) / n, 1)}))
PY
  kill "$rpid"; wait "$rpid" 2>/dev/null || true
done
