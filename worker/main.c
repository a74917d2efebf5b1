/*
 * main.c: the waitroom-worker process.
 *
 * The worker is a loop: every tick_ms it runs one admission step per room
 * (worker/admit.c) and sleeps until the next tick's deadline on the
 * monotonic clock, so a slow tick shortens the next sleep instead of shifting
 * every later tick. It keeps no state of its own: everything is in Redis, so
 * it can be killed at any moment and restarted, or run as two copies for
 * availability.
 *
 * Signals: SIGTERM and SIGINT finish the current tick and exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "admit.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "store.h"

static volatile sig_atomic_t terminating;

static void on_signal(int sig)
{
    terminating = 1;
}

static void sleep_until(const struct timespec *deadline)
{
    /* Interrupted by a signal: return, the loop checks the flag. */
    (void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, deadline, NULL);
}

static void add_ms(struct timespec *ts, int64_t ms)
{
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int main(int argc, char **argv)
{
    wr_cli_t cli;
    const char *path;
    int failures = 0;
    char err[1024];
    wr_config_t *conf;
    wr_admit_t admit;
    struct timespec next, now;
    struct sigaction sa;

    switch (wr_cli_parse(argc, argv, "waitroom-worker", &cli)) {
    case WR_OK:
        break;
    case WR_DECLINED:
        return 0;
    default:
        return 1;
    }
    path = cli.config_path;
    if ((conf = wr_config_load(path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (cli.test_only) {
        printf("%s: configuration is valid\n", path);
        wr_config_free(conf);
        return 0;
    }
    wr_log_init("worker");
    wr_log_level = wr_log_level_from_name(conf->log_level);
    wr_store_init();

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    wr_admit_init(&admit, conf);
    wr_info("started: %zu room(s), a tick every %lld ms", conf->num_rooms, (long long)conf->worker.tick_ms);
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!terminating) {
        if (wr_admit_tick(&admit) == WR_OK) {
            failures = 0;
            add_ms(&next, conf->worker.tick_ms);
        } else {
            /* Back off from 50 ms up to one second while Redis is away. */
            int64_t backoff = 50 << (failures < 5 ? failures : 5);
            failures++;
            clock_gettime(CLOCK_MONOTONIC, &next);
            add_ms(&next, backoff > 1000 ? 1000 : backoff);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec)) {
            /* A tick overran its period: start the next one now rather than
             * running a burst of catch-up ticks (the rate credit already
             * accounts for the time that passed). */
            next = now;
            continue;
        }
        sleep_until(&next);
    }
    wr_info("stopping on signal");
    wr_admit_dispose(&admit);
    wr_config_free(conf);
    return 0;
}
