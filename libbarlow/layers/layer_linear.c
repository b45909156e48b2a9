/* layer_linear.c - nn.Linear: y = x W^T + b with W [out, in], three SGEMMs. */
#include "kernels/blas.h"
#include "layers/layer.h"
#include "kernels/sgemm.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* The layer: what every layer has, then the linear layer's own. */
struct linear {
    struct bt_layer base;
    int in_features, out_features, has_bias;
};

static bt_status linear_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                              int64_t *out, const char *fn)
{
    const struct linear *li = BTI_LAYER_OF(struct linear, l);
    char a[96];
    if (ndim != 2 || in[1] != li->in_features)
        return bti_fail(BT_E_SHAPE, "%s: linear expects x of shape [N, %d]; got %s", fn,
                        li->in_features,
                        bti_dims_str(ndim, in, a, sizeof a));
    if (in[0] > INT_MAX / 2)
        return bti_fail(BT_E_SHAPE, "%s: batch of x %s is too large for one GEMM", fn,
                        bti_dims_str(ndim, in, a, sizeof a));
    *ondim = 2;
    out[0] = in[0];
    out[1] = li->out_features;
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

/* Rows [r0, r1) of `rows` for thread t of tn: contiguous, in multiples of 16 but the last. */
static void split(int64_t rows, int t, int tn, int64_t *r0, int64_t *r1)
{
    *r0 = t == 0 ? 0 : (rows * t / tn) & ~(int64_t)15;
    *r1 = t == tn - 1 ? rows : (rows * (t + 1) / tn) & ~(int64_t)15;
}

/* Row-major GEMM on the calling thread: the private kernels when they beat the
 * BLAS (see bti_sgemm_prefer_private), else the BLAS (set to one thread). */
static void gemm(int level, int priv, int ta, int tb, int64_t m, int64_t n, int64_t k,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc)
{
    if (priv)
        bti_sgemm(level, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    else {
        bti_blas_begin(1);
        cblas_sgemm(BTI_ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb,
                    beta, c, (int)ldc);
        bti_blas_end(1);
    }
}

/* The GEMMs are split by output rows over the OpenMP team, each part a
 * single-threaded BLAS call: the BLAS's own threads would otherwise compete
 * for the cores with the team's threads, which spin for a while after every
 * parallel loop (the element-wise layers around this one run just before and
 * after). Each output element is computed by one call, so the result depends
 * only on the thread count. */
static void linear_forward(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training,
                           int groups)
{
    const struct linear *li = BTI_LAYER_OF(struct linear, l);
    const int64_t n = xt->shape[0], in = li->in_features, out = li->out_features;
    const float *x = xt->data, *w = l->value[0]->data, *b = li->has_bias ? l->value[1]->data : NULL;
    float *y = yt->data;
    const int nt = n * out * in > (int64_t)1 << 16 ? l->threads : 1,
              priv = bti_sgemm_prefer_private(l->level);
    (void)training;
    (void)groups;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int64_t i0, i1, i;
        split(n, t, tn, &i0, &i1);
        if (i1 > i0) {
            if (b)
                for (i = i0; i < i1; i++)
                    memcpy(y + i * out, b, (size_t)out * sizeof *y);
            gemm(l->level, priv, BTI_NO_TRANS, BTI_TRANS, i1 - i0, out, in, x + i0 * in, in, w, in,
                 b ? 1.0f : 0.0f, y + i0 * out, out);
        }
    }
}

static void linear_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    const struct linear *li = BTI_LAYER_OF(struct linear, l);
    const int64_t n = l->in_shape[0], in = li->in_features, out = li->out_features;
    const float *dy = dyt->data, *x = l->x->data, *w = l->value[0]->data;
    float *dw = l->grad[0]->data, *db = li->has_bias ? l->grad[1]->data : NULL;
    float *dx = dxt ? dxt->data : NULL;
    const int nt = n * out * in > (int64_t)1 << 16 ? l->threads : 1,
              priv = bti_sgemm_prefer_private(l->level);
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int64_t o0, o1, i0, i1;
        split(out, t, tn, &o0, &o1);
        if (db && o1 > o0) {
            enum { BLK = 256 };
            int64_t c0;
            for (c0 = o0; c0 < o1; c0 += BLK) {
                double acc[BLK];
                const int64_t m = o1 - c0 < BLK ? o1 - c0 : BLK;
                int64_t i, o;
                for (o = 0; o < m; o++)
                    acc[o] = 0.0;
                for (i = 0; i < n; i++) {
                    const float *restrict r = dy + i * out + c0;
                    for (o = 0; o < m; o++)
                        acc[o] += r[o];
                }
                for (o = 0; o < m; o++)
                    db[c0 + o] += (float)acc[o];
            }
        }
        if (o1 > o0) /* dW rows [o0, o1) += dy[:, o0:o1]^T x */
            gemm(l->level, priv, BTI_TRANS, BTI_NO_TRANS, o1 - o0, in, n, dy + o0, out, x, in, 1.0f,
                 dw + o0 * in, in);
        split(n, t, tn, &i0, &i1);
        if (dx && i1 > i0)
            gemm(l->level, priv, BTI_NO_TRANS, BTI_NO_TRANS, i1 - i0, in, out, dy + i0 * out, out,
                 w, in, 0.0f, dx + i0 * in, in);
    }
}

static void linear_reset(bt_layer *l, uint64_t seed)
{
    /* kaiming_uniform_(a=sqrt(5)): bound 1/sqrt(fan_in); bias the same. */
    const struct linear *li = BTI_LAYER_OF(struct linear, l);
    double bound = 1.0 / sqrt((double)li->in_features);
    bti_layer_fill_uniform(l->value[0], bound, seed, 0, l->threads);
    if (li->has_bias)
        bti_layer_fill_uniform(l->value[1], bound, seed, 1, l->threads);
}

static const struct bti_layer_ops linear_ops = {
    .name = "linear",
    .shape = linear_shape,
    .prepare = linear_prepare,
    .forward = linear_forward,
    .backward = linear_backward,
    .reset = linear_reset,
};

bt_status bti_layer_linear_new(bt_layer **out, int in_features, int out_features, int bias,
                               const char *fn)
{
    int64_t wshape[2] = {out_features, in_features}, bshape[1] = {out_features};
    struct linear *li;
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
    st = bti_layer_alloc(&l, sizeof(struct linear), &linear_ops, BTI_LAYER_LINEAR, fn);
    if (st != BT_OK)
        return st;
    li = BTI_LAYER_OF(struct linear, l);
    li->in_features = in_features;
    li->out_features = out_features;
    li->has_bias = bias;
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

BT_API bt_status bt_layer_linear_create(bt_layer **out, int32_t in_features, int32_t out_features,
                                        int32_t bias)
{
    static const char fn[] = "bt_layer_linear_create";
    bt_layer *l;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    *out = NULL;
    st = bti_layer_linear_new(&l, in_features, out_features, bias, fn);
    return st == BT_OK ? bti_layer_publish(out, l, fn) : st;
}
