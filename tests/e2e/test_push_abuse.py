"""test_push_abuse.py: hostile input on the push endpoints (docs/push.md).

WebSocket frames are written by hand over plain sockets, since a WebSocket
library will not send malformed or abusive frames. What the spec promises:
a text frame from a client is ignored, a binary frame is refused with close
code 1003, an oversized frame with 1009, a flood of frames with 1008, an
unknown path at the handshake with 404; the server pings every
heartbeat_interval (1 s here) and closes a connection whose pong does not
come back. For a stalled or trickling handshake
there is no setting, so the test asks that the server close it within 30 s
and keep serving everyone else meanwhile. At the end the gateway must still
be alive and serving.
"""

import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=75)
env = H.Env()
S = {}
STALL_LIMIT = 30.0


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[H.room(backend_port=env.backend.port, total_active_users=1)],
                  gateway=env.push_settings(processes=1, heartbeat_interval="1s"))
    env.start_gateway()
    H.wait_for(lambda: H.accepts(env.push_port), 5, "the push listener to accept")
    S["users"] = [env.join() for _ in range(3)]


class Stall:
    """A client that sends request in pieces: all of `first` at once, then
    the rest one byte per `every` seconds (None: never). A thread watches
    the socket and records when the server closes it (closed_after, in
    seconds from the start) and what it sent (answer)."""

    def __init__(self, port, request, first, every, name):
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.request, self.first, self.every = request, first, every
        self.t0 = time.monotonic()
        self.closed_after = None
        self.answer = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        sent = self.first
        try:
            self.sock.sendall(self.request[:sent])
            next_byte = time.monotonic() + (self.every or 0)
            while not self.stop.is_set():
                r, _, _ = select.select([self.sock], [], [], 0.05)
                if r:
                    data = self.sock.recv(65536)
                    if not data:
                        break
                    self.answer += data
                    continue
                if self.every is not None and sent < len(self.request) and time.monotonic() >= next_byte:
                    self.sock.sendall(self.request[sent:sent + 1])
                    sent += 1
                    next_byte += self.every
        except OSError:
            pass
        if not self.stop.is_set():
            self.closed_after = time.monotonic() - self.t0
        self.sock.close()


def ws_request(path="/queue/ws"):
    return H.RawWs(env.push_port, path=path, token=S["users"][0].token).request_bytes()


def sse_request():
    return ("GET /queue/events?token=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            % S["users"][0].token).encode()


def open_ws(i=1):
    c = H.RawWs(env.push_port, token=S["users"][i].token)
    H.eq(c.connect(), 101, "handshake status")
    f = c.read_frame(3)
    H.check(f is not None and f[0] == 1, "first frame %r is not a text frame" % (f,))
    H.eq(H.json.loads(f[1]).get("type"), "QUEUE_UPDATE", "first message")
    return c


def serving_others():
    """A normal WebSocket client gets its update and /healthz answers."""
    c = H.WsClient(env.push_port, token=S["users"][2].token, name="ws-normal")
    m = c.wait_open().wait_type("QUEUE_UPDATE", 3)
    H.eq(m.get("position"), S["users"][2].join_position, "normal client's position")
    c.close()
    H.eq(H.http(env.gw_port, "GET", "/healthz", timeout=3).status, 200, "/healthz")


@tap.case("half-open and one-byte-per-100-ms handshakes, on the push and the HTTP port, begin")
def _():
    wsr, sser = ws_request(), sse_request()
    S["stalls"] = [
        Stall(env.push_port, wsr, 7, None, "ws half-open"),
        Stall(env.push_port, wsr, 0, 0.1, "ws one byte per 100 ms"),
        Stall(env.gw_port, sser, 7, None, "sse half-open"),
        Stall(env.gw_port, sser, 0, 0.1, "sse one byte per 100 ms"),
    ]
    serving_others()


@tap.case("a text frame from the client is ignored: the connection stays open and answers a ping")
def _():
    c = open_ws()
    c.send(H.ws_frame(1, '{"type":"hello"}'))
    c.send(H.ws_frame(9, b"are-you-there"))
    deadline = time.monotonic() + 3
    while True:
        f = c.read_frame(max(0.1, deadline - time.monotonic()))
        H.check(f is not None, "the server dropped the connection after a text frame")
        H.check(f[0] != 8, "the server closed after a text frame: %r" % (f,))
        if f[0] == 10:
            H.eq(f[1], b"are-you-there", "pong payload")
            break
    c.close()


@tap.case("a binary frame: close 1003")
def _():
    c = open_ws()
    c.send(H.ws_frame(2, b"\x00\x01\x02binary"))
    kind, code, reason = c.wait_close(5)
    H.eq((kind, code), ("close", 1003), "answer to a binary frame (reason %r)" % reason)
    c.close()


def send_in_thread(c, data):
    def run():
        try:
            c.sock.settimeout(10)
            c.sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@tap.case("a frame announcing a 1 MiB payload: close 1009 (or the connection dropped)")
def _():
    c = open_ws()
    frame = H.ws_frame(1, b"a" * 65536, declared_len=1 << 20)
    t = send_in_thread(c, frame)
    kind, code, reason = c.wait_close(10)
    H.diag("oversized frame: %s %r %r" % (kind, code, reason))
    H.check(kind == "dropped" or code == 1009, "answer to an oversized frame: %s code %r (%r)" % (kind, code, reason))
    c.close()
    t.join(10)


@tap.case("a flood of 10,000 small text frames: close 1008 (or the connection dropped)")
def _():
    c = open_ws()
    flood = b"".join(H.ws_frame(1, b"x") for _ in range(10000))
    t = send_in_thread(c, flood)
    kind, code, reason = c.wait_close(10)
    H.diag("flood: %s %r %r" % (kind, code, reason))
    H.check(kind == "dropped" or code == 1008, "answer to a flood: %s code %r (%r)" % (kind, code, reason))
    c.close()
    t.join(10)


@tap.case("handshakes: unknown path 404, missing token 400, invalid token 401")
def _():
    tok = S["users"][0].token
    for path, token, expected, what in (("/queue/nope", tok, 404, "unknown path"),
                                        ("/", tok, 404, "path /"),
                                        ("/queue/ws/x", tok, 404, "a path below ws_path"),
                                        ("/queue/ws", None, 400, "no token"),
                                        ("/queue/ws", "x.y.z", 401, "garbage token")):
        c = H.RawWs(env.push_port, path=path, token=token)
        H.eq(c.connect(), expected, "handshake with %s" % what)
        c.close()


@tap.case("SSE requests for paths that do not exist: 404")
def _():
    tok = S["users"][0].token
    acc = ("Accept", "text/event-stream")
    for path in ("/queue/eventsx", "/queue/events/x", "/nothing/here"):
        for h2 in (False, True):
            st = H.curl_status("http://127.0.0.1:%d%s?token=%s" % (env.gw_port, path, tok), [acc], http2=h2)
            H.eq(st, 404, "%s over %s" % (path, "HTTP/2" if h2 else "HTTP/1.1"))


@tap.case("a client that never answers the server's pings is closed; one that answers stays open")
def _():
    mute = open_ws()
    polite = H.WsClient(env.push_port, token=S["users"][2].token, name="ws-polite").wait_open()
    t0 = time.monotonic()
    pings = 0
    while True:
        H.check(time.monotonic() - t0 < 10, "a client that answered none of %d pings is still open after 10 s" % pings)
        try:
            f = mute.read_frame(1.0)
        except socket.timeout:
            continue
        if f is None:
            end = "dropped"
            break
        if f[0] == 9:
            pings += 1
        elif f[0] == 8:
            end = "close %r" % (int.from_bytes(f[1][:2], "big") if len(f[1]) >= 2 else None)
            break
    H.diag("mute client: %d pings, then %s after %.1fs" % (pings, end, time.monotonic() - t0))
    H.check(pings >= 1, "the server sent no ping in %.1fs with heartbeat_interval 1 s" % (time.monotonic() - t0))
    mute.close()
    H.check(not polite.done.is_set(), "the client that answers pings was closed too (code %r)" % polite.close_code)
    polite.close()


@tap.case("the stalled handshakes are closed within 30 s; everyone else is served meanwhile")
def _():
    stalls = S["stalls"]

    def all_closed():
        serving_others()
        return all(s.closed_after is not None for s in stalls)

    left = STALL_LIMIT - (time.monotonic() - min(s.t0 for s in stalls))
    try:
        H.wait_for(all_closed, max(1.0, left), "the server to close every stalled handshake", interval=1.0)
    finally:
        for s in stalls:
            H.diag("%s: %s; answer %r" % (s.name, "closed after %.1fs" % s.closed_after
                                          if s.closed_after is not None else "still open", s.answer[:80]))
            s.stop.set()


@tap.case("after all this the gateway is alive: a normal WebSocket client and /healthz work")
def _():
    H.check(env.gateway.running(), "the gateway exited")
    serving_others()
    c = H.SseClient(env.gw_port, token=S["users"][1].token, name="sse-normal")
    H.eq(c.wait_type("QUEUE_UPDATE", 3)["data"].get("position"), S["users"][1].join_position, "SSE position")
    c.kill()


if __name__ == "__main__":
    tap.run(setup)
