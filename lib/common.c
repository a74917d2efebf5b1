/*
 * common.c: allocation that aborts on failure, clocks and user ids.
 *
 * User ids are 128 bits from OpenSSL's RAND_bytes, written as lowercase hex.
 * They are the only identity waitroom gives a user: they name the user in
 * Redis, in tokens and in the header sent to the backend.
 */
#include "common.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t sz, const char *file, int line)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes at %s:%d\n", sz, file, line);
    abort();
}

void *wr__malloc(size_t sz, const char *file, int line)
{
    void *p = malloc(sz ? sz : 1);
    if (p == NULL)
        oom(sz, file, line);
    return p;
}

void *wr__calloc(size_t n, size_t sz, const char *file, int line)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL)
        oom(n * sz, file, line);
    return p;
}

void *wr__realloc(void *p, size_t sz, const char *file, int line)
{
    void *q = realloc(p, sz ? sz : 1);
    if (q == NULL)
        oom(sz, file, line);
    return q;
}

char *wr__strdup(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = wr__malloc(n, file, line);
    memcpy(p, s, n);
    return p;
}

int64_t wr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wr_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Random bytes for uids come from RAND_bytes 4 KiB at a time (one call per
 * 256 uids instead of one per join). The pool is per process: a process
 * that finds it was filled by another pid (it forked since) throws it away
 * and refills, so that no two gateway processes ever hand out the same
 * bytes. Used bytes are wiped.
 */
static unsigned char uid_pool[4096];
static size_t uid_pool_left;
static pid_t uid_pool_pid;

int wr_new_uid(char *buf)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[WR_UID_LEN / 2];
    pid_t pid = getpid();
    if (uid_pool_left < sizeof(raw) || uid_pool_pid != pid) {
        if (RAND_bytes(uid_pool, sizeof(uid_pool)) != 1) {
            uid_pool_left = 0;
            return WR_ERROR;
        }
        uid_pool_left = sizeof(uid_pool);
        uid_pool_pid = pid;
    }
    uid_pool_left -= sizeof(raw);
    memcpy(raw, uid_pool + uid_pool_left, sizeof(raw));
    OPENSSL_cleanse(uid_pool + uid_pool_left, sizeof(raw));
    for (size_t i = 0; i < sizeof(raw); i++) {
        buf[2 * i] = hex[raw[i] >> 4];
        buf[2 * i + 1] = hex[raw[i] & 15];
    }
    buf[WR_UID_LEN] = '\0';
    return WR_OK;
}

size_t wr_fmt_i64(char *dst, int64_t v)
{
    char tmp[24], *e = tmp + sizeof(tmp), *d = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do
        *--d = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--d = '-';
    memcpy(dst, d, (size_t)(e - d));
    return (size_t)(e - d);
}

int wr_uid_valid(const char *s, size_t len)
{
    if (len != WR_UID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}
