/* kv_list.h - an owned list of name/value strings, viewable as dapr_kvs. */
#ifndef DAPRD_KV_LIST_H
#define DAPRD_KV_LIST_H

#include <dapr/common.h>
#include <stddef.h>

typedef struct kv_list {
    dapr_kv *items;
    size_t n;
} kv_list;

/* Set name to value (copies both); an existing pair with the same name is
 * replaced, so later sources override earlier ones. */
void kv_list_set(kv_list *l, const char *name, const char *value);
/* Add only when the name is not there yet (first value wins). */
void kv_list_add_first(kv_list *l, const char *name, const char *value);
const char *kv_list_get(const kv_list *l, const char *name);
/* Copy a plugin's dapr_kvs into a new owned list. */
kv_list kv_list_copy(dapr_kvs src);
void kv_list_free(kv_list *l);

static inline dapr_kvs kv_list_view(const kv_list *l)
{
    dapr_kvs v = {l->items, l->n};
    return v;
}

#endif
