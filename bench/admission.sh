#!/usr/bin/env bash
# Admission precision of the real worker against a real redis-server: does
# it tick on time, admit at the configured rate, and never let more than
# total_active_users be ACTIVE, also with two workers side by side?
#
# Setup: a fresh redis-server; WAITING users put in line with the layout
# joins produce (seq, queue, deadline; abandon_grace 1h so nobody is
# dropped); one room with total_active_users LIMIT, new_users_per_minute
# RATE and a session of SESSION seconds, so that the queue never runs dry,
# the cap binds after LIMIT / rate seconds and expiring sessions free slots
# from then on. Worker 1 runs the whole time; worker 2 runs beside it from
# 2 s to half the run, so that two workers share both a rate-bound and a
# cap-bound stretch; it starts half a tick out of phase with worker 1 and
# both keep their phase (each sleeps to absolute deadlines), so there is
# about half a tick between a tick of one and the next of the other.
#
# A measuring process (Python, stdlib only, speaking RESP over sockets) holds
# these connections while the workers run (and one more for control):
#   - MONITOR: every command in the order Redis executed it, with the time
#     (Redis's clock, µs) it started. The admit script is recognised by its SHA (waitroom-scripts
#     --sha admit; without that binary, by its 7 keys starting with the
#     room's queue), and the commands the script runs (shown as "lua", the
#     PUBLISH of its message among them) are attached to it. So every tick
#     of every worker is seen, with its time and what it admitted, and every
#     sample below is placed exactly between two ticks.
#   - SUBSCRIBE wr:{R}:events: each tick message triggers a ZCARD of
#     wr:{R}:active at once, on its own connection.
#   - a background sampler: ZCARD wr:{R}:active again and again, one in
#     flight, at most one every SAMPLE_US microseconds.
# Why that catches every maximum of the ACTIVE count: only the admit script
# adds to wr:{R}:active and it runs atomically, so the count can only rise
# inside a tick and stays put between ticks (nothing here ends a session
# early; expired sessions are removed by the next tick). Its maxima are
# therefore exactly its values right after the ticks that admitted someone,
# and those ticks are the ones that publish a message. A ZCARD sent on that
# message runs after the script has finished; MONITOR shows whether it ran
# before the next tick, and the report counts the admitting ticks so
# sampled ("sampled before the next tick: k/n") and lists any that were not,
# with the time to the next tick. The background loop adds samples in every
# interval. For a tick no sample followed in time, the replay below (checked
# against every sample taken: "samples off the replay") gives the count.
#
# From the ticks the script then replays the admit script's arithmetic (token
# bucket at RATE, capped at one second's worth, stored with 14 significant
# digits as Lua's tostring does; sessions ending at the `ends` each message
# gives) and predicts each tick's admissions: min(floor(credit), LIMIT -
# active after expiry). Predicted and actual are compared tick by tick
# ("ticks off the replay" must be 0); the predictions' sum is the expected
# total. The run is reported in two
# stretches: rate-bound (from the first tick until the cap first binds:
# admitted must be rate x elapsed, less than one user of fraction) and
# cap-bound (from then on: admissions are the slots free at its start plus
# those that expiry frees, at most rate x elapsed). "slots freed" is that
# count: free slots at the stretch's start plus sessions ended in it.
#
# Reported: (a) tick period of each worker, from MONITOR's timestamps of its
# admit EVALSHA: p50/p99/max of |period - tick_ms| and the period's
# p50/p99/max; (b) admitted per tick and in total against rate x elapsed and
# the replay, counted from the events messages, from MONITOR's PUBLISH and
# from wr:{R}:serving; (c) the largest ACTIVE count sampled against
# total_active_users (overshoot must be 0), for the whole run and for the
# two-worker stretch.
#
# Loopback only; bounded in time (about SECONDS + fill + 10 s); cleans up the
# processes it started, by pid.
#
# Usage: bench/admission.sh [SECONDS] [--out FILE]        (default 30 s)
# Settings from the environment: LIMIT (500), RATE (6000 per minute),
# SESSION (8 s), TICK_MS (100), WAITING (100000), SAMPLE_US (500). With the
# defaults the cap binds at 5 s, admission then stops until the first
# sessions end at 8 s, and from then on each tick refills the slots that
# expiry freed: both kinds of cap-bound tick occur.
# Exit status: 0 when no overshoot was seen and every tick matched the
# replay, 1 otherwise, 2 for bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=30; out=
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    [0-9]*) secs=$1; shift ;;
    *) echo "usage: bench/admission.sh [SECONDS] [--out FILE]" >&2; exit 2 ;;
  esac
done
[ "$secs" -ge 6 ] 2>/dev/null || { echo "SECONDS must be a whole number >= 6" >&2; exit 2; }
limit=${LIMIT:-500}; rate=${RATE:-6000}; session=${SESSION:-8}; tick=${TICK_MS:-100}
waiting=${WAITING:-100000}; sample_us=${SAMPLE_US:-500}
[ -n "$out" ] && case $out in /*) ;; *) out=$PWD/$out ;; esac
bin=$(scripts/build.sh | tail -n 1)
run=$(mktemp -d /tmp/waitroom-admission.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/secret.key"

sha=$("$bin/bench/waitroom-scripts" --sha admit 2>/dev/null || true)
[[ $sha =~ ^[0-9a-f]{40}$ ]] || sha=

redis=$(port)
redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$run/redis.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis" ping >/dev/null 2>&1 && break; sleep 0.1; done
cat > "$run/w.json" <<JSON
{ "log_level": "warn", "redis": {"port": $redis}, "worker": {"tick_ms": $tick},
  "tokens": {"keys": [{"kid": "k1", "secret_file": "secret.key"}]},
  "rooms": [{"name": "booking", "path": "/book", "backend": "http://127.0.0.1:9",
             "total_active_users": $limit, "new_users_per_minute": $rate, "session_duration": "${session}s",
             "abandon_grace": "1h"}] }
JSON
"$bin/worker/waitroom-worker" -t -c "$run/w.json" >/dev/null

# WAITING users in line as joins leave them: queue number q from 1 (seq = the
# last one), uid -> q in queue, uid -> now + grace in deadline; 10,000 a call.
fill=$(cat bench/fill_queue.lua) # the layout joins produce (bench/fill_queue.lua)
for ((start = 1; start <= waiting; start += 10000)); do
  end_=$((start + 9999 < waiting ? start + 9999 : waiting))
  redis-cli -p "$redis" eval "$fill" 3 'wr:{booking}:queue' 'wr:{booking}:deadline' 'wr:{booking}:seq' \
    "$start" "$end_" 3600000 "$waiting" >/dev/null
done

cat > "$run/measure.py" <<'PY'
import json, math, os, re, select, signal, socket, sys, time

port, room, limit, rate, session_ms, tick_ms, sha, sample_us, ready_file, max_secs = sys.argv[1:11]
port, limit, rate, session_ms, tick_ms, sample_us, max_secs = (
    int(port), int(limit), int(rate), int(session_ms), int(tick_ms), int(sample_us), float(max_secs))
K = {n: "wr:{%s}:%s" % (room, n) for n in ("queue", "active", "serving", "events", "seq")}


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Incomplete(Exception):
    pass


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addr = "127.0.0.1:%d" % self.s.getsockname()[1]
        self.buf, self.pos = bytearray(), 0

    def send(self, *args):
        self.s.sendall(enc(*args))

    def fill(self):
        data = self.s.recv(1 << 20)
        if not data:
            raise EOFError("redis closed a connection")
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def _line(self, p):
        e = self.buf.find(b"\r\n", p)
        if e < 0:
            raise Incomplete
        return bytes(self.buf[p:e]), e + 2

    def _parse(self, p):
        line, p = self._line(p)
        t, v = line[:1], line[1:]
        if t == b"+":
            return v, p
        if t == b"-":
            return RuntimeError(v.decode()), p
        if t == b":":
            return int(v), p
        if t == b"$":
            n = int(v)
            if n < 0:
                return None, p
            if len(self.buf) < p + n + 2:
                raise Incomplete
            return bytes(self.buf[p:p + n]), p + n + 2
        if t == b"*":
            items = []
            for _ in range(int(v)):
                x, p = self._parse(p)
                items.append(x)
            return items, p
        raise ValueError("bad RESP: %r" % line)

    def replies(self):
        """Every complete reply in the buffer."""
        while True:
            try:
                r, p = self._parse(self.pos)
            except Incomplete:
                return
            self.pos = p
            yield r

    def call(self, *args):
        self.send(*args)
        return self.next_reply()

    def next_reply(self):
        while True:
            for r in self.replies():
                return r
            self.fill()


stop = False
def on_signal(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)

ctl = Conn()
serving0 = int(ctl.call("GET", K["serving"]) or 0)
mon = Conn(); mon.send("MONITOR")
sub = Conn(); sub.send("SUBSCRIBE", K["events"])
pending = {mon: 1, sub: 1}
while pending:
    for c in list(pending):
        c.fill()
        for r in c.replies():
            pending.pop(c, None)
evs, bg = Conn(), Conn()
samples = {evs.addr: [], bg.addr: []}
messages = []  # (local time, payload) from the channel
monitor = bytearray()
open(ready_file, "w").close()

t_start = time.monotonic()
bg_inflight, bg_next, ev_inflight = False, 0.0, 0
marker = None
spacing = sample_us / 1e6
while True:
    now = time.monotonic()
    if (stop or now - t_start > max_secs) and marker is None and not bg_inflight and ev_inflight == 0:
        marker = "wr-bench-drain-%d" % os.getpid()
        ctl.send("ECHO", marker)  # once MONITOR shows it, MONITOR has shown every sample
    if marker is None and not bg_inflight and now >= bg_next:
        bg.send("ZCARD", K["active"])
        bg_inflight, bg_next = True, now + spacing
    timeout = 0.05 if bg_inflight or marker is not None else max(0.0, bg_next - now)
    readable, _, _ = select.select([mon.s, sub.s, evs.s, bg.s], [], [], timeout)
    for s in readable:
        if s is mon.s:
            data = mon.s.recv(1 << 20)
            if not data:
                raise EOFError("MONITOR connection closed")
            monitor += data
        elif s is sub.s:
            sub.fill()
            for r in sub.replies():
                if isinstance(r, list) and r[0] == b"message":
                    messages.append((time.monotonic(), r[2]))
                    if marker is None:
                        evs.send("ZCARD", K["active"])
                        ev_inflight += 1
        elif s is evs.s:
            evs.fill()
            for r in evs.replies():
                samples[evs.addr].append(r)
                ev_inflight -= 1
        elif s is bg.s:
            bg.fill()
            for r in bg.replies():
                samples[bg.addr].append(r)
                bg_inflight = False
    if marker is not None and monitor.rfind(marker.encode()) >= 0:
        break
ctl.next_reply()  # the ECHO
serving1 = int(ctl.call("GET", K["serving"]) or 0)
seq = int(ctl.call("GET", K["seq"]) or 0)
active_end = ctl.call("ZCARD", K["active"])
for c in (ctl, mon, sub, evs, bg):
    c.s.close()

# ---- analysis -------------------------------------------------------------
ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
ESC = re.compile(rb'\\(x[0-9a-fA-F]{2}|.)', re.S)
SIMPLE = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}
def unescape(b):
    return ESC.sub(lambda m: bytes([int(m.group(1)[1:], 16)]) if m.group(1)[:1] == b"x" and len(m.group(1)) == 3
                   else SIMPLE.get(m.group(1), m.group(1)), b)

ticks = []          # each: ts, client, now_ms (script clock), admitted, ends, samples after it
pre_samples = []    # samples before the first tick
other_sha = 0
cur = None          # the tick whose lua commands are being read
sample_iter = {a: iter(v) for a, v in samples.items()}
for line in bytes(monitor).split(b"\r\n"):
    if not line.startswith(b"+") or b" [" not in line:
        continue
    ts_s, rest = line[1:].split(b" ", 1)
    close = rest.find(b"] ")
    client = rest[1:close].split(b" ", 1)[1].decode()
    body = rest[close + 2:]
    ts = float(ts_s)
    if client == "lua":
        if cur is not None:
            args = ARG.findall(body)
            cmd = args[0].upper()
            if cur["time_ts"] is None:
                cur["time_ts"] = ts
            if cmd == b"PUBLISH" and args[1] == K["events"].encode():
                m = json.loads(unescape(args[2]))
                cur["msg"] = m
        continue
    cur = None
    m = re.match(rb'"(\w+)"', body)
    cmd = m.group(1).upper() if m else b""
    if cmd == b"EVALSHA":
        args = ARG.findall(body)
        if len(args) >= 4 and args[2] == b"7" and args[3] == K["queue"].encode():
            if sha and args[1].decode() != sha:
                other_sha += 1
                continue
            cur = {"ts": ts, "client": client, "sha": args[1].decode(), "time_ts": None, "msg": None, "samples": []}
            ticks.append(cur)
    elif cmd == b"ZCARD" and client in sample_iter:
        v = next(sample_iter[client])
        (ticks[-1]["samples"] if ticks else pre_samples).append(v)

clients = []
for t in ticks:
    if t["client"] not in clients:
        clients.append(t["client"])

# Replay of the admit script's arithmetic, tick by tick, on Redis's clock.
rate_ms = rate / 60000.0
credit, at = 0.0, None
ends = []             # session ends of the users admitted (sorted: ends only grow)
head = 0              # ends[:head] have expired
mismatch, sample_mismatch = [], 0
events_admitted = sum(len(json.loads(p).get("admitted", [])) for _, p in messages)
dropped = 0
serving_ok, prev_serving = True, serving0
for i, t in enumerate(ticks):
    m = t["msg"]
    t["i"] = i
    now = m["ts"] if m else math.floor((t["time_ts"] if t["time_ts"] is not None else t["ts"]) * 1000)
    t["now"] = now
    while head < len(ends) and ends[head] <= now:
        head += 1
    t["expired"] = 0  # filled below
    active = len(ends) - head
    if at is None:
        at = now
    credit += max(0, now - at) * rate_ms
    credit = min(credit, max(1.0, rate_ms * 1000))
    n = math.floor(credit)
    free = limit - active
    t["cap_bound"] = free < n
    predicted = max(0, min(n, free))
    admitted = m.get("admitted", []) if m else []
    if m and m.get("dropped"):
        dropped += len(m["dropped"])
    t["admitted"], t["predicted"] = len(admitted), predicted
    if predicted != len(admitted):
        mismatch.append((i, predicted, len(admitted)))
    if admitted:
        credit -= len(admitted)
        ends.extend([m["ends"]] * len(admitted))
        if m["serving"] - prev_serving != len(admitted):
            serving_ok = False
        prev_serving = m["serving"]
    credit = float("%.14g" % credit)
    at = now
    t["active_after"] = len(ends) - head
    if t["samples"] and t["samples"][0] != t["active_after"]:
        sample_mismatch += 1
# expirations per tick, for the slots freed in the cap-bound stretch
head = 0
for t in ticks:
    h0 = head
    while head < len(ends) and ends[head] <= t["now"]:
        head += 1
    t["expired"] = head - h0


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, max(0, math.ceil(p / 100.0 * len(v)) - 1))]


def r2(x):
    return None if x is None else round(x, 3)


def periods(client, lo=None, hi=None):
    ts = [t["ts"] for t in ticks if t["client"] == client and (lo is None or lo <= t["ts"] <= hi)]
    per = [(b - a) * 1000 for a, b in zip(ts, ts[1:])]
    jit = [abs(p - tick_ms) for p in per]
    return {"ticks": len(ts),
            "period_ms": {"p50": r2(pct(per, 50)), "p99": r2(pct(per, 99)), "max": r2(max(per) if per else None)},
            "jitter_ms": {"p50": r2(pct(jit, 50)), "p99": r2(pct(jit, 99)), "max": r2(max(jit) if jit else None)}}


def stretch(sel):
    """Admission figures over the ticks sel (a list of consecutive ticks)."""
    if not sel:
        return None
    adm = [t["admitted"] for t in sel]
    # elapsed: from the tick before the stretch (its credit carries over), or
    # from the very first tick (the bucket starts empty there)
    i0 = sel[0]["i"]
    start = ticks[i0 - 1]["now"] if i0 > 0 else sel[0]["now"]
    elapsed = sel[-1]["now"] - start
    return {"ticks": len(sel), "from_s": r2((start - ticks[0]["now"]) / 1000.0),
            "to_s": r2((sel[-1]["now"] - ticks[0]["now"]) / 1000.0),
            "total": sum(adm), "expected": sum(t["predicted"] for t in sel),
            "rate_x_elapsed": r2(rate_ms * elapsed),
            "slots_freed": sum(t["expired"] for t in sel) + limit - (ticks[i0 - 1]["active_after"] if i0 > 0 else 0),
            "per_tick_mean": r2(sum(adm) / len(adm)), "per_tick_max": max(adm),
            "ticks_off_replay": sum(1 for t in sel if t["admitted"] != t["predicted"])}


def active_stats(sel, extra=()):
    vals = [v for t in sel for v in t["samples"]] + list(extra)
    mx = max(vals) if vals else None
    adm = [t for t in sel if t["admitted"] > 0]
    gaps = []  # admitting ticks no sample followed before the next tick: (tick, ms to the next, replayed ACTIVE)
    for t in adm:
        if not t["samples"]:
            i = t["i"]
            gaps.append([i, r2((ticks[i + 1]["ts"] - t["ts"]) * 1000) if i + 1 < len(ticks) else None, t["active_after"]])
    return {"max_observed": mx, "limit": limit, "overshoot": max(0, mx - limit) if mx is not None else None,
            "samples": len(vals), "max_replayed": max((t["active_after"] for t in sel), default=None),
            "admitting_ticks": len(adm), "admitting_ticks_sampled": len(adm) - len(gaps), "unsampled": gaps}


if not ticks:
    sys.exit("no admit script seen in MONITOR (wrong SHA?)")
first_cap = next((i for i, t in enumerate(ticks) if t["cap_bound"]), len(ticks))
whole = stretch(ticks)
result = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "tick_ms": tick_ms, "rate_per_min": rate, "limit": limit, "session_ms": session_ms,
    "admit_sha": ticks[0]["sha"], "sha_source": "waitroom-scripts" if sha else "recognised by its keys",
    "ticks": len(ticks), "workers": len(clients), "duration_s": r2(ticks[-1]["ts"] - ticks[0]["ts"]),
}
w1 = periods(clients[0])
result["period_ms"], result["jitter_ms"], result["ticks_worker1"] = w1["period_ms"], w1["jitter_ms"], w1["ticks"]
result["admitted"] = dict(whole, from_events=events_admitted,
                          from_monitor=sum(t["admitted"] for t in ticks),
                          from_serving=serving1 - serving0, serving_steps_match=serving_ok, dropped=dropped)
result["phases"] = {"rate_bound": stretch(ticks[:first_cap]), "cap_bound": stretch(ticks[first_cap:])}
result["active"] = dict(active_stats(ticks, pre_samples), samples_off_replay=sample_mismatch)
if len(clients) > 1:
    idx = [i for i, t in enumerate(ticks) if t["client"] == clients[1]]
    sel = ticks[idx[0]:idx[-1] + 1]
    two = {"from_s": r2((sel[0]["now"] - ticks[0]["now"]) / 1000.0), "to_s": r2((sel[-1]["now"] - ticks[0]["now"]) / 1000.0),
           "ticks": len(sel), "active": active_stats(sel), "admitted": stretch(sel)}
    for k, c in (("worker1", clients[0]), ("worker2", clients[1])):
        two[k] = periods(c, sel[0]["ts"], sel[-1]["ts"])
    result["two_workers"] = two
result["other_admit_sha_calls"] = other_sha
result["end"] = {"serving": serving1, "seq": seq, "active": active_end}
result["off_replay"] = mismatch[:20]

# ---- human summary --------------------------------------------------------
R = result
print("admission: %d ticks in %.1f s by %d worker(s); tick_ms %d, new_users_per_minute %d (%.4g a tick), "
      "total_active_users %d, session %g s" % (R["ticks"], R["duration_s"], R["workers"], tick_ms, rate,
                                               rate_ms * tick_ms, limit, session_ms / 1000.0))
print("admit script %s (%s)" % (R["admit_sha"], R["sha_source"]))
print("(a) tick period, worker 1 (%d ticks): p50 %.2f  p99 %.2f  max %.2f ms;  |period - %d|: p50 %.2f  p99 %.2f  max %.2f ms"
      % (R["ticks_worker1"], R["period_ms"]["p50"], R["period_ms"]["p99"], R["period_ms"]["max"], tick_ms,
         R["jitter_ms"]["p50"], R["jitter_ms"]["p99"], R["jitter_ms"]["max"]))
a = R["admitted"]
print("(b) admitted %d (events channel %d, MONITOR %d, serving %+d%s); replayed script expects %d; ticks off the replay: %d"
      % (a["total"], a["from_events"], a["from_monitor"], a["from_serving"],
         "" if a["serving_steps_match"] else ", SERVING STEPS DISAGREE", a["expected"], a["ticks_off_replay"]))
for name, p in R["phases"].items():
    if p is None:
        print("    %-10s -" % name)
        continue
    print("    %-10s %5.1f-%5.1f s, %4d ticks: admitted %5d, rate x elapsed %8.1f, slots freed %5d, replay %5d; per tick mean %.2f max %d"
          % (name, p["from_s"], p["to_s"], p["ticks"], p["total"], p["rate_x_elapsed"], p["slots_freed"],
             p["expected"], p["per_tick_mean"], p["per_tick_max"]))
ac = R["active"]
print("(c) ACTIVE max %s / limit %d, overshoot %s; %d samples; admitting ticks sampled before the next tick %d/%d; "
      "samples off the replay %d; replayed max %s" % (ac["max_observed"], limit, ac["overshoot"], ac["samples"],
                                     ac["admitting_ticks_sampled"], ac["admitting_ticks"], ac["samples_off_replay"],
                                     ac["max_replayed"]))
if ac["unsampled"]:
    print("    not sampled before the next tick (tick, ms until the next tick, replayed ACTIVE after it): %s"
          % ac["unsampled"][:10])
if "two_workers" in R:
    t2 = R["two_workers"]
    print("    two workers %.1f-%.1f s (%d ticks): ACTIVE max %s / %d, overshoot %s, %d samples; admitted %d, replay %d, "
          "rate x elapsed %.1f; periods p50 %.2f / %.2f ms"
          % (t2["from_s"], t2["to_s"], t2["ticks"], t2["active"]["max_observed"], limit, t2["active"]["overshoot"],
             t2["active"]["samples"], t2["admitted"]["total"], t2["admitted"]["expected"],
             t2["admitted"]["rate_x_elapsed"], t2["worker1"]["period_ms"]["p50"], t2["worker2"]["period_ms"]["p50"]))
if other_sha:
    print("warning: %d EVALSHA calls with the admit script's keys but another SHA" % other_sha)
if mismatch:
    print("ticks off the replay (index, expected, admitted): %s" % mismatch[:20])
bad = (ac["overshoot"] or 0) > 0 or ("two_workers" in R and (R["two_workers"]["active"]["overshoot"] or 0) > 0) \
    or a["total"] != a["from_events"] or a["total"] != a["from_serving"]
print("verdict: %s" % ("FAIL" if bad else "ok (cap exact)") + ("; %d tick(s) off the replay" % len(mismatch) if mismatch else ""))
if os.environ.get("WR_OUT"):
    with open(os.environ["WR_OUT"], "w") as f:
        json.dump(R, f, indent=1)
        f.write("\n")
sys.exit(1 if bad or mismatch else 0)
PY

WR_OUT=$out /usr/bin/python3 "$run/measure.py" "$redis" booking "$limit" "$rate" $((session * 1000)) "$tick" "$sha" "$sample_us" \
  "$run/ready" $((secs + 30)) > "$run/report" & mpid=$!; pids+=("$mpid")
for _ in $(seq 100); do [ -e "$run/ready" ] && break; kill -0 "$mpid" 2>/dev/null || break; sleep 0.05; done
[ -e "$run/ready" ] || { echo "the measuring process did not start" >&2; exit 1; }
# Worker 2 starts half a tick out of phase with worker 1 (both keep their
# phase: each sleeps to absolute deadlines), so that every tick of one is
# followed by time to sample before the other's.
w2_at=$(awk -v t="$tick" 'BEGIN {printf "%.3f", 2 + t / 2000}')
w2_for=$(awk -v s="$secs" -v a="$w2_at" 'BEGIN {printf "%.3f", s / 2 - a}')
"$bin/worker/waitroom-worker" -c "$run/w.json" 2>"$run/worker1.log" & w1=$!; pids+=("$w1")
sleep "$w2_at"
"$bin/worker/waitroom-worker" -c "$run/w.json" 2>"$run/worker2.log" & w2=$!; pids+=("$w2")
sleep "$w2_for"
kill "$w2"; wait "$w2" 2>/dev/null || true
sleep $((secs - secs / 2))
kill "$w1"; wait "$w1" 2>/dev/null || true
kill -TERM "$mpid"
rc=0; wait "$mpid" || rc=$?
cat "$run/report"
[ -s "$run/worker1.log" ] && { echo "worker 1 said:"; cat "$run/worker1.log"; }
[ -s "$run/worker2.log" ] && { echo "worker 2 said:"; cat "$run/worker2.log"; }
exit "$rc"
