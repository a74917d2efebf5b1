"""test_push_ws.py: live queue position over WebSocket (docs/push.md).

Two rooms:
  - "live" (/live): 100 slots but only 120 new users a minute (one every
    half second), so ten users who join at once see their positions fall
    over a few seconds while their WebSocket clients watch;
  - "calm" (/calm): one slot, held by a filler user for the whole file, so
    every waiting position there stays put.

The clients are Debian's python3-websockets. A subscriber on the rooms'
events channels records every tick the worker publishes, so that each
pushed update can be traced to the tick that caused it (its ts) and its
position checked against that tick's serving counter.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=60)
env = H.Env()
S = {}
KL = H.RoomKeys("live")
KC = H.RoomKeys("calm")
RATE = 120  # per minute in room live


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[
        H.room("live", "/live", env.backend.port, total_active_users=100,
               new_users_per_minute=RATE, session_duration="5m"),
        H.room("calm", "/calm", env.backend.port, total_active_users=1,
               new_users_per_minute=600, session_duration="1m"),
    ], gateway=env.push_settings(processes=1))
    S["sub"] = H.EventsSubscriber(env.redis.port, KL.events, KC.events)
    env.start_gateway()
    H.wait_for(lambda: H.accepts(env.push_port), 5, "the push listener on port %d to accept" % env.push_port)
    S["setup_ms"] = H.now_ms()
    env.start_worker()
    filler = env.join("/calm", room="calm")
    filler.wait_active(5)
    S["filler"] = filler


def ws(token, via="query", name="ws", **kw):
    return H.WsClient(env.push_port, token=token, via=via, name=name, **kw)


@tap.case("each client gets a QUEUE_UPDATE at connect, then updates whose position falls live and never goes up")
def _():
    S["t0"] = H.now_ms()
    users = [env.join("/live", room="live") for _ in range(10)]
    watched = {3: "query", 6: "cookie", 9: "header"}
    clients = {}
    for i, via in watched.items():
        clients[i] = ws(users[i].token, via=via, room="live", name="ws-user%d-%s" % (i, via))
    for i, c in clients.items():
        c.wait_open()
        first = c.wait_message(lambda m: True, 3, "a first message")
        H.eq(first.get("type") if isinstance(first, dict) else first, "QUEUE_UPDATE",
             "first message of %s" % c.name)
        pos = first.get("position")
        H.check(isinstance(pos, int) and 1 <= pos <= users[i].join_position,
                "%s: first position %r, joined at %r" % (c.name, pos, users[i].join_position))
        H.check(isinstance(first.get("estimatedWait"), int) and first["estimatedWait"] >= 0,
                "%s: estimatedWait %r" % (c.name, first.get("estimatedWait")))
    # The last of the ten is admitted after about 5 s at 2 a second.
    for i, c in clients.items():
        c.wait_type("ACTIVE", 15)
    for i, c in clients.items():
        ups = c.of_type("QUEUE_UPDATE")
        pos = [u.get("position") for u in ups]
        H.diag("%s: positions %r" % (c.name, pos))
        H.check(all(a >= b for a, b in zip(pos, pos[1:])), "%s: a position went up: %r" % (c.name, pos))
    far = [u.get("position") for u in clients[9].of_type("QUEUE_UPDATE")]
    H.check(len(far) >= 3 and far[-1] < far[0],
            "the client furthest back saw its position fall only through %r (expected at least 3 updates)" % far)
    S["users"], S["clients"] = users, clients


@tap.case("an admitted client gets ACTIVE (bookingUrl, expiresIn, admissionToken) as its last message, then close 1000")
def _():
    users, clients = S["users"], S["clients"]
    for i, c in clients.items():
        code = c.wait_closed(5)
        H.eq(code, 1000, "close code of %s" % c.name)
        msgs = c.payloads()
        act = msgs[-1]
        H.check(isinstance(act, dict) and act.get("type") == "ACTIVE",
                "%s: last message is %r, expected ACTIVE" % (c.name, act))
        H.eq(len(c.of_type("ACTIVE")), 1, "ACTIVE messages to %s" % c.name)
        H.eq(act.get("bookingUrl"), "/live", "%s: bookingUrl" % c.name)
        H.check(isinstance(act.get("expiresIn"), int) and 250 <= act["expiresIn"] <= 300,
                "%s: expiresIn %r for a 5 min session" % (c.name, act.get("expiresIn")))
        tok = act.get("admissionToken")
        H.check(isinstance(tok, str), "%s: no admissionToken in %r" % (c.name, act))
        cl = H.jwt_payload(tok)
        H.eq(cl.get("sub"), users[i].uid, "%s: admission token's sub" % c.name)
        H.eq(cl.get("typ"), "admission", "%s: admission token's typ" % c.name)
        H.eq(cl.get("aud"), "live", "%s: admission token's aud" % c.name)
        H.check(env.redis.zscore(KL.active, users[i].uid) is not None,
                "%s got ACTIVE but its user is not in wr:{live}:active" % c.name)
        users[i].admission = tok


@tap.case("the pushed admission token is proxied to the backend")
def _():
    users, clients = S["users"], S["clients"]
    for i in clients:
        n0 = env.backend.count()
        r = users[i].request("/live/pushed/%d" % i, token=users[i].admission)
        H.eq(r.status, 200, "request of user %d with its pushed admission token (%s)" % (i, r.describe()))
        H.eq(r.json().get("user"), users[i].uid, "user at the backend")
        reqs = env.backend.requests()[n0:]
        H.check(any(e["path"] == "/live/pushed/%d" % i and users[i].uid in H.header_values(e, "Waitroom-User")
                    for e in reqs), "the backend log has no request /live/pushed/%d of user %d: %r" % (i, i, reqs))


@tap.case("every ts is a plausible ms timestamp; each update after the first carries the ts of a published tick whose serving gives its position")
def _():
    users, clients = S["users"], S["clients"]
    ticks = S["sub"].ticks(KL.events)
    H.check(ticks, "no tick published on %s" % KL.events)
    by_ts = {}
    for m in ticks:
        by_ts.setdefault(m.get("ts"), []).append(m)
    for i, c in clients.items():
        msgs = [m for m in c.payloads() if isinstance(m, dict)]
        for m in msgs:
            H.plausible_ts(m.get("ts"), S["t0"], "%s %s" % (c.name, m.get("type")))
        ts = [m["ts"] for m in msgs]
        H.check(all(a <= b for a, b in zip(ts, ts[1:])), "%s: ts went back: %r" % (c.name, ts))
        for m in msgs[1:]:
            t = by_ts.get(m["ts"])
            H.check(t is not None, "%s: %s with ts %r matches no tick published on %s (tick ts %r)"
                    % (c.name, m.get("type"), m["ts"], KL.events, sorted(by_ts)))
            if m.get("type") == "QUEUE_UPDATE":
                H.check(any(users[i].q - x["serving"] == m["position"] for x in t),
                        "%s: position %r at ts %r, but that tick's serving %r gives %r"
                        % (c.name, m["position"], m["ts"], [x["serving"] for x in t],
                           [users[i].q - x["serving"] for x in t]))
        act = c.of_type("ACTIVE")[0]
        t = by_ts.get(act["ts"], [])
        H.check(any(users[i].uid in (x.get("admitted") or []) for x in t),
                "%s: ACTIVE ts %r is not the tick that admitted its user" % (c.name, act["ts"]))
    # Publish-to-receipt latency (ts is Redis's clock, the same host's).
    off = time.time() - time.monotonic()
    lats = [(rt + off) * 1000 - m["ts"] for c in clients.values() for rt, m in c.messages[1:]
            if isinstance(m, dict) and isinstance(m.get("ts"), int)]
    if lats:
        H.diag("%d ticks published; publish-to-receipt latency: max %.1f ms, mean %.1f ms over %d messages"
               % (len(ticks), max(lats), sum(lats) / len(lats), len(lats)))


@tap.case("at most one update per client per tick: never two updates with the same position or ts in a row")
def _():
    clients = S["clients"]
    ticks = [m for m in S["sub"].ticks(KL.events) if m.get("admitted")]
    for i, c in clients.items():
        ups = c.of_type("QUEUE_UPDATE")
        pos = [u["position"] for u in ups]
        ts = [u["ts"] for u in ups]
        H.check(all(a > b for a, b in zip(pos, pos[1:])),
                "%s: two updates with the same position in a row: %r" % (c.name, pos))
        H.check(len(set(ts)) == len(ts), "%s: two updates for one tick (ts %r)" % (c.name, ts))
        H.check(len(ups) <= len(ticks) + 1, "%s: %d updates for %d ticks that admitted someone"
                % (c.name, len(ups), len(ticks)))


@tap.case("the token works from ?token=, the room's cookie and the Queue-Token header alike")
def _():
    w1 = env.join("/calm", room="calm")
    w2 = env.join("/calm", room="calm")
    S["w1"], S["w2"] = w1, w2
    st = w2.status()
    H.eq(st.get("status"), "WAITING", "w2's status")
    for via in ("query", "cookie", "header"):
        c = ws(w2.token, via=via, room="calm", name="ws-calm-" + via).wait_open()
        m = c.wait_type("QUEUE_UPDATE", 3)
        H.eq(m.get("position"), st["position"], "position pushed with the token in the %s" % via)
        H.eq(m.get("estimatedWait"), st.get("estimatedWait"), "estimatedWait pushed with the token in the %s" % via)
        H.plausible_ts(m.get("ts"), S["setup_ms"], "ts pushed at connect")
        c.close()
        H.eq(c.close_code, 1000, "close code after the client closed")


@tap.case("an admission token gets ACTIVE at once, then close 1000")
def _():
    f = S["filler"]
    st = f.status()
    H.eq(st.get("status"), "ACTIVE", "filler's status")
    for tok, what in ((st["admissionToken"], "admission token"), (f.token, "queue token of an active user")):
        c = ws(tok, via="header", room="calm", name="ws-active").wait_open()
        m = c.wait_type("ACTIVE", 3)
        H.eq(m.get("bookingUrl"), "/calm", "bookingUrl for the %s" % what)
        H.check(isinstance(m.get("admissionToken"), str), "no admissionToken for the %s: %r" % (what, m))
        H.eq(c.wait_closed(3), 1000, "close code for the %s" % what)


@tap.case("missing token: handshake refused with 400; invalid token: 401")
def _():
    def refused(token, via, what):
        # The library must not get a connection; the status is read by
        # hand (see WsClient.wait_refused).
        ws(token, via=via, room="calm", name="ws-" + what).wait_refused()
        st, _, body = H.ws_handshake_status(env.push_port, token=token, via=via, room="calm")
        return st, body

    st, body = refused(None, None, "no token")
    H.eq(st, 400, "handshake without a token (%r)" % body)
    bad = [("garbage", "not-a-token"),
           ("wrong key", H.forge_jwt(H.JWT_HEADER, H.claims(room="calm"), b"x" * 48)),
           ("expired", H.forge_jwt(H.JWT_HEADER, H.claims(room="calm", now=int(time.time()) - 7200 * 24 * 2,
                                                               lifetime=3600), env.secret))]
    for what, tok in bad:
        for via in ("query", "header", "cookie"):
            st, body = refused(tok, via, what)
            H.eq(st, 401, "handshake with a %s token in the %s (%r)" % (what, via, body))


@tap.case("a waiting user who left gets EXPIRED and the stream ends")
def _():
    w1 = S["w1"]
    r = env.leave(w1.token, room="calm")
    H.eq(r.status, 200, "leave (%s)" % r.describe())
    H.check(env.redis.zscore(KC.queue, w1.uid) is None, "w1 still in wr:{calm}:queue after leaving")
    c = ws(w1.token, room="calm", name="ws-left").wait_open()
    m = c.wait_message(lambda m: True, 3, "a first message")
    H.eq(m.get("type") if isinstance(m, dict) else m, "EXPIRED", "first message for a waiting user who left")
    c.wait_closed(3)
    H.eq(c.of_type("QUEUE_UPDATE"), [], "updates to a user who left")


@tap.case("the user behind keeps its place; a user whose session ended early gets EXPIRED and the stream ends")
def _():
    # w2's shown position is unchanged by w1's leaving: the gap closes only
    # as admission passes w1's number.
    c2 = ws(S["w2"].token, room="calm", name="ws-w2").wait_open()
    H.eq(c2.wait_type("QUEUE_UPDATE", 3).get("position"), S["w2"].join_position, "w2's position")
    c2.close()
    f = S["filler"]
    r = env.leave(f.token, room="calm")
    H.eq(r.status, 200, "the filler leaves (%s)" % r.describe())
    c = ws(f.token, room="calm", name="ws-ended").wait_open()
    m = c.wait_message(lambda m: True, 3, "a first message")
    H.eq(m.get("type") if isinstance(m, dict) else m, "EXPIRED", "first message for a user whose session ended")
    c.wait_closed(3)


if __name__ == "__main__":
    tap.run(setup)
