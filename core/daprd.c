/*
 * daprd.c - the sidecar's main: flags, start-up order, shutdown.
 *
 * Start-up: load plugins -> read manifests -> initialise components ->
 * start the HTTP API (outbound ready) -> ready -> tell systemd.  Shutdown
 * (SIGTERM, SIGINT, POST /v1.0/shutdown): stop accepting, let in-flight
 * requests finish (bounded by --dapr-graceful-shutdown-seconds), close
 * components, exit 0.
 */
#include "config.h"
#include "api.h"
#include "api_logging.h"
#include "app_channel.h"
#include "bindings.h"
#include "component.h"
#include "http_api.h"
#include "log.h"
#include "loop.h"
#include "manifest.h"
#include "metrics.h"
#include "nameres.h"
#include "pubsub.h"
#include "plugin_loader.h"
#include "resiliency.h"
#include "runtime.h"
#include "secrets.h"
#include "tracing.h"
#include "util.h"
#include "workers.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define SCOPE "dapr.runtime"

runtime_state rt;

struct options {
    const char *app_id;
    int http_port;
    const char *listen_addresses;
    const char **resources;
    size_t n_resources;
    const char **plugin_dirs;
    size_t n_plugin_dirs;
    const char *config;
    const char *log_level;
    int log_as_json;
    uint64_t max_body;
    int app_port;
    int64_t graceful_ms;
    size_t workers;
    int internal_port;
    const char *app_protocol;
    const char *app_channel_address;
    int app_max_concurrency;
    int app_health_check;
    const char *app_health_path;
    int64_t app_health_interval_ms;
    int64_t app_health_timeout_ms;
    int app_health_threshold;
    int64_t binding_options_timeout_ms;
    int api_logging;            /* --enable-api-logging: -1 unset (Configuration decides) */
    int metrics_port;           /* --metrics-port (9090) */
    int enable_metrics;         /* --enable-metrics (true) */
    const char *metrics_address; /* --metrics-listen-address (127.0.0.1 here; see README) */
};

static struct options opt = {
    .app_id = "",
    .http_port = 3500,
    .listen_addresses = "127.0.0.1",
    .api_logging = -1,
    .metrics_port = 9090,
    .enable_metrics = 1,
    .metrics_address = "127.0.0.1",
    .log_level = "info",
    .max_body = 4u << 20,
    .graceful_ms = 5000,
    .app_protocol = "http",
    .app_channel_address = "127.0.0.1",
    .app_max_concurrency = -1,
    .app_health_path = "/healthz",
    .app_health_interval_ms = 5000,
    .app_health_timeout_ms = 500,
    .app_health_threshold = 3,
    .binding_options_timeout_ms = 3000,
};

static const char embedded_components[] =
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: statestore\n"
    "spec:\n"
    "  type: state.sqlite\n"
    "  version: v1\n"
    "  metadata:\n"
    "  - name: connectionString\n"
    "    value: \"%s\"\n"
    "  - name: actorStateStore\n"
    "    value: \"true\"\n"
    "---\n"
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: pubsub\n"
    "spec:\n"
    "  type: pubsub.in-memory\n"
    "  version: v1\n";

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: daprd [flags]\n"
            "\n"
            "The Dapr sidecar (dapr-c %s, plugin ABI %d.%d).  Flags accept --flag value,\n"
            "--flag=value or -flag value, as Dapr's daprd does.\n"
            "\n"
            "  --app-id ID                      the application's id\n"
            "  --app-port PORT                  the application's port (no app channel when absent)\n"
            "  --app-protocol http|https        protocol of the app channel (default http; https\n"
            "                                   does not verify the app's certificate, as Dapr)\n"
            "  --app-channel-address HOST       where the app listens (default 127.0.0.1)\n"
            "  --app-max-concurrency N          in-flight requests to the app (default -1: unlimited)\n"
            "  --enable-app-health-check        probe the app; pause deliveries while unhealthy\n"
            "  --app-health-check-path PATH     (default /healthz)\n"
            "  --app-health-probe-interval S    seconds between probes (default 5)\n"
            "  --app-health-probe-timeout MS    probe timeout in milliseconds (default 500)\n"
            "  --app-health-threshold N         failures before unhealthy (default 3)\n"
            "  --app-binding-options-timeout D  wait for the app's answer to the input binding\n"
            "                                   OPTIONS probe (default 3s)\n"
            "  --dapr-internal-grpc-port PORT   sidecar-to-sidecar port (HTTP/1.1 here; default: a\n"
            "                                   free port); alias --dapr-internal-http-port\n"
            "  --dapr-http-port PORT            HTTP API port (default 3500)\n"
            "  --dapr-listen-addresses LIST     comma list of addresses to listen on (default 127.0.0.1)\n"
            "  --resources-path DIR             folder of component manifests (repeatable)\n"
            "  --components-path DIR            deprecated alias of --resources-path\n"
            "  --config FILE                    Configuration manifest\n"
            "  --plugins-dir DIR                folder of plugin .so files (repeatable;\n"
            "                                   also DAPR_PLUGINS_PATH; default %s)\n"
            "  --log-level LEVEL                debug, info, warn, error, fatal (default info)\n"
            "                                   (SIGUSR1 steps it, SIGUSR2 restores it)\n"
            "  --enable-api-logging             one info line per API call (scope dapr.runtime.http-info)\n"
            "  --log-as-json                    one JSON object per log line\n"
            "  --metrics-port PORT              Prometheus endpoint GET /metrics (default 9090)\n"
            "  --metrics-listen-address ADDR    its address (default 127.0.0.1)\n"
            "  --enable-metrics=false           no metrics and no metrics port\n"
            "  --max-body-size SIZE             largest request body (default 4Mi)\n"
            "  --dapr-http-max-request-size MB  legacy form of --max-body-size\n"
            "  --dapr-graceful-shutdown-seconds N  bound on draining at shutdown (default 5)\n"
            "  --worker-threads N               threads for blocking plugin calls (default 8)\n"
            "  --version                        print the version and exit\n"
            "  --help                           this text\n"
            "\n"
            "Without --resources-path, daprd uses its embedded default components: a\n"
            "state.sqlite store named \"statestore\" (actorStateStore) in\n"
            "$STATE_DIRECTORY/state.db, or ~/.dapr/state/<app-id>.db, and a\n"
            "pubsub.in-memory broker named \"pubsub\".\n",
            PACKAGE_VERSION, DAPR_PLUGIN_ABI_MAJOR, DAPR_PLUGIN_ABI_MINOR, PLUGINDIR);
}

static void add_str(const char ***arr, size_t *n, const char *v)
{
    *arr = xrealloc(*arr, (*n + 1) * sizeof **arr);
    (*arr)[(*n)++] = v;
}

static int parse_port(const char *flag, const char *v, int *out)
{
    int64_t p;
    if (parse_int64(v, &p) != 0 || p < 0 || p > 65535) {
        fprintf(stderr, "daprd: %s: '%s' is not a port number\n", flag, v);
        return -1;
    }
    *out = (int)p;
    return 0;
}

/* Bool flags take an optional value: --log-as-json, --log-as-json=false. */
static int bool_arg(const char *flag, const char *v, int *out)
{
    if (!v) { *out = 1; return 0; }
    int b = parse_bool(v);
    if (b < 0) {
        fprintf(stderr, "daprd: %s: '%s' is not true or false\n", flag, v);
        return -1;
    }
    *out = b;
    return 0;
}

enum {
    OPT_APP_ID = 1000, OPT_APP_PORT, OPT_HTTP_PORT, OPT_LISTEN, OPT_RESOURCES, OPT_COMPONENTS,
    OPT_CONFIG, OPT_PLUGINS, OPT_LOG_LEVEL, OPT_LOG_JSON, OPT_MAX_BODY, OPT_MAX_REQ_MB,
    OPT_GRACEFUL, OPT_WORKERS, OPT_VERSION, OPT_HELP, OPT_IGNORED, OPT_IGNORED_BOOL,
    OPT_INTERNAL_PORT, OPT_APP_PROTOCOL, OPT_APP_ADDRESS, OPT_APP_MAX_CONC, OPT_HEALTH_CHECK,
    OPT_HEALTH_PATH, OPT_HEALTH_INTERVAL, OPT_HEALTH_TIMEOUT, OPT_HEALTH_THRESHOLD,
    OPT_BINDING_OPTIONS_TIMEOUT, OPT_API_LOGGING, OPT_METRICS_PORT, OPT_ENABLE_METRICS, OPT_METRICS_ADDRESS
};

static int parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"app-id", required_argument, NULL, OPT_APP_ID},
        {"app-port", required_argument, NULL, OPT_APP_PORT},
        {"dapr-http-port", required_argument, NULL, OPT_HTTP_PORT},
        {"dapr-listen-addresses", required_argument, NULL, OPT_LISTEN},
        {"resources-path", required_argument, NULL, OPT_RESOURCES},
        {"components-path", required_argument, NULL, OPT_COMPONENTS},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"plugins-dir", required_argument, NULL, OPT_PLUGINS},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"log-as-json", optional_argument, NULL, OPT_LOG_JSON},
        {"max-body-size", required_argument, NULL, OPT_MAX_BODY},
        {"dapr-http-max-request-size", required_argument, NULL, OPT_MAX_REQ_MB},
        {"dapr-graceful-shutdown-seconds", required_argument, NULL, OPT_GRACEFUL},
        {"worker-threads", required_argument, NULL, OPT_WORKERS},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, OPT_HELP},
        {"app-protocol", required_argument, NULL, OPT_APP_PROTOCOL},
        {"app-channel-address", required_argument, NULL, OPT_APP_ADDRESS},
        {"app-max-concurrency", required_argument, NULL, OPT_APP_MAX_CONC},
        {"dapr-internal-grpc-port", required_argument, NULL, OPT_INTERNAL_PORT},
        {"dapr-internal-http-port", required_argument, NULL, OPT_INTERNAL_PORT},
        {"enable-app-health-check", optional_argument, NULL, OPT_HEALTH_CHECK},
        {"app-health-check-path", required_argument, NULL, OPT_HEALTH_PATH},
        {"app-health-probe-interval", required_argument, NULL, OPT_HEALTH_INTERVAL},
        {"app-health-probe-timeout", required_argument, NULL, OPT_HEALTH_TIMEOUT},
        {"app-health-threshold", required_argument, NULL, OPT_HEALTH_THRESHOLD},
        {"app-binding-options-timeout", required_argument, NULL, OPT_BINDING_OPTIONS_TIMEOUT},
        /* Dapr flags accepted now and used by later building blocks. */
        {"dapr-grpc-port", required_argument, NULL, OPT_IGNORED},
        {"metrics-port", required_argument, NULL, OPT_METRICS_PORT},
        {"metrics-listen-address", required_argument, NULL, OPT_METRICS_ADDRESS},
        {"mode", required_argument, NULL, OPT_IGNORED},
        {"placement-host-address", required_argument, NULL, OPT_IGNORED},
        {"scheduler-host-address", required_argument, NULL, OPT_IGNORED},
        {"read-buffer-size", required_argument, NULL, OPT_IGNORED},
        {"dapr-http-read-buffer-size", required_argument, NULL, OPT_IGNORED},
        {"enable-metrics", optional_argument, NULL, OPT_ENABLE_METRICS},
        {"enable-api-logging", optional_argument, NULL, OPT_API_LOGGING},
        {NULL, 0, NULL, 0},
    };
    int c, b;
    int64_t n;
    opterr = 0;
    while ((c = getopt_long_only(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_APP_ID: opt.app_id = optarg; break;
        case OPT_APP_PORT: if (parse_port("--app-port", optarg, &opt.app_port)) return -1; break;
        case OPT_HTTP_PORT: if (parse_port("--dapr-http-port", optarg, &opt.http_port)) return -1; break;
        case OPT_LISTEN: opt.listen_addresses = optarg; break;
        case OPT_COMPONENTS:
            fprintf(stderr, "daprd: --components-path is deprecated; use --resources-path\n");
            /* fall through */
        case OPT_RESOURCES: add_str(&opt.resources, &opt.n_resources, optarg); break;
        case OPT_CONFIG: opt.config = optarg; break;
        case OPT_PLUGINS: add_str(&opt.plugin_dirs, &opt.n_plugin_dirs, optarg); break;
        case OPT_LOG_LEVEL:
            if (log_level_parse(optarg) < 0) {
                fprintf(stderr, "daprd: --log-level: '%s' is not debug, info, warn, error or fatal\n", optarg);
                return -1;
            }
            opt.log_level = optarg;
            break;
        case OPT_LOG_JSON: if (bool_arg("--log-as-json", optarg, &opt.log_as_json)) return -1; break;
        case OPT_API_LOGGING: if (bool_arg("--enable-api-logging", optarg, &opt.api_logging)) return -1; break;
        case OPT_MAX_BODY:
            if (parse_quantity_bytes(optarg, &opt.max_body) != 0 || opt.max_body == 0) {
                fprintf(stderr, "daprd: --max-body-size: '%s' is not a size such as 4Mi\n", optarg);
                return -1;
            }
            break;
        case OPT_MAX_REQ_MB:
            if (parse_int64(optarg, &n) != 0 || n <= 0 || n > 1 << 20) {
                fprintf(stderr, "daprd: --dapr-http-max-request-size: '%s' is not a number of MB\n", optarg);
                return -1;
            }
            opt.max_body = (uint64_t)n << 20;
            break;
        case OPT_GRACEFUL:
            if (parse_int64(optarg, &n) != 0 || n < 0 || n > 3600) {
                fprintf(stderr, "daprd: --dapr-graceful-shutdown-seconds: '%s' is not a number of seconds\n", optarg);
                return -1;
            }
            opt.graceful_ms = n * 1000;
            break;
        case OPT_WORKERS:
            if (parse_int64(optarg, &n) != 0 || n < 1 || n > 256) {
                fprintf(stderr, "daprd: --worker-threads: '%s' must be 1..256\n", optarg);
                return -1;
            }
            opt.workers = (size_t)n;
            break;
        case OPT_VERSION: printf("%s\n", PACKAGE_VERSION); exit(0);
        case OPT_HELP: usage(stdout); exit(0);
        case OPT_INTERNAL_PORT:
            if (parse_port("--dapr-internal-grpc-port", optarg, &opt.internal_port)) return -1;
            break;
        case OPT_APP_PROTOCOL: opt.app_protocol = optarg; break;
        case OPT_APP_ADDRESS: opt.app_channel_address = optarg; break;
        case OPT_APP_MAX_CONC:
            if (parse_int64(optarg, &n) != 0 || n < -1 || n > 100000) {
                fprintf(stderr, "daprd: --app-max-concurrency: '%s' must be -1 or a positive number\n", optarg);
                return -1;
            }
            opt.app_max_concurrency = (int)n;
            break;
        case OPT_HEALTH_CHECK: if (bool_arg("--enable-app-health-check", optarg, &opt.app_health_check)) return -1; break;
        case OPT_HEALTH_PATH: opt.app_health_path = optarg; break;
        case OPT_HEALTH_INTERVAL:
            /* Dapr takes whole seconds; a Go duration is accepted too. */
            if (parse_duration_ms(optarg, &opt.app_health_interval_ms) != 0 || opt.app_health_interval_ms <= 0) {
                fprintf(stderr, "daprd: --app-health-probe-interval: '%s' is not a number of seconds\n", optarg);
                return -1;
            }
            break;
        case OPT_HEALTH_TIMEOUT:
            if (parse_int64(optarg, &opt.app_health_timeout_ms) != 0 || opt.app_health_timeout_ms <= 0) {
                if (parse_duration_ms(optarg, &opt.app_health_timeout_ms) != 0 || opt.app_health_timeout_ms <= 0) {
                    fprintf(stderr, "daprd: --app-health-probe-timeout: '%s' is not a number of milliseconds\n", optarg);
                    return -1;
                }
            }
            break;
        case OPT_HEALTH_THRESHOLD:
            if (parse_int64(optarg, &n) != 0 || n < 1 || n > 1000) {
                fprintf(stderr, "daprd: --app-health-threshold: '%s' must be a positive number\n", optarg);
                return -1;
            }
            opt.app_health_threshold = (int)n;
            break;
        case OPT_BINDING_OPTIONS_TIMEOUT:
            if (parse_duration_ms(optarg, &opt.binding_options_timeout_ms) != 0 ||
                opt.binding_options_timeout_ms <= 0) {
                fprintf(stderr, "daprd: --app-binding-options-timeout: '%s' is not a duration such as 3s\n", optarg);
                return -1;
            }
            break;
        case OPT_METRICS_PORT: if (parse_port("--metrics-port", optarg, &opt.metrics_port)) return -1; break;
        case OPT_ENABLE_METRICS: if (bool_arg("--enable-metrics", optarg, &opt.enable_metrics)) return -1; break;
        case OPT_METRICS_ADDRESS: opt.metrics_address = optarg; break;
        case OPT_IGNORED: break;
        case OPT_IGNORED_BOOL: if (bool_arg(argv[optind - 1], optarg, &b)) return -1; break;
        default:
            fprintf(stderr, "daprd: unknown or incomplete flag '%s' (see daprd --help)\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "daprd: unexpected argument '%s' (see daprd --help)\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- plugins and components ------------------------------------------------ */

static void load_plugins(void)
{
    size_t tried = 0;
    for (size_t i = 0; i < opt.n_plugin_dirs; i++, tried++)
        plugins_load_dir(opt.plugin_dirs[i]);
    const char *env = getenv("DAPR_PLUGINS_PATH");
    if (env && *env) {
        char *copy = xstrdup(env);
        for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            plugins_load_dir(d);
            tried++;
        }
        free(copy);
    }
    if (tried == 0)
        plugins_load_dir(PLUGINDIR);
}

static int mkdir_p(const char *path)
{
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) { free(p); return -1; }
        *s = '/';
    }
    int rc = (mkdir(p, 0700) != 0 && errno != EEXIST) ? -1 : 0;
    free(p);
    return rc;
}

/* The embedded default set: one state.sqlite store in the state folder
 * and the process-local pub/sub broker, the names `dapr init` gives. */
static int load_embedded_components(component_list *list, char **err)
{
    const char *state_dir = getenv("STATE_DIRECTORY"); /* set by systemd's StateDirectory= */
    char *dir, *db;
    if (state_dir && *state_dir) {
        char *first = xstrdup(state_dir);
        char *colon = strchr(first, ':'); /* several dirs: use the first */
        if (colon) *colon = '\0';
        dir = first;
        db = xasprintf("%s/state.db", dir);
    } else {
        const char *home = getenv("HOME");
        dir = xasprintf("%s/.dapr/state", home && *home ? home : ".");
        db = xasprintf("%s/%s.db", dir, *opt.app_id ? opt.app_id : "default");
    }
    if (mkdir_p(dir) != 0) {
        *err = xasprintf("cannot create the state folder %s: %s", dir, strerror(errno));
        free(dir);
        free(db);
        return -1;
    }
    if (strchr(db, '"') || strchr(db, '\\') || strchr(db, '\n')) {
        *err = xasprintf("state folder path %s has characters daprd does not quote", dir);
        free(dir);
        free(db);
        return -1;
    }
    char *yaml = xasprintf(embedded_components, db);
    log_info(SCOPE, "no --resources-path given: using the embedded default components (state.sqlite at %s, pubsub.in-memory)", db);
    int rc = manifest_load_string(yaml, strlen(yaml), "(embedded defaults)", opt.app_id, list, err);
    free(yaml);
    free(dir);
    free(db);
    return rc;
}

/* ---- shutdown ------------------------------------------------------------ */

static struct event *drain_timer, *watchdog_timer, *force_timer;
static struct event *sig_term, *sig_int, *sig_usr1, *sig_usr2;
static int64_t shutdown_deadline;

static int all_idle(void)
{
    if (http_api_inflight() > 0 || pubsub_inflight() > 0 || bindings_inflight() > 0)
        return 0;
    for (size_t i = 0; i < components_count(); i++)
        if (atomic_load(&component_at(i)->inflight) > 0)
            return 0;
    return 1;
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    if (all_idle() || now_monotonic_ms() >= shutdown_deadline) {
        if (!all_idle())
            log_warn(SCOPE, "graceful shutdown timed out with %zu requests in flight", http_api_inflight());
        loop_stop();
    }
}

static void force_exit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    log_warn(SCOPE, "forced shutdown");
    fflush(stdout);
    _exit(1);
}

static void request_shutdown(int force)
{
    if (force) {
        struct timeval tv = {0, 100000};
        force_timer = evtimer_new(loop_base(), force_exit, NULL);
        evtimer_add(force_timer, &tv);
        return;
    }
    if (rt.shutting_down)
        return;
    rt.shutting_down = 1;
    log_info(SCOPE, "dapr shutting down");
#ifdef HAVE_SYSTEMD
    sd_notify(0, "STOPPING=1");
#endif
    http_api_stop_accepting();
    pubsub_stop();
    bindings_stop();
    shutdown_deadline = now_monotonic_ms() + opt.graceful_ms;
    struct timeval tv = {0, 20000};
    drain_timer = event_new(loop_base(), -1, EV_PERSIST, drain_check, NULL);
    event_add(drain_timer, &tv);
}

/*
 * The log level can change without a restart: SIGUSR1 steps it to the
 * next of debug, info, warn, error (then back to debug), SIGUSR2 restores
 * the level daprd started with.  The change itself is always logged.
 */
static void on_log_level_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what; (void)arg;
    log_level start = (log_level)log_level_parse(opt.log_level);
    log_level now = log_get_level();
    log_level next = sig == SIGUSR2 ? start : now >= LOG_LEVEL_ERROR ? LOG_LEVEL_DEBUG : (log_level)(now + 1);
    log_set_level(LOG_LEVEL_INFO < next ? LOG_LEVEL_INFO : next);
    log_info(SCOPE, "log level changed from %s to %s (%s)", log_level_name(now), log_level_name(next),
             sig == SIGUSR2 ? "SIGUSR2" : "SIGUSR1");
    log_set_level(next);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what; (void)arg;
    log_info(SCOPE, "received signal %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    request_shutdown(0);
}

#ifdef HAVE_SYSTEMD
static void watchdog_ping(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    /* Sent from the loop thread: a stuck loop stops the pings. */
    sd_notify(0, "WATCHDOG=1");
}
#endif

static void notify_ready(void)
{
#ifdef HAVE_SYSTEMD
    sd_notifyf(0, "READY=1\nSTATUS=serving the Dapr HTTP API on port %d\nMAINPID=%lu", opt.http_port,
               (unsigned long)getpid());
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        uint64_t half = usec / 2;
        struct timeval tv = {.tv_sec = (time_t)(half / 1000000), .tv_usec = (suseconds_t)(half % 1000000)};
        watchdog_timer = event_new(loop_base(), -1, EV_PERSIST, watchdog_ping, NULL);
        event_add(watchdog_timer, &tv);
        sd_notify(0, "WATCHDOG=1");
    }
#endif
}

static int64_t init_started;

static void on_subscribed(void);
static void on_bindings_started(void);

/* The app listens: subscribe, start the input bindings (Dapr's start-up
 * order), then ready. */
static void on_app_ready(void)
{
    pubsub_start(on_subscribed);
}

static void on_subscribed(void)
{
    bindings_start(opt.binding_options_timeout_ms, on_bindings_started);
}

static void on_bindings_started(void)
{
    rt.ready = 1;
    log_info(SCOPE, "dapr initialized. Status: Running. Init Elapsed %lldms",
             (long long)(now_monotonic_ms() - init_started));
    notify_ready();
}

/* The address other sidecars reach us at: DAPR_HOST_IP (as in Dapr), else
 * the first listen address unless it is a wildcard, else loopback. */
static char *announce_address(void)
{
    const char *env = getenv("DAPR_HOST_IP");
    if (env && *env)
        return xstrdup(env);
    char *first = xstrndup(opt.listen_addresses, strcspn(opt.listen_addresses, ","));
    if (!*first || strcmp(first, "0.0.0.0") == 0 || strcmp(first, "::") == 0 ||
        strcmp(first, "[::]") == 0) {
        free(first);
        return xstrdup("127.0.0.1");
    }
    return first;
}

static void free_event(struct event **ev)
{
    if (*ev) event_free(*ev);
    *ev = NULL;
}

/* Finish queued plugin work, answer what it posted, then tear down in
 * the reverse order of start-up. */
static void teardown(void)
{
    workers_stop();
    loop_drain();
    free_event(&drain_timer);
    free_event(&watchdog_timer);
    free_event(&force_timer);
    free_event(&sig_term);
    free_event(&sig_int);
    free_event(&sig_usr1);
    free_event(&sig_usr2);
    /* Client pools first: failing their queued requests answers calls
     * that still belong to the servers freed next. */
    app_channel_free();
    api_invoke_free();
    resiliency_shutdown(); /* retries waiting answer their callers now */
    http_api_free();
    nameres_shutdown();
    bindings_free();
    pubsub_free();
    components_close_all();
    secrets_free();
    plugins_unload_all();
    tracing_shutdown();
    metrics_shutdown();
    resiliency_reset();
    loop_free();
    json_decref(rt.extended);
    free(opt.resources);
    free(opt.plugin_dirs);
}

int main(int argc, char **argv)
{
    int64_t started = now_monotonic_ms();
    if (parse_options(argc, argv) != 0)
        return 2;
    log_setup((log_level)log_level_parse(opt.log_level), opt.log_as_json, opt.app_id, PACKAGE_VERSION);
    signal(SIGPIPE, SIG_IGN);
    /* A SIGTERM that arrives while starting (dapr stop right after dapr
     * run, systemd stopping a slow start) must mean a clean shutdown, not
     * death by the default action: hold it until the loop handles it.
     * Threads started meanwhile inherit the mask, so it lands here. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGUSR1); /* log level changes: held until handled too */
    sigaddset(&stop_signals, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    rt.app_id = opt.app_id;
    rt.version = PACKAGE_VERSION;
    rt.extended = json_object();
    rt.max_body_bytes = opt.max_body;
    rt.app_port = opt.app_port;
    rt.request_shutdown = request_shutdown;
    const char *token = getenv("DAPR_API_TOKEN");
    rt.api_token = token && *token ? token : NULL;

    log_info(SCOPE, "starting Dapr Runtime -- version %s -- plugin ABI %d.%d", PACKAGE_VERSION,
             DAPR_PLUGIN_ABI_MAJOR, DAPR_PLUGIN_ABI_MINOR);
    configuration config = {0};
    if (opt.config) {
        char *cerr = NULL;
        if (manifest_load_configuration(opt.config, &config, &cerr) != 0) {
            log_error(SCOPE, "fatal error loading the Configuration: %s", cerr);
            free(cerr);
            configuration_free(&config);
            return 1;
        }
        log_info(SCOPE, "loaded Configuration %s from %s", config.name, opt.config);
    }
    secrets_configure(opt.config ? &config : NULL);
    /* The flag, when given, wins over the Configuration (as in Dapr). */
    api_logging_opts alog = {
        .enabled = opt.api_logging >= 0 ? opt.api_logging : config.api_logging_enabled,
        .obfuscate_urls = config.api_logging_obfuscate_urls,
        .omit_health_checks = config.api_logging_omit_health_checks,
    };
    api_logging_configure(&alog);
    /* Metrics: on unless the flag or the Configuration turns them off.
     * Families are registered here, before any other thread starts. */
    int metrics_on = opt.enable_metrics && !config.metrics_disabled;
    if (metrics_on) {
        const char *ns = getenv("NAMESPACE");
        metrics_config mc = {.app_id = opt.app_id, .ns = ns && *ns ? ns : "default",
                             .increased_cardinality = config.metrics_increased_cardinality};
        metrics_init(&mc);
    }
    const char *app_token = getenv("APP_API_TOKEN");
    app_channel_opts ac = {
        .address = opt.app_channel_address, .port = opt.app_port, .protocol = opt.app_protocol,
        .max_concurrency = opt.app_max_concurrency, .health_check = opt.app_health_check,
        .health_path = opt.app_health_path, .health_interval_ms = opt.app_health_interval_ms,
        .health_timeout_ms = opt.app_health_timeout_ms, .health_threshold = opt.app_health_threshold,
        .app_token = app_token && *app_token ? app_token : NULL,
    };
    if (loop_init() != 0 || app_channel_init(&ac) != 0) {
        log_error(SCOPE, "cannot create the event loop or the app channel");
        configuration_free(&config);
        return 1;
    }
    api_invoke_init();
    /* Tracing (Configuration spec.tracing); its exporter thread starts
     * with the stop signals still blocked. */
    const char *tq = getenv("DAPR_TRACING_MAX_QUEUE");
    tracing_config tc = {
        .app_id = opt.app_id, .sampling_rate = config.tracing_sampling_rate,
        .zipkin_endpoint = config.tracing_zipkin_endpoint, .otel_endpoint = config.tracing_otel_endpoint,
        .otel_is_secure = config.tracing_otel_is_secure, .otel_protocol = config.tracing_otel_protocol,
        .stdout_exporter = config.tracing_stdout, .queue_max = tq ? (size_t)strtoull(tq, NULL, 10) : 0,
    };
    if (tracing_init(&tc) != 0) {
        log_error(SCOPE, "fatal error: the Configuration's tracing section cannot be honoured (see above)");
        configuration_free(&config);
        return 1;
    }
    /* Like Dapr, but a port in use is logged and daprd runs on without
     * the endpoint (Dapr exits): see README, "Metrics". */
    if (metrics_on)
        metrics_listen(opt.metrics_address, opt.metrics_port, NULL);
    if (workers_start(opt.workers ? opt.workers : 8, 4096) != 0) {
        log_error(SCOPE, "cannot start the worker threads");
        return 1;
    }
    load_plugins();

    component_list specs = {0};
    char *err = NULL;
    int rc = 0;
    if (opt.n_resources == 0) {
        rc = load_embedded_components(&specs, &err);
    } else {
        for (size_t i = 0; i < opt.n_resources && rc == 0; i++)
            rc = manifest_load_dir(opt.resources[i], opt.app_id, &specs, &err);
    }
    if (rc != 0) {
        log_error(SCOPE, "fatal error loading manifests: %s", err);
        free(err);
        component_list_free(&specs);
        configuration_free(&config);
        teardown();
        return 1;
    }
    rc = components_init_all(&specs, opt.app_id);
    if (rc == 0)
        rc = pubsub_init(&specs);
    component_list_free(&specs);
    int internal_port = 0;
    if (rc == 0)
        rc = nameres_init(opt.config ? &config : NULL, opt.app_id);
    if (rc != 0 || http_api_start(opt.listen_addresses, opt.http_port, opt.max_body) != 0 ||
        http_api_start_internal(opt.listen_addresses, opt.internal_port, opt.max_body, &internal_port) != 0) {
        log_error(SCOPE, "fatal error: daprd cannot start");
        configuration_free(&config);
        teardown();
        return 1;
    }
    configuration_free(&config);
    rt.outbound_ready = 1;
    sig_term = evsignal_new(loop_base(), SIGTERM, on_signal, NULL);
    sig_int = evsignal_new(loop_base(), SIGINT, on_signal, NULL);
    event_add(sig_term, NULL);
    event_add(sig_int, NULL);
    sig_usr1 = evsignal_new(loop_base(), SIGUSR1, on_log_level_signal, NULL);
    sig_usr2 = evsignal_new(loop_base(), SIGUSR2, on_log_level_signal, NULL);
    event_add(sig_usr1, NULL);
    event_add(sig_usr2, NULL);
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);

    dapr_nr_instance_info self = {
        .app_id = opt.app_id,
        .namespace_ = getenv("NAMESPACE") ? getenv("NAMESPACE") : "",
        .address = announce_address(),
        .internal_port = (uint16_t)internal_port,
        .http_port = (uint16_t)opt.http_port,
        .app_port = (uint16_t)opt.app_port,
    };
    nameres_announce(&self);
    free((char *)self.address);
    init_started = started;
    /* Ready once the app listens (at once without --app-port). */
    app_channel_wait_for_app(on_app_ready);

    loop_run();
    teardown();
    log_info(SCOPE, "dapr shutdown complete");
    log_redact_clear();
    return 0;
}
