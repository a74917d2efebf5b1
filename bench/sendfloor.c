/*
 * sendfloor.c: waitroom-sendfloor, the kernel's floor for pushing a tick.
 *
 * The anchor for bench/push.sh. It does, with nothing else, what the gateway
 * must do each tick when every waiting client's position changed: one small
 * write to each of N established loopback TCP connections. A child process
 * holds the other ends and reads them with epoll, as the load generator
 * does. Each message carries the time its tick started, so the receiver
 * measures the same latency as waitroom-loadgen (tick start to receipt),
 * and the sender reports its CPU time per message and how long a walk over
 * all N connections took.
 *
 * On loopback the sender's write also runs the receiving side's TCP
 * processing and wakes the reader (softirq in the sender's context), so the
 * figure is what a gateway pays here, not on a real network interface.
 * Whatever the gateway adds on top of this floor is its own cost; what this
 * floor costs no gateway can avoid on this machine.
 *
 * Usage: waitroom-sendfloor [--connections N] [--ticks T] [--interval-ms MS]
 *                           [--size BYTES] [--json]
 * Bounded: T ticks (default 50) of MS (default 100), then the reader drains
 * for at most 5 s. Exit 0 with a report, 1 for bad arguments or set-up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram: 10 µs buckets up to 10 s. */
#define BUCKET_US 10
#define NBUCKETS 1000000

typedef struct report_s {
    uint64_t messages, bytes;
    double recv_cpu_s;
    double p50_ms, p99_ms, max_ms;
} report_t;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int usage(const char *why)
{
    fprintf(stderr, "waitroom-sendfloor: %s\n"
                    "usage: waitroom-sendfloor [--connections N] [--ticks T] [--interval-ms MS] [--size BYTES] [--json]\n",
            why);
    return 1;
}

static double percentile(const uint32_t *h, uint64_t total, double p)
{
    uint64_t want = (uint64_t)(p * (double)total), seen = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        seen += h[i];
        if (seen > want)
            return (double)(i * BUCKET_US) / 1000.0;
    }
    return (double)(NBUCKETS * BUCKET_US) / 1000.0;
}

/*
 * The reader: connects n sockets, says so on `ready`, then reads messages
 * of `size` bytes (each starting with its tick's start time) until it has
 * `expect` of them or 5 s pass without any, and writes its report to `out`.
 */
static int reader(struct sockaddr_in *addr, int n, size_t size, uint64_t expect, int ready, int out)
{
    int ep = epoll_create1(0);
    int *fds = calloc((size_t)n, sizeof(int));
    size_t *have = calloc((size_t)n, sizeof(size_t));
    char **partial = calloc((size_t)n, sizeof(char *));
    uint32_t *hist = calloc(NBUCKETS, sizeof(uint32_t));
    report_t r = {0};
    double cpu0;
    uint64_t maxus = 0;
    char buf[65536];
    struct epoll_event ev[512];

    if (ep < 0 || fds == NULL || have == NULL || partial == NULL || hist == NULL)
        return 1;
    for (int i = 0; i < n; i++) {
        struct epoll_event e = {.events = EPOLLIN};
        if ((fds[i] = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(fds[i], (struct sockaddr *)addr, sizeof(*addr)) != 0) {
            fprintf(stderr, "waitroom-sendfloor: connection %d: %s\n", i, strerror(errno));
            return 1;
        }
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        if ((partial[i] = malloc(size)) == NULL)
            return 1;
        e.data.u32 = (uint32_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
    }
    if (write(ready, "r", 1) != 1)
        return 1;
    cpu0 = cpu_s();
    while (r.messages < expect) {
        int k = epoll_wait(ep, ev, 512, 5000);
        if (k <= 0)
            break;
        for (int j = 0; j < k; j++) {
            uint32_t i = ev[j].data.u32;
            ssize_t got = read(fds[i], buf, sizeof(buf));
            uint64_t t = now_ns();
            for (ssize_t off = 0; off < got;) {
                size_t take = size - have[i];
                if (take > (size_t)(got - off))
                    take = (size_t)(got - off);
                memcpy(partial[i] + have[i], buf + off, take);
                have[i] += take;
                off += (ssize_t)take;
                if (have[i] == size) {
                    uint64_t sent, us;
                    memcpy(&sent, partial[i], sizeof(sent));
                    us = t > sent ? (t - sent) / 1000 : 0;
                    hist[us / BUCKET_US < NBUCKETS ? us / BUCKET_US : NBUCKETS - 1]++;
                    if (us > maxus)
                        maxus = us;
                    r.messages++;
                    r.bytes += size;
                    have[i] = 0;
                }
            }
        }
    }
    r.recv_cpu_s = cpu_s() - cpu0;
    r.p50_ms = percentile(hist, r.messages, 0.50);
    r.p99_ms = percentile(hist, r.messages, 0.99);
    r.max_ms = (double)maxus / 1000.0;
    return write(out, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int n = 19000, ticks = 50, interval_ms = 100, json = 0;
    size_t size = 120;
    int lfd, ready[2], out[2], one = 1;
    struct sockaddr_in addr = {0};
    socklen_t alen = sizeof(addr);
    pid_t child;
    int *fds;
    char *msg;
    uint64_t *walks;
    double cpu0, cpu;
    report_t r = {0};
    int status;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc)
            return usage("missing value after an option");
        if (strcmp(a, "--connections") == 0)
            n = atoi(argv[++i]);
        else if (strcmp(a, "--ticks") == 0)
            ticks = atoi(argv[++i]);
        else if (strcmp(a, "--interval-ms") == 0)
            interval_ms = atoi(argv[++i]);
        else if (strcmp(a, "--size") == 0)
            size = (size_t)atol(argv[++i]);
        else
            return usage("unknown option");
    }
    if (n < 1 || n > 19500)
        return usage("--connections must be 1..19500 (one process holds about 19,900 descriptors here)");
    if (ticks < 1 || ticks > 10000)
        return usage("--ticks must be 1..10000");
    if (interval_ms < 1 || interval_ms > 10000)
        return usage("--interval-ms must be 1..10000");
    if (size < sizeof(uint64_t) || size > 4096)
        return usage("--size must be 8..4096");

    {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max; /* the reader (forked below) inherits it */
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 4096) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0 || pipe(ready) != 0 || pipe(out) != 0) {
        fprintf(stderr, "waitroom-sendfloor: set-up: %s\n", strerror(errno));
        return 1;
    }
    if ((child = fork()) == 0) {
        close(lfd);
        _exit(reader(&addr, n, size, (uint64_t)n * (uint64_t)ticks, ready[1], out[1]));
    }
    fds = calloc((size_t)n, sizeof(int));
    msg = calloc(1, size);
    walks = calloc((size_t)ticks, sizeof(uint64_t));
    if (child < 0 || fds == NULL || msg == NULL || walks == NULL)
        return 1;
    memset(msg, 'x', size);
    for (int i = 0; i < n; i++) {
        if ((fds[i] = accept(lfd, NULL, NULL)) < 0) {
            fprintf(stderr, "waitroom-sendfloor: accept: %s\n", strerror(errno));
            kill(child, SIGKILL);
            return 1;
        }
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    {
        char c;
        if (read(ready[0], &c, 1) != 1) {
            fprintf(stderr, "waitroom-sendfloor: the reader failed to connect\n");
            return 1;
        }
    }

    cpu0 = cpu_s();
    for (int t = 0; t < ticks; t++) {
        uint64_t start = now_ns(), spent;
        memcpy(msg, &start, sizeof(start));
        for (int i = 0; i < n; i++)
            if (write(fds[i], msg, size) != (ssize_t)size) {
                fprintf(stderr, "waitroom-sendfloor: a write fell short (%s)\n", strerror(errno));
                kill(child, SIGKILL);
                return 1;
            }
        walks[t] = spent = now_ns() - start;
        if (spent < (uint64_t)interval_ms * 1000000u) {
            uint64_t left = (uint64_t)interval_ms * 1000000u - spent;
            struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
            nanosleep(&ts, NULL);
        }
    }
    cpu = cpu_s() - cpu0;
    if (read(out[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
        fprintf(stderr, "waitroom-sendfloor: the reader sent no report\n");
    waitpid(child, &status, 0);
    qsort(walks, (size_t)ticks, sizeof(uint64_t), cmp_u64);
    {
        double per_msg_us = cpu / ((double)n * ticks) * 1e6;
        double walk_p50 = (double)walks[ticks / 2] / 1e6, walk_max = (double)walks[ticks - 1] / 1e6;
        double recv_us = r.messages ? r.recv_cpu_s / (double)r.messages * 1e6 : 0;
        if (json)
            printf("{\"connections\": %d, \"ticks\": %d, \"interval_ms\": %d, \"size\": %zu, \"messages_sent\": %llu, "
                   "\"messages_received\": %llu, \"sender_cpu_us_per_message\": %.2f, \"receiver_cpu_us_per_message\": %.2f, "
                   "\"walk_ms\": {\"p50\": %.1f, \"max\": %.1f}, \"latency_ms\": {\"p50\": %.2f, \"p99\": %.2f, \"max\": %.2f}}\n",
                   n, ticks, interval_ms, size, (unsigned long long)n * (unsigned long long)ticks,
                   (unsigned long long)r.messages, per_msg_us, recv_us, walk_p50, walk_max, r.p50_ms, r.p99_ms, r.max_ms);
        else
            printf("%d connections, %d ticks of %d ms, %zu-byte messages\n"
                   "sender: %.2f us CPU per message; a walk over all connections took %.1f ms (median), %.1f ms (max)\n"
                   "receiver: %llu messages, %.2f us CPU per message\n"
                   "tick start to receipt: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                   n, ticks, interval_ms, size, per_msg_us, walk_p50, walk_max, (unsigned long long)r.messages, recv_us,
                   r.p50_ms, r.p99_ms, r.max_ms);
    }
    return 0;
}
