#!/usr/bin/env bash
# Push at scale: N waiting clients held by the gateway over WebSocket or SSE
# while the worker admits one user per tick (tick 100 ms), so every waiting
# client's position changes every tick. Measures, with waitroom-loadgen:
# connections held, messages, errors, publish-to-receipt latency; and the
# gateway's resident memory per held connection (RSS of its processes after
# the clients connected, minus before, divided by the connections held).
# Loopback only; bounded in time; cleans up after itself.
#
# Usage: bench/push.sh MODE CONNECTIONS GATEWAY_PROCESSES [DURATION_S]
#   e.g. bench/push.sh ws 19000 1 20
# Then the anchor (bench/sendfloor.c; FLOOR=0 skips it): the same writes per
# tick per gateway process by a bare loop, with the same ticks.
# Prints one JSON line of results on stdout. GW_WRAP, if set, prefixes the
# gateway's command line (e.g. GW_WRAP='valgrind --tool=massif' to see where
# its memory goes); KEEP=1 keeps the run directory; DEBUG=1 prints progress.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-ws}; conns=${2:-19000}; procs=${3:-1}; duration=${4:-20}
bin=$(scripts/build.sh | tail -n 1)

run=$(mktemp -d /tmp/waitroom-push.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $run" >&2; else rm -rf "$run"; fi
}
trap cleanup EXIT INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis=$(port); http=$(port); push=$(port); backend=$(port)

# The load generator binds each client to a 127.0.0.x source address, and a
# bind() cannot take a port still in TIME_WAIT from an earlier run (60 s):
# wait, up to 75 s, until fewer than 2,000 are left.
for _ in $(seq 75); do
  [ "$(awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1)}' /proc/net/sockstat)" -lt 2000 ] && break
  sleep 1
done

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/secret.key"
cat > "$run/w.json" <<JSON
{ "log_level": "warn", "redis": {"port": $redis},
  "gateway": {"listen": [{"host": "127.0.0.1", "port": $http}], "push_listen": [{"host": "127.0.0.1", "port": $push}],
              "processes": $procs, "heartbeat_interval": "15s"},
  "worker": {"tick_ms": 100},
  "tokens": {"keys": [{"kid": "k1", "secret_file": "secret.key"}]},
  "rooms": [{"name": "booking", "path": "/book", "backend": "http://127.0.0.1:$backend",
             "total_active_users": 10000000, "new_users_per_minute": 600, "session_duration": "1h",
             "abandon_grace": "1h"}] }
JSON
redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no --maxclients 100000 >"$run/redis.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis" ping >/dev/null 2>&1 && break; sleep 0.1; done
${GW_WRAP:-} "$bin/gateway/waitroom-gateway" -c "$run/w.json" 2>"$run/gateway.log" & gwpid=$!; pids+=($gwpid)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# The gateway's processes: the master's children, or the process itself.
gw_pids() { local c; c=$(cat /proc/$gwpid/task/$gwpid/children 2>/dev/null); echo "${c:-$gwpid}"; }
rss_kib() { local t=0; for p in $(gw_pids); do t=$((t + $(awk '/VmRSS/ {print $2}' /proc/$p/status))); done; echo $t; }
# Connections the gateway holds: its processes' open descriptors, less
# those it had before the clients came (ss cannot see sockets in every
# sandbox, and /proc/net/tcp is slow to read at tens of thousands).
fds() { local t=0; for p in $(gw_pids); do t=$((t + $(ls /proc/$p/fd | wc -l))); done; echo $t; }
held() { echo $(( $(fds) - fds_before )); }
sleep 1
rss_before=$(rss_kib)
fds_before=$(fds)

lprocs=$(( (conns + 17999) / 18000 )); sources=$(( (conns + 24999) / 25000 ))
ramp=4000
# Connect everyone first, with no worker running (positions do not move, so
# the ramp is not slowed by pushes); then start the worker and measure.
"$bin/bench/waitroom-loadgen" --mode "$mode" --connections "$conns" --processes "$lprocs" --sources "$sources" \
  --http "127.0.0.1:$http" --push "127.0.0.1:$push" --path /book --duration 600 --ramp $ramp \
  --connect-timeout 20 --json --quiet > "$run/loadgen.json" & lgpid=$!; pids+=($lgpid)
# Until everyone is connected, or the count grew by less than 0.5 % in 3 s.
prev=-1
for _ in $(seq 200); do
  n=$(held); [ -n "${DEBUG:-}" ] && echo "held $n" >&2
  [ "$n" -ge "$conns" ] && break
  [ "$prev" -gt 0 ] && [ $((n - prev)) -lt $((prev / 200 + 1)) ] && break
  prev=$n; sleep 3
done
held_at_start=$(held)
rss_during=$(rss_kib)
cpu() { local t=0; for p in $(gw_pids); do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
cpu_before=$(cpu)
"$bin/worker/waitroom-worker" -c "$run/w.json" 2>"$run/worker.log" & pids+=($!)
# Measure for the given duration after the worker starts, then have the
# load generator stop and report (it does on SIGINT).
sleep "$duration"
kill -INT $lgpid 2>/dev/null || true
wait $lgpid || true
cpu_after=$(cpu)
waiting=$(redis-cli -p "$redis" zcard 'wr:{booking}:queue')
# The anchor, right after, with everything above stopped: the same number
# of writes per tick per gateway process, by a bare loop (bench/sendfloor.c).
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=()
echo '{}' > "$run/floor.json"
if [ "${FLOOR:-1}" != 0 ]; then
  per=$(( conns / procs )); [ "$per" -gt 19000 ] && per=19000
  "$bin/bench/waitroom-sendfloor" --connections "$per" --ticks $((duration * 10)) --json > "$run/floor.json" || echo '{}' > "$run/floor.json"
fi
/usr/bin/python3 - "$run/loadgen.json" "$mode" "$conns" "$procs" "$rss_before" "$rss_during" "$waiting" "$held_at_start" "$((cpu_after - cpu_before))" "$(getconf CLK_TCK)" "$run/floor.json" <<'PY'
import json, sys
lg = json.load(open(sys.argv[1]))
floor = json.load(open(sys.argv[11]))
mode, conns, procs, before, during, waiting = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
held, ticks, hz = int(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10])
msgs = lg.get("messages", {}).get("total", 0)
out = {"mode": mode, "connections": conns, "gateway_processes": procs, "held_when_worker_started": held,
       "gateway_rss_before_kib": before, "gateway_rss_held_kib": during, "waiting_in_redis": waiting,
       "gateway_cpu_s_while_pushing": round(ticks / hz, 2), "messages": msgs, "loadgen": lg}
if held:
    out["kib_per_connection"] = round((during - before) / held, 2)
if msgs:
    out["gateway_cpu_us_per_message"] = round(ticks / hz * 1e6 / msgs, 2)
if floor:
    out["floor"] = floor
print(json.dumps(out))
PY
