"""test_proxy.py: an admitted user's requests through the gateway's own
proxy (gateway/upstream.c) to a real backend (backend.py, whose query
string picks the answer's shape).

Rooms: "px" (/px) with a live backend; "down" (/down) whose backend port
nobody listens on. One admitted user per room.
"""

import hashlib
import http.client as httpclient
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=100)
env = H.Env()
S = {}


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[
        H.room("px", "/px", env.backend.port, total_active_users=10, new_users_per_minute=6000,
               session_duration="10m"),
        H.room("down", "/down", H.free_port(), total_active_users=10, new_users_per_minute=6000,
               session_duration="10m"),
    ], gateway=env.push_settings(processes=1))
    env.start_gateway()
    env.start_worker()
    S["u"] = env.join("/px", room="px")
    S["d"] = env.join("/down", room="down")
    S["u"].wait_active(5)
    S["d"].wait_active(5)


def req(path, method="GET", headers=None, body=None, user=None):
    u = user or S["u"]
    return u.request(path, method=method, headers=headers, body=body)


def last_entry(path_part):
    for e in reversed(env.backend.requests()):
        if path_part in e["path"]:
            return e
    raise H.TestFailure("the backend saw no request for %s" % path_part)


def pattern(n):
    return (b"0123456789abcdefghijklmnopqrstuvwxyz" * (n // 36 + 1))[:n]


@tap.case("headers: Host is the backend's, X-Forwarded-For is extended with the client's address, "
          "X-Forwarded-Proto is ours, hop-by-hop headers are dropped both ways, the rest passes")
def _():
    r = req("/px/h?x=1", headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
                                  ("Connection", "keep-alive, X-Drop-Me"), ("Keep-Alive", "timeout=5"),
                                  ("TE", "trailers"), ("Upgrade", "h2c"), ("Proxy-Connection", "x"),
                                  ("X-Custom", "passed"), ("Expect", "")])
    H.eq(r.status, 200, "status (%s)" % r.describe())
    e = last_entry("/px/h?x=1")
    H.eq(e["path"], "/px/h?x=1", "path and query as sent")
    H.eq(H.header_values(e, "Host"), ["127.0.0.1:%d" % env.backend.port], "Host")
    H.eq(H.header_values(e, "X-Forwarded-For"), ["203.0.113.7, 127.0.0.1"], "X-Forwarded-For")
    H.eq(H.header_values(e, "X-Forwarded-Proto"), ["http"], "X-Forwarded-Proto")
    H.eq(H.header_values(e, "X-Custom"), ["passed"], "X-Custom")
    for h in ("Connection", "Keep-Alive", "TE", "Upgrade", "Proxy-Connection", "Expect"):
        H.eq(H.header_values(e, h), [], "%s must not reach the backend" % h)
    H.eq(len(H.header_values(e, "Waitroom-User")), 1, "one Waitroom-User")
    H.eq(r.headers.get("X-Backend-Extra"), "kept", "the backend's own header")
    H.eq(len(r.headers.get_all("Date") or []), 1, "one Date header")
    H.check(r.headers.get("Keep-Alive") is None, "Keep-Alive from the backend passed on")


@tap.case("keep-alive: 40 requests in a row reach the backend over at most 2 connections")
def _():
    before = len(env.backend.requests())
    for i in range(40):
        H.eq(req("/px/ka%d" % i).status, 200, "request %d" % i)
    ports = {e["peer_port"] for e in env.backend.requests()[before:]}
    H.check(len(ports) <= 2, "the gateway opened %d backend connections for 40 requests" % len(ports))


@tap.case("request bodies arrive intact: POST of 1 MiB, PUT of 0 bytes, and a chunked POST from the client")
def _():
    big = os.urandom(1 << 20)
    r = req("/px/upload", method="POST", body=big, headers=[("Content-Type", "application/octet-stream")])
    H.eq(r.status, 200, "POST 1 MiB (%s)" % r.describe())
    H.eq(r.json()["body_sha256"], hashlib.sha256(big).hexdigest(), "the body the backend got")
    H.eq(H.header_values(last_entry("/px/upload"), "Content-Length"), [str(len(big))], "Content-Length sent")
    r = req("/px/empty", method="PUT", body=b"")
    H.eq(r.status, 200, "PUT of nothing")
    H.eq(r.json()["body_len"], 0, "body length of an empty PUT")
    c = httpclient.HTTPConnection("127.0.0.1", env.gw_port, timeout=10)
    pieces = [b"a" * 1000, b"b" * 3000, b"c" * 17]
    c.request("POST", "/px/chunked-up", body=iter(pieces), encode_chunked=True,
              headers={"Queue-Token": S["u"].token, "Transfer-Encoding": "chunked"})
    resp = c.getresponse()
    data = resp.read()
    c.close()
    H.eq(resp.status, 200, "chunked POST")
    import json
    H.eq(json.loads(data)["body_sha256"], hashlib.sha256(b"".join(pieces)).hexdigest(), "chunked POST body")


@tap.case("answers pass intact: 1 MiB with Content-Length, 300 kB chunked (trailers dropped), "
          "200 kB ended by close, 204, HEAD, a 404 from the backend")
def _():
    r = req("/px/big?size=1048576")
    H.eq(r.status, 200, "1 MiB")
    H.check(r.body == pattern(1 << 20), "1 MiB body differs (%d bytes)" % len(r.body))
    r = req("/px/ch?shape=chunked&size=300000")
    H.eq(r.status, 200, "chunked")
    H.check(r.body == pattern(300000), "chunked body differs (%d bytes)" % len(r.body))
    H.check(r.headers.get("X-Trailer") is None, "a trailer became a header")
    r = req("/px/cl?shape=close&size=200000")
    H.eq(r.status, 200, "close-delimited")
    H.check(r.body == pattern(200000), "close-delimited body differs (%d bytes)" % len(r.body))
    r = req("/px/nc?shape=204")
    H.eq((r.status, r.body), (204, b""), "204")
    r = req("/px/hd?size=5000", method="HEAD")
    H.eq((r.status, r.body), (200, b""), "HEAD")
    H.eq(r.headers.get("Content-Length"), "5000", "HEAD keeps the length")
    r = req("/px/nf?status=404")
    H.eq(r.status, 404, "the backend's 404")
    H.eq(r.json()["path"], "/px/nf?status=404", "the backend's 404 body")


@tap.case("a backend that closes connections after answering (as an idle timeout does): every request "
          "still succeeds (idempotent ones are sent again on a new connection when a pooled one was closed)")
def _():
    for i in range(30):
        r = req("/px/tc%d?shape=then-close" % i)
        H.eq(r.status, 200, "request %d after a closing answer (%s)" % (i, r.describe()))
        r = req("/px/after%d" % i)
        H.eq(r.status, 200, "request %d right after (%s)" % (i, r.describe()))


@tap.case("a backend nobody listens on: 502 with a JSON error; one answering something that is not HTTP: 502")
def _():
    r = req("/down/x", user=S["d"])
    H.eq(r.status, 502, "backend down (%s)" % r.describe())
    H.eq(r.json().get("error"), "bad_gateway", "error code")
    r = req("/px/garbage?shape=bad")
    H.eq(r.status, 502, "garbage answer (%s)" % r.describe())
    H.eq(req("/px/fine").status, 200, "the next request")


@tap.case("a client that leaves mid-answer: the gateway drops that backend connection and serves the next")
def _():
    s = socket.create_connection(("127.0.0.1", env.gw_port), timeout=5)
    s.sendall(("GET /px/huge?size=20000000 HTTP/1.1\r\nHost: x\r\nQueue-Token: %s\r\n\r\n" % S["u"].token).encode())
    got = s.recv(65536)
    H.check(got.startswith(b"HTTP/1.1 200"), "start of the answer: %r" % got[:40])
    s.close()
    for i in range(5):
        H.eq(req("/px/next%d" % i).status, 200, "request %d after the client left" % i)


@tap.case("HTTP/2 (curl, prior knowledge): proxied, with the client's cookies in one Cookie header")
def _():
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_code} %{http_version}",
                          "-H", "Queue-Token: " + S["u"].token, "-H", "Cookie: a=1", "-H", "Cookie: b=2",
                          "http://127.0.0.1:%d/px/h2" % env.gw_port], capture_output=True, timeout=20)
    body, _, tail = out.stdout.rpartition(b"\n")
    H.eq(tail, b"200 2", "status and HTTP version (%r)" % out.stdout[-200:])
    e = last_entry("/px/h2")
    cookies = H.header_values(e, "Cookie")
    H.eq(len(cookies), 1, "Cookie headers at the backend: %r" % cookies)
    H.check("a=1" in cookies[0] and "b=2" in cookies[0], "cookies merged: %r" % cookies)


@tap.case("pipelined requests on one connection (the second arrives while the first is in progress): both answered, in order")
def _():
    s = socket.create_connection(("127.0.0.1", env.gw_port), timeout=5)
    one = "GET /px/pipe%d?size=%d HTTP/1.1\r\nHost: x\r\nQueue-Token: %s\r\n\r\n"
    s.sendall(((one % (1, 3000, S["u"].token)) + (one % (2, 5000, S["u"].token))).encode())
    s.settimeout(10)
    f = s.makefile("rb")
    for n in (3000, 5000):
        status = f.readline()
        H.check(status.startswith(b"HTTP/1.1 200"), "status line %r" % status)
        length = None
        while True:
            line = f.readline().strip()
            if not line:
                break
            k, _, v = line.partition(b":")
            if k.lower() == b"content-length":
                length = int(v)
        H.eq(length, n, "length of the pipelined answer")
        H.check(f.read(length) == pattern(n), "body of the pipelined answer of %d bytes" % n)
    s.close()


if __name__ == "__main__":
    tap.run(setup)
