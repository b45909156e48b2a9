/* layer_pool.c - nn.MaxPool2d (kernel, stride, padding; floor mode, dilation 1)
 * and global average pooling [N, C, H, W] -> [N, C]
 * (nn.AdaptiveAvgPool2d(1) followed by flatten). */
#include "layers/layer.h"
#include "kernels/sgemm.h"
#include "kernels/simd_x86.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- max pooling ------------------------------------------------------------ */

/* The layer: what every layer has, then the max pooling's own. */
struct maxpool2d {
    struct bt_layer base;
    int kernel, stride, pad;
    struct bti_buffer argmax; /* int32_t: input index of each output of the last forward */
};

static bt_status maxpool_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                               int64_t *out, const char *fn)
{
    const struct maxpool2d *mp = BTI_LAYER_OF(struct maxpool2d, l);
    char a[96];
    int64_t hp, wp;
    if (ndim != 4)
        return bti_fail(BT_E_SHAPE, "%s: maxpool2d expects x of shape [N, C, H, W]; got %s", fn,
                        bti_dims_str(ndim, in, a, sizeof a));
    hp = in[2] + 2 * (int64_t)mp->pad;
    wp = in[3] + 2 * (int64_t)mp->pad;
    if (hp < mp->kernel || wp < mp->kernel)
        return bti_fail(BT_E_SHAPE, "%s: x %s padded by %d is smaller than the %dx%d window", fn,
                        bti_dims_str(ndim, in, a, sizeof a), mp->pad, mp->kernel, mp->kernel);
    if (in[2] * in[3] > INT_MAX)
        return bti_fail(BT_E_SHAPE, "%s: x %s has planes of more than 2^31 elements", fn,
                        bti_dims_str(ndim, in, a, sizeof a));
    *ondim = 4;
    out[0] = in[0];
    out[1] = in[1];
    out[2] = (hp - mp->kernel) / mp->stride + 1;
    out[3] = (wp - mp->kernel) / mp->stride + 1;
    return BT_OK;
}

static bt_status maxpool_prepare(bt_layer *l, const bt_tensor *x, int training, int groups,
                                 const char *fn)
{
    int64_t o[4];
    int32_t nd;
    (void)training;
    (void)groups;
    maxpool_shape(l, x->ndim, x->shape, &nd, o, fn);
    return bti_buffer_reserve(&BTI_LAYER_OF(struct maxpool2d, l)->argmax,
                              (size_t)(o[0] * o[1] * o[2] * o[3]), sizeof(int32_t), fn);
}

#if BTI_X86
/* One plane, 16 output columns per register: each tap's inputs gathered (the
 * stride apart), kept where they beat the maximum so far or are NaN, in the
 * scalar loop's order. Which tap wins is data, so the scalar loop's branches
 * mispredicted about every other tap (the layer ran 5-10x slower). */
T512 static void maxpool_plane512(const float *x, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                  int k, int s, int pad, float *y, int32_t *am)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int64_t oy, ox0, iy;
    int j;
    for (oy = 0; oy < ho; oy++) {
        const int64_t y0 = oy * s - pad, y1 = y0 + k < h ? y0 + k : h, ys = y0 > 0 ? y0 : 0;
        for (ox0 = 0; ox0 < wo; ox0 += 16) {
            const __mmask16 out = mask16(wo - ox0);
            /* x0 per lane, and the first column inside the window */
            const __m512i x0 = _mm512_add_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32(s)),
                                                _mm512_set1_epi32((int)(ox0 * s - pad)));
            __m512 m = _mm512_set1_ps(-INFINITY);
            __m512i best = _mm512_add_epi32(_mm512_max_epi32(x0, _mm512_setzero_si512()),
                                            _mm512_set1_epi32((int)(ys * w)));
            for (iy = ys; iy < y1; iy++)
                for (j = 0; j < k; j++) {
                    const __m512i ix = _mm512_add_epi32(x0, _mm512_set1_epi32(j));
                    const __mmask16 in =
                        _mm512_mask_cmpge_epi32_mask(
                            _mm512_mask_cmplt_epi32_mask(out, ix, _mm512_set1_epi32((int)w)), ix,
                            _mm512_setzero_si512());
                    const __m512 v =
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, ix, x + iy * w, 4);
                    const __mmask16 take = _mm512_mask_cmp_ps_mask(in, v, m, _CMP_GT_OQ) |
                                           _mm512_mask_cmp_ps_mask(in, v, v, _CMP_UNORD_Q);
                    m = _mm512_mask_mov_ps(m, take, v);
                    best = _mm512_mask_mov_epi32(
                        best, take, _mm512_add_epi32(ix, _mm512_set1_epi32((int)(iy * w))));
                }
            _mm512_mask_storeu_ps(y + oy * wo + ox0, out, m);
            _mm512_mask_storeu_epi32(am + oy * wo + ox0, out, best);
        }
    }
}
#endif

static void maxpool_forward(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training,
                            int groups)
{
    const int64_t h = xt->shape[2], w = xt->shape[3], ho = yt->shape[2], wo = yt->shape[3];
    const int64_t planes = xt->shape[0] * xt->shape[1];
    const struct maxpool2d *mp = BTI_LAYER_OF(struct maxpool2d, l);
    const int k = mp->kernel, s = mp->stride, pad = mp->pad;
    int64_t pl;
    (void)training;
    (void)groups;
#pragma omp parallel for num_threads(l->threads) schedule(static) if (planes * h * w > BTI_PAR_MIN)
    for (pl = 0; pl < planes; pl++) {
        const float *restrict x = xt->data + pl * h * w;
        float *restrict y = yt->data + pl * ho * wo;
        int32_t *restrict am = (int32_t *)mp->argmax.p + pl * ho * wo;
        int64_t oy, ox;
#if BTI_X86
        if (l->level == BTI_CPU_AVX512) {
            maxpool_plane512(x, h, w, ho, wo, k, s, pad, y, am);
            continue;
        }
#endif
        for (oy = 0; oy < ho; oy++) {
            const int64_t y0 = oy * s - pad, y1 = y0 + k < h ? y0 + k : h, ys = y0 > 0 ? y0 : 0;
            for (ox = 0; ox < wo; ox++) {
                const int64_t x0 = ox * s - pad, x1 = x0 + k < w ? x0 + k : w,
                              xs = x0 > 0 ? x0 : 0;
                /* PyTorch's rule: the first maximum in scan order wins; NaN propagates. */
                int64_t best = ys * w + xs, iy, ix;
                float m = -INFINITY;
                for (iy = ys; iy < y1; iy++) {
                    for (ix = xs; ix < x1; ix++) {
                        const float v = x[iy * w + ix];
                        if (v > m || isnan(v)) {
                            m = v;
                            best = iy * w + ix;
                        }
                    }
                }
                y[oy * wo + ox] = m;
                am[oy * wo + ox] = (int32_t)best;
            }
        }
    }
}

static void maxpool_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    const int64_t hw = l->in_shape[2] * l->in_shape[3], ohw = l->out_shape[2] * l->out_shape[3];
    const int64_t planes = l->in_shape[0] * l->in_shape[1];
    const int32_t *argmax = BTI_LAYER_OF(struct maxpool2d, l)->argmax.p;
    int64_t pl;
    if (!dxt)
        return;
#pragma omp parallel for num_threads(l->threads) schedule(static) if (planes * hw > BTI_PAR_MIN)
    for (pl = 0; pl < planes; pl++) {
        float *restrict dx = dxt->data + pl * hw;
        const float *restrict dy = dyt->data + pl * ohw;
        const int32_t *restrict am = argmax + pl * ohw;
        int64_t q;
        memset(dx, 0, (size_t)hw * sizeof *dx);
        for (q = 0; q < ohw; q++)
            dx[am[q]] += dy[q];
    }
}

static void maxpool_release(bt_layer *l)
{
    bti_buffer_release(&BTI_LAYER_OF(struct maxpool2d, l)->argmax);
}

static const struct bti_layer_ops maxpool2d_ops = {
    .name = "maxpool2d",
    .shape = maxpool_shape,
    .prepare = maxpool_prepare,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .release = maxpool_release,
};

bt_status bti_layer_maxpool2d_new(bt_layer **out, int kernel, int stride, int pad, const char *fn)
{
    struct maxpool2d *mp;
    bt_layer *l;
    bt_status st;
    *out = NULL;
    if (kernel < 1 || stride < 1 || pad < 0 || kernel > 4096 || stride > 4096)
        return bti_fail(BT_E_INVALID_ARG,
                        "%s: kernel %d and stride %d must be 1 to 4096, pad %d >= 0", fn, kernel,
                        stride, pad);
    if (2 * pad > kernel)
        return bti_fail(BT_E_INVALID_ARG,
                        "%s: pad %d must be at most half the kernel %d (as in PyTorch)", fn, pad,
                        kernel);
    st = bti_layer_alloc(&l, sizeof(struct maxpool2d), &maxpool2d_ops, BTI_LAYER_MAXPOOL2D, fn);
    if (st != BT_OK)
        return st;
    mp = BTI_LAYER_OF(struct maxpool2d, l);
    mp->kernel = kernel;
    mp->stride = stride;
    mp->pad = pad;
    *out = l;
    return BT_OK;
}

BT_API bt_status bt_layer_maxpool2d_create(bt_layer **out, int32_t kernel, int32_t stride,
                                           int32_t pad)
{
    static const char fn[] = "bt_layer_maxpool2d_create";
    bt_layer *l;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    *out = NULL;
    st = bti_layer_maxpool2d_new(&l, kernel, stride, pad, fn);
    return st == BT_OK ? bti_layer_publish(out, l, fn) : st;
}

/* ---- global average pooling --------------------------------------------------- */

static bt_status avgpool_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                               int64_t *out, const char *fn)
{
    char a[96];
    (void)l;
    if (ndim != 4)
        return bti_fail(BT_E_SHAPE, "%s: avgpool expects x of shape [N, C, H, W]; got %s", fn,
                        bti_dims_str(ndim, in, a, sizeof a));
    *ondim = 2;
    out[0] = in[0];
    out[1] = in[1];
    return BT_OK;
}

static bt_status avgpool_prepare(bt_layer *l, const bt_tensor *x, int training, int groups,
                                 const char *fn)
{
    (void)l;
    (void)x;
    (void)training;
    (void)groups;
    (void)fn;
    return BT_OK;
}

static void avgpool_forward(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training,
                            int groups)
{
    const int64_t hw = xt->shape[2] * xt->shape[3], planes = xt->shape[0] * xt->shape[1];
    const float *restrict x = xt->data;
    float *restrict y = yt->data;
    int64_t pl;
    (void)training;
    (void)groups;
#pragma omp parallel for num_threads(l->threads) schedule(static) if (planes * hw > BTI_PAR_MIN)
    for (pl = 0; pl < planes; pl++) {
        const float *restrict r = x + pl * hw;
        double s = 0.0;
        int64_t q;
#pragma omp simd reduction(+ : s)
        for (q = 0; q < hw; q++)
            s += r[q];
        y[pl] = (float)(s / (double)hw);
    }
}

static void avgpool_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    const int64_t hw = l->in_shape[2] * l->in_shape[3], planes = l->in_shape[0] * l->in_shape[1];
    const float *restrict dy = dyt->data;
    int64_t pl;
    if (!dxt)
        return;
#pragma omp parallel for num_threads(l->threads) schedule(static) if (planes * hw > BTI_PAR_MIN)
    for (pl = 0; pl < planes; pl++) {
        float *restrict r = dxt->data + pl * hw;
        const float v = (float)((double)dy[pl] / (double)hw);
        int64_t q;
        for (q = 0; q < hw; q++)
            r[q] = v;
    }
}

static const struct bti_layer_ops avgpool_ops = {
    .name = "avgpool",
    .shape = avgpool_shape,
    .prepare = avgpool_prepare,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};

bt_status bti_layer_avgpool_new(bt_layer **out, const char *fn)
{
    return bti_layer_alloc(out, sizeof(struct bt_layer), &avgpool_ops, BTI_LAYER_AVGPOOL, fn);
}

BT_API bt_status bt_layer_avgpool_create(bt_layer **out)
{
    static const char fn[] = "bt_layer_avgpool_create";
    bt_layer *l;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    *out = NULL;
    st = bti_layer_avgpool_new(&l, fn);
    return st == BT_OK ? bti_layer_publish(out, l, fn) : st;
}
