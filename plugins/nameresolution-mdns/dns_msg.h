/*
 * dns_msg.h - the small part of the DNS message format (RFC 1035) that
 * multicast DNS service discovery (RFC 6762/6763) needs: questions and
 * A, AAAA, PTR, SRV and TXT records.
 *
 * Everything read comes from the network, so the parser trusts nothing:
 * every read is checked against the datagram length, compression pointers
 * may only point backwards (so they cannot loop), names are at most 255
 * bytes and labels at most 63, and record data must be exactly as long as
 * its type says.  A packet that breaks any rule is rejected as a whole.
 *
 * Names are kept in uncompressed wire form (length-prefixed labels ending
 * with a zero byte) rather than as dotted text: labels may legally hold
 * dots and any other byte, and comparing labels avoids escaping rules.
 */
#ifndef NR_MDNS_DNS_MSG_H
#define NR_MDNS_DNS_MSG_H

#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX 255  /* wire length of a name, final zero byte included */
#define DNS_LABEL_MAX 63
#define DNS_HEADER_LEN 12

/* Limits of one parsed message.  A larger packet is rejected: mDNS
 * answers about one service are a handful of records. */
#define DNS_MAX_QUESTIONS 32
#define DNS_MAX_RECORDS 64

#define DNS_TYPE_A 1
#define DNS_TYPE_PTR 12
#define DNS_TYPE_TXT 16
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_SRV 33
#define DNS_TYPE_ANY 255

#define DNS_CLASS_IN 1
/* mDNS reuses the top bit of the class: "unicast response wanted" in a
 * question, "flush your cache of this name" in a record (RFC 6762 5.4,
 * 10.2). */
#define DNS_CLASS_TOPBIT 0x8000

#define DNS_FLAG_QR 0x8000     /* a response */
#define DNS_FLAG_AA 0x0400     /* authoritative: every mDNS response */
#define DNS_OPCODE(flags) (((flags) >> 11) & 0xf)

enum { DNS_SEC_ANSWER = 0, DNS_SEC_AUTHORITY = 1, DNS_SEC_ADDITIONAL = 2 };

typedef struct dns_question {
    uint8_t name[DNS_NAME_MAX];
    uint16_t type;
    uint16_t klass;            /* with the unicast-response bit */
} dns_question;

typedef struct dns_rr {
    uint8_t name[DNS_NAME_MAX];
    uint16_t type;
    uint16_t klass;            /* with the cache-flush bit */
    uint32_t ttl;
    uint8_t section;           /* DNS_SEC_* */
    const uint8_t *rdata;      /* raw data, points into the parsed packet */
    uint16_t rdlen;
    /* Decoded data, by type. */
    uint8_t addr[16];          /* A: 4 bytes, AAAA: 16 */
    uint16_t priority, weight, port;   /* SRV */
    uint8_t target[DNS_NAME_MAX];      /* SRV, PTR (decompressed) */
} dns_rr;

typedef struct dns_msg {
    uint16_t id;
    uint16_t flags;
    unsigned n_questions;
    unsigned n_records;        /* answers, authority and additional together */
    dns_question questions[DNS_MAX_QUESTIONS];
    dns_rr records[DNS_MAX_RECORDS];
} dns_msg;

/* Parse a datagram.  Returns 0, or -1 when the packet is malformed or over
 * the limits above (then *m is unspecified).  rdata pointers in *m point
 * into pkt. */
int dns_parse(dns_msg *m, const uint8_t *pkt, size_t len);

/* --- names ------------------------------------------------------------- */

/* Build a wire name from n labels (NUL-terminated strings, 1..63 bytes
 * each; the root label is added).  Returns the wire length, or -1. */
int dns_name_from_labels(uint8_t out[DNS_NAME_MAX], const char *const *labels,
                         size_t n);
/* Wire length of a well-formed name (final zero byte included). */
size_t dns_name_len(const uint8_t *name);
/* Equal names?  ASCII letters compare case-insensitively (RFC 4343). */
int dns_name_eq(const uint8_t *a, const uint8_t *b);
/* The parent of a name: the name without its first label.  The root's
 * parent is the root. */
const uint8_t *dns_name_parent(const uint8_t *name);
/* Dotted text for logs: "alpha.local.", with '.', '\\' and non-printable
 * bytes escaped (\. \\ \DDD).  Truncates to fit; returns buf. */
char *dns_name_to_text(const uint8_t *name, char *buf, size_t buflen);

/* --- writing ----------------------------------------------------------- */

/* Writes a message into a caller's buffer.  Names are written
 * uncompressed: our messages are a few records about one service.  Any
 * write that does not fit sets `overflow` and writes nothing more. */
typedef struct dns_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int overflow;
} dns_writer;

void dns_w_init(dns_writer *w, uint8_t *buf, size_t cap);
void dns_w_header(dns_writer *w, uint16_t id, uint16_t flags, uint16_t qd,
                  uint16_t an, uint16_t ns, uint16_t ar);
void dns_w_question(dns_writer *w, const uint8_t *name, uint16_t type,
                    uint16_t klass);
void dns_w_a(dns_writer *w, const uint8_t *name, uint16_t klass, uint32_t ttl,
             const uint8_t addr[4]);
void dns_w_ptr(dns_writer *w, const uint8_t *name, uint16_t klass, uint32_t ttl,
               const uint8_t *target);
void dns_w_srv(dns_writer *w, const uint8_t *name, uint16_t klass, uint32_t ttl,
               uint16_t priority, uint16_t weight, uint16_t port,
               const uint8_t *target);
/* A TXT record of n strings (each at most 255 bytes); n == 0 writes the
 * single empty string RFC 6763 6.1 asks for. */
void dns_w_txt(dns_writer *w, const uint8_t *name, uint16_t klass, uint32_t ttl,
               const char *const *strings, size_t n);
/* The finished length, or -1 when something did not fit. */
int dns_w_finish(const dns_writer *w);

#endif /* NR_MDNS_DNS_MSG_H */
