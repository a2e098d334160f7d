/*
 * nr_mdns.c - the "nameresolution.mdns" name resolver: sidecars find each
 * other on the local link with multicast DNS (RFC 6762) service discovery
 * (RFC 6763), as Dapr's self-hosted default resolver does.
 *
 * Names, as Dapr's mdns resolver (components-contrib, on zeroconf) uses:
 *   service   "<app id>.local."            PTR -> the instance
 *   instance  "<hostname>:<pid>.<app id>.local."
 *             SRV -> target host, internal port;  TXT -> the app id
 *   host      "dapr-<pid>-<hostname>.local."    A -> the announced address
 * The target host name is ours rather than the machine's host name: the
 * announced address is often 127.0.0.1, and announcing that for the
 * machine's real name would poison other mDNS caches on the link.
 *
 * One thread per instance owns a UDP socket bound to *:5353 and joined to
 * 224.0.0.251 on every interface.  It answers queries for the announced
 * instance and feeds every answer it hears into a small cache: app id ->
 * instances ("ip:port"), each with an expiry (the record TTL, at most 60 s
 * as Dapr's address cache).  resolve() serves from the cache round-robin;
 * on a miss it sends a query and waits up to one second (Dapr's browse
 * timeout) for the thread to cache an answer.  A hit older than half its
 * lifetime sends a query in the background so the cache stays fresh and
 * learns about instances started later.
 *
 * The SRV record and the A record of its target must arrive in the same
 * packet (every responder we know, ours and zeroconf's included, adds the
 * A record): we never cache host names on their own, so two sidecars on
 * one machine announcing different addresses cannot mix.
 *
 * Like Dapr's mdns resolver, the namespace is ignored, and only IPv4
 * addresses are announced and used.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dapr/plugin.h>

#include "dns_msg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MDNS_PORT 5353
#define MDNS_GROUP "224.0.0.251"
#define PKT_MAX 9000            /* RFC 6762 17: the largest mDNS message */
#define RECORD_TTL 120          /* seconds, what we announce (RFC 6762 10) */
#define LEGACY_TTL 10           /* RFC 6762 6.7: for plain DNS askers */
#define CACHE_TTL_MAX 60        /* seconds, as Dapr's addressTTL */
#define RESOLVE_WINDOW_MS 1000  /* as Dapr's browseOneTimeout */
#define REQUERY_MS 250          /* resend within the window: UDP may drop */
#define MIN_REFRESH_GAP_MS 1000 /* at most one background query a second */
#define REANNOUNCE_MS 1000      /* RFC 6762 8.3: announce twice, 1 s apart */
#define MAX_APPS 64             /* app ids cached; least recently used goes */
#define MAX_INSTANCES 32        /* instances cached per app id */

typedef struct nr_instance {
    uint8_t name[DNS_NAME_MAX]; /* SRV owner, identifies the instance */
    char addr[INET_ADDRSTRLEN + 6];
    uint64_t seen_ms;           /* last answer */
    uint64_t expires_ms;
} nr_instance;

typedef struct nr_app {
    char app_id[DNS_LABEL_MAX + 1];
    uint8_t service[DNS_NAME_MAX];
    nr_instance inst[MAX_INSTANCES];
    int n;
    unsigned next;              /* round-robin position */
    uint64_t used_ms;
    uint64_t queried_ms;
} nr_app;

/* What we announce. */
typedef struct nr_self {
    int active;
    char app_id[DNS_LABEL_MAX + 1];
    uint8_t service[DNS_NAME_MAX];
    uint8_t instance[DNS_NAME_MAX];
    uint8_t hostname[DNS_NAME_MAX];
    uint8_t ip[4];
    uint16_t port;
} nr_self;

typedef struct nr_mdns {
    dapr_host *host;
    const dapr_host_api *api;
    int fd;
    int wake[2];                /* pipe: wakes the thread to re-plan or stop */
    pthread_t thread;

    pthread_mutex_t lock;       /* guards everything below */
    pthread_cond_t changed;     /* the cache gained or lost an instance */
    int stopping;
    nr_self self;
    uint64_t reannounce_ms;     /* 0: nothing planned */
    nr_app *apps[MAX_APPS];

    /* Sending sets IP_MULTICAST_IF per interface, which is socket state:
     * one sender at a time. */
    pthread_mutex_t send_lock;
} nr_mdns;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int service_name(uint8_t out[DNS_NAME_MAX], const char *app_id)
{
    const char *labels[] = {app_id, "local"};
    return dns_name_from_labels(out, labels, 2);
}

/* Dapr app ids become one DNS label: 1..63 bytes. */
static int app_id_valid(const char *app_id)
{
    return app_id != NULL && app_id[0] != '\0' &&
           strlen(app_id) <= DNS_LABEL_MAX;
}

/* ------------------------------------------------------------------------
 * Sending
 * --------------------------------------------------------------------- */

/* Send pkt to the mDNS group on every IPv4 interface that is up and can
 * multicast, joining the group there first (new interfaces appear while
 * we run; a repeated join fails harmlessly).  Loopback is used only when
 * nothing else is there: IP_MULTICAST_LOOP already hands every packet
 * sent elsewhere to the sockets of this machine. */
static void send_multicast(nr_mdns *m, const uint8_t *pkt, size_t len)
{
    struct ifaddrs *ifs = NULL;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(MDNS_PORT)};
    inet_pton(AF_INET, MDNS_GROUP, &dst.sin_addr);

    if (getifaddrs(&ifs) != 0) {
        m->api->log(m->host, DAPR_LOG_WARN, "mDNS: getifaddrs: %s", strerror(errno));
        return;
    }
    int have_multicast = 0;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
            (i->ifa_flags & IFF_UP) && (i->ifa_flags & IFF_MULTICAST) &&
            !(i->ifa_flags & IFF_LOOPBACK))
            have_multicast = 1;

    unsigned done[64];
    size_t n_done = 0;
    pthread_mutex_lock(&m->send_lock);
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        if (!(i->ifa_flags & IFF_UP)) continue;
        if (have_multicast ? (!(i->ifa_flags & IFF_MULTICAST) ||
                              (i->ifa_flags & IFF_LOOPBACK))
                           : !(i->ifa_flags & IFF_LOOPBACK))
            continue;
        unsigned idx = if_nametoindex(i->ifa_name);
        if (idx == 0) continue;
        /* An interface with several addresses is listed once per address. */
        size_t k;
        for (k = 0; k < n_done && done[k] != idx; k++)
            ;
        if (k < n_done || n_done == sizeof(done) / sizeof(done[0])) continue;
        done[n_done++] = idx;

        struct ip_mreqn mr = {.imr_multiaddr = dst.sin_addr, .imr_ifindex = (int)idx};
        setsockopt(m->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr));
        if (setsockopt(m->fd, IPPROTO_IP, IP_MULTICAST_IF, &mr, sizeof(mr)) != 0)
            continue;
        if (sendto(m->fd, pkt, len, 0, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
            m->api->log_enabled(m->host, DAPR_LOG_DEBUG))
            m->api->log(m->host, DAPR_LOG_DEBUG, "mDNS: send on %s: %s",
                        i->ifa_name, strerror(errno));
    }
    pthread_mutex_unlock(&m->send_lock);
    freeifaddrs(ifs);
}

static void send_query(nr_mdns *m, const uint8_t *service)
{
    uint8_t pkt[512];
    dns_writer w;
    dns_w_init(&w, pkt, sizeof(pkt));
    dns_w_header(&w, 0, 0, 1, 0, 0, 0);
    dns_w_question(&w, service, DNS_TYPE_PTR, DNS_CLASS_IN);
    int len = dns_w_finish(&w);
    if (len > 0) send_multicast(m, pkt, (size_t)len);
}

/* Our four records.  A legacy (plain DNS, source port not 5353) asker gets
 * its id and question back, short TTLs and no cache-flush bits (RFC 6762
 * 6.7); a ttl of 0 makes a goodbye (RFC 6762 10.1). */
static int build_response(const nr_self *s, uint8_t *pkt, size_t cap,
                          uint32_t ttl, const dns_msg *legacy_q,
                          const dns_question *q)
{
    dns_writer w;
    uint16_t flush = legacy_q ? 0 : DNS_CLASS_TOPBIT;
    const char *txt[] = {s->app_id};

    if (legacy_q && ttl > LEGACY_TTL) ttl = LEGACY_TTL;
    dns_w_init(&w, pkt, cap);
    dns_w_header(&w, legacy_q ? legacy_q->id : 0, DNS_FLAG_QR | DNS_FLAG_AA,
                 legacy_q ? 1 : 0, 4, 0, 0);
    if (legacy_q) dns_w_question(&w, q->name, q->type, DNS_CLASS_IN);
    dns_w_ptr(&w, s->service, DNS_CLASS_IN, ttl, s->instance); /* shared */
    dns_w_srv(&w, s->instance, DNS_CLASS_IN | flush, ttl, 0, 0, s->port, s->hostname);
    dns_w_txt(&w, s->instance, DNS_CLASS_IN | flush, ttl, txt, 1);
    dns_w_a(&w, s->hostname, DNS_CLASS_IN | flush, ttl, s->ip);
    return dns_w_finish(&w);
}

static void send_announcement(nr_mdns *m, const nr_self *s, uint32_t ttl)
{
    uint8_t pkt[1500];
    int len = build_response(s, pkt, sizeof(pkt), ttl, NULL, NULL);
    if (len > 0) send_multicast(m, pkt, (size_t)len);
}

/* ------------------------------------------------------------------------
 * The cache (m->lock held)
 * --------------------------------------------------------------------- */

static nr_app *app_find_by_service(nr_mdns *m, const uint8_t *service)
{
    for (int i = 0; i < MAX_APPS; i++)
        if (m->apps[i] && dns_name_eq(m->apps[i]->service, service))
            return m->apps[i];
    return NULL;
}

/* The cache entry of an app id, made on first use; the least recently
 * used entry makes room when all are taken. */
static nr_app *app_get(nr_mdns *m, const char *app_id)
{
    int free_slot = -1, lru = 0;
    for (int i = 0; i < MAX_APPS; i++) {
        if (!m->apps[i]) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (strcmp(m->apps[i]->app_id, app_id) == 0) return m->apps[i];
        if (m->apps[lru] == NULL || m->apps[i]->used_ms < m->apps[lru]->used_ms)
            lru = i;
    }
    nr_app *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    snprintf(a->app_id, sizeof(a->app_id), "%s", app_id);
    service_name(a->service, app_id);
    int slot = free_slot >= 0 ? free_slot : lru;
    free(m->apps[slot]);
    m->apps[slot] = a;
    return a;
}

static void app_remove(nr_app *a, int i)
{
    a->inst[i] = a->inst[a->n - 1];
    a->n--;
}

static int app_remove_named(nr_app *a, const uint8_t *name)
{
    for (int i = 0; i < a->n; i++) {
        if (dns_name_eq(a->inst[i].name, name)) {
            app_remove(a, i);
            return 1;
        }
    }
    return 0;
}

static void app_expire(nr_app *a, uint64_t now)
{
    for (int i = a->n - 1; i >= 0; i--)
        if (a->inst[i].expires_ms <= now) app_remove(a, i);
}

static void app_upsert(nr_app *a, const uint8_t *name, const char *addr,
                       uint32_t ttl, uint64_t now)
{
    nr_instance *in = NULL;
    for (int i = 0; i < a->n && !in; i++)
        if (dns_name_eq(a->inst[i].name, name)) in = &a->inst[i];
    if (!in) {
        app_expire(a, now);
        if (a->n == MAX_INSTANCES) return; /* keep what we know */
        in = &a->inst[a->n++];
        memcpy(in->name, name, dns_name_len(name));
    }
    snprintf(in->addr, sizeof(in->addr), "%s", addr);
    in->seen_ms = now;
    in->expires_ms = now + (uint64_t)ttl * 1000;
}

/* ------------------------------------------------------------------------
 * The thread: answering queries, caching answers
 * --------------------------------------------------------------------- */

static int question_is_ours(const nr_self *s, const dns_question *q)
{
    uint16_t t = q->type;
    if ((q->klass & ~DNS_CLASS_TOPBIT) != DNS_CLASS_IN &&
        (q->klass & ~DNS_CLASS_TOPBIT) != DNS_TYPE_ANY)
        return 0;
    if ((t == DNS_TYPE_PTR || t == DNS_TYPE_ANY) && dns_name_eq(q->name, s->service))
        return 1;
    if ((t == DNS_TYPE_SRV || t == DNS_TYPE_TXT || t == DNS_TYPE_ANY) &&
        dns_name_eq(q->name, s->instance))
        return 1;
    if ((t == DNS_TYPE_A || t == DNS_TYPE_ANY) && dns_name_eq(q->name, s->hostname))
        return 1;
    return 0;
}

static void handle_query(nr_mdns *m, const dns_msg *msg,
                         const struct sockaddr_in *src)
{
    nr_self s;
    pthread_mutex_lock(&m->lock);
    s = m->self;
    pthread_mutex_unlock(&m->lock);
    if (!s.active) return;

    const dns_question *q = NULL;
    for (unsigned i = 0; i < msg->n_questions && !q; i++)
        if (question_is_ours(&s, &msg->questions[i])) q = &msg->questions[i];
    if (!q) return;

    uint8_t pkt[1500];
    int legacy = ntohs(src->sin_port) != MDNS_PORT;
    int len = build_response(&s, pkt, sizeof(pkt), RECORD_TTL,
                             legacy ? msg : NULL, q);
    if (len <= 0) return;
    if (legacy) {
        pthread_mutex_lock(&m->send_lock);
        sendto(m->fd, pkt, (size_t)len, 0, (const struct sockaddr *)src, sizeof(*src));
        pthread_mutex_unlock(&m->send_lock);
    } else {
        send_multicast(m, pkt, (size_t)len);
    }
}

static const dns_rr *find_a(const dns_msg *msg, const uint8_t *name)
{
    for (unsigned i = 0; i < msg->n_records; i++)
        if (msg->records[i].type == DNS_TYPE_A &&
            (msg->records[i].klass & ~DNS_CLASS_TOPBIT) == DNS_CLASS_IN &&
            dns_name_eq(msg->records[i].name, name))
            return &msg->records[i];
    return NULL;
}

static void handle_response(nr_mdns *m, const dns_msg *msg)
{
    uint64_t now = now_ms();
    int changed = 0;

    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < msg->n_records; i++) {
        const dns_rr *rr = &msg->records[i];
        if ((rr->klass & ~DNS_CLASS_TOPBIT) != DNS_CLASS_IN) continue;

        if (rr->type == DNS_TYPE_PTR && rr->ttl == 0) {
            /* Goodbye for a whole instance. */
            nr_app *a = app_find_by_service(m, rr->name);
            if (a && dns_name_parent(rr->target) != rr->target &&
                dns_name_eq(dns_name_parent(rr->target), rr->name))
                changed |= app_remove_named(a, rr->target);
            continue;
        }
        if (rr->type != DNS_TYPE_SRV || rr->name[0] == 0) continue;
        /* Only instances of app ids somebody resolved: a busy link must
         * not fill the cache. */
        nr_app *a = app_find_by_service(m, dns_name_parent(rr->name));
        if (!a) continue;
        const dns_rr *arec = find_a(msg, rr->target);
        if (rr->ttl == 0 || (arec && arec->ttl == 0)) {
            changed |= app_remove_named(a, rr->name);
            continue;
        }
        if (!arec || rr->port == 0) continue;

        char ip[INET_ADDRSTRLEN], addr[INET_ADDRSTRLEN + 6];
        inet_ntop(AF_INET, arec->addr, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "%s:%u", ip, (unsigned)rr->port);
        uint32_t ttl = rr->ttl < arec->ttl ? rr->ttl : arec->ttl;
        if (ttl > CACHE_TTL_MAX) ttl = CACHE_TTL_MAX;
        app_upsert(a, rr->name, addr, ttl, now);
        changed = 1;
    }
    if (changed) pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
}

static void *mdns_thread(void *arg)
{
    nr_mdns *m = arg;
    uint8_t *buf = malloc(PKT_MAX);
    dns_msg *msg = malloc(sizeof(*msg));
    if (!buf || !msg) {
        m->api->log(m->host, DAPR_LOG_ERROR, "mDNS: out of memory, not answering");
        free(buf);
        free(msg);
        return NULL;
    }
    for (;;) {
        int timeout = -1;
        pthread_mutex_lock(&m->lock);
        if (m->stopping) {
            pthread_mutex_unlock(&m->lock);
            break;
        }
        uint64_t now = now_ms();
        nr_self announce = {0};
        if (m->reannounce_ms && m->reannounce_ms <= now) {
            announce = m->self;
            m->reannounce_ms = 0;
        } else if (m->reannounce_ms) {
            timeout = (int)(m->reannounce_ms - now);
        }
        pthread_mutex_unlock(&m->lock);
        if (announce.active) {
            send_announcement(m, &announce, RECORD_TTL);
            continue;
        }

        struct pollfd pfd[2] = {{.fd = m->fd, .events = POLLIN},
                                {.fd = m->wake[0], .events = POLLIN}};
        if (poll(pfd, 2, timeout) < 0) {
            if (errno == EINTR) continue;
            m->api->log(m->host, DAPR_LOG_ERROR, "mDNS: poll: %s", strerror(errno));
            break;
        }
        if (pfd[1].revents) {
            char drain[16];
            if (read(m->wake[0], drain, sizeof(drain)) < 0 && errno != EAGAIN) break;
        }
        if (!(pfd[0].revents & POLLIN)) continue;

        struct sockaddr_in src;
        socklen_t slen = sizeof(src);
        ssize_t n = recvfrom(m->fd, buf, PKT_MAX, MSG_DONTWAIT,
                             (struct sockaddr *)&src, &slen);
        if (n <= 0 || src.sin_family != AF_INET) continue;
        if (dns_parse(msg, buf, (size_t)n) != 0) {
            if (m->api->log_enabled(m->host, DAPR_LOG_DEBUG)) {
                char ip[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &src.sin_addr, ip, sizeof(ip));
                m->api->log(m->host, DAPR_LOG_DEBUG,
                            "mDNS: dropped a malformed packet from %s", ip);
            }
            continue;
        }
        if (DNS_OPCODE(msg->flags) != 0) continue;
        if (msg->flags & DNS_FLAG_QR)
            handle_response(m, msg);
        else
            handle_query(m, msg, &src);
    }
    free(buf);
    free(msg);
    return NULL;
}

static void wake_thread(nr_mdns *m)
{
    char c = 1;
    /* A full pipe already holds a wake-up. */
    if (write(m->wake[1], &c, 1) < 0 && errno != EAGAIN) {
        m->api->log(m->host, DAPR_LOG_WARN, "mDNS: wake: %s", strerror(errno));
    }
}

/* ------------------------------------------------------------------------
 * Lifecycle
 * --------------------------------------------------------------------- */

static int open_socket(char *errbuf, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(errbuf, errlen, "mDNS socket: %s", strerror(errno));
        return -1;
    }
    /* Every sidecar on the machine (and avahi, if running) shares 5353. */
    int on = 1, ttl = 255;
    unsigned char loop = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
#ifdef SO_REUSEPORT
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
#endif
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(MDNS_PORT),
                              .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&any, sizeof(any)) != 0) {
        snprintf(errbuf, errlen, "mDNS bind to port %d: %s", MDNS_PORT, strerror(errno));
        close(fd);
        return -1;
    }
    /* TTL 255 as RFC 6762 11 asks; loop so that sidecars on this machine
     * hear each other. */
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop));
    return fd;
}

static void join_group_everywhere(int fd)
{
    struct ifaddrs *ifs = NULL;
    struct in_addr group;
    inet_pton(AF_INET, MDNS_GROUP, &group);
    if (getifaddrs(&ifs) != 0) return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
            !(i->ifa_flags & IFF_UP))
            continue;
        struct ip_mreqn mr = {.imr_multiaddr = group,
                              .imr_ifindex = (int)if_nametoindex(i->ifa_name)};
        setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr));
    }
    freeifaddrs(ifs);
}

static void mdns_free(nr_mdns *m)
{
    for (int i = 0; i < MAX_APPS; i++) free(m->apps[i]);
    if (m->fd >= 0) close(m->fd);
    if (m->wake[0] >= 0) close(m->wake[0]);
    if (m->wake[1] >= 0) close(m->wake[1]);
    pthread_cond_destroy(&m->changed);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->send_lock);
    free(m);
}

static dapr_status mdns_init(dapr_host *host, const dapr_host_api *api,
                             void **instance, char *errbuf, size_t errlen)
{
    nr_mdns *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    m->host = host;
    m->api = api;
    m->fd = m->wake[0] = m->wake[1] = -1;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->send_lock, NULL);
    /* resolve() waits against the monotonic clock. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->changed, &ca);
    pthread_condattr_destroy(&ca);

    if (pipe2(m->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(errbuf, errlen, "pipe: %s", strerror(errno));
        mdns_free(m);
        return DAPR_ERR_INTERNAL;
    }
    m->fd = open_socket(errbuf, errlen);
    if (m->fd < 0) {
        mdns_free(m);
        return DAPR_ERR_UNAVAILABLE;
    }
    join_group_everywhere(m->fd);
    int err = pthread_create(&m->thread, NULL, mdns_thread, m);
    if (err != 0) {
        snprintf(errbuf, errlen, "pthread_create: %s", strerror(err));
        mdns_free(m);
        return DAPR_ERR_INTERNAL;
    }
    *instance = m;
    return DAPR_OK;
}

static void mdns_close(void *inst)
{
    nr_mdns *m = inst;
    pthread_mutex_lock(&m->lock);
    m->stopping = 1;
    nr_self s = m->self;
    m->self.active = 0;
    pthread_mutex_unlock(&m->lock);
    wake_thread(m);
    pthread_join(m->thread, NULL);
    /* A host that closes without withdrawing still says goodbye. */
    if (s.active) send_announcement(m, &s, 0);
    mdns_free(m);
}

/* ------------------------------------------------------------------------
 * Operations
 * --------------------------------------------------------------------- */

static void reply(dapr_result_cb cb, void *ctx, dapr_status st, const char *msg)
{
    dapr_result r = {.status = st, .message = msg};
    cb(ctx, &r);
}

/* A DNS label from a host name: letters, digits and '-' only. */
static void host_label(char *out, size_t outlen, long pid, const char *hn)
{
    snprintf(out, outlen, "dapr-%ld-%s", pid, hn);
    for (char *p = out; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-') *p = '-';
}

static void mdns_announce(void *inst, const dapr_nr_instance_info *self,
                          dapr_result_cb cb, void *ctx)
{
    nr_mdns *m = inst;
    nr_self s = {.active = 1};

    if (!app_id_valid(self->app_id)) {
        reply(cb, ctx, DAPR_ERR_INVALID_ARGUMENT,
              "mDNS: the app id must be 1 to 63 bytes long");
        return;
    }
    if (!self->address || inet_pton(AF_INET, self->address, s.ip) != 1) {
        reply(cb, ctx, DAPR_ERR_INVALID_ARGUMENT,
              "mDNS: the host address must be an IPv4 address");
        return;
    }
    if (self->internal_port == 0) {
        reply(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "mDNS: the internal port is 0");
        return;
    }

    /* Dapr's instance name is "<hostname>:<pid>"; the host name label of
     * the SRV target adds the pid so that sidecars never share it. */
    char inst_label[DNS_LABEL_MAX + 1], host[DNS_LABEL_MAX + 1];
    char hn[256] = "localhost";
    gethostname(hn, sizeof(hn) - 1);
    hn[sizeof(hn) - 1] = '\0';
    snprintf(inst_label, sizeof(inst_label), "%s:%ld", hn, (long)getpid());
    host_label(host, sizeof(host), (long)getpid(), hn);

    const char *inst_labels[] = {inst_label, self->app_id, "local"};
    const char *host_labels[] = {host, "local"};
    snprintf(s.app_id, sizeof(s.app_id), "%s", self->app_id);
    s.port = self->internal_port;
    if (service_name(s.service, self->app_id) < 0 ||
        dns_name_from_labels(s.instance, inst_labels, 3) < 0 ||
        dns_name_from_labels(s.hostname, host_labels, 2) < 0) {
        reply(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "mDNS: name too long");
        return;
    }

    pthread_mutex_lock(&m->lock);
    m->self = s;
    m->reannounce_ms = now_ms() + REANNOUNCE_MS;
    pthread_mutex_unlock(&m->lock);
    wake_thread(m); /* re-plan the second announcement */
    send_announcement(m, &s, RECORD_TTL);
    m->api->log(m->host, DAPR_LOG_INFO, "mDNS: announced %s -> %s:%u",
                self->app_id, self->address, (unsigned)self->internal_port);
    reply(cb, ctx, DAPR_OK, NULL);
}

static void mdns_withdraw(void *inst, dapr_result_cb cb, void *ctx)
{
    nr_mdns *m = inst;
    pthread_mutex_lock(&m->lock);
    nr_self s = m->self;
    m->self.active = 0;
    m->reannounce_ms = 0;
    pthread_mutex_unlock(&m->lock);
    if (s.active) {
        send_announcement(m, &s, 0);
        m->api->log(m->host, DAPR_LOG_INFO, "mDNS: withdrew %s", s.app_id);
    }
    reply(cb, ctx, DAPR_OK, NULL);
}

static void resolve_reply(dapr_nr_resolve_cb cb, void *ctx, dapr_status st,
                          const char *msg, const char *addr)
{
    dapr_nr_resolve_result r = {.status = st, .message = msg, .address = addr};
    cb(ctx, &r);
}

static void mdns_resolve(void *inst, const dapr_nr_resolve_req *req,
                         dapr_nr_resolve_cb cb, void *ctx)
{
    nr_mdns *m = inst;
    char addr[INET_ADDRSTRLEN + 6] = "";
    uint8_t service[DNS_NAME_MAX];

    if (!app_id_valid(req->app_id)) {
        resolve_reply(cb, ctx, DAPR_ERR_INVALID_ARGUMENT,
                      "mDNS: the app id must be 1 to 63 bytes long", NULL);
        return;
    }
    service_name(service, req->app_id);

    uint64_t now = now_ms(), deadline = now + RESOLVE_WINDOW_MS, next_query = now;
    int background_query = 0;
    pthread_mutex_lock(&m->lock);
    for (;;) {
        /* Look the entry up again on every turn: while we waited, other
         * resolves may have evicted it. */
        nr_app *a = app_get(m, req->app_id);
        if (!a) break;
        a->used_ms = now;
        app_expire(a, now);
        if (a->n > 0) {
            nr_instance *in = &a->inst[a->next++ % (unsigned)a->n];
            snprintf(addr, sizeof(addr), "%s", in->addr);
            /* Refresh in the background when half the lifetime is gone. */
            if (now - in->seen_ms > (in->expires_ms - in->seen_ms) / 2 &&
                now - a->queried_ms >= MIN_REFRESH_GAP_MS) {
                a->queried_ms = now;
                background_query = 1;
            }
            break;
        }
        if (now >= deadline) break;
        if (now >= next_query) {
            a->queried_ms = now;
            next_query = now + REQUERY_MS;
            pthread_mutex_unlock(&m->lock);
            send_query(m, service);
            pthread_mutex_lock(&m->lock);
        } else {
            uint64_t until = next_query < deadline ? next_query : deadline;
            struct timespec ts = {.tv_sec = (time_t)(until / 1000),
                                  .tv_nsec = (long)(until % 1000) * 1000000};
            pthread_cond_timedwait(&m->changed, &m->lock, &ts);
        }
        now = now_ms();
    }
    pthread_mutex_unlock(&m->lock);

    if (background_query) send_query(m, service);
    if (addr[0] == '\0') {
        char msg[128];
        snprintf(msg, sizeof(msg), "mDNS: no instance of app id %s answered",
                 req->app_id);
        resolve_reply(cb, ctx, DAPR_ERR_NOT_FOUND, msg, NULL);
        return;
    }
    resolve_reply(cb, ctx, DAPR_OK, NULL, addr);
}

/* ------------------------------------------------------------------------
 * Registration
 * --------------------------------------------------------------------- */

static const dapr_nameresolution_vtable mdns_vtable = {
    .size = sizeof(dapr_nameresolution_vtable),
    .announce = mdns_announce,
    .resolve = mdns_resolve,
    .withdraw = mdns_withdraw,
};

/* Dapr's mdns resolver takes no metadata. */
static const dapr_component_def mdns_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_NAME_RESOLUTION,
    .type = "nameresolution.mdns",
    .version = "v1",
    .features = 0,
    .flags = 0,
    .metadata_schema = NULL,
    .n_metadata_schema = 0,
    .init = mdns_init,
    .close = mdns_close,
    .vtable = &mdns_vtable,
};

static const dapr_component_def *const components[] = {&mdns_component};

static const dapr_plugin_descriptor descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "nameresolution-mdns",
    .version = "1.0.0",
    .description = "Dapr name resolution with multicast DNS on the local link",
    .components = components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &descriptor;
}
