/* log.h - daprd's structured logger (Dapr's text and JSON line formats). */
#ifndef DAPRD_LOG_H
#define DAPRD_LOG_H

#include <stdarg.h>

typedef enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
    LOG_LEVEL_FATAL = 4
} log_level;

/* Configure once at start-up, before any thread logs. */
void log_setup(log_level level, int as_json, const char *app_id, const char *version);
/* Parse "debug", "info", ...; returns -1 when unknown. */
int log_level_parse(const char *name);
int log_enabled(log_level level);

/* Log one line in `scope` (e.g. "dapr.runtime").  Thread-safe. */
void log_write(log_level level, const char *scope, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(log_level level, const char *scope, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_debug(scope, ...) \
    do { if (log_enabled(LOG_LEVEL_DEBUG)) log_write(LOG_LEVEL_DEBUG, scope, __VA_ARGS__); } while (0)
#define log_info(scope, ...)  log_write(LOG_LEVEL_INFO, scope, __VA_ARGS__)
#define log_warn(scope, ...)  log_write(LOG_LEVEL_WARN, scope, __VA_ARGS__)
#define log_error(scope, ...) log_write(LOG_LEVEL_ERROR, scope, __VA_ARGS__)

#endif
