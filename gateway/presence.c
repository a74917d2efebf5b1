/*
 * presence.c: batched liveness reports (see presence.h).
 *
 * State, per room: a circular list of the push connections this process
 * holds, a cursor into it, and a list of user ids to report at the next
 * flush. Every FLUSH_MS the flush takes the next slice of the connection
 * list (sized so that the whole list is covered every abandon_grace / 3)
 * plus the pending ids, and sends them in touch scripts of at most BATCH
 * ids each: Redis sees a few commands per flush whatever the number of
 * users, never one per user.
 *
 * Redis keys touched: the rooms' deadline sets, through the touch script.
 */
#include "presence.h"

#include <inttypes.h>
#include <stdio.h>

#include "log.h"

#define FLUSH_MS 200
#define BATCH 1000
#define PENDING_MAX 200000 /* beyond this, polls are not reported until the next flush (a flood) */

typedef struct wr_presence_room_s {
    wr_presence_entry_t head; /* sentinel of the circular list */
    wr_presence_entry_t *cursor;
    size_t count;
    char (*pending)[WR_UID_LEN + 1];
    size_t num_pending, cap_pending;
    double carry; /* fractional slice carried to the next flush */
} wr_presence_room_t;

struct wr_presence_s {
    wr_gateway_t *gw;
    wr_presence_room_t *rooms;
    uv_timer_t timer;
};

static void add_pending(wr_presence_room_t *r, const char *uid)
{
    if (r->num_pending == r->cap_pending) {
        if (r->cap_pending >= PENDING_MAX)
            return;
        r->cap_pending = r->cap_pending ? r->cap_pending * 2 : 64;
        r->pending = wr_realloc(r->pending, r->cap_pending * sizeof(*r->pending));
    }
    memcpy(r->pending[r->num_pending++], uid, WR_UID_LEN + 1);
}

static void on_touched(redisReply *reply, void *data)
{
    /* Nothing to do: a lost report only shortens a deadline's margin. */
}

static void send_batch(wr_presence_t *p, const wr_gw_room_t *room, const char **args, size_t n)
{
    const char *keys[] = {room->keys.deadline};
    if (n > 1)
        wr_redis_script(p->gw->redis, &wr_script_touch, keys, (int)n, args, on_touched, NULL);
}

static void flush_room(wr_presence_t *p, size_t i)
{
    wr_presence_room_t *r = &p->rooms[i];
    const wr_gw_room_t *room = &p->gw->rooms[i];
    const char *args[BATCH + 1];
    char grace[24];
    size_t n = 1, slice;

    snprintf(grace, sizeof(grace), "%" PRId64, room->conf->abandon_grace_ms);
    args[0] = grace;
    /* The slice of held connections to refresh this time. */
    r->carry += (double)r->count * FLUSH_MS / (double)(room->conf->abandon_grace_ms / 3);
    slice = (size_t)r->carry;
    r->carry -= (double)slice;
    if (slice > r->count)
        slice = r->count;
    for (size_t k = 0; k < slice; k++) {
        if (r->cursor == &r->head)
            r->cursor = r->head.next;
        args[n++] = r->cursor->uid;
        r->cursor = r->cursor->next;
        if (n == BATCH + 1) {
            send_batch(p, room, args, n);
            n = 1;
        }
    }
    for (size_t k = 0; k < r->num_pending; k++) {
        args[n++] = r->pending[k];
        if (n == BATCH + 1) {
            send_batch(p, room, args, n);
            n = 1;
        }
    }
    send_batch(p, room, args, n);
    r->num_pending = 0;
}

static void on_flush(uv_timer_t *t)
{
    wr_presence_t *p = t->data;
    if (!wr_redis_up(p->gw->redis))
        return; /* keep what is pending; deadlines cannot be checked while Redis is away either */
    for (size_t i = 0; i < p->gw->num_rooms; i++)
        flush_room(p, i);
}

wr_presence_t *wr_presence_new(wr_gateway_t *gw)
{
    wr_presence_t *p = wr_calloc(1, sizeof(*p));
    p->gw = gw;
    p->rooms = wr_calloc(gw->num_rooms, sizeof(*p->rooms));
    for (size_t i = 0; i < gw->num_rooms; i++) {
        p->rooms[i].head.next = p->rooms[i].head.prev = &p->rooms[i].head;
        p->rooms[i].cursor = &p->rooms[i].head;
    }
    uv_timer_init(gw->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_flush, FLUSH_MS, FLUSH_MS);
    return p;
}

static void free_presence(uv_handle_t *h)
{
    wr_presence_t *p = h->data;
    for (size_t i = 0; i < p->gw->num_rooms; i++)
        free(p->rooms[i].pending);
    free(p->rooms);
    free(p);
}

void wr_presence_free(wr_presence_t *p)
{
    uv_close((uv_handle_t *)&p->timer, free_presence);
}

void wr_presence_attach(wr_presence_t *p, const wr_gw_room_t *room, wr_presence_entry_t *e, const char *uid)
{
    wr_presence_room_t *r = &p->rooms[room->index];
    memcpy(e->uid, uid, WR_UID_LEN + 1);
    e->next = &r->head;
    e->prev = r->head.prev;
    e->prev->next = e;
    r->head.prev = e;
    r->count++;
    add_pending(r, uid);
}

void wr_presence_detach(wr_presence_t *p, const wr_gw_room_t *room, wr_presence_entry_t *e)
{
    wr_presence_room_t *r = &p->rooms[room->index];
    if (r->cursor == e)
        r->cursor = e->next;
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->next = e->prev = NULL;
    r->count--;
    /* The user may hold another connection elsewhere: its refreshes, each
     * within a third of the grace, put the deadline back out of reach. */
    add_pending(r, e->uid);
}

void wr_presence_touch(wr_presence_t *p, const wr_gw_room_t *room, const char *uid)
{
    add_pending(&p->rooms[room->index], uid);
}

void wr_presence_refresh_all(wr_presence_t *p)
{
    for (size_t i = 0; i < p->gw->num_rooms; i++) {
        wr_presence_room_t *r = &p->rooms[i];
        for (wr_presence_entry_t *e = r->head.next; e != &r->head; e = e->next)
            add_pending(r, e->uid);
    }
}
