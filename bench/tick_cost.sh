#!/usr/bin/env bash
# Redis cost of the admission tick against the number of waiting users.
# For each N: a fresh redis-server with N waiting users put in line with the
# same layout joins produce (seq, queue, deadline; abandon_grace 1h so nobody
# is dropped), filled by a Lua script 10,000 users a call (1,000,000 take a
# few seconds). Then one worker per N, all at once (each against its own
# redis-server, started a fraction of a tick apart so that their ticks do
# not coincide), so that whatever else loads the machine loads every N
# alike: each ticks every 100 ms and admits RATE / 600 users a tick (RATE is
# new_users_per_minute, default 6000: 10 a tick, so that every tick admits
# someone and runs the same commands; no session ends during the run).
# After 2 s of settling, CONFIG RESETSTAT opens a window of SECONDS; at its
# end, from INFO, per N:
#   - ticks: admit scripts (EVALSHA) run in the window;
#   - commands per tick: every command Redis processed in the window (the
#     EVALSHA and each command the script runs) over the ticks, less the
#     RESETSTAT itself;
#   - Redis µs per admit: the EVALSHA's mean duration (commandstats
#     usec_per_call), and its p50 and p99 (INFO latencystats);
#   - Redis CPU µs per tick: the redis-server's time on CPU over the window
#     (/proc/PID/schedstat, ns) over the ticks: the script, reading and
#     answering the worker, and Redis's own timers; unlike the µs above it
#     does not count time Redis was preempted;
#   - worker CPU µs per tick: the same for the worker. The worker's wall time per
#     tick is about that plus the script's duration plus one loopback round
#     trip;
#   - Redis bytes per waiting user: used_memory after the fill less before,
#     over N.
# Then the ratio of the per-tick cost (commands; mean and p50 µs; Redis
# CPU) at the largest N to that at the smallest: the admit script's work must not grow
# with the line (issue target: 1,000,000 at most 10% above 10,000). The
# commands are exact; the µs are noisy on a shared machine (compare the
# p50s, rerun when they disagree).
# Loopback only; bounded in time (the fills, about 6 s for the default sizes,
# + SECONDS + 3 s); cleans up after itself. Memory: about 300 bytes a
# waiting user (300 MB for 1,000,000).
#
# Usage: bench/tick_cost.sh [SECONDS [N...]] [--out FILE]
#        default: bench/tick_cost.sh 10 10000 100000 1000000
# --out FILE writes the results as JSON (one entry per N, and the ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
args=(); out=
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    [0-9]*) args+=("$1"); shift ;;
    *) echo "usage: bench/tick_cost.sh [SECONDS [N...]] [--out FILE]" >&2; exit 2 ;;
  esac
done
secs=${args[0]:-10}; rate=${RATE:-6000}
sizes=("${args[@]:1}")
[ ${#sizes[@]} -eq 0 ] && sizes=(10000 100000 1000000)
[ -n "$out" ] && case $out in /*) ;; *) out=$PWD/$out ;; esac
bin=$(scripts/build.sh | tail -n 1)
run=$(mktemp -d /tmp/waitroom-tick.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/secret.key"
stat() { redis-cli -p "$1" info "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k {print $2}'; }
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat"; }

# Users first..last in line as joins leave them: queue number q (seq = the
# last one), uid -> q in queue, uid -> now + grace in deadline.
fill=$(cat bench/fill_queue.lua) # the layout joins produce (bench/fill_queue.lua)

: > "$run/results"
declare -A rport rpid mem0 mem1 f0 f1 wpid cpu0 cpu1 rcpu0 rcpu1
for n in "${sizes[@]}"; do
  [ -z "${rport[$n]:-}" ] || { echo "N=$n given twice" >&2; exit 2; }
  redis=$(port); rport[$n]=$redis
  redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$run/redis-$n.log" 2>&1 & rpid[$n]=$!; pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$redis" ping >/dev/null 2>&1 && break; sleep 0.1; done
  cat > "$run/w-$n.json" <<JSON
{ "log_level": "warn", "redis": {"port": $redis},
  "tokens": {"keys": [{"kid": "k1", "secret_file": "secret.key"}]},
  "rooms": [{"name": "booking", "path": "/book", "backend": "http://127.0.0.1:9",
             "total_active_users": 10000000, "new_users_per_minute": $rate, "session_duration": "1h",
             "abandon_grace": "1h"}] }
JSON
  mem0[$n]=$(stat "$redis" memory used_memory)
  f0[$n]=$(date +%s.%N)
  for ((start = 1; start <= n; start += 10000)); do
    redis-cli -p "$redis" eval "$fill" 3 'wr:{booking}:queue' 'wr:{booking}:deadline' 'wr:{booking}:seq' \
      "$start" $((start + 9999 < n ? start + 9999 : n)) 3600000 "$n" >/dev/null
  done
  f1[$n]=$(date +%s.%N)
  mem1[$n]=$(stat "$redis" memory used_memory)
  [ "$(redis-cli -p "$redis" zcard 'wr:{booking}:queue')" = "$n" ] || { echo "fill failed at N=$n" >&2; exit 1; }
done
# All sizes are measured over the same window, each by its own worker against
# its own redis-server, so that whatever else loads the machine loads them
# alike. The workers start a fraction of a tick apart so that their ticks
# do not coincide.
stagger=$(awk -v k=${#sizes[@]} 'BEGIN {printf "%.3f", 0.1 / k}')
for n in "${sizes[@]}"; do
  "$bin/worker/waitroom-worker" -c "$run/w-$n.json" 2>"$run/worker-$n.log" & wpid[$n]=$!; pids+=($!)
  sleep "$stagger"
done
sleep 2  # let the workers settle into their ticks before the window opens
for n in "${sizes[@]}"; do
  redis-cli -p "${rport[$n]}" config resetstat >/dev/null; cpu0[$n]=$(cpu_ns "${wpid[$n]}"); rcpu0[$n]=$(cpu_ns "${rpid[$n]}")
done
t0=$(date +%s.%N)
sleep "$secs"
for n in "${sizes[@]}"; do
  redis-cli -p "${rport[$n]}" info everything | tr -d '\r' > "$run/info-$n"; cpu1[$n]=$(cpu_ns "${wpid[$n]}")
  rcpu1[$n]=$(cpu_ns "${rpid[$n]}")
done
t1=$(date +%s.%N)
for n in "${sizes[@]}"; do kill "${wpid[$n]}"; done
printf '%10s %6s %10s %15s %14s %14s %14s %11s %7s\n' waiting ticks cmds/tick "redis us/admit" "p50/p99 us" "redis cpu us" "worker cpu us" bytes/user "fill s"
for n in "${sizes[@]}"; do
  /usr/bin/python3 - "$n" "$run/info-$n" "$t0" "$t1" "${cpu0[$n]}" "${cpu1[$n]}" "${mem0[$n]}" "${mem1[$n]}" \
    "${f0[$n]}" "${f1[$n]}" "${rcpu0[$n]}" "${rcpu1[$n]}" >> "$run/results" <<'PY'
import json, sys
n, info = int(sys.argv[1]), sys.argv[2]
t0, t1, cpu0, cpu1, mem0, mem1, f0, f1, rcpu0, rcpu1 = map(float, sys.argv[3:13])
kv = dict(l.split(":", 1) for l in open(info).read().splitlines() if ":" in l and not l.startswith("#"))
ev = dict(x.split("=") for x in kv.get("cmdstat_evalsha", "calls=0,usec=0").split(","))
calls, usec = int(ev["calls"]), int(ev["usec"])
# CONFIG RESETSTAT counts itself once it has reset; the INFO does not count itself.
commands = int(kv["total_commands_processed"]) - 1
lat = dict(x.split("=") for x in kv.get("latency_percentiles_usec_evalsha", "p50=0,p99=0").split(","))
print(json.dumps({"waiting": n, "window_s": round(t1 - t0, 2), "ticks": calls,
                  "commands_per_tick": round(commands / max(1, calls), 3),
                  "us_per_admit": round(usec / max(1, calls), 2),
                  "us_p50": float(lat["p50"]), "us_p99": float(lat["p99"]),
                  "redis_cpu_us_per_tick": round((rcpu1 - rcpu0) / 1000 / max(1, calls), 2),
                  "worker_cpu_us_per_tick": round((cpu1 - cpu0) / 1000 / max(1, calls), 2),
                  "bytes_per_user": round((mem1 - mem0) / n, 1),
                  "fill_s": round(f1 - f0, 2)}))
PY
  tail -n 1 "$run/results" | /usr/bin/python3 -c 'import json, sys; r = json.load(sys.stdin)
print("%10d %6d %10.3f %15.2f %14s %14.2f %14.2f %11.1f %7.2f" % (r["waiting"], r["ticks"], r["commands_per_tick"],
      r["us_per_admit"], "%.1f/%.1f" % (r["us_p50"], r["us_p99"]), r["redis_cpu_us_per_tick"], r["worker_cpu_us_per_tick"],
      r["bytes_per_user"], r["fill_s"]))'
done
OUT=$out RATE=$rate /usr/bin/python3 - "$run/results" <<'PY'
import json, os, sys, time
sizes = [json.loads(l) for l in open(sys.argv[1])]
lo, hi = min(sizes, key=lambda r: r["waiting"]), max(sizes, key=lambda r: r["waiting"])
def ratio(k):
    return round(hi[k] / lo[k], 4) if lo[k] else None
rc, ru, rp, rr = ratio("commands_per_tick"), ratio("us_per_admit"), ratio("us_p50"), ratio("redis_cpu_us_per_tick")
if hi is not lo:
    print("%d vs %d waiting: commands/tick x%.3f; Redis us/admit x%.3f (mean), x%.3f (p50); Redis CPU/tick x%.3f; "
          "issue target, at most +10%%: %s" % (hi["waiting"], lo["waiting"], rc, ru, rp, rr,
        "met" if rc <= 1.1 and ru <= 1.1 else
        "commands met, us over (noisy? see p50 and rerun)" if rc <= 1.1 else "NOT met"))
if os.environ.get("OUT"):
    with open(os.environ["OUT"], "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tick_ms": 100,
                   "rate_per_min": int(os.environ["RATE"]),
                   "sizes": sizes, "ratio_commands": rc,
                   "ratio_us": ru, "ratio_us_p50": rp, "ratio_redis_cpu": rr}, f, indent=1)
        f.write("\n")
PY
