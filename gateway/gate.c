/*
 * gate.c: the handler in front of each room's protected path.
 *
 * It sits first on the room's path, before h2o's reverse proxy. For every
 * request it either answers itself (queued, 401, 503) or returns -1 to let
 * the proxy behind it forward the request to the room's backend. Only a user
 * the view (or Redis) knows to be ACTIVE is let through, and the backend is
 * told who the user is in user_header (any copy sent by the client is
 * removed first, so the backend can trust it).
 *
 *   no token                       -> join (Redis: join script), queued answer
 *   invalid token                  -> 401, never proxied
 *   valid, ACTIVE                  -> proxied
 *   valid queue token, WAITING     -> queued answer (same token, same place)
 *   valid queue token, gone        -> join again at the back, queued answer
 *   valid admission token, gone    -> 401 (the session ended or was revoked)
 *
 * In steady state the decision comes from the local view (view.c) with no
 * Redis round trip; only joins need Redis. While the view is not live the
 * handler asks Redis, and if Redis cannot be asked it answers 503 rather
 * than let anyone through.
 */
#include <inttypes.h>
#include <stdio.h>

#include "gateway.h"
#include "log.h"
#include "position.h"
#include "presence.h"
#include "respond.h"
#include "verify_cache.h"
#include "view.h"

typedef struct wr_gate_s {
    h2o_handler_t super;
    wr_gateway_t *gw;
    wr_gw_room_t *room;
} wr_gate_t;

typedef struct wr_gate_op_s {
    wr_pending_t pending; /* first: see respond.h */
    wr_gate_t *self;
    wr_claims_t claims;
    int from_cookie;
} wr_gate_op_t;

static const char room_header[] = "waitroom-room";

/* Tells the backend who the user is; headers of the same names from the client are dropped. */
static void set_identity(wr_gate_t *self, h2o_req_t *req, const char *uid)
{
    wr_gateway_t *gw = self->gw;
    ssize_t i;
    while ((i = h2o_find_header_by_str(&req->headers, gw->user_header.base, gw->user_header.len, -1)) >= 0)
        h2o_delete_header(&req->headers, i);
    while ((i = h2o_find_header_by_str(&req->headers, H2O_STRLIT(room_header), -1)) >= 0)
        h2o_delete_header(&req->headers, i);
    h2o_add_header_by_str(&req->pool, &req->headers, gw->user_header.base, gw->user_header.len, 0, NULL,
                          h2o_strdup(&req->pool, uid, WR_UID_LEN).base, WR_UID_LEN);
    h2o_add_header_by_str(&req->pool, &req->headers, H2O_STRLIT(room_header), 0, NULL, self->room->conf->name,
                          strlen(self->room->conf->name));
}

static void on_joined(redisReply *reply, void *data)
{
    wr_gate_op_t *op = data;
    wr_gate_t *self = op->self;
    h2o_req_t *req = op->pending.req;
    char *token = NULL;
    int64_t now = wr_now_ms();

    if (!wr_pending_alive(&op->pending))
        goto exit;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        wr_respond_unavailable(req);
        goto exit;
    }
    op->claims.q = reply->element[0]->integer;
    wr_view_note_serving(self->gw->view, self->room, reply->element[1]->integer);
    op->claims.iat = op->claims.nbf = now / 1000;
    op->claims.exp = (now + self->gw->conf->tokens.queue_token_ttl_ms) / 1000;
    if (wr_token_sign(self->gw->conf, &op->claims, &token) != WR_OK) {
        wr_error("room \"%s\": cannot sign a queue token", self->room->conf->name);
        wr_respond_error(req, 500, "internal", NULL);
        goto exit;
    }
    wr_respond_queued(self->gw, req, self->room, token,
                      wr_position(op->claims.q, reply->element[1]->integer) ?: 1);
exit:
    free(token);
    wr_pending_free(&op->pending);
}

/* Puts a new user in line. Answers the request whatever happens. */
static void join(wr_gate_t *self, h2o_req_t *req)
{
    wr_gate_op_t *op = wr_pending_new(req, sizeof(*op));
    const char *keys[] = {self->room->keys.queue, self->room->keys.seq, self->room->keys.serving,
                          self->room->keys.deadline};
    const char *args[2];
    char grace[24];

    op->self = self;
    op->claims.type = WR_TOKEN_QUEUE;
    {
        size_t n = strnlen(self->room->conf->name, sizeof(op->claims.aud) - 1); /* room names are <= WR_NAME_MAX */
        memcpy(op->claims.aud, self->room->conf->name, n);
        op->claims.aud[n] = '\0';
    }
    if (wr_new_uid(op->claims.sub) != WR_OK) {
        wr_respond_error(req, 500, "internal", NULL);
        wr_pending_free(&op->pending);
        return;
    }
    grace[wr_fmt_i64(grace, self->room->conf->abandon_grace_ms)] = '\0';
    args[0] = op->claims.sub;
    args[1] = grace;
    if (wr_redis_script(self->gw->redis, &wr_script_join, keys, 2, args, on_joined, op) != WR_OK) {
        wr_respond_unavailable(req);
        wr_pending_free(&op->pending);
    }
}

/*
 * Acts on the user's state. Returns -1 when the request is to be proxied
 * (the caller passes it on), 0 when it was answered here.
 */
static int act(wr_gate_t *self, h2o_req_t *req, const wr_claims_t *claims, h2o_iovec_t token, int from_cookie,
               const wr_user_state_t *st)
{
    switch (st->state) {
    case WR_STATE_ACTIVE:
        set_identity(self, req, claims->sub);
        return -1;
    case WR_STATE_WAITING:
        wr_presence_touch(self->gw->presence, self->room, claims->sub);
        wr_respond_queued(self->gw, req, self->room, h2o_strdup(&req->pool, token.base, token.len).base, st->position);
        return 0;
    default:
        if (claims->type == WR_TOKEN_ADMISSION) {
            wr_respond_invalid(self->gw, req, self->room, "session_ended", from_cookie);
        } else {
            /* The place this token held was used (the session ended) or given up: back of the line. */
            join(self, req);
        }
        return 0;
    }
}

typedef struct wr_gate_ask_s {
    wr_pending_t pending;
    wr_gate_t *self;
    wr_claims_t claims;
    h2o_iovec_t token; /* points into req->pool: valid while the request is */
    int from_cookie;
} wr_gate_ask_t;

static void on_state(int status, const wr_user_state_t *st, void *data)
{
    wr_gate_ask_t *ask = data;
    h2o_req_t *req = ask->pending.req;

    if (!wr_pending_alive(&ask->pending))
        goto exit;
    if (status != WR_OK) {
        wr_respond_unavailable(req);
        goto exit;
    }
    wr_pending_free(&ask->pending); /* detach before the request may be handed on */
    if (act(ask->self, req, &ask->claims, ask->token, ask->from_cookie, st) != 0)
        h2o_delegate_request(req, &ask->self->super);
    return;
exit:
    wr_pending_free(&ask->pending);
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    wr_gate_t *self = (wr_gate_t *)_self;
    wr_gateway_t *gw = self->gw;
    h2o_iovec_t token;
    int from_cookie;
    wr_claims_t claims;
    wr_token_result_t res;
    wr_user_state_t st;
    int64_t now = wr_now_ms();

    if (wr_find_token(gw, req, self->room, 0, &token, &from_cookie, NULL) != WR_OK) {
        join(self, req);
        return 0;
    }
    res = wr_verify_cached(gw->verified, token.base, token.len, now, self->room->conf->session_duration_ms, &claims);
    if (res == WR_TOKEN_VALID && strcmp(claims.aud, self->room->conf->name) != 0)
        res = WR_TOKEN_BAD_AUDIENCE;
    if (res != WR_TOKEN_VALID) {
        wr_respond_invalid(gw, req, self->room, wr_token_reason(res), from_cookie);
        return 0;
    }
    if (wr_view_lookup(gw->view, self->room, &claims, now, &st) == WR_OK)
        return act(self, req, &claims, token, from_cookie, &st);

    /* The view is not live: ask Redis. */
    wr_gate_ask_t *ask = wr_pending_new(req, sizeof(*ask));
    ask->self = self;
    ask->claims = claims;
    ask->token = token;
    ask->from_cookie = from_cookie;
    if (wr_view_ask(gw->view, self->room, &claims, on_state, ask) != WR_OK) {
        wr_pending_free(&ask->pending);
        wr_respond_unavailable(req);
    }
    return 0;
}

void wr_gate_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw, wr_gw_room_t *room)
{
    wr_gate_t *self = (wr_gate_t *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->gw = gw;
    self->room = room;
}
