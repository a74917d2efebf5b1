"""test_fifo.py: admission is first come, first served.

Twelve users join one after another while no worker runs, so their positions
are exactly 1..12. Then the worker starts with new_users_per_minute = 300 and
tick_ms = 100 (half a user per tick, so admissions come one at a time) and the
test polls every status until all are ACTIVE. Each round polls the users in
reverse join order: a later user seen ACTIVE before an earlier one is polled
therefore really means the earlier one was still waiting after the later one
was admitted. Redis is also read atomically each round.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

N = 12
tap = H.Tap(deadline=60)
env = H.Env()
S = {"users": [], "rounds": 0, "first_active": {}}
K = H.RoomKeys()


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[H.room("booking", "/book", env.backend.port, total_active_users=1000,
                                new_users_per_minute=300, session_duration="5m")],
                  tick_ms=100)
    env.start_gateway()


@tap.case("12 sequential joins get positions 1..12 and queue numbers in join order")
def _():
    for i in range(N):
        S["users"].append(env.join())
    pos = [u.join_position for u in S["users"]]
    H.eq(pos, list(range(1, N + 1)), "positions at join")
    qs = [u.q for u in S["users"]]
    H.check(all(a < b for a, b in zip(qs, qs[1:])), "queue numbers not increasing: %r" % qs)
    H.eq(len({u.uid for u in S["users"]}), N, "distinct user ids")
    snap = env.redis.snapshot()
    H.eq(len(snap["queue"]), N, "ZCARD queue")
    H.eq([snap["queue"][u.uid] for u in S["users"]], [float(q) for q in qs], "queue scores vs q claims")
    H.eq(snap["active"], {}, "active set before the worker runs")


@tap.case("without a worker nobody is admitted and positions hold")
def _():
    for u in S["users"]:
        b = u.status()
        H.eq(b.get("status"), "WAITING", "status of user q=%s" % u.q)
        H.eq(b.get("position"), u.join_position, "position of user q=%s" % u.q)


def round_of_polls():
    """One round: Redis snapshot, then every status in reverse join order.
    Returns True when everyone is ACTIVE."""
    S["rounds"] += 1
    snap = env.redis.snapshot()
    order = [u.uid for u in S["users"]]
    active = [uid in snap["active"] for uid in order]
    # In Redis the ACTIVE users form a prefix of the join order.
    H.check(active == sorted(active, reverse=True),
            "Redis active set is not a prefix of the join order: %s" % "".join("A" if a else "w" for a in active))
    if snap["queue"] and snap["active"]:
        H.check(min(snap["queue"].values()) > max(S["users"][i].q for i, a in enumerate(active) if a),
                "a waiting queue number is below an admitted one")
    seen_active = False
    states = []
    for i in reversed(range(N)):
        u = S["users"][i]
        b = u.status()
        st = b.get("status")
        H.check(st in ("WAITING", "ACTIVE"), "user %d status %r" % (i + 1, b))
        if st == "ACTIVE":
            S["first_active"].setdefault(i, S["rounds"])
            seen_active = True
        else:
            # A later user (polled earlier) was already ACTIVE: FIFO broken.
            H.check(not seen_active, "user %d is WAITING (position %r) after a later user was seen ACTIVE"
                    % (i + 1, b.get("position")))
            H.check(b.get("position", 0) >= 1, "user %d WAITING with position %r" % (i + 1, b.get("position")))
        states.append(st[0])
    return all(s == "A" for s in states)


@tap.case("with the worker running, every round's ACTIVE users are a prefix of the join order")
def _():
    env.start_worker()
    H.wait_for(round_of_polls, 30, "all %d users to become ACTIVE" % N, interval=0.05)
    H.diag("%d polling rounds" % S["rounds"])


@tap.case("first-seen-ACTIVE order respects join order")
def _():
    fa = [S["first_active"].get(i) for i in range(N)]
    H.check(None not in fa, "some users were never seen ACTIVE: %r" % fa)
    H.check(all(a <= b for a, b in zip(fa, fa[1:])), "first ACTIVE round per user (join order): %r" % fa)


@tap.case("no user's position ever went up, and it started at the join position")
def _():
    for i, u in enumerate(S["users"]):
        p = u.positions
        H.check(all(a >= b for a, b in zip(p, p[1:])), "user %d positions went up: %r" % (i + 1, p))
        if p:
            H.check(p[0] <= u.join_position, "user %d first status position %r > join position %r"
                    % (i + 1, p[0], u.join_position))


@tap.case("admission times in Redis follow join order, one user at a time")
def _():
    act = dict(env.redis.zmembers(K.active))
    exp = [act.get(u.uid) for u in S["users"]]
    H.check(None not in exp, "not every user is in the active set: %r" % exp)
    H.check(all(a <= b for a, b in zip(exp, exp[1:])), "session expiries not in join order: %r" % exp)
    gaps = [round(b - a) for a, b in zip(exp, exp[1:])]
    H.diag("gaps between admissions (ms): %r" % gaps)
    # 300 a minute is one every 200 ms; allow a tick of jitter but no bursts of several at once.
    bursts = sum(1 for g in gaps if g < 50)
    H.check(bursts <= 2, "%d of %d admissions came in the same tick as the previous one" % (bursts, len(gaps)))
    H.eq(env.redis.get_int(K.serving), S["users"][-1].q, "wr:{booking}:serving")
    H.eq(env.redis.zcard(K.queue), 0, "ZCARD queue")


if __name__ == "__main__":
    tap.run(setup)
