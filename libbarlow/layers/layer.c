/* layer.c - the layer handle: creation, dispatch to the type's operations,
 * argument checking, and the public bt_layer_* API but the create functions
 * (each in its type's file). It calls the types only through their ops. */
#include "layers/layer.h"
#include "common/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- construction ------------------------------------------------------------ */

bt_status bti_layer_alloc(bt_layer **out, size_t size, const struct bti_layer_ops *ops, int type,
                          const char *fn)
{
    bt_layer *l = bti_calloc(1, size);
    *out = NULL;
    if (!l)
        return bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
    l->ops = ops;
    l->type = type;
    l->threads = bti_threads_resolve(NULL);
    l->level = bti_cpu_default();
    l->groups = 1;
    l->scratch = &l->own_scratch;
    *out = l;
    return BT_OK;
}

bt_status bti_layer_add_tensor(bt_layer *l, const char *name, int32_t ndim, const int64_t *shape,
                               int with_grad, const char *fn)
{
    int i = l->ntensors;
    bt_status st;
    if (i >= BTI_LAYER_MAX_TENSORS)
        return bti_fail(BT_E_INTERNAL, "%s: too many tensors", fn);
    st = bti_tensor_new_owned(&l->value[i], ndim, shape);
    if (st == BT_OK && with_grad) {
        st = bti_tensor_new_owned(&l->grad[i], ndim, shape);
        if (st != BT_OK) {
            bti_tensor_destroy(l->value[i]);
            l->value[i] = NULL;
        }
    }
    if (st != BT_OK)
        return bti_fail(st, "%s: cannot allocate %s: %s", fn, name, bt_last_error());
    l->names[i] = name;
    l->ntensors = i + 1;
    return BT_OK;
}

void bti_layer_fill_uniform(bt_tensor *t, double bound, uint64_t seed, uint64_t stream, int threads)
{
    uint64_t key = bti_rng_key(seed, stream, 0x6c61796572ULL /* "layer" */, 0);
    float *restrict d = t->data;
    int64_t i, n = t->numel;
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 65536)
    for (i = 0; i < n; i++)
        d[i] = (float)(bound * (2.0 * bti_rng_uniform(key, (uint64_t)i) - 1.0));
}

void bti_layer_destroy(bt_layer *l)
{
    int i;
    if (!l)
        return;
    if (l->ops && l->ops->release)
        l->ops->release(l);
    for (i = 0; i < l->ntensors; i++) {
        bti_tensor_destroy(l->value[i]);
        bti_tensor_destroy(l->grad[i]);
    }
    bti_tensor_destroy(l->xcopy);
    bti_buffer_release(&l->own_scratch);
    bti_free(l);
}

/* ---- private API --------------------------------------------------------------- */

void bti_layer_set_level(bt_layer *l, int level) { l->level = level; }

void bti_layer_set_threads(bt_layer *l, int n)
{
    l->threads = n >= 1 ? n : bti_threads_resolve(NULL);
}

bt_status bti_layer_reset_parameters(bt_layer *l, uint64_t seed)
{
    if (l->ops->reset)
        l->ops->reset(l, seed);
    return BT_OK;
}

int bti_layer_tensor_count(const bt_layer *l) { return l->ntensors; }

bt_tensor *bti_layer_value(bt_layer *l, int i)
{
    return i >= 0 && i < l->ntensors ? l->value[i] : NULL;
}

bt_tensor *bti_layer_grad(bt_layer *l, int i)
{
    return i >= 0 && i < l->ntensors ? l->grad[i] : NULL;
}

const char *bti_layer_tensor_name(const bt_layer *l, int i)
{
    return i >= 0 && i < l->ntensors ? l->names[i] : NULL;
}

void bti_layer_set_scratch(bt_layer *l, struct bti_buffer *s)
{
    l->scratch = s ? s : &l->own_scratch;
}

void bti_layer_zero_grad(bt_layer *l)
{
    int i;
    for (i = 0; i < l->ntensors; i++)
        if (l->grad[i])
            memset(l->grad[i]->data, 0, (size_t)l->grad[i]->numel * sizeof(float));
}

bt_status bti_layer_scratch_bytes(bt_layer *l, const bt_tensor *x, int training, int groups,
                                  size_t *bytes, const char *fn)
{
    /* the type's prepare reserves into a probe: the layer's scratch is untouched,
     * and the probe's pages are never written, so they cost address space only */
    struct bti_buffer probe = {NULL, 0}, *was = l->scratch;
    bt_status st;
    l->scratch = &probe;
    st = l->ops->prepare(l, x, training, groups, fn);
    l->scratch = was;
    *bytes = probe.bytes;
    bti_buffer_release(&probe);
    return st;
}

bt_status bti_layer_output_shape(const bt_layer *l, int32_t ndim, const int64_t *in,
                                 int32_t *out_ndim, int64_t *out)
{
    return l->ops->shape(l, ndim, in, out_ndim, out, l->ops->name);
}

static int overlaps(const bt_tensor *a, const bt_tensor *b)
{
    uintptr_t a0 = (uintptr_t)a->data, a1 = a0 + (uintptr_t)a->numel * sizeof(float);
    uintptr_t b0 = (uintptr_t)b->data, b1 = b0 + (uintptr_t)b->numel * sizeof(float);
    return a0 < b1 && b0 < a1;
}

/* Everything a forward needs checked, shared by the private and public paths.
 * fn is the name used in messages. */
static bt_status forward_check(bt_layer *l, const bt_tensor *x, const bt_tensor *y, int groups,
                               const char *fn, int32_t *ondim, int64_t *oshape)
{
    char a[96], b[96];
    bt_status st;
    if (groups < 1)
        return bti_fail(BT_E_INVALID_ARG, "%s: groups is %d; it must be >= 1", fn, groups);
    if (x->shape[0] % groups != 0)
        return bti_fail(BT_E_SHAPE, "%s: batch %lld of x %s is not divisible by groups %d", fn,
                        (long long)x->shape[0], bti_shape_str(x, a, sizeof a), groups);
    st = l->ops->shape(l, x->ndim, x->shape, ondim, oshape, fn);
    if (st != BT_OK)
        return st;
    if (!bti_tensor_has_shape(y, *ondim, oshape))
        return bti_fail(BT_E_SHAPE, "%s: y has shape %s; expected %s for x %s", fn,
                        bti_shape_str(y, a, sizeof a), bti_dims_str(*ondim, oshape, b, sizeof b),
                        bti_shape_str(x, b + 48, sizeof b - 48));
    return BT_OK;
}

static void record_forward(bt_layer *l, const bt_tensor *x, int training, int groups,
                           int32_t ondim, const int64_t *oshape)
{
    l->have_forward = 1;
    l->x = x;
    l->training = training ? 1 : 0;
    l->groups = groups;
    l->in_ndim = x->ndim;
    memcpy(l->in_shape, x->shape, sizeof l->in_shape);
    l->out_ndim = ondim;
    memset(l->out_shape, 0, sizeof l->out_shape);
    memcpy(l->out_shape, oshape, (size_t)ondim * sizeof *oshape);
}

bt_status bti_layer_forward(bt_layer *l, const bt_tensor *x, bt_tensor *y, int training, int groups)
{
    const char *fn = l->ops->name;
    int64_t oshape[BT_TENSOR_MAX_DIMS];
    int32_t ondim;
    bt_status st;
    if (!x || !y)
        return bti_fail(BT_E_MISUSE, "%s forward: %s is NULL", fn, x ? "y" : "x");
    st = forward_check(l, x, y, groups, fn, &ondim, oshape);
    if (st != BT_OK)
        return st;
    if (overlaps(x, y) && !(l->type == BTI_LAYER_RELU && x->data == y->data))
        return bti_fail(BT_E_INVALID_ARG, "%s forward: y overlaps x (only relu works in place)", fn);
    st = l->ops->prepare(l, x, training, groups, fn);
    if (st != BT_OK)
        return st;
    l->ops->forward(l, x, y, training ? 1 : 0, groups);
    record_forward(l, x, training, groups, ondim, oshape);
    return BT_OK;
}

bt_status bti_layer_prepare(bt_layer *l, const bt_tensor *x, int training, int groups)
{
    return l->ops->prepare(l, x, training, groups, l->ops->name);
}

static bt_status backward_check(bt_layer *l, const bt_tensor *dy, const bt_tensor *dx,
                                const char *fn)
{
    char a[96], b[96];
    if (!l->have_forward)
        return bti_fail(BT_E_STATE, "%s: no forward to differentiate (call forward first)", fn);
    if (!bti_tensor_has_shape(dy, l->out_ndim, l->out_shape))
        return bti_fail(BT_E_SHAPE, "%s: dy has shape %s; the last forward's output was %s", fn,
                        bti_shape_str(dy, a, sizeof a),
                        bti_dims_str(l->out_ndim, l->out_shape, b, sizeof b));
    if (dx && !bti_tensor_has_shape(dx, l->in_ndim, l->in_shape))
        return bti_fail(BT_E_SHAPE, "%s: dx has shape %s; the last forward's input was %s", fn,
                        bti_shape_str(dx, a, sizeof a),
                        bti_dims_str(l->in_ndim, l->in_shape, b, sizeof b));
    if (dx && l->type != BTI_LAYER_RELU && (overlaps(dx, dy) || overlaps(dx, l->x)))
        return bti_fail(BT_E_INVALID_ARG, "%s: dx overlaps dy or x (only relu works in place)", fn);
    if (dx && l->type == BTI_LAYER_RELU && overlaps(dx, dy) && dx->data != dy->data)
        return bti_fail(BT_E_INVALID_ARG, "%s: dx partly overlaps dy", fn);
    return BT_OK;
}

bt_status bti_layer_backward(bt_layer *l, const bt_tensor *dy, bt_tensor *dx)
{
    bt_status st;
    if (!dy)
        return bti_fail(BT_E_MISUSE, "%s backward: dy is NULL", l->ops->name);
    st = backward_check(l, dy, dx, l->ops->name);
    if (st != BT_OK)
        return st;
    /* Buffers were sized by the forward's prepare and only ever grow. */
    l->ops->backward(l, dy, dx);
    return BT_OK;
}

bt_status bti_layer_forward_fused(bt_layer *l, const bt_tensor *x, bt_tensor *y, int training,
                                  int groups, const bt_tensor *skip, int relu)
{
    const char *fn = "batchnorm fused forward";
    int64_t oshape[BT_TENSOR_MAX_DIMS];
    int32_t ondim;
    bt_status st;
    if (!l->ops->forward_fused)
        return bti_fail(BT_E_INVALID_ARG, "%s: the layer is a %s, not a batchnorm", fn,
                        l->ops->name);
    if (!x || !y)
        return bti_fail(BT_E_MISUSE, "%s: %s is NULL", fn, x ? "y" : "x");
    st = forward_check(l, x, y, groups, fn, &ondim, oshape);
    if (st != BT_OK)
        return st;
    if (skip && !bti_tensor_has_shape(skip, ondim, oshape))
        return bti_fail(BT_E_SHAPE, "%s: skip does not have the output's shape", fn);
    if (overlaps(x, y) || (skip && overlaps(skip, y)))
        return bti_fail(BT_E_INVALID_ARG, "%s: y overlaps x or skip", fn);
    st = l->ops->prepare(l, x, training, groups, fn);
    if (st != BT_OK)
        return st;
    l->ops->forward_fused(l, x, y, training ? 1 : 0, groups, skip, relu ? 1 : 0);
    record_forward(l, x, training, groups, ondim, oshape);
    return BT_OK;
}

bt_status bti_layer_backward_masked(bt_layer *l, const bt_tensor *dy, bt_tensor *dx,
                                    const bt_tensor *mask)
{
    const char *fn = "batchnorm masked backward";
    bt_status st;
    if (!l->ops->backward_masked)
        return bti_fail(BT_E_INVALID_ARG, "%s: the layer is a %s, not a batchnorm", fn,
                        l->ops->name);
    if (!dy)
        return bti_fail(BT_E_MISUSE, "%s: dy is NULL", fn);
    st = backward_check(l, dy, dx, fn);
    if (st != BT_OK)
        return st;
    if (mask && !bti_tensor_has_shape(mask, l->out_ndim, l->out_shape))
        return bti_fail(BT_E_SHAPE, "%s: mask does not have the output's shape", fn);
    if (mask && dx && overlaps(mask, dx))
        return bti_fail(BT_E_INVALID_ARG, "%s: dx overlaps mask", fn);
    l->ops->backward_masked(l, dy, dx, mask);
    return BT_OK;
}

/* ---- public API ------------------------------------------------------------------- */

/* A public layer has no options: its CPU level comes from BT_CPU or the CPU. */
bt_status bti_layer_publish(bt_layer **out, bt_layer *l, const char *fn)
{
    bt_status st = bti_cpu_resolve(NULL, &l->level, fn);
    if (st == BT_OK)
        st = bti_handle_add(l, BTI_KIND_LAYER);
    if (st != BT_OK) {
        bti_layer_destroy(l);
        return st;
    }
    l->registered = 1;
    *out = l;
    return BT_OK;
}

BT_API void bt_layer_free(bt_layer *l)
{
    if (!l)
        return;
    if (bti_check(l, BTI_KIND_LAYER, "bt_layer_free", "l") != BT_OK)
        return;
    bti_handle_remove(l);
    bti_layer_destroy(l);
}

BT_API bt_status bt_layer_output_shape(const bt_layer *l, int32_t ndim, const int64_t *in_shape,
                                       int32_t *out_ndim, int64_t *out_shape)
{
    static const char fn[] = "bt_layer_output_shape";
    int64_t numel, tmp[BT_TENSOR_MAX_DIMS];
    int32_t nd;
    bt_status st = bti_check(l, BTI_KIND_LAYER, fn, "l");
    if (st != BT_OK)
        return st;
    if (!out_ndim || !out_shape)
        return bti_fail(BT_E_MISUSE, "%s: %s is NULL", fn, out_ndim ? "out_shape" : "out_ndim");
    st = bti_shape_check(fn, "in_shape", ndim, in_shape, &numel);
    if (st != BT_OK)
        return st;
    st = l->ops->shape(l, ndim, in_shape, &nd, tmp, fn);
    if (st != BT_OK)
        return st;
    *out_ndim = nd;
    memcpy(out_shape, tmp, (size_t)nd * sizeof *tmp);
    return BT_OK;
}

BT_API bt_status bt_layer_forward(bt_layer *l, const bt_tensor *x, bt_tensor *y, int32_t training)
{
    static const char fn[] = "bt_layer_forward";
    int64_t oshape[BT_TENSOR_MAX_DIMS];
    int32_t ondim;
    bt_status st = bti_check(l, BTI_KIND_LAYER, fn, "l");
    if (st == BT_OK)
        st = bti_check(x, BTI_KIND_TENSOR, fn, "x");
    if (st == BT_OK)
        st = bti_check(y, BTI_KIND_TENSOR, fn, "y");
    if (st != BT_OK)
        return st;
    st = forward_check(l, x, y, 1, fn, &ondim, oshape);
    if (st != BT_OK)
        return st;
    /* The copy of x lives in the layer, so the caller may free or change x
     * before backward; it also makes y == x harmless for every layer type.
     * prepare keeps buffer contents when it grows them, so a failure below
     * still leaves the previous forward usable by backward. */
    st = l->ops->prepare(l, x, training, 1, fn);
    if (st != BT_OK)
        return st;
    if (!l->xcopy || !bti_tensor_has_shape(l->xcopy, x->ndim, x->shape)) {
        bt_tensor *c = NULL;
        if (!l->xcopy || l->xcopy->numel < x->numel) {
            st = bti_tensor_new_owned(&c, x->ndim, x->shape);
            if (st != BT_OK)
                return bti_fail(st, "%s: cannot copy x: %s", fn, bt_last_error());
            bti_tensor_destroy(l->xcopy);
            l->xcopy = c;
            l->have_forward = 0;
        } else {
            /* Reuse the larger copy under the new shape; the old shape's
             * forward can no longer be differentiated. */
            l->xcopy->ndim = x->ndim;
            memcpy(l->xcopy->shape, x->shape, sizeof x->shape);
            l->xcopy->numel = x->numel;
            l->have_forward = 0;
        }
    }
    if (l->xcopy->data != x->data)
        memcpy(l->xcopy->data, x->data, (size_t)x->numel * sizeof(float));
    l->ops->forward(l, l->xcopy, y, training ? 1 : 0, 1);
    record_forward(l, l->xcopy, training, 1, ondim, oshape);
    return BT_OK;
}

BT_API bt_status bt_layer_backward(bt_layer *l, const bt_tensor *dy, bt_tensor *dx)
{
    static const char fn[] = "bt_layer_backward";
    bt_status st = bti_check(l, BTI_KIND_LAYER, fn, "l");
    if (st == BT_OK)
        st = bti_check(dy, BTI_KIND_TENSOR, fn, "dy");
    if (st == BT_OK && dx)
        st = bti_check(dx, BTI_KIND_TENSOR, fn, "dx");
    if (st != BT_OK)
        return st;
    st = backward_check(l, dy, dx, fn);
    if (st != BT_OK)
        return st;
    l->ops->backward(l, dy, dx);
    return BT_OK;
}

BT_API int32_t bt_layer_tensor_count(const bt_layer *l)
{
    if (bti_check(l, BTI_KIND_LAYER, "bt_layer_tensor_count", "l") != BT_OK)
        return -1;
    return l->ntensors;
}

BT_API bt_status bt_layer_tensor(bt_layer *l, int32_t i, const char **name, bt_tensor **value,
                                 bt_tensor **grad)
{
    bt_status st = bti_check(l, BTI_KIND_LAYER, "bt_layer_tensor", "l");
    if (st != BT_OK)
        return st;
    if (i < 0 || i >= l->ntensors)
        return bti_fail(BT_E_INVALID_ARG, "bt_layer_tensor: i is %d; this %s layer has %d tensors",
                        (int)i, l->ops->name, l->ntensors);
    if (name)
        *name = l->names[i];
    if (value)
        *value = l->value[i];
    if (grad)
        *grad = l->grad[i];
    return BT_OK;
}

BT_API bt_status bt_layer_zero_grad(bt_layer *l)
{
    bt_status st = bti_check(l, BTI_KIND_LAYER, "bt_layer_zero_grad", "l");
    if (st != BT_OK)
        return st;
    bti_layer_zero_grad(l);
    return BT_OK;
}

BT_API bt_status bt_layer_set_threads(bt_layer *l, int32_t n)
{
    bt_status st = bti_check(l, BTI_KIND_LAYER, "bt_layer_set_threads", "l");
    if (st != BT_OK)
        return st;
    if (n < 0 || n > 1024)
        return bti_fail(BT_E_INVALID_ARG, "bt_layer_set_threads: n is %d; it must be 0 to 1024",
                        (int)n);
    bti_layer_set_threads(l, n);
    return BT_OK;
}

BT_API bt_status bt_layer_reset_parameters(bt_layer *l, uint64_t seed)
{
    bt_status st = bti_check(l, BTI_KIND_LAYER, "bt_layer_reset_parameters", "l");
    if (st != BT_OK)
        return st;
    return bti_layer_reset_parameters(l, seed);
}
