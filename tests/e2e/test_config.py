"""test_config.py: config checking (-t), errors that name file and JSON path,
and --version, for both binaries.

No Redis is started: checking a config must not need one. Each bad config is
the good one with one thing wrong; the error on stderr must name the file and
the JSON path of that thing ("FILE: $.json.path: reason").
"""

import subprocess
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=60)
env = H.Env()
BINS = (("gateway", H.GATEWAY_BIN), ("worker", H.WORKER_BIN))


def good():
    return env.make_config(rooms=[H.room("booking", "/book", H.free_port())], redis_port=H.free_port())


def check_t(name, conf, path=None, secret=None):
    """Writes conf (dict or raw text) as name.json and runs -t with both
    binaries. path None: must exit 0. Otherwise: exit 1 with a line
    'FILE: <path>...: reason' on stderr."""
    fname = env.write_config(conf, name + ".json")
    for bname, b in BINS:
        rc, out, err = H.run_tool([b, "-t", "-c", fname])
        where = "%s -t on %s" % (bname, name)
        if path is None:
            H.check(rc == 0, "%s: expected exit 0, got %d; stderr %r" % (where, rc, err[-500:]))
            continue
        H.check(rc == 1, "%s: expected exit 1, got %d; stderr %r" % (where, rc, err[-500:]))
        pattern = re.escape(fname) + r": " + re.escape(path) + r"(?![\w.\[])[^:\n]*: \S"
        H.check(re.search(pattern, err), "%s: stderr does not say '%s: %s: reason': %r" % (where, fname, path, err[-500:]))
        if secret is not None:
            H.check(secret not in err and secret not in out, "%s: the secret appears in the output" % where)
    return fname


def bad(name, path, mutate):
    @tap.case("-t rejects %s, naming %s" % (name, path))
    def _():
        c = good()
        mutate(c)
        check_t(name.replace(" ", "_"), c, path)


@tap.case("--version prints name and 0.1.0, exit 0")
def _():
    for bname, b in BINS:
        rc, out, err = H.run_tool([b, "--version"])
        H.eq(rc, 0, "%s --version exit status" % bname)
        H.eq(out.strip(), "waitroom-%s 0.1.0" % bname, "%s --version output" % bname)


@tap.case("-t accepts a valid config (exit 0) without any Redis running")
def _():
    check_t("valid", good())


@tap.case("-t accepts the shipped conf/waitroom.json (with a secret next to a copy)")
def _():
    src = os.path.join(H.SRCDIR, "conf", "waitroom.json")
    with open(src) as f:
        c = json.load(f)
    check_t("shipped", c)


@tap.case("-t accepts durations as numbers and as strings with units")
def _():
    c = good()
    c["rooms"][0]["session_duration"] = 300
    c["gateway"]["poll_interval"] = "1500ms"
    c["tokens"]["clock_skew"] = 30
    c["tokens"]["queue_token_ttl"] = "2h"
    c["worker"]["tick_ms"] = 50
    check_t("durations_numbers", c)
    c["rooms"][0]["session_duration"] = "2s"
    c["gateway"]["poll_interval"] = 1
    c["tokens"]["queue_token_ttl"] = 86400
    check_t("durations_strings", c)


@tap.case("-t rejects a JSON syntax error, naming the file")
def _():
    text = json.dumps(good(), indent=2)
    text = text.replace('"rooms": [', '"rooms": [,', 1)
    fname = env.write_config(text, "syntax.json")
    for bname, b in BINS:
        rc, out, err = H.run_tool([b, "-t", "-c", fname])
        H.check(rc == 1, "%s: expected exit 1, got %d; stderr %r" % (bname, rc, err[-500:]))
        H.check(fname in err, "%s: stderr does not name %s: %r" % (bname, fname, err[-500:]))


@tap.case("-t on a missing file exits 1 naming it")
def _():
    fname = os.path.join(env.tmp, "no-such.json")
    for bname, b in BINS:
        rc, out, err = H.run_tool([b, "-t", "-c", fname])
        H.check(rc == 1, "%s: expected exit 1, got %d" % (bname, rc))
        H.check(fname in err, "%s: stderr does not name %s: %r" % (bname, fname, err[-500:]))


bad("an unknown room key", "$.rooms[0].colour", lambda c: c["rooms"][0].update(colour="blue"))
bad("an unknown top-level key", "$.gatewey", lambda c: c.update(gatewey={}))
bad("total_active_users = 0", "$.rooms[0].total_active_users",
    lambda c: c["rooms"][0].update(total_active_users=0))
bad("new_users_per_minute = -1", "$.rooms[0].new_users_per_minute",
    lambda c: c["rooms"][0].update(new_users_per_minute=-1))
bad("redis.port as a string", "$.redis.port", lambda c: c["redis"].update(port="6379"))
bad("redis.port = 70000", "$.redis.port", lambda c: c["redis"].update(port=70000))
bad("a bad duration string", "$.rooms[0].session_duration",
    lambda c: c["rooms"][0].update(session_duration="5 minutes"))
bad("queueing_status_code = 302", "$.rooms[0].queueing_status_code",
    lambda c: c["rooms"][0].update(queueing_status_code=302))
bad("a backend that is not a URL", "$.rooms[0].backend", lambda c: c["rooms"][0].update(backend="nowhere"))
bad("missing tokens", "$.tokens", lambda c: c.pop("tokens"))
bad("an unknown key in the second listen entry", "$.gateway.listen[1].hots",
    lambda c: c["gateway"]["listen"].append({"hots": "127.0.0.1", "port": 1}))


@tap.case("-t rejects a 31-byte secret, naming $.tokens.keys[0].secret_file, without printing it")
def _():
    weak = b"s" * 31
    with open(os.path.join(env.tmp, "weak.key"), "wb") as f:
        f.write(weak + b"\n")
    c = good()
    c["tokens"]["keys"][0]["secret_file"] = "weak.key"
    check_t("weak_secret", c, "$.tokens.keys[0].secret_file", secret=weak.decode())


@tap.case("-t accepts a 32-byte secret (with a trailing newline)")
def _():
    with open(os.path.join(env.tmp, "ok32.key"), "wb") as f:
        f.write(b"0123456789abcdef0123456789abcdef\n")
    c = good()
    c["tokens"]["keys"][0]["secret_file"] = "ok32.key"
    check_t("secret32", c)


@tap.case("-t rejects a missing secret file, naming $.tokens.keys[0].secret_file")
def _():
    c = good()
    c["tokens"]["keys"][0]["secret_file"] = "absent.key"
    check_t("absent_secret", c, "$.tokens.keys[0].secret_file")


@tap.case("starting (without -t) with a bad config exits non-zero within 5s, naming the file")
def _():
    c = good()
    c["rooms"][0]["total_active_users"] = 0
    fname = env.write_config(c, "bad_start.json")
    for bname, b in BINS:
        t0 = time.monotonic()
        try:
            rc, out, err = H.run_tool([b, "-c", fname], timeout=5)
        except subprocess.TimeoutExpired:
            raise H.TestFailure("%s kept running with a bad config" % bname)
        H.check(rc != 0, "%s: exit status 0 with a bad config" % bname)
        H.check(fname in err and "$.rooms[0].total_active_users" in err,
                "%s: stderr does not name file and path: %r" % (bname, err[-500:]))
        H.diag("%s exited %d after %.2fs" % (bname, rc, time.monotonic() - t0))


if __name__ == "__main__":
    tap.run()
