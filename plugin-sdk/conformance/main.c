/*
 * dapr-plugin-conformance - run the state store or pub/sub behaviour suite
 * against a plugin .so, the way daprd would call it.  The suite follows
 * the kind of the component under test.
 *
 *   dapr-plugin-conformance [--type state.xxx|pubsub.xxx] [--metadata name=value]...
 *                           [--threads N] [--timeout SECONDS] [--verbose]
 *                           [--redelivery-wait SECONDS] [--no-ordering]
 *                           [--skip TEXT]... PLUGIN.so
 *
 * Output is TAP-like: one "ok N - name" or "not ok N - name: reason" line
 * per test, then "N passed, N failed" (", N skipped" when some were).
 * Exit status: 0 when nothing failed, 1 when something did, 2 on usage
 * errors.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "conformance.h"
#include "pubsub.h"

#include <dlfcn.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

ck_options ck_opt;
ck_component ck_comp;

/* What ABI 1.0 defined: a plugin built against a later 1.x may hand us
 * larger structs, never smaller ones. */
#define MIN_DESCRIPTOR_SIZE \
    (offsetof(dapr_plugin_descriptor, n_components) + sizeof(size_t))
#define MIN_COMPONENT_SIZE \
    (offsetof(dapr_component_def, vtable) + sizeof(void *))
#define MIN_STATE_VTABLE_SIZE \
    (offsetof(dapr_state_vtable, del) + sizeof(void *))
#define MIN_PUBSUB_VTABLE_SIZE \
    (offsetof(dapr_pubsub_vtable, unsubscribe) + sizeof(void *))

static int n_test, n_pass, n_fail, n_skip;

/* ---- reporting ----------------------------------------------------- */

void ck_fail(ck_test *t, const char *fmt, ...)
{
    if (t->failed)
        return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof t->reason, fmt, ap);
    va_end(ap);
    t->failed = 1;
}

void ck_skip(ck_test *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof t->reason, fmt, ap);
    va_end(ap);
    t->skipped = 1;
}

static void report(const char *name, const ck_test *t)
{
    n_test++;
    if (t->failed) {
        n_fail++;
        printf("not ok %d - %s: %s\n", n_test, name, t->reason);
    } else if (t->skipped) {
        n_skip++;
        printf("ok %d - %s # SKIP %s\n", n_test, name, t->reason);
    } else {
        n_pass++;
        printf("ok %d - %s\n", n_test, name);
    }
    fflush(stdout);
}

static int summary(void)
{
    printf("%d passed, %d failed", n_pass, n_fail);
    if (n_skip)
        printf(", %d skipped", n_skip);
    printf("\n");
    fflush(stdout);
    return n_fail ? 1 : 0;
}

/* ---- keys unique to this run ---------------------------------------- */

static char run_prefix[96];

const char *ck_run_prefix(void) { return run_prefix; }

char *ck_key(const char *name)
{
    size_t len = strlen(run_prefix) + strlen(name) + 1;
    char *k = malloc(len);
    if (!k) {
        fprintf(stderr, "dapr-plugin-conformance: out of memory\n");
        exit(2);
    }
    snprintf(k, len, "%s%s", run_prefix, name);
    return k;
}

/* ---- options -------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dapr-plugin-conformance [options] PLUGIN.so\n"
            "Run the state store or pub/sub conformance suite against a Dapr plugin.\n\n"
            "  --type TYPE          component type to test (e.g. state.redis, pubsub.redis);\n"
            "                       needed when the plugin has several such types\n"
            "  --metadata NAME=VAL  component metadata, as in a manifest (repeatable)\n"
            "  --threads N          threads for the concurrency tests (default 8)\n"
            "  --timeout SECONDS    how long to wait for one completion (default 30)\n"
            "  --verbose            show the plugin's debug and info logs\n"
            "  --redelivery-wait S  pub/sub: how long the broker may take to redeliver\n"
            "                       after RETRY, and how long to watch for unwanted\n"
            "                       redeliveries (default 1; fractions allowed)\n"
            "  --no-ordering        pub/sub: skip the publish-order test\n"
            "  --skip TEXT          skip the tests whose name contains TEXT (repeatable)\n"
            "  --help               this text\n");
}

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"type", required_argument, NULL, 't'},
        {"metadata", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 'T'},
        {"verbose", no_argument, NULL, 'v'},
        {"redelivery-wait", required_argument, NULL, 'R'},
        {"no-ordering", no_argument, NULL, 'O'},
        {"skip", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ck_opt.threads = 8;
    ck_opt.timeout_ms = 30000;
    ck_opt.redelivery_wait_ms = 1000;

    int c;
    while ((c = getopt_long(argc, argv, "t:m:j:T:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            ck_opt.type = optarg;
            break;
        case 'm': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "dapr-plugin-conformance: --metadata wants NAME=VALUE, got '%s'\n", optarg);
                exit(2);
            }
            size_t n = ck_opt.n_meta + 1;
            char **names = realloc(ck_opt.meta_names, n * sizeof *names);
            if (names)
                ck_opt.meta_names = names;
            char **values = realloc(ck_opt.meta_values, n * sizeof *values);
            if (values)
                ck_opt.meta_values = values;
            if (!names || !values) {
                fprintf(stderr, "dapr-plugin-conformance: out of memory\n");
                exit(2);
            }
            *eq = '\0'; /* argv strings are ours to split */
            ck_opt.meta_names[ck_opt.n_meta] = optarg;
            ck_opt.meta_values[ck_opt.n_meta] = eq + 1;
            ck_opt.n_meta = n;
            break;
        }
        case 'j':
            ck_opt.threads = atoi(optarg);
            if (ck_opt.threads < 1 || ck_opt.threads > 256) {
                fprintf(stderr, "dapr-plugin-conformance: --threads must be 1..256\n");
                exit(2);
            }
            break;
        case 'T':
            ck_opt.timeout_ms = atoi(optarg) * 1000;
            if (ck_opt.timeout_ms <= 0) {
                fprintf(stderr, "dapr-plugin-conformance: --timeout must be > 0\n");
                exit(2);
            }
            break;
        case 'v':
            ck_opt.verbose = 1;
            break;
        case 'R': {
            char *end;
            double sec = strtod(optarg, &end);
            if (end == optarg || *end || sec < 0 || sec > 3600) {
                fprintf(stderr, "dapr-plugin-conformance: --redelivery-wait must be 0..3600 seconds\n");
                exit(2);
            }
            ck_opt.redelivery_wait_ms = (int)(sec * 1000);
            break;
        }
        case 'O':
            ck_opt.no_ordering = 1;
            break;
        case 'S': {
            char **skip = realloc(ck_opt.skip, (ck_opt.n_skip + 1) * sizeof *skip);
            if (!skip) {
                fprintf(stderr, "dapr-plugin-conformance: out of memory\n");
                exit(2);
            }
            ck_opt.skip = skip;
            ck_opt.skip[ck_opt.n_skip++] = optarg;
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        exit(2);
    }
    ck_opt.plugin_path = argv[optind];
}

/* ---- loading --------------------------------------------------------- */

/* ---- pub/sub descriptor checks ----------------------------------------- */

static int check_pubsub(ck_test *t, const dapr_component_def *pick)
{
    const dapr_pubsub_vtable *ps = pick->vtable;
    if (ps->size < MIN_PUBSUB_VTABLE_SIZE) {
        ck_fail(t, "%s: pubsub vtable size %u does not cover publish/subscribe/unsubscribe",
                pick->type, ps->size);
        return 0;
    }
    if (!ps->publish || !ps->subscribe || !ps->unsubscribe) {
        ck_fail(t, "%s: publish, subscribe and unsubscribe are required", pick->type);
        return 0;
    }
    if ((pick->features & DAPR_PUBSUB_BULK_PUBLISH) && !ps->bulk_publish) {
        ck_fail(t, "%s claims BULK_PUBLISH but has no bulk_publish", pick->type);
        return 0;
    }
    ck_comp.def = pick;
    ck_comp.ps = ps;
    ck_comp.nonblocking = (pick->flags & DAPR_COMPONENT_NONBLOCKING) != 0;
    return 1;
}

/* dlopen the plugin and validate its descriptor.  Returns the chosen
 * state or pub/sub component, or NULL with t failed. */
static const dapr_component_def *load_plugin(ck_test *t, void **handle)
{
    /* dlopen searches the library path for a bare name; a plugin path is
     * meant literally. */
    char path[4096];
    if (!strchr(ck_opt.plugin_path, '/'))
        snprintf(path, sizeof path, "./%s", ck_opt.plugin_path);
    else
        snprintf(path, sizeof path, "%s", ck_opt.plugin_path);

    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        ck_fail(t, "dlopen: %s", dlerror());
        return NULL;
    }
    dapr_plugin_entry_fn entry;
    /* POSIX's documented way to turn a dlsym result into a function. */
    *(void **)&entry = dlsym(*handle, DAPR_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        ck_fail(t, "no exported symbol %s (build with DAPR_PLUGIN_EXPORT)",
                DAPR_PLUGIN_ENTRY_SYMBOL);
        return NULL;
    }
    const dapr_plugin_descriptor *d = entry();
    if (!d) {
        ck_fail(t, "%s() returned NULL", DAPR_PLUGIN_ENTRY_SYMBOL);
        return NULL;
    }
    if (d->abi_major != DAPR_PLUGIN_ABI_MAJOR || d->abi_minor > DAPR_PLUGIN_ABI_MINOR) {
        ck_fail(t, "plugin ABI %u.%u cannot load in a host of ABI %d.%d",
                d->abi_major, d->abi_minor, DAPR_PLUGIN_ABI_MAJOR,
                DAPR_PLUGIN_ABI_MINOR);
        return NULL;
    }
    if (d->size < MIN_DESCRIPTOR_SIZE) {
        ck_fail(t, "descriptor size %u is smaller than ABI 1.0's %zu",
                d->size, (size_t)MIN_DESCRIPTOR_SIZE);
        return NULL;
    }
    if (!d->name || !*d->name) {
        ck_fail(t, "descriptor has no name");
        return NULL;
    }
    if (d->n_components == 0 || !d->components) {
        ck_fail(t, "descriptor lists no components");
        return NULL;
    }

    const dapr_component_def *pick = NULL;
    int n_testable = 0; /* state and pub/sub components */
    char types[1024] = "";
    for (size_t i = 0; i < d->n_components; i++) {
        const dapr_component_def *c = d->components[i];
        if (!c) {
            ck_fail(t, "component %zu is a NULL pointer", i);
            return NULL;
        }
        if (c->size < MIN_COMPONENT_SIZE) {
            ck_fail(t, "component %zu: size %u is smaller than ABI 1.0's %zu",
                    i, c->size, (size_t)MIN_COMPONENT_SIZE);
            return NULL;
        }
        if (!c->type || !*c->type || !c->init || !c->close || !c->vtable) {
            ck_fail(t, "component %zu lacks its type, init, close or vtable", i);
            return NULL;
        }
        if (c->kind != DAPR_KIND_STATE && c->kind != DAPR_KIND_PUBSUB)
            continue;
        const char *prefix = c->kind == DAPR_KIND_STATE ? "state." : "pubsub.";
        if (strncmp(c->type, prefix, strlen(prefix)) != 0) {
            ck_fail(t, "component type '%s' does not start with '%s'", c->type, prefix);
            return NULL;
        }
        n_testable++;
        size_t used = strlen(types);
        snprintf(types + used, sizeof types - used, "%s%s", used ? ", " : "", c->type);
        if (!ck_opt.type || strcmp(ck_opt.type, c->type) == 0)
            if (!pick)
                pick = c;
    }
    if (!pick) {
        if (ck_opt.type)
            ck_fail(t, "no state or pubsub component of type %s (types here: %s)",
                    ck_opt.type, n_testable ? types : "none");
        else
            ck_fail(t, "the plugin provides no state or pubsub component");
        return NULL;
    }
    if (!ck_opt.type && n_testable > 1) {
        ck_fail(t, "several components (%s): choose one with --type", types);
        return NULL;
    }
    if (pick->kind == DAPR_KIND_PUBSUB) {
        if (!check_pubsub(t, pick))
            return NULL;
    } else {
        const dapr_state_vtable *vt = pick->vtable;
        if (vt->size < MIN_STATE_VTABLE_SIZE) {
            ck_fail(t, "%s: state vtable size %u does not even cover get/set/del",
                    pick->type, vt->size);
            return NULL;
        }
        if (!vt->get || !vt->set || !vt->del) {
            ck_fail(t, "%s: get, set and del are required", pick->type);
            return NULL;
        }
        ck_comp.def = pick;
        ck_comp.vt = vt;
        ck_comp.nonblocking = (pick->flags & DAPR_COMPONENT_NONBLOCKING) != 0;
        if (CK_FEATURE(DAPR_STATE_TRANSACTIONAL) && !CK_VT_HAS(transact)) {
            ck_fail(t, "%s claims TRANSACTIONAL but has no transact", pick->type);
            return NULL;
        }
        if (CK_FEATURE(DAPR_STATE_QUERY) && !CK_VT_HAS(query)) {
            ck_fail(t, "%s claims QUERY but has no query", pick->type);
            return NULL;
        }
    }
    for (size_t i = 0; i < pick->n_metadata_schema; i++) {
        if (!pick->metadata_schema || !pick->metadata_schema[i].name) {
            ck_fail(t, "%s: metadata schema entry %zu has no name", pick->type, i);
            return NULL;
        }
    }

    printf("# plugin %s %s (ABI %u.%u): %s %s, features 0x%llx%s\n", d->name,
           d->version ? d->version : "?", d->abi_major, d->abi_minor,
           pick->type, pick->version ? pick->version : "",
           (unsigned long long)pick->features,
           ck_comp.nonblocking ? ", non-blocking" : "");
    return pick;
}

/* ---- surviving a crash long enough to say where ----------------------- */

static const char *volatile current_test;
static struct sigaction old_actions[NSIG];

/* A plugin that crashes still gets a "not ok" line and the summary.
 * Then the previous handler (the default, or a sanitizer's) takes over:
 * returning re-runs the faulting instruction, and abort() re-raises. */
static void on_crash(int sig)
{
    char buf[512];
    char skipped[32] = "";
    if (n_skip)
        snprintf(skipped, sizeof skipped, ", %d skipped", n_skip);
    int len = snprintf(buf, sizeof buf,
                       "not ok %d - %s: crashed (signal %d)\n%d passed, %d failed%s\n",
                       n_test + 1, current_test ? current_test : "?", sig, n_pass,
                       n_fail + 1, skipped);
    if (len > 0)
        (void)!write(STDOUT_FILENO, buf, (size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1);
    sigaction(sig, &old_actions[sig], NULL);
}

static void catch_crashes(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_crash;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaction(sigs[i], &sa, &old_actions[sigs[i]]);
}

static const char *skipped_by_option(const char *name)
{
    for (size_t i = 0; i < ck_opt.n_skip; i++)
        if (strstr(name, ck_opt.skip[i]))
            return ck_opt.skip[i];
    return NULL;
}

static void run_cases(const ck_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ck_test t = {0};
        long doubles = ck_double_callbacks() + ps_double_callbacks();
        current_test = cases[i].name;
        const char *why = skipped_by_option(cases[i].name);
        if (why)
            ck_skip(&t, "--skip %s", why);
        else
            cases[i].fn(&t);
        if (!t.failed && ck_double_callbacks() + ps_double_callbacks() != doubles)
            ck_fail(&t, "a completion callback was called more than once");
        report(cases[i].name, &t);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);

    /* Unique per run, so a persistent store can be reused; shaped like
     * the host's "appid||" prefix. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(run_prefix, sizeof run_prefix, "conformance-%lx%05lx-%ld||",
             (unsigned long)now.tv_sec, (unsigned long)(now.tv_nsec / 10000),
             (long)getpid());

    fflush(stdout);
    catch_crashes();

    void *handle = NULL;
    ck_test t = {0};
    current_test = "load plugin and check descriptor";
    const dapr_component_def *def = load_plugin(&t, &handle);
    report("load plugin and check descriptor", &t);
    if (!def)
        return summary();

    host_setup(def);
    current_test = "init";

    /* init, as the host does after validating the manifest. */
    memset(&t, 0, sizeof t);
    char *missing = host_missing_required();
    if (missing) {
        ck_fail(&t, "required metadata missing: %s (pass --metadata NAME=VALUE)", missing);
        free(missing);
    } else {
        char errbuf[512] = "";
        dapr_status st = def->init(host_handle(), host_api(), &ck_comp.inst,
                                   errbuf, sizeof errbuf);
        if (st != DAPR_OK)
            ck_fail(&t, "init returned %s: %s", ck_status_name(st),
                    errbuf[0] ? errbuf : "(no message in errbuf)");
    }
    report("init", &t);
    if (t.failed) {
        host_shutdown();
        ck_ops_shutdown();
        return summary();
    }

    if (def->kind == DAPR_KIND_PUBSUB) {
        run_cases(ck_pubsub_cases, ck_n_pubsub_cases);
    } else {
        run_cases(ck_state_cases, ck_n_state_cases);
        run_cases(ck_query_cases, ck_n_query_cases);
    }

    memset(&t, 0, sizeof t);
    current_test = "close";
    def->close(ck_comp.inst);
    host_shutdown();
    if (host_live_timers())
        ck_fail(&t, "%d timer(s) still running after close", host_live_timers());
    report("close", &t);

    ck_ops_shutdown();
    ps_shutdown();
    free(ck_opt.meta_names);
    free(ck_opt.skip);
    free(ck_opt.meta_values);
    /* The plugin is not dlclose()d: its libraries may still hold
     * thread-local destructors, and the process ends here anyway. */
    (void)handle;
    return summary();
}
