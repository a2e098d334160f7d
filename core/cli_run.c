/*
 * cli_run.c - `dapr run`: start daprd and the app for each app spec and
 * supervise them until they end.
 *
 * One poll() loop, no threads: it copies every child's output line by line
 * to the console (and log files), reaps children, polls each sidecar's
 * GET /v1.0/healthz/outbound until 204 before starting its app, and turns
 * SIGINT/SIGTERM into an orderly stop.  Signals and SIGCHLD reach the loop
 * through a self-pipe, so no work happens in signal handlers.
 *
 * Lifetime rules (as Dapr's CLI): when either process of a pair ends, the
 * other is stopped (SIGTERM, SIGKILL after STOP_GRACE_MS).  Exit code: the
 * app's own code when it ended by itself; daprd's code when daprd ended
 * first with an error; 0 after a stop by signal unless the app exited with
 * a code of its own.  Without an app command the exit code is daprd's.
 */
#include "config.h"
#include "cli.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEALTH_TIMEOUT_MS 60000   /* daprd must be up by then */
#define HEALTH_POLL_MS 100
#define STOP_GRACE_MS 10000       /* daprd drains for 5 s by default */

typedef struct stream {
    int fd;                 /* read end of the child's stdout+stderr; -1 closed */
    char *prefix;           /* console prefix; "" for daprd in a single run */
    int console;            /* copy lines to stdout */
    int file_fd;            /* log file or -1 */
    char *buf;              /* partial line */
    size_t len, cap;
} stream;

enum { ST_STARTING, ST_RUNNING, ST_STOPPING, ST_DONE };
enum { CAUSE_NONE, CAUSE_APP, CAUSE_DAPRD, CAUSE_SIGNAL, CAUSE_START };

typedef struct runner {
    app_spec *spec;
    int state, cause;
    pid_t daprd_pid, app_pid;        /* 0 = not running */
    int daprd_status, app_status;    /* waitpid statuses */
    int daprd_exited, app_exited, app_started;
    stream daprd_out, app_out;
    int64_t started_ms, last_probe_ms, stop_ms;
    reg_entry reg;
    int exit_code;
} runner;

static int sig_pipe[2] = { -1, -1 };
static int multi_mode;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;
    if (write(sig_pipe[1], &c, 1) < 0) { /* pipe full: a wakeup is pending anyway */ }
    errno = saved;
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ---- output ---------------------------------------------------------------- */

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; return; }
        p += w;
        n -= (size_t)w;
    }
}

static void emit_line(stream *s, const char *line, size_t n)
{
    if (s->console) {
        fputs(s->prefix, stdout);
        fwrite(line, 1, n, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (s->file_fd >= 0) {
        write_all(s->file_fd, line, n);
        write_all(s->file_fd, "\n", 1);
    }
}

/* Read what is there; emit complete lines.  Returns 0 on EOF/error. */
static int stream_pump(stream *s)
{
    for (;;) {
        if (s->cap - s->len < 4096) {
            s->cap = s->cap ? s->cap * 2 : 8192;
            s->buf = xrealloc(s->buf, s->cap);
        }
        ssize_t r = read(s->fd, s->buf + s->len, s->cap - s->len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (r <= 0) return 0;
        s->len += (size_t)r;
        size_t start = 0;
        for (size_t i = 0; i < s->len; i++) {
            if (s->buf[i] != '\n') continue;
            emit_line(s, s->buf + start, i - start);
            start = i + 1;
        }
        memmove(s->buf, s->buf + start, s->len - start);
        s->len -= start;
        /* A very long line without newline is emitted in pieces rather
         * than buffered without bound. */
        if (s->len > 65536) { emit_line(s, s->buf, s->len); s->len = 0; }
    }
}

static void stream_close(stream *s)
{
    if (s->fd >= 0) {
        stream_pump(s);
        if (s->len) emit_line(s, s->buf, s->len);
        s->len = 0;
        close(s->fd);
        s->fd = -1;
    }
    if (s->file_fd >= 0) { close(s->file_fd); s->file_fd = -1; }
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
    free(s->prefix);
    s->prefix = NULL;
}

/* ---- processes ------------------------------------------------------------- */

/* fork+exec argv with stdout+stderr into a new pipe whose read end goes to
 * `out`.  env: extra "K=V" entries.  Returns the pid or -1. */
static pid_t spawn(char *const argv[], const strvec *env, const char *dir, int keep_stdin, stream *out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { close(p[0]); close(p[1]); return -1; }
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);   /* ignored in dapr run; exec would keep that */
        dup2(p[1], STDOUT_FILENO);
        dup2(p[1], STDERR_FILENO);
        if (!keep_stdin) {
            int devnull = open("/dev/null", O_RDONLY);
            if (devnull >= 0) { dup2(devnull, STDIN_FILENO); close(devnull); }
        }
        if (dir && chdir(dir) != 0) {
            dprintf(STDERR_FILENO, "dapr: cannot change to folder %s: %s\n", dir, strerror(errno));
            _exit(127);
        }
        for (size_t i = 0; env && i < env->n; i++) putenv(env->v[i]);
        execvp(argv[0], argv);
        dprintf(STDERR_FILENO, "dapr: cannot run '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    set_nonblock(p[0]);
    out->fd = p[0];
    return pid;
}

static int status_code(int st)
{
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return 1;
}

static void build_daprd_argv(const app_spec *a, const char *daprd, strvec *av)
{
    sv_push(av, daprd);
    sv_push(av, "--app-id"); sv_push(av, a->app_id);
    sv_push(av, "--dapr-http-port"); sv_pushf(av, "%d", a->http_port);
    sv_push(av, "--dapr-grpc-port"); sv_pushf(av, "%d", a->grpc_port);
    sv_push(av, "--dapr-internal-grpc-port"); sv_pushf(av, "%d", a->internal_port);
    sv_push(av, "--metrics-port"); sv_pushf(av, "%d", a->metrics_port);
    if (a->app_port) {
        sv_push(av, "--app-port"); sv_pushf(av, "%d", a->app_port);
        sv_push(av, "--app-protocol"); sv_push(av, a->app_protocol ? a->app_protocol : "http");
    }
    if (a->app_channel_address) { sv_push(av, "--app-channel-address"); sv_push(av, a->app_channel_address); }
    for (size_t i = 0; i < a->resources.n; i++) {
        sv_push(av, "--resources-path");
        sv_push(av, a->resources.v[i]);
    }
    if (a->resources.n == 0) {
        char *def = dapr_home_path("components");
        if (def && path_is_dir(def)) { sv_push(av, "--resources-path"); sv_push(av, def); }
        free(def);
    }
    if (a->config) {
        sv_push(av, "--config"); sv_push(av, a->config);
    } else {
        char *def = dapr_home_path("config.yaml");
        if (def && path_is_file(def)) { sv_push(av, "--config"); sv_push(av, def); }
        free(def);
    }
    if (a->log_level) { sv_push(av, "--log-level"); sv_push(av, a->log_level); }
    if (a->enable_api_logging >= 0)
        sv_pushf(av, "--enable-api-logging=%s", a->enable_api_logging ? "true" : "false");
    if (a->app_max_concurrency) { sv_push(av, "--app-max-concurrency"); sv_push(av, a->app_max_concurrency); }
    if (a->max_body_size) { sv_push(av, "--max-body-size"); sv_push(av, a->max_body_size); }
    if (a->read_buffer_size) { sv_push(av, "--read-buffer-size"); sv_push(av, a->read_buffer_size); }
    if (a->listen_addresses) { sv_push(av, "--dapr-listen-addresses"); sv_push(av, a->listen_addresses); }
    if (a->enable_health_check >= 0)
        sv_pushf(av, "--enable-app-health-check=%s", a->enable_health_check ? "true" : "false");
    if (a->health_path) { sv_push(av, "--app-health-check-path"); sv_push(av, a->health_path); }
    if (a->health_interval) { sv_push(av, "--app-health-probe-interval"); sv_push(av, a->health_interval); }
    if (a->health_timeout) { sv_push(av, "--app-health-probe-timeout"); sv_push(av, a->health_timeout); }
    if (a->health_threshold) { sv_push(av, "--app-health-threshold"); sv_push(av, a->health_threshold); }
    strvec dirs = {0};
    plugin_dirs(&dirs);
    for (size_t i = 0; i < dirs.n; i++) { sv_push(av, "--plugins-dir"); sv_push(av, dirs.v[i]); }
    sv_free(&dirs);
}

/* Unset ports get free ones, distinct from each other and from all apps'. */
static int pick_ports(app_spec *apps, size_t n)
{
    int used[4 * 64 + 4];
    size_t nu = 0;
    for (size_t i = 0; i < n; i++) {
        int *ports[] = { &apps[i].http_port, &apps[i].grpc_port, &apps[i].internal_port, &apps[i].metrics_port };
        for (size_t k = 0; k < 4; k++) {
            if (*ports[k] == 0) {
                *ports[k] = free_port(used, nu < 256 ? nu : 256);
                if (*ports[k] < 0) return -1;
            }
            if (nu < sizeof used / sizeof *used) used[nu++] = *ports[k];
        }
    }
    return 0;
}

static char *log_file_name(const app_spec *a, const char *what)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y%m%d%H%M%S", &tm);
    return xasprintf("%s/%s_%s_%s.log", a->log_dir, a->app_id, what, ts);
}

static int open_log(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void stream_setup(stream *s, char *prefix, int dest, const char *file)
{
    s->fd = -1;
    s->prefix = prefix;
    s->console = dest == 0 || (dest & LOG_CONSOLE);
    s->file_fd = (dest & LOG_FILE) && file ? open_log(file) : -1;
}

static int start_daprd(runner *r, const char *daprd)
{
    app_spec *a = r->spec;
    strvec av = {0};
    build_daprd_argv(a, daprd, &av);
    if (multi_mode) {
        cli_info("Started Dapr with app id \"%s\". HTTP Port: %d. gRPC Port: %d",
                 a->app_id, a->http_port, a->grpc_port);
    } else {
        cli_info("Starting Dapr with id %s. HTTP Port: %d. gRPC Port: %d",
                 a->app_id, a->http_port, a->grpc_port);
        cli_info("Checking if Dapr sidecar is listening on HTTP port %d", a->http_port);
    }
    if (getenv("DAPR_CLI_DEBUG")) {
        char *line = sv_join(&av);
        cli_info("daprd command: %s", line);
        free(line);
    }
    /* daprd runs in the app's folder too, so relative paths behave alike. */
    r->daprd_pid = spawn(av.v, NULL, a->dir, 0, &r->daprd_out);
    sv_free(&av);
    if (r->daprd_pid < 0) {
        cli_failure("cannot start daprd (%s): %s", daprd, strerror(errno));
        r->daprd_pid = 0;
        return -1;
    }
    r->started_ms = now_monotonic_ms();
    r->reg.app_id = a->app_id;
    r->reg.cli_pid = getpid();
    r->reg.daprd_pid = r->daprd_pid;
    r->reg.http_port = a->http_port;
    r->reg.grpc_port = a->grpc_port;
    r->reg.app_port = a->app_port;
    r->reg.metrics_port = a->metrics_port;
    r->reg.internal_port = a->internal_port;
    r->reg.command = sv_join(&a->command);
    r->reg.started = (long long)time(NULL);
    r->reg.run_file = a->run_file;
    r->reg.max_body_size = a->max_body_size ? a->max_body_size : "4Mi";
    if (registry_write(&r->reg) != 0)
        cli_warn("could not write the run registry in ~/.dapr/run: dapr list will not show %s", a->app_id);
    return 0;
}

static void start_app(runner *r)
{
    app_spec *a = r->spec;
    strvec env = {0};
    sv_pushf(&env, "APP_ID=%s", a->app_id);
    sv_pushf(&env, "DAPR_HTTP_PORT=%d", a->http_port);
    sv_pushf(&env, "DAPR_GRPC_PORT=%d", a->grpc_port);
    sv_pushf(&env, "DAPR_METRICS_PORT=%d", a->metrics_port);
    if (a->app_port) sv_pushf(&env, "APP_PORT=%d", a->app_port);
    sv_pushf(&env, "APP_PROTOCOL=%s", a->app_protocol ? a->app_protocol : "http");
    sv_pushf(&env, "APP_CHANNEL_ADDRESS=%s", a->app_channel_address ? a->app_channel_address : "127.0.0.1");
    for (size_t i = 0; i < a->env.n; i++) sv_push(&env, a->env.v[i]);
    r->app_pid = spawn(a->command.v, &env, a->dir, 1, &r->app_out);
    sv_free(&env);
    if (r->app_pid < 0) {
        cli_failure("cannot start the app: %s", strerror(errno));
        r->app_pid = 0;
        return;
    }
    r->app_started = 1;
    r->reg.app_pid = r->app_pid;
    registry_write(&r->reg);
}

static void runner_stop(runner *r, int cause)
{
    if (r->state >= ST_STOPPING) return;
    if (r->cause == CAUSE_NONE) r->cause = cause;
    r->state = ST_STOPPING;
    r->stop_ms = now_monotonic_ms();
    if (r->app_pid > 0 && !r->app_exited) kill(r->app_pid, SIGTERM);
    if (r->daprd_pid > 0 && !r->daprd_exited) kill(r->daprd_pid, SIGTERM);
}

static void runner_reaped(runner *r, pid_t pid, int st)
{
    const char *id = r->spec->app_id;
    if (pid == r->daprd_pid) {
        r->daprd_exited = 1;
        r->daprd_status = st;
        r->daprd_pid = 0;
        int code = status_code(st);
        int expected = r->state == ST_STOPPING && (code == 0 || (WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM));
        if (code == 0 || expected) {
            if (multi_mode) cli_success("Exited Dapr successfully (app id %s)", id);
            else cli_success("Exited Dapr successfully");
        } else {
            cli_failure("The daprd process of app id %s exited with error code: %d", id, code);
        }
        if (r->state == ST_STARTING) r->cause = CAUSE_START;
        runner_stop(r, CAUSE_DAPRD);
    } else if (pid == r->app_pid) {
        r->app_exited = 1;
        r->app_status = st;
        r->app_pid = 0;
        int code = status_code(st);
        int expected = r->state == ST_STOPPING && WIFSIGNALED(st) &&
                       (WTERMSIG(st) == SIGTERM || WTERMSIG(st) == SIGKILL || WTERMSIG(st) == SIGINT);
        if (code == 0 || expected) {
            if (multi_mode) cli_success("Exited App successfully (app id %s)", id);
            else cli_success("Exited App successfully");
        } else {
            cli_failure("The App process exited with error code: %d", code);
        }
        runner_stop(r, CAUSE_APP);
    }
}

static void runner_finish(runner *r)
{
    r->state = ST_DONE;
    stream_close(&r->daprd_out);
    stream_close(&r->app_out);
    registry_remove(&r->reg);
    int dcode = r->daprd_exited ? status_code(r->daprd_status) : 0;
    int acode = r->app_exited && WIFEXITED(r->app_status) ? WEXITSTATUS(r->app_status) : 0;
    switch (r->cause) {
    case CAUSE_START: r->exit_code = dcode ? dcode : 1; break;
    case CAUSE_APP: r->exit_code = status_code(r->app_status); break;
    case CAUSE_DAPRD:
        r->exit_code = r->app_started ? (dcode ? dcode : acode) : dcode;
        break;
    default: r->exit_code = r->app_started ? acode : dcode; break;
    }
}

/* Health probe and start-up time-out of one starting runner. */
static void runner_tick(runner *r)
{
    int64_t now = now_monotonic_ms();
    if (r->state == ST_STARTING && r->daprd_pid > 0 && now - r->last_probe_ms >= HEALTH_POLL_MS) {
        r->last_probe_ms = now;
        http_result res;
        int ok = http_request(r->spec->http_port, "GET", "/v1.0/healthz/outbound", NULL, NULL, 0, 1000, &res) == 0 &&
                 res.status == 204;
        http_result_free(&res);
        if (ok) {
            r->state = ST_RUNNING;
            if (!multi_mode) cli_info("Dapr sidecar is up and running.");
            if (r->spec->command.n) {
                start_app(r);
                if (!r->app_started) { runner_stop(r, CAUSE_START); return; }
                if (!multi_mode) cli_success("You're up and running! Both Dapr and your app logs will appear here.\n");
            } else if (!multi_mode) {
                cli_success("You're up and running! Dapr logs will appear here.\n");
            }
        } else if (now - r->started_ms > HEALTH_TIMEOUT_MS) {
            cli_failure("daprd of app id %s did not answer GET /v1.0/healthz/outbound within %d s",
                        r->spec->app_id, HEALTH_TIMEOUT_MS / 1000);
            runner_stop(r, CAUSE_START);
        }
    }
    if (r->state == ST_STOPPING && now - r->stop_ms > STOP_GRACE_MS) {
        if (r->app_pid > 0) kill(r->app_pid, SIGKILL);
        if (r->daprd_pid > 0) kill(r->daprd_pid, SIGKILL);
        r->stop_ms = now;   /* do not repeat every tick */
    }
    if (r->state == ST_STOPPING && r->daprd_pid == 0 && r->app_pid == 0)
        runner_finish(r);
}

static runner *find_runner(runner *rs, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (pid > 0 && (rs[i].daprd_pid == pid || rs[i].app_pid == pid)) return &rs[i];
    return NULL;
}

int run_apps(app_spec *apps, size_t n, int multi)
{
    multi_mode = multi;
    char *daprd = find_daprd();
    if (!daprd) {
        cli_failure("daprd not found: set DAPR_DAPRD, install daprd next to dapr, or add it to PATH");
        return 1;
    }
    if (pick_ports(apps, n) != 0) {
        cli_failure("could not find free TCP ports on 127.0.0.1");
        free(daprd);
        return 1;
    }
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        cli_failure("pipe: %s", strerror(errno));
        free(daprd);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* A closed console (dapr run | head) must not kill the supervisor and
     * orphan its children: writes then just fail. */
    signal(SIGPIPE, SIG_IGN);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    runner *rs = xcalloc(n, sizeof *rs);
    int signalled = 0;
    for (size_t i = 0; i < n; i++) {
        runner *r = &rs[i];
        app_spec *a = &apps[i];
        r->spec = a;
        char *app_log = NULL, *daprd_log = NULL;
        if (multi) {
            cli_info("Validating config and starting app \"%s\"", a->app_id);
            if (a->log_dir && mkdir_p(a->log_dir, 0755) == 0) {
                app_log = log_file_name(a, "app");
                daprd_log = log_file_name(a, "daprd");
                cli_info("Writing log files to directory : %s", a->log_dir);
            }
        }
        stream_setup(&r->daprd_out, multi ? xasprintf("== DAPR - %s == ", a->app_id) : xstrdup(""),
                     multi ? a->daprd_log_dest : 0, daprd_log);
        stream_setup(&r->app_out, multi ? xasprintf("== APP - %s == ", a->app_id) : xstrdup("== APP == "),
                     multi ? a->app_log_dest : 0, app_log);
        r->reg.app_log = app_log;
        r->reg.daprd_log = daprd_log;
        if (start_daprd(r, daprd) != 0) {
            r->cause = CAUSE_START;
            r->state = ST_STOPPING;
        }
    }
    free(daprd);

    for (;;) {
        size_t live = 0;
        for (size_t i = 0; i < n; i++) if (rs[i].state != ST_DONE) live++;
        if (!live) break;

        struct pollfd *pfd = xcalloc(1 + 2 * n, sizeof *pfd);
        stream **owner = xcalloc(1 + 2 * n, sizeof *owner);
        size_t np = 0;
        pfd[np].fd = sig_pipe[0];
        pfd[np++].events = POLLIN;
        for (size_t i = 0; i < n; i++) {
            stream *ss[2] = { &rs[i].daprd_out, &rs[i].app_out };
            for (int k = 0; k < 2; k++) {
                if (ss[k]->fd < 0) continue;
                owner[np] = ss[k];
                pfd[np].fd = ss[k]->fd;
                pfd[np++].events = POLLIN;
            }
        }
        int pr = poll(pfd, np, HEALTH_POLL_MS);
        if (pr > 0) {
            for (size_t i = 1; i < np; i++) {
                if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                if (!stream_pump(owner[i])) {
                    stream *s = owner[i];
                    if (s->len) emit_line(s, s->buf, s->len);
                    s->len = 0;
                    close(s->fd);
                    s->fd = -1;
                }
            }
        }
        free(pfd);
        free(owner);

        unsigned char sigs[64];
        ssize_t ns;
        while ((ns = read(sig_pipe[0], sigs, sizeof sigs)) > 0) {
            for (ssize_t k = 0; k < ns; k++) {
                if (sigs[k] == SIGCHLD) continue;
                if (!signalled) {
                    signalled = 1;
                    cli_info("\nterminated signal received: shutting down");
                    for (size_t i = 0; i < n; i++) runner_stop(&rs[i], CAUSE_SIGNAL);
                } else if (sigs[k] == SIGINT) {
                    /* a second Ctrl-C: do not wait for a graceful stop */
                    for (size_t i = 0; i < n; i++) {
                        if (rs[i].app_pid > 0) kill(rs[i].app_pid, SIGKILL);
                        if (rs[i].daprd_pid > 0) kill(rs[i].daprd_pid, SIGKILL);
                    }
                }
            }
        }
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            runner *r = find_runner(rs, n, pid);
            if (r) {
                /* Drain what the process wrote before announcing its end. */
                if (pid == r->daprd_pid && r->daprd_out.fd >= 0) stream_pump(&r->daprd_out);
                if (pid == r->app_pid && r->app_out.fd >= 0) stream_pump(&r->app_out);
                runner_reaped(r, pid, st);
            }
        }
        for (size_t i = 0; i < n; i++) if (rs[i].state != ST_DONE) runner_tick(&rs[i]);
    }

    int code = 0;
    for (size_t i = 0; i < n; i++) {
        if (!code && rs[i].exit_code) code = rs[i].exit_code;
        free(rs[i].reg.file);
        free(rs[i].reg.command);
        free(rs[i].reg.app_log);
        free(rs[i].reg.daprd_log);
    }
    free(rs);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    return code;
}
