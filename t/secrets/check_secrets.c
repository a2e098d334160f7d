/*
 * check_secrets.c - unit tests of the secrets pieces of the core that need
 * no daprd: secret scrubbing of log text, the Configuration's secret
 * scopes (parsing and Dapr's allow/deny rules) and envRef's refusal of
 * daprd's own variables.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "manifest.h"
#include "secrets.h"

/* ---- scrubbing ------------------------------------------------------------ */

START_TEST(redact_replaces_every_occurrence)
{
    log_redact_clear();
    log_redact_add("hunter2-pw");
    char buf[256] = "login hunter2-pw failed; again hunter2-pw!";
    log_redact(buf, 0);
    ck_assert_str_eq(buf, "login *** failed; again ***!");
    log_redact_clear();
}
END_TEST

START_TEST(redact_longest_first)
{
    log_redact_clear();
    log_redact_add("abcd");
    log_redact_add("xxabcdyy");
    char buf[64] = "[xxabcdyy] [abcd]";
    log_redact(buf, 0);
    ck_assert_str_eq(buf, "[***] [***]");
    log_redact_clear();
}
END_TEST

START_TEST(redact_short_values_ignored)
{
    log_redact_clear();
    log_redact_add("abc");
    log_redact_add("");
    log_redact_add(NULL);
    char buf[64] = "abc abc";
    log_redact(buf, 0);
    ck_assert_str_eq(buf, "abc abc");
    log_redact_clear();
}
END_TEST

START_TEST(redact_cut_secret_at_the_end)
{
    log_redact_clear();
    log_redact_add("s3cr3t-value");
    char buf[64] = "the value is s3cr3t-v";
    log_redact(buf, 1);
    ck_assert_str_eq(buf, "the value is ");
    /* not truncated: a prefix is just text */
    char buf2[64] = "the value is s3cr3t-v";
    log_redact(buf2, 0);
    ck_assert_str_eq(buf2, "the value is s3cr3t-v");
    log_redact_clear();
}
END_TEST

START_TEST(redact_duplicates_once)
{
    log_redact_clear();
    for (int i = 0; i < 3; i++)
        log_redact_add("same-secret");
    char buf[64] = "same-secret";
    log_redact(buf, 0);
    ck_assert_str_eq(buf, "***");
    log_redact_clear();
}
END_TEST

/* ---- scopes ------------------------------------------------------------------ */

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/check_secrets_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int load_config(const char *text, configuration *cfg, char **err)
{
    char *path = write_temp(text);
    int rc = manifest_load_configuration(path, cfg, err);
    unlink(path);
    free(path);
    return rc;
}

START_TEST(scopes_follow_dapr_rules)
{
    static const char y[] =
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n"
        "  secrets:\n    scopes:\n"
        "    - storeName: allow-list\n      defaultAccess: deny\n"
        "      allowedSecrets: [a, b]\n      deniedSecrets: [a]\n"
        "    - storeName: deny-list\n      deniedSecrets: [b]\n"
        "    - storeName: deny-all\n      defaultAccess: Deny\n"
        "    - storeName: allow-all\n      defaultAccess: allow\n      deniedSecrets: []\n";
    configuration cfg = {0};
    char *err = NULL;
    ck_assert_int_eq(load_config(y, &cfg, &err), 0);
    ck_assert_uint_eq(cfg.n_secret_scopes, 4);
    secrets_configure(&cfg);
    configuration_free(&cfg);
    ck_assert(secrets_allowed("allow-list", "a"));  /* the allow list decides alone */
    ck_assert(secrets_allowed("allow-list", "b"));
    ck_assert(!secrets_allowed("allow-list", "c"));
    ck_assert(secrets_allowed("deny-list", "a"));
    ck_assert(!secrets_allowed("deny-list", "b"));
    ck_assert(!secrets_allowed("deny-all", "a"));
    ck_assert(secrets_allowed("allow-all", "x"));
    ck_assert(secrets_allowed("unscoped", "x"));
    ck_assert(!secrets_allowed("allow-list", "A")); /* exact match */
    secrets_configure(NULL);
    ck_assert(secrets_allowed("deny-all", "a"));
    secrets_free();
}
END_TEST

START_TEST(scopes_validation)
{
    static const char *bad[] = {
        "kind: Configuration\nspec:\n  secrets:\n    scopes:\n    - {storeName: s, defaultAccess: sometimes}\n",
        "kind: Configuration\nspec:\n  secrets:\n    scopes:\n    - {storeName: s}\n    - {storeName: s}\n",
        "kind: Configuration\nspec:\n  secrets:\n    scopes: {storeName: s}\n",
        "kind: Configuration\nspec:\n  secrets:\n    scopes:\n    - {storeName: s, deniedSecrets: [[x]]}\n",
    };
    static const char *want[] = {"can be either allow or deny", "storeName is repeated",
                                 "scopes must be a list", "deniedSecrets must be a list of strings"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        configuration cfg = {0};
        char *err = NULL;
        ck_assert_int_eq(load_config(bad[i], &cfg, &err), -1);
        ck_assert_msg(err && strstr(err, want[i]), "case %zu: %s", i, err ? err : "(no error)");
        free(err);
        configuration_free(&cfg);
    }
}
END_TEST

/* ---- envRef -------------------------------------------------------------------- */

START_TEST(env_ref_refuses_daprd_variables)
{
    static const char y[] =
        "kind: Component\nmetadata:\n  name: a\nspec:\n  type: state.x\n  metadata:\n"
        "  - name: t1\n    envRef: DAPR_API_TOKEN\n"
        "  - name: t2\n    envRef: app_api_token\n"
        "  - name: t3\n    envRef: CHECK_SECRETS_OK\n";
    setenv("DAPR_API_TOKEN", "daprd-token", 1);
    setenv("app_api_token", "app-token", 1);
    setenv("CHECK_SECRETS_OK", "fine", 1);
    component_list l = {0};
    char *err = NULL;
    ck_assert_int_eq(manifest_load_string(y, strlen(y), "e.yaml", "app", &l, &err), 0);
    ck_assert_str_eq(l.items[0].meta[0].value, "");
    ck_assert_str_eq(l.items[0].meta[1].value, "");
    ck_assert_str_eq(l.items[0].meta[2].value, "fine");
    component_list_free(&l);
}
END_TEST

START_TEST(secret_key_ref_parsed)
{
    static const char y[] =
        "kind: Component\nmetadata:\n  name: a\nspec:\n  type: state.x\n  metadata:\n"
        "  - name: pw\n    secretKeyRef: {name: db, key: password}\n"
        "  - name: tok\n    secretKeyRef: {name: token}\n"
        "auth:\n  secretStore: vault\n";
    component_list l = {0};
    char *err = NULL;
    ck_assert_int_eq(manifest_load_string(y, strlen(y), "r.yaml", "app", &l, &err), 0);
    ck_assert_str_eq(secrets_store_of(&l.items[0]), "vault");
    ck_assert(secrets_spec_has_refs(&l.items[0]));
    ck_assert_str_eq(l.items[0].meta[0].secret_key, "password");
    ck_assert_str_eq(l.items[0].meta[1].secret_key, "token"); /* key defaults to the name */
    component_list_free(&l);
}
END_TEST

static Suite *secrets_suite(void)
{
    Suite *s = suite_create("secrets");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, redact_replaces_every_occurrence);
    tcase_add_test(tc, redact_longest_first);
    tcase_add_test(tc, redact_short_values_ignored);
    tcase_add_test(tc, redact_cut_secret_at_the_end);
    tcase_add_test(tc, redact_duplicates_once);
    tcase_add_test(tc, scopes_follow_dapr_rules);
    tcase_add_test(tc, scopes_validation);
    tcase_add_test(tc, env_ref_refuses_daprd_variables);
    tcase_add_test(tc, secret_key_ref_parsed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, 0, "check", "test");
    SRunner *sr = srunner_create(secrets_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
