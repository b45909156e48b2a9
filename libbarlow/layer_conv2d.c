/* layer_conv2d.c - nn.Conv2d (square kernel, groups 1) lowered to SGEMM.
 *
 * The batch is processed in chunks of B images. For a chunk, im2col lays the
 * receptive fields out as col[K][B*P] (K = Cin*k*k rows, the B images' P = Ho*Wo
 * output positions side by side), so each pass is ONE large GEMM:
 *   forward   out[Co][B*P]  = W[Co][K] * col
 *   backward  dW[Co][K]    += dy[Co][B*P] * col^T        (beta = 1: accumulates)
 *             dcol[K][B*P]  = W^T * dy, then col2im into dx
 * When B == 1 the GEMMs read and write the NCHW tensors in place; a 1x1,
 * stride-1, unpadded convolution then needs no im2col at all. Chunks are sized
 * to keep GEMMs wide (chunk_cols output columns) while col stays bounded.
 * With several threads and at least as many images, the images are instead
 * spread over OpenMP threads, each running im2col and a single-threaded GEMM
 * per image into its own buffers (dW summed per thread, then added in thread
 * order); otherwise GEMMs use the BLAS's threads and im2col/col2im OpenMP
 * (never both at once). Nothing of the forward is kept but the borrowed x:
 * backward recomputes im2col, which is cheap next to the GEMMs. */
#include "blas.h"
#include "layer.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define CONV_CHUNK_COLS 1024                 /* default output columns per GEMM */
#define CONV_MAX_COL_FLOATS ((int64_t)1 << 22) /* 16 MiB of im2col per chunk */

struct geom {
    int64_t n, c, h, w, co, ho, wo, p, k2; /* k2 = K = c*k*k */
    int k, s, pad;
    int64_t b; /* images per chunk */
    int identity;
};

static bt_status conv_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                            int64_t *out, const char *fn)
{
    char a[96];
    int64_t hp, wp, ho, wo;
    if (ndim != 4)
        return bti_fail(BT_E_SHAPE, "%s: conv2d expects x of shape [N, %d, H, W]; got %s", fn,
                        l->in_ch, bti_dims_str(ndim, in, a, sizeof a));
    if (in[1] != l->in_ch)
        return bti_fail(BT_E_SHAPE, "%s: x %s has %lld channels; this conv2d expects %d", fn,
                        bti_dims_str(ndim, in, a, sizeof a), (long long)in[1], l->in_ch);
    hp = in[2] + 2 * (int64_t)l->pad;
    wp = in[3] + 2 * (int64_t)l->pad;
    if (hp < l->kernel || wp < l->kernel)
        return bti_fail(BT_E_SHAPE, "%s: x %s padded by %d is smaller than the %dx%d kernel", fn,
                        bti_dims_str(ndim, in, a, sizeof a), l->pad, l->kernel, l->kernel);
    ho = (hp - l->kernel) / l->stride + 1;
    wo = (wp - l->kernel) / l->stride + 1;
    if (ho * wo > INT_MAX / 16 || in[2] * in[3] > INT_MAX / 16)
        return bti_fail(BT_E_SHAPE, "%s: x %s is too large for one image's GEMM", fn,
                        bti_dims_str(ndim, in, a, sizeof a));
    *ondim = 4;
    out[0] = in[0];
    out[1] = l->out_ch;
    out[2] = ho;
    out[3] = wo;
    return BT_OK;
}

static void geom_init(const bt_layer *l, const int64_t *in, struct geom *g)
{
    int64_t target = l->chunk_cols > 0 ? l->chunk_cols : CONV_CHUNK_COLS, chunks;
    g->n = in[0];
    g->c = in[1];
    g->h = in[2];
    g->w = in[3];
    g->k = l->kernel;
    g->s = l->stride;
    g->pad = l->pad;
    g->co = l->out_ch;
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
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static size_t col_floats(const struct geom *g)
{
    return g->b == 1 && g->identity ? 0 : round16((size_t)(g->k2 * g->b * g->p));
}

static size_t tmp_floats(const struct geom *g)
{
    return g->b == 1 ? 0 : round16((size_t)(g->co * g->b * g->p));
}

/* Strategy: one GEMM per chunk with the BLAS's threads (mode 1), or images
 * spread over OpenMP threads with a single-threaded BLAS each (mode 2). */
static int per_image(const bt_layer *l, const struct geom *g)
{
    if (l->conv_mode == 1 || l->threads < 2 || g->n < 2)
        return 0;
    if (l->conv_mode == 2)
        return 1;
    /* Measured (tests/bench/bench_layers.c, 2 threads, shared machine): BLAS
     * threads alternating with OpenMP loops chunk after chunk lose badly as
     * soon as the cores are contended (10-50x on the small-ResNet shapes), and
     * per-image work wins or ties on every ResNet shape; so spread images
     * whenever there are enough of them. */
    return g->n >= l->threads;
}

/* Per thread: one image's col (K*P) and a private dW (Co*K). */
static size_t per_image_floats(const bt_layer *l, const struct geom *g)
{
    return (size_t)l->threads * (round16((size_t)(g->k2 * g->p)) + round16((size_t)(g->co * g->k2)));
}

static bt_status conv_prepare(bt_layer *l, const bt_tensor *x, int training, int groups,
                              const char *fn)
{
    struct geom g;
    (void)training;
    (void)groups;
    geom_init(l, x->shape, &g);
    if (per_image(l, &g))
        return bti_scratch_reserve(l->scratch, per_image_floats(l, &g) * sizeof(float), fn);
    return bti_scratch_reserve(l->scratch, (col_floats(&g) + tmp_floats(&g)) * sizeof(float), fn);
}

/* First and one-past-last output column whose input column ox*s - pad + j is inside [0, w). */
static void valid_range(int64_t w, int64_t wo, int s, int pad, int j, int64_t *lo, int64_t *hi)
{
    int64_t a = pad - j, b = w - 1 + pad - j;
    *lo = a <= 0 ? 0 : (a + s - 1) / s;
    *hi = b < 0 ? 0 : b / s + 1;
    if (*hi > wo)
        *hi = wo;
    if (*lo > *hi)
        *lo = *hi;
}

/* col[r][b*P + oy*Wo + ox] = x[b][c][oy*s - pad + i][ox*s - pad + j] (0 outside), r = (c*k + i)*k + j. */
static void im2col(const struct geom *g, const float *restrict x, int64_t nb, float *restrict col,
                   int threads)
{
    const int64_t ld = nb * g->p, kk = (int64_t)g->k * g->k;
    int64_t r, b;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (r = 0; r < g->k2; r++) {
        for (b = 0; b < nb; b++) {
            const int64_t c = r / kk;
            const int i = (int)(r / g->k % g->k), j = (int)(r % g->k);
            const float *src = x + (b * g->c + c) * g->h * g->w;
            float *dst = col + r * ld + b * g->p;
            int64_t lo, hi, oy, ox;
            valid_range(g->w, g->wo, g->s, g->pad, j, &lo, &hi);
            for (oy = 0; oy < g->ho; oy++) {
                const int64_t iy = oy * g->s - g->pad + i;
                float *restrict d = dst + oy * g->wo;
                if (iy < 0 || iy >= g->h) {
                    memset(d, 0, (size_t)g->wo * sizeof *d);
                    continue;
                }
                {
                    const float *restrict srow = src + iy * g->w - g->pad + j;
                    for (ox = 0; ox < lo; ox++)
                        d[ox] = 0.0f;
                    if (g->s == 1) {
                        if (hi > lo)
                            memcpy(d + lo, srow + lo, (size_t)(hi - lo) * sizeof *d);
                    } else {
                        for (ox = lo; ox < hi; ox++)
                            d[ox] = srow[ox * g->s];
                    }
                    for (ox = hi; ox < g->wo; ox++)
                        d[ox] = 0.0f;
                }
            }
        }
    }
}

/* dx[b][c] = sum over (i, j) of the scattered rows of dcol (overwrites dx). */
static void col2im(const struct geom *g, const float *restrict col, int64_t nb, float *restrict dx,
                   int threads)
{
    const int64_t ld = nb * g->p;
    int64_t b, c;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (b = 0; b < nb; b++) {
        for (c = 0; c < g->c; c++) {
            float *restrict plane = dx + (b * g->c + c) * g->h * g->w;
            int i, j;
            memset(plane, 0, (size_t)(g->h * g->w) * sizeof *plane);
            for (i = 0; i < g->k; i++) {
                for (j = 0; j < g->k; j++) {
                    const float *restrict src =
                        col + ((c * g->k + i) * g->k + j) * ld + b * g->p;
                    int64_t lo, hi, oy, ox;
                    valid_range(g->w, g->wo, g->s, g->pad, j, &lo, &hi);
                    for (oy = 0; oy < g->ho; oy++) {
                        const int64_t iy = oy * g->s - g->pad + i;
                        float *restrict drow;
                        const float *restrict srow = src + oy * g->wo;
                        if (iy < 0 || iy >= g->h)
                            continue;
                        drow = plane + iy * g->w - g->pad + j;
                        if (g->s == 1) {
                            for (ox = lo; ox < hi; ox++)
                                drow[ox] += srow[ox];
                        } else {
                            for (ox = lo; ox < hi; ox++)
                                drow[ox * g->s] += srow[ox];
                        }
                    }
                }
            }
        }
    }
}

static void add_bias(float *restrict y, const float *restrict bias, int64_t co, int64_t p)
{
    int64_t o, q;
    for (o = 0; o < co; o++)
        for (q = 0; q < p; q++)
            y[o * p + q] += bias[o];
}

static void forward_per_image(bt_layer *l, const struct geom *g, const float *x, float *y)
{
    const float *w = l->value[0]->data, *bias = l->has_bias ? l->value[1]->data : NULL;
    const size_t stride = round16((size_t)(g->k2 * g->p)) + round16((size_t)(g->co * g->k2));
    float *base = (float *)l->scratch->p;
    int64_t n;
    bti_blas_set_threads(1);
#pragma omp parallel for num_threads(l->threads) schedule(static)
    for (n = 0; n < g->n; n++) {
        float *col = base + (size_t)omp_get_thread_num() * stride;
        const float *xc = x + n * g->c * g->h * g->w, *colp = xc;
        float *yc = y + n * g->co * g->p;
        if (!g->identity) {
            im2col(g, xc, 1, col, 1);
            colp = col;
        }
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, (int)g->co, (int)g->p, (int)g->k2,
                    1.0f, w, (int)g->k2, colp, (int)g->p, 0.0f, yc, (int)g->p);
        if (bias)
            add_bias(yc, bias, g->co, g->p);
    }
}

static void backward_per_image(bt_layer *l, const struct geom *g, const float *x, const float *dy,
                               float *dx)
{
    const float *w = l->value[0]->data;
    const size_t colsz = round16((size_t)(g->k2 * g->p)), stride = colsz + round16((size_t)(g->co * g->k2));
    const int nt = l->conv_threads; /* the forward's count, for which scratch was reserved */
    float *base = (float *)l->scratch->p, *dw = l->grad[0]->data;
    int64_t i, nw = g->co * g->k2;
    bti_blas_set_threads(1);
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *col = base + (size_t)t * stride, *part = col + colsz;
        const int64_t n0 = g->n * t / tn, n1 = g->n * (t + 1) / tn;
        int64_t n;
        memset(part, 0, (size_t)nw * sizeof *part);
        for (n = n0; n < n1; n++) {
            const float *xc = x + n * g->c * g->h * g->w, *colp = xc, *dyc = dy + n * g->co * g->p;
            if (!g->identity) {
                im2col(g, xc, 1, col, 1);
                colp = col;
            }
            cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_TRANS, (int)g->co, (int)g->k2, (int)g->p,
                        1.0f, dyc, (int)g->p, colp, (int)g->p, 1.0f, part, (int)g->k2);
            if (!dx)
                continue;
            if (g->identity) {
                cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, (int)g->k2, (int)g->p,
                            (int)g->co, 1.0f, w, (int)g->k2, dyc, (int)g->p, 0.0f,
                            dx + n * g->c * g->h * g->w, (int)g->p);
            } else {
                cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, (int)g->k2, (int)g->p,
                            (int)g->co, 1.0f, w, (int)g->k2, dyc, (int)g->p, 0.0f, col, (int)g->p);
                col2im(g, col, 1, dx + n * g->c * g->h * g->w, 1);
            }
        }
    }
    /* the threads' partial sums, added in thread order: deterministic for a thread count */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i = 0; i < nw; i++) {
        float s = dw[i];
        int t;
        for (t = 0; t < nt; t++)
            s += base[(size_t)t * stride + colsz + (size_t)i];
        dw[i] = s;
    }
}

static void conv_forward(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training, int groups)
{
    const float *w = l->value[0]->data, *bias = l->has_bias ? l->value[1]->data : NULL;
    struct geom g;
    float *col, *tmp;
    int64_t n0;
    const int nt = l->threads;
    (void)training;
    (void)groups;
    geom_init(l, xt->shape, &g);
    l->chunk_b = g.b;
    l->conv_per_image = per_image(l, &g);
    l->conv_threads = l->threads;
    if (l->conv_per_image) {
        forward_per_image(l, &g, xt->data, yt->data);
        return;
    }
    col = (float *)l->scratch->p;
    tmp = col + col_floats(&g);
    for (n0 = 0; n0 < g.n; n0 += g.b) {
        const int64_t nb = g.n - n0 < g.b ? g.n - n0 : g.b, cols = nb * g.p;
        const float *xc = xt->data + n0 * g.c * g.h * g.w;
        float *yc = yt->data + n0 * g.co * g.p;
        const float *colp = xc;
        if (!(g.identity && g.b == 1)) {
            im2col(&g, xc, nb, col, nt);
            colp = col;
        }
        bti_blas_set_threads(nt);
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, (int)g.co, (int)cols, (int)g.k2,
                    1.0f, w, (int)g.k2, colp, (int)cols, 0.0f, g.b == 1 ? yc : tmp, (int)cols);
        if (g.b == 1) {
            if (bias) {
                int64_t o;
#pragma omp parallel for num_threads(nt) schedule(static) if (g.co * g.p > 32768)
                for (o = 0; o < g.co; o++) {
                    float *restrict yr = yc + o * g.p;
                    const float bo = bias[o];
                    int64_t q;
                    for (q = 0; q < g.p; q++)
                        yr[q] += bo;
                }
            }
        } else {
            int64_t b, o;
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static)
            for (b = 0; b < nb; b++) {
                for (o = 0; o < g.co; o++) {
                    const float *restrict src = tmp + o * cols + b * g.p;
                    float *restrict dst = yc + (b * g.co + o) * g.p;
                    const float bo = bias ? bias[o] : 0.0f;
                    int64_t q;
                    for (q = 0; q < g.p; q++)
                        dst[q] = src[q] + bo;
                }
            }
        }
    }
}

static void conv_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    const float *w = l->value[0]->data;
    float *dw = l->grad[0]->data;
    struct geom g;
    float *col, *tmp;
    int64_t n0;
    const int nt = l->threads;
    geom_init(l, l->in_shape, &g);
    g.b = l->chunk_b; /* the forward's plan, for which scratch was reserved */
    col = (float *)l->scratch->p;
    tmp = col + col_floats(&g);

    if (l->has_bias) {
        float *restrict db = l->grad[1]->data;
        const float *restrict dy = dyt->data;
        int64_t o;
#pragma omp parallel for num_threads(nt) schedule(static)
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
    if (l->conv_per_image) {
        backward_per_image(l, &g, l->x->data, dyt->data, dxt ? dxt->data : NULL);
        return;
    }

    for (n0 = 0; n0 < g.n; n0 += g.b) {
        const int64_t nb = g.n - n0 < g.b ? g.n - n0 : g.b, cols = nb * g.p;
        const float *xc = l->x->data + n0 * g.c * g.h * g.w;
        const float *dyc = dyt->data + n0 * g.co * g.p;
        const float *colp = xc;
        if (g.b > 1) {
            int64_t b, o;
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static)
            for (b = 0; b < nb; b++) {
                for (o = 0; o < g.co; o++)
                    memcpy(tmp + o * cols + b * g.p, dyc + (b * g.co + o) * g.p,
                           (size_t)g.p * sizeof(float));
            }
            dyc = tmp;
        }
        if (!(g.identity && g.b == 1)) {
            im2col(&g, xc, nb, col, nt);
            colp = col;
        }
        bti_blas_set_threads(nt);
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_TRANS, (int)g.co, (int)g.k2, (int)cols, 1.0f,
                    dyc, (int)cols, colp, (int)cols, 1.0f, dw, (int)g.k2);
        if (!dxt)
            continue;
        {
            float *dxc = dxt->data + n0 * g.c * g.h * g.w;
            if (g.identity && g.b == 1) {
                cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, (int)g.k2, (int)cols,
                            (int)g.co, 1.0f, w, (int)g.k2, dyc, (int)cols, 0.0f, dxc, (int)cols);
            } else {
                cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, (int)g.k2, (int)cols,
                            (int)g.co, 1.0f, w, (int)g.k2, dyc, (int)cols, 0.0f, col, (int)cols);
                col2im(&g, col, nb, dxc, nt);
            }
        }
    }
}

static void conv_reset(bt_layer *l, uint64_t seed)
{
    /* kaiming_uniform_(a=sqrt(5)) gives bound gain*sqrt(3/fan_in) with
     * gain = sqrt(2/(1+5)): exactly 1/sqrt(fan_in); the bias uses the same bound. */
    double bound = 1.0 / sqrt((double)l->in_ch * l->kernel * l->kernel);
    bti_layer_fill_uniform(l->value[0], bound, seed, 0, l->threads);
    if (l->has_bias)
        bti_layer_fill_uniform(l->value[1], bound, seed, 1, l->threads);
}

const struct bti_layer_ops bti_conv2d_ops = {
    "conv2d", conv_shape, conv_prepare, conv_forward, conv_backward, conv_reset, NULL,
};

bt_status bti_layer_conv2d_new(bt_layer **out, int in_ch, int out_ch, int kernel, int stride,
                               int pad, int bias, const char *fn)
{
    int64_t wshape[4] = {out_ch, in_ch, kernel, kernel}, bshape[1] = {out_ch};
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
    st = bti_layer_alloc(&l, &bti_conv2d_ops, BTI_LAYER_CONV2D, fn);
    if (st != BT_OK)
        return st;
    l->in_ch = in_ch;
    l->out_ch = out_ch;
    l->kernel = kernel;
    l->stride = stride;
    l->pad = pad;
    l->has_bias = bias;
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

void bti_layer_conv2d_set_chunk(bt_layer *l, int64_t cols)
{
    if (l->type == BTI_LAYER_CONV2D)
        l->chunk_cols = cols;
}

void bti_layer_conv2d_set_mode(bt_layer *l, int mode)
{
    if (l->type == BTI_LAYER_CONV2D)
        l->conv_mode = mode;
}
