/*
 * query.h - Dapr's state query language (alpha) over JSON documents.
 *
 * A query is {"filter": {...}, "sort": [{"key": "a.b", "order": "ASC"}],
 * "page": {"limit": N, "token": "..."}}.  Filters: EQ, NEQ, GT, GTE, LT,
 * LTE ({"OP": {"dot.path": value}}), IN ({"IN": {"path": [v, ...]}}), AND
 * and OR (arrays of filters); an absent or empty filter matches everything.
 *
 * Matching rules: numbers compare numerically, strings byte-wise; values
 * of different types never match (so NEQ is true for them, and for an
 * absent path).  A document that is not valid JSON matches only the empty
 * filter.  Sorting is stable and ends with the key, so results and page
 * tokens are deterministic; documents lacking a sort key come last.  The
 * page token is the decimal offset of the next page.
 *
 * No locking and no storage here: the caller hands over an array of
 * documents (a snapshot) and gets back the selected indices.
 */
#ifndef STATE_MEMORY_QUERY_H
#define STATE_MEMORY_QUERY_H

#include <stddef.h>
#include <stdint.h>

typedef struct mq_query mq_query;

typedef struct mq_doc {
    const char *key;
    const uint8_t *data;
    size_t len;
} mq_doc;

#define MQ_TOKEN_MAX 24

/* Parse and check a query document.  On error returns NULL and writes a
 * one-line reason to err (always NUL-terminated). */
mq_query *mq_parse(const void *json, size_t len, char *err, size_t errlen);
void mq_free(mq_query *q);

/* Filter, sort and page docs.  *out receives a malloc'd array of indices
 * into docs in result order (NULL when *n_out is 0; free it), and token the
 * next page's token or "" when this is the last page.  Returns 0, or -1
 * on OOM. */
int mq_run(const mq_query *q, const mq_doc *docs, size_t n,
           size_t **out, size_t *n_out, char token[MQ_TOKEN_MAX]);

#endif
