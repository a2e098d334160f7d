/* cli_cmds.c - the short dapr commands: list, stop, init, uninstall, invoke,
 * publish, version. */
#define _XOPEN_SOURCE 700     /* nftw */
#include "config.h"
#include "cli.h"
#include "util.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQUEST_TIMEOUT_MS 60000

/* getopt error handling shared by the commands: our own messages in the
 * style of Dapr's CLI (cobra) instead of getopt's. */
static int bad_option(const char *cmd, int c, char **argv)
{
    if (c == ':')
        return cli_usage_error(cmd, "flag needs an argument: %s", argv[optind - 1]);
    if (optopt)
        return cli_usage_error(cmd, "unknown shorthand flag: '%c' in -%c", optopt, optopt);
    return cli_usage_error(cmd, "unknown flag: %s", argv[optind - 1]);
}

static int no_positional(const char *cmd, int argc, char **argv)
{
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument \"%s\"", argv[optind]);
    return 0;
}

/* ---- list ------------------------------------------------------------------ */

static char *age_of(long long started)
{
    long long d = (long long)time(NULL) - started;
    if (d < 0) d = 0;
    if (d >= 86400) return xasprintf("%lldd", d / 86400);
    if (d >= 3600) return xasprintf("%lldh", d / 3600);
    if (d >= 60) return xasprintf("%lldm", d / 60);
    return xasprintf("%llds", d);
}

static char *created_of(long long started)
{
    /* Dapr's CLI prints "2006-01-02 15:04.05" (sic: a dot before seconds). */
    char buf[64];
    time_t t = (time_t)started;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M.%S", &tm);
    return xstrdup(buf);
}

static json_t *entry_json(const reg_entry *e)
{
    uint64_t body = 4u << 20;
    if (e->max_body_size && *e->max_body_size) parse_quantity_bytes(e->max_body_size, &body);
    char *age = age_of(e->started), *created = created_of(e->started);
    const char *tmpl = e->run_file ? e->run_file : "";
    const char *slash = strrchr(tmpl, '/');
    json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:b, s:s, s:s, s:s, s:i, s:i, s:i, s:I, s:i, s:s, s:s, s:s, s:s}",
                          "appId", e->app_id, "httpPort", e->http_port, "grpcPort", e->grpc_port,
                          "appPort", e->app_port, "metricsEnabled", 1, "command", e->command,
                          "age", age, "created", created,
                          "daprdPid", (int)e->daprd_pid, "cliPid", (int)e->cli_pid, "appPid", (int)e->app_pid,
                          "maxRequestBodySize", (json_int_t)(body >> 20), "httpReadBufferSize", 4,
                          "runTemplatePath", tmpl, "appLogPath", e->app_log, "daprdLogPath", e->daprd_log,
                          "runTemplateName", slash ? slash + 1 : tmpl);
    free(age);
    free(created);
    return o;
}

static void print_table(reg_entry *list, size_t n)
{
    enum { NCOL = 10 };
    static const char *const head[NCOL] = { "APP ID", "HTTP PORT", "GRPC PORT", "APP PORT", "COMMAND",
                                            "AGE", "CREATED", "DAPRD PID", "CLI PID", "APP PID" };
    char **cells = xcalloc((n + 1) * NCOL, sizeof *cells);
    for (int c = 0; c < NCOL; c++) cells[c] = xstrdup(head[c]);
    for (size_t i = 0; i < n; i++) {
        reg_entry *e = &list[i];
        char **row = cells + (i + 1) * NCOL;
        row[0] = xstrdup(e->app_id);
        row[1] = xasprintf("%d", e->http_port);
        row[2] = xasprintf("%d", e->grpc_port);
        row[3] = xasprintf("%d", e->app_port);
        row[4] = xstrdup(e->command);
        row[5] = age_of(e->started);
        row[6] = created_of(e->started);
        row[7] = xasprintf("%d", (int)e->daprd_pid);
        row[8] = xasprintf("%d", (int)e->cli_pid);
        row[9] = xasprintf("%d", (int)e->app_pid);
    }
    size_t width[NCOL] = {0};
    for (size_t r = 0; r <= n; r++)
        for (int c = 0; c < NCOL; c++) {
            size_t l = strlen(cells[r * NCOL + c]);
            if (l > width[c]) width[c] = l;
        }
    for (size_t r = 0; r <= n; r++) {
        /* two leading spaces and two between columns, as Dapr's table */
        char *line = xmalloc(4096 + 1024 * NCOL), *p = line;
        p += sprintf(p, "  ");
        for (int c = 0; c < NCOL; c++)
            p += snprintf(p, 1024 + 3, "%-*.*s%s", (int)width[c], 1023, cells[r * NCOL + c], c + 1 < NCOL ? "  " : "");
        while (p > line && p[-1] == ' ') p--;
        *p = '\0';
        puts(line);
        free(line);
    }
    for (size_t i = 0; i < (n + 1) * NCOL; i++) free(cells[i]);
    free(cells);
}

int cmd_list(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"kubernetes", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}
    };
    const char *output = "table";
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:kh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'k': cli_failure("Kubernetes mode is not supported by this dapr CLI"); return 1;
        case 'h': cli_help("list", stdout); return 0;
        default: return bad_option("list", c, argv);
        }
    }
    if (no_positional("list", argc, argv)) return 1;
    if (strcmp(output, "table") && strcmp(output, "json") && strcmp(output, "yaml"))
        return cli_usage_error("list", "invalid value \"%s\" for --output: use json, yaml or table", output);
    reg_entry *list;
    size_t n;
    registry_list(&list, &n);
    if (strcmp(output, "table") == 0) {
        if (n == 0) puts("No Dapr instances found.");
        else print_table(list, n);
    } else if (strcmp(output, "json") == 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(arr, entry_json(&list[i]));
        char *s = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(arr);
    } else {
        if (n == 0) puts("[]");
        for (size_t i = 0; i < n; i++) {
            json_t *o = entry_json(&list[i]);
            const char *k;
            json_t *v;
            int first = 1;
            /* JSON scalars are valid YAML; strings keep their JSON quoting */
            json_object_foreach(o, k, v) {
                char *s = json_dumps(v, JSON_ENCODE_ANY);
                printf("%s%s: %s\n", first ? "- " : "  ", k, s);
                free(s);
                first = 0;
            }
            json_decref(o);
        }
    }
    registry_free(list, n);
    return 0;
}

/* ---- stop ------------------------------------------------------------------ */

/* Wait until the registry file is gone (the run ended) or the process died. */
static void wait_gone(const reg_entry *e, pid_t pid)
{
    for (int i = 0; i < 300; i++) {   /* up to 15 s */
        if (access(e->file, F_OK) != 0) return;
        if (kill(pid, 0) != 0 && errno == ESRCH) return;
        usleep(50000);
    }
}

int cmd_stop(int argc, char **argv)
{
    static const struct option opts[] = {
        {"app-id", required_argument, NULL, 'a'},
        {"run-file", required_argument, NULL, 'f'},
        {"kubernetes", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}
    };
    strvec ids = {0};
    const char *run_file = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":a:f:kh", opts, NULL)) != -1) {
        switch (c) {
        case 'a': {
            /* --app-id a,b as well as repeated --app-id */
            char *copy = xstrdup(optarg);
            for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                sv_push(&ids, t);
            free(copy);
            break;
        }
        case 'f': run_file = optarg; break;
        case 'k': sv_free(&ids); cli_failure("Kubernetes mode is not supported by this dapr CLI"); return 1;
        case 'h': sv_free(&ids); cli_help("stop", stdout); return 0;
        default: sv_free(&ids); return bad_option("stop", c, argv);
        }
    }
    if (no_positional("stop", argc, argv)) { sv_free(&ids); return 1; }
    if (!ids.n && !run_file) return cli_usage_error("stop", "give --app-id or --run-file");

    reg_entry *list;
    size_t n;
    registry_list(&list, &n);
    int rc = 0;
    for (size_t i = 0; i < ids.n; i++) {
        int found = 0;
        for (size_t k = 0; k < n; k++) {
            reg_entry *e = &list[k];
            if (strcmp(e->app_id, ids.v[i]) != 0) continue;
            found = 1;
            /* A single run stops as a whole when its CLI process gets
             * SIGTERM.  One app of a template run is stopped through its
             * daprd: the CLI then stops that app and keeps the others. */
            pid_t target = *e->run_file && e->daprd_pid > 0 ? e->daprd_pid : e->cli_pid;
            if (kill(target, SIGTERM) != 0 && errno != ESRCH) {
                cli_failure("failed to stop app id %s: %s", ids.v[i], strerror(errno));
                rc = 1;
                continue;
            }
            wait_gone(e, e->cli_pid);
        }
        if (found) cli_success("app stopped successfully: %s", ids.v[i]);
        else { cli_failure("failed to stop app id %s: couldn't find app id %s", ids.v[i], ids.v[i]); rc = 1; }
    }
    if (run_file) {
        char *file = path_is_dir(run_file) ? xasprintf("%s/dapr.yaml", run_file) : xstrdup(run_file);
        char real[PATH_MAX];
        int found = 0;
        if (realpath(file, real)) {
            for (size_t k = 0; k < n; k++) {
                if (strcmp(list[k].run_file, real) != 0) continue;
                found = 1;
                kill(list[k].cli_pid, SIGTERM);
            }
            for (size_t k = 0; k < n; k++)
                if (strcmp(list[k].run_file, real) == 0) wait_gone(&list[k], list[k].cli_pid);
        }
        if (found) cli_success("Dapr and app processes stopped successfully");
        else { cli_failure("no running apps were started from %s", file); rc = 1; }
        free(file);
    }
    registry_free(list, n);
    sv_free(&ids);
    return rc;
}

/* ---- init / uninstall -------------------------------------------------------- */

static char *statestore_yaml(void)
{
    char *db = dapr_home_path("state.db");
    json_t *s = json_string(db);
    /* a JSON string is a valid YAML double-quoted scalar */
    char *quoted = json_dumps(s, JSON_ENCODE_ANY);
    char *y = xasprintf("apiVersion: dapr.io/v1alpha1\n"
                        "kind: Component\n"
                        "metadata:\n"
                        "  name: statestore\n"
                        "spec:\n"
                        "  type: state.sqlite\n"
                        "  version: v1\n"
                        "  metadata:\n"
                        "  - name: connectionString\n"
                        "    value: %s\n"
                        "  - name: actorStateStore\n"
                        "    value: \"true\"\n", quoted);
    free(quoted);
    json_decref(s);
    free(db);
    return y;
}

/* Process-local: each sidecar has its own broker (Dapr's init writes a
 * Redis one; there is no container here to run Redis in). */
static const char pubsub_yaml[] =
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: pubsub\n"
    "spec:\n"
    "  type: pubsub.in-memory\n"
    "  version: v1\n";

static const char config_yaml[] =
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Configuration\n"
    "metadata:\n"
    "  name: daprConfig\n"
    "spec: {}\n";

static int write_file(const char *path, const char *text, int force)
{
    if (!force && access(path, F_OK) == 0) {
        cli_info("Keeping existing %s (dapr init --force overwrites it)", path);
        return 0;
    }
    char *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        cli_failure("cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    } else {
        cli_info("Wrote %s", path);
    }
    free(tmp);
    return ok ? 0 : -1;
}

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"slim", no_argument, NULL, 's'},
        {"force", no_argument, NULL, 'F'},
        {"kubernetes", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}
    };
    int force = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":skh", opts, NULL)) != -1) {
        switch (c) {
        case 's': break;          /* always slim: no containers */
        case 'F': force = 1; break;
        case 'k': cli_failure("Kubernetes mode is not supported by this dapr CLI"); return 1;
        case 'h': cli_help("init", stdout); return 0;
        default: return bad_option("init", c, argv);
        }
    }
    if (no_positional("init", argc, argv)) return 1;
    char *home = dapr_home(), *comp = dapr_home_path("components");
    char *store = dapr_home_path("components/statestore.yaml"), *config = dapr_home_path("config.yaml");
    char *pubsub = dapr_home_path("components/pubsub.yaml");
    int rc = 1;
    if (!home) {
        cli_failure("HOME is not set: cannot find ~/.dapr");
    } else if (mkdir_p(comp, 0755) != 0) {
        cli_failure("cannot create %s: %s", comp, strerror(errno));
    } else {
        cli_info("Making the jump to hyperspace...");
        char *y = statestore_yaml();
        rc = write_file(store, y, force) | write_file(pubsub, pubsub_yaml, force) |
             write_file(config, config_yaml, force) ? 1 : 0;
        free(y);
        if (rc == 0)
            cli_success("Success! Dapr is up and running. Components are in %s, the configuration is %s", comp, config);
    }
    free(home);
    free(comp);
    free(store);
    free(pubsub);
    free(config);
    return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    int rc = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    if (rc != 0) cli_warn("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

int cmd_uninstall(int argc, char **argv)
{
    static const struct option opts[] = {
        {"all", no_argument, NULL, 'A'},
        {"kubernetes", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}
    };
    int all = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":kh", opts, NULL)) != -1) {
        switch (c) {
        case 'A': all = 1; break;
        case 'k': cli_failure("Kubernetes mode is not supported by this dapr CLI"); return 1;
        case 'h': cli_help("uninstall", stdout); return 0;
        default: return bad_option("uninstall", c, argv);
        }
    }
    if (no_positional("uninstall", argc, argv)) return 1;
    char *home = dapr_home();
    if (!home) { cli_failure("HOME is not set: cannot find ~/.dapr"); return 1; }
    cli_info("Removing Dapr from your machine...");
    if (all) {
        if (access(home, F_OK) == 0) {
            nftw(home, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
            cli_info("Removed %s", home);
        }
    } else {
        const char *files[] = { "components/statestore.yaml", "components/pubsub.yaml", "config.yaml" };
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char *p = dapr_home_path(files[i]);
            if (unlink(p) == 0) cli_info("Removed %s", p);
            else if (errno != ENOENT) cli_warn("cannot remove %s: %s", p, strerror(errno));
            free(p);
        }
        char *comp = dapr_home_path("components");
        rmdir(comp);   /* only when empty: other files are the user's */
        free(comp);
    }
    cli_success("Dapr has been removed successfully");
    free(home);
    return 0;
}

/* ---- invoke / publish ----------------------------------------------------------- */

static int read_data_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) { cli_failure("cannot read %s: %s", path, strerror(errno)); return -1; }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) { cap *= 2; buf = xrealloc(buf, cap); }
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

/* The sidecar HTTP port of a running app, from the registry; -1 if none. */
static int port_of(const char *app_id)
{
    reg_entry *list;
    size_t n;
    int port = -1;
    registry_list(&list, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].app_id, app_id) == 0) { port = list[i].http_port; break; }
    registry_free(list, n);
    return port;
}

static int parse_port_arg(const char *cmd, const char *v, int *out)
{
    int64_t p;
    if (parse_int64(v, &p) != 0 || p <= 0 || p > 65535)
        return cli_usage_error(cmd, "invalid port \"%s\"", v);
    *out = (int)p;
    return 0;
}

static void print_body(const http_result *res)
{
    if (!res->body_len) return;
    fwrite(res->body, 1, res->body_len, stdout);
    if (res->body[res->body_len - 1] != '\n') fputc('\n', stdout);
    fflush(stdout);
}

int cmd_invoke(int argc, char **argv)
{
    static const struct option opts[] = {
        {"app-id", required_argument, NULL, 'a'},
        {"method", required_argument, NULL, 'm'},
        {"verb", required_argument, NULL, 'v'},
        {"data", required_argument, NULL, 'd'},
        {"data-file", required_argument, NULL, 'f'},
        {"dapr-http-port", required_argument, NULL, 'H'},
        {"unix-domain-socket", required_argument, NULL, 'u'},
        {"kubernetes", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}
    };
    const char *app_id = NULL, *method = NULL, *verb = "POST", *data = NULL, *data_file = NULL;
    int port = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":a:m:v:d:f:H:u:kh", opts, NULL)) != -1) {
        switch (c) {
        case 'a': app_id = optarg; break;
        case 'm': method = optarg; break;
        case 'v': verb = optarg; break;
        case 'd': data = optarg; break;
        case 'f': data_file = optarg; break;
        case 'H': if (parse_port_arg("invoke", optarg, &port)) return 1; break;
        case 'u': cli_failure("--unix-domain-socket is not supported by this dapr CLI"); return 1;
        case 'k': cli_failure("Kubernetes mode is not supported by this dapr CLI"); return 1;
        case 'h': cli_help("invoke", stdout); return 0;
        default: return bad_option("invoke", c, argv);
        }
    }
    if (no_positional("invoke", argc, argv)) return 1;
    if (!app_id) return cli_usage_error("invoke", "required flag \"app-id\" not set");
    if (!method) return cli_usage_error("invoke", "required flag \"method\" not set");
    if (data && data_file) return cli_usage_error("invoke", "only one of --data and --data-file allowed");
    static const char *const verbs[] = { "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT" };
    char *uverb = xstrdup(verb);
    for (char *p = uverb; *p; p++) if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 32);
    int known = 0;
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++) if (strcmp(verbs[i], uverb) == 0) known = 1;
    if (!known) { free(uverb); return cli_usage_error("invoke", "invalid verb \"%s\"", verb); }
    if (!port) port = port_of(app_id);
    if (port <= 0) {
        free(uverb);
        cli_failure("error invoking app %s: app ID %s not found (is it running with dapr run?)", app_id, app_id);
        return 1;
    }
    char *body = NULL;
    size_t blen = 0;
    if (data) { body = xstrdup(data); blen = strlen(data); }
    else if (data_file && read_data_file(data_file, &body, &blen) != 0) { free(uverb); return 1; }
    while (*method == '/') method++;
    char *path = xasprintf("/v1.0/invoke/%s/method/%s", app_id, method);
    http_result res;
    int rc = 1;
    if (http_request(port, uverb, path, body ? "application/json" : NULL, body, blen, REQUEST_TIMEOUT_MS, &res) != 0) {
        cli_failure("error invoking app %s: %s", app_id, res.error);
    } else if (res.status < 200 || res.status > 299) {
        cli_failure("error invoking app %s: %d %s", app_id, res.status, res.body_len ? res.body : "");
    } else {
        print_body(&res);
        cli_success("App invoked successfully");
        rc = 0;
    }
    http_result_free(&res);
    free(path);
    free(body);
    free(uverb);
    return rc;
}

int cmd_publish(int argc, char **argv)
{
    static const struct option opts[] = {
        {"publish-app-id", required_argument, NULL, 'i'},
        {"pubsub", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"data", required_argument, NULL, 'd'},
        {"data-file", required_argument, NULL, 'f'},
        {"metadata", required_argument, NULL, 'm'},
        {"dapr-http-port", required_argument, NULL, 'H'},
        {"unix-domain-socket", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}
    };
    const char *app_id = NULL, *pubsub = NULL, *topic = NULL, *data = NULL, *data_file = NULL, *meta = NULL;
    int port = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":i:p:t:d:f:m:H:u:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': app_id = optarg; break;
        case 'p': pubsub = optarg; break;
        case 't': topic = optarg; break;
        case 'd': data = optarg; break;
        case 'f': data_file = optarg; break;
        case 'm': meta = optarg; break;
        case 'H': if (parse_port_arg("publish", optarg, &port)) return 1; break;
        case 'u': cli_failure("--unix-domain-socket is not supported by this dapr CLI"); return 1;
        case 'h': cli_help("publish", stdout); return 0;
        default: return bad_option("publish", c, argv);
        }
    }
    if (no_positional("publish", argc, argv)) return 1;
    if (!app_id) return cli_usage_error("publish", "required flag \"publish-app-id\" not set");
    if (!pubsub) return cli_usage_error("publish", "required flag \"pubsub\" not set");
    if (!topic) return cli_usage_error("publish", "required flag \"topic\" not set");
    if (data && data_file) return cli_usage_error("publish", "only one of --data and --data-file allowed");
    /* --metadata '{"ttlInSeconds":"10"}' becomes ?metadata.ttlInSeconds=10 */
    char *query = xstrdup("");
    if (meta) {
        json_t *m = json_loads(meta, 0, NULL);
        if (!json_is_object(m)) {
            json_decref(m);
            free(query);
            return cli_usage_error("publish", "--metadata must be a JSON object");
        }
        const char *k;
        json_t *v;
        json_object_foreach(m, k, v) {
            char *val = json_is_string(v) ? xstrdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY);
            char *q = xasprintf("%s%cmetadata.%s=%s", query, *query ? '&' : '?', k, val);
            free(query);
            free(val);
            query = q;
        }
        json_decref(m);
    }
    if (!port) port = port_of(app_id);
    if (port <= 0) {
        free(query);
        cli_failure("error publishing: app ID %s not found (is it running with dapr run?)", app_id);
        return 1;
    }
    char *body = NULL;
    size_t blen = 0;
    if (data) { body = xstrdup(data); blen = strlen(data); }
    else if (data_file && read_data_file(data_file, &body, &blen) != 0) { free(query); return 1; }
    /* JSON data goes as application/json (the sidecar wraps it in a
     * CloudEvent); anything else as text. */
    const char *ctype = NULL;
    if (body) {
        json_t *probe = json_loadb(body, blen, JSON_DECODE_ANY, NULL);
        ctype = probe ? "application/json" : "text/plain";
        json_decref(probe);
    }
    char *path = xasprintf("/v1.0/publish/%s/%s%s", pubsub, topic, query);
    http_result res;
    int rc = 1;
    if (http_request(port, "POST", path, ctype, body, blen, REQUEST_TIMEOUT_MS, &res) != 0) {
        cli_failure("error publishing to %s/%s: %s", pubsub, topic, res.error);
    } else if (res.status < 200 || res.status > 299) {
        cli_failure("error publishing to %s/%s: %d %s", pubsub, topic, res.status, res.body_len ? res.body : "");
    } else {
        cli_success("Event published successfully");
        rc = 0;
    }
    http_result_free(&res);
    free(path);
    free(body);
    free(query);
    return rc;
}

/* ---- version ---------------------------------------------------------------- */

static char *runtime_version(void)
{
    char *daprd = find_daprd();
    if (!daprd) return xstrdup("n/a");
    /* fork+exec rather than popen: no shell between us and the path */
    int p[2];
    char buf[256] = "";
    if (pipe(p) == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], STDOUT_FILENO);
            close(p[0]);
            close(p[1]);
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) dup2(devnull, STDERR_FILENO);
            execl(daprd, daprd, "--version", (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        size_t n = 0;
        ssize_t r;
        while (pid > 0 && n < sizeof buf - 1 && (r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
        buf[n] = '\0';
        close(p[0]);
        if (pid > 0) waitpid(pid, NULL, 0);
    }
    free(daprd);
    buf[strcspn(buf, "\r\n")] = '\0';
    return xstrdup(*buf ? buf : "n/a");
}

int cmd_version(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}
    };
    const char *output = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'h': cli_help("version", stdout); return 0;
        default: return bad_option("version", c, argv);
        }
    }
    if (no_positional("version", argc, argv)) return 1;
    if (output && strcmp(output, "json") != 0)
        return cli_usage_error("version", "invalid value \"%s\" for --output: only json", output);
    char *rt = runtime_version();
    if (output) {
        json_t *o = json_pack("{s:s, s:s}", "Cli version", PACKAGE_VERSION, "Runtime version", rt);
        char *s = json_dumps(o, JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("CLI version: %s \nRuntime version: %s\n", PACKAGE_VERSION, rt);
    }
    free(rt);
    return 0;
}
