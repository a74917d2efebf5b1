/*
 * master.c: fork and supervise the gateway processes.
 *
 * One process holds at most about 19,900 sockets on these machines, so a
 * machine serves more clients with several gateway processes. They share
 * nothing: each opens its own listeners with SO_REUSEPORT (the kernel
 * spreads connections among them), its own Redis connections and its own
 * view. The master only forks, watches and relays signals; it opens no
 * socket and runs no event loop, so that a child starts from a clean slate.
 *
 * Signals: the master blocks SIGTERM, SIGINT and SIGCHLD and takes them
 * with sigtimedwait, so there is no handler and no race between a child's
 * death and the decision to restart it.
 */
#include "master.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

#define WR_MASTER_MAX 64
#define WR_MASTER_GRACE_MS 10000

typedef struct wr_slot_s {
    pid_t pid;
    int64_t started_ms;
    int64_t restart_at_ms; /* when a dead child is due to be started again; 0: not dead */
} wr_slot_t;

static pid_t start(int index, int (*child)(int, void *), void *arg, const sigset_t *old)
{
    pid_t pid = fork();
    if (pid < 0) {
        wr_error("master: fork() failed: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* A child dies with its master rather than outlive it unsupervised. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        sigprocmask(SIG_SETMASK, old, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        _exit(child(index, arg));
    }
    wr_info("master: child %d (pid %d) started", index, (int)pid);
    return pid;
}

int wr_master_run(int n, int (*child)(int index, void *arg), void *arg)
{
    wr_slot_t slots[WR_MASTER_MAX];
    sigset_t set, old;
    int stopping = 0, alive;
    int64_t stop_deadline = 0;

    if (n > WR_MASTER_MAX)
        n = WR_MASTER_MAX;
    memset(slots, 0, sizeof(slots));
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);

    for (int i = 0; i < n; i++) {
        slots[i].pid = start(i, child, arg, &old);
        slots[i].started_ms = wr_mono_ms();
    }
    for (;;) {
        struct timespec wait = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &wait);
        int64_t now = wr_mono_ms();
        pid_t pid;
        int status;

        if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
            wr_info("master: stopping on signal %d", sig);
            stopping = 1;
            stop_deadline = now + WR_MASTER_GRACE_MS;
            for (int i = 0; i < n; i++)
                if (slots[i].pid > 0)
                    kill(slots[i].pid, SIGTERM);
        }
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < n; i++) {
                if (slots[i].pid != pid)
                    continue;
                slots[i].pid = 0;
                if (stopping)
                    break;
                if (WIFSIGNALED(status))
                    wr_error("master: child %d (pid %d) killed by signal %d", i, (int)pid, WTERMSIG(status));
                else
                    wr_error("master: child %d (pid %d) exited with status %d", i, (int)pid, WEXITSTATUS(status));
                /* Started again at once, unless it died within a second of starting. */
                slots[i].restart_at_ms = now - slots[i].started_ms < 1000 ? now + 1000 : now;
            }
        }
        alive = 0;
        for (int i = 0; i < n; i++) {
            if (slots[i].pid > 0)
                alive++;
            else if (!stopping && slots[i].restart_at_ms != 0 && now >= slots[i].restart_at_ms) {
                slots[i].restart_at_ms = 0;
                slots[i].pid = start(i, child, arg, &old);
                slots[i].started_ms = now;
                if (slots[i].pid < 0) {
                    slots[i].pid = 0;
                    slots[i].restart_at_ms = now + 1000;
                }
            }
        }
        if (stopping && alive == 0) {
            wr_info("master: all children stopped");
            return 0;
        }
        if (stopping && now >= stop_deadline) {
            wr_warn("master: children still running after %d ms; killing them", WR_MASTER_GRACE_MS);
            for (int i = 0; i < n; i++)
                if (slots[i].pid > 0)
                    kill(slots[i].pid, SIGKILL);
            stop_deadline = now + 1000;
        }
    }
}
