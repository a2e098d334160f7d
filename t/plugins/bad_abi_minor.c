/*
 * bad_abi_minor.c - a plugin built for a newer ABI minor than the host's.
 * It may rely on host services the host does not have, so the loader must
 * refuse it (Varnish's rule: the plugin's minor must not be newer).
 */
#include "stub_state.h"

static const dapr_component_def badminor_component = STUB_STATE_COMPONENT("state.badminor");
static const dapr_component_def *const badminor_components[] = {&badminor_component};

static const dapr_plugin_descriptor badminor_descriptor = {
    .abi_major = DAPR_PLUGIN_ABI_MAJOR,
    .abi_minor = DAPR_PLUGIN_ABI_MINOR + 1,
    .size = sizeof(dapr_plugin_descriptor),
    .name = "test-bad-abi-minor",
    .version = "0.1.0",
    .description = "test plugin built for a newer ABI minor (must be refused)",
    .components = badminor_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &badminor_descriptor;
}
