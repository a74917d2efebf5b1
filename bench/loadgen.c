/*
 * loadgen.c: waitroom-loadgen, the push load generator.
 *
 * Opens N waiting clients against a running gateway and measures how long
 * queue updates take from the worker's publish to the client. Every client
 * is a real user: it first joins the room (GET <path> with
 * `Accept: application/json`, which answers {"queueToken":...}), or takes a
 * token from --tokens, then holds one push stream with that token, either
 * Server-Sent Events (GET /queue/events on the HTTP port) or a WebSocket
 * (/queue/ws on the push port). See docs/push.md for the protocol.
 *
 * Every pushed message carries "ts", the publish time in ms since the epoch
 * on the same machine clock, so latency is simply the receive time minus ts.
 * Three histograms are kept apart because they measure different things:
 * the first message of each connection is a snapshot sent on connect whose
 * ts is the last tick before it (its "age", not a push latency); later
 * messages received while connections are still being opened are ramp
 * latency; later messages received after every connection of the process
 * has been resolved are the steady-state push latency, the headline number.
 *
 * Process model: the parent validates the configuration, raises
 * RLIMIT_NOFILE, forks --processes workers and prints a progress line every
 * second from their snapshots. Each worker owns N/P connections on its own
 * libuv loop in one thread: joins and SSE on plain non-blocking libuv TCP
 * handles, WebSocket through libwebsockets 4.1 running on the same loop
 * (LWS_SERVER_OPTION_LIBUV with a foreign loop), so everything is
 * epoll-driven. A worker sends framed records (progress, then one final
 * lg_stats_t) up a pipe; the parent merges the finals and prints the report.
 *
 * Joins go over a small pool of keep-alive HTTP connections per worker, not
 * one connection per join: a closed join connection would sit in TIME_WAIT
 * on the same loopback port range that the held connections need.
 *
 * Time bounds: a worker opens connections at --ramp/P per second; it starts
 * measuring when all of its connections are established or failed, or at
 * the ramp deadline (ramp time + connect timeout + 2 s), and stops
 * --duration seconds later. The parent asks stragglers to stop 10 s after
 * that and kills them 5 s later, so a run always ends by itself.
 * SIGINT/SIGTERM end the run early with a report.
 *
 * Machine limits (docs/platform-notes.md): at most about 19,900 sockets per
 * process and about 28,000 source ports per loopback source address, so a
 * configuration needing more than 19,000 sockets per process, or more ports
 * than the local port range per source address, is refused up front.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <libwebsockets.h>
#include <uv.h>

#include "hist.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define WR_LG_MAX_SOCKETS_PER_PROC 19000
#define WR_LG_MAX_PROCESSES 64
#define WR_LG_MAX_SOURCES 250
#define WR_LG_BUF_CAP (64 * 1024)  /* a line, an event or a join body larger than this is a protocol error */
#define WR_LG_HEAD_CAP (16 * 1024) /* response head */
#define WR_LG_READ_BUF (64 * 1024)

/* ------------------------------------------------------------------------
 * Histogram: bench/hist.h's, in microseconds, plus a count of negative
 * latencies. Fixed size, so a worker can ship it up the pipe as bytes.
 */
typedef struct {
    wr_hist_t h;
    uint64_t negative; /* ts in the future: clocks disagree; recorded as 0 */
} lg_hist_t;

static void hist_add(lg_hist_t *h, int64_t us)
{
    if (us < 0) {
        h->negative++;
        us = 0;
    }
    wr_hist_add(&h->h, (uint64_t)us);
}

static void hist_merge(lg_hist_t *d, const lg_hist_t *s)
{
    wr_hist_merge(&d->h, &s->h);
    d->negative += s->negative;
}

/* Value at percentile p (0..100) in ms. */
static double hist_pct_ms(const lg_hist_t *h, double p)
{
    return (double)wr_hist_pct(&h->h, p) / 1000.0;
}

/* ------------------------------------------------------------------------
 * What a worker counts. Plain counters and fixed arrays only: the struct is
 * written up the pipe as raw bytes between processes of the same binary.
 */
enum { T_QUEUE_UPDATE, T_ACTIVE, T_EXPIRED, T_CLOSED, T_OTHER, T__N };
static const char *const type_names[T__N] = {"QUEUE_UPDATE", "ACTIVE", "EXPIRED", "CLOSED", "other"};

enum {
    E_JOIN_CONNECT,   /* TCP connect for a join failed */
    E_JOIN_STATUS,    /* the join was answered with a non-2xx status */
    E_JOIN_NO_TOKEN,  /* 2xx without a queueToken */
    E_JOIN_IO,        /* the join connection broke twice for the same user */
    E_JOIN_TIMEOUT,   /* no join answer within the connect timeout */
    E_CONNECT,        /* TCP connect (or bind) of the push connection failed */
    E_TIMEOUT,        /* connect + handshake took longer than the connect timeout */
    E_HS_STATUS,      /* handshake refused with an HTTP status */
    E_HS_OTHER,       /* handshake failed otherwise (closed early, bad upgrade) */
    E_CLOSED_CODE,    /* WebSocket closed by the server with a close frame, before ACTIVE/EXPIRED/CLOSED */
    E_DROPPED,        /* connection ended without a close frame or terminal message (EOF, reset, stream end) */
    E_PROTOCOL,       /* malformed HTTP, chunking, event stream or oversized message */
    E__N
};
static const char *const err_names[E__N] = {
    "join_connect", "join_status",      "join_no_token",    "join_io", "join_timeout", "connect",
    "connect_timeout", "handshake_status", "handshake_other", "closed_with_code", "dropped", "protocol"};

#define LG_STATUS_MAX 600
#define LG_CLOSE_MAX 5000
#define LG_ERRNO_MAX 160

typedef struct {
    uint64_t attempted;   /* connections started (join or connect) */
    uint64_t joined;      /* joins answered with a token */
    uint64_t established; /* handshakes completed */
    uint64_t held_end;    /* open when the run ended */
    uint64_t finished;    /* ended by the server after ACTIVE/EXPIRED/CLOSED: not an error */
    uint64_t pending_end; /* never resolved when the run ended */
    uint64_t msgs;
    uint64_t msgs_measure; /* received during the measurement window */
    uint64_t by_type[T__N];
    uint64_t no_ts;        /* messages without a numeric ts */
    uint64_t sse_comments; /* heartbeats */
    uint64_t bytes;
    uint64_t err[E__N];
    uint32_t join_status[LG_STATUS_MAX];
    uint32_t hs_status[LG_STATUS_MAX];
    uint32_t close_code[LG_CLOSE_MAX];
    uint32_t conn_errno[LG_ERRNO_MAX];
    double measure_s; /* length of this worker's measurement window */
    double elapsed_s;
    int interrupted;
    lg_hist_t lat;       /* steady state, first message of each connection excluded */
    lg_hist_t lat_ramp;  /* same, while connections were still being opened */
    lg_hist_t first_age; /* first message of each connection */
    lg_hist_t connect;   /* TCP connect start to handshake done */
} lg_stats_t;

typedef struct {
    uint64_t attempted, established, held, msgs, errors;
    uint32_t phase;
} lg_progress_t;

enum { MSG_PROGRESS = 1, MSG_FINAL = 2 };
typedef struct {
    uint32_t kind;
    uint32_t len;
} lg_msg_hdr_t;

/* ------------------------------------------------------------------------
 * Options, parsed once by the parent and inherited by the workers.
 */
typedef struct {
    int ws; /* 1: WebSocket, 0: SSE */
    uint32_t connections, processes, sources, join_conns;
    int sources_set;
    char http_host[256], push_host[256];
    int http_port, push_port;
    struct sockaddr_in http_sa, push_sa;
    char path[512];
    char events_path[256], ws_path[256];
    double duration, ramp, connect_timeout;
    int json, quiet;
    const char *tokens_file;
    char **tokens; /* borrowed by the workers; NULL without --tokens */
} lg_opts_t;

/* ------------------------------------------------------------------------
 * Worker state.
 */
enum { C_IDLE, C_JOIN, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DONE };
enum { PH_RAMP, PH_MEASURE, PH_STOP };

typedef struct lg_worker_s lg_worker_t;

/* A TCP handle and its connect request: freed in the close callback, so a
 * connection (or joiner) can let go of it at any time by clearing owner. */
typedef struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    void *owner;
} lg_sock_t;

/* An HTTP/1.1 response reader: head, then a body by length, chunks or EOF. */
enum { BM_NONE, BM_LENGTH, BM_CHUNKED, BM_EOF };
enum { CS_SIZE, CS_EXT, CS_DATA, CS_DATA_END, CS_TRAILER };
enum { HTTP_MORE, HTTP_HEAD, HTTP_DONE, HTTP_ERR };
typedef struct {
    char *head; /* owned; freed once the head is parsed */
    uint32_t head_len;
    uint8_t in_body, mode, cstate, conn_close, trailer_line;
    int status;
    uint64_t left; /* bytes left in the body (BM_LENGTH) or chunk */
    int chunk_digits;
} lg_http_t;

typedef struct {
    char *line, *data; /* owned, grown on demand */
    uint32_t line_len, line_cap, data_len, data_cap;
    uint8_t cr;
    char event[24];
} lg_sse_t;

typedef struct {
    lg_worker_t *w;
    uint32_t idx;    /* global index: picks the source address */
    uint8_t state;
    uint8_t resolved, got_first, terminal, join_retries, ws_close_seen;
    uint16_t close_code;
    uint64_t t_connect_us; /* hrtime when the push connection was started */
    char *token;                       /* owned unless borrowed from --tokens */
    uint8_t token_borrowed;
    lg_sock_t *sock; /* SSE */
    lg_http_t http;
    lg_sse_t sse;
    struct lws *wsi; /* WebSocket */
    char *rx;        /* a fragmented WebSocket message; owned */
    uint32_t rx_len, rx_cap;
} lg_conn_t;

enum { J_DOWN, J_CONNECTING, J_IDLE, J_BUSY };
typedef struct {
    lg_worker_t *w;
    uint32_t idx;
    int state;
    lg_sock_t *sock;
    lg_conn_t *conn; /* whose join is in flight */
    lg_http_t http;
    char *body;
    uint32_t body_len, body_cap;
    uint64_t t_sent_ms;
} lg_joiner_t;

struct lg_worker_s {
    const lg_opts_t *o;
    uv_loop_t loop;
    uv_timer_t ramp_timer, tick_timer, phase_timer;
    uv_signal_t sigint, sigterm;
    struct lws_context *lws;
    int out_fd;
    uint32_t n, first, next, resolved, held;
    lg_conn_t *conns;
    lg_joiner_t *joiners;
    uint32_t *jq; /* ring of connection indexes waiting for a join */
    uint32_t jq_head, jq_len;
    int phase;
    double rate;
    uint64_t t0_ms, t_measure_ms;
    uint64_t t0_real_us;
    lg_stats_t *st;
    char src[WR_LG_MAX_SOURCES][16];
    char http_hosthdr[300], push_hosthdr[300];
};

static lg_worker_t *the_worker; /* one per process; lws callbacks reach it here */
static char read_buf[WR_LG_READ_BUF];

static void conn_start_connect(lg_conn_t *c);
static void joiner_kick(lg_worker_t *w);
static void worker_stop(lg_worker_t *w, int interrupted);

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "waitroom-loadgen: out of memory (%s:%d)\n", __FILE__, __LINE__);
        abort();
    }
    return p;
}

static void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n, m);
    if (!p) {
        fprintf(stderr, "waitroom-loadgen: out of memory (%s:%d)\n", __FILE__, __LINE__);
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "waitroom-loadgen: out of memory (%s:%d)\n", __FILE__, __LINE__);
        abort();
    }
    return p;
}

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Appends n bytes to a growable buffer; -1 past WR_LG_BUF_CAP. */
static int buf_append(char **buf, uint32_t *len, uint32_t *cap, const char *p, size_t n)
{
    if ((size_t)*len + n > WR_LG_BUF_CAP)
        return -1;
    if (*len + n > *cap) {
        uint32_t c = *cap ? *cap : 256;
        while (c < *len + n)
            c *= 2;
        *buf = xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += (uint32_t)n;
    return 0;
}

/* ------------------------------------------------------------------------
 * A tiny JSON reader: finds one top-level member of an object. Enough for
 * the flat messages of docs/push.md; nested values are skipped, not parsed.
 */
static size_t json_ws(const char *b, size_t n, size_t i)
{
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
        i++;
    return i;
}

/* b[i] is an opening quote; sets *end to the closing quote. */
static int json_str_end(const char *b, size_t n, size_t i, size_t *end)
{
    for (i++; i < n; i++) {
        if (b[i] == '\\')
            i++;
        else if (b[i] == '"') {
            *end = i;
            return 1;
        }
    }
    return 0;
}

/* Returns 1 with the raw span of key's value (a string without its quotes,
 * escapes kept), 0 if absent or the text is not an object. */
static int json_member(const char *b, size_t n, const char *key, const char **vp, size_t *vn, int *is_str)
{
    size_t klen = strlen(key), i = json_ws(b, n, 0);
    if (i >= n || b[i] != '{')
        return 0;
    i++;
    for (;;) {
        size_t ks, ke, vs, ve;
        int str = 0;
        i = json_ws(b, n, i);
        if (i >= n || b[i] != '"')
            return 0;
        ks = i + 1;
        if (!json_str_end(b, n, i, &ke))
            return 0;
        i = json_ws(b, n, ke + 1);
        if (i >= n || b[i] != ':')
            return 0;
        i = json_ws(b, n, i + 1);
        if (i >= n)
            return 0;
        if (b[i] == '"') {
            if (!json_str_end(b, n, i, &ve))
                return 0;
            vs = i + 1;
            i = ve + 1;
            str = 1;
        } else if (b[i] == '{' || b[i] == '[') {
            int depth = 0;
            vs = i;
            for (; i < n; i++) {
                if (b[i] == '"') {
                    size_t e;
                    if (!json_str_end(b, n, i, &e))
                        return 0;
                    i = e;
                } else if (b[i] == '{' || b[i] == '[')
                    depth++;
                else if ((b[i] == '}' || b[i] == ']') && --depth == 0) {
                    i++;
                    break;
                }
            }
            ve = i;
        } else {
            vs = i;
            while (i < n && b[i] != ',' && b[i] != '}' && b[i] != ' ' && b[i] != '\n' && b[i] != '\r' &&
                   b[i] != '\t')
                i++;
            ve = i;
        }
        if (ke - ks == klen && !memcmp(b + ks, key, klen)) {
            *vp = b + vs;
            *vn = ve - vs;
            *is_str = str;
            return 1;
        }
        i = json_ws(b, n, i);
        if (i < n && b[i] == ',') {
            i++;
            continue;
        }
        return 0;
    }
}

/* ------------------------------------------------------------------------
 * Messages: the one place that counts and times what arrived.
 */
static void on_message(lg_conn_t *c, const char *json, size_t n, const char *event_name)
{
    lg_worker_t *w = c->w;
    lg_stats_t *st = w->st;
    const char *v;
    size_t vn;
    int is_str, t = T_OTHER;
    uint64_t now = realtime_us();

    if (w->phase == PH_STOP)
        return;
    st->msgs++;
    st->bytes += n;
    if (w->phase == PH_MEASURE)
        st->msgs_measure++;

    if (json_member(json, n, "type", &v, &vn, &is_str) && is_str) {
        for (int i = 0; i < T_OTHER; i++)
            if (strlen(type_names[i]) == vn && !memcmp(v, type_names[i], vn))
                t = i;
    } else if (event_name) {
        for (int i = 0; i < T_OTHER; i++)
            if (!strcmp(event_name, type_names[i]))
                t = i;
    }
    st->by_type[t]++;
    if (t == T_ACTIVE || t == T_EXPIRED || t == T_CLOSED)
        c->terminal = 1;

    if (json_member(json, n, "ts", &v, &vn, &is_str) && !is_str && vn > 0 && vn < 40) {
        char tmp[40], *end;
        memcpy(tmp, v, vn);
        tmp[vn] = '\0';
        double ts = strtod(tmp, &end);
        if (end == tmp + vn && isfinite(ts) && ts > 0) {
            int64_t lat = (int64_t)now - (int64_t)llround(ts * 1000.0);
            if (!c->got_first)
                hist_add(&st->first_age, lat);
            else if (w->phase == PH_MEASURE)
                hist_add(&st->lat, lat);
            else
                hist_add(&st->lat_ramp, lat);
        } else
            st->no_ts++;
    } else
        st->no_ts++;
    c->got_first = 1;
}

/* ------------------------------------------------------------------------
 * Connection bookkeeping shared by both transports.
 */
static void start_measure(lg_worker_t *w);

static void conn_resolved(lg_conn_t *c)
{
    lg_worker_t *w = c->w;
    if (c->resolved)
        return;
    c->resolved = 1;
    if (++w->resolved == w->n && w->phase == PH_RAMP)
        start_measure(w);
}

static void conn_established(lg_conn_t *c)
{
    lg_worker_t *w = c->w;
    c->state = C_OPEN;
    w->held++;
    w->st->established++;
    hist_add(&w->st->connect, (int64_t)((uv_hrtime() / 1000) - c->t_connect_us));
    conn_resolved(c);
}

static void record_errno(lg_stats_t *st, int uverr)
{
    int e = uverr < 0 ? -uverr : uverr;
    if (e > 0 && e < LG_ERRNO_MAX)
        st->conn_errno[e]++;
}

/* Counts how an open or opening connection ended (err < 0: not an error). */
static void conn_ended(lg_conn_t *c, int err)
{
    lg_worker_t *w = c->w;
    if (c->state == C_DONE)
        return;
    if (w->phase != PH_STOP) {
        if (c->state == C_OPEN)
            w->held--;
        if (err >= 0)
            w->st->err[err]++;
        else
            w->st->finished++;
    }
    c->state = C_DONE;
    conn_resolved(c);
}

static void sock_close_cb(uv_handle_t *h)
{
    free(h->data);
}

/* Lets go of a socket: its callbacks will see no owner; freed once closed. */
static void sock_release(lg_sock_t *s)
{
    if (!s)
        return;
    s->owner = NULL;
    if (!uv_is_closing((uv_handle_t *)&s->tcp))
        uv_close((uv_handle_t *)&s->tcp, sock_close_cb);
}

static void conn_free_buffers(lg_conn_t *c)
{
    free(c->http.head);
    c->http.head = NULL;
    free(c->sse.line);
    free(c->sse.data);
    memset(&c->sse, 0, sizeof(c->sse));
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
}

static void conn_close_sse(lg_conn_t *c, int err)
{
    conn_ended(c, err);
    sock_release(c->sock);
    c->sock = NULL;
    conn_free_buffers(c);
}

/* Opens a non-blocking TCP socket from the connection's source address and
 * starts connecting it; returns a libuv error or 0 (then cb is called). */
static int sock_open(lg_worker_t *w, uint32_t idx, const struct sockaddr_in *dst, void *owner, uv_connect_cb cb,
                     lg_sock_t **out)
{
    const lg_opts_t *o = w->o;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, r;
    if (fd < 0)
        return -errno;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (o->sources_set) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        /* Ports are then picked at connect() per destination, not at bind() per address. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        inet_pton(AF_INET, w->src[idx % o->sources], &src.sin_addr);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            r = -errno;
            close(fd);
            return r;
        }
    }
    lg_sock_t *s = xcalloc(1, sizeof(*s));
    uv_tcp_init(&w->loop, &s->tcp);
    s->tcp.data = s;
    s->owner = owner;
    if ((r = uv_tcp_open(&s->tcp, fd)) < 0) {
        close(fd);
        uv_close((uv_handle_t *)&s->tcp, sock_close_cb);
        return r;
    }
    if ((r = uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)dst, cb)) < 0) {
        uv_close((uv_handle_t *)&s->tcp, sock_close_cb);
        return r;
    }
    *out = s;
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* Every read is consumed before the next alloc, so one buffer serves all. */
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

typedef struct {
    uv_write_t req;
    char data[];
} lg_write_t;

static void write_cb(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error on the same socket */
    free(req);
}

static int sock_write(lg_sock_t *s, const char *p, size_t n)
{
    lg_write_t *wr = xmalloc(sizeof(*wr) + n);
    memcpy(wr->data, p, n);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
    int r = uv_write(&wr->req, (uv_stream_t *)&s->tcp, &b, 1, write_cb);
    if (r < 0)
        free(wr);
    return r;
}

/* Appends the token to a URL query, percent-encoding what is not unreserved. */
static void url_token(char *out, size_t cap, const char *prefix, const char *token)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = (size_t)snprintf(out, cap, "%s", prefix);
    for (const unsigned char *p = (const unsigned char *)token; *p && n + 4 < cap; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '.' || *p == '_' || *p == '~')
            out[n++] = (char)*p;
        else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n < cap ? n : cap - 1] = '\0';
}

/* ------------------------------------------------------------------------
 * HTTP/1.1 response reader.
 */
static void http_reset(lg_http_t *h)
{
    free(h->head);
    memset(h, 0, sizeof(*h));
}

static int http_parse_head(lg_http_t *h)
{
    char *p = h->head, *end = h->head + h->head_len, *eol;
    int64_t clen = -1;
    int chunked = 0;
    if (h->head_len < 12 || strncmp(p, "HTTP/1.", 7) || p[8] != ' ')
        return -1;
    h->status = atoi(p + 9);
    if (h->status < 100 || h->status > 599)
        return -1;
    h->conn_close = p[7] == '0';
    while ((eol = memmem(p, (size_t)(end - p), "\r\n", 2)) != NULL && eol != p) {
        *eol = '\0';
        if (!strncasecmp(p, "content-length:", 15))
            clen = strtoll(p + 15, NULL, 10);
        else if (!strncasecmp(p, "transfer-encoding:", 18))
            chunked = strcasestr(p + 18, "chunked") != NULL;
        else if (!strncasecmp(p, "connection:", 11)) {
            if (strcasestr(p + 11, "close"))
                h->conn_close = 1;
            else if (strcasestr(p + 11, "keep-alive"))
                h->conn_close = 0;
        }
        p = eol + 2;
    }
    if (h->status < 200 || h->status == 204 || h->status == 304)
        h->mode = BM_NONE;
    else if (chunked)
        h->mode = BM_CHUNKED, h->cstate = CS_SIZE;
    else if (clen >= 0)
        h->mode = BM_LENGTH, h->left = (uint64_t)clen;
    else
        h->mode = BM_EOF, h->conn_close = 1;
    return 0;
}

typedef int (*lg_sink_cb)(void *ctx, const char *p, size_t n);

/* Feeds n bytes; sets *used to how many were consumed. Returns HTTP_HEAD
 * once when the head is parsed (inspect status, then feed the rest), HTTP_DONE
 * when the body is complete, HTTP_MORE when everything was consumed, or
 * HTTP_ERR on a malformed response or when sink returns -1. */
static int http_feed(lg_http_t *h, const char *p, size_t n, size_t *used, lg_sink_cb sink, void *ctx)
{
    size_t i = 0;
    *used = 0;
    if (!h->in_body) {
        uint32_t old = h->head_len;
        size_t take = n;
        if (old + n > WR_LG_HEAD_CAP)
            take = WR_LG_HEAD_CAP - old;
        h->head = xrealloc(h->head, old + take + 1);
        memcpy(h->head + old, p, take);
        h->head_len = old + (uint32_t)take;
        h->head[h->head_len] = '\0';
        size_t from = old > 3 ? old - 3 : 0;
        char *e = memmem(h->head + from, h->head_len - from, "\r\n\r\n", 4);
        if (!e) {
            if (h->head_len >= WR_LG_HEAD_CAP)
                return HTTP_ERR;
            *used = n;
            return HTTP_MORE;
        }
        uint32_t hl = (uint32_t)(e - h->head) + 4;
        *used = hl - old;
        h->head_len = hl - 2; /* keep the final CRLF of the last header line */
        h->head[h->head_len] = '\0';
        if (http_parse_head(h) < 0)
            return HTTP_ERR;
        free(h->head);
        h->head = NULL;
        h->in_body = 1;
        return HTTP_HEAD;
    }
    switch (h->mode) {
    case BM_NONE:
        return HTTP_DONE;
    case BM_EOF:
        if (n && sink(ctx, p, n) < 0)
            return HTTP_ERR;
        *used = n;
        return HTTP_MORE;
    case BM_LENGTH: {
        size_t k = n < h->left ? n : (size_t)h->left;
        if (k && sink(ctx, p, k) < 0)
            return HTTP_ERR;
        h->left -= k;
        *used = k;
        return h->left ? HTTP_MORE : HTTP_DONE;
    }
    default:
        break;
    }
    while (i < n) {
        char ch = p[i];
        switch (h->cstate) {
        case CS_SIZE:
            if (ch == '\r') {
                i++;
            } else if (ch == '\n') {
                i++;
                if (!h->chunk_digits)
                    return HTTP_ERR;
                h->chunk_digits = 0;
                h->cstate = h->left ? CS_DATA : CS_TRAILER;
                h->trailer_line = 0;
            } else if (ch == ';' || ch == ' ') {
                i++;
                h->cstate = CS_EXT;
            } else {
                int d = (ch >= '0' && ch <= '9')   ? ch - '0'
                        : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                        : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                                   : -1;
                if (d < 0 || h->left > ((uint64_t)1 << 40))
                    return HTTP_ERR;
                h->left = h->left * 16 + (uint64_t)d;
                h->chunk_digits++;
                i++;
            }
            break;
        case CS_EXT:
            if (ch == '\n') {
                h->cstate = CS_SIZE;
                continue; /* let CS_SIZE see the LF */
            }
            i++;
            break;
        case CS_DATA: {
            size_t k = n - i < h->left ? n - i : (size_t)h->left;
            if (sink(ctx, p + i, k) < 0)
                return HTTP_ERR;
            i += k;
            h->left -= k;
            if (!h->left)
                h->cstate = CS_DATA_END;
            break;
        }
        case CS_DATA_END:
            if (ch == '\r')
                i++;
            else if (ch == '\n') {
                i++;
                h->cstate = CS_SIZE;
            } else
                return HTTP_ERR;
            break;
        case CS_TRAILER:
            i++;
            if (ch == '\n') {
                if (!h->trailer_line) {
                    *used = i;
                    return HTTP_DONE;
                }
                h->trailer_line = 0;
            } else if (ch != '\r')
                h->trailer_line = 1;
            break;
        }
    }
    *used = i;
    return HTTP_MORE;
}

/* ------------------------------------------------------------------------
 * Server-Sent Events: the event-stream parser, then the SSE connection.
 */
static void sse_dispatch(lg_conn_t *c)
{
    lg_sse_t *s = &c->sse;
    if (s->data_len) {
        s->data_len--; /* the LF after the last data line */
        on_message(c, s->data, s->data_len, s->event[0] ? s->event : NULL);
    }
    s->data_len = 0;
    s->event[0] = '\0';
}

static int sse_line(lg_conn_t *c, const char *l, size_t n)
{
    lg_sse_t *s = &c->sse;
    if (!n) {
        sse_dispatch(c);
        return 0;
    }
    if (l[0] == ':') {
        c->w->st->sse_comments++;
        return 0;
    }
    const char *colon = memchr(l, ':', n), *v = l + n;
    size_t nl = n, vn = 0;
    if (colon) {
        nl = (size_t)(colon - l);
        v = colon + 1;
        vn = n - nl - 1;
        if (vn && *v == ' ')
            v++, vn--;
    }
    if (nl == 4 && !memcmp(l, "data", 4)) {
        if (buf_append(&s->data, &s->data_len, &s->data_cap, v, vn) < 0 ||
            buf_append(&s->data, &s->data_len, &s->data_cap, "\n", 1) < 0)
            return -1;
    } else if (nl == 5 && !memcmp(l, "event", 5)) {
        size_t k = vn < sizeof(s->event) - 1 ? vn : sizeof(s->event) - 1;
        memcpy(s->event, v, k);
        s->event[k] = '\0';
    }
    /* id and retry matter to a reconnecting browser; this client does not reconnect. */
    return 0;
}

/* Body sink: splits the stream into lines (LF, CRLF or CR) and handles them. */
static int sse_sink(void *ctx, const char *p, size_t n)
{
    lg_conn_t *c = ctx;
    lg_sse_t *s = &c->sse;
    size_t i = 0;
    while (i < n) {
        if (s->cr) {
            s->cr = 0;
            if (p[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r')
            j++;
        if (j == n) {
            if (buf_append(&s->line, &s->line_len, &s->line_cap, p + i, j - i) < 0)
                return -1;
            break;
        }
        int r;
        if (s->line_len) {
            if (buf_append(&s->line, &s->line_len, &s->line_cap, p + i, j - i) < 0)
                return -1;
            r = sse_line(c, s->line, s->line_len);
            s->line_len = 0;
        } else
            r = sse_line(c, p + i, j - i);
        if (r < 0)
            return -1;
        s->cr = p[j] == '\r';
        i = j + 1;
    }
    return 0;
}

static void sse_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    lg_sock_t *s = stream->data;
    lg_conn_t *c = s->owner;
    if (!c || nread == 0)
        return;
    if (nread < 0) {
        /* EOF ends a close-delimited stream too: either way, fine only after a terminal message. */
        if (nread != UV_EOF)
            record_errno(c->w->st, (int)nread);
        conn_close_sse(c, c->state != C_OPEN ? E_HS_OTHER : c->terminal ? -1 : E_DROPPED);
        return;
    }
    const char *p = buf->base;
    size_t n = (size_t)nread;
    for (;;) {
        size_t used;
        int r = http_feed(&c->http, p, n, &used, sse_sink, c);
        p += used;
        n -= used;
        if (r == HTTP_HEAD) {
            if (c->http.status != 200) {
                lg_stats_t *st = c->w->st;
                if (c->w->phase != PH_STOP)
                    st->hs_status[c->http.status]++;
                conn_close_sse(c, E_HS_STATUS);
                return;
            }
            conn_established(c);
            continue;
        }
        if (r == HTTP_ERR) {
            conn_close_sse(c, E_PROTOCOL);
            return;
        }
        if (r == HTTP_DONE) {
            /* The server ended the stream: expected only after a terminal message. */
            conn_close_sse(c, c->terminal ? -1 : E_DROPPED);
            return;
        }
        if (!n)
            return;
    }
}

static void sse_connect_cb(uv_connect_t *req, int status)
{
    lg_sock_t *s = req->handle->data;
    lg_conn_t *c = s->owner;
    char reqbuf[8192], target[4096];
    if (!c || status == UV_ECANCELED)
        return;
    if (status < 0) {
        record_errno(c->w->st, status);
        conn_close_sse(c, E_CONNECT);
        return;
    }
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "%s?token=", c->w->o->events_path);
    url_token(target, sizeof(target), prefix, c->token);
    int n = snprintf(reqbuf, sizeof(reqbuf),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
                     "User-Agent: waitroom-loadgen\r\n\r\n",
                     target, c->w->http_hosthdr);
    c->state = C_HANDSHAKE;
    int r;
    if (n >= (int)sizeof(reqbuf) || (r = sock_write(s, reqbuf, (size_t)n)) < 0 ||
        (r = uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, sse_read_cb)) < 0) {
        conn_close_sse(c, E_CONNECT);
        return;
    }
}

/* ------------------------------------------------------------------------
 * WebSocket through libwebsockets.
 */
static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    lg_worker_t *w = the_worker;
    lg_conn_t *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        if (!c || c->state == C_DONE)
            break;
        const char *why = in ? (const char *)in : "";
        unsigned status = lws_http_client_http_response(wsi);
        if (!status && strstr(why, "unauthorized"))
            status = 401;
        c->wsi = NULL;
        if (status >= 100 && status < LG_STATUS_MAX) {
            if (w->phase != PH_STOP)
                w->st->hs_status[status]++;
            conn_ended(c, E_HS_STATUS);
        } else if (strstr(why, "imeout") || strstr(why, "timed out"))
            conn_ended(c, E_TIMEOUT);
        else if (strstr(why, "HS:") || strstr(why, "Peer hung up") || strstr(why, "read failed"))
            conn_ended(c, E_HS_OTHER);
        else
            conn_ended(c, E_CONNECT);
        lws_set_opaque_user_data(wsi, NULL);
        break;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c && c->state != C_DONE)
            conn_established(c);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!c || c->state != C_OPEN)
            break;
        int complete = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
        if (complete && !c->rx_len) {
            on_message(c, in, len, NULL);
            break;
        }
        if (buf_append(&c->rx, &c->rx_len, &c->rx_cap, in, len) < 0) {
            conn_ended(c, E_PROTOCOL);
            lws_set_opaque_user_data(wsi, NULL);
            c->wsi = NULL;
            conn_free_buffers(c);
            return -1;
        }
        if (complete) {
            on_message(c, c->rx, c->rx_len, NULL);
            c->rx_len = 0;
        }
        break;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c) {
            const unsigned char *b = in;
            c->ws_close_seen = 1;
            c->close_code = len >= 2 ? (uint16_t)(b[0] << 8 | b[1]) : 1005;
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (!c)
            break;
        lws_set_opaque_user_data(wsi, NULL);
        c->wsi = NULL;
        if (c->state == C_OPEN) {
            if (c->terminal)
                conn_ended(c, -1);
            else if (c->ws_close_seen) {
                if (w->phase != PH_STOP)
                    w->st->close_code[c->close_code < LG_CLOSE_MAX ? c->close_code : 0]++;
                conn_ended(c, E_CLOSED_CODE);
            } else
                conn_ended(c, E_DROPPED);
        } else if (c->state != C_DONE)
            conn_ended(c, E_HS_OTHER);
        conn_free_buffers(c);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols ws_protocols[] = {
    {"waitroom-loadgen", ws_callback, 0, 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}, /* 4.1 has no LWS_PROTOCOL_LIST_TERM */
};

static void ws_connect(lg_conn_t *c)
{
    lg_worker_t *w = c->w;
    const lg_opts_t *o = w->o;
    char path[4096];
    struct lws_client_connect_info i;

    char prefix[300];
    snprintf(prefix, sizeof(prefix), "%s?token=", o->ws_path);
    url_token(path, sizeof(path), prefix, c->token);
    memset(&i, 0, sizeof(i));
    i.context = w->lws;
    i.address = o->push_host;
    i.port = o->push_port;
    i.path = path; /* lws copies the strings it keeps */
    i.host = w->push_hosthdr;
    i.origin = w->push_hosthdr;
    i.ietf_version_or_minus_one = -1;
    i.local_protocol_name = ws_protocols[0].name;
    i.opaque_user_data = c;
    i.iface = o->sources_set ? w->src[c->idx % o->sources] : NULL;
    i.pwsi = &c->wsi;
    c->state = C_CONNECTING;
    if (!lws_client_connect_via_info(&i) && c->state == C_CONNECTING) {
        /* Refused synchronously without a CONNECTION_ERROR callback. */
        c->wsi = NULL;
        conn_ended(c, E_CONNECT);
    }
}

/* ------------------------------------------------------------------------
 * Starting a connection: token first (join or --tokens), then the stream.
 */
static void conn_start_connect(lg_conn_t *c)
{
    lg_worker_t *w = c->w;
    c->t_connect_us = uv_hrtime() / 1000;
    if (w->o->ws) {
        ws_connect(c);
        return;
    }
    c->state = C_CONNECTING;
    int r = sock_open(w, c->idx, &w->o->http_sa, c, sse_connect_cb, &c->sock);
    if (r < 0) {
        c->sock = NULL;
        record_errno(w->st, r);
        conn_ended(c, E_CONNECT);
    }
}

static void conn_start(lg_conn_t *c)
{
    lg_worker_t *w = c->w;
    w->st->attempted++;
    if (c->token) {
        conn_start_connect(c);
        return;
    }
    c->state = C_JOIN;
    w->jq[(w->jq_head + w->jq_len++) % w->n] = (uint32_t)(c - w->conns);
    joiner_kick(w);
}

/* ------------------------------------------------------------------------
 * Joins over a pool of keep-alive connections.
 */
static void joiner_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void joiner_down(lg_joiner_t *j)
{
    sock_release(j->sock);
    j->sock = NULL;
    j->state = J_DOWN;
    http_reset(&j->http);
    j->body_len = 0;
}

/* The connection in flight could not be joined: retry once on a fresh
 * connection if the keep-alive connection broke, else count it as failed. */
static void joiner_fail(lg_joiner_t *j, int err, int retry)
{
    lg_conn_t *c = j->conn;
    lg_worker_t *w = j->w;
    j->conn = NULL;
    joiner_down(j);
    if (c && c->state == C_JOIN) {
        if (retry && c->join_retries++ < 1) {
            /* Back to the front of the queue, ahead of newer arrivals. */
            w->jq_head = (w->jq_head + w->n - 1) % w->n;
            w->jq[w->jq_head] = (uint32_t)(c - w->conns);
            w->jq_len++;
        } else
            conn_ended(c, err);
    }
    joiner_kick(w);
}

static void joiner_send(lg_joiner_t *j)
{
    lg_worker_t *w = j->w;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\nUser-Agent: waitroom-loadgen\r\n\r\n",
                     w->o->path, w->http_hosthdr);
    j->state = J_BUSY;
    j->t_sent_ms = uv_now(&w->loop);
    if (sock_write(j->sock, req, (size_t)n) < 0)
        joiner_fail(j, E_JOIN_IO, 1);
}

static void joiner_connect_cb(uv_connect_t *req, int status)
{
    lg_sock_t *s = req->handle->data;
    lg_joiner_t *j = s->owner;
    if (!j || status == UV_ECANCELED)
        return;
    if (status < 0) {
        record_errno(j->w->st, status);
        joiner_fail(j, E_JOIN_CONNECT, 0);
        return;
    }
    if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, joiner_read_cb) < 0) {
        joiner_fail(j, E_JOIN_CONNECT, 0);
        return;
    }
    joiner_send(j);
}

static int joiner_sink(void *ctx, const char *p, size_t n)
{
    lg_joiner_t *j = ctx;
    return buf_append(&j->body, &j->body_len, &j->body_cap, p, n);
}

/* A complete join answer for j->conn: take its token and connect. */
static void joiner_done(lg_joiner_t *j)
{
    lg_worker_t *w = j->w;
    lg_conn_t *c = j->conn;
    const char *v;
    size_t vn;
    int is_str, status = j->http.status, close_after = j->http.conn_close;

    j->conn = NULL;
    if (c && c->state == C_JOIN) {
        if (status < 200 || status > 299) {
            if (w->phase != PH_STOP)
                w->st->join_status[status]++;
            conn_ended(c, E_JOIN_STATUS);
        } else if (!json_member(j->body, j->body_len, "queueToken", &v, &vn, &is_str) || !is_str || !vn) {
            conn_ended(c, E_JOIN_NO_TOKEN);
        } else {
            c->token = xmalloc(vn + 1);
            size_t k = 0;
            for (size_t i = 0; i < vn; i++) {
                if (v[i] == '\\' && i + 1 < vn)
                    i++; /* tokens are base64url; only \/ style escapes can occur */
                c->token[k++] = v[i];
            }
            c->token[k] = '\0';
            w->st->joined++;
            conn_start_connect(c);
        }
    }
    http_reset(&j->http);
    j->body_len = 0;
    if (close_after)
        joiner_down(j);
    else
        j->state = J_IDLE;
    joiner_kick(w);
}

static void joiner_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    lg_sock_t *s = stream->data;
    lg_joiner_t *j = s->owner;
    if (!j || nread == 0)
        return;
    if (nread < 0) {
        if (j->state == J_BUSY && j->http.in_body && j->http.mode == BM_EOF && nread == UV_EOF) {
            joiner_done(j);
            return;
        }
        if (j->state == J_BUSY)
            joiner_fail(j, E_JOIN_IO, 1);
        else
            joiner_down(j); /* the server closed an idle keep-alive connection */
        joiner_kick(j->w);
        return;
    }
    const char *p = buf->base;
    size_t n = (size_t)nread;
    if (j->state != J_BUSY) {
        joiner_down(j); /* bytes nobody asked for: start over */
        return;
    }
    for (;;) {
        size_t used;
        int r = http_feed(&j->http, p, n, &used, joiner_sink, j);
        p += used;
        n -= used;
        if (r == HTTP_HEAD)
            continue;
        if (r == HTTP_ERR) {
            joiner_fail(j, E_PROTOCOL, 0);
            return;
        }
        if (r == HTTP_DONE) {
            joiner_done(j);
            return;
        }
        return;
    }
}

static void joiner_kick(lg_worker_t *w)
{
    if (w->phase == PH_STOP)
        return;
    for (uint32_t k = 0; k < w->o->join_conns && w->jq_len; k++) {
        lg_joiner_t *j = &w->joiners[k];
        if (j->state != J_DOWN && j->state != J_IDLE)
            continue;
        lg_conn_t *c = &w->conns[w->jq[w->jq_head]];
        w->jq_head = (w->jq_head + 1) % w->n;
        w->jq_len--;
        if (c->state != C_JOIN)
            continue;
        j->conn = c;
        if (j->state == J_IDLE) {
            joiner_send(j);
            continue;
        }
        j->state = J_CONNECTING;
        j->t_sent_ms = uv_now(&w->loop);
        int r = sock_open(w, j->idx, &w->o->http_sa, j, joiner_connect_cb, &j->sock);
        if (r < 0) {
            j->sock = NULL;
            record_errno(w->st, r);
            j->conn = NULL;
            j->state = J_DOWN;
            conn_ended(c, E_JOIN_CONNECT);
        }
    }
}

/* ------------------------------------------------------------------------
 * Worker timers, phases and the report up the pipe.
 */
static int write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                poll(&pf, 1, 100);
                continue;
            }
            return -1;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static void send_progress(lg_worker_t *w)
{
    struct {
        lg_msg_hdr_t h;
        lg_progress_t p;
    } m;
    uint64_t errs = 0;
    for (int i = 0; i < E__N; i++)
        errs += w->st->err[i];
    memset(&m, 0, sizeof(m));
    m.h.kind = MSG_PROGRESS;
    m.h.len = sizeof(m.p);
    m.p.attempted = w->st->attempted;
    m.p.established = w->st->established;
    m.p.held = w->held;
    m.p.msgs = w->st->msgs;
    m.p.errors = errs;
    m.p.phase = (uint32_t)w->phase;
    /* Smaller than PIPE_BUF: written whole or not at all; a missed one does not matter. */
    if (write(w->out_fd, &m, sizeof(m)) < 0 && errno != EAGAIN)
        return;
}

static void sweep_timeouts(lg_worker_t *w)
{
    uint64_t now = uv_now(&w->loop), limit = (uint64_t)(w->o->connect_timeout * 1000);
    for (uint32_t k = 0; k < w->o->join_conns; k++) {
        lg_joiner_t *j = &w->joiners[k];
        if ((j->state == J_BUSY || j->state == J_CONNECTING) && now - j->t_sent_ms > limit)
            joiner_fail(j, E_JOIN_TIMEOUT, 0);
    }
    if (w->o->ws)
        return; /* lws enforces its own connect and handshake timeouts */
    for (uint32_t k = 0; k < w->next; k++) {
        lg_conn_t *c = &w->conns[k];
        if ((c->state == C_CONNECTING || c->state == C_HANDSHAKE) &&
            (uv_hrtime() / 1000 - c->t_connect_us) / 1000 > limit)
            conn_close_sse(c, E_TIMEOUT);
    }
}

static void tick_cb(uv_timer_t *t)
{
    lg_worker_t *w = t->data;
    sweep_timeouts(w);
    send_progress(w);
}

static void ramp_cb(uv_timer_t *t)
{
    lg_worker_t *w = t->data;
    double elapsed = (double)(uv_now(&w->loop) - w->t0_ms) / 1000.0;
    uint64_t due = (uint64_t)(elapsed * w->rate) + 1;
    while (w->next < w->n && w->next < due && w->phase == PH_RAMP)
        conn_start(&w->conns[w->next++]);
    if (w->next >= w->n)
        uv_timer_stop(&w->ramp_timer);
}

static void end_cb(uv_timer_t *t)
{
    worker_stop(t->data, 0);
}

static void ramp_deadline_cb(uv_timer_t *t)
{
    start_measure(t->data);
}

static void start_measure(lg_worker_t *w)
{
    if (w->phase != PH_RAMP)
        return;
    w->phase = PH_MEASURE;
    w->t_measure_ms = uv_now(&w->loop);
    uv_timer_stop(&w->phase_timer);
    uv_timer_start(&w->phase_timer, end_cb, (uint64_t)(w->o->duration * 1000), 0);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    (void)signum;
    worker_stop(s->data, 1);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Ends the run: snapshots and sends the final stats, then closes everything
 * so that uv_run returns. */
static void worker_stop(lg_worker_t *w, int interrupted)
{
    lg_stats_t *st = w->st;
    if (w->phase == PH_STOP)
        return;
    uint64_t now = uv_now(&w->loop);
    if (w->phase == PH_MEASURE)
        st->measure_s = (double)(now - w->t_measure_ms) / 1000.0;
    st->elapsed_s = (double)(now - w->t0_ms) / 1000.0;
    st->held_end = w->held;
    st->interrupted = interrupted;
    for (uint32_t k = 0; k < w->n; k++)
        if (w->conns[k].state != C_IDLE && !w->conns[k].resolved)
            st->pending_end++;
    w->phase = PH_STOP;

    lg_msg_hdr_t h = {MSG_FINAL, sizeof(*st)};
    int fl = fcntl(w->out_fd, F_GETFL);
    fcntl(w->out_fd, F_SETFL, fl & ~O_NONBLOCK);
    if (write_all(w->out_fd, &h, sizeof(h)) < 0 || write_all(w->out_fd, st, sizeof(*st)) < 0)
        fprintf(stderr, "waitroom-loadgen: worker %d: write() to the parent failed: %s\n", (int)getpid(),
                strerror(errno));
    close(w->out_fd);
    w->out_fd = -1;

    for (uint32_t k = 0; k < w->n; k++) {
        lg_conn_t *c = &w->conns[k];
        if (c->sock) {
            sock_release(c->sock);
            c->sock = NULL;
        }
        c->state = c->state == C_IDLE ? C_IDLE : C_DONE;
    }
    for (uint32_t k = 0; k < w->o->join_conns; k++)
        joiner_down(&w->joiners[k]);
    uv_timer_stop(&w->ramp_timer);
    uv_timer_stop(&w->tick_timer);
    uv_timer_stop(&w->phase_timer);
    close_handle((uv_handle_t *)&w->ramp_timer);
    close_handle((uv_handle_t *)&w->tick_timer);
    close_handle((uv_handle_t *)&w->phase_timer);
    uv_signal_stop(&w->sigint);
    uv_signal_stop(&w->sigterm);
    close_handle((uv_handle_t *)&w->sigint);
    close_handle((uv_handle_t *)&w->sigterm);
    if (w->lws)
        lws_context_destroy(w->lws); /* asynchronous on a foreign loop: finishes inside uv_run */
}

static int worker_main(const lg_opts_t *o, uint32_t first, uint32_t n, int out_fd)
{
    lg_worker_t *w = xcalloc(1, sizeof(*w));
    int rc = 0;

    the_worker = w;
    w->o = o;
    w->first = first;
    w->n = n;
    w->out_fd = out_fd;
    w->rate = o->ramp / o->processes;
    w->st = xcalloc(1, sizeof(*w->st));
    w->conns = xcalloc(n, sizeof(*w->conns));
    w->jq = xcalloc(n, sizeof(*w->jq));
    w->joiners = xcalloc(o->join_conns ? o->join_conns : 1, sizeof(*w->joiners));
    for (uint32_t k = 0; k < o->sources && k < WR_LG_MAX_SOURCES; k++)
        snprintf(w->src[k], sizeof(w->src[k]), "127.0.0.%u", k + 1);
    snprintf(w->http_hosthdr, sizeof(w->http_hosthdr), "%s:%d", o->http_host, o->http_port);
    snprintf(w->push_hosthdr, sizeof(w->push_hosthdr), "%s:%d", o->push_host, o->push_port);
    for (uint32_t k = 0; k < n; k++) {
        lg_conn_t *c = &w->conns[k];
        c->w = w;
        c->idx = first + k;
        if (o->tokens) {
            c->token = o->tokens[first + k];
            c->token_borrowed = 1;
        }
    }
    for (uint32_t k = 0; k < o->join_conns; k++) {
        w->joiners[k].w = w;
        w->joiners[k].idx = first + k;
    }
    fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);

    uv_loop_init(&w->loop);
    uv_timer_init(&w->loop, &w->ramp_timer);
    uv_timer_init(&w->loop, &w->tick_timer);
    uv_timer_init(&w->loop, &w->phase_timer);
    uv_signal_init(&w->loop, &w->sigint);
    uv_signal_init(&w->loop, &w->sigterm);
    w->ramp_timer.data = w->tick_timer.data = w->phase_timer.data = w->sigint.data = w->sigterm.data = w;
    uv_signal_start(&w->sigint, signal_cb, SIGINT);
    uv_signal_start(&w->sigterm, signal_cb, SIGTERM);

    if (o->ws) {
        struct lws_context_creation_info info;
        void *loops[1] = {&w->loop};
        memset(&info, 0, sizeof(info));
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = ws_protocols;
        info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6;
        info.foreign_loops = loops;
        info.pcontext = &w->lws; /* lws clears it once the context is gone */
        info.timeout_secs = (unsigned)ceil(o->connect_timeout);
        info.connect_timeout_secs = (unsigned)ceil(o->connect_timeout);
        info.fd_limit_per_thread = n + o->join_conns + 64;
        w->lws = lws_create_context(&info);
        if (!w->lws) {
            fprintf(stderr, "waitroom-loadgen: lws_create_context() failed (is libwebsockets-evlib-uv installed?)\n");
            rc = 1;
            w->phase = PH_STOP;
            close_handle((uv_handle_t *)&w->ramp_timer);
            close_handle((uv_handle_t *)&w->tick_timer);
            close_handle((uv_handle_t *)&w->phase_timer);
            close_handle((uv_handle_t *)&w->sigint);
            close_handle((uv_handle_t *)&w->sigterm);
            uv_run(&w->loop, UV_RUN_DEFAULT);
            goto done;
        }
    }

    uv_update_time(&w->loop);
    w->t0_ms = uv_now(&w->loop);
    uv_timer_start(&w->ramp_timer, ramp_cb, 0, 5);
    /* A little ahead of the parent's once-a-second line, so that it prints fresh numbers. */
    uv_timer_start(&w->tick_timer, tick_cb, 900, 1000);
    double ramp_s = (double)n / w->rate + o->connect_timeout + 2;
    uv_timer_start(&w->phase_timer, ramp_deadline_cb, (uint64_t)(ramp_s * 1000), 0);

    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->lws) {
        lws_context_destroy(w->lws);
        uv_run(&w->loop, UV_RUN_DEFAULT);
    }

done:
    if (uv_loop_close(&w->loop) != 0)
        fprintf(stderr, "waitroom-loadgen: worker %d: handles still open at exit\n", (int)getpid());
    for (uint32_t k = 0; k < n; k++) {
        conn_free_buffers(&w->conns[k]);
        http_reset(&w->conns[k].http);
        if (!w->conns[k].token_borrowed)
            free(w->conns[k].token);
    }
    for (uint32_t k = 0; k < o->join_conns; k++) {
        http_reset(&w->joiners[k].http);
        free(w->joiners[k].body);
    }
    if (w->out_fd >= 0)
        close(w->out_fd);
    free(w->joiners);
    free(w->jq);
    free(w->conns);
    free(w->st);
    free(w);
    the_worker = NULL;
    return rc;
}

/* ------------------------------------------------------------------------
 * Parent: options, limits, workers, progress and the report.
 */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: waitroom-loadgen [options]\n"
            "  --mode ws|sse          push transport (default sse)\n"
            "  --connections N        total waiting clients (default 1000)\n"
            "  --processes P          worker processes, N/P clients each (default 1)\n"
            "  --sources K            bind clients to 127.0.0.1..127.0.0.K round-robin\n"
            "  --http HOST:PORT       gateway HTTP, for joins and SSE (default 127.0.0.1:8080)\n"
            "  --push HOST:PORT       gateway push listener, for WebSocket (default 127.0.0.1:8081)\n"
            "  --path PATH            room path to join (default /book)\n"
            "  --events-path PATH     SSE path (default /queue/events)\n"
            "  --ws-path PATH         WebSocket path (default /queue/ws)\n"
            "  --tokens FILE          queue tokens, one a line, instead of joining\n"
            "  --duration SECONDS     hold and measure after all are connected (default 30)\n"
            "  --ramp RATE            connections opened per second, all processes (default 2000)\n"
            "  --join-conns J         keep-alive join connections per process (default 16)\n"
            "  --connect-timeout S    connect + handshake limit (default 10)\n"
            "  --json                 print the summary as one JSON object on stdout\n"
            "  --quiet                no progress lines on stderr\n");
}

static int parse_hostport(const char *arg, char *host, size_t cap, int *port, struct sockaddr_in *sa)
{
    const char *colon = strrchr(arg, ':');
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (!colon || colon == arg || (size_t)(colon - arg) >= cap)
        return -1;
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    if (getaddrinfo(host, NULL, &hints, &res) || !res)
        return -1;
    memcpy(sa, res->ai_addr, sizeof(*sa));
    sa->sin_port = htons((uint16_t)p);
    freeaddrinfo(res);
    /* lws is given the numeric address, so it never resolves names itself. */
    inet_ntop(AF_INET, &sa->sin_addr, host, (socklen_t)cap);
    return 0;
}

static int parse_num(const char *name, const char *arg, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (*end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "waitroom-loadgen: --%s \"%s\": expected a number from %g to %g\n", name, arg, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static char **read_tokens(const char *file, uint32_t need, uint32_t *have)
{
    FILE *f = fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    char **t = NULL;
    uint32_t k = 0;
    if (!f) {
        fprintf(stderr, "waitroom-loadgen: fopen(\"%s\") failed: %s\n", file, strerror(errno));
        return NULL;
    }
    t = xcalloc(need ? need : 1, sizeof(*t));
    while (k < need && (n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (n > 0)
            t[k++] = strdup(line);
    }
    free(line);
    fclose(f);
    *have = k;
    return t;
}

static void local_port_range(int *lo, int *hi)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    *lo = 32768;
    *hi = 60999;
    if (f) {
        if (fscanf(f, "%d %d", lo, hi) != 2) {
            *lo = 32768;
            *hi = 60999;
        }
        fclose(f);
    }
}

static void stats_merge(lg_stats_t *d, const lg_stats_t *s)
{
    d->attempted += s->attempted;
    d->joined += s->joined;
    d->established += s->established;
    d->held_end += s->held_end;
    d->finished += s->finished;
    d->pending_end += s->pending_end;
    d->msgs += s->msgs;
    d->msgs_measure += s->msgs_measure;
    for (int i = 0; i < T__N; i++)
        d->by_type[i] += s->by_type[i];
    d->no_ts += s->no_ts;
    d->sse_comments += s->sse_comments;
    d->bytes += s->bytes;
    for (int i = 0; i < E__N; i++)
        d->err[i] += s->err[i];
    for (int i = 0; i < LG_STATUS_MAX; i++)
        d->join_status[i] += s->join_status[i], d->hs_status[i] += s->hs_status[i];
    for (int i = 0; i < LG_CLOSE_MAX; i++)
        d->close_code[i] += s->close_code[i];
    for (int i = 0; i < LG_ERRNO_MAX; i++)
        d->conn_errno[i] += s->conn_errno[i];
    if (s->measure_s > d->measure_s)
        d->measure_s = s->measure_s;
    if (s->elapsed_s > d->elapsed_s)
        d->elapsed_s = s->elapsed_s;
    d->interrupted |= s->interrupted;
    hist_merge(&d->lat, &s->lat);
    hist_merge(&d->lat_ramp, &s->lat_ramp);
    hist_merge(&d->first_age, &s->first_age);
    hist_merge(&d->connect, &s->connect);
}

typedef struct {
    pid_t pid;
    int fd;
    char *in;
    size_t in_len, in_cap;
    lg_progress_t prog;
    int have_final, eof;
} lg_child_t;

static volatile sig_atomic_t parent_signalled;

static void parent_on_signal(int sig)
{
    (void)sig;
    parent_signalled = 1;
}

static void child_consume(lg_child_t *ch, lg_stats_t *total)
{
    size_t off = 0;
    while (ch->in_len - off >= sizeof(lg_msg_hdr_t)) {
        lg_msg_hdr_t h;
        memcpy(&h, ch->in + off, sizeof(h));
        if (ch->in_len - off - sizeof(h) < h.len)
            break;
        const char *p = ch->in + off + sizeof(h);
        if (h.kind == MSG_PROGRESS && h.len == sizeof(lg_progress_t))
            memcpy(&ch->prog, p, sizeof(ch->prog));
        else if (h.kind == MSG_FINAL && h.len == sizeof(lg_stats_t) && !ch->have_final) {
            lg_stats_t *s = xmalloc(sizeof(*s));
            memcpy(s, p, sizeof(*s));
            stats_merge(total, s);
            ch->prog.held = s->held_end;
            ch->prog.msgs = s->msgs;
            free(s);
            ch->have_final = 1;
        }
        off += sizeof(h) + h.len;
    }
    memmove(ch->in, ch->in + off, ch->in_len - off);
    ch->in_len -= off;
}

static void print_hist_line(FILE *f, const char *what, const lg_hist_t *h)
{
    if (!h->h.count) {
        fprintf(f, "  %-34s n=0\n", what);
        return;
    }
    fprintf(f, "  %-34s n=%" PRIu64 "  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n", what,
            h->h.count, hist_pct_ms(h, 50), hist_pct_ms(h, 90), hist_pct_ms(h, 99), hist_pct_ms(h, 99.9),
            (double)h->h.max / 1000.0, wr_hist_mean(&h->h) / 1000.0);
}

static void json_hist(FILE *f, const char *name, const lg_hist_t *h)
{
    fprintf(f,
            "\"%s\":{\"count\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,"
            "\"mean\":%.3f,\"negative\":%" PRIu64 "}",
            name, h->h.count, hist_pct_ms(h, 50), hist_pct_ms(h, 90), hist_pct_ms(h, 99), hist_pct_ms(h, 99.9),
            (double)h->h.max / 1000.0, wr_hist_mean(&h->h) / 1000.0,
            h->negative);
}

static const char *errno_name(int e)
{
    const char *n = uv_err_name(-e);
    return n ? n : "unknown";
}

static void report_text(const lg_opts_t *o, const lg_stats_t *s, int missing)
{
    FILE *f = stdout;
    uint64_t errs = 0;
    for (int i = 0; i < E__N; i++)
        errs += s->err[i];
    fprintf(f, "waitroom-loadgen: mode %s, %u connections, %u processes, %u sources, http %s:%d", o->ws ? "ws" : "sse",
            o->connections, o->processes, o->sources, o->http_host, o->http_port);
    if (o->ws)
        fprintf(f, ", push %s:%d", o->push_host, o->push_port);
    fprintf(f, ", path %s, ramp %.0f/s, duration %.0fs%s\n", o->tokens_file ? "(tokens file)" : o->path, o->ramp,
            o->duration, s->interrupted ? " (interrupted)" : "");
    fprintf(f, "connections: attempted %" PRIu64 ", joined %" PRIu64 ", established %" PRIu64 ", held at end %" PRIu64
               ", ended after ACTIVE/EXPIRED/CLOSED %" PRIu64 ", unresolved at end %" PRIu64 "\n",
            s->attempted, s->joined, s->established, s->held_end, s->finished, s->pending_end);
    fprintf(f, "messages: %" PRIu64 " total (", s->msgs);
    for (int i = 0; i < T__N; i++)
        fprintf(f, "%s%s %" PRIu64, i ? ", " : "", type_names[i], s->by_type[i]);
    fprintf(f, "), %" PRIu64 " without ts, %" PRIu64 " SSE comments; %.0f msgs/s over the %.1fs hold\n", s->no_ts,
            s->sse_comments, s->measure_s > 0 ? (double)s->msgs_measure / s->measure_s : 0.0, s->measure_s);
    fprintf(f, "errors: %" PRIu64 " total", errs);
    for (int i = 0; i < E__N; i++)
        if (s->err[i])
            fprintf(f, ", %s %" PRIu64, err_names[i], s->err[i]);
    for (int i = 0; i < LG_STATUS_MAX; i++)
        if (s->join_status[i])
            fprintf(f, ", join status %d x%u", i, s->join_status[i]);
    for (int i = 0; i < LG_STATUS_MAX; i++)
        if (s->hs_status[i])
            fprintf(f, ", handshake status %d x%u", i, s->hs_status[i]);
    for (int i = 0; i < LG_CLOSE_MAX; i++)
        if (s->close_code[i])
            fprintf(f, ", close code %d x%u", i, s->close_code[i]);
    for (int i = 0; i < LG_ERRNO_MAX; i++)
        if (s->conn_errno[i])
            fprintf(f, ", %s x%u", errno_name(i), s->conn_errno[i]);
    if (missing)
        fprintf(f, ", %d worker(s) sent no report", missing);
    fprintf(f, "\nlatency, ms (receipt - ts):\n");
    print_hist_line(f, "push, after ramp (headline)", &s->lat);
    print_hist_line(f, "push, during ramp", &s->lat_ramp);
    print_hist_line(f, "first message age on connect", &s->first_age);
    print_hist_line(f, "connect + handshake", &s->connect);
    if (s->lat.negative + s->lat_ramp.negative + s->first_age.negative)
        fprintf(f, "  note: %" PRIu64 " messages had a ts in the future (counted as 0)\n",
                s->lat.negative + s->lat_ramp.negative + s->first_age.negative);
}

static void report_json(const lg_opts_t *o, const lg_stats_t *s, int missing)
{
    FILE *f = stdout;
    uint64_t errs = 0;
    int first;
    for (int i = 0; i < E__N; i++)
        errs += s->err[i];
    fprintf(f,
            "{\"params\":{\"mode\":\"%s\",\"connections\":%u,\"processes\":%u,\"sources\":%u,\"http\":\"%s:%d\","
            "\"push\":\"%s:%d\",\"path\":\"%s\",\"ramp\":%.1f,\"duration\":%.1f,\"join_conns\":%u,"
            "\"connect_timeout\":%.1f,\"tokens_file\":%s},",
            o->ws ? "ws" : "sse", o->connections, o->processes, o->sources, o->http_host, o->http_port, o->push_host,
            o->push_port, o->path, o->ramp, o->duration, o->join_conns, o->connect_timeout,
            o->tokens_file ? "true" : "false");
    fprintf(f,
            "\"connections\":{\"attempted\":%" PRIu64 ",\"joined\":%" PRIu64 ",\"established\":%" PRIu64
            ",\"held_end\":%" PRIu64 ",\"finished\":%" PRIu64 ",\"unresolved_end\":%" PRIu64 "},",
            s->attempted, s->joined, s->established, s->held_end, s->finished, s->pending_end);
    fprintf(f, "\"messages\":{\"total\":%" PRIu64 ",\"during_hold\":%" PRIu64 ",\"per_second_hold\":%.1f,\"by_type\":{",
            s->msgs, s->msgs_measure, s->measure_s > 0 ? (double)s->msgs_measure / s->measure_s : 0.0);
    for (int i = 0; i < T__N; i++)
        fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", type_names[i], s->by_type[i]);
    fprintf(f, "},\"without_ts\":%" PRIu64 ",\"sse_comments\":%" PRIu64 ",\"bytes\":%" PRIu64 "},", s->no_ts,
            s->sse_comments, s->bytes);
    fprintf(f, "\"errors\":{\"total\":%" PRIu64, errs);
    for (int i = 0; i < E__N; i++)
        fprintf(f, ",\"%s\":%" PRIu64, err_names[i], s->err[i]);
    fprintf(f, ",\"join_status_codes\":{");
    first = 1;
    for (int i = 0; i < LG_STATUS_MAX; i++)
        if (s->join_status[i])
            fprintf(f, "%s\"%d\":%u", first ? "" : ",", i, s->join_status[i]), first = 0;
    fprintf(f, "},\"handshake_status_codes\":{");
    first = 1;
    for (int i = 0; i < LG_STATUS_MAX; i++)
        if (s->hs_status[i])
            fprintf(f, "%s\"%d\":%u", first ? "" : ",", i, s->hs_status[i]), first = 0;
    fprintf(f, "},\"close_codes\":{");
    first = 1;
    for (int i = 0; i < LG_CLOSE_MAX; i++)
        if (s->close_code[i])
            fprintf(f, "%s\"%d\":%u", first ? "" : ",", i, s->close_code[i]), first = 0;
    fprintf(f, "},\"errno\":{");
    first = 1;
    for (int i = 0; i < LG_ERRNO_MAX; i++)
        if (s->conn_errno[i])
            fprintf(f, "%s\"%s\":%u", first ? "" : ",", errno_name(i), s->conn_errno[i]), first = 0;
    fprintf(f, "}},\"latency_ms\":{");
    json_hist(f, "push", &s->lat);
    fputc(',', f);
    json_hist(f, "push_ramp", &s->lat_ramp);
    fputc(',', f);
    json_hist(f, "first_message_age", &s->first_age);
    fputc(',', f);
    json_hist(f, "connect", &s->connect);
    fprintf(f, "},\"measure_s\":%.3f,\"elapsed_s\":%.3f,\"interrupted\":%s,\"workers_missing\":%d}\n", s->measure_s,
            s->elapsed_s, s->interrupted ? "true" : "false", missing);
}

int main(int argc, char **argv)
{
    static lg_opts_t o;
    static const struct option longopts[] = {
        {"mode", required_argument, NULL, 'm'},        {"connections", required_argument, NULL, 'n'},
        {"processes", required_argument, NULL, 'p'},   {"sources", required_argument, NULL, 's'},
        {"http", required_argument, NULL, 'H'},        {"push", required_argument, NULL, 'W'},
        {"path", required_argument, NULL, 'P'},        {"events-path", required_argument, NULL, 'E'},
        {"ws-path", required_argument, NULL, 'X'},     {"tokens", required_argument, NULL, 't'},
        {"duration", required_argument, NULL, 'd'},    {"ramp", required_argument, NULL, 'r'},
        {"join-conns", required_argument, NULL, 'j'},  {"connect-timeout", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'J'},              {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0}};
    const char *http_arg = "127.0.0.1:8080", *push_arg = "127.0.0.1:8081";
    double v;
    int opt, lo, hi, missing = 0;

    o.connections = 1000;
    o.processes = 1;
    o.sources = 1;
    o.join_conns = 16;
    o.duration = 30;
    o.ramp = 2000;
    o.connect_timeout = 10;
    snprintf(o.path, sizeof(o.path), "/book");
    snprintf(o.events_path, sizeof(o.events_path), "/queue/events");
    snprintf(o.ws_path, sizeof(o.ws_path), "/queue/ws");

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            if (!strcmp(optarg, "ws"))
                o.ws = 1;
            else if (!strcmp(optarg, "sse"))
                o.ws = 0;
            else {
                fprintf(stderr, "waitroom-loadgen: --mode \"%s\": expected ws or sse\n", optarg);
                return 1;
            }
            break;
        case 'n':
            if (parse_num("connections", optarg, 1, 1e7, &v) < 0)
                return 1;
            o.connections = (uint32_t)v;
            break;
        case 'p':
            if (parse_num("processes", optarg, 1, WR_LG_MAX_PROCESSES, &v) < 0)
                return 1;
            o.processes = (uint32_t)v;
            break;
        case 's':
            if (parse_num("sources", optarg, 1, WR_LG_MAX_SOURCES, &v) < 0)
                return 1;
            o.sources = (uint32_t)v;
            o.sources_set = 1;
            break;
        case 'H':
            http_arg = optarg;
            break;
        case 'W':
            push_arg = optarg;
            break;
        case 'P':
        case 'E':
        case 'X': {
            char *dst = opt == 'P' ? o.path : opt == 'E' ? o.events_path : o.ws_path;
            size_t cap = opt == 'P' ? sizeof(o.path) : sizeof(o.events_path);
            if (optarg[0] != '/' || strlen(optarg) >= cap || strpbrk(optarg, " \r\n")) {
                fprintf(stderr, "waitroom-loadgen: path \"%s\": expected an absolute path without spaces\n", optarg);
                return 1;
            }
            snprintf(dst, cap, "%s", optarg);
            break;
        }
        case 't':
            o.tokens_file = optarg;
            break;
        case 'd':
            if (parse_num("duration", optarg, 0, 86400, &o.duration) < 0)
                return 1;
            break;
        case 'r':
            if (parse_num("ramp", optarg, 1, 1e6, &o.ramp) < 0)
                return 1;
            break;
        case 'j':
            if (parse_num("join-conns", optarg, 1, 256, &v) < 0)
                return 1;
            o.join_conns = (uint32_t)v;
            break;
        case 'T':
            if (parse_num("connect-timeout", optarg, 1, 600, &o.connect_timeout) < 0)
                return 1;
            break;
        case 'J':
            o.json = 1;
            break;
        case 'q':
            o.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "waitroom-loadgen: unexpected argument \"%s\"\n", argv[optind]);
        return 1;
    }
    if (parse_hostport(http_arg, o.http_host, sizeof(o.http_host), &o.http_port, &o.http_sa) < 0) {
        fprintf(stderr, "waitroom-loadgen: --http \"%s\": expected HOST:PORT with an IPv4 host\n", http_arg);
        return 1;
    }
    if (parse_hostport(push_arg, o.push_host, sizeof(o.push_host), &o.push_port, &o.push_sa) < 0) {
        fprintf(stderr, "waitroom-loadgen: --push \"%s\": expected HOST:PORT with an IPv4 host\n", push_arg);
        return 1;
    }
    if (o.processes > o.connections) {
        fprintf(stderr, "waitroom-loadgen: --processes %u is more than --connections %u\n", o.processes,
                o.connections);
        return 1;
    }
    if (o.tokens_file)
        o.join_conns = 0;

    /* Sockets per process: its share of clients plus the join pool plus what
     * libuv and lws keep open (epoll, signal pipe, event fds). */
    uint32_t per = (o.connections + o.processes - 1) / o.processes;
    uint64_t need = (uint64_t)per + o.join_conns + 32;
    if (need > WR_LG_MAX_SOCKETS_PER_PROC) {
        uint32_t p = (uint32_t)(((uint64_t)o.connections + WR_LG_MAX_SOCKETS_PER_PROC - o.join_conns - 33) /
                                (WR_LG_MAX_SOCKETS_PER_PROC - o.join_conns - 32));
        fprintf(stderr,
                "waitroom-loadgen: %u connections over %u process(es) needs %" PRIu64
                " sockets per process, over the limit of %d (20,000 open files per process on this machine);"
                " use --processes %u or more\n",
                o.connections, o.processes, need, WR_LG_MAX_SOCKETS_PER_PROC, p);
        return 1;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            fprintf(stderr, "waitroom-loadgen: setrlimit(RLIMIT_NOFILE) failed: %s\n", strerror(errno));
        if (rl.rlim_cur != RLIM_INFINITY && need + 16 > rl.rlim_cur) {
            fprintf(stderr,
                    "waitroom-loadgen: needs %" PRIu64 " open files per process but RLIMIT_NOFILE is %llu;"
                    " use more --processes\n",
                    need + 16, (unsigned long long)rl.rlim_cur);
            return 1;
        }
    }
    /* Source ports: every held connection goes to the same destination, so
     * each source address can hold at most the local port range. */
    local_port_range(&lo, &hi);
    uint64_t ports = (uint64_t)(hi - lo + 1);
    uint64_t per_src = (o.connections + o.sources - 1) / o.sources + (uint64_t)o.join_conns * o.processes;
    if (per_src > ports) {
        fprintf(stderr,
                "waitroom-loadgen: %u connections from %u source address(es) needs %" PRIu64
                " ports per address, more than the %" PRIu64 " of ip_local_port_range; use --sources %" PRIu64
                " or more\n",
                o.connections, o.sources, per_src, ports, (o.connections + ports - 1) / (ports - 256));
        return 1;
    }
    if (o.tokens_file) {
        uint32_t have = 0;
        o.tokens = read_tokens(o.tokens_file, o.connections, &have);
        if (!o.tokens)
            return 1;
        if (have < o.connections) {
            fprintf(stderr, "waitroom-loadgen: %s has %u tokens, %u connections need one each\n", o.tokens_file,
                    have, o.connections);
            return 1;
        }
    }

    lws_set_log_level(LLL_ERR, NULL);
    signal(SIGPIPE, SIG_IGN);

    double t_start = mono_s();
    double bound = (double)o.connections / o.ramp + o.connect_timeout + 2 + o.duration;
    if (!o.quiet)
        fprintf(stderr,
                "waitroom-loadgen: %s, %u connections in %u process(es), ramp %.0f/s, hold %.0fs; ends within %.0fs\n",
                o.ws ? "ws" : "sse", o.connections, o.processes, o.ramp, o.duration, bound + 15);
    fflush(stdout);
    fflush(stderr);

    lg_child_t *kids = xcalloc(o.processes, sizeof(*kids));
    uint32_t first = 0;
    for (uint32_t k = 0; k < o.processes; k++) {
        uint32_t n = o.connections / o.processes + (k < o.connections % o.processes);
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
            fprintf(stderr, "waitroom-loadgen: pipe2() failed: %s\n", strerror(errno));
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "waitroom-loadgen: fork() failed: %s\n", strerror(errno));
            return 1;
        }
        if (pid == 0) {
            close(pfd[0]);
            for (uint32_t i = 0; i < k; i++)
                close(kids[i].fd);
            free(kids);
            /* The parent's handlers are not installed yet; start from defaults anyway. */
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            int rc = worker_main(&o, first, n, pfd[1]);
            if (o.tokens) {
                for (uint32_t i = 0; i < o.connections; i++)
                    free(o.tokens[i]);
                free(o.tokens);
            }
            exit(rc);
        }
        close(pfd[1]);
        kids[k].pid = pid;
        kids[k].fd = pfd[0];
        first += n;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = parent_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    lg_stats_t *total = xcalloc(1, sizeof(*total));
    struct pollfd *pfds = xcalloc(o.processes, sizeof(*pfds));
    double next_print = t_start + 1, last_print = t_start, stop_at = t_start + bound + 10, kill_at = stop_at + 5;
    uint64_t last_msgs = 0;
    int forwarded = 0, stopped = 0, killed = 0;
    for (;;) {
        uint32_t live = 0;
        for (uint32_t k = 0; k < o.processes; k++) {
            pfds[k].fd = kids[k].eof ? -1 : kids[k].fd;
            pfds[k].events = POLLIN;
            live += !kids[k].eof;
        }
        if (!live)
            break;
        double now = mono_s();
        int wait_ms = (int)((next_print - now) * 1000);
        if (wait_ms < 0)
            wait_ms = 0;
        int r = poll(pfds, o.processes, wait_ms > 200 ? 200 : wait_ms);
        if (r < 0 && errno != EINTR)
            break;
        for (uint32_t k = 0; r > 0 && k < o.processes; k++) {
            lg_child_t *ch = &kids[k];
            if (ch->eof || !(pfds[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (ch->in_cap - ch->in_len < 65536) {
                ch->in_cap = ch->in_cap ? ch->in_cap * 2 : 262144;
                ch->in = xrealloc(ch->in, ch->in_cap);
            }
            ssize_t got = read(ch->fd, ch->in + ch->in_len, ch->in_cap - ch->in_len);
            if (got > 0) {
                ch->in_len += (size_t)got;
                child_consume(ch, total);
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                ch->eof = 1;
                close(ch->fd);
            }
        }
        now = mono_s();
        if (parent_signalled && !forwarded) {
            /* A terminal's ^C reaches the workers too; a kill of the parent alone does not. */
            for (uint32_t k = 0; k < o.processes; k++)
                if (!kids[k].eof)
                    kill(kids[k].pid, SIGTERM);
            forwarded = 1;
        }
        if (now >= stop_at && !stopped) {
            for (uint32_t k = 0; k < o.processes; k++)
                if (!kids[k].eof)
                    kill(kids[k].pid, SIGTERM);
            stopped = 1;
        }
        if (now >= kill_at && !killed) {
            for (uint32_t k = 0; k < o.processes; k++)
                if (!kids[k].eof) {
                    kill(kids[k].pid, SIGKILL);
                    kids[k].eof = 1;
                    close(kids[k].fd);
                }
            killed = 1;
        }
        if (now >= next_print) {
            lg_progress_t sum = {0};
            int measuring = 1;
            for (uint32_t k = 0; k < o.processes; k++) {
                sum.attempted += kids[k].prog.attempted;
                sum.established += kids[k].prog.established;
                sum.held += kids[k].prog.held;
                sum.msgs += kids[k].prog.msgs;
                sum.errors += kids[k].prog.errors;
                if (kids[k].prog.phase == PH_RAMP && !kids[k].have_final)
                    measuring = 0;
            }
            if (!o.quiet)
                fprintf(stderr,
                        "[%6.1fs] %-4s attempted %" PRIu64 "/%u  held %" PRIu64 "  msgs/s %.0f  errors %" PRIu64
                        "\n",
                        now - t_start, measuring ? "hold" : "ramp", sum.attempted, o.connections, sum.held,
                        (double)(sum.msgs - last_msgs) / (now - last_print), sum.errors);
            last_msgs = sum.msgs;
            last_print = now;
            next_print += 1;
            if (next_print < now)
                next_print = now + 1;
        }
    }
    for (uint32_t k = 0; k < o.processes; k++) {
        int status;
        waitpid(kids[k].pid, &status, 0);
        if (!kids[k].have_final)
            missing++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            fprintf(stderr, "waitroom-loadgen: worker %d exited with status %d\n", (int)kids[k].pid,
                    WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            fprintf(stderr, "waitroom-loadgen: worker %d died of signal %d\n", (int)kids[k].pid, WTERMSIG(status));
        free(kids[k].in);
    }
    if (parent_signalled)
        total->interrupted = 1;
    if (o.json)
        report_json(&o, total, missing);
    else
        report_text(&o, total, missing);
    fflush(stdout);

    free(pfds);
    free(kids);
    free(total);
    if (o.tokens) {
        for (uint32_t i = 0; i < o.connections; i++)
            free(o.tokens[i]);
        free(o.tokens);
    }
    return missing ? 3 : 0;
}
