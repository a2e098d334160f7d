/*
 * memtable.c - chained hash table with reference-counted values.
 */
#include "memtable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MT_INITIAL_BUCKETS 64

/* ---- values -------------------------------------------------------- */

mt_value *mt_value_new(const char *key, const void *data, size_t len)
{
    size_t klen = strlen(key);
    mt_value *v = malloc(sizeof *v + len + 1 + klen + 1);
    if (!v)
        return NULL;
    atomic_init(&v->refs, 1);
    v->len = len;
    if (len)
        memcpy(v->data, data, len);
    v->data[len] = '\0'; /* handy for JSON parsers and debugging */
    memcpy(v->data + len + 1, key, klen + 1);
    v->key = (const char *)v->data + len + 1;
    mt_uuid4(v->etag);
    return v;
}

mt_value *mt_value_ref(mt_value *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

void mt_value_unref(mt_value *v)
{
    if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        free(v);
}

/* ---- etags ----------------------------------------------------------- */

/* Etags only need to be unique, not secret, so a per-thread splitmix64
 * generator seeded once from the kernel is enough and keeps writes free of
 * system calls. */
static _Thread_local uint64_t rng_state;
static _Thread_local int rng_seeded;

static uint64_t rng_next(void)
{
    if (!rng_seeded) {
        uint64_t seed;
        if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                   ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&rng_state;
        }
        rng_state = seed;
        rng_seeded = 1;
    }
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mt_uuid4(char out[MT_ETAG_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    uint64_t hi = rng_next(), lo = rng_next();

    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(hi >> (i * 8));
        b[8 + i] = (uint8_t)(lo >> (i * 8));
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */

    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 0x0f];
    }
    *p = '\0';
}

int64_t mt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the table ------------------------------------------------------- */

/* FNV-1a, 64 bit.  Fine for a development store; keys come from the
 * sidecar's own apps. */
static uint64_t hash_key(const char *key)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

int mt_init(memtable *t)
{
    memset(t, 0, sizeof *t);
    t->buckets = calloc(MT_INITIAL_BUCKETS, sizeof *t->buckets);
    if (!t->buckets)
        return -1;
    t->nbuckets = MT_INITIAL_BUCKETS;
    return 0;
}

static void entry_free(mt_entry *e)
{
    mt_value_unref(e->val);
    free(e);
}

void mt_free(memtable *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        mt_entry *e = t->buckets[i];
        while (e) {
            mt_entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

/* Unlink *link (an entry of the table) and free it. */
static void unlink_entry(memtable *t, mt_entry **link)
{
    mt_entry *e = *link;
    *link = e->next;
    if (e->expire_ms)
        t->n_ttl--;
    t->count--;
    entry_free(e);
}

static mt_entry **find_link(memtable *t, const char *key, uint64_t h)
{
    mt_entry **link = &t->buckets[h & (t->nbuckets - 1)];
    while (*link) {
        if ((*link)->hash == h && strcmp((*link)->val->key, key) == 0)
            return link;
        link = &(*link)->next;
    }
    return NULL;
}

static int expired(const mt_entry *e, int64_t now_ms)
{
    return e->expire_ms && e->expire_ms <= now_ms;
}

mt_entry *mt_find(memtable *t, const char *key, int64_t now_ms)
{
    mt_entry **link = find_link(t, key, hash_key(key));
    if (!link)
        return NULL;
    if (expired(*link, now_ms)) {
        unlink_entry(t, link);
        return NULL;
    }
    return *link;
}

/* Double the bucket array.  On OOM the table just keeps longer chains. */
static void grow(memtable *t)
{
    size_t n = t->nbuckets * 2;
    mt_entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        mt_entry *e = t->buckets[i];
        while (e) {
            mt_entry *next = e->next;
            mt_entry **head = &b[e->hash & (n - 1)];
            e->next = *head;
            *head = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

int mt_put(memtable *t, mt_value *val, int64_t expire_ms, mt_entry **spare)
{
    uint64_t h = hash_key(val->key);
    mt_entry **link = find_link(t, val->key, h);
    mt_entry *e;

    if (link) {
        e = *link;
        mt_value_unref(e->val);
        if (e->expire_ms)
            t->n_ttl--;
    } else {
        if (spare && *spare) {
            e = *spare;
            *spare = NULL;
        } else if (!(e = malloc(sizeof *e))) {
            return -1;
        }
        if (t->count >= t->nbuckets)
            grow(t);
        e->hash = h;
        mt_entry **head = &t->buckets[h & (t->nbuckets - 1)];
        e->next = *head;
        *head = e;
        t->count++;
    }
    e->val = val;
    e->expire_ms = expire_ms;
    if (expire_ms)
        t->n_ttl++;
    return 0;
}

int mt_del(memtable *t, const char *key)
{
    mt_entry **link = find_link(t, key, hash_key(key));
    if (!link)
        return 0;
    unlink_entry(t, link);
    return 1;
}

size_t mt_sweep(memtable *t, int64_t now_ms, size_t *cursor, size_t max_buckets)
{
    size_t removed = 0;

    if (t->n_ttl == 0)
        return 0;
    if (max_buckets > t->nbuckets)
        max_buckets = t->nbuckets;
    for (size_t n = 0; n < max_buckets; n++) {
        size_t i = (*cursor)++ & (t->nbuckets - 1);
        mt_entry **link = &t->buckets[i];
        while (*link) {
            if (expired(*link, now_ms)) {
                unlink_entry(t, link);
                removed++;
            } else {
                link = &(*link)->next;
            }
        }
    }
    *cursor &= t->nbuckets - 1;
    return removed;
}

void mt_foreach(memtable *t, int (*fn)(mt_entry *e, void *arg), void *arg)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (mt_entry *e = t->buckets[i]; e; e = e->next)
            if (fn(e, arg))
                return;
}
