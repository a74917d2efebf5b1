/*
 * cli.c: option parsing for waitroom-gateway and waitroom-worker.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

#include "common.h"
#include "config.h"

static void usage(FILE *fp, const char *program)
{
    fprintf(fp,
            "usage: %s -c FILE [-t]\n"
            "  -c, --config FILE       the configuration file (JSON)\n"
            "  -t, --test              check the configuration and exit\n"
            "  -v, --version           print the version and exit\n"
            "      --config-reference  print every setting (Markdown) and exit\n"
            "  -h, --help              print this help\n",
            program);
}

int wr_cli_parse(int argc, char **argv, const char *program, wr_cli_t *out)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"test", no_argument, NULL, 't'},
                                             {"version", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"config-reference", no_argument, NULL, 'R'},
                                             {NULL, 0, NULL, 0}};
    int ch;

    out->config_path = NULL;
    out->test_only = 0;
    while ((ch = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            out->config_path = optarg;
            break;
        case 't':
            out->test_only = 1;
            break;
        case 'v':
            printf("%s %s\n", program, PACKAGE_VERSION);
            return WR_DECLINED;
        case 'R':
            wr_config_write_reference(stdout);
            return WR_DECLINED;
        case 'h':
            usage(stdout, program);
            return WR_DECLINED;
        default:
            usage(stderr, program);
            return WR_ERROR;
        }
    }
    if (out->config_path == NULL || optind != argc) {
        usage(stderr, program);
        return WR_ERROR;
    }
    return WR_OK;
}
