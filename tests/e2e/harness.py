"""harness.py: what every end-to-end test shares.

Each test file starts its own real processes on free loopback ports: a
redis-server with persistence off, the HTTP backend (backend.py), the worker
and the gateway, all from a config this module writes into a private temporary
folder. Every process runs in its own process group and logs to a file in that
folder; on a failed case the tail of each log is printed as TAP diagnostics.
Everything started is stopped again at exit, on an exception and on SIGTERM
(atexit plus a signal handler), and the temporary folder is removed unless
WR_KEEP_TMP=1 is set.

Nothing here sleeps its way to a result: code waits for conditions with
wait_for(predicate, timeout, what), which polls with a deadline and fails with
the description of the condition that never came true.

Only the Python standard library is used. Environment:
  WR_BUILDDIR  where the built binaries are (default /work/main)
  WR_SRCDIR    the source tree (default: two folders above this file)
  WR_KEEP_TMP  1 to keep the temporary folder (its path is printed)
"""

import atexit
import base64
import hashlib
import hmac
import http.client as httpclient
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
BUILDDIR = os.environ.get("WR_BUILDDIR") or "/work/main"
SRCDIR = os.environ.get("WR_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
GATEWAY_BIN = os.path.join(BUILDDIR, "gateway", "waitroom-gateway")
WORKER_BIN = os.path.join(BUILDDIR, "worker", "waitroom-worker")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

DEFAULT_ROOM = "booking"


def cookie_name(room=DEFAULT_ROOM):
    """The cookie carrying room's token: "<gateway.cookie_name>_<room>"."""
    return "waitroom_" + room


class TestFailure(AssertionError):
    pass


# ---------------------------------------------------------------------------
# Assertions that print both values.

def check(cond, what):
    if not cond:
        raise TestFailure(what)


def eq(got, expected, what):
    if got != expected:
        raise TestFailure("%s: expected %r, got %r" % (what, expected, got))


def wait_for(predicate, timeout, what, interval=0.02):
    """Polls predicate until it returns something truthy; returns that value.

    Fails the test with "timed out after Ns waiting for <what>" at the
    deadline. Before each poll, checks that every process the test expects to
    be running still is, so a crash fails fast with its exit status instead of
    running out the clock.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        check_alive()
        try:
            value = predicate()
            last_exc = None
        except (OSError, httpclient.HTTPException) as e:
            value = None
            last_exc = e
        if value:
            return value
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise TestFailure(msg)
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Temporary folder, processes and cleanup.

_procs = []          # every Proc ever started, for cleanup and log tails
_tmpdirs = []
_cleanup_lock = threading.Lock()
_cleaned = False


def _cleanup():
    global _cleaned
    with _cleanup_lock:
        if _cleaned:
            return
        _cleaned = True
    for p in list(_procs):
        try:
            p.kill()
        except Exception:
            pass
    for d in _tmpdirs:
        if os.environ.get("WR_KEEP_TMP") == "1":
            print("# kept temporary folder %s" % d, flush=True)
        else:
            shutil.rmtree(d, ignore_errors=True)


def _on_signal(signum, frame):
    # SystemExit unwinds try/finally blocks; atexit then stops the processes.
    raise SystemExit(128 + signum)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def make_tmpdir():
    d = tempfile.mkdtemp(prefix="wr-e2e-")
    _tmpdirs.append(d)
    return d


def _pdeathsig():
    # Child side of fork: start a new session (own process group) and ask the
    # kernel to SIGKILL the child if this test process dies without cleanup
    # (kill -9 of the test). PR_SET_PDEATHSIG = 1.
    os.setsid()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (bind to port 0)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class Proc:
    """One child process in its own process group, output to a log file.

    expect_alive is True while the test expects it to run: wait_for fails
    at once when such a process has exited.
    """

    def __init__(self, name, argv, log_path, cwd=None, env=None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.popen = None
        self.expect_alive = False
        _procs.append(self)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.log.write(("=== start: %s\n" % " ".join(self.argv)).encode())
        self.log.flush()
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            cwd=self.cwd, env=self.env, preexec_fn=_pdeathsig, close_fds=True)
        self.log.close()
        self.expect_alive = True
        return self

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        if self.running():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10.0):
        """SIGTERM, then wait; returns the exit status (negative: signal).

        Fails the test if the process does not exit within timeout (it is
        then SIGKILLed).
        """
        if self.popen is None:
            return None
        self.expect_alive = False
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("%s did not exit within %.0fs of SIGTERM" % (self.name, timeout))

    def kill(self):
        """SIGKILL the whole process group and reap it; returns the status."""
        if self.popen is None:
            return None
        self.expect_alive = False
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            return self.popen.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def restart(self):
        self.kill()
        return self.start()

    def tail(self, n=25):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError as e:
            return ["(no log: %s)" % e]
        lines = data.decode("utf-8", "replace").splitlines()
        return lines[-n:]


def check_alive():
    for p in list(_procs):
        if p.expect_alive and p.popen is not None and p.popen.poll() is not None:
            p.expect_alive = False
            raise TestFailure("%s (pid %d) exited unexpectedly with status %s"
                              % (p.name, p.popen.pid, p.popen.returncode))


def print_log_tails(n=25):
    for p in list(_procs):
        if p.popen is None:
            continue
        state = "running" if p.running() else "exited %s" % p.popen.returncode
        diag("--- last lines of %s log (%s, %s) ---" % (p.name, state, p.log_path))
        for line in p.tail(8 if p.name == "redis" else n):
            diag("  " + line)


# ---------------------------------------------------------------------------
# A tiny RESP client for reading and seeding Redis state.

class RespError(Exception):
    pass


class Resp:
    """A blocking RESP2 connection. Not thread-safe: one per thread."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def close(self):
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, (int, float)):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read_reply(self):
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read_reply() for _ in range(n)]
        raise ConnectionError("bad RESP reply %r" % line)

    def command(self, *args):
        self.sock.sendall(self.encode(*args))
        r = self.read_reply()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, commands):
        """Sends all commands in one write, returns the list of replies
        (errors are returned as RespError objects, not raised)."""
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self.read_reply() for _ in commands]


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


class RoomKeys:
    """The Redis key names for one room (all share the hash tag {room})."""

    def __init__(self, room=DEFAULT_ROOM):
        self.room = room
        self.queue = "wr:{%s}:queue" % room
        self.active = "wr:{%s}:active" % room
        self.seq = "wr:{%s}:seq" % room
        self.serving = "wr:{%s}:serving" % room
        self.revoked = "wr:{%s}:revoked" % room
        self.events = "wr:{%s}:events" % room


class Redis:
    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.port = None
        self.proc = None
        self._client = None

    def start(self, timeout=10.0):
        self.port = free_port()
        self.proc = Proc("redis", [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", self.tmpdir, "--logfile", ""],
            os.path.join(self.tmpdir, "redis.log")).start()
        wait_for(self._pings, timeout, "redis-server on port %d to answer PING" % self.port)
        return self

    def _pings(self):
        c = Resp(self.port, timeout=1.0)
        try:
            return c.command("PING") == "PONG"
        finally:
            c.close()

    def client(self):
        """A new connection (for threads); the caller closes it."""
        return Resp(self.port)

    def cmd(self, *args):
        """One command on a shared connection (main thread only)."""
        if self._client is None:
            self._client = Resp(self.port)
        try:
            return self._client.command(*args)
        except (OSError, ConnectionError):
            self._client = Resp(self.port)
            return self._client.command(*args)

    # Room state helpers.
    def zcard(self, key):
        return self.cmd("ZCARD", key)

    def zscore(self, key, member):
        v = self.cmd("ZSCORE", key, member)
        return None if v is None else float(v)

    def zmembers(self, key):
        """[(member, score)] lowest score first."""
        r = self.cmd("ZRANGE", key, 0, -1, "WITHSCORES")
        return [(_s(r[i]), float(r[i + 1])) for i in range(0, len(r), 2)]

    def get_int(self, key):
        v = self.cmd("GET", key)
        return None if v is None else int(v)

    def snapshot(self, room=DEFAULT_ROOM):
        """An atomic view of one room: dict with queue and active as
        {uid: score}, seq and serving as ints (MULTI/EXEC)."""
        k = RoomKeys(room)
        c = self.client()
        try:
            r = c.pipeline([["MULTI"], ["ZRANGE", k.queue, 0, -1, "WITHSCORES"],
                            ["ZRANGE", k.active, 0, -1, "WITHSCORES"], ["GET", k.seq],
                            ["GET", k.serving], ["EXEC"]])
        finally:
            c.close()
        q, a, seq, serving = r[-1]

        def pairs(x):
            return {_s(x[i]): float(x[i + 1]) for i in range(0, len(x), 2)}
        return {"queue": pairs(q), "active": pairs(a),
                "seq": None if seq is None else int(seq),
                "serving": None if serving is None else int(serving)}


# ---------------------------------------------------------------------------
# HTTP.

class HttpResponse(tuple):
    """(status, headers, body); headers is an http.client.HTTPMessage
    (case-insensitive get/get_all), body is bytes."""

    def __new__(cls, status, headers, body):
        return tuple.__new__(cls, (status, headers, body))

    status = property(lambda self: self[0])
    headers = property(lambda self: self[1])
    body = property(lambda self: self[2])

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise TestFailure("expected a JSON body, got status %d, Content-Type %r, body %r"
                              % (self.status, self.headers.get("Content-Type"), self.body[:300]))

    def describe(self):
        return "HTTP %d %s %r" % (self.status, self.headers.get("Content-Type"), self.body[:300])


def http(port, method, path, headers=None, body=None, timeout=10.0, host="127.0.0.1"):
    """One request on a new connection. headers is a dict or a list of
    (name, value) pairs (values may be bytes, sent as they are). Returns
    HttpResponse(status, headers, body)."""
    conn = httpclient.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        names = set()
        for k, v in items:
            conn.putheader(k, v)
            names.add(k.lower())
        if body is not None:
            if isinstance(body, str):
                body = body.encode()
            if "content-length" not in names:
                conn.putheader("Content-Length", str(len(body)))
        elif method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", "0")
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return HttpResponse(resp.status, resp.headers, data)
    finally:
        conn.close()


def parse_set_cookie(value):
    """'n=v; Path=/; HttpOnly' -> (n, v, {'path': '/', 'httponly': True})."""
    parts = [p.strip() for p in value.split(";")]
    name, _, val = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        if not p:
            continue
        k, sep, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip() if sep else True
    return name.strip(), val.strip(), attrs


def find_cookie(resp, name):
    """The parsed Set-Cookie for name in resp, or None."""
    for v in resp.headers.get_all("Set-Cookie") or []:
        n, val, attrs = parse_set_cookie(v)
        if n == name:
            return n, val, attrs
    return None


# ---------------------------------------------------------------------------
# JWTs.

def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def jwt_header(token):
    return json.loads(b64url_decode(token.split(".")[0]))


def jwt_payload(token):
    return json.loads(b64url_decode(token.split(".")[1]))


def forge_jwt(header, payload, secret, alg="sha256", signature=None):
    """header and payload are dicts (or raw str/bytes used as given).
    secret is bytes (None: empty signature). signature overrides the
    computed one when given (str)."""
    def seg(x):
        if isinstance(x, (dict, list)):
            x = json.dumps(x, separators=(",", ":"))
        return b64url(x)
    signing_input = seg(header) + "." + seg(payload)
    if signature is None:
        if secret is None:
            signature = ""
        else:
            digest = hmac.new(secret, signing_input.encode(), getattr(hashlib, alg)).digest()
            signature = b64url(digest)
    return signing_input + "." + signature


def claims(sub=None, room=DEFAULT_ROOM, typ="queue", q=1, lifetime=3600, now=None, **extra):
    """A well-formed claim set; extra overrides (value None removes a claim)."""
    now = int(time.time()) if now is None else now
    c = {"iss": "waitroom", "sub": sub or secrets.token_hex(16), "aud": room, "typ": typ,
         "iat": now, "nbf": now, "exp": now + lifetime}
    if typ == "queue":
        c["q"] = q
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


JWT_HEADER = {"alg": "HS256", "typ": "JWT", "kid": "k1"}


# ---------------------------------------------------------------------------
# Config.

def room(name=DEFAULT_ROOM, path="/book", backend_port=None, **kw):
    r = {"name": name, "path": path,
         "backend": "http://127.0.0.1:%d" % backend_port,
         "total_active_users": 5, "new_users_per_minute": 600,
         "session_duration": "5m", "queueing_status_code": 202}
    r.update(kw)
    return r


# ---------------------------------------------------------------------------
# The environment of one test file.

class Backend:
    def __init__(self, tmpdir):
        self.port = free_port()
        self.log_path = os.path.join(tmpdir, "backend-requests.jsonl")
        open(self.log_path, "w").close()
        self.proc = Proc("backend", [PYTHON, os.path.join(HERE, "backend.py"), str(self.port), self.log_path],
                         os.path.join(tmpdir, "backend.log"))

    def start(self, timeout=10.0):
        self.proc.start()
        wait_for(self._listening, timeout, "backend to listen on port %d" % self.port)
        return self

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
            return True
        except OSError:
            return False

    def requests(self):
        """Every request the backend has logged so far: dicts with path,
        method, headers ([name, value] pairs), body_len."""
        out = []
        with open(self.log_path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    out.append(json.loads(line))
        return out

    def count(self):
        return len(self.requests())


def header_values(entry, name):
    """All values of header name in a backend log entry."""
    return [v for k, v in entry["headers"] if k.lower() == name.lower()]


class Env:
    """Processes and config of one test file.

    Typical use:
        env = Env(); env.start_redis(); env.start_backend()
        env.configure(rooms=[room(backend_port=env.backend.port)])
        env.start_worker(); env.start_gateway()
    """

    def __init__(self):
        self.tmp = make_tmpdir()
        self.secret = secrets.token_hex(24).encode()   # 48 ASCII bytes
        self.secret_path = os.path.join(self.tmp, "secret.key")
        with open(self.secret_path, "wb") as f:
            f.write(self.secret + b"\n")
        self.redis = None
        self.backend = None
        self.gateway = None
        self.worker = None
        self.gw_port = free_port()
        self.conf = None
        self.conf_path = os.path.join(self.tmp, "waitroom.json")

    def start_redis(self):
        self.redis = Redis(self.tmp).start()
        return self.redis

    def start_backend(self):
        self.backend = Backend(self.tmp).start()
        return self.backend

    def make_config(self, rooms=None, tick_ms=100, poll_interval="1s", log_level="info",
                    tokens=None, gateway=None, redis_port=None):
        conf = {
            "log_level": log_level,
            "redis": {"host": "127.0.0.1", "port": redis_port or (self.redis.port if self.redis else free_port())},
            "gateway": {"listen": [{"host": "127.0.0.1", "port": self.gw_port}],
                        "poll_interval": poll_interval},
            "worker": {"tick_ms": tick_ms},
            "tokens": {"issuer": "waitroom", "keys": [{"kid": "k1", "secret_file": "secret.key"}],
                       "clock_skew": "30s", "queue_token_ttl": "24h"},
            "rooms": rooms if rooms is not None else [room(backend_port=self.backend.port)],
        }
        if tokens:
            conf["tokens"].update(tokens)
        if gateway:
            conf["gateway"].update(gateway)
        return conf

    def write_config(self, conf, name="waitroom.json"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            if isinstance(conf, (dict, list)):
                json.dump(conf, f, indent=2)
            else:
                f.write(conf)
        return path

    def configure(self, **kw):
        self.conf = self.make_config(**kw)
        self.write_config(self.conf)
        return self.conf

    def start_worker(self):
        if self.worker is None:
            self.worker = Proc("worker", [WORKER_BIN, "-c", self.conf_path],
                               os.path.join(self.tmp, "worker.log"), cwd=self.tmp)
        self.worker.start()
        return self.worker

    def start_gateway(self, timeout=10.0):
        if self.gateway is None:
            self.gateway = Proc("gateway", [GATEWAY_BIN, "-c", self.conf_path],
                                os.path.join(self.tmp, "gateway.log"), cwd=self.tmp)
        self.gateway.start()
        wait_for(self._healthy, timeout, "gateway GET /healthz on port %d to answer 200" % self.gw_port)
        return self.gateway

    def _healthy(self):
        return http(self.gw_port, "GET", "/healthz", timeout=1.0).status == 200

    # HTTP against the gateway.
    def get(self, path, headers=None, **kw):
        return http(self.gw_port, "GET", path, headers=headers, **kw)

    def post(self, path, headers=None, body=None, **kw):
        return http(self.gw_port, "POST", path, headers=headers, body=body, **kw)

    def join(self, path="/book", room=DEFAULT_ROOM, headers=None):
        """Joins as a JSON client without a token; checks the answer is the
        queued answer and returns a User."""
        h = {"Accept": "application/json"}
        h.update(headers or {})
        r = self.get(path, h)
        check(r.status == 202, "join %s: expected 202, got %s" % (path, r.describe()))
        body = r.json()
        check(body.get("status") == "WAITING" and isinstance(body.get("queueToken"), str),
              "join %s: expected a WAITING answer with queueToken, got %r" % (path, body))
        return User(self, body["queueToken"], room, body.get("position"), r)

    def status(self, token, via="header", room=DEFAULT_ROOM):
        """GET /queue/status with the token in ?token= ("query"), the
        Queue-Token header ("header") or the room's cookie ("cookie")."""
        if via == "query":
            tok = token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")
            return self.get("/queue/status?token=" + urllib.parse.quote(tok, safe=""))
        if via == "header":
            return self.get("/queue/status", [("Queue-Token", token)])
        if via == "cookie":
            return self.get("/queue/status", [("Cookie", _cookie(room, token))])
        raise ValueError(via)

    def leave(self, token, via="header", room=DEFAULT_ROOM):
        if via == "header":
            return self.post("/queue/leave", [("Queue-Token", token)])
        return self.post("/queue/leave", [("Cookie", _cookie(room, token))])


# Module-level entry points (the Env methods above are thin users of these).

def start_redis(tmpdir=None):
    """A redis-server on a free port, answering PING. Returns a Redis."""
    return Redis(tmpdir or make_tmpdir()).start()


def start_backend(tmpdir=None):
    """backend.py on a free port. Returns a Backend (port, requests())."""
    return Backend(tmpdir or make_tmpdir()).start()


def start_worker(conf_path, name="worker"):
    """The worker with -c conf_path; its log is next to the config."""
    d = os.path.dirname(conf_path)
    return Proc(name, [WORKER_BIN, "-c", conf_path], os.path.join(d, name + ".log"), cwd=d).start()


def start_gateway(conf_path, port, name="gateway", timeout=10.0):
    """The gateway with -c conf_path, once GET /healthz on port answers 200."""
    d = os.path.dirname(conf_path)
    p = Proc(name, [GATEWAY_BIN, "-c", conf_path], os.path.join(d, name + ".log"), cwd=d).start()
    wait_for(lambda: http(port, "GET", "/healthz", timeout=1.0).status == 200, timeout,
             "gateway GET /healthz on port %d to answer 200" % port)
    return p


def run_tool(argv, timeout=10.0):
    """Runs a command to completion: (exit status, stdout, stderr) as str."""
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _cookie(room, token):
    name = cookie_name(room).encode()
    tok = token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")
    return name + b"=" + tok


class User:
    """A client holding a queue token (and maybe an admission token)."""

    def __init__(self, env, token, room, position, join_response=None):
        self.env = env
        self.token = token
        self.room = room
        self.join_position = position
        self.join_response = join_response
        self.claims = jwt_payload(token)
        self.uid = self.claims["sub"]
        self.q = self.claims.get("q")
        self.admission = None
        self.positions = []  # every WAITING position seen, in order

    def status(self, via="header"):
        r = self.env.status(self.token, via=via, room=self.room)
        check(r.status == 200, "status of %s: expected 200, got %s" % (self.uid, r.describe()))
        body = r.json()
        if body.get("status") == "WAITING":
            pos = body.get("position")
            if self.positions:
                check(pos <= self.positions[-1], "position of %s went up: %r then %r"
                      % (self.uid, self.positions, pos))
            self.positions.append(pos)
        elif body.get("status") == "ACTIVE":
            self.admission = body.get("admissionToken")
        return body

    def is_active(self):
        return self.status().get("status") == "ACTIVE"

    def wait_active(self, timeout=10.0):
        wait_for(self.is_active, timeout, "user %s (q=%s) to become ACTIVE" % (self.uid, self.q),
                 interval=0.05)

    def request(self, path=None, token=None, via="header", headers=None, method="GET", body=None):
        path = path or self.env.conf_room_path(self.room)
        tok = token or self.token
        h = [("Accept", "application/json")]
        if via == "header":
            h.append(("Queue-Token", tok))
        else:
            h.append(("Cookie", _cookie(self.room, tok)))
        h.extend(headers or [])
        return http(self.env.gw_port, method, path, headers=h, body=body)


def _conf_room_path(self, name):
    for r in self.conf["rooms"]:
        if r["name"] == name:
            return r["path"]
    raise KeyError(name)


Env.conf_room_path = _conf_room_path


# ---------------------------------------------------------------------------
# TAP.

def diag(msg):
    for line in str(msg).splitlines() or [""]:
        print("# " + line, flush=True)


class Tap:
    """Registers cases with @tap.case("name") and runs them in order.

    run(setup) prints the plan, runs setup (if it fails every case is
    reported not ok), then each case; an exception in a case is a "not ok"
    with the traceback and the tail of every process log as diagnostics.
    Exits 1 if any case failed. A whole-file deadline (seconds) guards
    against hangs: SIGALRM raises in the running case.
    """

    def __init__(self, deadline=110):
        self.cases = []
        self.deadline = deadline
        self.failed = 0

    def case(self, name):
        def deco(fn):
            self.cases.append((name, fn))
            return fn
        return deco

    def skip_all(self, reason):
        print("1..0 # SKIP %s" % reason, flush=True)
        sys.exit(0)

    def require_binaries(self, *paths):
        # A missing binary is an error, never a skip: a skipped end-to-end
        # test would let a broken build look green.
        for p in paths or (GATEWAY_BIN, WORKER_BIN):
            if not os.access(p, os.X_OK):
                print("Bail out! %s is not built" % p, flush=True)
                sys.exit(1)

    def _alarm(self, signum, frame):
        raise TestFailure("the whole test file ran past its %ds deadline" % self.deadline)

    def run(self, setup=None, requires=(GATEWAY_BIN, WORKER_BIN)):
        """requires: executables without which the whole file is skipped
        (checked before the plan is printed)."""
        self.require_binaries(*requires)
        print("1..%d" % len(self.cases), flush=True)
        signal.signal(signal.SIGALRM, self._alarm)
        signal.alarm(self.deadline)
        t0 = time.monotonic()
        setup_error = None
        try:
            if setup is not None:
                try:
                    setup()
                except Exception:
                    setup_error = traceback.format_exc()
                    diag("setup failed:")
                    diag(setup_error)
                    print_log_tails()
            for i, (name, fn) in enumerate(self.cases, 1):
                if setup_error is not None:
                    print("not ok %d - %s # setup failed" % (i, name), flush=True)
                    self.failed += 1
                    continue
                started = time.monotonic()
                try:
                    fn()
                except Exception:
                    self.failed += 1
                    print("not ok %d - %s" % (i, name), flush=True)
                    diag(traceback.format_exc())
                    print_log_tails()
                else:
                    print("ok %d - %s" % (i, name), flush=True)
                took = time.monotonic() - started
                if took > 2:
                    diag("(case took %.1fs)" % took)
        finally:
            signal.alarm(0)
            diag("total %.1fs" % (time.monotonic() - t0))
            _cleanup()
        sys.exit(1 if self.failed else 0)
