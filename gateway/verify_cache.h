/*
 * verify_cache.h: a bounded cache of tokens this process has verified, so
 * that an admitted user's requests cost a hash look-up and a byte
 * comparison instead of an HMAC and three JSON parses each.
 */
#ifndef WR_VERIFY_CACHE_H
#define WR_VERIFY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "token.h"

typedef struct wr_verify_cache_s wr_verify_cache_t;

/* A cache of 2^bits slots. conf is borrowed and must outlive the cache. */
wr_verify_cache_t *wr_verify_cache_new(const wr_config_t *conf, unsigned bits);
void wr_verify_cache_free(wr_verify_cache_t *c);

/*
 * wr_token_verify with a cache in front: same arguments, same result. Only
 * valid tokens are cached, each until its exp (plus the clock skew) has
 * passed, and a cached answer is reused only for a max_admission_ms at
 * least as large as the one it was verified with (a token that fits a long
 * session may not fit a shorter one).
 */
wr_token_result_t wr_verify_cached(wr_verify_cache_t *c, const char *token, size_t len, int64_t now_ms,
                                   int64_t max_admission_ms, wr_claims_t *out);

#endif
