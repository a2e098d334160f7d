/*
 * suite.c - the state store behaviour suite: Dapr's state contract,
 * checked through the plugin's vtable.
 *
 * Each test uses keys unique to the run (ck_key) and skips itself when the
 * plugin does not claim the feature it needs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "conformance.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers --------------------------------------------------------- */

dapr_state_set_req ck_set_req(const char *key, const char *value,
                              const char *etag, dapr_concurrency conc)
{
    dapr_state_set_req r;
    memset(&r, 0, sizeof r);
    r.key = key;
    r.value.ptr = (const uint8_t *)value;
    r.value.len = value ? strlen(value) : 0;
    r.etag = etag;
    r.concurrency = conc;
    return r;
}

dapr_state_delete_req ck_del_req(const char *key, const char *etag,
                                 dapr_concurrency conc)
{
    dapr_state_delete_req r;
    memset(&r, 0, sizeof r);
    r.key = key;
    r.etag = etag;
    r.concurrency = conc;
    return r;
}

int ck_put(ck_test *t, const char *key, const char *value)
{
    dapr_state_set_req req = ck_set_req(key, value, NULL, DAPR_CONCURRENCY_LAST_WRITE);
    ck_reply rep;
    if (ck_set(&req, &rep) != 0) {
        ck_fail(t, "%s", rep.failure);
        ck_reply_free(&rep);
        return -1;
    }
    int rc = 0;
    if (rep.r.status != DAPR_OK) {
        ck_fail(t, "set %s: %s (%s)", key, ck_status_name(rep.r.status),
                rep.r.message ? rep.r.message : "no message");
        rc = -1;
    }
    ck_reply_free(&rep);
    return rc;
}

int ck_fetch(ck_test *t, const char *key, ck_reply *out)
{
    if (ck_get(key, out) != 0) {
        ck_fail(t, "%s", out->failure);
        return -1;
    }
    if (out->r.status != DAPR_OK) {
        ck_fail(t, "get %s: %s (%s)", key, ck_status_name(out->r.status),
                out->r.message ? out->r.message : "no message");
        return -1;
    }
    return 0;
}

/* Check a completed reply's status; fail the test otherwise. */
static int want_status(ck_test *t, const char *what, const ck_reply *rep,
                       dapr_status want)
{
    if (rep->r.status == want)
        return 0;
    ck_fail(t, "%s: got %s (%s), want %s", what, ck_status_name(rep->r.status),
            rep->r.message ? rep->r.message : "no message", ck_status_name(want));
    return -1;
}

/* Is the stored value of key exactly value (len bytes)?  found=0 means
 * "the key must be absent". */
static int want_value(ck_test *t, const char *key, int found,
                      const void *value, size_t len)
{
    ck_reply rep;
    if (ck_fetch(t, key, &rep) != 0) {
        ck_reply_free(&rep);
        return -1;
    }
    int rc = 0;
    if (!found && rep.r.found) {
        ck_fail(t, "get %s: key should be absent, found a value of %zu bytes", key, rep.r.len);
        rc = -1;
    } else if (found && !rep.r.found) {
        ck_fail(t, "get %s: key should be present, not found", key);
        rc = -1;
    } else if (found && (rep.r.len != len || memcmp(rep.r.value, value, len) != 0)) {
        ck_fail(t, "get %s: value differs (got %zu bytes '%.40s', want %zu bytes '%.40s')",
                key, rep.r.len, rep.r.value ? (char *)rep.r.value : "",
                len, (const char *)value);
        rc = -1;
    }
    ck_reply_free(&rep);
    return rc;
}

static int want_str(ck_test *t, const char *key, const char *value)
{
    return value ? want_value(t, key, 1, value, strlen(value))
                 : want_value(t, key, 0, NULL, 0);
}

/* Current etag of key (must exist and have one).  Caller frees. */
static char *etag_of(ck_test *t, const char *key)
{
    ck_reply rep;
    char *etag = NULL;
    if (ck_fetch(t, key, &rep) == 0) {
        if (!rep.r.found)
            ck_fail(t, "get %s: key should be present, not found", key);
        else if (!rep.r.etag || !*rep.r.etag)
            ck_fail(t, "get %s: no etag although the store claims ETAG", key);
        else
            etag = strdup(rep.r.etag);
    }
    ck_reply_free(&rep);
    return etag;
}

/* One status-only call with a request; returns -1 if it did not complete. */
static int do_set(ck_test *t, const dapr_state_set_req *req, dapr_status want,
                  const char *what)
{
    ck_reply rep;
    int rc = ck_set(req, &rep);
    if (rc != 0)
        ck_fail(t, "%s", rep.failure);
    else
        rc = want_status(t, what, &rep, want);
    ck_reply_free(&rep);
    return rc;
}

static int do_del(ck_test *t, const dapr_state_delete_req *req, dapr_status want,
                  const char *what)
{
    ck_reply rep;
    int rc = ck_del(req, &rep);
    if (rc != 0)
        ck_fail(t, "%s", rep.failure);
    else
        rc = want_status(t, what, &rep, want);
    ck_reply_free(&rep);
    return rc;
}

#define NEED_ETAG(t)                                                       \
    do {                                                                   \
        if (!CK_FEATURE(DAPR_STATE_ETAG)) {                                \
            ck_skip((t), "the store does not claim ETAG");                 \
            return;                                                        \
        }                                                                  \
    } while (0)

/* Keys freed at the end of a test: a tiny arena keeps tests short. */
typedef struct keyset {
    char *k[64];
    int n;
} keyset;

static const char *K(keyset *ks, const char *name)
{
    char *k = ck_key(name);
    if (ks->n < 64)
        ks->k[ks->n++] = k;
    return k;
}

static void keys_free(keyset *ks)
{
    for (int i = 0; i < ks->n; i++)
        free(ks->k[i]);
    ks->n = 0;
}

/* The KEYSET test wrapper: body(t, ks) runs, then the keys are freed. */
#define KEYSET_TEST(name)                                                  \
    static void name##_body(ck_test *t, keyset *ks);                      \
    static void name(ck_test *t)                                           \
    {                                                                      \
        keyset ks = {.n = 0};                                              \
        name##_body(t, &ks);                                               \
        keys_free(&ks);                                                    \
    }                                                                      \
    static void name##_body(ck_test *t, keyset *ks)

/* ---- basic CRUD ------------------------------------------------------ */

KEYSET_TEST(t_get_missing)
{
    ck_reply rep;
    const char *k = K(ks, "never-written");
    if (ck_fetch(t, k, &rep) == 0 && rep.r.found)
        ck_fail(t, "get of a key never written returned found=1");
    ck_reply_free(&rep);
}

KEYSET_TEST(t_roundtrip)
{
    const char *k = K(ks, "roundtrip");
    const char *v = "{\"name\":\"conformance\",\"n\":1}";
    if (ck_put(t, k, v) == 0)
        want_str(t, k, v);
}

KEYSET_TEST(t_overwrite)
{
    const char *k = K(ks, "overwrite");
    if (ck_put(t, k, "\"first\"") == 0 && ck_put(t, k, "\"second\"") == 0)
        want_str(t, k, "\"second\"");
}

KEYSET_TEST(t_delete)
{
    const char *k = K(ks, "delete");
    if (ck_put(t, k, "1") != 0)
        return;
    dapr_state_delete_req d = ck_del_req(k, NULL, DAPR_CONCURRENCY_LAST_WRITE);
    if (do_del(t, &d, DAPR_OK, "delete") == 0)
        want_str(t, k, NULL);
}

KEYSET_TEST(t_delete_missing)
{
    dapr_state_delete_req d = ck_del_req(K(ks, "delete-missing"), NULL,
                                         DAPR_CONCURRENCY_UNSPECIFIED);
    do_del(t, &d, DAPR_OK, "delete of a missing key without etag");
}

/* ---- etags and concurrency modes --------------------------------------- */

KEYSET_TEST(t_etag_returned)
{
    NEED_ETAG(t);
    const char *k = K(ks, "etag-returned");
    if (ck_put(t, k, "1") == 0)
        free(etag_of(t, k));
}

KEYSET_TEST(t_set_right_etag)
{
    NEED_ETAG(t);
    const char *k = K(ks, "right-etag");
    if (ck_put(t, k, "1") != 0)
        return;
    char *e1 = etag_of(t, k);
    if (!e1)
        return;
    dapr_state_set_req s = ck_set_req(k, "2", e1, DAPR_CONCURRENCY_LAST_WRITE);
    if (do_set(t, &s, DAPR_OK, "set with the current etag") == 0 &&
        want_str(t, k, "2") == 0) {
        char *e2 = etag_of(t, k);
        if (e2 && strcmp(e1, e2) == 0)
            ck_fail(t, "etag did not change after a write (%s)", e1);
        free(e2);
    }
    free(e1);
}

KEYSET_TEST(t_set_wrong_etag)
{
    NEED_ETAG(t);
    const char *k = K(ks, "wrong-etag");
    if (ck_put(t, k, "\"v1\"") != 0)
        return;
    /* A stale etag of the same key: a well-formed etag in any store. */
    char *stale = etag_of(t, k);
    if (!stale || ck_put(t, k, "\"v2\"") != 0) {
        free(stale);
        return;
    }
    dapr_state_set_req s = ck_set_req(k, "\"v3\"", stale, DAPR_CONCURRENCY_LAST_WRITE);
    if (do_set(t, &s, DAPR_ERR_ETAG_MISMATCH, "set with a stale etag") == 0)
        want_str(t, k, "\"v2\"");
    /* first-write with a stale etag is an etag check too */
    s.concurrency = DAPR_CONCURRENCY_FIRST_WRITE;
    if (!t->failed &&
        do_set(t, &s, DAPR_ERR_ETAG_MISMATCH, "first-write set with a stale etag") == 0)
        want_str(t, k, "\"v2\"");
    free(stale);
}

KEYSET_TEST(t_set_etag_missing_key)
{
    NEED_ETAG(t);
    const char *k = K(ks, "etag-missing-key");
    if (ck_put(t, k, "1") != 0)
        return;
    char *stale = etag_of(t, k);
    if (!stale)
        return;
    dapr_state_delete_req d = ck_del_req(k, NULL, DAPR_CONCURRENCY_LAST_WRITE);
    if (do_del(t, &d, DAPR_OK, "delete") == 0) {
        dapr_state_set_req s = ck_set_req(k, "2", stale, DAPR_CONCURRENCY_LAST_WRITE);
        if (do_set(t, &s, DAPR_ERR_ETAG_MISMATCH, "set with an etag on a missing key") == 0)
            want_str(t, k, NULL);
    }
    free(stale);
}

KEYSET_TEST(t_first_write)
{
    NEED_ETAG(t);
    const char *k = K(ks, "first-write-existing");
    if (ck_put(t, k, "\"old\"") != 0)
        return;
    dapr_state_set_req s = ck_set_req(k, "\"new\"", NULL, DAPR_CONCURRENCY_FIRST_WRITE);
    if (do_set(t, &s, DAPR_ERR_ETAG_MISMATCH,
               "first-write without etag on an existing key") != 0 ||
        want_str(t, k, "\"old\"") != 0)
        return;
    /* "" means "no etag" exactly like NULL */
    s.etag = "";
    if (do_set(t, &s, DAPR_ERR_ETAG_MISMATCH,
               "first-write with etag \"\" on an existing key") != 0)
        return;
    /* with the right etag, first-write writes */
    char *e = etag_of(t, k);
    if (!e)
        return;
    s.etag = e;
    if (do_set(t, &s, DAPR_OK, "first-write with the current etag") == 0)
        want_str(t, k, "\"new\"");
    free(e);
    if (t->failed)
        return;

    const char *n = K(ks, "first-write-new");
    dapr_state_set_req f = ck_set_req(n, "\"fresh\"", NULL, DAPR_CONCURRENCY_FIRST_WRITE);
    if (do_set(t, &f, DAPR_OK, "first-write without etag on a new key") == 0)
        want_str(t, n, "\"fresh\"");
}

KEYSET_TEST(t_delete_etag)
{
    NEED_ETAG(t);
    const char *k = K(ks, "delete-etag");
    if (ck_put(t, k, "1") != 0)
        return;
    char *stale = etag_of(t, k);
    if (!stale)
        return;
    char *cur = NULL;
    if (ck_put(t, k, "2") != 0 || !(cur = etag_of(t, k)))
        goto out;
    dapr_state_delete_req d = ck_del_req(k, stale, DAPR_CONCURRENCY_LAST_WRITE);
    if (do_del(t, &d, DAPR_ERR_ETAG_MISMATCH, "delete with a stale etag") != 0 ||
        want_str(t, k, "2") != 0)
        goto out;
    d.etag = cur;
    if (do_del(t, &d, DAPR_OK, "delete with the current etag") != 0 ||
        want_str(t, k, NULL) != 0)
        goto out;
    /* the key is gone now: an etag can no longer match */
    do_del(t, &d, DAPR_ERR_ETAG_MISMATCH, "delete with an etag on a missing key");
out:
    free(stale);
    free(cur);
}

KEYSET_TEST(t_etag_changes)
{
    NEED_ETAG(t);
    const char *k = K(ks, "etag-changes");
    char *seen[6] = {0};
    for (int i = 0; i < 6 && !t->failed; i++) {
        /* the same value every time: the etag still has to change */
        if (ck_put(t, k, "\"same\"") != 0)
            break;
        seen[i] = etag_of(t, k);
        for (int j = 0; seen[i] && j < i; j++)
            if (seen[j] && strcmp(seen[i], seen[j]) == 0) {
                ck_fail(t, "write %d returned the etag of write %d (%s)", i + 1,
                        j + 1, seen[i]);
                break;
            }
    }
    for (int i = 0; i < 6; i++)
        free(seen[i]);
}

/* ---- bulk operations ------------------------------------------------- */

KEYSET_TEST(t_bulk_get)
{
    if (!CK_VT_HAS(bulk_get)) {
        ck_skip(t, "bulk_get is NULL (the host falls back to get)");
        return;
    }
    const char *keys[4] = {K(ks, "bulk-b"), K(ks, "bulk-missing"), K(ks, "bulk-a"),
                           K(ks, "bulk-b")};
    if (ck_put(t, keys[0], "\"B\"") != 0 || ck_put(t, keys[2], "\"A\"") != 0)
        return;
    const char *want[4] = {"\"B\"", NULL, "\"A\"", "\"B\""};

    ck_reply rep;
    /* The same key twice: the host passes what the app asked for. */
    CK_CALL(t, ck_bulk_get(keys, 4, &rep), &rep);
    if (want_status(t, "bulk_get", &rep, DAPR_OK) == 0) {
        if (rep.n_items != 4)
            ck_fail(t, "bulk_get of 4 keys returned %zu items", rep.n_items);
        for (size_t i = 0; i < rep.n_items && !t->failed; i++) {
            const ck_item *it = &rep.items[i];
            if (!it->key || strcmp(it->key, keys[i]) != 0)
                ck_fail(t, "item %zu: key %s, want %s (request order)", i,
                        it->key ? it->key : "NULL", keys[i]);
            else if (it->status != DAPR_OK)
                ck_fail(t, "item %zu: %s (%s)", i, ck_status_name(it->status),
                        it->message ? it->message : "no message");
            else if (!want[i] && it->found)
                ck_fail(t, "item %zu (%s): missing key reported found", i, keys[i]);
            else if (want[i] && !it->found)
                ck_fail(t, "item %zu (%s): not found", i, keys[i]);
            else if (want[i] && strcmp((char *)it->value, want[i]) != 0)
                ck_fail(t, "item %zu: value %s, want %s", i, (char *)it->value, want[i]);
            else if (want[i] && CK_FEATURE(DAPR_STATE_ETAG) && (!it->etag || !*it->etag))
                ck_fail(t, "item %zu: no etag although the store claims ETAG", i);
        }
    }
    ck_reply_free(&rep);
}

KEYSET_TEST(t_bulk_set)
{
    if (!CK_VT_HAS(bulk_set)) {
        ck_skip(t, "bulk_set is NULL (the host falls back to set)");
        return;
    }
    dapr_state_set_req reqs[3] = {
        ck_set_req(K(ks, "bset-1"), "1", NULL, DAPR_CONCURRENCY_LAST_WRITE),
        ck_set_req(K(ks, "bset-2"), "2", NULL, DAPR_CONCURRENCY_LAST_WRITE),
        ck_set_req(K(ks, "bset-3"), "3", NULL, DAPR_CONCURRENCY_LAST_WRITE),
    };
    ck_reply rep;
    CK_CALL(t, ck_bulk_set(reqs, 3, &rep), &rep);
    int ok = want_status(t, "bulk_set", &rep, DAPR_OK) == 0;
    ck_reply_free(&rep);
    if (ok && want_str(t, reqs[0].key, "1") == 0 && want_str(t, reqs[1].key, "2") == 0)
        want_str(t, reqs[2].key, "3");
}

KEYSET_TEST(t_bulk_delete)
{
    if (!CK_VT_HAS(bulk_delete)) {
        ck_skip(t, "bulk_delete is NULL (the host falls back to del)");
        return;
    }
    const char *a = K(ks, "bdel-1"), *b = K(ks, "bdel-2"), *m = K(ks, "bdel-missing");
    if (ck_put(t, a, "1") != 0 || ck_put(t, b, "2") != 0)
        return;
    dapr_state_delete_req reqs[3] = {
        ck_del_req(a, NULL, DAPR_CONCURRENCY_LAST_WRITE),
        ck_del_req(m, NULL, DAPR_CONCURRENCY_LAST_WRITE),
        ck_del_req(b, NULL, DAPR_CONCURRENCY_LAST_WRITE),
    };
    ck_reply rep;
    CK_CALL(t, ck_bulk_delete(reqs, 3, &rep), &rep);
    int ok = want_status(t, "bulk_delete (one key missing, no etags)", &rep, DAPR_OK) == 0;
    ck_reply_free(&rep);
    if (ok && want_str(t, a, NULL) == 0)
        want_str(t, b, NULL);
}

/* ---- transactions ---------------------------------------------------- */

#define NEED_TXN(t)                                                        \
    do {                                                                   \
        if (!CK_FEATURE(DAPR_STATE_TRANSACTIONAL)) {                       \
            ck_skip((t), "the store does not claim TRANSACTIONAL");        \
            return;                                                        \
        }                                                                  \
    } while (0)

static dapr_state_op upsert_op(const char *key, const char *value, const char *etag)
{
    dapr_state_op op;
    memset(&op, 0, sizeof op);
    op.kind = DAPR_STATE_OP_UPSERT;
    op.set = ck_set_req(key, value, etag, DAPR_CONCURRENCY_LAST_WRITE);
    return op;
}

static dapr_state_op delete_op(const char *key, const char *etag)
{
    dapr_state_op op;
    memset(&op, 0, sizeof op);
    op.kind = DAPR_STATE_OP_DELETE;
    op.del = ck_del_req(key, etag, DAPR_CONCURRENCY_LAST_WRITE);
    return op;
}

KEYSET_TEST(t_txn_apply)
{
    NEED_TXN(t);
    const char *a = K(ks, "txn-a"), *b = K(ks, "txn-b"), *c = K(ks, "txn-c");
    if (ck_put(t, b, "\"b-old\"") != 0 || ck_put(t, c, "\"c-old\"") != 0)
        return;
    dapr_state_op ops[3] = {upsert_op(a, "\"a-new\"", NULL),
                            upsert_op(b, "\"b-new\"", NULL), delete_op(c, NULL)};
    ck_reply rep;
    CK_CALL(t, ck_transact(ops, 3, &rep), &rep);
    int ok = want_status(t, "transaction upsert+upsert+delete", &rep, DAPR_OK) == 0;
    ck_reply_free(&rep);
    if (ok && want_str(t, a, "\"a-new\"") == 0 && want_str(t, b, "\"b-new\"") == 0)
        want_str(t, c, NULL);
}

KEYSET_TEST(t_txn_rollback)
{
    NEED_TXN(t);
    if (!CK_FEATURE(DAPR_STATE_ETAG)) {
        ck_skip(t, "needs ETAG to make one operation fail");
        return;
    }
    const char *x = K(ks, "txn-x"), *y = K(ks, "txn-y"), *z = K(ks, "txn-z");
    if (ck_put(t, x, "\"x0\"") != 0 || ck_put(t, y, "\"y0\"") != 0 ||
        ck_put(t, z, "\"z0\"") != 0)
        return;
    char *stale = etag_of(t, z);
    if (!stale)
        return;
    if (ck_put(t, z, "\"z1\"") != 0) {
        free(stale);
        return;
    }
    /* The bad operation comes last, so applying as you go would show. */
    const char *fresh = K(ks, "txn-fresh");
    dapr_state_op ops[4] = {upsert_op(x, "\"x1\"", NULL), delete_op(y, NULL),
                            upsert_op(fresh, "\"f\"", NULL),
                            upsert_op(z, "\"z2\"", stale)};
    ck_reply rep;
    if (ck_transact(ops, 4, &rep) != 0)
        ck_fail(t, "%s", rep.failure);
    else if (want_status(t, "transaction with one stale etag", &rep,
                         DAPR_ERR_ETAG_MISMATCH) == 0 &&
             want_str(t, x, "\"x0\"") == 0 && want_str(t, y, "\"y0\"") == 0 &&
             want_str(t, fresh, NULL) == 0)
        want_str(t, z, "\"z1\"");
    ck_reply_free(&rep);
    free(stale);
}

static void t_txn_limit(ck_test *t)
{
    NEED_TXN(t);
    uint32_t max = ck_comp.vt->max_transaction_ops;
    if (max == 0) {
        ck_skip(t, "max_transaction_ops is 0 (no limit)");
        return;
    }
    if (max > 10000) {
        ck_skip(t, "max_transaction_ops %u is too large to try", max);
        return;
    }
    /* The host refuses larger transactions itself; a transaction of
     * exactly the declared size must work. */
    dapr_state_op *ops = calloc(max, sizeof *ops);
    char **keys = calloc(max, sizeof *keys);
    if (!ops || !keys) {
        ck_fail(t, "out of memory");
        free(ops);
        free(keys);
        return;
    }
    char name[64];
    for (uint32_t i = 0; i < max; i++) {
        snprintf(name, sizeof name, "txn-limit-%u", i);
        keys[i] = ck_key(name);
        ops[i] = upsert_op(keys[i], "\"x\"", NULL);
    }
    ck_reply rep;
    if (ck_transact(ops, max, &rep) != 0)
        ck_fail(t, "%s", rep.failure);
    else if (want_status(t, "transaction of max_transaction_ops operations", &rep,
                         DAPR_OK) == 0 &&
             want_str(t, keys[0], "\"x\"") == 0)
        want_str(t, keys[max - 1], "\"x\"");
    ck_reply_free(&rep);
    for (uint32_t i = 0; i < max; i++)
        free(keys[i]);
    free(keys);
    free(ops);
}

/* ---- TTL ------------------------------------------------------------- */

#define NEED_TTL(t)                                                        \
    do {                                                                   \
        if (!CK_FEATURE(DAPR_STATE_TTL)) {                                 \
            ck_skip((t), "the store does not claim TTL");                  \
            return;                                                        \
        }                                                                  \
    } while (0)

static int set_with_ttl(ck_test *t, const char *key, const char *value,
                        const char *ttl, dapr_status want)
{
    dapr_kv kv = {"ttlInSeconds", ttl};
    dapr_state_set_req s = ck_set_req(key, value, NULL, DAPR_CONCURRENCY_LAST_WRITE);
    s.metadata.items = &kv;
    s.metadata.n = 1;
    char what[96];
    snprintf(what, sizeof what, "set with ttlInSeconds=%s", ttl);
    return do_set(t, &s, want, what);
}

/* Parse RFC 3339 ("2026-11-28T13:00:00Z", fractions and a +00:00 offset
 * allowed); returns -1 when malformed or not UTC. */
static int parse_rfc3339_utc(const char *s, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 19)
        return -1;
    const char *p = s + n;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = timegm(&tm);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Written by t_ttl_expires with ttlInSeconds=-1, checked by t_ttl_forever
 * once the 1-second item has expired, so the suite waits only once. */
static char *forever_key;
static double forever_set_at;

KEYSET_TEST(t_ttl_expires)
{
    NEED_TTL(t);
    const char *k = K(ks, "ttl-1s");
    free(forever_key);
    forever_key = ck_key("ttl-forever");
    if (set_with_ttl(t, forever_key, "\"forever\"", "-1", DAPR_OK) != 0)
        return;
    forever_set_at = mono_now();
    if (set_with_ttl(t, k, "\"short\"", "1", DAPR_OK) != 0)
        return;

    ck_reply rep;
    if (ck_fetch(t, k, &rep) != 0) {
        ck_reply_free(&rep);
        return;
    }
    if (rep.r.found) {
        /* Normally still there; on a very slow machine it may be gone. */
        const char *exp = ck_meta_get(&rep.r, "ttlExpireTime");
        time_t when, now = time(NULL);
        if (!exp)
            ck_fail(t, "get of an item with a TTL has no ttlExpireTime metadata");
        else if (parse_rfc3339_utc(exp, &when) != 0)
            ck_fail(t, "ttlExpireTime '%s' is not RFC 3339 UTC", exp);
        else if (when < now - 5 || when > now + 5)
            ck_fail(t, "ttlExpireTime %s is not about 1 s from now", exp);
    }
    ck_reply_free(&rep);
    if (t->failed)
        return;

    double start = mono_now();
    for (;;) {
        if (ck_fetch(t, k, &rep) != 0) {
            ck_reply_free(&rep);
            return;
        }
        int found = rep.r.found;
        ck_reply_free(&rep);
        if (!found)
            return;
        if (mono_now() - start > 4.0) {
            ck_fail(t, "item with ttlInSeconds=1 still present after 4 s");
            return;
        }
        sleep_ms(100);
    }
}

static void t_ttl_forever(ck_test *t)
{
    NEED_TTL(t);
    if (!forever_key) {
        ck_fail(t, "the previous test did not write its item");
        return;
    }
    double waited = mono_now() - forever_set_at;
    if (waited < 1.5)
        sleep_ms((long)((1.5 - waited) * 1000));
    ck_reply rep;
    if (ck_fetch(t, forever_key, &rep) == 0) {
        if (!rep.r.found)
            ck_fail(t, "item written with ttlInSeconds=-1 has expired");
        else if (ck_meta_get(&rep.r, "ttlExpireTime"))
            ck_fail(t, "item without expiry reports ttlExpireTime %s",
                    ck_meta_get(&rep.r, "ttlExpireTime"));
    }
    ck_reply_free(&rep);
    free(forever_key);
    forever_key = NULL;
}

KEYSET_TEST(t_ttl_invalid)
{
    NEED_TTL(t);
    const char *k = K(ks, "ttl-invalid");
    const char *bad[] = {"abc", "1.5", "10s"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad && !t->failed; i++)
        if (set_with_ttl(t, k, "1", bad[i], DAPR_ERR_INVALID_ARGUMENT) == 0)
            want_str(t, k, NULL);
}

/* ---- values and keys ----------------------------------------------------- */

KEYSET_TEST(t_large_value)
{
    const size_t len = 4u << 20; /* 4 MiB, a JSON string */
    char *v = malloc(len + 1);
    if (!v) {
        ck_fail(t, "out of memory");
        return;
    }
    v[0] = '"';
    for (size_t i = 1; i < len - 1; i++)
        v[i] = (char)('a' + (i * 7) % 26);
    v[len - 1] = '"';
    v[len] = '\0';
    const char *k = K(ks, "large-value");
    if (ck_put(t, k, v) == 0)
        want_value(t, k, 1, v, len);
    free(v);
}

KEYSET_TEST(t_binary_value)
{
    /* NUL bytes, invalid UTF-8 (lone continuation, overlong, surrogate),
     * 0xff: must come back byte for byte. */
    static const uint8_t bin[] = {0x00, 0x01, 'a', 0x00, 0xff, 0xfe, 0xc3, 0x28,
                                  0x80, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0x00, '"',
                                  '\\', 0x7f, 0x00};
    const char *k = K(ks, "binary-value");
    dapr_state_set_req s = ck_set_req(k, NULL, NULL, DAPR_CONCURRENCY_LAST_WRITE);
    s.value.ptr = bin;
    s.value.len = sizeof bin;
    if (do_set(t, &s, DAPR_OK, "set of a binary value") == 0)
        want_value(t, k, 1, bin, sizeof bin);
}

KEYSET_TEST(t_empty_value)
{
    const char *k = K(ks, "empty-value");
    dapr_state_set_req s = ck_set_req(k, "", NULL, DAPR_CONCURRENCY_LAST_WRITE);
    if (do_set(t, &s, DAPR_OK, "set of a 0-byte value") == 0)
        want_value(t, k, 1, "", 0);
}

KEYSET_TEST(t_odd_keys)
{
    static const char *names[] = {
        "ключ-🔑",
        "key with spaces",
        "a/b/../c/",
        "quote\"double",
        "quote'single",
        "back\\slash",
        "'; DROP TABLE state; --",
        "' OR '1'='1",
        "{\"$gt\":\"\"}",
        "$where",
        "percent%20%s%n",
        "*?[glob]",
        "tab\tnewline\n",
    };
    const size_t n = sizeof names / sizeof *names;
    /* A sentinel that a key "injection" could wipe or match. */
    const char *sentinel = K(ks, "sentinel");
    if (ck_put(t, sentinel, "\"sentinel\"") != 0)
        return;
    const char *keys[sizeof names / sizeof *names];
    char val[32];
    for (size_t i = 0; i < n && !t->failed; i++) {
        keys[i] = K(ks, names[i]);
        snprintf(val, sizeof val, "\"v%zu\"", i);
        ck_put(t, keys[i], val);
    }
    for (size_t i = 0; i < n && !t->failed; i++) {
        snprintf(val, sizeof val, "\"v%zu\"", i);
        want_str(t, keys[i], val);
    }
    if (t->failed || want_str(t, sentinel, "\"sentinel\"") != 0)
        return;
    /* Deleting the odd keys must delete exactly those. */
    for (size_t i = 0; i < n && !t->failed; i++) {
        dapr_state_delete_req d = ck_del_req(keys[i], NULL, DAPR_CONCURRENCY_LAST_WRITE);
        if (do_del(t, &d, DAPR_OK, "delete of an odd key") == 0)
            want_str(t, keys[i], NULL);
    }
    if (!t->failed)
        want_str(t, sentinel, "\"sentinel\"");
}

/* ---- concurrency ----------------------------------------------------- */

typedef struct worker {
    int id;
    pthread_barrier_t *start;
    const char *shared_key;    /* race and counter tests */
    int iterations;
    int won;                   /* first-write race: 1 when this one won */
    long retries;
    ck_test t;                 /* this thread's failure, if any */
} worker;

static void run_workers(ck_test *t, void *(*fn)(void *), worker *w, int n)
{
    pthread_t *th = calloc((size_t)n, sizeof *th);
    pthread_barrier_t start;
    if (!th) {
        ck_fail(t, "out of memory");
        return;
    }
    pthread_barrier_init(&start, NULL, (unsigned)n);
    int started = 0;
    for (int i = 0; i < n; i++) {
        w[i].id = i;
        w[i].start = &start;
        if (pthread_create(&th[i], NULL, fn, &w[i]) != 0) {
            fprintf(stderr, "dapr-plugin-conformance: cannot start a thread\n");
            exit(2); /* the barrier would never open */
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    free(th);
    for (int i = 0; i < n; i++)
        if (w[i].t.failed) {
            ck_fail(t, "thread %d: %s", i, w[i].t.reason);
            break;
        }
}

static void *own_keys_worker(void *arg)
{
    worker *w = arg;
    ck_test *t = &w->t;
    char name[64], val[64];
    pthread_barrier_wait(w->start);
    for (int i = 0; i < w->iterations && !t->failed; i++) {
        snprintf(name, sizeof name, "conc-%d-%d", w->id, i % 4);
        snprintf(val, sizeof val, "\"t%d-i%d\"", w->id, i);
        char *k = ck_key(name);
        if (ck_put(t, k, val) == 0 && want_str(t, k, val) == 0 && i % 3 == 0) {
            dapr_state_delete_req d = ck_del_req(k, NULL, DAPR_CONCURRENCY_LAST_WRITE);
            if (do_del(t, &d, DAPR_OK, "delete") == 0)
                want_str(t, k, NULL);
        }
        free(k);
    }
    return NULL;
}

static void t_concurrent_own_keys(ck_test *t)
{
    int n = ck_opt.threads;
    worker *w = calloc((size_t)n, sizeof *w);
    if (!w) {
        ck_fail(t, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++)
        w[i].iterations = 200;
    run_workers(t, own_keys_worker, w, n);
    free(w);
}

static void *race_worker(void *arg)
{
    worker *w = arg;
    char val[32];
    snprintf(val, sizeof val, "\"winner-%d\"", w->id);
    dapr_state_set_req s = ck_set_req(w->shared_key, val, NULL, DAPR_CONCURRENCY_FIRST_WRITE);
    pthread_barrier_wait(w->start);
    ck_reply rep;
    if (ck_set(&s, &rep) != 0)
        ck_fail(&w->t, "%s", rep.failure);
    else if (rep.r.status == DAPR_OK)
        w->won = 1;
    else if (rep.r.status != DAPR_ERR_ETAG_MISMATCH)
        ck_fail(&w->t, "first-write race: got %s (%s), want DAPR_OK or DAPR_ERR_ETAG_MISMATCH",
                ck_status_name(rep.r.status), rep.r.message ? rep.r.message : "no message");
    ck_reply_free(&rep);
    return NULL;
}

static void t_first_write_race(ck_test *t)
{
    NEED_ETAG(t);
    int n = ck_opt.threads;
    if (n < 2) {
        ck_skip(t, "needs --threads 2 or more");
        return;
    }
    worker *w = calloc((size_t)n, sizeof *w);
    if (!w) {
        ck_fail(t, "out of memory");
        return;
    }
    /* Several rounds: one race may not overlap much on a fast store. */
    for (int round = 0; round < 10 && !t->failed; round++) {
        char name[32];
        snprintf(name, sizeof name, "race-%d", round);
        char *k = ck_key(name);
        memset(w, 0, (size_t)n * sizeof *w);
        for (int i = 0; i < n; i++)
            w[i].shared_key = k;
        run_workers(t, race_worker, w, n);
        int winners = 0, winner = -1;
        for (int i = 0; i < n; i++)
            if (w[i].won)
                winners++, winner = i;
        if (!t->failed && winners != 1)
            ck_fail(t, "round %d: %d of %d first-writers succeeded, want exactly 1",
                    round, winners, n);
        if (!t->failed) {
            char val[32];
            snprintf(val, sizeof val, "\"winner-%d\"", winner);
            want_str(t, k, val);
        }
        free(k);
    }
    free(w);
}

static void *cas_worker(void *arg)
{
    worker *w = arg;
    ck_test *t = &w->t;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < w->iterations && !t->failed; i++) {
        for (int attempt = 0;; attempt++) {
            if (attempt > 10000) {
                ck_fail(t, "no increment succeeded in 10000 attempts");
                return NULL;
            }
            ck_reply rep;
            if (ck_fetch(t, w->shared_key, &rep) != 0 || !rep.r.found || !rep.r.etag) {
                if (!t->failed)
                    ck_fail(t, "counter vanished or has no etag");
                ck_reply_free(&rep);
                return NULL;
            }
            long v = strtol((char *)rep.r.value, NULL, 10);
            char next[32];
            snprintf(next, sizeof next, "%ld", v + 1);
            dapr_state_set_req s = ck_set_req(w->shared_key, next, rep.r.etag,
                                              DAPR_CONCURRENCY_LAST_WRITE);
            ck_reply sr;
            int rc = ck_set(&s, &sr);
            ck_reply_free(&rep);
            if (rc != 0) {
                ck_fail(t, "%s", sr.failure);
                ck_reply_free(&sr);
                return NULL;
            }
            dapr_status st = sr.r.status;
            ck_reply_free(&sr);
            if (st == DAPR_OK)
                break;
            if (st != DAPR_ERR_ETAG_MISMATCH) {
                ck_fail(t, "compare-and-set: got %s", ck_status_name(st));
                return NULL;
            }
            w->retries++;
        }
    }
    return NULL;
}

static void t_cas_increments(ck_test *t)
{
    NEED_ETAG(t);
    int n = ck_opt.threads;
    const int per_thread = 50;
    char *k = ck_key("cas-counter");
    worker *w = calloc((size_t)n, sizeof *w);
    if (!w) {
        ck_fail(t, "out of memory");
        free(k);
        return;
    }
    if (ck_put(t, k, "0") == 0) {
        for (int i = 0; i < n; i++) {
            w[i].shared_key = k;
            w[i].iterations = per_thread;
        }
        run_workers(t, cas_worker, w, n);
        if (!t->failed) {
            char want[32];
            snprintf(want, sizeof want, "%d", n * per_thread);
            want_str(t, k, want); /* a lost update shows as a smaller count */
        }
    }
    if (ck_opt.verbose && !t->failed) {
        long r = 0;
        for (int i = 0; i < n; i++)
            r += w[i].retries;
        printf("# %d increments, %ld etag-mismatch retries\n", n * per_thread, r);
    }
    free(w);
    free(k);
}

const ck_case ck_state_cases[] = {
    {"get of a missing key: DAPR_OK, found=0", t_get_missing},
    {"set then get round-trips the value", t_roundtrip},
    {"set overwrites (last-write)", t_overwrite},
    {"delete removes the key", t_delete},
    {"delete of a missing key without etag is DAPR_OK", t_delete_missing},
    {"get returns an etag (ETAG)", t_etag_returned},
    {"set with the current etag writes and changes the etag", t_set_right_etag},
    {"set with a stale etag: ETAG_MISMATCH, value unchanged", t_set_wrong_etag},
    {"set with an etag on a missing key: ETAG_MISMATCH", t_set_etag_missing_key},
    {"first-write: existing key mismatches, new key writes", t_first_write},
    {"delete with stale etag mismatches, current etag deletes", t_delete_etag},
    {"every write makes a new etag", t_etag_changes},
    {"bulk_get: request order, missing keys", t_bulk_get},
    {"bulk_set writes every item", t_bulk_set},
    {"bulk_delete deletes every item", t_bulk_delete},
    {"transaction applies upserts and deletes", t_txn_apply},
    {"transaction with one stale etag applies nothing", t_txn_rollback},
    {"transaction of max_transaction_ops operations", t_txn_limit},
    {"ttlInSeconds=1 expires; ttlExpireTime is RFC 3339 UTC", t_ttl_expires},
    {"ttlInSeconds=-1 never expires", t_ttl_forever},
    {"non-integer ttlInSeconds: INVALID_ARGUMENT", t_ttl_invalid},
    {"4 MiB value round-trips", t_large_value},
    {"binary value (NUL, invalid UTF-8) round-trips exactly", t_binary_value},
    {"empty value round-trips", t_empty_value},
    {"unicode, spaces, slashes, quotes, SQL/NoSQL-looking keys are inert", t_odd_keys},
    {"concurrent set/get/delete on own keys", t_concurrent_own_keys},
    {"concurrent first-write on one key: exactly one winner", t_first_write_race},
    {"concurrent etag compare-and-set increments lose no update", t_cas_increments},
};
const size_t ck_n_state_cases = sizeof ck_state_cases / sizeof *ck_state_cases;
