"""test_basic.py: one user's whole trip through the waiting room.

Starts redis, the backend and the gateway; the worker starts only after the
WAITING answers have been checked, so positions are exact until then. Then:
join (JSON and browser), status three ways, ACTIVE, proxying with the
user header set by the gateway alone, admission tokens, health, unknown
paths, and a user driven by the real curl binary.
"""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=60)
env = H.Env()
S = {}  # state shared between cases, in order


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[
        H.room("booking", "/book", env.backend.port, total_active_users=5,
               new_users_per_minute=600, session_duration="5m"),
        # The curl user's room admits 2 users a second, so a position can be seen falling.
        H.room("curl", "/curl", env.backend.port, total_active_users=100,
               new_users_per_minute=120, session_duration=300),
    ])
    env.start_gateway()


def backend_count():
    return env.backend.count()


@tap.case("JSON join: 202, JSON body, Retry-After, no-store, HttpOnly cookie, queue token")
def _():
    u = env.join()
    r = u.join_response
    S["u1"] = u
    H.eq(r.status, 202, "status")
    ctype = r.headers.get("Content-Type", "")
    H.check(ctype.startswith("application/json"), "Content-Type %r is not application/json" % ctype)
    ra = r.headers.get("Retry-After")
    H.check(ra is not None and ra.strip().isdigit(), "Retry-After %r is not a number of seconds" % ra)
    cc = r.headers.get("Cache-Control", "")
    H.check("no-store" in cc, "Cache-Control %r lacks no-store" % cc)
    c = H.find_cookie(r, H.cookie_name())
    H.check(c is not None, "no Set-Cookie %s in %r" % (H.cookie_name(), r.headers.get_all("Set-Cookie")))
    _, val, attrs = c
    H.eq(val, u.token, "cookie value vs queueToken")
    H.check(attrs.get("httponly") is True, "cookie lacks HttpOnly: %r" % (attrs,))
    H.eq(attrs.get("path"), "/", "cookie Path")
    body = r.json()
    H.eq(body["status"], "WAITING", "body status")
    H.check(isinstance(body.get("position"), int) and body["position"] >= 1, "position %r" % body.get("position"))
    H.eq(body["position"], 1, "first user's position with no worker running")
    H.check(isinstance(body.get("estimatedWait"), (int, float)) and body["estimatedWait"] >= 0,
            "estimatedWait %r" % body.get("estimatedWait"))
    hdr = H.jwt_header(u.token)
    H.eq(hdr.get("alg"), "HS256", "token alg")
    H.eq(hdr.get("kid"), "k1", "token kid")
    cl = u.claims
    H.eq(cl.get("iss"), "waitroom", "iss")
    H.eq(cl.get("aud"), "booking", "aud")
    H.eq(cl.get("typ"), "queue", "typ")
    H.check(isinstance(cl.get("sub"), str) and len(cl["sub"]) == 32
            and all(ch in "0123456789abcdef" for ch in cl["sub"]), "sub %r is not 32 lowercase hex" % cl.get("sub"))
    H.check(isinstance(cl.get("q"), int) and cl["q"] >= 1, "q %r" % cl.get("q"))
    for k in ("iat", "nbf", "exp"):
        H.check(isinstance(cl.get(k), int), "%s %r is not an integer" % (k, cl.get(k)))
    H.check(abs((cl["exp"] - cl["iat"]) - 86400) <= 2, "queue token lifetime %ds is not 24h" % (cl["exp"] - cl["iat"]))
    k = H.RoomKeys()
    H.eq(env.redis.zscore(k.queue, u.uid), float(cl["q"]), "ZSCORE queue of the new user")
    H.eq(backend_count(), 0, "requests seen by the backend")


@tap.case("browser join (no JSON Accept): same status, text/html page, cookie")
def _():
    r = env.get("/book", {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
                          "User-Agent": "Mozilla/5.0"})
    H.eq(r.status, 202, "status")
    ctype = r.headers.get("Content-Type", "")
    H.check(ctype.startswith("text/html"), "Content-Type %r is not text/html" % ctype)
    H.check(b"<html" in r.body.lower(), "body is not an HTML page: %r" % r.body[:200])
    c = H.find_cookie(r, H.cookie_name())
    H.check(c is not None, "no Set-Cookie %s" % H.cookie_name())
    H.check(c[2].get("httponly") is True, "cookie lacks HttpOnly")
    p = H.jwt_payload(c[1])
    H.check(p["sub"] != S["u1"].uid, "browser user got the first user's id")
    H.eq(env.redis.zcard(H.RoomKeys().queue), 2, "ZCARD queue after two joins")
    S["browser_token"] = c[1]


@tap.case("status via ?token=, Queue-Token header and cookie agree (WAITING, same position)")
def _():
    u = S["u1"]
    seen = []
    for via in ("query", "header", "cookie"):
        r = env.status(u.token, via=via)
        H.eq(r.status, 200, "status via %s (%s)" % (via, r.describe()))
        b = r.json()
        H.eq(b.get("status"), "WAITING", "status via %s" % via)
        seen.append((via, b.get("position")))
    H.check(len({p for _, p in seen}) == 1, "positions differ: %r" % seen)
    H.eq(seen[0][1], u.join_position, "status position vs join position")


@tap.case("a WAITING user's queue token at /book: same queued answer, never enqueued twice, not proxied")
def _():
    u = S["u1"]
    k = H.RoomKeys()
    before = env.redis.snapshot()
    for via in ("header", "cookie"):
        r = u.request("/book", via=via)
        H.eq(r.status, 202, "status with the token in the %s (%s)" % (via, r.describe()))
        b = r.json()
        H.eq(b.get("status"), "WAITING", "status")
        H.eq(b.get("position"), u.join_position, "position")
        if b.get("queueToken"):
            H.eq(H.jwt_payload(b["queueToken"])["sub"], u.uid, "sub of the re-issued queue token")
    after = env.redis.snapshot()
    H.eq(after["seq"], before["seq"], "wr:{booking}:seq (no new queue number)")
    H.eq(after["queue"], before["queue"], "queue ZSET")
    H.eq(env.redis.zcard(k.queue), 2, "ZCARD queue")
    H.eq(backend_count(), 0, "requests seen by the backend")


@tap.case("after the worker starts, the user becomes ACTIVE with an admission token")
def _():
    env.start_worker()
    u = S["u1"]
    u.wait_active(timeout=10)
    b = u.status()
    H.eq(b.get("status"), "ACTIVE", "status")
    H.check(isinstance(b.get("expiresIn"), (int, float)) and 0 < b["expiresIn"] <= 300,
            "expiresIn %r not in (0, 300]" % b.get("expiresIn"))
    H.eq(b.get("bookingUrl"), "/book", "bookingUrl")
    at = b.get("admissionToken")
    H.check(isinstance(at, str) and at.count(".") == 2, "admissionToken %r" % at)
    p = H.jwt_payload(at)
    H.eq(p.get("typ"), "admission", "admission token typ")
    H.eq(p.get("sub"), u.uid, "admission token sub")
    H.eq(p.get("aud"), "booking", "admission token aud")
    H.check(p["exp"] - int(time.time()) <= 301, "admission exp %d is beyond the session" % p["exp"])
    score = env.redis.zscore(H.RoomKeys().active, u.uid)
    H.check(score is not None, "user not in wr:{booking}:active")
    S["admission"] = at
    # Once ACTIVE, the status agrees whichever way the token comes.
    for via in ("query", "cookie"):
        H.eq(env.status(u.token, via=via).json().get("status"), "ACTIVE", "status via %s" % via)


@tap.case("an ACTIVE user's queue token is proxied; the backend sees Waitroom-User = sub, Waitroom-Room")
def _():
    u = S["u1"]
    n0 = backend_count()
    r = u.request("/book/seat/12?x=1")
    H.eq(r.status, 200, "status (%s)" % r.describe())
    b = r.json()
    S["proxied_path"] = b.get("path")
    H.eq(b.get("user"), u.uid, "Waitroom-User at the backend")
    H.eq(b.get("room"), "booking", "Waitroom-Room at the backend")
    reqs = env.backend.requests()
    H.eq(len(reqs), n0 + 1, "backend request count")
    H.eq(H.header_values(reqs[-1], "Waitroom-User"), [u.uid], "Waitroom-User headers at the backend")
    # The token in the cookie works the same, on the bare prefix too.
    r = u.request("/book", via="cookie")
    H.eq(r.status, 200, "status with the cookie (%s)" % r.describe())
    H.eq(r.json().get("user"), u.uid, "user with the cookie")


@tap.case("the backend receives the original path and query (/book/seat/12?x=1), prefix kept")
def _():
    H.eq(S.get("proxied_path"), "/book/seat/12?x=1", "path at the backend for GET /book/seat/12?x=1")


@tap.case("a client-supplied Waitroom-User header never reaches the backend")
def _():
    u = S["u1"]
    n0 = backend_count()
    r = u.request("/book/x", headers=[("Waitroom-User", "attacker"), ("waitroom-user", "attacker2"),
                                       ("Waitroom-Room", "other")])
    H.eq(r.status, 200, "status (%s)" % r.describe())
    H.eq(r.json().get("user"), u.uid, "user at the backend")
    reqs = env.backend.requests()
    H.eq(len(reqs), n0 + 1, "backend request count")
    H.eq(H.header_values(reqs[-1], "Waitroom-User"), [u.uid], "every Waitroom-User header at the backend")
    H.eq(H.header_values(reqs[-1], "Waitroom-Room"), ["booking"], "every Waitroom-Room header at the backend")
    for e in reqs:
        for v in H.header_values(e, "Waitroom-User"):
            H.check("attacker" not in v, "the backend saw %r" % v)


@tap.case("the admission token from status is proxied too (header and cookie), and POST bodies pass")
def _():
    u = S["u1"]
    at = S["admission"]
    for via in ("header", "cookie"):
        r = u.request("/book/pay", token=at, via=via)
        H.eq(r.status, 200, "status with the admission token in the %s (%s)" % (via, r.describe()))
        H.eq(r.json().get("user"), u.uid, "user at the backend")
    r = u.request("/book/pay", token=at, method="POST", body=b'{"seat": 12}' * 100,
                  headers=[("Content-Type", "application/json")])
    H.eq(r.status, 200, "POST status (%s)" % r.describe())
    b = r.json()
    H.eq(b.get("method"), "POST", "method at the backend")
    H.eq(b.get("body_len"), 1200, "body length at the backend")


@tap.case("GET /healthz answers 200 JSON")
def _():
    r = env.get("/healthz")
    H.eq(r.status, 200, "status")
    r.json()


@tap.case("paths outside every room (/, /nope, /booking, /bookx) are 404 and never proxied")
def _():
    n0 = backend_count()
    u = S["u1"]
    for path in ("/", "/nope", "/booking", "/bookx/1"):
        r = env.get(path, [("Queue-Token", u.token), ("Accept", "application/json")])
        H.eq(r.status, 404, "GET %s (%s)" % (path, r.describe()))
    H.eq(backend_count(), n0, "backend request count")


def curl(*args):
    p = subprocess.run(["curl", "-sS", "--max-time", "10"] + list(args), capture_output=True, timeout=15)
    H.check(p.returncode == 0, "curl %r failed: %s" % (args, p.stderr.decode(errors="replace")))
    return p.stdout.decode("utf-8", "replace")


@tap.case("a curl user: joins, position never goes up and falls to ACTIVE, then is proxied by cookie")
def _():
    if shutil.which("curl") is None:
        raise H.TestFailure("curl is not installed")
    base = "http://127.0.0.1:%d" % env.gw_port
    # People ahead in line, so the curl user has to wait a little.
    ahead = [env.join("/curl", room="curl") for _ in range(5)]
    jar = os.path.join(env.tmp, "curl-cookies.txt")
    out = curl("-c", jar, "-b", jar, "-H", "Accept: application/json",
               "-w", "\n%{http_code}", base + "/curl/")
    body, code = out.rsplit("\n", 1)
    H.eq(code, "202", "curl join status")
    j = json.loads(body)
    H.eq(j.get("status"), "WAITING", "curl join status field")
    uid = H.jwt_payload(j["queueToken"])["sub"]
    with open(jar) as f:
        H.check(H.cookie_name("curl") in f.read(), "curl's cookie jar lacks %s" % H.cookie_name("curl"))
    positions = [j["position"]]

    def active():
        s = json.loads(curl("-b", jar, base + "/queue/status"))
        if s.get("status") == "WAITING":
            H.check(s["position"] <= positions[-1], "position went up: %r then %r" % (positions, s["position"]))
            positions.append(s["position"])
            return False
        H.eq(s.get("status"), "ACTIVE", "status")
        return True
    H.wait_for(active, 20, "the curl user to become ACTIVE", interval=0.2)
    H.diag("positions seen by the curl user: %r" % positions)
    out = curl("-b", jar, "-w", "\n%{http_code}", base + "/curl/checkout")
    body, code = out.rsplit("\n", 1)
    H.eq(code, "200", "curl proxied status")
    b = json.loads(body)
    H.eq(b.get("user"), uid, "user at the backend")
    H.eq(b.get("room"), "curl", "room at the backend")
    for u in ahead:
        H.check(env.redis.zscore(H.RoomKeys("curl").active, u.uid) is not None,
                "a user ahead of the curl user is not ACTIVE")


if __name__ == "__main__":
    tap.run(setup)
