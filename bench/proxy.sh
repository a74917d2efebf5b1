#!/usr/bin/env bash
# Proxied throughput and latency for an admitted user, side by side with h2o
# and nginx, on loopback only, bounded in time. The setup: nginx `return 200`
# (100 bytes) as the backend; in front of it (1) nothing (the backend
# directly), (2) h2o 2.2.5 standalone as a reverse proxy (checks no token),
# (3) nginx proxy_pass with a keep-alive upstream, (4) waitroom-gateway with
# an ACTIVE user's token. The three proxies get the same number of workers,
# WORKERS (default 1): nginx worker_processes, h2o num-threads, the gateway's
# processes; the backend is a separate nginx with one worker, so that no
# proxy shares its process with the backend.
#
# Two measurements, because they answer different questions:
# - closed loop: wrk -t2 -c64 --latency. How many requests a second each
#   target sustains; its p99 is what a closed-loop tool sees, which hides
#   stalls (coordinated omission: while a connection waits, wrk sends nothing).
# - open loop: waitroom-openloop (bench/openloop.c) at one fixed arrival rate
#   for every target, 50% of the lowest median closed-loop throughput of the
#   three proxies unless RATE= is given, 64 keep-alive connections, latency
#   from each request's intended send time. This is the latency a user sees
#   at a load the slowest proxy handles comfortably.
# Rounds are interleaved (every target once per round, in turn) and repeated,
# since these machines are noisy; per target the median over rounds is
# reported (for max latency, the highest). Ratios are what count.
#
# Usage: bench/proxy.sh [seconds-per-run] [rounds] [--out FILE]
#   defaults 5 s and 3 rounds; RATE=N fixes the open-loop rate; OPEN_WARMUP=S
#   (default 1) seconds of each open-loop run are sent but not counted.
# Prints a table; with --out, also writes the results as JSON to FILE.
# Takes about rounds * 4 * (2 * seconds + OPEN_WARMUP) s plus setup; every run
# is under `timeout`, and everything started here is stopped on exit.
set -euo pipefail

secs=""; rounds=""; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "proxy.sh: --out needs a file name" >&2; exit 1; }
           out=$(realpath -m -- "$2"); shift 2 ;;
    --out=*) out=$(realpath -m -- "${1#--out=}"); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "proxy.sh: unknown option \"$1\" (usage: bench/proxy.sh [seconds-per-run] [rounds] [--out FILE])" >&2; exit 1 ;;
    *) if [ -z "$secs" ]; then secs=$1; elif [ -z "$rounds" ]; then rounds=$1
       else echo "proxy.sh: unexpected argument \"$1\"" >&2; exit 1; fi; shift ;;
  esac
done
secs=${secs:-5}; rounds=${rounds:-3}; warm=${OPEN_WARMUP:-1}
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: seconds-per-run \"$secs\": expected a whole number of seconds, at least 1" >&2; exit 1; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: rounds \"$rounds\": expected a whole number, at least 1" >&2; exit 1; }
[[ "$warm" =~ ^[0-9]+$ ]] || { echo "proxy.sh: OPEN_WARMUP \"$warm\": expected a whole number of seconds" >&2; exit 1; }
[ -z "${RATE:-}" ] || [[ "$RATE" =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: RATE \"$RATE\": expected a whole number of requests per second" >&2; exit 1; }
if [ -n "$out" ] && [ ! -d "$(dirname "$out")" ]; then echo "proxy.sh: --out: no folder $(dirname "$out")" >&2; exit 1; fi

cd "$(dirname "$0")/.."
bin=$(scripts/build.sh | tail -n 1)
for t in wrk nginx h2o redis-server redis-cli curl; do
  command -v "$t" >/dev/null || { echo "proxy.sh: needs $t (apt-get install wrk nginx-light h2o redis-server curl)" >&2; exit 1; }
done
openloop="$bin/bench/waitroom-openloop"

run=$(mktemp -d /tmp/waitroom-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $run" >&2; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend=$(port); h2op=$(port); nginxp=$(port); redis=$(port); gw=$(port)
body=$(head -c 100 /dev/zero | tr '\0' x)

workers=${WORKERS:-1}
[[ "$workers" =~ ^[1-9][0-9]?$ ]] || { echo "proxy.sh: WORKERS \"$workers\": expected 1..99" >&2; exit 1; }
mkdir -p "$run/be" "$run/px"
cat > "$run/be/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $run/be/nginx.pid; error_log $run/be/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$backend reuseport; location / { return 200 "$body"; } }
}
NGX
cat > "$run/px/nginx.conf" <<NGX
worker_processes $workers; daemon off; pid $run/px/nginx.pid; error_log $run/px/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream be { server 127.0.0.1:$backend; keepalive 64; }
  server { listen 127.0.0.1:$nginxp reuseport;
           location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGX
nginx -c "$run/be/nginx.conf" -p "$run/be" & pids+=($!)
nginx -c "$run/px/nginx.conf" -p "$run/px" & pids+=($!)
cat > "$run/h2o.conf" <<H2O
listen: {host: 127.0.0.1, port: $h2op}
num-threads: $workers
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
  "gateway": {"listen": [{"host": "127.0.0.1", "port": $gw}], "processes": $workers},
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
for u in "$backend" "$h2op" "$nginxp"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$u/book")" = 200 ] || { echo "proxy.sh: 127.0.0.1:$u/book does not answer 200" >&2; exit 1; }
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Queue-Token: $tok" "http://127.0.0.1:$gw/book")" = 200 ] || { echo "proxy.sh: user not admitted" >&2; exit 1; }

names=(backend h2o nginx gateway)
declare -A url=([backend]="http://127.0.0.1:$backend/book" [h2o]="http://127.0.0.1:$h2op/book"
                [nginx]="http://127.0.0.1:$nginxp/book" [gateway]="http://127.0.0.1:$gw/book")
hdr() { if [ "$1" = gateway ]; then printf '%s\n' "Queue-Token: $tok"; fi; }

# Closed loop. One line per run: name round req/s p99 errors (non-2xx/3xx
# responses plus socket errors); p99 as wrk prints it, with its unit.
closed() { # name round
  local h o; h=$(hdr "$1")
  o=$(timeout -k 5 $((secs + 30)) wrk -t2 -c64 -d"${secs}s" --latency ${h:+-H "$h"} "${url[$1]}")
  awk -v n="$1" -v r="$2" '
    /Requests\/sec/ {rps = $2} $1 == "99%" {p99 = $2}
    /Non-2xx or 3xx responses/ {err += $NF}
    /Socket errors/ {gsub(",", ""); err += $4 + $6 + $8 + $10}
    END {print n, r, rps, p99, err + 0}' <<<"$o"
}
for r in $(seq "$rounds"); do
  for n in "${names[@]}"; do closed "$n" "$r"; done
done > "$run/closed"

# One more gateway run under perf record (PROFILE=0 skips it), for the
# report's account of where the gateway's time goes.
: > "$run/profile"
if [ "${PROFILE:-1}" != 0 ] && command -v perf >/dev/null && perf record -q -o "$run/probe.data" -- true >/dev/null 2>&1; then
  gwp=$(pgrep -d, -f "waitroom-gateway -c $run/w.json" || true)
  if [ -n "$gwp" ]; then
    perf record -q -g -p "$gwp" -o "$run/gw.data" >/dev/null 2>&1 & pp=$!
    sleep 0.5
    h=$(hdr gateway)
    timeout -k 5 $((secs + 30)) wrk -t2 -c64 -d"${secs}s" -H "$h" "${url[gateway]}" | awk '/Requests\/sec/ {print "requests/s under perf: " $2}' >> "$run/profile"
    kill -INT $pp 2>/dev/null || true; wait $pp 2>/dev/null || true
    { echo "-- by DSO"; perf report -i "$run/gw.data" --stdio -g none --no-children --sort dso --percent-limit 1 2>/dev/null | grep -E '^ +[0-9]'
      echo "-- by symbol (self)"; perf report -i "$run/gw.data" --stdio -g none --no-children --sort dso,sym --percent-limit 1 2>/dev/null | grep -E '^ +[0-9]' | head -25
    } >> "$run/profile"
  fi
fi

# System calls per request of each proxy's processes, during one more
# closed-loop run each (perf stat on the syscalls tracepoints; SYSCALLS=0
# skips it).
if [ "${SYSCALLS:-1}" != 0 ] && command -v perf >/dev/null && perf stat -e 'syscalls:sys_enter_read' -o /dev/null -- true >/dev/null 2>&1; then
  nginx_pids=$(pgrep -d, -f "nginx: worker process" -P "$(cat "$run/px/nginx.pid" 2>/dev/null || echo 0)" || true)
  declare -A proc=([h2o]=$(pgrep -d, -f "h2o -c $run/h2o.conf" || true) [nginx]=$nginx_pids
                   [gateway]=$(pgrep -d, -f "waitroom-gateway -c $run/w.json" || true))
  for n in h2o nginx gateway; do
    [ -n "${proc[$n]}" ] || continue
    perf stat -e 'syscalls:sys_enter_*' -x, -p "${proc[$n]}" -o "$run/sys-$n.csv" -- sleep "$((secs + 1))" >/dev/null 2>&1 & ps_=$!
    sleep 0.5
    h=$(hdr "$n")
    # The proxy's own CPU time (user + system, clock ticks) over the same run.
    ticks() { local t=0; for p in ${proc[$n]//,/ }; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
    t0=$(ticks)
    timeout -k 5 $((secs + 30)) wrk -t2 -c64 -d"${secs}s" ${h:+-H "$h"} "${url[$n]}" |
      awk '/requests in/ {print $1}' > "$run/sys-$n.requests"
    echo $(( $(ticks) - t0 )) "$(getconf CLK_TCK)" > "$run/cpu-$n"
    wait $ps_ 2>/dev/null || true
  done
fi

# Open loop, at the given rate or half the slowest proxy's median throughput.
rate=${RATE:-$(/usr/bin/python3 - "$run/closed" <<'PY'
import sys, statistics
rps = {}
for line in open(sys.argv[1]):
    n, _, v, _, _ = line.split()
    rps.setdefault(n, []).append(float(v))
print(max(1, int(0.5 * min(statistics.median(rps[n]) for n in ("h2o", "nginx", "gateway")))))
PY
)}
for r in $(seq "$rounds"); do
  for n in "${names[@]}"; do
    h=$(hdr "$n")
    timeout -k 5 $((secs + warm + 30)) "$openloop" --url "${url[$n]}" --rate "$rate" --duration "$secs" \
      --warmup "$warm" --connections 64 ${h:+--header "$h"} --json > "$run/open-$n-$r.json" 2>"$run/open-$n-$r.err" || {
      echo "proxy.sh: waitroom-openloop against $n failed:" >&2; cat "$run/open-$n-$r.err" >&2; exit 1; }
  done
done

# `wrk -v` exits 1 after printing its version.
versions="$( (nginx -v 2>&1 || true) | sed -n 's|.*nginx/||p') $( (h2o --version 2>&1 || true) | awk 'NR == 1 {print $3}') $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')"
/usr/bin/python3 - "$run" "$secs" "$rounds" "$rate" "$warm" "$versions" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$out" <<'PY'
import json, os, statistics, sys
run, secs, rounds, rate, warm, versions, date, out = sys.argv[1:]
secs, rounds, rate, warm = int(secs), int(rounds), int(rate), int(warm)
names = ["backend", "h2o", "nginx", "gateway"]
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}

def ms(v):  # wrk's "812.00us", "1.20ms", "2.01s"
    num = v.rstrip("abcdefghijklmnopqrstuvwxyz")
    return float(num) * unit[v[len(num):]]

def med(xs):
    return statistics.median(xs) if xs else None

closed = {n: {"rps": [], "p99_ms_runs": [], "errors": 0} for n in names}
for line in open(run + "/closed"):
    n, _, rps, p99, err = line.split()
    closed[n]["rps"].append(float(rps))
    closed[n]["p99_ms_runs"].append(round(ms(p99), 3))
    closed[n]["errors"] += int(err)
for c in closed.values():
    c["rps_median"] = med(c["rps"])
    c["p99_ms_median"] = med(c["p99_ms_runs"])

opened = {"rate": rate, "duration_s": secs, "warmup_s": warm, "connections": 64}
for n in names:
    runs = [json.load(open("%s/open-%s-%d.json" % (run, n, r))) for r in range(1, rounds + 1)]
    lat = [x["latency_ms"]["latency"] for x in runs]
    opened[n] = {
        "p50_ms": med([l["p50"] for l in lat]), "p99_ms": med([l["p99"] for l in lat]),
        "p999_ms": med([l["p999"] for l in lat]), "max_ms": max(l["max"] for l in lat),
        "errors": sum(x["errors"]["total"] + x["requests"]["unfinished"] for x in runs),
        "achieved_rps": med([x["rate"]["achieved"] for x in runs]),
        "service_p99_ms": med([x["latency_ms"]["service_time"]["p99"] for x in runs]),
        "timer_lag_p99_ms": med([x["latency_ms"]["timer_lag"]["p99"] for x in runs]),
        "p99_ms_runs": [l["p99"] for l in lat],
    }

g = closed["gateway"]["rps_median"]
ratios = {"gateway_over_h2o": round(g / closed["h2o"]["rps_median"], 3),
          "gateway_over_nginx": round(g / closed["nginx"]["rps_median"], 3)}
v = (versions.split() + ["?"] * 3)[:3]
res = {"date": date, "versions": {"nginx": v[0], "h2o": v[1], "wrk": v[2]},
       "params": {"seconds_per_run": secs, "rounds": rounds, "workers": int(os.environ.get("WORKERS", "1"))},
       "command": "bench/proxy.sh %d %d" % (secs, rounds),
       "description": ("wrk `-t2 -c64` against a 100-byte `return 200` nginx backend (its own nginx, one worker): "
                       "directly, through h2o standalone (`proxy.reverse.url`, checks no token), through nginx "
                       "`proxy_pass` with a keep-alive upstream pool, and through `waitroom-gateway` with an ACTIVE "
                       "user's `Queue-Token`; each proxy with %s worker(s) (nginx worker_processes, h2o num-threads, "
                       "the gateway's processes). %d interleaved rounds of %d s; the median of each."
                       % (os.environ.get("WORKERS", "1"), rounds, secs)),
       "wrk": {"threads": 2, "connections": 64}, "closed": closed, "open": opened, "ratios": ratios,
       "profile": [l.rstrip() for l in open(os.path.join(run, "profile"))], "syscalls": {}}
for n in ("h2o", "nginx", "gateway"):
    try:
        reqs = int(open(os.path.join(run, "sys-%s.requests" % n)).read().split()[0])
        counts = {}
        for line in open(os.path.join(run, "sys-%s.csv" % n)):
            f = line.strip().split(",")
            if len(f) > 2 and f[2].startswith("syscalls:sys_enter_") and f[0].isdigit():
                counts[f[2][len("syscalls:sys_enter_"):]] = int(f[0])
    except (OSError, ValueError, IndexError):
        continue
    if reqs > 0:
        res["syscalls"][n] = {"requests": reqs, "per_request": {k: round(v / reqs, 3) for k, v in counts.items()
                                                                  if v / reqs >= 0.05}}
        try:
            t, hz = open(os.path.join(run, "cpu-%s" % n)).read().split()
            res["syscalls"][n]["cpu_us_per_request"] = round(int(t) / int(hz) * 1e6 / reqs, 2)
        except (OSError, ValueError):
            pass

print("closed loop: wrk -t2 -c64 -d%ds --latency, %d interleaved round(s); median over rounds" % (secs, rounds))
print("  %-8s %10s %10s   %s" % ("target", "req/s", "p99 ms", "errors  (req/s per round)"))
for n in names:
    c = closed[n]
    print("  %-8s %10.0f %10.3f   %-6d  (%s)" % (n, c["rps_median"], c["p99_ms_median"], c["errors"],
                                                ", ".join("%.0f" % x for x in c["rps"])))
print("open loop: waitroom-openloop at %d req/s, 64 connections, %ds (+%ds warmup), %d interleaved round(s);"
      % (rate, secs, warm, rounds))
print("  latency from intended send time, ms; median over rounds (max: highest)")
print("  %-8s %9s %9s %9s %9s %10s %7s   %s" % ("target", "p50", "p99", "p99.9", "max", "achieved/s", "errors",
                                                "(p99 per round)"))
for n in names:
    o = opened[n]
    print("  %-8s %9.3f %9.3f %9.3f %9.3f %10.0f %7d   (%s)" % (
        n, o["p50_ms"], o["p99_ms"], o["p999_ms"], o["max_ms"], o["achieved_rps"], o["errors"],
        ", ".join("%.3f" % x for x in o["p99_ms_runs"])))
print("ratios (closed-loop req/s): gateway/h2o %.2f, gateway/nginx %.2f" % (ratios["gateway_over_h2o"],
                                                                           ratios["gateway_over_nginx"]))
for n in names:
    if closed[n]["errors"] or opened[n]["errors"]:
        print("warning: %s had errors (closed %d, open %d): its numbers are suspect" % (
            n, closed[n]["errors"], opened[n]["errors"]))
lag = max(opened[n]["timer_lag_p99_ms"] for n in names)
if lag > 1:
    print("note: the open-loop generator ran up to %.1f ms late at p99 (a busy machine); that is in its latencies" % lag)
if out:
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print("wrote " + out)
PY
