/*
 * presence.h: tells Redis, in batches, that waiting users are still there,
 * so that the worker drops only those who left (see "Abandonment" in
 * lib/store.c).
 *
 * A user is present while this process holds a push connection of theirs
 * (refreshed in slices, each within a third of the room's abandon_grace),
 * and for abandon_grace after that connection closes or after they poll.
 */
#ifndef WR_PRESENCE_H
#define WR_PRESENCE_H

#include "gateway.h"

typedef struct wr_presence_s wr_presence_t;

/* One push connection's place in its room's presence list; embed it. */
typedef struct wr_presence_entry_s {
    struct wr_presence_entry_s *next, *prev;
    char uid[WR_UID_LEN + 1];
} wr_presence_entry_t;

wr_presence_t *wr_presence_new(wr_gateway_t *gw);
void wr_presence_free(wr_presence_t *p);

/* A push connection opened (e must stay valid until detached). */
void wr_presence_attach(wr_presence_t *p, const wr_gw_room_t *room, wr_presence_entry_t *e, const char *uid);
/* It closed: the user has abandon_grace from now to come back. */
void wr_presence_detach(wr_presence_t *p, const wr_gw_room_t *room, wr_presence_entry_t *e);
/* The user polled. */
void wr_presence_touch(wr_presence_t *p, const wr_gw_room_t *room, const char *uid);
/* The command connection is (back) up: refresh every held connection now, Redis may have missed refreshes. */
void wr_presence_refresh_all(wr_presence_t *p);

#endif
