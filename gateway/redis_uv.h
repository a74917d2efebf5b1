/*
 * redis_uv.h: runs a hiredis async context on a libuv loop (redis_uv.c), in
 * place of hiredis's own libuv adapter.
 */
#ifndef WR_REDIS_UV_H
#define WR_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop; REDIS_OK or REDIS_ERR. The adapter is freed with ac. */
int wr_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
