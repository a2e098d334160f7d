/*
 * safe_path.h - open files beneath a root folder so that no name can
 * reach outside it: not with "..", not as an absolute path, not through a
 * symbolic link (even one swapped in between a check and the open).
 *
 * Names are first normalised lexically ("a/./b//c" -> "a/b/c", "a/../b"
 * -> "b"); a ".." that would climb above the root and an absolute name are
 * refused (EXDEV).  The kernel then resolves the normalised name relative
 * to a descriptor of the root:
 *  - with openat2(2) and RESOLVE_BENEATH (Linux 5.6+): symbolic links are
 *    followed only while they stay beneath the root; one that leads out
 *    (absolute, or with too many "..") fails with EXDEV, magic links
 *    (/proc/self/fd/...) with ELOOP;
 *  - without openat2: the name is walked one component at a time with
 *    O_NOFOLLOW, so every symbolic link is refused (ELOOP) -- stricter, and
 *    just as safe.
 * Every call here is thread-safe.
 */
#ifndef DAPR_SAFE_PATH_H
#define DAPR_SAFE_PATH_H

#include <sys/types.h>

/* Normalise name into *out (malloc'ed; "" for the root itself).  Returns
 * 0, or -1 with errno EXDEV (absolute or escaping name) or ENOMEM. */
int sp_normalise(const char *name, char **out);

/* Open rel (normalised) beneath the folder rootfd refers to.  flags are
 * open(2)'s; with create_parents, missing parent folders are created
 * (mode 0777 before the umask) on the way.  Returns a descriptor, or -1
 * with errno (EXDEV or ELOOP for an attempt to leave the root). */
int sp_open(int rootfd, const char *rel, int flags, mode_t mode, int create_parents);

/* A descriptor (O_PATH) of rel's parent folder beneath rootfd, and
 * rel's last component in *base (points into rel).  For unlinkat(2).
 * rel must not be "".  Returns -1 with errno on failure. */
int sp_open_parent(int rootfd, const char *rel, const char **base);

/* Is an errno one of the "would leave the root" errors above? */
int sp_is_escape(int err);

/* Tests only: 1 forces the component-by-component walk even where
 * openat2 exists.  Not thread-safe; set before use. */
void sp_force_fallback(int on);
/* Find out (once) whether openat2 works here; returns sp_uses_openat2(). */
int sp_probe(int rootfd);
/* Whether openat2 is used (after the first call). */
int sp_uses_openat2(void);

#endif
