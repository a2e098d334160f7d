/*
 * metrics.c - daprd's Prometheus metrics: a small thread-safe registry,
 * Dapr's metric families, process metrics read from /proc at scrape time,
 * and the GET /metrics endpoint (text exposition format 0.0.4).
 *
 * Names, labels and buckets follow Dapr's pkg/diagnostics (opencensus
 * views exported with the "dapr" namespace): a view "component/state/count"
 * becomes dapr_component_state_count, a Count aggregation a counter (Dapr
 * keeps these names without the _total suffix Prometheus recommends), a
 * Distribution a histogram, a LastValue a gauge.
 *
 * Concurrency: each family has its own mutex, held only for a hash lookup
 * and an add, so the loop thread, worker threads and broker threads can
 * record at will.  Families are created on the main thread before other
 * threads start and never freed before metrics_shutdown(), so a family
 * pointer read without a lock is always valid.
 */
#include "config.h"
#include "metrics.h"
#include "http_api.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#include <dirent.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#define SCOPE "dapr.metrics"
#define HASH_SIZE 256           /* chains per family; series are capped anyway */
#define MAX_LABELS 8
#define MAX_LABEL_VALUE 256     /* longer label values are cut (UTF-8 repaired at render) */

/* ---- registry ---------------------------------------------------------------- */

typedef struct series {
    struct series *hash_next;
    struct series *order_next;  /* creation order, for a stable output */
    uint64_t hash;
    char **values;
    double value;               /* counter, gauge */
    uint64_t *bucket_counts;    /* histogram: one per bucket (not cumulative) + +Inf */
    double sum;
    uint64_t count;
} series;

struct metric_family {
    struct metric_family *next;
    char *name;
    char *help;
    metric_type type;
    char **label_names;
    size_t n_labels;
    double *buckets;
    size_t n_buckets;
    pthread_mutex_t lock;
    series *table[HASH_SIZE];
    series *first, *last;
    size_t n_series;
    atomic_ulong dropped;       /* updates refused by the series cap */
};

/* The list of families: appended under registry_lock (registration may
 * happen late, e.g. from a module initialised after start-up), walked
 * under it by the renderer.  Recording never takes it. */
static metric_family *families, *families_last;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int enabled;

/* Dapr's default distributions (pkg/diagnostics/http_monitoring.go). */
const double metrics_latency_buckets_ms[] = {1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80,
                                             100, 130, 160, 200, 250, 300, 400, 500, 650, 800, 1000,
                                             2000, 5000, 10000, 20000, 50000, 100000};
const size_t metrics_latency_buckets_n = sizeof metrics_latency_buckets_ms / sizeof metrics_latency_buckets_ms[0];
const double metrics_size_buckets[] = {1024, 2048, 4096, 16384, 65536, 262144, 1048576, 4194304,
                                       16777216, 67108864, 268435456, 1073741824, 4294967296.0};
const size_t metrics_size_buckets_n = sizeof metrics_size_buckets / sizeof metrics_size_buckets[0];

int metrics_enabled(void) { return atomic_load_explicit(&enabled, memory_order_acquire); }

metric_family *metrics_family(const char *name, const char *help, metric_type type,
                              const char *const *label_names, const double *buckets, size_t n_buckets)
{
    if (!metrics_enabled() || !name || !*name)
        return NULL;
    metric_family *f = xcalloc(1, sizeof *f);
    f->name = xstrdup(name);
    f->help = xstrdup(help ? help : "");
    f->type = type;
    size_t n = 0;
    while (label_names && label_names[n] && n < MAX_LABELS)
        n++;
    f->n_labels = n;
    f->label_names = xcalloc(n ? n : 1, sizeof *f->label_names);
    for (size_t i = 0; i < n; i++)
        f->label_names[i] = xstrdup(label_names[i]);
    if (type == METRIC_HISTOGRAM) {
        f->n_buckets = n_buckets;
        f->buckets = xcalloc(n_buckets ? n_buckets : 1, sizeof *f->buckets);
        if (n_buckets)
            memcpy(f->buckets, buckets, n_buckets * sizeof *buckets);
    }
    pthread_mutex_init(&f->lock, NULL);
    pthread_mutex_lock(&registry_lock);
    if (families_last)
        families_last->next = f;
    else
        families = f;
    families_last = f;
    pthread_mutex_unlock(&registry_lock);
    return f;
}

static uint64_t hash_values(const metric_family *f, const char *const *values)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values[i] ? values[i] : "";
        for (size_t k = 0; v[k] && k < MAX_LABEL_VALUE; k++)
            h = (h ^ (unsigned char)v[k]) * 1099511628211ull;
        h = (h ^ 0xffu) * 1099511628211ull; /* separator: "a","bc" != "ab","c" */
    }
    return h;
}

static int values_equal(const metric_family *f, const series *s, const char *const *values)
{
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values[i] ? values[i] : "";
        /* Stored values are cut at MAX_LABEL_VALUE: compare the cut forms. */
        if (strnlen(v, MAX_LABEL_VALUE) != strlen(s->values[i]) ||
            strncmp(s->values[i], v, MAX_LABEL_VALUE) != 0)
            return 0;
    }
    return 1;
}

/* Find or create the series; called with f->lock held.  NULL when the cap
 * is reached (the drop is counted). */
static series *get_series(metric_family *f, const char *const *values)
{
    static const char *const none[MAX_LABELS] = {0};
    if (!values)
        values = none;
    uint64_t h = hash_values(f, values);
    series **slot = &f->table[h % HASH_SIZE];
    for (series *s = *slot; s; s = s->hash_next)
        if (s->hash == h && values_equal(f, s, values))
            return s;
    if (f->n_series >= METRICS_MAX_SERIES) {
        atomic_fetch_add_explicit(&f->dropped, 1, memory_order_relaxed);
        return NULL;
    }
    series *s = xcalloc(1, sizeof *s);
    s->hash = h;
    s->values = xcalloc(f->n_labels ? f->n_labels : 1, sizeof *s->values);
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values[i] ? values[i] : "";
        s->values[i] = xstrndup(v, strnlen(v, MAX_LABEL_VALUE)); /* xstrndup copies exactly n bytes */
    }
    if (f->type == METRIC_HISTOGRAM)
        s->bucket_counts = xcalloc(f->n_buckets + 1, sizeof *s->bucket_counts);
    s->hash_next = *slot;
    *slot = s;
    if (f->last)
        f->last->order_next = s;
    else
        f->first = s;
    f->last = s;
    f->n_series++;
    return s;
}

void metrics_counter_add(metric_family *f, const char *const *label_values, double v)
{
    if (!f || !(v >= 0)) /* counters only go up; NaN refused too */
        return;
    pthread_mutex_lock(&f->lock);
    series *s = get_series(f, label_values);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&f->lock);
}

void metrics_gauge_set(metric_family *f, const char *const *label_values, double v)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    series *s = get_series(f, label_values);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&f->lock);
}

void metrics_gauge_add(metric_family *f, const char *const *label_values, double v)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    series *s = get_series(f, label_values);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&f->lock);
}

void metrics_histogram_observe(metric_family *f, const char *const *label_values, double v)
{
    if (!f || f->type != METRIC_HISTOGRAM || isnan(v))
        return;
    /* Bucket search outside the lock: buckets never change. */
    size_t b = 0;
    while (b < f->n_buckets && v > f->buckets[b])
        b++;
    pthread_mutex_lock(&f->lock);
    series *s = get_series(f, label_values);
    if (s) {
        s->bucket_counts[b]++;
        s->sum += v;
        s->count++;
    }
    pthread_mutex_unlock(&f->lock);
}

static void family_free(metric_family *f)
{
    for (series *s = f->first, *next; s; s = next) {
        next = s->order_next;
        for (size_t i = 0; i < f->n_labels; i++)
            free(s->values[i]);
        free(s->values);
        free(s->bucket_counts);
        free(s);
    }
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->label_names[i]);
    free(f->label_names);
    free(f->buckets);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

double metrics_elapsed_ms(const struct timespec *start, const struct timespec *end)
{
    struct timespec now;
    if (!end) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        end = &now;
    }
    double ms = (double)(end->tv_sec - start->tv_sec) * 1000.0 +
                (double)(end->tv_nsec - start->tv_nsec) / 1e6;
    return ms < 0 ? 0 : ms;
}

/* ---- text exposition format 0.0.4 --------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A float as Prometheus reads it: integers without exponent where exact. */
static void sb_number(sbuf *b, double v)
{
    if (isnan(v)) { sb_str(b, "NaN"); return; }
    if (isinf(v)) { sb_str(b, v > 0 ? "+Inf" : "-Inf"); return; }
    if (v == floor(v) && fabs(v) < 1e15)
        sb_printf(b, "%.0f", v);
    else {
        /* The shortest form that reads back as the same double. */
        char tmp[40];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, v);
            if (strtod(tmp, NULL) == v)
                break;
        }
        sb_str(b, tmp);
    }
}

/* Length of the valid UTF-8 sequence at s (0 when invalid). */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    if (s[0] < 0x80) return 1;
    size_t n = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || n > left || (n == 2 && s[0] < 0xc2) || (n == 4 && s[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* Label value escaping (\\, \", \n) and invalid UTF-8 replaced by U+FFFD,
 * so that any bytes a client put in a path still give a valid scrape. */
static void sb_label_value(sbuf *b, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t left = strlen(v);
    while (left) {
        if (*s == '\\') sb_str(b, "\\\\");
        else if (*s == '"') sb_str(b, "\\\"");
        else if (*s == '\n') sb_str(b, "\\n");
        else {
            size_t n = utf8_seq(s, left);
            if (n == 0) { sb_str(b, "\xef\xbf\xbd"); n = 1; }
            else sb_add(b, (const char *)s, n);
            s += n; left -= n;
            continue;
        }
        s++; left--;
    }
}

/* HELP text escaping: backslash and newline. */
static void sb_help(sbuf *b, const char *h)
{
    for (; *h; h++) {
        if (*h == '\\') sb_str(b, "\\\\");
        else if (*h == '\n') sb_str(b, "\\n");
        else sb_add(b, h, 1);
    }
}

static void sb_labels(sbuf *b, const metric_family *f, const series *s, const char *le)
{
    if (f->n_labels == 0 && !le)
        return;
    sb_str(b, "{");
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i) sb_str(b, ",");
        sb_str(b, f->label_names[i]);
        sb_str(b, "=\"");
        sb_label_value(b, s->values[i]);
        sb_str(b, "\"");
    }
    if (le) {
        if (f->n_labels) sb_str(b, ",");
        sb_str(b, "le=\"");
        sb_str(b, le);
        sb_str(b, "\"");
    }
    sb_str(b, "}");
}

static void render_family(sbuf *b, metric_family *f)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&f->lock);
    sb_printf(b, "# HELP %s ", f->name);
    sb_help(b, f->help);
    sb_printf(b, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
    for (series *s = f->first; s; s = s->order_next) {
        if (f->type != METRIC_HISTOGRAM) {
            sb_str(b, f->name);
            sb_labels(b, f, s, NULL);
            sb_str(b, " ");
            sb_number(b, s->value);
            sb_str(b, "\n");
            continue;
        }
        uint64_t cum = 0;
        char le[64];
        for (size_t i = 0; i <= f->n_buckets; i++) {
            cum += s->bucket_counts[i];
            if (i < f->n_buckets) {
                sbuf tmp = {0};
                sb_number(&tmp, f->buckets[i]);
                snprintf(le, sizeof le, "%s", tmp.p);
                free(tmp.p);
            } else {
                snprintf(le, sizeof le, "+Inf");
            }
            sb_printf(b, "%s_bucket", f->name);
            sb_labels(b, f, s, le);
            sb_printf(b, " %llu\n", (unsigned long long)cum);
        }
        sb_printf(b, "%s_sum", f->name);
        sb_labels(b, f, s, NULL);
        sb_str(b, " ");
        sb_number(b, s->sum);
        sb_printf(b, "\n%s_count", f->name);
        sb_labels(b, f, s, NULL);
        sb_printf(b, " %llu\n", (unsigned long long)s->count);
    }
    pthread_mutex_unlock(&f->lock);
}

/* ---- process metrics (prometheus/client_golang's process collector) --------------- */

static void render_process(sbuf *b)
{
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    double utime = 0, stime = 0, start_ticks = 0, vsize = 0, rss = 0;
    FILE *fp = fopen("/proc/self/stat", "r");
    if (fp) {
        char line[1024];
        if (fgets(line, sizeof line, fp)) {
            /* Fields after the command (which may hold spaces) start after the last ')'. */
            char *p = strrchr(line, ')');
            unsigned long long ut, st, sst, vs;
            long long rs;
            if (p && sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
                            "%llu %llu %lld",
                            &ut, &st, &sst, &vs, &rs) == 5) {
                utime = (double)ut; stime = (double)st; start_ticks = (double)sst;
                vsize = (double)vs; rss = (double)rs * (double)page;
            }
        }
        fclose(fp);
    }
    double btime = 0;
    fp = fopen("/proc/stat", "r");
    if (fp) {
        char line[256];
        while (fgets(line, sizeof line, fp))
            if (sscanf(line, "btime %lf", &btime) == 1)
                break;
        fclose(fp);
    }
    size_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                fds++;
        closedir(d);
        if (fds) fds--; /* the directory stream's own descriptor */
    }
    struct rlimit rl;
    double max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (double)rl.rlim_cur : -1;
    double max_vm = getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (double)rl.rlim_cur : -1;
    struct {
        const char *name, *type, *help;
        double v;
    } m[] = {
        {"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
         ticks > 0 ? (utime + stime) / (double)ticks : 0},
        {"process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds},
        {"process_open_fds", "gauge", "Number of open file descriptors.", (double)fds},
        {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss},
        {"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
         ticks > 0 ? btime + start_ticks / (double)ticks : 0},
        {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize},
        {"process_virtual_memory_max_bytes", "gauge", "Maximum amount of virtual memory available in bytes.", max_vm},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s ", m[i].name, m[i].help, m[i].name, m[i].type, m[i].name);
        sb_number(b, m[i].v);
        sb_str(b, "\n");
    }
}

char *metrics_render(size_t *len)
{
    if (!metrics_enabled())
        return NULL;
    sbuf b = {0};
    sb_add(&b, "", 0);
    pthread_mutex_lock(&registry_lock);
    for (metric_family *f = families; f; f = f->next)
        render_family(&b, f);
    /* What the series cap refused, so that a label explosion is visible. */
    sb_str(&b, "# HELP dapr_metrics_series_dropped_total Updates dropped because a metric reached its "
               "series limit (" );
    sb_printf(&b, "%d).\n# TYPE dapr_metrics_series_dropped_total counter\n", METRICS_MAX_SERIES);
    for (metric_family *f = families; f; f = f->next) {
        unsigned long d = atomic_load_explicit(&f->dropped, memory_order_relaxed);
        if (d)
            sb_printf(&b, "dapr_metrics_series_dropped_total{metric=\"%s\"} %lu\n", f->name, d);
    }
    pthread_mutex_unlock(&registry_lock);
    render_process(&b);
    if (len)
        *len = b.len;
    return b.p;
}

/* ---- Dapr's families ----------------------------------------------------------- */

static struct {
    char *app_id;
    char *ns;
    int increased_cardinality;
    /* HTTP server and client */
    metric_family *srv_count, *srv_latency, *srv_req_bytes, *srv_resp_bytes;
    metric_family *cli_count, *cli_latency, *cli_sent_bytes, *cli_recv_bytes;
    /* components */
    metric_family *comp_count[4], *comp_latency[4];
    metric_family *egress_count, *egress_latency, *ingress_count, *ingress_latency;
    metric_family *in_binding_count, *in_binding_latency;
    /* runtime */
    metric_family *comp_loaded, *comp_init, *comp_init_fail;
    /* resiliency */
    metric_family *res_loaded, *res_count, *res_activations, *res_cb_state;
} M;

#define LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define VALUES(...) ((const char *const[]){__VA_ARGS__})
#define LAT metrics_latency_buckets_ms, metrics_latency_buckets_n
#define SIZE metrics_size_buckets, metrics_size_buckets_n

int metrics_init(const metrics_config *cfg)
{
    if (metrics_enabled())
        return 0;
    M.app_id = xstrdup(cfg && cfg->app_id ? cfg->app_id : "");
    M.ns = xstrdup(cfg && cfg->ns ? cfg->ns : "");
    M.increased_cardinality = cfg ? cfg->increased_cardinality : 0;
    atomic_store_explicit(&enabled, 1, memory_order_release);

    /* HTTP server: Dapr's low-cardinality views have no path label. */
    int ic = M.increased_cardinality;
    M.srv_count = metrics_family("dapr_http_server_request_count", "Number of HTTP requests started in server.",
                                 METRIC_COUNTER,
                                 ic ? LABELS("app_id", "method", "path", "status") : LABELS("app_id", "method", "status"),
                                 NULL, 0);
    M.srv_latency = metrics_family("dapr_http_server_latency", "HTTP request end to end latency in server.",
                                   METRIC_HISTOGRAM,
                                   ic ? LABELS("app_id", "method", "path", "status") : LABELS("app_id", "method", "status"),
                                   LAT);
    M.srv_req_bytes = metrics_family("dapr_http_server_request_bytes",
                                     "HTTP request body size if set as ContentLength (uncompressed) in server.",
                                     METRIC_HISTOGRAM, LABELS("app_id"), SIZE);
    M.srv_resp_bytes = metrics_family("dapr_http_server_response_bytes",
                                      "HTTP response body size (uncompressed) in server.", METRIC_HISTOGRAM,
                                      LABELS("app_id"), SIZE);
    M.cli_count = metrics_family("dapr_http_client_completed_count", "Count of completed requests", METRIC_COUNTER,
                                 ic ? LABELS("app_id", "method", "path", "status") : LABELS("app_id", "status"),
                                 NULL, 0);
    M.cli_latency = metrics_family("dapr_http_client_roundtrip_latency",
                                   "Time between first byte of request headers sent to last byte of response "
                                   "received, or terminal error",
                                   METRIC_HISTOGRAM,
                                   ic ? LABELS("app_id", "method", "path", "status") : LABELS("app_id", "status"),
                                   LAT);
    M.cli_sent_bytes = metrics_family("dapr_http_client_sent_bytes",
                                      "Total bytes sent in request body (not including headers)", METRIC_HISTOGRAM,
                                      ic ? LABELS("app_id", "method", "path") : LABELS("app_id"), SIZE);
    M.cli_recv_bytes = metrics_family("dapr_http_client_received_bytes",
                                      "Total bytes received in response bodies (not including headers but "
                                      "including error responses with bodies)",
                                      METRIC_HISTOGRAM, LABELS("app_id"), SIZE);

    static const char *const kinds[4] = {"state", "secret", "configuration", "output_binding"};
    static const char *const what[4] = {"state", "secret", "configuration", "output binding"};
    for (int k = 0; k < 4; k++) {
        char name[96], help[128];
        snprintf(name, sizeof name, "dapr_component_%s_count", kinds[k]);
        snprintf(help, sizeof help, "The number of operations %s the %s component.",
                 k == 3 ? "invoked on" : "performed on", what[k]);
        M.comp_count[k] = metrics_family(name, help, METRIC_COUNTER,
                                         LABELS("app_id", "component", "namespace", "operation", "success"), NULL, 0);
        snprintf(name, sizeof name, "dapr_component_%s_latencies", kinds[k]);
        snprintf(help, sizeof help, "The latency of the response from the %s component.", what[k]);
        M.comp_latency[k] = metrics_family(name, help, METRIC_HISTOGRAM,
                                           LABELS("app_id", "component", "namespace", "operation", "success"), LAT);
    }
    M.egress_count = metrics_family("dapr_component_pubsub_egress_count",
                                    "The number of outgoing messages published to the pub/sub component.",
                                    METRIC_COUNTER, LABELS("app_id", "component", "namespace", "success", "topic"),
                                    NULL, 0);
    M.egress_latency = metrics_family("dapr_component_pubsub_egress_latencies",
                                      "The latency of the response from the pub/sub component.", METRIC_HISTOGRAM,
                                      LABELS("app_id", "component", "namespace", "success", "topic"), LAT);
    M.ingress_count = metrics_family("dapr_component_pubsub_ingress_count",
                                     "The number of incoming messages arriving from the pub/sub component.",
                                     METRIC_COUNTER,
                                     LABELS("app_id", "component", "namespace", "process_status", "status", "topic"),
                                     NULL, 0);
    M.ingress_latency = metrics_family("dapr_component_pubsub_ingress_latencies",
                                       "The consuming app event processing latency.", METRIC_HISTOGRAM,
                                       LABELS("app_id", "component", "namespace", "process_status", "status", "topic"),
                                       LAT);
    M.in_binding_count = metrics_family("dapr_component_input_binding_count",
                                        "The number of incoming events arriving from the input binding component.",
                                        METRIC_COUNTER, LABELS("app_id", "component", "namespace", "success"), NULL, 0);
    M.in_binding_latency = metrics_family("dapr_component_input_binding_latencies",
                                          "The triggered app event processing latency.", METRIC_HISTOGRAM,
                                          LABELS("app_id", "component", "namespace", "success"), LAT);

    M.comp_loaded = metrics_family("dapr_runtime_component_loaded", "The number of successfully loaded components.",
                                   METRIC_COUNTER, LABELS("app_id"), NULL, 0);
    M.comp_init = metrics_family("dapr_runtime_component_init_total", "The number of initialized components.",
                                 METRIC_COUNTER, LABELS("app_id", "component"), NULL, 0);
    M.comp_init_fail = metrics_family("dapr_runtime_component_init_fail_total",
                                      "The number of component initialization failures.", METRIC_COUNTER,
                                      LABELS("app_id", "component", "reason", "name"), NULL, 0);

    M.res_loaded = metrics_family("dapr_resiliency_loaded", "Number of resiliency policies loaded.", METRIC_COUNTER,
                                  LABELS("app_id", "name", "namespace"), NULL, 0);
    M.res_count = metrics_family("dapr_resiliency_count",
                                 "Number of times a resiliency policyKey has been applied to a building block.",
                                 METRIC_COUNTER,
                                 LABELS("app_id", "flow_direction", "name", "namespace", "policy", "status", "target"),
                                 NULL, 0);
    M.res_activations = metrics_family("dapr_resiliency_activations_total",
                                       "Number of times a resiliency policyKey has been activated in a building "
                                       "block after a failure or after a state change.",
                                       METRIC_COUNTER,
                                       LABELS("app_id", "flow_direction", "name", "namespace", "policy", "status",
                                              "target"),
                                       NULL, 0);
    M.res_cb_state = metrics_family("dapr_resiliency_cb_state",
                                    "A resiliency policy's current CircuitBreakerState state. 0 is closed, 1 is "
                                    "half-open, 2 is open, and -1 is unknown.",
                                    METRIC_GAUGE,
                                    LABELS("app_id", "flow_direction", "name", "namespace", "policy", "status",
                                           "target"),
                                    NULL, 0);
    return 0;
}

/* ---- HTTP server ------------------------------------------------------------------ */

static int seg_is(const api_call *c, size_t i, const char *s)
{
    return i < c->n_seg && strcmp(c->seg[i], s) == 0;
}

/* Our own copy of the method names: using http_api.c's would drag the
 * whole API server into programs that only record metrics (unit tests). */
static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

/* Dapr's endpoint name for the call: the method label of its
 * low-cardinality HTTP metrics.  Unknown routes get "" as in Dapr. */
static void endpoint_name(const api_call *c, char *out, size_t len)
{
    const char *n = "";
    enum evhttp_cmd_type m = c->method;
    int w = m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PUT;
    if (c->n_seg >= 2 && (seg_is(c, 0, "v1.0") || seg_is(c, 0, "v1.0-alpha1"))) {
        const char *api = c->seg[1];
        if (!strcmp(api, "invoke") && c->n_seg >= 3) {
            snprintf(out, len, "InvokeService/%s", c->seg[2]);
            return;
        }
        if (!strcmp(api, "state")) {
            if (c->n_seg == 3 && w) n = "SaveState";
            else if (c->n_seg == 4 && w && seg_is(c, 3, "bulk")) n = "GetBulkState";
            else if (c->n_seg == 4 && w && seg_is(c, 3, "transaction")) n = "ExecuteStateTransaction";
            else if (c->n_seg == 4 && w && seg_is(c, 3, "query")) n = "QueryStateAlpha1";
            else if (c->n_seg == 4 && m == EVHTTP_REQ_GET) n = "GetState";
            else if (c->n_seg == 4 && m == EVHTTP_REQ_DELETE) n = "DeleteState";
        } else if (!strcmp(api, "publish")) {
            n = seg_is(c, 2, "bulk") ? "BulkPublishEvent" : "PublishEvent";
        } else if (!strcmp(api, "bindings")) {
            n = "InvokeBinding";
        } else if (!strcmp(api, "secrets")) {
            n = seg_is(c, 3, "bulk") ? "GetBulkSecret" : "GetSecret";
        } else if (!strcmp(api, "metadata")) {
            n = m == EVHTTP_REQ_PUT ? "PutMetadata" : "GetMetadata";
        } else if (!strcmp(api, "healthz")) {
            n = seg_is(c, 2, "outbound") ? "HealthzOutbound" : "Healthz";
        } else if (!strcmp(api, "shutdown")) {
            n = "Shutdown";
        }
    }
    snprintf(out, len, "%s", n);
}

/* Dapr's legacy path label (convertPathToMetricLabel): state and secret
 * keys and actor ids are dropped, everything else is kept as received. */
static void legacy_path(const api_call *c, char *out, size_t len)
{
    size_t keep = c->n_seg;
    if (c->n_seg >= 3 && (seg_is(c, 1, "state") || seg_is(c, 1, "secrets")))
        keep = 3;
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < keep && pos + 1 < len; i++) {
        const char *s = c->raw_seg[i];
        if (seg_is(c, 1, "actors") && i == 3)
            s = "{id}";
        int n = snprintf(out + pos, len - pos, "/%s", s);
        pos = n > 0 && pos + (size_t)n < len ? pos + (size_t)n : len - 1;
    }
    if (!pos)
        snprintf(out, len, "/");
}

void metrics_http_server(const api_call *c, int status, size_t request_bytes, size_t response_bytes)
{
    if (!metrics_enabled() || !c || c->internal)
        return;
    double ms = metrics_elapsed_ms(&c->started, NULL);
    char st[16], method[160], path[256];
    snprintf(st, sizeof st, "%d", status);
    if (M.increased_cardinality) {
        snprintf(method, sizeof method, "%s", method_name(c->method));
        legacy_path(c, path, sizeof path);
        metrics_counter_add(M.srv_count, VALUES(M.app_id, method, path, st), 1);
        metrics_histogram_observe(M.srv_latency, VALUES(M.app_id, method, path, st), ms);
    } else {
        endpoint_name(c, method, sizeof method);
        metrics_counter_add(M.srv_count, VALUES(M.app_id, method, st), 1);
        metrics_histogram_observe(M.srv_latency, VALUES(M.app_id, method, st), ms);
    }
    metrics_histogram_observe(M.srv_req_bytes, VALUES(M.app_id), (double)request_bytes);
    metrics_histogram_observe(M.srv_resp_bytes, VALUES(M.app_id), (double)response_bytes);
}

void metrics_http_client(const char *method, const char *path, int status, size_t sent_bytes,
                         size_t received_bytes, double ms)
{
    if (!metrics_enabled())
        return;
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    if (M.increased_cardinality) {
        /* Cut the query: it carries values, not routes. */
        char p[256];
        snprintf(p, sizeof p, "%.*s", (int)strcspn(path ? path : "", "?"), path ? path : "");
        metrics_counter_add(M.cli_count, VALUES(M.app_id, method, p, st), 1);
        metrics_histogram_observe(M.cli_latency, VALUES(M.app_id, method, p, st), ms);
        metrics_histogram_observe(M.cli_sent_bytes, VALUES(M.app_id, method, p), (double)sent_bytes);
    } else {
        metrics_counter_add(M.cli_count, VALUES(M.app_id, st), 1);
        metrics_histogram_observe(M.cli_latency, VALUES(M.app_id, st), ms);
        metrics_histogram_observe(M.cli_sent_bytes, VALUES(M.app_id), (double)sent_bytes);
    }
    metrics_histogram_observe(M.cli_recv_bytes, VALUES(M.app_id), (double)received_bytes);
}

/* ---- components and runtime ---------------------------------------------------------- */

void metrics_component_op(metrics_component_kind kind, const char *component, const char *operation,
                          int success, double ms)
{
    if (!metrics_enabled() || (unsigned)kind > METRICS_OUTPUT_BINDING)
        return;
    const char *const *v = VALUES(M.app_id, component, M.ns, operation, success ? "true" : "false");
    metrics_counter_add(M.comp_count[kind], v, 1);
    metrics_histogram_observe(M.comp_latency[kind], v, ms);
}

void metrics_pubsub_egress(const char *component, const char *topic, int success, double ms)
{
    if (!metrics_enabled())
        return;
    const char *const *v = VALUES(M.app_id, component, M.ns, success ? "true" : "false", topic);
    metrics_counter_add(M.egress_count, v, 1);
    metrics_histogram_observe(M.egress_latency, v, ms);
}

void metrics_pubsub_ingress(const char *component, const char *topic, const char *process_status,
                            const char *status, double ms)
{
    if (!metrics_enabled())
        return;
    const char *const *v = VALUES(M.app_id, component, M.ns, process_status,
                                  status && *status ? status : process_status, topic);
    metrics_counter_add(M.ingress_count, v, 1);
    /* Dapr records the latency only when the app was reached. */
    if (ms > 0)
        metrics_histogram_observe(M.ingress_latency, v, ms);
}

void metrics_input_binding(const char *component, int success, double ms)
{
    if (!metrics_enabled())
        return;
    const char *const *v = VALUES(M.app_id, component, M.ns, success ? "true" : "false");
    metrics_counter_add(M.in_binding_count, v, 1);
    metrics_histogram_observe(M.in_binding_latency, v, ms);
}

void metrics_component_loaded(const char *type)
{
    if (!metrics_enabled())
        return;
    metrics_counter_add(M.comp_loaded, VALUES(M.app_id), 1);
    metrics_counter_add(M.comp_init, VALUES(M.app_id, type), 1);
}

void metrics_component_init_fail(const char *type, const char *reason, const char *name)
{
    if (!metrics_enabled())
        return;
    metrics_counter_add(M.comp_init_fail, VALUES(M.app_id, type, reason, name), 1);
}

/* ---- resiliency ------------------------------------------------------------------------ */

void metrics_resiliency_loaded(const char *resiliency_name)
{
    if (!metrics_enabled())
        return;
    metrics_counter_add(M.res_loaded, VALUES(M.app_id, resiliency_name, M.ns), 1);
}

void metrics_resiliency_count(const char *resiliency_name, const char *policy, const char *flow_direction,
                              const char *target, const char *status)
{
    if (!metrics_enabled())
        return;
    metrics_counter_add(M.res_count,
                        VALUES(M.app_id, flow_direction, resiliency_name, M.ns, policy, status, target), 1);
}

void metrics_resiliency_activation(const char *resiliency_name, const char *policy, const char *flow_direction,
                                   const char *target, const char *status)
{
    if (!metrics_enabled())
        return;
    metrics_counter_add(M.res_activations,
                        VALUES(M.app_id, flow_direction, resiliency_name, M.ns, policy, status, target), 1);
}

void metrics_resiliency_cb_state(const char *resiliency_name, const char *flow_direction, const char *target,
                                 const char *state)
{
    if (!metrics_enabled())
        return;
    static const char *const states[] = {METRICS_CB_CLOSED, METRICS_CB_HALF_OPEN, METRICS_CB_OPEN, "unknown"};
    for (size_t i = 0; i < 4; i++)
        metrics_gauge_set(M.res_cb_state,
                          VALUES(M.app_id, flow_direction, resiliency_name, M.ns, METRICS_POLICY_CIRCUIT_BREAKER,
                                 states[i], target),
                          state && strcmp(state, states[i]) == 0 ? 1 : 0);
}

/* ---- GET /metrics ------------------------------------------------------------------------- */

static struct evhttp *server;

static void handle_scrape(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path || strcmp(path, "/metrics") != 0) {
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
        return;
    }
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        evhttp_send_error(req, 405, NULL);
        return;
    }
    size_t len = 0;
    char *text = metrics_render(&len);
    struct evbuffer *out = evbuffer_new();
    if (text && m == EVHTTP_REQ_GET)
        evbuffer_add(out, text, len);
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", out);
    evbuffer_free(out);
}

int metrics_listen(const char *address, int port, int *bound_port)
{
    if (!metrics_enabled())
        return -1;
    if (!server) {
        server = evhttp_new(loop_base());
        if (!server)
            return -1;
        evhttp_set_allowed_methods(server, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                               EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
        evhttp_set_max_body_size(server, 1 << 16);
        evhttp_set_max_headers_size(server, 1 << 16);
        evhttp_set_timeout(server, 30);
        evhttp_set_gencb(server, handle_scrape, NULL);
    }
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(server, address, (ev_uint16_t)port);
    if (!sock) {
        log_error(SCOPE, "cannot listen for metrics on %s:%d (%s); daprd goes on without the metrics endpoint",
                  address, port, "address in use or not available");
        evhttp_free(server);
        server = NULL;
        return -1;
    }
    if (bound_port) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        *bound_port = port;
        if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0)
            *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                                   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    log_info(SCOPE, "metrics server started on %s:%d/metrics", address, bound_port ? *bound_port : port);
    return 0;
}

void metrics_shutdown(void)
{
    if (server) {
        evhttp_free(server);
        server = NULL;
    }
    if (!metrics_enabled())
        return;
    atomic_store_explicit(&enabled, 0, memory_order_release);
    for (metric_family *f = families, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    families = families_last = NULL;
    free(M.app_id);
    free(M.ns);
    memset(&M, 0, sizeof M);
}
