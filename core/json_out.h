/*
 * json_out.h - compact JSON text the way Go's encoding/json writes it:
 * object keys sorted, floats in their shortest round-trip form ("0.1",
 * "1", "1e+21").  Values stored through the state API use it, so data
 * written here and by real Dapr look the same.
 */
#ifndef DAPRD_JSON_OUT_H
#define DAPRD_JSON_OUT_H

#include <jansson.h>
#include <stddef.h>

/* Returns a malloc'ed NUL-terminated text; *len (optional) gets its length.
 * sort_keys: 1 sorts object keys (Go's map order, used for stored values);
 * 0 keeps insertion order (fixed response shapes). */
char *json_to_text(const json_t *v, size_t *len, int sort_keys);

#endif
