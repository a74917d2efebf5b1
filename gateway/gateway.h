/*
 * gateway.h: the state one gateway process shares between its handlers.
 *
 * One process runs one libuv loop in one thread: h2o, hiredis (and later
 * libwebsockets) all run on it, so nothing here is locked. A gateway holds no
 * state that must be global: what it keeps (the view, see view.h) is a cache
 * of Redis that it can rebuild at any moment.
 */
#ifndef WR_GATEWAY_H
#define WR_GATEWAY_H

#include <h2o.h>
#include <uv.h>

#include "config.h"
#include "redis.h"
#include "store.h"
#include "token.h"

struct wr_view_s;

typedef struct wr_gw_room_s {
    size_t index;
    const wr_room_t *conf; /* borrowed from the gateway's config */
    wr_room_keys_t keys;
    h2o_iovec_t cookie;    /* "<cookie_name>_<room>", owned */
    h2o_url_t upstream;    /* the backend; its strings are owned */
    struct wr_upstream_s *proxy; /* connections to the backend (upstream.c), owned */
} wr_gw_room_t;

typedef struct wr_gateway_s {
    wr_config_t *conf; /* owned */
    uv_loop_t *loop;
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t *listeners; /* owned, conf->gateway.num_listen of them */

    wr_redis_t *redis;       /* the command connection, owned */
    struct wr_view_s *view;  /* owned */
    struct wr_verify_cache_s *verified; /* owned */
    struct wr_presence_s *presence;     /* owned */
    struct wr_push_s *push;             /* owned */
    struct wr_ws_s *ws;                 /* owned; NULL without push_listen */

    wr_gw_room_t *rooms; /* owned, one per configured room, same order */
    size_t num_rooms;

    h2o_iovec_t page;         /* the waiting page template, owned */
    h2o_iovec_t token_header; /* lowercased, as h2o stores request header names; owned */
    h2o_iovec_t user_header;  /* lowercased; owned */
    int64_t max_session_ms;   /* the longest session_duration of any room */
} wr_gateway_t;

/*
 * Opens a listening socket on l with SO_REUSEPORT (so that every gateway
 * process can have its own on the same port), non-blocking. Returns the
 * descriptor, or -1 after logging.
 */
int wr_listen_fd(const wr_listen_t *l);

/* The room whose name is aud, or NULL. */
wr_gw_room_t *wr_gateway_room(wr_gateway_t *gw, const char *aud);

/* Handlers; each registers itself on pathconf. gw must outlive them. */
void wr_gate_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw, wr_gw_room_t *room);
void wr_status_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw);
void wr_leave_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw);
void wr_health_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw);
void wr_sse_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw);
/* Starts and stops the SSE heartbeat timer. */
void wr_sse_start(wr_gateway_t *gw);
void wr_sse_stop(void);

#endif
