"""backend.py: the real HTTP backend behind the gateway in end-to-end tests.

Usage: backend.py PORT REQUEST_LOG

Listens on 127.0.0.1:PORT and answers every method and path with 200 and a
JSON body {"path", "method", "user", "room", "body_len", "body_sha256"},
where user and room are the Waitroom-User and Waitroom-Room request headers
(null when absent). Each request appends one JSON line to REQUEST_LOG (path,
method, every header as a [name, value] pair so duplicates show, body length,
the client's port) and flushes it before the answer is sent, so a test that
got the answer can read the line. Request bodies are read whole, with
Content-Length or chunked transfer coding.

A query string changes the answer's shape, for the proxy's tests:
  size=N           a body of N bytes (a repeating pattern) instead of JSON
  shape=chunked    the body in chunked transfer coding (chunks of 1000 bytes)
  shape=close      no Content-Length: the body ends when the connection closes
  shape=then-close an ordinary answer, then the connection is closed without
                   a word (as a backend's idle timeout does)
  shape=204        204 No Content
  shape=bad        a line that is not HTTP, then close
  status=N         that status instead of 200
"""

import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_log_lock = threading.Lock()
_log_file = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wr-test-backend/1"

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            data = b""
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers end with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self):
        body = self._read_body()
        entry = {"path": self.path, "method": self.command,
                 "headers": [[k, v] for k, v in self.headers.items()],
                 "body_len": len(body), "peer_port": self.client_address[1]}
        line = json.dumps(entry) + "\n"
        with _log_lock:
            _log_file.write(line)
            _log_file.flush()
        q = parse_qs(urlsplit(self.path).query)
        shape = q.get("shape", [""])[0]
        status = int(q.get("status", ["200"])[0])
        if shape == "bad":
            self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
            self.close_connection = True
            return
        if shape == "204":
            self.send_response(204)
            self.end_headers()
            return
        if "size" in q:
            n = int(q["size"][0])
            out = (b"0123456789abcdefghijklmnopqrstuvwxyz" * (n // 36 + 1))[:n]
            ctype = "application/octet-stream"
        else:
            out = json.dumps({"path": self.path, "method": self.command,
                              "user": self.headers.get("Waitroom-User"),
                              "room": self.headers.get("Waitroom-Room"),
                              "body_len": len(body),
                              "body_sha256": hashlib.sha256(body).hexdigest()}).encode()
            ctype = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("X-Backend-Extra", "kept")
        if shape == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                for i in range(0, len(out), 1000):
                    piece = out[i:i + 1000]
                    self.wfile.write(b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n")
                self.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
            return
        if shape == "close":
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)
        if shape == "then-close":
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def log_message(self, fmt, *args):
        sys.stderr.write("backend: %s\n" % (fmt % args))
        sys.stderr.flush()


def main():
    global _log_file
    if len(sys.argv) != 3:
        sys.stderr.write("usage: backend.py PORT REQUEST_LOG\n")
        return 2
    port = int(sys.argv[1])
    _log_file = open(sys.argv[2], "a", encoding="utf-8")
    # The default listen backlog of 5 drops connections under a burst.
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    sys.stderr.write("backend: listening on 127.0.0.1:%d\n" % port)
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
