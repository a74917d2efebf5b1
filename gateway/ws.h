/*
 * ws.h: the WebSocket transport of the push hub, served by libwebsockets on
 * the gateway's own libuv loop, on its own listeners (push_listen).
 */
#ifndef WR_WS_H
#define WR_WS_H

#include "gateway.h"

typedef struct wr_ws_s wr_ws_t;

/*
 * Creates the libwebsockets context on gw->loop and opens the push
 * listeners (SO_REUSEPORT). Returns NULL after logging when that fails.
 */
wr_ws_t *wr_ws_new(wr_gateway_t *gw);

/* Closes the listeners; connections stay until wr_ws_free. */
void wr_ws_stop_accepting(wr_ws_t *ws);

/* Closes every connection (after CLOSED was sent by the hub) and the listeners. */
void wr_ws_free(wr_ws_t *ws);

#endif
