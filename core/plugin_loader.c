/*
 * plugin_loader.c - dlopen plugins and register their component types.
 *
 * The rules (see plugin-sdk/include/dapr/plugin.h): the ABI major must be
 * equal and the minor not newer than the host's (Varnish's VRT rule);
 * struct sizes must cover what ABI 1.0 defined; a type already provided
 * by another file is refused, and a refused file registers nothing.
 */
#include "config.h"
#include "plugin_loader.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCOPE "dapr.runtime.plugins"

struct loaded_file {
    char *path;
    void *handle;
};

struct registered_type {
    const dapr_component_def *def;
    const char *path; /* points into loaded_file.path */
};

static struct loaded_file *files;
static size_t n_files;
static struct registered_type *types;
static size_t n_types;

/* Minimum sizes: what ABI 1.0 defined.  A plugin built against a later
 * 1.x may hand us larger structs; we read only the prefix we know. */
#define MIN_DESCRIPTOR_SIZE offsetof(dapr_plugin_descriptor, n_components) + sizeof(size_t)
#define MIN_COMPONENT_SIZE  offsetof(dapr_component_def, vtable) + sizeof(void *)

const char *plugins_check_abi(const dapr_plugin_descriptor *d)
{
    if (!d)
        return "dapr_plugin_entry() returned NULL";
    if (d->abi_major != DAPR_PLUGIN_ABI_MAJOR)
        return "ABI major version differs from the host's";
    if (d->abi_minor > DAPR_PLUGIN_ABI_MINOR)
        return "ABI minor version is newer than the host's";
    if (d->size < MIN_DESCRIPTOR_SIZE)
        return "descriptor is smaller than ABI 1.0 defines";
    if (d->n_components > 0 && !d->components)
        return "descriptor lists components but gives no array";
    for (size_t i = 0; i < d->n_components; i++) {
        const dapr_component_def *c = d->components[i];
        if (!c)
            return "a component pointer is NULL";
        if (c->size < MIN_COMPONENT_SIZE)
            return "a component definition is smaller than ABI 1.0 defines";
        if (!c->type || !*c->type || !c->init || !c->close || !c->vtable)
            return "a component definition lacks its type, init, close or vtable";
        if (*(const uint32_t *)c->vtable < sizeof(uint32_t))
            return "a component vtable does not record its size";
    }
    return NULL;
}

dapr_component_kind kind_of_type_name(const char *type)
{
    static const struct { const char *prefix; dapr_component_kind kind; } cats[] = {
        {"state.", DAPR_KIND_STATE},
        {"pubsub.", DAPR_KIND_PUBSUB},
        {"bindings.", DAPR_KIND_OUTPUT_BINDING},
        {"secretstores.", DAPR_KIND_SECRET_STORE},
        {"nameresolution.", DAPR_KIND_NAME_RESOLUTION},
        {"lock.", DAPR_KIND_LOCK},
        {"configuration.", DAPR_KIND_CONFIGURATION},
    };
    for (size_t i = 0; i < sizeof cats / sizeof *cats; i++)
        if (strncmp(type, cats[i].prefix, strlen(cats[i].prefix)) == 0)
            return cats[i].kind;
    return 0;
}

static const char *version_or_default(const char *v)
{
    return (v && *v) ? v : "v1";
}

static const struct registered_type *find_registered(dapr_component_kind kind, const char *type,
                                                     const char *version)
{
    for (size_t i = 0; i < n_types; i++) {
        const dapr_component_def *d = types[i].def;
        if (d->kind != kind || strcmp(d->type, type) != 0)
            continue;
        if (!version || !*version || strcmp(version_or_default(d->version), version) == 0)
            return &types[i];
    }
    return NULL;
}

const dapr_component_def *plugins_find_type(dapr_component_kind kind, const char *type,
                                            const char *version, const char **file_out)
{
    const struct registered_type *t = find_registered(kind, type, version);
    /* A binding type may be registered as input only. */
    if (!t && kind == DAPR_KIND_OUTPUT_BINDING)
        t = find_registered(DAPR_KIND_INPUT_BINDING, type, version);
    if (file_out)
        *file_out = t ? t->path : NULL;
    return t ? t->def : NULL;
}

size_t plugins_type_count(void) { return n_types; }

const dapr_component_def *plugins_type_at(size_t i, const char **file_out)
{
    if (file_out) *file_out = types[i].path;
    return types[i].def;
}

int plugins_load_file(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        log_error(SCOPE, "plugin %s refused: cannot load: %s", path, dlerror());
        return -1;
    }
    dlerror();
    void *sym = dlsym(h, DAPR_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        log_error(SCOPE, "plugin %s refused: no %s symbol (not a Dapr plugin, or built without DAPR_PLUGIN_EXPORT)",
                  path, DAPR_PLUGIN_ENTRY_SYMBOL);
        dlclose(h);
        return -1;
    }
    dapr_plugin_entry_fn entry;
    /* POSIX guarantees object/function pointer conversion through dlsym. */
    memcpy(&entry, &sym, sizeof entry);
    const dapr_plugin_descriptor *d = entry();
    const char *why = plugins_check_abi(d);
    if (why) {
        if (d)
            log_error(SCOPE, "plugin %s refused: %s (plugin ABI %u.%u, host ABI %d.%d)", path, why,
                      d->abi_major, d->abi_minor, DAPR_PLUGIN_ABI_MAJOR, DAPR_PLUGIN_ABI_MINOR);
        else
            log_error(SCOPE, "plugin %s refused: %s", path, why);
        dlclose(h);
        return -1;
    }
    /* All or nothing: check every type before registering any. */
    for (size_t i = 0; i < d->n_components; i++) {
        const dapr_component_def *c = d->components[i];
        if (kind_of_type_name(c->type) == 0) {
            log_error(SCOPE, "plugin %s refused: component type '%s' has an unknown category", path,
                      c->type);
            dlclose(h);
            return -1;
        }
        const struct registered_type *dup =
            find_registered(c->kind, c->type, version_or_default(c->version));
        for (size_t j = 0; !dup && j < i; j++)
            if (d->components[j]->kind == c->kind && strcmp(d->components[j]->type, c->type) == 0 &&
                strcmp(version_or_default(d->components[j]->version), version_or_default(c->version)) == 0)
                dup = &(struct registered_type){.path = path};
        if (dup) {
            log_error(SCOPE, "plugin %s refused: component type %s %s is already provided by %s", path,
                      c->type, version_or_default(c->version), dup->path);
            dlclose(h);
            return -1;
        }
    }
    files = xrealloc(files, (n_files + 1) * sizeof *files);
    files[n_files].path = xstrdup(path);
    files[n_files].handle = h;
    const char *stored_path = files[n_files].path;
    n_files++;
    for (size_t i = 0; i < d->n_components; i++) {
        types = xrealloc(types, (n_types + 1) * sizeof *types);
        types[n_types].def = d->components[i];
        types[n_types].path = stored_path;
        n_types++;
        log_debug(SCOPE, "registered component type %s/%s from %s", d->components[i]->type,
                  version_or_default(d->components[i]->version), path);
    }
    log_info(SCOPE, "loaded plugin %s %s (%s, ABI %u.%u, %zu component types)",
             d->name ? d->name : "?", d->version ? d->version : "?", path, d->abi_major,
             d->abi_minor, d->n_components);
    return 0;
}

static int so_filter(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return e->d_name[0] != '.' && n > 3 && strcmp(e->d_name + n - 3, ".so") == 0;
}

int plugins_load_dir(const char *dir)
{
    struct dirent **entries;
    int n = scandir(dir, &entries, so_filter, alphasort);
    if (n < 0) {
        log_warn(SCOPE, "plugins folder %s cannot be read: %s", dir, strerror(errno));
        return -1;
    }
    int loaded = 0;
    for (int i = 0; i < n; i++) {
        char *path = xasprintf("%s/%s", dir, entries[i]->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && plugins_load_file(path) == 0)
            loaded++;
        free(path);
        free(entries[i]);
    }
    free(entries);
    return loaded;
}

void plugins_unload_all(void)
{
    for (size_t i = 0; i < n_files; i++) {
        /* Under ASan, keep the code mapped so leak reports still have
         * symbols; otherwise unload for a clean valgrind run. */
#ifndef __SANITIZE_ADDRESS__
        dlclose(files[i].handle);
#endif
        free(files[i].path);
    }
    free(files);
    free(types);
    files = NULL;
    types = NULL;
    n_files = n_types = 0;
}
