#!/usr/bin/env bash
# Joins per second through the gateway, against what Redis alone can do with
# the same join script. On loopback only, bounded in time; cleans up after
# itself.
#
# Gateway: a private redis-server (no persistence), waitroom-gateway at its
# default `processes` (one per core), no worker (nobody is admitted), and
# wrk -t2 -c64 sending `GET <room path>` with `Accept: application/json`.
# wrk sends no cookie and no token, so every request is a new user: a uid
# drawn, the join script run in Redis (EVALSHA), a queue token signed, a JSON
# answer. Checked: wr:{room}:seq grows by the requests wrk completed (plus at
# most one in flight per connection at the end), and every answer was 2xx.
#
# Ceiling: redis-benchmark running the very same script, loaded with SCRIPT
# LOAD from the source waitroom-scripts prints (its SHA checked against the
# one the gateway computes), as
#   EVALSHA <join sha> 4 <queue> <seq> <serving> <deadline> <uid> <grace ms>
# with a 32-character uid built on __rand_int__ (-r 2e9: new users, a handful
# of repeats per million), twice: "same clients", with as many connections as
# the gateway keeps for commands (counted with CLIENT LIST: one per process;
# subscribers left out) and as many commands in flight on each as the
# gateway can have (-P 64 / connections: hiredis pipelines what wrk's 64
# connections ask for); and "ceiling", with the best of a few -c/-P settings
# each tried twice before the rounds.
#
# Rounds are interleaved (gateway, same clients, ceiling) and repeated;
# medians are reported. Redis is flushed before every run, so each starts
# from an empty line (the ZADDs are O(log N) in the line's length).
# Everything shares this machine's cores, wrk included, so the CPU time per
# join of the gateway processes, Redis and wrk is reported too (from
# /proc/PID/stat and `times`): it says how many joins/s the cores can give
# at most, whatever the ceiling. If the ratio gateway / ceiling is below 50%,
# one more gateway run is made under perf record (gateway processes with DWARF
# call chains, Redis) and the top of each profile is printed (--no-profile
# skips it).
#
# Time: about 20 s + 3 x rounds x seconds (+ seconds and ~10 s for a profile).
# Exit status: 0; 1 if a check failed or a run gave no number; 2 for bad usage.
#
# Usage: bench/join_rate.sh [seconds-per-run] [rounds] [--out FILE] [--no-profile]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=5; rounds=3; out=""; profile=1; pos=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "--out needs a file" >&2; exit 2; }; out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --no-profile) profile=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) pos+=("$1"); shift ;;
  esac
done
[ ${#pos[@]} -ge 1 ] && secs=${pos[0]}
[ ${#pos[@]} -ge 2 ] && rounds=${pos[1]}
[[ $secs =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ && $secs -le 120 && $rounds -le 20 ]] ||
  { echo "usage: bench/join_rate.sh [seconds-per-run 1..120] [rounds 1..20] [--out FILE] [--no-profile]" >&2; exit 2; }
[ -n "$out" ] && { out=$(realpath -m "$out"); : >"$out"; }
command -v wrk redis-server redis-benchmark redis-cli >/dev/null ||
  { echo "needs wrk, redis-server, redis-benchmark and redis-cli (apt-get install wrk redis-server redis-tools)" >&2; exit 1; }
bin=$(scripts/build.sh | tail -n 1)
scripts_bin=$bin/bench/waitroom-scripts

run=$(mktemp -d /tmp/waitroom-join.XXXXXX)
pids=()
cleanup() { # newest first: perf, then the gateway (its master stops its processes), then Redis
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis=$(port); gw=$(port)
room=booking; path=/book; grace_ms=30000
keys=("wr:{$room}:queue" "wr:{$room}:seq" "wr:{$room}:serving" "wr:{$room}:deadline")
rcli() { redis-cli -p "$redis" "$@"; }

redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$run/redis.log" 2>&1 & rpid=$!; pids+=("$rpid")
for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done
rcli ping >/dev/null

# The join script as the gateway sends it: the SHA must be the gateway's.
sha=$("$scripts_bin" --sha join)
loaded=$("$scripts_bin" join | rcli -x script load)
[ "$loaded" = "$sha" ] || { echo "SCRIPT LOAD gave $loaded, the gateway uses $sha" >&2; exit 1; }
[ "$("$scripts_bin" | awk '$1 == "join" {print $2}')" = 4 ] || { echo "the join script no longer takes 4 keys" >&2; exit 1; }

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/secret.key"
cat > "$run/w.json" <<JSON
{ "log_level": "warn", "redis": {"port": $redis},
  "gateway": {"listen": [{"host": "127.0.0.1", "port": $gw}]${PROCESSES:+, \"processes\": $PROCESSES}},
  "tokens": {"keys": [{"kid": "k1", "secret_file": "secret.key"}]},
  "rooms": [{"name": "$room", "path": "$path", "backend": "http://127.0.0.1:9",
             "total_active_users": 1000, "new_users_per_minute": 600, "session_duration": "5m",
             "abandon_grace": "$((grace_ms / 1000))s"}] }
JSON
"$bin/gateway/waitroom-gateway" -c "$run/w.json" 2>"$run/gateway.log" & gwpid=$!; pids+=("$gwpid")
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$gw/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$gw/healthz" >/dev/null || { echo "gateway not healthy:" >&2; cat "$run/gateway.log" >&2; exit 1; }
procs=$(pgrep -P "$gwpid" | paste -sd, -) || true
[ -n "$procs" ] || procs=$gwpid # processes 1: no master
nprocs=$(tr ',' '\n' <<<"$procs" | wc -l)
# healthz was answered by one process: wait until each has subscribed.
for _ in $(seq 50); do
  subconns=$(rcli client list | awk '/ sub=[1-9]/ || / psub=[1-9]/ {n++} END {print n + 0}')
  [ "$subconns" -ge "$nprocs" ] && break; sleep 0.1
done
# The gateway's command connections: every client but subscribers and this one.
cmdconns=$(rcli client list | awk '!/ cmd=client\|list / && / sub=0 / && / psub=0 / {n++} END {print n + 0}')
[ "$cmdconns" -ge 1 ] || { echo "no gateway connection found in CLIENT LIST" >&2; exit 1; }
body=$(curl -fs -H 'Accept: application/json' "http://127.0.0.1:$gw$path")
grep -q '"queueToken"' <<<"$body" || { echo "a join did not answer a queue token: $body" >&2; exit 1; }

fails=0
hz=$(getconf CLK_TCK)
cpu_ms() { # pid[,pid...] -> user + system CPU time so far, ms
  local p t=0
  for p in ${1//,/ }; do t=$((t + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat"))); done
  echo $((t * 1000 / hz))
}
per_op() { awk -v ms="$1" -v n="$2" 'BEGIN {printf "%.2f", (n > 0) ? ms * 1000 / n : 0}'; } # ms n -> us per op
wrk_run() { # seconds -> "rps requests non2xx socket_errors wrk_cpu_ms"
  local o # `times` after wrk: the CPU time of this subshell's children (timeout and wrk)
  o=$(timeout $(($1 + 30)) wrk -t2 -c64 -d"$1s" -H 'Accept: application/json' "http://127.0.0.1:$gw$path"; echo "--times"; times)
  awk 'function sec(v) {split(v, a, /[ms]/); return a[1] * 60 + a[2]}
       /Requests\/sec/ {rps=$2} / requests in / {n=$1} /Non-2xx/ {bad=$NF}
       /Socket errors/ {gsub(/,/, ""); err=$4+$6+$8+$10}
       /^--times/ {t=1; next} t == 1 {t=2; next} t == 2 {cpu=(sec($1) + sec($2)) * 1000; t=3}
       END {printf "%s %s %d %d %d\n", rps, n, bad, err, cpu}' <<<"$o"
}
bench_run() { # clients pipeline requests -> "ops/s redis_us_per_op"
  local r0 ops
  rcli flushall >/dev/null
  r0=$(cpu_ms "$rpid")
  ops=$(timeout $((secs * 5 + 30)) redis-benchmark -h 127.0.0.1 -p "$redis" -c "$1" -P "$2" -n "$3" -r 2000000000 --csv \
    EVALSHA "$sha" 4 "${keys[@]}" 00000000000000000000__rand_int__ "$grace_ms" | tail -n 1 | awk -F'","' '{print $2}')
  echo "$ops $(per_op $(($(cpu_ms "$rpid") - r0)) "$(rcli zcard "${keys[0]}")")"
}
gateway_run() { # -> "joins/s gateway_us redis_us wrk_us" (CPU per join), with the checks
  local rps n bad err wcpu seq g0 r0 g1 r1
  rcli flushall >/dev/null
  g0=$(cpu_ms "$procs"); r0=$(cpu_ms "$rpid")
  read -r rps n bad err wcpu < <(wrk_run "$secs")
  g1=$(cpu_ms "$procs"); r1=$(cpu_ms "$rpid")
  seq=$(rcli get "${keys[1]}"); seq=${seq:-0}
  if [ "$bad" -ne 0 ] || [ "$err" -ne 0 ] || [ "$seq" -lt "$n" ] || [ "$seq" -gt $((n + 64)) ]; then
    echo "check failed: wrk completed $n requests ($bad non-2xx, $err socket errors), wr:{$room}:seq grew by $seq" >&2
    fails=$((fails + 1))
  fi
  echo "$rps $(per_op $((g1 - g0)) "$seq") $(per_op $((r1 - r0)) "$seq") $(per_op "$wcpu" "$n")"
}

# The gateway's connections share wrk's 64 among them: at most 64 / N joins in
# flight on each, which hiredis pipelines. "Same clients" runs that depth.
depth=$(((64 + cmdconns - 1) / cmdconns))
echo "warming up, and finding the redis-benchmark settings that give the most joins/s..." >&2
wrk_run 1 >/dev/null
declare -A cal=()
cands=("$cmdconns 1" "$cmdconns $depth" "50 1" "50 16" "100 32" "200 64")
for pass in 1 2; do # each setting twice, interleaved; its better run counts
  for cp in "${cands[@]}"; do
    read -r c p <<<"$cp"
    read -r ops _ < <(bench_run "$c" "$p" 50000)
    echo "  pass $pass: redis-benchmark -c $c -P $p: $ops ops/s" >&2
    cal[$cp]=$(awk -v a="$ops" -v b="${cal[$cp]:-0}" 'BEGIN {m = (a > b) ? a : b; print m}')
  done
done
best_c=0; best_p=0; best=0
for cp in "${cands[@]}"; do
  if awk -v a="${cal[$cp]}" -v b="$best" 'BEGIN {exit !(a > b)}'; then best=${cal[$cp]}; read -r best_c best_p <<<"$cp"; fi
done
same_rate=${cal["$cmdconns $depth"]}
# Requests per redis-benchmark run, from the calibration: about secs seconds each.
n_same=$(awk -v r="$same_rate" -v s="$secs" 'BEGIN {printf "%d", r * s}')
n_ceiling=$(awk -v r="$best" -v s="$secs" 'BEGIN {printf "%d", r * s}')

: >"$run/results"
for r in $(seq "$rounds"); do
  echo "round $r/$rounds: gateway, redis-benchmark -c $cmdconns -P $depth, redis-benchmark -c $best_c -P $best_p" >&2
  {
    echo "gateway $(gateway_run)"
    echo "same $(bench_run "$cmdconns" "$depth" "$n_same")"
    echo "ceiling $(bench_run "$best_c" "$best_p" "$n_ceiling")"
  } >>"$run/results"
done

awk '($1 == "gateway" && NF == 5) || ($1 != "gateway" && NF == 3) {next} {bad = 1} END {exit bad}' "$run/results" ||
  { echo "a run gave no number:" >&2; cat "$run/results" "$run/redis.log" >&2; exit 1; }
median() { awk -v k="$1" '$1 == k {print $2}' "$run/results" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
low=$(awk -v g="$(median gateway)" -v c="$(median ceiling)" 'BEGIN {low = (g < 0.5 * c); print low}')

# Below target: where the time goes. The gateway is built without frame
# pointers, so its call chains are unwound from DWARF (at a lower frequency).
: >"$run/profile"
if [ "$low" = 1 ] && [ "$profile" = 1 ]; then
  if command -v perf >/dev/null && perf record -q -o "$run/probe.data" -- true >/dev/null 2>&1; then
    echo "ratio below 50%: one more gateway run under perf record..." >&2
    rcli flushall >/dev/null
    perf record -q -F 499 --call-graph dwarf,8192 -p "$procs" -o "$run/gw.data" >/dev/null 2>&1 & pg=$!; pids+=("$pg")
    perf record -q -g -p "$rpid" -o "$run/redis.data" >/dev/null 2>&1 & pr=$!; pids+=("$pr")
    sleep 0.3
    read -r rps _ < <(wrk_run "$secs")
    kill -INT "$pg" "$pr"; wait "$pg" "$pr" 2>/dev/null || true
    top() { # data-file report-options... -> the first 12 lines naming a symbol or DSO
      local f=$1; shift
      perf report -i "$f" --stdio -g none --percent-limit 1 "$@" 2>/dev/null |
        grep -E '^ +[0-9]' | grep -vE ' 0x[0-9a-f]+ *$' | head -n 12 || true
    }
    {
      echo "profile (one more gateway run, $rps joins/s under perf):"
      echo "-- gateway processes, self time by DSO"
      top "$run/gw.data" --no-children --sort dso
      echo "-- gateway processes, user-space functions by inclusive time (children, self)"
      perf report -i "$run/gw.data" --stdio -g none --percent-limit 2 --children --sort sym 2>/dev/null |
        grep -E '^ +[0-9].*\[\.\] [A-Za-z_]' | head -n 25 || true
      echo "-- redis-server, self time by DSO and symbol (Debian's redis-server is a link to redis-check-rdb)"
      top "$run/redis.data" --no-children --sort dso,sym
    } >>"$run/profile"
  else
    echo "(perf record does not work here: no profile)" >>"$run/profile"
  fi
fi

/usr/bin/python3 - "$run/results" "$run/profile" "$out" "$secs" "$rounds" "$nprocs" "$cmdconns" "$subconns" \
  "$depth" "$best_c" "$best_p" "$fails" "$(nproc)" \
  "$(redis-server --version)" "$(wrk -v 2>&1 | head -n 1)" "$(redis-benchmark --version)" <<'PY'
import datetime, json, re, statistics, sys
(results, prof, out, secs, rounds, nprocs, cmdconns, subconns, depth, best_c, best_p, fails, cores,
 redis_v, wrk_v, rb_v) = sys.argv[1:]
rows = {}
for line in open(results):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
col = lambda k, i: [r[i] for r in rows[k]]
med = lambda k, i=0: statistics.median(col(k, i))
ratio, ratio_same = med("gateway") / med("ceiling"), med("gateway") / med("same")
ver = lambda s, pat: (re.search(pat, s) or re.search(r"(\S+)$", s)).group(1)
fmt = lambda v: ", ".join("%.0f" % x for x in v)

print("join rate: %s s per run, %s interleaved rounds, Redis flushed before every run; %s cores shared by all"
      % (secs, rounds, cores))
print("gateway: %s processes (default: one per core), %s command + %s subscriber connections to Redis; "
      "wrk -t2 -c64, every request a new user" % (nprocs, cmdconns, subconns))
total = med("gateway", 1) + med("gateway", 2) + med("gateway", 3)
print("  %-40s %8s  %-26s %s" % ("", "median/s", "runs", "CPU us per join: gateway, redis, wrk"))
print("  %-40s %8.0f  %-26s %5.1f, %5.1f, %5.1f" % ("gateway joins", med("gateway"), fmt(col("gateway", 0)),
                                                    med("gateway", 1), med("gateway", 2), med("gateway", 3)))
print("  %-40s %8.0f  %-26s     -, %5.1f" % ("redis-benchmark -c %s -P %s (same clients)" % (cmdconns, depth),
                                            med("same"), fmt(col("same", 0)), med("same", 1)))
print("  %-40s %8.0f  %-26s     -, %5.1f" % ("redis-benchmark -c %s -P %s (ceiling)" % (best_c, best_p),
                                            med("ceiling"), fmt(col("ceiling", 0)), med("ceiling", 1)))
print("ratio gateway / ceiling: %.2f (target >= 0.50); gateway / same clients: %.2f" % (ratio, ratio_same))
print("CPU per gateway join, all three: %.1f us: on %s cores at most %.0f joins/s with wrk on the same cores"
      % (total, cores, int(cores) * 1e6 / total))
if int(fails):
    print("CHECK FAILED in %s gateway run(s): see above" % fails)
profile = open(prof).read().rstrip("\n")
if profile:
    print(profile)
if out:
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds_per_run": int(secs), "rounds": int(rounds), "cores": int(cores),
        "versions": {"redis": ver(redis_v, r"v=(\S+)"), "wrk": ver(wrk_v, r"wrk (\S+)"),
                     "redis_benchmark": ver(rb_v, r"redis-benchmark (\S+)")},
        "gateway": {"processes": int(nprocs), "redis_command_connections": int(cmdconns),
                    "redis_subscriber_connections": int(subconns), "wrk": "-t2 -c64",
                    "joins_per_s": col("gateway", 0), "median": med("gateway"),
                    "cpu_us_per_join": {"gateway": med("gateway", 1), "redis": med("gateway", 2),
                                        "wrk": med("gateway", 3)},
                    "checks_failed": int(fails)},
        "redis_benchmark": {
            "same_clients": {"clients": int(cmdconns), "pipeline": int(depth), "ops": col("same", 0),
                             "median": med("same"), "redis_cpu_us_per_op": med("same", 1)},
            "ceiling": {"clients": int(best_c), "pipeline": int(best_p), "ops": col("ceiling", 0),
                        "median": med("ceiling"), "redis_cpu_us_per_op": med("ceiling", 1)}},
        "ratio": round(ratio, 4),
        "ratio_same_clients": round(ratio_same, 4),
    }
    if profile:
        doc["profile"] = profile.splitlines()
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
PY
[ "$fails" -eq 0 ]
