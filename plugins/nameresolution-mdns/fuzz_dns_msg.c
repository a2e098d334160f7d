/*
 * fuzz_dns_msg.c - libFuzzer target for the mDNS packet parser.
 *
 * Beyond "no crash, no out-of-bounds read" (ASan's part), it checks that
 * whatever the parser accepts is sane and survives a round trip: names
 * are within limits, and writing the parsed questions and A/PTR/SRV
 * records out again gives a packet that parses to the same names.
 *
 * Build with clang: `make mdns-fuzz`.  Without clang, fuzz_replay.c runs
 * it over the corpus in fuzz-corpus/ during `make check`.
 */
#include "dns_msg.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok) abort();
}

static int rewrite(const dns_msg *m, uint8_t *out, size_t cap, unsigned *n_rr)
{
    dns_writer w;
    unsigned n = 0;
    for (unsigned i = 0; i < m->n_records; i++) {
        uint16_t t = m->records[i].type;
        n += t == DNS_TYPE_A || t == DNS_TYPE_PTR || t == DNS_TYPE_SRV;
    }
    dns_w_init(&w, out, cap);
    dns_w_header(&w, m->id, m->flags, (uint16_t)m->n_questions, (uint16_t)n, 0, 0);
    for (unsigned i = 0; i < m->n_questions; i++)
        dns_w_question(&w, m->questions[i].name, m->questions[i].type,
                       m->questions[i].klass);
    for (unsigned i = 0; i < m->n_records; i++) {
        const dns_rr *r = &m->records[i];
        if (r->type == DNS_TYPE_A)
            dns_w_a(&w, r->name, r->klass, r->ttl, r->addr);
        else if (r->type == DNS_TYPE_PTR)
            dns_w_ptr(&w, r->name, r->klass, r->ttl, r->target);
        else if (r->type == DNS_TYPE_SRV)
            dns_w_srv(&w, r->name, r->klass, r->ttl, r->priority, r->weight,
                      r->port, r->target);
    }
    *n_rr = n;
    return dns_w_finish(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The messages are large; keep them off the stack. */
    static dns_msg *m, *again;
    static uint8_t *buf;
    enum { BUF = 64 * 1024 };
    char text[4 * DNS_NAME_MAX + 8];

    if (!m) {
        m = malloc(sizeof(*m));
        again = malloc(sizeof(*again));
        buf = malloc(BUF);
        if (!m || !again || !buf) abort();
    }
    if (dns_parse(m, data, size) != 0) return 0;

    check(m->n_questions <= DNS_MAX_QUESTIONS && m->n_records <= DNS_MAX_RECORDS);
    for (unsigned i = 0; i < m->n_questions; i++) {
        check(dns_name_len(m->questions[i].name) <= DNS_NAME_MAX);
        dns_name_to_text(m->questions[i].name, text, sizeof(text));
    }
    for (unsigned i = 0; i < m->n_records; i++) {
        const dns_rr *r = &m->records[i];
        check(dns_name_len(r->name) <= DNS_NAME_MAX);
        check(r->rdata >= data && r->rdata + r->rdlen <= data + size);
        dns_name_to_text(r->name, text, sizeof(text));
        if (r->type == DNS_TYPE_PTR || r->type == DNS_TYPE_SRV) {
            check(dns_name_len(r->target) <= DNS_NAME_MAX);
            dns_name_to_text(r->target, text, sizeof(text));
        }
    }

    unsigned n_rr;
    int len = rewrite(m, buf, BUF, &n_rr);
    check(len > 0);
    check(dns_parse(again, buf, (size_t)len) == 0);
    check(again->n_questions == m->n_questions && again->n_records == n_rr);
    for (unsigned i = 0; i < m->n_questions; i++)
        check(dns_name_eq(again->questions[i].name, m->questions[i].name));
    return 0;
}
