/*
 * dapr.c - the `dapr` command line tool (self-hosted mode, no Docker).
 *
 * Commands, flags, short forms and output follow Dapr's own CLI:
 *   dapr run [flags] [--] [COMMAND ARGS...]   start daprd (and the app)
 *   dapr run -f dapr.yaml                     multi-app run template
 *   dapr list | stop | init | uninstall | invoke | publish | version | help
 * This file holds the command dispatch, `dapr run`'s flags and the help
 * texts; the work is in cli_*.c.
 */
#include "config.h"
#include "cli.h"
#include "util.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- help -------------------------------------------------------------------- */

typedef struct help_entry {
    const char *name;
    const char *summary;
    const char *text;
} help_entry;

static const help_entry helps[] = {
    { "run", "Run Dapr and (optionally) your application side by side",
      "Usage:\n"
      "  dapr run [flags] [--] [command]\n"
      "\n"
      "Starts daprd, waits until GET /v1.0/healthz/outbound answers 204, then starts\n"
      "the command (if any) with DAPR_HTTP_PORT, DAPR_GRPC_PORT, APP_ID, APP_PORT,\n"
      "APP_PROTOCOL, APP_CHANNEL_ADDRESS and DAPR_METRICS_PORT set.  App output is\n"
      "prefixed with \"== APP == \"; daprd's lines are printed as they are.  SIGINT and\n"
      "SIGTERM stop both; when either ends the other is stopped.  The exit code is\n"
      "the app's (daprd's when there is no command).\n"
      "\n"
      "Flags:\n"
      "  -a, --app-id string                 the app id (generated when absent; no dots)\n"
      "  -p, --app-port int                  the port the app listens on\n"
      "  -P, --app-protocol string           http, https, grpc, grpcs or h2c (default \"http\")\n"
      "      --app-channel-address string    address the app listens on (default \"127.0.0.1\")\n"
      "  -H, --dapr-http-port int            daprd's HTTP port (default: a free port)\n"
      "  -G, --dapr-grpc-port int            daprd's gRPC port (default: a free port)\n"
      "  -I, --dapr-internal-grpc-port int   sidecar-to-sidecar port (default: a free port)\n"
      "  -M, --metrics-port int              metrics port (default: a free port)\n"
      "  -c, --config string                 Configuration file (default ~/.dapr/config.yaml if present)\n"
      "  -d, --resources-path string         resources folder, repeatable\n"
      "                                      (default ~/.dapr/components if present)\n"
      "      --components-path string        deprecated alias of --resources-path\n"
      "      --log-level string              debug, info, warn, error, fatal or panic (default \"info\")\n"
      "      --enable-api-logging            log every API call\n"
      "      --app-max-concurrency int       in-flight requests to the app (default unlimited)\n"
      "      --max-body-size string          largest request body, e.g. 4Mi\n"
      "      --dapr-http-max-request-size int  legacy form of --max-body-size, in MB\n"
      "      --read-buffer-size string       HTTP header buffer, e.g. 4Ki\n"
      "      --dapr-listen-addresses string  addresses daprd listens on\n"
      "      --enable-app-health-check       probe the app's health endpoint\n"
      "      --app-health-check-path string  (default \"/healthz\")\n"
      "      --app-health-probe-interval int seconds between probes (default 5)\n"
      "      --app-health-probe-timeout int  milliseconds per probe (default 500)\n"
      "      --app-health-threshold int      failures before unhealthy (default 3)\n"
      "  -f, --run-file string               multi-app run template (a file, or a folder with dapr.yaml)\n"
      "  -u, --unix-domain-socket string     not supported: refused\n"
      "      --enable-profiling, --profile-port, --placement-host-address,\n"
      "      --scheduler-host-address        accepted for compatibility; no effect\n"
      "  -h, --help                          help for run\n"
      "\n"
      "daprd is $DAPR_DAPRD, else the daprd next to this dapr, else daprd on PATH.\n"
      "Plugins: daprd reads DAPR_PLUGINS_PATH when set; otherwise a dapr run from a\n"
      "build tree passes its plugins/*/.libs folders, an installed one the plugin folder.\n"
      "\n"
      "Examples:\n"
      "  dapr run --app-id myapp --app-port 3000 -- python3 app.py\n"
      "  dapr run --app-id myapp                       # daprd alone\n"
      "  dapr run -f ./dapr.yaml\n" },
    { "list", "List all Dapr instances",
      "Usage:\n"
      "  dapr list [flags]\n"
      "\n"
      "Lists the apps started by dapr run on this machine (from ~/.dapr/run).\n"
      "\n"
      "Flags:\n"
      "  -o, --output string   json, yaml or table (default \"table\")\n"
      "  -h, --help            help for list\n" },
    { "stop", "Stop Dapr instances and their associated apps",
      "Usage:\n"
      "  dapr stop [flags]\n"
      "\n"
      "Flags:\n"
      "  -a, --app-id string     the app id to stop (repeatable, or a comma list)\n"
      "  -f, --run-file string   stop every app started from this run template\n"
      "  -h, --help              help for stop\n" },
    { "init", "Install Dapr's default components and configuration in ~/.dapr",
      "Usage:\n"
      "  dapr init [flags]\n"
      "\n"
      "Writes ~/.dapr/components/statestore.yaml (state.sqlite in ~/.dapr/state.db,\n"
      "actorStateStore), ~/.dapr/components/pubsub.yaml (pubsub.in-memory, local to\n"
      "each sidecar) and ~/.dapr/config.yaml (Configuration daprConfig).  No\n"
      "containers are started (always like Dapr's --slim).  Existing files are kept.\n"
      "\n"
      "Flags:\n"
      "      --slim    accepted: initialisation is always slim\n"
      "      --force   overwrite files written by an earlier init\n"
      "  -h, --help    help for init\n" },
    { "uninstall", "Remove what dapr init wrote",
      "Usage:\n"
      "  dapr uninstall [flags]\n"
      "\n"
      "Removes ~/.dapr/components/statestore.yaml, ~/.dapr/components/pubsub.yaml\n"
      "and ~/.dapr/config.yaml; other files are kept.\n"
      "\n"
      "Flags:\n"
      "      --all    remove the whole ~/.dapr folder\n"
      "  -h, --help   help for uninstall\n" },
    { "invoke", "Invoke a method on a given Dapr application",
      "Usage:\n"
      "  dapr invoke [flags]\n"
      "\n"
      "Calls /v1.0/invoke/<app-id>/method/<method> on the app's sidecar (found with\n"
      "dapr list) and prints the response body.  A non-2xx answer is an error.\n"
      "\n"
      "Flags:\n"
      "  -a, --app-id string       the app id to invoke\n"
      "  -m, --method string       the method to invoke\n"
      "  -v, --verb string         the HTTP verb (default \"POST\")\n"
      "  -d, --data string         the JSON body\n"
      "  -f, --data-file string    a file holding the body\n"
      "  -H, --dapr-http-port int  send through this sidecar instead\n"
      "  -h, --help                help for invoke\n" },
    { "publish", "Publish a pub-sub event",
      "Usage:\n"
      "  dapr publish [flags]\n"
      "\n"
      "Flags:\n"
      "  -i, --publish-app-id string  the app whose sidecar publishes\n"
      "  -p, --pubsub string          the pub/sub component name\n"
      "  -t, --topic string           the topic\n"
      "  -d, --data string            the event data (JSON, or text)\n"
      "  -f, --data-file string       a file holding the event data\n"
      "  -m, --metadata string        a JSON object of metadata\n"
      "  -H, --dapr-http-port int     send through this sidecar instead\n"
      "  -h, --help                   help for publish\n" },
    { "version", "Print the Dapr runtime and CLI version",
      "Usage:\n"
      "  dapr version [flags]\n"
      "\n"
      "Flags:\n"
      "  -o, --output string   json\n"
      "  -h, --help            help for version\n" },
    { "help", "Help about any command",
      "Usage:\n"
      "  dapr help [command]\n" },
};

int cli_help(const char *cmd, FILE *out)
{
    if (!cmd) {
        fprintf(out,
                "Dapr CLI %s: run Dapr apps on this machine (self-hosted mode).\n"
                "\n"
                "Usage:\n"
                "  dapr [command]\n"
                "\n"
                "Available Commands:\n", PACKAGE_VERSION);
        for (size_t i = 0; i < sizeof helps / sizeof *helps; i++)
            fprintf(out, "  %-12s%s\n", helps[i].name, helps[i].summary);
        fprintf(out,
                "\n"
                "Flags:\n"
                "  -h, --help      help for dapr\n"
                "  -v, --version   version for dapr\n"
                "\n"
                "Use \"dapr [command] --help\" for more information about a command.\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof helps / sizeof *helps; i++)
        if (strcmp(helps[i].name, cmd) == 0) {
            fprintf(out, "%s\n\n%s", helps[i].summary, helps[i].text);
            return 0;
        }
    return -1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("Error: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'dapr %s%s--help' for usage.\n", cmd ? cmd : "", cmd ? " " : "");
    return 1;
}

/* ---- dapr run ------------------------------------------------------------------- */

enum {
    O_CHANNEL = 256, O_COMPONENTS, O_LOG_LEVEL, O_API_LOG, O_MAX_CONC, O_MAX_BODY, O_MAX_REQ_MB,
    O_READ_BUF, O_LISTEN, O_HEALTH, O_HEALTH_PATH, O_HEALTH_INTERVAL, O_HEALTH_TIMEOUT,
    O_HEALTH_THRESHOLD, O_IGNORED, O_IGNORED_BOOL
};

static int parse_port(const char *flag, const char *v, int *out)
{
    int64_t p;
    if (parse_int64(v, &p) != 0 || p <= 0 || p > 65535)
        return cli_usage_error("run", "invalid argument \"%s\" for \"%s\": not a port number", v, flag);
    *out = (int)p;
    return 0;
}

static int bool_arg(const char *flag, const char *v, int *out)
{
    int b = v ? parse_bool(v) : 1;
    if (b < 0) return cli_usage_error("run", "invalid argument \"%s\" for \"%s\": not true or false", v, flag);
    *out = b;
    return 0;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = xstrdup(v);
}

static int int_arg(const char *flag, const char *v, int64_t min)
{
    int64_t x;
    if (parse_int64(v, &x) != 0 || x < min)
        return cli_usage_error("run", "invalid argument \"%s\" for \"%s\": not a number", v, flag);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"app-id", required_argument, NULL, 'a'},
        {"app-port", required_argument, NULL, 'p'},
        {"app-protocol", required_argument, NULL, 'P'},
        {"app-channel-address", required_argument, NULL, O_CHANNEL},
        {"dapr-http-port", required_argument, NULL, 'H'},
        {"dapr-grpc-port", required_argument, NULL, 'G'},
        {"dapr-internal-grpc-port", required_argument, NULL, 'I'},
        {"metrics-port", required_argument, NULL, 'M'},
        {"config", required_argument, NULL, 'c'},
        {"resources-path", required_argument, NULL, 'd'},
        {"components-path", required_argument, NULL, O_COMPONENTS},
        {"log-level", required_argument, NULL, O_LOG_LEVEL},
        {"enable-api-logging", optional_argument, NULL, O_API_LOG},
        {"app-max-concurrency", required_argument, NULL, O_MAX_CONC},
        {"max-body-size", required_argument, NULL, O_MAX_BODY},
        {"dapr-http-max-request-size", required_argument, NULL, O_MAX_REQ_MB},
        {"read-buffer-size", required_argument, NULL, O_READ_BUF},
        {"dapr-listen-addresses", required_argument, NULL, O_LISTEN},
        {"enable-app-health-check", optional_argument, NULL, O_HEALTH},
        {"app-health-check-path", required_argument, NULL, O_HEALTH_PATH},
        {"app-health-probe-interval", required_argument, NULL, O_HEALTH_INTERVAL},
        {"app-health-probe-timeout", required_argument, NULL, O_HEALTH_TIMEOUT},
        {"app-health-threshold", required_argument, NULL, O_HEALTH_THRESHOLD},
        {"unix-domain-socket", required_argument, NULL, 'u'},
        {"run-file", required_argument, NULL, 'f'},
        {"kubernetes", no_argument, NULL, 'k'},
        {"enable-profiling", optional_argument, NULL, O_IGNORED_BOOL},
        {"profile-port", required_argument, NULL, O_IGNORED},
        {"placement-host-address", required_argument, NULL, O_IGNORED},
        {"scheduler-host-address", required_argument, NULL, O_IGNORED},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}
    };
    app_spec a;
    app_spec_init(&a);
    const char *run_file = NULL;
    int c, rc = -1;
    optind = 1;
    opterr = 0;
    /* '+': the first non-flag word starts the app command, so the app's own
     * flags need no "--" (as with Dapr's CLI). */
    while (rc < 0 && (c = getopt_long(argc, argv, "+:a:p:P:H:G:I:M:c:d:u:f:kh", opts, NULL)) != -1) {
        int dummy;
        switch (c) {
        case 'a': set_str(&a.app_id, optarg); break;
        case 'p': if (parse_port("--app-port", optarg, &a.app_port)) rc = 1; break;
        case 'P':
            if (strcmp(optarg, "http") && strcmp(optarg, "https") && strcmp(optarg, "grpc") &&
                strcmp(optarg, "grpcs") && strcmp(optarg, "h2c"))
                rc = cli_usage_error("run", "invalid --app-protocol \"%s\": use http, https, grpc, grpcs or h2c", optarg);
            else set_str(&a.app_protocol, optarg);
            break;
        case O_CHANNEL: set_str(&a.app_channel_address, optarg); break;
        case 'H': if (parse_port("--dapr-http-port", optarg, &a.http_port)) rc = 1; break;
        case 'G': if (parse_port("--dapr-grpc-port", optarg, &a.grpc_port)) rc = 1; break;
        case 'I': if (parse_port("--dapr-internal-grpc-port", optarg, &a.internal_port)) rc = 1; break;
        case 'M': if (parse_port("--metrics-port", optarg, &a.metrics_port)) rc = 1; break;
        case 'c': free(a.config); a.config = path_abs(NULL, optarg); break;
        case 'd':
        case O_COMPONENTS: {
            char *p = path_abs(NULL, optarg);
            sv_push(&a.resources, p);
            free(p);
            break;
        }
        case O_LOG_LEVEL:
            if (strcmp(optarg, "debug") && strcmp(optarg, "info") && strcmp(optarg, "warn") &&
                strcmp(optarg, "error") && strcmp(optarg, "fatal") && strcmp(optarg, "panic"))
                rc = cli_usage_error("run", "invalid --log-level \"%s\": use debug, info, warn, error, fatal or panic", optarg);
            else set_str(&a.log_level, optarg);
            break;
        case O_API_LOG: if (bool_arg("--enable-api-logging", optarg, &a.enable_api_logging)) rc = 1; break;
        case O_MAX_CONC:
            if (int_arg("--app-max-concurrency", optarg, -1)) rc = 1;
            else set_str(&a.app_max_concurrency, optarg);
            break;
        case O_MAX_BODY: {
            uint64_t b;
            if (parse_quantity_bytes(optarg, &b) != 0)
                rc = cli_usage_error("run", "invalid --max-body-size \"%s\": use a quantity such as 4Mi", optarg);
            else set_str(&a.max_body_size, optarg);
            break;
        }
        case O_MAX_REQ_MB:
            if (int_arg("--dapr-http-max-request-size", optarg, 1)) rc = 1;
            else { free(a.max_body_size); a.max_body_size = xasprintf("%sMi", optarg); }
            break;
        case O_READ_BUF: set_str(&a.read_buffer_size, optarg); break;
        case O_LISTEN: set_str(&a.listen_addresses, optarg); break;
        case O_HEALTH: if (bool_arg("--enable-app-health-check", optarg, &a.enable_health_check)) rc = 1; break;
        case O_HEALTH_PATH: set_str(&a.health_path, optarg); break;
        case O_HEALTH_INTERVAL:
            if (int_arg("--app-health-probe-interval", optarg, 1)) rc = 1;
            else set_str(&a.health_interval, optarg);
            break;
        case O_HEALTH_TIMEOUT:
            if (int_arg("--app-health-probe-timeout", optarg, 1)) rc = 1;
            else set_str(&a.health_timeout, optarg);
            break;
        case O_HEALTH_THRESHOLD:
            if (int_arg("--app-health-threshold", optarg, 1)) rc = 1;
            else set_str(&a.health_threshold, optarg);
            break;
        case 'u':
            cli_failure("--unix-domain-socket is not supported by this daprd: it serves TCP only");
            rc = 1;
            break;
        case 'f': run_file = optarg; break;
        case 'k': cli_failure("Kubernetes mode is not supported by this dapr CLI"); rc = 1; break;
        case O_IGNORED: break;
        case O_IGNORED_BOOL: if (bool_arg("--enable-profiling", optarg, &dummy)) rc = 1; break;
        case 'h': cli_help("run", stdout); rc = 0; break;
        case ':': rc = cli_usage_error("run", "flag needs an argument: %s", argv[optind - 1]); break;
        default:
            if (optopt) rc = cli_usage_error("run", "unknown shorthand flag: '%c' in -%c", optopt, optopt);
            else rc = cli_usage_error("run", "unknown flag: %s", argv[optind - 1]);
            break;
        }
    }
    if (rc >= 0) { app_spec_free(&a); return rc; }
    for (int i = optind; i < argc; i++) sv_push(&a.command, argv[i]);

    if (run_file) {
        if (a.command.n) {
            app_spec_free(&a);
            return cli_usage_error("run", "a run template (-f) and an app command cannot be used together");
        }
        app_spec_free(&a);
        app_spec *apps;
        size_t n;
        if (runfile_load(run_file, &apps, &n) != 0) return 1;
        rc = run_apps(apps, n, 1);
        for (size_t i = 0; i < n; i++) app_spec_free(&apps[i]);
        free(apps);
        return rc;
    }
    if (a.app_id && strchr(a.app_id, '.')) {
        app_spec_free(&a);
        return cli_usage_error("run", "invalid app id: it cannot contain dots");
    }
    if (a.app_id && !*a.app_id) {
        app_spec_free(&a);
        return cli_usage_error("run", "invalid app id: it cannot be empty");
    }
    if (!a.app_id) a.app_id = generate_app_id();
    rc = run_apps(&a, 1, 0);
    app_spec_free(&a);
    return rc;
}

/* ---- main ------------------------------------------------------------------------ */

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
} command;

static const command commands[] = {
    { "run", cmd_run }, { "list", cmd_list }, { "stop", cmd_stop }, { "init", cmd_init },
    { "uninstall", cmd_uninstall }, { "invoke", cmd_invoke }, { "publish", cmd_publish },
    { "version", cmd_version },
};

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cli_help(NULL, stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0)
        return cmd_version(1, (char *[]){ "version", NULL });
    if (strcmp(argv[1], "help") == 0) {
        if (argc < 3) { cli_help(NULL, stdout); return 0; }
        if (cli_help(argv[2], stdout) == 0) return 0;
        fprintf(stderr, "Error: unknown help topic \"%s\"\nRun 'dapr --help' for usage.\n", argv[2]);
        return 1;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(commands[i].name, argv[1]) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    if (argv[1][0] == '-')
        fprintf(stderr, "Error: unknown flag: %s\nRun 'dapr --help' for usage.\n", argv[1]);
    else
        fprintf(stderr, "Error: unknown command \"%s\" for \"dapr\"\nRun 'dapr --help' for usage.\n", argv[1]);
    return 1;
}
