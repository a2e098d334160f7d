/* json_out.c - Go-compatible compact JSON writer over jansson values. */
#include "config.h"
#include "json_out.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Shortest "%.Ng" that reads back as the same double, in Go's layout:
 * plain decimal for 1e-6 <= |x| < 1e21, exponent form otherwise. */
static void put_real(struct buf *b, double x)
{
    char tmp[400];
    if (!isfinite(x)) { /* JSON has no NaN/Inf; jansson never yields them */
        put(b, "null", 4);
        return;
    }
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    snprintf(tmp, sizeof tmp, "%.*g", prec, x);
    double ax = fabs(x);
    if (strchr(tmp, 'e') && ax >= 1e-6 && ax < 1e21) {
        /* %g chose exponent form where Go writes plain digits. */
        int exp10 = (int)floor(log10(ax));
        int decimals = prec - 1 - exp10;
        if (decimals < 0) {
            /* More integer digits than the shortest form has: Go writes
             * those digits and then zeros (1.2345678901234567e19 is
             * "12345678901234567000"), where %.0f would print the exact
             * binary value ("...67168"). */
            char e[64];
            snprintf(e, sizeof e, "%.*e", prec - 1, x);
            size_t k = 0;
            for (const char *p = e; *p && *p != 'e'; p++)
                if (*p != '.')
                    tmp[k++] = *p;
            int zeros = atoi(strchr(e, 'e') + 1) - (prec - 1);
            while (zeros-- > 0 && k + 1 < sizeof tmp)
                tmp[k++] = '0';
            tmp[k] = '\0';
        } else {
            snprintf(tmp, sizeof tmp, "%.*f", decimals, x);
        }
        if (strchr(tmp, '.')) {
            size_t n = strlen(tmp);
            while (tmp[n - 1] == '0') tmp[--n] = '\0';
            if (tmp[n - 1] == '.') tmp[--n] = '\0';
        }
    }
    put(b, tmp, strlen(tmp));
}

static void put_string(struct buf *b, const char *s, size_t n)
{
    /* jansson escapes exactly as JSON requires; reuse it for one string. */
    json_t *str = json_stringn_nocheck(s, n);
    char *t = json_dumps(str, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(str);
    if (t) {
        put(b, t, strlen(t));
        free(t);
    } else {
        put(b, "\"\"", 2);
    }
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void write_value(struct buf *b, const json_t *v, int sort)
{
    char tmp[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        const char **keys = xmalloc((n ? n : 1) * sizeof *keys);
        size_t i = 0;
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)v, k, val) keys[i++] = k;
        if (sort)
            qsort(keys, n, sizeof *keys, key_cmp);
        put(b, "{", 1);
        for (i = 0; i < n; i++) {
            if (i) put(b, ",", 1);
            put_string(b, keys[i], strlen(keys[i]));
            put(b, ":", 1);
            write_value(b, json_object_get(v, keys[i]), sort);
        }
        put(b, "}", 1);
        free(keys);
        break;
    }
    case JSON_ARRAY:
        put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) put(b, ",", 1);
            write_value(b, json_array_get(v, i), sort);
        }
        put(b, "]", 1);
        break;
    case JSON_STRING:
        put_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        put(b, tmp, strlen(tmp));
        break;
    case JSON_REAL:
        put_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        put(b, "true", 4);
        break;
    case JSON_FALSE:
        put(b, "false", 5);
        break;
    default:
        put(b, "null", 4);
        break;
    }
}

char *json_to_text(const json_t *v, size_t *len, int sort_keys)
{
    struct buf b = {0};
    put(&b, "", 0);
    write_value(&b, v, sort_keys);
    if (len) *len = b.len;
    return b.p;
}
