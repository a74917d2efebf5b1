/*
 * test_verify_cache.c: the gateway's verified-token cache
 * (gateway/verify_cache.c) must give exactly the answers wr_token_verify
 * gives: a hit only for the same bytes, never past exp + skew, never for a
 * shorter session bound than the one it was verified with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../gateway/verify_cache.h"
#include "../../lib/config.h"
#include "token.h"

static unsigned char secret[] = "cache-test-secret-0123456789-abcdefghij";
static wr_key_t key = {.kid = "k1", .secret = secret, .secret_len = sizeof(secret) - 1};
static wr_config_t conf;
static const int64_t now = 1800000000000; /* ms */

static int setup(void **state)
{
    conf.tokens.issuer = "waitroom";
    conf.tokens.keys = &key;
    conf.tokens.num_keys = 1;
    conf.tokens.signing_kid = "k1";
    conf.tokens.clock_skew_ms = 30000;
    conf.tokens.queue_token_ttl_ms = 86400000;
    return 0;
}

static char *sign(wr_token_type_t type, int64_t exp_s, const char *sub)
{
    wr_claims_t c = {.type = type, .q = type == WR_TOKEN_QUEUE ? 7 : 0, .iat = now / 1000, .nbf = now / 1000,
                     .exp = exp_s};
    char *tok = NULL;
    snprintf(c.sub, sizeof(c.sub), "%s", sub);
    snprintf(c.aud, sizeof(c.aud), "booking");
    assert_int_equal(wr_token_sign(&conf, &c, &tok), WR_OK);
    return tok;
}

static void test_hit_gives_the_same_claims(void **state)
{
    wr_verify_cache_t *c = wr_verify_cache_new(&conf, 4);
    char *tok = sign(WR_TOKEN_QUEUE, now / 1000 + 600, "0123456789abcdef0123456789abcdef");
    wr_claims_t a, b;
    assert_int_equal(wr_verify_cached(c, tok, strlen(tok), now, 60000, &a), WR_TOKEN_VALID);
    assert_int_equal(wr_verify_cached(c, tok, strlen(tok), now + 1000, 60000, &b), WR_TOKEN_VALID);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_int_equal(b.q, 7);
    free(tok);
    wr_verify_cache_free(c);
}

static void test_same_slot_other_bytes_is_verified_afresh(void **state)
{
    /* One slot: every token lands in it. */
    wr_verify_cache_t *c = wr_verify_cache_new(&conf, 0);
    char *tok = sign(WR_TOKEN_QUEUE, now / 1000 + 600, "0123456789abcdef0123456789abcdef");
    char *forged = strdup(tok);
    wr_claims_t out;
    size_t n = strlen(tok);
    assert_int_equal(wr_verify_cached(c, tok, n, now, 60000, &out), WR_TOKEN_VALID);
    /* Change one payload character: same length, same signature, same slot. */
    size_t dot = strchr(forged, '.') - forged;
    forged[dot + 5] = forged[dot + 5] == 'A' ? 'B' : 'A';
    assert_int_not_equal(wr_verify_cached(c, forged, n, now, 60000, &out), WR_TOKEN_VALID);
    /* A prefix of the cached token is not a hit either. */
    assert_int_not_equal(wr_verify_cached(c, tok, n - 1, now, 60000, &out), WR_TOKEN_VALID);
    /* The real one still verifies (cached or not). */
    assert_int_equal(wr_verify_cached(c, tok, n, now, 60000, &out), WR_TOKEN_VALID);
    free(tok);
    free(forged);
    wr_verify_cache_free(c);
}

static void test_expiry_is_not_cached_away(void **state)
{
    wr_verify_cache_t *c = wr_verify_cache_new(&conf, 4);
    int64_t exp_s = now / 1000 + 10;
    char *tok = sign(WR_TOKEN_ADMISSION, exp_s, "fedcba9876543210fedcba9876543210");
    wr_claims_t out;
    assert_int_equal(wr_verify_cached(c, tok, strlen(tok), now, 60000, &out), WR_TOKEN_VALID);
    /* Valid up to exp + skew, exactly as wr_token_verify says. */
    assert_int_equal(wr_verify_cached(c, tok, strlen(tok), exp_s * 1000 + 29999, 60000, &out), WR_TOKEN_VALID);
    assert_int_equal(wr_verify_cached(c, tok, strlen(tok), exp_s * 1000 + 30000, 60000, &out), WR_TOKEN_EXPIRED);
    assert_int_equal(wr_token_verify(&conf, tok, strlen(tok), exp_s * 1000 + 30000, 60000, &out), WR_TOKEN_EXPIRED);
    free(tok);
    wr_verify_cache_free(c);
}

static void test_shorter_session_bound_is_checked_again(void **state)
{
    wr_verify_cache_t *c = wr_verify_cache_new(&conf, 4);
    char *tok = sign(WR_TOKEN_ADMISSION, now / 1000 + 300, "00112233445566778899aabbccddeeff");
    wr_claims_t out;
    assert_int_equal(wr_verify_cached(c, tok, strlen(tok), now, 600000, &out), WR_TOKEN_VALID);
    /* A room whose sessions last 60 s cannot accept a token that runs 300 s. */
    assert_int_equal(wr_verify_cached(c, tok, strlen(tok), now, 60000, &out), WR_TOKEN_BAD_LIFETIME);
    free(tok);
    wr_verify_cache_free(c);
}

static void test_invalid_tokens_are_never_cached(void **state)
{
    wr_verify_cache_t *c = wr_verify_cache_new(&conf, 0);
    wr_claims_t out;
    for (int i = 0; i < 3; i++)
        assert_int_equal(wr_verify_cached(c, "a.b.c", 5, now, 60000, &out), WR_TOKEN_MALFORMED);
    assert_int_equal(wr_verify_cached(c, "", 0, now, 60000, &out), WR_TOKEN_MALFORMED);
    wr_verify_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_gives_the_same_claims),
        cmocka_unit_test(test_same_slot_other_bytes_is_verified_afresh),
        cmocka_unit_test(test_expiry_is_not_cached_away),
        cmocka_unit_test(test_shorter_session_bound_is_checked_again),
        cmocka_unit_test(test_invalid_tokens_are_never_cached),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
