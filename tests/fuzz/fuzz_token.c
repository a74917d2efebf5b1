/*
 * fuzz_token.c: a libFuzzer target for wr_token_verify.
 *
 * Not part of the default build. Build and run by hand, from the top of the
 * tree:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE -Ilib \
 *       lib/common.c lib/log.c lib/config.c lib/token.c tests/fuzz/fuzz_token.c \
 *       $(pkg-config --cflags --libs libjwt jansson libssl libcrypto) -o /tmp/fuzz_token
 *   /tmp/fuzz_token -max_total_time=60 -max_len=4096 CORPUS_DIR
 *
 * The first input byte chooses a mode:
 *   - even: the rest is a token, verified as it stands. This reaches the
 *     shape, header, kid and signature checks, but a random token never has
 *     a valid HMAC, so nothing after the signature is reached this way;
 *   - odd: the rest is "HEADER\nPAYLOAD"; both are base64url-encoded and
 *     signed here with the configured key k1, as an attacker holding the key
 *     would. This drives libjwt's decoding and every claim check with
 *     arbitrary JSON, and a token that verifies must then make sense.
 *
 * The configuration is built by hand (issuer "waitroom", keys k1 and k2 with
 * 40-byte secrets, 30 s of skew, 24 h queue tokens); time is fixed so that a
 * crash replays.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common.h"
#include "config.h"
#include "log.h"
#include "token.h"

#define FUZZ_NOW_MS 1700000000000LL
#define FUZZ_ADMISSION_MS (15LL * 60 * 1000)

static unsigned char k1_secret[] = "k1-secret-for-fuzzing-0123456789-abcdef";
static unsigned char k2_secret[] = "k2-secret-for-fuzzing-9876543210-ghijkl";
static wr_key_t fuzz_keys[] = {
    {.kid = "k1", .secret = k1_secret, .secret_len = sizeof(k1_secret) - 1},
    {.kid = "k2", .secret = k2_secret, .secret_len = sizeof(k2_secret) - 1},
};
static wr_config_t fuzz_conf;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    wr_log_level = -1; /* signing never happens here, but keep the fuzzer's output clean */
    fuzz_conf.tokens.issuer = "waitroom";
    fuzz_conf.tokens.keys = fuzz_keys;
    fuzz_conf.tokens.num_keys = 2;
    fuzz_conf.tokens.signing_kid = "k1";
    fuzz_conf.tokens.clock_skew_ms = 30000;
    fuzz_conf.tokens.queue_token_ttl_ms = 24LL * 3600 * 1000;
    return 0;
}

static size_t b64url(const uint8_t *in, size_t len, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (len - i >= 1) {
        uint32_t v = (uint32_t)in[i] << 16 | (len - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        if (len - i == 2)
            out[o++] = tbl[(v >> 6) & 63];
    }
    return o;
}

/* What a verified token must look like, whatever JSON produced it. */
static void check_valid(const wr_claims_t *c)
{
    size_t aud_len = strnlen(c->aud, sizeof(c->aud));
    if (!wr_uid_valid(c->sub, strnlen(c->sub, sizeof(c->sub))) || aud_len < 1 || aud_len > WR_NAME_MAX)
        abort();
    if (c->type != WR_TOKEN_QUEUE && c->type != WR_TOKEN_ADMISSION)
        abort();
    if ((c->type == WR_TOKEN_QUEUE && c->q < 1) || (c->type == WR_TOKEN_ADMISSION && c->q != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wr_claims_t out;
    char *tok = NULL;
    const uint8_t *nl;
    size_t hlen, plen, n;
    unsigned char mac[32];
    unsigned int mlen = 0;

    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0) {
        /* An exactly sized copy, so that any read past the end is caught. */
        tok = malloc(size - 1 ? size - 1 : 1);
        memcpy(tok, data + 1, size - 1);
        if (wr_token_verify(&fuzz_conf, tok, size - 1, FUZZ_NOW_MS, FUZZ_ADMISSION_MS, &out) == WR_TOKEN_VALID)
            check_valid(&out);
        goto done;
    }

    data++;
    size--;
    nl = memchr(data, '\n', size);
    if (nl == NULL)
        return 0;
    hlen = (size_t)(nl - data);
    plen = size - hlen - 1;
    tok = malloc((hlen + plen) / 3 * 4 + 128);
    n = b64url(data, hlen, tok);
    tok[n++] = '.';
    n += b64url(nl + 1, plen, tok + n);
    if (HMAC(EVP_sha256(), k1_secret, (int)(sizeof(k1_secret) - 1), (unsigned char *)tok, n, mac, &mlen) == NULL)
        abort();
    tok[n++] = '.';
    n += b64url(mac, mlen, tok + n);
    if (wr_token_verify(&fuzz_conf, tok, n, FUZZ_NOW_MS, FUZZ_ADMISSION_MS, &out) == WR_TOKEN_VALID)
        check_valid(&out);

done:
    free(tok);
    return 0;
}
