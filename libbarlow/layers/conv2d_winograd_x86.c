/* conv2d_winograd_x86.c - the Winograd F(2x2, 3x3) form of 3x3 stride-1
 * padding-1 convolutions, per image on OpenMP threads, over the level's
 * transforms (kernels/conv_winograd.h) and the private GEMMs: 16
 * multiplies per 2x2 outputs and channel pair instead of 36. It computes
 * whole 2x2 tiles, padding taps included (odd sizes: a junk row and column).
 *
 * Image groups in pixel-major rows, transformed tile by tile; per transform
 * element e, the GEMMs M_e = V_e U_e^T (forward, U stored [c][co]), dU_e +=
 * dM_e^T V_e and dV_e = dM_e U_e (backward, U stored [co][c]) over the
 * group's tiles. */
#include "kernels/conv_direct.h"
#include "kernels/conv_winograd.h"
#include "kernels/blas.h"
#include "kernels/sgemm.h"
#include "layers/conv2d.h"

#include <omp.h>
#include <string.h>

#define WINO_TILES 256                     /* tiles per group: enough for the GEMMs' rows */
#define WINO_MAX_FLOATS ((int64_t)1 << 24) /* and at most 64 MiB of transforms per thread */

/* Images per group. */
static int64_t group_images(const struct bti_conv_geom *g)
{
    const int64_t tiles = bti_wino_tiles(g->h, g->w), wb = (WINO_TILES + tiles - 1) / tiles;
    return wb > g->n ? g->n : wb;
}

/* Big images: V and M of a single image may not pass WINO_MAX_FLOATS (a
 * VGG-sized 224x224 layer would want 100+ MiB); the direct form takes those. */
static int wino_fits(const struct bti_conv_geom *g)
{
    return g->k == 3 && g->s == 1 && g->pad == 1 &&
           16 * bti_wino_tiles(g->h, g->w) * (bti_direct_round(g->c) + bti_direct_round(g->co)) <=
               WINO_MAX_FLOATS;
}

/* Its GEMMs want many channels. */
static int wino_wins(const struct bti_conv_geom *g, const struct bti_conv_rules *r)
{
    const int64_t ch = g->c < g->co ? g->c : g->co;
    return bti_conv_images_each(g) &&
           (ch >= r->wino_min_ch ||
            (ch >= r->wino_min_ch_large && g->h * g->w >= r->wino_large_plane));
}

/* Per thread: two pixel-major buffers (x and y in the forward; x then dx,
 * and dy, in the backward), the transformed input V (and in the backward its
 * gradient, in place), the transformed output M (or its gradient) and the dU
 * part [16][co][c]. After all threads: U [16][co][c]. */
static size_t wn_pix(const struct bti_conv_geom *g)
{
    const int64_t cp = bti_direct_round(g->c), cop = bti_direct_round(g->co);
    return bti_conv_round16((size_t)(group_images(g) * g->h * g->w * (cp > cop ? cp : cop)));
}
static size_t wn_v(const struct bti_conv_geom *g)
{
    return bti_conv_round16(
        (size_t)(16 * group_images(g) * bti_wino_tiles(g->h, g->w) * bti_direct_round(g->c)));
}
static size_t wn_m(const struct bti_conv_geom *g)
{
    return bti_conv_round16(
        (size_t)(16 * group_images(g) * bti_wino_tiles(g->h, g->w) * bti_direct_round(g->co)));
}
static size_t wn_u(const struct bti_conv_geom *g)
{
    return bti_conv_round16((size_t)(16 * g->co * g->c));
}
static size_t part_at(const struct bti_conv_geom *g) { return 2 * wn_pix(g) + wn_v(g) + wn_m(g); }
static size_t wn_stride(const struct bti_conv_geom *g) { return part_at(g) + wn_u(g); }
static size_t wino_workspace(const struct bti_conv_geom *g)
{
    return (size_t)g->threads * wn_stride(g) + wn_u(g);
}

struct wino_bufs {
    float *pa, *pb, *v, *m;   /* pixel rows (two), V, M (part_at: the dW part) */
    int64_t cp, cop, hw;      /* channels rounded to registers, pixels per image */
    int64_t ev, em;           /* floats between transform elements in v and m */
    const struct bti_wino_ops *tf;     /* the level's transforms */
    const struct bti_direct_ops *px;   /* and its moves to and from pixel-major rows */
};

static void wino_bufs_of(const struct bti_conv_geom *g, float *buf, struct wino_bufs *d)
{
    d->pa = buf;
    d->pb = d->pa + wn_pix(g);
    d->v = d->pb + wn_pix(g);
    d->m = d->v + wn_v(g);
    d->cp = bti_direct_round(g->c);
    d->cop = bti_direct_round(g->co);
    d->hw = g->h * g->w;
    d->ev = group_images(g) * bti_wino_tiles(g->h, g->w) * d->cp;
    d->em = group_images(g) * bti_wino_tiles(g->h, g->w) * d->cop;
    d->tf = bti_wino_ops_of(g->level);
    d->px = bti_direct_ops_of(g->level);
}

/* Images [n, n + nb) of x into V, through pixel-major rows in pa. */
static void wino_input_of(const struct bti_conv_geom *g, const float *x, int64_t n, int64_t nb,
                          const struct wino_bufs *d)
{
    d->px->to_pixels(x + n * g->c * d->hw, g->c, nb, d->hw, d->pa);
    d->tf->input(d->pa, d->cp, nb, g->h, g->w, g->c, d->v, d->cp, d->ev);
}

static void forward_wino(const struct bti_conv_geom *g, const float *u, const float *bias,
                         const float *x, float *y, int64_t n0, int64_t n1, float *buf)
{
    const int64_t wb = group_images(g);
    struct wino_bufs d;
    int64_t n;
    int e;
    wino_bufs_of(g, buf, &d);
    for (n = n0; n < n1; n += wb) {
        const int64_t nb = n1 - n < wb ? n1 - n : wb, nt = nb * bti_wino_tiles(g->h, g->w);
        wino_input_of(g, x, n, nb, &d);
        for (e = 0; e < 16; e++)
            bti_sgemm(g->level, BTI_NO_TRANS, BTI_NO_TRANS, nt, g->co, g->c, 1.0f, d.v + e * d.ev,
                      d.cp, u + e * g->co * g->c, g->co, 0.0f, d.m + e * d.em, d.cop);
        d.tf->output(d.m, d.cop, d.em, nb, g->h, g->w, g->co, d.pb, d.cop);
        d.px->from_pixels(d.pb, g->co, nb, d.hw, bias, y + n * g->co * d.hw);
    }
}

/* part[16][co][c] += dU; dx = the input gradient when u is set. */
static void backward_wino(const struct bti_conv_geom *g, const float *u, const float *x,
                          const float *dy, float *dx, int64_t n0, int64_t n1, float *buf,
                          float *part)
{
    const int64_t wb = group_images(g);
    struct wino_bufs d;
    int64_t n;
    int e;
    wino_bufs_of(g, buf, &d);
    for (n = n0; n < n1; n += wb) {
        const int64_t nb = n1 - n < wb ? n1 - n : wb, nt = nb * bti_wino_tiles(g->h, g->w);
        d.px->to_pixels(dy + n * g->co * d.hw, g->co, nb, d.hw, d.pb);
        d.tf->output_adjoint(d.pb, d.cop, nb, g->h, g->w, g->co, d.m, d.cop, d.em);
        wino_input_of(g, x, n, nb, &d);
        for (e = 0; e < 16; e++)
            bti_sgemm(g->level, BTI_TRANS, BTI_NO_TRANS, g->co, g->c, nt, 1.0f, d.m + e * d.em,
                      d.cop, d.v + e * d.ev, d.cp, 1.0f, part + e * g->co * g->c, g->c);
        if (!u)
            continue;
        for (e = 0; e < 16; e++) /* dV over V */
            bti_sgemm(g->level, BTI_NO_TRANS, BTI_NO_TRANS, nt, g->c, g->co, 1.0f, d.m + e * d.em,
                      d.cop, u + e * g->co * g->c, g->c, 0.0f, d.v + e * d.ev, d.cp);
        memset(d.pa, 0, (size_t)(nb * d.hw * d.cp) * sizeof *d.pa);
        d.tf->input_adjoint(d.v, d.cp, d.ev, nb, g->h, g->w, g->c, d.pa, d.cp);
        d.px->from_pixels(d.pa, g->c, nb, d.hw, NULL, dx + n * g->c * d.hw);
    }
}

static void wino_forward(bt_layer *l, const struct bti_conv_geom *g, const float *x, float *y)
{
    const float *w = l->value[0]->data, *bias = bti_conv2d_bias(l);
    const size_t stride = wn_stride(g);
    const struct bti_wino_ops *tf = bti_wino_ops_of(g->level);
    float *base = (float *)l->scratch->p, *u = base + (size_t)g->threads * stride;
#pragma omp parallel num_threads(g->threads)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        tf->weights(w, g->co, g->c, 1, g->c * t / tn, g->c * (t + 1) / tn, u);
#pragma omp barrier
        forward_wino(g, u, bias, x, y, g->n * t / tn, g->n * (t + 1) / tn,
                     base + (size_t)t * stride);
    }
}

static void wino_backward(bt_layer *l, const struct bti_conv_geom *g, const float *x,
                          const float *dy, float *dx)
{
    const float *w = l->value[0]->data;
    const size_t stride = wn_stride(g), poff = part_at(g);
    const int nt = g->threads;
    const struct bti_wino_ops *tf = bti_wino_ops_of(g->level);
    float *base = (float *)l->scratch->p, *u = base + (size_t)nt * stride, *dw = l->grad[0]->data;
    int ran = 1;
    /* parts of the team that ran (bti_conv_sum_parts) */
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *buf = base + (size_t)t * stride, *part = buf + poff;
        if (t == 0)
            ran = tn;
        memset(part, 0, wn_u(g) * sizeof *part);
        if (dx) {
            tf->weights(w, g->co, g->c, 0, g->co * t / tn, g->co * (t + 1) / tn, u);
#pragma omp barrier
        }
        backward_wino(g, dx ? u : NULL, x, dy, dx, g->n * t / tn, g->n * (t + 1) / tn, buf, part);
    }
    /* the threads' partial sums, added in thread order: deterministic for a thread count */
#pragma omp parallel num_threads(nt) if ((int64_t)wn_u(g) * nt > BTI_PAR_MIN)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        tf->weight_grad(base + poff, stride, ran, g->co, g->c, g->co * t / tn, g->co * (t + 1) / tn,
                        dw);
    }
}

const struct bti_conv_form bti_conv_winograd = {
    "winograd", wino_fits, wino_wins, wino_workspace, wino_forward, wino_backward,
};
