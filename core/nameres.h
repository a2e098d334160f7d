/*
 * nameres.h - the sidecar's name resolver: the plugin chosen by the
 * Configuration's spec.nameResolution (default: sqlite), announced at
 * start-up and asked for other apps' internal addresses.
 */
#ifndef DAPRD_NAMERES_H
#define DAPRD_NAMERES_H

#include <dapr/plugin.h>
#include "manifest.h"

/* Create the resolver.  cfg may be NULL (no --config).  An explicitly
 * configured resolver that fails is fatal (-1); the default one that
 * fails only disables calls to other apps (0 with a warning). */
int nameres_init(const configuration *cfg, const char *app_id);
int nameres_available(void);
const char *nameres_type(void);

/* Announce this sidecar (runs on the worker pool; failures are logged). */
void nameres_announce(const dapr_nr_instance_info *self);

/* Resolve app_id (namespace may be ""); cb runs on the loop thread with
 * status DAPR_OK and "host:port", or an error and a message. */
typedef void (*nameres_cb)(void *arg, dapr_status st, const char *msg, const char *address);
void nameres_resolve(const char *app_id, const char *namespace_, nameres_cb cb, void *arg);

/* Withdraw the announcement and close the resolver (blocking; called at
 * shutdown after the loop stopped). */
void nameres_shutdown(void);

#endif
