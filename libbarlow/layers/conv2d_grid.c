/* conv2d_grid.c - the padded-grid ("implicit GEMM") form of stride-1 "same"
 * convolutions with an odd kernel, per image on OpenMP threads, for the
 * levels with private GEMM kernels (they read B through row offsets).
 *
 * Images are copied into zero-padded planes pad[ch][b][hp][wp] (channel
 * stride lcap). Output q = b*hp*wp + y*wp + x of the grid reads input row
 * (c, i, j) at pad[c] + i*wp + j + q, a contiguous run: the GEMM reads B
 * through row offsets and no im2col is built. Grid columns with x >= w or
 * y >= h are junk and are dropped (forward) or meet zeros (weight gradient);
 * every float the kernels read is written first, so junk stays finite. The
 * input gradient is the same kind of convolution of the padded dy with the
 * flipped, transposed weights. */
#include "kernels/blas.h"
#include "kernels/sgemm.h"
#include "layers/conv2d.h"

#include <omp.h>
#include <string.h>

static int grid_fits(const struct bti_conv_geom *g)
{
    return g->s == 1 && g->k >= 3 && g->k % 2 == 1 && g->pad == (g->k - 1) / 2;
}

/* It computes hp*wp outputs per image instead of h*w: worth it while that
 * overhead is small. */
static int grid_wins(const struct bti_conv_geom *g, const struct bti_conv_rules *r)
{
    return bti_conv_images.wins(g, r) &&
           (double)(g->hp * g->wp) <= r->grid_max_overhead * (double)(g->h * g->w);
}

/* Per thread: xpad, dypad, the GEMM output on the grid, the dW part, and the
 * row offsets of xpad (k2) and of dypad (co*k*k) as int64. After all
 * threads: the flipped, transposed weights for dx. */
static size_t gr_x(const struct bti_conv_geom *g) { return bti_conv_padded_floats(g, g->c); }
static size_t gr_dy(const struct bti_conv_geom *g) { return bti_conv_padded_floats(g, g->co); }
static size_t gr_out(const struct bti_conv_geom *g)
{
    return bti_conv_round16((size_t)((g->co > g->c ? g->co : g->c) * g->lcap));
}
static size_t gr_part(const struct bti_conv_geom *g)
{
    return bti_conv_round16((size_t)(g->co * g->k2));
}
static size_t gr_offs(const struct bti_conv_geom *g)
{
    return bti_conv_round16((size_t)(2 * (g->k2 + g->co * g->k * g->k)));
}
static size_t gr_stride(const struct bti_conv_geom *g)
{
    return gr_x(g) + gr_dy(g) + gr_out(g) + gr_part(g) + gr_offs(g);
}
static size_t grid_workspace(const struct bti_conv_geom *g)
{
    return (size_t)g->threads * gr_stride(g) +
           bti_conv_round16((size_t)(g->c * g->co * g->k * g->k));
}

/* Row offsets of a padded buffer with ch channels: (c, i, j) -> c*lcap + i*wp + j. */
static void grid_offsets(const struct bti_conv_geom *g, int64_t ch, int64_t *off)
{
    int64_t c;
    int i, j;
    for (c = 0; c < ch; c++)
        for (i = 0; i < g->k; i++)
            for (j = 0; j < g->k; j++)
                off[(c * g->k + i) * g->k + j] = c * g->lcap + (int64_t)i * g->wp + j;
}

/* The grid rows out[ch][b*plane + y*wp + x] into dst [nb][ch][h][w] (+ bias). */
static void grid_unpack(const struct bti_conv_geom *g, const float *restrict out, int64_t ch,
                        int64_t nb, const float *bias, float *restrict dst)
{
    const int64_t plane = g->hp * g->wp;
    int64_t b, c, y, x;
    for (b = 0; b < nb; b++)
        for (c = 0; c < ch; c++) {
            const float bo = bias ? bias[c] : 0.0f;
            for (y = 0; y < g->h; y++) {
                const float *restrict sr = out + c * g->lcap + b * plane + y * g->wp;
                float *restrict dr = dst + ((b * ch + c) * g->h + y) * g->w;
                for (x = 0; x < g->w; x++)
                    dr[x] = sr[x] + bo;
            }
        }
}

static void forward_grid(const struct bti_conv_geom *g, const float *w, const float *bias,
                         const float *x, float *y, int64_t n0, int64_t n1, float *buf)
{
    float *xp = buf, *out = xp + gr_x(g) + gr_dy(g);
    int64_t *offx = (int64_t *)(out + gr_out(g) + gr_part(g));
    const int64_t plane = g->hp * g->wp, chw = g->c * g->h * g->w;
    int64_t n;
    grid_offsets(g, g->c, offx);
    for (n = n0; n < n1; n += g->pb) {
        const int64_t nb = n1 - n < g->pb ? n1 - n : g->pb;
        bti_conv_grid_pack(g, x + n * chw, g->c, nb, xp);
        bti_sgemm_rows(g->level, BTI_NO_TRANS, BTI_NO_TRANS, g->co, nb * plane, g->k2, 1.0f, w,
                       g->k2, xp, offx, 0.0f, out, g->lcap);
        grid_unpack(g, out, g->co, nb, bias, y + n * g->co * g->p);
    }
}

static void grid_forward(bt_layer *l, const struct bti_conv_geom *g, const float *x, float *y)
{
    const float *w = l->value[0]->data, *bias = bti_conv2d_bias(l);
    float *base = (float *)l->scratch->p;
#pragma omp parallel num_threads(g->threads)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        forward_grid(g, w, bias, x, y, g->n * t / tn, g->n * (t + 1) / tn,
                     base + (size_t)t * gr_stride(g));
    }
}

/* dW part += dy_grid x xpad-rows^T; dx = unpack(wt x dypad-rows). wt[c][(o,i,j)] =
 * W[o][c][k-1-i][k-1-j], prepared once by the caller. */
static void backward_grid(const struct bti_conv_geom *g, const float *wt, const float *x,
                          const float *dy, float *dx, int64_t n0, int64_t n1, float *buf,
                          float *part)
{
    float *xp = buf, *dp = xp + gr_x(g), *out = dp + gr_dy(g);
    int64_t *offx = (int64_t *)(out + gr_out(g) + gr_part(g)), *offd = offx + g->k2;
    const int64_t plane = g->hp * g->wp, chw = g->c * g->h * g->w, kk = (int64_t)g->k * g->k;
    const float *dyg = dp + g->pad * g->wp + g->pad; /* dy on the output grid */
    int64_t n;
    grid_offsets(g, g->c, offx);
    grid_offsets(g, g->co, offd);
    for (n = n0; n < n1; n += g->pb) {
        const int64_t nb = n1 - n < g->pb ? n1 - n : g->pb;
        bti_conv_grid_pack(g, x + n * chw, g->c, nb, xp);
        bti_conv_grid_pack(g, dy + n * g->co * g->p, g->co, nb, dp);
        bti_sgemm_rows(g->level, BTI_NO_TRANS, BTI_TRANS, g->co, g->k2, nb * plane, 1.0f, dyg,
                       g->lcap, xp, offx, 1.0f, part, g->k2);
        if (!dx)
            continue;
        bti_sgemm_rows(g->level, BTI_NO_TRANS, BTI_NO_TRANS, g->c, nb * plane, g->co * kk, 1.0f,
                       wt, g->co * kk, dp, offd, 0.0f, out, g->lcap);
        grid_unpack(g, out, g->c, nb, NULL, dx + n * chw);
    }
}

static void flip_weights(const struct bti_conv_geom *g, const float *restrict w, float *restrict wt)
{
    const int64_t kk = (int64_t)g->k * g->k;
    int64_t o, c, t;
    for (c = 0; c < g->c; c++)
        for (o = 0; o < g->co; o++)
            for (t = 0; t < kk; t++)
                wt[c * g->co * kk + o * kk + t] = w[(o * g->c + c) * kk + (kk - 1 - t)];
}

static void grid_backward(bt_layer *l, const struct bti_conv_geom *g, const float *x,
                          const float *dy, float *dx)
{
    const size_t stride = gr_stride(g), poff = gr_x(g) + gr_dy(g) + gr_out(g);
    const int64_t nw = g->co * g->k2;
    float *base = (float *)l->scratch->p, *wt = base + (size_t)g->threads * stride;
    int ran = 1;
    if (dx)
        flip_weights(g, l->value[0]->data, wt);
    /* parts of the team that ran (bti_conv_sum_parts) */
#pragma omp parallel num_threads(g->threads)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *buf = base + (size_t)t * stride, *part = buf + poff;
        if (t == 0)
            ran = tn;
        memset(part, 0, (size_t)nw * sizeof *part);
        backward_grid(g, wt, x, dy, dx, g->n * t / tn, g->n * (t + 1) / tn, buf, part);
    }
    bti_conv_sum_parts(base, stride, poff, nw, ran, l->grad[0]->data);
}

const struct bti_conv_form bti_conv_grid = {
    "grid", grid_fits, grid_wins, grid_workspace, grid_forward, grid_backward,
};
