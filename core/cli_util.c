/* cli_util.c - helpers of the dapr CLI: strings, messages, paths, ports and
 * a tiny blocking HTTP client (the CLI makes a handful of requests to a
 * sidecar on loopback; an event loop or libcurl would be overkill). */
#include "config.h"
#include "cli.h"
#include "util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef PLUGINDIR
#define PLUGINDIR "/usr/lib/dapr/plugins"
#endif

/* ---- strvec ---------------------------------------------------------------- */

void sv_push(strvec *sv, const char *s)
{
    if (sv->n + 2 > sv->cap) {
        sv->cap = sv->cap ? sv->cap * 2 : 8;
        sv->v = xrealloc(sv->v, sv->cap * sizeof *sv->v);
    }
    sv->v[sv->n++] = xstrdup(s);
    sv->v[sv->n] = NULL;
}

void sv_pushf(strvec *sv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) abort();
    va_end(ap);
    sv_push(sv, s);
    free(s);
}

void sv_free(strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++) free(sv->v[i]);
    free(sv->v);
    sv->v = NULL;
    sv->n = sv->cap = 0;
}

char *sv_join(const strvec *sv)
{
    size_t len = 1;
    for (size_t i = 0; i < sv->n; i++) len += strlen(sv->v[i]) + 1;
    char *out = xmalloc(len), *p = out;
    *p = '\0';
    for (size_t i = 0; i < sv->n; i++) {
        if (i) *p++ = ' ';
        size_t l = strlen(sv->v[i]);
        memcpy(p, sv->v[i], l);
        p += l;
        *p = '\0';
    }
    return out;
}

/* ---- messages -------------------------------------------------------------- */

static void emit(FILE *f, const char *marker, const char *fmt, va_list ap)
{
    fputs(marker, f);
    fputs("  ", f);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    fflush(f);
}

#define EMIT(f, marker) do { va_list ap; va_start(ap, fmt); emit(f, marker, fmt, ap); va_end(ap); } while (0)
void cli_info(const char *fmt, ...) { EMIT(stdout, "\xe2\x84\xb9\xef\xb8\x8f"); }   /* information source */
void cli_success(const char *fmt, ...) { EMIT(stdout, "\xe2\x9c\x85"); }              /* check mark */
void cli_warn(const char *fmt, ...) { EMIT(stderr, "\xe2\x9a\xa0"); }                 /* warning sign */
void cli_failure(const char *fmt, ...) { EMIT(stderr, "\xe2\x9d\x8c"); }              /* cross mark */

/* ---- paths ----------------------------------------------------------------- */

char *dapr_home(void)
{
    const char *home = getenv("HOME");
    if (!home || !*home) return NULL;
    return xasprintf("%s/.dapr", home);
}

char *dapr_home_path(const char *rel)
{
    const char *home = getenv("HOME");
    if (!home || !*home) return NULL;
    return xasprintf("%s/.dapr/%s", home, rel);
}

int mkdir_p(const char *path, unsigned mode)
{
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) { free(p); return -1; }
        *s = '/';
    }
    int rc = (mkdir(p, mode) != 0 && errno != EEXIST) ? -1 : 0;
    free(p);
    return rc;
}

int path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int path_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *path_abs(const char *base, const char *path)
{
    if (path[0] == '/') return xstrdup(path);
    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0') && getenv("HOME"))
        return xasprintf("%s%s", getenv("HOME"), path + 1);
    if (base) return xasprintf("%s/%s", base, path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return xstrdup(path);
    return xasprintf("%s/%s", cwd, path);
}

/* Folder of the running dapr binary, or NULL. */
static char *exe_dir(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return NULL;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) return NULL;
    *slash = '\0';
    return xstrdup(buf);
}

char *find_daprd(void)
{
    const char *env = getenv("DAPR_DAPRD");
    if (env && *env) return xstrdup(env);
    char *dir = exe_dir();
    if (dir) {
        char *p = xasprintf("%s/daprd", dir);
        free(dir);
        if (access(p, X_OK) == 0) return p;
        free(p);
    }
    const char *path = getenv("PATH");
    if (path) {
        char *copy = xstrdup(path);
        for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            char *p = xasprintf("%s/daprd", d);
            if (access(p, X_OK) == 0) { free(copy); return p; }
            free(p);
        }
        free(copy);
    }
    return NULL;
}

/*
 * Which plugin folders daprd gets.  DAPR_PLUGINS_PATH, when set, is read by
 * daprd itself, so nothing is passed.  A dapr binary that runs from a build
 * tree (it sits in core/ beside plugins/) passes every plugins/<name>/.libs
 * so that an uninstalled build works.  Otherwise the installed plugin folder
 * is passed when it exists (daprd would fall back to the same folder).
 */
void plugin_dirs(strvec *out)
{
    const char *env = getenv("DAPR_PLUGINS_PATH");
    if (env && *env) return;
    char *dir = exe_dir();
    if (dir) {
        size_t l = strlen(dir);
        if (l >= 5 && strcmp(dir + l - 5, "/core") == 0) {
            char *plugins = xasprintf("%s/../plugins", dir);
            strvec names = {0};
            if (path_is_dir(plugins)) {
                DIR *d = opendir(plugins);
                struct dirent *de;
                while (d && (de = readdir(d)) != NULL) {
                    if (de->d_name[0] == '.') continue;
                    char *libs = xasprintf("%s/%s/.libs", plugins, de->d_name);
                    if (path_is_dir(libs)) sv_push(&names, libs);
                    free(libs);
                }
                if (d) closedir(d);
            }
            /* readdir order is arbitrary; sort for reproducible command lines */
            for (size_t i = 1; i < names.n; i++)
                for (size_t j = i; j > 0 && strcmp(names.v[j - 1], names.v[j]) > 0; j--) {
                    char *t = names.v[j]; names.v[j] = names.v[j - 1]; names.v[j - 1] = t;
                }
            for (size_t i = 0; i < names.n; i++) sv_push(out, names.v[i]);
            sv_free(&names);
            free(plugins);
            if (out->n) { free(dir); return; }
        }
        free(dir);
    }
    if (path_is_dir(PLUGINDIR)) sv_push(out, PLUGINDIR);
}

/* ---- ports ----------------------------------------------------------------- */

int free_port(const int *avoid, size_t n)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof sa;
        int port = -1;
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
            port = ntohs(sa.sin_port);
        close(fd);
        if (port < 0) return -1;
        int clash = 0;
        for (size_t i = 0; i < n; i++) if (avoid[i] == port) clash = 1;
        if (!clash) return port;
    }
    return -1;
}

/* ---- app ids --------------------------------------------------------------- */

/* Dapr names unnamed apps "adjective-noun"; our own small word lists. */
static const char *const adjectives[] = {
    "amber", "brave", "calm", "clever", "crisp", "eager", "gentle", "golden", "happy", "humble",
    "jolly", "keen", "lively", "lucky", "mellow", "nimble", "proud", "quick", "quiet", "rapid",
    "shiny", "silent", "steady", "sunny", "swift", "tidy", "vivid", "warm", "wise", "zesty",
};
static const char *const nouns[] = {
    "badger", "beacon", "canyon", "cedar", "comet", "falcon", "fjord", "glacier", "harbor", "heron",
    "island", "lagoon", "lantern", "maple", "meadow", "otter", "pebble", "pine", "prairie", "quartz",
    "raven", "reef", "river", "sparrow", "summit", "thistle", "tundra", "valley", "willow", "zephyr",
};

char *generate_app_id(void)
{
    reg_entry *list = NULL;
    size_t n = 0;
    registry_list(&list, &n);
    srand((unsigned)(time(NULL) ^ getpid()));
    char *id = NULL;
    for (int attempt = 0; attempt < 100; attempt++) {
        free(id);
        id = xasprintf("%s-%s", adjectives[rand() % (int)(sizeof adjectives / sizeof *adjectives)],
                       nouns[rand() % (int)(sizeof nouns / sizeof *nouns)]);
        int used = 0;
        for (size_t i = 0; i < n; i++) if (strcmp(list[i].app_id, id) == 0) used = 1;
        if (!used) break;
    }
    registry_free(list, n);
    return id;
}

/* ---- HTTP ------------------------------------------------------------------ */

void http_result_free(http_result *res)
{
    free(res->error);
    free(res->content_type);
    free(res->body);
    memset(res, 0, sizeof *res);
}

static int fail(http_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(http_result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) abort();
    va_end(ap);
    free(res->error);
    res->error = s;
    res->status = 0;
    return -1;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Find a header's value in the raw header block (case-insensitive name). */
static char *header_value(const char *hdrs, const char *name)
{
    size_t nl = strlen(name);
    for (const char *line = hdrs; line && *line; ) {
        const char *eol = strstr(line, "\r\n");
        if (!eol) break;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t') v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
            return xstrndup(v, (size_t)(e - v));
        }
        line = eol + 2;
    }
    return NULL;
}

/* Decode a chunked body in place; returns the decoded length or -1. */
static long dechunk(char *buf, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end = NULL;
        if (in >= len) return -1;
        unsigned long sz = strtoul(buf + in, &end, 16);
        char *eol = memmem(buf + in, len - in, "\r\n", 2);
        if (!eol || end == buf + in) return -1;
        in = (size_t)(eol - buf) + 2;
        if (sz == 0) return (long)out;
        if (in + sz > len) return -1;
        memmove(buf + out, buf + in, sz);
        out += sz;
        in += sz + 2;
    }
}

int http_request(int port, const char *method, const char *path, const char *content_type,
                 const char *body, size_t body_len, int timeout_ms, http_result *res)
{
    memset(res, 0, sizeof *res);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(res, "socket: %s", strerror(errno));
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return fail(res, "cannot connect to 127.0.0.1:%d: %s", port, strerror(e));
    }
    char *head = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: dapr-cli/%s\r\n"
                           "Connection: close\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                           method, path, port, PACKAGE_VERSION, body_len,
                           content_type ? "Content-Type: " : "", content_type ? content_type : "",
                           content_type ? "\r\n" : "");
    int bad = send_all(fd, head, strlen(head)) != 0 || (body_len && send_all(fd, body, body_len) != 0);
    free(head);
    if (bad) { close(fd); return fail(res, "sending the request failed: %s", strerror(errno)); }

    /* Connection: close, so the answer ends at EOF at the latest. */
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) { cap *= 2; buf = xrealloc(buf, cap); }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return fail(res, "reading the response failed: %s",
                        e == EAGAIN || e == EWOULDBLOCK ? "timed out" : strerror(e));
        }
        if (r == 0) break;
        len += (size_t)r;
        buf[len] = '\0';
        /* Stop early once a Content-Length body is complete. */
        char *sep = strstr(buf, "\r\n\r\n");
        if (sep) {
            char *cl = header_value(buf, "Content-Length");
            if (cl) {
                size_t want = (size_t)(sep + 4 - buf) + strtoull(cl, NULL, 10);
                free(cl);
                if (len >= want) break;
            }
        }
    }
    close(fd);
    buf[len] = '\0';
    int major, minor, status;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3) {
        free(buf);
        return fail(res, "malformed HTTP response from 127.0.0.1:%d", port);
    }
    sep[2] = '\0';   /* header block ends with its last CRLF */
    char *bstart = sep + 4;
    size_t blen = len - (size_t)(bstart - buf);
    char *te = header_value(buf, "Transfer-Encoding");
    char *cl = header_value(buf, "Content-Length");
    if (te && strcasecmp(te, "chunked") == 0) {
        long d = dechunk(bstart, blen);
        blen = d < 0 ? blen : (size_t)d;
    } else if (cl) {
        size_t want = strtoull(cl, NULL, 10);
        if (want < blen) blen = want;
    }
    res->status = status;
    res->content_type = header_value(buf, "Content-Type");
    res->body = xmalloc(blen + 1);
    memcpy(res->body, bstart, blen);
    res->body[blen] = '\0';
    res->body_len = blen;
    free(te);
    free(cl);
    free(buf);
    return 0;
}
