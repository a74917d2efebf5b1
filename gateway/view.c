/*
 * view.c: the local view of ACTIVE users, fed by the rooms' event channels.
 *
 * State, per room: a hash table of users this process has heard were
 * admitted or ended early (uid -> session end, and a tombstone for an early
 * end), and the highest serving counter seen. Entries leave the table once
 * both times have passed (a sweep each second rebuilds it).
 *
 * Why it can be trusted. Within one subscription every change only grows:
 * admissions add entries, early ends add tombstones that win over
 * admissions, serving only rises, and session ends are times the view
 * compares with the clock. So the order in which a snapshot and channel
 * messages arrive does not matter, and replaying either is harmless. What
 * cannot be tolerated is a gap: a message lost while the subscription was
 * down. So the view counts as trusted only from the moment a snapshot,
 * requested after the subscription was confirmed, has arrived for every
 * room, until the subscriber connection drops. In between, callers ask
 * Redis. Each new subscription starts from an empty view, which its
 * snapshot rebuilds (Redis may have restarted and lost its data).
 *
 * Redis keys touched: the rooms' events channels (SUBSCRIBE), and active,
 * revoked and serving through the snapshot script; the status script for
 * wr_view_ask.
 */
#include "view.h"

#include <jansson.h>
#include <stdio.h>

#include "log.h"
#include "position.h"
#include "push.h"

typedef struct wr_entry_s {
    uint8_t uid[16]; /* all zero: an empty slot */
    int64_t ends_ms;
    int64_t revoked_until_ms;
} wr_entry_t;

typedef struct wr_table_s {
    wr_entry_t *slots;
    size_t cap; /* a power of two */
    size_t count;
} wr_table_t;

typedef struct wr_view_room_s {
    wr_table_t table;
    int64_t serving;
    int64_t last_ts; /* publish time of the last event (or snapshot) applied */
    int snapshot_ok;
} wr_view_room_t;

struct wr_view_s {
    wr_gateway_t *gw;
    wr_redis_t *sub;      /* subscriber connection, owned */
    wr_view_room_t *rooms; /* owned, one per gateway room */
    int subscribed;       /* confirmations received on the current connection */
    unsigned epoch;       /* bumped on every (re)subscription, to ignore stale snapshots */
    int trusted;
    uv_timer_t sweep;
};

typedef struct wr_snapshot_req_s {
    wr_view_t *view;
    size_t room;
    unsigned epoch;
} wr_snapshot_req_t;

/* --- the table --------------------------------------------------------- */

static int uid_to_bytes(const char *hex, size_t len, uint8_t *out)
{
    int nonzero = 0;
    if (!wr_uid_valid(hex, len))
        return WR_ERROR;
    for (size_t i = 0; i < 16; i++) {
        int hi = hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10;
        int lo = hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0' : hex[2 * i + 1] - 'a' + 10;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i];
    }
    return nonzero ? WR_OK : WR_ERROR;
}

static size_t slot_of(const wr_table_t *t, const uint8_t *uid)
{
    uint64_t h;
    memcpy(&h, uid, sizeof(h)); /* user ids are random: their bytes are a hash */
    return (size_t)h & (t->cap - 1);
}

static int is_empty(const wr_entry_t *e)
{
    static const uint8_t zero[16];
    return memcmp(e->uid, zero, 16) == 0;
}

static wr_entry_t *find(wr_table_t *t, const uint8_t *uid, int create)
{
    size_t i;
    if (t->cap == 0) {
        if (!create)
            return NULL;
        t->cap = 64;
        t->slots = wr_calloc(t->cap, sizeof(wr_entry_t));
    }
    for (i = slot_of(t, uid);; i = (i + 1) & (t->cap - 1)) {
        wr_entry_t *e = &t->slots[i];
        if (is_empty(e)) {
            if (!create)
                return NULL;
            if ((t->count + 1) * 2 > t->cap) {
                /* Keep the load under a half: grow, then look again. */
                wr_table_t bigger = {wr_calloc(t->cap * 2, sizeof(wr_entry_t)), t->cap * 2, 0};
                for (size_t j = 0; j < t->cap; j++) {
                    if (!is_empty(&t->slots[j]))
                        *find(&bigger, t->slots[j].uid, 1) = t->slots[j];
                }
                free(t->slots);
                *t = bigger;
                return find(t, uid, 1);
            }
            memcpy(e->uid, uid, 16);
            e->ends_ms = 0;
            e->revoked_until_ms = 0;
            t->count++;
            return e;
        }
        if (memcmp(e->uid, uid, 16) == 0)
            return e;
    }
}

/* Rebuilds t without the entries whose times have all passed. */
static void sweep_table(wr_table_t *t, int64_t now)
{
    wr_table_t fresh = {NULL, 0, 0};
    for (size_t i = 0; i < t->cap; i++) {
        wr_entry_t *e = &t->slots[i];
        if (!is_empty(e) && (e->ends_ms > now || e->revoked_until_ms > now))
            *find(&fresh, e->uid, 1) = *e;
    }
    free(t->slots);
    *t = fresh;
}

static void note_active(wr_view_room_t *r, const uint8_t *uid, int64_t ends)
{
    wr_entry_t *e = find(&r->table, uid, 1);
    if (ends > e->ends_ms)
        e->ends_ms = ends;
}

static void note_revoked(wr_view_room_t *r, const uint8_t *uid, int64_t until)
{
    wr_entry_t *e = find(&r->table, uid, 1);
    if (until > e->revoked_until_ms)
        e->revoked_until_ms = until;
}

/* --- trust ------------------------------------------------------------- */

static void set_trusted(wr_view_t *v, int trusted)
{
    if (v->trusted == trusted)
        return;
    v->trusted = trusted;
    if (trusted)
        wr_info("view: live (subscribed, snapshot loaded); proxied requests need no Redis round trip");
    else
        wr_warn("view: not live; asking Redis for every decision until it is");
}

static void check_trusted(wr_view_t *v)
{
    if (v->subscribed < (int)v->gw->num_rooms) {
        set_trusted(v, 0);
        return;
    }
    for (size_t i = 0; i < v->gw->num_rooms; i++) {
        if (!v->rooms[i].snapshot_ok) {
            set_trusted(v, 0);
            return;
        }
    }
    set_trusted(v, 1);
}

/* Applies a {uid, time, uid, time, ...} array with fn. */
static void apply_pairs(wr_view_room_t *r, const redisReply *arr, void (*fn)(wr_view_room_t *, const uint8_t *, int64_t))
{
    if (arr->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < arr->elements; i += 2) {
        uint8_t uid[16];
        const redisReply *u = arr->element[i], *t = arr->element[i + 1];
        if (u->type != REDIS_REPLY_STRING || t->type != REDIS_REPLY_STRING)
            continue;
        if (uid_to_bytes(u->str, u->len, uid) == WR_OK)
            fn(r, uid, strtoll(t->str, NULL, 10));
    }
}

static void on_snapshot(redisReply *reply, void *data)
{
    wr_snapshot_req_t *req = data;
    wr_view_t *v = req->view;
    wr_view_room_t *r;

    if (v == NULL || req->epoch != v->epoch)
        goto exit; /* the subscription it belonged to is gone */
    r = &v->rooms[req->room];
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        wr_error("view: snapshot of room \"%s\" failed%s%s", v->gw->rooms[req->room].conf->name,
                 reply != NULL && reply->type == REDIS_REPLY_ERROR ? ": " : "",
                 reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        goto exit; /* stays untrusted; the next (re)connection tries again */
    }
    if (reply->element[0]->integer > r->serving)
        r->serving = reply->element[0]->integer;
    apply_pairs(r, reply->element[2], note_active);
    apply_pairs(r, reply->element[3], note_revoked);
    if (reply->element[1]->integer > r->last_ts)
        r->last_ts = reply->element[1]->integer;
    r->snapshot_ok = 1;
    check_trusted(v);
    if (v->trusted) {
        /* Clients that connected while the view was not live, and positions
         * that moved while it was down, are brought up to date. */
        for (size_t i = 0; i < v->gw->num_rooms; i++)
            wr_push_room_changed(v->gw->push, i);
    }
exit:
    free(req);
}

static void request_snapshots(wr_view_t *v)
{
    if (v->subscribed < (int)v->gw->num_rooms || !wr_redis_up(v->gw->redis))
        return;
    for (size_t i = 0; i < v->gw->num_rooms; i++) {
        wr_gw_room_t *room = &v->gw->rooms[i];
        wr_snapshot_req_t *req;
        const char *keys[] = {room->keys.active, room->keys.revoked, room->keys.serving};
        if (v->rooms[i].snapshot_ok)
            continue;
        req = wr_calloc(1, sizeof(*req));
        req->view = v;
        req->room = i;
        req->epoch = v->epoch;
        if (wr_redis_script(v->gw->redis, &wr_script_snapshot, keys, 0, NULL, on_snapshot, req) != WR_OK)
            free(req);
    }
}

void wr_view_on_command_link(wr_view_t *v, int up)
{
    if (up)
        request_snapshots(v);
}

/* --- the subscription -------------------------------------------------- */

static int room_of_channel(wr_view_t *v, const redisReply *ch)
{
    for (size_t i = 0; i < v->gw->num_rooms; i++) {
        const char *name = v->gw->rooms[i].keys.events;
        if (ch->len == strlen(name) && memcmp(ch->str, name, ch->len) == 0)
            return (int)i;
    }
    return -1;
}

static void apply_uid_list(wr_view_room_t *r, json_t *list, int64_t when,
                           void (*fn)(wr_view_room_t *, const uint8_t *, int64_t))
{
    size_t i;
    json_t *u;
    json_array_foreach(list, i, u)
    {
        uint8_t uid[16];
        if (json_is_string(u) && uid_to_bytes(json_string_value(u), json_string_length(u), uid) == WR_OK)
            fn(r, uid, when);
    }
}

/*
 * Applies one event: {"serving":S,"ends":E,"admitted":[uid...],"dropped":[uid...],"dropped_until":T}
 * from a tick, or {"revoked":[uid],"ends":E} from an early end.
 */
static void on_event(wr_view_t *v, int room, const char *payload, size_t len)
{
    wr_view_room_t *r = &v->rooms[room];
    json_error_t jerr;
    json_t *msg = json_loadb(payload, len, 0, &jerr), *x;
    int64_t ends;

    if (msg == NULL || !json_is_object(msg)) {
        wr_warn("view: unreadable event on room \"%s\"", v->gw->rooms[room].conf->name);
        goto exit;
    }
    ends = (int64_t)json_number_value(json_object_get(msg, "ends"));
    if ((x = json_object_get(msg, "serving")) != NULL && json_is_number(x) && (int64_t)json_number_value(x) > r->serving)
        r->serving = (int64_t)json_number_value(x);
    if ((x = json_object_get(msg, "admitted")) != NULL && json_is_array(x))
        apply_uid_list(r, x, ends, note_active);
    if ((x = json_object_get(msg, "revoked")) != NULL && json_is_array(x))
        apply_uid_list(r, x, ends, note_revoked);
    if ((x = json_object_get(msg, "dropped")) != NULL && json_is_array(x))
        apply_uid_list(r, x, (int64_t)json_number_value(json_object_get(msg, "dropped_until")), note_revoked);
    if ((x = json_object_get(msg, "ts")) != NULL && json_is_number(x) && (int64_t)json_number_value(x) > r->last_ts)
        r->last_ts = (int64_t)json_number_value(x);
    if (v->trusted)
        wr_push_room_changed(v->gw->push, (size_t)room);
exit:
    json_decref(msg);
}

static void on_subscription(redisReply *reply, void *data)
{
    wr_view_t *v = data;
    const redisReply *kind;
    int room;

    if (reply == NULL) {
        /* The connection is gone (hiredis tells each channel): distrust. */
        v->subscribed = 0;
        check_trusted(v);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 || (kind = reply->element[0])->type != REDIS_REPLY_STRING)
        return;
    if ((room = room_of_channel(v, reply->element[1])) < 0)
        return;
    if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0) {
        if (++v->subscribed == (int)v->gw->num_rooms)
            request_snapshots(v);
    } else if (kind->len == 7 && memcmp(kind->str, "message", 7) == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        on_event(v, room, reply->element[2]->str, reply->element[2]->len);
    }
}

static void on_subscriber_link(wr_redis_t *r, int up, void *data)
{
    wr_view_t *v = data;
    const char *channels[64];

    /* Start again from nothing: the snapshot that follows the new
     * subscription rebuilds the view. Keeping the old one would be wrong if
     * Redis lost its data (restarted without persistence): users it no longer
     * counts as ACTIVE would still be let through, and a serving counter
     * higher than Redis's would send every new joiner to the back again. */
    v->subscribed = 0;
    v->epoch++;
    for (size_t i = 0; i < v->gw->num_rooms; i++) {
        free(v->rooms[i].table.slots);
        memset(&v->rooms[i], 0, sizeof(v->rooms[i]));
    }
    check_trusted(v);
    if (!up)
        return;
    for (size_t i = 0; i < v->gw->num_rooms && i < 64; i++)
        channels[i] = v->gw->rooms[i].keys.events;
    if (wr_redis_subscribe(r, (int)v->gw->num_rooms, channels, on_subscription, v) != WR_OK)
        wr_error("view: SUBSCRIBE could not be sent");
}

static void on_sweep(uv_timer_t *t)
{
    wr_view_t *v = t->data;
    int64_t now = wr_now_ms();
    for (size_t i = 0; i < v->gw->num_rooms; i++)
        sweep_table(&v->rooms[i].table, now);
}

wr_view_t *wr_view_new(wr_gateway_t *gw)
{
    wr_view_t *v = wr_calloc(1, sizeof(*v));
    v->gw = gw;
    v->rooms = wr_calloc(gw->num_rooms, sizeof(*v->rooms));
    uv_timer_init(gw->loop, &v->sweep);
    v->sweep.data = v;
    uv_timer_start(&v->sweep, on_sweep, 1000, 1000);
    v->sub = wr_redis_new(gw->loop, gw->conf, "subscriber", 0, on_subscriber_link, v);
    return v;
}

static void free_view(uv_handle_t *h)
{
    wr_view_t *v = h->data;
    for (size_t i = 0; i < v->gw->num_rooms; i++)
        free(v->rooms[i].table.slots);
    free(v->rooms);
    free(v);
}

void wr_view_free(wr_view_t *v)
{
    v->epoch++; /* snapshots still in flight find a different epoch */
    wr_redis_free(v->sub);
    uv_close((uv_handle_t *)&v->sweep, free_view);
}

int wr_view_trusted(const wr_view_t *v)
{
    return v->trusted;
}

/* --- decisions --------------------------------------------------------- */

static void decide(const wr_view_room_t *r, const wr_entry_t *e, const wr_claims_t *claims, int64_t now,
                   wr_user_state_t *out)
{
    memset(out, 0, sizeof(*out));
    if (e != NULL && e->revoked_until_ms > now) {
        out->state = WR_STATE_GONE;
    } else if (e != NULL && e->ends_ms > now) {
        out->state = WR_STATE_ACTIVE;
        out->ends_ms = e->ends_ms;
    } else if (claims->type == WR_TOKEN_QUEUE && claims->q > r->serving) {
        out->state = WR_STATE_WAITING;
        out->position = wr_position(claims->q, r->serving);
    } else {
        out->state = WR_STATE_GONE;
    }
}

int wr_view_lookup(wr_view_t *v, const wr_gw_room_t *room, const wr_claims_t *claims, int64_t now_ms,
                   wr_user_state_t *out)
{
    uint8_t uid[16];
    wr_view_room_t *r = &v->rooms[room->index];
    if (!v->trusted || uid_to_bytes(claims->sub, strlen(claims->sub), uid) != WR_OK)
        return WR_AGAIN;
    decide(r, find(&r->table, uid, 0), claims, now_ms, out);
    return WR_OK;
}

typedef struct wr_ask_s {
    wr_view_t *view;
    size_t room;
    wr_claims_t claims;
    wr_view_cb cb;
    void *data;
} wr_ask_t;

static void on_status(redisReply *reply, void *data)
{
    wr_ask_t *ask = data;
    wr_view_room_t *r = &ask->view->rooms[ask->room];
    wr_user_state_t st;
    uint8_t uid[16];

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        ask->cb(WR_ERROR, NULL, ask->data);
        goto exit;
    }
    memset(&st, 0, sizeof(st));
    if (reply->element[2]->integer > r->serving)
        r->serving = reply->element[2]->integer;
    st.state = (int)reply->element[0]->integer;
    if (st.state == WR_STATE_ACTIVE) {
        st.ends_ms = reply->element[1]->integer;
        /* Remember it: the next request of this user needs no round trip.
         * A tombstone, if one arrives, still wins. */
        if (uid_to_bytes(ask->claims.sub, strlen(ask->claims.sub), uid) == WR_OK) {
            wr_entry_t *e = find(&r->table, uid, 1);
            if (st.ends_ms > e->ends_ms)
                e->ends_ms = st.ends_ms;
            if (e->revoked_until_ms > wr_now_ms())
                st.state = WR_STATE_GONE;
        }
    } else if (st.state == WR_STATE_WAITING) {
        st.position = wr_position(reply->element[1]->integer, reply->element[2]->integer);
        if (st.position == 0)
            st.state = WR_STATE_GONE;
    }
    ask->cb(WR_OK, &st, ask->data);
exit:
    free(ask);
}

int wr_view_ask(wr_view_t *v, const wr_gw_room_t *room, const wr_claims_t *claims, wr_view_cb cb, void *data)
{
    wr_ask_t *ask = wr_calloc(1, sizeof(*ask));
    const char *keys[] = {room->keys.queue, room->keys.active, room->keys.serving};
    const char *args[] = {claims->sub};
    ask->view = v;
    ask->room = room->index;
    ask->claims = *claims;
    ask->cb = cb;
    ask->data = data;
    if (wr_redis_script(v->gw->redis, &wr_script_status, keys, 1, args, on_status, ask) != WR_OK) {
        free(ask);
        return WR_ERROR;
    }
    return WR_OK;
}

int64_t wr_view_serving(const wr_view_t *v, const wr_gw_room_t *room)
{
    return v->rooms[room->index].serving;
}

int64_t wr_view_last_ts(const wr_view_t *v, const wr_gw_room_t *room)
{
    return v->rooms[room->index].last_ts;
}

void wr_view_note_serving(wr_view_t *v, const wr_gw_room_t *room, int64_t serving)
{
    if (serving > v->rooms[room->index].serving)
        v->rooms[room->index].serving = serving;
}

void wr_view_note_revoked(wr_view_t *v, const wr_gw_room_t *room, const char *uid_hex, int64_t until_ms)
{
    uint8_t uid[16];
    if (uid_to_bytes(uid_hex, strlen(uid_hex), uid) == WR_OK)
        note_revoked(&v->rooms[room->index], uid, until_ms);
}
