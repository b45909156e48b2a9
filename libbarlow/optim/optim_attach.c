/*
 * optim_attach.c - attach a layer's or a model's trainable tensors to an
 * optimizer, through the public tensor-listing functions only.
 */
#include "optim/optim.h"

typedef int32_t (*count_fn)(const void *h);
typedef bt_status (*tensor_fn)(void *h, int32_t i, const char **name, bt_tensor **value,
                               bt_tensor **grad);

static int32_t layer_count(const void *h) { return bt_layer_tensor_count((const bt_layer *)h); }
static bt_status layer_tensor(void *h, int32_t i, const char **name, bt_tensor **v, bt_tensor **g)
{
    return bt_layer_tensor((bt_layer *)h, i, name, v, g);
}
static int32_t model_count(const void *h) { return bt_model_tensor_count((const bt_model *)h); }
static bt_status model_tensor(void *h, int32_t i, const char **name, bt_tensor **v, bt_tensor **g)
{
    return bt_model_tensor((bt_model *)h, i, name, v, g);
}

static bt_status attach(bt_optim *o, void *h, count_fn count, tensor_fn get, const char *fn)
{
    int32_t keep = bti_optim_tensor_count(o), n = count(h), i, added = 0;
    bt_status st = BT_OK;
    if (n < 0)
        return BT_E_MISUSE; /* the count function set the message */
    for (i = 0; i < n && st == BT_OK; i++) {
        const char *name = NULL;
        bt_tensor *value = NULL, *grad = NULL;
        st = get(h, i, &name, &value, &grad);
        if (st == BT_OK && grad) {
            st = bt_optim_add_tensor(o, value, grad, name);
            added += st == BT_OK;
        }
    }
    if (st == BT_OK && added == 0)
        st = bti_fail(BT_E_STATE, "%s: the handle has no trainable tensor", fn);
    if (st != BT_OK)
        bti_optim_truncate(o, keep);
    return st;
}

BT_API bt_status bt_optim_add_layer(bt_optim *o, bt_layer *l)
{
    bt_status st = bti_check(o, BTI_KIND_OPTIM, "bt_optim_add_layer", "o");
    if (st == BT_OK)
        st = bti_check(l, BTI_KIND_LAYER, "bt_optim_add_layer", "l");
    if (st != BT_OK)
        return st;
    return attach(o, l, layer_count, layer_tensor, "bt_optim_add_layer");
}

BT_API bt_status bt_optim_add_model(bt_optim *o, bt_model *m)
{
    bt_status st = bti_check(o, BTI_KIND_OPTIM, "bt_optim_add_model", "o");
    if (st == BT_OK)
        st = bti_check(m, BTI_KIND_MODEL, "bt_optim_add_model", "m");
    if (st != BT_OK)
        return st;
    return attach(o, m, model_count, model_tensor, "bt_optim_add_model");
}
