/*
 * cli_runfile.c - app specs, and Dapr's multi-app run template (dapr.yaml)
 * read with libyaml.
 *
 *   version: 1
 *   common: {resourcesPath, resourcesPaths, configFilePath, env, appProtocol, ...}
 *   apps:
 *   - appID: a            (default: the base name of appDirPath)
 *     appDirPath: ./a/    (required; the app's working folder)
 *     command: ["python3", "app.py"]
 *     appPort, daprHTTPPort, daprGRPCPort, daprInternalGRPCPort, metricsPort,
 *     resourcesPath(s), configFilePath, env, appProtocol, appChannelAddress,
 *     logLevel, enableApiLogging, appMaxConcurrency, appHealthCheckPath, ...
 *     appLogDestination / daprdLogDestination: console | file | fileAndConsole
 *
 * Relative paths are relative to the template's folder.  Conventions as in
 * Dapr: without resources or config, <appDirPath>/.dapr/resources and
 * <appDirPath>/.dapr/config.yaml are used when they exist, else the ~/.dapr
 * defaults; log files go to <appDirPath>/.dapr/logs.  Keys we do not know
 * (containerImage, ...) are ignored, as Dapr's YAML decoding does.
 */
#include "config.h"
#include "cli.h"
#include "util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

void app_spec_init(app_spec *a)
{
    memset(a, 0, sizeof *a);
    a->enable_api_logging = -1;
    a->enable_health_check = -1;
}

void app_spec_free(app_spec *a)
{
    char **strs[] = { &a->app_id, &a->app_protocol, &a->app_channel_address, &a->config, &a->log_level,
                      &a->app_max_concurrency, &a->max_body_size, &a->read_buffer_size,
                      &a->listen_addresses, &a->health_path, &a->health_interval, &a->health_timeout,
                      &a->health_threshold, &a->dir, &a->run_file, &a->log_dir };
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) { free(*strs[i]); *strs[i] = NULL; }
    sv_free(&a->resources);
    sv_free(&a->command);
    sv_free(&a->env);
}

/* ---- YAML helpers ------------------------------------------------------------ */

typedef struct ctx {
    yaml_document_t *doc;
    const char *file;
    const char *base;     /* the template's folder */
} ctx;

static yaml_node_t *node(ctx *c, int id) { return yaml_document_get_node(c->doc, id); }

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *map_get(ctx *c, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(c, p->key));
        if (k && strcmp(k, key) == 0) return node(c, p->value);
    }
    return NULL;
}

static int err(ctx *c, const char *what, const char *field, const char *msg)
{
    cli_failure("%s: %s%s%s: %s", c->file, what, field ? ": " : "", field ? field : "", msg);
    return -1;
}

static int get_str(ctx *c, yaml_node_t *m, const char *key, char **out, const char *what)
{
    yaml_node_t *n = map_get(c, m, key);
    if (!n) return 0;
    const char *s = scalar(n);
    if (!s) return err(c, what, key, "must be a string");
    free(*out);
    *out = xstrdup(s);
    return 0;
}

static int get_port(ctx *c, yaml_node_t *m, const char *key, int *out, const char *what)
{
    yaml_node_t *n = map_get(c, m, key);
    if (!n) return 0;
    int64_t v;
    if (!scalar(n) || parse_int64(scalar(n), &v) != 0 || v < 0 || v > 65535)
        return err(c, what, key, "must be a port number");
    *out = (int)v;
    return 0;
}

static int get_bool(ctx *c, yaml_node_t *m, const char *key, int *out, const char *what)
{
    yaml_node_t *n = map_get(c, m, key);
    if (!n) return 0;
    int b = scalar(n) ? parse_bool(scalar(n)) : -1;
    if (b < 0) return err(c, what, key, "must be true or false");
    *out = b;
    return 0;
}

static int get_dest(ctx *c, yaml_node_t *m, const char *key, int *out, const char *what)
{
    yaml_node_t *n = map_get(c, m, key);
    if (!n) return 0;
    const char *s = scalar(n);
    if (s && strcasecmp(s, "console") == 0) *out = LOG_CONSOLE;
    else if (s && strcasecmp(s, "file") == 0) *out = LOG_FILE;
    else if (s && strcasecmp(s, "fileAndConsole") == 0) *out = LOG_FILE_AND_CONSOLE;
    else return err(c, what, key, "must be console, file or fileAndConsole");
    return 0;
}

/* resourcesPaths (list or comma list) and the deprecated resourcesPath. */
static int get_resources(ctx *c, yaml_node_t *m, strvec *out, const char *what)
{
    static const char *const keys[] = { "resourcesPaths", "resourcesPath" };
    for (size_t k = 0; k < 2; k++) {
        yaml_node_t *n = map_get(c, m, keys[k]);
        if (!n) continue;
        sv_free(out);
        if (n->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
                const char *s = scalar(node(c, *it));
                if (!s) return err(c, what, keys[k], "items must be strings");
                char *abs = path_abs(c->base, s);
                sv_push(out, abs);
                free(abs);
            }
        } else if (scalar(n)) {
            char *copy = xstrdup(scalar(n));
            for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                while (*t == ' ') t++;
                if (!*t) continue;
                char *abs = path_abs(c->base, t);
                sv_push(out, abs);
                free(abs);
            }
            free(copy);
        } else {
            return err(c, what, keys[k], "must be a path or a list of paths");
        }
        return 0;
    }
    return 0;
}

static int get_env(ctx *c, yaml_node_t *m, strvec *out, const char *what)
{
    yaml_node_t *n = map_get(c, m, "env");
    if (!n) return 0;
    if (n->type != YAML_MAPPING_NODE) return err(c, what, "env", "must be a map of names to values");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(c, p->key)), *v = scalar(node(c, p->value));
        if (!k || !v) return err(c, what, "env", "names and values must be scalars");
        sv_pushf(out, "%s=%s", k, v);
    }
    return 0;
}

/* Fields shared by `common` and each app.  The app's own values are read
 * after common's and replace them. */
static int get_shared(ctx *c, yaml_node_t *m, app_spec *a, const char *what)
{
    int rc = 0;
    char *config = NULL;
    rc |= get_resources(c, m, &a->resources, what);
    rc |= get_str(c, m, "configFilePath", &config, what);
    if (config) { free(a->config); a->config = path_abs(c->base, config); free(config); }
    rc |= get_env(c, m, &a->env, what);
    rc |= get_str(c, m, "appProtocol", &a->app_protocol, what);
    rc |= get_str(c, m, "appChannelAddress", &a->app_channel_address, what);
    rc |= get_str(c, m, "logLevel", &a->log_level, what);
    rc |= get_bool(c, m, "enableApiLogging", &a->enable_api_logging, what);
    rc |= get_str(c, m, "appMaxConcurrency", &a->app_max_concurrency, what);
    rc |= get_str(c, m, "daprHTTPMaxRequestSize", &a->max_body_size, what);
    rc |= get_str(c, m, "maxBodySize", &a->max_body_size, what);
    rc |= get_str(c, m, "daprHTTPReadBufferSize", &a->read_buffer_size, what);
    rc |= get_bool(c, m, "enableAppHealthCheck", &a->enable_health_check, what);
    rc |= get_str(c, m, "appHealthCheckPath", &a->health_path, what);
    rc |= get_str(c, m, "appHealthProbeInterval", &a->health_interval, what);
    rc |= get_str(c, m, "appHealthProbeTimeout", &a->health_timeout, what);
    rc |= get_str(c, m, "appHealthThreshold", &a->health_threshold, what);
    rc |= get_str(c, m, "daprListenAddresses", &a->listen_addresses, what);
    rc |= get_dest(c, m, "appLogDestination", &a->app_log_dest, what);
    rc |= get_dest(c, m, "daprdLogDestination", &a->daprd_log_dest, what);
    return rc ? -1 : 0;
}

static void copy_common(app_spec *dst, const app_spec *src)
{
    char **d[] = { &dst->app_protocol, &dst->app_channel_address, &dst->log_level, &dst->app_max_concurrency,
                   &dst->max_body_size, &dst->read_buffer_size, &dst->health_path, &dst->health_interval,
                   &dst->health_timeout, &dst->health_threshold, &dst->listen_addresses, &dst->config };
    char *const s[] = { src->app_protocol, src->app_channel_address, src->log_level, src->app_max_concurrency,
                        src->max_body_size, src->read_buffer_size, src->health_path, src->health_interval,
                        src->health_timeout, src->health_threshold, src->listen_addresses, src->config };
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) if (s[i]) *d[i] = xstrdup(s[i]);
    for (size_t i = 0; i < src->resources.n; i++) sv_push(&dst->resources, src->resources.v[i]);
    for (size_t i = 0; i < src->env.n; i++) sv_push(&dst->env, src->env.v[i]);
    dst->enable_api_logging = src->enable_api_logging;
    dst->enable_health_check = src->enable_health_check;
    dst->app_log_dest = src->app_log_dest;
    dst->daprd_log_dest = src->daprd_log_dest;
}

static int load_app(ctx *c, yaml_node_t *m, const app_spec *common, app_spec *a, size_t index)
{
    char what[32];
    snprintf(what, sizeof what, "apps[%zu]", index);
    if (!m || m->type != YAML_MAPPING_NODE) return err(c, what, NULL, "must be a map");
    app_spec_init(a);
    copy_common(a, common);
    strvec common_res = {0};
    for (size_t i = 0; i < a->resources.n; i++) sv_push(&common_res, a->resources.v[i]);
    sv_free(&a->resources);
    char *dir = NULL;
    int rc = 0;
    rc |= get_str(c, m, "appDirPath", &dir, what);
    if (!rc && !dir) { sv_free(&common_res); return err(c, what, "appDirPath", "is required"); }
    if (rc) { sv_free(&common_res); free(dir); return -1; }
    a->dir = path_abs(c->base, dir);
    free(dir);
    char real[PATH_MAX];
    if (!path_is_dir(a->dir) || !realpath(a->dir, real)) {
        sv_free(&common_res);
        return err(c, what, "appDirPath", "is not a folder");
    }
    free(a->dir);
    a->dir = xstrdup(real);
    rc |= get_str(c, m, "appID", &a->app_id, what);
    rc |= get_port(c, m, "appPort", &a->app_port, what);
    rc |= get_port(c, m, "daprHTTPPort", &a->http_port, what);
    rc |= get_port(c, m, "daprGRPCPort", &a->grpc_port, what);
    rc |= get_port(c, m, "daprInternalGRPCPort", &a->internal_port, what);
    rc |= get_port(c, m, "metricsPort", &a->metrics_port, what);
    rc |= get_shared(c, m, a, what);
    yaml_node_t *cmd = map_get(c, m, "command");
    if (cmd) {
        if (cmd->type != YAML_SEQUENCE_NODE) {
            sv_free(&common_res);
            return err(c, what, "command", "must be a list such as [\"python3\", \"app.py\"]");
        }
        for (yaml_node_item_t *it = cmd->data.sequence.items.start; it < cmd->data.sequence.items.top; it++) {
            const char *s = scalar(node(c, *it));
            if (!s) { sv_free(&common_res); return err(c, what, "command", "items must be strings"); }
            sv_push(&a->command, s);
        }
    }
    if (rc) { sv_free(&common_res); return -1; }

    if (!a->app_id) {
        /* Dapr's default: the app folder's name */
        char *copy = xstrdup(a->dir);
        size_t l = strlen(copy);
        while (l > 1 && copy[l - 1] == '/') copy[--l] = '\0';
        char *slash = strrchr(copy, '/');
        a->app_id = xstrdup(slash ? slash + 1 : copy);
        free(copy);
    }
    if (a->resources.n == 0) {
        for (size_t i = 0; i < common_res.n; i++) sv_push(&a->resources, common_res.v[i]);
        char *conv = xasprintf("%s/.dapr/resources", a->dir);
        if (a->resources.n == 0 && path_is_dir(conv)) sv_push(&a->resources, conv);
        free(conv);
    }
    sv_free(&common_res);
    if (!a->config) {
        char *conv = xasprintf("%s/.dapr/config.yaml", a->dir);
        if (path_is_file(conv)) a->config = conv;
        else free(conv);
    }
    if (!a->app_log_dest) a->app_log_dest = LOG_FILE_AND_CONSOLE;
    if (!a->daprd_log_dest) a->daprd_log_dest = LOG_FILE;
    a->log_dir = xasprintf("%s/.dapr/logs", a->dir);
    return 0;
}

int runfile_load(const char *path, app_spec **apps_out, size_t *n_out)
{
    *apps_out = NULL;
    *n_out = 0;
    char *file = path_is_dir(path) ? xasprintf("%s/dapr.yaml", path) : xstrdup(path);
    char real[PATH_MAX];
    if (!realpath(file, real)) {
        cli_failure("run template %s not found", file);
        free(file);
        return -1;
    }
    free(file);
    FILE *f = fopen(real, "rb");
    if (!f) { cli_failure("cannot read %s", real); return -1; }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        cli_failure("%s: line %zu: %s", real, parser.problem_mark.line + 1,
                    parser.problem ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    yaml_parser_delete(&parser);
    fclose(f);

    char *base = xstrdup(real);
    *strrchr(base, '/') = '\0';
    if (!*base) strcpy(base, "/");
    ctx c = { &doc, real, base };
    int rc = -1;
    app_spec common;
    app_spec_init(&common);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    const char *version = scalar(map_get(&c, root, "version"));
    yaml_node_t *apps = map_get(&c, root, "apps");
    if (!root || root->type != YAML_MAPPING_NODE) {
        err(&c, "the template", NULL, "must be a map with version and apps");
    } else if (!version || strcmp(version, "1") != 0) {
        err(&c, "version", NULL, "must be 1");
    } else if (!apps || apps->type != YAML_SEQUENCE_NODE ||
               apps->data.sequence.items.top == apps->data.sequence.items.start) {
        err(&c, "apps", NULL, "must be a non-empty list of apps");
    } else if (get_shared(&c, map_get(&c, root, "common"), &common, "common") == 0) {
        size_t n = (size_t)(apps->data.sequence.items.top - apps->data.sequence.items.start);
        app_spec *list = xcalloc(n, sizeof *list);
        size_t done = 0;
        rc = 0;
        for (; done < n; done++) {
            if (load_app(&c, node(&c, apps->data.sequence.items.start[done]), &common, &list[done], done) != 0) {
                app_spec_free(&list[done]);
                rc = -1;
                break;
            }
            list[done].run_file = xstrdup(real);
            for (size_t k = 0; k < done; k++)
                if (strcmp(list[k].app_id, list[done].app_id) == 0) {
                    err(&c, "apps", "appID", "app ids must be unique");
                    app_spec_free(&list[done]);
                    rc = -1;
                    break;
                }
            if (rc) break;
        }
        if (rc) {
            for (size_t k = 0; k < done; k++) app_spec_free(&list[k]);
            free(list);
        } else {
            *apps_out = list;
            *n_out = n;
        }
    }
    app_spec_free(&common);
    free(base);
    yaml_document_delete(&doc);
    return rc;
}
