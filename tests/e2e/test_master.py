"""test_master.py: gateway.processes 2, a master and its children (docs/push.md).

The master forks two gateway processes that share the HTTP and push ports
(SO_REUSEPORT), restarts a child that dies, and passes SIGTERM on. Children
are found through /proc (the children of the master's pid), and the child
that serves a given WebSocket connection by the inode of the connection's
server-side socket. No worker runs, so every waiting position stays put.
"""

import atexit
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

tap = H.Tap(deadline=60)
env = H.Env()
S = {"seen": set()}


def _kill_seen_children():
    # The children are in the master's process group, which the harness
    # kills; this catches any that left it.
    for pid in S["seen"]:
        if H.pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


atexit.register(_kill_seen_children)


def setup():
    env.start_redis()
    env.start_backend()
    env.configure(rooms=[H.room(backend_port=env.backend.port, total_active_users=1)],
                  gateway=env.push_settings(processes=2))
    env.start_gateway()


def children():
    kids = H.proc_children(env.gateway.pid)
    S["seen"].update(kids)
    return kids


def ws(user, name):
    return H.WsClient(env.push_port, token=user.token, name=name)


def healthz():
    return H.http(env.gw_port, "GET", "/healthz", timeout=2.0).status


@tap.case("the master forks two children; both listen on the HTTP and the push port, and both serve")
def _():
    kids = H.wait_for(lambda: len(children()) == 2 and children(), 5, "two children of the master")
    H.diag("master %d, children %r" % (env.gateway.pid, kids))
    for port, what in ((env.gw_port, "HTTP"), (env.push_port, "push")):
        H.wait_for(lambda: H.socket_owners(port, 0, kids) == set(kids), 5,
                   "both children to hold a listening socket on the %s port %d (holders %r)"
                   % (what, port, H.socket_owners(port, 0, kids)))
    H.eq(healthz(), 200, "GET /healthz")
    users = [env.join() for _ in range(12)]
    clients = [ws(u, "ws-%d" % i) for i, u in enumerate(users)]
    owners = {}
    for i, c in enumerate(clients):
        m = c.wait_open().wait_type("QUEUE_UPDATE", 3)
        H.eq(m.get("position"), users[i].join_position, "%s's position" % c.name)
        owners[i] = H.wait_for(lambda: H.socket_owner(env.push_port, c.local_port, kids), 3,
                               "the child serving %s" % c.name)
    H.diag("WebSocket connections per child: %r" % {k: sum(1 for o in owners.values() if o == k) for k in kids})
    # Twelve connections all hashed to one of two listeners: about 1 in 2048.
    H.check(len(set(owners.values())) == 2, "all twelve WebSocket connections went to one child: %r" % owners)
    S.update(kids=kids, users=users, clients=clients, owners=owners)


@tap.case("kill -9 of a child: the master starts a new one, /healthz answers throughout")
def _():
    kids, owners = S["kids"], S["owners"]
    victim = owners[0]
    other = [k for k in kids if k != victim][0]
    os.kill(victim, signal.SIGKILL)
    H.wait_for(lambda: not H.pid_alive(victim), 3, "the killed child %d to be gone" % victim)
    statuses = []

    def replaced():
        statuses.append(healthz())
        k = children()
        return len(k) == 2 and victim not in k and other in k and k

    t0 = time.monotonic()
    new = H.wait_for(replaced, 5, "the master to start a child in place of %d" % victim)
    H.diag("child %d replaced by %r after %.2fs" % (victim, set(new) - {other}, time.monotonic() - t0))
    for _ in range(20):
        statuses.append(healthz())
    H.check(statuses and all(s == 200 for s in statuses), "/healthz answers after the kill: %r" % statuses)
    for port in (env.gw_port, env.push_port):
        H.wait_for(lambda: H.socket_owners(port, 0, new) == set(new), 5,
                   "the new child to listen on port %d" % port)
    S["new_kids"] = new
    S["victim"] = victim


@tap.case("the killed child's WebSocket clients lose their connection; the other child's keep theirs")
def _():
    for i, c in enumerate(S["clients"]):
        if S["owners"][i] == S["victim"]:
            c.wait_closed(5)
            H.diag("%s closed with code %r" % (c.name, c.close_code))
        else:
            H.check(not c.done.is_set(), "%s (served by the surviving child) was closed: code %r"
                    % (c.name, c.close_code))


@tap.case("a client of the killed child reconnects with the same token and keeps its place")
def _():
    again = []
    for i, c in enumerate(S["clients"]):
        if S["owners"][i] != S["victim"]:
            continue
        before = c.of_type("QUEUE_UPDATE")[-1]["position"]
        n = ws(S["users"][i], "ws-%d-again" % i)
        m = n.wait_open().wait_type("QUEUE_UPDATE", 3)
        H.eq(m.get("position"), before, "position of %s after reconnecting" % c.name)
        again.append(n)
    H.check(again, "no client was served by the killed child")
    S["again"] = again
    H.eq(env.redis.zcard(H.RoomKeys().queue), len(S["users"]), "users waiting")


@tap.case("SIGTERM to the master: clients get CLOSED; every process exits, the master with status 0, within 5 s")
def _():
    kids = children()
    H.eq(len(kids), 2, "children before SIGTERM")
    master = env.gateway
    master.expect_alive = False
    open_clients = [c for c in S["clients"] + S["again"] if not c.done.is_set()]
    t0 = time.monotonic()
    os.kill(master.pid, signal.SIGTERM)   # the master alone, not its group
    try:
        status = master.popen.wait(5)
    except H.subprocess.TimeoutExpired:
        raise H.TestFailure("the master did not exit within 5 s of SIGTERM (children %r)" % children())
    H.diag("master exited %r after %.2fs" % (status, time.monotonic() - t0))
    H.eq(status, 0, "the master's exit status")
    H.wait_for(lambda: not any(H.pid_alive(k) for k in kids), max(0.5, 5 - (time.monotonic() - t0)),
               "every child (%r) to exit" % kids)
    for c in open_clients:
        c.wait_closed(3)
        m = c.of_type("CLOSED")
        H.check(m and isinstance(m[-1].get("reason"), str),
                "%s got no CLOSED message with a reason before the close (code %r, messages %r)"
                % (c.name, c.close_code, c.payloads()))
    H.check(not H.accepts(env.gw_port) and not H.accepts(env.push_port), "a port still accepts connections")


if __name__ == "__main__":
    tap.run(setup)
