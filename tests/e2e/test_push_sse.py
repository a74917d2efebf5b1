"""test_push_sse.py: live queue position over Server-Sent Events (docs/push.md).

The client is curl -N, over HTTP/1.1 and over HTTP/2 cleartext with prior
knowledge. Admission is driven by hand so that every change is known: each
room has one slot, held by a filler user; when the admitted user leaves, the
next tick admits exactly the next user in line, so the serving counter (the
SSE id) rises by one per leave. heartbeat_interval is 1 s.

Rooms: "sse" (/sse) for the stream from first update to ACTIVE; "lei"
(/lei) for heartbeats, Last-Event-ID and the token's three carriers.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=60)
env = H.Env()
S = {}
KS = H.RoomKeys("sse")
KE = H.RoomKeys("lei")


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[
        H.room("sse", "/sse", env.backend.port, total_active_users=1,
               new_users_per_minute=6000, session_duration="1m"),
        H.room("lei", "/lei", env.backend.port, total_active_users=1,
               new_users_per_minute=6000, session_duration="1m"),
    ], gateway=env.push_settings(processes=1, heartbeat_interval="1s"))
    env.start_gateway()
    env.start_worker()
    S["f"] = env.join("/sse", room="sse")
    S["g"] = env.join("/lei", room="lei")
    S["f"].wait_active(5)
    S["g"].wait_active(5)
    S["u"] = [env.join("/sse", room="sse") for _ in range(3)]
    S["v"] = [env.join("/lei", room="lei") for _ in range(2)]


def sse(user, via="query", name="sse", **kw):
    return H.SseClient(env.gw_port, token=user.token if hasattr(user, "token") else user, via=via,
                       room=getattr(user, "room", "sse"), name=name, **kw)


def check_update(e, what):
    d = e.get("data")
    H.check(isinstance(d, dict), "%s: data is not a JSON object: %r" % (what, e))
    H.eq(d.get("type"), e.get("event"), "%s: data.type against event:" % what)
    H.check(isinstance(d.get("position"), int) and d["position"] >= 1, "%s: position %r" % (what, d.get("position")))
    H.check(isinstance(d.get("estimatedWait"), int) and d["estimatedWait"] >= 0,
            "%s: estimatedWait %r" % (what, d.get("estimatedWait")))
    H.plausible_ts(d.get("ts"), S.get("t0", 0), what)
    H.check(e.get("id") is not None and e["id"].isdigit(), "%s: id %r is not a serving counter" % (what, e.get("id")))
    return d


def serving(k):
    return env.redis.get_int(k.serving) or 0


@tap.case("the stream opens with a retry: line, then event:/data:/id: of a QUEUE_UPDATE at the current position")
def _():
    S["t0"] = H.now_ms()
    u3 = S["u"][2]
    c = sse(u3, name="sse-u3")
    H.eq(c.wait_status(), 200, "status")
    H.check(c.headers.get("content-type", "").startswith("text/event-stream"),
            "Content-Type %r" % c.headers.get("content-type"))
    e = c.wait_type("QUEUE_UPDATE", 3)
    first = next((l for l in c.body_lines() if l != ""), None)
    H.check(first is not None and first.startswith("retry:"), "first line of the stream is %r, not retry:" % first)
    H.check(c.retry is not None and c.retry.strip().isdigit() and int(c.retry) > 0, "retry value %r" % c.retry)
    d = check_update(e, "first update")
    sv = serving(KS)
    H.eq(int(e["id"]), sv, "id of the first update (the serving counter)")
    H.eq(d["position"], u3.q - sv, "position (q - serving)")
    S["c3"] = c


@tap.case("positions fall one by one as the users ahead are admitted; ids rise; ACTIVE arrives and ends the stream")
def _():
    c, (u1, u2, u3) = S["c3"], S["u"]
    for ahead, leaver in ((u1, S["f"]), (u2, u1)):
        n = len(c.updates())
        r = env.leave(leaver.token, room="sse")
        H.eq(r.status, 200, "leave (%s)" % r.describe())
        ahead.wait_active(5)
        H.wait_for(lambda: len(c.updates()) > n, 3, "an update after %s was admitted (lines %r)"
                   % (ahead.uid, c.body_lines()[-10:]))
        e = c.updates()[n]
        d = check_update(e, "update")
        H.eq(d["position"], u3.q - serving(KS), "pushed position after an admission")
    ups = c.updates()
    pos = [x["data"]["position"] for x in ups]
    ids = [int(x["id"]) for x in ups]
    H.diag("positions %r ids %r" % (pos, ids))
    H.check(all(a > b for a, b in zip(pos, pos[1:])), "positions did not fall one by one: %r" % pos)
    H.check(all(a < b for a, b in zip(ids, ids[1:])), "ids did not rise: %r" % ids)
    H.eq(pos[-1], 1, "last position before admission")
    r = env.leave(u2.token, room="sse")
    H.eq(r.status, 200, "leave")
    e = c.wait_type("ACTIVE", 5)
    d = e.get("data")
    H.eq(d.get("type"), "ACTIVE", "data.type")
    H.eq(d.get("bookingUrl"), "/sse", "bookingUrl")
    H.check(isinstance(d.get("expiresIn"), int) and 50 <= d["expiresIn"] <= 60, "expiresIn %r" % d.get("expiresIn"))
    H.plausible_ts(d.get("ts"), S["t0"], "ACTIVE")
    H.eq(c.wait_done(5), 0, "curl's exit status once the stream ended")
    H.eq(c.events[-1].get("event"), "ACTIVE", "last event of the stream")
    adm = d.get("admissionToken")
    H.eq(H.jwt_payload(adm).get("sub"), u3.uid, "admission token's sub")
    n0 = env.backend.count()
    r = u3.request("/sse/booked", token=adm)
    H.eq(r.status, 200, "request with the pushed admission token (%s)" % r.describe())
    H.eq(env.backend.requests()[n0]["path"], "/sse/booked", "path at the backend")


@tap.case("a heartbeat comment line arrives about every heartbeat_interval (1 s)")
def _():
    v2 = S["v"][1]
    c = sse(v2, name="sse-hb")
    c.wait_type("QUEUE_UPDATE", 3)
    H.wait_for(lambda: len(c.comments) >= 3, 6, "three comment lines (heartbeats)")
    t = [x[0] for x in c.comments]
    gaps = [b - a for a, b in zip(t, t[1:])]
    H.diag("heartbeat comments %r, gaps %s s" % ([x[1] for x in c.comments], ["%.2f" % g for g in gaps]))
    H.check(all(0.5 <= g <= 2.5 for g in gaps), "heartbeat gaps %r for an interval of 1 s" % gaps)
    raw = [l for _, l in c.lines if l.startswith(":")]
    H.check(all(l.startswith(": ") for l in raw), "comment lines %r do not start with ': '" % raw)
    H.eq(c.updates()[1:], [], "updates while nothing changed")
    S["hb_last_id"] = c.updates()[0]["id"]
    c.kill()


@tap.case("reconnecting with Last-Event-ID equal to the current id repeats no update; a later change does arrive")
def _():
    v1, v2 = S["v"]
    last = S["hb_last_id"]
    H.eq(int(last), serving(KE), "the id seen is still the current serving counter")
    c = sse(v2, via="cookie", name="sse-lei", last_event_id=last)
    H.eq(c.wait_status(), 200, "status")
    # Two heartbeats: the stream is up and has had a second to repeat itself.
    H.wait_for(lambda: len(c.comments) >= 2, 5, "two heartbeats on the resumed stream")
    H.eq([e.get("event") for e in c.events], [], "events sent on reconnecting with the current Last-Event-ID")
    r = env.leave(S["g"].token, room="lei")
    H.eq(r.status, 200, "leave")
    v1.wait_active(5)
    e = c.wait_type("QUEUE_UPDATE", 3)
    d = check_update(e, "update after the change")
    H.eq(d["position"], 1, "v2's position after v1 was admitted")
    H.check(int(e["id"]) > int(last), "id %r after the change is not above %r" % (e["id"], last))
    H.eq(len(c.updates()), 1, "updates on the resumed stream")
    S["lei_id"] = e["id"]
    c.kill()


@tap.case("the token works from ?token=, the room's cookie and the Queue-Token header alike")
def _():
    v2 = S["v"][1]
    for via in ("query", "cookie", "header"):
        c = sse(v2, via=via, name="sse-" + via)
        e = c.wait_type("QUEUE_UPDATE", 3)
        H.eq(e["data"].get("position"), 1, "position with the token in the %s" % via)
        H.eq(e.get("id"), S["lei_id"], "id with the token in the %s" % via)
        c.kill()


@tap.case("SSE over HTTP/2 cleartext (prior knowledge): retry:, QUEUE_UPDATE and heartbeats")
def _():
    v2 = S["v"][1]
    c = sse(v2, via="header", name="sse-h2", http2=True)
    H.eq(c.wait_status(), 200, "status")
    H.eq(c.proto, "HTTP/2", "protocol of the response")
    e = c.wait_type("QUEUE_UPDATE", 3)
    check_update(e, "HTTP/2 update")
    H.eq(e["data"]["position"], 1, "position")
    H.check(c.retry is not None, "no retry: line over HTTP/2")
    H.wait_for(lambda: len(c.comments) >= 1, 3, "a heartbeat over HTTP/2")
    c.kill()


@tap.case("missing token: 400; invalid token: 401 (HTTP/1.1 and HTTP/2); never a stream")
def _():
    url = "http://127.0.0.1:%d/queue/events" % env.gw_port
    acc = ("Accept", "text/event-stream")
    forged = H.forge_jwt(H.JWT_HEADER, H.claims(room="lei"), b"y" * 48)
    for h2 in (False, True):
        proto = "HTTP/2" if h2 else "HTTP/1.1"
        H.eq(H.curl_status(url, [acc], http2=h2), 400, "%s without a token" % proto)
        H.eq(H.curl_status(url + "?token=nonsense", [acc], http2=h2), 401, "%s with a garbage token" % proto)
        H.eq(H.curl_status(url, [acc, ("Queue-Token", forged)], http2=h2), 401,
             "%s with a token signed by another key" % proto)
        H.eq(H.curl_status(url, [acc, ("Cookie", "waitroom_lei=" + forged)], http2=h2), 401,
             "%s with a forged cookie" % proto)


@tap.case("a user who left gets EXPIRED and the stream ends")
def _():
    w = env.join("/lei", room="lei")
    H.eq(env.leave(w.token, room="lei").status, 200, "leave")
    c = sse(w, name="sse-left")
    e = c.wait_event(lambda e: True, 3, "a first event")
    H.eq(e.get("event"), "EXPIRED", "first event for a user who left")
    H.eq(c.wait_done(3), 0, "curl's exit status")
    H.eq(len(c.events), 1, "events for a user who left")


@tap.case("a user whose session ended early gets EXPIRED and the stream ends")
def _():
    g = S["g"]   # admitted in setup, left in the Last-Event-ID case
    H.check(env.redis.zscore(KE.revoked, g.uid) is not None, "g has no tombstone")
    c = sse(g, name="sse-ended")
    e = c.wait_event(lambda e: True, 3, "a first event")
    H.eq(e.get("event"), "EXPIRED", "first event for a user whose session ended")
    H.eq(c.wait_done(3), 0, "curl's exit status")


@tap.case("HTTP/1.1: the stream owns its socket (no chunking, the body ends at close), ignores what the client "
          "sends, and notices at once when the client closes its side")
def _():
    import socket
    import time
    w = env.join("/lei", room="lei")
    s = socket.create_connection(("127.0.0.1", env.gw_port), timeout=5)
    s.sendall(("GET /queue/events?token=%s HTTP/1.1\r\nHost: x\r\n\r\n" % w.token).encode())
    buf = b""
    while b"\r\n\r\n" not in buf or b"QUEUE_UPDATE" not in buf:
        chunk = s.recv(4096)
        H.check(chunk, "the stream closed before its first event: %r" % buf)
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    H.check(lines[0].startswith("HTTP/1.1 200"), "status line %r" % lines[0])
    names = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    H.eq(names.get("content-type"), "text/event-stream", "content-type")
    H.check("transfer-encoding" not in names and "content-length" not in names,
            "the body is delimited by the connection's end, not framed: %r" % names)
    H.check(body.startswith(b"retry: "), "body starts with retry: (%r)" % body[:40])
    s.sendall(b"GET / HTTP/1.1\r\n\r\nnoise" * 100)   # a client has nothing to say here
    got = b""
    s.settimeout(3)
    while b": hb" not in got:
        chunk = s.recv(4096)
        H.check(chunk, "the stream closed after the client sent bytes")
        got += chunk
    # Half-close: the gateway could still write to us, so only a gateway that
    # reads the socket notices; it must close its side well before 3 s.
    s.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        H.check(time.monotonic() - t0 < 3, "the gateway kept the stream open after the client closed its side")
    H.check(time.monotonic() - t0 < 2, "the gateway took %.1f s to close" % (time.monotonic() - t0))
    s.close()

if __name__ == "__main__":
    tap.run(setup)
