/*
 * sse.c: GET events_path, the Server-Sent Events transport of the push hub.
 *
 * One response per client, streamed for as long as the user waits. One
 * write may be in flight per stream, and its buffer must stay valid until
 * it completes: so each stream owns two buffers, the one in flight and the
 * one collecting what comes next, and swaps them when a write completes.
 * They are reused: memory does not grow with the number of messages sent.
 *
 * Two ways out, by protocol:
 * - HTTP/1.x: once the head is written, the stream takes the connection's
 *   socket from h2o (h2o_http1_upgrade, answering 200) and writes events to
 *   it directly; the body ends when the connection closes, as an EventSource
 *   expects. h2o's connection, request, pool chunk and input buffer are freed
 *   at that point, so a held stream costs its socket and this struct (about
 *   a third of what h2o keeps for a response in progress; docs/push.md), and
 *   no chunked framing or output filter runs per message. The socket is read
 *   (and anything the client sends discarded) so that a client that goes
 *   away is noticed at once, not at the next write.
 * - HTTP/2: a response streamed through h2o (h2o_send, proceed), many
 *   streams sharing the client's connection.
 *
 * Each stream opens with a retry: hint (with jitter, so that a restart's
 * reconnects spread out), then the user's state; a comment line every
 * heartbeat_interval keeps intermediaries from timing the stream out and
 * lets HTTP/1.1 notice a client that vanished. A final event (ACTIVE,
 * EXPIRED, CLOSED) ends the response.
 */
#include <inttypes.h>
#include <stdio.h>

#include "gateway.h"
#include <h2o/http1.h> /* after h2o.h, which gateway.h includes */

#include "log.h"
#include "presence.h"
#include "push.h"
#include "respond.h"

typedef struct wr_sse_stream_s {
    h2o_generator_t super; /* first: h2o hands it back to proceed and stop (HTTP/2) */
    wr_push_conn_t conn;
    wr_gateway_t *gw;
    h2o_req_t *req;       /* HTTP/2: the response; NULL on HTTP/1.x */
    h2o_socket_t *sock;   /* HTTP/1.x: the connection, once h2o handed it over */
    int raw;              /* HTTP/1.x: owned by this file (freed by raw_close), not by a pool */
    struct wr_sse_stream_s *next, *prev; /* all streams, for heartbeats */
    char *buf[2];
    size_t len[2], cap[2];
    int inflight;      /* index of the buffer in flight, or -1 */
    int final_queued;  /* a final event is in the collecting buffer */
    int finished;      /* the final send was made: nothing more may be sent */
    int gone;          /* stopped or disposed */
} wr_sse_stream_t;

typedef struct wr_sse_handler_s {
    h2o_handler_t super;
    wr_gateway_t *gw;
} wr_sse_handler_t;

static wr_sse_stream_t streams = {.next = &streams, .prev = &streams};
static uv_timer_t heartbeat;
static int heartbeat_started;

static void append(wr_sse_stream_t *s, const char *data, size_t len)
{
    int i = s->inflight == 0 ? 1 : 0;
    if (s->len[i] + len > s->cap[i]) {
        s->cap[i] = (s->len[i] + len) * 2;
        s->buf[i] = wr_realloc(s->buf[i], s->cap[i]);
    }
    memcpy(s->buf[i] + s->len[i], data, len);
    s->len[i] += len;
}

static void on_written(h2o_socket_t *sock, const char *err);

/* Sends what has collected, if nothing is in flight. */
static void flush(wr_sse_stream_t *s)
{
    int i = s->inflight == 0 ? 1 : 0;
    h2o_iovec_t v;
    if (s->gone || s->finished || s->inflight >= 0 || s->len[i] == 0)
        return;
    if (s->raw && s->sock == NULL)
        return; /* the head is still going out: what collects goes next */
    s->inflight = i;
    v = h2o_iovec_init(s->buf[i], s->len[i]);
    s->len[i] = 0;
    if (s->final_queued)
        s->finished = 1;
    if (s->raw)
        h2o_socket_write(s->sock, &v, 1, on_written);
    else
        h2o_send(s->req, &v, 1, s->finished);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    wr_sse_stream_t *s = (wr_sse_stream_t *)g;
    s->inflight = -1;
    flush(s);
}

static void unlink_stream(wr_sse_stream_t *s)
{
    if (s->next != NULL) {
        s->next->prev = s->prev;
        s->prev->next = s->next;
        s->next = s->prev = NULL;
    }
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    wr_sse_stream_t *s = (wr_sse_stream_t *)g;
    s->gone = 1;
    wr_push_detach(s->gw->push, &s->conn);
    unlink_stream(s);
}

/* HTTP/1.x: the stream is over (client gone, final event written, or
 * shutdown); closes the socket, if it has one, and frees everything. */
static void raw_close(wr_sse_stream_t *s)
{
    s->gone = 1;
    wr_push_detach(s->gw->push, &s->conn);
    unlink_stream(s);
    if (s->sock != NULL)
        h2o_socket_close(s->sock); /* a write in flight is dropped, and its callback not called */
    free(s->buf[0]);
    free(s->buf[1]);
    free(s);
}

static void on_written(h2o_socket_t *sock, const char *err)
{
    wr_sse_stream_t *s = sock->data;
    s->inflight = -1;
    if (err != NULL || s->finished)
        raw_close(s);
    else
        flush(s);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    wr_sse_stream_t *s = sock->data;
    if (err != NULL) {
        raw_close(s); /* the client closed (or reset) the connection */
        return;
    }
    h2o_buffer_consume(&sock->input, sock->input->size); /* a client has nothing to say on this stream */
}

/* HTTP/1.x: the head (and the first events) went out; the socket is ours. */
static void on_upgraded(void *data, h2o_socket_t *sock, size_t reqsize)
{
    wr_sse_stream_t *s = data;
    s->inflight = -1;
    if (sock == NULL || s->finished) {
        if (sock != NULL)
            s->sock = sock;
        raw_close(s);
        return;
    }
    s->sock = sock;
    sock->data = s;
    if (sock->input->size != 0)
        h2o_buffer_consume(&sock->input, sock->input->size); /* the request, and anything pipelined after it */
    h2o_socket_read_start(sock, on_read);
    flush(s);
}

static void on_dispose(void *p)
{
    wr_sse_stream_t *s = p;
    s->gone = 1;
    wr_push_detach(s->gw->push, &s->conn);
    unlink_stream(s);
    free(s->buf[0]);
    free(s->buf[1]);
}

static void sse_send(wr_push_conn_t *c, const char *type, const char *json, size_t len, const char *id, int final)
{
    wr_sse_stream_t *s = c->transport;
    char head[96];
    int n;
    if (s->gone || s->finished || s->final_queued)
        return;
    n = id != NULL ? snprintf(head, sizeof(head), "id: %s\nevent: %s\ndata: ", id, type)
                   : snprintf(head, sizeof(head), "event: %s\ndata: ", type);
    append(s, head, (size_t)n);
    append(s, json, len);
    append(s, "\n\n", 2);
    if (final) {
        s->final_queued = 1;
        /* The stream ends here: the user no longer waits, so stop counting
         * this connection as presence at once. */
        wr_push_detach(s->gw->push, &s->conn);
    }
    flush(s);
}

static const wr_push_ops_t sse_ops = {sse_send};

static void on_heartbeat(uv_timer_t *t)
{
    for (wr_sse_stream_t *s = streams.next; s != &streams; s = s->next) {
        if (s->gone || s->finished || s->final_queued)
            continue; /* nothing more goes out on it */
        append(s, ": hb\n\n", 6);
        flush(s);
    }
}

static const char *last_event_id(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    h2o_iovec_t v;
    if (i < 0)
        return NULL;
    v = req->headers.entries[i].value;
    return v.len < 24 ? h2o_strdup(&req->pool, v.base, v.len).base : NULL;
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    wr_sse_handler_t *self = (wr_sse_handler_t *)_self;
    wr_gateway_t *gw = self->gw;
    wr_claims_t claims;
    wr_gw_room_t *room;
    wr_sse_stream_t *s;
    char retry[48];
    int n;

    if (!wr_exact_path(req, gw->conf->gateway.events_path))
        return 0;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        wr_respond_error(req, 405, "method_not_allowed", NULL);
        return 0;
    }
    if (wr_authenticate(gw, req, &claims, &room) != WR_OK)
        return 0;
    if (claims.type != WR_TOKEN_QUEUE && claims.type != WR_TOKEN_ADMISSION) {
        wr_respond_invalid(gw, req, room, "bad_type", 0);
        return 0;
    }
    if (req->version < 0x200) {
        s = wr_calloc(1, sizeof(*s));
        s->raw = 1;
    } else {
        s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), on_dispose);
        memset(s, 0, sizeof(*s));
        s->super.proceed = on_proceed;
        s->super.stop = on_stop;
        s->req = req;
    }
    s->gw = gw;
    s->inflight = -1;
    s->next = &streams;
    s->prev = streams.prev;
    s->prev->next = s;
    streams.prev = s;

    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL, H2O_STRLIT("no"));
    if (!s->raw)
        h2o_start_response(req, &s->super);

    /* Reconnect after the poll interval, plus up to half as much again. */
    n = snprintf(retry, sizeof(retry), "retry: %" PRId64 "\n\n",
                 gw->conf->gateway.poll_interval_ms + (int64_t)(random() % (gw->conf->gateway.poll_interval_ms / 2 + 1)));
    append(s, retry, (size_t)n);
    wr_push_attach(gw->push, &s->conn, room, &claims, &sse_ops, s, last_event_id(req));
    if (s->raw) {
        /* The head and what collected so far go out together; h2o then
         * hands over the socket (on_upgraded) and forgets the request. */
        h2o_iovec_t v = h2o_iovec_init(s->buf[0], s->len[0]);
        s->inflight = 0;
        s->len[0] = 0;
        if (s->final_queued)
            s->finished = 1;
        h2o_http1_upgrade(req, &v, 1, on_upgraded, s);
    } else {
        flush(s);
    }
    return 0;
}

void wr_sse_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw)
{
    wr_sse_handler_t *self = (wr_sse_handler_t *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->gw = gw;
}

void wr_sse_start(wr_gateway_t *gw)
{
    if (heartbeat_started)
        return;
    heartbeat_started = 1;
    uv_timer_init(gw->loop, &heartbeat);
    uv_timer_start(&heartbeat, on_heartbeat, gw->conf->gateway.heartbeat_interval_ms,
                   gw->conf->gateway.heartbeat_interval_ms);
}

void wr_sse_stop(void)
{
    if (heartbeat_started)
        uv_close((uv_handle_t *)&heartbeat, NULL);
    heartbeat_started = 0;
}
