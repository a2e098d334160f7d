/*
 * query.c - parse, match, sort and page Dapr state queries (see query.h).
 */
#include "query.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum fop {
    F_ALL, F_EQ, F_NEQ, F_GT, F_GTE, F_LT, F_LTE, F_IN, F_AND, F_OR
} fop;

static const struct { const char *name; fop op; } op_names[] = {
    {"EQ", F_EQ}, {"NEQ", F_NEQ}, {"GT", F_GT}, {"GTE", F_GTE},
    {"LT", F_LT}, {"LTE", F_LTE}, {"IN", F_IN}, {"AND", F_AND}, {"OR", F_OR},
};

/* A dot path, split once at parse time: segments are NUL-separated in
 * buf. */
typedef struct qpath {
    char *buf;
    size_t nseg;
} qpath;

typedef struct fnode {
    fop op;
    qpath path;          /* comparison and IN nodes */
    json_t *value;       /* borrowed from mq_query.doc */
    struct fnode *kids;  /* AND, OR */
    size_t nkids;
} fnode;

typedef struct sortkey {
    qpath path;
    int desc;
} sortkey;

struct mq_query {
    json_t *doc;         /* the parsed query; filter values point into it */
    fnode filter;
    sortkey *sort;
    size_t nsort;
    size_t limit;        /* 0 = no limit */
    size_t offset;       /* from the page token */
};

static void errf(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- parsing --------------------------------------------------------- */

static int path_parse(qpath *p, const char *s, char *err, size_t errlen)
{
    size_t len = strlen(s);

    if (len == 0 || s[0] == '.' || s[len - 1] == '.' || strstr(s, "..")) {
        errf(err, errlen, "invalid key path '%s': empty segment", s);
        return -1;
    }
    if (!(p->buf = malloc(len + 1))) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    p->nseg = 1;
    for (size_t i = 0; i <= len; i++) {
        p->buf[i] = s[i] == '.' ? '\0' : s[i];
        if (s[i] == '.')
            p->nseg++;
    }
    return 0;
}

static void fnode_free(fnode *f)
{
    free(f->path.buf);
    for (size_t i = 0; i < f->nkids; i++)
        fnode_free(&f->kids[i]);
    free(f->kids);
}

static int filter_parse(fnode *f, json_t *j, char *err, size_t errlen);

/* Body of a comparison or IN: an object with exactly one path. */
static int leaf_parse(fnode *f, const char *opname, json_t *body,
                      char *err, size_t errlen)
{
    if (!json_is_object(body) || json_object_size(body) != 1) {
        errf(err, errlen, "filter %s needs an object with exactly one key path", opname);
        return -1;
    }
    const char *path = json_object_iter_key(json_object_iter(body));
    json_t *v = json_object_iter_value(json_object_iter(body));

    if (f->op == F_IN) {
        if (!json_is_array(v)) {
            errf(err, errlen, "filter IN on '%s' needs an array of values", path);
            return -1;
        }
    } else if (f->op != F_EQ && f->op != F_NEQ && !json_is_number(v) && !json_is_string(v)) {
        errf(err, errlen, "filter %s on '%s' needs a number or a string", opname, path);
        return -1;
    }
    f->value = v;
    return path_parse(&f->path, path, err, errlen);
}

static int filter_parse(fnode *f, json_t *j, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (!j || json_is_null(j))
        return 0; /* absent: F_ALL */
    if (!json_is_object(j)) {
        errf(err, errlen, "filter must be an object");
        return -1;
    }
    if (json_object_size(j) == 0)
        return 0; /* F_ALL */
    if (json_object_size(j) != 1) {
        errf(err, errlen, "filter must have exactly one operator, got %zu",
             json_object_size(j));
        return -1;
    }
    const char *name = json_object_iter_key(json_object_iter(j));
    json_t *body = json_object_iter_value(json_object_iter(j));
    size_t i;

    for (i = 0; i < sizeof op_names / sizeof op_names[0]; i++)
        if (strcmp(op_names[i].name, name) == 0)
            break;
    if (i == sizeof op_names / sizeof op_names[0]) {
        errf(err, errlen, "unknown filter operator '%s'", name);
        return -1;
    }
    f->op = op_names[i].op;

    if (f->op != F_AND && f->op != F_OR)
        return leaf_parse(f, name, body, err, errlen);

    if (!json_is_array(body) || json_array_size(body) == 0) {
        errf(err, errlen, "filter %s needs a non-empty array of filters", name);
        return -1;
    }
    f->kids = calloc(json_array_size(body), sizeof *f->kids);
    if (!f->kids) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t k = 0; k < json_array_size(body); k++) {
        f->nkids++;
        if (filter_parse(&f->kids[k], json_array_get(body, k), err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int sort_parse(mq_query *q, json_t *s, char *err, size_t errlen)
{
    if (!s || json_is_null(s))
        return 0;
    if (!json_is_array(s)) {
        errf(err, errlen, "sort must be an array");
        return -1;
    }
    if (json_array_size(s) == 0)
        return 0;
    q->sort = calloc(json_array_size(s), sizeof *q->sort);
    if (!q->sort) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < json_array_size(s); i++) {
        json_t *e = json_array_get(s, i);
        json_t *key = json_object_get(e, "key");
        json_t *order = json_object_get(e, "order");

        if (!json_is_object(e) || !json_is_string(key)) {
            errf(err, errlen, "sort[%zu] needs a string \"key\"", i);
            return -1;
        }
        if (order && !json_is_null(order)) {
            const char *o = json_string_value(order);
            if (!o || (strcasecmp(o, "ASC") != 0 && strcasecmp(o, "DESC") != 0)) {
                errf(err, errlen, "sort[%zu] order must be \"ASC\" or \"DESC\"", i);
                return -1;
            }
            q->sort[i].desc = strcasecmp(o, "DESC") == 0;
        }
        q->nsort++;
        if (path_parse(&q->sort[i].path, json_string_value(key), err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Parse a non-negative decimal; -1 when s is not one. */
static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;

    if (!*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > SIZE_MAX)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int page_parse(mq_query *q, json_t *p, char *err, size_t errlen)
{
    if (!p || json_is_null(p))
        return 0;
    if (!json_is_object(p)) {
        errf(err, errlen, "page must be an object");
        return -1;
    }
    json_t *limit = json_object_get(p, "limit");
    json_t *token = json_object_get(p, "token");

    if (limit && !json_is_null(limit)) {
        if (!json_is_integer(limit) || json_integer_value(limit) < 0) {
            errf(err, errlen, "page limit must be a non-negative integer");
            return -1;
        }
        q->limit = (size_t)json_integer_value(limit);
    }
    if (token && !json_is_null(token)) {
        const char *t = json_string_value(token);
        if (!t || (*t && parse_size(t, &q->offset) < 0)) {
            errf(err, errlen, "invalid page token");
            return -1;
        }
    }
    return 0;
}

mq_query *mq_parse(const void *json, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    mq_query *q = calloc(1, sizeof *q);

    errf(err, errlen, "%s", "");
    if (!q) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    q->doc = json_loadb(json ? json : "", len, 0, &je);
    if (!q->doc) {
        errf(err, errlen, "query is not valid JSON: %s (line %d, column %d)",
             je.text, je.line, je.column);
        goto fail;
    }
    if (!json_is_object(q->doc)) {
        errf(err, errlen, "query must be a JSON object");
        goto fail;
    }
    if (filter_parse(&q->filter, json_object_get(q->doc, "filter"), err, errlen) < 0 ||
        sort_parse(q, json_object_get(q->doc, "sort"), err, errlen) < 0 ||
        page_parse(q, json_object_get(q->doc, "page"), err, errlen) < 0)
        goto fail;
    return q;

fail:
    mq_free(q);
    return NULL;
}

void mq_free(mq_query *q)
{
    if (!q)
        return;
    fnode_free(&q->filter);
    for (size_t i = 0; i < q->nsort; i++)
        free(q->sort[i].path.buf);
    free(q->sort);
    json_decref(q->doc);
    free(q);
}

/* ---- matching -------------------------------------------------------- */

static json_t *path_get(json_t *doc, const qpath *p)
{
    const char *seg = p->buf;
    for (size_t i = 0; i < p->nseg && doc; i++) {
        doc = json_object_get(doc, seg); /* NULL for non-objects */
        seg += strlen(seg) + 1;
    }
    return doc;
}

/* Compare two values of the same comparable kind (both numbers or both
 * strings) into *cmp; returns -1 when the types do not match. */
static int scalar_cmp(json_t *a, json_t *b, int *cmp)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        *cmp = (x > y) - (x < y);
        return 0;
    }
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        *cmp = (x > y) - (x < y);
        return 0;
    }
    if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        *cmp = c ? (c > 0) - (c < 0) : (la > lb) - (la < lb);
        return 0;
    }
    return -1;
}

static int value_eq(json_t *a, json_t *b)
{
    int c;
    if (!a || !b)
        return 0;
    if (scalar_cmp(a, b, &c) == 0)
        return c == 0;
    return json_equal(a, b); /* booleans, null, arrays, objects */
}

static int match(const fnode *f, json_t *doc)
{
    json_t *v;
    int c;

    switch (f->op) {
    case F_ALL:
        return 1;
    case F_AND:
        for (size_t i = 0; i < f->nkids; i++)
            if (!match(&f->kids[i], doc))
                return 0;
        return 1;
    case F_OR:
        for (size_t i = 0; i < f->nkids; i++)
            if (match(&f->kids[i], doc))
                return 1;
        return 0;
    default:
        break;
    }

    v = path_get(doc, &f->path);
    switch (f->op) {
    case F_EQ:
        return value_eq(v, f->value);
    case F_NEQ:
        return !value_eq(v, f->value);
    case F_IN:
        for (size_t i = 0; i < json_array_size(f->value); i++)
            if (value_eq(v, json_array_get(f->value, i)))
                return 1;
        return 0;
    default:
        if (!v || scalar_cmp(v, f->value, &c) < 0)
            return 0;
        return f->op == F_GT ? c > 0 : f->op == F_GTE ? c >= 0 :
               f->op == F_LT ? c < 0 : c <= 0;
    }
}

/* ---- sorting ---------------------------------------------------------- */

typedef struct hit {
    size_t idx;
    const char *key;
    json_t *doc;
    json_t **vals;       /* nsort sort values (NULL = absent) */
    const mq_query *q;   /* qsort has no context argument */
} hit;

/* A total order over JSON types for sorting mixed values. */
static int type_rank(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL: return 0;
    case JSON_FALSE: case JSON_TRUE: return 1;
    case JSON_INTEGER: case JSON_REAL: return 2;
    case JSON_STRING: return 3;
    case JSON_ARRAY: return 4;
    default: return 5;
    }
}

static int sortval_cmp(json_t *a, json_t *b)
{
    int ra = type_rank(a), rb = type_rank(b), c;

    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (scalar_cmp(a, b, &c) == 0)
        return c;
    if (ra == 1)
        return json_is_true(a) - json_is_true(b);
    return 0; /* null, arrays, objects: equal */
}

static int hit_cmp(const void *pa, const void *pb)
{
    const hit *a = pa, *b = pb;

    for (size_t i = 0; i < a->q->nsort; i++) {
        json_t *x = a->vals[i], *y = b->vals[i];
        int c;
        if (!x || !y) {          /* absent values last, whatever the order */
            if (x || y)
                return x ? -1 : 1;
            continue;
        }
        c = sortval_cmp(x, y);
        if (c)
            return a->q->sort[i].desc ? -c : c;
    }
    /* Stable and deterministic: fall back on the key (unique in a store),
     * then the input position. */
    int c = strcmp(a->key, b->key);
    if (c)
        return c;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

int mq_run(const mq_query *q, const mq_doc *docs, size_t n,
           size_t **out, size_t *n_out, char token[MQ_TOKEN_MAX])
{
    int need_json = q->filter.op != F_ALL || q->nsort > 0;
    hit *hits = NULL;
    json_t **vals = NULL;
    size_t nhits = 0, start, end;
    int rc = -1;

    *out = NULL;
    *n_out = 0;
    token[0] = '\0';
    if (n == 0)
        return 0;
    hits = calloc(n, sizeof *hits);
    if (q->nsort && n > SIZE_MAX / sizeof *vals / q->nsort)
        goto done;
    vals = q->nsort ? calloc(n * q->nsort, sizeof *vals) : NULL;
    if (!hits || (q->nsort && !vals))
        goto done;

    for (size_t i = 0; i < n; i++) {
        json_t *doc = NULL;
        if (need_json) {
            doc = json_loadb((const char *)docs[i].data, docs[i].len,
                             JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            /* Not JSON: matches only the empty filter, sorts last. */
            if (!doc && q->filter.op != F_ALL)
                continue;
            if (doc && !match(&q->filter, doc)) {
                json_decref(doc);
                continue;
            }
        }
        hit *h = &hits[nhits];
        h->idx = i;
        h->key = docs[i].key;
        h->doc = doc;
        h->q = q;
        h->vals = vals ? vals + nhits * q->nsort : NULL;
        for (size_t k = 0; k < q->nsort; k++)
            h->vals[k] = doc ? path_get(doc, &q->sort[k].path) : NULL;
        nhits++;
    }
    qsort(hits, nhits, sizeof *hits, hit_cmp);

    start = q->offset < nhits ? q->offset : nhits;
    end = (q->limit && nhits - start > q->limit) ? start + q->limit : nhits;
    if (end > start) {
        if (!(*out = malloc((end - start) * sizeof **out)))
            goto done;
        for (size_t i = start; i < end; i++)
            (*out)[i - start] = hits[i].idx;
        *n_out = end - start;
    }
    if (end < nhits)
        snprintf(token, MQ_TOKEN_MAX, "%zu", end);
    rc = 0;

done:
    if (hits)
        for (size_t i = 0; i < nhits; i++)
            json_decref(hits[i].doc);
    free(hits);
    free(vals);
    return rc;
}
