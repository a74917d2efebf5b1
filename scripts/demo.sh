#!/usr/bin/env bash
# The one command that runs a complete local demo: installs what is missing,
# builds, then starts a private redis-server, the demo booking backend, the
# admission worker and the gateway, each on a free loopback port, and prints
# the URL to open. Ctrl-C stops everything it started.
#
# The demo room admits 2 users at a time, 6 per minute, for 60 seconds each,
# so that a queue forms as soon as a few people (or curl loops) join.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/deps.sh
bin=$(scripts/build.sh | tail -n 1)

run=$(mktemp -d /tmp/waitroom-demo.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port); backend_port=$(free_port); gateway_port=$(free_port); push_port=$(free_port)

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/secret.key"
cat > "$run/waitroom.json" <<JSON
{
  "redis": { "host": "127.0.0.1", "port": $redis_port },
  "gateway": { "listen": [{ "host": "127.0.0.1", "port": $gateway_port }],
               "push_listen": [{ "host": "127.0.0.1", "port": $push_port }], "poll_interval": "2s" },
  "worker": { "tick_ms": 100 },
  "tokens": { "keys": [{ "kid": "demo", "secret_file": "secret.key" }] },
  "rooms": [{
    "name": "booking", "path": "/book", "backend": "http://127.0.0.1:$backend_port",
    "total_active_users": 2, "new_users_per_minute": 6, "session_duration": "60s"
  }]
}
JSON

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes --dir "$run" \
  --daemonize no >"$run/redis.log" 2>&1 & pids+=($!)
/usr/bin/python3 "$root/examples/demo_backend.py" "$backend_port" 2>"$run/backend.log" & pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/worker/waitroom-worker" -c "$run/waitroom.json" 2>"$run/worker.log" & pids+=($!)
"$bin/gateway/waitroom-gateway" -c "$run/waitroom.json" 2>"$run/gateway.log" & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$gateway_port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$gateway_port/healthz" >/dev/null || { echo "gateway did not come up; see $run/gateway.log" >&2; cat "$run/gateway.log" >&2; exit 1; }

url="http://127.0.0.1:$gateway_port/book"
cat <<TXT

waitroom demo is running.

  Open:    $url
  Status:  http://127.0.0.1:$gateway_port/queue/status

  The room lets 2 users in at a time, 6 per minute, for 60 s each.
  Try it with curl (each join is a new user):
    curl -s -H 'Accept: application/json' $url
    curl -s "http://127.0.0.1:$gateway_port/queue/status?token=TOKEN"
    curl -s -H "Queue-Token: TOKEN" $url          # proxied once ACTIVE
    curl -sN "http://127.0.0.1:$gateway_port/queue/events?token=TOKEN"   # live position (SSE)
    WebSocket: ws://127.0.0.1:$push_port/queue/ws?token=TOKEN

  Logs and config: $run
  Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}" || true
echo "a demo process exited; stopping" >&2
