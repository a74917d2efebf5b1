"""test_restart.py: the gateway and the worker keep no state of their own.

Ten users join with no worker running. The gateway is killed with SIGKILL
and started again on the same port, then stopped with SIGTERM (it must exit
0) and started again: every token must still give the same position. Then
the worker starts, is killed with SIGKILL after a few admissions and started
again: nobody is lost, everyone is admitted in FIFO order, and no position
ever goes up.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

N = 10
tap = H.Tap(deadline=80)
env = H.Env()
K = H.RoomKeys()
S = {"users": []}


def setup():
    env.start_redis()
    env.start_backend()
    # 120 a minute: one admission every 500 ms, so the worker can be killed mid-way.
    env.configure(rooms=[H.room("booking", "/book", env.backend.port, total_active_users=100,
                                new_users_per_minute=120, session_duration="5m")])
    env.start_gateway()


def positions_hold(what):
    for i, u in enumerate(S["users"]):
        b = u.status()
        H.eq(b.get("status"), "WAITING", "user %d status %s" % (i + 1, what))
        H.eq(b.get("position"), S["positions"][i], "user %d position %s" % (i + 1, what))
        r = u.request("/book")
        H.eq(r.status, 202, "user %d at /book %s (%s)" % (i + 1, what, r.describe()))
        H.eq(r.json().get("position"), S["positions"][i], "user %d queued answer position %s" % (i + 1, what))
    H.eq(env.backend.count(), 0, "backend requests")


@tap.case("10 users join with no worker; positions 1..10")
def _():
    for _ in range(N):
        S["users"].append(env.join())
    S["positions"] = [u.join_position for u in S["users"]]
    H.eq(S["positions"], list(range(1, N + 1)), "positions")
    S["seq"] = env.redis.get_int(K.seq)


@tap.case("gateway killed with SIGKILL and restarted on the same port: same positions")
def _():
    old = env.gateway.pid
    env.gateway.kill()
    env.start_gateway()
    H.check(env.gateway.pid != old, "the gateway was not restarted")
    positions_hold("after kill -9 of the gateway")
    H.eq(env.redis.get_int(K.seq), S["seq"], "seq (nobody enqueued twice)")


@tap.case("gateway stopped with SIGTERM exits 0 within 5s; restarted: same positions")
def _():
    rc = env.gateway.stop(timeout=5)
    H.eq(rc, 0, "gateway exit status after SIGTERM")
    env.start_gateway()
    positions_hold("after SIGTERM and restart of the gateway")


@tap.case("worker killed with SIGKILL after some admissions and restarted: everyone admitted in FIFO order")
def _():
    env.start_worker()
    H.wait_for(lambda: env.redis.zcard(K.active) >= 2, 10, "2 users admitted")
    env.worker.kill()
    snap = env.redis.snapshot()
    n_active = len(snap["active"])
    H.diag("%d admitted when the worker was killed" % n_active)
    H.check(n_active < N, "every user was admitted before the kill; nothing left to test")
    H.eq(len(snap["active"]) + len(snap["queue"]), N, "users in active + queue after the kill")
    order = [u.uid for u in S["users"]]
    flags = [uid in snap["active"] for uid in order]
    H.check(flags == sorted(flags, reverse=True), "active set after the kill is not a prefix of the join order")
    # Positions reported while no worker runs are stable and never above the join positions.
    for i, u in enumerate(S["users"]):
        u.status()
    env.start_worker()

    def all_active():
        seen_active = False
        done = True
        for i in reversed(range(N)):
            b = S["users"][i].status()
            if b.get("status") == "ACTIVE":
                seen_active = True
            else:
                H.eq(b.get("status"), "WAITING", "user %d status" % (i + 1))
                H.check(not seen_active, "user %d WAITING after a later user was seen ACTIVE" % (i + 1))
                done = False
        return done
    H.wait_for(all_active, 20, "all %d users ACTIVE after the worker restart" % N, interval=0.05)
    snap = env.redis.snapshot()
    H.eq(sorted(snap["active"]), sorted(order), "active set")
    H.eq(snap["queue"], {}, "queue")
    exp = [snap["active"][uid] for uid in order]
    H.check(all(a <= b for a, b in zip(exp, exp[1:])), "admissions not in join order: %r" % exp)


@tap.case("no user's position ever went up")
def _():
    for i, u in enumerate(S["users"]):
        p = u.positions
        H.check(all(a >= b for a, b in zip(p, p[1:])), "user %d positions went up: %r" % (i + 1, p))
        H.check(all(x <= S["positions"][i] for x in p), "user %d position above its join position: %r" % (i + 1, p))


@tap.case("ACTIVE users are proxied after all the restarts; worker and gateway exit 0 on SIGTERM")
def _():
    for u in S["users"]:
        r = u.request("/book/after")
        H.eq(r.status, 200, "proxied (%s)" % r.describe())
        H.eq(r.json().get("user"), u.uid, "user at the backend")
    H.eq(env.worker.stop(timeout=5), 0, "worker exit status after SIGTERM")
    H.eq(env.gateway.stop(timeout=5), 0, "gateway exit status after SIGTERM")


if __name__ == "__main__":
    tap.run(setup)
