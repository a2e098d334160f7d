/*
 * query.c - the state query API (DAPR_STATE_QUERY) over a small data set.
 *
 * The data set lives under its own key prefix, so that the other tests'
 * values (binary, 4 MiB, ...) do not take part.  One more item with the
 * same shape lives under a different prefix: it must never come back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "conformance.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct doc {
    const char *name;
    const char *json;
} doc;

static const doc docs[] = {
    {"q1", "{\"person\":{\"org\":\"Dev\",\"id\":1036},\"city\":\"Seattle\",\"state\":\"WA\"}"},
    {"q2", "{\"person\":{\"org\":\"Hardware\",\"id\":1028},\"city\":\"Portland\",\"state\":\"OR\"}"},
    {"q3", "{\"person\":{\"org\":\"Finance\",\"id\":1071},\"city\":\"Sacramento\",\"state\":\"CA\"}"},
    {"q4", "{\"person\":{\"org\":\"Dev\",\"id\":1042},\"city\":\"San Francisco\",\"state\":\"CA\"}"},
    {"q5", "{\"person\":{\"org\":\"Ops\",\"id\":1005},\"city\":\"Seattle\",\"state\":\"WA\"}"},
    {"q6", "{\"person\":{\"org\":\"Ops\",\"id\":1013},\"city\":\"San Diego\",\"state\":\"CA\"}"},
};
#define N_DOCS (sizeof docs / sizeof *docs)
/* Matches nearly every filter below, but belongs to another prefix. */
static const char *foreign_json =
    "{\"person\":{\"org\":\"Dev\",\"id\":1000},\"city\":\"Seattle\",\"state\":\"CA\"}";

static char qprefix[128];
static int seeded = -1; /* -1 not yet, 0 failed, 1 done */

/* "conformance-X-Y||" -> "conformance-X-Y.query||" */
static void make_prefix(char *out, size_t len, const char *tag)
{
    const char *run = ck_run_prefix();
    size_t base = strlen(run) - 2; /* drop the trailing "||" */
    snprintf(out, len, "%.*s.%s||", (int)base, run, tag);
}

static char *doc_key(const char *name)
{
    size_t len = strlen(qprefix) + strlen(name) + 1;
    char *k = malloc(len);
    if (k)
        snprintf(k, len, "%s%s", qprefix, name);
    return k;
}

static int seed(ck_test *t)
{
    if (seeded >= 0) {
        if (!seeded)
            ck_fail(t, "the query data set could not be written");
        return seeded ? 0 : -1;
    }
    seeded = 0;
    make_prefix(qprefix, sizeof qprefix, "query");
    for (size_t i = 0; i < N_DOCS; i++) {
        char *k = doc_key(docs[i].name);
        int rc = k ? ck_put(t, k, docs[i].json) : -1;
        free(k);
        if (rc != 0)
            return -1;
    }
    char other[128], *k;
    make_prefix(other, sizeof other, "other");
    size_t len = strlen(other) + 8;
    if (!(k = malloc(len)))
        return -1;
    snprintf(k, len, "%sq1", other);
    int rc = ck_put(t, k, foreign_json);
    free(k);
    if (rc != 0)
        return -1;
    seeded = 1;
    return 0;
}

#define NEED_QUERY(t)                                                      \
    do {                                                                   \
        if (!CK_FEATURE(DAPR_STATE_QUERY)) {                               \
            ck_skip((t), "the store does not claim QUERY");                \
            return;                                                        \
        }                                                                  \
        if (seed(t) != 0)                                                  \
            return;                                                        \
    } while (0)

/* Which doc does a returned key name?  -1 when none of ours. */
static int doc_index(const char *key)
{
    size_t plen = strlen(qprefix);
    if (!key || strncmp(key, qprefix, plen) != 0)
        return -1;
    for (size_t i = 0; i < N_DOCS; i++)
        if (strcmp(key + plen, docs[i].name) == 0)
            return (int)i;
    return -1;
}

/* Check one result item: one of ours, with the data we stored. */
static int check_item(ck_test *t, const ck_item *it)
{
    int i = doc_index(it->key);
    if (i < 0) {
        ck_fail(t, "result key '%s' is not one of the data set under prefix '%s'",
                it->key ? it->key : "NULL", qprefix);
        return -1;
    }
    if (it->error) {
        ck_fail(t, "result %s carries an error: %s", it->key, it->error);
        return -1;
    }
    /* Compare as JSON: a store may normalise spacing or member order. */
    json_t *want = json_loads(docs[i].json, 0, NULL);
    json_t *got = json_loadb((const char *)it->value, it->len, 0, NULL);
    int same = want && got && json_equal(want, got);
    json_decref(want);
    json_decref(got);
    if (!same) {
        ck_fail(t, "result %s: data '%.60s' is not the stored JSON", it->key,
                it->value ? (char *)it->value : "");
        return -1;
    }
    return 0;
}

/* Run a query that must succeed, and compare the result with the expected
 * docs ("q3 q4 q6"), in order when ordered is set. */
static void expect(ck_test *t, const char *json, const char *want, int ordered)
{
    ck_reply rep;
    if (ck_query(json, qprefix, &rep) != 0) {
        ck_fail(t, "%s", rep.failure);
        ck_reply_free(&rep);
        return;
    }
    if (rep.r.status != DAPR_OK) {
        ck_fail(t, "query %s: %s (%s)", json, ck_status_name(rep.r.status),
                rep.r.message ? rep.r.message : "no message");
        ck_reply_free(&rep);
        return;
    }
    char got[256] = "";
    int seen[N_DOCS] = {0};
    for (size_t i = 0; i < rep.n_items && !t->failed; i++) {
        if (check_item(t, &rep.items[i]) != 0)
            break;
        int d = doc_index(rep.items[i].key);
        if (seen[d]++)
            ck_fail(t, "query %s returned %s twice", json, docs[d].name);
        size_t used = strlen(got);
        snprintf(got + used, sizeof got - used, "%s%s", used ? " " : "", docs[d].name);
    }
    if (!t->failed) {
        if (ordered) {
            if (strcmp(got, want) != 0)
                ck_fail(t, "query %s returned [%s], want [%s] in this order", json, got, want);
        } else {
            /* Same set: every wanted name seen, and as many items. */
            size_t n_want = 0;
            char copy[256];
            snprintf(copy, sizeof copy, "%s", want);
            int ok = 1;
            for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " ")) {
                n_want++;
                char *k = doc_key(tok);
                int d = doc_index(k);
                free(k);
                if (d < 0 || !seen[d])
                    ok = 0;
            }
            if (!ok || n_want != rep.n_items)
                ck_fail(t, "query %s returned [%s], want [%s]", json, got, want);
        }
    }
    ck_reply_free(&rep);
}

static void t_query_eq(ck_test *t)
{
    NEED_QUERY(t);
    expect(t, "{\"filter\":{\"EQ\":{\"state\":\"CA\"}}}", "q3 q4 q6", 0);
}

static void t_query_in(ck_test *t)
{
    NEED_QUERY(t);
    expect(t, "{\"filter\":{\"IN\":{\"person.org\":[\"Dev\",\"Ops\"]}}}", "q1 q4 q5 q6", 0);
}

static void t_query_and_or(ck_test *t)
{
    NEED_QUERY(t);
    expect(t,
           "{\"filter\":{\"AND\":[{\"EQ\":{\"state\":\"CA\"}},"
           "{\"IN\":{\"person.org\":[\"Dev\",\"Ops\"]}}]}}",
           "q4 q6", 0);
    if (!t->failed)
        expect(t,
               "{\"filter\":{\"OR\":[{\"EQ\":{\"city\":\"Seattle\"}},"
               "{\"EQ\":{\"person.org\":\"Finance\"}}]}}",
               "q1 q3 q5", 0);
    if (!t->failed)
        expect(t,
               "{\"filter\":{\"OR\":[{\"EQ\":{\"state\":\"OR\"}},{\"AND\":["
               "{\"EQ\":{\"state\":\"CA\"}},{\"EQ\":{\"person.org\":\"Ops\"}}]}]}}",
               "q2 q6", 0);
}

static void t_query_sort(ck_test *t)
{
    NEED_QUERY(t);
    expect(t,
           "{\"filter\":{\"EQ\":{\"state\":\"CA\"}},"
           "\"sort\":[{\"key\":\"person.id\",\"order\":\"DESC\"}]}",
           "q3 q4 q6", 1);
    if (!t->failed)
        expect(t, "{\"sort\":[{\"key\":\"person.id\"}]}", "q5 q6 q2 q1 q4 q3", 1);
    if (!t->failed)
        expect(t,
               "{\"sort\":[{\"key\":\"state\",\"order\":\"ASC\"},"
               "{\"key\":\"person.id\",\"order\":\"DESC\"}]}",
               "q3 q4 q6 q2 q1 q5", 1);
}

static void t_query_page(ck_test *t)
{
    NEED_QUERY(t);
    const char *want[N_DOCS] = {"q5", "q6", "q2", "q1", "q4", "q3"};
    size_t got = 0;
    char *token = NULL;
    for (int page = 0; page < 10 && !t->failed; page++) {
        json_t *q = json_pack("{s:[{s:s}], s:{s:i}}", "sort", "key", "person.id",
                              "page", "limit", 2);
        if (token)
            json_object_set_new(json_object_get(q, "page"), "token", json_string(token));
        char *text = json_dumps(q, JSON_COMPACT);
        json_decref(q);
        ck_reply rep;
        if (ck_query(text, qprefix, &rep) != 0)
            ck_fail(t, "%s", rep.failure);
        else if (rep.r.status != DAPR_OK)
            ck_fail(t, "page %d: %s (%s)", page + 1, ck_status_name(rep.r.status),
                    rep.r.message ? rep.r.message : "no message");
        else if (rep.n_items > 2)
            ck_fail(t, "page %d: %zu items with limit 2", page + 1, rep.n_items);
        for (size_t i = 0; !t->failed && i < rep.n_items; i++) {
            if (check_item(t, &rep.items[i]) != 0)
                break;
            const char *name = docs[doc_index(rep.items[i].key)].name;
            if (got >= N_DOCS || strcmp(name, want[got]) != 0)
                ck_fail(t, "page %d item %zu is %s, want %s", page + 1, i, name,
                        got < N_DOCS ? want[got] : "nothing more");
            got++;
        }
        free(text);
        free(token);
        token = (!t->failed && rep.token && *rep.token && rep.n_items)
                    ? strdup(rep.token) : NULL;
        ck_reply_free(&rep);
        if (!token)
            break;
    }
    if (!t->failed && token)
        ck_fail(t, "still a next-page token after 10 pages");
    if (!t->failed && got != N_DOCS)
        ck_fail(t, "pages held %zu items, want %zu", got, (size_t)N_DOCS);
    free(token);
}

static void t_query_prefix(ck_test *t)
{
    NEED_QUERY(t);
    /* The foreign item also has org Dev; only ours may come back. */
    expect(t, "{\"filter\":{\"EQ\":{\"person.org\":\"Dev\"}}}", "q1 q4", 0);
}

static void t_query_invalid(ck_test *t)
{
    NEED_QUERY(t);
    static const char *bad[] = {
        "this is not JSON",
        "{\"filter\":{\"BOGUS\":{\"state\":\"CA\"}}}",
        "{\"filter\":{\"EQ\":\"state\"}}",
        "{\"sort\":[{\"key\":\"state\",\"order\":\"SIDEWAYS\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad && !t->failed; i++) {
        ck_reply rep;
        if (ck_query(bad[i], qprefix, &rep) != 0)
            ck_fail(t, "%s", rep.failure);
        else if (rep.r.status != DAPR_ERR_INVALID_ARGUMENT)
            ck_fail(t, "query '%s': got %s, want DAPR_ERR_INVALID_ARGUMENT", bad[i],
                    ck_status_name(rep.r.status));
        ck_reply_free(&rep);
    }
}

const ck_case ck_query_cases[] = {
    {"query EQ", t_query_eq},
    {"query IN", t_query_in},
    {"query AND / OR", t_query_and_or},
    {"query sort ASC / DESC", t_query_sort},
    {"query paging with limit and token", t_query_page},
    {"query returns only keys under key_prefix", t_query_prefix},
    {"invalid query: INVALID_ARGUMENT", t_query_invalid},
};
const size_t ck_n_query_cases = sizeof ck_query_cases / sizeof *ck_query_cases;
