/*
 * main.c: the waitroom-gateway program.
 *
 * Reads the config, then runs gateway processes: with processes > 1 a
 * master (master.c) forks and supervises them, else this process is the
 * only one. Each gateway process sets up one libuv loop and puts on it: h2o
 * (the HTTP listeners, the rooms' gate and proxy handlers, the status,
 * leave, events and health endpoints), libwebsockets (the push listeners),
 * the Redis command connection and the view's subscriber connection; then
 * it runs the loop until SIGTERM or SIGINT.
 *
 * A process opens its listeners only once it can serve: its Redis command
 * connection is up and its view live (or, if Redis is away, after
 * WR_READY_WAIT_MS, to answer 503s and health checks). So the kernel never
 * hands a connection to a sibling that is still starting. Listeners use
 * SO_REUSEPORT, so every process has its own socket on the same port.
 *
 * Ownership: the wr_gateway_t lives for the whole process and owns the
 * config, the connections, the view and the push hub.
 */
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "gateway.h"
#include "log.h"
#include "verify_cache.h"
#include "master.h"
#include "upstream.h"
#include "presence.h"
#include "upstream.h"
#include "push.h"
#include "view.h"
#include "ws.h"

#include "gateway/page_html.h"

#define WR_READY_WAIT_MS 5000

static wr_gateway_t gw;
static uv_signal_t sigterm, sigint;
static uv_timer_t drain, ready;
static int64_t started_ms;

wr_gw_room_t *wr_gateway_room(wr_gateway_t *g, const char *aud)
{
    for (size_t i = 0; i < g->num_rooms; i++)
        if (strcmp(g->rooms[i].conf->name, aud) == 0)
            return &g->rooms[i];
    return NULL;
}

static h2o_iovec_t lowercase_dup(const char *s)
{
    h2o_iovec_t v = h2o_strdup(NULL, s, SIZE_MAX);
    h2o_strtolower(v.base, v.len);
    return v;
}

static int read_file(const char *path, h2o_iovec_t *out)
{
    FILE *fp = fopen(path, "rb");
    long n;
    if (fp == NULL)
        return WR_ERROR;
    if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return WR_ERROR;
    }
    out->base = wr_malloc((size_t)n + 1);
    out->len = fread(out->base, 1, (size_t)n, fp);
    out->base[out->len] = '\0';
    fclose(fp);
    return WR_OK;
}

static void on_accept(uv_stream_t *listener, int status)
{
    uv_tcp_t *conn;
    h2o_socket_t *sock;

    if (status != 0)
        return;
    conn = wr_malloc(sizeof(*conn));
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    h2o_accept(&gw.accept_ctx, sock);
}

int wr_listen_fd(const wr_listen_t *l)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM}, *ai;
    char port[8];
    int fd = -1, on = 1, err;

    snprintf(port, sizeof(port), "%d", l->port);
    if ((err = getaddrinfo(l->host, port, &hints, &ai)) != 0) {
        wr_error("listen on \"%s\" port %d: %s", l->host, l->port, gai_strerror(err));
        return -1;
    }
    if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, 4096) != 0) {
        wr_error("listen on \"%s\" port %d: %s() failed: %s", l->host, l->port, fd < 0 ? "socket" : "bind/listen",
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Opens one HTTP listener. Returns WR_OK or WR_ERROR after logging. */
static int open_listener(const wr_listen_t *l, uv_tcp_t *tcp)
{
    int fd = wr_listen_fd(l), err;

    if (fd < 0)
        return WR_ERROR;
    uv_tcp_init(gw.loop, tcp);
    if ((err = uv_tcp_open(tcp, fd)) != 0 || (err = uv_listen((uv_stream_t *)tcp, 4096, on_accept)) != 0) {
        wr_error("listen on \"%s\" port %d: %s", l->host, l->port, uv_strerror(err));
        return WR_ERROR;
    }
    return WR_OK;
}

static void on_command_link(wr_redis_t *r, int up, void *data)
{
    wr_view_on_command_link(gw.view, up);
    if (up)
        wr_presence_refresh_all(gw.presence);
}

static void on_drained(uv_timer_t *t)
{
    /* The final events had their moment to go out; now the WebSocket side
     * can be torn down (its context closes every connection at once). */
    if (gw.ws != NULL)
        wr_ws_free(gw.ws);
    uv_stop(gw.loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
    wr_info("stopping on signal %d", signum);
    uv_signal_stop(&sigterm);
    uv_signal_stop(&sigint);
    if (uv_is_active((uv_handle_t *)&ready))
        uv_timer_stop(&ready);
    else
        for (size_t i = 0; i < gw.conf->gateway.num_listen; i++)
            uv_close((uv_handle_t *)&gw.listeners[i], NULL);
    /* Waiting clients are told to reconnect (to a sibling, or to this
     * gateway once it is back): their places are in Redis. */
    wr_push_close_all(gw.push, "shutdown");
    if (gw.ws != NULL)
        wr_ws_stop_accepting(gw.ws);
    wr_sse_stop();
    wr_presence_free(gw.presence);
    /* Pending Redis commands fail first (their requests get 503), while the view still exists. */
    wr_redis_free(gw.redis);
    wr_view_free(gw.view);
    /* Requests already being proxied, and the final events, get a moment to finish. */
    uv_timer_init(gw.loop, &drain);
    uv_timer_start(&drain, on_drained, 250, 0);
}

/* Opens the listeners once the process can serve (see the top of this file). */
static void on_ready_check(uv_timer_t *t)
{
    int can_serve = wr_redis_up(gw.redis) && wr_view_trusted(gw.view);
    if (!can_serve && wr_mono_ms() - started_ms < WR_READY_WAIT_MS)
        return;
    uv_timer_stop(&ready);
    if (!can_serve)
        wr_warn("Redis is not reachable yet; listening anyway (requests that need it get 503)");
    for (size_t i = 0; i < gw.conf->gateway.num_listen; i++)
        if (open_listener(&gw.conf->gateway.listen[i], &gw.listeners[i]) != WR_OK)
            exit(1);
    if (gw.conf->gateway.num_push_listen > 0 && (gw.ws = wr_ws_new(&gw)) == NULL)
        exit(1);
    wr_info("listening on %s:%d%s%s", gw.conf->gateway.listen[0].host, gw.conf->gateway.listen[0].port,
            gw.conf->gateway.num_listen > 1 ? " and more" : "", gw.ws != NULL ? ", WebSocket too" : "");
}

static int setup_rooms(void)
{
    gw.num_rooms = gw.conf->num_rooms;
    gw.rooms = wr_calloc(gw.num_rooms, sizeof(*gw.rooms));
    h2o_hostconf_t *host = h2o_config_register_host(&gw.globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);

    wr_status_register(h2o_config_register_path(host, gw.conf->gateway.status_path, 0), &gw);
    wr_leave_register(h2o_config_register_path(host, gw.conf->gateway.leave_path, 0), &gw);
    wr_health_register(h2o_config_register_path(host, gw.conf->gateway.health_path, 0), &gw);
    wr_sse_register(h2o_config_register_path(host, gw.conf->gateway.events_path, 0), &gw);
    for (size_t i = 0; i < gw.num_rooms; i++) {
        wr_gw_room_t *room = &gw.rooms[i];
        h2o_pathconf_t *path;
        char cookie[160], url[1024];

        room->index = i;
        room->conf = &gw.conf->rooms[i];
        wr_store_room_keys(room->conf->name, &room->keys);
        snprintf(cookie, sizeof(cookie), "%s_%s", gw.conf->gateway.cookie_name, room->conf->name);
        room->cookie = h2o_strdup(NULL, cookie, SIZE_MAX);
        if (room->conf->session_duration_ms > gw.max_session_ms)
            gw.max_session_ms = room->conf->session_duration_ms;
        /* As nginx's proxy_pass: a backend URL without a path gets the
         * request's path unchanged; one with a path gets the room's prefix
         * replaced by it. The proxy always replaces, so give it the room's path. */
        snprintf(url, sizeof(url), "%s%s", room->conf->backend,
                 strchr(room->conf->backend + sizeof("http://") - 1, '/') == NULL ? room->conf->path : "");
        if (h2o_url_parse(h2o_strdup(NULL, url, SIZE_MAX).base, SIZE_MAX, &room->upstream) != 0) {
            wr_error("room \"%s\": cannot parse backend \"%s\"", room->conf->name, room->conf->backend);
            return WR_ERROR;
        }
        if ((room->proxy = wr_upstream_new(gw.loop, room->conf->name, &room->upstream)) == NULL)
            return WR_ERROR;
        path = h2o_config_register_path(host, room->conf->path, 0);
        wr_gate_register(path, &gw, room);
        wr_upstream_register(path, room->proxy);
    }
    return WR_OK;
}

/* One gateway process: everything on one loop, until a signal stops it. */
static int run_process(int index, void *arg)
{
    srandom((unsigned)(getpid() ^ wr_now_ms()));
    wr_store_init();
    signal(SIGPIPE, SIG_IGN);
    gw.token_header = lowercase_dup(gw.conf->gateway.token_header);
    gw.user_header = lowercase_dup(gw.conf->gateway.user_header);

    h2o_config_init(&gw.globalconf);
    gw.globalconf.server_name = h2o_iovec_init(H2O_STRLIT("waitroom")); /* not h2o's name and version */
    gw.loop = uv_default_loop();
    if (setup_rooms() != WR_OK)
        return 1;
    h2o_context_init(&gw.ctx, gw.loop, &gw.globalconf);
    gw.accept_ctx.ctx = &gw.ctx;
    gw.accept_ctx.hosts = gw.globalconf.hosts;
    gw.listeners = wr_calloc(gw.conf->gateway.num_listen, sizeof(*gw.listeners));

    gw.verified = wr_verify_cache_new(gw.conf, 14);
    gw.push = wr_push_new(&gw);
    gw.presence = wr_presence_new(&gw);
    gw.redis = wr_redis_new(gw.loop, gw.conf, "commands", 1, on_command_link, NULL);
    gw.view = wr_view_new(&gw);
    wr_sse_start(&gw);

    uv_signal_init(gw.loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(gw.loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);

    started_ms = wr_mono_ms();
    uv_timer_init(gw.loop, &ready);
    uv_timer_start(&ready, on_ready_check, 0, 10);

    wr_info("started: process %d, %zu room(s)", index, gw.num_rooms);
    uv_run(gw.loop, UV_RUN_DEFAULT);
    wr_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    wr_cli_t cli;
    const char *path;
    char err[1024];
    int nprocs;

    switch (wr_cli_parse(argc, argv, "waitroom-gateway", &cli)) {
    case WR_OK:
        break;
    case WR_DECLINED:
        return 0;
    default:
        return 1;
    }
    path = cli.config_path;
    if ((gw.conf = wr_config_load(path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (gw.conf->gateway.page_template != NULL) {
        if (read_file(gw.conf->gateway.page_template, &gw.page) != WR_OK) {
            fprintf(stderr, "%s: $.gateway.page_template: cannot read \"%s\": %s\n", path,
                    gw.conf->gateway.page_template, strerror(errno));
            return 1;
        }
    } else {
        gw.page = h2o_iovec_init(wr_page_html, sizeof(wr_page_html) - 1);
    }
    if (cli.test_only) {
        printf("%s: configuration is valid\n", path);
        return 0;
    }

    wr_log_init("gateway");
    wr_log_level = wr_log_level_from_name(gw.conf->log_level);
    nprocs = gw.conf->gateway.processes > 0 ? gw.conf->gateway.processes : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nprocs > 1)
        return wr_master_run(nprocs, run_process, NULL);
    return run_process(0, NULL);
}
