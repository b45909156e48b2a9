/* tensor.c - float32 tensors: creation, borrowing, shape queries. */
#include "common/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bound on elements: 2^40 floats (4 TiB) is far beyond any real use and
 * keeps every byte count and index product far from overflow. */
#define BTI_MAX_NUMEL ((int64_t)1 << 40)

const char *bti_dims_str(int32_t ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t len = 0;
    int32_t i;
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    len += (size_t)snprintf(buf + len, cap - len, "[");
    for (i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
    return buf;
}

const char *bti_shape_str(const bt_tensor *t, char *buf, size_t cap)
{
    return bti_dims_str(t->ndim, t->shape, buf, cap);
}

int bti_tensor_has_shape(const bt_tensor *t, int32_t ndim, const int64_t *shape)
{
    int32_t i;
    if (t->ndim != ndim)
        return 0;
    for (i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i])
            return 0;
    return 1;
}

bt_status bti_shape_check(const char *fn, const char *arg, int32_t ndim, const int64_t *shape,
                          int64_t *numel)
{
    int64_t n = 1;
    int32_t i;
    if (!shape)
        return bti_fail(BT_E_MISUSE, "%s: %s is NULL", fn, arg);
    if (ndim < 1 || ndim > BT_TENSOR_MAX_DIMS)
        return bti_fail(BT_E_INVALID_ARG, "%s: ndim is %d; it must be 1 to %d", fn, (int)ndim,
                        BT_TENSOR_MAX_DIMS);
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return bti_fail(BT_E_INVALID_ARG,
                            "%s: %s[%d] is %lld; every dimension must be >= 1", fn, arg, (int)i,
                            (long long)shape[i]);
        if (shape[i] > BTI_MAX_NUMEL || n > BTI_MAX_NUMEL / shape[i]) {
            char s[128];
            return bti_fail(BT_E_INVALID_ARG, "%s: %s %s has more than 2^40 elements", fn, arg,
                            bti_dims_str(ndim, shape, s, sizeof s));
        }
        n *= shape[i];
    }
    *numel = n;
    return BT_OK;
}

static bt_status tensor_make(bt_tensor **out, float *data, int32_t ndim, const int64_t *shape,
                             int owned_by_parent, const char *fn)
{
    bt_tensor *t;
    int64_t numel;
    bt_status st;

    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    *out = NULL;
    st = bti_shape_check(fn, "shape", ndim, shape, &numel);
    if (st != BT_OK)
        return st;
    t = bti_calloc(1, sizeof *t);
    if (!t)
        return bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    t->owned_by_parent = owned_by_parent;
    if (data) {
        t->data = data;
        t->borrowed = 1;
    } else {
        t->data = bti_calloc((size_t)numel, sizeof(float));
        if (!t->data) {
            bti_free(t);
            return bti_fail(BT_E_NOMEM, "%s: out of memory for %lld floats", fn, (long long)numel);
        }
    }
    st = bti_handle_add(t, BTI_KIND_TENSOR);
    if (st != BT_OK) {
        if (!t->borrowed)
            bti_free(t->data);
        bti_free(t);
        return st;
    }
    *out = t;
    return BT_OK;
}

BT_API bt_status bt_tensor_create(bt_tensor **out, int32_t ndim, const int64_t *shape)
{
    return tensor_make(out, NULL, ndim, shape, 0, "bt_tensor_create");
}

BT_API bt_status bt_tensor_wrap(bt_tensor **out, float *data, int32_t ndim, const int64_t *shape)
{
    if (out)
        *out = NULL;
    if (!data)
        return bti_fail(BT_E_MISUSE, "bt_tensor_wrap: data is NULL");
    return tensor_make(out, data, ndim, shape, 0, "bt_tensor_wrap");
}

bt_status bti_tensor_new_owned(bt_tensor **out, int32_t ndim, const int64_t *shape)
{
    return tensor_make(out, NULL, ndim, shape, 1, "tensor");
}

bt_status bti_tensor_wrap_owned(bt_tensor **out, float *data, int32_t ndim, const int64_t *shape)
{
    return tensor_make(out, data, ndim, shape, 1, "tensor");
}

void bti_tensor_destroy(bt_tensor *t)
{
    if (!t)
        return;
    bti_handle_remove(t);
    if (!t->borrowed)
        bti_free(t->data);
    bti_free(t);
}

BT_API void bt_tensor_free(bt_tensor *t)
{
    if (!t)
        return;
    if (bti_check(t, BTI_KIND_TENSOR, "bt_tensor_free", "t") != BT_OK)
        return;
    if (t->owned_by_parent) {
        bti_fail(BT_E_MISUSE, "bt_tensor_free: t belongs to a layer or model and is freed with it");
        return;
    }
    bti_tensor_destroy(t);
}

BT_API int32_t bt_tensor_ndim(const bt_tensor *t)
{
    if (bti_check(t, BTI_KIND_TENSOR, "bt_tensor_ndim", "t") != BT_OK)
        return -1;
    return t->ndim;
}

BT_API int64_t bt_tensor_dim(const bt_tensor *t, int32_t axis)
{
    if (bti_check(t, BTI_KIND_TENSOR, "bt_tensor_dim", "t") != BT_OK)
        return -1;
    if (axis < -t->ndim || axis >= t->ndim) {
        bti_fail(BT_E_INVALID_ARG, "bt_tensor_dim: axis %d is out of range for a %d-dim tensor",
                 (int)axis, (int)t->ndim);
        return -1;
    }
    return t->shape[axis < 0 ? axis + t->ndim : axis];
}

BT_API int64_t bt_tensor_numel(const bt_tensor *t)
{
    if (bti_check(t, BTI_KIND_TENSOR, "bt_tensor_numel", "t") != BT_OK)
        return -1;
    return t->numel;
}

BT_API float *bt_tensor_data(bt_tensor *t)
{
    if (bti_check(t, BTI_KIND_TENSOR, "bt_tensor_data", "t") != BT_OK)
        return NULL;
    return t->data;
}

BT_API bt_status bt_tensor_shape(const bt_tensor *t, int32_t *ndim, int64_t *shape, int32_t cap)
{
    bt_status st = bti_check(t, BTI_KIND_TENSOR, "bt_tensor_shape", "t");
    if (st != BT_OK)
        return st;
    if (!ndim || !shape)
        return bti_fail(BT_E_MISUSE, "bt_tensor_shape: %s is NULL", ndim ? "shape" : "ndim");
    if (cap < t->ndim)
        return bti_fail(BT_E_INVALID_ARG, "bt_tensor_shape: cap %d is less than ndim %d", (int)cap,
                        (int)t->ndim);
    *ndim = t->ndim;
    memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
    return BT_OK;
}
