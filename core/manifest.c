/*
 * manifest.c - turn Dapr's YAML manifests into component_spec records.
 *
 * libyaml's document API gives a node tree per document; we walk it with
 * two helpers (mapping lookup, scalar text) and check each field by hand so
 * that every error can name the file, the component and the field.
 */
#include "config.h"
#include "manifest.h"
#include "log.h"
#include "resiliency.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#define SCOPE "dapr.runtime.loader"
#define DEFAULT_INIT_TIMEOUT_MS 5000

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

/* Scalar text, or NULL when the node is absent or not a scalar.  A YAML
 * null ("~", "null", empty) is returned as "" like Dapr's string form. */
static const char *scalar(yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE)
        return NULL;
    const char *v = (const char *)n->data.scalar.value;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
         strcmp(v, "NULL") == 0))
        return "";
    return v;
}

static int fail(char **err, const char *origin, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char **err, const char *origin, const char *comp, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (comp)
        *err = xasprintf("%s: component '%s': %s", origin, comp, what);
    else
        *err = xasprintf("%s: %s", origin, what);
    return -1;
}

/* Dapr requires metadata.name to be a valid path segment. */
static int valid_name(const char *s)
{
    if (!*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (const char *p = s; *p; p++)
        if (*p == '/' || *p == '%' || (unsigned char)*p < 0x20)
            return 0;
    return 1;
}

static void spec_free(component_spec *c)
{
    free(c->file);
    free(c->name);
    free(c->type);
    free(c->version);
    free(c->auth_secret_store);
    for (size_t i = 0; i < c->n_meta; i++) {
        free(c->meta[i].name);
        free(c->meta[i].value);
        free(c->meta[i].secret_name);
        free(c->meta[i].secret_key);
    }
    free(c->meta);
}

static void subscription_free(subscription_spec *s)
{
    free(s->file);
    free(s->name);
    free(s->pubsub);
    free(s->topic);
    free(s->route);
    free(s->default_path);
    free(s->dead_letter);
    for (size_t i = 0; i < s->n_rules; i++) {
        free(s->rules[i].match);
        free(s->rules[i].path);
    }
    free(s->rules);
    for (size_t i = 0; i < s->n_meta; i++) {
        free(s->meta[i].name);
        free(s->meta[i].value);
    }
    free(s->meta);
}

void component_list_free(component_list *list)
{
    for (size_t i = 0; i < list->n; i++)
        spec_free(&list->items[i]);
    free(list->items);
    for (size_t i = 0; i < list->n_subs; i++)
        subscription_free(&list->subs[i]);
    free(list->subs);
    memset(list, 0, sizeof *list);
}

/* Is app_id listed in the top-level scopes (absent or empty = everyone)? */
static int in_scope(yaml_document_t *doc, yaml_node_t *root, const char *app_id,
                    const char *origin, const char *name, char **err, int *ok)
{
    yaml_node_t *scopes = map_get(doc, root, "scopes");
    *ok = 1;
    if (!scopes || (scopes->type == YAML_SCALAR_NODE && !*scalar(scopes)))
        return 0;
    if (scopes->type != YAML_SEQUENCE_NODE)
        return fail(err, origin, name, "scopes must be a list of app ids");
    if (scopes->data.sequence.items.top == scopes->data.sequence.items.start)
        return 0;
    *ok = 0;
    for (yaml_node_item_t *it = scopes->data.sequence.items.start;
         it < scopes->data.sequence.items.top; it++) {
        const char *s = scalar(yaml_document_get_node(doc, *it));
        if (!s)
            return fail(err, origin, name, "scopes must be a list of app ids");
        if (app_id && strcmp(s, app_id) == 0)
            *ok = 1;
    }
    return 0;
}

static int parse_subscription(yaml_document_t *doc, yaml_node_t *root, const char *origin,
                              const char *api, const char *app_id, component_list *list, char **err)
{
    const char *name = scalar(map_get(doc, map_get(doc, root, "metadata"), "name"));
    if (!name || !*name)
        return fail(err, origin, NULL, "Subscription without metadata.name");
    int wanted;
    if (in_scope(doc, root, app_id, origin, name, err, &wanted) != 0)
        return -1;
    if (!wanted)
        return 0;
    yaml_node_t *spec = map_get(doc, root, "spec");
    const char *pubsub = scalar(map_get(doc, spec, "pubsubname"));
    const char *topic = scalar(map_get(doc, spec, "topic"));
    if (!pubsub || !*pubsub)
        return fail(err, origin, NULL, "Subscription '%s': spec.pubsubname is required", name);
    if (!topic || !*topic)
        return fail(err, origin, NULL, "Subscription '%s': spec.topic is required", name);
    subscription_spec s = {0};
    s.file = xstrdup(origin);
    s.name = xstrdup(name);
    s.pubsub = xstrdup(pubsub);
    s.topic = xstrdup(topic);
    const char *route = scalar(map_get(doc, spec, "route"));
    if (route && *route)
        s.route = xstrdup(route);
    yaml_node_t *routes = map_get(doc, spec, "routes");
    if (routes && routes->type == YAML_MAPPING_NODE) {
        const char *def = scalar(map_get(doc, routes, "default"));
        if (def && *def)
            s.default_path = xstrdup(def);
        yaml_node_t *rules = map_get(doc, routes, "rules");
        if (rules && rules->type == YAML_SEQUENCE_NODE) {
            size_t n = (size_t)(rules->data.sequence.items.top - rules->data.sequence.items.start);
            s.rules = xcalloc(n ? n : 1, sizeof *s.rules);
            for (size_t i = 0; i < n; i++) {
                yaml_node_t *r = yaml_document_get_node(doc, rules->data.sequence.items.start[i]);
                const char *m = scalar(map_get(doc, r, "match"));
                const char *p = scalar(map_get(doc, r, "path"));
                if (!p || !*p) {
                    subscription_free(&s);
                    return fail(err, origin, NULL, "Subscription '%s': spec.routes.rules[%zu].path is required", name, i);
                }
                s.rules[s.n_rules].match = xstrdup(m ? m : "");
                s.rules[s.n_rules].path = xstrdup(p);
                s.n_rules++;
            }
        }
    } else if (routes) {
        subscription_free(&s);
        return fail(err, origin, NULL, "Subscription '%s': spec.routes must be a mapping", name);
    }
    if (strcmp(api, "dapr.io/v1alpha1") == 0 && s.n_rules)
        log_warn(SCOPE, "%s: Subscription '%s' uses spec.routes with apiVersion v1alpha1", origin, name);
    const char *dlt = scalar(map_get(doc, spec, "deadLetterTopic"));
    if (dlt && *dlt)
        s.dead_letter = xstrdup(dlt);
    yaml_node_t *meta = map_get(doc, spec, "metadata");
    if (meta && meta->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = meta->data.mapping.pairs.start; p < meta->data.mapping.pairs.top; p++) {
            const char *k = scalar(yaml_document_get_node(doc, p->key));
            const char *v = scalar(yaml_document_get_node(doc, p->value));
            if (!k || !v)
                continue;
            s.meta = xrealloc(s.meta, (s.n_meta + 1) * sizeof *s.meta);
            s.meta[s.n_meta++] = (manifest_meta){.name = xstrdup(k), .value = xstrdup(v)};
        }
    }
    yaml_node_t *bulk_node = map_get(doc, spec, "bulkSubscribe");
    const char *bulk = scalar(map_get(doc, bulk_node, "enabled"));
    s.bulk_enabled = bulk && parse_bool(bulk) == 1;
    static const char *const bulk_ints[] = {"maxMessagesCount", "maxAwaitDurationMs"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = scalar(map_get(doc, bulk_node, bulk_ints[i]));
        int64_t n = 0;
        if (v && *v && (parse_int64(v, &n) != 0 || n < 0 || n > INT32_MAX)) {
            subscription_free(&s);
            return fail(err, origin, NULL, "Subscription '%s': spec.bulkSubscribe.%s must be a non-negative integer",
                        name, bulk_ints[i]);
        }
        if (i == 0)
            s.bulk_max_count = n;
        else
            s.bulk_max_await_ms = n;
    }
    if (!s.route && !s.default_path && !s.n_rules) {
        log_warn(SCOPE, "%s: Subscription '%s' has no route: skipped", origin, name);
        subscription_free(&s);
        return 0;
    }
    list->subs = xrealloc(list->subs, (list->n_subs + 1) * sizeof *list->subs);
    list->subs[list->n_subs++] = s;
    return 0;
}

/* envRef may not read daprd's own secrets (the API tokens), as in Dapr. */
static int env_ref_allowed(const char *name)
{
    if (!*name || strchr(name, ' ') || strcasecmp(name, "APP_API_TOKEN") == 0 ||
        strncasecmp(name, "DAPR_", 5) == 0)
        return 0;
    return 1;
}

static int parse_component(yaml_document_t *doc, yaml_node_t *root, const char *origin,
                           const char *app_id, component_list *list, char **err)
{
    yaml_node_t *md = map_get(doc, root, "metadata");
    const char *name = scalar(map_get(doc, md, "name"));
    if (!name || !*name)
        return fail(err, origin, NULL, "Component without metadata.name");
    if (!valid_name(name))
        return fail(err, origin, name, "metadata.name must be a valid path segment (no '/', '%%', '.' or '..')");

    int wanted;
    if (in_scope(doc, root, app_id, origin, name, err, &wanted) != 0)
        return -1;
    if (!wanted) {
        log_debug(SCOPE, "component %s in %s is not scoped to app %s: skipped", name, origin,
                  app_id ? app_id : "");
        return 0;
    }

    yaml_node_t *spec = map_get(doc, root, "spec");
    if (!spec || spec->type != YAML_MAPPING_NODE)
        return fail(err, origin, name, "spec is missing or not a mapping");
    const char *type = scalar(map_get(doc, spec, "type"));
    if (!type || !*type)
        return fail(err, origin, name, "spec.type is required");
    if (!strchr(type, '.') || type[0] == '.')
        return fail(err, origin, name, "spec.type '%s' must be <category>.<name>", type);
    const char *version = scalar(map_get(doc, spec, "version"));
    yaml_node_t *ignore_node = map_get(doc, spec, "ignoreErrors");
    int ignore = 0;
    if (ignore_node) {
        const char *s = scalar(ignore_node);
        if (!s || (ignore = parse_bool(s)) < 0)
            return fail(err, origin, name, "spec.ignoreErrors must be true or false");
    }
    int64_t init_timeout = DEFAULT_INIT_TIMEOUT_MS;
    const char *it = scalar(map_get(doc, spec, "initTimeout"));
    /* Dapr: an invalid or empty initTimeout means the default 5 s. */
    if (it && *it && (parse_duration_ms(it, &init_timeout) != 0 || init_timeout <= 0)) {
        log_warn(SCOPE, "%s: component '%s': spec.initTimeout '%s' is not a duration; using 5s",
                 origin, name, it);
        init_timeout = DEFAULT_INIT_TIMEOUT_MS;
    }

    component_spec c = {0};
    c.file = xstrdup(origin);
    c.name = xstrdup(name);
    c.type = xstrdup(type);
    c.version = xstrdup(version ? version : "");
    c.ignore_errors = ignore;
    c.init_timeout_ms = init_timeout;
    const char *auth = scalar(map_get(doc, map_get(doc, root, "auth"), "secretStore"));
    if (auth && *auth)
        c.auth_secret_store = xstrdup(auth);

    yaml_node_t *meta = map_get(doc, spec, "metadata");
    if (meta && !(meta->type == YAML_SCALAR_NODE && !*scalar(meta))) {
        if (meta->type != YAML_SEQUENCE_NODE) {
            spec_free(&c);
            return fail(err, origin, name, "spec.metadata must be a list of {name, value}");
        }
        size_t n = (size_t)(meta->data.sequence.items.top - meta->data.sequence.items.start);
        c.meta = xcalloc(n, sizeof *c.meta);
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *item = yaml_document_get_node(doc, meta->data.sequence.items.start[i]);
            const char *mname = scalar(map_get(doc, item, "name"));
            if (!mname || !*mname) {
                spec_free(&c);
                return fail(err, origin, name, "spec.metadata[%zu].name is required", i);
            }
            manifest_meta *m = &c.meta[c.n_meta++];
            m->name = xstrdup(mname);
            yaml_node_t *vnode = map_get(doc, item, "value");
            yaml_node_t *sref = map_get(doc, item, "secretKeyRef");
            const char *envref = scalar(map_get(doc, item, "envRef"));
            if (vnode) {
                const char *v = scalar(vnode);
                if (!v) {
                    spec_free(&c);
                    return fail(err, origin, name, "spec.metadata '%s': value must be a scalar", mname);
                }
                m->value = xstrdup(v);
            } else if (sref) {
                const char *sn = scalar(map_get(doc, sref, "name"));
                const char *sk = scalar(map_get(doc, sref, "key"));
                if (!sn || !*sn) {
                    spec_free(&c);
                    return fail(err, origin, name, "spec.metadata '%s': secretKeyRef.name is required", mname);
                }
                m->secret_name = xstrdup(sn);
                m->secret_key = xstrdup(sk && *sk ? sk : sn);
            } else if (envref) {
                const char *ev = env_ref_allowed(envref) ? getenv(envref) : NULL;
                if (!env_ref_allowed(envref))
                    log_warn(SCOPE, "%s: component '%s': metadata '%s' references the environment variable '%s', "
                             "which components may not read (DAPR_*, APP_API_TOKEN, names with spaces)",
                             origin, name, mname, envref);
                m->value = xstrdup(ev ? ev : "");
            } else {
                m->value = xstrdup("");
            }
        }
    }

    /* A second component with the same name is an error, as in Dapr. */
    for (size_t i = 0; i < list->n; i++) {
        if (strcmp(list->items[i].name, c.name) == 0) {
            int rc = fail(err, origin, name, "a component with this name was already loaded from %s",
                          list->items[i].file);
            spec_free(&c);
            return rc;
        }
    }
    list->items = xrealloc(list->items, (list->n + 1) * sizeof *list->items);
    list->items[list->n++] = c;
    return 0;
}

int manifest_load_string(const char *yaml, size_t len, const char *origin,
                         const char *app_id, component_list *list, char **err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return fail(err, origin, NULL, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    int rc = 0;
    for (int docno = 1;; docno++) {
        yaml_document_t doc;
        if (!yaml_parser_load(&parser, &doc)) {
            rc = fail(err, origin, NULL, "YAML error at line %zu: %s",
                      parser.problem_mark.line + 1,
                      parser.problem ? parser.problem : "unknown problem");
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) { /* end of stream */
            yaml_document_delete(&doc);
            break;
        }
        if (root->type == YAML_MAPPING_NODE) {
            const char *kind = scalar(map_get(&doc, root, "kind"));
            const char *api = scalar(map_get(&doc, root, "apiVersion"));
            if (kind && strcmp(kind, "Component") == 0) {
                if (!api || strcmp(api, "dapr.io/v1alpha1") != 0)
                    log_warn(SCOPE, "%s: document %d: Component with apiVersion '%s' (expected dapr.io/v1alpha1)",
                             origin, docno, api ? api : "");
                rc = parse_component(&doc, root, origin, app_id, list, err);
            } else if (kind && strcmp(kind, "Subscription") == 0) {
                rc = parse_subscription(&doc, root, origin, api ? api : "", app_id, list, err);
            } else if (kind && strcmp(kind, "Resiliency") == 0) {
                /* As Dapr: a bad Resiliency is reported and skipped. */
                char *rerr = NULL;
                if (resiliency_load_yaml(&doc, root, origin, app_id, &rerr) < 0)
                    log_error(SCOPE, "resiliency manifest skipped: %s", rerr);
                free(rerr);
            } else {
                log_debug(SCOPE, "%s: document %d of kind '%s' skipped", origin, docno,
                          kind ? kind : "(none)");
            }
        } else if (!(root->type == YAML_SCALAR_NODE && !*scalar(root))) {
            log_warn(SCOPE, "%s: document %d is not a mapping: skipped", origin, docno);
        }
        yaml_document_delete(&doc);
        if (rc != 0)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

static int has_yaml_suffix(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

int manifest_load_dir(const char *dir, const char *app_id, component_list *list, char **err)
{
    struct dirent **entries;
    int n = scandir(dir, &entries, NULL, alphasort);
    if (n < 0)
        return fail(err, dir, NULL, "cannot read resources folder: %s", strerror(errno));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *name = entries[i]->d_name;
        if (rc != 0 || name[0] == '.')
            continue;
        char *path = xasprintf("%s/%s", dir, name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        if (!has_yaml_suffix(name)) {
            log_warn(SCOPE, "%s is not a .yaml or .yml file: skipped", path);
            free(path);
            continue;
        }
        FILE *f = fopen(path, "rb");
        if (!f) {
            rc = fail(err, path, NULL, "cannot open: %s", strerror(errno));
            free(path);
            continue;
        }
        char *buf = xmalloc((size_t)st.st_size + 1);
        size_t got = fread(buf, 1, (size_t)st.st_size, f);
        fclose(f);
        rc = manifest_load_string(buf, got, path, app_id, list, err);
        free(buf);
        free(path);
    }
    for (int i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
    return rc;
}

/* ---- Configuration ------------------------------------------------------- */

/* Expand $VAR and ${VAR} (unset variables expand to ""). */
static char *expand_env(const char *in)
{
    size_t cap = strlen(in) + 64, len = 0;
    char *out = xmalloc(cap);
    for (const char *p = in; *p;) {
        const char *val = NULL;
        size_t skip = 0;
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            if (end) {
                char *name = xstrndup(p + 2, (size_t)(end - p - 2));
                val = getenv(name);
                free(name);
                if (!val) val = "";
                skip = (size_t)(end - p) + 1;
            }
        } else if (p[0] == '$' && (p[1] == '_' || (p[1] >= 'A' && p[1] <= 'Z') || (p[1] >= 'a' && p[1] <= 'z'))) {
            const char *e = p + 1;
            while (*e == '_' || (*e >= 'A' && *e <= 'Z') || (*e >= 'a' && *e <= 'z') || (*e >= '0' && *e <= '9'))
                e++;
            char *name = xstrndup(p + 1, (size_t)(e - p - 1));
            val = getenv(name);
            free(name);
            if (!val) val = "";
            skip = (size_t)(e - p);
        }
        size_t add = val ? strlen(val) : 1;
        if (len + add + 1 > cap) { cap = (len + add + 1) * 2; out = xrealloc(out, cap); }
        if (val) {
            memcpy(out + len, val, add);
            p += skip;
        } else {
            out[len] = *p++;
        }
        len += add;
    }
    out[len] = '\0';
    return out;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void configuration_free(configuration *cfg)
{
    free(cfg->name);
    for (size_t i = 0; i < cfg->n_secret_scopes; i++) {
        free(cfg->secret_scopes[i].store);
        free_strv(cfg->secret_scopes[i].allowed, cfg->secret_scopes[i].n_allowed);
        free_strv(cfg->secret_scopes[i].denied, cfg->secret_scopes[i].n_denied);
    }
    free(cfg->secret_scopes);
    free(cfg->nr_component);
    free(cfg->nr_version);
    for (size_t i = 0; i < cfg->n_nr_meta; i++) {
        free(cfg->nr_meta[i].name);
        free(cfg->nr_meta[i].value);
    }
    free(cfg->nr_meta);
    free(cfg->tracing_sampling_rate);
    free(cfg->tracing_zipkin_endpoint);
    free(cfg->tracing_otel_endpoint);
    free(cfg->tracing_otel_protocol);
    memset(cfg, 0, sizeof *cfg);
}

/* A list of scalars (allowedSecrets, deniedSecrets); absent or null is
 * empty.  Returns 0, or -1 with *err. */
static int parse_string_list(yaml_document_t *doc, yaml_node_t *n, const char *origin,
                             const char *field, char ***out, size_t *n_out, char **err)
{
    if (!n || (n->type == YAML_SCALAR_NODE && !*scalar(n)))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(err, origin, NULL, "%s must be a list of strings", field);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const char *v = scalar(yaml_document_get_node(doc, *it));
        if (!v)
            return fail(err, origin, NULL, "%s must be a list of strings", field);
        *out = xrealloc(*out, (*n_out + 1) * sizeof **out);
        (*out)[(*n_out)++] = xstrdup(v);
    }
    return 0;
}

/* spec.secrets.scopes, validated as Dapr does: defaultAccess is allow or
 * deny (any case), and a storeName appears once. */
static int parse_secret_scopes(yaml_document_t *doc, yaml_node_t *spec, const char *origin,
                               configuration *cfg, char **err)
{
    yaml_node_t *scopes = map_get(doc, map_get(doc, spec, "secrets"), "scopes");
    if (!scopes || (scopes->type == YAML_SCALAR_NODE && !*scalar(scopes)))
        return 0;
    if (scopes->type != YAML_SEQUENCE_NODE)
        return fail(err, origin, NULL, "spec.secrets.scopes must be a list");
    size_t idx = 0;
    for (yaml_node_item_t *it = scopes->data.sequence.items.start; it < scopes->data.sequence.items.top;
         it++, idx++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        if (!item || item->type != YAML_MAPPING_NODE)
            return fail(err, origin, NULL, "spec.secrets.scopes[%zu] must be a mapping", idx);
        const char *store = scalar(map_get(doc, item, "storeName"));
        const char *access = scalar(map_get(doc, item, "defaultAccess"));
        if (!store)
            store = "";
        for (size_t i = 0; i < cfg->n_secret_scopes; i++)
            if (strcmp(cfg->secret_scopes[i].store, store) == 0)
                return fail(err, origin, NULL, "\"%s\" storeName is repeated in secrets configuration", store);
        if (access && *access && strcasecmp(access, "allow") != 0 && strcasecmp(access, "deny") != 0)
            return fail(err, origin, NULL, "spec.secrets.scopes[%zu]: defaultAccess \"%s\" can be either allow or deny",
                        idx, access);
        cfg->secret_scopes = xrealloc(cfg->secret_scopes, (cfg->n_secret_scopes + 1) * sizeof *cfg->secret_scopes);
        secret_scope *sc = &cfg->secret_scopes[cfg->n_secret_scopes++];
        memset(sc, 0, sizeof *sc);
        sc->store = xstrdup(store);
        sc->default_deny = access && strcasecmp(access, "deny") == 0;
        char field[64];
        snprintf(field, sizeof field, "spec.secrets.scopes[%zu].allowedSecrets", idx);
        if (parse_string_list(doc, map_get(doc, item, "allowedSecrets"), origin, field, &sc->allowed,
                              &sc->n_allowed, err) != 0)
            return -1;
        snprintf(field, sizeof field, "spec.secrets.scopes[%zu].deniedSecrets", idx);
        if (parse_string_list(doc, map_get(doc, item, "deniedSecrets"), origin, field, &sc->denied,
                              &sc->n_denied, err) != 0)
            return -1;
    }
    return 0;
}

/* spec.logging.apiLogging: enabled, obfuscateURLs, omitHealthChecks. */
static int parse_api_logging(yaml_document_t *doc, yaml_node_t *spec, const char *origin, configuration *cfg,
                             char **err)
{
    yaml_node_t *al = map_get(doc, map_get(doc, spec, "logging"), "apiLogging");
    if (!al)
        return 0;
    if (al->type != YAML_MAPPING_NODE)
        return fail(err, origin, NULL, "spec.logging.apiLogging must be a mapping");
    static const char *names[] = {"enabled", "obfuscateURLs", "omitHealthChecks"};
    int *dest[] = {&cfg->api_logging_enabled, &cfg->api_logging_obfuscate_urls,
                   &cfg->api_logging_omit_health_checks};
    for (size_t i = 0; i < 3; i++) {
        yaml_node_t *n = map_get(doc, al, names[i]);
        if (!n)
            continue;
        const char *v = scalar(n);
        int b = v ? parse_bool(v) : -1;
        if (b < 0)
            return fail(err, origin, NULL, "spec.logging.apiLogging.%s: '%s' is not true or false", names[i],
                        v ? v : "(not a scalar)");
        *dest[i] = b;
    }
    return 0;
}

/* spec.metric (Dapr's name) or spec.metrics: enabled, http.increasedCardinality. */
static int parse_metrics_spec(yaml_document_t *doc, yaml_node_t *spec, const char *origin, configuration *cfg,
                              char **err)
{
    static const char *const keys[] = {"metric", "metrics"};
    for (size_t k = 0; k < 2; k++) {
        yaml_node_t *m = map_get(doc, spec, keys[k]);
        if (!m)
            continue;
        if (m->type != YAML_MAPPING_NODE)
            return fail(err, origin, NULL, "spec.%s must be a mapping", keys[k]);
        yaml_node_t *en = map_get(doc, m, "enabled");
        yaml_node_t *ic = map_get(doc, map_get(doc, m, "http"), "increasedCardinality");
        const char *v;
        int b;
        if (en && ((v = scalar(en)) == NULL || (b = parse_bool(v)) < 0))
            return fail(err, origin, NULL, "spec.%s.enabled: '%s' is not true or false", keys[k],
                        v ? v : "(not a scalar)");
        if (en)
            cfg->metrics_disabled = !b;
        if (ic && ((v = scalar(ic)) == NULL || (b = parse_bool(v)) < 0))
            return fail(err, origin, NULL, "spec.%s.http.increasedCardinality: '%s' is not true or false",
                        keys[k], v ? v : "(not a scalar)");
        if (ic)
            cfg->metrics_increased_cardinality = b;
    }
    return 0;
}

/* spec.tracing: samplingRate, stdout, zipkin.endpointAddress,
 * otel.{endpointAddress,isSecure,protocol}.  Meaning and checks of the
 * values: core/tracing.c. */
static int parse_tracing_spec(yaml_document_t *doc, yaml_node_t *spec, const char *origin, configuration *cfg,
                              char **err)
{
    yaml_node_t *t = map_get(doc, spec, "tracing");
    if (!t || (t->type == YAML_SCALAR_NODE && !*scalar(t)))
        return 0;
    if (t->type != YAML_MAPPING_NODE)
        return fail(err, origin, NULL, "spec.tracing must be a mapping");
    static const char *const fields[] = {"samplingRate", "zipkin.endpointAddress", "otel.endpointAddress",
                                         "otel.protocol"};
    char **dest[] = {&cfg->tracing_sampling_rate, &cfg->tracing_zipkin_endpoint, &cfg->tracing_otel_endpoint,
                     &cfg->tracing_otel_protocol};
    for (size_t i = 0; i < 4; i++) {
        const char *dot = strchr(fields[i], '.');
        char sect[16] = "";
        if (dot)
            snprintf(sect, sizeof sect, "%.*s", (int)(dot - fields[i]), fields[i]);
        yaml_node_t *n = dot ? map_get(doc, map_get(doc, t, sect), dot + 1) : map_get(doc, t, fields[i]);
        if (!n)
            continue;
        const char *v = scalar(n);
        if (!v)
            return fail(err, origin, NULL, "spec.tracing.%s must be a string", fields[i]);
        free(*dest[i]);
        *dest[i] = xstrdup(v);
    }
    static const char *const bools[] = {"stdout", "otel.isSecure"};
    int *bdest[] = {&cfg->tracing_stdout, &cfg->tracing_otel_is_secure};
    for (size_t i = 0; i < 2; i++) {
        yaml_node_t *n = i == 0 ? map_get(doc, t, "stdout") : map_get(doc, map_get(doc, t, "otel"), "isSecure");
        if (!n)
            continue;
        const char *v = scalar(n);
        int b = v ? parse_bool(v) : -1;
        if (b < 0)
            return fail(err, origin, NULL, "spec.tracing.%s: '%s' is not true or false", bools[i],
                        v ? v : "(not a scalar)");
        *bdest[i] = b;
    }
    return 0;
}

static int parse_configuration(yaml_document_t *doc, yaml_node_t *root, const char *origin,
                               configuration *cfg, char **err)
{
    const char *name = scalar(map_get(doc, map_get(doc, root, "metadata"), "name"));
    free(cfg->name);
    cfg->name = xstrdup(name ? name : "");
    if (parse_secret_scopes(doc, map_get(doc, root, "spec"), origin, cfg, err) != 0)
        return -1;
    if (parse_api_logging(doc, map_get(doc, root, "spec"), origin, cfg, err) != 0)
        return -1;
    if (parse_metrics_spec(doc, map_get(doc, root, "spec"), origin, cfg, err) != 0)
        return -1;
    if (parse_tracing_spec(doc, map_get(doc, root, "spec"), origin, cfg, err) != 0)
        return -1;
    yaml_node_t *nr = map_get(doc, map_get(doc, root, "spec"), "nameResolution");
    if (!nr)
        return 0;
    if (nr->type != YAML_MAPPING_NODE)
        return fail(err, origin, NULL, "spec.nameResolution must be a mapping");
    const char *comp = scalar(map_get(doc, nr, "component"));
    const char *ver = scalar(map_get(doc, nr, "version"));
    if (!comp || !*comp)
        return fail(err, origin, NULL, "spec.nameResolution.component is required");
    free(cfg->nr_component);
    free(cfg->nr_version);
    cfg->nr_component = xstrdup(comp);
    cfg->nr_version = ver && *ver ? xstrdup(ver) : NULL;
    yaml_node_t *conf = map_get(doc, nr, "configuration");
    if (!conf || (conf->type == YAML_SCALAR_NODE && !*scalar(conf)))
        return 0;
    if (conf->type != YAML_MAPPING_NODE)
        return fail(err, origin, NULL, "spec.nameResolution.configuration must be a mapping");
    for (yaml_node_pair_t *p = conf->data.mapping.pairs.start; p < conf->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        const char *v = scalar(yaml_document_get_node(doc, p->value));
        if (!k)
            continue;
        if (!v)
            return fail(err, origin, NULL, "spec.nameResolution.configuration.%s must be a scalar", k);
        cfg->nr_meta = xrealloc(cfg->nr_meta, (cfg->n_nr_meta + 1) * sizeof *cfg->nr_meta);
        cfg->nr_meta[cfg->n_nr_meta++] = (manifest_meta){.name = xstrdup(k), .value = xstrdup(v)};
    }
    return 0;
}

int manifest_load_configuration(const char *path, configuration *cfg, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, path, NULL, "cannot open the Configuration: %s", strerror(errno));
    char *raw = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) { cap = (len + n + 1) * 2; raw = xrealloc(raw, cap); }
        memcpy(raw + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!raw) raw = xstrdup("");
    raw[len] = '\0';
    char *text = expand_env(raw);
    free(raw);

    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int rc = 0, found = 0;
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(&parser, &doc)) {
            rc = fail(err, path, NULL, "YAML error at line %zu: %s", parser.problem_mark.line + 1,
                      parser.problem ? parser.problem : "unknown problem");
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) {
            yaml_document_delete(&doc);
            break;
        }
        const char *kind = scalar(map_get(&doc, root, "kind"));
        if (kind && strcmp(kind, "Configuration") == 0) {
            found = 1;
            rc = parse_configuration(&doc, root, path, cfg, err);
        }
        yaml_document_delete(&doc);
        if (rc != 0)
            break;
    }
    yaml_parser_delete(&parser);
    free(text);
    if (rc == 0 && !found)
        rc = fail(err, path, NULL, "no document of kind Configuration");
    return rc;
}
