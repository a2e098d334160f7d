/* util.h - small parsing helpers shared by the core. */
#ifndef DAPRD_UTIL_H
#define DAPRD_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Parse a Go duration ("1h30m", "250ms", "5s", "1.5s") or a bare number of
 * seconds into milliseconds.  Returns 0 on success, -1 on a malformed value. */
int parse_duration_ms(const char *s, int64_t *out_ms);

/* Parse a Kubernetes resource quantity ("4Mi", "512Ki", "1G", "100") into
 * bytes.  Returns 0 on success, -1 on a malformed value. */
int parse_quantity_bytes(const char *s, uint64_t *out);

/* Parse a boolean the way Dapr's metadata decoder does (true/false, 1/0,
 * yes/no, on/off; case-insensitive).  Returns 0/1, or -1 when malformed. */
int parse_bool(const char *s);

/* Parse a whole decimal integer; -1 when malformed or out of range. */
int parse_int64(const char *s, int64_t *out);

/* malloc/strdup that abort on exhaustion: daprd cannot do anything
 * sensible without memory, and checking every small allocation would
 * drown the logic. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* Copy exactly n bytes of s (which must hold n bytes: unlike strndup it
 * does not stop at a NUL) and add a terminating NUL. */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds on the monotonic clock. */
int64_t now_monotonic_ms(void);

#endif
