/*
 * log.c: one line per event on standard error, with a UTC timestamp, the
 * component, the process id and the level.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int wr_log_level = WR_LOG_INFO;
static const char *log_component = "waitroom";

void wr_log_init(const char *component)
{
    log_component = component;
}

int wr_log_level_from_name(const char *name)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void wr__log(int level, const char *fmt, ...)
{
    static const char *labels[] = {"error", "warn", "info", "debug"};
    char line[2048], stamp[32];
    struct timeval tv;
    struct tm tm;
    int n;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "%s.%03dZ %s[%d] %s: ", stamp, (int)(tv.tv_usec / 1000), log_component, (int)getpid(),
                 labels[level]);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line so that lines from several processes do not interleave. */
    (void)!write(2, line, n);
}
