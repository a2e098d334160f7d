/*
 * cli_registry.c - the run registry: one JSON file per app started by
 * `dapr run`, in ~/.dapr/run/<cli-pid>-<app-id>.json.
 *
 * Dapr's CLI asks each sidecar's metadata API instead; files keep `dapr
 * list` independent of whether a sidecar answers, and `dapr run` removes its
 * files at exit.  A file whose `dapr run` process is gone (killed with
 * SIGKILL, machine crash) is stale: readers skip and delete it.
 */
#include "config.h"
#include "cli.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *run_dir(void)
{
    return dapr_home_path("run");
}

int registry_write(reg_entry *e)
{
    char *dir = run_dir();
    if (!dir || mkdir_p(dir, 0700) != 0) { free(dir); return -1; }
    if (!e->file) {
        /* app ids are [a-z0-9-] in practice; keep any '/' out of the name */
        char *safe = xstrdup(e->app_id);
        for (char *p = safe; *p; p++) if (*p == '/') *p = '_';
        e->file = xasprintf("%s/%ld-%s.json", dir, (long)e->cli_pid, safe);
        free(safe);
    }
    json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:I, s:i, s:i, s:i, s:s, s:s, s:s, s:s}",
                          "appId", e->app_id,
                          "httpPort", e->http_port, "grpcPort", e->grpc_port,
                          "appPort", e->app_port, "metricsPort", e->metrics_port,
                          "internalGrpcPort", e->internal_port,
                          "command", e->command ? e->command : "",
                          "created", (json_int_t)e->started,
                          "daprdPid", (int)e->daprd_pid, "cliPid", (int)e->cli_pid,
                          "appPid", (int)e->app_pid,
                          "runTemplatePath", e->run_file ? e->run_file : "",
                          "appLogPath", e->app_log ? e->app_log : "",
                          "daprdLogPath", e->daprd_log ? e->daprd_log : "",
                          "maxRequestBodySize", e->max_body_size ? e->max_body_size : "");
    /* Write a temporary file and rename it, so readers never see half a file. */
    char *tmp = xasprintf("%s.tmp", e->file);
    int rc = json_dump_file(o, tmp, JSON_INDENT(2)) == 0 && rename(tmp, e->file) == 0 ? 0 : -1;
    if (rc != 0) unlink(tmp);
    json_decref(o);
    free(tmp);
    free(dir);
    return rc;
}

void registry_remove(reg_entry *e)
{
    if (e->file) unlink(e->file);
}

static char *dup_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return xstrdup(s ? s : "");
}

static int get_int(json_t *o, const char *key)
{
    return (int)json_integer_value(json_object_get(o, key));
}

static int by_start(const void *a, const void *b)
{
    const reg_entry *x = a, *y = b;
    if (x->started != y->started) return x->started < y->started ? -1 : 1;
    return strcmp(x->app_id, y->app_id);
}

int registry_list(reg_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *dir = run_dir();
    if (!dir) return -1;
    DIR *d = opendir(dir);
    if (!d) { free(dir); return 0; }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0) continue;
        char *file = xasprintf("%s/%s", dir, de->d_name);
        json_t *o = json_load_file(file, 0, NULL);
        pid_t cli = o ? (pid_t)get_int(o, "cliPid") : 0;
        if (!o || !json_is_object(o) || cli <= 0 || (kill(cli, 0) != 0 && errno == ESRCH)) {
            unlink(file);   /* stale or unreadable */
            json_decref(o);
            free(file);
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        reg_entry *e = &(*out)[(*n)++];
        memset(e, 0, sizeof *e);
        e->file = file;
        e->app_id = dup_str(o, "appId");
        e->cli_pid = cli;
        e->daprd_pid = (pid_t)get_int(o, "daprdPid");
        e->app_pid = (pid_t)get_int(o, "appPid");
        e->http_port = get_int(o, "httpPort");
        e->grpc_port = get_int(o, "grpcPort");
        e->app_port = get_int(o, "appPort");
        e->metrics_port = get_int(o, "metricsPort");
        e->internal_port = get_int(o, "internalGrpcPort");
        e->command = dup_str(o, "command");
        e->started = (long long)json_integer_value(json_object_get(o, "created"));
        e->run_file = dup_str(o, "runTemplatePath");
        e->app_log = dup_str(o, "appLogPath");
        e->daprd_log = dup_str(o, "daprdLogPath");
        e->max_body_size = dup_str(o, "maxRequestBodySize");
        json_decref(o);
    }
    closedir(d);
    free(dir);
    if (*n) qsort(*out, *n, sizeof **out, by_start);
    return 0;
}

void registry_free(reg_entry *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        reg_entry *e = &list[i];
        free(e->file);
        free(e->app_id);
        free(e->command);
        free(e->run_file);
        free(e->app_log);
        free(e->daprd_log);
        free(e->max_body_size);
    }
    free(list);
}
