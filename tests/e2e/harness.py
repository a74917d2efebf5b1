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
        self.deadline = "wr:{%s}:deadline" % room


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


# ---------------------------------------------------------------------------
# Live position push (docs/push.md): clients for the WebSocket and SSE
# streams, hand-written WebSocket frames for abuse, a subscriber to a room's
# events channel, and the processes of a gateway master.
#
# The WebSocket client is Debian's python3-websockets (its asyncio API: the
# 10.x release in Debian 12 has no synchronous client), each connection in a
# thread of its own; the SSE client is curl -N in a subprocess, read line by
# line in a thread. Both record every message with the time it arrived, so a
# test can wait for a condition with wait_for and then inspect the history.
# Every client and curl process still open at exit is closed or killed.

_push_clients = []   # WsClient and SseClient objects, closed at exit


def _close_push_clients():
    for c in list(_push_clients):
        try:
            c.kill()
        except Exception:
            pass


atexit.register(_close_push_clients)
CURL = shutil.which("curl") or "/usr/bin/curl"


def now_ms():
    return int(time.time() * 1000)


def _push_settings(self, processes=1, **extra):
    """Gateway settings that turn push on: a WebSocket listener on a free
    port (self.push_port, chosen on first use) and processes (1 unless
    given: the default 0 would fork one process per core). extra adds or
    overrides gateway settings (heartbeat_interval, ws_path, ...)."""
    if getattr(self, "push_port", None) is None:
        self.push_port = free_port()
    g = {"push_listen": [{"host": "127.0.0.1", "port": self.push_port}], "processes": processes}
    g.update(extra)
    return g


Env.push_settings = _push_settings


def _token_headers(token, via, room):
    """(query string, headers) carrying token: via is "query", "header",
    "cookie" or None (no token at all)."""
    if token is None or via is None:
        return "", []
    tok = token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")
    if via == "query":
        return "?token=" + urllib.parse.quote(tok, safe=""), []
    if via == "header":
        return "", [("Queue-Token", tok.decode("latin-1"))]
    if via == "cookie":
        return "", [("Cookie", _cookie(room, tok).decode("latin-1"))]
    raise ValueError(via)


def plausible_ts(ts, since_ms, what):
    """ts (a message's ms timestamp) is an integer between since_ms (less a
    second of clock difference) and now (plus a second)."""
    check(isinstance(ts, int) and not isinstance(ts, bool),
          "%s: ts %r is not an integer number of milliseconds" % (what, ts))
    check(since_ms - 1000 <= ts <= now_ms() + 1000,
          "%s: ts %r is not a plausible ms timestamp (test step began at %d, now %d)"
          % (what, ts, since_ms, now_ms()))


class WsClient:
    """One WebSocket connection to the gateway's push listener.

    Starts connecting at once, in a thread of its own with its own asyncio
    loop. Attributes, filled in as things happen:
      status      the HTTP status of a refused handshake (None if accepted)
      error       the exception that ended the client abnormally, if any
      messages    [(monotonic time, message)]: JSON objects (dicts), or
                  the raw str/bytes of a frame that is not JSON
      close_code, close_reason   once the connection is closed
      local_port  the client's port (to find the server side in /proc)
    """

    def __init__(self, port, token=None, via="query", room=DEFAULT_ROOM, path="/queue/ws",
                 headers=None, name="ws", open_timeout=5.0):
        import asyncio
        self.port = port
        self.token = token
        self.name = name
        q, h = _token_headers(token, via, room)
        self.uri = "ws://127.0.0.1:%d%s%s" % (port, path, q)
        self.headers = h + list(headers or [])
        self.open_timeout = open_timeout
        self.status = None
        self.error = None
        self.messages = []
        self.close_code = None
        self.close_reason = None
        self.local_port = None
        self.opened = threading.Event()
        self.done = threading.Event()
        self._ws = None
        self._loop = asyncio.new_event_loop()
        self._cursor = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        _push_clients.append(self)
        self._thread.start()

    def _run(self):
        import asyncio
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
            # The library's own closing tasks: let them finish quietly.
            pending = asyncio.all_tasks(self._loop)
            for t in pending:
                t.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            self.done.set()
            self._loop.close()

    async def _main(self):
        import websockets
        import websockets.exceptions as wse
        try:
            # ping_interval None: the client sends nothing of its own (the
            # library still answers the server's pings).
            ws = await websockets.connect(self.uri, extra_headers=self.headers, open_timeout=self.open_timeout,
                                          ping_interval=None, close_timeout=2, compression=None,
                                          max_size=1 << 20)
        except wse.InvalidStatusCode as e:
            self.status = e.status_code
            return
        except Exception as e:  # refused, reset, timed out
            self.error = e
            return
        self._ws = ws
        sock = ws.transport.get_extra_info("sockname")
        self.local_port = sock[1] if sock else None
        self.opened.set()
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                except (ValueError, TypeError):
                    msg = raw
                self.messages.append((time.monotonic(), msg))
        except wse.ConnectionClosed:
            pass
        except Exception as e:
            self.error = e
        self.close_code = ws.close_code
        self.close_reason = ws.close_reason

    # Waiting.
    def wait_open(self, timeout=5.0):
        """Waits for the handshake to succeed; fails if it was refused."""
        wait_for(lambda: self.opened.is_set() or self.done.is_set(), timeout,
                 "%s to finish its WebSocket handshake" % self.name)
        check(self.opened.is_set(), "%s: WebSocket handshake to %s refused: status %r, error %r"
              % (self.name, self.uri.split("?")[0], self.status, self.error))
        return self

    def wait_refused(self, timeout=5.0):
        """Waits for the handshake to be refused. Returns the HTTP status, or
        None when the library could not read the refusal (python3-websockets
        10 rejects any response that is not HTTP/1.1, and libwebsockets
        answers a refused handshake with HTTP/1.0): ws_handshake_status
        reads the status whatever the version."""
        wait_for(self.done.is_set, timeout, "%s's handshake to be refused" % self.name)
        check(not self.opened.is_set(), "%s: handshake accepted (messages %r), expected a refusal"
              % (self.name, self.payloads()))
        return self.status

    def payloads(self):
        return [m for _, m in self.messages]

    def of_type(self, typ):
        return [m for _, m in self.messages if isinstance(m, dict) and m.get("type") == typ]

    def wait_message(self, pred, timeout, what):
        """The first message (in arrival order, from the start) matching
        pred; waits for it."""
        def find():
            for _, m in list(self.messages):
                if pred(m):
                    return m
            if self.done.is_set() and not any(pred(m) for _, m in list(self.messages)):
                raise TestFailure("%s closed (code %r, error %r) without %s; messages %r"
                                  % (self.name, self.close_code, self.error, what, self.payloads()))
            return None
        return wait_for(find, timeout, "%s to receive %s (so far %r)" % (self.name, what, self.payloads()))

    def wait_type(self, typ, timeout=5.0):
        return self.wait_message(lambda m: isinstance(m, dict) and m.get("type") == typ, timeout,
                                 "a %s message" % typ)

    def wait_closed(self, timeout=5.0):
        wait_for(self.done.is_set, timeout, "%s to be closed (messages %r)" % (self.name, self.payloads()))
        return self.close_code

    # Ending.
    def close(self, code=1000, timeout=5.0):
        """A clean close handshake from the client side."""
        if self._ws is not None and not self.done.is_set():
            import asyncio
            try:
                asyncio.run_coroutine_threadsafe(self._ws.close(code), self._loop)
            except RuntimeError:  # the loop has just ended
                pass
        # The receiving loop ends once the close handshake is over.
        self.done.wait(timeout)

    def abort(self):
        """Drops the TCP connection without a close frame."""
        if self._ws is not None and not self.done.is_set():
            try:
                self._loop.call_soon_threadsafe(self._ws.transport.abort)
            except RuntimeError:
                pass
        self.done.wait(5)

    kill = abort


class SseClient:
    """One Server-Sent Events stream, read by curl -N in a subprocess.

    curl writes the response headers (-D -) then the body; a thread parses
    them. Attributes:
      status    HTTP status of the response (None until the headers came)
      proto     "HTTP/1.1" or "HTTP/2"
      headers   {lower-case name: value}
      lines     [(monotonic time, line)] every body line, as sent
      events    [dict(event=, data=, id=, t=)]: data parsed as JSON when it is
      comments  [(monotonic time, text)] comment lines (": hb")
      retry     the value of the first retry: line
      exit_code curl's exit status once it ended
    """

    def __init__(self, port, token=None, via="query", room=DEFAULT_ROOM, path="/queue/events",
                 headers=None, http2=False, last_event_id=None, name="sse", accept=True):
        q, h = _token_headers(token, via, room)
        self.name = name
        self.url = "http://127.0.0.1:%d%s%s" % (port, path, q)
        argv = [CURL, "-N", "-s", "-D", "-", "--max-time", "120"]
        if http2:
            argv.append("--http2-prior-knowledge")
        if accept:
            argv += ["-H", "Accept: text/event-stream"]
        if last_event_id is not None:
            argv += ["-H", "Last-Event-ID: %s" % last_event_id]
        for k, v in h + list(headers or []):
            argv += ["-H", "%s: %s" % (k, v)]
        argv.append(self.url)
        self.status = None
        self.proto = None
        self.headers = {}
        self.lines = []
        self.events = []
        self.comments = []
        self.retry = None
        self.exit_code = None
        self.done = threading.Event()
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, preexec_fn=_pdeathsig, close_fds=True)
        _push_clients.append(self)
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _read(self):
        f = self.popen.stdout
        in_headers = True
        cur = {}
        try:
            for raw in iter(f.readline, b""):
                t = time.monotonic()
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if in_headers:
                    if line.startswith("HTTP/"):
                        parts = line.split()
                        self.proto = parts[0]
                        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
                        self.headers = {}
                    elif line == "":
                        if self.status not in (None, 100):
                            in_headers = False
                    else:
                        k, _, v = line.partition(":")
                        self.headers[k.strip().lower()] = v.strip()
                    continue
                self.lines.append((t, line))
                if line == "":
                    if cur:
                        cur["t"] = t
                        if "data" in cur:
                            try:
                                cur["data"] = json.loads(cur["data"])
                            except ValueError:
                                pass
                        self.events.append(cur)
                    cur = {}
                elif line.startswith(":"):
                    self.comments.append((t, line[1:].strip()))
                else:
                    k, _, v = line.partition(":")
                    v = v[1:] if v.startswith(" ") else v
                    if k == "retry":
                        if self.retry is None:
                            self.retry = v
                    elif k == "data":
                        cur["data"] = cur["data"] + "\n" + v if "data" in cur else v
                    elif k in ("event", "id"):
                        cur[k] = v
                    else:
                        cur.setdefault("other", []).append(line)
        finally:
            self.exit_code = self.popen.wait()
            self.done.set()

    def body_lines(self):
        return [l for _, l in self.lines]

    def updates(self):
        return [e for e in self.events if e.get("event") == "QUEUE_UPDATE"]

    def wait_status(self, timeout=5.0):
        wait_for(lambda: self.status is not None or self.done.is_set(), timeout,
                 "%s to receive response headers" % self.name)
        check(self.status is not None, "%s: curl exited %r without a response" % (self.name, self.exit_code))
        return self.status

    def wait_event(self, pred, timeout, what):
        def find():
            for e in list(self.events):
                if pred(e):
                    return e
            if self.done.is_set():
                raise TestFailure("%s ended (curl exit %r) without %s; lines %r"
                                  % (self.name, self.exit_code, what, self.body_lines()[-20:]))
            return None
        return wait_for(find, timeout, "%s to receive %s (lines so far %r)"
                        % (self.name, what, self.body_lines()[-20:]))

    def wait_type(self, typ, timeout=5.0):
        return self.wait_event(lambda e: e.get("event") == typ, timeout, "a %s event" % typ)

    def wait_done(self, timeout=5.0):
        wait_for(self.done.is_set, timeout, "%s's stream to end (lines %r)" % (self.name, self.body_lines()[-10:]))
        return self.exit_code

    def kill(self):
        """Ends curl (the connection closes without more ado)."""
        if self.popen.poll() is None:
            try:
                self.popen.kill()
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.done.wait(5)

    close = kill


def curl_status(url, headers=(), http2=False, timeout=10):
    """The HTTP status curl gets for url (body discarded); for refusals."""
    argv = [CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout)]
    if http2:
        argv.append("--http2-prior-knowledge")
    for k, v in headers:
        argv += ["-H", "%s: %s" % (k, v)]
    argv.append(url)
    code, out, _ = run_tool(argv, timeout=timeout + 5)
    return int(out) if out.isdigit() else None


# Hand-written WebSocket frames (RFC 6455), for input no library will send.

def ws_frame(opcode, payload=b"", fin=True, mask=True, declared_len=None):
    """One frame: opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong),
    masked with a random key unless mask is False. declared_len puts another
    length in the header than the payload's (to claim a huge frame)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if declared_len is None else declared_len
    head = bytearray([(0x80 if fin else 0) | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head.append(m | n)
    elif n < 65536:
        head.append(m | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(m | 127)
        head += n.to_bytes(8, "big")
    if mask:
        key = secrets.token_bytes(4)
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


class RawWs:
    """A WebSocket connection by hand over a plain socket.

    connect() sends the upgrade request and reads the response head:
    status is the response's status code, headers its headers (lower-case
    names). After a 101, read_frame() parses the server's frames.
    """

    def __init__(self, port, path="/queue/ws", token=None, via="query", room=DEFAULT_ROOM,
                 headers=None, timeout=5.0):
        self.port = port
        q, h = _token_headers(token, via, room)
        self.target = path + q
        self.extra = h + list(headers or [])
        self.timeout = timeout
        self.sock = None
        self.buf = b""
        self.status = None
        self.headers = {}

    def request_bytes(self):
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines = ["GET %s HTTP/1.1" % self.target, "Host: 127.0.0.1:%d" % self.port,
                 "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
                 "Sec-WebSocket-Version: 13"]
        lines += ["%s: %s" % (k, v) for k, v in self.extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def open_socket(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.sock

    def connect(self):
        self.open_socket()
        self.sock.sendall(self.request_bytes())
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise TestFailure("connection closed before the handshake answer (got %r)" % self.buf)
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for l in lines[1:]:
            k, _, v = l.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        return self.status

    def send(self, data):
        self.sock.sendall(data)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out reading a frame")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                return False
            self.buf += data
        return True

    def read_frame(self, timeout=5.0):
        """(opcode, payload) of the next server frame; None once the server
        closed or reset the connection. Raises socket.timeout if nothing
        complete arrives within timeout."""
        deadline = time.monotonic() + timeout
        try:
            if not self._need(2, deadline):
                return None
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            off = 2
            if n == 126:
                if not self._need(4, deadline):
                    return None
                n = int.from_bytes(self.buf[2:4], "big")
                off = 4
            elif n == 127:
                if not self._need(10, deadline):
                    return None
                n = int.from_bytes(self.buf[2:10], "big")
                off = 10
            if b1 & 0x80:
                off += 4  # servers do not mask; skip a key anyway
            if not self._need(off + n, deadline):
                return None
            payload = self.buf[off:off + n]
            self.buf = self.buf[off + n:]
            return b0 & 0x0F, payload
        except (ConnectionResetError, BrokenPipeError):
            return None

    def wait_close(self, timeout=10.0):
        """Reads frames until a close frame or the end of the connection.
        Returns ("close", code or None, reason) or ("dropped", None, "")."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure("the server neither closed nor dropped the connection within %.0fs" % timeout)
            try:
                f = self.read_frame(left)
            except socket.timeout:
                continue
            if f is None:
                return ("dropped", None, "")
            op, payload = f
            if op == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                return ("close", code, payload[2:].decode("utf-8", "replace"))

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass


def ws_handshake_status(port, path="/queue/ws", token=None, via="query", room=DEFAULT_ROOM, headers=None):
    """(status, headers, body start) of a hand-written WebSocket handshake;
    for refusals, whose status line any HTTP version may carry."""
    c = RawWs(port, path=path, token=token, via=via, room=room, headers=headers)
    try:
        st = c.connect()
        return st, c.headers, c.buf[:300]
    finally:
        c.close()


# The room's events channel, as the gateways hear it.

class EventsSubscriber:
    """SUBSCRIBEs to channels in a thread; messages is [(monotonic time,
    channel, parsed JSON message)]."""

    def __init__(self, redis_port, *channels):
        self.messages = []
        self.conn = Resp(redis_port)
        for ch in channels:
            self.conn.sock.sendall(Resp.encode("SUBSCRIBE", ch))
            r = self.conn.read_reply()
            check(isinstance(r, list) and _s(r[0]) == "subscribe", "SUBSCRIBE %s answered %r" % (ch, r))
        self.conn.sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, name="subscriber", daemon=True)
        self._thread.start()

    def _read(self):
        try:
            while True:
                r = self.conn.read_reply()
                if isinstance(r, list) and len(r) == 3 and _s(r[0]) == "message":
                    try:
                        msg = json.loads(r[2])
                    except ValueError:
                        msg = _s(r[2])
                    self.messages.append((time.monotonic(), _s(r[1]), msg))
        except (OSError, ConnectionError, ValueError):
            return

    def ticks(self, channel=None):
        """The messages (dicts) of channel, in order."""
        return [m for _, ch, m in list(self.messages) if channel is None or ch == channel]

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


# Processes of a gateway master (gateway.processes >= 2).

def proc_children(pid):
    """Pids of the live (not zombie) children of pid, from /proc."""
    kids = set()
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids.update(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    if not kids and os.path.isdir("/proc/%d" % pid):
        # Kernels without the children file: scan every process's ppid.
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = proc_stat(int(d))
                if st and st[1] == pid:
                    kids.add(int(d))
    return sorted(k for k in kids if pid_alive(k))


def proc_stat(pid):
    """(state letter, ppid) of pid, or None if there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def pid_alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def socket_owners(local_port, remote_port, pids):
    """Which of pids hold a TCP socket whose local port is local_port and
    remote port remote_port: the server side of a client's connection, or
    with remote_port 0 a listening socket. Found by inode in
    /proc/net/tcp{,6} and the pids' fd links; returns a set of pids."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    lp = int(parts[1].rsplit(":", 1)[1], 16)
                    rp = int(parts[2].rsplit(":", 1)[1], 16)
                    if lp == local_port and rp == remote_port:
                        inodes.add(parts[9])
        except OSError:
            pass
    links = {"socket:[%s]" % i for i in inodes if i != "0"}
    owners = set()
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in links:
                        owners.add(pid)
                        break
                except OSError:
                    pass
        except OSError:
            pass
    return owners


def socket_owner(local_port, remote_port, pids):
    """The one pid of pids holding that socket (see socket_owners), or None."""
    owners = socket_owners(local_port, remote_port, pids)
    return min(owners) if owners else None


def accepts(port):
    """True if a TCP connection to 127.0.0.1:port opens."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        return True
    except OSError:
        return False
