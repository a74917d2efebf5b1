"""test_failure.py: when Redis fails, the gateway fails closed.

  - Redis killed: every decision that needs Redis gets 503, nothing reaches
    the backend, /healthz says 503; joins get 503.
  - Redis back, empty (it had no persistence): the gateways rebuild their
    view from it; users it no longer knows are not let through, and new
    users can join and be admitted.
  - Redis hung (SIGSTOP): a join fails with 503 within command_timeout
    instead of hanging; after SIGCONT, joins work again.
  - The script cache flushed (SCRIPT FLUSH): the gateway and the worker load
    their scripts again and carry on.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=90)
env = H.Env()
S = {}
K = H.RoomKeys("booking")


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[H.room("booking", "/book", env.backend.port, total_active_users=3,
                                new_users_per_minute=6000, session_duration="1h")])
    env.conf["redis"]["command_timeout"] = 500
    env.write_config(env.conf)
    env.start_gateway()
    env.start_worker()


def join_works():
    """A join answers 202; the user then leaves again, so that probes do not
    fill the line ahead of the users the cases watch."""
    r = env.get("/book", {"Accept": "application/json"})
    if r.status != 202:
        return False
    env.leave(r.json()["queueToken"])
    return True


def health():
    return H.http(env.gw_port, "GET", "/healthz", timeout=2.0).status


@tap.case("an ACTIVE user is proxied while Redis is up")
def _():
    u = env.join()
    u.wait_active(10)
    H.eq(u.request("/book/a").status, 200, "proxied")
    S["u"] = u


@tap.case("Redis killed: /healthz 503, requests get 503 and never reach the backend, joins get 503")
def _():
    u = S["u"]
    before = env.backend.count()
    env.redis.proc.kill()
    H.wait_for(lambda: health() == 503, 10, "/healthz to answer 503 once Redis is gone")
    for tok in (u.token, u.admission):
        r = u.request("/book/b", token=tok)
        H.eq(r.status, 503, "request of an ACTIVE user with Redis down (%s)" % r.describe())
        H.check(r.headers.get("Retry-After") is not None, "503 without Retry-After")
    r = env.get("/book", {"Accept": "application/json"})
    H.eq(r.status, 503, "join with Redis down")
    H.eq(env.get("/queue/status", [("Queue-Token", u.token)]).status, 503, "status with Redis down")
    H.eq(env.backend.count(), before, "requests at the backend while Redis was down")


@tap.case("Redis back but empty: the view is rebuilt; the forgotten user is not let through; new users are")
def _():
    u = S["u"]
    before = env.backend.count()
    env.redis.proc.start()
    H.wait_for(env.redis._pings, 10, "redis-server to answer PING again")
    H.wait_for(lambda: health() == 200, 10, "/healthz to answer 200 again")
    # Redis lost the admission: the queue token goes to the back of the line, the admission token is refused.
    r = u.request("/book/c")
    H.eq(r.status, 202, "queue token of a user Redis forgot (%s)" % r.describe())
    H.eq(u.request("/book/c", token=u.admission).status, 401, "admission token of a user Redis forgot")
    H.eq(env.backend.count(), before, "requests at the backend from the forgotten user")
    v = env.join()
    H.eq(v.join_position, 1, "position of the first user after the restart")
    v.wait_active(10)
    H.eq(v.request("/book/d").status, 200, "new user proxied")


@tap.case("Redis hung (SIGSTOP): a join answers 503 within the command timeout; after SIGCONT joins work")
def _():
    env.redis.proc.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = env.get("/book", {"Accept": "application/json"}, timeout=10)
        took = time.monotonic() - t0
        H.eq(r.status, 503, "join while Redis is hung")
        H.check(took < 5, "the join took %.1fs to fail (command_timeout is 0.5s)" % took)
    finally:
        env.redis.proc.signal(signal.SIGCONT)
    # Every gateway process (there may be several behind the port) must be
    # back: each reconnects on its own backoff.
    H.wait_for(lambda: all(join_works() for _ in range(8)), 15,
               "joins to work again, in every gateway process, after SIGCONT")


@tap.case("SCRIPT FLUSH: the gateway and the worker load their scripts again and carry on")
def _():
    env.redis.cmd("SCRIPT", "FLUSH")
    H.wait_for(lambda: all(join_works() for _ in range(8)), 10,
               "joins to work again, in every gateway process, after SCRIPT FLUSH")
    w = env.join()

    # Three slots, held by earlier cases' users (and by a join that timed out
    # while Redis was stopped, then ran when it resumed): keep freeing them
    # until w, next in line, is admitted.
    def w_admitted():
        for uid in list(env.redis.snapshot()["active"]):
            if uid != w.uid:
                env.redis.cmd("ZREM", K.active, uid)
        return w.is_active()
    H.wait_for(w_admitted, 10, "w to be admitted once slots are free", interval=0.1)


if __name__ == "__main__":
    tap.run(setup)
