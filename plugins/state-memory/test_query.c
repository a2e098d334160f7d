/*
 * test_query.c - unit tests of state.in-memory's query engine and table.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memtable.h"
#include "query.h"

/* ---- query helpers ------------------------------------------------------ */

#define D(k, json) {k, (const uint8_t *)(json), sizeof(json) - 1}

static const mq_doc people[] = {
    D("p1", "{\"name\":\"ann\",\"age\":31,\"state\":\"CA\",\"org\":{\"team\":\"Dev\"}}"),
    D("p2", "{\"name\":\"bob\",\"age\":25.5,\"state\":\"WA\",\"org\":{\"team\":\"Ops\"}}"),
    D("p3", "{\"name\":\"cid\",\"age\":\"40\",\"state\":\"CA\",\"org\":{\"team\":\"Ops\"}}"),
    D("p4", "{\"name\":\"dee\",\"state\":\"NY\",\"org\":{\"team\":\"Dev\"}}"),
    D("p5", "not json at all"),
    D("p6", "{\"name\":\"eve\",\"age\":25,\"state\":\"CA\",\"org\":\"none\"}"),
};
#define NPEOPLE (sizeof people / sizeof people[0])

/* Run q over people; return the selected keys joined by ',' plus
 * "|token" when there is a next page. */
static char *run(const char *qs)
{
    static char buf[512];
    char err[256], token[MQ_TOKEN_MAX];
    size_t *sel, nsel;
    mq_query *q = mq_parse(qs, strlen(qs), err, sizeof err);

    ck_assert_msg(q != NULL, "parse failed: %s", err);
    ck_assert_int_eq(mq_run(q, people, NPEOPLE, &sel, &nsel, token), 0);
    buf[0] = '\0';
    for (size_t i = 0; i < nsel; i++) {
        if (i)
            strcat(buf, ",");
        strcat(buf, people[sel[i]].key);
    }
    if (token[0]) {
        strcat(buf, "|");
        strcat(buf, token);
    }
    free(sel);
    mq_free(q);
    return buf;
}

static const char *parse_error(const char *qs)
{
    static char err[256];
    mq_query *q = mq_parse(qs, strlen(qs), err, sizeof err);
    ck_assert_msg(q == NULL, "query unexpectedly parsed: %s", qs);
    return err;
}

/* ---- query tests ------------------------------------------------------ */

START_TEST(empty_filter_matches_all_sorted_by_key)
{
    ck_assert_str_eq(run("{}"), "p1,p2,p3,p4,p5,p6");
    ck_assert_str_eq(run("{\"filter\":{}}"), "p1,p2,p3,p4,p5,p6");
}
END_TEST

START_TEST(eq_neq)
{
    ck_assert_str_eq(run("{\"filter\":{\"EQ\":{\"state\":\"CA\"}}}"), "p1,p3,p6");
    ck_assert_str_eq(run("{\"filter\":{\"EQ\":{\"org.team\":\"Dev\"}}}"), "p1,p4");
    /* 25 == 25.0 numerically; the string "40" is not the number 40. */
    ck_assert_str_eq(run("{\"filter\":{\"EQ\":{\"age\":25.0}}}"), "p6");
    ck_assert_str_eq(run("{\"filter\":{\"EQ\":{\"age\":40}}}"), "");
    /* NEQ: true for other values, other types and absent paths; never
     * for a value that is not JSON. */
    ck_assert_str_eq(run("{\"filter\":{\"NEQ\":{\"state\":\"CA\"}}}"), "p2,p4");
    ck_assert_str_eq(run("{\"filter\":{\"NEQ\":{\"age\":31}}}"), "p2,p3,p4,p6");
}
END_TEST

START_TEST(ordering_ops)
{
    ck_assert_str_eq(run("{\"filter\":{\"GT\":{\"age\":25}}}"), "p1,p2");
    ck_assert_str_eq(run("{\"filter\":{\"GTE\":{\"age\":25}}}"), "p1,p2,p6");
    ck_assert_str_eq(run("{\"filter\":{\"LT\":{\"age\":31}}}"), "p2,p6");
    ck_assert_str_eq(run("{\"filter\":{\"LTE\":{\"age\":31}}}"), "p1,p2,p6");
    /* strings compare with strings only */
    ck_assert_str_eq(run("{\"filter\":{\"GTE\":{\"age\":\"4\"}}}"), "p3");
    ck_assert_str_eq(run("{\"filter\":{\"LT\":{\"name\":\"c\"}}}"), "p1,p2");
}
END_TEST

START_TEST(in_and_or)
{
    ck_assert_str_eq(run("{\"filter\":{\"IN\":{\"state\":[\"WA\",\"NY\"]}}}"), "p2,p4");
    ck_assert_str_eq(run("{\"filter\":{\"IN\":{\"state\":[]}}}"), "");
    ck_assert_str_eq(run("{\"filter\":{\"AND\":[{\"EQ\":{\"state\":\"CA\"}},"
                         "{\"IN\":{\"org.team\":[\"Dev\",\"Ops\"]}}]}}"), "p1,p3");
    ck_assert_str_eq(run("{\"filter\":{\"OR\":[{\"EQ\":{\"state\":\"NY\"}},"
                         "{\"AND\":[{\"GT\":{\"age\":30}},{\"EQ\":{\"state\":\"CA\"}}]}]}}"),
                     "p1,p4");
}
END_TEST

START_TEST(sorting)
{
    ck_assert_str_eq(run("{\"sort\":[{\"key\":\"age\"}]}"), "p6,p2,p1,p3,p4,p5");
    /* absent values stay last when descending too */
    ck_assert_str_eq(run("{\"sort\":[{\"key\":\"age\",\"order\":\"DESC\"}]}"),
                     "p3,p1,p2,p6,p4,p5");
    /* several keys; ties fall back on the key, so the order is stable */
    ck_assert_str_eq(run("{\"filter\":{\"NEQ\":{\"state\":\"x\"}},"
                         "\"sort\":[{\"key\":\"state\"},{\"key\":\"name\",\"order\":\"DESC\"}]}"),
                     "p6,p3,p1,p4,p2");
    ck_assert_str_eq(run("{\"sort\":[{\"key\":\"org.team\",\"order\":\"ASC\"}]}"),
                     "p1,p4,p2,p3,p5,p6");
}
END_TEST

START_TEST(paging)
{
    ck_assert_str_eq(run("{\"page\":{\"limit\":2}}"), "p1,p2|2");
    ck_assert_str_eq(run("{\"page\":{\"limit\":2,\"token\":\"2\"}}"), "p3,p4|4");
    ck_assert_str_eq(run("{\"page\":{\"limit\":2,\"token\":\"4\"}}"), "p5,p6");
    ck_assert_str_eq(run("{\"page\":{\"limit\":2,\"token\":\"9\"}}"), "");
    ck_assert_str_eq(run("{\"page\":{\"limit\":0}}"), "p1,p2,p3,p4,p5,p6");
    ck_assert_str_eq(run("{\"filter\":{\"EQ\":{\"state\":\"CA\"}},"
                         "\"sort\":[{\"key\":\"age\",\"order\":\"DESC\"}],"
                         "\"page\":{\"limit\":2}}"), "p3,p1|2");
    ck_assert_str_eq(run("{\"page\":{\"limit\":6}}"), "p1,p2,p3,p4,p5,p6");
}
END_TEST

START_TEST(errors)
{
    ck_assert_ptr_nonnull(strstr(parse_error("{"), "not valid JSON"));
    ck_assert_ptr_nonnull(strstr(parse_error("[]"), "JSON object"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"filter\":{\"LIKE\":{\"a\":1}}}"),
                                 "unknown filter operator 'LIKE'"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"filter\":{\"EQ\":{\"a\":1},\"NEQ\":{\"b\":1}}}"),
                                 "exactly one operator"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"filter\":{\"EQ\":{\"a\":1,\"b\":2}}}"),
                                 "exactly one key path"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"filter\":{\"IN\":{\"a\":1}}}"), "array"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"filter\":{\"GT\":{\"a\":true}}}"),
                                 "number or a string"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"filter\":{\"AND\":[]}}"), "non-empty array"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"filter\":{\"OR\":[{\"XX\":{}}]}}"), "'XX'"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"filter\":{\"EQ\":{\"a..b\":1}}}"), "a..b"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"sort\":[{\"order\":\"ASC\"}]}"), "key"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"sort\":[{\"key\":\"a\",\"order\":\"UP\"}]}"),
                                 "ASC"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"page\":{\"limit\":-1}}"), "limit"));
    ck_assert_ptr_nonnull(strstr(parse_error("{\"page\":{\"token\":\"abc\"}}"), "token"));
}
END_TEST

START_TEST(no_documents)
{
    ck_assert_str_eq(run("{\"filter\":{\"EQ\":{\"a\":1}}}"), "");
    char err[64], token[MQ_TOKEN_MAX];
    size_t *sel, nsel;
    mq_query *q = mq_parse("{}", 2, err, sizeof err);
    ck_assert_int_eq(mq_run(q, NULL, 0, &sel, &nsel, token), 0);
    ck_assert_uint_eq(nsel, 0);
    ck_assert_ptr_null(sel);
    ck_assert_str_eq(token, "");
    mq_free(q);
}
END_TEST

/* ---- table tests -------------------------------------------------------- */

START_TEST(uuid_format)
{
    char a[MT_ETAG_LEN + 1], b[MT_ETAG_LEN + 1];
    mt_uuid4(a);
    mt_uuid4(b);
    ck_assert_uint_eq(strlen(a), 36);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(a[8], '-');
    ck_assert_int_eq(a[13], '-');
    ck_assert_int_eq(a[14], '4');
    ck_assert_ptr_nonnull(strchr("89ab", a[19]));
}
END_TEST

START_TEST(table_put_find_del_grow)
{
    memtable t;
    char key[32];

    ck_assert_int_eq(mt_init(&t), 0);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "app||k%d", i);
        mt_value *v = mt_value_new(key, key, strlen(key));
        ck_assert_int_eq(mt_put(&t, v, 0, NULL), 0);
    }
    ck_assert_uint_eq(t.count, 5000);
    ck_assert_uint_ge(t.nbuckets, 4096);

    mt_entry *e = mt_find(&t, "app||k1234", 1);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->val->len, strlen("app||k1234"));
    ck_assert_int_eq(memcmp(e->val->data, "app||k1234", e->val->len), 0);

    /* replacing keeps the count and changes the etag; a reader's
     * reference outlives the replacement */
    mt_value *old = mt_value_ref(e->val);
    mt_entry *spare = malloc(sizeof *spare);
    ck_assert_int_eq(mt_put(&t, mt_value_new("app||k1234", "x", 1), 0, &spare), 0);
    ck_assert_ptr_nonnull(spare); /* not needed for an existing key */
    free(spare);
    ck_assert_uint_eq(t.count, 5000);
    e = mt_find(&t, "app||k1234", 1);
    ck_assert_str_ne(e->val->etag, old->etag);
    ck_assert_int_eq(memcmp(old->data, "app||k1234", old->len), 0);
    mt_value_unref(old);

    ck_assert_int_eq(mt_del(&t, "app||k1234"), 1);
    ck_assert_int_eq(mt_del(&t, "app||k1234"), 0);
    ck_assert_ptr_null(mt_find(&t, "app||k1234", 1));
    ck_assert_uint_eq(t.count, 4999);
    mt_free(&t);
}
END_TEST

static int count_fn(mt_entry *e, void *arg)
{
    (void)e;
    (*(size_t *)arg)++;
    return 0;
}

START_TEST(table_expiry)
{
    memtable t;
    size_t cursor = 0, n = 0;

    ck_assert_int_eq(mt_init(&t), 0);
    mt_entry *spare = malloc(sizeof *spare);
    ck_assert_int_eq(mt_put(&t, mt_value_new("a", "1", 1), 1000, &spare), 0);
    ck_assert_ptr_null(spare); /* used for the new key */
    ck_assert_int_eq(mt_put(&t, mt_value_new("b", "2", 1), 2000, NULL), 0);
    ck_assert_int_eq(mt_put(&t, mt_value_new("c", "3", 1), 0, NULL), 0);
    ck_assert_uint_eq(t.n_ttl, 2);

    ck_assert_ptr_nonnull(mt_find(&t, "a", 999));
    ck_assert_ptr_null(mt_find(&t, "a", 1000));   /* lazily reclaimed */
    ck_assert_uint_eq(t.count, 2);
    ck_assert_uint_eq(mt_sweep(&t, 5000, &cursor, 1000000), 1);
    ck_assert_uint_eq(t.count, 1);
    ck_assert_uint_eq(t.n_ttl, 0);
    ck_assert_ptr_nonnull(mt_find(&t, "c", 1LL << 50));
    /* overwriting with no TTL clears the expiry */
    ck_assert_int_eq(mt_put(&t, mt_value_new("c", "4", 1), 10, NULL), 0);
    ck_assert_uint_eq(t.n_ttl, 1);
    ck_assert_int_eq(mt_put(&t, mt_value_new("c", "5", 1), 0, NULL), 0);
    ck_assert_uint_eq(t.n_ttl, 0);
    mt_foreach(&t, count_fn, &n);
    ck_assert_uint_eq(n, 1);
    mt_free(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("state-memory");
    TCase *q = tcase_create("query");
    TCase *t = tcase_create("table");

    tcase_add_test(q, empty_filter_matches_all_sorted_by_key);
    tcase_add_test(q, eq_neq);
    tcase_add_test(q, ordering_ops);
    tcase_add_test(q, in_and_or);
    tcase_add_test(q, sorting);
    tcase_add_test(q, paging);
    tcase_add_test(q, errors);
    tcase_add_test(q, no_documents);
    tcase_add_test(t, uuid_format);
    tcase_add_test(t, table_put_find_del_grow);
    tcase_add_test(t, table_expiry);
    suite_add_tcase(s, q);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
