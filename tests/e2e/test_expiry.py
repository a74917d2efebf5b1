"""test_expiry.py: sessions end, by time or by leaving, and free their slot.

Two rooms of one slot each: "booking" (/book) with 2 s sessions, for expiry
by time, and "lounge" (/lounge) with 1 min sessions, for leaving (the slot
must free long before the session would have ended). clock_skew is 0 so an
admission token stops working as soon as its exp has passed.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=60)
env = H.Env()
S = {}
KB = H.RoomKeys("booking")
KL = H.RoomKeys("lounge")


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[
        H.room("booking", "/book", env.backend.port, total_active_users=1,
               new_users_per_minute=600, session_duration="2s"),
        H.room("lounge", "/lounge", env.backend.port, total_active_users=1,
               new_users_per_minute=600, session_duration="1m"),
    ], tokens={"clock_skew": "0s"})
    env.start_gateway()
    env.start_worker()


def backend_users():
    return [v for e in env.backend.requests() for v in H.header_values(e, "Waitroom-User")]


@tap.case("A joins and becomes ACTIVE; B waits at position 1")
def _():
    a = env.join()
    a.wait_active(5)
    S["a_expiry_ms"] = env.redis.zscore(KB.active, a.uid)
    H.check(S["a_expiry_ms"] is not None, "A not in wr:{booking}:active")
    b = env.join()
    st = b.status()
    H.eq(st.get("status"), "WAITING", "B's status")
    H.eq(st.get("position"), 1, "B's position")
    S["a"], S["b"] = a, b


@tap.case("A's queue token and admission token are proxied while the session lasts")
def _():
    a = S["a"]
    r = a.request("/book/1")
    H.eq(r.status, 200, "queue token (%s)" % r.describe())
    H.eq(r.json().get("user"), a.uid, "user at the backend")
    st = a.status()
    H.eq(st.get("status"), "ACTIVE", "A's status")
    S["a_adm"] = st["admissionToken"]
    exp = H.jwt_payload(S["a_adm"])["exp"]
    H.check(abs(exp * 1000 - S["a_expiry_ms"]) <= 1000,
            "admission exp %d s is not the session end %d ms" % (exp, S["a_expiry_ms"]))
    r = a.request("/book/2", token=S["a_adm"])
    H.eq(r.status, 200, "admission token (%s)" % r.describe())
    H.eq(r.json().get("user"), a.uid, "user at the backend")


@tap.case("after A's session ends A is EXPIRED; A's queue token is re-queued with a new token, not proxied")
def _():
    a = S["a"]
    H.wait_for(lambda: a.status().get("status") == "EXPIRED", 6, "A's status to be EXPIRED")
    H.check(time.time() * 1000 >= S["a_expiry_ms"] - 150,
            "A was EXPIRED %.0f ms before its session end" % (S["a_expiry_ms"] - time.time() * 1000))
    n0 = env.backend.count()
    r = a.request("/book/3")
    H.eq(r.status, 202, "A's queue token after expiry (%s)" % r.describe())
    body = r.json()
    H.eq(body.get("status"), "WAITING", "status")
    new = body.get("queueToken")
    H.check(isinstance(new, str), "no new queueToken in %r" % body)
    H.check(H.jwt_payload(new)["sub"] != a.uid, "the new queue token has the old sub")
    c = H.find_cookie(r, H.cookie_name())
    H.check(c is not None and c[1] == new, "Set-Cookie does not carry the new token")
    H.eq(env.backend.count(), n0, "backend request count")
    S["a2"] = H.User(env, new, "booking", body.get("position"), r)


@tap.case("A's admission token is refused with 401 once its exp has passed, and never proxied")
def _():
    exp = H.jwt_payload(S["a_adm"])["exp"]
    H.wait_for(lambda: time.time() >= exp, 3, "the clock to pass the admission token's exp")
    n0 = env.backend.count()
    for via in ("header", "cookie"):
        r = S["a"].request("/book/4", token=S["a_adm"], via=via)
        H.eq(r.status, 401, "expired admission token in the %s (%s)" % (via, r.describe()))
        H.eq(r.json().get("error"), "invalid_token", "error")
    H.eq(env.backend.count(), n0, "backend request count")


@tap.case("B takes the freed slot and is proxied")
def _():
    b = S["b"]
    b.wait_active(5)
    r = b.request("/book/5")
    H.eq(r.status, 200, "B's request (%s)" % r.describe())
    H.eq(r.json().get("user"), b.uid, "user at the backend")
    H.eq(backend_users().count(S["a"].uid), 2, "requests of A at the backend (only the two during its session)")


@tap.case("an ACTIVE user who leaves frees the slot at once; the next user is admitted")
def _():
    d = env.join("/lounge", room="lounge")
    d.wait_active(5)
    st = d.status()
    d_adm = st["admissionToken"]
    d_expiry = env.redis.zscore(KL.active, d.uid)
    e = env.join("/lounge", room="lounge")
    H.eq(e.status().get("status"), "WAITING", "E's status")
    r = d.request("/lounge/x")
    H.eq(r.status, 200, "D proxied before leaving (%s)" % r.describe())
    r = env.leave(d.token, room="lounge")
    H.eq(r.status, 200, "leave (%s)" % r.describe())
    H.eq(r.json(), {"status": "LEFT"}, "leave body")
    # At once: D is out of the active set (E may already have D's slot).
    H.check(env.redis.zscore(KL.active, d.uid) is None, "D still in wr:{lounge}:active right after leaving")
    H.check(env.redis.zcard(KL.active) <= 1, "more than one active user in the lounge")
    H.check(env.redis.zscore(KL.revoked, d.uid) is not None, "D has no tombstone in wr:{lounge}:revoked")
    e.wait_active(3)
    e_expiry = env.redis.zscore(KL.active, e.uid)
    H.check(e_expiry - 60000 < d_expiry - 50000,
            "E was admitted %.1fs after D's admission, not right after D left"
            % ((e_expiry - d_expiry) / 1000.0))
    S["d"], S["d_adm"], S["e"] = d, d_adm, e


@tap.case("the left user's admission token gets 401 and never reaches the backend")
def _():
    d = S["d"]
    n0 = env.backend.count()
    for via in ("header", "cookie"):
        r = d.request("/lounge/y", token=S["d_adm"], via=via)
        H.eq(r.status, 401, "admission token after leaving, in the %s (%s)" % (via, r.describe()))
        H.eq(r.json().get("error"), "invalid_token", "error")
    H.eq(env.backend.count(), n0, "backend request count")
    st = d.status().get("status")
    H.check(st not in ("ACTIVE", "WAITING"), "the left user's status is %r" % st)


@tap.case("a WAITING user who leaves is out of the line at once and never admitted")
def _():
    f = env.join("/lounge", room="lounge")   # E holds the only slot
    H.eq(f.status().get("status"), "WAITING", "F's status")
    H.check(env.redis.zscore(KL.queue, f.uid) is not None, "F not in wr:{lounge}:queue")
    r = env.leave(f.token, via="cookie", room="lounge")
    H.eq(r.status, 200, "leave (%s)" % r.describe())
    H.check(env.redis.zscore(KL.queue, f.uid) is None, "F still in wr:{lounge}:queue right after leaving")
    g = env.join("/lounge", room="lounge")
    H.eq(g.status().get("status"), "WAITING", "G's status")
    r = env.leave(S["e"].token, room="lounge")
    H.eq(r.status, 200, "E leaves (%s)" % r.describe())
    g.wait_active(3)
    H.check(env.redis.zscore(KL.active, f.uid) is None, "F, who left, was admitted")
    H.check(f.status().get("status") != "ACTIVE", "F, who left, is ACTIVE")


if __name__ == "__main__":
    tap.run(setup)
