/*
 * dup_type.c - a plugin that claims state.in-memory, which the real
 * state-memory plugin already provides.  The loader must refuse this file
 * (first wins) and keep the real one working.
 */
#include "stub_state.h"

static const dapr_component_def dup_component = STUB_STATE_COMPONENT("state.in-memory");
static const dapr_component_def *const dup_components[] = {&dup_component};

static const dapr_plugin_descriptor dup_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "test-dup-type",
    .version = "0.1.0",
    .description = "test plugin duplicating state.in-memory (must be refused)",
    .components = dup_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &dup_descriptor;
}
