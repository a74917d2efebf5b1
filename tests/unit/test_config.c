/*
 * test_config.c: unit tests for lib/config.c.
 *
 * Most tests start from BASE, a small valid config, change one value with
 * mutate() and check that the error names the file, the exact JSON path and
 * the reason; others check the values and defaults a good config loads to.
 * The group setup makes a mkdtemp folder holding the secret, password and
 * template files the configs name, and the teardown removes it.
 *
 * The last tests hold conf/README.md to the tables: it must carry, word for
 * word, the reference wr_config_write_reference generates. The README is
 * found under $WR_SRCDIR, else under the working directory. To refresh it,
 * run this program with WR_REFERENCE_OUT=FILE: the fresh reference is
 * written to FILE, to paste into the README.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

/*
 * By relative path: automake puts the build folder, where autoconf writes
 * its own config.h, ahead of lib/ on the include path.
 */
#include "../../lib/config.h"

#define KEY32 "0123456789abcdef0123456789abcdef"
#define KEY31 "0123456789abcdef0123456789abcde"

static char tmpdir[] = "/tmp/wr_test_config.XXXXXX";

/* Files made in tmpdir by the group setup, and removed by its teardown. */
static const struct {
    const char *name;
    const char *content;
} files[] = {
    {"secret.key", KEY32},
    {"two.key", KEY32 "XY\n"},
    {"nl.key", KEY32 "\n"},
    {"crlf.key", KEY32 "\r\n"},
    {"weak.key", KEY31},
    {"weaknl.key", KEY31 "\n"},
    {"password.txt", "hunter2\r\n"},
    {"empty.txt", "\n"},
    {"page.html", "<html><body>waiting</body></html>\n"},
    {"etc/secret.key", KEY32 "\n"},
    {"etc/waitroom.json", "{\"tokens\": {\"keys\": [{\"kid\": \"k1\", \"secret_file\": \"secret.key\"}]},\n"
                          " \"rooms\": [{\"name\": \"r\", \"path\": \"/r\", \"backend\": \"http://127.0.0.1:9000\",\n"
                          "   \"total_active_users\": 1, \"new_users_per_minute\": 1}]}\n"},
    {"etc/broken.json", "{\n  \"rooms\": [,]\n}\n"},
};

/* A valid config that exercises every section; each error test changes one thing in it. */
static const char BASE[] =
    "{\n"
    "  \"gateway\": {\"listen\": [{\"host\": \"127.0.0.1\", \"port\": 8080}],\n"
    "              \"status_path\": \"/queue/status\", \"leave_path\": \"/queue/leave\", \"health_path\": "
    "\"/healthz\"},\n"
    "  \"tokens\": {\"keys\": [{\"kid\": \"k1\", \"secret_file\": \"secret.key\"},\n"
    "                        {\"kid\": \"k2\", \"secret_file\": \"two.key\"}]},\n"
    "  \"rooms\": [\n"
    "    {\"name\": \"booking\", \"path\": \"/book\", \"backend\": \"http://127.0.0.1:9000\",\n"
    "     \"total_active_users\": 100, \"new_users_per_minute\": 600},\n"
    "    {\"name\": \"tickets\", \"path\": \"/tickets\", \"backend\": \"http://[::1]:9001/app\",\n"
    "     \"total_active_users\": 5, \"new_users_per_minute\": 60}\n"
    "  ]\n"
    "}\n";

typedef struct {
    const char *path;  /* where mutate() changes BASE */
    const char *value; /* JSON text; NULL removes the key */
    const char *want;  /* a substring of the error */
} bad_case_t;

typedef struct {
    const char *path;
    const char *value;
} good_case_t;

/* ---- Helpers. ---- */

static char *tmp_path(const char *name)
{
    static char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
    return buf;
}

static int write_file(const char *path, const char *content)
{
    FILE *fp = fopen(path, "w");
    if (fp == NULL)
        return -1;
    fputs(content, fp);
    return fclose(fp);
}

/* The whole file as a new string (caller frees), or NULL. */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0;
    FILE *mem;
    int ch;

    if (fp == NULL)
        return NULL;
    mem = open_memstream(&buf, &len);
    while ((ch = fgetc(fp)) != EOF)
        fputc(ch, mem);
    fclose(mem);
    fclose(fp);
    return buf;
}

/*
 * Returns base with the value at path (keys joined by "."; numbers index
 * arrays, and one past the end appends) set to the JSON text value, or
 * removed when value is NULL. Missing objects on the way are made. Caller
 * frees.
 */
static char *mutate(const char *base, const char *path, const char *value)
{
    json_t *root = json_loads(base, 0, NULL), *cur, *next, *v = NULL;
    char *copy = strdup(path), *tok, *rest, *save = NULL, *out;
    int index;

    assert_non_null(root);
    if (value != NULL) {
        v = json_loads(value, JSON_DECODE_ANY, NULL);
        if (v == NULL)
            fail_msg("test bug: %s is not JSON", value);
    }
    cur = root;
    tok = strtok_r(copy, ".", &save);
    for (;;) {
        rest = strtok_r(NULL, ".", &save);
        index = tok[strspn(tok, "0123456789")] == '\0' ? atoi(tok) : -1;
        if (rest == NULL)
            break;
        next = index >= 0 ? json_array_get(cur, index) : json_object_get(cur, tok);
        if (next == NULL) {
            next = json_object();
            json_object_set_new(cur, tok, next);
        }
        cur = next;
        tok = rest;
    }
    if (index >= 0 && v == NULL)
        json_array_remove(cur, index);
    else if (index >= 0 && (size_t)index < json_array_size(cur))
        json_array_set_new(cur, index, v);
    else if (index >= 0)
        json_array_append_new(cur, v);
    else if (v == NULL)
        json_object_del(cur, tok);
    else
        json_object_set_new(cur, tok, v);
    out = json_dumps(root, JSON_INDENT(1));
    json_decref(root);
    free(copy);
    return out;
}

static wr_config_t *parse(const char *json, char *err, size_t errlen)
{
    return wr_config_parse(json, strlen(json), "test.json", tmpdir, err, errlen);
}

/* Parses json, which must fail with an error containing want; label says which case failed. */
static void expect_error(const char *json, const char *want, const char *label)
{
    char err[1024];
    wr_config_t *conf = parse(json, err, sizeof(err));

    if (conf != NULL) {
        wr_config_free(conf);
        fail_msg("%s: accepted; wanted an error containing: %s", label, want);
    }
    if (strncmp(err, "test.json: ", 11) != 0)
        fail_msg("%s: the error does not start with the file name: %s", label, err);
    if (strstr(err, want) == NULL)
        fail_msg("%s: the error\n  %s\ndoes not contain\n  %s", label, err, want);
}

static void expect_errors(const bad_case_t *cases, size_t n)
{
    char label[256];

    for (size_t i = 0; i < n; i++) {
        char *json = mutate(BASE, cases[i].path, cases[i].value);
        snprintf(label, sizeof(label), "%s = %s", cases[i].path, cases[i].value ? cases[i].value : "(removed)");
        expect_error(json, cases[i].want, label);
        free(json);
    }
}

/* BASE with path set to value, which must load. Caller frees with wr_config_free. */
static wr_config_t *load_mutated(const char *path, const char *value)
{
    char err[1024];
    char *json = mutate(BASE, path, value);
    wr_config_t *conf = parse(json, err, sizeof(err));

    free(json);
    if (conf == NULL)
        fail_msg("%s = %s: refused: %s", path, value ? value : "(removed)", err);
    return conf;
}

static void expect_loads(const good_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wr_config_free(load_mutated(cases[i].path, cases[i].value));
}

/* The reference text (caller frees). */
static char *reference(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);

    assert_non_null(mem);
    wr_config_write_reference(mem);
    fclose(mem);
    return buf;
}

/*
 * Calls fn for each row of the reference tables, with the setting's path
 * and its mutable column. A row is "| `path` | type | default | bounds |
 * mutable | description |". Returns the number of rows.
 */
static size_t each_setting(const char *ref, void (*fn)(const char *path, const char *mutable_, void *arg), void *arg)
{
    char path[128], mut[8];
    const char *line = ref, *end, *p;
    size_t rows = 0;
    int col;

    for (; *line != '\0'; line = *end ? end + 1 : end) {
        end = strchr(line, '\n');
        if (end == NULL)
            end = line + strlen(line);
        if (strncmp(line, "| `", 3) != 0)
            continue;
        p = strchr(line + 3, '`');
        assert_non_null(p);
        assert_true(p - (line + 3) < (long)sizeof(path));
        memcpy(path, line + 3, p - (line + 3));
        path[p - (line + 3)] = '\0';
        /* The mutable column is the fifth; cells hold no unescaped "|". */
        for (col = 0, p = line; p < end && col < 5; p++)
            if (*p == '|' && p[-1] != '\\')
                col++;
        sscanf(p, " %7s", mut);
        fn(path, mut, arg);
        rows++;
    }
    return rows;
}

/* ---- Setup. ---- */

static int group_setup(void **state)
{
    char dir[PATH_MAX];

    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(dir, sizeof(dir), "%s/etc", tmpdir);
    if (mkdir(dir, 0700) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (write_file(tmp_path(files[i].name), files[i].content) != 0)
            return -1;
    return 0;
}

static int group_teardown(void **state)
{
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(tmp_path(files[i].name));
    rmdir(tmp_path("etc"));
    rmdir(tmpdir);
    return 0;
}

/* ---- Good configs. ---- */

static void test_example_config(void **state)
{
    const char *srcdir = getenv("WR_SRCDIR");
    char path[PATH_MAX], err[1024];
    wr_config_t *conf;
    char *json;

    snprintf(path, sizeof(path), "%s/conf/waitroom.json", srcdir != NULL ? srcdir : ".");
    json = slurp(path);
    if (json == NULL)
        fail_msg("cannot read %s: %s", path, strerror(errno));
    /* The example names "secret.key" beside it; the test folder holds one. */
    conf = wr_config_parse(json, strlen(json), path, tmpdir, err, sizeof(err));
    free(json);
    if (conf == NULL)
        fail_msg("%s", err);

    assert_string_equal(conf->path, path);
    assert_string_equal(conf->log_level, "info");
    assert_string_equal(conf->redis.host, "127.0.0.1");
    assert_int_equal(conf->redis.port, 6379);
    assert_null(conf->redis.unix_socket);
    assert_null(conf->redis.password_file);
    assert_null(conf->redis.password);
    assert_int_equal(conf->redis.db, 0);
    assert_int_equal(conf->redis.connect_timeout_ms, 1000);
    assert_int_equal(conf->redis.command_timeout_ms, 2000);

    assert_int_equal(conf->gateway.num_listen, 1);
    assert_string_equal(conf->gateway.listen[0].host, "127.0.0.1");
    assert_int_equal(conf->gateway.listen[0].port, 8080);
    assert_string_equal(conf->gateway.status_path, "/queue/status");
    assert_string_equal(conf->gateway.leave_path, "/queue/leave");
    assert_string_equal(conf->gateway.health_path, "/healthz");
    assert_string_equal(conf->gateway.cookie_name, "waitroom");
    assert_string_equal(conf->gateway.token_header, "Queue-Token");
    assert_string_equal(conf->gateway.user_header, "Waitroom-User");
    assert_null(conf->gateway.page_template);
    assert_int_equal(conf->gateway.poll_interval_ms, 3000);

    assert_int_equal(conf->worker.tick_ms, 100);

    assert_string_equal(conf->tokens.issuer, "waitroom");
    assert_int_equal(conf->tokens.num_keys, 1);
    assert_string_equal(conf->tokens.keys[0].kid, "k1");
    assert_string_equal(conf->tokens.keys[0].secret_file, tmp_path("secret.key"));
    assert_int_equal(conf->tokens.keys[0].secret_len, 32);
    assert_memory_equal(conf->tokens.keys[0].secret, KEY32, 32);
    assert_string_equal(conf->tokens.signing_kid, "k1");
    assert_int_equal(conf->tokens.clock_skew_ms, 30000);
    assert_int_equal(conf->tokens.queue_token_ttl_ms, 24 * 3600 * 1000);

    assert_int_equal(conf->num_rooms, 1);
    assert_string_equal(conf->rooms[0].name, "booking");
    assert_string_equal(conf->rooms[0].path, "/book");
    assert_string_equal(conf->rooms[0].backend, "http://127.0.0.1:9000");
    assert_string_equal(conf->rooms[0].booking_url, "/book");
    assert_int_equal(conf->rooms[0].total_active_users, 100);
    assert_int_equal(conf->rooms[0].new_users_per_minute, 600);
    assert_int_equal(conf->rooms[0].session_duration_ms, 5 * 60 * 1000);
    assert_int_equal(conf->rooms[0].queueing_status_code, 202);
    wr_config_free(conf);
}

/* Only the required settings: everything else comes from the tables' defaults. */
static void test_defaults(void **state)
{
    static const char json[] = "{\"tokens\": {\"keys\": [{\"kid\": \"a.b_c-9\", \"secret_file\": \"nl.key\"}]},"
                               " \"rooms\": [{\"name\": \"r\", \"path\": \"/r\", \"backend\": \"http://10.0.0.1:80\","
                               " \"total_active_users\": 1, \"new_users_per_minute\": 1}]}";
    char err[1024];
    wr_config_t *conf = parse(json, err, sizeof(err));

    if (conf == NULL)
        fail_msg("%s", err);
    assert_string_equal(conf->log_level, "info");
    assert_string_equal(conf->redis.host, "127.0.0.1");
    assert_int_equal(conf->redis.port, 6379);
    assert_null(conf->redis.unix_socket);
    assert_null(conf->redis.password_file);
    assert_null(conf->redis.password);
    assert_int_equal(conf->redis.db, 0);
    assert_int_equal(conf->redis.connect_timeout_ms, 1000);
    assert_int_equal(conf->redis.command_timeout_ms, 2000);
    assert_int_equal(conf->gateway.num_listen, 1);
    assert_string_equal(conf->gateway.listen[0].host, "127.0.0.1");
    assert_int_equal(conf->gateway.listen[0].port, 8080);
    assert_string_equal(conf->gateway.status_path, "/queue/status");
    assert_string_equal(conf->gateway.leave_path, "/queue/leave");
    assert_string_equal(conf->gateway.health_path, "/healthz");
    assert_string_equal(conf->gateway.cookie_name, "waitroom");
    assert_string_equal(conf->gateway.token_header, "Queue-Token");
    assert_string_equal(conf->gateway.user_header, "Waitroom-User");
    assert_null(conf->gateway.page_template);
    assert_int_equal(conf->gateway.poll_interval_ms, 3000);
    assert_int_equal(conf->worker.tick_ms, 100);
    assert_string_equal(conf->tokens.issuer, "waitroom");
    assert_string_equal(conf->tokens.signing_kid, "a.b_c-9");
    assert_int_equal(conf->tokens.keys[0].secret_len, 32);
    assert_memory_equal(conf->tokens.keys[0].secret, KEY32, 32);
    assert_int_equal(conf->tokens.clock_skew_ms, 30000);
    assert_int_equal(conf->tokens.queue_token_ttl_ms, 86400000);
    assert_string_equal(conf->rooms[0].booking_url, "/r");
    assert_int_equal(conf->rooms[0].session_duration_ms, 300000);
    assert_int_equal(conf->rooms[0].queueing_status_code, 202);
    wr_config_free(conf);
}

static void test_values_given(void **state)
{
    static const char json[] =
        "{\"log_level\": \"debug\","
        " \"redis\": {\"host\": \"::1\", \"port\": 7000, \"unix_socket\": \"/run/redis.sock\","
        "   \"password_file\": \"password.txt\", \"db\": 15, \"connect_timeout\": \"250ms\", \"command_timeout\": "
        "60000},"
        " \"gateway\": {\"listen\": [{\"host\": \"0.0.0.0\", \"port\": 80}, {\"host\": \"::\", \"port\": 443}],"
        "   \"status_path\": \"/s\", \"leave_path\": \"/l\", \"health_path\": \"/h\", \"cookie_name\": \"wr_Q-1\","
        "   \"token_header\": \"X-Token\", \"user_header\": \"X-User\", \"page_template\": \"page.html\","
        "   \"poll_interval\": 10},"
        " \"worker\": {\"tick_ms\": \"1s\"},"
        " \"tokens\": {\"issuer\": \"shop\", \"keys\": [{\"kid\": \"k1\", \"secret_file\": \"crlf.key\"},"
        "   {\"kid\": \"k2\", \"secret_file\": \"two.key\"}], \"signing_kid\": \"k2\", \"clock_skew\": 0,"
        "   \"queue_token_ttl\": \"30d\"},"
        " \"rooms\": [{\"name\": \"a\", \"path\": \"/shop\", \"backend\": \"http://127.0.0.1:9000\","
        "   \"booking_url\": \"https://shop.example/checkout?x=1\", \"total_active_users\": 10000000,"
        "   \"new_users_per_minute\": 100000000, \"session_duration\": \"2h\", \"queueing_status_code\": 429}]}";
    char err[1024], *real;
    wr_config_t *conf = parse(json, err, sizeof(err));

    if (conf == NULL)
        fail_msg("%s", err);
    assert_string_equal(conf->log_level, "debug");
    assert_string_equal(conf->redis.host, "::1");
    assert_int_equal(conf->redis.port, 7000);
    assert_string_equal(conf->redis.unix_socket, "/run/redis.sock");
    assert_string_equal(conf->redis.password_file, tmp_path("password.txt"));
    assert_string_equal(conf->redis.password, "hunter2");
    assert_int_equal(conf->redis.db, 15);
    assert_int_equal(conf->redis.connect_timeout_ms, 250);
    assert_int_equal(conf->redis.command_timeout_ms, 60000);
    assert_int_equal(conf->gateway.num_listen, 2);
    assert_string_equal(conf->gateway.listen[1].host, "::");
    assert_int_equal(conf->gateway.listen[1].port, 443);
    assert_string_equal(conf->gateway.cookie_name, "wr_Q-1");
    assert_string_equal(conf->gateway.token_header, "X-Token");
    assert_string_equal(conf->gateway.user_header, "X-User");
    real = realpath(tmp_path("page.html"), NULL);
    assert_non_null(real);
    assert_string_equal(conf->gateway.page_template, real);
    free(real);
    assert_int_equal(conf->gateway.poll_interval_ms, 10000);
    assert_int_equal(conf->worker.tick_ms, 1000);
    assert_string_equal(conf->tokens.issuer, "shop");
    assert_int_equal(conf->tokens.keys[0].secret_len, 32);
    assert_memory_equal(conf->tokens.keys[0].secret, KEY32, 32);
    assert_int_equal(conf->tokens.keys[1].secret_len, 34);
    assert_string_equal(conf->tokens.signing_kid, "k2");
    assert_int_equal(conf->tokens.clock_skew_ms, 0);
    assert_int_equal(conf->tokens.queue_token_ttl_ms, 30LL * 86400 * 1000);
    assert_string_equal(conf->rooms[0].booking_url, "https://shop.example/checkout?x=1");
    assert_int_equal(conf->rooms[0].total_active_users, 10000000);
    assert_int_equal(conf->rooms[0].new_users_per_minute, 100000000);
    assert_int_equal(conf->rooms[0].session_duration_ms, 2 * 3600 * 1000);
    assert_int_equal(conf->rooms[0].queueing_status_code, 429);
    wr_config_free(conf);
}

static void test_durations_convert(void **state)
{
    static const struct {
        const char *path, *value;
        size_t offset;
        int64_t ms;
    } cases[] = {
        {"rooms.0.session_duration", "90", offsetof(wr_config_t, rooms), 90000},
        {"rooms.0.session_duration", "\"1000ms\"", offsetof(wr_config_t, rooms), 1000},
        {"rooms.0.session_duration", "\"1s\"", offsetof(wr_config_t, rooms), 1000},
        {"rooms.0.session_duration", "\"5m\"", offsetof(wr_config_t, rooms), 300000},
        {"rooms.0.session_duration", "\"1d\"", offsetof(wr_config_t, rooms), 86400000},
        {"rooms.0.session_duration", "\"24h\"", offsetof(wr_config_t, rooms), 86400000},
        {"rooms.0.session_duration", "86400", offsetof(wr_config_t, rooms), 86400000},
        {"worker.tick_ms", "10", offsetof(wr_config_t, worker.tick_ms), 10},
        {"worker.tick_ms", "\"250ms\"", offsetof(wr_config_t, worker.tick_ms), 250},
        {"worker.tick_ms", "\"10s\"", offsetof(wr_config_t, worker.tick_ms), 10000},
        {"worker.tick_ms", "10000", offsetof(wr_config_t, worker.tick_ms), 10000},
        {"tokens.clock_skew", "\"0s\"", offsetof(wr_config_t, tokens.clock_skew_ms), 0},
        {"tokens.clock_skew", "\"0ms\"", offsetof(wr_config_t, tokens.clock_skew_ms), 0},
        {"tokens.clock_skew", "\"5m\"", offsetof(wr_config_t, tokens.clock_skew_ms), 300000},
        {"tokens.clock_skew", "300", offsetof(wr_config_t, tokens.clock_skew_ms), 300000},
        {"tokens.queue_token_ttl", "\"1m\"", offsetof(wr_config_t, tokens.queue_token_ttl_ms), 60000},
        {"tokens.queue_token_ttl", "60", offsetof(wr_config_t, tokens.queue_token_ttl_ms), 60000},
        {"tokens.queue_token_ttl", "\"2h\"", offsetof(wr_config_t, tokens.queue_token_ttl_ms), 7200000},
        {"redis.connect_timeout", "\"10ms\"", offsetof(wr_config_t, redis.connect_timeout_ms), 10},
        {"redis.connect_timeout", "\"60s\"", offsetof(wr_config_t, redis.connect_timeout_ms), 60000},
        {"redis.command_timeout", "\"1m\"", offsetof(wr_config_t, redis.command_timeout_ms), 60000},
        {"gateway.poll_interval", "1", offsetof(wr_config_t, gateway.poll_interval_ms), 1000},
        {"gateway.poll_interval", "\"60s\"", offsetof(wr_config_t, gateway.poll_interval_ms), 60000},
    };
    wr_config_t *conf;
    int64_t got;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        conf = load_mutated(cases[i].path, cases[i].value);
        if (cases[i].offset == offsetof(wr_config_t, rooms))
            got = conf->rooms[0].session_duration_ms;
        else
            memcpy(&got, (char *)conf + cases[i].offset, sizeof(got));
        wr_config_free(conf);
        if (got != cases[i].ms)
            fail_msg("%s = %s: got %lld ms, want %lld", cases[i].path, cases[i].value, (long long)got,
                     (long long)cases[i].ms);
    }
}

static void test_load_file(void **state)
{
    char path[PATH_MAX], cwd[PATH_MAX], err[1024], want[PATH_MAX + 64];
    wr_config_t *conf;

    /* Relative secret files are taken from the config file's folder, not the working directory. */
    snprintf(path, sizeof(path), "%s/etc/waitroom.json", tmpdir);
    conf = wr_config_load(path, err, sizeof(err));
    if (conf == NULL)
        fail_msg("%s", err);
    assert_string_equal(conf->path, path);
    assert_string_equal(conf->tokens.keys[0].secret_file, tmp_path("etc/secret.key"));
    assert_int_equal(conf->tokens.keys[0].secret_len, 32);
    wr_config_free(conf);

    /* A bare file name: its folder is the working directory. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmp_path("etc")), 0);
    conf = wr_config_load("waitroom.json", err, sizeof(err));
    assert_int_equal(chdir(cwd), 0);
    if (conf == NULL)
        fail_msg("%s", err);
    assert_string_equal(conf->tokens.keys[0].secret_file, "./secret.key");
    wr_config_free(conf);

    snprintf(path, sizeof(path), "%s/etc/missing.json", tmpdir);
    assert_null(wr_config_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
    assert_string_equal(err, want);

    snprintf(path, sizeof(path), "%s/etc", tmpdir);
    assert_null(wr_config_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", path);
    assert_string_equal(err, want);

    snprintf(path, sizeof(path), "%s/etc/broken.json", tmpdir);
    assert_null(wr_config_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: line 2, column ", path);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("%s", err);
}

static void test_lookup(void **state)
{
    wr_config_t *conf = load_mutated("log_level", "\"warn\"");

    /* The names are not NUL-terminated where they come from (a URL, a token), so the length decides. */
    assert_ptr_equal(wr_config_room(conf, "booking", 7), &conf->rooms[0]);
    assert_ptr_equal(wr_config_room(conf, "bookingXYZ", 7), &conf->rooms[0]);
    assert_ptr_equal(wr_config_room(conf, "tickets/x", 7), &conf->rooms[1]);
    assert_null(wr_config_room(conf, "book", 4));
    assert_null(wr_config_room(conf, "booking2", 8));
    assert_null(wr_config_room(conf, "", 0));
    assert_null(wr_config_room(NULL, "booking", 7));
    assert_ptr_equal(wr_config_key(conf, "k2", 2), &conf->tokens.keys[1]);
    assert_ptr_equal(wr_config_key(conf, "k1.x", 2), &conf->tokens.keys[0]);
    assert_null(wr_config_key(conf, "k", 1));
    assert_null(wr_config_key(conf, "k12", 3));
    assert_null(wr_config_key(NULL, "k1", 2));
    wr_config_free(conf);
}

static void test_accepted_values(void **state)
{
    static const good_case_t cases[] = {
        {"redis.host", "\"10.1.2.3\""},
        {"redis.host", "\"::1\""},
        {"redis.port", "1"},
        {"redis.port", "65535"},
        {"redis.db", "0"},
        {"gateway.listen.0.host", "\"::ffff:127.0.0.1\""},
        {"rooms.0.backend", "\"http://10.1.2.3:80/\""},
        {"rooms.0.backend", "\"http://[fe80::1]:65535/a/b\""},
        {"rooms.0.booking_url", "\"/book/checkout\""},
        {"rooms.0.booking_url", "\"http://shop.example/\""},
        {"rooms.0.path", "\"/queue/statusx\""},
        {"rooms.0.path", "\"/health\""},
        {"rooms.0.path", "\"/healthzz\""},
        {"rooms.0.path", "\"/book/vip\""},
        {"rooms.0.name", "\"a_b-9\""},
        {"rooms.0.total_active_users", "10000000"},
        {"rooms.0.queueing_status_code", "200"},
        {"tokens.keys.0.secret_file", "\"crlf.key\""},
        {"tokens.signing_kid", "\"k1\""},
        {"log_level", "\"error\""},
        {"redis", "{}"},
        {"gateway", "{}"},
        {"worker", "{}"},
    };
    wr_config_t *conf;
    char *json, abs[PATH_MAX + 2];

    expect_loads(cases, sizeof(cases) / sizeof(cases[0]));

    /* An absolute secret file is used as it is. */
    snprintf(abs, sizeof(abs), "\"%s\"", tmp_path("secret.key"));
    conf = load_mutated("tokens.keys.0.secret_file", abs);
    assert_string_equal(conf->tokens.keys[0].secret_file, tmp_path("secret.key"));
    wr_config_free(conf);

    /* No base folder: relative names are taken from the working directory, as given. */
    json = mutate(BASE, "tokens.keys", "[{\"kid\": \"k\", \"secret_file\": \"nope.key\"}]");
    {
        char err[1024];
        assert_null(wr_config_parse(json, strlen(json), "x.json", NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "x.json: $.tokens.keys[0].secret_file: cannot read \"nope.key\": "));
    }
    free(json);
}

/* ---- Each kind of error names the exact JSON path. ---- */

static void test_syntax_errors(void **state)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{", "test.json: line 1, column 1: "},
        {"{\"log_level\": \"info\",}", "test.json: line 1, column 22: "},
        {"{\n\n  \"rooms\": [1 2]\n}", "test.json: line 3, column "},
        {"{} x", "test.json: line 1, column "},
        {"{\"a\": 1, \"a\": 2}", "duplicate object key"},
        {"", "test.json: "},
        {"[]", "test.json: $: the top level must be an object (got array)"},
        {"42", "test.json: $: the top level must be an object (got integer)"},
        {"\"x\"", "test.json: $: the top level must be an object (got string)"},
        {"null", "test.json: $: the top level must be an object (got null)"},
    };
    char err[1024];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_null(parse(cases[i].json, err, sizeof(err)));
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("%s: the error\n  %s\ndoes not contain\n  %s", cases[i].json, err, cases[i].want);
    }
    /* A duplicate key is refused even where the setting is valid twice: jansson would silently keep one. */
    expect_error("{\"tokens\": {}, \"rooms\": [], \"rooms\": []}", "duplicate object key", "duplicate");
    /* The text is bounded by len, not by a NUL. */
    assert_null(wr_config_parse("{}   ", 1, "test.json", tmpdir, err, sizeof(err)));
    assert_non_null(strstr(err, "test.json: line 1"));
}

static void test_unknown_keys(void **state)
{
    static const bad_case_t cases[] = {
        {"foo", "1", "test.json: $.foo: unknown setting"},
        {"Log_level", "\"info\"", "test.json: $.Log_level: unknown setting"},
        {"gateway.foo", "1", "test.json: $.gateway.foo: unknown setting"},
        {"redis.password", "\"x\"", "test.json: $.redis.password: unknown setting"},
        {"redis.bad key", "1", "test.json: $.redis[\"bad key\"]: unknown setting"},
        {"worker.tick", "100", "test.json: $.worker.tick: unknown setting"},
        {"tokens.secret", "\"x\"", "test.json: $.tokens.secret: unknown setting"},
        {"rooms.1.foo", "true", "test.json: $.rooms[1].foo: unknown setting"},
        {"rooms.0.session_duration_ms", "1000", "test.json: $.rooms[0].session_duration_ms: unknown setting"},
        {"gateway.listen.0.hots", "\"x\"", "test.json: $.gateway.listen[0].hots: unknown setting"},
        {"tokens.keys.1.secret", "\"x\"", "test.json: $.tokens.keys[1].secret: unknown setting"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_missing_required(void **state)
{
    static const bad_case_t cases[] = {
        {"tokens", NULL, "test.json: $.tokens: required setting is missing"},
        {"rooms", NULL, "test.json: $.rooms: required setting is missing"},
        {"rooms.1.name", NULL, "test.json: $.rooms[1].name: required setting is missing"},
        {"rooms.0.path", NULL, "test.json: $.rooms[0].path: required setting is missing"},
        {"rooms.0.backend", NULL, "test.json: $.rooms[0].backend: required setting is missing"},
        {"rooms.0.total_active_users", NULL, "test.json: $.rooms[0].total_active_users: required setting is missing"},
        {"rooms.1.new_users_per_minute", NULL,
         "test.json: $.rooms[1].new_users_per_minute: required setting is missing"},
        {"tokens.keys", NULL, "test.json: $.tokens.keys: required setting is missing"},
        {"tokens.keys.1.kid", NULL, "test.json: $.tokens.keys[1].kid: required setting is missing"},
        {"tokens.keys.0.secret_file", NULL, "test.json: $.tokens.keys[0].secret_file: required setting is missing"},
        {"gateway.listen.0.host", NULL, "test.json: $.gateway.listen[0].host: required setting is missing"},
        {"gateway.listen.0.port", NULL, "test.json: $.gateway.listen[0].port: required setting is missing"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_wrong_types(void **state)
{
    static const bad_case_t cases[] = {
        {"redis.port", "\"6379\"", "test.json: $.redis.port: must be an integer (got string)"},
        {"redis.db", "1.0", "test.json: $.redis.db: must be an integer (got real)"},
        {"redis", "[]", "test.json: $.redis: must be an object (got array)"},
        {"redis.host", "2130706433", "test.json: $.redis.host: must be a string (got integer)"},
        {"gateway", "null", "test.json: $.gateway: must be an object (got null)"},
        {"gateway.listen", "{\"host\": \"::1\", \"port\": 1}",
         "test.json: $.gateway.listen: must be an array (got object)"},
        {"gateway.listen.0", "\"127.0.0.1:8080\"", "test.json: $.gateway.listen[0]: must be an object (got string)"},
        {"rooms", "{}", "test.json: $.rooms: must be an array (got object)"},
        {"rooms.1", "\"x\"", "test.json: $.rooms[1]: must be an object (got string)"},
        {"rooms.0.name", "null", "test.json: $.rooms[0].name: must be a string (got null)"},
        {"rooms.0.total_active_users", "1.5",
         "test.json: $.rooms[0].total_active_users: must be an integer (got real)"},
        {"rooms.0.new_users_per_minute", "true",
         "test.json: $.rooms[0].new_users_per_minute: must be an integer (got boolean)"},
        {"rooms.0.session_duration", "false", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"rooms.0.session_duration", "1.5",
         "test.json: $.rooms[0].session_duration: must be a duration: a whole number of seconds"},
        {"worker.tick_ms", "[100]", "test.json: $.worker.tick_ms: must be a duration: a whole number of milliseconds"},
        {"rooms.0.queueing_status_code", "\"202\"",
         "test.json: $.rooms[0].queueing_status_code: must be an integer (got string)"},
        {"log_level", "3", "test.json: $.log_level: must be a string (got integer)"},
        {"tokens", "[]", "test.json: $.tokens: must be an object (got array)"},
        {"tokens.keys.0", "[]", "test.json: $.tokens.keys[0]: must be an object (got array)"},
        {"tokens.keys.0.secret_file", "{}", "test.json: $.tokens.keys[0].secret_file: must be a string (got object)"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_out_of_bounds(void **state)
{
    static const bad_case_t cases[] = {
        {"rooms.0.total_active_users", "0", "test.json: $.rooms[0].total_active_users: must be at least 1 (got 0)"},
        {"rooms.1.total_active_users", "10000001",
         "test.json: $.rooms[1].total_active_users: must be at most 10000000 (got 10000001)"},
        {"rooms.0.new_users_per_minute", "-5",
         "test.json: $.rooms[0].new_users_per_minute: must be at least 1 (got -5)"},
        {"rooms.0.new_users_per_minute", "100000001",
         "test.json: $.rooms[0].new_users_per_minute: must be at most 100000000 (got 100000001)"},
        {"redis.port", "0", "test.json: $.redis.port: must be at least 1 (got 0)"},
        {"redis.port", "65536", "test.json: $.redis.port: must be at most 65535 (got 65536)"},
        {"redis.port", "4294967297", "test.json: $.redis.port: must be at most 65535 (got 4294967297)"},
        {"redis.db", "16", "test.json: $.redis.db: must be at most 15 (got 16)"},
        {"redis.db", "-1", "test.json: $.redis.db: must be at least 0 (got -1)"},
        {"gateway.listen.0.port", "70000", "test.json: $.gateway.listen[0].port: must be at most 65535 (got 70000)"},
        {"rooms", "[]", "test.json: $.rooms: must have at least 1 entry (got 0)"},
        {"tokens.keys", "[]", "test.json: $.tokens.keys: must have at least 1 entry (got 0)"},
        {"gateway.listen", "[]", "test.json: $.gateway.listen: must have at least 1 entry (got 0)"},
        {"rooms.0.name", "\"\"", "test.json: $.rooms[0].name: must not be empty"},
        {"rooms.0.name", "\"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij12345\"",
         "test.json: $.rooms[0].name: must be at most 64 bytes long (got 65)"},
        {"tokens.issuer", "\"\"", "test.json: $.tokens.issuer: must not be empty"},
        {"gateway.cookie_name", "\"\"", "test.json: $.gateway.cookie_name: must not be empty"},
        {"redis.unix_socket", "\"\"", "test.json: $.redis.unix_socket: must not be empty"},
    };
    char *big, *json;
    json_t *arr;

    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));

    /* Counts and lengths just past the limits, built rather than spelt out. */
    arr = json_array();
    for (int i = 0; i < 65; i++) {
        char name[16], path[16];
        snprintf(name, sizeof(name), "r%d", i);
        snprintf(path, sizeof(path), "/r%d", i);
        json_array_append_new(arr,
                              json_pack("{s:s, s:s, s:s, s:i, s:i}", "name", name, "path", path, "backend",
                                        "http://127.0.0.1:9000", "total_active_users", 1, "new_users_per_minute", 1));
    }
    big = json_dumps(arr, 0);
    json = mutate(BASE, "rooms", big);
    expect_error(json, "test.json: $.rooms: must have at most 64 entries (got 65)", "65 rooms");
    free(json);
    free(big);
    json_decref(arr);

    arr = json_array();
    for (int i = 0; i < 17; i++)
        json_array_append_new(arr, json_pack("{s:s, s:i}", "host", "127.0.0.1", "port", 8000 + i));
    big = json_dumps(arr, 0);
    json = mutate(BASE, "gateway.listen", big);
    expect_error(json, "test.json: $.gateway.listen: must have at most 16 entries (got 17)", "17 listeners");
    free(json);
    free(big);
    json_decref(arr);

    big = calloc(1, 300);
    big[0] = '"';
    big[1] = '/';
    memset(big + 2, 'a', 256);
    big[258] = '"';
    json = mutate(BASE, "gateway.status_path", big);
    expect_error(json, "test.json: $.gateway.status_path: must be at most 256 bytes long (got 257)", "long path");
    free(json);
    free(big);

    big = calloc(1, 300);
    big[0] = '"';
    memset(big + 1, 'i', 129);
    big[130] = '"';
    json = mutate(BASE, "tokens.issuer", big);
    expect_error(json, "test.json: $.tokens.issuer: must be at most 128 bytes long (got 129)", "long issuer");
    free(json);
    free(big);
}

static void test_bad_enums(void **state)
{
    static const bad_case_t cases[] = {
        {"log_level", "\"verbose\"",
         "test.json: $.log_level: must be one of \"error\", \"warn\", \"info\" or \"debug\" (got \"verbose\")"},
        {"log_level", "\"INFO\"", "test.json: $.log_level: must be one of"},
        {"rooms.0.queueing_status_code", "201",
         "test.json: $.rooms[0].queueing_status_code: must be one of 200, 202 or 429 (got 201)"},
        {"rooms.1.queueing_status_code", "503", "test.json: $.rooms[1].queueing_status_code: must be one of"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bad_durations(void **state)
{
    static const bad_case_t cases[] = {
        {"rooms.0.session_duration", "\"5x\"",
         "test.json: $.rooms[0].session_duration: must be a duration: digits and a unit (ms, s, m, h or d) such as "
         "\"30s\", "
         "or a whole number of seconds (got \"5x\")"},
        {"rooms.0.session_duration", "\"-1s\"",
         "test.json: $.rooms[0].session_duration: must be a duration: digits and a unit"},
        {"rooms.0.session_duration", "\"\"",
         "test.json: $.rooms[0].session_duration: must be a duration: digits and a unit"},
        {"rooms.0.session_duration", "\"10\"",
         "test.json: $.rooms[0].session_duration: has no unit: write \"10s\", or the number 10 without quotes (got "
         "\"10\")"},
        {"worker.tick_ms", "\"10\"", "test.json: $.worker.tick_ms: has no unit: write \"10ms\""},
        {"rooms.0.session_duration", "\"1.5s\"", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"rooms.0.session_duration", "\" 5s\"", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"rooms.0.session_duration", "\"5 s\"", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"rooms.0.session_duration", "\"5S\"", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"rooms.0.session_duration", "\"+5s\"", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"rooms.0.session_duration", "\"s\"", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"rooms.0.session_duration", "\"1h30m\"", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"rooms.0.session_duration", "\"5sec\"", "test.json: $.rooms[0].session_duration: must be a duration"},
        {"gateway.poll_interval", "-1", "test.json: $.gateway.poll_interval: must not be negative (got -1)"},
        {"tokens.clock_skew", "\"99999999999999999999s\"",
         "test.json: $.tokens.clock_skew: is too large (got \"99999999999999999999s\")"},
        {"tokens.clock_skew", "\"9223372036854775807d\"", "test.json: $.tokens.clock_skew: is too large"},
        {"tokens.clock_skew", "9223372036854775807",
         "test.json: $.tokens.clock_skew: is too large (got 9223372036854775807)"},
        {"redis.connect_timeout", "\"1w\"", "test.json: $.redis.connect_timeout: must be a duration"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_durations_out_of_bounds(void **state)
{
    static const bad_case_t cases[] = {
        {"rooms.0.session_duration", "\"500ms\"",
         "test.json: $.rooms[0].session_duration: must be at least 1s (got \"500ms\")"},
        {"rooms.0.session_duration", "0", "test.json: $.rooms[0].session_duration: must be at least 1s (got 0)"},
        {"rooms.0.session_duration", "86401", "test.json: $.rooms[0].session_duration: must be at most 1d (got 86401)"},
        {"rooms.1.session_duration", "\"25h\"",
         "test.json: $.rooms[1].session_duration: must be at most 1d (got \"25h\")"},
        {"worker.tick_ms", "5", "test.json: $.worker.tick_ms: must be at least 10ms (got 5)"},
        {"worker.tick_ms", "\"11s\"", "test.json: $.worker.tick_ms: must be at most 10s (got \"11s\")"},
        {"tokens.queue_token_ttl", "\"59s\"", "test.json: $.tokens.queue_token_ttl: must be at least 1m (got \"59s\")"},
        {"tokens.queue_token_ttl", "\"31d\"", "test.json: $.tokens.queue_token_ttl: must be at most 30d (got \"31d\")"},
        {"tokens.clock_skew", "\"301s\"", "test.json: $.tokens.clock_skew: must be at most 5m (got \"301s\")"},
        {"redis.connect_timeout", "\"2m\"", "test.json: $.redis.connect_timeout: must be at most 1m (got \"2m\")"},
        {"redis.command_timeout", "9", "test.json: $.redis.command_timeout: must be at least 10ms (got 9)"},
        {"gateway.poll_interval", "0", "test.json: $.gateway.poll_interval: must be at least 1s (got 0)"},
        {"gateway.poll_interval", "\"2m\"", "test.json: $.gateway.poll_interval: must be at most 1m (got \"2m\")"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_duplicates(void **state)
{
    static const bad_case_t cases[] = {
        {"rooms.1.name", "\"booking\"", "test.json: $.rooms[1].name: \"booking\" is already used by $.rooms[0].name"},
        {"rooms.1.path", "\"/book\"", "test.json: $.rooms[1].path: \"/book\" is already used by $.rooms[0].path"},
        {"tokens.keys.1.kid", "\"k1\"",
         "test.json: $.tokens.keys[1].kid: \"k1\" is already used by $.tokens.keys[0].kid"},
        {"gateway.leave_path", "\"/queue/status\"",
         "test.json: $.gateway.leave_path: \"/queue/status\" is already used by $.gateway.status_path"},
        {"gateway.health_path", "\"/queue/leave\"",
         "test.json: $.gateway.health_path: \"/queue/leave\" is already used by $.gateway.leave_path"},
        {"rooms.2",
         "{\"name\": \"c\", \"path\": \"/tickets\", \"backend\": \"http://127.0.0.1:1\", "
         "\"total_active_users\": 1, \"new_users_per_minute\": 1}",
         "test.json: $.rooms[2].path: \"/tickets\" is already used by $.rooms[1].path"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_paths(void **state)
{
    static const bad_case_t cases[] = {
        {"rooms.0.path", "\"/queue\"",
         "test.json: $.rooms[0].path: \"/queue\" overlaps the gateway's own path $.gateway.status_path "
         "(\"/queue/status\")"},
        {"rooms.0.path", "\"/queue/leave/x\"",
         "test.json: $.rooms[0].path: \"/queue/leave/x\" overlaps the gateway's own path $.gateway.leave_path"},
        {"rooms.1.path", "\"/healthz\"",
         "test.json: $.rooms[1].path: \"/healthz\" overlaps the gateway's own path $.gateway.health_path"},
        {"rooms.0.path", "\"/\"",
         "test.json: $.rooms[0].path: \"/\" overlaps the gateway's own path $.gateway.status_path"},
        {"gateway.health_path", "\"/book/health\"",
         "test.json: $.rooms[0].path: \"/book\" overlaps the gateway's own path $.gateway.health_path "
         "(\"/book/health\")"},
        {"gateway.status_path", "\"/tickets/\"",
         "test.json: $.rooms[1].path: \"/tickets\" overlaps the gateway's own path $.gateway.status_path"},
        {"rooms.0.path", "\"book\"", "test.json: $.rooms[0].path: must start with \"/\" (got \"book\")"},
        {"rooms.0.path", "\"/book/\"",
         "test.json: $.rooms[0].path: must not end with \"/\" unless it is \"/\" itself (got \"/book/\")"},
        {"rooms.0.path", "\"/bo ok\"", "test.json: $.rooms[0].path: must not contain spaces"},
        {"rooms.0.path", "\"/book?x=1\"", "test.json: $.rooms[0].path: must not contain"},
        {"rooms.0.path", "\"/book\\u0001\"",
         "test.json: $.rooms[0].path: must not contain spaces, control characters, \"?\" or \"#\" (got "
         "\"/book\\u0001\")"},
        {"gateway.status_path", "\"queue/status\"", "test.json: $.gateway.status_path: must start with \"/\""},
        {"gateway.leave_path", "\"/leave#x\"", "test.json: $.gateway.leave_path: must not contain"},
        {"rooms.0.booking_url", "\"javascript:alert(1)\"",
         "test.json: $.rooms[0].booking_url: must be a path starting with \"/\" or an http:// or https:// URL"},
        {"rooms.0.booking_url", "\"/a b\"", "test.json: $.rooms[0].booking_url: must not contain spaces"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_addresses(void **state)
{
    static const char *const bad_backends[] = {
        "https://127.0.0.1:9000",   "http://localhost:9000",     "http://127.0.0.1",        "http://127.0.0.1:",
        "http://127.0.0.1:0",       "http://127.0.0.1:65536",    "http://127.0.0.1:123456", "http://::1:9000",
        "http://[::1]9000",         "http://[::1:9000",          "http://[127.0.0.1]:9000", "http://1.2.3:80",
        "http://127.0.0.1:9000app", "http://127.0.0.1:9000/a b", "HTTP://127.0.0.1:9000",   "http://:9000",
        "127.0.0.1:9000",
    };
    static const bad_case_t cases[] = {
        {"redis.host", "\"localhost\"",
         "test.json: $.redis.host: must be a numeric IP address (hiredis resolves names with a blocking call) (got "
         "\"localhost\")"},
        {"redis.host", "\"127.0.0.1:6379\"", "test.json: $.redis.host: must be a numeric IP address"},
        {"redis.host", "\"\"", "test.json: $.redis.host: must be a numeric IP address"},
        {"gateway.listen.0.host", "\"example.com\"",
         "test.json: $.gateway.listen[0].host: must be a numeric IP address (got \"example.com\")"},
        {"gateway.listen.1", "{\"host\": \"[::1]\", \"port\": 1}",
         "test.json: $.gateway.listen[1].host: must be a numeric IP address"},
    };
    char value[128], label[160];

    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
    for (size_t i = 0; i < sizeof(bad_backends) / sizeof(bad_backends[0]); i++) {
        char *json;
        snprintf(value, sizeof(value), "\"%s\"", bad_backends[i]);
        json = mutate(BASE, "rooms.1.backend", value);
        snprintf(label, sizeof(label), "backend %s", bad_backends[i]);
        expect_error(
            json,
            "test.json: $.rooms[1].backend: must be \"http://\", a numeric IP address (IPv6 in brackets), \":\", "
            "a port and optionally a path, such as \"http://127.0.0.1:9000\" or \"http://[::1]:9000/app\"",
            label);
        free(json);
    }
}

static void test_names(void **state)
{
    static const bad_case_t cases[] = {
        {"rooms.0.name", "\"Booking\"",
         "test.json: $.rooms[0].name: may only contain the characters [a-z0-9_-] (got \"Booking\")"},
        {"rooms.0.name", "\"a.b\"", "test.json: $.rooms[0].name: may only contain the characters [a-z0-9_-]"},
        {"tokens.keys.0.kid", "\"k/1\"",
         "test.json: $.tokens.keys[0].kid: may only contain the characters [A-Za-z0-9._-]"},
        {"tokens.signing_kid", "\"../k\"", "test.json: $.tokens.signing_kid: may only contain the characters"},
        {"gateway.cookie_name", "\"wait room\"",
         "test.json: $.gateway.cookie_name: may only contain the characters [A-Za-z0-9_-]"},
        {"gateway.cookie_name", "\"a;b\"", "test.json: $.gateway.cookie_name: may only contain"},
        {"gateway.token_header", "\"Queue_Token\"",
         "test.json: $.gateway.token_header: may only contain the characters [A-Za-z0-9-]"},
        {"gateway.user_header", "\"X:User\"",
         "test.json: $.gateway.user_header: may only contain the characters [A-Za-z0-9-]"},
    };
    expect_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_secrets(void **state)
{
    char want[PATH_MAX + 256], *json;
    wr_config_t *conf;

    /* 31 bytes are refused, with or without a newline after them... */
    json = mutate(BASE, "tokens.keys.0.secret_file", "\"weak.key\"");
    snprintf(want, sizeof(want),
             "test.json: $.tokens.keys[0].secret_file: secret in \"%s\" is 31 bytes; at least 32 bytes (256 bits) are "
             "required",
             tmp_path("weak.key"));
    expect_error(json, want, "31 bytes");
    free(json);
    json = mutate(BASE, "tokens.keys.1.secret_file", "\"weaknl.key\"");
    snprintf(want, sizeof(want), "test.json: $.tokens.keys[1].secret_file: secret in \"%s\" is 31 bytes",
             tmp_path("weaknl.key"));
    expect_error(json, want, "31 bytes and a newline");
    free(json);

    /* ...and 32 are enough, the newline not counted. */
    conf = load_mutated("tokens.keys.0.secret_file", "\"secret.key\"");
    assert_int_equal(conf->tokens.keys[0].secret_len, 32);
    wr_config_free(conf);
    conf = load_mutated("tokens.keys.0.secret_file", "\"nl.key\"");
    assert_int_equal(conf->tokens.keys[0].secret_len, 32);
    assert_memory_equal(conf->tokens.keys[0].secret, KEY32, 32);
    wr_config_free(conf);

    json = mutate(BASE, "tokens.keys.1.secret_file", "\"nope.key\"");
    snprintf(want, sizeof(want),
             "test.json: $.tokens.keys[1].secret_file: cannot read \"%s\": No such file or directory",
             tmp_path("nope.key"));
    expect_error(json, want, "missing secret file");
    free(json);

    json = mutate(BASE, "tokens.keys.0.secret_file", "\"etc\"");
    snprintf(want, sizeof(want), "test.json: $.tokens.keys[0].secret_file: cannot read \"%s\": Is a directory",
             tmp_path("etc"));
    expect_error(json, want, "directory as secret file");
    free(json);

    json = mutate(BASE, "tokens.signing_kid", "\"k9\"");
    expect_error(json, "test.json: $.tokens.signing_kid: \"k9\" is not the kid of any key in $.tokens.keys",
                 "unknown kid");
    free(json);

    /* The Redis password comes from a file the same way. */
    json = mutate(BASE, "redis.password_file", "\"nope.txt\"");
    snprintf(want, sizeof(want), "test.json: $.redis.password_file: cannot read \"%s\": No such file or directory",
             tmp_path("nope.txt"));
    expect_error(json, want, "missing password file");
    free(json);
    json = mutate(BASE, "redis.password_file", "\"empty.txt\"");
    snprintf(want, sizeof(want), "test.json: $.redis.password_file: the password in \"%s\" is empty",
             tmp_path("empty.txt"));
    expect_error(json, want, "empty password file");
    free(json);

    json = mutate(BASE, "gateway.page_template", "\"nope.html\"");
    snprintf(want, sizeof(want), "test.json: $.gateway.page_template: cannot read \"%s\": No such file or directory",
             tmp_path("nope.html"));
    expect_error(json, want, "missing page template");
    free(json);
    json = mutate(BASE, "gateway.page_template", "\"etc\"");
    expect_error(json, "test.json: $.gateway.page_template: \"", "directory as page template");
    expect_error(json, "etc\" is not a regular file", "directory as page template");
    free(json);
}

/* Errors must not overrun a small buffer, and a NULL one is allowed. */
static void test_error_buffer(void **state)
{
    char err[12];
    char *json = mutate(BASE, "rooms.0.total_active_users", "0");

    memset(err, 'x', sizeof(err));
    assert_null(wr_config_parse(json, strlen(json), "test.json", tmpdir, err, sizeof(err)));
    assert_string_equal(err, "test.json: ");
    assert_null(wr_config_parse(json, strlen(json), "test.json", tmpdir, NULL, 0));
    err[0] = 'x';
    assert_null(wr_config_parse(json, strlen(json), "test.json", tmpdir, err, 0));
    assert_int_equal(err[0], 'x');
    assert_null(wr_config_parse("{", 1, "test.json", tmpdir, err, sizeof(err)));
    assert_int_equal(strlen(err), sizeof(err) - 1);
    free(json);
}

/* ---- The reference agrees with the tables, and the README with the reference. ---- */

static void check_mutable(const char *path, const char *mutable_, void *arg)
{
    static const char *const mutable_settings[] = {
        "rooms[].total_active_users",
        "rooms[].new_users_per_minute",
        "rooms[].session_duration",
        "rooms[].queueing_status_code",
        "rooms[].abandon_grace",
    };
    int want = 0;

    for (size_t i = 0; i < sizeof(mutable_settings) / sizeof(mutable_settings[0]); i++)
        if (strcmp(path, mutable_settings[i]) == 0)
            want = 1;
    if (strcmp(mutable_, want ? "yes" : "no") != 0)
        fail_msg("%s: mutable column is \"%s\", want \"%s\"", path, mutable_, want ? "yes" : "no");
    (*(int *)arg) += want;
}

static void test_reference(void **state)
{
    char *ref = reference();
    int mutables = 0;
    size_t rows = each_setting(ref, check_mutable, &mutables);

    /* 6 top-level, 7 redis, 14 gateway, 2 listen, 2 push_listen, 1 worker, 5 tokens, 2 keys, 9 rooms. */
    assert_int_equal(rows, 48);
    assert_int_equal(mutables, 5);
    assert_non_null(
        strstr(ref, "| `rooms[].session_duration` | duration | `\"5m\"` | 1s..1d; a bare number is seconds | yes |"));
    assert_non_null(
        strstr(ref, "| `redis.connect_timeout` | duration | `1000` | 10ms..1m; a bare number is milliseconds | no |"));
    assert_non_null(strstr(ref, "| `tokens` | object | required |"));
    free(ref);
}

typedef struct {
    const char *readme;
    char missing[128]; /* the first setting without a row, or "" */
} readme_check_t;

static void check_in_readme(const char *path, const char *mutable_, void *arg)
{
    readme_check_t *rc = arg;
    char row[160];

    snprintf(row, sizeof(row), "| `%s` |", path);
    if (rc->missing[0] == '\0' && strstr(rc->readme, row) == NULL)
        snprintf(rc->missing, sizeof(rc->missing), "%s", path);
}

static void test_readme(void **state)
{
    const char *srcdir = getenv("WR_SRCDIR"), *out = getenv("WR_REFERENCE_OUT");
    readme_check_t rc = {NULL, ""};
    char path[PATH_MAX];
    char *ref = reference(), *readme;
    int found, verbatim = 0;
    FILE *fp;

    if (out != NULL) {
        fp = fopen(out, "w");
        assert_non_null(fp);
        fputs(ref, fp);
        assert_int_equal(fclose(fp), 0);
    }
    snprintf(path, sizeof(path), "%s/conf/README.md", srcdir != NULL ? srcdir : ".");
    readme = slurp(path);
    found = readme != NULL;
    if (found) {
        rc.readme = readme;
        each_setting(ref, check_in_readme, &rc);
        verbatim = strstr(readme, ref) != NULL;
    }
    free(readme);
    free(ref);
    if (!found)
        fail_msg("cannot read %s", path);
    if (rc.missing[0] != '\0')
        fail_msg("%s does not document %s (no row starting \"| `%s` |\")", path, rc.missing, rc.missing);
    if (!verbatim)
        fail_msg("%s does not carry the current reference word for word: rerun this test with "
                 "WR_REFERENCE_OUT=FILE and paste FILE into it",
                 path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values_given),
        cmocka_unit_test(test_durations_convert),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_accepted_values),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_out_of_bounds),
        cmocka_unit_test(test_bad_enums),
        cmocka_unit_test(test_bad_durations),
        cmocka_unit_test(test_durations_out_of_bounds),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_readme),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
