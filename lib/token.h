/*
 * token.h: signed queue and admission tokens (HS256 JWTs through libjwt).
 *
 * Two kinds of token exist, told apart by the "typ" claim:
 *   - a queue token ("queue"): given at join; names the user (sub), the room
 *     (aud) and the user's queue number (q). It proves a place in line.
 *   - an admission token ("admission"): given once the user is ACTIVE; its exp
 *     is the end of the user's session. It lets the gateway proxy without
 *     asking Redis.
 *
 * libjwt 1.10 validates no claim and has several traps (see
 * docs/architecture.md, "Tokens"), so this file checks everything itself:
 * the header's alg must be exactly "HS256", kid must name a configured key
 * (and only selects among them), the HMAC is compared in constant time before
 * libjwt ever sees the token, jwt_get_alg is checked after decoding, and exp,
 * nbf, iat, iss, typ, sub and aud are checked here with the configured clock
 * skew.
 */
#ifndef WR_TOKEN_H
#define WR_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "config.h"

typedef enum {
    WR_TOKEN_QUEUE = 1,
    WR_TOKEN_ADMISSION = 2,
} wr_token_type_t;

typedef struct wr_claims_s {
    wr_token_type_t type;
    char sub[WR_UID_LEN + 1]; /* user id */
    char aud[WR_NAME_MAX + 1]; /* room name */
    int64_t q;   /* queue number; 0 in an admission token */
    int64_t iat; /* seconds since the epoch, like nbf and exp */
    int64_t nbf;
    int64_t exp;
} wr_claims_t;

/* Why a token was refused; wr_token_reason names each for error bodies and logs. */
typedef enum {
    WR_TOKEN_VALID = 0,
    WR_TOKEN_MALFORMED,     /* not three base64url segments of JSON, too long, bad bytes */
    WR_TOKEN_BAD_ALG,       /* header alg is not exactly HS256 (none, RS256, hs256, ...) */
    WR_TOKEN_UNKNOWN_KID,   /* kid missing or not a configured key */
    WR_TOKEN_BAD_SIGNATURE,
    WR_TOKEN_EXPIRED,       /* exp + skew <= now */
    WR_TOKEN_NOT_YET_VALID, /* nbf or iat later than now + skew */
    WR_TOKEN_BAD_LIFETIME,  /* exp further in the future than such a token can live */
    WR_TOKEN_BAD_CLAIM,     /* a required claim missing or of the wrong JSON type */
    WR_TOKEN_BAD_ISSUER,
    WR_TOKEN_BAD_AUDIENCE,  /* set by the caller when aud is not the expected room */
    WR_TOKEN_BAD_TYPE,      /* typ is neither "queue" nor "admission", or not the one allowed here */
} wr_token_result_t;

const char *wr_token_reason(wr_token_result_t r);

/*
 * Signs claims with the configured signing key. On WR_OK *out is a
 * NUL-terminated token the caller frees with free(). iat, nbf and exp are
 * taken from claims as given.
 */
int wr_token_sign(const wr_config_t *conf, const wr_claims_t *claims, char **out);

/*
 * Verifies token (len bytes, need not be NUL-terminated) at time now_ms.
 * max_admission_ms bounds exp - now for admission tokens: the caller passes
 * the room's session duration for admission tokens; queue tokens are bounded
 * by conf->tokens.queue_token_ttl_ms. Returns WR_TOKEN_VALID and fills *out,
 * or the reason for refusal (and *out is then unspecified). The audience is
 * not compared here: the caller compares out->aud with the room it expects and
 * reports WR_TOKEN_BAD_AUDIENCE.
 */
wr_token_result_t wr_token_verify(const wr_config_t *conf, const char *token, size_t len, int64_t now_ms,
                                  int64_t max_admission_ms, wr_claims_t *out);

/* Constant-time comparison of two equal-length byte strings: 1 when equal. */
int wr_token_ct_equal(const void *a, const void *b, size_t len);

/* An HMAC-SHA256 context keyed with secret (for wr_key_t.mac); NULL if OpenSSL cannot make one. */
EVP_MAC_CTX *wr_token_hmac_new(const unsigned char *secret, size_t len);

/* HMAC-SHA256 of len bytes at data with key's secret into out; WR_OK or WR_ERROR. */
int wr_token_hmac(const wr_key_t *key, const void *data, size_t len, unsigned char out[32]);

#endif
