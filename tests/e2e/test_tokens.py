"""test_tokens.py: every kind of bad token is refused and never proxied.

Two rooms ("booking" at /book and "other" at /other) and no worker, so valid
users stay WAITING. Each bad token is sent in the Queue-Token header and in
the room cookie to /book, and in the header, the cookie and ?token= to
/queue/status, and in the header to POST /queue/leave. Every answer must be a
4xx (401 invalid_token for a token problem) with a JSON body that does not
echo the token, nothing may be enqueued, and the backend log must stay empty.
"""

import json
import os
import secrets
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=60)
env = H.Env()
S = {}
K = H.RoomKeys()


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[
        H.room("booking", "/book", env.backend.port),
        H.room("other", "/other", env.backend.port),
    ], log_level="debug")
    env.start_gateway()
    S["user"] = env.join()


def sign(header=None, payload=None, secret=None, **claim_overrides):
    return H.forge_jwt(header if header is not None else H.JWT_HEADER,
                       payload if payload is not None else H.claims(**claim_overrides),
                       env.secret if secret is None else secret)


def refused(token, where, expect=(401,), endpoints=("book-header", "book-cookie", "status-header",
                                                     "status-cookie", "status-query", "leave-header")):
    """Sends token every way and checks each answer."""
    tok = token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")
    base = env.redis.snapshot()
    S.setdefault("sent", []).append(tok)
    problems = []
    for ep in endpoints:
        if ep == "book-header":
            r = env.get("/book", [("Accept", "application/json"), ("Queue-Token", tok)])
        elif ep == "book-cookie":
            r = env.get("/book/x", [("Accept", "application/json"), ("Cookie", H.cookie_name().encode() + b"=" + tok)])
        elif ep == "status-header":
            r = env.get("/queue/status", [("Queue-Token", tok)])
        elif ep == "status-cookie":
            r = env.get("/queue/status", [("Cookie", H.cookie_name().encode() + b"=" + tok)])
        elif ep == "status-query":
            r = env.get("/queue/status?token=" + urllib.parse.quote(tok, safe=""))
        elif ep == "leave-header":
            r = env.post("/queue/leave", [("Queue-Token", tok)])
        if r.status not in expect:
            problems.append("%s: expected %s, got %s" % (ep, expect, r.describe()))
            continue
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("application/json"):
            problems.append("%s: Content-Type %r" % (ep, ctype))
            continue
        try:
            body = json.loads(r.body)
        except ValueError:
            problems.append("%s: body is not JSON: %r" % (ep, r.body[:200]))
            continue
        if r.status == 401:
            if body.get("error") != "invalid_token" or not isinstance(body.get("reason"), str):
                problems.append("%s: body %r" % (ep, body))
        # The token, or any sizeable piece of it, must not come back.
        for piece in [tok] + tok.split(b"."):
            if len(piece) >= 12 and piece in r.body:
                problems.append("%s: the body echoes the token: %r" % (ep, r.body[:200]))
                break
        S.setdefault("reasons", {}).setdefault(where, set()).add(body.get("reason"))
    H.check(not problems, "%s:\n  %s" % (where, "\n  ".join(problems)))
    H.eq(env.backend.count(), 0, "backend requests after %s" % where)
    snap = env.redis.snapshot()
    H.eq(snap["seq"], base["seq"], "wr:{booking}:seq after %s (a bad token enqueued someone)" % where)
    H.eq(snap["queue"], base["queue"], "queue after %s" % where)
    H.eq(env.redis.zcard(H.RoomKeys("other").queue), 0, "other room's queue after %s" % where)


def case(name, make, **kw):
    @tap.case(name)
    def _():
        refused(make(), name, **kw)
        H.diag("reasons: %r" % sorted(str(x) for x in S["reasons"].get(name, ())))


def flip_signature():
    t = sign(sub=S["user"].uid)
    h, p, s = t.split(".")
    s = ("A" if s[0] != "A" else "B") + s[1:]
    return ".".join((h, p, s))


now = int(time.time())
case("forged signature (one character changed)", flip_signature)
case("signed with a different 32-byte secret", lambda: sign(secret=secrets.token_bytes(32)))
case("a real user's claims re-signed with another secret",
     lambda: H.forge_jwt(H.jwt_header(S["user"].token), H.jwt_payload(S["user"].token), b"x" * 32))
case("alg none with empty signature",
     lambda: H.forge_jwt({"alg": "none", "typ": "JWT", "kid": "k1"}, H.claims(), None))
case("alg None with the payload of a real token and no signature",
     lambda: H.forge_jwt({"alg": "None", "typ": "JWT"}, H.jwt_payload(S["user"].token), None))
case("alg none with a valid-looking signature",
     lambda: H.forge_jwt({"alg": "none", "typ": "JWT", "kid": "k1"}, H.claims(), env.secret))
case("alg HS512 signed with the real secret",
     lambda: H.forge_jwt({"alg": "HS512", "typ": "JWT", "kid": "k1"}, H.claims(), env.secret, alg="sha512"))
case("alg hs256 (lower case)", lambda: sign(header={"alg": "hs256", "typ": "JWT", "kid": "k1"}))
case("malformed: one segment", lambda: "notajwt")
case("malformed: two segments", lambda: sign().rsplit(".", 1)[0])
case("malformed: four segments", lambda: sign() + ".abcd")
case("malformed: bad base64url in the payload", lambda: "eyJhbGciOiJIUzI1NiJ9.@@@!!!.c2ln")
case("malformed: payload not JSON", lambda: H.forge_jwt(H.JWT_HEADER, "not json at all", env.secret))
case("garbage value", lambda: "%%%garbage;;;value%%%")
case("10 KB token", lambda: sign(pad="x" * 10240))
case("non-UTF-8 bytes", lambda: b"\xff\xfe\x80\xc3(." + b"\xa0\xa1" * 20 + b".\xf0\x28\x8c\x28")
case("expired (exp an hour ago)", lambda: sign(now=now - 7200, lifetime=3600))
case("issuer wrong", lambda: sign(iss="evil"))
case("issuer missing", lambda: sign(iss=None))
case("audience of the other existing room, at /book",
     lambda: sign(room="other"), endpoints=("book-header", "book-cookie"))
case("audience of no room", lambda: sign(room="nosuchroom"))
case("typ neither queue nor admission", lambda: sign(typ="refresh", q=1))
case("typ missing", lambda: sign(typ=None))
case("unknown kid", lambda: sign(header={"alg": "HS256", "typ": "JWT", "kid": "k2"}))
case("kid ../../etc/passwd", lambda: sign(header={"alg": "HS256", "typ": "JWT", "kid": "../../etc/passwd"}))
case("kid missing", lambda: sign(header={"alg": "HS256", "typ": "JWT"}))
case("kid huge", lambda: sign(header={"alg": "HS256", "typ": "JWT", "kid": "k" * 1000}))
case("queue token exp too far in the future (10 years)", lambda: sign(lifetime=10 * 365 * 86400))
case("admission token exp beyond the session (5m) by an hour", lambda: sign(typ="admission", lifetime=3600 + 300))
case("exp missing", lambda: sign(exp=None))
case("exp as a string", lambda: sign(exp=str(now + 3600)))
case("nbf in the future beyond the skew", lambda: sign(nbf=now + 3600))
case("iat in the future beyond the skew", lambda: sign(iat=now + 3600))
case("sub not a user id", lambda: sign(sub="../../attacker"))
case("sub missing", lambda: H.forge_jwt(
    H.JWT_HEADER, {k: v for k, v in H.claims().items() if k != "sub"}, env.secret))
case("queue token without q", lambda: sign(q=None))
case("empty token at /queue/status and /queue/leave", lambda: "", expect=(400, 401),
     endpoints=("status-header", "status-cookie", "status-query", "leave-header"))
case("empty Queue-Token header / empty cookie at /book: 4xx, nobody enqueued", lambda: "", expect=(400, 401),
     endpoints=("book-header", "book-cookie"))


@tap.case("no token: /queue/status 400 missing_token, /queue/leave 4xx")
def _():
    r = env.get("/queue/status")
    H.eq(r.status, 400, "status without a token (%s)" % r.describe())
    H.eq(r.json().get("error"), "missing_token", "error")
    r = env.post("/queue/leave")
    H.check(400 <= r.status < 500, "leave without a token: %s" % r.describe())
    H.eq(env.backend.count(), 0, "backend requests")


@tap.case("a WAITING user's valid token is answered 202 and not proxied (header and cookie)")
def _():
    u = S["user"]
    seq = env.redis.get_int(K.seq)
    for via in ("header", "cookie"):
        r = u.request("/book/checkout", via=via)
        H.eq(r.status, 202, "status via %s (%s)" % (via, r.describe()))
        b = r.json()
        H.eq(b.get("status"), "WAITING", "status")
        H.eq(b.get("position"), u.join_position, "position")
    H.eq(env.backend.count(), 0, "backend requests")
    H.eq(env.redis.get_int(K.seq), seq, "seq (never enqueued twice)")


@tap.case("a valid token of room other works at /other but is refused (401) at /book")
def _():
    o = env.join("/other", room="other")
    H.eq(o.claims.get("aud"), "other", "aud")
    r = o.request("/other/x")
    H.eq(r.status, 202, "other room, own token (%s)" % r.describe())
    r = env.get("/book", [("Queue-Token", o.token), ("Accept", "application/json")])
    H.eq(r.status, 401, "other room's token at /book (%s)" % r.describe())
    H.eq(r.json().get("error"), "invalid_token", "error")
    H.check(o.token.encode() not in r.body, "the body echoes the token")
    H.eq(env.backend.count(), 0, "backend requests")


@tap.case("no token, signature or secret appears in the gateway's debug log")
def _():
    with open(env.gateway.log_path, "rb") as f:
        log = f.read()
    H.check(env.secret not in log, "the HMAC secret is in the gateway log")
    tokens = [S["user"].token] + S.get("sent", [])
    for t in tokens:
        for piece in [t] + t.split(b"." if isinstance(t, bytes) else "."):
            piece = piece if isinstance(piece, bytes) else piece.encode()
            # Headers (eyJhbGciOi...) are shared by every token; look at payloads and signatures.
            if len(piece) >= 20 and not piece.startswith(b"eyJhbGci") and piece in log:
                raise H.TestFailure("the gateway log contains a token piece %r..." % piece[:24])
    H.diag("gateway log: %d bytes, %d lines checked" % (len(log), log.count(b"\n")))


@tap.case("the backend log stayed empty throughout")
def _():
    H.eq(env.backend.requests(), [], "backend requests")


if __name__ == "__main__":
    tap.run(setup)
