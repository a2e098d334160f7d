/*
 * check_dns_msg.c - unit tests of the mDNS message codec (dns_msg.c):
 * round trips through the writer and the parser, compressed names, and
 * rejection of truncated, oversized and malicious packets.
 */
#include "dns_msg.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static dns_msg *m;

static void setup(void)
{
    m = malloc(sizeof(*m));
    ck_assert_ptr_nonnull(m);
}

static void teardown(void)
{
    free(m);
}

static void mkname(uint8_t out[DNS_NAME_MAX], const char *a, const char *b,
                   const char *c)
{
    const char *labels[] = {a, b, c};
    size_t n = c ? 3 : b ? 2 : 1;
    ck_assert_int_gt(dns_name_from_labels(out, labels, n), 0);
}

static const char *text(const uint8_t *name)
{
    static char buf[1100];
    return dns_name_to_text(name, buf, sizeof(buf));
}

/* A response as the plugin sends it, plus a question. */
static int build_sample(uint8_t *pkt, size_t cap)
{
    uint8_t svc[DNS_NAME_MAX], inst[DNS_NAME_MAX], host[DNS_NAME_MAX];
    const uint8_t ip[4] = {10, 200, 0, 1};
    const char *txt[] = {"alpha", "k=v"};
    mkname(svc, "alpha", "local", NULL);
    mkname(inst, "host:42", "alpha", "local");
    mkname(host, "dapr-42-host", "local", NULL);

    dns_writer w;
    dns_w_init(&w, pkt, cap);
    dns_w_header(&w, 0x1234, DNS_FLAG_QR | DNS_FLAG_AA, 1, 4, 0, 1);
    dns_w_question(&w, svc, DNS_TYPE_PTR, DNS_CLASS_IN | DNS_CLASS_TOPBIT);
    dns_w_ptr(&w, svc, DNS_CLASS_IN, 120, inst);
    dns_w_srv(&w, inst, DNS_CLASS_IN | DNS_CLASS_TOPBIT, 120, 1, 2, 50002, host);
    dns_w_txt(&w, inst, DNS_CLASS_IN, 4500, txt, 2);
    dns_w_txt(&w, inst, DNS_CLASS_IN, 0, NULL, 0);
    dns_w_a(&w, host, DNS_CLASS_IN, 120, ip);
    return dns_w_finish(&w);
}

START_TEST(round_trip)
{
    uint8_t pkt[1500];
    int len = build_sample(pkt, sizeof(pkt));
    ck_assert_int_gt(len, DNS_HEADER_LEN);
    ck_assert_int_eq(dns_parse(m, pkt, (size_t)len), 0);

    ck_assert_uint_eq(m->id, 0x1234);
    ck_assert_uint_eq(m->flags, DNS_FLAG_QR | DNS_FLAG_AA);
    ck_assert_uint_eq(m->n_questions, 1);
    ck_assert_str_eq(text(m->questions[0].name), "alpha.local.");
    ck_assert_uint_eq(m->questions[0].type, DNS_TYPE_PTR);
    ck_assert_uint_eq(m->questions[0].klass, 0x8001);
    ck_assert_uint_eq(m->n_records, 5);

    const dns_rr *r = m->records;
    ck_assert_uint_eq(r[0].type, DNS_TYPE_PTR);
    ck_assert_str_eq(text(r[0].target), "host:42.alpha.local.");
    ck_assert_uint_eq(r[0].ttl, 120);
    ck_assert_uint_eq(r[0].section, DNS_SEC_ANSWER);

    ck_assert_uint_eq(r[1].type, DNS_TYPE_SRV);
    ck_assert_uint_eq(r[1].klass, 0x8001);
    ck_assert_uint_eq(r[1].priority, 1);
    ck_assert_uint_eq(r[1].weight, 2);
    ck_assert_uint_eq(r[1].port, 50002);
    ck_assert_str_eq(text(r[1].target), "dapr-42-host.local.");

    ck_assert_uint_eq(r[2].type, DNS_TYPE_TXT);
    ck_assert_uint_eq(r[2].rdlen, 10);
    ck_assert_mem_eq(r[2].rdata, "\x05" "alpha\x03k=v", 10);
    ck_assert_uint_eq(r[3].rdlen, 1); /* the empty TXT: one zero byte */

    ck_assert_uint_eq(r[4].type, DNS_TYPE_A);
    ck_assert_uint_eq(r[4].section, DNS_SEC_ADDITIONAL);
    ck_assert_mem_eq(r[4].addr, "\x0a\xc8\x00\x01", 4);
}
END_TEST

START_TEST(every_truncation_rejected)
{
    uint8_t pkt[1500];
    int len = build_sample(pkt, sizeof(pkt));
    for (int n = 0; n < len; n++) {
        /* Exactly n bytes on the heap, so ASan catches a read past them. */
        uint8_t *cut = malloc(n ? (size_t)n : 1);
        memcpy(cut, pkt, (size_t)n);
        ck_assert_msg(dns_parse(m, cut, (size_t)n) == -1, "prefix %d accepted", n);
        free(cut);
    }
}
END_TEST

START_TEST(compressed_names)
{
    /* An A record owned by alpha.local. (at 12), then a PTR whose owner
     * and target point back at it. */
    static const uint8_t pkt[] = {
        0, 0, 0x84, 0, 0, 0, 0, 2, 0, 0, 0, 0,
        5, 'a', 'l', 'p', 'h', 'a', 5, 'l', 'o', 'c', 'a', 'l', 0,
        0, 1, 0, 1, 0, 0, 0, 120, 0, 4, 10, 0, 0, 1,
        0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 120, 0, 5,
        2, 'i', '1', 0xc0, 12,
    };
    ck_assert_int_eq(dns_parse(m, pkt, sizeof(pkt)), 0);
    ck_assert_uint_eq(m->n_records, 2);
    ck_assert_str_eq(text(m->records[0].name), "alpha.local.");
    ck_assert_str_eq(text(m->records[1].name), "alpha.local.");
    ck_assert_str_eq(text(m->records[1].target), "i1.alpha.local.");
    ck_assert(dns_name_eq(dns_name_parent(m->records[1].target), m->records[1].name));
}
END_TEST

START_TEST(compression_loops_rejected)
{
    static const uint8_t self_loop[] = {
        0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
    static const uint8_t mutual[] = {
        0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
        1, 'a', 0xc0, 20, 0, 1, 0, 1,  /* at 12, points to 20 (later) */
        1, 'b', 0xc0, 12, 0, 1, 0, 1}; /* at 20, points to 12 */
    static const uint8_t into_own_name[] = {
        0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        1, 'a', 1, 'b', 0xc0, 14, 0, 1, 0, 1}; /* "b" points back at "b" */
    static const uint8_t forward[] = {
        0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        0xc0, 18, 0, 1, 0, 1, 1, 'a', 0};
    ck_assert_int_eq(dns_parse(m, self_loop, sizeof(self_loop)), -1);
    ck_assert_int_eq(dns_parse(m, mutual, sizeof(mutual)), -1);
    ck_assert_int_eq(dns_parse(m, into_own_name, sizeof(into_own_name)), -1);
    ck_assert_int_eq(dns_parse(m, forward, sizeof(forward)), -1);
}
END_TEST

START_TEST(bad_names_rejected)
{
    uint8_t pkt[400] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    size_t o = 12;
    /* Four 63-byte labels: 257 bytes on the wire, over 255. */
    for (int l = 0; l < 4; l++) {
        pkt[o++] = 63;
        memset(pkt + o, 'x', 63);
        o += 63;
    }
    pkt[o++] = 0;
    pkt[o++] = 0; pkt[o++] = 1; pkt[o++] = 0; pkt[o++] = 1;
    ck_assert_int_eq(dns_parse(m, pkt, o), -1);

    static const uint8_t reserved_label[] = {
        0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 'a', 0, 0, 1, 0, 1};
    ck_assert_int_eq(dns_parse(m, reserved_label, sizeof(reserved_label)), -1);
    static const uint8_t label_past_end[] = {
        0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 'a', 'b'};
    ck_assert_int_eq(dns_parse(m, label_past_end, sizeof(label_past_end)), -1);
}
END_TEST

START_TEST(bad_records_rejected)
{
    /* A record owner ".", then type/class/ttl/rdlen and rdata. */
    static const uint8_t a_too_long[] = {
        0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 5, 1, 2, 3, 4, 5};
    static const uint8_t rdlen_past_end[] = {
        0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 16, 0, 1, 0, 0, 0, 1, 0, 9, 3, 'a', 'b', 'c'};
    static const uint8_t txt_bad_length[] = {
        0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 16, 0, 1, 0, 0, 0, 1, 0, 3, 3, 'a', 'b'};
    /* SRV target runs past rdlen (6 + 3), though not past the packet. */
    static const uint8_t srv_overrun[] = {
        0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 33, 0, 1, 0, 0, 0, 1, 0, 9, 0, 0, 0, 0, 0x1f, 0x90,
        2, 'a', 'b', 0};
    /* PTR target shorter than rdlen: trailing junk inside the record. */
    static const uint8_t ptr_short[] = {
        0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 12, 0, 1, 0, 0, 0, 1, 0, 3, 0, 7, 7};
    ck_assert_int_eq(dns_parse(m, a_too_long, sizeof(a_too_long)), -1);
    ck_assert_int_eq(dns_parse(m, rdlen_past_end, sizeof(rdlen_past_end)), -1);
    ck_assert_int_eq(dns_parse(m, txt_bad_length, sizeof(txt_bad_length)), -1);
    ck_assert_int_eq(dns_parse(m, srv_overrun, sizeof(srv_overrun)), -1);
    ck_assert_int_eq(dns_parse(m, ptr_short, sizeof(ptr_short)), -1);
    /* An unknown type is kept raw. */
    static const uint8_t unknown[] = {
        0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 99, 0, 1, 0, 0, 0, 1, 0, 2, 0xc0, 0xff};
    ck_assert_int_eq(dns_parse(m, unknown, sizeof(unknown)), 0);
    ck_assert_uint_eq(m->records[0].rdlen, 2);
}
END_TEST

START_TEST(limits_rejected)
{
    uint8_t pkt[12] = {0};
    pkt[5] = DNS_MAX_QUESTIONS + 1; /* qdcount */
    ck_assert_int_eq(dns_parse(m, pkt, sizeof(pkt)), -1);
    memset(pkt, 0, sizeof(pkt));
    pkt[6] = 0xff; pkt[7] = 0xff;   /* ancount 65535, no data */
    ck_assert_int_eq(dns_parse(m, pkt, sizeof(pkt)), -1);
    ck_assert_int_eq(dns_parse(m, NULL, 0), -1);
    memset(pkt, 0, sizeof(pkt));
    ck_assert_int_eq(dns_parse(m, pkt, sizeof(pkt)), 0); /* empty message */
    ck_assert_uint_eq(m->n_questions + m->n_records, 0);
}
END_TEST

START_TEST(names)
{
    uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
    mkname(a, "Alpha", "LOCAL", NULL);
    mkname(b, "alpha", "local", NULL);
    ck_assert(dns_name_eq(a, b));
    mkname(b, "alphb", "local", NULL);
    ck_assert(!dns_name_eq(a, b));
    mkname(b, "alpha", NULL, NULL);
    ck_assert(!dns_name_eq(a, b));
    ck_assert_uint_eq(dns_name_len(a), 13);
    ck_assert_str_eq(text(dns_name_parent(a)), "LOCAL.");
    ck_assert_str_eq(text(dns_name_parent(dns_name_parent(a))), ".");

    /* Dots, backslashes and control bytes inside labels are escaped. */
    mkname(a, "a.b\\c\x01", "local", NULL);
    ck_assert_str_eq(text(a), "a\\.b\\\\c\\001.local.");
    char small[8];
    ck_assert_str_eq(dns_name_to_text(a, small, sizeof(small)), "a\\.b\\\\");

    char l64[65];
    memset(l64, 'x', 64);
    l64[64] = '\0';
    const char *bad[] = {l64};
    ck_assert_int_eq(dns_name_from_labels(a, bad, 1), -1);
    const char *empty[] = {""};
    ck_assert_int_eq(dns_name_from_labels(a, empty, 1), -1);
    l64[63] = '\0';
    const char *four[] = {l64, l64, l64, l64};
    ck_assert_int_eq(dns_name_from_labels(a, four, 4), -1); /* 257 > 255 */
    ck_assert_int_eq(dns_name_from_labels(a, four, 3), 193);
}
END_TEST

START_TEST(writer_overflow)
{
    uint8_t pkt[1500];
    int full = build_sample(pkt, sizeof(pkt));
    for (int cap = 0; cap < full; cap += 7)
        ck_assert_int_eq(build_sample(pkt, (size_t)cap), -1);
    ck_assert_int_eq(build_sample(pkt, (size_t)full), full);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dns_msg");
    TCase *tc = tcase_create("codec");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, every_truncation_rejected);
    tcase_add_test(tc, compressed_names);
    tcase_add_test(tc, compression_loops_rejected);
    tcase_add_test(tc, bad_names_rejected);
    tcase_add_test(tc, bad_records_rejected);
    tcase_add_test(tc, limits_rejected);
    tcase_add_test(tc, names);
    tcase_add_test(tc, writer_overflow);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
