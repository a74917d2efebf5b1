#!/usr/bin/env bash
# The whole benchmark suite in one command: runs every bench/ script, each
# side by side with its anchor (nginx, h2o, redis-benchmark, a bare send
# loop), then writes docs/benchmarks.md and the plots in docs/bench/ from
# the results (bench/report.py). Loopback only; every step is bounded in
# time and cleans up after itself; the whole run takes about 15 minutes on
# the project's 2-core machine (QUICK=1: about 5, with shorter runs and
# fewer rounds, for checking that everything works).
#
# Usage: bench/run.sh [RESULTS_DIR]
#   RESULTS_DIR (default: a new /tmp/waitroom-results.XXXXXX) keeps each
#   step's JSON; `bench/report.py RESULTS_DIR` re-renders the report alone.
#   ONLY="proxy join push admission scaling" runs a subset (the report then
#   shows the other sections as not measured).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --bench
bin=$(scripts/build.sh | tail -n 1)
out=${1:-$(mktemp -d /tmp/waitroom-results.XXXXXX)}
mkdir -p "$out"
only=${ONLY:-proxy join push admission scaling}
want() { [[ " $only " == *" $1 "* ]]; }
step() { echo "== $(date -u +%H:%M:%S) $*" >&2; }

if [ -n "${QUICK:-}" ]; then
  proxy_args=(2 1); join_args=(2 1); push_secs=5; push_sizes=(5000); adm_secs=10; scale_args=(5 10000 100000)
else
  proxy_args=(5 3); join_args=(5 3); push_secs=20; push_sizes=(5000 19000); adm_secs=30; scale_args=(10 10000 100000 1000000)
fi

# What the results were measured on and with.
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
/usr/bin/python3 - "$out/meta.json" <<PY
import json, os, platform, subprocess, sys, time
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception: return ""
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", \$2/1048576}' /proc/meminfo")
json.dump({
  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
  "commit": sh("git rev-parse --short HEAD") + (" (with local changes)" if sh("git status --porcelain --untracked-files=no -- . ':!docs/benchmarks.md' ':!docs/bench'") else ""),
  "machine": {"cores": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
              "os": sh(". /etc/os-release && echo \$PRETTY_NAME")},
  "versions": {"waitroom": sh("$bin/gateway/waitroom-gateway --version"),
               "libh2o": "$(ver libh2o0.13)", "libwebsockets": "$(ver libwebsockets17)", "hiredis": "$(ver libhiredis0.14)",
               "libuv": "$(ver libuv1)", "jansson": "$(ver libjansson4)", "libjwt": "$(ver libjwt0)", "openssl": "$(ver libssl3)",
               "redis": "$(ver redis-server)", "nginx": "$(ver nginx-light)", "h2o": "$(ver h2o)", "wrk": "$(ver wrk)",
               "gcc": sh("gcc -dumpfullversion")},
  "quick": bool(os.environ.get("QUICK")),
}, open(sys.argv[1], "w"), indent=1)
PY

if want proxy; then
  step "proxy: gateway against h2o and nginx (bench/proxy.sh ${proxy_args[*]})"
  bench/proxy.sh "${proxy_args[@]}" --out "$out/proxy.json" >&2 || echo "proxy: failed" >&2
fi
if want join; then
  step "join rate against redis-benchmark (bench/join_rate.sh ${join_args[*]})"
  bench/join_rate.sh "${join_args[@]}" --out "$out/join.json" >&2 || echo "join: failed" >&2
fi
if want push; then
  for n in "${push_sizes[@]}"; do
    for mode in ws sse; do
      step "push: $mode, $n clients, one process (bench/push.sh $mode $n 1 $push_secs)"
      bench/push.sh "$mode" "$n" 1 "$push_secs" > "$out/push-$mode-$n-1.json" || echo "push $mode $n: failed" >&2
    done
  done
  if [ -z "${QUICK:-}" ]; then
    step "push: ws, 38000 clients, two processes (bench/push.sh ws 38000 2 $push_secs)"
    bench/push.sh ws 38000 2 "$push_secs" > "$out/push-ws-38000-2.json" || echo "push ws 38000: failed" >&2
  fi
fi
if want admission; then
  step "admission precision (bench/admission.sh $adm_secs)"
  bench/admission.sh "$adm_secs" --out "$out/admission.json" >&2 || echo "admission: failed" >&2
fi
if want scaling; then
  step "tick cost against the queue's length (bench/tick_cost.sh ${scale_args[*]})"
  bench/tick_cost.sh "${scale_args[@]}" --out "$out/tick_cost.json" >&2 || echo "scaling: failed" >&2
fi

step "report"
/usr/bin/python3 bench/report.py "$out"
echo "results: $out" >&2
