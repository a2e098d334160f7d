/*
 * bindings.h - the bindings runtime: which directions a bindings.*
 * manifest becomes (the `direction` metadata), and input bindings --
 * discovery by OPTIONS, delivery of events to the app, pausing while the
 * app is unhealthy.  The output binding API is in api_bindings.c.
 * Loop thread only, except where noted.
 */
#ifndef DAPRD_BINDINGS_H
#define DAPRD_BINDINGS_H

#include <dapr/plugin.h>
#include <stddef.h>
#include <stdint.h>
#include "manifest.h"

/* The kinds to create for a bindings.* manifest: the input and/or output
 * definitions its type has, narrowed by its `direction` metadata (both
 * when absent), input first as Dapr does.  Returns how many (0 when
 * `direction` rules out every kind the type has: logged as a warning).
 * A type no plugin provides yields DAPR_KIND_OUTPUT_BINDING alone, so that
 * the caller reports it.  Any thread (start-up). */
size_t bindings_kinds_of_spec(const component_spec *s, dapr_component_kind kinds[2]);

/* After the app is reachable: probe the app for each input binding
 * (OPTIONS /{route}, unless `direction` lists input; options_timeout_ms is
 * --app-binding-options-timeout) and start reading the subscribed ones;
 * then call done() once (on the loop).  From then on, bindings stop
 * reading while the app is unhealthy and start again when it recovers. */
void bindings_start(int64_t options_timeout_ms, void (*done)(void));

/* Shutdown began: stop every input binding; events arriving from now on
 * are answered DAPR_ERR_UNAVAILABLE. */
void bindings_stop(void);
/* Events handed to the app and not answered yet, plus start/stop calls
 * still running (shutdown waits for 0). */
size_t bindings_inflight(void);
/* Teardown, after the loop stopped and the app channel was freed and
 * before the components close: stop what still reads (waiting for the
 * plugins), acknowledge every event left, free everything. */
void bindings_free(void);

#endif
