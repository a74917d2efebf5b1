/*
 * openloop.c: waitroom-openloop, an open-loop HTTP/1.1 latency generator.
 *
 * Why open loop. A closed-loop tool such as wrk sends a connection's next
 * request only once the previous answer is in. When the server stalls for
 * 200 ms, such a tool stops sending for those 200 ms: the requests real users
 * would have made meanwhile are never made, so their long waits are never
 * recorded, and the stall shows up as one slow request per connection among
 * thousands of fast ones. The tool has coordinated with the server and
 * omitted exactly the measurements that matter ("coordinated omission"), so
 * its high percentiles are far too good.
 *
 * What this tool does instead. Request i has a fixed intended send time,
 * start + i/R, whatever the server is doing. At that time it goes out on an
 * idle keep-alive connection from a pool of --connections (opened before the
 * schedule starts; one the server ends after serving is replaced at once); if
 * none is idle, another is opened up to --max-connections (default: the pool
 * size) or the request waits in line, oldest first. Its latency is measured
 * from the intended send time to the moment its response is complete, so time
 * spent waiting for a connection, or in a line behind a stalled server,
 * counts, as it would for a user. Two more numbers are kept to explain the first: "service time"
 * (actual send to complete, what a closed-loop tool reports) and "send lag"
 * (actual minus intended send time: waiting for a connection, and the
 * generator's own lateness). That lateness alone is "timer lag": how late the
 * generator noticed a request was due. A large timer lag means the generator
 * (or the machine) could not keep up, not the server; it is in the latencies,
 * and a note on stderr says so.
 *
 * Timing: one thread, one libuv loop. Send times come from a timerfd armed on
 * CLOCK_MONOTONIC with nanosecond resolution (libuv's own timers have
 * millisecond resolution, too coarse for sub-millisecond latencies), and the
 * thread's timer slack is set to 1 ns. All times are CLOCK_MONOTONIC.
 * Latencies go into log-linear histograms in nanoseconds (128 sub-buckets per
 * power of two: exact below 256 ns, within 0.8% above).
 *
 * Counting: requests whose intended time falls in --warmup are sent but kept
 * out of the results. Every measured request ends exactly one way: completed
 * (a complete 2xx response; only these go into the histograms) or an error:
 * connect (the connection it needed could not be opened), status (a complete
 * response that was not 2xx), timeout (no complete response --timeout after
 * its intended send time), parse (a malformed response) or closed (the
 * connection broke before the response was complete). Responses are parsed
 * for real: Content-Length, chunked transfer coding (extensions, trailers),
 * bodies delimited by the connection's end, interim 1xx responses, and
 * Connection: close.
 *
 * Time bound: connecting the pool takes at most --timeout; the schedule runs
 * --warmup + --duration; then outstanding requests are drained, and any still
 * open --timeout after its intended time has timed out, so the run ends
 * within warmup + duration + 2 * timeout (plus a few milliseconds).
 * SIGINT/SIGTERM stop at once with a report; requests still open are counted
 * as unfinished.
 *
 * Exit status: 0 with a report, 1 for bad arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <uv.h>

#include "hist.h"

#define OL_NAME "waitroom-openloop"
#define OL_MAX_CONNS 10000
#define OL_MAX_HEADERS 64
#define OL_REQ_CAP 16384        /* the request, head only */
#define OL_HEAD_CAP (16 * 1024) /* a response head larger than this is a parse error */
#define OL_STATUS_MAX 600
#define OL_CHECK_MS 10 /* how often timeouts are looked for */
#define OL_READ_BUF (64 * 1024)

/* ------------------------------------------------------------------------
 * Types.
 */

/* Latencies in nanoseconds (bench/hist.h). */
typedef wr_hist_t ol_hist_t;

enum { E_CONNECT, E_STATUS, E_TIMEOUT, E_PARSE, E_CLOSED, E__N };
static const char *const err_names[E__N] = {"connect", "status", "timeout", "parse", "closed"};

typedef struct {
    uint64_t sent;
    uint64_t completed;
    uint64_t err[E__N];
    uint32_t status[OL_STATUS_MAX];
} ol_counts_t;

enum { BM_NONE, BM_LENGTH, BM_CHUNKED, BM_EOF };
enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_TRAILER_LINE, CH_TRAILER_LF };
enum { R_MORE, R_DONE, R_ERR };

/* One response being read. The head buffer is kept across responses. */
typedef struct {
    int in_body, mode, cstate, digits, status, close;
    uint64_t left;
    char *head;
    uint32_t head_len, head_cap;
} ol_resp_t;

enum { CS_FREE, CS_CONNECTING, CS_IDLE, CS_BUSY, CS_CLOSING };

struct ol_run;

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct ol_run *run;
    int state;
    int in_ring;     /* listed in the idle ring (the entry may be stale: checked when popped) */
    uint64_t opened; /* when the connect started */
    uint64_t req;    /* the request in flight, in CS_BUSY */
    uint64_t sent;   /* when it was written */
    uint64_t served; /* responses completed on this connection */
    ol_resp_t resp;
} ol_conn_t;

typedef struct {
    char url[2048];
    char host[256], hosthdr[300], path[4096];
    int port;
    struct sockaddr_in sa;
    const char *headers[OL_MAX_HEADERS];
    int nheaders;
    double rate, duration, warmup, timeout;
    uint32_t connections, max_connections;
    int json;
} ol_opts_t;

enum { PH_CONNECT, PH_RUN, PH_DRAIN, PH_DONE };

typedef struct ol_run {
    const ol_opts_t *o;
    uv_loop_t loop;
    uv_poll_t tick;
    uv_timer_t check;
    uv_signal_t sigint, sigterm;
    int tfd;
    int phase;
    int interrupted;

    char req[OL_REQ_CAP];
    size_t req_len;

    /* The schedule: request i is due at start + i * step. Requests
     * [next_send, next_due) are due and waiting for a connection. */
    uint64_t begin, start, measure_start, done_at;
    double step;
    uint64_t n_warm, total;
    uint64_t next_due, next_send, resolved;

    ol_conn_t *conns;
    uint32_t nslots, cursor;
    uint32_t *ring; /* idle connections, oldest first */
    uint32_t ring_head, ring_len;
    uint32_t alive, connecting, peak_alive;

    /* Connection events. */
    uint64_t opened, connect_failures, closed_by_server, unsolicited;

    ol_counts_t st, warm;
    ol_hist_t lat, service, lag, tlag;
    uint64_t in_window; /* measured requests completed before the schedule's end */
} ol_run_t;

static char read_buf[OL_READ_BUF];

/* ------------------------------------------------------------------------
 * Small helpers.
 */
static void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n, m);
    if (!p) {
        fprintf(stderr, OL_NAME ": out of memory (%s:%d)\n", __FILE__, __LINE__);
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, OL_NAME ": out of memory (%s:%d)\n", __FILE__, __LINE__);
        abort();
    }
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t due_at(const ol_run_t *r, uint64_t i)
{
    return r->start + (uint64_t)((double)i * r->step);
}

/* Value at percentile p (0..100), in ms. */
static double hist_ms(const ol_hist_t *h, double p)
{
    return (double)wr_hist_pct(h, p) / 1e6;
}

static double hist_mean_ms(const ol_hist_t *h)
{
    return wr_hist_mean(h) / 1e6;
}

/* ------------------------------------------------------------------------
 * HTTP/1.1 response reader.
 */
static void resp_reset(ol_resp_t *r)
{
    r->in_body = r->mode = r->cstate = r->digits = r->status = r->close = 0;
    r->left = 0;
    r->head_len = 0;
}

/* Case-insensitive: does the span [p, p+n) equal the word w? */
static int span_is(const char *p, size_t n, const char *w)
{
    return strlen(w) == n && !strncasecmp(p, w, n);
}

static void span_trim(const char **p, size_t *n)
{
    while (*n && (**p == ' ' || **p == '\t'))
        (*p)++, (*n)--;
    while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
        (*n)--;
}

/* Parses a complete head (h[n - 4 .. n) is CRLF CRLF) and sets how the body
 * is delimited. Returns 0, or -1 for a malformed head. */
static int resp_parse_head(ol_resp_t *r, const char *h, size_t n)
{
    int64_t clen = -1;
    int te = 0, chunked = 0;
    if (n < 16 || memcmp(h, "HTTP/1.", 7) || (h[7] != '0' && h[7] != '1') || h[8] != ' ')
        return -1;
    for (int k = 9; k < 12; k++)
        if (h[k] < '0' || h[k] > '9')
            return -1;
    if (h[12] != ' ' && h[12] != '\r')
        return -1;
    r->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    if (r->status < 100 || r->status >= OL_STATUS_MAX)
        return -1;
    r->close = h[7] == '0';

    const char *p = memchr(h, '\n', n), *end = h + n;
    for (p++; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return -1;
        size_t len = (size_t)(eol - p);
        if (len && p[len - 1] == '\r')
            len--;
        if (!len)
            break; /* the empty line ending the head */
        const char *line = p;
        p = eol + 1;
        if (line[0] == ' ' || line[0] == '\t')
            continue; /* obsolete line folding: a continuation of a header we do not need */
        const char *colon = memchr(line, ':', len);
        if (!colon || colon == line)
            return -1;
        size_t nl = (size_t)(colon - line), vl = len - nl - 1;
        const char *v = colon + 1;
        span_trim(&v, &vl);
        if (span_is(line, nl, "content-length")) {
            int64_t x = 0;
            if (!vl || vl > 18)
                return -1;
            for (size_t k = 0; k < vl; k++) {
                if (v[k] < '0' || v[k] > '9')
                    return -1;
                x = x * 10 + (v[k] - '0');
            }
            if (clen >= 0 && clen != x)
                return -1;
            clen = x;
        } else if (span_is(line, nl, "transfer-encoding")) {
            /* Only the last coding decides whether the body is chunked. */
            const char *last = v;
            size_t ll = vl;
            for (size_t k = 0; k < vl; k++)
                if (v[k] == ',') {
                    last = v + k + 1;
                    ll = vl - k - 1;
                }
            span_trim(&last, &ll);
            te = 1;
            chunked = span_is(last, ll, "chunked");
        } else if (span_is(line, nl, "connection")) {
            const char *t = v;
            while (t < v + vl) {
                const char *comma = memchr(t, ',', (size_t)(v + vl - t));
                size_t tl = (size_t)((comma ? comma : v + vl) - t);
                const char *tok = t;
                span_trim(&tok, &tl);
                if (span_is(tok, tl, "close"))
                    r->close = 1;
                else if (span_is(tok, tl, "keep-alive") && h[7] == '0')
                    r->close = 0;
                t = comma ? comma + 1 : v + vl;
            }
        }
    }
    if (r->status < 200 || r->status == 204 || r->status == 304)
        r->mode = BM_NONE;
    else if (te && chunked)
        r->mode = BM_CHUNKED, r->cstate = CH_SIZE, r->left = 0, r->digits = 0;
    else if (te) /* a coding we cannot take apart: the body ends with the connection */
        r->mode = BM_EOF, r->close = 1;
    else if (clen >= 0)
        r->mode = clen ? BM_LENGTH : BM_NONE, r->left = (uint64_t)clen;
    else
        r->mode = BM_EOF, r->close = 1;
    return 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Feeds n bytes of a response. Returns R_DONE when the response is complete
 * (*used says how many bytes it took), R_MORE when all n were consumed and
 * more is needed, R_ERR for a malformed response. Bodies are skipped. */
static int resp_feed(ol_resp_t *r, const char *p, size_t n, size_t *used)
{
    size_t i = 0;
    *used = n;
    while (!r->in_body) {
        size_t old = r->head_len, take = n - i;
        if (old + take > OL_HEAD_CAP)
            take = OL_HEAD_CAP - old;
        if (old + take > r->head_cap) {
            uint32_t cap = r->head_cap ? r->head_cap : 1024;
            while (cap < old + take)
                cap *= 2;
            r->head = xrealloc(r->head, cap);
            r->head_cap = cap;
        }
        memcpy(r->head + old, p + i, take);
        r->head_len = (uint32_t)(old + take);
        size_t from = old > 3 ? old - 3 : 0;
        const char *e = memmem(r->head + from, r->head_len - from, "\r\n\r\n", 4);
        if (!e) {
            if (r->head_len >= OL_HEAD_CAP)
                return R_ERR;
            return R_MORE;
        }
        size_t hl = (size_t)(e - r->head) + 4;
        i += hl - old;
        if (resp_parse_head(r, r->head, hl) < 0)
            return R_ERR;
        r->head_len = 0;
        if (r->status == 101)
            return R_ERR; /* nobody asked to switch protocols */
        if (r->status >= 100 && r->status < 200)
            continue; /* an interim response: the real one follows */
        r->in_body = 1;
        if (r->mode == BM_NONE) {
            *used = i;
            return R_DONE;
        }
    }
    if (r->mode == BM_EOF)
        return R_MORE;
    if (r->mode == BM_LENGTH) {
        size_t k = n - i < r->left ? n - i : (size_t)r->left;
        r->left -= k;
        if (r->left)
            return R_MORE;
        *used = i + k;
        return R_DONE;
    }
    while (i < n) {
        char c = p[i];
        switch (r->cstate) {
        case CH_SIZE: {
            int d = hexval(c);
            if (d >= 0) {
                if (r->left >> 44)
                    return R_ERR; /* over 16 TB: nonsense */
                r->left = r->left * 16 + (uint64_t)d;
                r->digits++;
                i++;
                break;
            }
            if (!r->digits)
                return R_ERR;
            if (c == ';' || c == ' ' || c == '\t')
                r->cstate = CH_EXT;
            else if (c == '\r')
                r->cstate = CH_SIZE_LF;
            else if (c == '\n')
                r->cstate = r->left ? CH_DATA : CH_TRAILER;
            else
                return R_ERR;
            i++;
            break;
        }
        case CH_EXT:
        case CH_SIZE_LF:
            if (c == '\n')
                r->cstate = r->left ? CH_DATA : CH_TRAILER;
            else if (r->cstate == CH_SIZE_LF)
                return R_ERR;
            i++;
            break;
        case CH_DATA: {
            size_t k = n - i < r->left ? n - i : (size_t)r->left;
            i += k;
            r->left -= k;
            if (!r->left)
                r->cstate = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
        case CH_DATA_LF:
            if (c == '\r' && r->cstate == CH_DATA_CR)
                r->cstate = CH_DATA_LF;
            else if (c == '\n')
                r->cstate = CH_SIZE, r->digits = 0, r->left = 0;
            else
                return R_ERR;
            i++;
            break;
        case CH_TRAILER:
            i++;
            if (c == '\n') {
                *used = i;
                return R_DONE;
            }
            r->cstate = c == '\r' ? CH_TRAILER_LF : CH_TRAILER_LINE;
            break;
        case CH_TRAILER_LINE:
            i++;
            if (c == '\n')
                r->cstate = CH_TRAILER;
            break;
        case CH_TRAILER_LF:
            i++;
            if (c != '\n')
                return R_ERR;
            *used = i;
            return R_DONE;
        }
    }
    return R_MORE;
}

/* ------------------------------------------------------------------------
 * Outcomes: the one place that counts and times requests.
 */
static void finish_soon(ol_run_t *r);

/* Records how request idx ended: err < 0 is a complete 2xx response. */
static void resolve(ol_run_t *r, uint64_t idx, int err, int status, uint64_t done, uint64_t sent)
{
    int measured = idx >= r->n_warm;
    ol_counts_t *c = measured ? &r->st : &r->warm;
    if (err < 0) {
        c->completed++;
        if (measured) {
            uint64_t due = due_at(r, idx);
            wr_hist_add(&r->lat, done > due ? done - due : 0);
            wr_hist_add(&r->service, done > sent ? done - sent : 0);
            if (done <= due_at(r, r->total))
                r->in_window++;
        }
    } else {
        c->err[err]++;
        if (err == E_STATUS && status >= 0 && status < OL_STATUS_MAX)
            c->status[status]++;
    }
    r->resolved++;
    if (r->phase == PH_DRAIN && r->resolved == r->total)
        finish_soon(r);
}

/* Fails the oldest request waiting for a connection, if any. */
static void fail_oldest(ol_run_t *r, int err)
{
    if (r->next_send < r->next_due) {
        uint64_t idx = r->next_send++;
        resolve(r, idx, err, 0, 0, 0);
    }
}

/* ------------------------------------------------------------------------
 * Connections.
 */
static void dispatch(ol_run_t *r);
static void start_run(ol_run_t *r);
static int conn_open(ol_run_t *r);

static void on_closed(uv_handle_t *h)
{
    ol_conn_t *c = h->data;
    ol_run_t *r = c->run;
    c->state = CS_FREE;
    r->alive--;
    /* Keep the pool at --connections while the schedule runs: a connection
     * the server ended after serving (keepalive_requests, Connection: close)
     * is replaced at once, as a client pool would. One that never served is
     * not, so a server refusing or dropping connections is not hammered. */
    if (r->phase == PH_RUN && c->served && r->alive < r->o->connections)
        conn_open(r);
    dispatch(r);
}

/* Closes a connection in any state; its slot is free once libuv is done with it. */
static void conn_close(ol_conn_t *c)
{
    if (c->state == CS_FREE || c->state == CS_CLOSING)
        return;
    if (c->state == CS_CONNECTING)
        c->run->connecting--;
    c->state = CS_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void conn_idle(ol_conn_t *c)
{
    ol_run_t *r = c->run;
    c->state = CS_IDLE;
    if (!c->in_ring) {
        r->ring[(r->ring_head + r->ring_len) % r->nslots] = (uint32_t)(c - r->conns);
        r->ring_len++;
        c->in_ring = 1;
    }
}

static ol_conn_t *conn_pop_idle(ol_run_t *r)
{
    while (r->ring_len) {
        ol_conn_t *c = &r->conns[r->ring[r->ring_head]];
        r->ring_head = (r->ring_head + 1) % r->nslots;
        r->ring_len--;
        c->in_ring = 0;
        if (c->state == CS_IDLE)
            return c;
    }
    return NULL;
}

/* Ends the request in flight on c and closes c. */
static void conn_fail(ol_conn_t *c, int err)
{
    if (c->state == CS_BUSY)
        resolve(c->run, c->req, err, c->resp.status, 0, 0);
    conn_close(c);
}

/* The response on c is complete at time t: count it, then reuse or close c. */
static void conn_done(ol_conn_t *c, uint64_t t, int keep)
{
    ol_run_t *r = c->run;
    int status = c->resp.status;
    c->served++;
    resolve(r, c->req, status >= 200 && status < 300 ? -1 : E_STATUS, status, t, c->sent);
    if (!keep) {
        conn_close(c);
        return;
    }
    conn_idle(c);
    dispatch(r);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* Every read is consumed before the next alloc, so one buffer serves all. */
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ol_conn_t *c = s->data;
    ol_run_t *r = c->run;
    uint64_t t = now_ns();
    if (nread == 0 || c->state == CS_CLOSING)
        return;
    if (nread < 0) {
        if (c->state == CS_BUSY && nread == UV_EOF && c->resp.in_body && c->resp.mode == BM_EOF) {
            conn_done(c, t, 0);
            return;
        }
        if (c->state == CS_IDLE)
            r->closed_by_server++;
        conn_fail(c, E_CLOSED);
        return;
    }
    if (c->state != CS_BUSY) {
        /* Bytes nobody asked for: the connection can no longer be trusted. */
        r->unsolicited++;
        conn_close(c);
        return;
    }
    size_t used;
    int rc = resp_feed(&c->resp, buf->base, (size_t)nread, &used);
    if (rc == R_MORE)
        return;
    if (rc == R_ERR) {
        conn_fail(c, E_PARSE);
        return;
    }
    int keep = !c->resp.close;
    if (used != (size_t)nread) {
        r->unsolicited++;
        keep = 0;
    } else if (c->resp.close)
        r->closed_by_server++;
    conn_done(c, t, keep);
}

static void on_written(uv_write_t *w, int status)
{
    ol_conn_t *c = w->data;
    /* A request that timed out closed its connection, which cancels the write. */
    if (status < 0 && status != UV_ECANCELED && c->state == CS_BUSY)
        conn_fail(c, E_CLOSED);
}

/* Writes request idx on the idle connection c. */
static void conn_send(ol_conn_t *c, uint64_t idx)
{
    ol_run_t *r = c->run;
    c->state = CS_BUSY;
    c->req = idx;
    resp_reset(&c->resp);
    c->sent = now_ns();
    (idx >= r->n_warm ? &r->st : &r->warm)->sent++;
    if (idx >= r->n_warm) {
        uint64_t due = due_at(r, idx);
        wr_hist_add(&r->lag, c->sent > due ? c->sent - due : 0);
    }
    uv_buf_t b = uv_buf_init(r->req, (unsigned)r->req_len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)r->req_len)
        return;
    if (n == UV_EAGAIN)
        n = 0;
    if (n >= 0) {
        /* The rest is written when the socket can take it; the request's bytes never change. */
        b = uv_buf_init(r->req + n, (unsigned)(r->req_len - (size_t)n));
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) == 0)
            return;
    }
    conn_fail(c, E_CLOSED);
}

static void on_connect(uv_connect_t *req, int status)
{
    ol_conn_t *c = req->data;
    ol_run_t *r = c->run;
    if (status == UV_ECANCELED || c->state != CS_CONNECTING)
        return;
    if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) < 0) {
        r->connect_failures++;
        conn_close(c);
        /* The oldest request waiting is the one that needed this connection most. */
        if (r->phase == PH_RUN || r->phase == PH_DRAIN)
            fail_oldest(r, E_CONNECT);
    } else {
        r->connecting--;
        conn_idle(c);
        dispatch(r);
    }
    if (r->phase == PH_CONNECT && !r->connecting)
        start_run(r);
}

/* Starts opening a connection. Returns 0, or -1 if none could be started. */
static int conn_open(ol_run_t *r)
{
    ol_conn_t *c = NULL;
    for (uint32_t k = 0; k < r->nslots; k++) {
        uint32_t i = (r->cursor + k) % r->nslots;
        if (r->conns[i].state == CS_FREE) {
            c = &r->conns[i];
            r->cursor = (i + 1) % r->nslots;
            break;
        }
    }
    if (!c)
        return -1;
    c->run = r;
    c->state = CS_CONNECTING;
    c->opened = now_ns();
    c->served = 0;
    uv_tcp_init(&r->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    r->alive++;
    r->connecting++;
    r->opened++;
    if (r->alive > r->peak_alive)
        r->peak_alive = r->alive;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&r->o->sa, on_connect) < 0) {
        r->connect_failures++;
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Sends every due request that can go now, oldest first, opening
 * connections (up to the maximum) when none is idle. */
static void dispatch(ol_run_t *r)
{
    if (r->phase != PH_RUN && r->phase != PH_DRAIN)
        return;
    while (r->next_send < r->next_due) {
        ol_conn_t *c = conn_pop_idle(r);
        if (c) {
            conn_send(c, r->next_send++);
            continue;
        }
        if (r->alive < r->o->max_connections && r->connecting < r->next_due - r->next_send) {
            if (conn_open(r) < 0)
                fail_oldest(r, E_CONNECT);
            continue;
        }
        break;
    }
}

/* ------------------------------------------------------------------------
 * The schedule.
 */
static void arm(ol_run_t *r, uint64_t t)
{
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(t / 1000000000u);
    its.it_value.tv_nsec = (long)(t % 1000000000u);
    if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
        its.it_value.tv_nsec = 1; /* zero would disarm */
    timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void on_tick(uv_poll_t *h, int status, int events)
{
    ol_run_t *r = h->data;
    uint64_t expirations;
    (void)status;
    (void)events;
    if (read(r->tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        return;
    if (r->phase != PH_RUN)
        return;
    uint64_t t = now_ns();
    for (uint64_t due; r->next_due < r->total && (due = due_at(r, r->next_due)) <= t; r->next_due++)
        if (r->next_due >= r->n_warm)
            wr_hist_add(&r->tlag, t - due);
    dispatch(r);
    if (r->phase != PH_RUN)
        return;
    if (r->next_due < r->total) {
        arm(r, due_at(r, r->next_due));
        return;
    }
    r->phase = PH_DRAIN;
    uv_poll_stop(&r->tick);
    if (r->resolved == r->total)
        finish_soon(r);
}

static void start_run(ol_run_t *r)
{
    r->phase = PH_RUN;
    r->start = now_ns();
    r->measure_start = due_at(r, r->n_warm);
    arm(r, r->start);
}

static void on_close_noop(uv_handle_t *h)
{
    (void)h;
}

static void finish(ol_run_t *r)
{
    if (r->phase == PH_DONE)
        return;
    r->phase = PH_DONE;
    r->done_at = now_ns();
    if (!uv_is_closing((uv_handle_t *)&r->tick))
        uv_close((uv_handle_t *)&r->tick, on_close_noop);
    uv_close((uv_handle_t *)&r->check, on_close_noop);
    uv_close((uv_handle_t *)&r->sigint, on_close_noop);
    uv_close((uv_handle_t *)&r->sigterm, on_close_noop);
    for (uint32_t i = 0; i < r->nslots; i++)
        conn_close(&r->conns[i]);
}

static void on_check(uv_timer_t *h)
{
    ol_run_t *r = h->data;
    uint64_t t = now_ns(), limit = (uint64_t)(r->o->timeout * 1e9);
    if (r->phase == PH_CONNECT) {
        if (t - r->begin >= limit) {
            /* Connections still opening will serve later requests, if they ever open. */
            start_run(r);
        }
        return;
    }
    if (r->phase == PH_DONE)
        return;
    while (r->next_send < r->next_due && t - due_at(r, r->next_send) >= limit)
        fail_oldest(r, E_TIMEOUT);
    for (uint32_t i = 0; i < r->nslots; i++) {
        ol_conn_t *c = &r->conns[i];
        if (c->state == CS_BUSY && t >= due_at(r, c->req) && t - due_at(r, c->req) >= limit)
            conn_fail(c, E_TIMEOUT);
        else if (c->state == CS_CONNECTING && t - c->opened >= limit) {
            r->connect_failures++;
            conn_close(c);
        }
    }
    if (r->phase == PH_DRAIN &&
        (r->resolved == r->total || t >= due_at(r, r->total ? r->total - 1 : 0) + limit + 1000000000u))
        finish(r);
}

/* Ends the run on the next loop iteration, out of the callback that found
 * the last request resolved. */
static void finish_soon(ol_run_t *r)
{
    if (r->phase != PH_DONE && !uv_is_closing((uv_handle_t *)&r->check))
        uv_timer_start(&r->check, on_check, 0, OL_CHECK_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
    ol_run_t *r = h->data;
    (void)signum;
    r->interrupted = 1;
    finish(r);
}

/* ------------------------------------------------------------------------
 * Report.
 */
static uint64_t errs_total(const ol_counts_t *c)
{
    uint64_t n = 0;
    for (int i = 0; i < E__N; i++)
        n += c->err[i];
    return n;
}

typedef struct {
    uint64_t scheduled, unfinished, warm_scheduled;
    double window_s, achieved, elapsed_s;
} ol_summary_t;

static void summarize(const ol_run_t *r, ol_summary_t *s)
{
    const ol_opts_t *o = r->o;
    memset(s, 0, sizeof(*s));
    s->scheduled = r->next_due > r->n_warm ? r->next_due - r->n_warm : 0;
    s->warm_scheduled = r->next_due < r->n_warm ? r->next_due : r->n_warm;
    s->unfinished = s->scheduled - r->st.completed - errs_total(&r->st);
    /* Achieved: measured requests completed while the measured schedule ran,
     * per second of it. A server that keeps up answers all but the last
     * latency's worth; one that fell behind, only what it could. */
    s->window_s = o->duration;
    if (r->interrupted && r->start && r->done_at > r->measure_start)
        s->window_s = fmin(o->duration, (double)(r->done_at - r->measure_start) / 1e9);
    else if (r->interrupted)
        s->window_s = 0;
    s->achieved = s->window_s > 0 ? (double)r->in_window / s->window_s : 0;
    s->elapsed_s = (double)(r->done_at - r->begin) / 1e9;
}

static void text_hist(FILE *f, const char *name, const ol_hist_t *h)
{
    fprintf(f, "  %-13s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, hist_ms(h, 50), hist_ms(h, 90), hist_ms(h, 99),
            hist_ms(h, 99.9), (double)h->max / 1e6, hist_mean_ms(h));
}

static void report_text(const ol_run_t *r)
{
    const ol_opts_t *o = r->o;
    const ol_counts_t *c = &r->st;
    ol_summary_t s;
    FILE *f = stdout;
    summarize(r, &s);
    fprintf(f, OL_NAME ": %s at %.1f req/s for %.1fs", o->url, o->rate, o->duration);
    if (o->warmup > 0)
        fprintf(f, " after %.1fs warmup", o->warmup);
    fprintf(f, ", %u connections (max %u), timeout %.1fs%s\n", o->connections, o->max_connections, o->timeout,
            r->interrupted ? " (interrupted)" : "");
    fprintf(f, "requests: scheduled %" PRIu64 ", sent %" PRIu64 ", completed %" PRIu64 " (2xx), errors %" PRIu64,
            s.scheduled, c->sent, c->completed, errs_total(c));
    for (int i = 0; i < E__N; i++)
        fprintf(f, "%s%s %" PRIu64, i ? ", " : " (", err_names[i], c->err[i]);
    fprintf(f, ")");
    for (int i = 0; i < OL_STATUS_MAX; i++)
        if (c->status[i])
            fprintf(f, ", status %d x%u", i, c->status[i]);
    if (s.unfinished)
        fprintf(f, ", unfinished %" PRIu64, s.unfinished);
    fprintf(f, "\n");
    if (s.warm_scheduled)
        fprintf(f, "warmup: scheduled %" PRIu64 ", completed %" PRIu64 ", errors %" PRIu64 " (not counted above)\n",
                s.warm_scheduled, r->warm.completed, errs_total(&r->warm));
    fprintf(f, "rate: target %.1f/s, achieved %.1f/s (2xx completed within the %.2fs schedule)\n", o->rate, s.achieved,
            s.window_s);
    fprintf(f, "latency, ms (2xx responses):     p50       p90       p99     p99.9       max      mean\n");
    text_hist(f, "latency", &r->lat);
    text_hist(f, "service time", &r->service);
    text_hist(f, "send lag", &r->lag);
    text_hist(f, "timer lag", &r->tlag);
    fprintf(f, "  latency = response complete - intended send time (the headline); service time = complete -\n"
               "  actual send (what closed-loop tools report); send lag = actual - intended send time;\n"
               "  timer lag = when the generator noticed a request was due - intended send time\n");
    fprintf(f,
            "connections: opened %" PRIu64 ", peak open %u, connect failures %" PRIu64 ", closed by server %" PRIu64
            ", unsolicited bytes %" PRIu64 "\n",
            r->opened, r->peak_alive, r->connect_failures, r->closed_by_server, r->unsolicited);
}

static void json_hist(FILE *f, const char *name, const ol_hist_t *h)
{
    fprintf(f,
            "\"%s\":{\"count\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,"
            "\"mean\":%.3f}",
            name, h->count, hist_ms(h, 50), hist_ms(h, 90), hist_ms(h, 99), hist_ms(h, 99.9), (double)h->max / 1e6,
            hist_mean_ms(h));
}

/* Writes s as a JSON string's contents (the URL may hold quotes or backslashes). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void report_json(const ol_run_t *r)
{
    const ol_opts_t *o = r->o;
    const ol_counts_t *c = &r->st;
    ol_summary_t s;
    FILE *f = stdout;
    int first = 1;
    summarize(r, &s);
    fprintf(f, "{\"params\":{\"url\":");
    json_str(f, o->url);
    fprintf(f,
            ",\"rate\":%.3f,\"duration\":%.3f,\"warmup\":%.3f,\"connections\":%u,\"max_connections\":%u,"
            "\"timeout\":%.3f,\"headers\":%d},",
            o->rate, o->duration, o->warmup, o->connections, o->max_connections, o->timeout, o->nheaders);
    fprintf(f,
            "\"requests\":{\"scheduled\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"completed\":%" PRIu64
            ",\"unfinished\":%" PRIu64 "},",
            s.scheduled, c->sent, c->completed, s.unfinished);
    fprintf(f, "\"errors\":{\"total\":%" PRIu64, errs_total(c));
    for (int i = 0; i < E__N; i++)
        fprintf(f, ",\"%s\":%" PRIu64, err_names[i], c->err[i]);
    fprintf(f, ",\"status_codes\":{");
    for (int i = 0; i < OL_STATUS_MAX; i++)
        if (c->status[i])
            fprintf(f, "%s\"%d\":%u", first ? "" : ",", i, c->status[i]), first = 0;
    fprintf(f, "}},");
    fprintf(f, "\"warmup\":{\"scheduled\":%" PRIu64 ",\"completed\":%" PRIu64 ",\"errors\":%" PRIu64 "},",
            s.warm_scheduled, r->warm.completed, errs_total(&r->warm));
    fprintf(f, "\"rate\":{\"target\":%.3f,\"achieved\":%.3f,\"window_s\":%.3f},", o->rate, s.achieved, s.window_s);
    fprintf(f, "\"latency_ms\":{");
    json_hist(f, "latency", &r->lat);
    fputc(',', f);
    json_hist(f, "service_time", &r->service);
    fputc(',', f);
    json_hist(f, "send_lag", &r->lag);
    fputc(',', f);
    json_hist(f, "timer_lag", &r->tlag);
    fprintf(f,
            "},\"connections\":{\"opened\":%" PRIu64 ",\"peak_open\":%u,\"connect_failures\":%" PRIu64
            ",\"closed_by_server\":%" PRIu64 ",\"unsolicited_bytes\":%" PRIu64 "},",
            r->opened, r->peak_alive, r->connect_failures, r->closed_by_server, r->unsolicited);
    fprintf(f, "\"elapsed_s\":%.3f,\"interrupted\":%s}\n", s.elapsed_s, r->interrupted ? "true" : "false");
}

/* ------------------------------------------------------------------------
 * Options.
 */
static void usage(FILE *f)
{
    fprintf(f, "usage: " OL_NAME " --url http://HOST:PORT/PATH --rate R [options]\n"
               "  --url URL              http:// URL to GET (IPv4 host or name; no https)\n"
               "  --rate R               requests per second, at fixed intended times i/R (required)\n"
               "  --duration S           measured seconds of schedule (default 10)\n"
               "  --warmup S             seconds of schedule before, sent but not counted (default 0)\n"
               "  --connections C        keep-alive connections opened up front (default 16)\n"
               "  --max-connections M    open more, up to M, when none is idle (default C: requests wait)\n"
               "  --header 'Name: value' extra request header; repeatable (a Host header replaces the URL's)\n"
               "  --timeout S            a request without a complete response S seconds after its\n"
               "                         intended send time is a timeout; also the connect and drain\n"
               "                         limit (default 5)\n"
               "  --json                 print the report as one JSON object\n");
}

static int parse_num(const char *name, const char *arg, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, OL_NAME ": --%s \"%s\": expected a number from %g to %g\n", name, arg, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* Splits http://HOST[:PORT][/PATH] and resolves HOST. Returns 0, or -1
 * after saying what is wrong. */
static int parse_url(const char *url, ol_opts_t *o)
{
    struct addrinfo hints, *res = NULL;
    const char *p, *h;
    size_t hl;
    if (strlen(url) >= sizeof(o->url)) {
        fprintf(stderr, OL_NAME ": --url: longer than %zu bytes\n", sizeof(o->url) - 1);
        return -1;
    }
    snprintf(o->url, sizeof(o->url), "%s", url);
    if (!strncasecmp(url, "https://", 8)) {
        fprintf(stderr, OL_NAME ": --url \"%s\": https is not supported, only http://\n", url);
        return -1;
    }
    if (strncasecmp(url, "http://", 7)) {
        fprintf(stderr, OL_NAME ": --url \"%s\": expected http://HOST[:PORT][/PATH]\n", url);
        return -1;
    }
    for (p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            fprintf(stderr, OL_NAME ": --url \"%s\": contains a space or control character\n", url);
            return -1;
        }
    h = url + 7;
    hl = strcspn(h, ":/?#");
    if (!hl || hl >= sizeof(o->host) || *h == '[') {
        fprintf(stderr, OL_NAME ": --url \"%s\": expected a host name or IPv4 address after http://\n", url);
        return -1;
    }
    memcpy(o->host, h, hl);
    o->host[hl] = '\0';
    p = h + hl;
    o->port = 80;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/' && *end != '?')) {
            fprintf(stderr, OL_NAME ": --url \"%s\": expected a port from 1 to 65535 after the host\n", url);
            return -1;
        }
        o->port = (int)port;
        p = end;
    }
    snprintf(o->hosthdr, sizeof(o->hosthdr), "%.*s", (int)(p - h), h);
    if (strchr(p, '#')) {
        fprintf(stderr, OL_NAME ": --url \"%s\": a fragment is not sent; leave it out\n", url);
        return -1;
    }
    snprintf(o->path, sizeof(o->path), "%s%s", *p == '/' ? "" : "/", p);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(o->host, NULL, &hints, &res);
    if (rc || !res) {
        fprintf(stderr, OL_NAME ": --url \"%s\": cannot resolve \"%s\" to an IPv4 address: %s\n", url, o->host,
                rc ? gai_strerror(rc) : "no address");
        if (res)
            freeaddrinfo(res);
        return -1;
    }
    memcpy(&o->sa, res->ai_addr, sizeof(o->sa));
    o->sa.sin_port = htons((uint16_t)o->port);
    freeaddrinfo(res);
    return 0;
}

/* A header must be "Name: value" with a token for a name and no line breaks. */
static int check_header(const char *hdr)
{
    const char *colon = strchr(hdr, ':');
    if (!colon || colon == hdr)
        return -1;
    for (const char *p = hdr; p < colon; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("\"(),/:;<=>?@[\\]{}", *p))
            return -1;
    if (strpbrk(colon + 1, "\r\n"))
        return -1;
    return 0;
}

static int header_named(const char *hdr, const char *name)
{
    size_t n = strlen(name);
    return !strncasecmp(hdr, name, n) && hdr[n] == ':';
}

/* Builds the one request every send writes. Returns 0, or -1 if too long. */
static int build_request(ol_run_t *r)
{
    const ol_opts_t *o = r->o;
    int have_host = 0, have_ua = 0;
    size_t n = 0, cap = sizeof(r->req);
    for (int i = 0; i < o->nheaders; i++) {
        have_host |= header_named(o->headers[i], "host");
        have_ua |= header_named(o->headers[i], "user-agent");
    }
#define OL_PUT(...)                                                                                                    \
    do {                                                                                                               \
        int k_ = snprintf(r->req + n, cap - n, __VA_ARGS__);                                                           \
        if (k_ < 0 || (size_t)k_ >= cap - n)                                                                           \
            return -1;                                                                                                 \
        n += (size_t)k_;                                                                                               \
    } while (0)
    OL_PUT("GET %s HTTP/1.1\r\n", o->path);
    if (!have_host)
        OL_PUT("Host: %s\r\n", o->hosthdr);
    if (!have_ua)
        OL_PUT("User-Agent: " OL_NAME "\r\n");
    for (int i = 0; i < o->nheaders; i++)
        OL_PUT("%s\r\n", o->headers[i]);
    OL_PUT("\r\n");
#undef OL_PUT
    r->req_len = n;
    return 0;
}

static int parse_args(int argc, char **argv, ol_opts_t *o)
{
    static const struct option longopts[] = {{"url", required_argument, NULL, 'u'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"duration", required_argument, NULL, 'd'},
                                             {"warmup", required_argument, NULL, 'w'},
                                             {"connections", required_argument, NULL, 'c'},
                                             {"max-connections", required_argument, NULL, 'm'},
                                             {"header", required_argument, NULL, 'H'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *url = NULL;
    double v;
    int opt, max_set = 0;

    o->rate = -1;
    o->duration = 10;
    o->timeout = 5;
    o->connections = 16;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'u':
            url = optarg;
            break;
        case 'r':
            if (parse_num("rate", optarg, 0.001, 1e7, &o->rate) < 0)
                return -1;
            break;
        case 'd':
            if (parse_num("duration", optarg, 0.001, 86400, &o->duration) < 0)
                return -1;
            break;
        case 'w':
            if (parse_num("warmup", optarg, 0, 3600, &o->warmup) < 0)
                return -1;
            break;
        case 'c':
            if (parse_num("connections", optarg, 1, OL_MAX_CONNS, &v) < 0)
                return -1;
            if (v != floor(v)) {
                fprintf(stderr, OL_NAME ": --connections \"%s\": expected a whole number\n", optarg);
                return -1;
            }
            o->connections = (uint32_t)v;
            break;
        case 'm':
            if (parse_num("max-connections", optarg, 1, OL_MAX_CONNS, &v) < 0)
                return -1;
            if (v != floor(v)) {
                fprintf(stderr, OL_NAME ": --max-connections \"%s\": expected a whole number\n", optarg);
                return -1;
            }
            o->max_connections = (uint32_t)v;
            max_set = 1;
            break;
        case 'H':
            if (check_header(optarg) < 0) {
                fprintf(stderr, OL_NAME ": --header \"%s\": expected 'Name: value' without line breaks\n", optarg);
                return -1;
            }
            if (o->nheaders == OL_MAX_HEADERS) {
                fprintf(stderr, OL_NAME ": --header \"%s\": more than %d headers\n", optarg, OL_MAX_HEADERS);
                return -1;
            }
            o->headers[o->nheaders++] = optarg;
            break;
        case 't':
            if (parse_num("timeout", optarg, 0.01, 600, &o->timeout) < 0)
                return -1;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case ':':
            fprintf(stderr, OL_NAME ": %s needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, OL_NAME ": unknown option \"%s\" (see --help)\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, OL_NAME ": unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }
    if (!url) {
        fprintf(stderr, OL_NAME ": --url is required (see --help)\n");
        return -1;
    }
    if (o->rate < 0) {
        fprintf(stderr, OL_NAME ": --rate is required (see --help)\n");
        return -1;
    }
    if (!max_set)
        o->max_connections = o->connections;
    if (o->max_connections < o->connections) {
        fprintf(stderr, OL_NAME ": --max-connections %u is less than --connections %u\n", o->max_connections,
                o->connections);
        return -1;
    }
    if (o->rate * (o->duration + o->warmup) > 1e12) {
        fprintf(stderr, OL_NAME ": --rate %g for %g s is more than 10^12 requests\n", o->rate, o->duration + o->warmup);
        return -1;
    }
    return parse_url(url, o);
}

int main(int argc, char **argv)
{
    static ol_opts_t o;
    struct rlimit rl;

    if (parse_args(argc, argv, &o) < 0)
        return 1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)o.max_connections + 32 > rl.rlim_cur) {
            fprintf(stderr, OL_NAME ": --max-connections %u needs %u open files, RLIMIT_NOFILE is %llu\n",
                    o.max_connections, o.max_connections + 32, (unsigned long long)rl.rlim_cur);
            return 1;
        }
    }

    ol_run_t *r = xcalloc(1, sizeof(*r));
    r->o = &o;
    if (build_request(r) < 0) {
        fprintf(stderr, OL_NAME ": --header: the request head is longer than %d bytes\n", OL_REQ_CAP);
        free(r);
        return 1;
    }
    r->step = 1e9 / o.rate;
    r->n_warm = (uint64_t)llround(o.warmup * o.rate);
    r->total = r->n_warm + (uint64_t)llround(o.duration * o.rate);
    if (r->total == r->n_warm)
        r->total++; /* at least one measured request */
    r->nslots = o.max_connections;
    r->conns = xcalloc(r->nslots, sizeof(*r->conns));
    r->ring = xcalloc(r->nslots, sizeof(*r->ring));
    for (uint32_t i = 0; i < r->nslots; i++)
        r->conns[i].run = r;

    signal(SIGPIPE, SIG_IGN);
    /* Wake-ups as close to the intended send times as the kernel allows. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r->tfd < 0) {
        fprintf(stderr, OL_NAME ": timerfd_create() failed: %s\n", strerror(errno));
        return 1;
    }
    uv_loop_init(&r->loop);
    uv_poll_init(&r->loop, &r->tick, r->tfd);
    r->tick.data = r;
    uv_poll_start(&r->tick, UV_READABLE, on_tick);
    uv_timer_init(&r->loop, &r->check);
    r->check.data = r;
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    r->sigint.data = r->sigterm.data = r;
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);

    /* Open the pool first, so that connecting is not part of the first
     * requests' latency; then start the schedule. */
    r->phase = PH_CONNECT;
    r->begin = now_ns();
    for (uint32_t i = 0; i < o.connections; i++)
        conn_open(r);
    uv_timer_start(&r->check, on_check, OL_CHECK_MS, OL_CHECK_MS);
    if (!r->connecting)
        start_run(r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&r->loop) != 0)
        fprintf(stderr, OL_NAME ": the loop still had handles at exit\n");
    close(r->tfd);

    if (o.json)
        report_json(r);
    else
        report_text(r);
    /* Worth a word when the generator's own delay is a real part of the tail. */
    if (r->tlag.count && hist_ms(&r->tlag, 99) > 1.0 && hist_ms(&r->tlag, 99) > 0.1 * hist_ms(&r->lat, 99))
        fprintf(stderr,
                OL_NAME ": note: the generator noticed 1%% of requests %.1f ms or more after their intended"
                        " send time: it (or the machine) did not keep up, and that delay is in the latencies\n",
                hist_ms(&r->tlag, 99));
    fflush(stdout);

    for (uint32_t i = 0; i < r->nslots; i++)
        free(r->conns[i].resp.head);
    free(r->conns);
    free(r->ring);
    free(r);
    return 0;
}
