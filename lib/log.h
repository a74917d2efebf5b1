/*
 * log.h: levelled logging to standard error.
 *
 * The level is checked before any formatting happens (the macro tests it
 * first). Values are quoted in messages ("\"%s\""); a token, a secret or a
 * whole cookie is never logged.
 */
#ifndef WR_LOG_H
#define WR_LOG_H

enum { WR_LOG_ERROR = 0, WR_LOG_WARN, WR_LOG_INFO, WR_LOG_DEBUG };

extern int wr_log_level;

/* Sets the prefix printed on every line, such as "gateway" or "worker"; borrows the string. */
void wr_log_init(const char *component);
/* Parses "error", "warn", "info" or "debug"; returns the level or -1. */
int wr_log_level_from_name(const char *name);
void wr__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define wr_log(level, ...)                                                                                                 \
    do {                                                                                                                   \
        if ((level) <= wr_log_level)                                                                                       \
            wr__log((level), __VA_ARGS__);                                                                                 \
    } while (0)
#define wr_error(...) wr_log(WR_LOG_ERROR, __VA_ARGS__)
#define wr_warn(...) wr_log(WR_LOG_WARN, __VA_ARGS__)
#define wr_info(...) wr_log(WR_LOG_INFO, __VA_ARGS__)
#define wr_debug(...) wr_log(WR_LOG_DEBUG, __VA_ARGS__)

#endif
