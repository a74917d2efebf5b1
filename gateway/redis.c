/*
 * redis.c: an asynchronous hiredis connection on the libuv loop, with
 * reconnection, script loading and a command timeout.
 *
 * hiredis 0.14 gives async connections no timeouts and no reconnection, so
 * this file adds both. Every command in flight is tracked in a FIFO (Redis
 * answers in order): a timer checks the oldest, and when it has waited longer
 * than command_timeout the connection is dropped, which fails every pending
 * command (hiredis calls their callbacks with NULL). A lost connection is
 * retried with a backoff from 50 ms to 2 s.
 *
 * Ownership: wr_redis_t owns its redisAsyncContext and the tracking records
 * of its commands; callers' data pointers are only passed back.
 *
 * Async connects resolve host names with a blocking call, so the config only
 * accepts numeric addresses.
 */
#include "redis.h"
#include "redis_uv.h"

#include <stdio.h>

#include "log.h"

typedef struct wr_cmd_s {
    struct wr_cmd_s *next;
    wr_redis_t *conn;
    wr_redis_cb cb;
    void *data;
    int64_t sent_ms;
    int subscribed; /* the subscription record, embedded in wr_redis_t */
    /* A script command keeps its arguments (after EVALSHA and the SHA) so
     * that a NOSCRIPT answer can be retried once with EVAL and the source. */
    const wr_script_t *script;
    int argc;
    const char **argv; /* in the same allocation as the record */
} wr_cmd_t;

struct wr_redis_s {
    uv_loop_t *loop;
    const wr_config_t *conf;
    const char *name;
    int load_scripts;
    wr_redis_state_cb on_state;
    void *data;

    redisAsyncContext *ac; /* NULL while disconnected */
    int connected;         /* the TCP connection is established (ac may still be handshaking) */
    int64_t last_reply_ms; /* when a reply last arrived: progress, even if the oldest command is old */
    int64_t connect_started_ms;
    int up;                /* connected, authenticated and scripts loaded */
    int handshake_left;    /* replies still expected before up */
    int closing;
    int open_handles; /* timers not yet closed; r is freed when none is left */
    unsigned failures;
    uv_timer_t retry;
    uv_timer_t watchdog;

    wr_cmd_t *head, *tail; /* commands awaiting a reply, oldest first */
    /* The subscription. hiredis keeps one callback per channel, all pointing
     * here, and calls each with NULL when the connection goes: so this record
     * is not freed per reply but lives as long as the connection object. */
    wr_cmd_t sub;
};

static void connect_now(wr_redis_t *r);

static wr_cmd_t *track_sized(wr_redis_t *r, wr_redis_cb cb, void *data, size_t size)
{
    wr_cmd_t *c = wr_calloc(1, size);
    c->conn = r;
    c->cb = cb;
    c->data = data;
    c->sent_ms = wr_mono_ms();
    if (r->tail != NULL)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    return c;
}

static wr_cmd_t *track(wr_redis_t *r, wr_redis_cb cb, void *data)
{
    return track_sized(r, cb, data, sizeof(wr_cmd_t));
}

static void untrack(wr_redis_t *r, wr_cmd_t *c)
{
    /* Replies come in order, so c is nearly always the head. */
    wr_cmd_t **p = &r->head, *prev = NULL;
    while (*p != NULL && *p != c) {
        prev = *p;
        p = &(*p)->next;
    }
    if (*p == NULL)
        return;
    *p = c->next;
    if (r->tail == c)
        r->tail = prev;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    wr_cmd_t *c = privdata;
    wr_redis_t *r = c->conn;

    if (c->subscribed) {
        c->cb(reply, c->data);
        return;
    }
    untrack(r, c);
    r->last_reply_ms = wr_mono_ms();
    if (reply != NULL && ((redisReply *)reply)->type == REDIS_REPLY_ERROR &&
        strncmp(((redisReply *)reply)->str, "NOSCRIPT", 8) == 0 && r->ac != NULL && c->script != NULL) {
        /* Someone flushed the script cache: load the scripts again for the
         * commands to come, and retry this one with its source. */
        wr_warn("redis %s: scripts missing (SCRIPT FLUSH?); reloading", r->name);
        for (size_t i = 0; i < wr_num_scripts; i++)
            redisAsyncCommandArgv(r->ac, NULL, NULL, 3, (const char *[]){"SCRIPT", "LOAD", wr_scripts[i]->source}, NULL);
        c->argv[0] = "EVAL";
        c->argv[1] = c->script->source;
        c->script = NULL; /* once */
        c->next = NULL;
        if (r->tail != NULL)
            r->tail->next = c;
        else
            r->head = c;
        r->tail = c;
        if (redisAsyncCommandArgv(r->ac, on_reply, c, c->argc, c->argv, NULL) == REDIS_OK)
            return;
        untrack(r, c);
    }
    c->cb(reply, c->data);
    free(c);
}

static void set_up(wr_redis_t *r, int up)
{
    if (r->up == up)
        return;
    r->up = up;
    if (r->on_state != NULL)
        r->on_state(r, up, r->data);
}

static void on_handshake_reply(redisReply *reply, void *data)
{
    wr_redis_t *r = data;
    if (reply == NULL)
        return; /* the disconnect callback handles it */
    if (reply->type == REDIS_REPLY_ERROR) {
        wr_error("redis %s: set-up command refused: \"%s\"", r->name, reply->str);
        redisAsyncDisconnect(r->ac);
        return;
    }
    if (--r->handshake_left == 0) {
        r->failures = 0;
        wr_info("redis %s: connected", r->name);
        set_up(r, 1);
    }
}

static void send_handshake(wr_redis_t *r)
{
    const wr_config_t *c = r->conf;
    char db[16];

    r->handshake_left = 1; /* the closing PING */
    if (c->redis.password != NULL) {
        r->handshake_left++;
        redisAsyncCommandArgv(r->ac, on_reply, track(r, on_handshake_reply, r), 2,
                              (const char *[]){"AUTH", c->redis.password}, NULL);
    }
    if (c->redis.db != 0) {
        snprintf(db, sizeof(db), "%d", c->redis.db);
        r->handshake_left++;
        redisAsyncCommandArgv(r->ac, on_reply, track(r, on_handshake_reply, r), 2, (const char *[]){"SELECT", db},
                              NULL);
    }
    if (r->load_scripts) {
        for (size_t i = 0; i < wr_num_scripts; i++) {
            r->handshake_left++;
            redisAsyncCommandArgv(r->ac, on_reply, track(r, on_handshake_reply, r), 3,
                                  (const char *[]){"SCRIPT", "LOAD", wr_scripts[i]->source}, NULL);
        }
    }
    redisAsyncCommandArgv(r->ac, on_reply, track(r, on_handshake_reply, r), 1, (const char *[]){"PING"}, NULL);
}

static void on_retry(uv_timer_t *t)
{
    connect_now(t->data);
}

static void schedule_retry(wr_redis_t *r)
{
    uint64_t delay = 50u << (r->failures < 6 ? r->failures : 6);
    if (delay > 2000)
        delay = 2000;
    r->failures++;
    uv_timer_start(&r->retry, on_retry, delay, 0);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    wr_redis_t *r = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        if (r->failures == 0)
            wr_error("redis %s: connect failed: %s", r->name, ac->errstr);
        r->ac = NULL;
        if (!r->closing)
            schedule_retry(r);
        return;
    }
    r->connected = 1;
    send_handshake(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    wr_redis_t *r = ac->data;
    r->ac = NULL;
    r->connected = 0;
    if (!r->closing)
        wr_error("redis %s: connection lost%s%s", r->name, status != REDIS_OK ? ": " : "",
                 status != REDIS_OK ? ac->errstr : "");
    set_up(r, 0);
    if (!r->closing)
        schedule_retry(r);
}

static void connect_now(wr_redis_t *r)
{
    const wr_config_t *c = r->conf;

    if (r->closing || r->ac != NULL)
        return;
    r->ac = c->redis.unix_socket != NULL ? redisAsyncConnectUnix(c->redis.unix_socket)
                                         : redisAsyncConnect(c->redis.host, c->redis.port);
    if (r->ac == NULL || r->ac->err) {
        if (r->failures == 0)
            wr_error("redis %s: connect failed: %s", r->name, r->ac != NULL ? r->ac->errstr : "out of memory");
        if (r->ac != NULL)
            redisAsyncFree(r->ac);
        r->ac = NULL;
        schedule_retry(r);
        return;
    }
    r->ac->data = r;
    r->connected = 0;
    r->connect_started_ms = wr_mono_ms();
    if (wr_redis_uv_attach(r->ac, r->loop) != REDIS_OK) {
        redisAsyncFree(r->ac);
        r->ac = NULL;
        schedule_retry(r);
        return;
    }
    redisAsyncSetConnectCallback(r->ac, on_connect);
    redisAsyncSetDisconnectCallback(r->ac, on_disconnect);
}

static void on_watchdog(uv_timer_t *t)
{
    wr_redis_t *r = t->data;
    int64_t now = wr_mono_ms();
    if (r->ac == NULL)
        return;
    if (!r->connected && now - r->connect_started_ms > r->conf->redis.connect_timeout_ms) {
        /* hiredis 0.14's libuv adapter ignores a poll error, so a refused
         * connect can hang forever: give up on it and try again. */
        redisAsyncContext *ac = r->ac;
        if (r->failures == 0)
            wr_error("redis %s: connect timed out after %lld ms", r->name, (long long)r->conf->redis.connect_timeout_ms);
        r->ac = NULL;
        redisAsyncFree(ac);
        schedule_retry(r);
        return;
    }
    if (r->head == NULL)
        return;
    /* A busy gateway may read replies late; only a connection on which no
     * reply at all has come for the timeout, while a command waits, is dead. */
    if (now - r->head->sent_ms > r->conf->redis.command_timeout_ms &&
        now - r->last_reply_ms > r->conf->redis.command_timeout_ms) {
        redisAsyncContext *ac = r->ac;
        wr_error("redis %s: no reply in %lld ms; reconnecting", r->name, (long long)r->conf->redis.command_timeout_ms);
        /* redisAsyncDisconnect would wait for the replies that are not
         * coming: free the context instead, which fails every pending
         * command now. */
        redisAsyncFree(ac);
        if (r->ac == ac) {
            /* hiredis did not call on_disconnect (it only does for
             * connections it saw complete); do its work here. */
            r->ac = NULL;
            set_up(r, 0);
            schedule_retry(r);
        }
    }
}

wr_redis_t *wr_redis_new(uv_loop_t *loop, const wr_config_t *conf, const char *name, int load_scripts,
                         wr_redis_state_cb on_state, void *data)
{
    wr_redis_t *r = wr_calloc(1, sizeof(*r));
    r->loop = loop;
    r->conf = conf;
    r->name = name;
    r->load_scripts = load_scripts;
    r->on_state = on_state;
    r->data = data;
    uv_timer_init(loop, &r->retry);
    r->retry.data = r;
    uv_timer_init(loop, &r->watchdog);
    r->watchdog.data = r;
    uv_timer_start(&r->watchdog, on_watchdog, 100, 100);
    connect_now(r);
    return r;
}

static void free_after_close(uv_handle_t *h)
{
    wr_redis_t *r = h->data;
    /* libuv runs close callbacks in no promised order: free after the last. */
    if (--r->open_handles == 0)
        free(r);
}

void wr_redis_free(wr_redis_t *r)
{
    r->closing = 1;
    if (r->ac != NULL) {
        /* Fails every pending command (callbacks get NULL) and calls on_disconnect. */
        redisAsyncFree(r->ac);
        r->ac = NULL;
    }
    r->open_handles = 2;
    uv_close((uv_handle_t *)&r->retry, free_after_close);
    uv_close((uv_handle_t *)&r->watchdog, free_after_close);
}

int wr_redis_up(const wr_redis_t *r)
{
    return r->up;
}

/*
 * Queues argv as one RESP command. hiredis's own formatting (sdscatfmt and a
 * growing sds) was a few per cent of a join's gateway CPU; this writes the
 * same bytes with plain copies, on the stack for ordinary commands.
 */
static int send_argv(wr_redis_t *r, wr_cmd_t *c, int argc, const char **argv)
{
    char stack[1024], *buf = stack, *p;
    size_t need = 16, lens[64];
    int rc;
    if (argc > 64)
        return redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, NULL);
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
        need += lens[i] + 26;
    }
    if (need > sizeof(stack))
        buf = wr_malloc(need);
    p = buf;
    *p++ = '*';
    p += wr_fmt_i64(p, argc);
    *p++ = '\r';
    *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        *p++ = '$';
        p += wr_fmt_i64(p, (int64_t)lens[i]);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], lens[i]);
        p += lens[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    rc = redisAsyncFormattedCommand(r->ac, on_reply, c, buf, (size_t)(p - buf));
    if (buf != stack)
        free(buf);
    return rc;
}

int wr_redis_script(wr_redis_t *r, const wr_script_t *s, const char *const *keys, int nargs, const char *const *args,
                    wr_redis_cb cb, void *data)
{
    int argc = 3 + s->num_keys + nargs;
    size_t strings = 16, off;
    wr_cmd_t *c;
    char *p;

    if (!r->up || r->ac == NULL)
        return WR_ERROR;
    for (int i = 0; i < s->num_keys; i++)
        strings += strlen(keys[i]) + 1;
    for (int i = 0; i < nargs; i++)
        strings += strlen(args[i]) + 1;
    /* One allocation: the record, the argument vector and copies of the strings. */
    off = sizeof(wr_cmd_t) + sizeof(char *) * (size_t)argc;
    c = track_sized(r, cb, data, off + strings);
    c->script = s;
    c->argc = argc;
    c->argv = (const char **)((char *)c + sizeof(wr_cmd_t));
    p = (char *)c + off;
    c->argv[0] = "EVALSHA";
    c->argv[1] = s->sha;
    c->argv[2] = p;
    p += wr_fmt_i64(p, s->num_keys);
    *p++ = '\0';
    for (int i = 0; i < s->num_keys + nargs; i++) {
        const char *src = i < s->num_keys ? keys[i] : args[i - s->num_keys];
        size_t n = strlen(src) + 1;
        memcpy(p, src, n);
        c->argv[3 + i] = p;
        p += n;
    }
    if (send_argv(r, c, argc, c->argv) != REDIS_OK) {
        /* Only fails when the context is going away. */
        untrack(r, c);
        free(c);
        return WR_ERROR;
    }
    return WR_OK;
}

int wr_redis_ping(wr_redis_t *r, wr_redis_cb cb, void *data)
{
    static const char *argv[] = {"PING"};
    wr_cmd_t *c;
    if (!r->up || r->ac == NULL)
        return WR_ERROR;
    c = track_sized(r, cb, data, sizeof(wr_cmd_t));
    if (redisAsyncCommandArgv(r->ac, on_reply, c, 1, argv, NULL) != REDIS_OK) {
        untrack(r, c);
        free(c);
        return WR_ERROR;
    }
    return WR_OK;
}

int wr_redis_subscribe(wr_redis_t *r, int nchannels, const char *const *channels, wr_redis_cb cb, void *data)
{
    const char *argv[1 + 64];
    if (r->ac == NULL || !r->up || nchannels > 64)
        return WR_ERROR;
    argv[0] = "SUBSCRIBE";
    for (int i = 0; i < nchannels; i++)
        argv[1 + i] = channels[i];
    r->sub.conn = r;
    r->sub.cb = cb;
    r->sub.data = data;
    r->sub.subscribed = 1;
    if (redisAsyncCommandArgv(r->ac, on_reply, &r->sub, 1 + nchannels, argv, NULL) != REDIS_OK)
        return WR_ERROR;
    return WR_OK;
}
