/*
 * plugin_loader.h - find plugin .so files, check their ABI and register
 * the component types they provide.
 */
#ifndef DAPRD_PLUGIN_LOADER_H
#define DAPRD_PLUGIN_LOADER_H

#include <dapr/plugin.h>
#include <stddef.h>

/* Load every *.so directly in dir.  A file that cannot be used is refused
 * with one log line naming it and the reason; the others still load.
 * Returns the number of plugins loaded from dir, or -1 when dir cannot be
 * read. */
int plugins_load_dir(const char *dir);

/* Load one file; returns 0, or -1 after logging why it was refused. */
int plugins_load_file(const char *path);

/* Check a descriptor against the host's ABI.  Returns NULL when usable,
 * else a static reason.  Exposed for the unit tests. */
const char *plugins_check_abi(const dapr_plugin_descriptor *d);

/* The component kind implied by a Dapr type name's category
 * ("state.redis" -> DAPR_KIND_STATE); 0 when unknown.  Bindings return
 * DAPR_KIND_OUTPUT_BINDING (a binding type may also have an input kind). */
dapr_component_kind kind_of_type_name(const char *type);

/* Find the definition of a type.  version "" picks the first registered
 * version for that type (the plugin lists its default first).  file_out
 * (optional) receives the path of the providing .so. */
const dapr_component_def *plugins_find_type(dapr_component_kind kind, const char *type,
                                            const char *version, const char **file_out);

/* Iterate over the registered types (for --help and the metadata API). */
size_t plugins_type_count(void);
const dapr_component_def *plugins_type_at(size_t i, const char **file_out);

/* dlclose everything (after every component is closed). */
void plugins_unload_all(void);

#endif
