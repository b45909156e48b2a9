/* conv2d_gemm.c - the GEMM forms, which every CPU level runs.
 *
 * im2col lays the receptive fields of a group of images out as col[K][B*P]
 * (K = Cin*k*k rows, the images' P = Ho*Wo output positions side by side), so
 * each pass is one GEMM:
 *   forward   out[Co][B*P]  = W[Co][K] * col
 *   backward  dW[Co][K]    += dy[Co][B*P] * col^T
 *             dcol[K][B*P]  = W^T * dy, then col2im into dx
 * With one image the GEMMs read and write the NCHW tensors in place; a 1x1,
 * stride-1, unpadded convolution then needs no im2col at all. Nothing of the
 * forward is kept but the borrowed x: backward recomputes im2col, which is
 * cheap next to the GEMMs.
 *  - gemm: the batch in chunks of b images, one GEMM per chunk on the BLAS's
 *    threads, im2col and col2im on OpenMP threads (never both at once). The
 *    plain form: it fits every geometry and ends every level's table.
 *  - images: the images spread over OpenMP threads, each running im2col and a
 *    single-threaded GEMM per group of pb images into its own buffers (dW
 *    summed per thread, then added in thread order). */
#include "kernels/blas.h"
#include "kernels/conv_planes.h"
#include "kernels/sgemm.h"
#include "layers/conv2d.h"

#include <omp.h>
#include <string.h>

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

/* col[r][b*P + oy*Wo + ox] = x[b][c][oy*s - pad + i][ox*s - pad + j] (0 outside),
 * r = (c*k + i)*k + j. */
static void im2col(const struct bti_conv_geom *g, const float *restrict x, int64_t nb,
                   float *restrict col, int threads)
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
            int64_t lo, hi;
            valid_range(g->w, g->wo, g->s, g->pad, j, &lo, &hi);
            bti_im2col_plane(g->level, dst, src, g->h, g->w, g->ho, g->wo, g->s, g->pad, i, j, lo,
                             hi);
        }
    }
}

/* dx[b][c] = sum over (i, j) of the scattered rows of dcol (overwrites dx). */
static void col2im(const struct bti_conv_geom *g, const float *restrict col, int64_t nb,
                   float *restrict dx, int threads)
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
                    const float *src = col + ((c * g->k + i) * g->k + j) * ld + b * g->p;
                    int64_t lo, hi;
                    valid_range(g->w, g->wo, g->s, g->pad, j, &lo, &hi);
                    bti_col2im_plane(g->level, src, plane, g->h, g->w, g->ho, g->wo, g->s, g->pad,
                                     i, j, lo, hi);
                }
            }
        }
    }
}

/* ---- gemm: chunks of images on the BLAS's threads ------------------------- */

static int all_fit(const struct bti_conv_geom *g)
{
    (void)g;
    return 1;
}

static int gemm_wins(const struct bti_conv_geom *g, const struct bti_conv_rules *r)
{
    (void)g, (void)r;
    return 1;
}

static size_t col_floats(const struct bti_conv_geom *g)
{
    return g->b == 1 && g->identity ? 0 : bti_conv_round16((size_t)(g->k2 * g->b * g->p));
}

static size_t tmp_floats(const struct bti_conv_geom *g)
{
    return g->b == 1 ? 0 : bti_conv_round16((size_t)(g->co * g->b * g->p));
}

static size_t gemm_workspace(const struct bti_conv_geom *g)
{
    return col_floats(g) + tmp_floats(g);
}

static void gemm_forward(bt_layer *l, const struct bti_conv_geom *g, const float *x, float *y)
{
    const float *w = l->value[0]->data, *bias = bti_conv2d_bias(l);
    float *col = (float *)l->scratch->p, *tmp = col + col_floats(g);
    const int nt = g->threads;
    int64_t n0;
    for (n0 = 0; n0 < g->n; n0 += g->b) {
        const int64_t nb = g->n - n0 < g->b ? g->n - n0 : g->b, cols = nb * g->p;
        const float *xc = x + n0 * g->c * g->h * g->w, *colp = xc;
        float *yc = y + n0 * g->co * g->p;
        if (!(g->identity && g->b == 1)) {
            im2col(g, xc, nb, col, nt);
            colp = col;
        }
        bti_blas_begin(nt);
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, (int)g->co, (int)cols, (int)g->k2,
                    1.0f, w, (int)g->k2, colp, (int)cols, 0.0f, g->b == 1 ? yc : tmp, (int)cols);
        bti_blas_end(nt);
        if (g->b == 1) {
            if (bias) {
                int64_t o;
#pragma omp parallel for num_threads(nt) schedule(static) if (g->co * g->p > 32768)
                for (o = 0; o < g->co; o++) {
                    float *restrict yr = yc + o * g->p;
                    const float bo = bias[o];
                    int64_t q;
                    for (q = 0; q < g->p; q++)
                        yr[q] += bo;
                }
            }
        } else {
            int64_t b, o;
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static)
            for (b = 0; b < nb; b++) {
                for (o = 0; o < g->co; o++) {
                    const float *restrict src = tmp + o * cols + b * g->p;
                    float *restrict dst = yc + (b * g->co + o) * g->p;
                    const float bo = bias ? bias[o] : 0.0f;
                    int64_t q;
                    for (q = 0; q < g->p; q++)
                        dst[q] = src[q] + bo;
                }
            }
        }
    }
}

static void gemm_backward(bt_layer *l, const struct bti_conv_geom *g, const float *x,
                          const float *dy, float *dx)
{
    const float *w = l->value[0]->data;
    float *dw = l->grad[0]->data, *col = (float *)l->scratch->p, *tmp = col + col_floats(g);
    const int nt = g->threads;
    int64_t n0;
    for (n0 = 0; n0 < g->n; n0 += g->b) {
        const int64_t nb = g->n - n0 < g->b ? g->n - n0 : g->b, cols = nb * g->p;
        const float *xc = x + n0 * g->c * g->h * g->w, *dyc = dy + n0 * g->co * g->p, *colp = xc;
        float *dxc;
        if (g->b > 1) {
            int64_t b, o;
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static)
            for (b = 0; b < nb; b++) {
                for (o = 0; o < g->co; o++)
                    memcpy(tmp + o * cols + b * g->p, dyc + (b * g->co + o) * g->p,
                           (size_t)g->p * sizeof(float));
            }
            dyc = tmp;
        }
        if (!(g->identity && g->b == 1)) {
            im2col(g, xc, nb, col, nt);
            colp = col;
        }
        bti_blas_begin(nt);
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_TRANS, (int)g->co, (int)g->k2, (int)cols,
                    1.0f, dyc, (int)cols, colp, (int)cols, 1.0f, dw, (int)g->k2);
        dxc = dx ? dx + n0 * g->c * g->h * g->w : NULL;
        if (dx) /* into dx itself, or into col for col2im */
            cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, (int)g->k2, (int)cols, (int)g->co,
                        1.0f, w, (int)g->k2, dyc, (int)cols, 0.0f,
                        g->identity && g->b == 1 ? dxc : col, (int)cols);
        bti_blas_end(nt);
        if (dx && !(g->identity && g->b == 1))
            col2im(g, col, nb, dxc, nt);
    }
}

const struct bti_conv_form bti_conv_gemm = {
    "gemm", all_fit, gemm_wins, gemm_workspace, gemm_forward, gemm_backward,
};

/* ---- images: per-image GEMMs on OpenMP threads ------------------------------ */

/* Over many threads per-image work wins or ties on every ResNet shape (BLAS
 * threads alternating with OpenMP loops chunk after chunk lose badly once the
 * cores are contended); on one thread it wins where the private kernels beat
 * the BLAS, and where packing both operands costs the BLAS as much as the
 * arithmetic (few output channels). docs/perf.md has the measurements. */
static int images_wins(const struct bti_conv_geom *g, const struct bti_conv_rules *r)
{
    if (g->threads >= 2 || g->n < 2)
        return bti_conv_images_each(g);
    return bti_sgemm_prefer_private(g->level) || g->co <= r->images_max_co;
}

/* Per thread: a group's col (K x pb*P), its output or gradient rows (Co x pb*P)
 * and a private dW (Co x K). */
static size_t im_col(const struct bti_conv_geom *g)
{
    return bti_conv_round16((size_t)(g->k2 * g->pb * g->p));
}
static size_t im_tmp(const struct bti_conv_geom *g)
{
    return bti_conv_round16((size_t)(g->co * g->pb * g->p));
}
static size_t im_stride(const struct bti_conv_geom *g)
{
    return im_col(g) + im_tmp(g) + bti_conv_round16((size_t)(g->co * g->k2));
}
static size_t images_workspace(const struct bti_conv_geom *g)
{
    return (size_t)g->threads * im_stride(g);
}

/* Images [n0, n1) in groups of pb: im2col of the group into col[K][nb*P] (or
 * the image itself for an identity 1x1 alone), then one GEMM. */
static void forward_images(const struct bti_conv_geom *g, const float *w, const float *bias,
                           const float *x, float *y, int64_t n0, int64_t n1, float *col,
                           float *tmp)
{
    int64_t n, b, o, q;
    for (n = n0; n < n1; n += g->pb) {
        const int64_t nb = n1 - n < g->pb ? n1 - n : g->pb, cols = nb * g->p;
        const float *xc = x + n * g->c * g->h * g->w, *colp = xc;
        float *yc = y + n * g->co * g->p;
        if (!(g->identity && nb == 1)) {
            im2col(g, xc, nb, col, 1);
            colp = col;
        }
        bti_sgemm(g->level, BTI_NO_TRANS, BTI_NO_TRANS, g->co, cols, g->k2, 1.0f, w, g->k2, colp,
                  cols, 0.0f, nb == 1 ? yc : tmp, cols);
        if (nb == 1) {
            for (o = 0; bias && o < g->co; o++)
                for (q = 0; q < g->p; q++)
                    yc[o * g->p + q] += bias[o];
            continue;
        }
        for (b = 0; b < nb; b++)
            for (o = 0; o < g->co; o++) {
                const float *restrict src = tmp + o * cols + b * g->p;
                float *restrict dst = yc + (b * g->co + o) * g->p;
                const float bo = bias ? bias[o] : 0.0f;
                for (q = 0; q < g->p; q++)
                    dst[q] = src[q] + bo;
            }
    }
}

static void images_forward(bt_layer *l, const struct bti_conv_geom *g, const float *x, float *y)
{
    const float *w = l->value[0]->data, *bias = bti_conv2d_bias(l);
    float *base = (float *)l->scratch->p;
#pragma omp parallel num_threads(g->threads)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *col = base + (size_t)t * im_stride(g);
        forward_images(g, w, bias, x, y, g->n * t / tn, g->n * (t + 1) / tn, col, col + im_col(g));
    }
}

/* Images [n0, n1) in groups of pb: dW part += dy x col^T; dx = col2im(W^T x dy). */
static void backward_images(const struct bti_conv_geom *g, const float *w, const float *x,
                            const float *dy, float *dx, int64_t n0, int64_t n1, float *col,
                            float *tmp, float *part)
{
    int64_t n, b;
    for (n = n0; n < n1; n += g->pb) {
        const int64_t nb = n1 - n < g->pb ? n1 - n : g->pb, cols = nb * g->p;
        const float *xc = x + n * g->c * g->h * g->w, *colp = xc, *dyc = dy + n * g->co * g->p;
        if (nb > 1) {
            for (b = 0; b < nb; b++) {
                int64_t o;
                for (o = 0; o < g->co; o++)
                    memcpy(tmp + o * cols + b * g->p, dyc + (b * g->co + o) * g->p,
                           (size_t)g->p * sizeof(float));
            }
            dyc = tmp;
        }
        if (!(g->identity && nb == 1)) {
            im2col(g, xc, nb, col, 1);
            colp = col;
        }
        bti_sgemm(g->level, BTI_NO_TRANS, BTI_TRANS, g->co, g->k2, cols, 1.0f, dyc, cols, colp,
                  cols, 1.0f, part, g->k2);
        if (!dx)
            continue;
        if (g->identity && nb == 1) {
            bti_sgemm(g->level, BTI_TRANS, BTI_NO_TRANS, g->k2, cols, g->co, 1.0f, w, g->k2, dyc,
                      cols, 0.0f, dx + n * g->c * g->h * g->w, cols);
        } else {
            bti_sgemm(g->level, BTI_TRANS, BTI_NO_TRANS, g->k2, cols, g->co, 1.0f, w, g->k2, dyc,
                      cols, 0.0f, col, cols);
            col2im(g, col, nb, dx + n * g->c * g->h * g->w, 1);
        }
    }
}

static void images_backward(bt_layer *l, const struct bti_conv_geom *g, const float *x,
                            const float *dy, float *dx)
{
    const float *w = l->value[0]->data;
    float *base = (float *)l->scratch->p;
    const size_t stride = im_stride(g), poff = im_col(g) + im_tmp(g);
    const int64_t nw = g->co * g->k2;
    int ran = 1;
    /* parts of the team that ran (bti_conv_sum_parts) */
#pragma omp parallel num_threads(g->threads)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *col = base + (size_t)t * stride, *part = col + poff;
        if (t == 0)
            ran = tn;
        memset(part, 0, (size_t)nw * sizeof *part);
        backward_images(g, w, x, dy, dx, g->n * t / tn, g->n * (t + 1) / tn, col, col + im_col(g),
                        part);
    }
    bti_conv_sum_parts(base, stride, poff, nw, ran, l->grad[0]->data);
}

const struct bti_conv_form bti_conv_images = {
    "images", all_fit, images_wins, images_workspace, images_forward, images_backward,
};
