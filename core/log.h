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
/* Change the level while running (any thread; see daprd's SIGUSR1). */
void log_set_level(log_level level);
log_level log_get_level(void);
const char *log_level_name(log_level level);

/* Log one line in `scope` (e.g. "dapr.runtime").  Thread-safe. */
void log_write(log_level level, const char *scope, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(log_level level, const char *scope, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* The same with extra fields: fields holds name, value, name, value, ...,
 * NULL (names are plain identifiers; values are scrubbed like msg).  They
 * appear in the line among the standard fields, sorted by name as logrus
 * sorts them (text) or as members of the JSON object. */
void log_write_fields(log_level level, const char *scope, const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Secret scrubbing.  Every value registered here (resolved secretKeyRef
 * values, metadata fields a plugin declares DAPR_META_SECRET) is replaced
 * by "***" in every log line, whoever wrote it (core or plugin), and in
 * whatever text is passed to log_redact().  A belt to the braces of "never
 * pass secrets to the logger": a plugin that logs its connection string
 * cannot leak the password inside it.  Values shorter than 4 bytes are not
 * registered: they would mangle ordinary words.  Thread-safe.
 */
void log_redact_add(const char *value);
/* Scrub buf (NUL-terminated) in place.  truncated: buf was cut short, so a
 * secret's beginning at its end is cut off too. */
void log_redact(char *buf, int truncated);
void log_redact_clear(void);

#define log_debug(scope, ...) \
    do { if (log_enabled(LOG_LEVEL_DEBUG)) log_write(LOG_LEVEL_DEBUG, scope, __VA_ARGS__); } while (0)
#define log_info(scope, ...)  log_write(LOG_LEVEL_INFO, scope, __VA_ARGS__)
#define log_warn(scope, ...)  log_write(LOG_LEVEL_WARN, scope, __VA_ARGS__)
#define log_error(scope, ...) log_write(LOG_LEVEL_ERROR, scope, __VA_ARGS__)

#endif
