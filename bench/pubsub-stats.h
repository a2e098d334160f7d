/*
 * pubsub-stats.h - what bench/pubsub-app.c and bench/pubsub-direct.c both
 * count about the messages they receive, so that the two paths of
 * bench/pubsub-bench.sh are measured by the same code.
 *
 * Every benchmark message carries, in its data, two numbers:
 *
 *     {"pb_seq":<id>,"pb_sent_ns":<CLOCK_MONOTONIC ns when it was sent>}
 *
 * A receiver looks the two keys up in whatever bytes it got (a CloudEvent
 * with the object as "data", or the object alone), so it needs no JSON
 * parser and works whatever else the envelope holds.  The monotonic clock
 * is the same for every process on the machine, so receive time minus
 * pb_sent_ns is the publish-to-delivery latency.
 *
 * Ids are dense from a base given when the counters are reset (each
 * measured run uses its own base), so a bitmap tells distinct deliveries
 * from duplicates; ids below the base (a late redelivery of a warm-up
 * message) are counted apart as stale.
 *
 * The latency histogram keeps microseconds in buckets of 8 significant
 * bits (within 0.4 % of the true value), like a small HdrHistogram.
 *
 * Includers define _POSIX_C_SOURCE (or _GNU_SOURCE) first, for
 * clock_gettime.  Not thread-safe: pubsub-app.c is one thread; pubsub-direct.c locks.
 * Header-only (static functions) because the benchmark compiles each
 * program from one .c file with cc, not with make.
 */
#ifndef BENCH_PUBSUB_STATS_H
#define BENCH_PUBSUB_STATS_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PB_SUB_BITS 8
#define PB_SUB (1u << PB_SUB_BITS)             /* 256 */
#define PB_HALF (PB_SUB / 2)                    /* 128 */
#define PB_BUCKETS ((64 - PB_SUB_BITS + 1) * PB_HALF + PB_HALF)
/* Ids past base + this are refused as bad rather than growing the bitmap
 * without bound (2^28 bits = 32 MiB, far more than a run sends). */
#define PB_MAX_IDS (1ull << 28)

typedef struct pb_stats {
    uint64_t base;          /* ids counted are >= base */
    uint8_t *seen;          /* bit (id - base) set once delivered */
    size_t seen_bytes;
    uint64_t delivered;     /* every delivery of a current id, duplicates too */
    uint64_t distinct;
    uint64_t duplicates;
    uint64_t stale;         /* ids below base: from an earlier run */
    uint64_t bad;           /* no pb_seq/pb_sent_ns, or an id out of range */
    uint64_t first_sent_ns; /* smallest pb_sent_ns delivered */
    uint64_t last_recv_ns;  /* latest delivery of a new id */
    uint64_t hist[PB_BUCKETS];
} pb_stats;

static inline uint64_t pb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline unsigned pb_bucket(uint64_t v)
{
    if (v < PB_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - (PB_SUB_BITS - 1);   /* keeps the top 8 bits */
    return shift * PB_HALF + (unsigned)(v >> shift);
}

/* The middle of bucket idx, in the histogram's unit (microseconds). */
static inline double pb_bucket_value(unsigned idx)
{
    if (idx < PB_SUB)
        return idx;
    unsigned shift = idx / PB_HALF - 1;
    uint64_t mant = idx - shift * PB_HALF;
    return (double)(mant << shift) + (double)(1ull << shift) / 2.0;
}

static inline void pb_reset(pb_stats *s, uint64_t base)
{
    uint8_t *seen = s->seen;
    size_t bytes = s->seen_bytes;
    if (seen)
        memset(seen, 0, bytes);
    memset(s, 0, sizeof *s);
    s->seen = seen;
    s->seen_bytes = bytes;
    s->base = base;
    s->first_sent_ns = UINT64_MAX;
}

static inline void pb_free(pb_stats *s)
{
    free(s->seen);
    s->seen = NULL;
    s->seen_bytes = 0;
}

/* The unsigned decimal after "key" (which includes the quotes and the
 * colon) in buf[0..len), or -1 when absent.  memmem, not strstr: the
 * bytes are not NUL-terminated. */
static inline int pb_find_u64(const char *buf, size_t len, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    const char *p = buf, *end = buf + len;
    while ((size_t)(end - p) >= klen) {
        const char *hit = memchr(p, key[0], (size_t)(end - p - (ptrdiff_t)klen + 1));
        if (!hit)
            return -1;
        if (memcmp(hit, key, klen) == 0) {
            const char *q = hit + klen;
            while (q < end && (*q == ' ' || *q == '\t'))
                q++;
            if (q >= end || *q < '0' || *q > '9')
                return -1;
            uint64_t v = 0;
            while (q < end && *q >= '0' && *q <= '9') {
                v = v * 10 + (uint64_t)(*q - '0');
                q++;
            }
            *out = v;
            return 0;
        }
        p = hit + 1;
    }
    return -1;
}

/* Count one received message.  Returns 0, or -1 when it was not ours. */
static inline int pb_record(pb_stats *s, const void *data, size_t len, uint64_t now_ns)
{
    uint64_t id, sent;
    if (pb_find_u64(data, len, "\"pb_seq\":", &id) != 0 ||
        pb_find_u64(data, len, "\"pb_sent_ns\":", &sent) != 0) {
        s->bad++;
        return -1;
    }
    if (id < s->base) {
        s->stale++;
        return 0;
    }
    uint64_t off = id - s->base;
    if (off >= PB_MAX_IDS) {
        s->bad++;
        return -1;
    }
    size_t byte = (size_t)(off / 8);
    if (byte >= s->seen_bytes) {
        size_t n = s->seen_bytes ? s->seen_bytes : 65536;
        while (n <= byte)
            n *= 2;
        uint8_t *p = realloc(s->seen, n);
        if (!p) {
            s->bad++;
            return -1;
        }
        memset(p + s->seen_bytes, 0, n - s->seen_bytes);
        s->seen = p;
        s->seen_bytes = n;
    }
    s->delivered++;
    uint8_t bit = (uint8_t)(1u << (off % 8));
    if (s->seen[byte] & bit) {
        s->duplicates++;
        return 0;
    }
    s->seen[byte] |= bit;
    s->distinct++;
    /* Latency of first deliveries only: a redelivery's age says how long
     * the broker waited before redelivering, not how fast delivery is. */
    uint64_t us = now_ns > sent ? (now_ns - sent) / 1000 : 0;
    s->hist[pb_bucket(us)]++;
    if (sent < s->first_sent_ns)
        s->first_sent_ns = sent;
    if (now_ns > s->last_recv_ns)
        s->last_recv_ns = now_ns;
    return 0;
}

/* The q-quantile (0 < q <= 1) of first-delivery latency in microseconds,
 * or 0 when nothing was delivered. */
static inline double pb_quantile_us(const pb_stats *s, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < PB_BUCKETS; i++)
        total += s->hist[i];
    if (!total)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < PB_BUCKETS; i++) {
        acc += s->hist[i];
        if (acc >= rank)
            return pb_bucket_value(i);
    }
    return pb_bucket_value(PB_BUCKETS - 1);
}

/* Distinct messages per second from the first send to the last delivery. */
static inline double pb_delivered_per_s(const pb_stats *s)
{
    if (!s->distinct || s->last_recv_ns <= s->first_sent_ns)
        return 0;
    return (double)s->distinct / ((double)(s->last_recv_ns - s->first_sent_ns) / 1e9);
}

/* The counters as one line of name=value pairs, which both programs print
 * (the app as the body of GET /stats) and the script parses. */
static inline int pb_format(const pb_stats *s, char *buf, size_t len)
{
    return snprintf(buf, len,
                    "delivered=%" PRIu64 " distinct=%" PRIu64 " duplicates=%" PRIu64
                    " stale=%" PRIu64 " bad=%" PRIu64 " delivered_per_s=%.1f"
                    " p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f",
                    s->delivered, s->distinct, s->duplicates, s->stale, s->bad,
                    pb_delivered_per_s(s), pb_quantile_us(s, 0.50), pb_quantile_us(s, 0.90),
                    pb_quantile_us(s, 0.99), pb_quantile_us(s, 1.0));
}

#endif /* BENCH_PUBSUB_STATS_H */
