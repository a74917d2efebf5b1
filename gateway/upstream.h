/*
 * upstream.h: the proxy from an admitted user to the room's backend (see
 * upstream.c): keep-alive HTTP/1.1 connections owned by the gateway.
 */
#ifndef WR_UPSTREAM_H
#define WR_UPSTREAM_H

#include "gateway.h"

typedef struct wr_upstream_s wr_upstream_t;

/*
 * The backend at url (http, host resolved once, here) for the room named
 * room (borrowed, for logs). NULL after logging when the host does not
 * resolve. Lives as long as the process.
 */
wr_upstream_t *wr_upstream_new(uv_loop_t *loop, const char *room, const h2o_url_t *url);

/* Proxies every request that reaches pathconf's handler after the gate. */
void wr_upstream_register(h2o_pathconf_t *pathconf, wr_upstream_t *up);

#endif
