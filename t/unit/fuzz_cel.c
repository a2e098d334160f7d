/*
 * fuzz_cel.c - libFuzzer target for the CEL evaluator (core/cel.c): every
 * input is compiled as an expression and, when it compiles, evaluated
 * against a fixed CloudEvent.  Built by hand with clang (make cel-fuzz
 * CC=clang, see t/unit/cel.mk); check_cel replays t/unit/cel-corpus through
 * the same function under `make check`, so the target never rots.
 */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "cel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_event[] =
    "{\"id\":\"1\",\"source\":\"app\",\"type\":\"widget\",\"specversion\":\"1.0\","
    "\"topic\":\"t\",\"pubsubname\":\"ps\",\"data\":{\"price\":150,\"r\":0.5,\"s\":\"abc\","
    "\"b\":true,\"n\":null,\"l\":[1,\"x\",2.5,[]],\"m\":{\"k\":{\"k\":1}}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    cel_program *p = cel_compilen((const char *)data, size, err, sizeof(err));
    if (!p) {
        /* A refusal must always say why. */
        if (!err[0]) abort();
        return 0;
    }
    json_t *event = json_loads(fuzz_event, 0, NULL);
    if (!event) abort();
    int rc = cel_eval_bool(p, event, err, sizeof(err));
    if (rc < -1 || rc > 1 || (rc == -1 && !err[0])) abort();
    json_decref(event);
    cel_free(p);
    return 0;
}
