/*
 * admit.h: the admission worker's tick.
 *
 * The worker holds one synchronous Redis connection. Each tick runs the admit
 * script once per room, pipelined, so a tick costs one round trip whatever
 * the number of rooms.
 */
#ifndef WR_ADMIT_H
#define WR_ADMIT_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

/* Most abandoned users one tick drops per room: bounds a tick's work after a mass exodus. */
#define WR_ADMIT_MAX_DROP 1000

typedef struct wr_admit_room_s {
    const wr_room_t *conf; /* borrowed from the config, which outlives the worker */
    wr_room_keys_t keys;
    /* What the last tick reported, for logs. */
    int64_t admitted, expired, active, serving, dropped;
    uint64_t total_admitted;
} wr_admit_room_t;

typedef struct wr_admit_s {
    const wr_config_t *conf; /* borrowed */
    redisContext *redis;     /* owned; NULL while disconnected */
    int64_t connected_ms;    /* monotonic time of the last (re)connection */
    wr_admit_room_t *rooms;  /* owned */
    size_t num_rooms;
} wr_admit_t;

void wr_admit_init(wr_admit_t *a, const wr_config_t *conf);
void wr_admit_dispose(wr_admit_t *a);

/*
 * Connects (authenticates, selects the db, loads the scripts) when not
 * connected. Returns WR_OK, or WR_ERROR after logging why.
 */
int wr_admit_connect(wr_admit_t *a);

/*
 * Runs one tick for every room. Returns WR_OK, or WR_ERROR when Redis failed
 * (the connection is then dropped, and the next call reconnects).
 */
int wr_admit_tick(wr_admit_t *a);

#endif
