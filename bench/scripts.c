/*
 * scripts.c: waitroom-scripts, the Lua scripts of lib/store.c as the
 * gateway and the worker send them to Redis, for benchmarks that drive
 * Redis directly (redis-benchmark, redis-cli) with the very same scripts.
 *
 *   waitroom-scripts              one line per script: name, KEYS count, SHA1
 *   waitroom-scripts NAME         the script's source, byte for byte (it ends
 *                                 with a newline that is part of the script:
 *                                 load it with `redis-cli -x SCRIPT LOAD <`,
 *                                 not through "$(...)", which drops it)
 *   waitroom-scripts --sha NAME   the script's SHA1, as EVALSHA wants it
 *
 * The SHA1s are computed by wr_store_init(), the function both daemons call,
 * so a SHA printed here is the one the gateway and the worker use; compare it
 * with what SCRIPT LOAD answers to be sure the loaded source is the same.
 *
 * Exit status: 0; 2 for an unknown script name or bad usage (message on
 * stderr); 1 if the output could not be written.
 */
#include <stdio.h>
#include <string.h>

#include "store.h"

static const wr_script_t *find(const char *name)
{
    for (size_t i = 0; i < wr_num_scripts; i++)
        if (strcmp(wr_scripts[i]->name, name) == 0)
            return wr_scripts[i];
    return NULL;
}

static int usage(FILE *f)
{
    fprintf(f, "usage: waitroom-scripts            list the scripts (name, num_keys, sha1)\n"
               "       waitroom-scripts NAME       print the script's source\n"
               "       waitroom-scripts --sha NAME print the script's SHA1\n"
               "scripts:");
    for (size_t i = 0; i < wr_num_scripts; i++)
        fprintf(f, " %s", wr_scripts[i]->name);
    fputc('\n', f);
    return f == stdout ? 0 : 2;
}

static int unknown(const char *name)
{
    fprintf(stderr, "waitroom-scripts: no script named \"%s\"\n", name);
    usage(stderr);
    return 2;
}

static int flushed(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("waitroom-scripts: stdout");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const wr_script_t *s;

    wr_store_init();
    if (argc == 1) {
        printf("%-10s %-8s %s\n", "name", "num_keys", "sha1");
        for (size_t i = 0; i < wr_num_scripts; i++)
            printf("%-10s %-8d %s\n", wr_scripts[i]->name, wr_scripts[i]->num_keys, wr_scripts[i]->sha);
        return flushed();
    }
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
        return usage(stdout) || flushed();
    if (argc == 2 && argv[1][0] != '-') {
        if ((s = find(argv[1])) == NULL)
            return unknown(argv[1]);
        fputs(s->source, stdout);
        return flushed();
    }
    if (argc == 3 && strcmp(argv[1], "--sha") == 0) {
        if ((s = find(argv[2])) == NULL)
            return unknown(argv[2]);
        printf("%s\n", s->sha);
        return flushed();
    }
    return usage(stderr);
}
