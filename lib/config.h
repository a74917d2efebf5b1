/*
 * config.h: the one configuration file both processes read.
 *
 * The file is JSON. Every setting is declared exactly once, in the tables in
 * config.c (name, type, default, bounds, whether it may change while running,
 * and a one-line help text); parsing, defaults and the reference in
 * conf/README.md are all driven by those tables. Unknown keys are errors.
 * Every error names the file, the JSON path and the reason, for example:
 *
 *   conf/waitroom.json: $.rooms[0].total_active_users: must be at least 1 (got 0)
 *
 * Units: durations are stored here in milliseconds. In the file a duration is
 * either a number in the unit its setting declares (session_duration:
 * seconds; tick_ms: milliseconds) or a string with a unit: "250ms", "30s",
 * "5m", "2h".
 *
 * Secrets never appear in the file: tokens.keys[].secret_file names a file
 * (relative paths are relative to the config file's folder) whose bytes, less
 * one trailing newline, are the HMAC secret. Secrets shorter than 32 bytes
 * (256 bits) are refused.
 *
 * Ownership: wr_config_load returns a wr_config_t that owns every string and
 * array in it; wr_config_free releases all of it.
 */
#ifndef WR_CONFIG_H
#define WR_CONFIG_H

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>

#define WR_SECRET_MIN 32

typedef struct wr_listen_s {
    char *host; /* numeric IPv4 or IPv6 address */
    int port;
} wr_listen_t;

typedef struct wr_key_s {
    char *kid;
    char *secret_file;
    unsigned char *secret; /* loaded from secret_file */
    size_t secret_len;
    EVP_MAC_CTX *mac; /* HMAC-SHA256 keyed with secret, reset for each use (wr_token_hmac); may be NULL */
} wr_key_t;

typedef struct wr_room_s {
    char *name;     /* [a-z0-9_-]{1,64}; the token audience and the Redis hash tag */
    char *path;     /* protected path prefix, such as "/book" */
    char *backend;  /* upstream URL, "http://127.0.0.1:9000" */
    char *booking_url; /* where an ACTIVE user is sent; defaults to path */
    int64_t total_active_users;
    int64_t new_users_per_minute;
    int64_t session_duration_ms;
    int queueing_status_code; /* 200, 202 or 429 */
    int64_t abandon_grace_ms; /* a waiting user unseen this long loses their place */
} wr_room_t;

typedef struct wr_config_s {
    char *path; /* the file this was read from */
    char *log_level;

    struct {
        char *host; /* numeric address; async hiredis resolves names with a blocking call */
        int port;
        char *unix_socket; /* when set, used instead of host and port */
        char *password_file;
        char *password; /* loaded from password_file */
        int db;
        int64_t connect_timeout_ms;
        int64_t command_timeout_ms;
    } redis;

    struct {
        wr_listen_t *listen;
        size_t num_listen;
        char *status_path;
        char *leave_path;
        char *health_path;
        char *cookie_name;  /* the cookie for room R is "<cookie_name>_<R>" */
        char *token_header; /* request header carrying a token, "Queue-Token" */
        char *user_header;  /* header telling the backend who the user is */
        char *page_template;
        int64_t poll_interval_ms;
        int processes;           /* 0: one per core */
        wr_listen_t *push_listen; /* WebSocket listeners (libwebsockets); none: WebSocket off */
        size_t num_push_listen;
        char *events_path;       /* SSE */
        char *ws_path;           /* WebSocket, on the push listeners */
        int64_t heartbeat_interval_ms;
    } gateway;

    struct {
        int64_t tick_ms;
    } worker;

    struct {
        char *issuer;
        wr_key_t *keys;
        size_t num_keys;
        char *signing_kid;
        int64_t clock_skew_ms;
        int64_t queue_token_ttl_ms;
    } tokens;

    wr_room_t *rooms;
    size_t num_rooms;
} wr_config_t;

/*
 * Reads and validates the file. Returns the config, or NULL with a message
 * of the form "FILE: $.json.path: reason" written to err (errlen bytes).
 * The caller frees the result with wr_config_free.
 */
wr_config_t *wr_config_load(const char *path, char *err, size_t errlen);

/* Same, from a string; base_dir resolves relative secret files, name is used in messages. */
wr_config_t *wr_config_parse(const char *json, size_t len, const char *name, const char *base_dir, char *err, size_t errlen);

void wr_config_free(wr_config_t *conf);

/* The room called name, or NULL. Borrowed from conf. */
const wr_room_t *wr_config_room(const wr_config_t *conf, const char *name, size_t len);

/* The key called kid, or NULL. Borrowed from conf. */
const wr_key_t *wr_config_key(const wr_config_t *conf, const char *kid, size_t len);

/* Writes the settings reference (Markdown, generated from the tables) to fp. */
#include <stdio.h>
void wr_config_write_reference(FILE *fp);

#endif
