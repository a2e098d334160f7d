/*
 * mongo-doc.c - a tiny libmongoc client for t/mongodb/run.sh: it looks at
 * the state collection directly, without the plugin, to prove that what
 * the plugin writes is in Dapr's document layout and that a document
 * written in that layout by another client reads back through daprd.
 *
 * Dapr's state.mongodb layout, one document per key:
 *
 *     { _id: "<app-id>||<key>", value: <value>, _etag: "<uuid v4>", _ttl: <date> | null }
 *
 * Usage: mongo-doc URI DATABASE COLLECTION COMMAND [ARGS]
 *   ping                      exit 0 when the server answers
 *   count                     print the number of documents
 *   ids                       print every _id, one per line
 *   dump                      print every document as relaxed extended
 *                             JSON, one per line
 *   get ID                    print the document as relaxed extended JSON
 *                             (exit 3 when absent)
 *   check ID [ETAG] [ttl|nottl]
 *                             check the layout of ID's document: exactly
 *                             the fields _id (= ID), value, _etag (a UUID,
 *                             = ETAG when given and not "-"), _ttl (null,
 *                             or a date in the future with "ttl"); print
 *                             {"value": <value>} as relaxed extended JSON
 *                             on success so that the caller can compare
 *                             the value; exit 1 with reasons otherwise
 *   put ID VALUE ETAG [TTL]   insert a document in Dapr's layout; VALUE is
 *                             relaxed extended JSON (an object, array,
 *                             number...); TTL in seconds sets _ttl
 *   putstr ID TEXT ETAG       the same with value a BSON string TEXT (as
 *                             Dapr stores bytes and JSON strings)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* libmongoc's headers use struct addrinfo (POSIX, not C11) */
#endif
#include <mongoc/mongoc.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void)
{
    fprintf(stderr, "usage: mongo-doc URI DATABASE COLLECTION "
                    "ping|count|ids|dump|get ID|check ID [ETAG] [ttl|nottl]|put ID VALUE ETAG [TTL]|"
                    "putstr ID TEXT ETAG\n");
    return 2;
}

static int is_uuid(const char *e)
{
    if (strlen(e) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (e[i] != '-') return 0;
        } else if (!isxdigit((unsigned char)e[i])) {
            return 0;
        }
    }
    return 1;
}

/* The document whose _id is id, copied into out; 1 found, 0 absent, -1 error. */
static int find_one(mongoc_collection_t *coll, const char *id, bson_t *out)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t err;
    int rc = 0;
    if (mongoc_cursor_next(cur, &doc)) {
        bson_copy_to(doc, out);
        rc = 1;
    } else if (mongoc_cursor_error(cur, &err)) {
        fprintf(stderr, "find: %s\n", err.message);
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

static int cmd_check(mongoc_collection_t *coll, const char *id, const char *etag, const char *ttl)
{
    bson_t doc;
    int found = find_one(coll, id, &doc);
    if (found <= 0) {
        if (found == 0) printf("no document with _id %s\n", id);
        return 1;
    }
    int bad = 0, fields = 0;
    bson_iter_t it;
    bson_iter_init(&it, &doc);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        fields++;
        if (strcmp(k, "_id") == 0) {
            if (!BSON_ITER_HOLDS_UTF8(&it) || strcmp(bson_iter_utf8(&it, NULL), id) != 0) {
                printf("_id is not the string %s\n", id);
                bad++;
            }
        } else if (strcmp(k, "value") == 0) {
            /* any BSON type: checked by the caller */
        } else if (strcmp(k, "_etag") == 0) {
            const char *e = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : NULL;
            if (!e || !is_uuid(e)) {
                printf("_etag is not a UUID string\n");
                bad++;
            } else if (etag && strcmp(etag, "-") != 0 && strcmp(e, etag) != 0) {
                printf("_etag %s differs from the ETag %s\n", e, etag);
                bad++;
            }
        } else if (strcmp(k, "_ttl") == 0) {
            if (BSON_ITER_HOLDS_NULL(&it)) {
                if (ttl && strcmp(ttl, "ttl") == 0) {
                    printf("_ttl is null, want a date\n");
                    bad++;
                }
            } else if (BSON_ITER_HOLDS_DATE_TIME(&it)) {
                int64_t ms = bson_iter_date_time(&it);
                if (ttl && strcmp(ttl, "nottl") == 0) {
                    printf("_ttl is a date, want null\n");
                    bad++;
                } else if (ms <= (int64_t)time(NULL) * 1000) {
                    printf("_ttl is in the past\n");
                    bad++;
                }
            } else {
                printf("_ttl is neither null nor a date\n");
                bad++;
            }
        } else {
            printf("unexpected field %s\n", k);
            bad++;
        }
    }
    if (fields != 4 || !bson_has_field(&doc, "value") || !bson_has_field(&doc, "_etag") ||
        !bson_has_field(&doc, "_ttl")) {
        printf("want exactly the fields _id, value, _etag, _ttl; have %d fields\n", fields);
        bad++;
    }
    if (!bad) {
        bson_t v = BSON_INITIALIZER;
        if (bson_iter_init_find(&it, &doc, "value")) bson_append_iter(&v, "value", 5, &it);
        char *s = bson_as_relaxed_extended_json(&v, NULL);
        printf("%s\n", s);
        bson_free(s);
        bson_destroy(&v);
    }
    bson_destroy(&doc);
    return bad ? 1 : 0;
}

static int cmd_put(mongoc_collection_t *coll, const char *id, const char *value, int is_string,
                   const char *etag, const char *ttl)
{
    bson_error_t err;
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "_id", id);
    if (is_string) {
        BSON_APPEND_UTF8(&doc, "value", value);
    } else {
        /* Parse {"value": VALUE} so that any JSON value may be given. */
        size_t len = strlen(value) + 16;
        char *wrapped = malloc(len);
        if (!wrapped) return 1;
        snprintf(wrapped, len, "{\"value\": %s}", value);
        bson_t *v = bson_new_from_json((const uint8_t *)wrapped, -1, &err);
        free(wrapped);
        if (!v) {
            fprintf(stderr, "VALUE is not JSON: %s\n", err.message);
            return 2;
        }
        bson_concat(&doc, v);
        bson_destroy(v);
    }
    BSON_APPEND_UTF8(&doc, "_etag", etag);
    if (ttl) BSON_APPEND_DATE_TIME(&doc, "_ttl", ((int64_t)time(NULL) + atoll(ttl)) * 1000);
    else BSON_APPEND_NULL(&doc, "_ttl");
    int ok = mongoc_collection_insert_one(coll, &doc, NULL, NULL, &err);
    if (!ok) fprintf(stderr, "insert: %s\n", err.message);
    bson_destroy(&doc);
    return ok ? 0 : 1;
}

/* libmongoc warns when FerretDB refuses endSessions at exit; keep only
 * errors, so that the test's output shows what matters. */
static void quiet_log(mongoc_log_level_t level, const char *domain, const char *msg, void *data)
{
    (void)data;
    if (level <= MONGOC_LOG_LEVEL_ERROR) fprintf(stderr, "%s: %s\n", domain, msg);
}

int main(int argc, char **argv)
{
    if (argc < 5) return usage();
    const char *cmd = argv[4];
    bson_error_t err;
    int rc = 0;

    mongoc_log_set_handler(quiet_log, NULL);
    mongoc_init();
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &err);
    if (!uri) {
        fprintf(stderr, "bad URI: %s\n", err.message);
        return 2;
    }
    mongoc_client_t *client = mongoc_client_new_from_uri(uri);
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, argv[2], argv[3]);

    if (strcmp(cmd, "ping") == 0) {
        bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
        if (!mongoc_client_command_simple(client, "admin", ping, NULL, NULL, &err)) {
            fprintf(stderr, "ping: %s\n", err.message);
            rc = 1;
        }
        bson_destroy(ping);
    } else if (strcmp(cmd, "count") == 0) {
        bson_t filter = BSON_INITIALIZER;
        int64_t n = mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL, &err);
        if (n < 0) {
            fprintf(stderr, "count: %s\n", err.message);
            rc = 1;
        } else {
            printf("%lld\n", (long long)n);
        }
        bson_destroy(&filter);
    } else if (strcmp(cmd, "ids") == 0) {
        bson_t filter = BSON_INITIALIZER;
        bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
        const bson_t *doc;
        bson_iter_t it;
        while (mongoc_cursor_next(cur, &doc))
            if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it))
                printf("%s\n", bson_iter_utf8(&it, NULL));
        if (mongoc_cursor_error(cur, &err)) {
            fprintf(stderr, "ids: %s\n", err.message);
            rc = 1;
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(&filter);
    } else if (strcmp(cmd, "dump") == 0) {
        bson_t filter = BSON_INITIALIZER;
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
        const bson_t *doc;
        while (mongoc_cursor_next(cur, &doc)) {
            char *s = bson_as_relaxed_extended_json(doc, NULL);
            printf("%s\n", s);
            bson_free(s);
        }
        if (mongoc_cursor_error(cur, &err)) {
            fprintf(stderr, "dump: %s\n", err.message);
            rc = 1;
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(&filter);
    } else if (strcmp(cmd, "get") == 0 && argc == 6) {
        bson_t doc;
        int found = find_one(coll, argv[5], &doc);
        if (found == 1) {
            char *s = bson_as_relaxed_extended_json(&doc, NULL);
            printf("%s\n", s);
            bson_free(s);
            bson_destroy(&doc);
        }
        rc = found == 1 ? 0 : found == 0 ? 3 : 1;
    } else if (strcmp(cmd, "check") == 0 && argc >= 6 && argc <= 8) {
        rc = cmd_check(coll, argv[5], argc > 6 ? argv[6] : NULL, argc > 7 ? argv[7] : NULL);
    } else if (strcmp(cmd, "put") == 0 && (argc == 8 || argc == 9)) {
        rc = cmd_put(coll, argv[5], argv[6], 0, argv[7], argc > 8 ? argv[8] : NULL);
    } else if (strcmp(cmd, "putstr") == 0 && argc == 8) {
        rc = cmd_put(coll, argv[5], argv[6], 1, argv[7], NULL);
    } else {
        rc = usage();
    }

    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return rc;
}
