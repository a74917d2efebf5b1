/*
 * verify_cache.c: the verified-token cache (see verify_cache.h).
 *
 * A direct-mapped table: each token hashes to one slot, and a new token
 * evicts whatever held its slot. The hash comes from the token's signature
 * characters, which are HMAC output: only tokens that verified are ever
 * stored, and nobody but the key holder can choose their signatures, so
 * nobody can aim many tokens at one slot. A hit compares the whole token
 * byte for byte, so a forged token that shares a slot only misses.
 *
 * Why a cached answer stays right: a token that verified at time t is still
 * valid at any later time until exp + skew (nbf and iat only get further in
 * the past, and exp - now only shrinks), so the entry lives exactly that
 * long. Memory: the slot array plus one copy of each cached token.
 */
#include "verify_cache.h"

#include <string.h>

typedef struct wr_cache_slot_s {
    char *token; /* owned copy; NULL when empty */
    size_t len;
    int64_t valid_until_ms;
    int64_t max_admission_ms;
    wr_claims_t claims;
} wr_cache_slot_t;

struct wr_verify_cache_s {
    const wr_config_t *conf;
    wr_cache_slot_t *slots;
    size_t mask;
};

wr_verify_cache_t *wr_verify_cache_new(const wr_config_t *conf, unsigned bits)
{
    wr_verify_cache_t *c = wr_calloc(1, sizeof(*c));
    c->conf = conf;
    c->mask = ((size_t)1 << bits) - 1;
    c->slots = wr_calloc(c->mask + 1, sizeof(*c->slots));
    return c;
}

void wr_verify_cache_free(wr_verify_cache_t *c)
{
    for (size_t i = 0; i <= c->mask; i++)
        free(c->slots[i].token);
    free(c->slots);
    free(c);
}

static size_t hash(const char *token, size_t len)
{
    /* FNV-1a over the last 16 characters: the end of the signature. */
    uint64_t h = 14695981039346656037ull;
    for (size_t i = len > 16 ? len - 16 : 0; i < len; i++)
        h = (h ^ (unsigned char)token[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

wr_token_result_t wr_verify_cached(wr_verify_cache_t *c, const char *token, size_t len, int64_t now_ms,
                                   int64_t max_admission_ms, wr_claims_t *out)
{
    wr_cache_slot_t *s;
    wr_token_result_t r;

    if (len == 0 || len > WR_TOKEN_MAX)
        return wr_token_verify(c->conf, token, len, now_ms, max_admission_ms, out);
    s = &c->slots[hash(token, len) & c->mask];
    if (s->token != NULL && s->len == len && memcmp(s->token, token, len) == 0) {
        if (now_ms < s->valid_until_ms && max_admission_ms >= s->max_admission_ms) {
            *out = s->claims;
            return WR_TOKEN_VALID;
        }
    }
    if ((r = wr_token_verify(c->conf, token, len, now_ms, max_admission_ms, out)) != WR_TOKEN_VALID)
        return r;
    if (s->token == NULL || s->len < len) {
        free(s->token);
        s->token = wr_malloc(len);
    }
    memcpy(s->token, token, len);
    s->len = len;
    s->valid_until_ms = out->exp * 1000 + c->conf->tokens.clock_skew_ms;
    s->max_admission_ms = max_admission_ms;
    s->claims = *out;
    return WR_TOKEN_VALID;
}
