/*
 * redis.h: one asynchronous Redis connection on the gateway's libuv loop,
 * that reconnects by itself.
 *
 * The gateway holds two: one for commands (joins, status look-ups, leaves,
 * view snapshots) and one subscribed to the rooms' event channels (owned by
 * view.c).
 */
#ifndef WR_GW_REDIS_H
#define WR_GW_REDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "config.h"
#include "store.h"

typedef struct wr_redis_s wr_redis_t;

/*
 * Called with each reply, or with NULL when the command failed: the
 * connection was lost or the command timed out. The reply is borrowed: it is
 * freed when the callback returns.
 */
typedef void (*wr_redis_cb)(redisReply *reply, void *data);

/* Called when the connection becomes usable (up = 1) and when it is lost (up = 0). */
typedef void (*wr_redis_state_cb)(wr_redis_t *r, int up, void *data);

/*
 * Creates a connection and starts connecting. name is used in logs
 * (borrowed; must outlive r). With load_scripts, every script in store.h is
 * loaded before the connection counts as up. conf is borrowed and must
 * outlive r.
 */
wr_redis_t *wr_redis_new(uv_loop_t *loop, const wr_config_t *conf, const char *name, int load_scripts,
                         wr_redis_state_cb on_state, void *data);

/* Disconnects and frees r; pending callbacks are called with NULL first. */
void wr_redis_free(wr_redis_t *r);

int wr_redis_up(const wr_redis_t *r);

/*
 * Runs script s (EVALSHA) with its keys and args. Returns WR_OK, after which
 * cb is called exactly once; or WR_ERROR when not connected, and cb is never
 * called. Arguments are copied before this returns.
 */
int wr_redis_script(wr_redis_t *r, const wr_script_t *s, const char *const *keys, int nargs, const char *const *args,
                    wr_redis_cb cb, void *data);

/*
 * PING, with the same contract as wr_redis_script. Redis answers it in a
 * later turn of its loop than any command sent before, so by the time the
 * answer comes, everything those commands published has been written to
 * every subscriber's socket: a barrier (see status.c's leave).
 */
int wr_redis_ping(wr_redis_t *r, wr_redis_cb cb, void *data);

/*
 * Subscribes to channels; cb is called for every reply to the subscription
 * (confirmations and messages) and with NULL when the connection is lost.
 * Same return contract as wr_redis_script. Subscribed replies are not
 * subject to the command timeout.
 */
int wr_redis_subscribe(wr_redis_t *r, int nchannels, const char *const *channels, wr_redis_cb cb, void *data);

#endif
