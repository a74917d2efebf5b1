/*
 * view.h: each gateway process's local view of who is ACTIVE, kept current
 * by the rooms' event channels, so that a proxied request costs no Redis
 * round trip.
 *
 * The view is trusted only while its subscription is live and a snapshot
 * taken after subscribing has arrived. While it is not trusted, lookups
 * answer WR_AGAIN and callers ask Redis (wr_view_ask); if Redis cannot be
 * asked either, they refuse with 503: the gateway fails closed.
 */
#ifndef WR_VIEW_H
#define WR_VIEW_H

#include "gateway.h"

typedef struct wr_view_s wr_view_t;

/* Creates the view and its subscriber connection. gw must outlive it. */
wr_view_t *wr_view_new(wr_gateway_t *gw);
void wr_view_free(wr_view_t *v);

/* Called by main when the command connection goes up or down (snapshots ride on it). */
void wr_view_on_command_link(wr_view_t *v, int up);

int wr_view_trusted(const wr_view_t *v);

/* What the gateway knows of one user. */
typedef struct wr_user_state_s {
    int state;         /* WR_STATE_ACTIVE, WR_STATE_WAITING or WR_STATE_GONE */
    int64_t ends_ms;   /* ACTIVE: when the session ends */
    int64_t position;  /* WAITING: 1 = next */
} wr_user_state_t;

/*
 * Answers from the local view for the user of claims in room, at now_ms.
 * Returns WR_OK and fills *out, or WR_AGAIN when the view is not trusted.
 */
int wr_view_lookup(wr_view_t *v, const wr_gw_room_t *room, const wr_claims_t *claims, int64_t now_ms,
                   wr_user_state_t *out);

/*
 * Asks Redis for the user's state (the status script) and calls cb once with
 * WR_OK and the state, or with WR_ERROR when Redis failed. Returns WR_OK, or
 * WR_ERROR when Redis cannot be asked now (cb is then never called).
 */
typedef void (*wr_view_cb)(int status, const wr_user_state_t *state, void *data);
int wr_view_ask(wr_view_t *v, const wr_gw_room_t *room, const wr_claims_t *claims, wr_view_cb cb, void *data);

/* The room's serving counter as the view knows it, and the publish time (ms) of its last event. */
int64_t wr_view_serving(const wr_view_t *v, const wr_gw_room_t *room);
int64_t wr_view_last_ts(const wr_view_t *v, const wr_gw_room_t *room);

/* Records what this process learned itself: a serving counter seen at join, an early end. */
void wr_view_note_serving(wr_view_t *v, const wr_gw_room_t *room, int64_t serving);
void wr_view_note_revoked(wr_view_t *v, const wr_gw_room_t *room, const char *uid, int64_t until_ms);

#endif
