/*
 * common.c: allocation that aborts on failure, clocks and user ids.
 *
 * User ids are 128 bits from OpenSSL's RAND_bytes, written as lowercase hex.
 * They are the only identity waitroom gives a user: they name the user in
 * Redis, in tokens and in the header sent to the backend.
 */
#include "common.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <time.h>

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

int wr_new_uid(char *buf)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[WR_UID_LEN / 2];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return WR_ERROR;
    for (size_t i = 0; i < sizeof(raw); i++) {
        buf[2 * i] = hex[raw[i] >> 4];
        buf[2 * i + 1] = hex[raw[i] & 15];
    }
    buf[WR_UID_LEN] = '\0';
    return WR_OK;
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
