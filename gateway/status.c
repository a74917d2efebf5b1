/*
 * status.c: GET status_path and POST leave_path, the two endpoints a waiting
 * client calls with its token.
 *
 * Status answers WAITING (position, estimatedWait), ACTIVE (expiresIn,
 * bookingUrl and a freshly signed admission token, also set as the cookie)
 * or EXPIRED. It comes from the local view when that is live, else from
 * Redis (the status script).
 *
 * Leave ends the user's place in line or active session at once (the leave
 * script frees the slot and announces the early end to every gateway). The
 * answer waits for one more round trip to Redis (a PING), so that every
 * gateway has the announcement before the user can ask it anything else.
 *
 * The token comes from the token header, ?token=, or the room's cookie; the
 * room is the token's audience.
 */
#include <inttypes.h>
#include <stdio.h>

#include "gateway.h"
#include "log.h"
#include "position.h"
#include "presence.h"
#include "respond.h"
#include "view.h"

typedef struct wr_endpoint_s {
    h2o_handler_t super;
    wr_gateway_t *gw;
} wr_endpoint_t;

typedef struct wr_status_op_s {
    wr_pending_t pending;
    wr_gateway_t *gw;
    wr_gw_room_t *room;
    wr_claims_t claims;
} wr_status_op_t;

static void answer_status(wr_gateway_t *gw, h2o_req_t *req, wr_gw_room_t *room, const wr_claims_t *claims,
                          const wr_user_state_t *st)
{
    char body[WR_TOKEN_MAX + 512];
    int n;
    int64_t now = wr_now_ms();

    switch (st->state) {
    case WR_STATE_WAITING:
        /* A poll is a sign of life: the user keeps their place. */
        wr_presence_touch(gw->presence, room, claims->sub);
        n = snprintf(body, sizeof(body), "{\"status\":\"WAITING\",\"position\":%" PRId64 ",\"estimatedWait\":%" PRId64 "}",
                     st->position, wr_estimated_wait(st->position, room->conf));
        break;
    case WR_STATE_ACTIVE: {
        wr_claims_t adm = *claims;
        char *token = NULL;
        int64_t left = (st->ends_ms - now + 999) / 1000;
        adm.type = WR_TOKEN_ADMISSION;
        adm.q = 0;
        adm.iat = adm.nbf = now / 1000;
        /* Rounded down: the token never outlives the slot. */
        adm.exp = st->ends_ms / 1000;
        if (wr_token_sign(gw->conf, &adm, &token) != WR_OK) {
            wr_respond_error(req, 500, "internal", NULL);
            return;
        }
        wr_set_cookie(gw, req, room, token, left);
        n = snprintf(body, sizeof(body),
                     "{\"status\":\"ACTIVE\",\"expiresIn\":%" PRId64 ",\"bookingUrl\":\"%s\",\"admissionToken\":\"%s\"}",
                     left, room->conf->booking_url, token);
        free(token);
        break;
    }
    default:
        n = snprintf(body, sizeof(body), "{\"status\":\"EXPIRED\"}");
        break;
    }
    wr_respond_json(req, 200, body, (size_t)n);
}

static void on_status_state(int status, const wr_user_state_t *st, void *data)
{
    wr_status_op_t *op = data;
    if (wr_pending_alive(&op->pending)) {
        if (status != WR_OK)
            wr_respond_unavailable(op->pending.req);
        else
            answer_status(op->gw, op->pending.req, op->room, &op->claims, st);
    }
    wr_pending_free(&op->pending);
}

static int on_status(h2o_handler_t *_self, h2o_req_t *req)
{
    wr_endpoint_t *self = (wr_endpoint_t *)_self;
    wr_gateway_t *gw = self->gw;
    wr_claims_t claims;
    wr_gw_room_t *room;
    wr_user_state_t st;

    if (!wr_exact_path(req, gw->conf->gateway.status_path))
        return 0;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        wr_respond_error(req, 405, "method_not_allowed", NULL);
        return 0;
    }
    if (wr_authenticate(gw, req, &claims, &room) != WR_OK)
        return 0;
    if (wr_view_lookup(gw->view, room, &claims, wr_now_ms(), &st) == WR_OK) {
        answer_status(gw, req, room, &claims, &st);
        return 0;
    }
    wr_status_op_t *op = wr_pending_new(req, sizeof(*op));
    op->gw = gw;
    op->room = room;
    op->claims = claims;
    if (wr_view_ask(gw->view, room, &claims, on_status_state, op) != WR_OK) {
        wr_pending_free(&op->pending);
        wr_respond_unavailable(req);
    }
    return 0;
}

static void answer_left(wr_status_op_t *op)
{
    h2o_req_t *req = op->pending.req;
    if (wr_pending_alive(&op->pending)) {
        wr_set_cookie(op->gw, req, op->room, "", 0);
        wr_respond_json(req, 200, H2O_STRLIT("{\"status\":\"LEFT\"}"));
    }
    wr_pending_free(&op->pending);
}

static void on_left_barrier(redisReply *reply, void *data)
{
    (void)reply; /* the leave is done either way; the barrier only delays the answer */
    answer_left(data);
}

static void on_left(redisReply *reply, void *data)
{
    wr_status_op_t *op = data;
    h2o_req_t *req = op->pending.req;

    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        /* This process refuses the user at once, before the channel's echo. */
        wr_view_note_revoked(op->gw->view, op->room, op->claims.sub,
                             wr_now_ms() + (reply->integer == 2 ? op->room->conf->session_duration_ms
                                                                : op->gw->conf->tokens.queue_token_ttl_ms));
    }
    if (!wr_pending_alive(&op->pending)) {
        wr_pending_free(&op->pending);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        wr_respond_unavailable(req);
        wr_pending_free(&op->pending);
        return;
    }
    /*
     * Answer only after a PING round trip: Redis has then written the leave's
     * announcement to every gateway's subscriber socket, so a request the
     * user sends anywhere after this answer reaches a gateway that already
     * has the announcement waiting, ahead of the request.
     */
    if (reply->integer == 0 || wr_redis_ping(op->gw->redis, on_left_barrier, op) != WR_OK)
        answer_left(op);
}

static int on_leave(h2o_handler_t *_self, h2o_req_t *req)
{
    wr_endpoint_t *self = (wr_endpoint_t *)_self;
    wr_gateway_t *gw = self->gw;
    wr_claims_t claims;
    wr_gw_room_t *room;

    if (!wr_exact_path(req, gw->conf->gateway.leave_path))
        return 0;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        wr_respond_error(req, 405, "method_not_allowed", NULL);
        return 0;
    }
    if (wr_authenticate(gw, req, &claims, &room) != WR_OK)
        return 0;
    wr_status_op_t *op = wr_pending_new(req, sizeof(*op));
    const char *keys[] = {room->keys.queue, room->keys.active, room->keys.revoked, room->keys.events,
                          room->keys.deadline};
    char tombstone[24];
    const char *args[] = {claims.sub, tombstone};
    snprintf(tombstone, sizeof(tombstone), "%" PRId64, gw->conf->tokens.queue_token_ttl_ms);
    op->gw = gw;
    op->room = room;
    op->claims = claims;
    if (wr_redis_script(gw->redis, &wr_script_leave, keys, 2, args, on_left, op) != WR_OK) {
        wr_pending_free(&op->pending);
        wr_respond_unavailable(req);
    }
    return 0;
}

void wr_status_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw)
{
    wr_endpoint_t *self = (wr_endpoint_t *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_status;
    self->gw = gw;
}

void wr_leave_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw)
{
    wr_endpoint_t *self = (wr_endpoint_t *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_leave;
    self->gw = gw;
}
