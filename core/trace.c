/* trace.c - W3C Trace Context: parse and derive traceparent headers. */
#include "config.h"
#include "trace.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static int hex_run(const char *s, size_t n, int *all_zero)
{
    *all_zero = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
        if (s[i] != '0')
            *all_zero = 0;
    }
    return 1;
}

int trace_parent_valid(const char *s)
{
    int z;
    if (!s || strlen(s) != TRACEPARENT_LEN)
        return 0;
    if (strncmp(s, "00-", 3) != 0 || s[35] != '-' || s[52] != '-')
        return 0;
    if (!hex_run(s + 3, 32, &z) || z)
        return 0;
    if (!hex_run(s + 36, 16, &z) || z)
        return 0;
    return hex_run(s + 53, 2, &z);
}

static void random_hex(char *out, size_t n_bytes)
{
    unsigned char b[16];
    if (getrandom(b, n_bytes, 0) != (ssize_t)n_bytes)
        memset(b, 0x5a, sizeof b);
    b[0] |= 1; /* never all zeros */
    for (size_t i = 0; i < n_bytes; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

void trace_next_hop(const char *incoming, char *out)
{
    char span[33];
    random_hex(span, 8);
    if (trace_parent_valid(incoming)) {
        snprintf(out, TRACEPARENT_LEN + 1, "00-%.32s-%.16s-%.2s", incoming + 3, span, incoming + 53);
        return;
    }
    char trace[33];
    random_hex(trace, 16);
    snprintf(out, TRACEPARENT_LEN + 1, "00-%.32s-%.16s-00", trace, span);
}
