/*
 * no_entry.c - a shared object without the dapr_plugin_entry symbol, such
 * as a stray library in the plugins folder or a plugin built without
 * DAPR_PLUGIN_EXPORT.  The loader must refuse it and go on.
 *
 * It does export one other function, so the .so is not empty and the
 * refusal is really about the missing entry symbol.
 */
#include <dapr/common.h>

DAPR_PLUGIN_EXPORT int not_a_dapr_plugin(void);

DAPR_PLUGIN_EXPORT int not_a_dapr_plugin(void)
{
    return 42;
}
