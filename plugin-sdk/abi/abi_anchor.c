/*
 * abi_anchor.c - references every public type of the plugin ABI from one
 * exported function, so that abidw can dump the ABI of the headers and
 * abidiff can compare it with the recorded baseline (check-abi.sh).
 */
#include <dapr/plugin.h>

DAPR_PLUGIN_EXPORT void dapr_abi_anchor(
    const dapr_plugin_descriptor *descriptor, const dapr_component_def *component,
    const dapr_host_api *host_api, const dapr_metadata_field *metadata_field,
    const dapr_state_vtable *state, const dapr_state_get_result *state_get_result,
    const dapr_state_bulk_get_result *state_bulk_get_result, const dapr_state_txn_req *state_txn,
    const dapr_state_query_req *state_query, const dapr_state_query_result *state_query_result,
    const dapr_pubsub_vtable *pubsub, const dapr_pubsub_bulk_publish_req *pubsub_bulk,
    const dapr_pubsub_bulk_publish_result *pubsub_bulk_result,
    const dapr_pubsub_subscribe_req *pubsub_subscribe, const dapr_pubsub_message *pubsub_message,
    const dapr_output_binding_vtable *output_binding, const dapr_binding_invoke_result *binding_result,
    const dapr_input_binding_vtable *input_binding, const dapr_binding_event *binding_event,
    const dapr_secretstore_vtable *secretstore, const dapr_secret_get_result *secret_result,
    const dapr_secret_bulk_result *secret_bulk_result,
    const dapr_nameresolution_vtable *nameresolution, const dapr_nr_instance_info *nr_info,
    const dapr_nr_resolve_result *nr_result);

void dapr_abi_anchor(
    const dapr_plugin_descriptor *descriptor, const dapr_component_def *component,
    const dapr_host_api *host_api, const dapr_metadata_field *metadata_field,
    const dapr_state_vtable *state, const dapr_state_get_result *state_get_result,
    const dapr_state_bulk_get_result *state_bulk_get_result, const dapr_state_txn_req *state_txn,
    const dapr_state_query_req *state_query, const dapr_state_query_result *state_query_result,
    const dapr_pubsub_vtable *pubsub, const dapr_pubsub_bulk_publish_req *pubsub_bulk,
    const dapr_pubsub_bulk_publish_result *pubsub_bulk_result,
    const dapr_pubsub_subscribe_req *pubsub_subscribe, const dapr_pubsub_message *pubsub_message,
    const dapr_output_binding_vtable *output_binding, const dapr_binding_invoke_result *binding_result,
    const dapr_input_binding_vtable *input_binding, const dapr_binding_event *binding_event,
    const dapr_secretstore_vtable *secretstore, const dapr_secret_get_result *secret_result,
    const dapr_secret_bulk_result *secret_bulk_result,
    const dapr_nameresolution_vtable *nameresolution, const dapr_nr_instance_info *nr_info,
    const dapr_nr_resolve_result *nr_result)
{
    (void)descriptor; (void)component; (void)host_api; (void)metadata_field; (void)state;
    (void)state_get_result; (void)state_bulk_get_result; (void)state_txn; (void)state_query;
    (void)state_query_result; (void)pubsub; (void)pubsub_bulk; (void)pubsub_bulk_result;
    (void)pubsub_subscribe; (void)pubsub_message; (void)output_binding; (void)binding_result;
    (void)input_binding; (void)binding_event; (void)secretstore; (void)secret_result;
    (void)secret_bulk_result; (void)nameresolution; (void)nr_info; (void)nr_result;
}
