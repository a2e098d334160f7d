/*
 * localstorage.c - bindings.localstorage: an output binding that keeps
 * files under a root folder (Dapr's component of the same name).
 *
 * Metadata: rootPath (required).  Operations and request metadata:
 *   create  fileName (a random UUID when absent) -> {"fileName": "<relative path>"}
 *   get     fileName                             -> the file's bytes
 *   list    fileName (a folder; "" = the root)   -> JSON array of the absolute
 *                                                   paths of the files below it
 *   delete  fileName                             -> no response (204)
 *
 * The data of a create is what Dapr hands its component: the request's
 * "data" re-encoded as JSON.  As Dapr does, one level of string quoting is
 * removed first (Go's strconv.Unquote rules), and then, if what is left is
 * valid standard base64, it is decoded -- so "aGVsbG8=" stores "hello",
 * and, as in Dapr, so does any other text that happens to be base64.
 * There is no switch for this in Dapr, and none here.
 *
 * Containment: rootPath is resolved once at init (made absolute, its
 * symbolic links resolved, Dapr's forbidden roots refused, created when
 * missing).  Every fileName then goes through safe_path.c, which refuses a
 * name that is absolute, climbs above the root with "..", or leads out
 * through a symbolic link; with openat2 the kernel enforces this on the
 * open itself (RESOLVE_BENEATH), so swapping a link in between cannot
 * help an attacker.  Dapr clamps such names into the root instead
 * (filepath-securejoin); refusing them is deliberate: a name that tries
 * to leave the root is an error the app should hear about.
 *
 * Blocking file I/O: operations run on the host's worker pool.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdarg.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dapr/plugin.h>

#include "safe_path.h"

#define LIST_MAX_DEPTH 64 /* folders deeper than this are not listed */

typedef struct ls_inst {
    dapr_host *host;
    const dapr_host_api *api;
    char *root; /* absolute, symbolic links resolved */
} ls_inst;

/* ---- growing buffers ------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void put(buf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* Length of a valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t l = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!l || l > n) return 0;
    for (size_t i = 1; i < l; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    unsigned cp = l == 2 ? (s[0] & 0x1Fu) : l == 3 ? (s[0] & 0x0Fu) : (s[0] & 0x07u);
    for (size_t i = 1; i < l; i++)
        cp = (cp << 6) | (s[i] & 0x3Fu);
    if ((l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return l;
}

/* A JSON string as Go's encoding/json writes it (HTML-safe escapes,
 * invalid UTF-8 as U+FFFD). */
static void put_json_string(buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(b, e, 2);
            i++;
        } else if (c == '\n') {
            puts_(b, "\\n"), i++;
        } else if (c == '\r') {
            puts_(b, "\\r"), i++;
        } else if (c == '\t') {
            puts_(b, "\\t"), i++;
        } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(b, e, 6);
            i++;
        } else if (c < 0x80) {
            put(b, &p[i], 1);
            i++;
        } else {
            size_t l = utf8_len(p + i, n - i);
            if (!l) {
                puts_(b, "\\ufffd");
                i++;
            } else if (l == 3 && p[i] == 0xE2 && p[i + 1] == 0x80 && (p[i + 2] == 0xA8 || p[i + 2] == 0xA9)) {
                puts_(b, p[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
                i += 3;
            } else {
                put(b, p + i, l);
                i += l;
            }
        }
    }
    put(b, "\"", 1);
}

/* ---- Dapr's data handling on create ------------------------------------------ */

static int unhex(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void put_rune(buf *b, unsigned r)
{
    unsigned char o[4];
    size_t n;
    if (r < 0x80) { o[0] = (unsigned char)r; n = 1; }
    else if (r < 0x800) { o[0] = (unsigned char)(0xC0 | (r >> 6)); o[1] = (unsigned char)(0x80 | (r & 0x3F)); n = 2; }
    else if (r < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (r >> 12)); o[1] = (unsigned char)(0x80 | ((r >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (r & 0x3F)); n = 3;
    } else {
        o[0] = (unsigned char)(0xF0 | (r >> 18)); o[1] = (unsigned char)(0x80 | ((r >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((r >> 6) & 0x3F)); o[3] = (unsigned char)(0x80 | (r & 0x3F)); n = 4;
    }
    put(b, o, n);
}

/* Go's strconv.Unquote for a double-quoted string.  Returns 1 with the
 * unquoted bytes in out, 0 when s is not such a literal (then the data is
 * used as it is, as Dapr does). */
static int go_unquote(const unsigned char *s, size_t n, buf *out)
{
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return 0;
    size_t i = 1;
    while (i < n - 1) {
        unsigned char c = s[i];
        if (c == '"' || c == '\n')
            return 0; /* an unescaped quote before the end, or a raw newline */
        if (c >= 0x80) {
            size_t l = utf8_len(s + i, n - 1 - i);
            if (!l)
                return 0; /* the literal must be UTF-8 (the host's JSON always is) */
            put(out, s + i, l);
            i += l;
            continue;
        }
        if (c != '\\') {
            put(out, &c, 1);
            i++;
            continue;
        }
        if (i + 1 >= n - 1)
            return 0;
        unsigned char e = s[i + 1];
        i += 2;
        unsigned char v;
        switch (e) {
        case 'a': v = '\a'; put(out, &v, 1); break;
        case 'b': v = '\b'; put(out, &v, 1); break;
        case 'f': v = '\f'; put(out, &v, 1); break;
        case 'n': v = '\n'; put(out, &v, 1); break;
        case 'r': v = '\r'; put(out, &v, 1); break;
        case 't': v = '\t'; put(out, &v, 1); break;
        case 'v': v = '\v'; put(out, &v, 1); break;
        case '\\': v = '\\'; put(out, &v, 1); break;
        case '"': v = '"'; put(out, &v, 1); break;
        case 'x': case 'u': case 'U': {
            size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (i + digits > n - 1)
                return 0;
            unsigned r = 0;
            for (size_t k = 0; k < digits; k++) {
                int h = unhex(s[i + k]);
                if (h < 0)
                    return 0;
                r = (r << 4) | (unsigned)h;
            }
            i += digits;
            if (e == 'x') {
                v = (unsigned char)r; /* one raw byte */
                put(out, &v, 1);
            } else {
                if (r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF))
                    return 0;
                put_rune(out, r);
            }
            break;
        }
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
            if (i + 2 > n - 1)
                return 0;
            unsigned r = (unsigned)(e - '0');
            for (size_t k = 0; k < 2; k++) {
                if (s[i + k] < '0' || s[i + k] > '7')
                    return 0;
                r = (r << 3) | (unsigned)(s[i + k] - '0');
            }
            i += 2;
            if (r > 255)
                return 0;
            v = (unsigned char)r;
            put(out, &v, 1);
            break;
        }
        default:
            return 0; /* includes \' and \/ */
        }
    }
    return 1;
}

/* Go's base64.StdEncoding.DecodeString: padded, '\r' and '\n' ignored,
 * non-zero trailing bits tolerated.  Returns 1 with the bytes in out. */
static int go_base64(const unsigned char *s, size_t n, buf *out)
{
    static signed char map[256];
    static int ready;
    if (!ready) { /* benign race: every thread writes the same values */
        memset(map, -1, sizeof map);
        const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int k = 0; k < 64; k++)
            map[(unsigned char)a[k]] = (signed char)k;
        ready = 1;
    }
    unsigned char q[4];
    size_t qn = 0;
    int done = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '\r' || c == '\n')
            continue;
        if (done)
            return 0; /* data after the padding */
        q[qn++] = c;
        if (qn < 4)
            continue;
        qn = 0;
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = q[k] == '=' ? -2 : map[q[k]];
        if (v[0] < 0 || v[1] < 0)
            return 0;
        unsigned char o[3];
        o[0] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
        if (v[2] == -2) {
            if (v[3] != -2)
                return 0;
            put(out, o, 1);
            done = 1;
        } else if (v[2] < 0) {
            return 0;
        } else if (v[3] == -2) {
            o[1] = (unsigned char)(((v[1] & 15) << 4) | (v[2] >> 2));
            put(out, o, 2);
            done = 1;
        } else if (v[3] < 0) {
            return 0;
        } else {
            o[1] = (unsigned char)(((v[1] & 15) << 4) | (v[2] >> 2));
            o[2] = (unsigned char)(((v[2] & 3) << 6) | v[3]);
            put(out, o, 3);
        }
    }
    return qn == 0;
}

/* ---- results ------------------------------------------------------------------ */

static void fail(dapr_binding_invoke_cb cb, void *ctx, dapr_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(dapr_binding_invoke_cb cb, void *ctx, dapr_status st, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dapr_binding_invoke_result r = {.status = st, .message = msg};
    cb(ctx, &r);
}

static void reply(dapr_binding_invoke_cb cb, void *ctx, const void *data, size_t len)
{
    dapr_binding_invoke_result r = {.status = DAPR_OK, .has_data = 1,
                                    .data = {.ptr = data, .len = len}, .content_type = "application/json"};
    cb(ctx, &r);
}

static const char *req_meta(const dapr_binding_invoke_req *req, const char *name)
{
    /* Dapr's request metadata is a Go map: names are case-sensitive. */
    for (size_t i = 0; i < req->metadata.n; i++)
        if (req->metadata.items[i].name && strcmp(req->metadata.items[i].name, name) == 0)
            return req->metadata.items[i].value;
    return NULL;
}

static void uuid4(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (i * 37) ^ getpid());
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* The absolute path of rel, for messages and list results (as Dapr). */
static char *abs_of(const ls_inst *ls, const char *rel)
{
    size_t n = strlen(ls->root) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s", ls->root, *rel && strcmp(ls->root, "/") != 0 ? "/" : "", rel);
    return p;
}

static int open_root(const ls_inst *ls)
{
    return open(ls->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* Normalise fileName; on failure answers and returns NULL. */
static char *checked_name(const char *name, dapr_binding_invoke_cb cb, void *ctx)
{
    char *rel;
    if (sp_normalise(name, &rel) != 0) {
        fail(cb, ctx, errno == EXDEV ? DAPR_ERR_PERMISSION_DENIED : DAPR_ERR_INTERNAL,
             "error getting absolute path for file %s: %s", name,
             errno == EXDEV ? "the path leads outside rootPath" : strerror(errno));
        return NULL;
    }
    return rel;
}

static const char *io_error(int e)
{
    return sp_is_escape(e) ? "the path leads outside rootPath or through a symbolic link" : strerror(e);
}

/* ---- operations ------------------------------------------------------------------ */

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void op_create(ls_inst *ls, const dapr_binding_invoke_req *req, const char *name, dapr_binding_invoke_cb cb,
                      void *ctx)
{
    char uuid[37];
    if (!name || !*name) {
        uuid4(uuid);
        name = uuid;
    }
    char *rel = checked_name(name, cb, ctx);
    if (!rel)
        return;
    if (!*rel) {
        fail(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "error creating file %s: fileName names the root folder", name);
        free(rel);
        return;
    }
    /* One level of JSON string quoting off, then base64 if it is. */
    buf unq = {0}, dec = {0};
    const unsigned char *data = req->data.ptr;
    size_t len = req->data.ptr ? req->data.len : 0;
    if (go_unquote(data, len, &unq) && !unq.oom) {
        data = (const unsigned char *)(unq.p ? unq.p : "");
        len = unq.len;
    }
    if (go_base64(data, len, &dec) && !dec.oom) {
        data = (const unsigned char *)(dec.p ? dec.p : "");
        len = dec.len;
    }
    char *abs = abs_of(ls, rel);
    int root = open_root(ls);
    int fd = root < 0 ? -1 : sp_open(root, rel, O_WRONLY | O_CREAT | O_TRUNC, 0666, 1);
    int e = errno;
    if (root >= 0)
        close(root);
    if (fd < 0) {
        fail(cb, ctx, sp_is_escape(e) ? DAPR_ERR_PERMISSION_DENIED : DAPR_ERR_INTERNAL,
             "error creating file %s: %s", abs ? abs : name, io_error(e));
    } else if (write_all(fd, data, len) != 0 || close(fd) != 0) {
        e = errno;
        fail(cb, ctx, DAPR_ERR_INTERNAL, "error writing to file %s: %s", abs ? abs : name, strerror(e));
    } else {
        if (ls->api->log_enabled(ls->host, DAPR_LOG_DEBUG))
            ls->api->log(ls->host, DAPR_LOG_DEBUG, "wrote file: %s. numBytes: %zu", abs ? abs : rel, len);
        buf out = {0};
        puts_(&out, "{\"fileName\":");
        put_json_string(&out, rel);
        puts_(&out, "}");
        if (out.oom)
            fail(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        else
            reply(cb, ctx, out.p, out.len);
        free(out.p);
    }
    free(abs);
    free(unq.p);
    free(dec.p);
    free(rel);
}

static void op_get(ls_inst *ls, const char *name, dapr_binding_invoke_cb cb, void *ctx)
{
    char *rel = checked_name(name ? name : "", cb, ctx);
    if (!rel)
        return;
    char *abs = abs_of(ls, rel);
    const char *shown = abs ? abs : rel;
    int root = open_root(ls);
    int fd = root < 0 ? -1 : sp_open(root, rel, O_RDONLY, 0, 0);
    int e = errno;
    if (root >= 0)
        close(root);
    struct stat st;
    if (fd < 0) {
        if (e == ENOENT)
            fail(cb, ctx, DAPR_ERR_NOT_FOUND, "file not found: %s", shown);
        else
            fail(cb, ctx, sp_is_escape(e) ? DAPR_ERR_PERMISSION_DENIED : DAPR_ERR_INTERNAL,
                 "error opening path %s: %s", shown, io_error(e));
    } else if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        fail(cb, ctx, DAPR_ERR_INTERNAL, "error reading file %s: %s", shown,
             S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno));
        close(fd);
    } else {
        buf data = {0};
        char chunk[65536];
        for (;;) {
            ssize_t r = read(fd, chunk, sizeof chunk);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                e = r < 0 ? errno : 0;
                break;
            }
            put(&data, chunk, (size_t)r);
            if (data.oom)
                break;
        }
        close(fd);
        if (e || data.oom) {
            fail(cb, ctx, DAPR_ERR_INTERNAL, "error reading file %s: %s", shown, data.oom ? "out of memory" : strerror(e));
        } else {
            if (ls->api->log_enabled(ls->host, DAPR_LOG_DEBUG))
                ls->api->log(ls->host, DAPR_LOG_DEBUG, "read file: %s. size: %zu bytes", shown, data.len);
            reply(cb, ctx, data.p ? data.p : "", data.len);
        }
        free(data.p);
    }
    free(abs);
    free(rel);
}

static void op_delete(ls_inst *ls, const char *name, dapr_binding_invoke_cb cb, void *ctx)
{
    char *rel = checked_name(name ? name : "", cb, ctx);
    if (!rel)
        return;
    char *abs = abs_of(ls, rel);
    const char *shown = abs ? abs : rel;
    if (!*rel) {
        fail(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "error deleting file %s: fileName names the root folder", shown);
    } else {
        const char *base;
        int root = open_root(ls);
        int dir = root < 0 ? -1 : sp_open_parent(root, rel, &base);
        int e = errno;
        if (root >= 0)
            close(root);
        int rc = -1;
        if (dir >= 0) {
            /* os.Remove: a file, or else an empty folder.  A symbolic link
             * is removed itself, never what it points to. */
            rc = unlinkat(dir, base, 0);
            if (rc != 0 && (errno == EISDIR || errno == EPERM))
                rc = unlinkat(dir, base, AT_REMOVEDIR);
            e = errno;
            close(dir);
        }
        if (rc != 0)
            fail(cb, ctx,
                 sp_is_escape(e) ? DAPR_ERR_PERMISSION_DENIED : e == ENOENT ? DAPR_ERR_NOT_FOUND : DAPR_ERR_INTERNAL,
                 "error deleting file %s: %s", shown, io_error(e));
        else {
            if (ls->api->log_enabled(ls->host, DAPR_LOG_DEBUG))
                ls->api->log(ls->host, DAPR_LOG_DEBUG, "removed file: %s", shown);
            dapr_binding_invoke_result r = {.status = DAPR_OK, .has_data = 0};
            cb(ctx, &r);
        }
    }
    free(abs);
    free(rel);
}

typedef struct name_list {
    char **v;
    size_t n, cap;
    int oom;
} name_list;

static void nl_add(name_list *l, char *s)
{
    if (!s || l->oom) {
        free(s);
        l->oom = 1;
        return;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            free(s);
            l->oom = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* filepath.Walk order: entries of a folder sorted by name, depth first;
 * anything that is not a folder (symbolic links included: never
 * followed) is listed. */
static void walk(int fd, const char *path, int depth, name_list *out)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    name_list names = {0};
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            nl_add(&names, strdup(de->d_name));
    if (names.n)
        qsort(names.v, names.n, sizeof *names.v, cmp_str);
    for (size_t i = 0; i < names.n && !out->oom; i++) {
        size_t n = strlen(path) + strlen(names.v[i]) + 2;
        char *child = malloc(n);
        if (child)
            snprintf(child, n, "%s%s%s", path, strcmp(path, "/") ? "/" : "", names.v[i]);
        struct stat st;
        if (fstatat(dirfd(d), names.v[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            if (child && depth < LIST_MAX_DEPTH) {
                int sub = openat(dirfd(d), names.v[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0)
                    walk(sub, child, depth + 1, out);
            }
            free(child);
        } else {
            nl_add(out, child);
        }
    }
    for (size_t i = 0; i < names.n; i++)
        free(names.v[i]);
    free(names.v);
    closedir(d);
}

static void op_list(ls_inst *ls, const char *name, dapr_binding_invoke_cb cb, void *ctx)
{
    char *rel = checked_name(name ? name : "", cb, ctx);
    if (!rel)
        return;
    char *abs = abs_of(ls, rel);
    int root = open_root(ls);
    int fd = root < 0 ? -1 : sp_open(root, rel, O_RDONLY, 0, 0);
    int e = errno;
    if (root >= 0)
        close(root);
    struct stat st;
    if (!abs) {
        fail(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        if (fd >= 0)
            close(fd);
    } else if (fd < 0) {
        fail(cb, ctx,
             sp_is_escape(e) ? DAPR_ERR_PERMISSION_DENIED : e == ENOENT ? DAPR_ERR_NOT_FOUND : DAPR_ERR_INTERNAL,
             "error getting stats for path %s: %s", abs, io_error(e));
    } else if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode)) {
        close(fd);
        fail(cb, ctx, DAPR_ERR_INVALID_ARGUMENT,
             "unable to list files as the file specified is not a directory: %s", abs);
    } else {
        name_list files = {0};
        walk(fd, abs, 0, &files);
        buf out = {0};
        if (!files.n) {
            puts_(&out, "null"); /* Go marshals an empty (nil) slice as null */
        } else {
            puts_(&out, "[");
            for (size_t i = 0; i < files.n; i++) {
                if (i)
                    puts_(&out, ",");
                put_json_string(&out, files.v[i]);
            }
            puts_(&out, "]");
        }
        if (files.oom || out.oom)
            fail(cb, ctx, DAPR_ERR_INTERNAL, "error listing files in the directory %s: out of memory", abs);
        else
            reply(cb, ctx, out.p, out.len);
        for (size_t i = 0; i < files.n; i++)
            free(files.v[i]);
        free(files.v);
        free(out.p);
    }
    free(abs);
    free(rel);
}

static void ls_invoke(void *inst, const dapr_binding_invoke_req *req, dapr_binding_invoke_cb cb, void *ctx)
{
    ls_inst *ls = inst;
    const char *name = req_meta(req, "fileName");
    if (strcmp(req->operation, "create") == 0)
        op_create(ls, req, name, cb, ctx);
    else if (strcmp(req->operation, "get") == 0)
        op_get(ls, name, cb, ctx);
    else if (strcmp(req->operation, "delete") == 0)
        op_delete(ls, name, cb, ctx);
    else if (strcmp(req->operation, "list") == 0)
        op_list(ls, name, cb, ctx);
    else
        fail(cb, ctx, DAPR_ERR_NOT_SUPPORTED, "unsupported operation %s", req->operation);
}

/* ---- init ------------------------------------------------------------------------- */

/* filepath.Clean of an absolute path, in place: "." and empty components
 * go, ".." removes the previous component ("/.." stays "/"). */
static void clean_abs(char *p)
{
    size_t len = 0; /* of the cleaned text, written into p itself */
    const char *r = p;
    while (*r) {
        while (*r == '/')
            r++;
        if (!*r)
            break;
        const char *e = strchr(r, '/');
        size_t cl = e ? (size_t)(e - r) : strlen(r);
        if (cl == 1 && r[0] == '.') {
            /* nothing */
        } else if (cl == 2 && r[0] == '.' && r[1] == '.') {
            while (len > 0 && p[--len] != '/')
                ; /* back to the previous separator */
        } else {
            p[len] = '/';
            memmove(p + len + 1, r, cl);
            len += cl + 1;
        }
        r += cl;
    }
    if (len == 0)
        p[len++] = '/';
    p[len] = '\0';
}

static int mkdir_all(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0777) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

/* Dapr's validateRootPath: absolute, clean, the symbolic links of its
 * longest existing part resolved, not a file, not a forbidden folder. */
static char *resolve_root(const char *given, char *err, size_t errlen)
{
    char cwd[PATH_MAX];
    size_t n = strlen(given) + PATH_MAX + 2;
    char *p = malloc(n);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (given[0] == '/') {
        snprintf(p, n, "%s", given);
    } else {
        if (!getcwd(cwd, sizeof cwd)) {
            snprintf(err, errlen, "failed to obtain current working directory: %s", strerror(errno));
            free(p);
            return NULL;
        }
        snprintf(p, n, "%s/%s", cwd, given);
    }
    clean_abs(p);
    /* The longest existing prefix. */
    size_t keep = strlen(p);
    struct stat st;
    for (;;) {
        char saved = p[keep];
        p[keep] = '\0';
        int rc = stat(keep ? p : "/", &st);
        int e = errno;
        p[keep] = saved;
        if (rc == 0) {
            if (!S_ISDIR(st.st_mode)) {
                snprintf(err, errlen, "property rootPath represents a file and not a directory");
                free(p);
                return NULL;
            }
            break;
        }
        if (e != ENOENT) {
            snprintf(err, errlen, "error getting stat for path %s: %s", p, strerror(e));
            free(p);
            return NULL;
        }
        while (keep > 0 && p[keep - 1] != '/')
            keep--;
        if (keep > 0)
            keep--;
    }
    char saved = p[keep];
    p[keep] = '\0';
    char *real = realpath(keep ? p : "/", NULL);
    p[keep] = saved;
    if (!real) {
        snprintf(err, errlen, "failed to evaluate symlinks in rootPath: %s", strerror(errno));
        free(p);
        return NULL;
    }
    size_t out_n = strlen(real) + strlen(p + keep) + 2;
    char *out = malloc(out_n);
    if (out) {
        snprintf(out, out_n, "%s%s", real, p + keep);
        clean_abs(out);
    }
    free(real);
    free(p);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    static const char *const forbidden[] = {"/proc", "/sys", "/boot", "/var/run/secrets"};
    for (size_t i = 0; i < sizeof forbidden / sizeof *forbidden; i++) {
        size_t fl = strlen(forbidden[i]);
        if (strncmp(out, forbidden[i], fl) == 0 && (out[fl] == '\0' || out[fl] == '/')) {
            snprintf(err, errlen, "property rootPath points to a disallowed location");
            free(out);
            return NULL;
        }
    }
    return out;
}

static dapr_status ls_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf, size_t errlen)
{
    const char *given = api->metadata_get(host, "rootPath");
    if (!given || !*given) {
        snprintf(errbuf, errlen, "failed to parse metadata: property rootPath must not be empty");
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    char why[512] = "";
    char *root = resolve_root(given, why, sizeof why);
    if (!root) {
        snprintf(errbuf, errlen, "failed to parse metadata: %s", why);
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    if (mkdir_all(root) != 0) {
        snprintf(errbuf, errlen, "unable to create directory specified by 'rootPath' %s: %s", root, strerror(errno));
        free(root);
        return DAPR_ERR_INTERNAL;
    }
    ls_inst *ls = calloc(1, sizeof *ls);
    if (!ls) {
        free(root);
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    ls->host = host;
    ls->api = api;
    ls->root = root;
    int fd = open_root(ls);
    if (fd >= 0) {
        sp_probe(fd); /* which containment the kernel offers, for the log */
        close(fd);
    }
    api->log(host, DAPR_LOG_DEBUG, "rootPath %s; names resolved with %s", root,
             sp_uses_openat2() ? "openat2 RESOLVE_BENEATH" : "a component walk refusing symbolic links");
    *instance = ls;
    return DAPR_OK;
}

static void ls_close(void *inst)
{
    ls_inst *ls = inst;
    free(ls->root);
    free(ls);
}

/* ---- descriptor ------------------------------------------------------------------------ */

static const char *const ls_operations[] = {"create", "get", "list", "delete", NULL};

static const dapr_metadata_field ls_schema[] = {
    {"rootPath", DAPR_META_STRING, DAPR_META_REQUIRED, NULL, "the folder files are kept under"},
};

static const dapr_output_binding_vtable ls_vtable = {
    .size = sizeof(dapr_output_binding_vtable),
    .operations = ls_operations,
    .invoke = ls_invoke,
};

static const dapr_component_def ls_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_OUTPUT_BINDING,
    .type = "bindings.localstorage",
    .version = "v1",
    .features = 0,
    .flags = 0, /* file I/O blocks: the host's worker pool runs it */
    .metadata_schema = ls_schema,
    .n_metadata_schema = sizeof ls_schema / sizeof *ls_schema,
    .init = ls_init,
    .close = ls_close,
    .vtable = &ls_vtable,
};

static const dapr_component_def *const ls_components[] = {&ls_component};

static const dapr_plugin_descriptor ls_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "bindings-localstorage",
    .version = "1.0.0",
    .description = "bindings.localstorage: files under a root folder (create, get, list, delete)",
    .components = ls_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &ls_descriptor;
}
