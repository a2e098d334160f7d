/*
 * bad_abi_major.c - a plugin built for the next ABI major version.
 * The loader must refuse it with one log line naming both ABIs.
 */
#include "stub_state.h"

static const dapr_component_def badmajor_component = STUB_STATE_COMPONENT("state.badmajor");
static const dapr_component_def *const badmajor_components[] = {&badmajor_component};

static const dapr_plugin_descriptor badmajor_descriptor = {
    .abi_major = DAPR_PLUGIN_ABI_MAJOR + 1,
    .abi_minor = 0,
    .size = sizeof(dapr_plugin_descriptor),
    .name = "test-bad-abi-major",
    .version = "0.1.0",
    .description = "test plugin built for a newer ABI major (must be refused)",
    .components = badmajor_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &badmajor_descriptor;
}
