/*
 * cli.h - the `dapr` command line tool: shared types and helpers.
 *
 * The CLI is a plain single-threaded program.  `dapr run` supervises its
 * children (daprd and the app) from one poll() loop; everything else is a
 * short request/response command.  The run registry (one JSON file per app in ~/.dapr/run)
 * is how `dapr list`, `dapr stop` and `dapr invoke` find running apps.
 */
#ifndef DAPR_CLI_H
#define DAPR_CLI_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* ---- growable NULL-terminated string vector ------------------------------ */

typedef struct strvec {
    char **v;          /* always NULL-terminated once something was pushed */
    size_t n, cap;
} strvec;

void sv_push(strvec *sv, const char *s);
void sv_pushf(strvec *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sv_free(strvec *sv);
/* Elements joined by single spaces (malloc'ed). */
char *sv_join(const strvec *sv);

/* ---- messages in the style of Dapr's CLI -------------------------------- */

/* Dapr's CLI marks its own lines with emoji; we print the same markers so
 * that output reads the same.  Info and success go to stdout, failures to
 * stderr. */
void cli_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_success(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- paths ---------------------------------------------------------------- */

/* ~/.dapr, or NULL when HOME is unset (malloc'ed). */
char *dapr_home(void);
/* A path below ~/.dapr (malloc'ed), or NULL when HOME is unset. */
char *dapr_home_path(const char *rel);
int mkdir_p(const char *path, unsigned mode);
int path_is_dir(const char *path);
int path_is_file(const char *path);
/* Absolute form of path relative to base (base NULL = cwd), not resolved. */
char *path_abs(const char *base, const char *path);
/* Where daprd is: $DAPR_DAPRD, next to this binary, else PATH. */
char *find_daprd(void);
/* Plugin folders to pass as --plugins-dir (see cli_util.c for the rule). */
void plugin_dirs(strvec *out);

/* ---- network -------------------------------------------------------------- */

/* A free TCP port on 127.0.0.1 that is not in `avoid` (n entries). */
int free_port(const int *avoid, size_t n);

typedef struct http_result {
    int status;        /* 0 when no response (error says why) */
    char *error;
    char *content_type;
    char *body;
    size_t body_len;
} http_result;

/* One blocking HTTP/1.1 request to 127.0.0.1:port.  Returns 0 when a
 * response came (any status), -1 otherwise.  Free with http_result_free. */
int http_request(int port, const char *method, const char *path, const char *content_type,
                 const char *body, size_t body_len, int timeout_ms, http_result *res);
void http_result_free(http_result *res);

/* ---- app specs: what `dapr run` starts ------------------------------------ */

enum log_dest { LOG_CONSOLE = 1, LOG_FILE = 2, LOG_FILE_AND_CONSOLE = 3 };

typedef struct app_spec {
    char *app_id;
    int app_port;                 /* 0 = none */
    char *app_protocol;           /* NULL = http */
    char *app_channel_address;    /* NULL = 127.0.0.1 */
    int http_port, grpc_port, internal_port, metrics_port;  /* 0 = pick a free one */
    char *config;                 /* NULL = ~/.dapr/config.yaml if present */
    strvec resources;             /* empty = ~/.dapr/components if present */
    char *log_level;
    int enable_api_logging;       /* -1 unset, 0/1 */
    char *app_max_concurrency;
    char *max_body_size;
    char *read_buffer_size;
    char *listen_addresses;
    int enable_health_check;      /* -1 unset, 0/1 */
    char *health_path, *health_interval, *health_timeout, *health_threshold;
    strvec command;               /* empty = daprd alone */
    strvec env;                   /* extra "K=V" for the app */
    char *dir;                    /* app working folder (run file) or NULL */
    char *run_file;               /* template file, for the registry */
    int app_log_dest, daprd_log_dest;   /* 0 = console (single run) */
    char *log_dir;                /* where log files go (run file) */
} app_spec;

void app_spec_init(app_spec *a);
void app_spec_free(app_spec *a);

/* Parse a multi-app run template into specs (n apps).  `path` may be a
 * folder holding dapr.yaml.  Returns 0, or -1 after printing the error. */
int runfile_load(const char *path, app_spec **apps, size_t *n);

/* Start every app with its sidecar and supervise until all ended.
 * Returns the process exit code. */
int run_apps(app_spec *apps, size_t n, int multi);

/* A generated app id like Dapr's ("adjective-noun"), not in use. */
char *generate_app_id(void);

/* ---- run registry ---------------------------------------------------------- */

typedef struct reg_entry {
    char *file;                   /* the registry file */
    char *app_id;
    pid_t cli_pid, daprd_pid, app_pid;
    int http_port, grpc_port, app_port, metrics_port, internal_port;
    char *command;
    long long started;            /* unix seconds */
    char *run_file;               /* "" when not from a template */
    char *app_log, *daprd_log;
    char *max_body_size;
} reg_entry;

/* Write (create or replace) the entry's file; sets e->file on first call. */
int registry_write(reg_entry *e);
void registry_remove(reg_entry *e);
/* Live entries, sorted by start time; files of dead CLI processes are
 * removed on the way. */
int registry_list(reg_entry **out, size_t *n);
void registry_free(reg_entry *list, size_t n);

/* ---- commands -------------------------------------------------------------- */

int cmd_list(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_uninstall(int argc, char **argv);
int cmd_invoke(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_run(int argc, char **argv);

/* Help text of a command (NULL = the top level); 0, or -1 when unknown. */
int cli_help(const char *cmd, FILE *out);
/* The common "bad flag" tail: prints a hint and returns exit code 1. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
