/*
 * respond.h: what the gateway's handlers share: finding the token in a
 * request, the answers (queued, invalid token, unavailable, JSON), cookies,
 * and the guard that keeps an asynchronous handler from touching a request
 * the client has abandoned.
 */
#ifndef WR_RESPOND_H
#define WR_RESPOND_H

#include "gateway.h"

/*
 * An asynchronous operation on behalf of a request. Embed it first in the
 * handler's own struct. When the client goes away before the operation ends,
 * h2o frees the request's pool, and the guard allocated there sets req to
 * NULL: the callback must check wr_pending_alive before touching req.
 */
typedef struct wr_pending_s {
    h2o_req_t *req;
    struct wr_pending_s **guard; /* lives in req->pool */
} wr_pending_t;

/* Allocates size bytes (zeroed; a struct whose first member is wr_pending_t) tied to req. */
void *wr_pending_new(h2o_req_t *req, size_t size);
static inline int wr_pending_alive(const wr_pending_t *p)
{
    return p->req != NULL;
}
/* Detaches from the request (if still there) and frees p. */
void wr_pending_free(wr_pending_t *p);

/*
 * h2o matches a path prefix; the gateway's own endpoints want the exact
 * path. Returns 1 when req's path (without the query) is exactly path;
 * otherwise answers 404 and returns 0.
 */
int wr_exact_path(h2o_req_t *req, const char *path);

/* 1 when the client asked for JSON (Accept mentions application/json). */
int wr_wants_json(h2o_req_t *req);

/*
 * Finds a token: the token header first, then ?token= (when allow_query), then
 * the room's cookie (or, with room NULL, any "<cookie_name>_*" cookie; *room_out
 * then receives the matching room, if any). Returns WR_OK with *tok pointing
 * into the request, or WR_DECLINED when there is none. *from_cookie tells
 * where it came from.
 */
int wr_find_token(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, int allow_query, h2o_iovec_t *tok,
                  int *from_cookie, wr_gw_room_t **room_out);

/* Adds Set-Cookie for room with value (max_age_s < 0: a session cookie; 0: delete it). */
void wr_set_cookie(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, const char *value, int64_t max_age_s);

/* Sends body (JSON) with status; adds Content-Type and Cache-Control: no-store. */
void wr_respond_json(h2o_req_t *req, int status, const char *body, size_t len);

/* {"error":error,"reason":reason}; reason may be NULL. */
void wr_respond_error(h2o_req_t *req, int status, const char *error, const char *reason);

/* 401 invalid_token with the reason; clears the cookie if the token came from one. */
void wr_respond_invalid(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, const char *reason, int from_cookie);

/* 503 with Retry-After: Redis cannot be reached and the view is not live. */
void wr_respond_unavailable(h2o_req_t *req);

/*
 * The queued answer: queueing_status_code, Retry-After, the cookie, and JSON
 * ({"status":"WAITING","queueToken",...}) or the waiting page. token is copied.
 */
void wr_respond_queued(wr_gateway_t *gw, h2o_req_t *req, const wr_gw_room_t *room, const char *token, int64_t position);

/*
 * Finds and verifies the request's token for the endpoints that are not
 * under a room (status, leave, events): the room is the token's audience.
 * Returns WR_OK with the claims and room, or WR_DECLINED after answering
 * the request itself (400 without a token, 401 with an invalid one).
 */
int wr_authenticate(wr_gateway_t *gw, h2o_req_t *req, wr_claims_t *claims, wr_gw_room_t **room);

#endif
