/*
 * memtable.h - the key/value table behind state.in-memory.
 *
 * A chained hash table of string keys.  Each entry points to an immutable,
 * reference-counted value (the bytes, the key and the etag of one write), so
 * a reader can take a reference under the store's lock and use the bytes
 * after releasing it, without copying them.
 *
 * The table itself is not thread-safe: the caller holds its own lock around
 * every mt_* call except mt_value_new/ref/unref and mt_uuid4.
 */
#ifndef STATE_MEMORY_MEMTABLE_H
#define STATE_MEMORY_MEMTABLE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MT_ETAG_LEN 36 /* a UUID in its canonical text form */

/* One written version of one key.  Never changed after creation. */
typedef struct mt_value {
    atomic_uint refs;
    char etag[MT_ETAG_LEN + 1];
    size_t len;
    const char *key;      /* points into data[], after the value bytes */
    uint8_t data[];       /* len value bytes, a NUL, then the key and its NUL */
} mt_value;

typedef struct mt_entry {
    struct mt_entry *next;
    uint64_t hash;
    int64_t expire_ms;    /* CLOCK_REALTIME in ms; 0 = never expires */
    mt_value *val;        /* the table owns one reference */
} mt_entry;

typedef struct memtable {
    mt_entry **buckets;
    size_t nbuckets;      /* a power of two */
    size_t count;         /* live entries (expired ones included until reclaimed) */
    size_t n_ttl;         /* entries with an expiry: the sweep skips work when 0 */
} memtable;

/* A new value with refs = 1 and a fresh random etag.  NULL on OOM. */
mt_value *mt_value_new(const char *key, const void *data, size_t len);
mt_value *mt_value_ref(mt_value *v);
void mt_value_unref(mt_value *v);

/* Write a random (version 4) UUID and its NUL into out. */
void mt_uuid4(char out[MT_ETAG_LEN + 1]);

/* Wall clock in milliseconds. */
int64_t mt_now_ms(void);

int mt_init(memtable *t);
void mt_free(memtable *t);

/* The live entry for key, or NULL.  An expired entry is removed on the
 * way (lazy reclaim), so callers never see one. */
mt_entry *mt_find(memtable *t, const char *key, int64_t now_ms);

/* Store val under val->key (taking over the caller's reference), replacing
 * any current version.  A new key needs an entry: *spare is used when not
 * NULL (and set to NULL), so a caller that allocated spares beforehand can
 * apply a batch that cannot fail halfway; otherwise one is allocated.
 * Returns 0, or -1 on OOM (the caller then keeps its reference).  Growing
 * the bucket array is best effort and never makes mt_put fail. */
int mt_put(memtable *t, mt_value *val, int64_t expire_ms, mt_entry **spare);

/* Remove key.  1 if it was there, else 0. */
int mt_del(memtable *t, const char *key);

/* Reclaim expired entries in up to max_buckets buckets, starting at
 * *cursor and advancing it (wrapping).  Returns how many were removed. */
size_t mt_sweep(memtable *t, int64_t now_ms, size_t *cursor, size_t max_buckets);

/* Iteration: call fn on each entry; stop early when fn returns non-zero.
 * fn must not change the table. */
void mt_foreach(memtable *t, int (*fn)(mt_entry *e, void *arg), void *arg);

#endif
