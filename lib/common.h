/*
 * common.h: the few things every waitroom source file needs.
 *
 * The return-code vocabulary (after nginx): a function that can fail returns
 * WR_OK or one of the negative codes below, never an errno and never a
 * library-specific code. WR_DECLINED is not an error: it means "not mine,
 * pass it on". A function that takes a callback and returns an error never
 * calls that callback.
 *
 * The out-of-memory policy for both daemons: allocation failure aborts with
 * the file and line (wr_malloc and friends). Nothing checks for NULL after
 * them.
 */
#ifndef WR_COMMON_H
#define WR_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WR_OK 0
#define WR_ERROR (-1)
#define WR_AGAIN (-2)
#define WR_DECLINED (-3)
#define WR_BUSY (-4)

/* Limits shared by the token, config and store code. */
#define WR_UID_LEN 32        /* a user id is 16 random bytes as lowercase hex */
#define WR_NAME_MAX 64       /* a room name or key id */
#define WR_TOKEN_MAX 2048    /* longest token accepted anywhere; longer is malformed */

#define WR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void *wr__malloc(size_t sz, const char *file, int line);
void *wr__calloc(size_t n, size_t sz, const char *file, int line);
void *wr__realloc(void *p, size_t sz, const char *file, int line);
char *wr__strdup(const char *s, const char *file, int line);
#define wr_malloc(sz) wr__malloc((sz), __FILE__, __LINE__)
#define wr_calloc(n, sz) wr__calloc((n), (sz), __FILE__, __LINE__)
#define wr_realloc(p, sz) wr__realloc((p), (sz), __FILE__, __LINE__)
#define wr_strdup(s) wr__strdup((s), __FILE__, __LINE__)

/* Wall-clock time (CLOCK_REALTIME): tokens and Redis expiries are absolute. */
int64_t wr_now_ms(void);
/* Monotonic time, for ticks and timeouts. */
int64_t wr_mono_ms(void);

/* Fills buf (WR_UID_LEN + 1 bytes) with a new random user id. Returns WR_OK or WR_ERROR. */
int wr_new_uid(char *buf);

/* Writes v in decimal at dst (room for 21 bytes; no NUL); returns the length. printf's machinery costs
 * more than the rest of a join's string work together (perf), so hot paths format numbers with this. */
size_t wr_fmt_i64(char *dst, int64_t v);
/* 1 when s is exactly WR_UID_LEN lowercase hex characters. */
int wr_uid_valid(const char *s, size_t len);

#endif
