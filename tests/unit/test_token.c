/*
 * test_token.c: unit tests for lib/token.c, one named test per item of the
 * token checklist in the field notes that this module owns.
 *
 * Tokens are forged here with our own base64url encoder and OpenSSL's HMAC,
 * not with libjwt, so that every case is exactly the bytes it claims to be
 * (libjwt would refuse to produce most of them). The configuration is built
 * by hand: issuer "waitroom", keys k1 and k2 with 40-byte secrets, 30 s of
 * clock skew, queue tokens living 24 h. Time is fixed (NOW), never read.
 *
 * wr_config_key lives in lib/config.c. A standalone build made before that
 * file existed could define WR_TOKEN_TEST_CONFIG_STUB to get a stand-in with
 * the documented semantics (exact length and bytes); the real build links
 * the real one.
 *
 * Checklist item 4 (secrets of at least 256 bits, weaker keys refused at
 * start-up) is lib/config.c's; token.c only repeats the refusal defensively,
 * which test_weak_or_empty_key_is_never_used shows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "common.h"
#include "config.h"
#include "token.h"

#define NOW 1700000000LL
#define NOW_MS (NOW * 1000)
#define SKEW_MS 30000
#define QUEUE_TTL_MS (24LL * 3600 * 1000)
#define ADMISSION_MS (15LL * 60 * 1000)
#define UID "0123456789abcdef0123456789abcdef"
#define ROOM "sale"

/* Shows both reason names when a check fails, which "5 != 3" would not. */
#define assert_reason(got, want) assert_string_equal(wr_token_reason(got), wr_token_reason(want))

static unsigned char k1_secret[] = "k1-secret-for-tests-0123456789-abcdefgh";
static unsigned char k2_secret[] = "k2-secret-for-tests-9876543210-ijklmnop";

static wr_key_t keys[2];
static wr_config_t conf;

#ifdef WR_TOKEN_TEST_CONFIG_STUB
const wr_key_t *wr_config_key(const wr_config_t *c, const char *kid, size_t len)
{
    for (size_t i = 0; i < c->tokens.num_keys; i++)
        if (strlen(c->tokens.keys[i].kid) == len && memcmp(c->tokens.keys[i].kid, kid, len) == 0)
            return &c->tokens.keys[i];
    return NULL;
}
#endif

static int setup(void **state)
{
    (void)state;
    memset(&conf, 0, sizeof(conf));
    keys[0] = (wr_key_t){.kid = "k1", .secret = k1_secret, .secret_len = sizeof(k1_secret) - 1};
    keys[1] = (wr_key_t){.kid = "k2", .secret = k2_secret, .secret_len = sizeof(k2_secret) - 1};
    conf.tokens.issuer = "waitroom";
    conf.tokens.keys = keys;
    conf.tokens.num_keys = 2;
    conf.tokens.signing_kid = "k1";
    conf.tokens.clock_skew_ms = SKEW_MS;
    conf.tokens.queue_token_ttl_ms = QUEUE_TTL_MS;
    return 0;
}

/* ---- forging helpers ---- */

static size_t b64url_encode(const void *in, size_t len, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/*
 * "B64(hdr).B64(pay).B64(HMAC-SHA256(key, first two))", malloc'd; the caller
 * frees. With key NULL the token ends with an empty signature: "h.p.".
 */
static char *forge_raw(const void *hdr, size_t hlen, const void *pay, size_t plen, const void *key, size_t klen)
{
    size_t cap = (hlen + plen) * 4 / 3 + 128;
    char *t = malloc(cap);
    size_t n;
    assert_non_null(t);
    n = b64url_encode(hdr, hlen, t);
    t[n++] = '.';
    n += b64url_encode(pay, plen, t + n);
    if (key != NULL) {
        unsigned char mac[32];
        unsigned int mlen = 0;
        assert_non_null(HMAC(EVP_sha256(), key, (int)klen, (unsigned char *)t, n, mac, &mlen));
        assert_int_equal(mlen, 32);
        t[n++] = '.';
        n += b64url_encode(mac, mlen, t + n);
    } else {
        t[n++] = '.';
        t[n] = '\0';
    }
    return t;
}

static char *forge(const char *hdr, const char *pay, const void *key, size_t klen)
{
    return forge_raw(hdr, strlen(hdr), pay, strlen(pay), key, klen);
}

#define K1 k1_secret, (sizeof(k1_secret) - 1)
#define K2 k2_secret, (sizeof(k2_secret) - 1)
#define HDR_K1 "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}"
#define HDR_K2 "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k2\"}"

/* The claims a well-formed token of type typ carries at NOW; tests then spoil one. Caller owns the result. */
static json_t *base_claims(const char *typ)
{
    json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "iss", "waitroom", "sub", UID, "aud", ROOM, "typ", typ,
                          "iat", (json_int_t)NOW, "nbf", (json_int_t)NOW, "exp", (json_int_t)(NOW + 600));
    assert_non_null(c);
    if (strcmp(typ, "queue") == 0)
        json_object_set_new(c, "q", json_integer(7));
    return c;
}

/* base_claims(typ) as compact JSON; the caller frees. */
static char *payload_of(const char *typ)
{
    json_t *c = base_claims(typ);
    char *s = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    assert_non_null(s);
    return s;
}

static wr_token_result_t verify_str(const char *tok, wr_claims_t *out)
{
    wr_claims_t scratch;
    return wr_token_verify(&conf, tok, strlen(tok), NOW_MS, ADMISSION_MS, out ? out : &scratch);
}

/* Signs claims (stolen) with k1 under a correct header and verifies the result at NOW. */
static wr_token_result_t verify_claims(json_t *claims, wr_claims_t *out)
{
    char *pay = json_dumps(claims, JSON_COMPACT);
    char *tok;
    wr_token_result_t r;
    assert_non_null(pay);
    tok = forge(HDR_K1, pay, K1);
    r = verify_str(tok, out);
    free(tok);
    free(pay);
    json_decref(claims);
    return r;
}

/* base_claims(typ) with claim name set to val (stolen), or removed when val is NULL. */
static wr_token_result_t verify_with(const char *typ, const char *name, json_t *val)
{
    json_t *c = base_claims(typ);
    if (val != NULL)
        json_object_set_new(c, name, val);
    else
        json_object_del(c, name);
    return verify_claims(c, NULL);
}

static char *pem_of(EVP_PKEY *pkey, int private)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out;
    long len;
    assert_non_null(bio);
    if (private)
        assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    len = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)len + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
    BIO_free(bio);
    return out;
}

/* ---- basics ---- */

static void test_reason_strings(void **state)
{
    (void)state;
    assert_string_equal(wr_token_reason(WR_TOKEN_VALID), "valid");
    assert_string_equal(wr_token_reason(WR_TOKEN_MALFORMED), "malformed");
    assert_string_equal(wr_token_reason(WR_TOKEN_BAD_ALG), "bad_alg");
    assert_string_equal(wr_token_reason(WR_TOKEN_UNKNOWN_KID), "unknown_kid");
    assert_string_equal(wr_token_reason(WR_TOKEN_BAD_SIGNATURE), "bad_signature");
    assert_string_equal(wr_token_reason(WR_TOKEN_EXPIRED), "expired");
    assert_string_equal(wr_token_reason(WR_TOKEN_NOT_YET_VALID), "not_yet_valid");
    assert_string_equal(wr_token_reason(WR_TOKEN_BAD_LIFETIME), "bad_lifetime");
    assert_string_equal(wr_token_reason(WR_TOKEN_BAD_CLAIM), "bad_claim");
    assert_string_equal(wr_token_reason(WR_TOKEN_BAD_ISSUER), "bad_issuer");
    assert_string_equal(wr_token_reason(WR_TOKEN_BAD_AUDIENCE), "bad_audience");
    assert_string_equal(wr_token_reason(WR_TOKEN_BAD_TYPE), "bad_type");
    assert_string_equal(wr_token_reason((wr_token_result_t)999), "unknown");
}

static void test_roundtrip_queue(void **state)
{
    (void)state;
    wr_claims_t in = {
        .type = WR_TOKEN_QUEUE, .sub = UID, .aud = ROOM, .q = 123456, .iat = NOW, .nbf = NOW - 5, .exp = NOW + 3600};
    wr_claims_t out;
    char *tok = NULL;
    assert_int_equal(wr_token_sign(&conf, &in, &tok), WR_OK);
    assert_non_null(tok);
    assert_true(strlen(tok) <= WR_TOKEN_MAX);
    memset(&out, 0x55, sizeof(out));
    assert_reason(verify_str(tok, &out), WR_TOKEN_VALID);
    assert_int_equal(out.type, WR_TOKEN_QUEUE);
    assert_string_equal(out.sub, UID);
    assert_string_equal(out.aud, ROOM);
    assert_int_equal(out.q, 123456);
    assert_int_equal(out.iat, NOW);
    assert_int_equal(out.nbf, NOW - 5);
    assert_int_equal(out.exp, NOW + 3600);
    free(tok); /* the contract: plain free() */
}

static void test_roundtrip_admission(void **state)
{
    (void)state;
    wr_claims_t in = {
        .type = WR_TOKEN_ADMISSION, .sub = UID, .aud = "room_2-b", .q = 99, .iat = NOW, .nbf = NOW, .exp = NOW + 900};
    wr_claims_t out;
    char *tok = NULL;
    jwt_t *jwt = NULL;
    assert_int_equal(wr_token_sign(&conf, &in, &tok), WR_OK);
    assert_reason(verify_str(tok, &out), WR_TOKEN_VALID);
    assert_int_equal(out.type, WR_TOKEN_ADMISSION);
    assert_string_equal(out.sub, UID);
    assert_string_equal(out.aud, "room_2-b");
    assert_int_equal(out.q, 0); /* no q in an admission token */
    assert_int_equal(out.iat, NOW);
    assert_int_equal(out.nbf, NOW);
    assert_int_equal(out.exp, NOW + 900);

    /* What was written, read back independently: the grants and the kid header. */
    assert_int_equal(jwt_decode(&jwt, tok, K1), 0);
    assert_string_equal(jwt_get_header(jwt, "kid"), "k1");
    assert_string_equal(jwt_get_grant(jwt, "typ"), "admission");
    assert_string_equal(jwt_get_grant(jwt, "iss"), "waitroom");
    assert_null(jwt_get_grants_json(jwt, "q"));
    jwt_free(jwt);
    free(tok);
}

static void test_sign_refuses_bad_input(void **state)
{
    (void)state;
    wr_claims_t ok = {.type = WR_TOKEN_QUEUE, .sub = UID, .aud = ROOM, .q = 1, .iat = NOW, .nbf = NOW, .exp = NOW + 60};
    wr_claims_t c;
    char *tok = (char *)"unchanged";

    c = ok;
    c.q = 0;
    assert_int_equal(wr_token_sign(&conf, &c, &tok), WR_ERROR);
    assert_null(tok);
    c = ok;
    c.type = (wr_token_type_t)3;
    assert_int_equal(wr_token_sign(&conf, &c, &tok), WR_ERROR);
    c = ok;
    strcpy(c.sub, "0123456789ABCDEF0123456789ABCDEF");
    assert_int_equal(wr_token_sign(&conf, &c, &tok), WR_ERROR);
    c = ok;
    c.aud[0] = '\0';
    assert_int_equal(wr_token_sign(&conf, &c, &tok), WR_ERROR);
    c = ok;
    memset(c.aud, 'a', sizeof(c.aud)); /* not terminated: strnlen sees 65 */
    assert_int_equal(wr_token_sign(&conf, &c, &tok), WR_ERROR);

    conf.tokens.signing_kid = "nope";
    assert_int_equal(wr_token_sign(&conf, &ok, &tok), WR_ERROR);
    conf.tokens.signing_kid = "k1";
    assert_int_equal(wr_token_sign(&conf, &ok, &tok), WR_OK);
    free(tok);
}

static void test_forged_baseline_verifies(void **state)
{
    (void)state;
    /* If the forger were wrong, every rejection below would prove nothing. */
    assert_reason(verify_claims(base_claims("queue"), NULL), WR_TOKEN_VALID);
    assert_reason(verify_claims(base_claims("admission"), NULL), WR_TOKEN_VALID);
    /* typ in the header is optional. */
    {
        char *pay = payload_of("queue");
        char *tok = forge("{\"alg\":\"HS256\",\"kid\":\"k1\"}", pay, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_VALID);
        free(tok);
        free(pay);
    }
}

static void test_token_need_not_be_nul_terminated(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    char *tok = forge(HDR_K1, pay, K1);
    size_t len = strlen(tok);
    char *buf = malloc(len); /* exactly len bytes: ASan would see any read past the end */
    assert_non_null(buf);
    memcpy(buf, tok, len);
    assert_reason(wr_token_verify(&conf, buf, len, NOW_MS, ADMISSION_MS, &(wr_claims_t){0}), WR_TOKEN_VALID);
    /* A length one short is a different token. */
    assert_true(wr_token_verify(&conf, buf, len - 1, NOW_MS, ADMISSION_MS, &(wr_claims_t){0}) != WR_TOKEN_VALID);
    free(buf);
    free(tok);
    free(pay);
}

/* ---- checklist 1: alg none in any spelling, stripped signatures ---- */

static void test_alg_none_all_spellings(void **state)
{
    (void)state;
    static const char *spellings[] = {"none", "None", "NONE", "nOnE"};
    static const char *kids[] = {NULL, "k1", "k2", "zz"};
    char *pay = payload_of("queue");
    for (size_t s = 0; s < WR_ARRAY_SIZE(spellings); s++) {
        for (size_t k = 0; k < WR_ARRAY_SIZE(kids); k++) {
            char hdr[128];
            char *tok, *two;
            if (kids[k])
                snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", spellings[s], kids[k]);
            else
                snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", spellings[s]);

            /* "h.p.": the empty signature an alg=none token carries. */
            tok = forge(hdr, pay, NULL, 0);
            assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
            /* "h.p": no third segment at all. */
            two = strdup(tok);
            two[strlen(two) - 1] = '\0';
            assert_reason(verify_str(two, NULL), WR_TOKEN_MALFORMED);
            free(two);
            free(tok);

            /* With a signature present (even a correct HMAC with k1), alg decides: refused. */
            tok = forge(hdr, pay, K1);
            assert_reason(verify_str(tok, NULL), WR_TOKEN_BAD_ALG);
            free(tok);
        }
    }
    free(pay);
}

static void test_alg_not_exactly_hs256(void **state)
{
    (void)state;
    static const char *algs[] = {"\"\"",       "\"hs256\"", "\"Hs256\"",   "\"HS256 \"",       "\" HS256\"",
                                 "\"HS2560\"", "\"HS25\"",  "\"HS384\"",   "\"HS512\"",        "\"RS256\"",
                                 "\"ES256\"",  "\"PS256\"", "\"EdDSA\"",   "\"HS256\\u0000\"", "null",
                                 "256",        "true",      "[\"HS256\"]", "{\"HS256\":1}",    "\"HS\\u0032\\u00356\""};
    char *pay = payload_of("queue");
    for (size_t i = 0; i < WR_ARRAY_SIZE(algs); i++) {
        char hdr[128];
        char *tok;
        snprintf(hdr, sizeof(hdr), "{\"alg\":%s,\"typ\":\"JWT\",\"kid\":\"k1\"}", algs[i]);
        tok = forge(hdr, pay, K1);
        /* The last one is "HS256" spelled with escapes: the JSON value is HS256, and that is what counts. */
        if (i == WR_ARRAY_SIZE(algs) - 1)
            assert_reason(verify_str(tok, NULL), WR_TOKEN_VALID);
        else
            assert_reason(verify_str(tok, NULL), WR_TOKEN_BAD_ALG);
        free(tok);
    }
    /* No alg at all. */
    {
        char *tok = forge("{\"typ\":\"JWT\",\"kid\":\"k1\"}", pay, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_BAD_ALG);
        free(tok);
    }
    free(pay);
}

/* ---- checklist 2: algorithm confusion ---- */

static void confusion_with(EVP_PKEY *pkey)
{
    char *pub = pem_of(pkey, 0);
    char *pay = payload_of("queue");
    char *tok = forge(HDR_K1, pay, pub, strlen(pub));
    jwt_t *jwt = NULL;

    /* The trap, kept documented: libjwt given the public key accepts an HMAC made with it. */
    assert_int_equal(jwt_decode(&jwt, tok, (unsigned char *)pub, (int)strlen(pub)), 0);
    assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
    jwt_free(jwt);

    /* Ours: the HMAC key is the configured k1 secret, whatever the token hopes. */
    assert_reason(verify_str(tok, NULL), WR_TOKEN_BAD_SIGNATURE);
    free(tok);
    free(pay);
    free(pub);
}

static void test_alg_confusion_public_key_as_hmac_secret(void **state)
{
    (void)state;
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    assert_non_null(ec);
    assert_non_null(rsa);
    confusion_with(ec);
    confusion_with(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* Real RS256 and ES256 tokens, correctly signed by libjwt, carrying a configured kid. */
static void asymmetric_token_refused(EVP_PKEY *pkey, jwt_alg_t alg)
{
    char *priv = pem_of(pkey, 1);
    char *pub = pem_of(pkey, 0);
    jwt_t *jwt = NULL, *back = NULL;
    char *tok;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (unsigned char *)priv, (int)strlen(priv)), 0);
    assert_int_equal(jwt_add_header(jwt, "kid", "k1"), 0);
    assert_int_equal(jwt_add_grants_json(jwt, "{\"iss\":\"waitroom\",\"sub\":\"" UID "\",\"aud\":\"sale\","
                                              "\"typ\":\"queue\",\"iat\":1700000000,\"exp\":1700000600,\"q\":1}"),
                     0);
    tok = jwt_encode_str(jwt);
    assert_non_null(tok);
    /* It is a genuinely valid token for its own algorithm... */
    assert_int_equal(jwt_decode(&back, tok, (unsigned char *)pub, (int)strlen(pub)), 0);
    jwt_free(back);
    /* ...and still not one of ours. */
    assert_reason(verify_str(tok, NULL), WR_TOKEN_BAD_ALG);
    free(tok);
    jwt_free(jwt);
    free(priv);
    free(pub);
}

static void test_rs256_es256_tokens_bad_alg(void **state)
{
    (void)state;
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    assert_non_null(ec);
    assert_non_null(rsa);
    asymmetric_token_refused(ec, JWT_ALG_ES256);
    asymmetric_token_refused(rsa, JWT_ALG_RS256);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* ---- checklist 3: never a NULL or empty key ---- */

static void test_libjwt_null_key_trap(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    char *none = forge("{\"alg\":\"none\",\"kid\":\"k1\"}", pay, NULL, 0);
    char *wrong = forge(HDR_K1, pay, "not the key at all, not the key at all", 38);
    jwt_t *jwt = NULL;

    /* libjwt 1.10 with a NULL key: alg=none is accepted... */
    assert_int_equal(jwt_decode(&jwt, none, NULL, 0), 0);
    assert_int_equal(jwt_get_alg(jwt), JWT_ALG_NONE);
    jwt_free(jwt);
    jwt = NULL;
    /* ...and so is an HS256 token with a wrong signature: no check is made at all. */
    assert_int_equal(jwt_decode(&jwt, wrong, NULL, 0), 0);
    jwt_free(jwt);
    jwt = NULL;
    /* Given the key, libjwt does refuse both. */
    assert_int_not_equal(jwt_decode(&jwt, none, K1), 0);
    assert_null(jwt);
    assert_int_not_equal(jwt_decode(&jwt, wrong, K1), 0);
    assert_null(jwt);

    /* Ours refuses both, before libjwt is reached. */
    assert_reason(verify_str(none, NULL), WR_TOKEN_MALFORMED);
    assert_reason(verify_str(wrong, NULL), WR_TOKEN_BAD_SIGNATURE);
    free(none);
    free(wrong);
    free(pay);
}

static void test_kid_missing_rejected(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    char *tok = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", pay, K1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_UNKNOWN_KID);
    free(tok);
    /* With an empty key as the HMAC secret, too: there is nothing to select, so nothing verifies. */
    tok = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", pay, "", 0);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_UNKNOWN_KID);
    free(tok);
    free(pay);
}

static void test_kid_unknown_rejected(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    char *tok = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k3\"}", pay, K1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_UNKNOWN_KID);
    free(tok);
    tok = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k3\"}", pay, "", 0);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_UNKNOWN_KID);
    free(tok);
    free(pay);
}

static void test_weak_or_empty_key_is_never_used(void **state)
{
    (void)state;
    wr_key_t weak[3] = {
        {.kid = "short", .secret = (unsigned char *)"0123456789abcdef0123456789abcde", .secret_len = 31},
        {.kid = "empty", .secret = (unsigned char *)"", .secret_len = 0},
        {.kid = "null", .secret = NULL, .secret_len = 0},
    };
    wr_config_t c = conf;
    char *pay = payload_of("queue");
    wr_claims_t claims = {
        .type = WR_TOKEN_QUEUE, .sub = UID, .aud = ROOM, .q = 1, .iat = NOW, .nbf = NOW, .exp = NOW + 60};
    c.tokens.keys = weak;
    c.tokens.num_keys = WR_ARRAY_SIZE(weak);
    for (size_t i = 0; i < WR_ARRAY_SIZE(weak); i++) {
        char hdr[96];
        char *tok;
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", weak[i].kid);
        tok = forge(hdr, pay, weak[i].secret ? (const void *)weak[i].secret : "", weak[i].secret_len);
        assert_reason(wr_token_verify(&c, tok, strlen(tok), NOW_MS, ADMISSION_MS, &(wr_claims_t){0}),
                      WR_TOKEN_UNKNOWN_KID);
        free(tok);
        c.tokens.signing_kid = weak[i].kid;
        tok = (char *)"unchanged";
        assert_int_equal(wr_token_sign(&c, &claims, &tok), WR_ERROR);
        assert_null(tok);
    }
    free(pay);
}

/* ---- checklist 8: hostile kid values ---- */

static void test_kid_hostile_values(void **state)
{
    (void)state;
    static const char *kids[] = {
        "\"../../etc/passwd\"",
        "\"/etc/passwd\"",
        "\"k1\\u0000x\"",
        "\"k1\\u0000\"",
        "\"\"",
        "\"K1\"",
        "\"k1 \"",
        "\" k1\"",
        "\"k\"",
        "\"k1k1\"",
        "\"k1/\"",
        "\"%s\"",
        "\"\\u006b1\\n\"",
        "1",
        "0",
        "-1",
        "1.5",
        "true",
        "null",
        "[\"k1\"]",
        "[]",
        "{\"k1\":1}",
        "{}",
        "\"k1\\\\\"",
    };
    char *pay = payload_of("queue");
    for (size_t i = 0; i < WR_ARRAY_SIZE(kids); i++) {
        char hdr[160];
        char *tok;
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":%s}", kids[i]);
        tok = forge(hdr, pay, K1); /* signed with k1's real secret: only the kid is wrong */
        assert_reason(verify_str(tok, NULL), WR_TOKEN_UNKNOWN_KID);
        free(tok);
    }
    free(pay);
}

static void test_kid_huge_values(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    for (size_t n = 60; n <= 10000; n = n < 1000 ? n + 5 : n * 10) {
        size_t cap = n + 64;
        char *hdr = malloc(cap);
        char *tok;
        wr_token_result_t r;
        int off = snprintf(hdr, cap, "{\"alg\":\"HS256\",\"kid\":\"");
        memset(hdr + off, 'k', n);
        strcpy(hdr + off + n, "\"}");
        tok = forge(hdr, pay, K1);
        r = verify_str(tok, NULL);
        /* Up to the length limit the kid is looked up and not found; beyond it the token is too long to read. */
        if (strlen(tok) > WR_TOKEN_MAX)
            assert_reason(r, WR_TOKEN_MALFORMED);
        else
            assert_reason(r, WR_TOKEN_UNKNOWN_KID);
        free(tok);
        free(hdr);
    }
    free(pay);
}

static void test_kid_is_never_a_path(void **state)
{
    (void)state;
    /* A file holding a secret, named by the kid, and a token signed with that secret: still unknown. */
    char path[] = "/tmp/wr_test_token_kid_XXXXXX";
    const char file_secret[] = "a-secret-sitting-in-a-file-0123456789";
    char hdr[160];
    char *pay = payload_of("queue");
    char *tok;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, file_secret, sizeof(file_secret) - 1), (ssize_t)(sizeof(file_secret) - 1));
    close(fd);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", path);
    tok = forge(hdr, pay, file_secret, sizeof(file_secret) - 1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_UNKNOWN_KID);
    free(tok);
    tok = forge(hdr, pay, K1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_UNKNOWN_KID);
    free(tok);
    unlink(path);
    free(pay);
}

/* ---- key rotation and kid/key binding ---- */

static void test_key_rotation(void **state)
{
    (void)state;
    wr_claims_t in = {
        .type = WR_TOKEN_QUEUE, .sub = UID, .aud = ROOM, .q = 5, .iat = NOW, .nbf = NOW, .exp = NOW + 600};
    wr_claims_t out;
    char *old_tok = NULL, *new_tok = NULL;
    jwt_t *jwt = NULL;

    assert_int_equal(wr_token_sign(&conf, &in, &old_tok), WR_OK);
    conf.tokens.signing_kid = "k2";
    assert_int_equal(wr_token_sign(&conf, &in, &new_tok), WR_OK);

    /* Both verify while both keys are configured. */
    assert_reason(verify_str(old_tok, &out), WR_TOKEN_VALID);
    assert_int_equal(out.q, 5);
    assert_reason(verify_str(new_tok, &out), WR_TOKEN_VALID);

    /* The new one really is under k2. */
    assert_int_equal(jwt_decode(&jwt, new_tok, K2), 0);
    assert_string_equal(jwt_get_header(jwt, "kid"), "k2");
    jwt_free(jwt);

    /* Once k1 is retired, its tokens name an unknown key. */
    conf.tokens.keys = &keys[1];
    conf.tokens.num_keys = 1;
    assert_reason(verify_str(old_tok, NULL), WR_TOKEN_UNKNOWN_KID);
    assert_reason(verify_str(new_tok, NULL), WR_TOKEN_VALID);

    setup(NULL);
    free(old_tok);
    free(new_tok);
}

static void test_kid_names_another_key(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    /* Signed with k1's secret but claiming k2, and the other way round. */
    char *a = forge(HDR_K2, pay, K1);
    char *b = forge(HDR_K1, pay, K2);
    assert_reason(verify_str(a, NULL), WR_TOKEN_BAD_SIGNATURE);
    assert_reason(verify_str(b, NULL), WR_TOKEN_BAD_SIGNATURE);
    free(a);
    free(b);
    free(pay);
}

/* ---- signatures ---- */

static void test_bad_signature(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    char *tok = forge(HDR_K1, pay, K1);
    size_t len = strlen(tok);
    char *sig = strrchr(tok, '.') + 1;
    char *t;
    unsigned char raw[64];

    assert_int_equal(strlen(sig), 43);

    /* Every single bit of the 32 MAC bytes flipped in turn: refused, and refused by our comparison. */
    {
        unsigned char mac[32];
        unsigned int mlen = 0;
        size_t signed_len = (size_t)(sig - tok) - 1;
        assert_non_null(
            HMAC(EVP_sha256(), k1_secret, (int)(sizeof(k1_secret) - 1), (unsigned char *)tok, signed_len, mac, &mlen));
        for (size_t bit = 0; bit < 256; bit++) {
            mac[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            b64url_encode(mac, sizeof(mac), sig);
            assert_reason(verify_str(tok, NULL), WR_TOKEN_BAD_SIGNATURE);
            mac[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        }
        b64url_encode(mac, sizeof(mac), sig);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_VALID);
    }
    /*
     * The last character carries 4 data bits and 2 unused ones. Changing only
     * the unused bits would decode to the same 32 bytes: a second spelling of
     * the same token. The decoder refuses non-zero unused bits.
     */
    {
        char saved = sig[42];
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        int v = (int)(strchr(tbl, saved) - tbl);
        for (int low = 1; low < 4; low++) {
            sig[42] = tbl[(v & ~3) | low];
            assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        }
        sig[42] = saved;
    }
    assert_reason(verify_str(tok, NULL), WR_TOKEN_VALID);

    /* Signatures of the wrong length: 1, 31, 33 and 64 bytes (truncated, padded, or an HS512-sized MAC). */
    memset(raw, 0x42, sizeof(raw));
    for (size_t n = 0; n < 4; n++) {
        static const size_t lens[] = {1, 31, 33, 64};
        t = malloc(len + 128);
        memcpy(t, tok, (size_t)(sig - tok));
        b64url_encode(raw, lens[n], t + (sig - tok));
        assert_reason(verify_str(t, NULL), WR_TOKEN_BAD_SIGNATURE);
        free(t);
    }
    /* The right 32 bytes followed by one more: the length alone refuses it. */
    {
        unsigned char mac[33];
        unsigned int mlen = 0;
        assert_non_null(HMAC(EVP_sha256(), k1_secret, (int)(sizeof(k1_secret) - 1), (unsigned char *)tok,
                             (size_t)(sig - tok) - 1, mac, &mlen));
        mac[32] = 0;
        t = malloc(len + 8);
        memcpy(t, tok, (size_t)(sig - tok));
        b64url_encode(mac, sizeof(mac), t + (sig - tok));
        assert_reason(verify_str(t, NULL), WR_TOKEN_BAD_SIGNATURE);
        free(t);
    }
    free(tok);
    free(pay);
}

/*
 * A header or payload segment whose last character has non-zero unused bits
 * decodes to the same JSON as the canonical spelling. Correctly signed over
 * that spelling, it must still be refused, so that a token has one spelling
 * (libjwt's own decoder would accept it).
 */
static void test_noncanonical_base64_refused(void **state)
{
    (void)state;
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    /* Header and payload lengths chosen so that both segments end in a partial group (JSON of 3n+1 bytes). */
    static const char *const pads[] = {"", "x", "xx"};
    char hdr[64];
    json_t *c = base_claims("queue");
    char *pay;
    for (int pad = 0;; pad++) {
        assert_true(pad < 3);
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"k1\",\"p\":\"%s\"}", pads[pad]);
        if (strlen(hdr) % 3 == 1)
            break;
    }
    for (int pad = 0;; pad++) {
        assert_true(pad < 3);
        json_object_set_new(c, "p", json_string(pads[pad]));
        pay = json_dumps(c, JSON_COMPACT);
        if (strlen(pay) % 3 == 1)
            break;
        free(pay);
    }
    json_decref(c);
    for (int seg = 0; seg < 2; seg++) {
        char *tok = forge(hdr, pay, K1);
        char *dot1 = strchr(tok, '.');
        char *dot2 = strchr(dot1 + 1, '.');
        char *last = seg == 0 ? dot1 - 1 : dot2 - 1;
        int v = (int)(strchr(tbl, *last) - tbl);
        char *resigned;
        assert_reason(verify_str(tok, NULL), WR_TOKEN_VALID);
        /* A lone final character carries 2 data bits and 4 unused ones. */
        assert_int_equal(v & 15, 0);
        *last = tbl[v | 1];
        *dot2 = '\0';
        {
            /* Re-sign the altered text so only its spelling is wrong. */
            unsigned char mac[32];
            unsigned int mlen = 0;
            size_t n = strlen(tok);
            assert_non_null(
                HMAC(EVP_sha256(), k1_secret, (int)(sizeof(k1_secret) - 1), (unsigned char *)tok, n, mac, &mlen));
            resigned = malloc(n + 64);
            memcpy(resigned, tok, n);
            resigned[n] = '.';
            b64url_encode(mac, mlen, resigned + n + 1);
        }
        assert_reason(verify_str(resigned, NULL), WR_TOKEN_MALFORMED);
        free(resigned);
        free(tok);
    }
    /*
     * A segment of 4n+1 characters is never base64, even when the extra
     * character is all zero bits ('A') and the token is signed over it.
     */
    for (int pad = 0; pad < 3; pad++) {
        char h3[64];
        char *tok, *dot1, *t;
        size_t n;
        unsigned char mac[32];
        unsigned int mlen = 0;
        snprintf(h3, sizeof(h3), "{\"alg\":\"HS256\",\"kid\":\"k1\",\"p\":\"%s\"}", pads[pad]);
        if (strlen(h3) % 3 != 0)
            continue;
        tok = forge(h3, pay, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_VALID);
        dot1 = strchr(tok, '.');
        n = strlen(tok);
        t = malloc(n + 64);
        memcpy(t, tok, (size_t)(dot1 - tok));
        t[dot1 - tok] = 'A';
        memcpy(t + (dot1 - tok) + 1, dot1, (size_t)(strrchr(tok, '.') - dot1));
        n = (size_t)(strrchr(tok, '.') - tok) + 1; /* the signed part, now one longer */
        assert_int_equal((size_t)(strchr(t, '.') - t) % 4, 1);
        assert_non_null(HMAC(EVP_sha256(), k1_secret, (int)(sizeof(k1_secret) - 1), (unsigned char *)t, n, mac, &mlen));
        t[n] = '.';
        b64url_encode(mac, mlen, t + n + 1);
        assert_reason(verify_str(t, NULL), WR_TOKEN_MALFORMED);
        free(t);
        free(tok);
    }
    free(pay);
}

/* ---- checklist 5: exp ---- */

static void test_exp_required(void **state)
{
    (void)state;
    assert_reason(verify_with("queue", "exp", NULL), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("admission", "exp", NULL), WR_TOKEN_BAD_CLAIM);
}

static void test_exp_past_beyond_skew_rejected(void **state)
{
    (void)state;
    /* exp*1000 + skew <= now is expired: the boundary itself is expired, one second later is not. */
    assert_reason(verify_with("queue", "exp", json_integer(NOW - SKEW_MS / 1000)), WR_TOKEN_EXPIRED);
    assert_reason(verify_with("queue", "exp", json_integer(NOW - 3600)), WR_TOKEN_EXPIRED);
    assert_reason(verify_with("admission", "exp", json_integer(NOW - SKEW_MS / 1000 - 1)), WR_TOKEN_EXPIRED);
    assert_reason(verify_with("queue", "exp", json_integer(0)), WR_TOKEN_EXPIRED);
    assert_reason(verify_with("queue", "exp", json_integer(-1)), WR_TOKEN_EXPIRED);
    /* No overflow at the bottom either. */
    assert_reason(verify_with("queue", "exp", json_integer(INT64_MIN)), WR_TOKEN_EXPIRED);
    assert_reason(verify_with("queue", "exp", json_integer(INT64_MIN / 1000 - 1)), WR_TOKEN_EXPIRED);
}

static void test_exp_past_within_skew_accepted(void **state)
{
    (void)state;
    json_t *c;
    assert_reason(verify_with("queue", "exp", json_integer(NOW - SKEW_MS / 1000 + 1)), WR_TOKEN_VALID);
    c = base_claims("admission");
    json_object_set_new(c, "iat", json_integer(NOW - 100));
    json_object_set_new(c, "nbf", json_integer(NOW - 100));
    json_object_set_new(c, "exp", json_integer(NOW - 10));
    assert_reason(verify_claims(c, NULL), WR_TOKEN_VALID);
}

static void test_exp_too_far_in_future_rejected(void **state)
{
    (void)state;
    int64_t qmax = NOW + (QUEUE_TTL_MS + SKEW_MS) / 1000;
    int64_t amax = NOW + (ADMISSION_MS + SKEW_MS) / 1000;
    /* Queue tokens: bounded by the configured TTL plus skew. */
    assert_reason(verify_with("queue", "exp", json_integer(qmax)), WR_TOKEN_VALID);
    assert_reason(verify_with("queue", "exp", json_integer(qmax + 1)), WR_TOKEN_BAD_LIFETIME);
    /* Admission tokens: bounded by what the caller passes (the session), not by the queue TTL. */
    assert_reason(verify_with("admission", "exp", json_integer(amax)), WR_TOKEN_VALID);
    assert_reason(verify_with("admission", "exp", json_integer(amax + 1)), WR_TOKEN_BAD_LIFETIME);
    assert_reason(verify_with("admission", "exp", json_integer(qmax)), WR_TOKEN_BAD_LIFETIME);
    /* Huge values saturate instead of wrapping into the past. */
    assert_reason(verify_with("queue", "exp", json_integer(INT64_MAX)), WR_TOKEN_BAD_LIFETIME);
    assert_reason(verify_with("admission", "exp", json_integer(INT64_MAX / 1000 + 1)), WR_TOKEN_BAD_LIFETIME);
    assert_reason(verify_with("queue", "exp", json_integer(9223372036854775LL)), WR_TOKEN_BAD_LIFETIME);
    assert_reason(verify_with("queue", "exp", json_integer(99999999999LL)), WR_TOKEN_BAD_LIFETIME);
}

static void test_exp_non_numeric_rejected(void **state)
{
    (void)state;
    static const char *const types[] = {"queue", "admission"};
    for (size_t i = 0; i < 2; i++) {
        assert_reason(verify_with(types[i], "exp", json_string("9999999999")), WR_TOKEN_BAD_CLAIM);
        assert_reason(verify_with(types[i], "exp", json_string("1700000600")), WR_TOKEN_BAD_CLAIM);
        assert_reason(verify_with(types[i], "exp", json_real(1.5)), WR_TOKEN_BAD_CLAIM);
        assert_reason(verify_with(types[i], "exp", json_real((double)(NOW + 600))), WR_TOKEN_BAD_CLAIM);
        assert_reason(verify_with(types[i], "exp", json_true()), WR_TOKEN_BAD_CLAIM);
        assert_reason(verify_with(types[i], "exp", json_false()), WR_TOKEN_BAD_CLAIM);
        assert_reason(verify_with(types[i], "exp", json_null()), WR_TOKEN_BAD_CLAIM);
        assert_reason(verify_with(types[i], "exp", json_array()), WR_TOKEN_BAD_CLAIM);
        assert_reason(verify_with(types[i], "exp", json_object()), WR_TOKEN_BAD_CLAIM);
    }
    /* An integer too big for JSON parsing at all is a malformed payload. */
    {
        char *tok = forge(HDR_K1,
                          "{\"iss\":\"waitroom\",\"sub\":\"" UID "\",\"aud\":\"sale\",\"typ\":\"queue\",\"q\":1,"
                          "\"iat\":1700000000,\"exp\":99999999999999999999999}",
                          K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        free(tok);
    }
}

/* ---- checklist 6: nbf and iat ---- */

static void test_nbf_iat_future_beyond_skew_rejected(void **state)
{
    (void)state;
    int64_t edge = NOW + SKEW_MS / 1000; /* nbf*1000 > now + skew is refused: the edge itself is fine */
    assert_reason(verify_with("queue", "nbf", json_integer(edge + 1)), WR_TOKEN_NOT_YET_VALID);
    assert_reason(verify_with("admission", "nbf", json_integer(edge + 3600)), WR_TOKEN_NOT_YET_VALID);
    assert_reason(verify_with("queue", "iat", json_integer(edge + 1)), WR_TOKEN_NOT_YET_VALID);
    assert_reason(verify_with("admission", "iat", json_integer(edge + 3600)), WR_TOKEN_NOT_YET_VALID);
    assert_reason(verify_with("queue", "nbf", json_integer(INT64_MAX)), WR_TOKEN_NOT_YET_VALID);
    assert_reason(verify_with("queue", "iat", json_integer(INT64_MAX)), WR_TOKEN_NOT_YET_VALID);
}

static void test_nbf_iat_future_within_skew_accepted(void **state)
{
    (void)state;
    int64_t edge = NOW + SKEW_MS / 1000;
    json_t *c;
    assert_reason(verify_with("queue", "nbf", json_integer(edge)), WR_TOKEN_VALID);
    assert_reason(verify_with("queue", "iat", json_integer(edge)), WR_TOKEN_VALID);
    assert_reason(verify_with("admission", "nbf", json_integer(NOW + 1)), WR_TOKEN_VALID);
    c = base_claims("admission");
    json_object_set_new(c, "iat", json_integer(edge));
    json_object_set_new(c, "nbf", json_integer(edge));
    assert_reason(verify_claims(c, NULL), WR_TOKEN_VALID);
}

static void test_nbf_optional_iat_required_both_typed(void **state)
{
    (void)state;
    wr_claims_t out;
    json_t *c = base_claims("queue");
    json_object_del(c, "nbf");
    assert_reason(verify_claims(c, &out), WR_TOKEN_VALID);
    assert_int_equal(out.nbf, 0);
    assert_reason(verify_with("queue", "iat", NULL), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "iat", json_string("1700000000")), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "iat", json_real(1.0)), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "nbf", json_string("1700000000")), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "nbf", json_true()), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "nbf", json_null()), WR_TOKEN_BAD_CLAIM);
}

/* ---- checklist 7: iss, typ, aud ---- */

static void test_wrong_issuer_rejected(void **state)
{
    (void)state;
    assert_reason(verify_with("queue", "iss", json_string("evil")), WR_TOKEN_BAD_ISSUER);
    assert_reason(verify_with("queue", "iss", json_string("Waitroom")), WR_TOKEN_BAD_ISSUER);
    assert_reason(verify_with("queue", "iss", json_string("waitroomx")), WR_TOKEN_BAD_ISSUER);
    assert_reason(verify_with("queue", "iss", json_string("waitroo")), WR_TOKEN_BAD_ISSUER);
    assert_reason(verify_with("queue", "iss", json_string("")), WR_TOKEN_BAD_ISSUER);
    assert_reason(verify_with("admission", "iss", NULL), WR_TOKEN_BAD_ISSUER);
    assert_reason(verify_with("admission", "iss", json_integer(1)), WR_TOKEN_BAD_ISSUER);
    assert_reason(verify_with("admission", "iss", json_pack("[s]", "waitroom")), WR_TOKEN_BAD_ISSUER);
}

static void test_bad_type_rejected(void **state)
{
    (void)state;
    wr_claims_t out;
    assert_reason(verify_with("queue", "typ", json_string("Queue")), WR_TOKEN_BAD_TYPE);
    assert_reason(verify_with("queue", "typ", json_string("queue ")), WR_TOKEN_BAD_TYPE);
    assert_reason(verify_with("queue", "typ", json_string("admin")), WR_TOKEN_BAD_TYPE);
    assert_reason(verify_with("queue", "typ", json_string("")), WR_TOKEN_BAD_TYPE);
    assert_reason(verify_with("queue", "typ", json_integer(1)), WR_TOKEN_BAD_TYPE);
    assert_reason(verify_with("queue", "typ", NULL), WR_TOKEN_BAD_TYPE);

    /* The type is reported, so a caller that needs an admission can refuse a queue token. */
    assert_reason(verify_claims(base_claims("queue"), &out), WR_TOKEN_VALID);
    assert_int_equal(out.type, WR_TOKEN_QUEUE);
    assert_reason(verify_claims(base_claims("admission"), &out), WR_TOKEN_VALID);
    assert_int_equal(out.type, WR_TOKEN_ADMISSION);
}

static void test_header_typ_must_be_jwt(void **state)
{
    (void)state;
    static const char *typs[] = {"\"jwt\"", "\"JWS\"", "\"at+jwt\"", "\"\"", "1", "null", "[\"JWT\"]"};
    char *pay = payload_of("queue");
    for (size_t i = 0; i < WR_ARRAY_SIZE(typs); i++) {
        char hdr[128];
        char *tok;
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":%s,\"kid\":\"k1\"}", typs[i]);
        tok = forge(hdr, pay, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        free(tok);
    }
    free(pay);
}

static void test_aud_returned_for_caller(void **state)
{
    (void)state;
    wr_claims_t out;
    char longest[WR_NAME_MAX + 2];
    /* Any room name verifies here: comparing it with the expected room is the caller's job. */
    assert_reason(verify_with("admission", "aud", json_string("other-room")), WR_TOKEN_VALID);
    {
        json_t *c = base_claims("queue");
        json_object_set_new(c, "aud", json_string("other-room"));
        assert_reason(verify_claims(c, &out), WR_TOKEN_VALID);
        assert_string_equal(out.aud, "other-room");
        assert_true(strcmp(out.aud, ROOM) != 0); /* what the caller turns into BAD_AUDIENCE */
    }
    memset(longest, 'r', WR_NAME_MAX);
    longest[WR_NAME_MAX] = '\0';
    {
        json_t *c = base_claims("queue");
        json_object_set_new(c, "aud", json_string(longest));
        assert_reason(verify_claims(c, &out), WR_TOKEN_VALID);
        assert_string_equal(out.aud, longest);
    }
    longest[WR_NAME_MAX] = 'r';
    longest[WR_NAME_MAX + 1] = '\0';
    assert_reason(verify_with("queue", "aud", json_string(longest)), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "aud", json_string("")), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "aud", NULL), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "aud", json_pack("[s]", ROOM)), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "aud", json_integer(7)), WR_TOKEN_BAD_CLAIM);
}

static void test_sub_must_be_uid(void **state)
{
    (void)state;
    assert_reason(verify_with("queue", "sub", json_string("0123456789ABCDEF0123456789ABCDEF")), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "sub", json_string("0123456789abcdef0123456789abcde")), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "sub", json_string(UID "0")), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "sub", json_string("../../../../../../../../etc/passwd")), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "sub", json_integer(1)), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("admission", "sub", NULL), WR_TOKEN_BAD_CLAIM);
}

static void test_q_required_for_queue_tokens(void **state)
{
    (void)state;
    wr_claims_t out;
    json_t *c;
    assert_reason(verify_with("queue", "q", NULL), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "q", json_integer(0)), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "q", json_integer(-5)), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "q", json_string("7")), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "q", json_real(7.0)), WR_TOKEN_BAD_CLAIM);
    assert_reason(verify_with("queue", "q", json_integer(1)), WR_TOKEN_VALID);
    c = base_claims("queue");
    json_object_set_new(c, "q", json_integer(INT64_MAX));
    assert_reason(verify_claims(c, &out), WR_TOKEN_VALID);
    assert_int_equal(out.q, INT64_MAX);
    /* An admission token needs none, and reports 0. */
    assert_reason(verify_claims(base_claims("admission"), &out), WR_TOKEN_VALID);
    assert_int_equal(out.q, 0);
}

/* ---- checklist 9: malformed input ---- */

static void test_malformed_shapes(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    char *good = forge(HDR_K1, pay, K1);
    const char *d1 = strchr(good, '.');
    const char *d2 = strrchr(good, '.');
    char h[1024], p[1024], s[64];
    char buf[4096];
    static const char *fixed[] = {"",     ".",    "..",   "...",           "a",      "a.b",    "a.b.c.d", "a..c",
                                  ".b.c", "a.b.", "....", "eyJ.eyJ.AAAA.", " a.b.c", "a.b.c ", "a.b.c\n"};

    assert_reason(verify_str(good, NULL), WR_TOKEN_VALID);
    snprintf(h, sizeof(h), "%.*s", (int)(d1 - good), good);
    snprintf(p, sizeof(p), "%.*s", (int)(d2 - d1 - 1), d1 + 1);
    snprintf(s, sizeof(s), "%s", d2 + 1);

    for (size_t i = 0; i < WR_ARRAY_SIZE(fixed); i++)
        assert_reason(verify_str(fixed[i], NULL), WR_TOKEN_MALFORMED);

    /* Segment counts 1, 2 and 4 built from the good token's parts; empty segments. */
    assert_reason(verify_str(h, NULL), WR_TOKEN_MALFORMED);
    snprintf(buf, sizeof(buf), "%s.%s", h, p);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);
    snprintf(buf, sizeof(buf), "%s.%s.%s.%s", h, p, s, s);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);
    snprintf(buf, sizeof(buf), "%s.%s.%s.", h, p, s);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);
    snprintf(buf, sizeof(buf), ".%s.%s.%s", h, p, s);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);
    snprintf(buf, sizeof(buf), "%s..%s", h, s);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);
    snprintf(buf, sizeof(buf), ".%s.%s", p, s);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);

    /* Padding, standard-alphabet characters, whitespace, NUL and high bytes inside each segment. */
    {
        static const char bad[] = {'=',  '+', '/',  ' ', '\t', '\r',       '\n',
                                   '\0', '%', '\\', '"', '*',  (char)0x80, (char)0xff};
        size_t len = strlen(good);
        for (size_t b = 0; b < sizeof(bad); b++) {
            size_t where[] = {0, (size_t)(d1 - good) - 1, (size_t)(d1 - good) + 1, (size_t)(d2 - good) + 1, len - 1};
            for (size_t w = 0; w < WR_ARRAY_SIZE(where); w++) {
                char *t = malloc(len);
                memcpy(t, good, len);
                t[where[w]] = bad[b];
                assert_reason(wr_token_verify(&conf, t, len, NOW_MS, ADMISSION_MS, &(wr_claims_t){0}),
                              WR_TOKEN_MALFORMED);
                free(t);
            }
            /* Appended, as padding would be. */
            {
                char *t = malloc(len + 2);
                memcpy(t, good, len);
                t[len] = bad[b];
                t[len + 1] = bad[b];
                assert_reason(wr_token_verify(&conf, t, len + 2, NOW_MS, ADMISSION_MS, &(wr_claims_t){0}),
                              WR_TOKEN_MALFORMED);
                free(t);
            }
        }
    }
    /* Padded segments, as base64 (not base64url) would write them. */
    snprintf(buf, sizeof(buf), "%s==.%s.%s", h, p, s);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);
    snprintf(buf, sizeof(buf), "%s.%s.%s=", h, p, s);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);
    /* A header segment of length 4n+1 cannot be base64 at all. */
    snprintf(buf, sizeof(buf), "%sA.%s.%s", h, p, s);
    assert_reason(verify_str(buf, NULL), WR_TOKEN_MALFORMED);

    free(good);
    free(pay);
}

static void test_huge_tokens(void **state)
{
    (void)state;
    size_t sizes[] = {WR_TOKEN_MAX + 1, WR_TOKEN_MAX * 2, 1024 * 1024};
    for (size_t i = 0; i < WR_ARRAY_SIZE(sizes); i++) {
        size_t n = sizes[i];
        char *t = malloc(n);
        memset(t, 'A', n);
        t[n / 3] = '.';
        t[2 * n / 3] = '.';
        assert_reason(wr_token_verify(&conf, t, n, NOW_MS, ADMISSION_MS, &(wr_claims_t){0}), WR_TOKEN_MALFORMED);
        free(t);
    }
    /* A good token with a huge signature appended. */
    {
        char *pay = payload_of("queue");
        char *good = forge(HDR_K1, pay, K1);
        size_t len = strlen(good), n = 1024 * 1024;
        char *t = malloc(n);
        memset(t, 'A', n);
        memcpy(t, good, len);
        assert_reason(wr_token_verify(&conf, t, n, NOW_MS, ADMISSION_MS, &(wr_claims_t){0}), WR_TOKEN_MALFORMED);
        free(t);
        free(good);
        free(pay);
    }
}

static void test_token_max_boundary(void **state)
{
    (void)state;
    /* A correctly signed, valid token of exactly WR_TOKEN_MAX bytes verifies; one byte more does not. */
    int found_max = 0, found_over = 0;
    for (size_t hpad = 0; hpad < 4 && !(found_max && found_over); hpad++) {
        for (size_t ppad = 1300; ppad < 1600; ppad++) {
            char hdr[64];
            char *pad = malloc(ppad + 1);
            json_t *c = base_claims("queue");
            char *payload, *tok;
            size_t len;
            memset(pad, 'x', ppad);
            pad[ppad] = '\0';
            json_object_set_new(c, "pad", json_string(pad));
            payload = json_dumps(c, JSON_COMPACT);
            snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"k1\"%s}", hpad ? ",\"x\":\"" : "");
            if (hpad) {
                size_t l = strlen(hdr) - 1; /* drop the closing brace and add hpad characters */
                memset(hdr + l, 'y', hpad);
                strcpy(hdr + l + hpad, "\"}");
            }
            tok = forge(hdr, payload, K1);
            len = strlen(tok);
            if (len == WR_TOKEN_MAX) {
                assert_reason(verify_str(tok, NULL), WR_TOKEN_VALID);
                found_max = 1;
            } else if (len == WR_TOKEN_MAX + 1) {
                assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
                found_over = 1;
            }
            free(tok);
            free(payload);
            json_decref(c);
            free(pad);
        }
    }
    assert_true(found_max);
    assert_true(found_over);
}

static void test_non_utf8_json(void **state)
{
    (void)state;
    static const char *const bad_utf8[] = {
        "\xff", "\xc3\x28", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80", "\xfe\xfe",
    };
    char *pay = payload_of("queue");
    for (size_t i = 0; i < WR_ARRAY_SIZE(bad_utf8); i++) {
        char hdr[128], p2[512];
        char *tok;
        json_t *c = base_claims("queue");
        char *good_pay = json_dumps(c, JSON_COMPACT);

        /* In the header, inside a string value, correctly signed. */
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"k1\",\"x\":\"%s\"}", bad_utf8[i]);
        tok = forge(hdr, pay, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        free(tok);
        /* In the kid itself. */
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"k1%s\"}", bad_utf8[i]);
        tok = forge(hdr, pay, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        free(tok);
        /* In the payload, correctly signed, so it gets past the signature. */
        snprintf(p2, sizeof(p2), "%.*s,\"x\":\"%s\"}", (int)strlen(good_pay) - 1, good_pay, bad_utf8[i]);
        tok = forge(HDR_K1, p2, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        free(tok);
        /* In a claim we read. */
        snprintf(p2, sizeof(p2),
                 "{\"iss\":\"waitroom\",\"sub\":\"" UID "\",\"aud\":\"sa%sle\",\"typ\":\"queue\","
                 "\"q\":1,\"iat\":1700000000,\"exp\":1700000600}",
                 bad_utf8[i]);
        tok = forge(HDR_K1, p2, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        free(tok);
        free(good_pay);
        json_decref(c);
    }
    free(pay);
}

static void test_json_not_an_object(void **state)
{
    (void)state;
    static const char *const not_objects[] = {
        "[]",
        "[\"alg\",\"HS256\"]",
        "1",
        "\"HS256\"",
        "null",
        "true",
        "",
        " ",
        "{",
        "{\"alg\":\"HS256\"",
        "{\"alg\":\"HS256\",}",
        "{'alg':'HS256'}",
        "{\"alg\":\"HS256\"}x",
        "{\"alg\":\"HS256\"}{}",
    };
    char *pay = payload_of("queue");
    for (size_t i = 0; i < WR_ARRAY_SIZE(not_objects); i++) {
        const char *bad = not_objects[i];
        char *tok;
        if (bad[0] != '\0') { /* an empty header or payload is an empty segment, covered by the shape test */
            tok = forge(bad, pay, K1);
            assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
            free(tok);
            tok = forge(HDR_K1, bad, K1);
            assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
            free(tok);
        }
    }
    /* A NUL byte (raw, not escaped) inside the JSON. */
    {
        static const char hdr[] = "{\"alg\":\"HS256\",\"kid\":\"k1\"}\0";
        char *tok = forge_raw(hdr, sizeof(hdr) - 1, pay, strlen(pay), K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        free(tok);
        tok = forge_raw(HDR_K1, strlen(HDR_K1), pay, strlen(pay) + 1, K1);
        assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
        free(tok);
    }
    /* Deep nesting in the header. */
    {
        char hdr[1200];
        size_t o = (size_t)snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"k1\",\"x\":");
        for (int i = 0; i < 500; i++)
            hdr[o++] = '[';
        for (int i = 0; i < 500; i++)
            hdr[o++] = ']';
        hdr[o++] = '}';
        hdr[o] = '\0';
        char *tok = forge(hdr, pay, K1);
        wr_token_result_t r = verify_str(tok, NULL);
        assert_true(r == WR_TOKEN_VALID || r == WR_TOKEN_MALFORMED); /* either way, no crash */
        free(tok);
    }
    free(pay);
}

static void test_duplicate_keys_and_crit(void **state)
{
    (void)state;
    char *pay = payload_of("queue");
    char *tok;
    char p2[512];
    /* Two algs: which one a parser keeps is exactly the ambiguity to refuse. */
    tok = forge("{\"alg\":\"none\",\"alg\":\"HS256\",\"kid\":\"k1\"}", pay, K1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
    free(tok);
    tok = forge("{\"alg\":\"HS256\",\"kid\":\"zz\",\"kid\":\"k1\"}", pay, K1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
    free(tok);
    /* Two exps in a correctly signed payload (libjwt alone would keep the last one). */
    snprintf(p2, sizeof(p2), "%.*s,\"exp\":99999999999}", (int)strlen(pay) - 1, pay);
    tok = forge(HDR_K1, p2, K1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
    free(tok);
    /* crit names extensions we would have to understand; we understand none. */
    tok = forge("{\"alg\":\"HS256\",\"kid\":\"k1\",\"crit\":[\"b64\"],\"b64\":false}", pay, K1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_MALFORMED);
    free(tok);
    /* Other unknown header members are harmless and ignored (jku, x5u and jwk are never fetched or used). */
    tok = forge("{\"alg\":\"HS256\",\"kid\":\"k1\",\"jku\":\"http://127.0.0.1:1/keys\",\"x5u\":\"file:///etc/passwd\"}",
                pay, K1);
    assert_reason(verify_str(tok, NULL), WR_TOKEN_VALID);
    free(tok);
    free(pay);
}

/* A deterministic generator, so a failure can be replayed from the iteration number. */
static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static char rnd_byte(void)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    /* Mostly characters that pass the alphabet check, so mutations reach the decoders and the HMAC. */
    if (rng() % 4)
        return alpha[rng() % (sizeof(alpha) - 1)];
    return (char)(rng() & 0xff);
}

static void test_mutations_never_verify(void **state)
{
    (void)state;
    enum { ITERATIONS = 20000, CAP = 4096 };
    char *pay = payload_of("queue");
    char *good = forge(HDR_K1, pay, K1);
    size_t glen = strlen(good);
    char *buf = malloc(CAP);
    size_t counts[WR_TOKEN_BAD_TYPE + 1] = {0};
    size_t unchanged = 0;

    rng_state = 0x5eed5eed;
    for (int it = 0; it < ITERATIONS; it++) {
        size_t len = glen;
        int rounds = 1 + (int)(rng() % 3);
        memcpy(buf, good, glen);
        for (int r = 0; r < rounds; r++) {
            switch (rng() % 6) {
            case 0: /* one byte */
                if (len)
                    buf[rng() % len] = rnd_byte();
                break;
            case 1: { /* several bytes */
                size_t k = 2 + rng() % 8;
                for (size_t i = 0; i < k && len; i++)
                    buf[rng() % len] = rnd_byte();
                break;
            }
            case 2: /* truncation */
                len = len ? (size_t)(rng() % len) : 0;
                break;
            case 3: { /* insertion */
                size_t k = 1 + rng() % 16, at = len ? (size_t)(rng() % (len + 1)) : 0;
                if (len + k < CAP) {
                    memmove(buf + at + k, buf + at, len - at);
                    for (size_t i = 0; i < k; i++)
                        buf[at + i] = rnd_byte();
                    len += k;
                }
                break;
            }
            case 4: { /* deletion of a range */
                if (len) {
                    size_t at = (size_t)(rng() % len), k = 1 + (size_t)(rng() % (len - at));
                    memmove(buf + at, buf + at + k, len - at - k);
                    len -= k;
                }
                break;
            }
            default: { /* a bit flip */
                if (len)
                    buf[rng() % len] ^= (char)(1u << (rng() % 8));
                break;
            }
            }
        }
        {
            /* An exactly sized copy, so ASan sees any read past the end. */
            char *t = malloc(len ? len : 1);
            wr_claims_t out;
            wr_token_result_t res;
            memcpy(t, buf, len);
            res = wr_token_verify(&conf, t, len, NOW_MS, ADMISSION_MS, &out);
            assert_true((unsigned)res <= WR_TOKEN_BAD_TYPE);
            counts[res]++;
            if (len == glen && memcmp(t, good, glen) == 0) {
                unchanged++;
                assert_reason(res, WR_TOKEN_VALID);
            } else if (res == WR_TOKEN_VALID) {
                fail_msg("mutation %d verified (length %zu)", it, len);
            }
            free(t);
        }
    }
    /* The mutations must have reached past the shape checks, or the test proves little. */
    assert_true(counts[WR_TOKEN_BAD_SIGNATURE] > 1000);
    assert_true(counts[WR_TOKEN_MALFORMED] > 1000);
    print_message("# mutations: %d, unchanged %zu, malformed %zu, bad_alg %zu, unknown_kid %zu, bad_signature %zu\n",
                  ITERATIONS, unchanged, counts[WR_TOKEN_MALFORMED], counts[WR_TOKEN_BAD_ALG],
                  counts[WR_TOKEN_UNKNOWN_KID], counts[WR_TOKEN_BAD_SIGNATURE]);
    free(buf);
    free(good);
    free(pay);
}

/* ---- checklist 10: constant-time comparison ---- */

static void test_ct_equal(void **state)
{
    (void)state;
    unsigned char a[64], b[64];
    for (size_t i = 0; i < sizeof(a); i++)
        a[i] = b[i] = (unsigned char)(i * 7 + 3);
    assert_int_equal(wr_token_ct_equal(a, b, sizeof(a)), 1);
    assert_int_equal(wr_token_ct_equal(a, b, 0), 1);
    for (size_t i = 0; i < sizeof(a); i++) {
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (unsigned char)(1u << bit);
            assert_int_equal(wr_token_ct_equal(a, b, sizeof(a)), 0);
            assert_int_equal(wr_token_ct_equal(b, a, sizeof(a)), 0);
            /* Only the first len bytes count. */
            assert_int_equal(wr_token_ct_equal(a, b, i), 1);
            b[i] ^= (unsigned char)(1u << bit);
        }
    }
    assert_int_equal(wr_token_ct_equal("abc", "abd", 2), 1);
    assert_int_equal(wr_token_ct_equal("abc", "abd", 3), 0);
}

/* The keyed context (what the config loader attaches to each key) gives HMAC()'s answer, use after use. */
static void test_hmac_context_matches_one_shot(void **state)
{
    (void)state;
    unsigned char data[300], want[32], got[32];
    unsigned int wlen = 0;
    wr_key_t k = keys[0];
    k.mac = wr_token_hmac_new(k.secret, k.secret_len);
    assert_non_null(k.mac);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 31 + 7);
    for (int round = 0; round < 2; round++) {
        for (size_t len = 0; len <= sizeof(data); len += (len < 70 ? 1 : 23)) {
            assert_non_null(HMAC(EVP_sha256(), k.secret, (int)k.secret_len, data, len, want, &wlen));
            assert_int_equal(wr_token_hmac(&k, data, len, got), WR_OK);
            assert_memory_equal(got, want, 32);
            assert_int_equal(wr_token_hmac(&keys[0], data, len, got), WR_OK); /* no context: HMAC() */
            assert_memory_equal(got, want, 32);
        }
    }
    EVP_MAC_CTX_free(k.mac);
}

/* Tokens signed with keyed contexts verify, and libjwt reads every claim back as written. */
static void test_sign_with_contexts_read_by_libjwt(void **state)
{
    (void)state;
    wr_claims_t in = {
        .type = WR_TOKEN_QUEUE, .sub = UID, .aud = ROOM, .q = 42, .iat = NOW, .nbf = NOW - 1, .exp = NOW + 600};
    wr_claims_t out;
    char *tok = NULL;
    jwt_t *jwt = NULL;
    keys[0].mac = wr_token_hmac_new(keys[0].secret, keys[0].secret_len);
    keys[1].mac = wr_token_hmac_new(keys[1].secret, keys[1].secret_len);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(wr_token_sign(&conf, &in, &tok), WR_OK);
        assert_reason(verify_str(tok, &out), WR_TOKEN_VALID);
        assert_int_equal(out.q, 42);
        if (strcmp(conf.tokens.signing_kid, "k1") == 0)
            assert_int_equal(jwt_decode(&jwt, tok, K1), 0);
        else
            assert_int_equal(jwt_decode(&jwt, tok, K2), 0);
        assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
        assert_string_equal(jwt_get_header(jwt, "kid"), conf.tokens.signing_kid);
        assert_string_equal(jwt_get_header(jwt, "typ"), "JWT");
        assert_string_equal(jwt_get_grant(jwt, "iss"), "waitroom");
        assert_string_equal(jwt_get_grant(jwt, "sub"), UID);
        assert_string_equal(jwt_get_grant(jwt, "aud"), ROOM);
        assert_string_equal(jwt_get_grant(jwt, "typ"), "queue");
        assert_int_equal(jwt_get_grant_int(jwt, "q"), 42);
        assert_int_equal(jwt_get_grant_int(jwt, "iat"), NOW);
        assert_int_equal(jwt_get_grant_int(jwt, "nbf"), NOW - 1);
        assert_int_equal(jwt_get_grant_int(jwt, "exp"), NOW + 600);
        jwt_free(jwt);
        free(tok);
        conf.tokens.signing_kid = i == 0 ? "k2" : "k1"; /* the other key signs too */
    }
    EVP_MAC_CTX_free(keys[0].mac);
    EVP_MAC_CTX_free(keys[1].mac);
    keys[0].mac = keys[1].mac = NULL;
}

/* Strings that JSON must escape are escaped: an odd issuer and kid survive the round trip. */
static void test_sign_escapes_strings(void **state)
{
    (void)state;
    static char odd_iss[] = "we\"ird\\iss\x01\x1f/\xc3\xa9";
    wr_claims_t in = {
        .type = WR_TOKEN_ADMISSION, .sub = UID, .aud = ROOM, .iat = NOW, .nbf = NOW, .exp = NOW + 60};
    wr_claims_t out;
    char *tok = NULL;
    jwt_t *jwt = NULL;
    conf.tokens.issuer = odd_iss;
    keys[0].kid = "k\"1\\";
    conf.tokens.signing_kid = keys[0].kid;
    assert_int_equal(wr_token_sign(&conf, &in, &tok), WR_OK);
    assert_reason(verify_str(tok, &out), WR_TOKEN_VALID);
    assert_int_equal(jwt_decode(&jwt, tok, K1), 0);
    assert_string_equal(jwt_get_grant(jwt, "iss"), odd_iss);
    assert_string_equal(jwt_get_header(jwt, "kid"), "k\"1\\");
    jwt_free(jwt);
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_reason_strings, setup),
        cmocka_unit_test_setup(test_roundtrip_queue, setup),
        cmocka_unit_test_setup(test_roundtrip_admission, setup),
        cmocka_unit_test_setup(test_sign_refuses_bad_input, setup),
        cmocka_unit_test_setup(test_forged_baseline_verifies, setup),
        cmocka_unit_test_setup(test_token_need_not_be_nul_terminated, setup),
        cmocka_unit_test_setup(test_alg_none_all_spellings, setup),
        cmocka_unit_test_setup(test_alg_not_exactly_hs256, setup),
        cmocka_unit_test_setup(test_alg_confusion_public_key_as_hmac_secret, setup),
        cmocka_unit_test_setup(test_rs256_es256_tokens_bad_alg, setup),
        cmocka_unit_test_setup(test_libjwt_null_key_trap, setup),
        cmocka_unit_test_setup(test_kid_missing_rejected, setup),
        cmocka_unit_test_setup(test_kid_unknown_rejected, setup),
        cmocka_unit_test_setup(test_weak_or_empty_key_is_never_used, setup),
        cmocka_unit_test_setup(test_kid_hostile_values, setup),
        cmocka_unit_test_setup(test_kid_huge_values, setup),
        cmocka_unit_test_setup(test_kid_is_never_a_path, setup),
        cmocka_unit_test_setup(test_key_rotation, setup),
        cmocka_unit_test_setup(test_kid_names_another_key, setup),
        cmocka_unit_test_setup(test_bad_signature, setup),
        cmocka_unit_test_setup(test_noncanonical_base64_refused, setup),
        cmocka_unit_test_setup(test_exp_required, setup),
        cmocka_unit_test_setup(test_exp_past_beyond_skew_rejected, setup),
        cmocka_unit_test_setup(test_exp_past_within_skew_accepted, setup),
        cmocka_unit_test_setup(test_exp_too_far_in_future_rejected, setup),
        cmocka_unit_test_setup(test_exp_non_numeric_rejected, setup),
        cmocka_unit_test_setup(test_nbf_iat_future_beyond_skew_rejected, setup),
        cmocka_unit_test_setup(test_nbf_iat_future_within_skew_accepted, setup),
        cmocka_unit_test_setup(test_nbf_optional_iat_required_both_typed, setup),
        cmocka_unit_test_setup(test_wrong_issuer_rejected, setup),
        cmocka_unit_test_setup(test_bad_type_rejected, setup),
        cmocka_unit_test_setup(test_header_typ_must_be_jwt, setup),
        cmocka_unit_test_setup(test_aud_returned_for_caller, setup),
        cmocka_unit_test_setup(test_sub_must_be_uid, setup),
        cmocka_unit_test_setup(test_q_required_for_queue_tokens, setup),
        cmocka_unit_test_setup(test_malformed_shapes, setup),
        cmocka_unit_test_setup(test_huge_tokens, setup),
        cmocka_unit_test_setup(test_token_max_boundary, setup),
        cmocka_unit_test_setup(test_non_utf8_json, setup),
        cmocka_unit_test_setup(test_json_not_an_object, setup),
        cmocka_unit_test_setup(test_duplicate_keys_and_crit, setup),
        cmocka_unit_test_setup(test_mutations_never_verify, setup),
        cmocka_unit_test_setup(test_ct_equal, setup),
        cmocka_unit_test_setup(test_hmac_context_matches_one_shot, setup),
        cmocka_unit_test_setup(test_sign_with_contexts_read_by_libjwt, setup),
        cmocka_unit_test_setup(test_sign_escapes_strings, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
