/*
 * manifest.h - Dapr resource manifests (YAML) read with libyaml.
 *
 * Now: kind Component.  Other kinds are skipped with a debug line until
 * their building blocks land.
 */
#ifndef DAPRD_MANIFEST_H
#define DAPRD_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

typedef struct manifest_meta {
    char *name;
    char *value;         /* resolved text; NULL while a secretKeyRef is pending */
    char *secret_name;   /* secretKeyRef.name, or NULL */
    char *secret_key;    /* secretKeyRef.key, or NULL */
} manifest_meta;

typedef struct component_spec {
    char *file;          /* the manifest file, for error messages */
    char *name;          /* metadata.name */
    char *type;          /* spec.type, e.g. "state.sqlite" */
    char *version;       /* spec.version, "" = the plugin's default */
    int ignore_errors;   /* spec.ignoreErrors */
    int64_t init_timeout_ms; /* spec.initTimeout, default 5 s */
    manifest_meta *meta;
    size_t n_meta;
    char *auth_secret_store; /* auth.secretStore, or NULL */
} component_spec;

/* A declarative Subscription (dapr.io/v1alpha1 route, v2alpha1 routes). */
typedef struct subscription_rule {
    char *match;         /* CEL expression; "" for none */
    char *path;
} subscription_rule;

typedef struct subscription_spec {
    char *file;
    char *name;
    char *pubsub;
    char *topic;
    char *route;         /* v1 spec.route, or NULL */
    char *default_path;  /* v2 spec.routes.default, or NULL */
    subscription_rule *rules;
    size_t n_rules;
    char *dead_letter;   /* spec.deadLetterTopic, or NULL */
    manifest_meta *meta; /* spec.metadata (name/value) */
    size_t n_meta;
    int bulk_enabled;    /* spec.bulkSubscribe.enabled */
    long long bulk_max_count;    /* spec.bulkSubscribe.maxMessagesCount, 0 = default */
    long long bulk_max_await_ms; /* spec.bulkSubscribe.maxAwaitDurationMs, 0 = default */
} subscription_spec;

/* Everything read from the resources folders: Components, and the
 * Subscriptions in scope for this app. */
typedef struct component_list {
    component_spec *items;
    size_t n;
    subscription_spec *subs;
    size_t n_subs;
} component_list;

/*
 * Read every *.yaml / *.yml file directly in dir (sorted by name, every
 * document in each file) and append the Components in scope for app_id to
 * list.  Returns 0, or -1 with a malloc'ed message naming the file, the
 * component and the field in *err.
 */
int manifest_load_dir(const char *dir, const char *app_id, component_list *list, char **err);

/* Parse manifests from a string (used for the embedded defaults and by
 * the unit tests); `origin` names it in errors. */
int manifest_load_string(const char *yaml, size_t len, const char *origin,
                         const char *app_id, component_list *list, char **err);

void component_list_free(component_list *list);

/* One entry of spec.secrets.scopes: which secrets the app may read from
 * one secret store through the secrets API. */
typedef struct secret_scope {
    char *store;               /* storeName */
    int default_deny;          /* defaultAccess: deny (default allow) */
    char **allowed;            /* allowedSecrets */
    size_t n_allowed;
    char **denied;             /* deniedSecrets */
    size_t n_denied;
} secret_scope;

/* What daprd uses of a Configuration manifest (--config). */
typedef struct configuration {
    char *name;                /* metadata.name */
    secret_scope *secret_scopes; /* spec.secrets.scopes */
    size_t n_secret_scopes;
    char *nr_component;        /* spec.nameResolution.component ("sqlite"), or NULL */
    char *nr_version;          /* spec.nameResolution.version, or NULL */
    manifest_meta *nr_meta;    /* spec.nameResolution.configuration, flattened */
    size_t n_nr_meta;
    /* spec.logging.apiLogging (each 0 when absent) */
    int api_logging_enabled;
    int api_logging_obfuscate_urls;
    int api_logging_omit_health_checks;
    /* spec.metric (or spec.metrics): enabled: false, http.increasedCardinality */
    int metrics_disabled;
    int metrics_increased_cardinality;
    /* spec.tracing (see core/tracing.h); strings NULL when absent */
    char *tracing_sampling_rate;   /* samplingRate */
    int tracing_stdout;            /* stdout */
    char *tracing_zipkin_endpoint; /* zipkin.endpointAddress */
    char *tracing_otel_endpoint;   /* otel.endpointAddress */
    int tracing_otel_is_secure;    /* otel.isSecure */
    char *tracing_otel_protocol;   /* otel.protocol */
} configuration;

/* Read a Configuration file.  $VAR and ${VAR} are expanded first, as Dapr
 * does for Configuration (and only Configuration) files.  Returns 0, or -1
 * with a malloc'ed message in *err. */
int manifest_load_configuration(const char *path, configuration *cfg, char **err);
void configuration_free(configuration *cfg);

#endif
