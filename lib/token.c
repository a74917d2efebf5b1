/*
 * token.c: signing and verifying queue and admission tokens (HS256 JWTs).
 *
 * Signing writes a fixed template (see wr_token_sign). Verifying goes through
 * libjwt but trusts it with nothing it can get wrong: libjwt 1.10 accepts
 * alg=none when given a NULL key, treats
 * "none" case-insensitively, accepts an HS256 token whose HMAC secret is a
 * public key PEM (algorithm confusion), and checks no claim at all. So every
 * token passes these steps, in this order, and the first failure decides the
 * reason:
 *
 *   1. shape: 1..WR_TOKEN_MAX bytes, exactly three non-empty segments of
 *      unpadded base64url, each decoding canonically (the unused low bits of
 *      the last character must be zero, so one token has one spelling);
 *   2. header: a JSON object (duplicate keys refused) whose alg is exactly
 *      "HS256", whose typ, if present, is exactly "JWT", with no "crit", and
 *      whose kid names a configured key; kid only selects among configured
 *      keys and is never used for anything else (never as a path);
 *   3. signature: HMAC-SHA256 over "header.payload" with that key, compared in
 *      constant time with the 32 decoded signature bytes;
 *   4. payload: a JSON object with no duplicate keys;
 *   5. only now jwt_decode, always with the key (never NULL, never empty), and
 *      jwt_get_alg must say HS256;
 *   6. claims, strictly typed: iss, sub, aud, typ, exp, iat, nbf and q;
 *   7. time: expired, not yet valid, or living longer than such a token may,
 *      all with the configured clock skew and saturating arithmetic so that a
 *      huge exp cannot overflow into the past.
 *
 * Keys are borrowed from the configuration and never copied. Nothing here
 * logs a token or a secret; refusals are not logged at all (they are the
 * caller's to report, and an attacker controls how many there are).
 */
#include "token.h"

#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/types.h>

#include "log.h"

/* An HS256 signature is one SHA-256 output. */
#define HS256_LEN 32

/* A decoded segment is at most three quarters of the whole token. */
#define SEG_MAX (WR_TOKEN_MAX / 4 * 3 + 3)

/* libjwt's integer grants are longs: claims are int64_t and must fit. */
_Static_assert(sizeof(long) >= sizeof(int64_t), "libjwt integer grants need a 64-bit long");

static const char *const token_reasons[] = {
    [WR_TOKEN_VALID] = "valid",
    [WR_TOKEN_MALFORMED] = "malformed",
    [WR_TOKEN_BAD_ALG] = "bad_alg",
    [WR_TOKEN_UNKNOWN_KID] = "unknown_kid",
    [WR_TOKEN_BAD_SIGNATURE] = "bad_signature",
    [WR_TOKEN_EXPIRED] = "expired",
    [WR_TOKEN_NOT_YET_VALID] = "not_yet_valid",
    [WR_TOKEN_BAD_LIFETIME] = "bad_lifetime",
    [WR_TOKEN_BAD_CLAIM] = "bad_claim",
    [WR_TOKEN_BAD_ISSUER] = "bad_issuer",
    [WR_TOKEN_BAD_AUDIENCE] = "bad_audience",
    [WR_TOKEN_BAD_TYPE] = "bad_type",
};

const char *wr_token_reason(wr_token_result_t r)
{
    if ((unsigned)r >= WR_ARRAY_SIZE(token_reasons) || token_reasons[r] == NULL)
        return "unknown";
    return token_reasons[r];
}

int wr_token_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

/* The 6-bit value of a base64url character, or -1 for anything else ('=', '+', '/', NUL, spaces, high bytes). */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/*
 * Decodes unpadded base64url into out (cap bytes). Returns the decoded length,
 * or -1 when the input is not canonical base64url: a bad character, a length
 * of 4n+1, non-zero leftover bits, or more output than cap. Refusing leftover
 * bits matters: otherwise "...Q" and "...R" could both decode to the same
 * signature, and a token would have several spellings that all verify.
 */
static ssize_t b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;

    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap)
                return -1;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1;
    return (ssize_t)n;
}

/* 1 when the JSON value is a string of exactly len bytes equal to s (embedded NULs count). */
static int json_string_is(const json_t *v, const char *s, size_t len)
{
    return json_is_string(v) && json_string_length(v) == len && memcmp(json_string_value(v), s, len) == 0;
}

/*
 * The configured key a kid names, or NULL. The kid must be a JSON string of
 * 1..WR_NAME_MAX bytes without NUL, and the key must have a usable secret:
 * a key with a NULL, empty or weak secret is treated as unknown, so that no
 * path can ever hand libjwt or HMAC an empty key. Borrowed from conf.
 */
static const wr_key_t *key_for_kid(const wr_config_t *conf, const json_t *kid)
{
    const wr_key_t *key;
    const char *s;
    size_t len;

    if (!json_is_string(kid))
        return NULL;
    s = json_string_value(kid);
    len = json_string_length(kid);
    if (len == 0 || len > WR_NAME_MAX || memchr(s, '\0', len) != NULL)
        return NULL;
    key = wr_config_key(conf, s, len);
    /* The lookup is another file's; checking its answer costs nothing and keeps "kid only selects" true here. */
    if (key == NULL || key->kid == NULL || strlen(key->kid) != len || memcmp(key->kid, s, len) != 0)
        return NULL;
    if (key->secret == NULL || key->secret_len < WR_SECRET_MIN || key->secret_len > INT_MAX)
        return NULL;
    return key;
}

/* Reads an integer claim. Returns 1 when present and a JSON integer, 0 when absent, -1 when of another type. */
static int claim_int(const json_t *claims, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(claims, name);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v))
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 1;
}

/* Saturating arithmetic: a hostile exp of 2^62 must read as "far future", not wrap into the past. */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_ms(int64_t seconds)
{
    int64_t r;
    if (__builtin_mul_overflow(seconds, (int64_t)1000, &r))
        return seconds > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/*
 * Checks the decoded claims (a JSON object) and fills c. Claims are strictly
 * typed: an integer claim given as a real, a string or a boolean is refused,
 * never converted.
 */
static wr_token_result_t check_claims(const wr_config_t *conf, const json_t *claims, int64_t now_ms,
                                      int64_t max_admission_ms, wr_claims_t *c)
{
    const json_t *v;
    int64_t skew, limit;
    int has_nbf;

    v = json_object_get(claims, "iss");
    if (conf->tokens.issuer == NULL || !json_string_is(v, conf->tokens.issuer, strlen(conf->tokens.issuer)))
        return WR_TOKEN_BAD_ISSUER;

    v = json_object_get(claims, "sub");
    if (!json_is_string(v) || !wr_uid_valid(json_string_value(v), json_string_length(v)))
        return WR_TOKEN_BAD_CLAIM;
    memcpy(c->sub, json_string_value(v), WR_UID_LEN);
    c->sub[WR_UID_LEN] = '\0';

    v = json_object_get(claims, "aud");
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > WR_NAME_MAX ||
        memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
        return WR_TOKEN_BAD_CLAIM;
    memcpy(c->aud, json_string_value(v), json_string_length(v));
    c->aud[json_string_length(v)] = '\0';

    v = json_object_get(claims, "typ");
    if (json_string_is(v, "queue", 5))
        c->type = WR_TOKEN_QUEUE;
    else if (json_string_is(v, "admission", 9))
        c->type = WR_TOKEN_ADMISSION;
    else
        return WR_TOKEN_BAD_TYPE;

    if (claim_int(claims, "exp", &c->exp) != 1 || claim_int(claims, "iat", &c->iat) != 1)
        return WR_TOKEN_BAD_CLAIM;
    has_nbf = claim_int(claims, "nbf", &c->nbf);
    if (has_nbf < 0)
        return WR_TOKEN_BAD_CLAIM;
    if (has_nbf == 0)
        c->nbf = 0;
    c->q = 0;
    if (c->type == WR_TOKEN_QUEUE && (claim_int(claims, "q", &c->q) != 1 || c->q < 1))
        return WR_TOKEN_BAD_CLAIM;

    skew = conf->tokens.clock_skew_ms > 0 ? conf->tokens.clock_skew_ms : 0;
    if (sat_add(sat_ms(c->exp), skew) <= now_ms)
        return WR_TOKEN_EXPIRED;
    if ((has_nbf && sat_ms(c->nbf) > sat_add(now_ms, skew)) || sat_ms(c->iat) > sat_add(now_ms, skew))
        return WR_TOKEN_NOT_YET_VALID;
    limit = c->type == WR_TOKEN_QUEUE ? conf->tokens.queue_token_ttl_ms : max_admission_ms;
    if (sat_sub(sat_ms(c->exp), now_ms) > sat_add(limit, skew))
        return WR_TOKEN_BAD_LIFETIME;
    return WR_TOKEN_VALID;
}

wr_token_result_t wr_token_verify(const wr_config_t *conf, const char *token, size_t len, int64_t now_ms,
                                  int64_t max_admission_ms, wr_claims_t *out)
{
    /* Stack buffers: every segment is bounded by WR_TOKEN_MAX, and nothing here outlives the call. */
    unsigned char seg[SEG_MAX];
    unsigned char mac[HS256_LEN];
    char copy[WR_TOKEN_MAX + 1];
    size_t dot[2] = {0, 0};
    size_t ndots = 0;
    ssize_t n;
    json_t *header = NULL, *payload = NULL, *claims = NULL;
    jwt_t *jwt = NULL;
    char *claims_json = NULL;
    const wr_key_t *key;
    const json_t *v;
    wr_claims_t c;
    wr_token_result_t res = WR_TOKEN_MALFORMED;

    assert(conf != NULL && out != NULL);
    memset(&c, 0, sizeof(c));

    /* 1. Shape, before any decoding: length, alphabet, exactly two dots, no empty segment. */
    if (token == NULL || len == 0 || len > WR_TOKEN_MAX)
        goto done;
    for (size_t i = 0; i < len; i++) {
        if (token[i] == '.') {
            if (ndots == 2)
                goto done;
            dot[ndots++] = i;
        } else if (b64url_value((unsigned char)token[i]) < 0) {
            goto done;
        }
    }
    if (ndots != 2 || dot[0] == 0 || dot[1] == dot[0] + 1 || dot[1] + 1 == len)
        goto done;

    /*
     * 2. Header. JSON_ALLOW_NUL lets a kid such as "k1\u0000x" reach the key
     * lookup, where lengths are compared, and be refused as an unknown kid.
     */
    n = b64url_decode(token, dot[0], seg, sizeof(seg));
    if (n < 0)
        goto done;
    header = json_loadb((const char *)seg, (size_t)n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!json_is_object(header))
        goto done;
    if (!json_string_is(json_object_get(header, "alg"), "HS256", 5)) {
        res = WR_TOKEN_BAD_ALG;
        goto done;
    }
    v = json_object_get(header, "typ");
    if (v != NULL && !json_string_is(v, "JWT", 3))
        goto done;
    /* RFC 7515 4.1.11: extensions named in crit must be understood, and we understand none. */
    if (json_object_get(header, "crit") != NULL)
        goto done;
    key = key_for_kid(conf, json_object_get(header, "kid"));
    if (key == NULL) {
        res = WR_TOKEN_UNKNOWN_KID;
        goto done;
    }

    /* 3. Signature, in constant time, over the exact bytes received. */
    n = b64url_decode(token + dot[1] + 1, len - dot[1] - 1, seg, sizeof(seg));
    if (n < 0)
        goto done;
    if (n != HS256_LEN) {
        res = WR_TOKEN_BAD_SIGNATURE;
        goto done;
    }
    if (wr_token_hmac(key, token, dot[1], mac) != WR_OK || !wr_token_ct_equal(mac, seg, HS256_LEN)) {
        res = WR_TOKEN_BAD_SIGNATURE;
        goto done;
    }

    /* 4. The payload, strictly: libjwt would silently keep the last of two duplicate claims. */
    n = b64url_decode(token + dot[0] + 1, dot[1] - dot[0] - 1, seg, sizeof(seg));
    if (n < 0)
        goto done;
    payload = json_loadb((const char *)seg, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(payload))
        goto done;

    /* 5. libjwt, only now, and always with the key: given NULL it would accept alg=none. */
    assert(key->secret != NULL && key->secret_len > 0);
    memcpy(copy, token, len);
    copy[len] = '\0';
    if (jwt_decode(&jwt, copy, key->secret, (int)key->secret_len) != 0 || jwt == NULL)
        goto done;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        res = WR_TOKEN_BAD_ALG;
        goto done;
    }

    /* 6 and 7. Claims and time. libjwt 1.10 returns this string from malloc (via jansson) and has no jwt_free_str. */
    claims_json = jwt_get_grants_json(jwt, NULL);
    if (claims_json == NULL)
        goto done;
    claims = json_loads(claims_json, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(claims))
        goto done;
    res = check_claims(conf, claims, now_ms, max_admission_ms, &c);
    if (res == WR_TOKEN_VALID)
        *out = c;

done:
    /* The MAC we computed is a valid signature for whatever the sender chose: do not leave it on the stack. */
    OPENSSL_cleanse(mac, sizeof(mac));
    free(claims_json);
    json_decref(claims);
    json_decref(payload);
    json_decref(header);
    if (jwt != NULL)
        jwt_free(jwt);
    return res;
}

/* Unpadded base64url of n bytes into out (room for n / 3 * 4 + 4); returns the length written. */
static size_t b64url_encode(const unsigned char *in, size_t n, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
        *o++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
    }
    return (size_t)(o - out);
}

/* Appends s as a JSON string (quotes and escapes included) at *o, never past end; 0 if it did not fit. */
static int json_put_string(char **o, const char *end, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    char *p = *o;
    if (p >= end)
        return 0;
    *p++ = '"';
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (end - p < 7)
            return 0;
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[c >> 4];
            p[5] = hex[c & 15];
            p += 6;
        } else {
            *p++ = (char)c;
        }
    }
    if (p >= end)
        return 0;
    *p++ = '"';
    *o = p;
    return 1;
}

/* Appends the literal s at *o, never past end; 0 if it did not fit. */
static int put(char **o, const char *end, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(end - *o) < n)
        return 0;
    memcpy(*o, s, n);
    *o += n;
    return 1;
}

static int put_int(char **o, const char *end, int64_t v)
{
    if (end - *o < 21)
        return 0;
    *o += wr_fmt_i64(*o, v);
    return 1;
}

/*
 * HMAC-SHA256 of data with key. Each key keeps one HMAC context, keyed once
 * (wr_key_t.mac, made by wr_token_hmac_new when the config loader reads the
 * secret) and reset for each use: OpenSSL's one-shot HMAC() fetches the
 * digest and sets the key up again on every call. A key without a context
 * falls back to HMAC().
 */
EVP_MAC_CTX *wr_token_hmac_new(const unsigned char *secret, size_t len)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};

    EVP_MAC_free(mac); /* the context keeps its own reference */
    if (ctx != NULL && EVP_MAC_init(ctx, secret, len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

int wr_token_hmac(const wr_key_t *key, const void *data, size_t len, unsigned char out[32])
{
    size_t n = 0;
    unsigned int un = 0;
    if (key->mac != NULL) {
        if (EVP_MAC_init(key->mac, NULL, 0, NULL) != 1 || EVP_MAC_update(key->mac, data, len) != 1 ||
            EVP_MAC_final(key->mac, out, &n, HS256_LEN) != 1 || n != HS256_LEN)
            return WR_ERROR;
        return WR_OK;
    }
    if (HMAC(EVP_sha256(), key->secret, (int)key->secret_len, data, len, out, &un) == NULL || un != HS256_LEN)
        return WR_ERROR;
    return WR_OK;
}

/*
 * Signing. Every token this project issues has the same shape, so it is
 * written from a template, not through libjwt's encoder (which builds both
 * JSON objects with jansson, sorts and dumps them, and calls the one-shot
 * HMAC: a quarter of a join's gateway CPU, bench/join_rate.sh's profile).
 * Header {"alg":"HS256","kid":K,"typ":"JWT"}; payload in a fixed order, every
 * string JSON-escaped. What this writes is what wr_token_verify accepts, and
 * libjwt's jwt_decode reads it back (tests/unit/test_token.c checks both).
 */
int wr_token_sign(const wr_config_t *conf, const wr_claims_t *claims, char **out)
{
    const wr_key_t *key = NULL;
    const char *kid;
    const char *typ;
    size_t aud_len, hlen, plen, tok_len;
    char header[WR_NAME_MAX * 6 + 64];
    char payload[WR_NAME_MAX * 6 + 128 * 6 + WR_UID_LEN + 256];
    char tok[WR_TOKEN_MAX + 1];
    unsigned char mac[HS256_LEN];
    char *o, *end;

    assert(conf != NULL && claims != NULL && out != NULL);
    *out = NULL;
    kid = conf->tokens.signing_kid;

    /* Refuse to sign what wr_token_verify would refuse, so a bug shows here and not at the user's next request. */
    if (claims->type == WR_TOKEN_QUEUE) {
        typ = "queue";
        if (claims->q < 1)
            return WR_ERROR;
    } else if (claims->type == WR_TOKEN_ADMISSION) {
        typ = "admission";
    } else {
        return WR_ERROR;
    }
    aud_len = strnlen(claims->aud, sizeof(claims->aud));
    if (!wr_uid_valid(claims->sub, strnlen(claims->sub, sizeof(claims->sub))) || aud_len < 1 || aud_len > WR_NAME_MAX)
        return WR_ERROR;
    if (conf->tokens.issuer == NULL || kid == NULL)
        return WR_ERROR;
    key = wr_config_key(conf, kid, strlen(kid));
    /* Never an empty or weak key: config refuses them, but a hand-built config must not get past here either. */
    if (key == NULL || key->secret == NULL || key->secret_len < WR_SECRET_MIN || key->secret_len > INT_MAX) {
        wr_error("token: signing key \"%s\" is missing or unusable", kid);
        return WR_ERROR;
    }

    o = header;
    end = header + sizeof(header);
    if (!put(&o, end, "{\"alg\":\"HS256\",\"kid\":") || !json_put_string(&o, end, kid) ||
        !put(&o, end, ",\"typ\":\"JWT\"}"))
        return WR_ERROR;
    hlen = (size_t)(o - header);
    o = payload;
    end = payload + sizeof(payload);
    if (!put(&o, end, "{\"iss\":") || !json_put_string(&o, end, conf->tokens.issuer) || !put(&o, end, ",\"sub\":") ||
        !json_put_string(&o, end, claims->sub) || !put(&o, end, ",\"aud\":") || !json_put_string(&o, end, claims->aud) ||
        !put(&o, end, ",\"typ\":") || !json_put_string(&o, end, typ) || !put(&o, end, ",\"iat\":") ||
        !put_int(&o, end, claims->iat) || !put(&o, end, ",\"nbf\":") || !put_int(&o, end, claims->nbf) ||
        !put(&o, end, ",\"exp\":") || !put_int(&o, end, claims->exp))
        return WR_ERROR;
    if (claims->type == WR_TOKEN_QUEUE && (!put(&o, end, ",\"q\":") || !put_int(&o, end, claims->q)))
        return WR_ERROR;
    if (!put(&o, end, "}"))
        return WR_ERROR;
    plen = (size_t)(o - payload);

    /* Both segments and the signature, with their dots, must fit in a token we would accept. */
    tok_len = (hlen + 2) / 3 * 4 + 1 + (plen + 2) / 3 * 4 + 1 + 44;
    if (tok_len > WR_TOKEN_MAX) {
        wr_error("token: a signed token would be about %zu bytes, over the %d-byte limit", tok_len, WR_TOKEN_MAX);
        return WR_ERROR;
    }
    tok_len = b64url_encode((const unsigned char *)header, hlen, tok);
    tok[tok_len++] = '.';
    tok_len += b64url_encode((const unsigned char *)payload, plen, tok + tok_len);
    if (wr_token_hmac(key, tok, tok_len, mac) != WR_OK)
        return WR_ERROR;
    tok[tok_len++] = '.';
    tok_len += b64url_encode(mac, sizeof(mac), tok + tok_len);
    tok[tok_len] = '\0';
    *out = wr_malloc(tok_len + 1);
    memcpy(*out, tok, tok_len + 1);
    return WR_OK;
}
