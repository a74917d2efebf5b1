/*
 * ws.c: GET ws_path on the push listeners, the WebSocket transport.
 *
 * libwebsockets runs on the gateway's libuv loop (a foreign loop), so its
 * callbacks interleave with h2o's and hiredis's in the one thread. The
 * listening sockets are the gateway's own (SO_REUSEPORT, like the HTTP
 * ones): this file accepts and hands each connection to libwebsockets
 * (lws_adopt_socket_vhost), whose own listen-sharing option fails to share
 * a port between processes in 4.1. The
 * handshake is checked before the upgrade: the path must be ws_path and the
 * token (?token=, the token header, or the room's cookie) valid, else the
 * upgrade is refused with 404, 400 or 401.
 *
 * Per connection, the state is the hub's connection and one pending
 * message: libwebsockets may only write from the WRITEABLE callback, so a
 * message waits there, and a newer position replaces a pending one (the
 * client only needs the latest). Frames from clients are not expected: text
 * is ignored, binary is refused with 1003, a frame over WR_WS_RX_MAX with
 * 1009, more than WR_WS_RX_FLOOD frames a second with 1008. Pings every
 * heartbeat_interval (on_ping), and a connection silent for twice that is
 * dropped; handshakes must complete within WR_WS_HANDSHAKE_S seconds.
 */
#include "ws.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "push.h"
#include "verify_cache.h"

#define WR_WS_RX_MAX 4096
#define WR_WS_RX_FLOOD 50
#define WR_WS_HANDSHAKE_S 10
#define WR_WS_MSG_MAX (WR_TOKEN_MAX + 512)
#define WR_LWS_WRITE_CLOSE 4 /* libwebsockets' private LWS_WRITE_CLOSE */

typedef struct wr_ws_listener_s {
    uv_poll_t poll;
    int fd;
    struct lws_vhost *vhost;
    uv_timer_t pause; /* accepting paused after EMFILE */
} wr_ws_listener_t;

struct wr_ws_s {
    wr_gateway_t *gw;
    struct lws_context *context;
    lws_retry_bo_t no_validity; /* all zero: libwebsockets schedules no per-connection keepalive */
    uv_timer_t ping;
    wr_ws_listener_t *listeners;
    size_t num_listeners;
};

typedef struct wr_ws_session_s {
    wr_push_conn_t conn;
    struct wr_ws_session_s *next, *prev; /* established sessions, for pings */
    int64_t last_heard_ms;               /* last frame or pong from the client */
    struct lws *wsi;
    wr_gw_room_t *room;
    wr_claims_t claims;
    int verified;
    char *out; /* LWS_PRE + message, or NULL */
    size_t out_len, out_cap;
    int out_final;
    int closing;
    int failed; /* a write failed: close at the next WRITEABLE */
    int64_t window_start_ms;
    unsigned frames_in_window;
} wr_ws_session_t;

/* One per process; libwebsockets' callbacks find the gateway here. It stays
 * set after wr_ws_free, as libwebsockets may still close connections (and
 * call back) while the loop winds down. */
static wr_gateway_t *ws_gw;
static wr_ws_session_t sessions = {.next = &sessions, .prev = &sessions};

/*
 * The connection is dead (a write failed): stop using it at once, and let
 * libwebsockets close it from the WRITEABLE callback. (lws_set_timeout would
 * do too, but it inserts into a sorted list of every connection: at tens of
 * thousands of clients gone at once, that is quadratic.)
 */
static void fail(wr_ws_session_t *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    s->failed = 1;
    wr_push_detach(ws_gw->push, &s->conn);
    lws_callback_on_writable(s->wsi);
}

/*
 * Writes a text frame now, when nothing of ours is queued: the common case,
 * and the cheap one. Going through libwebsockets' WRITEABLE callback costs
 * two epoll_ctl calls and a loop turn per message, which at tens of
 * thousands of clients a tick is most of the work. If the socket cannot
 * take the whole frame, libwebsockets keeps the rest and sends it first
 * when it can (lws_write appends to its own output buffer), so frames stay
 * whole and in order. Returns 1 when written.
 */
static int write_now(wr_ws_session_t *s, const char *json, size_t len)
{
    unsigned char buf[LWS_PRE + 256];
    if (len > sizeof(buf) - LWS_PRE || s->out_len > 0)
        return 0;
    memcpy(buf + LWS_PRE, json, len);
    if (lws_write(s->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len)
        fail(s);
    return 1;
}

static void ws_send(wr_push_conn_t *c, const char *type, const char *json, size_t len, const char *id, int final)
{
    wr_ws_session_t *s = c->transport;
    if (s->closing || s->out_final || len > WR_WS_MSG_MAX)
        return;
    if (!final && write_now(s, json, len))
        return;
    if (len > s->out_cap) {
        /* Sized to the message: most are position updates of under 100
         * bytes, and this buffer lives as long as the connection. */
        s->out = wr_realloc(s->out, LWS_PRE + len);
        s->out_cap = len;
    }
    memcpy(s->out + LWS_PRE, json, len);
    s->out_len = len;
    s->out_final = final;
    if (final)
        wr_push_detach(ws_gw->push, &s->conn);
    lws_callback_on_writable(s->wsi);
}

static const wr_push_ops_t ws_ops = {ws_send};

/* Finds the token of the upgrade request. Returns its length, 0 if none. */
static int find_token(wr_gateway_t *gw, struct lws *wsi, char *buf, int cap, wr_gw_room_t **cookie_room)
{
    char cookie[4096], hdr[80];
    const char *v;
    int n;

    *cookie_room = NULL;
    /* libwebsockets copies the whole "token=VALUE" argument and points past the name. */
    if ((v = lws_get_urlarg_by_name(wsi, "token=", buf, cap)) != NULL) {
        n = (int)strlen(v);
        memmove(buf, v, (size_t)n + 1);
        return n;
    }
    snprintf(hdr, sizeof(hdr), "%s:", gw->token_header.base);
    if ((n = lws_hdr_custom_copy(wsi, buf, cap, hdr, (int)strlen(hdr))) > 0)
        return n;
    if (lws_hdr_copy(wsi, cookie, sizeof(cookie), WSI_TOKEN_HTTP_COOKIE) > 0) {
        for (size_t i = 0; i < gw->num_rooms; i++) {
            wr_gw_room_t *r = &gw->rooms[i];
            char *p = cookie;
            while ((p = strstr(p, r->cookie.base)) != NULL) {
                if ((p == cookie || p[-1] == ' ' || p[-1] == ';') && p[r->cookie.len] == '=') {
                    char *val = p + r->cookie.len + 1, *end = strchr(val, ';');
                    n = end != NULL ? (int)(end - val) : (int)strlen(val);
                    if (n >= cap)
                        return 0;
                    memcpy(buf, val, (size_t)n);
                    buf[n] = '\0';
                    *cookie_room = r;
                    return n;
                }
                p += r->cookie.len;
            }
        }
    }
    return 0;
}

/* Refuses the upgrade with an HTTP status. Returns -1 for the callback to return. */
static int refuse(struct lws *wsi, unsigned status, const char *body)
{
    lws_return_http_status(wsi, status, body);
    return -1;
}

static int check_handshake(wr_ws_session_t *s, struct lws *wsi)
{
    wr_gateway_t *gw = ws_gw;
    char uri[512], token[WR_TOKEN_MAX + 1];
    wr_gw_room_t *cookie_room;
    wr_token_result_t res;
    int n;

    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, gw->conf->gateway.ws_path) != 0)
        return refuse(wsi, HTTP_STATUS_NOT_FOUND, "{\"error\":\"not_found\"}");
    if ((n = find_token(gw, wsi, token, sizeof(token), &cookie_room)) <= 0)
        return refuse(wsi, HTTP_STATUS_BAD_REQUEST, "{\"error\":\"missing_token\"}");
    res = wr_verify_cached(gw->verified, token, (size_t)n, wr_now_ms(), gw->max_session_ms, &s->claims);
    if (res == WR_TOKEN_VALID &&
        ((s->room = wr_gateway_room(gw, s->claims.aud)) == NULL || (cookie_room != NULL && cookie_room != s->room)))
        res = WR_TOKEN_BAD_AUDIENCE;
    if (res != WR_TOKEN_VALID)
        return refuse(wsi, HTTP_STATUS_UNAUTHORIZED, "{\"error\":\"invalid_token\"}");
    s->verified = 1;
    return 0;
}

/* Sets the close frame's code and reason; returns -1 for the callback to return. */
static int close_with(wr_ws_session_t *s, enum lws_close_status code, const char *why)
{
    s->closing = 1;
    lws_close_reason(s->wsi, code, (unsigned char *)why, strlen(why));
    return -1;
}

/*
 * Writes a close frame itself and returns -1 to drop the connection. From
 * the WRITEABLE callback, lws_close_reason and -1 drop the connection
 * without the frame in libwebsockets 4.1 (it only sends it when the close
 * starts elsewhere, as from RECEIVE), and the public write protocols lack
 * LWS_WRITE_CLOSE, so the private value (4) is used: a client that waited
 * in line deserves to learn that the stream ended normally.
 */
static int send_close(wr_ws_session_t *s, enum lws_close_status code, const char *why)
{
    unsigned char frame[LWS_PRE + 2 + 32];
    size_t n = strlen(why) < 32 ? strlen(why) : 32;
    s->closing = 1;
    frame[LWS_PRE] = (unsigned char)((unsigned)code >> 8);
    frame[LWS_PRE + 1] = (unsigned char)((unsigned)code & 0xff);
    memcpy(frame + LWS_PRE + 2, why, n);
    lws_write(s->wsi, frame + LWS_PRE, 2 + n, (enum lws_write_protocol)WR_LWS_WRITE_CLOSE);
    return -1;
}

static int on_receive(wr_ws_session_t *s, size_t len)
{
    int64_t now = wr_mono_ms();
    s->last_heard_ms = now;
    if (lws_frame_is_binary(s->wsi))
        return close_with(s, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, "binary frames are not accepted");
    if (len + lws_remaining_packet_payload(s->wsi) > WR_WS_RX_MAX)
        return close_with(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "frame too large");
    if (now - s->window_start_ms >= 1000) {
        s->window_start_ms = now;
        s->frames_in_window = 0;
    }
    if (++s->frames_in_window > WR_WS_RX_FLOOD)
        return close_with(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many frames");
    return 0; /* text from clients is not needed: ignored */
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    wr_ws_session_t *s = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        /* A plain HTTP request on the push port. */
        if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "{\"error\":\"not_found\"}"))
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        memset(s, 0, sizeof(*s));
        s->wsi = wsi;
        return check_handshake(s, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        s->wsi = wsi;
        s->window_start_ms = wr_mono_ms();
        if (!s->verified)
            return -1;
        s->last_heard_ms = wr_mono_ms();
        s->next = &sessions;
        s->prev = sessions.prev;
        s->prev->next = s;
        sessions.prev = s;
        wr_push_attach(ws_gw->push, &s->conn, s->room, &s->claims, &ws_ops, s, NULL);
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        s->last_heard_ms = wr_mono_ms();
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->failed)
            return -1;
        if (s->out_len > 0) {
            size_t n = s->out_len;
            s->out_len = 0;
            if (lws_write(wsi, (unsigned char *)s->out + LWS_PRE, n, LWS_WRITE_TEXT) < (int)n)
                return -1;
        }
        if (s->out_final)
            return send_close(s, LWS_CLOSE_STATUS_NORMAL, "done");
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return on_receive(s, len);
    case LWS_CALLBACK_CLOSED:
        if (s->next != NULL) {
            s->next->prev = s->prev;
            s->prev->next = s->next;
            s->next = s->prev = NULL;
        }
        wr_push_detach(ws_gw->push, &s->conn);
        free(s->out);
        s->out = NULL;
        s->out_cap = 0;
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"waitroom", callback, sizeof(wr_ws_session_t), 512, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void log_emit(int level, const char *line)
{
    /* libwebsockets' lines end with a newline; ours add one. */
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        n--;
    wr_log(level == LLL_ERR ? WR_LOG_ERROR : WR_LOG_WARN, "websocket: %.*s", (int)n, line);
}

/*
 * Every heartbeat_interval: ping each client, and drop one not heard from
 * (no pong, no frame) for two intervals. libwebsockets' own keepalive keeps
 * a sorted timer list with one entry per connection, re-sorted on every
 * message: at tens of thousands of connections that insertion dominated
 * the profile, so the gateway keeps one timer for all of them instead.
 */
static void on_ping(uv_timer_t *t)
{
    int64_t now = wr_mono_ms(), limit = 2 * ws_gw->conf->gateway.heartbeat_interval_ms + 1000;
    /* A payload, because libwebsockets does not pass an empty pong on to the callback. */
    unsigned char ping[LWS_PRE + 2];
    memcpy(ping + LWS_PRE, "wr", 2);
    for (wr_ws_session_t *s = sessions.next; s != &sessions; s = s->next) {
        if (s->closing)
            continue;
        if (now - s->last_heard_ms > limit) {
            fail(s);
            continue;
        }
        if (s->out_len == 0 && lws_write(s->wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 2)
            fail(s);
    }
}

static void on_resume(uv_timer_t *t);

static void on_acceptable(uv_poll_t *p, int status, int events)
{
    wr_ws_listener_t *l = p->data;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: stop accepting for a moment rather than spin. */
                wr_warn("websocket: accept() failed: %s; pausing 100 ms", strerror(errno));
                uv_poll_stop(&l->poll);
                uv_timer_start(&l->pause, on_resume, 100, 0);
            }
            return;
        }
        if (lws_adopt_socket_vhost(l->vhost, fd) == NULL)
            close(fd);
    }
}

static void on_resume(uv_timer_t *t)
{
    wr_ws_listener_t *l = t->data;
    uv_poll_start(&l->poll, UV_READABLE, on_acceptable);
}

wr_ws_t *wr_ws_new(wr_gateway_t *gw)
{
    struct lws_context_creation_info info;
    void *loops[] = {gw->loop};
    wr_ws_t *ws = wr_calloc(1, sizeof(*ws));

    ws->gw = gw;
    ws_gw = gw;
    lws_set_log_level(LLL_ERR, log_emit);

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.foreign_loops = loops;
    info.timeout_secs = WR_WS_HANDSHAKE_S;
    /* Without a policy of its own, libwebsockets applies a default one that
     * keeps every connection in a sorted timer list (re-inserted, walking
     * the whole list, each time the connection shows life): at 19,000
     * connections that was most of the process's time. on_ping does the
     * keepalive instead. */
    info.retry_and_idle_policy = &ws->no_validity;
    info.gid = -1;
    info.uid = -1;
    if ((ws->context = lws_create_context(&info)) == NULL) {
        wr_error("websocket: lws_create_context() failed");
        goto fail;
    }
    ws->num_listeners = gw->conf->gateway.num_push_listen;
    ws->listeners = wr_calloc(ws->num_listeners, sizeof(*ws->listeners));
    for (size_t i = 0; i < ws->num_listeners; i++) {
        wr_ws_listener_t *l = &ws->listeners[i];
        char name[32];
        l->fd = -1;
        memset(&info, 0, sizeof(info));
        snprintf(name, sizeof(name), "push%zu", i);
        info.vhost_name = name;
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
        info.protocols = protocols;
        info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
        info.timeout_secs = WR_WS_HANDSHAKE_S;
        info.retry_and_idle_policy = &ws->no_validity;
        if ((l->vhost = lws_create_vhost(ws->context, &info)) == NULL) {
            wr_error("websocket: lws_create_vhost() failed");
            goto fail;
        }
        if ((l->fd = wr_listen_fd(&gw->conf->gateway.push_listen[i])) < 0)
            goto fail;
        uv_poll_init(gw->loop, &l->poll, l->fd);
        l->poll.data = l;
        uv_timer_init(gw->loop, &l->pause);
        l->pause.data = l;
        uv_poll_start(&l->poll, UV_READABLE, on_acceptable);
    }
    uv_timer_init(gw->loop, &ws->ping);
    ws->ping.data = ws;
    uv_timer_start(&ws->ping, on_ping, gw->conf->gateway.heartbeat_interval_ms,
                   gw->conf->gateway.heartbeat_interval_ms);
    return ws;
fail:
    /* The caller exits the process: the handles need no closing. */
    return NULL;
}

void wr_ws_stop_accepting(wr_ws_t *ws)
{
    if (uv_is_active((uv_handle_t *)&ws->ping))
        uv_close((uv_handle_t *)&ws->ping, NULL);
    for (size_t i = 0; i < ws->num_listeners; i++) {
        wr_ws_listener_t *l = &ws->listeners[i];
        if (l->fd < 0)
            continue;
        uv_close((uv_handle_t *)&l->poll, NULL);
        uv_close((uv_handle_t *)&l->pause, NULL);
        close(l->fd);
        l->fd = -1;
    }
}

void wr_ws_free(wr_ws_t *ws)
{
    wr_ws_stop_accepting(ws);
    lws_context_destroy(ws->context);
    /* ws->listeners are freed with ws at exit: their handles are closing. */
}
