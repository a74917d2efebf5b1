/*
 * redis_uv.c: runs a hiredis async context on the gateway's libuv loop.
 *
 * hiredis's own libuv adapter (0.14) asks the loop to poll for writability
 * whenever a command is queued and stops when the buffer is out: two
 * epoll_ctl per batch of commands, and the batch waits a loop turn for the
 * socket to be reported writable, which it nearly always is. It also
 * ignores a poll error, so a refused connect could hang (gateway/redis.c
 * has a watchdog for that).
 *
 * Here, once connected, queued commands are written by the loop itself, in
 * the same turn, with no system call to arm: in the check phase (right after
 * the I/O callbacks that queued them) or, for commands queued by timers and
 * other callbacks that run before the loop waits for I/O, in the prepare
 * phase (right before it waits), whichever comes first. Every command queued
 * in between goes out in one write. Only when
 * the kernel takes less than all of it does the adapter poll for
 * writability until the rest is out. Before the connection is up, hiredis
 * learns that the connect finished from writability, as usual. A poll error
 * is handed to hiredis (as a write event), which then reads the socket's
 * error and reports the connection as failed.
 *
 * Ownership: the adapter is made by wr_redis_uv_attach and freed by
 * hiredis's cleanup callback, once libuv has closed its handles.
 */
#include "redis_uv.h"

#include <stdlib.h>

typedef struct wr_redis_uv_s {
    redisAsyncContext *ac; /* NULL once hiredis let go */
    uv_poll_t poll;
    uv_prepare_t prepare;
    uv_check_t check;
    int events;      /* what poll is asked for */
    int want_write;  /* commands are queued */
    int in_flush;    /* inside the check callback's write */
    int closing;     /* handles still to close */
} wr_redis_uv_t;

static void on_poll(uv_poll_t *h, int status, int events)
{
    wr_redis_uv_t *p = h->data;
    if (p->ac == NULL)
        return;
    if (status < 0) {
        /* libuv stopped polling. Let hiredis find the socket's error: a refused
         * connect shows on the connect check, a reset on a read. */
        p->events = 0;
        redisAsyncHandleWrite(p->ac);
        if (p->ac != NULL && (p->ac->c.flags & REDIS_CONNECTED))
            redisAsyncHandleRead(p->ac);
        return;
    }
    if (events & UV_READABLE)
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void set_poll(wr_redis_uv_t *p, int events)
{
    if (events == p->events)
        return;
    p->events = events;
    if (events != 0)
        uv_poll_start(&p->poll, events, on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void flush(wr_redis_uv_t *p)
{
    uv_check_stop(&p->check);
    uv_prepare_stop(&p->prepare);
    if (p->ac == NULL || !p->want_write)
        return;
    p->in_flush = 1;
    redisAsyncHandleWrite(p->ac); /* calls del_write when all went out, add_write when not */
    p->in_flush = 0;
}

static void on_check(uv_check_t *h)
{
    flush(h->data);
}

static void on_prepare(uv_prepare_t *h)
{
    flush(h->data);
}

static void add_read(void *data)
{
    wr_redis_uv_t *p = data;
    set_poll(p, p->events | UV_READABLE);
}

static void del_read(void *data)
{
    wr_redis_uv_t *p = data;
    set_poll(p, p->events & ~UV_READABLE);
}

static void add_write(void *data)
{
    wr_redis_uv_t *p = data;
    p->want_write = 1;
    if (p->ac == NULL)
        return;
    if (!(p->ac->c.flags & REDIS_CONNECTED) || p->in_flush) {
        /* Connecting, or the kernel took less than all: wait until the socket is writable. */
        set_poll(p, p->events | UV_WRITABLE);
        return;
    }
    if (!(p->events & UV_WRITABLE)) {
        uv_check_start(&p->check, on_check);
        uv_prepare_start(&p->prepare, on_prepare);
    }
}

static void del_write(void *data)
{
    wr_redis_uv_t *p = data;
    p->want_write = 0;
    uv_check_stop(&p->check);
    uv_prepare_stop(&p->prepare);
    set_poll(p, p->events & ~UV_WRITABLE);
}

static void on_closed(uv_handle_t *h)
{
    wr_redis_uv_t *p = h->data;
    if (--p->closing == 0)
        free(p);
}

static void cleanup(void *data)
{
    wr_redis_uv_t *p = data;
    p->ac = NULL;
    p->closing = 3;
    uv_close((uv_handle_t *)&p->check, on_closed);
    uv_close((uv_handle_t *)&p->prepare, on_closed);
    uv_close((uv_handle_t *)&p->poll, on_closed);
}

int wr_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    wr_redis_uv_t *p;
    if (ac->ev.data != NULL || (p = calloc(1, sizeof(*p))) == NULL)
        return REDIS_ERR;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    uv_check_init(loop, &p->check);
    uv_prepare_init(loop, &p->prepare);
    p->poll.data = p->check.data = p->prepare.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return REDIS_OK;
}
