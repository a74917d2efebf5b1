/*
 * store.h: the Redis key layout and the Lua scripts that change it.
 *
 * Both processes touch Redis only through the scripts declared here, so that
 * every state change is one atomic step. See store.c for the layout.
 */
#ifndef WR_STORE_H
#define WR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* Longest key name: "wr:{" + room + "}:" + suffix. */
#define WR_KEY_MAX (WR_NAME_MAX + 32)

typedef struct wr_room_keys_s {
    char queue[WR_KEY_MAX];   /* ZSET uid -> queue number */
    char active[WR_KEY_MAX];  /* ZSET uid -> session end, ms since the epoch */
    char seq[WR_KEY_MAX];     /* INCR counter handing out queue numbers */
    char serving[WR_KEY_MAX]; /* queue number of the last user admitted */
    char revoked[WR_KEY_MAX]; /* ZSET uid -> tombstone end, for sessions ended early */
    char credit[WR_KEY_MAX];  /* HASH credit, at: the admission rate's token bucket */
    char events[WR_KEY_MAX];  /* pub/sub channel: one message per tick that changed something */
    char deadline[WR_KEY_MAX]; /* ZSET uid -> ms by which a waiting user must show a sign of life */
} wr_room_keys_t;

/* Fills keys for room (a validated room name). */
void wr_store_room_keys(const char *room, wr_room_keys_t *keys);

typedef struct wr_script_s {
    const char *name;
    const char *source;
    int num_keys;
    char sha[41]; /* filled by wr_store_init */
} wr_script_t;

/*
 * The scripts. Each comment in store.c gives KEYS, ARGV and the reply.
 *   join:     enqueue a user once, with a liveness deadline; reply {q, serving}
 *   touch:    push the liveness deadlines of waiting users forward; reply: how many
 *   status:   a user's state; reply {state, n, serving} (state 2 ACTIVE n=session end ms,
 *             1 WAITING n=queue number, 0 neither)
 *   admit:    one worker tick for one room; reply {admitted, expired, active, serving, dropped}
 *   leave:    a user leaves the line or ends the session early; reply 2 (ended a session),
 *             1 (left the line) or 0 (unknown)
 *   snapshot: what a gateway needs to trust its local view; reply {serving, now_ms,
 *             {uid, end, ...} active, {uid, end, ...} revoked}
 */
extern wr_script_t wr_script_join, wr_script_touch, wr_script_status, wr_script_admit, wr_script_leave,
    wr_script_snapshot;
extern wr_script_t *const wr_scripts[];
extern const size_t wr_num_scripts;

/* Computes each script's SHA1 for EVALSHA. Call once at start-up. */
void wr_store_init(void);

/* States in the status script's reply. */
enum { WR_STATE_GONE = 0, WR_STATE_WAITING = 1, WR_STATE_ACTIVE = 2 };

#endif
