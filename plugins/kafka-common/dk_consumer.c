/*
 * dk_consumer.c - one consumer-group member shared by subscriptions, with
 * offsets committed only after the acks.
 *
 * Threads: one consumer thread per instance owns the rd_kafka_t: it
 * applies subscription changes, serves librdkafka's queue (messages,
 * rebalances, errors), delivers to the handlers, commits and pauses.  It
 * sleeps in poll(2) on a pipe that librdkafka writes to when its queue
 * gets something (rd_kafka_queue_io_event_enable) and that acks and
 * (un)subscribes write to, so nothing waits for a polling interval.
 * Acks come from any thread and only take the mutex and write one byte.
 *
 * Data: each assigned partition keeps its fetched messages in offset
 * order until they are complete -- every subscription they went to
 * acked DONE or DROP -- and pops them from the head; the next offset to
 * commit is the one after the last popped.  So an offset is committed
 * only when all messages before it are done, whatever order the acks
 * came in.  A message's entries (one per subscription it goes to, also
 * the ack tokens) are made when it is first offered to a subscription.
 *
 * RETRY (and REQUEUE) puts the entry back with a due time
 * (consumeRetryInterval); the subscription gets nothing newer from that
 * partition until then, as Dapr's consumer retries a message in place.  With max_in_flight 1 a
 * subscription gets a partition strictly in order.
 *
 * Subscription changes: the union of the topics of all subscriptions is
 * the consumer's Kafka subscription.  Additions are applied at once
 * (after 20 ms, to batch daprd's start-up burst); removals only after a
 * second without other changes, because a rebalance costs every member a
 * pause and a removal followed by an addition (a restart of one
 * subscription) is then one rebalance instead of two.  Messages of a
 * topic nobody subscribes to any more simply wait unassigned, and are not
 * committed.
 *
 * Rebalances are eager (librdkafka's default range/roundrobin): on revoke
 * the done offsets are committed and every queued message is dropped;
 * deliveries in flight stay valid until acked but can no longer be
 * committed, so the next owner redelivers them (at-least-once).  On
 * assign, partitions without a committed offset start at the newest or
 * oldest offset as initialOffset says, looked up right away and committed,
 * so that a subscription that completed sees everything published after
 * it, also after a restart.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dk.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_IN_FLIGHT 64
#define ADD_DEBOUNCE_MS 20
#define REMOVE_DEBOUNCE_MS 1000
#define SETTLE_MS 1500            /* a group quiet this long after an assign has settled */
#define SUBSCRIBE_WAIT_MS 30000   /* subscribe completes after this at the latest */
#define PART_MAX_BYTES (16 << 20) /* backlog bytes per partition before pausing */
#define OFFSET_QUERY_MS 10000     /* committed / newest offset look-ups on assign */
#define CLOSE_WAIT_MS 10000       /* leaving the group at close */
#define POLL_BATCH 1000           /* messages taken from librdkafka per round */
#define ADMIN_WAIT_MS 5000        /* topic look-ups and creation on subscribe */

enum { E_READY, E_INFLIGHT, E_RETRY, E_DONE };

struct msg;
struct sub;

/* One message's state for one subscription; the ack token. */
struct dk_delivery {
    struct msg *m;
    struct sub *s;       /* valid while in flight (s->in_flight counts it) */
    uint64_t sub_id;
    int state;
    int attempts;
    int64_t due_ms;
};

typedef struct part part;

typedef struct msg {
    rd_kafka_message_t *rkm;
    part *p;
    int64_t offset;
    dk_delivery **entries;
    size_t n_entries;
    int in_queue;        /* still in p's queue */
    int refs;            /* entries in flight */
    struct msg *next;
} msg;

struct part {
    char *topic;
    int32_t partition;
    msg *head, *tail;
    size_t n_msgs;
    size_t bytes;
    int64_t commit_next;  /* offset to commit next; -1 until known */
    int64_t committed;    /* last offset sent in a commit; -1 none */
    int want_pause, paused;
    int revoked;
    int refs;             /* messages alive that point here */
    part *next;
};

typedef struct sub {
    dk_consumer *c;
    uint64_t id;
    char **topics;
    size_t n_topics;
    uint32_t mif, in_flight;
    int ordered;
    int active;
    int unsub_waiting;    /* an unsubscribe waits on it: do not free */
    dk_deliver_fn fn;
    void *fn_ctx;
    dk_done_fn done;      /* pending subscribe completion, or NULL */
    void *done_ctx;
    int64_t created_ms;
    uint64_t need_apply;  /* the apply round that contains its topics */
    struct sub *next;
} sub;

struct dk_consumer {
    dk_logger log; /* first: the rd_kafka_t opaque (dk_log_cb) */
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int pipe_rd, pipe_wr;
    pthread_t thread;
    char *group;
    char *brokers;
    int64_t retry_ms;
    int retry_enabled;
    size_t buffer_msgs;
    int escape_headers;
    int initial_oldest;

    pthread_mutex_t mu;
    pthread_cond_t idle;    /* a handler call returned */
    int stop;
    sub *subs;
    uint64_t next_id;
    part *parts;            /* the current assignment */
    size_t n_parts;
    /* Partitions revoked by a rebalance, kept (not delivered from, not
     * committed) until the next assignment: the ones this member gets
     * back keep their queue and deliveries in flight, so a rebalance that
     * changes nothing for them (a subscription change, a metadata
     * update) delivers nothing twice.  The others are dropped then. */
    part *limbo;
    unsigned rr;            /* rotates the partition scan */
    sub *delivering;        /* whose handler runs now */
    int dirty_commit;       /* a partition has a new offset to commit */
    int dirty_pause;        /* a partition wants pausing or resuming */
    int64_t change_ms;      /* last subscription change; 0 none pending */
    int change_adds;        /* the pending change adds a topic */

    /* Consumer thread only. */
    char **applied;         /* topics of the Kafka subscription */
    size_t n_applied;
    uint64_t apply_round;   /* rounds applied so far */
    uint64_t assign_round;  /* apply round of the latest assign */
    int64_t rebalance_ms;   /* time of the latest rebalance event */
    char **created;         /* topics ensure_topics() created */
    size_t n_created;
    rd_kafka_resp_err_t last_cerr; /* the consume error logged last, and when */
    int64_t last_cerr_ms;
    int all_down;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logf_(dk_consumer *c, dapr_log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(dk_consumer *c, dapr_log_level lv, const char *fmt, ...)
{
    char buf[1024];
    if (c->log.api->log_enabled && !c->log.api->log_enabled(c->log.host, lv))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->log.api->log(c->log.host, lv, "%s", buf);
}

static void wake(dk_consumer *c)
{
    char b = 1;
    /* Non-blocking: a full pipe already means "wake up". */
    ssize_t r = write(c->pipe_wr, &b, 1);
    (void)r;
}

static int sub_has_topic(const sub *s, const char *topic)
{
    for (size_t i = 0; i < s->n_topics; i++)
        if (strcmp(s->topics[i], topic) == 0)
            return 1;
    return 0;
}

static void sub_free(sub *s)
{
    for (size_t i = 0; i < s->n_topics; i++)
        free(s->topics[i]);
    free(s->topics);
    free(s);
}

/* Unlink and free an inactive subscription nothing refers to. */
static void sub_maybe_free(dk_consumer *c, sub *s)
{
    if (s->active || s->in_flight || c->delivering == s || s->unsub_waiting)
        return;
    for (sub **pp = &c->subs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    sub_free(s);
}

/* ---- messages and partitions (under mu) ----------------------------------- */

static void part_unref(dk_consumer *c, part *p)
{
    (void)c;
    if (--p->refs == 0 && p->revoked) {
        free(p->topic);
        free(p);
    }
}

static void msg_maybe_free(dk_consumer *c, msg *m)
{
    if (m->in_queue || m->refs)
        return;
    for (size_t i = 0; i < m->n_entries; i++)
        free(m->entries[i]);
    free(m->entries);
    rd_kafka_message_destroy(m->rkm);
    part_unref(c, m->p);
    free(m);
}

static int msg_complete(const msg *m)
{
    if (m->n_entries == 0)
        return 0; /* nobody took it yet */
    for (size_t i = 0; i < m->n_entries; i++)
        if (m->entries[i]->state != E_DONE)
            return 0;
    return 1;
}

static dk_delivery *entry_of(const msg *m, uint64_t sub_id)
{
    for (size_t i = 0; i < m->n_entries; i++)
        if (m->entries[i]->sub_id == sub_id)
            return m->entries[i];
    return NULL;
}

static void entry_remove(msg *m, dk_delivery *e)
{
    for (size_t i = 0; i < m->n_entries; i++)
        if (m->entries[i] == e) {
            m->entries[i] = m->entries[--m->n_entries];
            break;
        }
    free(e);
}

/* Pop complete messages from the head; note the offset to commit and
 * whether the partition may resume. */
static void part_advance(dk_consumer *c, part *p)
{
    if (p->revoked)
        return;
    while (p->head && msg_complete(p->head)) {
        msg *m = p->head;
        p->head = m->next;
        if (!p->head)
            p->tail = NULL;
        p->n_msgs--;
        p->bytes -= m->rkm->len;
        p->commit_next = m->offset + 1;
        c->dirty_commit = 1;
        m->in_queue = 0;
        msg_maybe_free(c, m);
    }
    if (p->want_pause && p->n_msgs <= c->buffer_msgs / 2 && p->bytes <= PART_MAX_BYTES / 2) {
        p->want_pause = 0;
        c->dirty_pause = 1;
    }
}

static part *part_find(dk_consumer *c, const char *topic, int32_t partition)
{
    for (part *p = c->parts; p; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

/* Make the entries of a message nobody took yet: one per active
 * subscription of its topic. */
static void msg_assign(dk_consumer *c, msg *m)
{
    const char *topic = m->p->topic;
    size_t n = 0;
    for (sub *s = c->subs; s; s = s->next)
        if (s->active && sub_has_topic(s, topic))
            n++;
    if (!n)
        return;
    dk_delivery **es = calloc(n, sizeof *es);
    if (!es)
        return; /* tried again on the next scan */
    size_t k = 0;
    for (sub *s = c->subs; s && k < n; s = s->next) {
        if (!s->active || !sub_has_topic(s, topic))
            continue;
        dk_delivery *e = calloc(1, sizeof *e);
        if (!e)
            break;
        e->m = m;
        e->sub_id = s->id;
        e->state = E_READY;
        es[k++] = e;
    }
    if (k < n) {
        for (size_t i = 0; i < k; i++)
            free(es[i]);
        free(es);
        return;
    }
    free(m->entries);
    m->entries = es;
    m->n_entries = n;
}

/* Drop a partition from the assignment: queued messages go, messages in
 * flight stay until acked (and can no longer be committed). */
static void part_revoke(dk_consumer *c, part *p)
{
    p->refs++; /* freeing its messages must not free p under us */
    p->revoked = 1;
    while (p->head) {
        msg *m = p->head;
        p->head = m->next;
        m->in_queue = 0;
        msg_maybe_free(c, m);
    }
    p->tail = NULL;
    p->n_msgs = 0;
    p->bytes = 0;
    part_unref(c, p); /* frees p unless deliveries in flight hold it */
}

/* ---- delivery ---------------------------------------------------------------- */

/* The next entry s may receive, or NULL; *wake_at is lowered to the due
 * time of a retry that holds a partition back. */
static dk_delivery *find_for_sub(dk_consumer *c, sub *s, int64_t now, int64_t *wake_at)
{
    if (!c->n_parts)
        return NULL;
    size_t start = c->rr++ % c->n_parts;
    part *p = c->parts;
    for (size_t i = 0; i < start; i++)
        p = p->next;
    for (size_t k = 0; k < c->n_parts; k++, p = p->next ? p->next : c->parts) {
        if (!sub_has_topic(s, p->topic))
            continue;
        for (msg *m = p->head; m; m = m->next) {
            if (m->n_entries == 0)
                msg_assign(c, m);
            dk_delivery *e = entry_of(m, s->id);
            if (!e)
                continue; /* went out before s subscribed */
            if (e->state == E_DONE)
                continue;
            if (e->state == E_READY)
                return e;
            if (e->state == E_RETRY) {
                if (e->due_ms <= now)
                    return e;
                if (e->due_ms < *wake_at)
                    *wake_at = e->due_ms;
                break; /* retried in place: nothing newer of p meanwhile */
            }
            /* In flight: with max_in_flight 1 the partition waits for it. */
            if (s->ordered)
                break;
        }
    }
    return NULL;
}

/* URL query escaping (Go's url.QueryEscape), for escapeHeaders. */
static size_t query_escape(char *dst, const unsigned char *src, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = src[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            dst[n++] = (char)ch;
        } else if (ch == ' ') {
            dst[n++] = '+';
        } else {
            dst[n++] = '%';
            dst[n++] = hex[ch >> 4];
            dst[n++] = hex[ch & 15];
        }
    }
    dst[n] = '\0';
    return n;
}

/* A string arena for one delivery's metadata. */
typedef struct arena {
    char *buf;
    size_t len, cap;
} arena;

static char *arena_put(arena *a, const void *s, size_t n, int escape)
{
    size_t need = (escape ? 3 * n : n) + 1;
    if (a->len + need > a->cap)
        return NULL;
    char *dst = a->buf + a->len;
    if (escape) {
        a->len += query_escape(dst, s, n) + 1;
    } else {
        if (n)
            memcpy(dst, s, n);
        dst[n] = '\0';
        a->len += n + 1;
    }
    return dst;
}

/* Deliver e to s: called with mu held; releases it around the handler. */
static void deliver(dk_consumer *c, sub *s, dk_delivery *e)
{
    msg *m = e->m;
    rd_kafka_message_t *rkm = m->rkm;
    e->state = E_INFLIGHT;
    e->attempts++;
    e->s = s;
    s->in_flight++;
    m->refs++;
    c->delivering = s;
    int attempt = e->attempts;
    dk_deliver_fn fn = s->fn;
    void *fn_ctx = s->fn_ctx;
    const char *topic = m->p->topic;
    int32_t partition = m->p->partition;
    pthread_mutex_unlock(&c->mu);

    /* Metadata as Dapr's Kafka component gives it. */
    rd_kafka_headers_t *hdrs = NULL;
    size_t n_hdrs = 0;
    if (rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs)
        n_hdrs = rd_kafka_header_cnt(hdrs);
    size_t cap = 256 + (rkm->key_len + 1) * 3 + strlen(topic);
    for (size_t i = 0; i < n_hdrs; i++) {
        const char *name;
        const void *val;
        size_t vlen;
        if (rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR)
            cap += strlen(name) + 1 + 4 * vlen + 2; /* escaped, and raw for content-type */
    }
    arena a = {malloc(cap), 0, cap};
    dapr_kv *kv = malloc((5 + n_hdrs) * sizeof *kv);
    size_t n_kv = 0;
    const char *content_type = NULL;
    if (a.buf && kv) {
        char num[32];
        if (rkm->key)
            kv[n_kv++] = (dapr_kv){"__key", arena_put(&a, rkm->key, rkm->key_len, c->escape_headers)};
        snprintf(num, sizeof num, "%lld", (long long)rkm->offset);
        kv[n_kv++] = (dapr_kv){"__offset", arena_put(&a, num, strlen(num), 0)};
        snprintf(num, sizeof num, "%d", (int)partition);
        kv[n_kv++] = (dapr_kv){"__partition", arena_put(&a, num, strlen(num), 0)};
        kv[n_kv++] = (dapr_kv){"__topic", topic};
        rd_kafka_timestamp_type_t tst;
        int64_t ts = rd_kafka_message_timestamp(rkm, &tst);
        if (ts >= 0) {
            snprintf(num, sizeof num, "%lld", (long long)ts);
            kv[n_kv++] = (dapr_kv){"__timestamp", arena_put(&a, num, strlen(num), 0)};
        }
        for (size_t i = 0; i < n_hdrs; i++) {
            const char *name;
            const void *val;
            size_t vlen;
            if (rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) != RD_KAFKA_RESP_ERR_NO_ERROR)
                continue;
            char *nm = arena_put(&a, name, strlen(name), 0);
            char *v = arena_put(&a, val ? val : "", val ? vlen : 0, c->escape_headers);
            if (!nm || !v)
                continue;
            kv[n_kv++] = (dapr_kv){nm, v};
            if (strcasecmp(name, "content-type") == 0)
                content_type = arena_put(&a, val ? val : "", val ? vlen : 0, 0);
        }
        /* A failed arena_put left a NULL value: drop such pairs. */
        size_t w = 0;
        for (size_t i = 0; i < n_kv; i++)
            if (kv[i].value)
                kv[w++] = kv[i];
        n_kv = w;
    }
    dk_message dm = {
        .topic = topic,
        .partition = partition,
        .offset = rkm->offset,
        .key = rkm->key,
        .key_len = rkm->key ? rkm->key_len : 0,
        /* A null value (tombstone) arrives as "null", as in Dapr. */
        .value = rkm->payload ? rkm->payload : "null",
        .len = rkm->payload ? rkm->len : 4,
        .content_type = content_type,
        .metadata = kv,
        .n_metadata = kv ? n_kv : 0,
        .attempt = attempt,
    };
    fn(fn_ctx, &dm, e);
    free(kv);
    free(a.buf);

    pthread_mutex_lock(&c->mu);
    c->delivering = NULL;
    pthread_cond_broadcast(&c->idle);
    sub_maybe_free(c, s);
}

/* Deliver whatever may go now; returns the earliest retry due time. */
static int64_t dispatch(dk_consumer *c)
{
    int64_t wake_at = INT64_MAX;
    for (int progress = 1; progress && !c->stop;) {
        progress = 0;
        int64_t now = now_ms();
        wake_at = INT64_MAX;
        for (sub *s = c->subs; s && !c->stop;) {
            sub *next = s->next;
            if (s->active && s->in_flight < s->mif) {
                dk_delivery *e = find_for_sub(c, s, now, &wake_at);
                if (e) {
                    /* deliver() may free s once its handler returned, so
                     * keep the next subscription by id. */
                    uint64_t next_id = next ? next->id : 0;
                    deliver(c, s, e);
                    progress = 1;
                    next = NULL;
                    if (next_id)
                        for (sub *t = c->subs; t; t = t->next)
                            if (t->id == next_id)
                                next = t;
                }
            }
            s = next;
        }
    }
    return wake_at;
}

/* ---- acks (any thread) ------------------------------------------------------- */

void dk_ack(dk_delivery *e, dk_verdict verdict)
{
    /* The subscription (and through it the consumer) stays alive while
     * this delivery is in flight. */
    sub *s = e->s;
    dk_consumer *c = s->c;
    pthread_mutex_lock(&c->mu);
    msg *m = e->m;
    part *p = m->p;
    e->s = NULL;
    s->in_flight--;
    if (verdict != DK_ACK_DONE && verdict != DK_ACK_DROP && verdict != DK_ACK_RETRY &&
        verdict != DK_ACK_REQUEUE) {
        /* Keeping the message is the safe reading of nonsense. */
        logf_(c, DAPR_LOG_WARN, "kafka: unknown ack verdict %d for %s/%d/%lld: retrying",
              (int)verdict, p->topic, (int)p->partition, (long long)m->offset);
        verdict = DK_ACK_RETRY;
    }
    if (verdict == DK_ACK_RETRY && !c->retry_enabled) {
        logf_(c, DAPR_LOG_ERROR,
              "kafka: processing message %s/%d/%lld failed; consumeRetryEnabled is false, so it is "
              "not delivered again",
              p->topic, (int)p->partition, (long long)m->offset);
        verdict = DK_ACK_DONE;
    }
    if (verdict == DK_ACK_REQUEUE)
        verdict = DK_ACK_RETRY; /* never processed: kept whatever consumeRetryEnabled says */
    if (verdict != DK_ACK_RETRY) {
        e->state = E_DONE;
    } else if (s->active && !p->revoked) {
        e->state = E_RETRY;
        e->due_ms = now_ms() + c->retry_ms;
    } else if (!p->revoked) {
        /* Nobody here takes it any more: it waits, uncommitted, for a
         * new subscriber of the topic or the group's next owner. */
        entry_remove(m, e);
    }
    part_advance(c, p); /* m stays alive: its ref is dropped below */
    m->refs--;
    msg_maybe_free(c, m);
    sub_maybe_free(c, s);
    wake(c);
    pthread_mutex_unlock(&c->mu);
}

/* ---- subscriptions ----------------------------------------------------------- */

int dk_consumer_subscribe(dk_consumer *c, const char *const *topics, size_t n_topics,
                          uint32_t max_in_flight, dk_deliver_fn fn, void *fn_ctx,
                          dk_done_fn done, void *done_ctx, uint64_t *id,
                          char *err, size_t errlen)
{
    if (!n_topics || !fn) {
        snprintf(err, errlen, "kafka: a subscription needs a topic and a handler");
        return -1;
    }
    for (size_t i = 0; i < n_topics; i++) {
        if (!topics[i] || !dk_topic_name_ok(topics[i])) {
            snprintf(err, errlen, "kafka: invalid topic name '%.300s' (letters, digits, '.', '_' "
                                  "and '-', at most 249)", topics[i] ? topics[i] : "");
            return -1;
        }
    }
    sub *s = calloc(1, sizeof *s);
    if (s)
        s->topics = calloc(n_topics, sizeof *s->topics);
    if (!s || !s->topics)
        goto oom;
    for (size_t i = 0; i < n_topics; i++) {
        if (!(s->topics[s->n_topics++] = strdup(topics[i])))
            goto oom;
    }
    s->c = c;
    s->mif = max_in_flight ? max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    s->ordered = s->mif == 1;
    s->active = 1;
    s->fn = fn;
    s->fn_ctx = fn_ctx;
    s->done = done;
    s->done_ctx = done_ctx;
    s->created_ms = now_ms();

    pthread_mutex_lock(&c->mu);
    s->id = ++c->next_id;
    /* At the tail: the dispatcher serves subscriptions in this order. */
    sub **pp = &c->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    c->change_ms = now_ms();
    c->change_adds = 1;
    *id = s->id;
    pthread_mutex_unlock(&c->mu);
    wake(c);
    return 0;
oom:
    if (s && s->topics)
        sub_free(s);
    else
        free(s);
    snprintf(err, errlen, "kafka: out of memory");
    return -1;
}

int dk_consumer_unsubscribe(dk_consumer *c, uint64_t id)
{
    pthread_mutex_lock(&c->mu);
    sub *s;
    for (s = c->subs; s; s = s->next)
        if (s->id == id && s->active)
            break;
    if (!s) {
        pthread_mutex_unlock(&c->mu);
        return -1;
    }
    s->active = 0;
    dk_done_fn done = s->done;
    void *done_ctx = s->done_ctx;
    s->done = NULL;
    /* What it has not received yet is no longer for it. */
    for (int l = 0; l < 2; l++)
        for (part *p = l ? c->limbo : c->parts; p; p = p->next) {
            if (!sub_has_topic(s, p->topic))
                continue;
            for (msg *m = p->head; m; m = m->next) {
                dk_delivery *e = entry_of(m, id);
                if (e && (e->state == E_READY || e->state == E_RETRY))
                    entry_remove(m, e);
            }
            part_advance(c, p);
        }
    if (!c->change_ms)
        c->change_ms = now_ms();
    /* No handler call for it may start after we return; one may be
     * running now (skip the wait when it is the caller). */
    s->unsub_waiting = 1; /* deliver() must not free s while we sleep on it */
    while (c->delivering == s && !pthread_equal(pthread_self(), c->thread))
        pthread_cond_wait(&c->idle, &c->mu);
    s->unsub_waiting = 0;
    sub_maybe_free(c, s);
    pthread_mutex_unlock(&c->mu);
    wake(c);
    if (done)
        done(done_ctx, DAPR_OK, NULL);
    return 0;
}

/* ---- consumer thread: Kafka subscription ---------------------------------- */

static int in_list(char **list, size_t n, const char *t)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], t) == 0)
            return 1;
    return 0;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int sub_topics_in(const sub *s, char **list, size_t n)
{
    for (size_t i = 0; i < s->n_topics; i++)
        if (!in_list(list, n, s->topics[i]))
            return 0;
    return 1;
}

/* ---- consumer thread: topics that do not exist yet -------------------------- */

/* Run one admin request on a private queue; the result event or NULL. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t want)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_WAIT_MS + 1000);
    if (ev && rd_kafka_event_type(ev) != want) {
        rd_kafka_event_destroy(ev);
        ev = NULL;
    }
    return ev;
}

/* The broker's auto.create.topics.enable: 1, 0, or -1 when unknown. */
static int broker_auto_create(dk_consumer *c, int32_t broker_id, rd_kafka_queue_t *q)
{
    char id[16], why[256];
    snprintf(id, sizeof id, "%d", (int)broker_id);
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_BROKER, id);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(c->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(opt, ADMIN_WAIT_MS, why, sizeof why);
    rd_kafka_DescribeConfigs(c->rk, &res, 1, opt, q);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_ConfigResource_destroy(res);
    int on = -1;
    rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT);
    if (ev && !rd_kafka_event_error(ev)) {
        size_t n = 0, ne = 0;
        const rd_kafka_ConfigResource_t **rs =
            rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
        const rd_kafka_ConfigEntry_t **es =
            n && !rd_kafka_ConfigResource_error(rs[0]) ? rd_kafka_ConfigResource_configs(rs[0], &ne) : NULL;
        for (size_t i = 0; i < ne; i++)
            if (strcmp(rd_kafka_ConfigEntry_name(es[i]), "auto.create.topics.enable") == 0) {
                const char *v = rd_kafka_ConfigEntry_value(es[i]);
                on = v && strcmp(v, "true") == 0;
            }
    } else if (ev) {
        logf_(c, DAPR_LOG_DEBUG, "kafka: reading the broker configuration: %s",
              rd_kafka_event_error_string(ev));
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    return on;
}

/*
 * Dapr's Kafka client creates a subscribed topic that does not exist when
 * the brokers allow it (auto.create.topics.enable), through its metadata
 * requests.  librdkafka's consumer no longer does (allow.auto.create.topics
 * is not honoured since 1.6), and its group waits for the topic without
 * joining; so do it here: look the topics up, and create the missing ones
 * with the brokers' defaults when the brokers would have created them on
 * their own.  Otherwise the subscription waits for the topic, with a
 * warning.  Called without mu.
 */
static void ensure_topics(dk_consumer *c, char **topics, size_t n)
{
    int32_t broker_id = -1;
    char **missing = calloc(n ? n : 1, sizeof *missing);
    size_t n_missing = 0;
    if (!missing)
        return;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, topics[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (!rkt)
            continue;
        if (rd_kafka_metadata(c->rk, 0, rkt, &md, ADMIN_WAIT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            broker_id = md->orig_broker_id;
            if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                missing[n_missing++] = topics[i];
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
    }
    if (!n_missing || broker_id < 0) {
        free(missing);
        return;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
    int on = broker_auto_create(c, broker_id, q);
    if (on != 1) {
        for (size_t i = 0; i < n_missing; i++)
            logf_(c, DAPR_LOG_WARN,
                  "kafka: topic %s does not exist and the brokers do not create topics on their "
                  "own%s; its subscription starts receiving once it is created",
                  missing[i], on < 0 ? " (or did not say)" : "");
    } else {
        rd_kafka_NewTopic_t **nts = calloc(n_missing, sizeof *nts);
        size_t k = 0;
        char why[256];
        for (size_t i = 0; nts && i < n_missing; i++)
            /* -1: the brokers' default partitions and replication factor. */
            if ((nts[k] = rd_kafka_NewTopic_new(missing[i], -1, -1, why, sizeof why)))
                k++;
        rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(c->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_request_timeout(opt, ADMIN_WAIT_MS, why, sizeof why);
        if (k)
            rd_kafka_CreateTopics(c->rk, nts, k, opt, q);
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_event_t *ev = k ? admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT) : NULL;
        size_t nr = 0;
        const rd_kafka_topic_result_t **rs =
            ev ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nr) : NULL;
        for (size_t i = 0; i < nr; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(rs[i]);
            /* "Already exists": the brokers were quicker (our look-up
             * asked them to create it) or a publisher was.  Either way the
             * topic is new since the subscribe began. */
            if (!e || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                logf_(c, DAPR_LOG_INFO, "kafka: topic %s did not exist; created with the "
                      "brokers' defaults (they create topics automatically)",
                      rd_kafka_topic_result_name(rs[i]));
                char **more = realloc(c->created, (c->n_created + 1) * sizeof *more);
                if (more) {
                    c->created = more;
                    if ((more[c->n_created] = strdup(rd_kafka_topic_result_name(rs[i]))))
                        c->n_created++;
                }
            } else
                logf_(c, DAPR_LOG_WARN, "kafka: creating topic %s: %s; its subscription starts "
                      "receiving once it exists", rd_kafka_topic_result_name(rs[i]),
                      rd_kafka_topic_result_error_string(rs[i]) ? rd_kafka_topic_result_error_string(rs[i])
                                                                : rd_kafka_err2str(e));
        }
        if (!ev && k)
            logf_(c, DAPR_LOG_WARN, "kafka: creating %zu missing topic(s): no answer", k);
        /* Until the new topics show their partitions: the group joins
         * with what the client's metadata knows, and would otherwise see
         * them only at its next refresh, seconds later. */
        for (size_t i = 0; ev && i < n_missing; i++) {
            rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, missing[i], NULL);
            for (int tries = 0; rkt && tries < 20; tries++) {
                const struct rd_kafka_metadata *md = NULL;
                int ready = 0;
                if (rd_kafka_metadata(c->rk, 0, rkt, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    ready = md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0;
                    rd_kafka_metadata_destroy(md);
                }
                if (ready)
                    break;
                usleep(50 * 1000);
            }
            if (rkt)
                rd_kafka_topic_destroy(rkt);
        }
        if (ev)
            rd_kafka_event_destroy(ev);
        for (size_t i = 0; i < k; i++)
            rd_kafka_NewTopic_destroy(nts[i]);
        free(nts);
    }
    rd_kafka_queue_destroy(q);
    free(missing);
}

/* Called with mu held; releases it around librdkafka. */
static void apply_subscription(dk_consumer *c)
{
    size_t cap = 0, n = 0;
    for (sub *s = c->subs; s; s = s->next)
        if (s->active)
            cap += s->n_topics;
    char **want = calloc(cap ? cap : 1, sizeof *want);
    if (!want)
        return; /* tried again on the next round */
    for (sub *s = c->subs; s; s = s->next) {
        if (!s->active)
            continue;
        for (size_t i = 0; i < s->n_topics; i++)
            if (!in_list(want, n, s->topics[i]) && !(want[n++] = strdup(s->topics[i]))) {
                free_list(want, n);
                return;
            }
    }
    c->change_ms = 0;
    c->change_adds = 0;
    int same = n == c->n_applied;
    for (size_t i = 0; same && i < n; i++)
        same = in_list(c->applied, c->n_applied, want[i]);
    if (same) {
        for (sub *s = c->subs; s; s = s->next)
            if (s->active && !s->need_apply && sub_topics_in(s, want, n))
                s->need_apply = c->apply_round;
        free_list(want, n);
        return;
    }

    /* The topics this round adds. */
    char **added = calloc(n ? n : 1, sizeof *added);
    size_t n_added = 0;
    for (size_t i = 0; added && i < n; i++)
        if (!in_list(c->applied, c->n_applied, want[i]))
            added[n_added++] = want[i];
    pthread_mutex_unlock(&c->mu);
    if (n_added)
        ensure_topics(c, added, n_added);
    free(added);
    rd_kafka_resp_err_t err;
    if (n) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
        for (size_t i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, want[i], RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    } else {
        err = rd_kafka_unsubscribe(c->rk);
    }
    pthread_mutex_lock(&c->mu);

    if (err) {
        logf_(c, DAPR_LOG_ERROR, "kafka: updating the subscription of consumer group %s: %s",
              c->group, rd_kafka_err2str(err));
        free_list(want, n);
        c->change_ms = now_ms(); /* again after the debounce */
        return;
    }
    free_list(c->applied, c->n_applied);
    c->applied = want;
    c->n_applied = n;
    c->apply_round++;
    for (sub *s = c->subs; s; s = s->next)
        if (s->active && !s->need_apply && sub_topics_in(s, want, n))
            s->need_apply = c->apply_round;
    if (n) {
        char topics[512] = "";
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(topics);
            snprintf(topics + len, sizeof topics - len, "%s%s", i ? ", " : "", want[i]);
        }
        logf_(c, DAPR_LOG_INFO, "kafka: consumer group %s: subscribing to %s", c->group, topics);
    } else {
        logf_(c, DAPR_LOG_INFO, "kafka: consumer group %s: no topic left, leaving the group",
              c->group);
    }
}

/* Complete the subscribes that may complete; with mu held. */
static void check_pending(dk_consumer *c, int64_t now, int64_t *next_wake)
{
again:
    for (sub *s = c->subs; s; s = s->next) {
        if (!s->done || !s->active)
            continue;
        int assigned = 1;
        for (size_t i = 0; i < s->n_topics && assigned; i++) {
            assigned = 0;
            for (part *p = c->parts; p; p = p->next)
                if (strcmp(p->topic, s->topics[i]) == 0) {
                    assigned = 1;
                    break;
                }
        }
        /* With initialOffset=oldest nothing published from now on can be
         * missed (no committed offset means the very start), so there is
         * nothing to wait for once the subscription was handed over. */
        if (c->initial_oldest && s->need_apply)
            assigned = 1;
        int joined = s->need_apply && c->assign_round >= s->need_apply;
        int settled = joined && now - c->rebalance_ms >= SETTLE_MS;
        int late = now - s->created_ms >= SUBSCRIBE_WAIT_MS;
        if (!assigned && !settled && !late) {
            if (joined && c->rebalance_ms + SETTLE_MS < *next_wake)
                *next_wake = c->rebalance_ms + SETTLE_MS;
            if (s->created_ms + SUBSCRIBE_WAIT_MS < *next_wake)
                *next_wake = s->created_ms + SUBSCRIBE_WAIT_MS;
            continue;
        }
        dk_done_fn done = s->done;
        void *done_ctx = s->done_ctx;
        s->done = NULL;
        if (!assigned && settled)
            logf_(c, DAPR_LOG_INFO,
                  "kafka: consumer group %s joined; no partition of %s is assigned to this "
                  "member for now", c->group, s->topics[0]);
        else if (!assigned)
            logf_(c, DAPR_LOG_WARN,
                  "kafka: consumer group %s not joined after %d s (brokers %s); deliveries of %s "
                  "start once it is", c->group, SUBSCRIBE_WAIT_MS / 1000, c->brokers,
                  s->topics[0]);
        pthread_mutex_unlock(&c->mu);
        done(done_ctx, DAPR_OK, NULL);
        pthread_mutex_lock(&c->mu);
        goto again; /* the list may have changed meanwhile */
    }
}

/* ---- consumer thread: commits and pauses ------------------------------------- */

static void commit_dirty(dk_consumer *c)
{
    c->dirty_commit = 0;
    rd_kafka_topic_partition_list_t *l = NULL;
    for (part *p = c->parts; p; p = p->next) {
        if (p->commit_next < 0 || p->commit_next <= p->committed)
            continue;
        if (!l)
            l = rd_kafka_topic_partition_list_new((int)c->n_parts);
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->commit_next;
        p->committed = p->commit_next;
    }
    if (!l)
        return;
    pthread_mutex_unlock(&c->mu);
    /* Asynchronous: the result comes to offset_commit_cb. */
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, l, 1);
    pthread_mutex_lock(&c->mu);
    if (err) {
        logf_(c, DAPR_LOG_DEBUG, "kafka: commit not sent: %s", rd_kafka_err2str(err));
        for (int i = 0; i < l->cnt; i++) {
            part *p = part_find(c, l->elems[i].topic, l->elems[i].partition);
            if (p && p->committed == l->elems[i].offset)
                p->committed = -1; /* send again on the next round */
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    dk_consumer *c = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        rd_kafka_resp_err_t e = tp->err ? tp->err : err;
        if (!e)
            continue;
        part *p = part_find(c, tp->topic, tp->partition);
        logf_(c, p ? DAPR_LOG_WARN : DAPR_LOG_DEBUG,
              "kafka: committing offset %lld of %s/%d failed: %s%s", (long long)tp->offset,
              tp->topic, (int)tp->partition, rd_kafka_err2str(e), p ? "; trying again" : "");
        if (p && p->committed == tp->offset) {
            p->committed = -1;
            c->dirty_commit = 1;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static void apply_pauses(dk_consumer *c)
{
    c->dirty_pause = 0;
    rd_kafka_topic_partition_list_t *pause = rd_kafka_topic_partition_list_new(4);
    rd_kafka_topic_partition_list_t *resume = rd_kafka_topic_partition_list_new(4);
    for (part *p = c->parts; p; p = p->next) {
        if (p->want_pause == p->paused)
            continue;
        rd_kafka_topic_partition_list_add(p->want_pause ? pause : resume, p->topic, p->partition);
        p->paused = p->want_pause;
        logf_(c, DAPR_LOG_DEBUG, "kafka: %s %s/%d (%zu messages waiting)",
              p->paused ? "pausing" : "resuming", p->topic, (int)p->partition, p->n_msgs);
    }
    pthread_mutex_unlock(&c->mu);
    if (pause->cnt)
        rd_kafka_pause_partitions(c->rk, pause);
    if (resume->cnt)
        rd_kafka_resume_partitions(c->rk, resume);
    rd_kafka_topic_partition_list_destroy(pause);
    rd_kafka_topic_partition_list_destroy(resume);
    pthread_mutex_lock(&c->mu);
}

/* ---- consumer thread: rebalances ------------------------------------------- */

/* Where assigned partitions start: the committed offset, else the newest
 * (or oldest) offset looked up now -- and committed, so that a member
 * taking over later starts there too rather than at its own "newest". */
static rd_kafka_topic_partition_list_t *resolve_start(dk_consumer *c,
                                                      rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].offset < 0) /* not kept from before the rebalance */
            rd_kafka_topic_partition_list_add(committed, parts->elems[i].topic,
                                              parts->elems[i].partition);
    if (!committed->cnt) {
        rd_kafka_topic_partition_list_destroy(committed);
        return NULL;
    }
    rd_kafka_resp_err_t err = rd_kafka_committed(c->rk, committed, OFFSET_QUERY_MS);
    if (err) {
        logf_(c, DAPR_LOG_WARN, "kafka: reading the committed offsets of group %s: %s; "
              "librdkafka will find them", c->group, rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(committed);
        return NULL;
    }
    rd_kafka_topic_partition_list_t *fresh = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < committed->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &committed->elems[i];
        rd_kafka_topic_partition_t *dst =
            rd_kafka_topic_partition_list_find(parts, tp->topic, tp->partition);
        if (!tp->err && tp->offset >= 0) {
            if (dst)
                dst->offset = tp->offset;
        } else
            /* ListOffsets by time: -1 is the newest offset, -2 the oldest.
             * A topic this member just created holds only what was
             * published since the subscribe began: all of it is due. */
            rd_kafka_topic_partition_list_add(fresh, tp->topic, tp->partition)->offset =
                c->initial_oldest || in_list(c->created, c->n_created, tp->topic) ? -2 : -1;
    }
    rd_kafka_topic_partition_list_destroy(committed);
    if (!fresh->cnt) {
        rd_kafka_topic_partition_list_destroy(fresh);
        return NULL;
    }
    /* A partition whose leader is still being elected (a topic created
     * a moment ago) answers "not leader" for a while: ask again. */
    rd_kafka_topic_partition_list_t *ask = rd_kafka_topic_partition_list_copy(fresh);
    for (int attempt = 0;; attempt++) {
        err = rd_kafka_offsets_for_times(c->rk, fresh, OFFSET_QUERY_MS);
        int retry = err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                    err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                    err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        for (int i = 0; !err && i < fresh->cnt; i++) {
            rd_kafka_resp_err_t e = fresh->elems[i].err;
            if (e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                retry = 1;
        }
        if (!retry || attempt >= 25)
            break;
        usleep(200 * 1000);
        for (int i = 0; i < fresh->cnt; i++) { /* the timestamps again */
            fresh->elems[i].offset = ask->elems[i].offset;
            fresh->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
        }
    }
    rd_kafka_topic_partition_list_destroy(ask);
    rd_kafka_topic_partition_list_t *to_commit = rd_kafka_topic_partition_list_new(fresh->cnt);
    for (int i = 0; i < fresh->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &fresh->elems[i];
        rd_kafka_topic_partition_t *dst =
            rd_kafka_topic_partition_list_find(parts, tp->topic, tp->partition);
        if (!dst)
            continue;
        if (!err && !tp->err && tp->offset >= 0) {
            dst->offset = tp->offset;
            rd_kafka_topic_partition_list_add(to_commit, tp->topic, tp->partition)->offset =
                tp->offset;
        } else {
            dst->offset = c->initial_oldest ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        }
    }
    if (err)
        logf_(c, DAPR_LOG_WARN, "kafka: looking up the %s offsets: %s",
              c->initial_oldest ? "oldest" : "newest", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(fresh);
    if (!to_commit->cnt) {
        rd_kafka_topic_partition_list_destroy(to_commit);
        return NULL;
    }
    return to_commit;
}

static void revoke_all(dk_consumer *c)
{
    while (c->parts) {
        part *p = c->parts;
        c->parts = p->next;
        part_revoke(c, p);
    }
    c->n_parts = 0;
}

static void drop_limbo(dk_consumer *c)
{
    while (c->limbo) {
        part *p = c->limbo;
        c->limbo = p->next;
        part_revoke(c, p);
    }
}

/* Unlink topic/partition from the limbo list, or NULL. */
static part *limbo_take(dk_consumer *c, const char *topic, int32_t partition)
{
    for (part **pp = &c->limbo; *pp; pp = &(*pp)->next)
        if ((*pp)->partition == partition && strcmp((*pp)->topic, topic) == 0) {
            part *p = *pp;
            *pp = p->next;
            p->next = NULL;
            return p;
        }
    return NULL;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    dk_consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* Partitions kept from before the rebalance resume right after
         * what they hold; the others start as resolve_start() says. */
        pthread_mutex_lock(&c->mu);
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            tp->offset = RD_KAFKA_OFFSET_INVALID;
            for (part *p = c->limbo; p; p = p->next)
                if (p->partition == tp->partition && strcmp(p->topic, tp->topic) == 0)
                    tp->offset = p->tail             ? p->tail->offset + 1
                                 : p->commit_next >= 0 ? p->commit_next
                                                       : RD_KAFKA_OFFSET_INVALID;
        }
        pthread_mutex_unlock(&c->mu);
        rd_kafka_topic_partition_list_t *to_commit = parts->cnt ? resolve_start(c, parts) : NULL;
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
        if (e)
            logf_(c, DAPR_LOG_ERROR, "kafka: assigning partitions: %s", rd_kafka_err2str(e));
        else if (parts->cnt)
            /* A partition we paused before a revoke starts afresh. */
            rd_kafka_resume_partitions(rk, parts);
        if (to_commit) {
            rd_kafka_commit(rk, to_commit, 1);
            rd_kafka_topic_partition_list_destroy(to_commit);
        }
        char desc[512] = "";
        int kept = 0;
        pthread_mutex_lock(&c->mu);
        revoke_all(c); /* eager: nothing should be left, but be sure */
        for (int i = 0; !e && i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            part *p = limbo_take(c, tp->topic, tp->partition);
            if (p) {
                kept++;
                p->want_pause = p->paused = 0;
                if (p->commit_next > p->committed)
                    c->dirty_commit = 1;
            } else {
                p = calloc(1, sizeof *p);
                if (!p || !(p->topic = strdup(tp->topic))) {
                    free(p);
                    logf_(c, DAPR_LOG_ERROR, "kafka: out of memory tracking %s/%d", tp->topic,
                          (int)tp->partition);
                    continue;
                }
                p->partition = tp->partition;
                p->commit_next = tp->offset >= 0 ? tp->offset : -1;
                p->committed = p->commit_next;
            }
            p->next = c->parts;
            c->parts = p;
            c->n_parts++;
            size_t len = strlen(desc);
            if (len < sizeof desc - 64)
                snprintf(desc + len, sizeof desc - len, "%s%s/%d@%lld", i ? " " : "", tp->topic,
                         (int)tp->partition, (long long)tp->offset);
        }
        drop_limbo(c); /* went to other members */
        c->assign_round = c->apply_round;
        c->rebalance_ms = now_ms();
        pthread_mutex_unlock(&c->mu);
        char how[64] = "";
        if (kept)
            snprintf(how, sizeof how, " (%d kept from before the rebalance)", kept);
        logf_(c, DAPR_LOG_INFO, "kafka: consumer group %s assigned %d partition(s)%s%s%s", c->group,
              parts->cnt, how, parts->cnt ? ": " : "", desc);
        return;
    }

    /* Revoked (or a rebalance error): commit what is done.  Unless the
     * assignment was lost (others may own the partitions already) or
     * this member is leaving, keep the partitions for the assignment
     * that follows. */
    int lost = rd_kafka_assignment_lost(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->n_parts ? (int)c->n_parts : 1);
    pthread_mutex_lock(&c->mu);
    int keep = !lost && err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && c->n_applied > 0 && !c->stop;
    for (part *p = c->parts; p; p = p->next)
        if (p->commit_next >= 0 && p->commit_next > p->committed) {
            rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->commit_next;
            p->committed = p->commit_next;
        }
    drop_limbo(c);
    if (keep) {
        c->limbo = c->parts;
        c->parts = NULL;
        c->n_parts = 0;
    } else {
        revoke_all(c);
    }
    c->rebalance_ms = now_ms();
    pthread_mutex_unlock(&c->mu);
    if (l->cnt && !lost) {
        rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 0);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            logf_(c, DAPR_LOG_WARN, "kafka: committing on revoke: %s", rd_kafka_err2str(e));
            /* Kept partitions commit again once assigned back. */
            pthread_mutex_lock(&c->mu);
            for (part *p = c->limbo; p; p = p->next)
                p->committed = -1;
            pthread_mutex_unlock(&c->mu);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        logf_(c, DAPR_LOG_WARN, "kafka: rebalance error in group %s: %s", c->group,
              rd_kafka_err2str(err));
    else
        logf_(c, DAPR_LOG_INFO, "kafka: consumer group %s: partitions revoked%s", c->group,
              lost ? " (assignment lost: nothing committed)" : "");
    rd_kafka_assign(rk, NULL);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    dk_consumer *c = opaque;
    char fatal_reason[512];
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal_reason, sizeof fatal_reason);
        logf_(c, DAPR_LOG_ERROR, "kafka consumer: fatal: %s", fatal_reason);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        pthread_mutex_lock(&c->mu);
        int first = !c->all_down;
        c->all_down = 1;
        pthread_mutex_unlock(&c->mu);
        if (first)
            logf_(c, DAPR_LOG_WARN,
                  "kafka consumer: every broker of %s is unreachable (%s); reconnecting",
                  c->brokers, reason);
        return;
    }
    logf_(c, err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL
                 ? DAPR_LOG_ERROR : DAPR_LOG_DEBUG,
          "kafka consumer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ---- consumer thread: fetching ------------------------------------------------ */

static void take(dk_consumer *c, rd_kafka_message_t *rkm)
{
    if (rkm->err) {
        /* Consumer errors (a topic that does not exist and may not be
         * created, offset out of range...): librdkafka carries on by
         * itself.  Warn once per kind of error a minute, so that a
         * subscription that gets nothing says why without flooding. */
        int64_t now = now_ms();
        dapr_log_level lv = DAPR_LOG_DEBUG;
        /* A subscribed topic that does not exist (yet) was explained by
         * ensure_topics(); librdkafka repeats it at every refresh. */
        if (rkm->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            lv = DAPR_LOG_DEBUG;
        } else if (rkm->err != c->last_cerr || now - c->last_cerr_ms >= 60000) {
            lv = DAPR_LOG_WARN;
            c->last_cerr = rkm->err;
            c->last_cerr_ms = now;
        }
        if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            logf_(c, lv, "kafka consumer: %s%s%s", rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "",
                  rkm->rkt ? ": " : "", rd_kafka_message_errstr(rkm));
        rd_kafka_message_destroy(rkm);
        return;
    }
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    pthread_mutex_lock(&c->mu);
    if (c->all_down) {
        c->all_down = 0;
        logf_(c, DAPR_LOG_INFO, "kafka consumer: receiving from brokers again");
    }
    part *p = part_find(c, topic, rkm->partition);
    msg *m = NULL;
    if (p && !(p->tail && rkm->offset <= p->tail->offset) &&
        !(p->commit_next >= 0 && rkm->offset < p->commit_next))
        m = calloc(1, sizeof *m);
    if (!m) {
        /* Not ours any more, already seen, or no memory: it is fetched
         * again from the committed offset by whoever owns it. */
        pthread_mutex_unlock(&c->mu);
        rd_kafka_message_destroy(rkm);
        return;
    }
    m->rkm = rkm;
    m->p = p;
    m->offset = rkm->offset;
    m->in_queue = 1;
    p->refs++;
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    p->n_msgs++;
    p->bytes += rkm->len;
    if (p->commit_next < 0)
        p->commit_next = rkm->offset;
    if (!p->want_pause && (p->n_msgs >= c->buffer_msgs || p->bytes >= PART_MAX_BYTES)) {
        p->want_pause = 1;
        c->dirty_pause = 1;
    }
    pthread_mutex_unlock(&c->mu);
}

/* Serve librdkafka's queue; 1 when there may be more waiting. */
static int serve(dk_consumer *c)
{
    for (int n = 0; n < POLL_BATCH; n++) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, 0);
        if (!rkm)
            return rd_kafka_queue_length(c->q) > 0;
        take(c, rkm);
    }
    return 1;
}

static void *consumer_thread(void *arg)
{
    dk_consumer *c = arg;
    int more = 0;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        int64_t now = now_ms();
        int64_t next_wake = now + 200;
        if (c->change_ms) {
            int64_t due = c->change_ms + (c->change_adds ? ADD_DEBOUNCE_MS : REMOVE_DEBOUNCE_MS);
            if (now >= due)
                apply_subscription(c);
            else if (due < next_wake)
                next_wake = due;
        }
        if (c->dirty_commit)
            commit_dirty(c);
        if (c->dirty_pause)
            apply_pauses(c);
        check_pending(c, now_ms(), &next_wake);
        int64_t retry_at = dispatch(c);
        if (retry_at < next_wake)
            next_wake = retry_at;
        pthread_mutex_unlock(&c->mu);

        int64_t left = next_wake - now_ms();
        struct pollfd pfd = {.fd = c->pipe_rd, .events = POLLIN};
        if (poll(&pfd, 1, more ? 0 : (int)(left < 0 ? 0 : left)) > 0) {
            char buf[256];
            while (read(c->pipe_rd, buf, sizeof buf) > 0)
                ;
        }
        more = serve(c);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------ */

dk_consumer *dk_consumer_new(const dk_config *cfg, dapr_host *host, const dapr_host_api *api,
                             char *err, size_t errlen)
{
    dk_consumer *c = calloc(1, sizeof *c);
    int fds[2] = {-1, -1};
    if (!c || !(c->group = strdup(cfg->consumer_group)) || !(c->brokers = strdup(cfg->brokers))) {
        snprintf(err, errlen, "kafka: out of memory");
        goto fail;
    }
    c->log.host = host;
    c->log.api = api;
    c->retry_ms = cfg->consume_retry_interval_ms;
    c->retry_enabled = cfg->consume_retry_enabled;
    c->buffer_msgs = (size_t)cfg->channel_buffer_size;
    c->escape_headers = cfg->escape_headers;
    c->initial_oldest = cfg->initial_oldest;
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "kafka: pipe: %s", strerror(errno));
        goto fail;
    }
    c->pipe_rd = fds[0];
    c->pipe_wr = fds[1];
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->idle, NULL);

    rd_kafka_conf_t *conf = dk_config_rdkafka(cfg, DK_CONSUMER, err, errlen);
    if (!conf)
        goto fail_sync;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_log_cb(conf, dk_log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
    char why[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka: cannot create the consumer: %s", why);
        goto fail_sync;
    }
    /* Errors, logs and rebalances all arrive on the consumer queue, which
     * wakes the thread through the pipe. */
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);
    rd_kafka_queue_io_event_enable(c->q, c->pipe_wr, "1", 1);
    if (pthread_create(&c->thread, NULL, consumer_thread, c) != 0) {
        snprintf(err, errlen, "kafka: cannot start the consumer thread");
        rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
        rd_kafka_queue_destroy(c->q);
        rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        goto fail_sync;
    }
    return c;
fail_sync:
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->mu);
fail:
    if (fds[0] >= 0) {
        close(fds[0]);
        close(fds[1]);
    }
    if (c) {
        free(c->group);
        free(c->brokers);
        free(c);
    }
    return NULL;
}

void dk_consumer_free(dk_consumer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_mutex_unlock(&c->mu);
    wake(c);
    pthread_join(c->thread, NULL);

    /* Leave the group (the revoke commits what is done), bounded: a
     * cluster that does not answer must not hold daprd's shutdown. */
    rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
    rd_kafka_queue_t *cq = rd_kafka_queue_new(c->rk);
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(c->rk, cq);
    int closed = 0;
    if (error) {
        logf_(c, DAPR_LOG_WARN, "kafka: closing the consumer: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else {
        int64_t deadline = now_ms() + CLOSE_WAIT_MS;
        while (!(closed = rd_kafka_consumer_closed(c->rk)) && now_ms() < deadline)
            rd_kafka_queue_poll_callback(cq, 100);
        if (!closed)
            logf_(c, DAPR_LOG_WARN, "kafka: consumer group %s not left within %d s; closing anyway",
                  c->group, CLOSE_WAIT_MS / 1000);
    }
    rd_kafka_queue_destroy(cq);

    pthread_mutex_lock(&c->mu);
    revoke_all(c); /* every rd_kafka_message_t goes before the handle */
    drop_limbo(c);
    sub *subs = c->subs;
    c->subs = NULL;
    pthread_mutex_unlock(&c->mu);
    while (subs) {
        sub *s = subs;
        subs = s->next;
        if (s->done)
            s->done(s->done_ctx, DAPR_ERR_UNAVAILABLE, "kafka: the component is closing");
        sub_free(s);
    }
    rd_kafka_queue_destroy(c->q);
    rd_kafka_destroy_flags(c->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    free_list(c->applied, c->n_applied);
    free_list(c->created, c->n_created);
    close(c->pipe_rd);
    close(c->pipe_wr);
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->mu);
    free(c->group);
    free(c->brokers);
    free(c);
}
