/*
 * dns_msg.c - a strict DNS message parser and a small writer, for mDNS.
 * See dns_msg.h for the rules the parser enforces.
 */
#include "dns_msg.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Reading
 * --------------------------------------------------------------------- */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Read the name at *off into out, following compression pointers.  On
 * success *off is the offset just after the name as it sits in place (after
 * its first pointer, if any).
 *
 * Loops: a pointer must point below the start of the run of labels that
 * contains it.  Each jump therefore lands strictly lower than the previous
 * one, so the walk always ends; a pointer to itself, to a later byte or
 * back into its own name is rejected. */
static int read_name(const uint8_t *pkt, size_t len, size_t *off,
                     uint8_t out[DNS_NAME_MAX])
{
    size_t pos = *off;
    size_t run_start = pos; /* first byte of the labels being read */
    size_t end = 0;         /* where the name ends in place */
    size_t outlen = 0;
    int jumped = 0;

    for (;;) {
        if (pos >= len) return -1;
        uint8_t c = pkt[pos];

        if ((c & 0xC0) == 0xC0) {
            if (pos + 1 >= len) return -1;
            size_t target = ((size_t)(c & 0x3F) << 8) | pkt[pos + 1];
            if (target >= run_start) return -1;
            if (!jumped) {
                end = pos + 2;
                jumped = 1;
            }
            pos = run_start = target;
            continue;
        }
        /* 0x40 and 0x80 are the obsolete extended and reserved label
         * types: nothing in mDNS uses them. */
        if (c & 0xC0) return -1;

        if (c == 0) {
            if (outlen + 1 > DNS_NAME_MAX) return -1;
            out[outlen++] = 0;
            if (!jumped) end = pos + 1;
            break;
        }
        if (c > len - pos - 1) return -1;              /* label past the end */
        if (outlen + 1 + c + 1 > DNS_NAME_MAX) return -1; /* name too long */
        memcpy(out + outlen, pkt + pos, (size_t)c + 1);
        outlen += (size_t)c + 1;
        pos += (size_t)c + 1;
    }
    *off = end;
    return 0;
}

static int read_question(const uint8_t *pkt, size_t len, size_t *off,
                         dns_question *q)
{
    if (read_name(pkt, len, off, q->name) != 0) return -1;
    if (len - *off < 4) return -1;
    q->type = get16(pkt + *off);
    q->klass = get16(pkt + *off + 2);
    *off += 4;
    return 0;
}

/* TXT data is a sequence of <length><bytes> strings filling rdata exactly. */
static int txt_valid(const uint8_t *rd, size_t rdlen)
{
    size_t i = 0;
    while (i < rdlen) i += (size_t)rd[i] + 1;
    return i == rdlen;
}

static int read_record(const uint8_t *pkt, size_t len, size_t *off,
                       dns_rr *rr)
{
    if (read_name(pkt, len, off, rr->name) != 0) return -1;
    if (len - *off < 10) return -1;
    const uint8_t *p = pkt + *off;
    rr->type = get16(p);
    rr->klass = get16(p + 2);
    rr->ttl = get32(p + 4);
    rr->rdlen = get16(p + 8);
    *off += 10;
    if (rr->rdlen > len - *off) return -1;

    size_t rdstart = *off, rdend = *off + rr->rdlen;
    rr->rdata = pkt + rdstart;
    *off = rdend;

    size_t pos = rdstart;
    switch (rr->type) {
    case DNS_TYPE_A:
        if (rr->rdlen != 4) return -1;
        memcpy(rr->addr, rr->rdata, 4);
        break;
    case DNS_TYPE_AAAA:
        if (rr->rdlen != 16) return -1;
        memcpy(rr->addr, rr->rdata, 16);
        break;
    case DNS_TYPE_PTR:
        /* The target must end exactly where the record data ends. */
        if (read_name(pkt, rdend, &pos, rr->target) != 0 || pos != rdend)
            return -1;
        break;
    case DNS_TYPE_SRV:
        if (rr->rdlen < 7) return -1;
        rr->priority = get16(rr->rdata);
        rr->weight = get16(rr->rdata + 2);
        rr->port = get16(rr->rdata + 4);
        pos += 6;
        if (read_name(pkt, rdend, &pos, rr->target) != 0 || pos != rdend)
            return -1;
        break;
    case DNS_TYPE_TXT:
        if (!txt_valid(rr->rdata, rr->rdlen)) return -1;
        break;
    default:
        break; /* kept raw */
    }
    return 0;
}

int dns_parse(dns_msg *m, const uint8_t *pkt, size_t len)
{
    if (pkt == NULL || len < DNS_HEADER_LEN) return -1;
    m->id = get16(pkt);
    m->flags = get16(pkt + 2);
    unsigned qd = get16(pkt + 4);
    unsigned counts[3] = {get16(pkt + 6), get16(pkt + 8), get16(pkt + 10)};
    if (qd > DNS_MAX_QUESTIONS) return -1;
    if (counts[0] + counts[1] + counts[2] > DNS_MAX_RECORDS) return -1;

    size_t off = DNS_HEADER_LEN;
    m->n_questions = 0;
    for (unsigned i = 0; i < qd; i++) {
        if (read_question(pkt, len, &off, &m->questions[i]) != 0) return -1;
        m->n_questions++;
    }
    m->n_records = 0;
    for (int sec = 0; sec < 3; sec++) {
        for (unsigned i = 0; i < counts[sec]; i++) {
            dns_rr *rr = &m->records[m->n_records];
            if (read_record(pkt, len, &off, rr) != 0) return -1;
            rr->section = (uint8_t)sec;
            m->n_records++;
        }
    }
    /* Bytes after the last record are ignored, as other resolvers do. */
    return 0;
}

/* ------------------------------------------------------------------------
 * Names
 * --------------------------------------------------------------------- */

int dns_name_from_labels(uint8_t out[DNS_NAME_MAX], const char *const *labels,
                         size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(labels[i]);
        if (l == 0 || l > DNS_LABEL_MAX) return -1;
        if (len + 1 + l + 1 > DNS_NAME_MAX) return -1;
        out[len] = (uint8_t)l;
        memcpy(out + len + 1, labels[i], l);
        len += l + 1;
    }
    out[len++] = 0;
    return (int)len;
}

size_t dns_name_len(const uint8_t *name)
{
    size_t i = 0;
    while (name[i] != 0) i += (size_t)name[i] + 1;
    return i + 1;
}

static uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

int dns_name_eq(const uint8_t *a, const uint8_t *b)
{
    /* Length bytes are at most 63, so lowering them is harmless and the
     * two walks stay in step whenever the bytes so far are equal. */
    size_t i = 0;
    for (;;) {
        if (a[i] != b[i]) return 0;
        size_t l = a[i];
        if (l == 0) return 1;
        for (size_t k = 1; k <= l; k++)
            if (lower(a[i + k]) != lower(b[i + k])) return 0;
        i += l + 1;
    }
}

const uint8_t *dns_name_parent(const uint8_t *name)
{
    return name[0] == 0 ? name : name + name[0] + 1;
}

char *dns_name_to_text(const uint8_t *name, char *buf, size_t buflen)
{
    size_t o = 0;
    if (buflen == 0) return buf;
    buf[0] = '\0';
    /* Leave room for the longest escape (\DDD), a dot and the NUL. */
#define ROOM(n) (o + (n) + 1 < buflen)
    for (size_t i = 0; name[i] != 0; i += (size_t)name[i] + 1) {
        for (size_t k = 1; k <= name[i]; k++) {
            uint8_t c = name[i + k];
            if (c == '.' || c == '\\') {
                if (!ROOM(2)) goto out;
                buf[o++] = '\\';
                buf[o++] = (char)c;
            } else if (c < 0x21 || c > 0x7e) {
                if (!ROOM(4)) goto out;
                o += (size_t)snprintf(buf + o, buflen - o, "\\%03u", c);
            } else {
                if (!ROOM(1)) goto out;
                buf[o++] = (char)c;
            }
        }
        if (!ROOM(1)) goto out;
        buf[o++] = '.';
    }
    if (o == 0 && ROOM(1)) buf[o++] = '.';
out:
#undef ROOM
    buf[o] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------
 * Writing
 * --------------------------------------------------------------------- */

void dns_w_init(dns_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = 0;
}

static int w_room(dns_writer *w, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = 1;
        return 0;
    }
    return 1;
}

static void w_bytes(dns_writer *w, const void *p, size_t n)
{
    if (!w_room(w, n)) return;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void w16(dns_writer *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 2);
}

static void w32(dns_writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    w_bytes(w, b, 4);
}

static void w_name(dns_writer *w, const uint8_t *name)
{
    w_bytes(w, name, dns_name_len(name));
}

void dns_w_header(dns_writer *w, uint16_t id, uint16_t flags, uint16_t qd,
                  uint16_t an, uint16_t ns, uint16_t ar)
{
    w16(w, id);
    w16(w, flags);
    w16(w, qd);
    w16(w, an);
    w16(w, ns);
    w16(w, ar);
}

void dns_w_question(dns_writer *w, const uint8_t *name, uint16_t type,
                    uint16_t klass)
{
    w_name(w, name);
    w16(w, type);
    w16(w, klass);
}

static void w_rr_head(dns_writer *w, const uint8_t *name, uint16_t type,
                      uint16_t klass, uint32_t ttl, size_t rdlen)
{
    w_name(w, name);
    w16(w, type);
    w16(w, klass);
    w32(w, ttl);
    if (rdlen > 0xFFFF) {
        w->overflow = 1;
        return;
    }
    w16(w, (uint16_t)rdlen);
}

void dns_w_a(dns_writer *w, const uint8_t *name, uint16_t klass, uint32_t ttl,
             const uint8_t addr[4])
{
    w_rr_head(w, name, DNS_TYPE_A, klass, ttl, 4);
    w_bytes(w, addr, 4);
}

void dns_w_ptr(dns_writer *w, const uint8_t *name, uint16_t klass, uint32_t ttl,
               const uint8_t *target)
{
    w_rr_head(w, name, DNS_TYPE_PTR, klass, ttl, dns_name_len(target));
    w_name(w, target);
}

void dns_w_srv(dns_writer *w, const uint8_t *name, uint16_t klass, uint32_t ttl,
               uint16_t priority, uint16_t weight, uint16_t port,
               const uint8_t *target)
{
    w_rr_head(w, name, DNS_TYPE_SRV, klass, ttl, 6 + dns_name_len(target));
    w16(w, priority);
    w16(w, weight);
    w16(w, port);
    w_name(w, target);
}

void dns_w_txt(dns_writer *w, const uint8_t *name, uint16_t klass, uint32_t ttl,
               const char *const *strings, size_t n)
{
    size_t rdlen = n == 0 ? 1 : 0;
    for (size_t i = 0; i < n; i++) {
        if (strlen(strings[i]) > 255) {
            w->overflow = 1;
            return;
        }
        rdlen += 1 + strlen(strings[i]);
    }
    w_rr_head(w, name, DNS_TYPE_TXT, klass, ttl, rdlen);
    if (n == 0) {
        uint8_t zero = 0;
        w_bytes(w, &zero, 1);
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t l = (uint8_t)strlen(strings[i]);
        w_bytes(w, &l, 1);
        w_bytes(w, strings[i], l);
    }
}

int dns_w_finish(const dns_writer *w)
{
    return w->overflow ? -1 : (int)w->len;
}
