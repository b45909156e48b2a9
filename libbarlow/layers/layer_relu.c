/* layer_relu.c - nn.ReLU: y = max(x, 0), in place allowed; the gradient is
 * passed where x > 0 (zero at x == 0, as PyTorch's threshold_backward). */
#include "layers/layer.h"

#include <string.h>

static bt_status relu_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                            int64_t *out, const char *fn)
{
    (void)l;
    (void)fn;
    *ondim = ndim;
    memcpy(out, in, (size_t)ndim * sizeof *in);
    return BT_OK;
}

static bt_status relu_prepare(bt_layer *l, const bt_tensor *x, int training, int groups,
                              const char *fn)
{
    (void)l;
    (void)x;
    (void)training;
    (void)groups;
    (void)fn;
    return BT_OK;
}

/* x and y may be the same array (in place), so no restrict here; the loop is
 * still a plain element-wise map the compiler vectorises. */
static void relu_forward(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training, int groups)
{
    const float *x = xt->data;
    float *y = yt->data;
    int64_t i, n = xt->numel;
    (void)training;
    (void)groups;
#pragma omp parallel for simd num_threads(l->threads) schedule(static) if (n > BTI_PAR_MIN)
    for (i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    const float *x = l->x->data, *dy = dyt->data;
    float *dx;
    int64_t i, n = dyt->numel;
    if (!dxt)
        return;
    dx = dxt->data;
#pragma omp parallel for simd num_threads(l->threads) schedule(static) if (n > BTI_PAR_MIN)
    for (i = 0; i < n; i++) {
        /* load dy unconditionally: a conditional load keeps the loop scalar
         * and branchy (a misprediction per random sign), 8x slower */
        const float g = dy[i];
        dx[i] = x[i] > 0.0f ? g : 0.0f;
    }
}

static const struct bti_layer_ops relu_ops = {
    .name = "relu",
    .shape = relu_shape,
    .prepare = relu_prepare,
    .forward = relu_forward,
    .backward = relu_backward,
};

bt_status bti_layer_relu_new(bt_layer **out, const char *fn)
{
    return bti_layer_alloc(out, sizeof(struct bt_layer), &relu_ops, BTI_LAYER_RELU, fn);
}

BT_API bt_status bt_layer_relu_create(bt_layer **out)
{
    static const char fn[] = "bt_layer_relu_create";
    bt_layer *l;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    *out = NULL;
    st = bti_layer_relu_new(&l, fn);
    return st == BT_OK ? bti_layer_publish(out, l, fn) : st;
}
