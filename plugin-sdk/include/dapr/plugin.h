/*
 * dapr/plugin.h - the one header a Dapr plugin includes.
 *
 * A plugin is a shared object that exports one symbol,
 *
 *     DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);
 *
 * returning a constant descriptor.  The descriptor lists the component
 * types the .so provides ("state.sqlite", ...), each with its kind, version,
 * features, metadata schema, lifecycle functions and a vtable for its kind.
 *
 * Growing the ABI: structs the plugin hands to the host (descriptor,
 * component definitions, vtables, results) and the host services table
 * record their size and may grow at their end in a minor version.  Request
 * structs the host hands to plugins, and every struct passed in an array
 * (dapr_kv, dapr_state_set_req, dapr_state_delete_req, dapr_state_op,
 * dapr_state_bulk_item, dapr_state_query_item, ...), are frozen for a major
 * version: changing them is a major bump.
 *
 * Loading rules (daprd's loader):
 *  - descriptor.abi_major must equal DAPR_PLUGIN_ABI_MAJOR of the host and
 *    descriptor.abi_minor must not exceed the host's minor; otherwise the
 *    file is refused with one log line naming both ABIs;
 *  - every struct starts with (or records) its size, and a struct only
 *    grows at its end, so a host reads only what the plugin knows about;
 *  - a type already registered by another file is refused (first wins);
 *  - the .so is opened with RTLD_NOW | RTLD_LOCAL: build with
 *    -fvisibility=hidden so bundled libraries never clash.
 *
 * Threading: by default the host calls every vtable operation on its
 * bounded worker pool, so a plugin built on a blocking client library may
 * simply block and then call the completion callback inline.  A plugin
 * whose operations never block (they only queue work and return) sets
 * DAPR_COMPONENT_NONBLOCKING and is then called on the event loop.  Either
 * way the completion callback may be called from any thread.
 *
 * See plugin-sdk/examples/ for a complete out-of-tree plugin, and run
 * dapr-plugin-conformance against your .so before shipping it.
 */
#ifndef DAPR_PLUGIN_H
#define DAPR_PLUGIN_H

#include <dapr/common.h>
#include <dapr/state.h>
#include <dapr/pubsub.h>
#include <dapr/bindings.h>
#include <dapr/secretstore.h>
#include <dapr/nameresolution.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DAPR_PLUGIN_ENTRY_SYMBOL "dapr_plugin_entry"

typedef enum dapr_component_kind {
    DAPR_KIND_STATE = 1,           /* "state.*",      dapr_state_vtable */
    DAPR_KIND_PUBSUB = 2,          /* "pubsub.*",     dapr_pubsub_vtable */
    DAPR_KIND_INPUT_BINDING = 3,   /* "bindings.*",   dapr_input_binding_vtable */
    DAPR_KIND_OUTPUT_BINDING = 4,  /* "bindings.*",   dapr_output_binding_vtable */
    DAPR_KIND_SECRET_STORE = 5,    /* "secretstores.*", dapr_secretstore_vtable */
    DAPR_KIND_NAME_RESOLUTION = 6, /* "nameresolution.*", dapr_nameresolution_vtable */
    DAPR_KIND_LOCK = 7,            /* "lock.*", reserved */
    DAPR_KIND_CONFIGURATION = 8    /* "configuration.*", reserved */
} dapr_component_kind;

/* Component flags (dapr_component_def.flags). */
#define DAPR_COMPONENT_NONBLOCKING 0x1u /* operations never block: call on the loop */

/*
 * One component type provided by a plugin.
 *
 * init() reads the metadata through api->metadata_get(host, ...), connects
 * if it must, and stores its instance pointer in *instance.  It may block
 * (the host runs it on a worker with the manifest's initTimeout).  On
 * failure it writes a one-line reason (without secret values) to errbuf,
 * releases whatever it allocated, and returns an error status: the host
 * then never calls close() for it and ignores *instance.
 *
 * close() releases the instance.  The host calls it once, after every
 * operation on the instance has completed -- which it may do as soon as the
 * last completion callback was called, so a plugin must not touch the
 * instance after calling an operation's callback: make the callback the
 * last thing an operation does.
 */
typedef struct dapr_component_def {
    uint32_t size;                 /* sizeof(dapr_component_def) */
    dapr_component_kind kind;
    const char *type;              /* Dapr's type name: "state.sqlite" */
    const char *version;           /* "v1", "v2"; the default version is listed first */
    uint64_t features;             /* kind-specific feature bits */
    uint32_t flags;                /* DAPR_COMPONENT_* */
    const dapr_metadata_field *metadata_schema;
    size_t n_metadata_schema;

    dapr_status (*init)(dapr_host *host, const dapr_host_api *api,
                        void **instance, char *errbuf, size_t errlen);
    void (*close)(void *instance);

    const void *vtable;            /* kind-specific; its first member is its size */
} dapr_component_def;

/* What dapr_plugin_entry() returns. */
typedef struct dapr_plugin_descriptor {
    uint16_t abi_major;            /* DAPR_PLUGIN_ABI_MAJOR at build time */
    uint16_t abi_minor;            /* DAPR_PLUGIN_ABI_MINOR at build time */
    uint32_t size;                 /* sizeof(dapr_plugin_descriptor) */
    const char *name;              /* "state-sqlite" */
    const char *version;           /* the plugin's own version string */
    const char *description;
    /* n_components pointers.  Pointers rather than an array of structs, so
     * that a dapr_component_def that grows in a later minor version does
     * not change where the next one starts. */
    const dapr_component_def *const *components;
    size_t n_components;
} dapr_plugin_descriptor;

typedef const dapr_plugin_descriptor *(*dapr_plugin_entry_fn)(void);

/* Fill the version header of a descriptor. */
#define DAPR_PLUGIN_DESCRIPTOR_HEADER                                     \
    .abi_major = DAPR_PLUGIN_ABI_MAJOR, .abi_minor = DAPR_PLUGIN_ABI_MINOR, \
    .size = sizeof(dapr_plugin_descriptor)

#ifdef __cplusplus
}
#endif
#endif /* DAPR_PLUGIN_H */
