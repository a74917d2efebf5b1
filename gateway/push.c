/*
 * push.c: the push hub (see push.h).
 *
 * State: per room, a doubly linked list of attached connections. Each
 * connection remembers the last position it was sent, so positions pushed
 * to one client never go up and an unchanged position is never sent again.
 * The ts in each message is the publish time of the tick that moved the
 * room (Redis's clock), so clients can measure publish-to-receipt latency.
 *
 * Cost: a walk of the room's connections once per tick that changed the
 * room: one table look-up and at most one small message each. Redis is not
 * involved. The walk does not run inside wr_push_room_changed but from a
 * zero timer, after the loop has read everything waiting: when a walk takes
 * longer than a tick (tens of thousands of clients), the tick messages that
 * arrived meanwhile collapse into one walk carrying the newest positions,
 * instead of queueing walks of stale ones behind each other.
 */
#include "push.h"

#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "position.h"
#include "view.h"

typedef struct wr_push_room_s {
    wr_push_conn_t head; /* sentinel */
    size_t count;
    int dirty; /* changed since its connections were last walked */
} wr_push_room_t;

struct wr_push_s {
    wr_gateway_t *gw;
    wr_push_room_t *rooms;
    size_t count;
    uv_timer_t walk; /* runs the walks due, once the loop has read what is waiting */
};

static void on_walk(uv_timer_t *t);

wr_push_t *wr_push_new(wr_gateway_t *gw)
{
    wr_push_t *h = wr_calloc(1, sizeof(*h));
    h->gw = gw;
    uv_timer_init(gw->loop, &h->walk);
    h->walk.data = h;
    h->rooms = wr_calloc(gw->num_rooms, sizeof(*h->rooms));
    for (size_t i = 0; i < gw->num_rooms; i++)
        h->rooms[i].head.next = h->rooms[i].head.prev = &h->rooms[i].head;
    return h;
}

static void free_hub(uv_handle_t *t)
{
    wr_push_t *h = t->data;
    free(h->rooms);
    free(h);
}

void wr_push_free(wr_push_t *h)
{
    uv_close((uv_handle_t *)&h->walk, free_hub);
}

size_t wr_push_count(const wr_push_t *h)
{
    return h->count;
}

static void send_final(wr_push_conn_t *c, const char *type, const char *json, size_t len)
{
    c->done = 1;
    c->ops->send(c, type, json, len, NULL, 1);
}

/*
 * Evaluates one connection against the view and sends what changed.
 * initial: the connection just attached (send the position even if equal
 * to what last_position says, unless the Last-Event-ID matched).
 */
static void evaluate(wr_push_t *h, wr_push_conn_t *c)
{
    wr_gateway_t *gw = h->gw;
    wr_user_state_t st;
    char json[WR_TOKEN_MAX + 256], id[24];
    int64_t now = wr_now_ms(), ts;
    int n;

    if (c->done || wr_view_lookup(gw->view, c->room, &c->claims, now, &st) != WR_OK)
        return; /* the view is not live: the snapshot that makes it live calls back */
    ts = wr_view_last_ts(gw->view, c->room);
    switch (st.state) {
    case WR_STATE_WAITING:
        if (st.position >= c->last_position)
            return;
        c->last_position = st.position;
        n = snprintf(json, sizeof(json),
                     "{\"type\":\"QUEUE_UPDATE\",\"position\":%" PRId64 ",\"estimatedWait\":%" PRId64 ",\"ts\":%" PRId64
                     "}",
                     st.position, wr_estimated_wait(st.position, c->room->conf), ts);
        snprintf(id, sizeof(id), "%" PRId64, wr_view_serving(gw->view, c->room));
        c->ops->send(c, "QUEUE_UPDATE", json, (size_t)n, id, 0);
        break;
    case WR_STATE_ACTIVE: {
        wr_claims_t adm = c->claims;
        char *token = NULL;
        adm.type = WR_TOKEN_ADMISSION;
        adm.q = 0;
        adm.iat = adm.nbf = now / 1000;
        adm.exp = st.ends_ms / 1000;
        if (wr_token_sign(gw->conf, &adm, &token) != WR_OK) {
            wr_error("push: cannot sign an admission token");
            return;
        }
        n = snprintf(json, sizeof(json),
                     "{\"type\":\"ACTIVE\",\"bookingUrl\":\"%s\",\"expiresIn\":%" PRId64
                     ",\"admissionToken\":\"%s\",\"ts\":%" PRId64 "}",
                     c->room->conf->booking_url, (st.ends_ms - now + 999) / 1000, token, ts);
        free(token);
        send_final(c, "ACTIVE", json, (size_t)n);
        break;
    }
    default:
        n = snprintf(json, sizeof(json), "{\"type\":\"EXPIRED\",\"ts\":%" PRId64 "}", ts);
        send_final(c, "EXPIRED", json, (size_t)n);
        break;
    }
}

void wr_push_attach(wr_push_t *h, wr_push_conn_t *c, const wr_gw_room_t *room, const wr_claims_t *claims,
                    const wr_push_ops_t *ops, void *transport, const char *last_event_id)
{
    wr_push_room_t *r = &h->rooms[room->index];
    wr_user_state_t st;
    char id[24];

    c->ops = ops;
    c->transport = transport;
    c->room = room;
    c->claims = *claims;
    c->last_position = INT64_MAX;
    c->next = &r->head;
    c->prev = r->head.prev;
    c->prev->next = c;
    r->head.prev = c;
    r->count++;
    h->count++;
    c->attached = 1;
    wr_presence_attach(h->gw->presence, room, &c->presence, claims->sub);
    if (last_event_id != NULL &&
        wr_view_lookup(h->gw->view, room, claims, wr_now_ms(), &st) == WR_OK && st.state == WR_STATE_WAITING) {
        snprintf(id, sizeof(id), "%" PRId64, wr_view_serving(h->gw->view, room));
        if (strcmp(id, last_event_id) == 0)
            c->last_position = st.position; /* the client has this one */
    }
    evaluate(h, c);
}

void wr_push_detach(wr_push_t *h, wr_push_conn_t *c)
{
    wr_push_room_t *r;
    if (!c->attached)
        return;
    r = &h->rooms[c->room->index];
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->next = c->prev = NULL;
    c->attached = 0;
    r->count--;
    h->count--;
    wr_presence_detach(h->gw->presence, c->room, &c->presence);
}

static void walk(wr_push_t *h, wr_push_room_t *r)
{
    r->dirty = 0;
    for (wr_push_conn_t *c = r->head.next, *next; c != &r->head; c = next) {
        next = c->next;
        evaluate(h, c);
    }
}

static void on_walk(uv_timer_t *t)
{
    wr_push_t *h = t->data;
    for (size_t i = 0; i < h->gw->num_rooms; i++)
        if (h->rooms[i].dirty)
            walk(h, &h->rooms[i]);
}

void wr_push_room_changed(wr_push_t *h, size_t room)
{
    h->rooms[room].dirty = 1;
    if (!uv_is_active((uv_handle_t *)&h->walk))
        uv_timer_start(&h->walk, on_walk, 0, 0);
}

void wr_push_close_all(wr_push_t *h, const char *reason)
{
    char json[128];
    int n = snprintf(json, sizeof(json), "{\"type\":\"CLOSED\",\"reason\":\"%s\"}", reason);
    for (size_t i = 0; i < h->gw->num_rooms; i++) {
        wr_push_room_t *r = &h->rooms[i];
        for (wr_push_conn_t *c = r->head.next, *next; c != &r->head; c = next) {
            next = c->next;
            if (!c->done)
                send_final(c, "CLOSED", json, (size_t)n);
        }
    }
}
