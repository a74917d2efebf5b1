/*
 * upstream.c: the proxy from an admitted user to the room's backend, over
 * keep-alive HTTP/1.1 connections that this file owns.
 *
 * Why not h2o's proxy: with libuv, h2o 2.2 keeps idle upstream connections
 * in a pool by exporting the socket after every response and importing it
 * again for the next request (dup, close, uv_tcp_open, a MSG_PEEK recv and
 * epoll re-registration each time): 12 system calls per proxied request
 * where nginx makes 5 (bench/proxy.sh measures both). Here a connection
 * stays one uv_tcp_t from connect to close.
 *
 * One request at a time per connection; each room has its own pool of idle
 * connections (the most recently used is taken first; at most
 * WR_UPSTREAM_MAX_IDLE are kept, each for WR_UPSTREAM_IDLE_MS). A request
 * takes an idle connection or opens one, writes the head and the body in one
 * go (h2o 2.2 has read the whole body by then), and reads the answer into
 * the connection's buffer. The head is parsed and handed to h2o; the body
 * (Content-Length, chunked, or up to the close) is passed on as it comes,
 * pointing into that buffer, one h2o_send at a time: reading stops until
 * h2o asks for more (proceed), so a slow client holds back its backend
 * connection, not the gateway's memory. The connection goes back to the
 * pool when h2o disposes of the request (until then h2o may still be writing
 * the last bytes out of the buffer), if the answer was complete and both
 * sides allow keep-alive; otherwise it is closed. An idle connection is read
 * too, so that a backend closing it is noticed at once.
 *
 * Errors, the way nginx's proxy_pass reports them: no answer head (connect
 * refused, reset, closed) is 502; no progress for WR_UPSTREAM_IO_MS is 504.
 * A request that went out on a pooled connection which the backend had
 * already closed (nothing at all came back) is sent once more on a new
 * connection if its method is idempotent: a backend may close an idle
 * connection at any moment, and it processed nothing. A failure after the
 * head went out to the client ends the client's response abruptly.
 *
 * Headers. To the backend: the client's, less hop-by-hop ones (h2o's
 * token flags), Host (the backend's authority instead, as h2o and nginx do
 * by default), Expect, X-Forwarded-Proto (ours instead), with X-Forwarded-For
 * extended by the client's address, Cookie headers merged, and
 * Content-Length for a body. To the client: the backend's, less hop-by-hop
 * ones and those h2o writes itself (Date, Server, Content-Length).
 *
 * Ownership: wr_upstream_t belongs to the gateway (one per room, kept for the
 * process's life); a connection belongs to its pool while idle and to its
 * request while busy; the per-request state lives in the request's pool.
 */
#include "upstream.h"

#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>

#include "log.h"
#include "respond.h"

#define WR_UPSTREAM_MAX_IDLE 256
#define WR_UPSTREAM_IDLE_MS 2000
#define WR_UPSTREAM_IO_MS 30000
#define UP_BUF_MIN 16384
#define UP_HEAD_MAX 65536
#define UP_IOV_MAX 16
#define UP_COPY_MAX 65536 /* a last piece up to this size is copied, freeing the connection at once */

typedef struct up_conn_s up_conn_t;
typedef struct up_req_s up_req_t;

struct wr_upstream_s {
    uv_loop_t *loop;
    const char *room;
    struct sockaddr_storage addr;
    h2o_iovec_t authority; /* "host[:port]", for Host */
    h2o_iovec_t path;      /* the backend's path prefix (h2o_build_destination) */
    up_conn_t *idle;       /* most recently used first */
    size_t num_idle;
};

struct up_conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    wr_upstream_t *up;
    up_conn_t *next, *prev; /* in up->idle */
    up_req_t *req;          /* the request it serves; NULL while idle */
    char *buf;
    size_t cap, pos, len; /* unconsumed answer bytes: [pos, len) */
    int handles;          /* open libuv handles; freed when none is left */
    int closing, connected, reused, writing;
};

enum { ST_SENDING, ST_HEAD, ST_BODY, ST_DONE };
enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };
enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_TRAILER_LF, CH_DONE };

struct up_req_s {
    h2o_generator_t super; /* first: h2o hands it back to proceed and stop */
    h2o_req_t *req;
    wr_upstream_t *up;
    up_conn_t *conn;
    h2o_iovec_t head; /* the request head, in req->pool */
    int state, mode, tries;
    uint64_t remaining; /* BODY_LENGTH: bytes left; BODY_CHUNKED: bytes left in the chunk */
    int chunk;          /* BODY_CHUNKED: decoder state */
    int chunk_digits;
    int trailer_empty;  /* CH_TRAILER: the line so far is empty */
    int keepalive;      /* the backend lets the connection be reused */
    int eof;            /* the backend closed (BODY_CLOSE: the body's end) */
    int inflight;       /* an h2o_send is in flight */
    int in_process;
    size_t consumed_to; /* conn->pos once the send in flight is done */
    int got_bytes;      /* anything of the answer came */
    char *held;         /* a closed connection's read buffer, kept until dispose */
};

static void conn_close(up_conn_t *c);
static void req_fail(up_req_t *r, int status, const char *reason);
static void process(up_req_t *r);
static void start_request(up_req_t *r);
static void release(up_req_t *r);

/* ---- connections ---- */

static int is_idempotent(h2o_req_t *req)
{
    static const char *const m[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (h2o_memis(req->method.base, req->method.len, m[i], strlen(m[i])))
            return 1;
    return 0;
}

/*
 * Lets the request r go of its connection, which is returned. The read
 * buffer stays with r (freed when h2o disposes of the request): h2o may
 * still be writing pieces of it to the client.
 */
static up_conn_t *detach(up_req_t *r)
{
    up_conn_t *c = r->conn;
    if (c == NULL)
        return NULL;
    r->conn = NULL;
    c->req = NULL;
    if (c->buf != NULL) {
        free(r->held);
        r->held = c->buf;
        c->buf = NULL;
        c->cap = c->pos = c->len = 0;
    }
    return c;
}

static void on_handle_closed(uv_handle_t *h)
{
    up_conn_t *c = h->data;
    if (--c->handles == 0) {
        free(c->buf);
        free(c);
    }
}

static void idle_unlink(up_conn_t *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (c->up->idle == c)
        c->up->idle = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

/* Closes c for good; its request (if any) must have let go of it. */
static void conn_close(up_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->req == NULL && (c->prev != NULL || c->up->idle == c)) {
        idle_unlink(c);
        c->up->num_idle--;
    }
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed); /* a write in flight is cancelled, its buffers untouched */
}

static void on_idle_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_io_timeout(uv_timer_t *t)
{
    up_conn_t *c = t->data;
    up_req_t *r = c->req;
    if (r == NULL) {
        conn_close(c);
        return;
    }
    req_fail(r, 504, "the backend did not answer in time");
}

static void arm_io_timer(up_conn_t *c)
{
    uv_timer_start(&c->timer, on_io_timeout, WR_UPSTREAM_IO_MS, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    up_conn_t *c = h->data;
    (void)suggested;
    if (c->pos == c->len) {
        c->pos = c->len = 0;
    } else if (c->len == c->cap && c->pos > 0) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    if (c->len == c->cap) {
        /* Only a head longer than the buffer gets here (bodies are passed on as they come). */
        c->cap = c->cap == 0 ? UP_BUF_MIN : c->cap * 2;
        c->buf = wr_realloc(c->buf, c->cap);
    }
    buf->base = c->buf + c->len;
    buf->len = c->cap - c->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    up_conn_t *c = s->data;
    up_req_t *r = c->req;
    (void)buf;
    if (n == 0)
        return;
    if (r == NULL) {
        conn_close(c); /* idle: the backend closed it, or said something unasked */
        return;
    }
    if (n < 0) {
        r->eof = 1;
        r->keepalive = 0;
        uv_read_stop(s);
        if (r->state == ST_BODY && r->mode == BODY_CLOSE) {
            process(r);
            return;
        }
        if (r->state != ST_DONE) {
            /* A pooled connection the backend had closed: nothing was processed, try a new one. */
            if (!r->got_bytes && c->reused && r->tries == 1 && is_idempotent(r->req)) {
                conn_close(detach(r));
                start_request(r);
                return;
            }
            req_fail(r, 502, n == UV_EOF ? "the backend closed the connection" : uv_strerror((int)n));
        }
        return;
    }
    c->len += (size_t)n;
    r->got_bytes = 1;
    arm_io_timer(c);
    process(r);
}

static void on_written(uv_write_t *w, int status)
{
    up_conn_t *c = w->data;
    c->writing = 0;
    if (c->closing || c->req == NULL)
        return;
    if (status < 0) {
        up_req_t *r = c->req;
        if (!r->got_bytes && c->reused && r->tries == 1) {
            /* The same case as an early close: on_read's end of stream decides. */
            return;
        }
        req_fail(r, 502, uv_strerror(status));
        return;
    }
    if (c->req->state == ST_SENDING)
        c->req->state = ST_HEAD;
}

static void send_head(up_conn_t *c)
{
    up_req_t *r = c->req;
    uv_buf_t bufs[2];
    unsigned n = 0;
    int done;
    bufs[n++] = uv_buf_init(r->head.base, (unsigned)r->head.len);
    if (r->req->entity.base != NULL && r->req->entity.len != 0)
        bufs[n++] = uv_buf_init(r->req->entity.base, (unsigned)r->req->entity.len);
    arm_io_timer(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    /* Usually the kernel takes it all at once: uv_try_write then leaves the
     * loop's epoll registration alone (uv_write's completion re-arms it). */
    done = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (done == UV_EAGAIN)
        done = 0;
    if (done < 0) {
        /* As a write error on a reused connection: on_read's end of stream decides whether to retry. */
        if (!(c->reused && r->tries == 1))
            req_fail(r, 502, uv_strerror(done));
        return;
    }
    for (unsigned i = 0; i < n && done > 0; i++) {
        size_t take = (size_t)done < bufs[i].len ? (size_t)done : bufs[i].len;
        bufs[i].base += take;
        bufs[i].len -= (unsigned)take;
        done -= (int)take;
    }
    if (bufs[n - 1].len == 0) {
        if (r->state == ST_SENDING)
            r->state = ST_HEAD;
        return;
    }
    c->write.data = c;
    c->writing = 1;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs[0].len != 0 ? bufs : bufs + 1, bufs[0].len != 0 ? n : n - 1,
                 on_written) != 0) {
        c->writing = 0;
        req_fail(r, 502, "cannot write to the backend");
    }
}

static void on_connected(uv_connect_t *cr, int status)
{
    up_conn_t *c = cr->data;
    if (c->closing)
        return;
    if (status < 0) {
        up_req_t *r = c->req;
        if (r != NULL)
            req_fail(r, 502, uv_strerror(status));
        else
            conn_close(c);
        return;
    }
    c->connected = 1;
    if (c->req == NULL) {
        conn_close(c);
        return;
    }
    send_head(c);
}

static up_conn_t *conn_open(wr_upstream_t *up)
{
    up_conn_t *c = wr_calloc(1, sizeof(*c));
    c->up = up;
    uv_tcp_init(up->loop, &c->tcp);
    uv_timer_init(up->loop, &c->timer);
    c->tcp.data = c->timer.data = c->connect.data = c;
    c->handles = 2;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&up->addr, on_connected) != 0) {
        conn_close(c);
        return NULL;
    }
    return c;
}

/* ---- the request ---- */

/* Lets go of the connection: back to the pool if it can serve again, else closed. */
static void release(up_req_t *r)
{
    up_conn_t *c = r->conn;
    wr_upstream_t *up = r->up;
    if (c == NULL)
        return;
    if (c->closing || r->state != ST_DONE || !r->keepalive || c->pos != c->len || c->writing ||
        up->num_idle >= WR_UPSTREAM_MAX_IDLE) {
        conn_close(detach(r));
        return;
    }
    r->conn = NULL;
    c->req = NULL;
    c->pos = c->len = 0;
    c->next = up->idle;
    c->prev = NULL;
    if (up->idle != NULL)
        up->idle->prev = c;
    up->idle = c;
    up->num_idle++;
    uv_timer_start(&c->timer, on_idle_timeout, WR_UPSTREAM_IDLE_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_dispose(void *p)
{
    up_req_t *r = p;
    release(r);
    free(r->held);
    r->held = NULL;
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    up_req_t *r = (up_req_t *)g;
    (void)req;
    r->keepalive = 0; /* the client went away mid-answer: the rest of it is not read */
    release(r);
}

/* Fails the request: an error answer if none started, else an abrupt end. */
static void req_fail(up_req_t *r, int status, const char *reason)
{
    r->keepalive = 0;
    if (r->conn != NULL)
        conn_close(detach(r));
    if (r->state == ST_DONE)
        return;
    if (r->state == ST_BODY) {
        r->state = ST_DONE;
        if (!r->inflight)
            h2o_send(r->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    r->state = ST_DONE;
    wr_info("room \"%s\": backend: %s", r->up->room, reason);
    wr_respond_error(r->req, status, status == 504 ? "backend_timeout" : "bad_gateway", reason);
}

static void start_request(up_req_t *r)
{
    wr_upstream_t *up = r->up;
    up_conn_t *c = up->idle;
    r->tries++;
    r->state = ST_SENDING;
    r->got_bytes = 0;
    if (c != NULL) {
        idle_unlink(c);
        up->num_idle--;
        c->reused = 1;
        c->req = r;
        r->conn = c;
        send_head(c);
        return;
    }
    if ((c = conn_open(up)) == NULL) {
        req_fail(r, 502, "cannot open a connection to the backend");
        return;
    }
    c->req = r;
    r->conn = c;
    arm_io_timer(c);
}

/* ---- the answer ---- */

static int header_is(h2o_iovec_t name, const char *lit, size_t len)
{
    return h2o_lcstris(name.base, name.len, lit, len);
}

/* 1 if the comma-separated value list v has the token t (case-insensitive). */
static int list_has(h2o_iovec_t v, const char *t, size_t tlen)
{
    size_t i = 0;
    while (i < v.len) {
        size_t s, e;
        while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t' || v.base[i] == ','))
            i++;
        s = i;
        while (i < v.len && v.base[i] != ',')
            i++;
        e = i;
        while (e > s && (v.base[e - 1] == ' ' || v.base[e - 1] == '\t'))
            e--;
        if (h2o_lcstris(v.base + s, e - s, t, tlen))
            return 1;
    }
    return 0;
}

/* The last coding of a Transfer-Encoding list, trimmed. */
static h2o_iovec_t last_coding(h2o_iovec_t v)
{
    size_t e = v.len, s;
    while (e > 0 && (v.base[e - 1] == ' ' || v.base[e - 1] == '\t' || v.base[e - 1] == ','))
        e--;
    s = e;
    while (s > 0 && v.base[s - 1] != ',')
        s--;
    while (s < e && (v.base[s] == ' ' || v.base[s] == '\t'))
        s++;
    return h2o_iovec_init(v.base + s, e - s);
}

/*
 * Parses the answer head in [pos, len). Returns 1 when a head was taken
 * (pos moved past it), 0 when more bytes are needed, -1 for a bad answer.
 */
static int parse_head(up_req_t *r)
{
    up_conn_t *c = r->conn;
    h2o_req_t *req = r->req;
    char *p = c->buf + c->pos, *end = c->buf + c->len, *hend = NULL, *line, *eol;
    int minor, status;
    uint64_t clen = UINT64_MAX;
    int chunked = 0, has_te = 0, conn_close_hdr = 0, conn_keepalive_hdr = 0;

    /* The head ends at an empty line: a '\n' followed by '\n' or by "\r\n". */
    for (char *q = p; q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) {
        if (q + 1 < end && q[1] == '\n') {
            hend = q + 2;
            break;
        }
        if (q + 2 < end && q[1] == '\r' && q[2] == '\n') {
            hend = q + 3;
            break;
        }
    }
    if (hend == NULL)
        return c->len - c->pos > UP_HEAD_MAX ? -1 : 0;

    /* Status line: HTTP/1.x SP 3DIGIT [SP reason] */
    eol = memchr(p, '\n', (size_t)(hend - p));
    if (eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        return -1;
    minor = p[7] - '0';
    status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status < 200) {
        /* 1xx: an interim answer (100 Continue, 103 Early Hints); the real one follows. */
        if (status == 101)
            return -1; /* no upgrades through here */
        c->pos += (size_t)(hend - p);
        return parse_head(r);
    }
    {
        char *reason = p + 12, *rend = eol;
        if (rend > reason && rend[-1] == '\r')
            rend--;
        if (reason < rend && *reason == ' ')
            reason++;
        req->res.status = status;
        req->res.reason = h2o_strdup(&req->pool, reason < rend ? reason : "", reason < rend ? (size_t)(rend - reason) : 0).base;
    }

    for (line = eol + 1; line < hend; line = eol + 1) {
        char *colon, *vs, *ve;
        h2o_iovec_t name, value;
        const h2o_token_t *token;
        eol = memchr(line, '\n', (size_t)(hend - line));
        if (eol == line || (eol == line + 1 && line[0] == '\r'))
            break; /* the empty line */
        if (*line == ' ' || *line == '\t')
            return -1; /* obsolete line folding */
        colon = memchr(line, ':', (size_t)(eol - line));
        if (colon == NULL || colon == line)
            return -1;
        for (char *q = line; q < colon; q++)
            if (*q <= ' ' || *q >= 127)
                return -1;
        vs = colon + 1;
        ve = eol;
        while (vs < ve && (*vs == ' ' || *vs == '\t'))
            vs++;
        while (ve > vs && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        name = h2o_strdup(&req->pool, line, (size_t)(colon - line));
        h2o_strtolower(name.base, name.len);
        value = h2o_iovec_init(vs, (size_t)(ve - vs));
        if (header_is(name, H2O_STRLIT("content-length"))) {
            uint64_t v = 0;
            if (value.len == 0 || value.len > 18)
                return -1;
            for (size_t i = 0; i < value.len; i++) {
                if (value.base[i] < '0' || value.base[i] > '9')
                    return -1;
                v = v * 10 + (uint64_t)(value.base[i] - '0');
            }
            if (clen != UINT64_MAX && clen != v)
                return -1; /* two different lengths: refuse to guess */
            clen = v;
            continue;
        }
        if (header_is(name, H2O_STRLIT("transfer-encoding"))) {
            h2o_iovec_t last = last_coding(value);
            has_te = 1;
            chunked = h2o_lcstris(last.base, last.len, H2O_STRLIT("chunked"));
            continue;
        }
        if (header_is(name, H2O_STRLIT("connection"))) {
            conn_close_hdr |= list_has(value, H2O_STRLIT("close"));
            conn_keepalive_hdr |= list_has(value, H2O_STRLIT("keep-alive"));
            continue;
        }
        if (header_is(name, H2O_STRLIT("date")) || header_is(name, H2O_STRLIT("server")))
            continue; /* h2o writes its own */
        token = h2o_lookup_token(name.base, name.len);
        if (token != NULL) {
            if (token->proxy_should_drop_for_res)
                continue;
            h2o_add_header(&req->pool, &req->res.headers, token, NULL, h2o_strdup(&req->pool, value.base, value.len).base,
                           value.len);
        } else {
            if (header_is(name, H2O_STRLIT("keep-alive")) || header_is(name, H2O_STRLIT("proxy-connection")) ||
                header_is(name, H2O_STRLIT("trailer")))
                continue;
            h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 0, NULL,
                                  h2o_strdup(&req->pool, value.base, value.len).base, value.len);
        }
    }
    c->pos += (size_t)(hend - p);

    r->keepalive = minor == 1 ? !conn_close_hdr : conn_keepalive_hdr && !conn_close_hdr;
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")) || status == 204 || status == 304) {
        r->mode = BODY_NONE;
        if (clen != UINT64_MAX && status != 204)
            req->res.content_length = (size_t)clen;
    } else if (has_te) {
        if (chunked) {
            r->mode = BODY_CHUNKED;
            r->chunk = CH_SIZE;
            r->remaining = 0;
            r->chunk_digits = 0;
        } else {
            r->mode = BODY_CLOSE; /* a coding we do not frame: the body ends at the close */
            r->keepalive = 0;
        }
    } else if (clen != UINT64_MAX) {
        r->mode = clen == 0 ? BODY_NONE : BODY_LENGTH;
        r->remaining = clen;
        req->res.content_length = (size_t)clen;
    } else {
        r->mode = BODY_CLOSE;
        r->keepalive = 0;
    }
    return 1;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * Chunked decoding over [pos, len): fills iov with the data pieces (up to
 * UP_IOV_MAX), sets *upto to where decoding stopped and *final when the
 * last chunk and the trailers are through. Returns -1 for a bad encoding.
 */
static int dechunk(up_req_t *r, h2o_iovec_t *iov, size_t *niov, size_t *upto, int *final)
{
    up_conn_t *c = r->conn;
    size_t i = c->pos;
    *niov = 0;
    *final = 0;
    while (i < c->len && *niov < UP_IOV_MAX) {
        char ch = c->buf[i];
        switch (r->chunk) {
        case CH_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (++r->chunk_digits > 15)
                    return -1;
                r->remaining = r->remaining * 16 + (uint64_t)v;
            } else if (r->chunk_digits == 0) {
                return -1;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                r->chunk = CH_EXT;
            } else if (ch == '\r') {
                r->chunk = CH_SIZE_LF;
            } else if (ch == '\n') {
                r->chunk = r->remaining == 0 ? CH_TRAILER : CH_DATA;
                r->trailer_empty = 1;
            } else {
                return -1;
            }
            i++;
            break;
        }
        case CH_EXT:
            if (ch == '\n') {
                r->chunk = r->remaining == 0 ? CH_TRAILER : CH_DATA;
                r->trailer_empty = 1;
            } else if (ch == '\r') {
                r->chunk = CH_SIZE_LF;
            }
            i++;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                return -1;
            r->chunk = r->remaining == 0 ? CH_TRAILER : CH_DATA;
            r->trailer_empty = 1;
            i++;
            break;
        case CH_DATA: {
            size_t n = c->len - i;
            if (n > r->remaining)
                n = (size_t)r->remaining;
            iov[(*niov)++] = h2o_iovec_init(c->buf + i, n);
            i += n;
            r->remaining -= n;
            if (r->remaining == 0)
                r->chunk = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch == '\n') {
                r->chunk = CH_SIZE;
                r->chunk_digits = 0;
            } else if (ch == '\r') {
                r->chunk = CH_DATA_LF;
            } else {
                return -1;
            }
            i++;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                return -1;
            r->chunk = CH_SIZE;
            r->chunk_digits = 0;
            i++;
            break;
        case CH_TRAILER: /* trailer fields are dropped; an empty line ends them */
            if (ch == '\n') {
                if (r->trailer_empty) {
                    r->chunk = CH_DONE;
                    i++;
                    *upto = i;
                    *final = 1;
                    return 0;
                }
                r->trailer_empty = 1;
            } else if (ch != '\r') {
                r->trailer_empty = 0;
            }
            i++;
            break;
        default:
            return -1;
        }
    }
    *upto = i;
    return 0;
}

/* Passes on what the buffer holds, one h2o_send at a time. */
static void process(up_req_t *r)
{
    if (r->in_process)
        return;
    r->in_process = 1;
    while (r->conn != NULL && !r->inflight) {
        up_conn_t *c = r->conn;
        h2o_iovec_t iov[UP_IOV_MAX];
        size_t niov = 0, upto = c->pos;
        int final = 0;

        if (r->state == ST_SENDING || r->state == ST_HEAD) {
            int rc = parse_head(r);
            if (rc < 0) {
                req_fail(r, 502, "the backend's answer is not valid HTTP/1.1");
                break;
            }
            if (rc == 0)
                break;
            r->state = ST_BODY;
            h2o_start_response(r->req, &r->super);
        }
        if (r->state != ST_BODY)
            break;
        switch (r->mode) {
        case BODY_NONE:
            final = 1;
            break;
        case BODY_LENGTH: {
            size_t n = c->len - c->pos;
            if (n > r->remaining)
                n = (size_t)r->remaining;
            if (n > 0)
                iov[niov++] = h2o_iovec_init(c->buf + c->pos, n);
            upto = c->pos + n;
            r->remaining -= n;
            final = r->remaining == 0;
            break;
        }
        case BODY_CHUNKED:
            if (dechunk(r, iov, &niov, &upto, &final) != 0) {
                req_fail(r, 502, "the backend's chunked body is malformed");
                goto out;
            }
            break;
        case BODY_CLOSE:
            if (c->len > c->pos)
                iov[niov++] = h2o_iovec_init(c->buf + c->pos, c->len - c->pos);
            upto = c->len;
            final = r->eof;
            break;
        }
        if (niov == 0 && !final) {
            c->pos = upto; /* framing only: consumed */
            if (r->eof) {
                req_fail(r, 502, "the backend closed the connection mid-answer");
                break;
            }
            break; /* wait for more */
        }
        r->consumed_to = upto;
        if (final) {
            size_t total = 0;
            r->state = ST_DONE;
            c->pos = upto;
            for (size_t i = 0; i < niov; i++)
                total += iov[i].len;
            if (total <= UP_COPY_MAX) {
                /* The usual small answer: h2o gets a copy, and the connection goes back to the
                 * pool at once, still reading (no epoll change between requests). */
                h2o_iovec_t one = h2o_iovec_init(h2o_mem_alloc_pool(&r->req->pool, total + 1), total);
                for (size_t i = 0, off = 0; i < niov; off += iov[i].len, i++)
                    memcpy(one.base + off, iov[i].base, iov[i].len);
                release(r);
                h2o_send(r->req, &one, total != 0, H2O_SEND_STATE_FINAL);
                break;
            }
            uv_read_stop((uv_stream_t *)&c->tcp); /* h2o holds pieces of the buffer until it disposes of the request */
            uv_timer_stop(&c->timer);
            h2o_send(r->req, iov, niov, H2O_SEND_STATE_FINAL);
            break; /* the connection is released when h2o disposes of the request */
        }
        /* Nothing is read while h2o holds pieces of the buffer. */
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_timer_stop(&c->timer);
        r->inflight = 1;
        h2o_send(r->req, iov, niov, H2O_SEND_STATE_IN_PROGRESS);
    }
out:
    r->in_process = 0;
    if (r->conn != NULL && r->state == ST_BODY && !r->inflight && !r->eof && !r->conn->closing) {
        uv_read_start((uv_stream_t *)&r->conn->tcp, on_alloc, on_read);
        arm_io_timer(r->conn);
    }
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    up_req_t *r = (up_req_t *)g;
    up_conn_t *c = r->conn;
    (void)req;
    r->inflight = 0;
    if (r->state == ST_DONE) {
        /* Failed while the send was in flight. */
        h2o_send(r->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    if (c == NULL)
        return;
    c->pos = r->consumed_to;
    if (c->pos == c->len)
        c->pos = c->len = 0;
    process(r); /* returns at once if called back from inside h2o_send: the loop there goes on */
}

/* ---- the request head ---- */

static void append(h2o_mem_pool_t *pool, h2o_iovec_t *buf, size_t *cap, const char *s, size_t len)
{
    if (buf->len + len > *cap) {
        size_t ncap = (*cap + len) * 2;
        char *n = h2o_mem_alloc_pool(pool, ncap);
        memcpy(n, buf->base, buf->len);
        buf->base = n;
        *cap = ncap;
    }
    memcpy(buf->base + buf->len, s, len);
    buf->len += len;
}
#define APPEND_LIT(lit) append(&req->pool, &head, &cap, (lit), sizeof(lit) - 1)
#define APPEND_IOV(v) append(&req->pool, &head, &cap, (v).base, (v).len)

static h2o_iovec_t build_head(wr_upstream_t *up, h2o_req_t *req)
{
    h2o_iovec_t head = {NULL, 0}, path = h2o_build_destination(req, up->path.base, up->path.len, 0);
    h2o_iovec_t xff = {NULL, 0}, cookie = {NULL, 0};
    size_t cap = 512 + path.len;
    char addr[NI_MAXHOST], num[32];
    struct sockaddr_storage ss;
    socklen_t sslen;
    size_t addrlen = 0;

    head.base = h2o_mem_alloc_pool(&req->pool, cap);
    APPEND_IOV(req->method);
    APPEND_LIT(" ");
    APPEND_IOV(path);
    APPEND_LIT(" HTTP/1.1\r\nhost: ");
    APPEND_IOV(up->authority);
    APPEND_LIT("\r\n");
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = req->headers.entries + i;
        if (h2o_iovec_is_token(h->name)) {
            const h2o_token_t *t = (const h2o_token_t *)h->name;
            if (t->proxy_should_drop_for_req || t == H2O_TOKEN_HOST || t == H2O_TOKEN_CONTENT_LENGTH ||
                t == H2O_TOKEN_EXPECT || t == H2O_TOKEN_TRANSFER_ENCODING || t == H2O_TOKEN_CONNECTION ||
                t == H2O_TOKEN_UPGRADE || t == H2O_TOKEN_TE || t == H2O_TOKEN_KEEP_ALIVE)
                continue;
            if (t == H2O_TOKEN_X_FORWARDED_FOR) {
                xff = xff.len == 0 ? h->value : h2o_concat(&req->pool, xff, h2o_iovec_init(H2O_STRLIT(", ")), h->value);
                continue;
            }
            if (t == H2O_TOKEN_COOKIE) {
                /* HTTP/2 may split cookies over several headers; HTTP/1.1 wants one. */
                cookie = cookie.len == 0 ? h->value
                                         : h2o_concat(&req->pool, cookie, h2o_iovec_init(H2O_STRLIT("; ")), h->value);
                continue;
            }
        }
        if (h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("x-forwarded-proto")) ||
            h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("proxy-connection")))
            continue;
        append(&req->pool, &head, &cap, h->orig_name != NULL ? h->orig_name : h->name->base, h->name->len);
        APPEND_LIT(": ");
        APPEND_IOV(h->value);
        APPEND_LIT("\r\n");
    }
    if (cookie.len != 0) {
        APPEND_LIT("cookie: ");
        APPEND_IOV(cookie);
        APPEND_LIT("\r\n");
    }
    APPEND_LIT("x-forwarded-proto: ");
    APPEND_IOV(req->input.scheme->name);
    APPEND_LIT("\r\nx-forwarded-for: ");
    if (xff.len != 0) {
        APPEND_IOV(xff);
        APPEND_LIT(", ");
    }
    if ((sslen = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss)) != 0 &&
        (addrlen = h2o_socket_getnumerichost((struct sockaddr *)&ss, sslen, addr)) != SIZE_MAX)
        append(&req->pool, &head, &cap, addr, addrlen);
    APPEND_LIT("\r\n");
    if (req->entity.base != NULL) {
        APPEND_LIT("content-length: ");
        append(&req->pool, &head, &cap, num, wr_fmt_i64(num, (int64_t)req->entity.len));
        APPEND_LIT("\r\n");
    }
    APPEND_LIT("\r\n");
    return head;
}

/* ---- the handler ---- */

typedef struct up_handler_s {
    h2o_handler_t super;
    wr_upstream_t *up;
} up_handler_t;

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    up_handler_t *self = (up_handler_t *)_self;
    up_req_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_dispose);
    memset(r, 0, sizeof(*r));
    r->super.proceed = on_proceed;
    r->super.stop = on_stop;
    r->req = req;
    r->up = self->up;
    r->head = build_head(self->up, req);
    start_request(r);
    return 0;
}

wr_upstream_t *wr_upstream_new(uv_loop_t *loop, const char *room, const h2o_url_t *url)
{
    wr_upstream_t *up = wr_calloc(1, sizeof(*up));
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char host[256], port[8];
    int rc;

    if (url->host.len >= sizeof(host)) {
        free(up);
        return NULL;
    }
    memcpy(host, url->host.base, url->host.len);
    host[url->host.len] = '\0';
    /* h2o keeps an IPv6 literal's brackets in host */
    if (host[0] == '[' && url->host.len > 2 && host[url->host.len - 1] == ']') {
        memmove(host, host + 1, url->host.len - 2);
        host[url->host.len - 2] = '\0';
    }
    snprintf(port, sizeof(port), "%u", (unsigned)h2o_url_get_port(url));
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0 || res == NULL) {
        wr_error("room \"%s\": cannot resolve backend host \"%s\": %s", room, host, gai_strerror(rc));
        free(up);
        return NULL;
    }
    memcpy(&up->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    up->loop = loop;
    up->room = room;
    up->authority = h2o_strdup(NULL, url->authority.base, url->authority.len);
    up->path = h2o_strdup(NULL, url->path.base, url->path.len);
    return up;
}

void wr_upstream_register(h2o_pathconf_t *pathconf, wr_upstream_t *up)
{
    up_handler_t *self = (up_handler_t *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->up = up;
}
