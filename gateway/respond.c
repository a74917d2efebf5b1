/*
 * respond.c: the answers the gateway gives itself (everything but proxied
 * responses), tokens found in requests, cookies, and the request guard.
 *
 * Nothing here logs or echoes a token: error bodies carry a reason, never the
 * value that was refused.
 */
#include "respond.h"

#include <inttypes.h>
#include <stdio.h>

#include "position.h"
#include "verify_cache.h"

static void on_guard_dispose(void *p)
{
    wr_pending_t **guard = p;
    if (*guard != NULL)
        (*guard)->req = NULL;
}

void *wr_pending_new(h2o_req_t *req, size_t size)
{
    wr_pending_t *p = wr_calloc(1, size);
    p->req = req;
    p->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*p->guard), on_guard_dispose);
    *p->guard = p;
    return p;
}

void wr_pending_free(wr_pending_t *p)
{
    if (p->req != NULL)
        *p->guard = NULL;
    free(p);
}

static int contains(h2o_iovec_t hay, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= hay.len; i++)
        if (strncasecmp(hay.base + i, needle, n) == 0)
            return 1;
    return 0;
}

int wr_exact_path(h2o_req_t *req, const char *path)
{
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    if (len == strlen(path) && memcmp(req->path.base, path, len) == 0)
        return 1;
    wr_respond_error(req, 404, "not_found", NULL);
    return 0;
}

int wr_wants_json(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    return i >= 0 && contains(req->headers.entries[i].value, "application/json");
}

static h2o_iovec_t trim(h2o_iovec_t v)
{
    while (v.len > 0 && (v.base[0] == ' ' || v.base[0] == '\t')) {
        v.base++;
        v.len--;
    }
    while (v.len > 0 && (v.base[v.len - 1] == ' ' || v.base[v.len - 1] == '\t'))
        v.len--;
    return v;
}

static int query_token(h2o_req_t *req, h2o_iovec_t *tok)
{
    const char *q, *end = req->path.base + req->path.len;
    if (req->query_at == SIZE_MAX)
        return WR_DECLINED;
    for (q = req->path.base + req->query_at + 1; q < end;) {
        const char *amp = memchr(q, '&', end - q), *stop = amp != NULL ? amp : end;
        if (stop - q >= 6 && memcmp(q, "token=", 6) == 0) {
            /* Tokens are base64url and dots: nothing to percent-decode. */
            *tok = h2o_iovec_init(q + 6, stop - q - 6);
            return WR_OK;
        }
        q = stop + 1;
    }
    return WR_DECLINED;
}

/* Looks through one Cookie header value for name=...; name_len 0 matches any "<cookie_name>_" prefix. */
static int cookie_token(wr_gateway_t *gw, h2o_iovec_t header, const wr_gw_room_t *room, h2o_iovec_t *tok,
                        wr_gw_room_t **room_out)
{
    const char *p = header.base, *end = header.base + header.len;
    while (p < end) {
        const char *semi = memchr(p, ';', end - p), *stop = semi != NULL ? semi : end;
        const char *eq = memchr(p, '=', stop - p);
        if (eq != NULL) {
            h2o_iovec_t name = trim(h2o_iovec_init(p, eq - p)), value = trim(h2o_iovec_init(eq + 1, stop - eq - 1));
            for (size_t i = 0; i < gw->num_rooms; i++) {
                wr_gw_room_t *r = &gw->rooms[i];
                if ((room == NULL || room == r) && h2o_memis(name.base, name.len, r->cookie.base, r->cookie.len)) {
                    *tok = value;
                    if (room_out != NULL)
                        *room_out = r;
                    return WR_OK;
                }
            }
        }
        p = stop + 1;
    }
    return WR_DECLINED;
}

int wr_find_token(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, int allow_query, h2o_iovec_t *tok,
                  int *from_cookie, wr_gw_room_t **room_out)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, gw->token_header.base, gw->token_header.len, -1);
    *from_cookie = 0;
    if (room_out != NULL)
        *room_out = NULL;
    if (i >= 0) {
        *tok = trim(req->headers.entries[i].value);
        return WR_OK;
    }
    if (allow_query && query_token(req, tok) == WR_OK)
        return WR_OK;
    for (i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) >= 0;) {
        if (cookie_token(gw, req->headers.entries[i].value, room, tok, room_out) == WR_OK) {
            *from_cookie = 1;
            return WR_OK;
        }
    }
    return WR_DECLINED;
}

void wr_set_cookie(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, const char *value, int64_t max_age_s)
{
    static const char attrs[] = "; Path=/; HttpOnly; SameSite=Lax", age[] = "; Max-Age=";
    size_t vlen = strlen(value);
    char *p = h2o_mem_alloc_pool(&req->pool, room->cookie.len + vlen + sizeof(attrs) + sizeof(age) + 24), *start = p;
    (void)gw;
    memcpy(p, room->cookie.base, room->cookie.len);
    p += room->cookie.len;
    *p++ = '=';
    memcpy(p, value, vlen);
    p += vlen;
    memcpy(p, attrs, sizeof(attrs) - 1);
    p += sizeof(attrs) - 1;
    if (max_age_s >= 0) {
        memcpy(p, age, sizeof(age) - 1);
        p += sizeof(age) - 1;
        p += wr_fmt_i64(p, max_age_s);
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, start, (size_t)(p - start));
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "OK";
    }
}

static void send_body(h2o_req_t *req, int status, const char *type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
}

void wr_respond_json(h2o_req_t *req, int status, const char *body, size_t len)
{
    send_body(req, status, "application/json", body, len);
}

void wr_respond_error(h2o_req_t *req, int status, const char *error, const char *reason)
{
    char body[256];
    int n = reason != NULL ? snprintf(body, sizeof(body), "{\"error\":\"%s\",\"reason\":\"%s\"}", error, reason)
                           : snprintf(body, sizeof(body), "{\"error\":\"%s\"}", error);
    wr_respond_json(req, status, body, (size_t)n);
}

void wr_respond_invalid(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, const char *reason, int from_cookie)
{
    if (from_cookie && room != NULL)
        wr_set_cookie(gw, req, room, "", 0);
    wr_respond_error(req, 401, "invalid_token", reason);
}

void wr_respond_unavailable(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    wr_respond_error(req, 503, "unavailable", "queue store unreachable");
}

/* Expands {{name}} placeholders of the waiting page. Unknown names expand to nothing. */
static h2o_iovec_t render_page(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, int64_t position,
                               int64_t wait)
{
    h2o_iovec_t out = {h2o_mem_alloc_pool(&req->pool, gw->page.len + 512), 0};
    size_t cap = gw->page.len + 512;
    const char *p = gw->page.base, *end = gw->page.base + gw->page.len;

    while (p < end) {
        const char *open = memmem(p, end - p, "{{", 2), *close;
        char val[128];
        size_t vlen = 0;
        if (open == NULL || (close = memmem(open, end - open, "}}", 2)) == NULL)
            open = close = end;
        memcpy(out.base + out.len, p, open - p);
        out.len += open - p;
        if (open == end)
            break;
        h2o_iovec_t name = h2o_iovec_init(open + 2, close - open - 2);
        if (h2o_memis(name.base, name.len, H2O_STRLIT("position")))
            vlen = snprintf(val, sizeof(val), "%" PRId64, position);
        else if (h2o_memis(name.base, name.len, H2O_STRLIT("estimatedWait")))
            vlen = snprintf(val, sizeof(val), "%" PRId64, wait);
        else if (h2o_memis(name.base, name.len, H2O_STRLIT("pollInterval")))
            vlen = snprintf(val, sizeof(val), "%" PRId64, gw->conf->gateway.poll_interval_ms / 1000);
        else if (h2o_memis(name.base, name.len, H2O_STRLIT("room")))
            vlen = snprintf(val, sizeof(val), "%s", room->conf->name);
        else if (h2o_memis(name.base, name.len, H2O_STRLIT("statusUrl")))
            vlen = snprintf(val, sizeof(val), "%s", gw->conf->gateway.status_path);
        if (vlen >= sizeof(val))
            vlen = sizeof(val) - 1;
        if (out.len + vlen > cap) /* cannot happen with 512 spare bytes and at most a few placeholders */
            vlen = 0;
        memcpy(out.base + out.len, val, vlen);
        out.len += vlen;
        p = close + 2;
    }
    return out;
}

void wr_respond_queued(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, const char *token, int64_t position)
{
    int64_t wait = wr_estimated_wait(position, room->conf);
    int status = room->conf->queueing_status_code;
    char *retry = h2o_mem_alloc_pool(&req->pool, 24);
    size_t n = wr_fmt_i64(retry, gw->conf->gateway.poll_interval_ms / 1000);

    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, retry, n);
    wr_set_cookie(gw, req, room, token, gw->conf->tokens.queue_token_ttl_ms / 1000);
    if (wr_wants_json(req)) {
        static const char a[] = "{\"status\":\"WAITING\",\"queueToken\":\"", b[] = "\",\"position\":",
                          c[] = ",\"estimatedWait\":";
        size_t tlen = strlen(token);
        char *body = h2o_mem_alloc_pool(&req->pool, tlen + sizeof(a) + sizeof(b) + sizeof(c) + 48), *p = body;
        memcpy(p, a, sizeof(a) - 1);
        p += sizeof(a) - 1;
        memcpy(p, token, tlen); /* a token is base64url and dots: nothing to escape */
        p += tlen;
        memcpy(p, b, sizeof(b) - 1);
        p += sizeof(b) - 1;
        p += wr_fmt_i64(p, position);
        memcpy(p, c, sizeof(c) - 1);
        p += sizeof(c) - 1;
        p += wr_fmt_i64(p, wait);
        *p++ = '}';
        wr_respond_json(req, status, body, (size_t)(p - body));
    } else {
        h2o_iovec_t page = render_page(gw, req, room, position, wait);
        send_body(req, status, "text/html; charset=utf-8", page.base, page.len);
    }
}

/*
 * Verifies the request's token. Returns WR_OK with the claims and room, or
 * WR_DECLINED after answering the request itself.
 */
int wr_authenticate(wr_gateway_t *gw, h2o_req_t *req, wr_claims_t *claims, wr_gw_room_t **room)
{
    h2o_iovec_t token;
    int from_cookie;
    wr_gw_room_t *cookie_room;
    wr_token_result_t res;

    if (wr_find_token(gw, req, NULL, 1, &token, &from_cookie, &cookie_room) != WR_OK || token.len == 0) {
        wr_respond_error(req, 400, "missing_token", NULL);
        return WR_DECLINED;
    }
    res = wr_verify_cached(gw->verified, token.base, token.len, wr_now_ms(), gw->max_session_ms, claims);
    *room = res == WR_TOKEN_VALID ? wr_gateway_room(gw, claims->aud) : NULL;
    if (res == WR_TOKEN_VALID && (*room == NULL || (cookie_room != NULL && cookie_room != *room)))
        res = WR_TOKEN_BAD_AUDIENCE;
    if (res == WR_TOKEN_VALID && claims->type == WR_TOKEN_ADMISSION &&
        claims->exp * 1000 > wr_now_ms() + (*room)->conf->session_duration_ms + gw->conf->tokens.clock_skew_ms)
        res = WR_TOKEN_BAD_LIFETIME;
    if (res != WR_TOKEN_VALID) {
        wr_respond_invalid(gw, req, cookie_room, wr_token_reason(res), from_cookie);
        return WR_DECLINED;
    }
    return WR_OK;
}

