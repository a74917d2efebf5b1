"""test_abandon.py: a waiting user who goes away loses their place (docs/push.md).

One room with one slot, held by a filler F until the test lets admission
run by making the admitted user leave, and abandon_grace 2 s (the least
allowed). Five users join behind F, in this order:
  A and C hold WebSocket connections throughout;
  B opens an SSE stream, closes it and never comes back;
  D closes its WebSocket and opens a new one within the grace;
  E never holds a push connection but polls /queue/status every second.
Only B may lose its place. Admission then goes F -> A -> C: B is skipped.

The position shown is q - serving, an upper bound on the true rank
(ZRANK + 1 in wr:{R}:queue): the difference is the number of users ahead who
were dropped or left and whom admission has not yet passed. The test checks
that difference exactly, before and after admission passes B.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=60)
env = H.Env()
S = {}
K = H.RoomKeys("booking")
GRACE = 2.0


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[
        H.room("booking", "/book", env.backend.port, total_active_users=1, new_users_per_minute=6000,
               session_duration="1m", abandon_grace="2s"),
    ], gateway=env.push_settings(processes=1, heartbeat_interval="1s"))
    env.start_gateway()
    env.start_worker()
    S["f"] = env.join()
    S["f"].wait_active(5)


def ws(user, name):
    return H.WsClient(env.push_port, token=user.token, name=name)


def first_update(c):
    c.wait_open()
    m = c.wait_message(lambda m: True, 3, "a first message")
    H.check(isinstance(m, dict) and m.get("type") == "QUEUE_UPDATE",
            "%s: first message %r, expected QUEUE_UPDATE" % (c.name, m))
    return m["position"]


def rank(user):
    """True rank: ZRANK + 1 in the queue (None if not waiting)."""
    r = env.redis.cmd("ZRANK", K.queue, user.uid)
    return None if r is None else r + 1


def poller(user, stop, out):
    # E's browser: a status question every second, no push connection.
    while not stop.is_set():
        try:
            body = user.status()
            out.append((time.monotonic(), body))
            if body.get("status") != "WAITING":
                return
        except Exception as e:  # noqa: BLE001 (reported by the test)
            out.append((time.monotonic(), e))
            return
        stop.wait(1.0)


def pushed_positions(*clients):
    return [m["position"] for c in clients for m in c.of_type("QUEUE_UPDATE")]


@tap.case("A, B, C, D, E join; A and C hold WebSockets, B's SSE closes for good, D reconnects within the grace, E polls")
def _():
    a, b, c, d, e = [env.join() for _ in range(5)]
    S.update(a=a, b=b, c=c, d=d, e=e)
    H.eq([u.q for u in (a, b, c, d, e)], [S["f"].q + i for i in range(1, 6)], "queue numbers")
    S["wa"], S["wc"] = ws(a, "ws-A"), ws(c, "ws-C")
    H.eq(first_update(S["wa"]), 1, "A's first position")
    H.eq(first_update(S["wc"]), 3, "C's first position")
    sb = H.SseClient(env.gw_port, token=b.token, name="sse-B")
    H.eq(sb.wait_type("QUEUE_UPDATE", 3)["data"]["position"], 2, "B's first position")
    sb.kill()
    S["b_closed"] = time.monotonic()
    wd = ws(d, "ws-D1")
    H.eq(first_update(wd), 4, "D's first position")
    wd.close()
    # D stays away for half the grace, then comes back.
    time.sleep(GRACE / 2)
    S["wd"] = ws(d, "ws-D2")
    H.eq(first_update(S["wd"]), 4, "D's position on reconnecting")
    S["d_back"] = time.monotonic()
    S["stop"], S["polls"] = threading.Event(), []
    S["poller"] = threading.Thread(target=poller, args=(e, S["stop"], S["polls"]), daemon=True)
    S["poller"].start()
    S["e_start"] = time.monotonic()


@tap.case("after the grace B is out of wr:{R}:queue and wr:{R}:deadline; A, C and D (push connections) are not, even after twice the grace")
def _():
    b = S["b"]
    H.wait_for(lambda: env.redis.zscore(K.queue, b.uid) is None, GRACE + 4, "B to be dropped from the queue")
    gone = time.monotonic() - S["b_closed"]
    H.diag("B dropped %.2fs after its stream closed (grace %.0fs)" % (gone, GRACE))
    H.check(gone >= GRACE - 0.1, "B was dropped %.2fs after closing its stream, before the %.0fs grace" % (gone, GRACE))
    H.check(env.redis.zscore(K.deadline, b.uid) is None, "B still in wr:{booking}:deadline")
    H.check(env.redis.zscore(K.active, b.uid) is None, "B is active")
    # Everyone else has been connected or polling; wait out two graces.
    until = max(S["d_back"], S["e_start"]) + 2 * GRACE + 0.5
    H.wait_for(lambda: time.monotonic() >= until, 3 * GRACE + 2, "two graces to pass after D came back and E began polling")
    for n in "acd":
        u = S[n]
        H.check(env.redis.zscore(K.queue, u.uid) is not None, "%s lost its place in wr:{booking}:queue" % n.upper())
        dl = env.redis.zscore(K.deadline, u.uid)
        H.check(dl is not None and dl > H.now_ms(), "%s's deadline %r is not in the future (now %d)"
                % (n.upper(), dl, H.now_ms()))
    for cl in (S["wa"], S["wc"], S["wd"]):
        H.check(not cl.done.is_set(), "%s was closed (code %r)" % (cl.name, cl.close_code))


@tap.case("E, who only polls /queue/status every second, keeps its place after twice the grace")
def _():
    e = S["e"]
    polls = [(round(t - S["e_start"], 1), x) for t, x in S["polls"]]
    H.check(not any(isinstance(x, Exception) for _, x in polls), "E's polls failed: %r" % polls)
    H.check(env.redis.zscore(K.queue, e.uid) is not None,
            "E lost its place in wr:{booking}:queue although it polled every second: polls (s, answer) %r" % polls)
    H.check(len(polls) >= 4, "E polled only %d times: %r" % (len(polls), polls))
    dl = env.redis.zscore(K.deadline, e.uid)
    H.check(dl is not None and dl > H.now_ms(), "E's deadline %r is not in the future (now %d)" % (dl, H.now_ms()))


def still_waiting(n):
    """Whether user n still waits; if not, says so (the case above failed)."""
    if env.redis.zscore(K.queue, S[n].uid) is not None:
        return True
    H.diag("%s is no longer waiting; its checks here are left out" % n.upper())
    return False


@tap.case("the shown position minus the true rank is the number of dropped users ahead not yet passed by admission")
def _():
    sv = env.redis.get_int(K.serving)
    for n in [n for n in "cde" if still_waiting(n)]:
        u = S[n]
        shown = u.status().get("position")
        H.eq(shown, u.q - sv, "%s's shown position (q - serving)" % n.upper())
        gap = 1 if S["b"].q > sv and S["b"].q < u.q else 0
        H.eq(shown - rank(u), gap, "%s: shown %d - true rank %d" % (n.upper(), shown, rank(u)))


@tap.case("admission skips B: A is admitted, then C right after A; positions move past B and never go up")
def _():
    a, b, c, d, e = (S[n] for n in "abcde")
    H.eq(env.leave(S["f"].token).status, 200, "F leaves")
    S["wa"].wait_type("ACTIVE", 5)
    H.eq(S["wa"].wait_closed(3), 1000, "A's close code")
    H.eq(env.redis.get_int(K.serving), a.q, "serving after A's admission")
    m = S["wc"].wait_message(lambda m: isinstance(m, dict) and m.get("position") == 2, 3, "C's position 2")
    H.eq(m["position"] - rank(c), 1, "C's gap after A's admission (B ahead, dropped, not passed)")
    H.eq(env.leave(a.token).status, 200, "A leaves")
    S["wc"].wait_type("ACTIVE", 5)
    H.eq(env.redis.get_int(K.serving), c.q, "serving after the next admission (C's number: B skipped)")
    H.check(env.redis.zscore(K.active, b.uid) is None, "B was admitted")
    H.check(env.redis.zscore(K.active, c.uid) is not None, "C is not active")
    m = S["wd"].wait_message(lambda m: isinstance(m, dict) and m.get("position") == 1, 3, "D's position 1")
    H.eq(m["position"] - rank(d), 0, "D's gap once admission passed B")
    if still_waiting("e"):
        H.wait_for(lambda: S["polls"] and isinstance(S["polls"][-1][1], dict)
                   and S["polls"][-1][1].get("position") == 2, 3, "E's polled position 2")
        H.eq(2 - rank(e), 0, "E's gap once admission passed B")
    for cl in (S["wa"], S["wc"], S["wd"]):
        pos = pushed_positions(cl)
        H.check(all(x >= y for x, y in zip(pos, pos[1:])), "%s: a position went up: %r" % (cl.name, pos))
    polled = [x.get("position") for _, x in S["polls"] if isinstance(x, dict) and x.get("status") == "WAITING"]
    H.check(all(x >= y for x, y in zip(polled, polled[1:])), "E's polled position went up: %r" % polled)
    H.diag("C pushed %r, D pushed %r, E polled %r" % (pushed_positions(S["wc"]), pushed_positions(S["wd"]), polled))


@tap.case("the abandoned user is told EXPIRED: by /queue/status, over WebSocket and over SSE")
def _():
    b = S["b"]
    st = b.status()
    H.eq(st.get("status"), "EXPIRED", "B's status")
    wb = ws(b, "ws-B")
    wb.wait_open()
    m = wb.wait_message(lambda m: True, 3, "a first message")
    H.eq(m.get("type") if isinstance(m, dict) else m, "EXPIRED", "B's first WebSocket message")
    wb.wait_closed(3)
    sb = H.SseClient(env.gw_port, token=b.token, name="sse-B2")
    e = sb.wait_event(lambda e: True, 3, "a first event")
    H.eq(e.get("event"), "EXPIRED", "B's first SSE event")
    sb.wait_done(3)
    S["stop"].set()
    S["poller"].join(5)


if __name__ == "__main__":
    tap.run(setup)
