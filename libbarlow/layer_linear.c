/* layer_linear.c - nn.Linear: y = x W^T + b with W [out, in], three SGEMMs. */
#include "blas.h"
#include "layer.h"

#include <limits.h>
#include <math.h>
#include <string.h>

static bt_status linear_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                              int64_t *out, const char *fn)
{
    char a[96];
    if (ndim != 2 || in[1] != l->in_ch)
        return bti_fail(BT_E_SHAPE, "%s: linear expects x of shape [N, %d]; got %s", fn, l->in_ch,
                        bti_dims_str(ndim, in, a, sizeof a));
    if (in[0] > INT_MAX / 2)
        return bti_fail(BT_E_SHAPE, "%s: batch of x %s is too large for one GEMM", fn,
                        bti_dims_str(ndim, in, a, sizeof a));
    *ondim = 2;
    out[0] = in[0];
    out[1] = l->out_ch;
    return BT_OK;
}

static bt_status linear_prepare(bt_layer *l, const bt_tensor *x, int training, int groups,
                                const char *fn)
{
    (void)l;
    (void)x;
    (void)training;
    (void)groups;
    (void)fn;
    return BT_OK;
}

static void linear_forward(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training,
                           int groups)
{
    const int n = (int)xt->shape[0], in = l->in_ch, out = l->out_ch;
    float *y = yt->data;
    (void)training;
    (void)groups;
    if (l->has_bias) {
        const float *restrict b = l->value[1]->data;
        int64_t i;
#pragma omp parallel for num_threads(l->threads) schedule(static) if ((int64_t)n * out > BTI_PAR_MIN)
        for (i = 0; i < n; i++)
            memcpy(y + i * out, b, (size_t)out * sizeof *y);
    }
    bti_blas_set_threads(l->threads);
    cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_TRANS, n, out, in, 1.0f, xt->data, in,
                l->value[0]->data, in, l->has_bias ? 1.0f : 0.0f, y, out);
}

static void linear_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    const int n = (int)l->in_shape[0], in = l->in_ch, out = l->out_ch;
    const float *dy = dyt->data;
    if (l->has_bias) {
        enum { BLK = 256 };
        float *db = l->grad[1]->data;
        int64_t o0;
#pragma omp parallel for num_threads(l->threads) schedule(static) if ((int64_t)n * out > BTI_PAR_MIN)
        for (o0 = 0; o0 < out; o0 += BLK) {
            double acc[BLK];
            const int64_t m = out - o0 < BLK ? out - o0 : BLK;
            int64_t i, o;
            for (o = 0; o < m; o++)
                acc[o] = 0.0;
            for (i = 0; i < n; i++) {
                const float *restrict r = dy + i * (int64_t)out + o0;
                for (o = 0; o < m; o++)
                    acc[o] += r[o];
            }
            for (o = 0; o < m; o++)
                db[o0 + o] += (float)acc[o];
        }
    }
    bti_blas_set_threads(l->threads);
    cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, out, in, n, 1.0f, dy, out, l->x->data, in,
                1.0f, l->grad[0]->data, in);
    if (dxt)
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, n, in, out, 1.0f, dy, out,
                    l->value[0]->data, in, 0.0f, dxt->data, in);
}

static void linear_reset(bt_layer *l, uint64_t seed)
{
    /* kaiming_uniform_(a=sqrt(5)): bound 1/sqrt(fan_in); bias the same. */
    double bound = 1.0 / sqrt((double)l->in_ch);
    bti_layer_fill_uniform(l->value[0], bound, seed, 0, l->threads);
    if (l->has_bias)
        bti_layer_fill_uniform(l->value[1], bound, seed, 1, l->threads);
}

const struct bti_layer_ops bti_linear_ops = {
    "linear", linear_shape, linear_prepare, linear_forward, linear_backward, linear_reset, NULL,
};

bt_status bti_layer_linear_new(bt_layer **out, int in_features, int out_features, int bias,
                               const char *fn)
{
    int64_t wshape[2] = {out_features, in_features}, bshape[1] = {out_features};
    bt_layer *l;
    bt_status st;
    *out = NULL;
    if (in_features < 1 || out_features < 1 || in_features > INT_MAX / 2 ||
        out_features > INT_MAX / 2)
        return bti_fail(BT_E_INVALID_ARG,
                        "%s: in_features %d and out_features %d must be >= 1 (and < 2^30)", fn,
                        in_features, out_features);
    if (bias != 0 && bias != 1)
        return bti_fail(BT_E_INVALID_ARG, "%s: bias is %d; it must be 0 or 1", fn, bias);
    st = bti_layer_alloc(&l, &bti_linear_ops, BTI_LAYER_LINEAR, fn);
    if (st != BT_OK)
        return st;
    l->in_ch = in_features;
    l->out_ch = out_features;
    l->has_bias = bias;
    st = bti_layer_add_tensor(l, "weight", 2, wshape, 1, fn);
    if (st == BT_OK && bias)
        st = bti_layer_add_tensor(l, "bias", 1, bshape, 1, fn);
    if (st != BT_OK) {
        bti_layer_destroy(l);
        return st;
    }
    linear_reset(l, 0);
    *out = l;
    return BT_OK;
}
