/*
 * check_safe_path.c - unit tests of safe_path.c: names are normalised,
 * and no name -- "..", absolute, through a symbolic link, even one that
 * points back inside -- opens anything outside the root.  Each test runs
 * twice: with openat2 (when the kernel has it) and with the fallback walk.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safe_path.h"

static char tmp[256], root[300], outside[300];
static int rootfd = -1;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/check_safe_path.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(root, sizeof root, "%s/root", tmp);
    snprintf(outside, sizeof outside, "%s/outside", tmp);
    ck_assert_int_eq(mkdir(root, 0700), 0);
    ck_assert_int_eq(mkdir(outside, 0700), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/secret.txt", outside);
    write_file(p, "outside");
    snprintf(p, sizeof p, "%s/sub", root);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/in.txt", root);
    write_file(p, "inside");
    /* links: out (absolute, a folder outside), up (relative, outside),
     * file-out (a file outside), in (relative, stays inside) */
    snprintf(p, sizeof p, "%s/out", root);
    ck_assert_int_eq(symlink(outside, p), 0);
    snprintf(p, sizeof p, "%s/up", root);
    ck_assert_int_eq(symlink("../outside", p), 0);
    snprintf(p, sizeof p, "%s/file-out", root);
    char target[512];
    snprintf(target, sizeof target, "%s/secret.txt", outside);
    ck_assert_int_eq(symlink(target, p), 0);
    snprintf(p, sizeof p, "%s/in", root);
    ck_assert_int_eq(symlink("sub", p), 0);
    rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(rootfd, 0);
}

static void teardown(void)
{
    close(rootfd);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}

static void norm_is(const char *in, const char *want)
{
    char *out = NULL;
    ck_assert_msg(sp_normalise(in, &out) == 0, "'%s' refused", in);
    ck_assert_msg(strcmp(out, want) == 0, "'%s' -> '%s', want '%s'", in, out, want);
    free(out);
}

static void norm_refused(const char *in)
{
    char *out = NULL;
    errno = 0;
    ck_assert_msg(sp_normalise(in, &out) != 0, "'%s' accepted as '%s'", in, out ? out : "");
    ck_assert_int_eq(errno, EXDEV);
}

START_TEST(test_normalise)
{
    norm_is("a.txt", "a.txt");
    norm_is("a//b/./c", "a/b/c");
    norm_is("a/../b", "b");
    norm_is("a/b/../../c", "c");
    norm_is("./", "");
    norm_is("", "");
    norm_is("dir/", "dir");
    norm_is("..a/b..", "..a/b..");
    norm_refused("/etc/passwd");
    norm_refused("..");
    norm_refused("../x");
    norm_refused("a/../../x");
    norm_refused("a/./../b/../../x");
}
END_TEST

/* Read what rel opens (or -1 and errno). */
static int read_rel(const char *rel, char *out, size_t n)
{
    int fd = sp_open(rootfd, rel, O_RDONLY, 0, 0);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    out[r > 0 ? r : 0] = '\0';
    return 0;
}

static void run_containment(int fallback)
{
    sp_force_fallback(fallback);
    char buf[64];
    /* inside: fine */
    ck_assert_int_eq(read_rel("sub/in.txt", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "inside");
    /* a link leading out: refused (EXDEV with openat2, ELOOP walking) */
    errno = 0;
    ck_assert_int_eq(read_rel("out/secret.txt", buf, sizeof buf), -1);
    ck_assert_msg(sp_is_escape(errno), "errno %d", errno);
    errno = 0;
    ck_assert_int_eq(read_rel("up/secret.txt", buf, sizeof buf), -1);
    ck_assert_msg(sp_is_escape(errno), "errno %d", errno);
    errno = 0;
    ck_assert_int_eq(read_rel("file-out", buf, sizeof buf), -1);
    ck_assert_msg(sp_is_escape(errno), "errno %d", errno);
    /* creating through a link that leads out: refused, nothing written */
    errno = 0;
    ck_assert_int_lt(sp_open(rootfd, "out/new.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644, 1), 0);
    ck_assert_msg(sp_is_escape(errno), "errno %d", errno);
    char p[512];
    snprintf(p, sizeof p, "%s/new.txt", outside);
    ck_assert_int_ne(access(p, F_OK), 0);
    errno = 0;
    ck_assert_int_lt(sp_open(rootfd, "file-out", O_WRONLY | O_CREAT | O_TRUNC, 0644, 1), 0);
    ck_assert_msg(sp_is_escape(errno), "errno %d", errno);
    snprintf(p, sizeof p, "%s/secret.txt", outside);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
    fclose(f);
    ck_assert_str_eq(buf, "outside");
    /* a link that stays inside: followed with openat2, refused walking */
    int rc = read_rel("in/in.txt", buf, sizeof buf);
    if (sp_uses_openat2()) {
        ck_assert_int_eq(rc, 0);
        ck_assert_str_eq(buf, "inside");
    } else {
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(errno, ELOOP);
    }
    /* parents are created on the way */
    int fd = sp_open(rootfd, "x/y/z.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644, 1);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "zz", 2), 2);
    close(fd);
    ck_assert_int_eq(read_rel("x/y/z.txt", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "zz");
    /* the parent of a name, for unlinkat */
    const char *base;
    int dir = sp_open_parent(rootfd, "x/y/z.txt", &base);
    ck_assert_int_ge(dir, 0);
    ck_assert_str_eq(base, "z.txt");
    ck_assert_int_eq(unlinkat(dir, base, 0), 0);
    close(dir);
    ck_assert_int_eq(read_rel("x/y/z.txt", buf, sizeof buf), -1);
    ck_assert_int_eq(errno, ENOENT);
    errno = 0;
    ck_assert_int_lt(sp_open_parent(rootfd, "out/secret.txt", &base), 0);
    ck_assert_msg(sp_is_escape(errno), "errno %d", errno);
    /* the root itself */
    fd = sp_open(rootfd, "", O_RDONLY | O_DIRECTORY, 0, 0);
    ck_assert_int_ge(fd, 0);
    close(fd);
    sp_force_fallback(0);
}

START_TEST(test_containment_openat2)
{
    run_containment(0);
}
END_TEST

START_TEST(test_containment_walk)
{
    run_containment(1);
    ck_assert_int_eq(sp_uses_openat2(), sp_probe(rootfd));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safe_path");
    TCase *tc = tcase_create("safe_path");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_normalise);
    tcase_add_test(tc, test_containment_openat2);
    tcase_add_test(tc, test_containment_walk);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
