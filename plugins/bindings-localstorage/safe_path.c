/*
 * safe_path.c - see safe_path.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "safe_path.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__linux__) && __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2_H 1
#endif

static int force_fallback;
static atomic_int openat2_state = -1; /* -1 unknown, 0 absent, 1 usable */

void sp_force_fallback(int on) { force_fallback = on; }
int sp_uses_openat2(void) { return !force_fallback && atomic_load(&openat2_state) == 1; }

int sp_is_escape(int err) { return err == EXDEV || err == ELOOP; }

int sp_normalise(const char *name, char **out)
{
    if (name[0] == '/') {
        errno = EXDEV;
        return -1;
    }
    size_t n = strlen(name);
    char *buf = malloc(n + 1);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    size_t len = 0;
    for (const char *p = name; *p;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, '/');
        size_t cl = end ? (size_t)(end - p) : strlen(p);
        if (cl == 1 && p[0] == '.') {
            /* nothing */
        } else if (cl == 2 && p[0] == '.' && p[1] == '.') {
            if (len == 0) {
                free(buf);
                errno = EXDEV; /* would climb above the root */
                return -1;
            }
            while (len > 0 && buf[len - 1] != '/')
                len--;
            if (len > 0)
                len--; /* the separator */
        } else {
            if (len)
                buf[len++] = '/';
            memcpy(buf + len, p, cl);
            len += cl;
        }
        p += cl;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

/* ---- openat2 ---------------------------------------------------------------- */

static int open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
#if defined(HAVE_OPENAT2_H) && defined(SYS_openat2)
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
#else
    (void)dirfd; (void)path; (void)flags; (void)mode;
    errno = ENOSYS;
    return -1;
#endif
}

/* Is openat2 usable here (kernel, seccomp filters)?  Probed once. */
static int use_openat2(int rootfd)
{
    if (force_fallback)
        return 0;
    int st = atomic_load(&openat2_state);
    if (st >= 0)
        return st;
    int fd = open_beneath(rootfd, ".", O_PATH | O_DIRECTORY, 0);
    if (fd >= 0) {
        close(fd);
        st = 1;
    } else {
        st = (errno == ENOSYS || errno == EPERM || errno == EINVAL) ? 0 : 1;
    }
    atomic_store(&openat2_state, st);
    return st;
}

int sp_probe(int rootfd)
{
    return use_openat2(rootfd);
}

/* ---- folders ------------------------------------------------------------------ */

/* A descriptor (O_PATH) of the folder dir ("" = the root) beneath rootfd,
 * creating missing folders when create is set. */
static int open_dir(int rootfd, const char *dir, int create)
{
    int beneath = use_openat2(rootfd);
    if (beneath) {
        int fd = open_beneath(rootfd, *dir ? dir : ".", O_PATH | O_DIRECTORY, 0);
        if (fd >= 0 || errno != ENOENT || !create)
            return fd;
    }
    /* Component by component: always for the fallback, and to create the
     * missing folders of the openat2 path. */
    int cur = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0)
        return -1;
    size_t dl = strlen(dir);
    for (size_t i = 0; i < dl;) {
        size_t j = i;
        while (j < dl && dir[j] != '/')
            j++;
        char *comp = strndup(dir + i, j - i);
        char *prefix = strndup(dir, j);
        if (!comp || !prefix) {
            free(comp);
            free(prefix);
            close(cur);
            errno = ENOMEM;
            return -1;
        }
        int nfd = -1;
        for (int attempt = 0; attempt < 2; attempt++) {
            /* With openat2 the whole prefix is resolved from the root, so
             * a symbolic link inside the root may be crossed; without, each
             * step refuses links. */
            nfd = beneath ? open_beneath(rootfd, prefix, O_PATH | O_DIRECTORY, 0)
                          : openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (nfd >= 0 || errno != ENOENT || !create || attempt)
                break;
            if (mkdirat(cur, comp, 0777) != 0 && errno != EEXIST)
                break;
        }
        int e = errno;
        if (nfd < 0 && !beneath && (e == ENOTDIR || e == ELOOP)) {
            struct stat st;
            if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                e = ELOOP; /* a symbolic link: refused on this path */
        }
        free(comp);
        free(prefix);
        close(cur);
        if (nfd < 0) {
            errno = e;
            return -1;
        }
        cur = nfd;
        i = j + 1;
    }
    return cur;
}

static void split(const char *rel, char **dir, const char **base)
{
    const char *slash = strrchr(rel, '/');
    *base = slash ? slash + 1 : rel;
    *dir = slash ? strndup(rel, (size_t)(slash - rel)) : strdup("");
}

int sp_open(int rootfd, const char *rel, int flags, mode_t mode, int create_parents)
{
    if (!*rel) /* the root itself */
        return openat(rootfd, ".", (flags & ~O_CREAT) | O_CLOEXEC);
    char *dir;
    const char *base;
    split(rel, &dir, &base);
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int fd;
    if (use_openat2(rootfd)) {
        if (create_parents && *dir) {
            int d = open_dir(rootfd, dir, 1);
            if (d < 0) {
                int e = errno;
                free(dir);
                errno = e;
                return -1;
            }
            close(d);
        }
        fd = open_beneath(rootfd, rel, flags, mode);
    } else {
        int d = open_dir(rootfd, dir, create_parents);
        if (d < 0) {
            int e = errno;
            free(dir);
            errno = e;
            return -1;
        }
        fd = openat(d, base, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        int e = errno;
        struct stat st;
        if (fd < 0 && e == ENOTDIR && fstatat(d, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            e = ELOOP; /* O_DIRECTORY met a symbolic link */
        close(d);
        errno = e;
    }
    int e = errno;
    free(dir);
    errno = e;
    return fd;
}

int sp_open_parent(int rootfd, const char *rel, const char **base)
{
    char *dir;
    split(rel, &dir, base);
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int fd = open_dir(rootfd, dir, 0);
    int e = errno;
    free(dir);
    errno = e;
    return fd;
}
