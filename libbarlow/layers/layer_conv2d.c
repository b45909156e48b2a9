/* layer_conv2d.c - nn.Conv2d (square kernel, groups 1): shape checks, the
 * geometry, and dispatch to one of the forms of conv2d.h, chosen per input
 * shape from the table of the layer's CPU level (conv2d_forms.c) at each
 * forward and kept for the matching backward. */
#include "kernels/conv_planes.h"
#include "layers/conv2d.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define CONV_CHUNK_COLS 1024                 /* gemm form: default output columns per GEMM */
#define CONV_MAX_COL_FLOATS ((int64_t)1 << 22) /* and 16 MiB of im2col per chunk */
#define PB_COLS 512                          /* per-image forms: columns per group */
#define PB_MAX_COL_FLOATS ((int64_t)1 << 20) /* and 4 MiB of im2col per thread */

static bt_status conv_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                            int64_t *out, const char *fn)
{
    const struct bti_conv2d *c = BTI_LAYER_OF(struct bti_conv2d, l);
    char a[96];
    int64_t hp, wp, ho, wo;
    if (ndim != 4)
        return bti_fail(BT_E_SHAPE, "%s: conv2d expects x of shape [N, %d, H, W]; got %s", fn,
                        c->in_ch, bti_dims_str(ndim, in, a, sizeof a));
    if (in[1] != c->in_ch)
        return bti_fail(BT_E_SHAPE, "%s: x %s has %lld channels; this conv2d expects %d", fn,
                        bti_dims_str(ndim, in, a, sizeof a), (long long)in[1], c->in_ch);
    hp = in[2] + 2 * (int64_t)c->pad;
    wp = in[3] + 2 * (int64_t)c->pad;
    if (hp < c->kernel || wp < c->kernel)
        return bti_fail(BT_E_SHAPE, "%s: x %s padded by %d is smaller than the %dx%d kernel", fn,
                        bti_dims_str(ndim, in, a, sizeof a), c->pad, c->kernel, c->kernel);
    ho = (hp - c->kernel) / c->stride + 1;
    wo = (wp - c->kernel) / c->stride + 1;
    if (ho * wo > INT_MAX / 16 || in[2] * in[3] > INT_MAX / 16)
        return bti_fail(BT_E_SHAPE, "%s: x %s is too large for one image's GEMM", fn,
                        bti_dims_str(ndim, in, a, sizeof a));
    *ondim = 4;
    out[0] = in[0];
    out[1] = c->out_ch;
    out[2] = ho;
    out[3] = wo;
    return BT_OK;
}

static void geom_init(const bt_layer *l, const int64_t *in, int threads, struct bti_conv_geom *g)
{
    const struct bti_conv2d *c = BTI_LAYER_OF(struct bti_conv2d, l);
    int64_t target = c->chunk_cols > 0 ? c->chunk_cols : CONV_CHUNK_COLS, chunks;
    g->n = in[0];
    g->c = in[1];
    g->h = in[2];
    g->w = in[3];
    g->k = c->kernel;
    g->s = c->stride;
    g->pad = c->pad;
    g->level = l->level;
    g->threads = threads;
    g->co = c->out_ch;
    g->ho = (g->h + 2 * g->pad - g->k) / g->s + 1;
    g->wo = (g->w + 2 * g->pad - g->k) / g->s + 1;
    g->p = g->ho * g->wo;
    g->k2 = g->c * g->k * g->k;
    g->identity = g->k == 1 && g->s == 1 && g->pad == 0;
    g->b = (target + g->p - 1) / g->p;
    if (g->b > CONV_MAX_COL_FLOATS / (g->k2 * g->p))
        g->b = CONV_MAX_COL_FLOATS / (g->k2 * g->p);
    if (g->b > INT_MAX / 16 / g->p)
        g->b = INT_MAX / 16 / g->p;
    if (g->b < 1)
        g->b = 1;
    if (g->b > g->n)
        g->b = g->n;
    /* Equal chunks rather than a short last one. */
    chunks = (g->n + g->b - 1) / g->b;
    g->b = (g->n + chunks - 1) / chunks;
    /* Per-image forms: small images are grouped so that each GEMM has at
     * least PB_COLS columns (the weight gradient reduces over them; chunk_cols
     * when set), within PB_MAX_COL_FLOATS of im2col per thread. */
    g->pb = ((c->chunk_cols > 0 ? c->chunk_cols : PB_COLS) + g->p - 1) / g->p;
    if (g->pb > PB_MAX_COL_FLOATS / (g->k2 * g->p))
        g->pb = PB_MAX_COL_FLOATS / (g->k2 * g->p);
    if (g->pb < 1)
        g->pb = 1;
    if (g->pb > g->n)
        g->pb = g->n;
    g->hp = g->h + 2 * g->pad;
    g->wp = g->w + 2 * g->pad;
    g->lcap = g->pb * g->hp * g->wp;
    g->tail = 2 * g->pad * g->wp + 2 * g->pad + 16;
    g->flat = 0;
}

/* ---- shared by the forms ---------------------------------------------------- */

size_t bti_conv_round16(size_t n) { return (n + 15) & ~(size_t)15; }

int bti_conv_images_each(const struct bti_conv_geom *g)
{
    return g->n >= 2 && g->n >= g->threads;
}

size_t bti_conv_padded_floats(const struct bti_conv_geom *g, int64_t ch)
{
    return bti_conv_round16((size_t)(ch * g->lcap + g->tail));
}

void bti_conv_grid_pack(const struct bti_conv_geom *g, const float *restrict src, int64_t ch,
                        int64_t nb, float *restrict dst)
{
    const int64_t plane = g->hp * g->wp;
    int64_t c, z, end;
    bti_pad_planes(g->level, dst, g->lcap, src, ch, nb, g->h, g->w, g->pad);
    for (c = 0; c < ch; c++) {
        float *restrict dc = dst + c * g->lcap;
        /* reads run up to tail floats past image nb - 1 */
        end = c == ch - 1 ? g->lcap + g->tail : g->lcap;
        z = nb * plane + g->tail < end ? nb * plane + g->tail : end;
        if (z > nb * plane)
            memset(dc + nb * plane, 0, (size_t)(z - nb * plane) * sizeof *dc);
    }
}

void bti_conv_sum_parts(const float *base, size_t stride, size_t poff, int64_t nw, int nt,
                        float *dw)
{
    int64_t i;
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nw * nt > BTI_PAR_MIN)
    for (i = 0; i < nw; i++) {
        float s = dw[i];
        int t;
        for (t = 0; t < nt; t++)
            s += base[(size_t)t * stride + poff + (size_t)i];
        dw[i] = s;
    }
}

/* ---- the layer -------------------------------------------------------------- */

static bt_status conv_prepare(bt_layer *l, const bt_tensor *x, int training, int groups,
                              const char *fn)
{
    struct bti_conv_geom g;
    (void)training;
    (void)groups;
    geom_init(l, x->shape, l->threads, &g);
    return bti_buffer_reserve(
        l->scratch, bti_conv_choose(&g, BTI_LAYER_OF(struct bti_conv2d, l)->forced)->workspace(&g),
        sizeof(float), fn);
}

static void conv_forward(bt_layer *l, const bt_tensor *x, bt_tensor *y, int training, int groups)
{
    struct bti_conv2d *c = BTI_LAYER_OF(struct bti_conv2d, l);
    struct bti_conv_geom g;
    (void)training;
    (void)groups;
    geom_init(l, x->shape, l->threads, &g);
    /* remembered for backward, whose scratch was reserved for them */
    c->form = bti_conv_choose(&g, c->forced);
    c->form_threads = l->threads;
    c->chunk_b = g.b;
    c->form->forward(l, &g, x->data, y->data);
}

static void conv_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    const struct bti_conv2d *c = BTI_LAYER_OF(struct bti_conv2d, l);
    struct bti_conv_geom g;
    /* the workspace was laid out for the forward's threads; fewer fit in it */
    geom_init(l, l->in_shape, l->threads < c->form_threads ? l->threads : c->form_threads, &g);
    g.b = c->chunk_b;
    if (c->has_bias) {
        float *restrict db = l->grad[1]->data;
        const float *restrict dy = dyt->data;
        int64_t o;
#pragma omp parallel for num_threads(g.threads) schedule(static)
        for (o = 0; o < g.co; o++) {
            double s = 0.0;
            int64_t n, q;
            for (n = 0; n < g.n; n++) {
                const float *restrict r = dy + (n * g.co + o) * g.p;
                double t = 0.0;
#pragma omp simd reduction(+ : t)
                for (q = 0; q < g.p; q++)
                    t += r[q];
                s += t;
            }
            db[o] += (float)s;
        }
    }
    c->form->backward(l, &g, l->x->data, dyt->data, dxt ? dxt->data : NULL);
}

static void conv_reset(bt_layer *l, uint64_t seed)
{
    /* kaiming_uniform_(a=sqrt(5)) gives bound gain*sqrt(3/fan_in) with
     * gain = sqrt(2/(1+5)): exactly 1/sqrt(fan_in); the bias uses the same bound. */
    const struct bti_conv2d *c = BTI_LAYER_OF(struct bti_conv2d, l);
    double bound = 1.0 / sqrt((double)c->in_ch * c->kernel * c->kernel);
    bti_layer_fill_uniform(l->value[0], bound, seed, 0, l->threads);
    if (c->has_bias)
        bti_layer_fill_uniform(l->value[1], bound, seed, 1, l->threads);
}

static const struct bti_layer_ops conv2d_ops = {
    .name = "conv2d",
    .shape = conv_shape,
    .prepare = conv_prepare,
    .forward = conv_forward,
    .backward = conv_backward,
    .reset = conv_reset,
};

bt_status bti_layer_conv2d_new(bt_layer **out, int in_ch, int out_ch, int kernel, int stride,
                               int pad, int bias, const char *fn)
{
    int64_t wshape[4] = {out_ch, in_ch, kernel, kernel}, bshape[1] = {out_ch};
    struct bti_conv2d *c;
    bt_layer *l;
    bt_status st;
    *out = NULL;
    if (in_ch < 1 || out_ch < 1 || kernel < 1 || stride < 1 || pad < 0)
        return bti_fail(BT_E_INVALID_ARG,
                        "%s: in_ch %d, out_ch %d, kernel %d, stride %d must be >= 1 and pad %d >= 0",
                        fn, in_ch, out_ch, kernel, stride, pad);
    if (kernel > 4096 || stride > 4096 || pad > 4096 ||
        (int64_t)in_ch * kernel * kernel > INT_MAX / 16 || out_ch > INT_MAX / 16)
        return bti_fail(BT_E_INVALID_ARG,
                        "%s: in_ch %d, out_ch %d, kernel %d, stride %d, pad %d is too large", fn,
                        in_ch, out_ch, kernel, stride, pad);
    if (bias != 0 && bias != 1)
        return bti_fail(BT_E_INVALID_ARG, "%s: bias is %d; it must be 0 or 1", fn, bias);
    st = bti_layer_alloc(&l, sizeof(struct bti_conv2d), &conv2d_ops, BTI_LAYER_CONV2D, fn);
    if (st != BT_OK)
        return st;
    c = BTI_LAYER_OF(struct bti_conv2d, l);
    c->in_ch = in_ch;
    c->out_ch = out_ch;
    c->kernel = kernel;
    c->stride = stride;
    c->pad = pad;
    c->has_bias = bias;
    st = bti_layer_add_tensor(l, "weight", 4, wshape, 1, fn);
    if (st == BT_OK && bias)
        st = bti_layer_add_tensor(l, "bias", 1, bshape, 1, fn);
    if (st != BT_OK) {
        bti_layer_destroy(l);
        return st;
    }
    conv_reset(l, 0);
    *out = l;
    return BT_OK;
}

BT_API bt_status bt_layer_conv2d_create(bt_layer **out, int32_t in_ch, int32_t out_ch,
                                        int32_t kernel, int32_t stride, int32_t pad, int32_t bias)
{
    static const char fn[] = "bt_layer_conv2d_create";
    bt_layer *l;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    *out = NULL;
    st = bti_layer_conv2d_new(&l, in_ch, out_ch, kernel, stride, pad, bias, fn);
    return st == BT_OK ? bti_layer_publish(out, l, fn) : st;
}

void bti_layer_conv2d_set_chunk(bt_layer *l, int64_t cols)
{
    if (l->type == BTI_LAYER_CONV2D)
        BTI_LAYER_OF(struct bti_conv2d, l)->chunk_cols = cols;
}

void bti_layer_conv2d_set_form(bt_layer *l, const char *name)
{
    if (l->type == BTI_LAYER_CONV2D)
        BTI_LAYER_OF(struct bti_conv2d, l)->forced = name;
}

const char *bti_layer_conv2d_form(const bt_layer *l)
{
    const struct bti_conv2d *c = BTI_LAYER_OF(struct bti_conv2d, l);
    return l->type == BTI_LAYER_CONV2D && c->form ? c->form->name : NULL;
}
