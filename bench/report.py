#!/usr/bin/python3
"""report.py: renders docs/benchmarks.md and docs/bench/*.png from the JSON
results that bench/run.sh collects in one directory.

Usage: bench/report.py RESULTS_DIR [--docs DIR]

Every figure in the report comes from a file in RESULTS_DIR; a section whose
file is missing says it was not measured in that run, never an old number.
Targets are those of the issues (docs/benchmarks.md lists them); each is
reported as met or missed with the margin, and a miss with what its anchor
or profile shows. Plots are drawn by gnuplot (PNG); without gnuplot the
report is written without them.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(d, name):
    p = os.path.join(d, name)
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def n(x, digits=0):
    """A number with thousands separators; '?' for missing."""
    if x is None:
        return "?"
    if digits == 0:
        return "{:,.0f}".format(x)
    return "{:,.{d}f}".format(x, d=digits)


def ratio(a, b):
    return a / b if a and b else None


def verdict(ok):
    return "**met**" if ok else "**missed**"


class Plotter:
    """Writes PNGs with gnuplot; remembers which it could make."""

    def __init__(self, outdir):
        self.outdir = outdir
        self.gnuplot = shutil.which("gnuplot")
        self.made = []
        os.makedirs(outdir, exist_ok=True)

    def plot(self, name, script, data):
        if not self.gnuplot:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            paths = {}
            for key, rows in data.items():
                p = os.path.join(tmp, key + ".dat")
                with open(p, "w") as f:
                    for r in rows:
                        f.write("\t".join('"%s"' % c if isinstance(c, str) else repr(c) for c in r) + "\n")
                paths[key] = p
            png = os.path.join(self.outdir, name + ".png")
            head = ('set terminal pngcairo size 900,480 font "sans,11" noenhanced\n'
                    if self._cairo() else 'set terminal png size 900,480 noenhanced\n')
            text = head + 'set output "%s"\n' % png + script.format(**paths)
            r = subprocess.run([self.gnuplot], input=text, text=True, capture_output=True, timeout=60)
            if r.returncode != 0 or not os.path.exists(png):
                sys.stderr.write("report: gnuplot failed for %s: %s\n" % (name, r.stderr.strip()[:500]))
                return None
        self.made.append(name)
        return "bench/%s.png" % name

    def _cairo(self):
        r = subprocess.run([self.gnuplot, "-e", "set terminal"], capture_output=True, text=True)
        return "pngcairo" in (r.stdout + r.stderr)


class Report:
    def __init__(self, d, docs):
        self.d = d
        self.docs = docs
        self.out = []
        self.targets = []   # (issue, target, measured, ok or None)
        self.plots = Plotter(os.path.join(docs, "bench"))

    def w(self, s=""):
        self.out.append(s)

    def target(self, issue, what, measured, ok):
        self.targets.append((issue, what, measured, ok))

    def image(self, rel, alt):
        if rel:
            self.w("![%s](%s)" % (alt, rel))
            self.w()

    # ---------------------------------------------------------------- proxy
    def proxy(self):
        p = load(self.d, "proxy.json")
        self.w("## Proxied requests of an admitted user, against nginx and h2o")
        self.w()
        if not p:
            self.w("Not measured in this run.")
            self.w()
            return
        self.w("    " + p.get("command", "bench/proxy.sh 5 3"))
        self.w()
        if p.get("date"):
            self.w("Measured %s." % p["date"])
            self.w()
        self.w(p.get("description", "").strip())
        self.w()
        closed = p.get("closed", {})
        labels = [("backend", "backend direct"), ("h2o", "h2o standalone proxy"),
                  ("nginx", "nginx proxy_pass"), ("gateway", "**waitroom-gateway**")]
        h2o = closed.get("h2o", {}).get("rps_median")
        ngx = closed.get("nginx", {}).get("rps_median")
        self.w("Closed loop (wrk, %s threads, %s connections), median of the rounds:" % (
            p.get("wrk", {}).get("threads", "?"), p.get("wrk", {}).get("connections", "?")))
        self.w()
        self.w("| target | req/s (median) | rounds | p99 (median) | vs h2o | vs nginx |")
        self.w("|---|---|---|---|---|---|")
        rows = []
        for key, label in labels:
            c = closed.get(key)
            if not c:
                continue
            rps = c.get("rps_median")
            runs = " / ".join(n(x) for x in c.get("rps", []))
            self.w("| %s | %s | %s | %s ms | %s | %s |" % (
                label, n(rps), runs, n(c.get("p99_ms_median"), 2),
                n(ratio(rps, h2o), 2), n(ratio(rps, ngx), 2)))
            rows.append((label.strip("*"), rps or 0))
        self.w()
        gw = closed.get("gateway", {}).get("rps_median")
        r_h2o, r_ngx = ratio(gw, h2o), ratio(gw, ngx)

        def spread(key):
            runs = closed.get(key, {}).get("rps") or []
            return "%s–%s" % (n(min(runs)), n(max(runs))) if runs else "?"
        sc = p.get("syscalls") or {}
        cpu_note = ""
        if all("cpu_us_per_request" in sc.get(k, {}) for k in ("nginx", "gateway")):
            cpu_note = "; CPU per request %s of nginx's" % n(
                sc["gateway"]["cpu_us_per_request"] / sc["nginx"]["cpu_us_per_request"], 2)
        self.target(4, "proxied throughput ≥ nginx's", "%s of nginx (rounds: gateway %s, nginx %s req/s%s)" % (
            n(r_ngx, 2), spread("gateway"), spread("nginx"), cpu_note), r_ngx is not None and r_ngx >= 1.0)
        self.target(4, "proxied throughput ≥ 90 % of h2o standalone's", "%s of h2o" % n(r_h2o, 2),
                    r_h2o is not None and r_h2o >= 0.9)
        img = self.plots.plot("proxy_throughput", """
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set ylabel "requests per second (median)"
set yrange [0:*]
set grid ytics
set title "Proxied requests, closed loop (wrk)"
unset key
plot "{d}" using 2:xtic(1) lc rgb "#4477aa"
""", {"d": rows})
        self.image(img, "proxied requests per second")
        o = p.get("open")
        if o:
            self.w("Open loop (`waitroom-openloop`: requests sent at a constant %s a second whatever the answers, "
                   "latency measured from each request's intended send time, so a stall counts for every request "
                   "it delayed):" % n(o.get("rate")))
            self.w()
            self.w("| target | p50 | p99 | p99.9 | max | achieved/s | errors |")
            self.w("|---|---|---|---|---|---|---|")
            lat = []
            for key, label in labels:
                c = o.get(key)
                if not c:
                    continue
                self.w("| %s | %s ms | %s ms | %s ms | %s ms | %s | %s |" % (
                    label, n(c.get("p50_ms"), 2), n(c.get("p99_ms"), 2),
                    n(c.get("p999_ms"), 2), n(c.get("max_ms"), 2), n(c.get("achieved_rps")), n(c.get("errors"))))
                lat.append((label.strip("*"), c.get("p50_ms") or 0, c.get("p99_ms") or 0, c.get("p999_ms") or 0))
            self.w()
            img = self.plots.plot("proxy_latency", """
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "latency from intended send time (ms)"
set logscale y
set grid ytics
set title "Proxied requests, open loop at a constant rate"
set key top left
plot "{d}" using 2:xtic(1) title "p50" lc rgb "#4477aa", "" using 3 title "p99" lc rgb "#ee6677", "" using 4 title "p99.9" lc rgb "#ccbb44"
""", {"d": lat})
            self.image(img, "open-loop latency percentiles")
        self.syscalls(p.get("syscalls"))
        self.w(
            "Where the time goes. On loopback most of a proxy's CPU is the kernel's (its own sends and, in its "
            "context, the receivers' TCP processing), so what separates the three is mostly how many system "
            "calls a request costs. nginx: read and write each side, nothing else. h2o standalone (2.2.5): "
            "besides those, it re-registers both sockets with epoll and sets the upstream socket's flags around "
            "every request. waitroom-gateway: its own upstream client (`gateway/upstream.c`) keeps each backend "
            "connection registered for its whole life and writes requests with one `write`; the two `epoll_ctl` "
            "left are h2o's HTTP/1 server side, which stops reading the client's socket while a request is in "
            "progress and starts again after the answer (with libuv an `EPOLL_CTL_ADD` that fails with EEXIST, "
            "then a `MOD`). Before `gateway/upstream.c` the gateway used h2o's proxy, which with libuv exports "
            "and re-imports the pooled backend socket around every request (dup, close, ioctl, a MSG_PEEK "
            "recv): 12 system calls a request and 0.88 of nginx's throughput.")
        self.w()
        sc = p.get("syscalls") or {}
        if all("cpu_us_per_request" in sc.get(k, {}) for k in ("nginx", "gateway")):
            self.w(
                "CPU per request is the fairer comparison of the proxies themselves: the closed-loop figure is "
                "the whole machine's (wrk, the backend and the proxy share 2 cores), and it moves by several per "
                "cent from round to round. Here the gateway, which also checks the user's token and admission, "
                "spends %s of nginx's CPU per proxied request (%s against %s µs)." % (
                    n(sc["gateway"]["cpu_us_per_request"] / sc["nginx"]["cpu_us_per_request"], 2),
                    n(sc["gateway"]["cpu_us_per_request"], 1), n(sc["nginx"]["cpu_us_per_request"], 1)))
            self.w()
        self.profile(p.get("profile"), "One more gateway run under `perf record` (closed loop, same settings):")
        for note in p.get("notes", []):
            self.w(note)
            self.w()

    def profile(self, lines, intro):
        if lines:
            self.w(intro)
            self.w()
            for l in lines:
                self.w("    " + l.rstrip())
            self.w()

    def syscalls(self, sc):
        if not sc:
            return
        self.w("System calls per proxied request (`perf stat -e 'syscalls:sys_enter_*'` on each proxy's process "
               "during one more closed-loop run; calls made at least 0.05 times a request):")
        self.w()
        names = [k for k in ("h2o", "nginx", "gateway") if k in sc]
        calls = sorted({c for k in names for c in sc[k].get("per_request", {})},
                       key=lambda c: -max(sc[k].get("per_request", {}).get(c, 0) for k in names))
        self.w("| system call | " + " | ".join(names) + " |")
        self.w("|---|" + "---|" * len(names))
        for c in calls:
            self.w("| `%s` | " % c + " | ".join(n(sc[k]["per_request"][c], 2) if c in sc[k].get("per_request", {})
                                               else "< 0.05" for k in names) + " |")
        self.w("| **all** | " + " | ".join("**%s**" % n(sum(sc[k].get("per_request", {}).values()), 2)
                                          for k in names) + " |")
        if all("cpu_us_per_request" in sc[k] for k in names):
            self.w("| CPU per request (user + system, the proxy's processes) | " +
                   " | ".join("%s µs" % n(sc[k]["cpu_us_per_request"], 1) for k in names) + " |")
        self.w()

    # ----------------------------------------------------------------- join
    def join(self):
        j = load(self.d, "join.json")
        self.w("## Joins per second, against redis-benchmark running the same script")
        self.w()
        if not j:
            self.w("Not measured in this run.")
            self.w()
            return
        self.w("    " + j.get("command", "bench/join_rate.sh 5 3"))
        self.w()
        self.w(j.get("description") or (
            "wrk `-t2 -c64` GETs the room's path with `Accept: application/json` and no cookie, so every request "
            "is a new user: a uid, the join script in Redis, a signed queue token, a JSON answer. The anchor is "
            "`redis-benchmark` running the same script (`EVALSHA` of the join script, loaded from "
            "`waitroom-scripts join` and its SHA checked), once with as many connections and commands in flight as "
            "the gateway uses, and once with the best of several `-c`/`-P` settings (the ceiling). Rounds are "
            "interleaved, Redis is flushed before every run, medians are reported."))
        self.w()
        g = j.get("gateway", {})
        rb = j.get("redis_benchmark", {})
        same, ceil = rb.get("same_clients", {}), rb.get("ceiling", {})
        self.w("| what | per second (median) | rounds |")
        self.w("|---|---|---|")
        self.w("| joins through waitroom-gateway (%s processes) | %s | %s |" % (
            g.get("processes", "?"), n(g.get("median")), " / ".join(n(x) for x in g.get("joins_per_s", []))))
        if same:
            self.w("| redis-benchmark, join script, %s clients | %s | %s |" % (
                same.get("clients", "?"), n(same.get("median")), " / ".join(n(x) for x in same.get("ops", []))))
        if ceil:
            self.w("| redis-benchmark, join script, %s clients, pipeline %s (the ceiling) | %s | %s |" % (
                ceil.get("clients", "?"), ceil.get("pipeline", "?"), n(ceil.get("median")),
                " / ".join(n(x) for x in ceil.get("ops", []))))
        self.w()
        r = j.get("ratio")
        self.target(4, "joins per second ≥ 50 % of the Redis ceiling for the same script",
                    "%s of it (%s joins/s against %s)" % (n(r, 2), n(g.get("median")), n(ceil.get("median"))),
                    r is not None and r >= 0.5)
        self.w("Gateway joins per second over the ceiling: **%s**." % n(r, 2))
        self.w()
        cpu = g.get("cpu_us_per_join") or {}
        if cpu:
            self.w("CPU time per join (µs), from each process's user+system time during the gateway runs: "
                   + ", ".join("%s %s" % (k, n(v, 1)) for k, v in cpu.items() if isinstance(v, (int, float)))
                   + ". All of it shares the same 2 cores; redis-benchmark's client costs far less per command "
                   "than wrk plus the gateway, so the ceiling is a two-process figure and the join path a "
                   "three-process one.")
            self.w()
        self.w(
            "Why the ratio sits near one half. A join through the gateway takes three processes' CPU on the same "
            "2 cores: wrk's (a new request and answer per join), the gateway's (parse, uid, token, script call, "
            "answer) and Redis's; redis-benchmark pipelines 32 or 64 commands per write and its client costs "
            "little per command, so its ceiling is nearly all Redis. Most of the gateway's share is the kernel "
            "(the answer's `writev`, which on loopback also runs wrk's receive path). Taken out of the gateway "
            "on the way: libjwt's token encoder (a quarter of a join's gateway CPU: tokens are now written from "
            "a template and MACed with a keyed context), one RAND_bytes call per uid (now 4 KiB at a time), and "
            "hiredis's libuv adapter, which polled for writability for every batch of commands "
            "(`gateway/redis_uv.c` writes them in the same loop turn; Redis then receives larger batches and its "
            "CPU per join fell to what it is under redis-benchmark).")
        self.w()
        self.profile(j.get("profile"), "Profile of one more gateway run (`perf record`):")
        for note in j.get("notes", []):
            self.w(note)
            self.w()

    # ----------------------------------------------------------------- push
    def push(self):
        runs = []
        for f in sorted(glob.glob(os.path.join(self.d, "push-*.json"))):
            x = load(self.d, os.path.basename(f))
            if x:
                runs.append(x)
        runs.sort(key=lambda x: (x.get("gateway_processes", 1), x.get("connections", 0), x.get("mode", "")))
        self.w("## Waiting clients held, and their pushed positions")
        self.w()
        if not runs:
            self.w("Not measured in this run.")
            self.w()
            return
        self.w("    bench/push.sh MODE CLIENTS PROCESSES SECONDS")
        self.w()
        self.w(
            "One redis-server, one `waitroom-gateway` (with `processes` as given), the worker ticking every 100 ms "
            "and admitting one user a tick, so every waiting client's position changes every tick, and "
            "`waitroom-loadgen` (bench/loadgen.c) holding the clients on WebSocket (libwebsockets client) or SSE. "
            "Everyone connects first, with the worker stopped; then the worker starts and publish-to-receipt "
            "latency is measured (receive time minus the `ts` the worker stamped). Gateway memory is its RSS with "
            "the clients held, minus before, per connection; gateway CPU is its user+system time while pushing, "
            "per message. The load generator shares the 2 cores with the gateway, Redis and the worker.")
        self.w()
        self.w(
            "The anchor, run right after each with everything else stopped, is `waitroom-sendfloor` "
            "(bench/sendfloor.c): a bare loop doing only the gateway's unavoidable part, one write of a "
            "120-byte message to each of the same number of loopback TCP connections per 100 ms tick, read by a "
            "child process with epoll; its latency runs from the tick's start to receipt. Its reader is much "
            "lighter than the load generator (a plain epoll loop against libwebsockets' client or an SSE "
            "parser), so on these 2 shared cores the floor's latency is a lower bound, not a like-for-like run; "
            "CPU per message compares the senders alone.")
        self.w()
        self.w("| mode | clients | processes | held | errors | KiB RSS per connection | gateway CPU per message "
               "| floor CPU per message | messages/s | p50 | p99 | max | floor p50 | floor p99 |")
        self.w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        lat_rows = []
        for x in runs:
            lg = x.get("loadgen", {})
            lat = lg.get("latency_ms", {}).get("push", {})
            fl = x.get("floor", {})
            fll = fl.get("latency_ms", {})
            mode = {"ws": "WebSocket", "sse": "SSE"}.get(x.get("mode"), x.get("mode"))
            self.w("| %s | %s | %s | %s | %s | %s | %s µs | %s µs | %s | %s ms | %s ms | %s ms | %s ms | %s ms |" % (
                mode, n(x.get("connections")), x.get("gateway_processes"), n(x.get("held_when_worker_started")),
                n(lg.get("errors", {}).get("total")), n(x.get("kib_per_connection"), 2),
                n(x.get("gateway_cpu_us_per_message"), 1), n(fl.get("sender_cpu_us_per_message"), 1),
                n(lg.get("messages", {}).get("per_second_hold")), n(lat.get("p50"), 1), n(lat.get("p99"), 1),
                n(lat.get("max"), 0), n(fll.get("p50"), 1), n(fll.get("p99"), 1)))
            lat_rows.append(("%s %s/%s" % (mode, n(x.get("connections")), x.get("gateway_processes")),
                             lat.get("p99") or 0, fll.get("p99") or 0))
        self.w()
        img = self.plots.plot("push_latency", """
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "p99 publish to receipt (ms)"
set logscale y
set grid ytics
set title "Pushed positions: gateway against a bare send loop (same writes per tick)"
set key top left
set arrow from graph 0, first 100 to graph 1, first 100 nohead dt 2 lc rgb "#222222"
plot "{d}" using 2:xtic(1) title "waitroom-gateway p99" lc rgb "#4477aa", "" using 3 title "bare send loop p99" lc rgb "#bbbbbb"
""", {"d": lat_rows})
        self.image(img, "push latency against the floor")

        one = [x for x in runs if x.get("gateway_processes") == 1]
        big = [x for x in one if x.get("connections", 0) >= 19000]
        for mode in ("ws", "sse"):
            m = [x for x in big if x.get("mode") == mode]
            if m:
                x = m[0]
                held = x.get("held_when_worker_started", 0)
                kib = x.get("kib_per_connection")
                self.target(3, "one process holds 19,000 %s clients at ≤ 8 KiB RSS each" % mode.upper(),
                            "%s held, %s KiB" % (n(held), n(kib, 2)), held >= 19000 and kib is not None and kib <= 8)
                p99 = x.get("loadgen", {}).get("latency_ms", {}).get("push", {}).get("p99")
                fp99 = x.get("floor", {}).get("latency_ms", {}).get("p99")
                self.target(3, "p99 publish to receipt ≤ 100 ms at 19,000 %s clients a process, positions changing "
                               "every tick" % mode.upper(),
                            "%s ms (bare send loop: %s ms)" % (n(p99, 0), n(fp99, 0)), p99 is not None and p99 <= 100)
        two = [x for x in runs if x.get("gateway_processes") == 2]
        if two:
            x = two[0]
            held = x.get("held_when_worker_started", 0)
            self.target(3, "two processes on one 2-core machine hold 38,000 clients", "%s held" % n(held),
                        held >= 38000)
        self.w(
            "Where the time goes. A tick with every position changed is one message per client: 190,000 "
            "messages a second at 19,000 clients. On loopback each `write` also runs the receiving side's TCP "
            "processing and wakes the reader in the sender's context (`perf`: `tcp_v4_rcv`, "
            "`sock_def_readable`, `__inet_lookup_established` under the sender's `write`), so the bare loop's "
            "CPU per message is the floor for any gateway on this machine, and the floor's own p99 at 19,000 "
            "connections is already above 100 ms: a walk over 19,000 sockets takes longer than a tick before "
            "any gateway logic runs. Sender and receiver together need more CPU per message than the 2 cores "
            "have for 190,000 a second. The gateway's own share is the difference between its CPU per message "
            "and the floor's.")
        self.w()
        self.w(
            "Memory. A WebSocket client costs the gateway its socket, libwebsockets' connection and the push "
            "hub's entry. An SSE stream over HTTP/1.1 takes its socket from h2o once the response head is written "
            "(`gateway/sse.c`), so h2o's connection, request, 4 KiB pool chunk and 8 KiB input buffer are freed "
            "for the stream's life: 11.7 KiB per stream before (valgrind massif showed those four), about 2 KiB "
            "after.")
        self.w()

    # ------------------------------------------------------------ admission
    def admission(self):
        a = load(self.d, "admission.json")
        self.w("## Admission precision")
        self.w()
        if not a:
            self.w("Not measured in this run.")
            self.w()
            return
        self.w("    " + a.get("command", "bench/admission.sh %d" % round(a.get("duration_s") or 30)))
        self.w()
        self.w(a.get("description") or (
            "The real worker against a real redis-server with %s users waiting, total_active_users %s, "
            "new_users_per_minute %s, sessions of %s s, so that the cap binds after a few seconds and ending "
            "sessions free slots from then on; a second worker runs beside the first for part of the run. A "
            "watcher reads Redis's MONITOR (every tick of every worker, on Redis's clock), the room's events "
            "channel, and samples the ACTIVE count after every tick message and in a loop; only the atomic admit "
            "script adds to the active set, so the maxima are the values right after admitting ticks, and the "
            "report counts how many of those were sampled. It also replays the script's arithmetic and checks "
            "every tick against it." % (n((a.get("end") or {}).get("seq")), n(a.get("limit")),
                                         n(a.get("rate_per_min")), n((a.get("session_ms") or 0) / 1000.0, 0))))
        self.w()
        pm, jm, ad, ac = a.get("period_ms", {}), a.get("jitter_ms", {}), a.get("admitted", {}), a.get("active", {})
        self.w("| measure | value |")
        self.w("|---|---|")
        self.w("| ticks observed | %s (tick_ms %s) |" % (n(a.get("ticks")), a.get("tick_ms")))
        self.w("| tick period p50 / p99 / max | %s / %s / %s ms |" % (n(pm.get("p50"), 1), n(pm.get("p99"), 1),
                                                                      n(pm.get("max"), 1)))
        self.w("| tick jitter, abs(period − tick_ms), p50 / p99 / max | %s / %s / %s ms |" % (
            n(jm.get("p50"), 2), n(jm.get("p99"), 2), n(jm.get("max"), 2)))
        self.w("| admitted, against rate × time | %s of %s expected (%s a minute) |" % (
            n(ad.get("total")), n(ad.get("expected")), n(a.get("rate_per_min"))))
        self.w("| admitted per tick, mean / max | %s / %s |" % (n(ad.get("per_tick_mean"), 2), n(ad.get("per_tick_max"))))
        for name, ph in (a.get("phases") or {}).items():
            self.w("| %s, %s–%s s: admitted; expected by the replay; rate × elapsed; slots freed | %s; %s; %s; %s |" % (
                name.replace("_", " "), n(ph.get("from_s"), 1), n(ph.get("to_s"), 1), n(ph.get("total")),
                n(ph.get("expected")), n(ph.get("rate_x_elapsed"), 1), n(ph.get("slots_freed"))))
        self.w("| maximum ACTIVE observed, against total_active_users | %s of %s (%s samples) |" % (
            n(ac.get("max_observed")), n(ac.get("limit")), n(ac.get("samples"))))
        tw = a.get("two_workers")
        if tw:
            twa = tw.get("active", tw)
            self.w("| two workers at once: maximum ACTIVE | %s of %s |" % (n(twa.get("max_observed")), n(twa.get("limit", ac.get("limit")))))
        self.w()
        over = ac.get("overshoot")
        self.target(4, "no more ACTIVE users than total_active_users (overshoot 0)",
                    "overshoot %s" % n(over), over == 0)
        if tw:
            twa = tw.get("active", tw)
            self.target(4, "overshoot 0 with two workers running at once", "overshoot %s" % n(twa.get("overshoot")),
                        twa.get("overshoot") == 0)
        for note in a.get("notes", []):
            self.w(note)
            self.w()

    # -------------------------------------------------------------- scaling
    def scaling(self):
        t = load(self.d, "tick_cost.json")
        self.w("## Cost of a tick against the queue's length")
        self.w()
        if not t:
            self.w("Not measured in this run.")
            self.w()
            return
        sizes = t.get("sizes", [])
        self.w("    " + t.get("command", "bench/tick_cost.sh %d %s" % (
            round(sizes[0].get("window_s", 10)) if sizes else 10, " ".join(str(s.get("waiting")) for s in sizes))))
        self.w()
        self.w(t.get("description") or (
            "Each size gets its own redis-server, filled with that many waiting users in the layout joins produce, "
            "and its own worker admitting %s users a minute (tick %s ms); all sizes are measured over the same "
            "window so that other load on the machine hits them alike. Figures from Redis's INFO "
            "(commandstats, latencystats) and /proc." % (n(t.get("rate_per_min")), t.get("tick_ms", 100))))
        self.w()
        self.w("| waiting users | ticks | Redis commands per tick | admit script µs, mean / p50 / p99 | Redis CPU µs per tick | worker CPU µs per tick | Redis bytes per waiting user |")
        self.w("|---|---|---|---|---|---|---|")
        rows = []
        for s in sizes:
            self.w("| %s | %s | %s | %s / %s / %s | %s | %s | %s |" % (
                n(s.get("waiting")), n(s.get("ticks")), n(s.get("commands_per_tick"), 3), n(s.get("us_per_admit"), 1),
                n(s.get("us_p50"), 1), n(s.get("us_p99"), 1), n(s.get("redis_cpu_us_per_tick"), 0),
                n(s.get("worker_cpu_us_per_tick"), 0), n(s.get("bytes_per_user"))))
            rows.append((s.get("waiting") or 1, s.get("commands_per_tick") or 0, s.get("us_p50") or s.get("us_per_admit") or 0))
        self.w()
        rc = t.get("ratio_commands")
        ru = t.get("ratio_us_p50") if t.get("ratio_us_p50") is not None else t.get("ratio_us")
        if sizes:
            big, small = sizes[-1].get("waiting"), sizes[0].get("waiting")
            self.target(4, "per-tick Redis cost at %s waiting within 10 %% of that at %s" % (n(big), n(small)),
                        "commands ×%s, admit script p50 ×%s" % (n(rc, 3), n(ru, 2)),
                        rc is not None and abs(rc - 1) <= 0.1 and (ru is None or ru <= 1.1))
        img = self.plots.plot("tick_cost", """
set logscale x
set xlabel "waiting users"
set ylabel "Redis commands per tick"
set y2label "admit script µs (p50)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
set key bottom right
set title "A tick's Redis cost does not grow with the queue"
plot "{d}" using 1:2 with linespoints lw 2 pt 7 title "commands per tick" axes x1y1, "" using 1:3 with linespoints lw 2 pt 5 title "admit script µs (p50)" axes x1y2
""", {"d": rows})
        self.image(img, "tick cost against queue length")
        for note in t.get("notes", []):
            self.w(note)
            self.w()

    # --------------------------------------------------------------- render
    def render(self):
        meta = load(self.d, "meta.json") or {}
        body_start = len(self.out)
        self.proxy()
        self.join()
        self.push()
        self.admission()
        self.scaling()
        body = self.out[body_start:]
        self.out = self.out[:body_start]
        m = meta.get("machine", {})
        v = meta.get("versions", {})
        self.w("# Benchmarks")
        self.w()
        self.w("Written by `bench/run.sh` (this file and the plots in `docs/bench/` are generated by "
               "`bench/report.py`; edit those, not this). Every figure was measured on loopback, side by side "
               "with an anchor in the same run: these machines are shared and noisy, so compare the ratios, "
               "not the absolute numbers.")
        self.w()
        self.w("- Run: %s%s, commit %s" % (meta.get("date", "?"), " (QUICK: short runs, not for the record)"
                                           if meta.get("quick") else "", meta.get("commit", "?")))
        self.w("- Machine: %s cores (%s), %s, %s, Linux %s" % (m.get("cores", "?"), m.get("cpu", "?"),
                                                               m.get("memory", "?"), m.get("os", "?"),
                                                               m.get("kernel", "?")))
        self.w("- Versions: %s" % ", ".join("%s %s" % (k, v[k]) for k in v))
        self.w()
        self.w("## Targets")
        self.w()
        self.w("| issue | target | measured | |")
        self.w("|---|---|---|---|")
        for issue, what, measured, ok in self.targets:
            self.w("| %s | %s | %s | %s |" % (issue, what, measured, verdict(ok)))
        self.w()
        self.out.extend(body)
        return "\n".join(self.out).rstrip() + "\n"


def main(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: bench/report.py RESULTS_DIR [--docs DIR]\n")
        return 1
    d = argv[1]
    docs = os.path.join(ROOT, "docs")
    if "--docs" in argv:
        docs = argv[argv.index("--docs") + 1]
    if not os.path.isdir(d):
        sys.stderr.write("report: %s: no such results directory\n" % d)
        return 1
    r = Report(d, docs)
    text = r.render()
    with open(os.path.join(docs, "benchmarks.md"), "w") as f:
        f.write(text)
    sys.stderr.write("report: wrote %s and %d plots\n" % (os.path.join(docs, "benchmarks.md"), len(r.plots.made)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
