/* kv_list.c - owned name/value lists. */
#include "config.h"
#include "kv_list.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static dapr_kv *find(const kv_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    return NULL;
}

void kv_list_set(kv_list *l, const char *name, const char *value)
{
    dapr_kv *kv = find(l, name);
    if (kv) {
        free((char *)kv->value);
        kv->value = xstrdup(value);
        return;
    }
    l->items = xrealloc(l->items, (l->n + 1) * sizeof *l->items);
    l->items[l->n].name = xstrdup(name);
    l->items[l->n].value = xstrdup(value);
    l->n++;
}

void kv_list_add_first(kv_list *l, const char *name, const char *value)
{
    if (!find(l, name))
        kv_list_set(l, name, value);
}

const char *kv_list_get(const kv_list *l, const char *name)
{
    dapr_kv *kv = find(l, name);
    return kv ? kv->value : NULL;
}

kv_list kv_list_copy(dapr_kvs src)
{
    kv_list l = {0};
    for (size_t i = 0; i < src.n; i++)
        if (src.items[i].name)
            kv_list_set(&l, src.items[i].name, src.items[i].value ? src.items[i].value : "");
    return l;
}

void kv_list_free(kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->items[i].name);
        free((char *)l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}
