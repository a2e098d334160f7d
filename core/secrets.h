/*
 * secrets.h - the runtime side of secrets: the Configuration's secret
 * scopes (which secrets the app may read through the secrets API), and
 * the start-up resolution of `secretKeyRef` metadata in Component
 * manifests from an initialised secret store.
 */
#ifndef DAPRD_SECRETS_H
#define DAPRD_SECRETS_H

#include <stddef.h>
#include <stdint.h>
#include "manifest.h"

/* Keep a copy of the Configuration's spec.secrets.scopes (cfg may be NULL:
 * no scopes, everything allowed).  Call before serving requests. */
void secrets_configure(const configuration *cfg);
void secrets_free(void);

/* May the app read secret `key` of store `store` (Dapr's rules: a
 * non-empty allowedSecrets list decides alone; else a key in deniedSecrets
 * is denied; else defaultAccess; a store without a scope allows all)? */
int secrets_allowed(const char *store, const char *key);

/*
 * Resolve every secretKeyRef of spec s from its auth.secretStore, which
 * must be an initialised secret store.  On success returns 0 and fills
 * values[i] (malloc'ed) for each metadata item i that has a secretKeyRef,
 * leaving the others NULL (values has s->n_meta slots, zeroed by the
 * caller).  On failure returns -1 with a message in err naming the field,
 * the secret, the key and the store -- never a secret value -- and frees
 * what it filled.  Blocks the caller (start-up only) for at most
 * s->init_timeout_ms per secret read.
 */
int secrets_resolve_refs(const component_spec *s, char **values, char *err, size_t errlen);

/* The name of the secret store s reads its secretKeyRefs from, or NULL
 * when it has none (self-hosted mode has no default store). */
const char *secrets_store_of(const component_spec *s);
/* Does s have at least one secretKeyRef? */
int secrets_spec_has_refs(const component_spec *s);

#endif
