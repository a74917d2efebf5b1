/*
 * push.h: the hub that tells every waiting client of this process its
 * position, whatever the transport (SSE, sse.c; WebSocket, ws.c).
 *
 * A transport attaches a connection once the client's token is verified,
 * and detaches it when the connection is gone. The view calls
 * wr_push_room_changed after each tick's message (or snapshot) has been
 * applied; the hub then evaluates each of the room's connections from the
 * view alone, with no Redis round trip, and hands the transport at most one
 * message per connection: QUEUE_UPDATE when the position fell, ACTIVE or
 * EXPIRED (final) when the user stopped waiting.
 */
#ifndef WR_PUSH_H
#define WR_PUSH_H

#include "gateway.h"
#include "presence.h"

typedef struct wr_push_s wr_push_t;
typedef struct wr_push_conn_s wr_push_conn_t;

typedef struct wr_push_ops_s {
    /*
     * Queues one message: type ("QUEUE_UPDATE", ...), its JSON (borrowed for
     * the call), and the event id (SSE). final: the stream ends after it.
     * May detach c itself (a final message ends its stream), but no other connection.
     */
    void (*send)(wr_push_conn_t *c, const char *type, const char *json, size_t len, const char *id, int final);
} wr_push_ops_t;

struct wr_push_conn_s {
    wr_push_conn_t *next, *prev; /* in the room's list */
    wr_presence_entry_t presence;
    const wr_push_ops_t *ops;
    void *transport;
    const wr_gw_room_t *room;
    wr_claims_t claims;
    int64_t last_position; /* INT64_MAX until a position was sent */
    int attached;
    int done; /* a final message was handed over */
};

wr_push_t *wr_push_new(wr_gateway_t *gw);
void wr_push_free(wr_push_t *h);

/*
 * Attaches c (zeroed by the caller, then kept valid until detached) and
 * sends the client its current state, unless last_event_id (may be NULL)
 * shows the client already has it.
 */
void wr_push_attach(wr_push_t *h, wr_push_conn_t *c, const wr_gw_room_t *room, const wr_claims_t *claims,
                    const wr_push_ops_t *ops, void *transport, const char *last_event_id);
/* Detaches c; safe to call twice. */
void wr_push_detach(wr_push_t *h, wr_push_conn_t *c);

/* The view changed for room (index): its connections are re-evaluated soon (see push.c). */
void wr_push_room_changed(wr_push_t *h, size_t room);

/* Sends CLOSED (final) to every connection: the process is shutting down. */
void wr_push_close_all(wr_push_t *h, const char *reason);

/* Connections attached, over all rooms. */
size_t wr_push_count(const wr_push_t *h);

#endif
