/*
 * config.c: the settings tables, and the one engine they drive.
 *
 * Every setting is declared exactly once, in the tables below: its JSON
 * name, its type, where it lands in wr_config_t (an offsetof that the FIELD
 * macros check at compile time against the field's C type), whether it is
 * required or else its default, its bounds, for a duration the unit a bare
 * number counts in, whether it may change at run time, and a one-line help
 * text. A section (the top level, "redis", one entry of "rooms", ...) is a
 * table of settings plus an optional check for rules that span settings.
 * Objects and arrays of objects point at their section's table, so the
 * tables form a tree shaped like the JSON.
 *
 * One walk of that tree parses a file, section by section:
 *   1. a key the table does not declare is an error;
 *   2. each setting the file gives is parsed and held to its type, bounds and
 *      format rule;
 *   3. each setting the file leaves out is reported missing if it is
 *      required, or else given its default. This is the only place defaults
 *      are applied. A default is JSON text, parsed by the code of step 2, so
 *      it obeys the same rules as the file; the two that copy another
 *      setting (a room's booking_url, tokens.signing_kid) copy a required
 *      one, which step 2 has already parsed;
 *   4. the section's check runs: uniqueness, cross references, and the
 *      secret files, which are read here.
 * The first error stops the walk. wr_config_free walks the same tree to free
 * what the parse allocated, and wr_config_write_reference walks it to write
 * the Markdown reference that conf/README.md carries.
 *
 * Errors read "FILE: $.json.path: reason". The parse context keeps the JSON
 * path of the value at hand, pushing a segment on the way down and popping
 * it on the way up, so no check has to know where it is.
 *
 * The mutable flag is declared but not yet used: nothing reloads the file.
 * It records which settings a reload may change in place (a room's admission
 * settings); all others need a restart.
 *
 * Ownership: every string and array in a wr_config_t is allocated here and
 * belongs to it; wr_config_free releases them, wiping secrets and the Redis
 * password first. The parsed JSON never outlives wr_config_parse.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "token.h"

/*
 * The largest config file and secret file read. Far beyond any real one,
 * they stop a wrong path (a device, a log) from being read without end.
 */
#define CONFIG_FILE_MAX (1024 * 1024)
#define SECRET_FILE_MAX 4096
/* Longest value quoted in an error message, so that one value cannot crowd out the rest. */
#define QUOTE_MAX 256
#define QUOTE_SIZE (QUOTE_MAX + 16)
#define PATH_LEN_MAX (PATH_MAX - 1)

typedef enum {
    T_INT,      /* a JSON integer, into an int or an int64_t */
    T_STRING,   /* a JSON string, into a char * */
    T_ENUM_STR, /* one of a list of strings, into a char * */
    T_ENUM_INT, /* one of a list of integers, into an int */
    T_DURATION, /* a number in the setting's unit, or "30s"; into int64_t milliseconds */
    T_OBJECT,   /* a nested section, into a struct */
    T_ARRAY,    /* an array of nested sections, into a pointer and a size_t count */
} type_t;

#define F_REQUIRED 0x01 /* no default: the file must give it */
#define F_MUTABLE 0x02  /* a reload may change it in place (nothing reloads yet) */
#define F_UNIQUE 0x04   /* in an array's entries: no two entries may share the value */
#define F_FILE 0x08     /* a file name; a relative one is taken from the config file's folder */
#define F_ROUTE 0x10    /* a path the gateway answers itself: distinct from the others, and no room may overlap it */

typedef struct ctx_s ctx_t;

/*
 * A format rule for a string setting, beyond its length bounds. check
 * returns WR_OK, or WR_ERROR after writing the reason with fail(); doc says
 * what is allowed, for the reference.
 */
typedef struct rule_s {
    int (*check)(ctx_t *c, const char *s, const struct rule_s *r);
    const char *arg; /* the check's parameter: the allowed characters, or a reason to add */
    const char *doc;
} rule_t;

typedef struct section_s section_t;

typedef struct setting_s {
    const char *name;
    type_t type;
    unsigned flags;
    size_t offset; /* of the field, from the start of the section's struct */
    size_t size;   /* of an integer field: sizeof(int) or sizeof(int64_t) */
    /* The default as JSON text, parsed like a value in the file; NULL with F_REQUIRED clear: no value (NULL or 0). */
    const char *def;
    /* A default copied from another setting of the same section, which must be a required one; derive_doc names it. */
    const char *(*derive)(const void *base);
    const char *derive_doc;
    /* Integer: the value. Duration: milliseconds. String: bytes (none when max is 0). Array: entries. */
    int64_t min, max;
    int64_t unit_ms;          /* duration: what a bare number counts, 1 (ms) or 1000 (s) */
    const char *const *names; /* enum of strings, NULL-terminated */
    const int *ints;          /* enum of integers */
    size_t num_ints;
    const rule_t *rule;
    const section_t *section; /* object, array */
    size_t count_offset;      /* array: the size_t that holds the entry count */
    size_t elem_size;         /* array: the size of one entry's struct */
    const char *help;
} setting_t;

struct section_s {
    const setting_t *settings;
    size_t num;
    /* Rules across this section's settings, run once they all have values. */
    int (*check)(ctx_t *c, void *base);
    /* Frees what check added beyond the table's own fields. */
    void (*release)(void *base);
};

struct ctx_s {
    const char *name;     /* the file, for messages */
    const char *base_dir; /* where relative file names start; NULL: the working directory */
    char *err;
    size_t errlen;
    char path[256]; /* the JSON path of the value at hand, "$.rooms[0].name" */
    size_t pathlen;
};

typedef struct strbuf_s {
    char *p;
    size_t size, len;
} strbuf_t;

/* The anonymous structs inside wr_config_t, named so that FIELD can take offsets in them. */
typedef __typeof__(((wr_config_t *)0)->redis) redis_conf_t;
typedef __typeof__(((wr_config_t *)0)->gateway) gateway_conf_t;
typedef __typeof__(((wr_config_t *)0)->worker) worker_conf_t;
typedef __typeof__(((wr_config_t *)0)->tokens) tokens_conf_t;

/*
 * Each FIELD macro gives a setting its type and its place in the struct.
 * The _Generic has one branch per C type the setting type can store, so a
 * table entry that points at a field of the wrong type does not compile.
 * (clang-format 14 does not know _Generic and would tear these apart.)
 */
/* clang-format off */
#define OFFSET_AS(T, m, ctype) _Generic(((T *)0)->m, ctype: offsetof(T, m))
#define OFFSET_INT(T, m) _Generic(((T *)0)->m, int: offsetof(T, m), int64_t: offsetof(T, m))
#define FIELD_INT(T, m) .type = T_INT, .offset = OFFSET_INT(T, m), .size = sizeof(((T *)0)->m)
#define FIELD_STR(T, m) .type = T_STRING, .offset = OFFSET_AS(T, m, char *)
#define FIELD_ENUM_STR(T, m, list) .type = T_ENUM_STR, .offset = OFFSET_AS(T, m, char *), .names = (list)
#define FIELD_ENUM_INT(T, m, list)                                                                                     \
    .type = T_ENUM_INT, .offset = OFFSET_AS(T, m, int), .size = sizeof(int), .ints = (list),                           \
    .num_ints = WR_ARRAY_SIZE(list)
#define FIELD_DURATION(T, m, unit) .type = T_DURATION, .offset = OFFSET_AS(T, m, int64_t), .unit_ms = (unit)
#define FIELD_OBJECT(T, m, sec) .type = T_OBJECT, .offset = offsetof(T, m), .section = &(sec)
#define FIELD_ARRAY(T, m, n, E, sec)                                                                                   \
    .type = T_ARRAY, .offset = OFFSET_AS(T, m, E *), .count_offset = OFFSET_AS(T, n, size_t),                          \
    .elem_size = sizeof(E), .section = &(sec)
/* clang-format on */

#define MS 1
#define SECOND 1000
#define MINUTE (60 * SECOND)
#define HOUR (60 * MINUTE)
#define DAY (24 * (int64_t)HOUR)

static int check_ip(ctx_t *c, const char *s, const rule_t *r);
static int check_charset(ctx_t *c, const char *s, const rule_t *r);
static int check_route(ctx_t *c, const char *s, const rule_t *r);
static int check_room_path(ctx_t *c, const char *s, const rule_t *r);
static int check_backend(ctx_t *c, const char *s, const rule_t *r);
static int check_booking_url(ctx_t *c, const char *s, const rule_t *r);
static int check_redis(ctx_t *c, void *base);
static int check_gateway(ctx_t *c, void *base);
static int check_key(ctx_t *c, void *base);
static int check_tokens(ctx_t *c, void *base);
static int check_top(ctx_t *c, void *base);
static void release_redis(void *base);
static void release_key(void *base);
static const char *first_kid(const void *base);
static const char *room_path(const void *base);

/* ---- The tables, from the leaves up to the top level. ---- */

#define LOWER "abcdefghijklmnopqrstuvwxyz"
#define UPPER "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define DIGIT "0123456789"

static const rule_t rule_ip = {check_ip, "", "numeric IPv4 or IPv6 address"};
static const rule_t rule_redis_host = {check_ip, " (hiredis resolves names with a blocking call)",
                                       "numeric IPv4 or IPv6 address"};
static const rule_t rule_room_name = {check_charset, LOWER DIGIT "_-", "[a-z0-9_-]"};
static const rule_t rule_kid = {check_charset, UPPER LOWER DIGIT "._-", "[A-Za-z0-9._-]"};
static const rule_t rule_cookie = {check_charset, UPPER LOWER DIGIT "_-", "[A-Za-z0-9_-]"};
static const rule_t rule_header = {check_charset, UPPER LOWER DIGIT "-", "[A-Za-z0-9-]"};
static const rule_t rule_route = {check_route, NULL, "starts with `/`"};
static const rule_t rule_room_path = {
    check_room_path, NULL, "starts with `/`; no trailing `/` (but `/` itself); may not overlap the gateway's paths"};
static const rule_t rule_backend = {check_backend, NULL, "`http://IP:PORT[/path]`: numeric IP, IPv6 in brackets"};
static const rule_t rule_booking_url = {check_booking_url, NULL, "a path (`/...`) or an `http://` or `https://` URL"};

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const int status_codes[] = {200, 202, 429};

static const setting_t listen_settings[] = {
    {"host", FIELD_STR(wr_listen_t, host), .flags = F_REQUIRED, .rule = &rule_ip, .help = "Address to accept HTTP on."},
    {"port", FIELD_INT(wr_listen_t, port), .flags = F_REQUIRED, .min = 1, .max = 65535,
     .help = "Port to accept HTTP on."},
};
static const section_t listen_section = {listen_settings, WR_ARRAY_SIZE(listen_settings), NULL, NULL};

static const setting_t redis_settings[] = {
    {"host", FIELD_STR(redis_conf_t, host), .def = "\"127.0.0.1\"", .rule = &rule_redis_host,
     .help = "Address of the Redis server: numeric, as hiredis resolves names with a blocking call."},
    {"port", FIELD_INT(redis_conf_t, port), .def = "6379", .min = 1, .max = 65535,
     .help = "TCP port of the Redis server."},
    {"unix_socket", FIELD_STR(redis_conf_t, unix_socket), .min = 1, .max = 107,
     .help = "Path of Redis's Unix socket, used as given (make it absolute); when set, host and port are not used."},
    {"password_file", FIELD_STR(redis_conf_t, password_file), .flags = F_FILE, .min = 1, .max = PATH_LEN_MAX,
     .help = "File holding the Redis password (AUTH); one trailing newline is ignored."},
    {"db", FIELD_INT(redis_conf_t, db), .def = "0", .min = 0, .max = 15, .help = "Redis database number (SELECT)."},
    {"connect_timeout", FIELD_DURATION(redis_conf_t, connect_timeout_ms, MS), .def = "1000", .min = 10 * MS,
     .max = MINUTE, .help = "How long a connection to Redis may take to open."},
    {"command_timeout", FIELD_DURATION(redis_conf_t, command_timeout_ms, MS), .def = "2000", .min = 10 * MS,
     .max = MINUTE, .help = "How long a Redis command may take to answer."},
};
static const section_t redis_section = {redis_settings, WR_ARRAY_SIZE(redis_settings), check_redis, release_redis};

static const setting_t gateway_settings[] = {
    {"listen", FIELD_ARRAY(gateway_conf_t, listen, num_listen, wr_listen_t, listen_section),
     .def = "[{\"host\": \"127.0.0.1\", \"port\": 8080}]", .min = 1, .max = 16,
     .help = "Addresses the gateway accepts HTTP on."},
    {"status_path", FIELD_STR(gateway_conf_t, status_path), .flags = F_ROUTE, .def = "\"/queue/status\"", .min = 1,
     .max = 256, .rule = &rule_route, .help = "Path the waiting page polls for the user's place in line."},
    {"leave_path", FIELD_STR(gateway_conf_t, leave_path), .flags = F_ROUTE, .def = "\"/queue/leave\"", .min = 1,
     .max = 256, .rule = &rule_route, .help = "Path a user calls to give up their place."},
    {"health_path", FIELD_STR(gateway_conf_t, health_path), .flags = F_ROUTE, .def = "\"/healthz\"", .min = 1,
     .max = 256, .rule = &rule_route, .help = "Path that reports the gateway's health, for load balancers."},
    {"cookie_name", FIELD_STR(gateway_conf_t, cookie_name), .def = "\"waitroom\"", .min = 1, .max = 64,
     .rule = &rule_cookie, .help = "Cookie name prefix: the cookie for room R is `<cookie_name>_<R>`."},
    {"token_header", FIELD_STR(gateway_conf_t, token_header), .def = "\"Queue-Token\"", .min = 1, .max = 64,
     .rule = &rule_header, .help = "Request header that may carry a token instead of the cookie."},
    {"user_header", FIELD_STR(gateway_conf_t, user_header), .def = "\"Waitroom-User\"", .min = 1, .max = 64,
     .rule = &rule_header, .help = "Header added to proxied requests that tells the backend who the user is."},
    {"page_template", FIELD_STR(gateway_conf_t, page_template), .flags = F_FILE, .min = 1, .max = PATH_LEN_MAX,
     .help = "HTML file to serve as the waiting page instead of the built-in one; must be readable."},
    {"poll_interval", FIELD_DURATION(gateway_conf_t, poll_interval_ms, SECOND), .def = "\"3s\"", .min = SECOND,
     .max = MINUTE, .help = "How often the waiting page asks for the user's place in line."},
    {"processes", FIELD_INT(gateway_conf_t, processes), .def = "0", .min = 0, .max = 64,
     .help = "Gateway processes a master forks, sharing the listeners (SO_REUSEPORT); 0: one per core."},
    {"push_listen", FIELD_ARRAY(gateway_conf_t, push_listen, num_push_listen, wr_listen_t, listen_section),
     .def = "[]", .min = 0, .max = 16, .help = "Addresses the WebSocket listener accepts on; none: WebSocket off."},
    {"events_path", FIELD_STR(gateway_conf_t, events_path), .flags = F_ROUTE, .def = "\"/queue/events\"", .min = 1,
     .max = 256, .rule = &rule_route, .help = "Path of the Server-Sent Events stream of the user's place in line."},
    {"ws_path", FIELD_STR(gateway_conf_t, ws_path), .def = "\"/queue/ws\"", .min = 1, .max = 256,
     .rule = &rule_route, .help = "Path of the WebSocket stream of the user's place in line, on push_listen."},
    {"heartbeat_interval", FIELD_DURATION(gateway_conf_t, heartbeat_interval_ms, SECOND), .def = "\"15s\"",
     .min = SECOND, .max = 5 * MINUTE, .help = "Period of SSE heartbeat comments and WebSocket pings."},
};
static const section_t gateway_section = {gateway_settings, WR_ARRAY_SIZE(gateway_settings), check_gateway, NULL};

static const setting_t worker_settings[] = {
    {"tick_ms", FIELD_DURATION(worker_conf_t, tick_ms, MS), .def = "100", .min = 10 * MS, .max = 10 * SECOND,
     .help = "How often the worker admits users from the queues."},
};
static const section_t worker_section = {worker_settings, WR_ARRAY_SIZE(worker_settings), NULL, NULL};

static const setting_t key_settings[] = {
    {"kid", FIELD_STR(wr_key_t, kid), .flags = F_REQUIRED | F_UNIQUE, .min = 1, .max = WR_NAME_MAX, .rule = &rule_kid,
     .help = "Key id, written in each token's header to say which key signed it."},
    {"secret_file", FIELD_STR(wr_key_t, secret_file), .flags = F_REQUIRED | F_FILE, .min = 1, .max = PATH_LEN_MAX,
     .help = "File holding the HMAC secret: at least 32 bytes once one trailing newline is dropped."},
};
static const section_t key_section = {key_settings, WR_ARRAY_SIZE(key_settings), check_key, release_key};

static const setting_t tokens_settings[] = {
    {"issuer", FIELD_STR(tokens_conf_t, issuer), .def = "\"waitroom\"", .min = 1, .max = 128,
     .help = "The iss claim written into every token and required of every token checked."},
    {"keys", FIELD_ARRAY(tokens_conf_t, keys, num_keys, wr_key_t, key_section), .flags = F_REQUIRED, .min = 1,
     .max = 16, .help = "HMAC keys: any of them checks a token; signing_kid names the one that signs."},
    {"signing_kid", FIELD_STR(tokens_conf_t, signing_kid), .derive = first_kid, .derive_doc = "the first key's `kid`",
     .min = 1, .max = WR_NAME_MAX, .rule = &rule_kid, .help = "kid of the key that signs new tokens."},
    {"clock_skew", FIELD_DURATION(tokens_conf_t, clock_skew_ms, SECOND), .def = "\"30s\"", .min = 0, .max = 5 * MINUTE,
     .help = "Leeway allowed on exp, nbf and iat when checking a token."},
    {"queue_token_ttl", FIELD_DURATION(tokens_conf_t, queue_token_ttl_ms, SECOND), .def = "\"24h\"", .min = MINUTE,
     .max = 30 * DAY, .help = "How long a queue token (a place in line) stays valid."},
};
static const section_t tokens_section = {tokens_settings, WR_ARRAY_SIZE(tokens_settings), check_tokens, NULL};

static const setting_t room_settings[] = {
    {"name", FIELD_STR(wr_room_t, name), .flags = F_REQUIRED | F_UNIQUE, .min = 1, .max = WR_NAME_MAX,
     .rule = &rule_room_name,
     .help = "The room's id: the token audience, part of its cookie's name, its Redis hash tag."},
    {"path", FIELD_STR(wr_room_t, path), .flags = F_REQUIRED | F_UNIQUE, .min = 1, .max = 256, .rule = &rule_room_path,
     .help = "Path prefix the room protects."},
    {"backend", FIELD_STR(wr_room_t, backend), .flags = F_REQUIRED, .min = 1, .max = 2048, .rule = &rule_backend,
     .help = "Upstream that admitted users' requests are proxied to. Without a path the request's path is passed unchanged; with one, it replaces the room's path prefix (as nginx's proxy_pass)."},
    {"booking_url", FIELD_STR(wr_room_t, booking_url), .derive = room_path, .derive_doc = "the room's `path`", .min = 1,
     .max = 2048, .rule = &rule_booking_url, .help = "Where a user is sent once admitted."},
    {"total_active_users", FIELD_INT(wr_room_t, total_active_users), .flags = F_REQUIRED | F_MUTABLE, .min = 1,
     .max = 10000000, .help = "Most users admitted (active) at the same time."},
    {"new_users_per_minute", FIELD_INT(wr_room_t, new_users_per_minute), .flags = F_REQUIRED | F_MUTABLE, .min = 1,
     .max = 100000000, .help = "Most users admitted per minute."},
    {"session_duration", FIELD_DURATION(wr_room_t, session_duration_ms, SECOND), .flags = F_MUTABLE, .def = "\"5m\"",
     .min = SECOND, .max = DAY, .help = "Length of an admitted user's session (the admission token's lifetime)."},
    {"queueing_status_code", FIELD_ENUM_INT(wr_room_t, queueing_status_code, status_codes), .flags = F_MUTABLE,
     .def = "202", .help = "HTTP status code of the waiting page."},
    {"abandon_grace", FIELD_DURATION(wr_room_t, abandon_grace_ms, SECOND), .flags = F_MUTABLE, .def = "\"30s\"",
     .min = 2 * SECOND, .max = HOUR,
     .help = "A waiting user with no open push connection, not seen for this long, loses their place."},
};
static const section_t room_section = {room_settings, WR_ARRAY_SIZE(room_settings), NULL, NULL};

static const setting_t top_settings[] = {
    {"log_level", FIELD_ENUM_STR(wr_config_t, log_level, log_levels), .def = "\"info\"",
     .help = "Least severe level of message written to standard error."},
    {"redis", FIELD_OBJECT(wr_config_t, redis, redis_section), .def = "{}", .help = "How both processes reach Redis."},
    {"gateway", FIELD_OBJECT(wr_config_t, gateway, gateway_section), .def = "{}", .help = "The HTTP gateway process."},
    {"worker", FIELD_OBJECT(wr_config_t, worker, worker_section), .def = "{}", .help = "The admission worker process."},
    {"tokens", FIELD_OBJECT(wr_config_t, tokens, tokens_section), .flags = F_REQUIRED,
     .help = "Signing and checking of queue and admission tokens."},
    {"rooms", FIELD_ARRAY(wr_config_t, rooms, num_rooms, wr_room_t, room_section), .flags = F_REQUIRED, .min = 1,
     .max = 64, .help = "The waiting rooms, each protecting one path with its own queue."},
};
static const section_t top_section = {top_settings, WR_ARRAY_SIZE(top_settings), check_top, NULL};

static const struct {
    const char *name;
    int64_t ms;
} duration_units[] = {{"d", DAY}, {"h", HOUR}, {"m", MINUTE}, {"s", SECOND}, {"ms", MS}};

/* ---- Messages and the JSON path. ---- */

static int fail(ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes "FILE: $.path: " and the reason to the caller's buffer. Always returns WR_ERROR, so callers can return it. */
static int fail(ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (c->errlen == 0)
        return WR_ERROR;
    n = snprintf(c->err, c->errlen, "%s: %s: ", c->name, c->path);
    if (n >= 0 && (size_t)n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - n, fmt, ap);
        va_end(ap);
    }
    return WR_ERROR;
}

/* Appends to b, cutting short at its end; a reference cell or a list in a message is never worth failing over. */
static void sb_printf(strbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->len + 1 >= b->size)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len = (size_t)n < b->size - b->len ? b->len + n : b->size - 1;
}

/*
 * Writes s into q (QUOTE_SIZE bytes) in double quotes, escaping quotes,
 * backslashes and control characters so a message stays one readable line,
 * and cutting it short with "..." past QUOTE_MAX. Returns q.
 */
static const char *quote(char *q, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    q[n++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (n >= QUOTE_MAX) {
            memcpy(q + n, "...", 3);
            n += 3;
            break;
        }
        if (ch == '"' || ch == '\\') {
            q[n++] = '\\';
            q[n++] = ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            memcpy(q + n, "\\u00", 4);
            q[n + 4] = hex[ch >> 4];
            q[n + 5] = hex[ch & 15];
            n += 6;
        } else {
            q[n++] = ch;
        }
    }
    q[n++] = '"';
    q[n] = '\0';
    return q;
}

/* Pushes ".key" onto the JSON path (or ["key"] when the key is no identifier). Returns the length to pop back to. */
static size_t push_key(ctx_t *c, const char *key)
{
    char q[QUOTE_SIZE];
    size_t mark = c->pathlen;
    int plain = key[0] != '\0' && key[strspn(key, UPPER LOWER DIGIT "_")] == '\0';
    int n;

    if (plain)
        n = snprintf(c->path + mark, sizeof(c->path) - mark, ".%s", key);
    else
        n = snprintf(c->path + mark, sizeof(c->path) - mark, "[%s]", quote(q, key));
    c->pathlen = n >= 0 && (size_t)n < sizeof(c->path) - mark ? mark + n : sizeof(c->path) - 1;
    return mark;
}

static size_t push_index(ctx_t *c, size_t i)
{
    size_t mark = c->pathlen;
    int n = snprintf(c->path + mark, sizeof(c->path) - mark, "[%zu]", i);

    c->pathlen = n >= 0 && (size_t)n < sizeof(c->path) - mark ? mark + n : sizeof(c->path) - 1;
    return mark;
}

static void pop(ctx_t *c, size_t mark)
{
    c->pathlen = mark;
    c->path[mark] = '\0';
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

static const char *unit_name(int64_t unit_ms)
{
    for (size_t i = 0; i < WR_ARRAY_SIZE(duration_units); i++)
        if (duration_units[i].ms == unit_ms)
            return duration_units[i].name;
    return "ms";
}

/* Writes ms in the largest unit that holds it exactly ("1m", "1500ms"); zero in the setting's own unit. */
static const char *format_ms(char *buf, size_t size, int64_t ms, int64_t unit_ms)
{
    size_t i;

    if (ms == 0) {
        snprintf(buf, size, "0%s", unit_name(unit_ms));
        return buf;
    }
    for (i = 0; i < WR_ARRAY_SIZE(duration_units) - 1; i++)
        if (ms % duration_units[i].ms == 0)
            break;
    snprintf(buf, size, "%lld%s", (long long)(ms / duration_units[i].ms), duration_units[i].name);
    return buf;
}

/* ---- Files. ---- */

/*
 * Reads the whole of path into one new NUL-terminated buffer of max + 1
 * bytes (the caller frees it) and sets *len. The buffer is allocated once and
 * never moved, so a secret leaves no stale copy behind in freed memory.
 * Returns WR_OK, or WR_ERROR with errno set (EFBIG: more than max bytes).
 */
/* Wipes a secret's bytes before giving its memory back; p may be NULL. */
static void free_secret(void *p, size_t len)
{
    if (p != NULL) {
        explicit_bzero(p, len);
        free(p);
    }
}

static int read_file(const char *path, size_t max, char **out, size_t *len)
{
    int fd, rc = WR_ERROR, saved;
    char *buf = NULL;
    size_t n = 0;
    ssize_t r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto done;
    buf = wr_malloc(max + 1);
    for (;;) {
        r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto done;
        if (r == 0)
            break;
        n += r;
        if (n > max) {
            errno = EFBIG;
            goto done;
        }
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
    rc = WR_OK;
done:
    saved = errno;
    free_secret(buf, n);
    if (fd >= 0)
        close(fd);
    errno = saved;
    return rc;
}

/* The length of buf less one trailing "\n" or "\r\n": editors and echo add one, and it is never meant as part of a
 * secret. */
static size_t strip_newline(const char *buf, size_t len)
{
    if (len >= 2 && buf[len - 2] == '\r' && buf[len - 1] == '\n')
        return len - 2;
    if (len >= 1 && buf[len - 1] == '\n')
        return len - 1;
    return len;
}

/* Returns path taken from dir, as a new string (caller frees); an absolute path, or a NULL dir, leaves it as it is. */
static char *resolve(const char *dir, const char *path)
{
    size_t dl, pl;
    char *out;

    if (path[0] == '/' || dir == NULL || dir[0] == '\0')
        return wr_strdup(path);
    dl = strlen(dir);
    pl = strlen(path);
    if (dir[dl - 1] == '/')
        dl--;
    out = wr_malloc(dl + 1 + pl + 1);
    memcpy(out, dir, dl);
    out[dl] = '/';
    memcpy(out + dl + 1, path, pl + 1);
    return out;
}

/* The folder of path as a new string (caller frees): "." for a bare name, "/" for a file at the root. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *out;

    if (slash == NULL)
        return wr_strdup(".");
    if (slash == path)
        return wr_strdup("/");
    out = wr_malloc(slash - path + 1);
    memcpy(out, path, slash - path);
    out[slash - path] = '\0';
    return out;
}

/* ---- Format rules for strings. ---- */

static int check_ip(ctx_t *c, const char *s, const rule_t *r)
{
    unsigned char addr[sizeof(struct in6_addr)];
    char q[QUOTE_SIZE];

    if (inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1)
        return WR_OK;
    return fail(c, "must be a numeric IP address%s (got %s)", r->arg, quote(q, s));
}

static int check_charset(ctx_t *c, const char *s, const rule_t *r)
{
    char q[QUOTE_SIZE];

    if (s[strspn(s, r->arg)] == '\0')
        return WR_OK;
    return fail(c, "may only contain the characters %s (got %s)", r->doc, quote(q, s));
}

/* 1 when s has no byte that cannot appear in a request path: a space, a control character, "?" or "#". */
static int path_chars_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch == 0x7f || ch == '?' || ch == '#')
            return 0;
    }
    return 1;
}

static int check_route(ctx_t *c, const char *s, const rule_t *r)
{
    char q[QUOTE_SIZE];

    if (s[0] != '/')
        return fail(c, "must start with \"/\" (got %s)", quote(q, s));
    if (!path_chars_ok(s))
        return fail(c, "must not contain spaces, control characters, \"?\" or \"#\" (got %s)", quote(q, s));
    return WR_OK;
}

/* A room path is a prefix, and "/book/" would not cover "/book" itself, so one spelling is allowed: no trailing "/". */
static int check_room_path(ctx_t *c, const char *s, const rule_t *r)
{
    char q[QUOTE_SIZE];
    size_t len = strlen(s);

    if (check_route(c, s, r) != WR_OK)
        return WR_ERROR;
    if (len > 1 && s[len - 1] == '/')
        return fail(c, "must not end with \"/\" unless it is \"/\" itself (got %s)", quote(q, s));
    return WR_OK;
}

/*
 * The gateway proxies to a numeric address over plain HTTP: a name would
 * need a blocking lookup in the event loop, and TLS to a backend on the same
 * network is not supported.
 */
static int check_backend(ctx_t *c, const char *s, const rule_t *r)
{
    char host[INET6_ADDRSTRLEN + 1], q[QUOTE_SIZE];
    unsigned char addr[sizeof(struct in6_addr)];
    const char *p, *end;
    size_t n;
    long port;
    int family = AF_INET;

    if (strncmp(s, "http://", 7) != 0)
        goto bad;
    p = s + 7;
    if (*p == '[') {
        family = AF_INET6;
        p++;
        end = strchr(p, ']');
        if (end == NULL)
            goto bad;
    } else {
        end = p + strcspn(p, ":/");
    }
    n = end - p;
    if (n == 0 || n >= sizeof(host))
        goto bad;
    memcpy(host, p, n);
    host[n] = '\0';
    if (inet_pton(family, host, addr) != 1)
        goto bad;
    p = end + (family == AF_INET6);
    if (*p++ != ':')
        goto bad;
    n = strspn(p, DIGIT);
    if (n == 0 || n > 5)
        goto bad;
    port = strtol(p, NULL, 10);
    if (port < 1 || port > 65535)
        goto bad;
    p += n;
    if ((*p != '\0' && *p != '/') || !path_chars_ok(p))
        goto bad;
    return WR_OK;
bad:
    return fail(c,
                "must be \"http://\", a numeric IP address (IPv6 in brackets), \":\", a port and optionally a path, "
                "such as \"http://127.0.0.1:9000\" or \"http://[::1]:9000/app\" (got %s)",
                quote(q, s));
}

static int check_booking_url(ctx_t *c, const char *s, const rule_t *r)
{
    char q[QUOTE_SIZE];

    if (s[0] != '/' && strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        return fail(c, "must be a path starting with \"/\" or an http:// or https:// URL (got %s)", quote(q, s));
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return fail(c, "must not contain spaces or control characters (got %s)", quote(q, s));
    return WR_OK;
}

/* ---- Parsing values. ---- */

static void *field_of(void *base, const setting_t *s)
{
    return (char *)base + s->offset;
}

static void store_int(void *field, size_t size, int64_t v)
{
    if (size == sizeof(int)) {
        int i = (int)v;
        memcpy(field, &i, sizeof(i));
    } else {
        memcpy(field, &v, sizeof(v));
    }
}

static const char *get_str(const void *base, const setting_t *s)
{
    char *p;

    memcpy(&p, (const char *)base + s->offset, sizeof(p));
    return p;
}

/* Formats a duration as the file gave it, for messages: 90000 or "25h". */
static const char *given(char *q, const json_t *v)
{
    if (json_is_string(v))
        return quote(q, json_string_value(v));
    snprintf(q, QUOTE_SIZE, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return q;
}

/*
 * A duration is a non-negative integer in the setting's unit, or a string of
 * digits and a unit. Nothing looser (signs, fractions, spaces, "1h30m") is
 * accepted: an odd spelling is more likely a mistake than a wish.
 */
static int parse_duration(ctx_t *c, const setting_t *s, const json_t *v, int64_t *out)
{
    const char *unit = s->unit_ms == SECOND ? "seconds" : "milliseconds";
    char q[QUOTE_SIZE];
    const char *str, *rest;
    int64_t n = 0;
    size_t digits, i;

    if (json_is_integer(v)) {
        n = json_integer_value(v);
        if (n < 0)
            return fail(c, "must not be negative (got %lld)", (long long)n);
        if (n > INT64_MAX / s->unit_ms)
            return fail(c, "is too large (got %lld)", (long long)n);
        *out = n * s->unit_ms;
        return WR_OK;
    }
    if (!json_is_string(v))
        return fail(c, "must be a duration: a whole number of %s, or a string such as \"30s\" (got %s)", unit,
                    json_type_name(v));
    str = json_string_value(v);
    digits = strspn(str, DIGIT);
    rest = str + digits;
    if (digits > 0 && *rest == '\0')
        return fail(c, "has no unit: write \"%s%s\", or the number %s without quotes (got %s)", str,
                    unit_name(s->unit_ms), str, quote(q, str));
    for (i = 0; digits > 0 && i < WR_ARRAY_SIZE(duration_units); i++)
        if (strcmp(rest, duration_units[i].name) == 0)
            break;
    if (digits == 0 || i == WR_ARRAY_SIZE(duration_units))
        return fail(c,
                    "must be a duration: digits and a unit (ms, s, m, h or d) such as \"30s\", or a whole number of %s "
                    "(got %s)",
                    unit, quote(q, str));
    for (const char *p = str; p < rest; p++) {
        if (n > (INT64_MAX - (*p - '0')) / 10)
            return fail(c, "is too large (got %s)", quote(q, str));
        n = n * 10 + (*p - '0');
    }
    if (n > INT64_MAX / duration_units[i].ms)
        return fail(c, "is too large (got %s)", quote(q, str));
    *out = n * duration_units[i].ms;
    return WR_OK;
}

static int parse_section(ctx_t *c, const section_t *sec, json_t *obj, void *base);

/* Fails on the first pair of entries sharing the value of an F_UNIQUE setting; c's path is the array's. */
static int check_unique(ctx_t *c, const section_t *sec, const char *entries, size_t n, size_t elem_size)
{
    char other[sizeof(c->path) + 32], q[QUOTE_SIZE];
    const setting_t *u;
    const char *a, *b;

    for (size_t k = 0; k < sec->num; k++) {
        u = &sec->settings[k];
        if (!(u->flags & F_UNIQUE))
            continue;
        for (size_t j = 1; j < n; j++) {
            b = get_str(entries + j * elem_size, u);
            for (size_t i = 0; i < j; i++) {
                a = get_str(entries + i * elem_size, u);
                if (a == NULL || b == NULL || strcmp(a, b) != 0)
                    continue;
                snprintf(other, sizeof(other), "%s[%zu].%s", c->path, i, u->name);
                push_index(c, j);
                push_key(c, u->name);
                return fail(c, "%s is already used by %s", quote(q, b), other);
            }
        }
    }
    return WR_OK;
}

/* Parses one value v of setting s into its field in base. c's path is the setting's. */
static int parse_value(ctx_t *c, const setting_t *s, json_t *v, void *base)
{
    void *field = field_of(base, s);
    char q[QUOTE_SIZE], choices[128], b1[32], b2[32];
    strbuf_t list = {choices, sizeof(choices), 0};
    json_int_t iv;
    int64_t ms = 0;
    size_t n, i, mark, len;
    const char *str;
    char *entries;
    int rc = WR_ERROR;

    switch (s->type) {
    case T_INT:
    case T_ENUM_INT:
        if (!json_is_integer(v)) {
            fail(c, "must be an integer (got %s)", json_type_name(v));
            goto done;
        }
        iv = json_integer_value(v);
        if (s->type == T_ENUM_INT) {
            for (i = 0; i < s->num_ints && s->ints[i] != iv; i++)
                ;
            if (i == s->num_ints) {
                for (i = 0; i < s->num_ints; i++)
                    sb_printf(&list, "%s%d", i == 0 ? "" : i + 1 == s->num_ints ? " or " : ", ", s->ints[i]);
                fail(c, "must be one of %s (got %" JSON_INTEGER_FORMAT ")", choices, iv);
                goto done;
            }
        } else if (iv < s->min) {
            fail(c, "must be at least %lld (got %" JSON_INTEGER_FORMAT ")", (long long)s->min, iv);
            goto done;
        } else if (iv > s->max) {
            fail(c, "must be at most %lld (got %" JSON_INTEGER_FORMAT ")", (long long)s->max, iv);
            goto done;
        }
        store_int(field, s->size, iv);
        break;

    case T_STRING:
    case T_ENUM_STR:
        if (!json_is_string(v)) {
            fail(c, "must be a string (got %s)", json_type_name(v));
            goto done;
        }
        str = json_string_value(v);
        len = json_string_length(v);
        if (s->type == T_ENUM_STR) {
            for (i = 0; s->names[i] != NULL && strcmp(s->names[i], str) != 0; i++)
                ;
            if (s->names[i] == NULL) {
                for (i = 0; s->names[i] != NULL; i++)
                    sb_printf(&list, "%s\"%s\"", i == 0 ? "" : s->names[i + 1] == NULL ? " or " : ", ", s->names[i]);
                fail(c, "must be one of %s (got %s)", choices, quote(q, str));
                goto done;
            }
        } else if (s->max > 0 && len == 0 && s->min > 0) {
            fail(c, "must not be empty");
            goto done;
        } else if (s->max > 0 && (int64_t)len < s->min) {
            fail(c, "must be at least %lld bytes long (got %zu)", (long long)s->min, len);
            goto done;
        } else if (s->max > 0 && (int64_t)len > s->max) {
            fail(c, "must be at most %lld bytes long (got %zu)", (long long)s->max, len);
            goto done;
        } else if (s->rule != NULL && s->rule->check(c, str, s->rule) != WR_OK) {
            goto done;
        }
        *(char **)field = (s->flags & F_FILE) ? resolve(c->base_dir, str) : wr_strdup(str);
        break;

    case T_DURATION:
        if (parse_duration(c, s, v, &ms) != WR_OK)
            goto done;
        if (ms < s->min) {
            fail(c, "must be at least %s (got %s)", format_ms(b1, sizeof(b1), s->min, s->unit_ms), given(q, v));
            goto done;
        }
        if (ms > s->max) {
            fail(c, "must be at most %s (got %s)", format_ms(b2, sizeof(b2), s->max, s->unit_ms), given(q, v));
            goto done;
        }
        memcpy(field, &ms, sizeof(ms));
        break;

    case T_OBJECT:
        if (!json_is_object(v)) {
            fail(c, "must be an object (got %s)", json_type_name(v));
            goto done;
        }
        if (parse_section(c, s->section, v, field) != WR_OK)
            goto done;
        break;

    case T_ARRAY:
        if (!json_is_array(v)) {
            fail(c, "must be an array (got %s)", json_type_name(v));
            goto done;
        }
        n = json_array_size(v);
        if ((int64_t)n < s->min) {
            fail(c, "must have at least %lld %s (got %zu)", (long long)s->min, s->min == 1 ? "entry" : "entries", n);
            goto done;
        }
        if ((int64_t)n > s->max) {
            fail(c, "must have at most %lld entries (got %zu)", (long long)s->max, n);
            goto done;
        }
        /* The array and its count are stored before the entries are parsed, so that wr_config_free finds a
         * half-parsed array too. */
        entries = wr_calloc(n, s->elem_size);
        memcpy(field, &entries, sizeof(entries));
        memcpy((char *)base + s->count_offset, &n, sizeof(n));
        for (i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            mark = push_index(c, i);
            if (!json_is_object(e)) {
                fail(c, "must be an object (got %s)", json_type_name(e));
                goto done;
            }
            if (parse_section(c, s->section, e, entries + i * s->elem_size) != WR_OK)
                goto done;
            pop(c, mark);
        }
        if (check_unique(c, s->section, entries, n, s->elem_size) != WR_OK)
            goto done;
        break;
    }
    rc = WR_OK;
done:
    return rc;
}

/*
 * Gives setting s, which the file left out, its default. This is the only
 * place defaults are applied. The JSON text of a default goes through
 * parse_value like any value in the file; failing to parse it is a mistake in
 * the tables, which the unit tests load, so it aborts.
 */
static int apply_default(ctx_t *c, const setting_t *s, void *base)
{
    json_t *v = NULL;
    const char *from;
    int rc = WR_ERROR;

    if (s->derive != NULL) {
        from = s->derive(base);
        *(char **)field_of(base, s) = from != NULL ? wr_strdup(from) : NULL;
        rc = WR_OK;
        goto done;
    }
    if (s->def == NULL) {
        rc = WR_OK;
        goto done;
    }
    v = json_loads(s->def, JSON_DECODE_ANY, NULL);
    if (v == NULL) {
        fprintf(stderr, "fatal: %s:%d: the default of %s is not valid JSON\n", __FILE__, __LINE__, c->path);
        abort();
    }
    rc = parse_value(c, s, v, base);
done:
    json_decref(v);
    return rc;
}

static const setting_t *find_setting(const section_t *sec, const char *name)
{
    for (size_t i = 0; i < sec->num; i++)
        if (strcmp(sec->settings[i].name, name) == 0)
            return &sec->settings[i];
    return NULL;
}

/* Parses the JSON object obj into base, following the steps in the comment at the top of this file. */
static int parse_section(ctx_t *c, const section_t *sec, json_t *obj, void *base)
{
    const setting_t *s;
    const char *key;
    json_t *v;
    size_t mark = c->pathlen;
    int rc = WR_ERROR;

    json_object_foreach(obj, key, v)
    {
        if (find_setting(sec, key) == NULL) {
            push_key(c, key);
            fail(c, "unknown setting");
            goto done;
        }
    }
    for (size_t i = 0; i < sec->num; i++) {
        s = &sec->settings[i];
        v = json_object_get(obj, s->name);
        if (v == NULL)
            continue;
        push_key(c, s->name);
        if (parse_value(c, s, v, base) != WR_OK)
            goto done;
        pop(c, mark);
    }
    for (size_t i = 0; i < sec->num; i++) {
        s = &sec->settings[i];
        if (json_object_get(obj, s->name) != NULL)
            continue;
        push_key(c, s->name);
        if (s->flags & F_REQUIRED) {
            fail(c, "required setting is missing");
            goto done;
        }
        if (apply_default(c, s, base) != WR_OK)
            goto done;
        pop(c, mark);
    }
    if (sec->check != NULL && sec->check(c, base) != WR_OK)
        goto done;
    rc = WR_OK;
done:
    /* On failure the path stays where the error was: nothing after it reads the path. */
    if (rc == WR_OK)
        pop(c, mark);
    return rc;
}

/* ---- Section checks: rules across settings, and files. ---- */

static const char *first_kid(const void *base)
{
    const tokens_conf_t *t = base;
    return t->num_keys > 0 ? t->keys[0].kid : NULL;
}

static const char *room_path(const void *base)
{
    return ((const wr_room_t *)base)->path;
}

/*
 * Reads a secret from path into *out (caller frees, after wiping *len bytes),
 * less one trailing newline. Fails, naming the file, when it cannot be read.
 */
static int read_secret(ctx_t *c, const char *path, char **out, size_t *len)
{
    char q[QUOTE_SIZE];
    size_t n;

    if (read_file(path, SECRET_FILE_MAX, out, &n) != WR_OK)
        return fail(c, "cannot read %s: %s", quote(q, path), strerror(errno));
    *len = strip_newline(*out, n);
    return WR_OK;
}

static int check_redis(ctx_t *c, void *base)
{
    redis_conf_t *r = base;
    char q[QUOTE_SIZE];
    char *buf = NULL;
    size_t len = 0, mark = c->pathlen;
    int rc = WR_ERROR;

    if (r->password_file == NULL) {
        rc = WR_OK;
        goto done;
    }
    push_key(c, "password_file");
    if (read_secret(c, r->password_file, &buf, &len) != WR_OK)
        goto done;
    if (len == 0) {
        fail(c, "the password in %s is empty", quote(q, r->password_file));
        goto done;
    }
    /* The password is handed to Redis as a C string, which would end at a NUL. */
    if (memchr(buf, '\0', len) != NULL) {
        fail(c, "the password in %s contains a NUL byte", quote(q, r->password_file));
        goto done;
    }
    buf[len] = '\0';
    r->password = buf;
    buf = NULL;
    pop(c, mark);
    rc = WR_OK;
done:
    free_secret(buf, len);
    return rc;
}

static void release_redis(void *base)
{
    redis_conf_t *r = base;

    if (r->password != NULL)
        free_secret(r->password, strlen(r->password));
}

static int check_gateway(ctx_t *c, void *base)
{
    gateway_conf_t *g = base;
    char q[QUOTE_SIZE], other[sizeof(c->path) + 32];
    const setting_t *a, *b;
    char *real = NULL;
    struct stat st;
    size_t mark = c->pathlen;
    int fd = -1, rc = WR_ERROR;

    for (size_t j = 0; j < WR_ARRAY_SIZE(gateway_settings); j++) {
        b = &gateway_settings[j];
        for (size_t i = 0; (b->flags & F_ROUTE) && i < j; i++) {
            a = &gateway_settings[i];
            if (!(a->flags & F_ROUTE) || strcmp(get_str(g, a), get_str(g, b)) != 0)
                continue;
            snprintf(other, sizeof(other), "%s.%s", c->path, a->name);
            push_key(c, b->name);
            fail(c, "%s is already used by %s", quote(q, get_str(g, b)), other);
            goto done;
        }
    }
    /* Resolved now, so that the gateway finds the same file whatever its working directory later. */
    if (g->page_template != NULL) {
        push_key(c, "page_template");
        real = realpath(g->page_template, NULL);
        if (real == NULL || (fd = open(real, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
            fail(c, "cannot read %s: %s", quote(q, g->page_template), strerror(errno));
            goto done;
        }
        if (!S_ISREG(st.st_mode)) {
            fail(c, "%s is not a regular file", quote(q, real));
            goto done;
        }
        free(g->page_template);
        g->page_template = real;
        real = NULL;
        pop(c, mark);
    }
    rc = WR_OK;
done:
    if (fd >= 0)
        close(fd);
    free(real);
    return rc;
}

static int check_key(ctx_t *c, void *base)
{
    wr_key_t *k = base;
    char q[QUOTE_SIZE];
    char *buf = NULL;
    size_t len = 0, mark = c->pathlen;
    int rc = WR_ERROR;

    push_key(c, "secret_file");
    if (read_secret(c, k->secret_file, &buf, &len) != WR_OK)
        goto done;
    if (len < WR_SECRET_MIN) {
        fail(c, "secret in %s is %zu bytes; at least %d bytes (%d bits) are required", quote(q, k->secret_file), len,
             WR_SECRET_MIN, WR_SECRET_MIN * 8);
        goto done;
    }
    k->secret = (unsigned char *)buf;
    k->secret_len = len;
    buf = NULL;
    k->mac = wr_token_hmac_new(k->secret, k->secret_len); /* NULL: wr_token_hmac falls back to HMAC() */
    pop(c, mark);
    rc = WR_OK;
done:
    free_secret(buf, len);
    return rc;
}

static void release_key(void *base)
{
    wr_key_t *k = base;

    EVP_MAC_CTX_free(k->mac); /* OpenSSL cleanses the keyed state it frees */
    k->mac = NULL;
    free_secret(k->secret, k->secret_len);
}

static int check_tokens(ctx_t *c, void *base)
{
    tokens_conf_t *t = base;
    char q[QUOTE_SIZE], keys[sizeof(c->path) + 8];

    for (size_t i = 0; i < t->num_keys; i++)
        if (strcmp(t->keys[i].kid, t->signing_kid) == 0)
            return WR_OK;
    snprintf(keys, sizeof(keys), "%s.keys", c->path);
    push_key(c, "signing_kid");
    return fail(c, "%s is not the kid of any key in %s", quote(q, t->signing_kid), keys);
}

/* 1 when p is prefix itself or lies under it, whole segments only: "/a" holds "/a/b" but not "/ab". */
static int path_under(const char *prefix, const char *p)
{
    size_t n = strlen(prefix);

    if (strncmp(prefix, p, n) != 0)
        return 0;
    return p[n] == '\0' || p[n] == '/' || (n > 0 && prefix[n - 1] == '/');
}

/*
 * A room whose path contains a gateway path, or lies under one, would put the
 * gateway's own pages behind the queue, or make the room unreachable.
 */
static int check_top(ctx_t *c, void *base)
{
    wr_config_t *conf = base;
    char q1[QUOTE_SIZE], q2[QUOTE_SIZE];
    const setting_t *s;
    const char *route, *path;

    for (size_t i = 0; i < conf->num_rooms; i++) {
        path = conf->rooms[i].path;
        for (size_t k = 0; k < WR_ARRAY_SIZE(gateway_settings); k++) {
            s = &gateway_settings[k];
            if (!(s->flags & F_ROUTE))
                continue;
            route = get_str(&conf->gateway, s);
            if (!path_under(path, route) && !path_under(route, path))
                continue;
            push_key(c, "rooms");
            push_index(c, i);
            push_key(c, "path");
            return fail(c,
                        "%s overlaps the gateway's own path $.gateway.%s (%s); a room's path may neither contain it "
                        "nor lie under it",
                        quote(q1, path), s->name, quote(q2, route));
        }
    }
    return WR_OK;
}

/* ---- Freeing: the same walk as parsing. ---- */

static void release_section(const section_t *sec, void *base)
{
    const setting_t *s;
    char *entries;
    size_t n;

    if (sec->release != NULL)
        sec->release(base);
    for (size_t i = 0; i < sec->num; i++) {
        s = &sec->settings[i];
        switch (s->type) {
        case T_STRING:
        case T_ENUM_STR:
            free(*(char **)field_of(base, s));
            break;
        case T_OBJECT:
            release_section(s->section, field_of(base, s));
            break;
        case T_ARRAY:
            memcpy(&entries, field_of(base, s), sizeof(entries));
            memcpy(&n, (char *)base + s->count_offset, sizeof(n));
            for (size_t k = 0; entries != NULL && k < n; k++)
                release_section(s->section, entries + k * s->elem_size);
            free(entries);
            break;
        case T_INT:
        case T_ENUM_INT:
        case T_DURATION:
            break;
        }
    }
}

/* ---- The public functions. ---- */

wr_config_t *wr_config_parse(const char *json, size_t len, const char *name, const char *base_dir, char *err,
                             size_t errlen)
{
    ctx_t c = {
        .name = name != NULL ? name : "(config)", .base_dir = base_dir, .err = err, .errlen = err != NULL ? errlen : 0};
    wr_config_t *conf = NULL, *ret = NULL;
    json_error_t jerr;
    json_t *root;

    if (c.errlen > 0)
        err[0] = '\0';
    strcpy(c.path, "$");
    c.pathlen = 1;
    /* Duplicate keys are refused because jansson would keep one silently; a non-object top level gets its own message.
     */
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        if (c.errlen > 0 && jerr.line > 0)
            snprintf(err, c.errlen, "%s: line %d, column %d: %s", c.name, jerr.line, jerr.column, jerr.text);
        else if (c.errlen > 0)
            snprintf(err, c.errlen, "%s: %s", c.name, jerr.text);
        goto done;
    }
    if (!json_is_object(root)) {
        fail(&c, "the top level must be an object (got %s)", json_type_name(root));
        goto done;
    }
    conf = wr_calloc(1, sizeof(*conf));
    conf->path = wr_strdup(c.name);
    if (parse_section(&c, &top_section, root, conf) != WR_OK)
        goto done;
    ret = conf;
    conf = NULL;
done:
    wr_config_free(conf);
    json_decref(root);
    return ret;
}

wr_config_t *wr_config_load(const char *path, char *err, size_t errlen)
{
    wr_config_t *conf = NULL;
    char *buf = NULL, *dir = NULL;
    size_t len;

    if (read_file(path, CONFIG_FILE_MAX, &buf, &len) != WR_OK) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    dir = dir_of(path);
    conf = wr_config_parse(buf, len, path, dir, err, errlen);
done:
    free(buf);
    free(dir);
    return conf;
}

void wr_config_free(wr_config_t *conf)
{
    if (conf == NULL)
        return;
    release_section(&top_section, conf);
    free(conf->path);
    free(conf);
}

const wr_room_t *wr_config_room(const wr_config_t *conf, const char *name, size_t len)
{
    if (conf == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < conf->num_rooms; i++)
        if (strlen(conf->rooms[i].name) == len && memcmp(conf->rooms[i].name, name, len) == 0)
            return &conf->rooms[i];
    return NULL;
}

const wr_key_t *wr_config_key(const wr_config_t *conf, const char *kid, size_t len)
{
    if (conf == NULL || kid == NULL)
        return NULL;
    for (size_t i = 0; i < conf->tokens.num_keys; i++)
        if (strlen(conf->tokens.keys[i].kid) == len && memcmp(conf->tokens.keys[i].kid, kid, len) == 0)
            return &conf->tokens.keys[i];
    return NULL;
}

/* ---- The reference: the same tables, written as Markdown. ---- */

static const char *type_doc(const setting_t *s)
{
    switch (s->type) {
    case T_INT:
        return "integer";
    case T_STRING:
        return (s->flags & F_FILE) ? "string (file)" : "string";
    case T_ENUM_STR:
        return "string enum";
    case T_ENUM_INT:
        return "integer enum";
    case T_DURATION:
        return "duration";
    case T_OBJECT:
        return "object";
    case T_ARRAY:
        return "array of objects";
    }
    return "?";
}

/* Writes text into a table cell; a "|" would end the cell early. */
static void put_cell(FILE *fp, const char *text)
{
    fputs("| ", fp);
    for (; *text != '\0'; text++) {
        if (*text == '|')
            fputc('\\', fp);
        fputc(*text, fp);
    }
    fputc(' ', fp);
}

static void write_bounds(strbuf_t *b, const setting_t *s)
{
    char lo[32], hi[32];

    switch (s->type) {
    case T_INT:
        sb_printf(b, "%lld..%lld", (long long)s->min, (long long)s->max);
        break;
    case T_STRING:
        if (s->max > 0)
            sb_printf(b, "%lld..%lld bytes", (long long)s->min, (long long)s->max);
        if (s->rule != NULL)
            sb_printf(b, "%s%s", b->len > 0 ? "; " : "", s->rule->doc);
        if (s->flags & F_UNIQUE)
            sb_printf(b, "; unique among entries");
        if (s->flags & F_ROUTE)
            sb_printf(b, "; distinct from the other gateway paths; no room may overlap it");
        if (s->flags & F_FILE)
            sb_printf(b, "; relative to the config file's folder");
        break;
    case T_ENUM_STR:
        for (size_t i = 0; s->names[i] != NULL; i++)
            sb_printf(b, "%s`%s`", i == 0 ? "" : ", ", s->names[i]);
        break;
    case T_ENUM_INT:
        for (size_t i = 0; i < s->num_ints; i++)
            sb_printf(b, "%s`%d`", i == 0 ? "" : ", ", s->ints[i]);
        break;
    case T_DURATION:
        sb_printf(b, "%s..%s; a bare number is %s", format_ms(lo, sizeof(lo), s->min, s->unit_ms),
                  format_ms(hi, sizeof(hi), s->max, s->unit_ms), s->unit_ms == SECOND ? "seconds" : "milliseconds");
        break;
    case T_ARRAY:
        sb_printf(b, "%lld..%lld entries", (long long)s->min, (long long)s->max);
        break;
    case T_OBJECT:
        break;
    }
    if (b->len == 0)
        sb_printf(b, "-");
}

/* Writes the table of sec, whose settings' paths start with prefix, then the tables of its nested sections. */
static void write_section(FILE *fp, const section_t *sec, const char *prefix)
{
    char path[128], sub[128], cell[512];
    strbuf_t b;
    const setting_t *s;
    size_t plen = strlen(prefix);

    /* A blank line goes before each table but the first, so that the text ends with its last row. */
    if (plen == 0)
        fputs("### Top level\n\n", fp);
    else
        fprintf(fp, "\n### `%.*s`\n\n", (int)(plen - 1), prefix);
    fputs("| Setting | Type | Default | Bounds | Mutable | Description |\n", fp);
    fputs("|---|---|---|---|---|---|\n", fp);
    for (size_t i = 0; i < sec->num; i++) {
        s = &sec->settings[i];
        snprintf(path, sizeof(path), "`%s%s`", prefix, s->name);
        put_cell(fp, path);
        put_cell(fp, type_doc(s));
        b = (strbuf_t){cell, sizeof(cell), 0};
        if (s->flags & F_REQUIRED)
            sb_printf(&b, "required");
        else if (s->derive != NULL)
            sb_printf(&b, "%s", s->derive_doc);
        else if (s->def != NULL)
            sb_printf(&b, "`%s`", s->def);
        else
            sb_printf(&b, "none");
        put_cell(fp, cell);
        b = (strbuf_t){cell, sizeof(cell), 0};
        write_bounds(&b, s);
        put_cell(fp, cell);
        put_cell(fp, (s->flags & F_MUTABLE) ? "yes" : "no");
        put_cell(fp, s->help);
        fputs("|\n", fp);
    }
    for (size_t i = 0; i < sec->num; i++) {
        s = &sec->settings[i];
        if (s->type != T_OBJECT && s->type != T_ARRAY)
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", prefix, s->name, s->type == T_ARRAY ? "[]." : ".");
        write_section(fp, s->section, sub);
    }
}

void wr_config_write_reference(FILE *fp)
{
    write_section(fp, &top_section, "");
}
