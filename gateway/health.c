/*
 * health.c: GET health_path, for load balancers and the tests.
 *
 * 200 when this process can admit and decide: its Redis command connection
 * is up and its view is live. 503 otherwise, with which part is missing, so
 * that a balancer stops sending new users to a process that would only
 * answer 503 itself.
 */
#include <stdio.h>

#include "gateway.h"
#include "respond.h"
#include "view.h"

typedef struct wr_health_s {
    h2o_handler_t super;
    wr_gateway_t *gw;
} wr_health_t;

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    wr_health_t *self = (wr_health_t *)_self;
    if (!wr_exact_path(req, self->gw->conf->gateway.health_path))
        return 0;
    int redis = wr_redis_up(self->gw->redis), view = wr_view_trusted(self->gw->view);
    char body[128];
    int n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"redis\":%s,\"view\":\"%s\"}",
                     redis && view ? "ok" : "degraded", redis ? "true" : "false", view ? "live" : "not_live");
    wr_respond_json(req, redis && view ? 200 : 503, body, (size_t)n);
    return 0;
}

void wr_health_register(h2o_pathconf_t *pathconf, wr_gateway_t *gw)
{
    wr_health_t *self = (wr_health_t *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->gw = gw;
}
