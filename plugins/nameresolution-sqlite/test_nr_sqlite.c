/*
 * test_nr_sqlite.c - unit tests of the nameresolution.sqlite plugin.
 *
 * The plugin's source is linked in and driven through dapr_plugin_entry()
 * exactly as daprd would, with a small fake host: metadata from a list,
 * schema defaults as the real host applies them, and timers run by one
 * thread each.  Several plugin instances on one temporary file stand for
 * several sidecars; the test reads and edits the file with its own SQLite
 * connection to check rows and to simulate dead peers.
 */
#define _POSIX_C_SOURCE 200809L

#include <dapr/plugin.h>

#include <check.h>
#include <sqlite3.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

/* ---- fake host ---------------------------------------------------------- */

#define MAX_MD 16
#define MAX_TIMERS 4

typedef struct fake_timer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t interval_ms;
    dapr_task_fn fn;
    void *arg;
    int stop;
    int used;
    struct dapr_host *host;
} fake_timer;

struct dapr_host {
    dapr_kv md[MAX_MD];
    size_t n_md;
    const dapr_component_def *def;
    fake_timer timers[MAX_TIMERS];
    atomic_int paused; /* a stalled sidecar: timer ticks do nothing */
};

static void fh_log(dapr_host *h, dapr_log_level level, const char *fmt, ...)
{
    (void)h;
    if (level < DAPR_LOG_WARN && getenv("NR_TEST_VERBOSE") == NULL) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[nr.sqlite %d] ", (int)level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int fh_log_enabled(dapr_host *h, dapr_log_level level) { (void)h; return level >= DAPR_LOG_WARN; }

/* Like daprd: the configured value, else the schema's default. */
static const char *fh_metadata_get(dapr_host *h, const char *name)
{
    for (size_t i = 0; i < h->n_md; i++)
        if (strcasecmp(h->md[i].name, name) == 0) return h->md[i].value;
    for (size_t i = 0; i < h->def->n_metadata_schema; i++)
        if (strcasecmp(h->def->metadata_schema[i].name, name) == 0)
            return h->def->metadata_schema[i].default_value;
    return NULL;
}

static dapr_kvs fh_metadata_all(dapr_host *h) { return (dapr_kvs){h->md, h->n_md}; }
static const char *fh_component_name(dapr_host *h) { (void)h; return "sqlite"; }
static const char *fh_app_id(dapr_host *h) { (void)h; return "test"; }
static int fh_submit(dapr_host *h, dapr_task_fn fn, void *arg) { (void)h; fn(arg); return 0; }

static void *timer_main(void *p)
{
    fake_timer *t = p;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        at.tv_sec += (time_t)(t->interval_ms / 1000);
        at.tv_nsec += (long)(t->interval_ms % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L) { at.tv_sec++; at.tv_nsec -= 1000000000L; }
        while (!t->stop && pthread_cond_timedwait(&t->cond, &t->lock, &at) == 0)
            ;
        if (t->stop) break;
        pthread_mutex_unlock(&t->lock);
        if (!atomic_load(&t->host->paused)) t->fn(t->arg);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static uint64_t fh_timer_start(dapr_host *h, uint64_t interval_ms, dapr_task_fn fn, void *arg)
{
    for (int i = 0; i < MAX_TIMERS; i++) {
        fake_timer *t = &h->timers[i];
        if (t->used) continue;
        memset(t, 0, sizeof(*t));
        t->used = 1;
        t->interval_ms = interval_ms;
        t->fn = fn;
        t->arg = arg;
        t->host = h;
        pthread_mutex_init(&t->lock, NULL);
        pthread_cond_init(&t->cond, NULL);
        pthread_create(&t->thread, NULL, timer_main, t);
        return (uint64_t)i + 1;
    }
    return 0;
}

static void fh_timer_stop(dapr_host *h, uint64_t id)
{
    ck_assert(id >= 1 && id <= MAX_TIMERS);
    fake_timer *t = &h->timers[id - 1];
    ck_assert(t->used);
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    t->used = 0;
}

static void fh_metric_add(dapr_host *h, const char *name, double v) { (void)h; (void)name; (void)v; }

static const dapr_host_api fake_api = {
    .size = sizeof(dapr_host_api),
    .log = fh_log,
    .log_enabled = fh_log_enabled,
    .metadata_get = fh_metadata_get,
    .metadata_all = fh_metadata_all,
    .component_name = fh_component_name,
    .app_id = fh_app_id,
    .submit = fh_submit,
    .timer_start = fh_timer_start,
    .timer_stop = fh_timer_stop,
    .metric_add = fh_metric_add,
};

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[64];
static char dbpath[128];

static const dapr_component_def *nr_def(void)
{
    const dapr_plugin_descriptor *d = dapr_plugin_entry();
    ck_assert_int_eq(d->abi_major, DAPR_PLUGIN_ABI_MAJOR);
    ck_assert_uint_eq(d->n_components, 1);
    const dapr_component_def *def = d->components[0];
    ck_assert_int_eq(def->kind, DAPR_KIND_NAME_RESOLUTION);
    ck_assert_str_eq(def->type, "nameresolution.sqlite");
    return def;
}

static const dapr_nameresolution_vtable *vt(void)
{
    return nr_def()->vtable;
}

/* A sidecar's resolver: its host and its instance. */
typedef struct side {
    dapr_host host;
    void *inst;
} side;

/* Fill a host with name/value pairs (NULL-terminated list). */
static void host_setup(dapr_host *h, const char *const *kv)
{
    memset(h, 0, sizeof(*h));
    h->def = nr_def();
    for (; kv && kv[0]; kv += 2) {
        ck_assert(h->n_md < MAX_MD);
        h->md[h->n_md++] = (dapr_kv){kv[0], kv[1]};
    }
}

/* init with the given metadata; returns the status, errbuf has the reason. */
static dapr_status side_init(side *s, const char *const *kv, char *errbuf, size_t errlen)
{
    host_setup(&s->host, kv);
    errbuf[0] = '\0';
    s->inst = NULL;
    return nr_def()->init(&s->host, &fake_api, &s->inst, errbuf, errlen);
}

/* A sidecar on the test file with a short updateInterval (refresh every
 * 1s) and no cleanup unless asked. */
static void side_open(side *s, const char *cleanup)
{
    const char *kv[] = {"connectionString", dbpath, "updateInterval", "2s",
                        "cleanupInterval", cleanup ? cleanup : "0", NULL};
    char err[256];
    ck_assert_msg(side_init(s, kv, err, sizeof(err)) == DAPR_OK, "init failed: %s", err);
}

static void side_close(side *s)
{
    nr_def()->close(s->inst);
    s->inst = NULL;
}

typedef struct result {
    dapr_status status;
    char message[256];
    char address[128];
    int calls;
} result;

static void on_result(void *ctx, const dapr_result *r)
{
    result *out = ctx;
    out->calls++;
    out->status = r->status;
    snprintf(out->message, sizeof(out->message), "%s", r->message ? r->message : "");
}

static void on_resolve(void *ctx, const dapr_nr_resolve_result *r)
{
    result *out = ctx;
    out->calls++;
    out->status = r->status;
    snprintf(out->message, sizeof(out->message), "%s", r->message ? r->message : "");
    snprintf(out->address, sizeof(out->address), "%s", r->address ? r->address : "");
}

static dapr_status announce(side *s, const char *app, const char *ns, const char *addr, uint16_t port)
{
    dapr_nr_instance_info self = {app, ns, addr, port, 3500, 0};
    result r = {0};
    vt()->announce(s->inst, &self, on_result, &r);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_msg(r.status != DAPR_OK || r.message[0] == '\0', "message on success");
    return r.status;
}

static result resolve(side *s, const char *app, const char *ns)
{
    dapr_nr_resolve_req req = {app, ns};
    result r = {0};
    vt()->resolve(s->inst, &req, on_resolve, &r);
    ck_assert_int_eq(r.calls, 1);
    return r;
}

static dapr_status withdraw(side *s)
{
    result r = {0};
    vt()->withdraw(s->inst, on_result, &r);
    ck_assert_int_eq(r.calls, 1);
    return r.status;
}

/* The test's own connection to the file. */
static sqlite3 *db_open(void)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void db_exec(const char *sql)
{
    sqlite3 *db = db_open();
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_close(db);
}

/* The first column of the first row as an integer (0 when none). */
static long long db_int(const char *sql)
{
    sqlite3 *db = db_open();
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    long long v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait (up to 15 s: valgrind is slow) until sql answers want. */
static int wait_for(const char *sql, long long want)
{
    for (int i = 0; i < 150; i++) {
        if (db_int(sql) == want) return 1;
        sleep_ms(100);
    }
    return 0;
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/nrsqlite.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(dbpath, sizeof(dbpath), "%s/nr.db", tmpdir);
}

static void teardown(void)
{
    static const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", dbpath, suffix[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(round_robin_across_instances)
{
    side a1, a2, b1;
    side_open(&a1, NULL);
    side_open(&a2, NULL);
    side_open(&b1, NULL);
    ck_assert_int_eq(announce(&a1, "a", "", "127.0.0.1", 40001), DAPR_OK);
    ck_assert_int_eq(announce(&a2, "a", "", "127.0.0.1", 40002), DAPR_OK);
    ck_assert_int_eq(announce(&b1, "b", "", "127.0.0.1", 40003), DAPR_OK);

    /* Dapr's row layout: one row each, distinct UUIDs, Unix seconds. */
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts"), 3);
    ck_assert_int_eq(db_int("SELECT COUNT(DISTINCT registration_id) FROM hosts "
                            "WHERE length(registration_id) = 36"), 3);
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts WHERE app_id = 'a' AND namespace = '' "
                            "AND address IN ('127.0.0.1:40001', '127.0.0.1:40002')"), 2);
    long long age = db_int("SELECT MAX(abs(CAST(strftime('%s','now') AS INTEGER) - last_update)) "
                           "FROM hosts");
    ck_assert_int_le(age, 2);
    ck_assert_int_eq(db_int("SELECT value = '1' FROM metadata WHERE key = 'nr-migrations'"), 1);

    /* b1 calls a: the two instances take turns. */
    int n1 = 0, n2 = 0;
    char prev[128] = "";
    for (int i = 0; i < 6; i++) {
        result r = resolve(&b1, "a", "");
        ck_assert_int_eq(r.status, DAPR_OK);
        ck_assert_str_ne(r.address, prev);
        if (strcmp(r.address, "127.0.0.1:40001") == 0) n1++;
        else if (strcmp(r.address, "127.0.0.1:40002") == 0) n2++;
        else ck_abort_msg("unexpected address %s", r.address);
        snprintf(prev, sizeof(prev), "%s", r.address);
    }
    ck_assert_int_eq(n1, 3);
    ck_assert_int_eq(n2, 3);

    result r = resolve(&a1, "b", "");
    ck_assert_int_eq(r.status, DAPR_OK);
    ck_assert_str_eq(r.address, "127.0.0.1:40003");

    side_close(&a1);
    side_close(&a2);
    side_close(&b1);
    /* close without withdraw still removes the rows */
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts"), 0);
}
END_TEST

START_TEST(stale_row_is_skipped_then_refreshed)
{
    side a1, a2, b1;
    side_open(&a1, NULL);
    side_open(&a2, NULL);
    side_open(&b1, NULL);
    ck_assert_int_eq(announce(&a1, "a", "", "127.0.0.1", 40001), DAPR_OK);
    ck_assert_int_eq(announce(&a2, "a", "", "127.0.0.1", 40002), DAPR_OK);

    /* a2 stalls: its timers stop refreshing and its row ages by 3
     * updateIntervals (3 x 2s), the point where it counts as dead. */
    atomic_store(&a2.host.paused, 1);
    db_exec("UPDATE hosts SET last_update = last_update - 6 WHERE address = '127.0.0.1:40002'");
    for (int i = 0; i < 4; i++) {
        result r = resolve(&b1, "a", "");
        ck_assert_int_eq(r.status, DAPR_OK);
        ck_assert_str_eq(r.address, "127.0.0.1:40001");
    }

    /* A row two intervals old is still live (one late refresh is fine). */
    db_exec("UPDATE hosts SET last_update = CAST(strftime('%s','now') AS INTEGER) - 4 "
            "WHERE address = '127.0.0.1:40001'");
    ck_assert_int_eq(resolve(&b1, "a", "").status, DAPR_OK);

    /* Both rows dead: nothing to call. */
    db_exec("UPDATE hosts SET last_update = last_update - 100 WHERE address = '127.0.0.1:40001'");
    atomic_store(&a1.host.paused, 1);
    result r = resolve(&b1, "a", "");
    ck_assert_int_eq(r.status, DAPR_ERR_NOT_FOUND);
    ck_assert_str_eq(r.message, "no live instance of app 'a'");

    /* a2 wakes up: its next refresh (every 1s) makes it live again. */
    atomic_store(&a2.host.paused, 0);
    ck_assert(wait_for("SELECT CAST(strftime('%s','now') AS INTEGER) - last_update < 2 "
                       "FROM hosts WHERE address = '127.0.0.1:40002'", 1));
    r = resolve(&b1, "a", "");
    ck_assert_int_eq(r.status, DAPR_OK);
    ck_assert_str_eq(r.address, "127.0.0.1:40002");

    side_close(&a1);
    side_close(&a2);
    side_close(&b1);
}
END_TEST

START_TEST(lost_row_is_registered_again)
{
    side a1;
    side_open(&a1, NULL);
    ck_assert_int_eq(announce(&a1, "a", "", "127.0.0.1", 40001), DAPR_OK);
    /* A peer's sweep (or Dapr's) deleted our row while we were alive. */
    db_exec("DELETE FROM hosts");
    ck_assert(wait_for("SELECT COUNT(*) FROM hosts WHERE address = '127.0.0.1:40001'", 1));
    side_close(&a1);
}
END_TEST

START_TEST(withdraw_removes_row)
{
    side a1, a2, b1;
    side_open(&a1, NULL);
    side_open(&a2, NULL);
    side_open(&b1, NULL);
    ck_assert_int_eq(announce(&a1, "a", "", "127.0.0.1", 40001), DAPR_OK);
    ck_assert_int_eq(announce(&a2, "a", "", "127.0.0.1", 40002), DAPR_OK);

    ck_assert_int_eq(withdraw(&a1), DAPR_OK);
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts WHERE address = '127.0.0.1:40001'"), 0);
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts"), 1);
    for (int i = 0; i < 3; i++) {
        result r = resolve(&b1, "a", "");
        ck_assert_int_eq(r.status, DAPR_OK);
        ck_assert_str_eq(r.address, "127.0.0.1:40002");
    }
    /* A second withdraw, and one without announce, are harmless. */
    ck_assert_int_eq(withdraw(&a1), DAPR_OK);
    ck_assert_int_eq(withdraw(&b1), DAPR_OK);

    /* Withdrawn means no refresh re-creates the row. */
    sleep_ms(1500);
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts WHERE address = '127.0.0.1:40001'"), 0);

    /* Announcing again (another port) moves the row. */
    ck_assert_int_eq(announce(&a2, "a", "", "127.0.0.1", 40012), DAPR_OK);
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts"), 1);
    ck_assert_str_eq(resolve(&b1, "a", "").address, "127.0.0.1:40012");

    side_close(&a1);
    side_close(&a2);
    side_close(&b1);
}
END_TEST

START_TEST(unknown_app_and_namespaces)
{
    side a1, c1;
    side_open(&a1, NULL);
    side_open(&c1, NULL);
    ck_assert_int_eq(announce(&a1, "a", "", "127.0.0.1", 40001), DAPR_OK);
    ck_assert_int_eq(announce(&c1, "c", "prod", "::1", 40005), DAPR_OK);

    result r = resolve(&a1, "nope", "");
    ck_assert_int_eq(r.status, DAPR_ERR_NOT_FOUND);
    ck_assert_str_eq(r.message, "no live instance of app 'nope'");
    ck_assert_str_eq(r.address, "");

    /* Namespaces do not see each other; IPv6 gets brackets as in Go. */
    ck_assert_int_eq(resolve(&a1, "c", "").status, DAPR_ERR_NOT_FOUND);
    r = resolve(&a1, "c", "prod");
    ck_assert_int_eq(r.status, DAPR_OK);
    ck_assert_str_eq(r.address, "[::1]:40005");
    ck_assert_int_eq(resolve(&a1, "a", NULL).status, DAPR_OK);

    ck_assert_int_eq(resolve(&a1, "", "").status, DAPR_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(announce(&a1, "", "", "127.0.0.1", 1), DAPR_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(announce(&a1, "x", "", "127.0.0.1", 0), DAPR_ERR_INVALID_ARGUMENT);

    side_close(&a1);
    side_close(&c1);
}
END_TEST

START_TEST(rows_written_by_dapr_resolve)
{
    side b1;
    side_open(&b1, NULL);
    /* What a real Dapr sidecar writes: namespace '', unixepoch seconds. */
    db_exec("INSERT INTO hosts (registration_id, address, app_id, namespace, last_update) "
            "VALUES ('5b0c9a1e-1d2f-4c3b-9a8e-7f6d5c4b3a21', '127.0.0.1:50002', 'godapr', '', "
            "CAST(strftime('%s','now') AS INTEGER))");
    result r = resolve(&b1, "godapr", "");
    ck_assert_int_eq(r.status, DAPR_OK);
    ck_assert_str_eq(r.address, "127.0.0.1:50002");
    /* A new sidecar on the same address takes the stale row over. */
    ck_assert_int_eq(announce(&b1, "b", "", "127.0.0.1", 50002), DAPR_OK);
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts"), 1);
    ck_assert_int_eq(resolve(&b1, "godapr", "").status, DAPR_ERR_NOT_FOUND);
    side_close(&b1);
}
END_TEST

START_TEST(cleanup_deletes_dead_rows)
{
    side a1;
    side_open(&a1, "1s");
    db_exec("INSERT INTO hosts VALUES ('dead', '127.0.0.1:1', 'x', '', "
            "CAST(strftime('%s','now') AS INTEGER) - 3600)");
    db_exec("INSERT INTO hosts VALUES ('live', '127.0.0.1:2', 'x', '', "
            "CAST(strftime('%s','now') AS INTEGER) + 3600)");
    ck_assert(wait_for("SELECT COUNT(*) FROM hosts WHERE registration_id = 'dead'", 0));
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts WHERE registration_id = 'live'"), 1);
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM metadata WHERE key = 'nr-last-cleanup'"), 1);
    side_close(&a1);
}
END_TEST

/* ---- concurrency -------------------------------------------------------- */

typedef struct hammer {
    side *s;
    int n1, n2, errors;
} hammer;

static void *hammer_main(void *p)
{
    hammer *h = p;
    for (int i = 0; i < 100; i++) {
        dapr_nr_resolve_req req = {"a", ""};
        result r = {0};
        vt()->resolve(h->s->inst, &req, on_resolve, &r);
        if (r.status != DAPR_OK) h->errors++;
        else if (strcmp(r.address, "127.0.0.1:40001") == 0) h->n1++;
        else if (strcmp(r.address, "127.0.0.1:40002") == 0) h->n2++;
        else h->errors++;
    }
    return NULL;
}

START_TEST(concurrent_resolves_share_the_turns)
{
    side a1, a2, b1;
    side_open(&a1, NULL);
    side_open(&a2, NULL);
    side_open(&b1, NULL);
    ck_assert_int_eq(announce(&a1, "a", "", "127.0.0.1", 40001), DAPR_OK);
    ck_assert_int_eq(announce(&a2, "a", "", "127.0.0.1", 40002), DAPR_OK);

    enum { N = 6 };
    pthread_t th[N];
    hammer h[N];
    for (int i = 0; i < N; i++) {
        h[i] = (hammer){&b1, 0, 0, 0};
        pthread_create(&th[i], NULL, hammer_main, &h[i]);
    }
    int n1 = 0, n2 = 0, errors = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        n1 += h[i].n1;
        n2 += h[i].n2;
        errors += h[i].errors;
    }
    ck_assert_int_eq(errors, 0);
    /* one shared counter: exactly half each */
    ck_assert_int_eq(n1, N * 50);
    ck_assert_int_eq(n2, N * 50);

    side_close(&a1);
    side_close(&a2);
    side_close(&b1);
}
END_TEST

/* Several sidecars (one connection each, as separate processes would
 * have) writing and reading the file at once: SQLITE_BUSY between them
 * must be absorbed by busyTimeout and the retries, never reach callers. */
typedef struct sidecar_run {
    int port;
    int errors;
} sidecar_run;

static void *sidecar_main(void *p)
{
    sidecar_run *run = p;
    side s;
    side_open(&s, "1s");
    if (announce(&s, "busy", "", "127.0.0.1", (uint16_t)run->port) != DAPR_OK) run->errors++;
    for (int i = 0; i < 30; i++) {
        dapr_nr_resolve_req req = {"busy", ""};
        result r = {0};
        vt()->resolve(s.inst, &req, on_resolve, &r);
        if (r.status != DAPR_OK) run->errors++;
    }
    if (withdraw(&s) != DAPR_OK) run->errors++;
    side_close(&s);
    return NULL;
}

START_TEST(sidecars_contend_for_the_file)
{
    side first;
    side_open(&first, NULL); /* creates the tables before the rush */
    enum { N = 5 };
    pthread_t th[N];
    sidecar_run runs[N];
    for (int i = 0; i < N; i++) {
        runs[i] = (sidecar_run){41000 + i, 0};
        pthread_create(&th[i], NULL, sidecar_main, &runs[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(runs[i].errors, 0);
    }
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts"), 0);
    side_close(&first);
}
END_TEST

/* Another process holds the write lock for a while. */
typedef struct locker {
    sqlite3 *db;
    long hold_ms;
} locker;

static void *release_later(void *p)
{
    locker *l = p;
    sleep_ms(l->hold_ms);
    sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL);
    return NULL;
}

START_TEST(locked_database_is_retried_until_timeout)
{
    /* busyTimeout far below the lock time: the retry loop must bridge it */
    const char *kv[] = {"connectionString", dbpath, "updateInterval", "2s", "timeout", "1s",
                        "busyTimeout", "50ms", NULL};
    side s;
    char err[256];
    ck_assert_msg(side_init(&s, kv, err, sizeof(err)) == DAPR_OK, "%s", err);

    locker l = {db_open(), 400};
    ck_assert_int_eq(sqlite3_exec(l.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    pthread_t th;
    pthread_create(&th, NULL, release_later, &l);
    ck_assert_int_eq(announce(&s, "a", "", "127.0.0.1", 40001), DAPR_OK);
    pthread_join(th, NULL);
    ck_assert_int_eq(db_int("SELECT COUNT(*) FROM hosts"), 1);

    /* Held past the 1s timeout: a clear timeout error. */
    l.hold_ms = 1800;
    ck_assert_int_eq(sqlite3_exec(l.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    pthread_create(&th, NULL, release_later, &l);
    dapr_nr_instance_info self = {"a", "", "127.0.0.1", 40002, 3500, 0};
    result r = {0};
    vt()->announce(s.inst, &self, on_result, &r);
    ck_assert_int_eq(r.status, DAPR_ERR_TIMEOUT);
    ck_assert_msg(strstr(r.message, "locked by another process") != NULL, "%s", r.message);
    pthread_join(th, NULL);
    sqlite3_close(l.db);

    /* Readers are not blocked by a writer (WAL). */
    ck_assert_int_eq(resolve(&s, "zzz", "").status, DAPR_ERR_NOT_FOUND);
    side_close(&s);
}
END_TEST

/* ---- configuration ------------------------------------------------------ */

START_TEST(bad_metadata_fails_init)
{
    static const struct {
        const char *kv[7];
        dapr_status status;
        const char *reason;
    } cases[] = {
        {{"tableName", "hosts", NULL}, DAPR_ERR_INVALID_ARGUMENT, "missing connectionString"},
        {{"connectionString", ":memory:", NULL}, DAPR_ERR_INVALID_ARGUMENT, "in-memory"},
        {{"connectionString", "file::memory:?cache=shared", NULL}, DAPR_ERR_INVALID_ARGUMENT,
         "in-memory"},
        {{"connectionString", "file:nr?mode=memory&cache=shared", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "in-memory"},
        {{"connectionString", "@DB", "updateInterval", "1500ms", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "'updateInterval': must be a positive whole number"},
        {{"connectionString", "@DB", "updateInterval", "1s", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "at least 1s greater than timeout"},
        {{"connectionString", "@DB", "updateInterval", "soon", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "invalid value for 'updateInterval'"},
        {{"connectionString", "@DB", "timeout", "500ms", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "'timeout': must be at least 1s"},
        {{"connectionString", "@DB", "tableName", "bad-name", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "invalid tableName 'bad-name'"},
        {{"connectionString", "@DB", "tableName", "metadata", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "must differ"},
        {{"connectionString", "@DB", "disableWAL", "maybe", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "'disableWAL'"},
        {{"connectionString", "@DB", "cleanupInterval", "often", NULL},
         DAPR_ERR_INVALID_ARGUMENT, "'cleanupInterval'"},
        {{"connectionString", "/nonexistent-dir/x/nr.db", NULL},
         DAPR_ERR_UNAVAILABLE, "cannot open SQLite database"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *kv[7];
        memcpy(kv, cases[i].kv, sizeof(kv));
        for (int k = 1; k < 7 && kv[k - 1]; k += 2)
            if (kv[k] && strcmp(kv[k], "@DB") == 0) kv[k] = dbpath;
        side s;
        char err[256];
        dapr_status st = side_init(&s, kv, err, sizeof(err));
        ck_assert_msg(st == cases[i].status, "case %zu: status %d, want %d (%s)", i, (int)st,
                      (int)cases[i].status, err);
        ck_assert_msg(strstr(err, cases[i].reason) != NULL, "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].reason);
        ck_assert_ptr_null(s.inst);
    }

    /* Valid variants: Dapr's older cleanup name, no WAL, URI form. */
    char uri[200];
    snprintf(uri, sizeof(uri), "file:%s?_txlock=immediate", dbpath);
    const char *ok[] = {"connectionString", uri, "cleanupIntervalInSeconds", "60",
                        "disableWAL", "true", NULL};
    side s;
    char err[256];
    ck_assert_msg(side_init(&s, ok, err, sizeof(err)) == DAPR_OK, "%s", err);
    side_close(&s);
}
END_TEST

static Suite *nr_suite(void)
{
    Suite *s = suite_create("nameresolution.sqlite");
    TCase *tc = tcase_create("resolver");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120); /* valgrind */
    tcase_add_test(tc, round_robin_across_instances);
    tcase_add_test(tc, stale_row_is_skipped_then_refreshed);
    tcase_add_test(tc, lost_row_is_registered_again);
    tcase_add_test(tc, withdraw_removes_row);
    tcase_add_test(tc, unknown_app_and_namespaces);
    tcase_add_test(tc, rows_written_by_dapr_resolve);
    tcase_add_test(tc, cleanup_deletes_dead_rows);
    tcase_add_test(tc, concurrent_resolves_share_the_turns);
    tcase_add_test(tc, sidecars_contend_for_the_file);
    tcase_add_test(tc, locked_database_is_retried_until_timeout);
    tcase_add_test(tc, bad_metadata_fails_init);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(nr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
