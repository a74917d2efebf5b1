/*
 * admit.c: one admission tick per room, on a synchronous hiredis connection.
 *
 * All the logic that decides who is admitted lives in the admit script (see
 * lib/store.c); this file only feeds it each room's settings, sends the
 * scripts pipelined, reads the replies and keeps the connection alive. The
 * worker can be restarted at any moment or run twice side by side: the
 * script is atomic and its rate limit is computed from Redis's clock.
 */
#include "admit.h"

#include <inttypes.h>
#include <stdio.h>
#include <sys/time.h>

#include "log.h"

void wr_admit_init(wr_admit_t *a, const wr_config_t *conf)
{
    memset(a, 0, sizeof(*a));
    a->conf = conf;
    a->num_rooms = conf->num_rooms;
    a->rooms = wr_calloc(a->num_rooms, sizeof(*a->rooms));
    for (size_t i = 0; i < a->num_rooms; i++) {
        a->rooms[i].conf = &conf->rooms[i];
        wr_store_room_keys(conf->rooms[i].name, &a->rooms[i].keys);
    }
}

void wr_admit_dispose(wr_admit_t *a)
{
    if (a->redis != NULL)
        redisFree(a->redis);
    free(a->rooms);
    memset(a, 0, sizeof(*a));
}

static void drop(wr_admit_t *a, const char *what)
{
    wr_error("redis: %s failed: %s", what, a->redis != NULL && a->redis->err ? a->redis->errstr : "bad reply");
    if (a->redis != NULL)
        redisFree(a->redis);
    a->redis = NULL;
}

/* Sends one command and expects a reply that is not an error. */
static int command_ok(wr_admit_t *a, const char *what, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(a->redis, argc, argv, NULL);
    int ret = WR_OK;
    if (r == NULL) {
        drop(a, what);
        return WR_ERROR;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        wr_error("redis: %s refused: \"%s\"", what, r->str);
        ret = WR_ERROR;
    }
    freeReplyObject(r);
    if (ret != WR_OK)
        drop(a, what);
    return ret;
}

int wr_admit_connect(wr_admit_t *a)
{
    const wr_config_t *c = a->conf;
    struct timeval ct = {c->redis.connect_timeout_ms / 1000, (c->redis.connect_timeout_ms % 1000) * 1000};
    struct timeval rt = {c->redis.command_timeout_ms / 1000, (c->redis.command_timeout_ms % 1000) * 1000};
    char db[16];

    if (a->redis != NULL)
        return WR_OK;
    if (c->redis.unix_socket != NULL)
        a->redis = redisConnectUnixWithTimeout(c->redis.unix_socket, ct);
    else
        a->redis = redisConnectWithTimeout(c->redis.host, c->redis.port, ct);
    if (a->redis == NULL || a->redis->err) {
        drop(a, "connect");
        return WR_ERROR;
    }
    redisSetTimeout(a->redis, rt);
    if (c->redis.password != NULL && command_ok(a, "AUTH", 2, (const char *[]){"AUTH", c->redis.password}) != WR_OK)
        return WR_ERROR;
    snprintf(db, sizeof(db), "%d", c->redis.db);
    if (c->redis.db != 0 && command_ok(a, "SELECT", 2, (const char *[]){"SELECT", db}) != WR_OK)
        return WR_ERROR;
    if (command_ok(a, "SCRIPT LOAD", 3, (const char *[]){"SCRIPT", "LOAD", wr_script_admit.source}) != WR_OK)
        return WR_ERROR;
    a->connected_ms = wr_mono_ms();
    wr_info("redis: connected to %s:%d", c->redis.unix_socket ? c->redis.unix_socket : c->redis.host,
            c->redis.unix_socket ? 0 : c->redis.port);
    return WR_OK;
}

static void append_admit(wr_admit_t *a, wr_admit_room_t *r)
{
    char limit[24], rate[24], session[24], tombstone[24], max_drop[24];
    snprintf(limit, sizeof(limit), "%" PRId64, r->conf->total_active_users);
    snprintf(rate, sizeof(rate), "%" PRId64, r->conf->new_users_per_minute);
    snprintf(session, sizeof(session), "%" PRId64, r->conf->session_duration_ms);
    snprintf(tombstone, sizeof(tombstone), "%" PRId64, a->conf->tokens.queue_token_ttl_ms);
    /* Nobody is dropped for one grace after (re)connecting: while Redis or
     * this worker was away, deadlines passed that the gateways could not
     * push forward; they refresh everyone they hold as soon as they are
     * back, and a user who really left is dropped one grace later. */
    snprintf(max_drop, sizeof(max_drop), "%d",
             wr_mono_ms() - a->connected_ms < r->conf->abandon_grace_ms ? 0 : WR_ADMIT_MAX_DROP);
    const char *argv[] = {"EVALSHA",         wr_script_admit.sha, "7",           r->keys.queue,
                          r->keys.active,    r->keys.serving,     r->keys.revoked, r->keys.credit,
                          r->keys.events,    r->keys.deadline,    limit,         rate,
                          session,           tombstone,           max_drop};
    redisAppendCommandArgv(a->redis, WR_ARRAY_SIZE(argv), argv, NULL);
}

/* Reads one admit reply into r. Returns WR_OK, WR_AGAIN (NOSCRIPT) or WR_ERROR. */
static int read_admit(wr_admit_t *a, wr_admit_room_t *r)
{
    redisReply *reply = NULL;
    int ret = WR_ERROR;

    if (redisGetReply(a->redis, (void **)&reply) != REDIS_OK || reply == NULL) {
        drop(a, "admit");
        return WR_ERROR;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0)
            ret = WR_AGAIN;
        else
            wr_error("room \"%s\": admit script failed: \"%s\"", r->conf->name, reply->str);
        goto exit;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
        wr_error("room \"%s\": admit script gave an unexpected reply", r->conf->name);
        goto exit;
    }
    r->admitted = reply->element[0]->integer;
    r->expired = reply->element[1]->integer;
    r->active = reply->element[2]->integer;
    r->serving = reply->element[3]->integer;
    r->dropped = reply->element[4]->integer;
    r->total_admitted += (uint64_t)r->admitted;
    if (r->admitted != 0 || r->expired != 0 || r->dropped != 0)
        wr_debug("room \"%s\": admitted %" PRId64 ", expired %" PRId64 ", dropped %" PRId64 ", active %" PRId64
                 ", serving %" PRId64,
                 r->conf->name, r->admitted, r->expired, r->dropped, r->active, r->serving);
    ret = WR_OK;
exit:
    freeReplyObject(reply);
    return ret;
}

int wr_admit_tick(wr_admit_t *a)
{
    int again = 0, failed = 0;

    if (wr_admit_connect(a) != WR_OK)
        return WR_ERROR;
    for (size_t i = 0; i < a->num_rooms; i++)
        append_admit(a, &a->rooms[i]);
    for (size_t i = 0; i < a->num_rooms; i++) {
        if (a->redis == NULL)
            return WR_ERROR;
        switch (read_admit(a, &a->rooms[i])) {
        case WR_OK:
            break;
        case WR_AGAIN:
            again = 1;
            break;
        default:
            failed = 1;
            break;
        }
    }
    if (a->redis == NULL)
        return WR_ERROR;
    if (again) {
        /* Someone flushed the script cache: load it again and let the next
         * tick do this one's work (the rate credit carries over). */
        wr_warn("redis: admit script missing (SCRIPT FLUSH?); reloading");
        if (command_ok(a, "SCRIPT LOAD", 3, (const char *[]){"SCRIPT", "LOAD", wr_script_admit.source}) != WR_OK)
            return WR_ERROR;
    }
    return failed ? WR_ERROR : WR_OK;
}
