/*
 * check_core.c - unit tests of daprd's core pieces that need no server:
 * manifest parsing, the ABI check, the type registry, JSON output and the
 * small parsers.
 */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "json_out.h"
#include "kv_list.h"
#include "log.h"
#include "manifest.h"
#include "plugin_loader.h"
#include "util.h"

/* ---- manifests ---------------------------------------------------------- */

static const char two_components[] =
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: statestore\n"
    "spec:\n"
    "  type: state.sqlite\n"
    "  version: v1\n"
    "  initTimeout: 2s\n"
    "  metadata:\n"
    "  - name: connectionString\n"
    "    value: /tmp/x.db\n"
    "  - name: port\n"
    "    value: 6379\n"
    "  - name: enabled\n"
    "    value: true\n"
    "  - name: password\n"
    "    secretKeyRef:\n"
    "      name: db\n"
    "      key: pw\n"
    "---\n"
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Resiliency\n"
    "metadata:\n"
    "  name: res\n"
    "---\n"
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: cache\n"
    "spec:\n"
    "  type: state.in-memory\n"
    "  ignoreErrors: true\n";

START_TEST(manifest_multi_document)
{
    component_list l = {0};
    char *err = NULL;
    ck_assert_int_eq(manifest_load_string(two_components, strlen(two_components), "t.yaml", "app", &l, &err), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.items[0].name, "statestore");
    ck_assert_str_eq(l.items[0].type, "state.sqlite");
    ck_assert_str_eq(l.items[0].version, "v1");
    ck_assert_int_eq(l.items[0].init_timeout_ms, 2000);
    ck_assert_uint_eq(l.items[0].n_meta, 4);
    ck_assert_str_eq(l.items[0].meta[1].value, "6379"); /* scalars keep their text */
    ck_assert_str_eq(l.items[0].meta[2].value, "true");
    ck_assert_ptr_null(l.items[0].meta[3].value);
    ck_assert_str_eq(l.items[0].meta[3].secret_name, "db");
    ck_assert_str_eq(l.items[0].meta[3].secret_key, "pw");
    ck_assert_str_eq(l.items[1].name, "cache");
    ck_assert_int_eq(l.items[1].ignore_errors, 1);
    ck_assert_int_eq(l.items[1].init_timeout_ms, 5000);
    component_list_free(&l);
}
END_TEST

static void expect_error(const char *yaml, const char *needle1, const char *needle2)
{
    component_list l = {0};
    char *err = NULL;
    ck_assert_int_eq(manifest_load_string(yaml, strlen(yaml), "bad.yaml", "app", &l, &err), -1);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, "bad.yaml") != NULL, "error does not name the file: %s", err);
    ck_assert_msg(strstr(err, needle1) != NULL, "error lacks '%s': %s", needle1, err);
    if (needle2)
        ck_assert_msg(strstr(err, needle2) != NULL, "error lacks '%s': %s", needle2, err);
    free(err);
    component_list_free(&l);
}

START_TEST(manifest_errors_name_file_component_field)
{
    expect_error("kind: Component\nmetadata:\n  name: s\nspec:\n  version: v1\n", "'s'", "spec.type");
    expect_error("kind: Component\nmetadata:\n  name: s\nspec:\n  type: nodot\n", "'s'", "spec.type");
    expect_error("kind: Component\nmetadata:\n  name: a/b\nspec:\n  type: state.x\n", "metadata.name", NULL);
    expect_error("kind: Component\nspec:\n  type: state.x\n", "metadata.name", NULL);
    expect_error("kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.x\n  metadata:\n  - value: 1\n",
                 "'s'", "spec.metadata[0].name");
    expect_error("kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.x\n  ignoreErrors: maybe\n",
                 "'s'", "ignoreErrors");
    expect_error("kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.x\n---\n"
                 "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.y\n", "'s'", "already");
    expect_error("kind: Component\nmetadata: [unclosed\n", "YAML error", NULL);
}
END_TEST

START_TEST(manifest_scopes)
{
    static const char y[] =
        "kind: Component\nmetadata:\n  name: a\nspec:\n  type: state.x\nscopes: [other]\n---\n"
        "kind: Component\nmetadata:\n  name: b\nspec:\n  type: state.x\nscopes: [other, app]\n---\n"
        "kind: Component\nmetadata:\n  name: c\nspec:\n  type: state.x\nscopes: []\n";
    component_list l = {0};
    char *err = NULL;
    ck_assert_int_eq(manifest_load_string(y, strlen(y), "s.yaml", "app", &l, &err), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.items[0].name, "b");
    ck_assert_str_eq(l.items[1].name, "c");
    component_list_free(&l);
}
END_TEST

START_TEST(manifest_env_ref)
{
    static const char y[] =
        "kind: Component\nmetadata:\n  name: a\nspec:\n  type: state.x\n  metadata:\n"
        "  - name: user\n    envRef: CHECK_CORE_USER\n";
    setenv("CHECK_CORE_USER", "alice", 1);
    component_list l = {0};
    char *err = NULL;
    ck_assert_int_eq(manifest_load_string(y, strlen(y), "e.yaml", "app", &l, &err), 0);
    ck_assert_str_eq(l.items[0].meta[0].value, "alice");
    component_list_free(&l);
}
END_TEST

START_TEST(manifest_subscriptions)
{
    static const char y[] =
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s2\nspec:\n"
        "  pubsubname: pubsub\n  topic: orders\n  routes:\n    rules:\n"
        "    - match: event.type == \"x\"\n      path: /x\n    default: /orders\n"
        "  deadLetterTopic: dlq\n  metadata:\n    rawPayload: \"true\"\n---\n"
        "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s1\nspec:\n"
        "  pubsubname: pubsub\n  topic: t1\n  route: /t1\nscopes: [other]\n";
    component_list l = {0};
    char *err = NULL;
    ck_assert_int_eq(manifest_load_string(y, strlen(y), "s.yaml", "app", &l, &err), 0);
    ck_assert_uint_eq(l.n_subs, 1);
    ck_assert_str_eq(l.subs[0].topic, "orders");
    ck_assert_str_eq(l.subs[0].default_path, "/orders");
    ck_assert_uint_eq(l.subs[0].n_rules, 1);
    ck_assert_str_eq(l.subs[0].rules[0].match, "event.type == \"x\"");
    ck_assert_str_eq(l.subs[0].dead_letter, "dlq");
    ck_assert_str_eq(l.subs[0].meta[0].name, "rawPayload");
    component_list_free(&l);
    expect_error("kind: Subscription\nmetadata:\n  name: s\nspec:\n  topic: t\n  route: /t\n", "pubsubname", NULL);
}
END_TEST

/* ---- ABI check and registry ---------------------------------------------------- */

static dapr_status dummy_init(dapr_host *h, const dapr_host_api *api, void **inst, char *e, size_t n)
{
    (void)h; (void)api; (void)e; (void)n;
    *inst = NULL;
    return DAPR_OK;
}
static void dummy_close(void *inst) { (void)inst; }
static const dapr_state_vtable dummy_vt = {.size = sizeof(dapr_state_vtable)};
static const dapr_component_def dummy_comp = {
    .size = sizeof(dapr_component_def), .kind = DAPR_KIND_STATE, .type = "state.dummy",
    .version = "v1", .init = dummy_init, .close = dummy_close, .vtable = &dummy_vt,
};

START_TEST(abi_rules)
{
    const dapr_component_def *list[] = {&dummy_comp};
    dapr_plugin_descriptor d = {DAPR_PLUGIN_DESCRIPTOR_HEADER, .name = "x", .components = list,
                                .n_components = 1};
    ck_assert_ptr_null(plugins_check_abi(&d));
    d.abi_major = DAPR_PLUGIN_ABI_MAJOR + 1;
    ck_assert_ptr_nonnull(plugins_check_abi(&d));
    d.abi_major = DAPR_PLUGIN_ABI_MAJOR;
    d.abi_minor = DAPR_PLUGIN_ABI_MINOR + 1; /* newer minor: refused */
    ck_assert_ptr_nonnull(plugins_check_abi(&d));
    d.abi_minor = DAPR_PLUGIN_ABI_MINOR;
    d.size = 8;
    ck_assert_ptr_nonnull(plugins_check_abi(&d));
    d.size = sizeof d;
    dapr_component_def broken = dummy_comp;
    broken.init = NULL;
    const dapr_component_def *broken_list[] = {&broken};
    d.components = broken_list;
    ck_assert_ptr_nonnull(plugins_check_abi(&d));
    const dapr_component_def *null_list[] = {NULL};
    d.components = null_list;
    ck_assert_ptr_nonnull(plugins_check_abi(&d));
    ck_assert_ptr_nonnull(plugins_check_abi(NULL));
}
END_TEST

START_TEST(type_categories)
{
    ck_assert_int_eq(kind_of_type_name("state.redis"), DAPR_KIND_STATE);
    ck_assert_int_eq(kind_of_type_name("pubsub.kafka"), DAPR_KIND_PUBSUB);
    ck_assert_int_eq(kind_of_type_name("bindings.cron"), DAPR_KIND_OUTPUT_BINDING);
    ck_assert_int_eq(kind_of_type_name("secretstores.local.file"), DAPR_KIND_SECRET_STORE);
    ck_assert_int_eq(kind_of_type_name("nameresolution.sqlite"), DAPR_KIND_NAME_RESOLUTION);
    ck_assert_int_eq(kind_of_type_name("statex.redis"), 0);
    ck_assert_int_eq(kind_of_type_name(""), 0);
}
END_TEST

/* ---- JSON output ---------------------------------------------------------- */

static void expect_json(const char *in, const char *out, int sort)
{
    json_t *v = json_loads(in, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(v);
    size_t len;
    char *text = json_to_text(v, &len, sort);
    ck_assert_str_eq(text, out);
    ck_assert_uint_eq(len, strlen(out));
    free(text);
    json_decref(v);
}

START_TEST(json_like_go)
{
    expect_json("{\"b\": 1, \"a\": [true, null, \"x\\\"y\"]}", "{\"a\":[true,null,\"x\\\"y\"],\"b\":1}", 1);
    expect_json("{\"b\": 1, \"a\": 2}", "{\"b\":1,\"a\":2}", 0);
    expect_json("0.1", "0.1", 1);
    expect_json("1.0", "1", 1);
    expect_json("2.5e-5", "0.000025", 1);
    expect_json("1e21", "1e+21", 1);
    expect_json("1e-7", "1e-07", 1);
    expect_json("-123456.789", "-123456.789", 1);
    expect_json("\"h\\u00e9llo\"", "\"h\xc3\xa9llo\"", 1);
    expect_json("9007199254740993", "9007199254740993", 1);
}
END_TEST

/* ---- parsers ---------------------------------------------------------------- */

START_TEST(durations)
{
    int64_t ms;
    ck_assert_int_eq(parse_duration_ms("5s", &ms), 0); ck_assert_int_eq(ms, 5000);
    ck_assert_int_eq(parse_duration_ms("1h30m", &ms), 0); ck_assert_int_eq(ms, 5400000);
    ck_assert_int_eq(parse_duration_ms("250ms", &ms), 0); ck_assert_int_eq(ms, 250);
    ck_assert_int_eq(parse_duration_ms("1.5s", &ms), 0); ck_assert_int_eq(ms, 1500);
    ck_assert_int_eq(parse_duration_ms("10", &ms), 0); ck_assert_int_eq(ms, 10000);
    ck_assert_int_eq(parse_duration_ms("0", &ms), 0); ck_assert_int_eq(ms, 0);
    ck_assert_int_eq(parse_duration_ms("", &ms), -1);
    ck_assert_int_eq(parse_duration_ms("5x", &ms), -1);
    ck_assert_int_eq(parse_duration_ms("s", &ms), -1);
    ck_assert_int_eq(parse_duration_ms("-5s", &ms), -1);
}
END_TEST

START_TEST(quantities_and_bools)
{
    uint64_t b;
    ck_assert_int_eq(parse_quantity_bytes("4Mi", &b), 0); ck_assert_uint_eq(b, 4u << 20);
    ck_assert_int_eq(parse_quantity_bytes("512Ki", &b), 0); ck_assert_uint_eq(b, 512u << 10);
    ck_assert_int_eq(parse_quantity_bytes("100", &b), 0); ck_assert_uint_eq(b, 100);
    ck_assert_int_eq(parse_quantity_bytes("1G", &b), 0); ck_assert_uint_eq(b, 1000000000u);
    ck_assert_int_eq(parse_quantity_bytes("4Mb", &b), -1);
    ck_assert_int_eq(parse_quantity_bytes("-1", &b), -1);
    ck_assert_int_eq(parse_bool("TRUE"), 1);
    ck_assert_int_eq(parse_bool("no"), 0);
    ck_assert_int_eq(parse_bool("maybe"), -1);
}
END_TEST

START_TEST(kv_lists)
{
    kv_list l = {0};
    kv_list_set(&l, "a", "1");
    kv_list_set(&l, "b", "2");
    kv_list_set(&l, "a", "3");
    kv_list_add_first(&l, "b", "4");
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(kv_list_get(&l, "a"), "3");
    ck_assert_str_eq(kv_list_get(&l, "b"), "2");
    ck_assert_ptr_null(kv_list_get(&l, "c"));
    kv_list_free(&l);
}
END_TEST

static Suite *core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, manifest_multi_document);
    tcase_add_test(tc, manifest_errors_name_file_component_field);
    tcase_add_test(tc, manifest_scopes);
    tcase_add_test(tc, manifest_env_ref);
    tcase_add_test(tc, manifest_subscriptions);
    tcase_add_test(tc, abi_rules);
    tcase_add_test(tc, type_categories);
    tcase_add_test(tc, json_like_go);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, quantities_and_bools);
    tcase_add_test(tc, kv_lists);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, 0, "test", "test");
    SRunner *sr = srunner_create(core_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
