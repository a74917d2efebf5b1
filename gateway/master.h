/*
 * master.h: the supervising master of several gateway processes.
 */
#ifndef WR_MASTER_H
#define WR_MASTER_H

/*
 * Forks n children, each running child(index, arg) and exiting with its
 * return value, and supervises them until SIGTERM or SIGINT: a child that
 * dies is started again (after a pause if it died young, so that a child
 * that cannot start does not spin); a signal is passed on to every child,
 * which then has up to 10 seconds to exit before it is killed. Returns the
 * master's exit status (0 after a clean stop).
 */
int wr_master_run(int n, int (*child)(int index, void *arg), void *arg);

#endif
