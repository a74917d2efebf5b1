/*
 * cli.h: the command line both programs share.
 *
 *   PROGRAM -c FILE [-t]    run (or, with -t, check FILE and exit)
 *   PROGRAM --version | --help | --config-reference
 */
#ifndef WR_CLI_H
#define WR_CLI_H

typedef struct wr_cli_s {
    const char *config_path; /* borrowed from argv */
    int test_only;
} wr_cli_t;

/*
 * Parses argv. Returns WR_OK when the program should go on, WR_DECLINED
 * when it has printed what was asked (version, help, reference) and should
 * exit 0, or WR_ERROR after printing the usage to standard error (exit 1).
 */
int wr_cli_parse(int argc, char **argv, const char *program, wr_cli_t *out);

#endif
