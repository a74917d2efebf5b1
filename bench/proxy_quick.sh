#!/usr/bin/env bash
# A quick side-by-side of proxied throughput for an admitted user, on
# loopback only, bounded in time: nginx `return 200` as the backend, then
# wrk against (1) the backend directly, (2) h2o 2.2.5 standalone as a reverse
# proxy (checks no token), (3) nginx proxy_pass with a keep-alive upstream,
# (4) waitroom-gateway with an ACTIVE user's token. Rounds are interleaved
# and repeated, since these machines are noisy; ratios are what count.
#
# Usage: bench/proxy_quick.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}; rounds=${2:-3}
bin=$(scripts/build.sh | tail -n 1)
command -v wrk nginx h2o >/dev/null || { echo "needs wrk, nginx and h2o (apt-get install wrk nginx-light h2o)" >&2; exit 1; }

run=$(mktemp -d /tmp/waitroom-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend=$(port); h2op=$(port); nginxp=$(port); redis=$(port); gw=$(port)
body=$(head -c 100 /dev/zero | tr '\0' x)

cat > "$run/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $run/nginx.pid; error_log $run/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream be { server 127.0.0.1:$backend; keepalive 64; }
  server { listen 127.0.0.1:$backend reuseport; location / { return 200 "$body"; } }
  server { listen 127.0.0.1:$nginxp reuseport;
           location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGX
nginx -c "$run/nginx.conf" -p "$run" & pids+=($!)
cat > "$run/h2o.conf" <<H2O
listen: {host: 127.0.0.1, port: $h2op}
num-threads: 1
hosts:
  default:
    paths:
      /book:
        proxy.reverse.url: http://127.0.0.1:$backend/book
H2O
h2o -c "$run/h2o.conf" >"$run/h2o.log" 2>&1 & pids+=($!)
redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$run/redis.log" 2>&1 & pids+=($!)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/secret.key"
cat > "$run/w.json" <<JSON
{ "log_level": "warn", "redis": {"port": $redis},
  "gateway": {"listen": [{"host": "127.0.0.1", "port": $gw}]},
  "tokens": {"keys": [{"kid": "k1", "secret_file": "secret.key"}]},
  "rooms": [{"name": "booking", "path": "/book", "backend": "http://127.0.0.1:$backend",
             "total_active_users": 1000, "new_users_per_minute": 60000, "session_duration": "1h"}] }
JSON
for _ in $(seq 100); do redis-cli -p "$redis" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/worker/waitroom-worker" -c "$run/w.json" 2>"$run/worker.log" & pids+=($!)
"$bin/gateway/waitroom-gateway" -c "$run/w.json" 2>"$run/gateway.log" & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$gw/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
tok=$(curl -fs -H 'Accept: application/json' "http://127.0.0.1:$gw/book" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["queueToken"])')
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$gw/queue/status?token=$tok" | grep -q ACTIVE && break; sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Queue-Token: $tok" "http://127.0.0.1:$gw/book")" = 200 ] || { echo "user not admitted" >&2; exit 1; }

measure() { # name url [header]
  local out
  if [ -n "${3:-}" ]; then out=$(wrk -t2 -c64 -d"${secs}s" --latency -H "$3" "$2"); else out=$(wrk -t2 -c64 -d"${secs}s" --latency "$2"); fi
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$1 $rps $p99"
}
{
for r in $(seq "$rounds"); do
  measure backend "http://127.0.0.1:$backend/book"
  measure h2o "http://127.0.0.1:$h2op/book"
  measure nginx "http://127.0.0.1:$nginxp/book"
  measure waitroom "http://127.0.0.1:$gw/book" "Queue-Token: $tok"
done
} > "$run/results"
echo "wrk -t2 -c64 -d${secs}s, $rounds interleaved rounds; requests/s (median) and p99 of each:"
/usr/bin/python3 - "$run/results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    n, rps, p99 = line.split()
    rows.setdefault(n, []).append((float(rps), p99))
med = {n: statistics.median(r for r, _ in v) for n, v in rows.items()}
for n, v in rows.items():
    print("  %-9s %9.0f req/s  (runs: %s; p99: %s)  vs h2o %.2f  vs nginx %.2f" % (
        n, med[n], ", ".join("%.0f" % r for r, _ in v), ", ".join(p for _, p in v), med[n] / med["h2o"], med[n] / med["nginx"]))
PY
