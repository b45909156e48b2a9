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
 * backward recomputes im2col, which is cheap next to the GEMMs. In the
 * per-image strategy, stride-1 "same" convolutions skip im2col and col2im
 * altogether: the padded-grid form below reads shifted windows of a padded
 * copy of the input through the private kernels' row offsets. Over AVX-512,
 * 3x3 convolutions with padding 1 and stride 1 or 2 (a ResNet's) take the
 * direct form instead (conv_direct.c): no GEMM, no im2col, no junk outputs;
 * at stride 1 its flat form (conv_flat.c) for few channels, and the Winograd
 * form (conv_winograd.c: transforms around 16 GEMMs) for many. */
#include "kernels/blas.h"
#include "kernels/conv_direct.h"
#include "kernels/conv_planes.h"
#include "kernels/conv_winograd.h"
#include "layers/layer.h"
#include "kernels/sgemm.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define CONV_CHUNK_COLS 1024                 /* default output columns per GEMM */
#define CONV_MAX_COL_FLOATS ((int64_t)1 << 22) /* 16 MiB of im2col per chunk */
#define PB_COLS 512                          /* per-image strategy: columns per group */
#define WINO_TILES 256                       /* Winograd form: tiles per group */
#define WINO_MAX_FLOATS ((int64_t)1 << 24)   /* and at most 64 MiB of transforms per thread */
#define PB_MAX_COL_FLOATS ((int64_t)1 << 20) /* 4 MiB of im2col per thread */
#define GRID_MAX_OVERHEAD 1.35 /* padded-grid outputs per real output, at most */

struct geom {
    int64_t n, c, h, w, co, ho, wo, p, k2; /* k2 = K = c*k*k */
    int k, s, pad;
    int64_t b;  /* images per chunk */
    int64_t pb; /* images per GEMM group in the per-image strategy */
    int identity;
    /* padded-grid ("implicit GEMM") form of a stride-1 "same" convolution in the
     * per-image strategy: images padded to hp x wp planes, pb per group, laid
     * out [channel][image][hp][wp] with a channel stride of lcap floats */
    int grid;
    int64_t hp, wp, lcap, tail;
    /* direct form (conv_direct.c) of a 3x3 pad-1 convolution, stride 1 or 2,
     * in the per-image strategy: no padding copy but for the flat form, no
     * junk pixels */
    int direct;
    int flat; /* its flat form (conv_flat.c) for the stride-1 convolutions */
    /* Winograd F(2x2, 3x3) form (conv_winograd.c) of a 3x3 stride-1 pad-1
     * convolution, per image: wb images (wt tiles) per group */
    int wino;
    int64_t wb, wt;
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
    /* Per-image strategy: small images are grouped so that each GEMM has at
     * least PB_COLS columns (the weight gradient reduces over them; chunk_cols
     * when set), within PB_MAX_COL_FLOATS of im2col per thread. */
    g->pb = ((l->chunk_cols > 0 ? l->chunk_cols : PB_COLS) + g->p - 1) / g->p;
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
    g->grid = 0;
    g->direct = 0;
    g->flat = 0;
    g->wino = 0;
    /* Winograd groups: enough tiles for the GEMMs' rows */
    g->wb = (WINO_TILES + bti_wino_tiles(g->h, g->w) - 1) / bti_wino_tiles(g->h, g->w);
    if (g->wb > g->n)
        g->wb = g->n;
    g->wt = g->wb * bti_wino_tiles(g->h, g->w);
}

/* The padded-grid form needs a private kernel (it reads B through row offsets),
 * stride 1 and "same" padding with an odd kernel; it computes hp*wp outputs per
 * image instead of h*w, so it is used when that overhead is small (mode 3
 * forces it wherever it applies, for tests). */
static int grid_ok(const bt_layer *l, const struct geom *g)
{
    if (g->s != 1 || g->k < 2 || g->k % 2 == 0 || g->pad != (g->k - 1) / 2 ||
        bti_sgemm_level() == BTI_SGEMM_BLAS)
        return 0;
    if (l->conv_mode == 3)
        return 1;
    return (double)(g->hp * g->wp) <= GRID_MAX_OVERHEAD * (double)(g->h * g->w);
}

/* The direct form: AVX-512, a 3x3 kernel, padding 1, stride 1 or 2. Its tiles
 * fill registers of 16 output channels (input channels for the input
 * gradient), so it is chosen when neither count leaves more than a third of
 * the lanes idle: the RGB stem (3 channels, 13 of 16 lanes idle in the input
 * gradient) measured 1.8x slower than the GEMM forms. Modes 5-6 take it wherever
 * it applies (tests); modes 3 and 4 never (tests and benchmarks). */
static int lanes_ok(int64_t ch) { return 2 * bti_direct_round(ch) <= 3 * ch; }

/* A stem (1-4 input channels) at stride 1: its forward and input gradient go
 * to the flat form, whose registers hold pixels, and its weight gradient to
 * the channel tiles over its outputs. */
static int stem(const struct geom *g) { return g->s == 1 && g->c <= 4; }

static int direct_ok(const bt_layer *l, const struct geom *g)
{
    if (g->k != 3 || (g->s != 1 && g->s != 2) || g->pad != 1 || l->conv_mode == 3 ||
        l->conv_mode == 4 || bti_sgemm_level() != BTI_SGEMM_AVX512)
        return 0;
    return l->conv_mode >= 5 || ((lanes_ok(g->c) || stem(g)) && lanes_ok(g->co));
}

/* The Winograd form: 3x3, stride 1, padding 1, AVX-512 (its transforms; the
 * GEMMs are bti_sgemm's). It computes whole 2x2 tiles, padding taps included
 * (odd sizes: a junk row and column), and its GEMMs want many channels.
 * Measured (1 thread, forward + backward, fastest of 10-12 calls alternating,
 * Winograd / direct): 128-512 channels at 4x4-16x16 0.61-0.79, 256 at 7x7
 * 0.63, 128 at 7x7 1.02; 64 channels at 32x32 0.85-0.94, 16x16 0.98, 8x8
 * 1.05, 7x7 1.36; 32 channels 1.10-1.19 (the flat form's 1.31-1.55). Mode 7
 * takes it wherever it applies (tests), modes 3-6 never. */
static int wino_ok(const bt_layer *l, const struct geom *g)
{
    const int64_t ch = g->c < g->co ? g->c : g->co;
    if (g->k != 3 || g->s != 1 || g->pad != 1 || (l->conv_mode >= 3 && l->conv_mode <= 6) ||
        bti_sgemm_level() != BTI_SGEMM_AVX512)
        return 0;
    /* big images: V and M of a single image may not exceed WINO_MAX_FLOATS */
    if (16 * bti_wino_tiles(g->h, g->w) * (bti_direct_round(g->c) + bti_direct_round(g->co)) >
        WINO_MAX_FLOATS)
        return 0;
    return l->conv_mode == 7 || ch >= 128 || (ch >= 64 && g->h * g->w >= 32 * 32);
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Strategy: one GEMM per chunk with the BLAS's threads (mode 1), or images
 * spread over OpenMP threads with a single-threaded BLAS each (mode 2). */
static int per_image(const bt_layer *l, const struct geom *g)
{
    if (l->conv_mode == 1 || g->n < 2)
        return 0;
    if (l->conv_mode >= 2)
        return 1;
    if (direct_ok(l, g) || wino_ok(l, g)) /* image group by image group, with no BLAS */
        return g->n >= l->threads;
    /* One thread: the private kernels image group by image group when they beat
     * the BLAS: always over OpenBLAS's Prescott kernels (4-6x), and over its good
     * kernels up to 128 output channels, where packing both operands costs it as
     * much as the arithmetic. At 256-512 channels, over AVX-512 too: the 1x1
     * stride-2 downsamplings of a ResNet (128->256, 256->512) took 1.01-1.21x
     * longer as chunked GEMMs on OpenBLAS's SkylakeX kernels than per image
     * (fastest of 20 calls alternating); the AVX2 kernels there took 2.1x
     * longer than SkylakeX, so the BLAS keeps those. */
    if (l->threads < 2)
        return bti_sgemm_prefer_private() || bti_sgemm_level() == BTI_SGEMM_AVX512 ||
               (bti_sgemm_level() != BTI_SGEMM_BLAS && g->co <= 128);
    /* Measured (tests/bench/bench_layers.c, 2 threads, shared machine): BLAS
     * threads alternating with OpenMP loops chunk after chunk lose badly as
     * soon as the cores are contended (10-50x on the small-ResNet shapes), and
     * per-image work wins or ties on every ResNet shape; so spread images
     * whenever there are enough of them. */
    return g->n >= l->threads;
}

/* The flat form of the direct convolutions at stride 1 (the forward and the
 * input gradient; the weight gradient keeps its tiles) for few channels, where
 * the channel tiles have one or two registers of outputs and broadcast an
 * input float for every one or two FMAs. It computes every tap and the two
 * junk lanes of each row, so small planes go to the channel tiles' classes.
 * Measured (1 thread, forward + backward, fastest of 40 calls alternating,
 * flat / channel tiles): 16 channels at 28x28 0.89, 16x16 0.79-0.88, 8x8
 * 0.88; 32 channels at 28x28 0.96, 14x14 0.96, 16x16 0.93, but 8x8 1.05; 48
 * at 14x14 1.00, 64 at 16x16 1.01, 64 at 7x7 1.25. Mode 5 never takes it,
 * mode 6 wherever it applies. */
static int flat_ok(const bt_layer *l, const struct geom *g)
{
    const int64_t ch = g->c > g->co ? g->c : g->co;
    if (g->s != 1 || l->conv_mode == 5)
        return 0;
    return l->conv_mode == 6 || ch <= 16 || (ch <= 32 && g->h * g->w >= 14 * 14) || stem(g);
}

/* Forms (l->conv_per_image): 0 chunked GEMMs on BLAS threads, 1 per image with
 * GEMMs, 2 per image in the padded-grid form, 3 per image in the direct form,
 * 4 the same with its flat form at stride 1, 5 per image in the Winograd form. */
static void set_form(struct geom *g, int form)
{
    g->grid = form == 2;
    g->direct = form == 3 || form == 4;
    g->flat = form == 4;
    g->wino = form == 5;
}

static int choose_form(const bt_layer *l, struct geom *g)
{
    const int form = !per_image(l, g) ? 0
                     : wino_ok(l, g)   ? 5
                     : direct_ok(l, g) ? (flat_ok(l, g) ? 4 : 3)
                     : grid_ok(l, g)   ? 2
                                       : 1;
    set_form(g, form);
    return form;
}

static size_t col_floats(const struct geom *g)
{
    return g->b == 1 && g->identity ? 0 : round16((size_t)(g->k2 * g->b * g->p));
}

static size_t tmp_floats(const struct geom *g)
{
    return g->b == 1 ? 0 : round16((size_t)(g->co * g->b * g->p));
}

/* Per thread: a group's col (K x pb*P), its output or gradient rows (Co x pb*P)
 * and a private dW (Co x K). */
static size_t pi_col(const struct geom *g) { return round16((size_t)(g->k2 * g->pb * g->p)); }
static size_t pi_tmp(const struct geom *g) { return round16((size_t)(g->co * g->pb * g->p)); }
/* Grid form, per thread: xpad, dypad, the GEMM output on the grid, dW part, and
 * the row offsets of xpad (k2) and of dypad (co*k*k) as int64. After all threads:
 * the flipped, transposed weights for dx. */
static size_t gr_x(const struct geom *g) { return round16((size_t)(g->c * g->lcap + g->tail)); }
static size_t gr_dy(const struct geom *g) { return round16((size_t)(g->co * g->lcap + g->tail)); }
static size_t gr_out(const struct geom *g)
{
    return round16((size_t)((g->co > g->c ? g->co : g->c) * g->lcap));
}
static size_t gr_part(const struct geom *g) { return round16((size_t)(g->co * g->k2)); }
static size_t gr_offs(const struct geom *g)
{
    return round16((size_t)(2 * (g->k2 + g->co * g->k * g->k)));
}

/* Direct form, per thread: the flat form's padded buffer (x or dy, as the grid
 * form's), one pixel-major buffer (dy for the weight gradient, then the conv
 * outputs), the dW part [c][9][co rounded], a pixel list (offsets and rows,
 * int64) and the flat form's stores (int64). After all threads: the packed
 * weights. Pixel lists cover the larger of the input and output planes (the
 * stride-2 input gradient has one row per input pixel). */
static size_t dr_pad(const struct geom *g)
{
    return !g->flat ? 0 : gr_x(g) > gr_dy(g) ? gr_x(g) : gr_dy(g);
}
static int64_t dr_rows(const struct geom *g)
{
    return bti_direct_list_len(g->pb * (g->p > g->h * g->w ? g->p : g->h * g->w));
}
static size_t dr_pix(const struct geom *g)
{
    const int64_t cop = bti_direct_round(g->co), cip = bti_direct_round(g->c);
    return round16((size_t)(dr_rows(g) * (cop > cip ? cop : cip)));
}
static size_t dr_part(const struct geom *g)
{
    return round16((size_t)(g->c * 9 * bti_direct_round(g->co)));
}
static size_t dr_weights(const struct geom *g)
{
    const int64_t a = bti_direct_round(g->co) * g->c, b = bti_direct_round(g->c) * g->co;
    return round16((size_t)(9 * (a > b ? a : b)));
}

/* Winograd form, per thread: two pixel-major buffers (x and y in the forward;
 * x then dx, and dy, in the backward), the transformed input V (and in the
 * backward its gradient, in place), the transformed output M (or its
 * gradient) and the dU part [16][co][c]. After all threads: U [16][co][c]. */
static size_t wn_pix(const struct geom *g)
{
    const int64_t cp = bti_direct_round(g->c), cop = bti_direct_round(g->co);
    return round16((size_t)(g->wb * g->h * g->w * (cp > cop ? cp : cop)));
}
static size_t wn_v(const struct geom *g)
{
    return round16((size_t)(16 * g->wt * bti_direct_round(g->c)));
}
static size_t wn_m(const struct geom *g)
{
    return round16((size_t)(16 * g->wt * bti_direct_round(g->co)));
}
static size_t wn_u(const struct geom *g) { return round16((size_t)(16 * g->co * g->c)); }

/* Where a thread's dW part starts in its buffer, in each per-image form. */
static size_t part_at(const struct geom *g)
{
    if (g->wino)
        return 2 * wn_pix(g) + wn_v(g) + wn_m(g);
    if (g->direct)
        return dr_pad(g) + dr_pix(g);
    if (g->grid)
        return gr_x(g) + gr_dy(g) + gr_out(g);
    return pi_col(g) + pi_tmp(g);
}

static size_t pi_stride(const struct geom *g)
{
    if (g->wino)
        return 2 * wn_pix(g) + wn_v(g) + wn_m(g) + wn_u(g);
    if (g->direct)
        return dr_pad(g) + dr_pix(g) + dr_part(g) +
               round16((size_t)(4 * dr_rows(g) + 2 * bti_flat_runs(g->h, g->wp)));
    if (g->grid)
        return gr_x(g) + gr_dy(g) + gr_out(g) + gr_part(g) + gr_offs(g);
    return pi_col(g) + pi_tmp(g) + round16((size_t)(g->co * g->k2));
}

static size_t per_image_floats(const bt_layer *l, const struct geom *g)
{
    if (g->wino)
        return (size_t)l->threads * pi_stride(g) + wn_u(g);
    if (g->direct)
        return (size_t)l->threads * pi_stride(g) + dr_weights(g);
    if (g->grid)
        return (size_t)l->threads * pi_stride(g) + round16((size_t)(g->c * g->co * g->k * g->k));
    return (size_t)l->threads * pi_stride(g);
}

static bt_status conv_prepare(bt_layer *l, const bt_tensor *x, int training, int groups,
                              const char *fn)
{
    struct geom g;
    (void)training;
    (void)groups;
    geom_init(l, x->shape, &g);
    (void)bti_sgemm_level(); /* detect the CPU here, before threads call bti_sgemm */
    if (choose_form(l, &g))
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
            int64_t lo, hi;
            valid_range(g->w, g->wo, g->s, g->pad, j, &lo, &hi);
            bti_im2col_plane(dst, src, g->h, g->w, g->ho, g->wo, g->s, g->pad, i, j, lo, hi);
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
                    const float *src = col + ((c * g->k + i) * g->k + j) * ld + b * g->p;
                    int64_t lo, hi;
                    valid_range(g->w, g->wo, g->s, g->pad, j, &lo, &hi);
                    bti_col2im_plane(src, plane, g->h, g->w, g->ho, g->wo, g->s, g->pad, i, j,
                                     lo, hi);
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

/* Images [n0, n1) in groups of pb: im2col of the group into col[K][nb*P] (or
 * the image itself for an identity 1x1 alone), then one GEMM. */
static void forward_images(const struct geom *g, const float *w, const float *bias, const float *x,
                           float *y, int64_t n0, int64_t n1, float *col, float *tmp)
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
        bti_sgemm(BTI_NO_TRANS, BTI_NO_TRANS, g->co, cols, g->k2, 1.0f, w, g->k2, colp, cols,
                  0.0f, nb == 1 ? yc : tmp, cols);
        if (nb == 1) {
            if (bias)
                add_bias(yc, bias, g->co, g->p);
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

/* ---- padded-grid form (stride 1, "same" padding) ----------------------------
 * Images are copied into zero-padded planes pad[ch][b][hp][wp] (channel stride
 * lcap). Output q = b*hp*wp + y*wp + x of the grid reads input row (c, i, j) at
 * pad[c] + i*wp + j + q, a contiguous run: the GEMM reads B through row offsets
 * and no im2col is built. Grid columns with x >= w or y >= h are junk and are
 * dropped (forward) or meet zeros (weight gradient); every float the kernels
 * read is written first, so junk stays finite. The input gradient is the same
 * kind of convolution of the padded dy with the flipped, transposed weights. */

/* src [nb][ch][h][w] (image stride ch*h*w) into dst [ch][b][hp][wp]; zeros the
 * margin the GEMMs read past the last image. */
static void grid_pack(const struct geom *g, const float *restrict src, int64_t ch, int64_t nb,
                      float *restrict dst)
{
    const int64_t plane = g->hp * g->wp;
    int64_t c, z, end;
    bti_pad_planes(dst, g->lcap, src, ch, nb, g->h, g->w, g->pad);
    for (c = 0; c < ch; c++) {
        float *restrict dc = dst + c * g->lcap;
        /* reads run up to tail floats past image nb - 1 */
        end = c == ch - 1 ? g->lcap + g->tail : g->lcap;
        z = nb * plane + g->tail < end ? nb * plane + g->tail : end;
        if (z > nb * plane)
            memset(dc + nb * plane, 0, (size_t)(z - nb * plane) * sizeof *dc);
    }
}

/* Row offsets of a padded buffer with ch channels: (c, i, j) -> c*lcap + i*wp + j. */
static void grid_offsets(const struct geom *g, int64_t ch, int64_t *off)
{
    int64_t c;
    int i, j;
    for (c = 0; c < ch; c++)
        for (i = 0; i < g->k; i++)
            for (j = 0; j < g->k; j++)
                off[(c * g->k + i) * g->k + j] = c * g->lcap + (int64_t)i * g->wp + j;
}

/* The grid rows out[ch][b*plane + y*wp + x] into dst [nb][ch][h][w] (+ bias). */
static void grid_unpack(const struct geom *g, const float *restrict out, int64_t ch, int64_t nb,
                        const float *bias, float *restrict dst)
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

static void forward_grid(const struct geom *g, const float *w, const float *bias, const float *x,
                         float *y, int64_t n0, int64_t n1, float *buf)
{
    float *xp = buf, *out = xp + gr_x(g) + gr_dy(g);
    int64_t *offx = (int64_t *)(out + gr_out(g) + gr_part(g));
    const int64_t plane = g->hp * g->wp, chw = g->c * g->h * g->w;
    int64_t n;
    grid_offsets(g, g->c, offx);
    for (n = n0; n < n1; n += g->pb) {
        const int64_t nb = n1 - n < g->pb ? n1 - n : g->pb;
        grid_pack(g, x + n * chw, g->c, nb, xp);
        bti_sgemm_rows(BTI_NO_TRANS, BTI_NO_TRANS, g->co, nb * plane, g->k2, 1.0f, w, g->k2, xp,
                       offx, 0.0f, out, g->lcap);
        grid_unpack(g, out, g->co, nb, bias, y + n * g->co * g->p);
    }
}

/* dW part += dy_grid x xpad-rows^T; dx = unpack(wt x dypad-rows). wt[c][(o,i,j)] =
 * W[o][c][k-1-i][k-1-j], prepared once by the caller. */
static void backward_grid(const struct geom *g, const float *wt, const float *x, const float *dy,
                          float *dx, int64_t n0, int64_t n1, float *buf, float *part)
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
        grid_pack(g, x + n * chw, g->c, nb, xp);
        grid_pack(g, dy + n * g->co * g->p, g->co, nb, dp);
        bti_sgemm_rows(BTI_NO_TRANS, BTI_TRANS, g->co, g->k2, nb * plane, 1.0f, dyg, g->lcap, xp,
                       offx, 1.0f, part, g->k2);
        if (!dx)
            continue;
        bti_sgemm_rows(BTI_NO_TRANS, BTI_NO_TRANS, g->c, nb * plane, g->co * kk, 1.0f, wt,
                       g->co * kk, dp, offd, 0.0f, out, g->lcap);
        grid_unpack(g, out, g->c, nb, NULL, dx + n * chw);
    }
}

static void flip_weights(const struct geom *g, const float *restrict w, float *restrict wt)
{
    const int64_t kk = (int64_t)g->k * g->k;
    int64_t o, c, t;
    for (c = 0; c < g->c; c++)
        for (o = 0; o < g->co; o++)
            for (t = 0; t < kk; t++)
                wt[c * g->co * kk + o * kk + t] = w[(o * g->c + c) * kk + (kk - 1 - t)];
}

/* ---- direct form (3x3, padding 1, stride 1 or 2) -----------------------------
 * The input's planes, read in place pixel by pixel through pixel lists split
 * by the taps inside the image, by the tiles of conv_direct.c; outputs come
 * back pixel-major and are transposed into NCHW. At stride 1 the input
 * gradient is the same kind of convolution of dy with the mirrored,
 * transposed weights. At stride 2, an input pixel (y, x) receives dy at
 * (y/2, x/2) and its neighbours through the kernel rows and columns of y's and
 * x's parity only (row 1 when y is even; rows 2 and 0 when odd, reading dy
 * rows y/2 and y/2 + 1): four classes of pixels, each a convolution with 1, 2,
 * 2 or 4 taps of dy read in place, written to its pixels' rows. */

/* All nine kernel entries in order (mirrored: the input gradient's), to pack
 * the weights by; the pixel classes give the offsets the tiles read at. */
static void taps_all(int mirror, struct bti_taps *tp)
{
    int t;
    tp->n = tp->slots = 9;
    for (t = 0; t < 9; t++) {
        tp->w[t] = mirror ? 8 - t : t;
        tp->slot[t] = t;
    }
}

/* Stride 2, class (py, px): the taps of dy (rows of wo floats) from (y/2, x/2).
 * Kernel row 1 (even y) and row 2 (odd y) read that dy row, row 0 (odd y) the
 * next one; columns alike. */
static void taps_class(int py, int px, int64_t wo, struct bti_taps *tp)
{
    static const int rows[2][2] = {{1, 1}, {2, 0}}; /* kernel rows (cols) by parity */
    int a, b;
    tp->n = 0;
    for (a = 0; a < 1 + py; a++)
        for (b = 0; b < 1 + px; b++) {
            const int i = rows[py][a], j = rows[px][b];
            tp->off[tp->n] = (i == 0 ? wo : 0) + (j == 0 ? 1 : 0);
            tp->slot[tp->n] = tp->n;
            tp->w[tp->n++] = i * 3 + j;
        }
    tp->slots = tp->n;
}

/* Weights packed for the forward (dx 0) or the input gradient (dx 1: stride 1
 * one set; stride 2 the four classes one after the other), for the flat form
 * or the channel tiles. This thread's share. */
static void pack_weights(const struct geom *g, const float *w, int dx, float *wpk, int t, int tn)
{
    struct bti_taps tp;
    int cls;
    if (g->flat) {
        bti_flat_pack(w, g->co, g->c, dx, wpk, t, tn);
        return;
    }
    if (!dx || g->s == 1) {
        taps_all(dx, &tp);
        bti_direct_pack(w, g->co, g->c, dx, &tp, wpk, t, tn);
        return;
    }
    for (cls = 0; cls < 4; cls++) {
        taps_class(cls / 2, cls % 2, g->wo, &tp);
        bti_direct_pack(w, g->co, g->c, 1, &tp, wpk, t, tn);
        wpk += bti_direct_round(g->c) * g->co * tp.n;
    }
}

/* A thread's buffers in the direct form (the layout of pi_stride). */
struct direct_bufs {
    float *pad, *pix; /* pad (flat form): x's planes in the forward, dy's in the backward */
    int64_t *off, *rows;
    int64_t *st; /* the flat form's stores, once per call */
};

static void direct_bufs_of(const struct geom *g, float *buf, struct direct_bufs *d)
{
    d->pad = buf;
    d->pix = buf + dr_pad(g);
    d->off = (int64_t *)(buf + part_at(g) + dr_part(g));
    d->rows = d->off + dr_rows(g);
    d->st = d->rows + dr_rows(g);
    if (g->flat)
        bti_flat_stores(g->h, g->w, d->st);
}

/* The forward's convolution of nb images src [nb][cin][h][w] into dst
 * [nb][cout][ho][wo] (+ bias), or the stride-1 input gradient's (dy in, dx
 * out: the same pixels and taps, wpk the mirrored weights). The flat form
 * reads padded planes and writes NCHW; the channel tiles read src in place,
 * the output pixels by class (the taps inside the image only), into
 * pixel-major rows, then transposed. Reading in place instead of padding
 * first measured (1 thread, fastest of 20 calls alternating) 0.90-0.98 of
 * the forward's time, and never slower: the classes' shorter runs of tiles
 * cost less than the copy. */
static void conv_image(const struct geom *g, const float *src, int64_t cin, int64_t cout,
                       const float *wpk, const float *bias, int64_t nb,
                       const struct direct_bufs *d, float *dst)
{
    struct bti_pixel_classes pc;
    if (g->flat) {
        grid_pack(g, src, cin, nb, d->pad);
        bti_flat_conv(d->pad, g->lcap, g->hp * g->wp, g->wp, g->h, nb, cin, wpk, cout, d->st,
                      bias, dst);
        return;
    }
    bti_direct_classes(nb, g->h, g->w, g->ho, g->wo, cin * g->h * g->w, g->w, g->s, d->off,
                       d->rows, &pc);
    bti_direct_conv(src, g->h * g->w, cin, d->off, d->rows, &pc, wpk, cout, d->pix);
    bti_direct_from_pixels(d->pix, cout, nb, g->p, bias, dst);
}

static void forward_direct(const struct geom *g, const float *wpk, const float *bias,
                           const float *x, float *y, int64_t n0, int64_t n1, float *buf)
{
    struct direct_bufs d;
    int64_t n;
    direct_bufs_of(g, buf, &d);
    for (n = n0; n < n1; n += g->pb)
        conv_image(g, x + n * g->c * g->h * g->w, g->c, g->co, wpk, bias,
                   n1 - n < g->pb ? n1 - n : g->pb, &d, y + n * g->co * g->p);
}

/* Stride 2, class (py, px): its pixels (y, x) split by whether dy row y/2 + 1
 * (column x/2 + 1) exists, which kernel row (column) 0 reads: the last odd row
 * of an even height, and the last odd column of an even width, do without it.
 * Up to 4 sub-classes, each with the taps of the full class it keeps (packed
 * weights read through their slots). Returns the full class's taps, by which
 * its packed weights are laid out (pack_weights). */
static int dx_class(const struct geom *g, int py, int px, int64_t nb, int64_t *off,
                     int64_t *rows, struct bti_pixel_classes *pc)
{
    const int64_t plane = g->co * g->ho * g->wo;
    /* rows (columns) of the class from ys (xs) on have no dy row y/2 + 1: the
     * odd ones from 2*ho - 1 */
    const int64_t ys = py ? 2 * g->ho - 1 : g->h, xs = px ? 2 * g->wo - 1 : g->w;
    struct bti_taps full;
    int64_t b, y, x, q = 0;
    int lr, lc, t;
    taps_class(py, px, g->wo, &full);
    pc->n = 0;
    for (lr = 0; lr < 2; lr++)     /* rows with dy row y/2 + 1 (lr 0), without (lr 1) */
        for (lc = 0; lc < 2; lc++) { /* columns alike */
            struct bti_taps *tp = &pc->tp[pc->n];
            const int64_t start = q;
            tp->n = 0;
            tp->slots = full.slots;
            for (t = 0; t < full.n; t++)
                if (!(lr && full.w[t] / 3 == 0) && !(lc && full.w[t] % 3 == 0)) {
                    tp->off[tp->n] = full.off[t];
                    tp->slot[tp->n] = full.slot[t];
                    tp->w[tp->n++] = full.w[t];
                }
            for (b = 0; b < nb; b++)
                for (y = py; y < g->h; y += 2)
                    if ((y >= ys) == lr)
                        for (x = lc ? xs : px; x < (lc ? g->w : xs < g->w ? xs : g->w); x += 2) {
                            off[q] = b * plane + y / 2 * g->wo + x / 2;
                            rows[q++] = (b * g->h + y) * g->w + x;
                        }
            if (q == start)
                continue;
            pc->start[pc->n] = start;
            pc->count[pc->n] = q - start;
            bti_direct_slack(q - start, off + start, rows + start);
            q += BTI_DIRECT_SLACK;
            pc->n++;
        }
    return full.slots;
}

/* Stride 2: dx rows (pixel-major, one per input pixel) from dy read in place. */
static void dx_stride2(const struct geom *g, const float *wpk, const float *dy, int64_t nb,
                       const struct direct_bufs *d)
{
    int cls;
    for (cls = 0; cls < 4; cls++) {
        struct bti_pixel_classes pc;
        const int taps = dx_class(g, cls / 2, cls % 2, nb, d->off, d->rows, &pc);
        if (pc.n > 0)
            bti_direct_conv(dy, g->ho * g->wo, g->co, d->off, d->rows, &pc, wpk, g->c, d->pix);
        wpk += bti_direct_round(g->c) * g->co * taps;
    }
}

/* part[c][9][co rounded] += the weight gradient; dx = the input gradient when wpk is set. */
static void backward_direct(const struct geom *g, const float *wpk, const float *x,
                            const float *dy, float *dx, int64_t n0, int64_t n1, float *buf,
                            float *part)
{
    struct direct_bufs d;
    struct bti_pixel_classes pc;
    int64_t n;
    direct_bufs_of(g, buf, &d);
    for (n = n0; n < n1; n += g->pb) {
        const int64_t nb = n1 - n < g->pb ? n1 - n : g->pb;
        const float *dyc = dy + n * g->co * g->p;
        /* the weight gradient reads x as it is: its classes skip the outside taps */
        bti_direct_classes(nb, g->h, g->w, g->ho, g->wo, g->c * g->h * g->w, g->w, g->s, d.off,
                           d.rows, &pc);
        bti_direct_to_pixels(dyc, g->co, nb, g->p, d.pix);
        bti_direct_weight_grad(x + n * g->c * g->h * g->w, g->h * g->w, g->w, g->c, d.off, d.rows,
                               &pc, d.pix, g->co, part);
        if (!wpk)
            continue;
        if (g->s == 1) {
            conv_image(g, dyc, g->co, g->c, wpk, NULL, nb, &d, dx + n * g->c * g->h * g->w);
            continue;
        }
        dx_stride2(g, wpk, dyc, nb, &d);
        bti_direct_from_pixels(d.pix, g->c, nb, g->h * g->w, NULL, dx + n * g->c * g->h * g->w);
    }
}

/* ---- Winograd form (3x3, stride 1, padding 1) ----------------------------
 * Image groups in pixel-major rows, transformed tile by tile (conv_winograd.c);
 * per transform element e, the GEMMs M_e = V_e U_e^T (forward, U stored
 * [c][co]), dU_e += dM_e^T V_e and dV_e = dM_e U_e (backward, U stored
 * [co][c]) over the group's tiles. */
struct wino_bufs {
    float *pa, *pb, *v, *m;   /* pixel rows (two), V, M (part_at: the dW part) */
    int64_t cp, cop, hw;      /* channels rounded to registers, pixels per image */
    int64_t ev, em;           /* floats between transform elements in v and m */
};

static void wino_bufs_of(const struct geom *g, float *buf, struct wino_bufs *d)
{
    d->pa = buf;
    d->pb = d->pa + wn_pix(g);
    d->v = d->pb + wn_pix(g);
    d->m = d->v + wn_v(g);
    d->cp = bti_direct_round(g->c);
    d->cop = bti_direct_round(g->co);
    d->hw = g->h * g->w;
    d->ev = g->wt * d->cp;
    d->em = g->wt * d->cop;
}

/* Images [n, n + nb) of x into V, through pixel-major rows in pa. */
static void wino_input_of(const struct geom *g, const float *x, int64_t n, int64_t nb,
                          const struct wino_bufs *d)
{
    bti_direct_to_pixels(x + n * g->c * d->hw, g->c, nb, d->hw, d->pa);
    bti_wino_input(d->pa, d->cp, nb, g->h, g->w, g->c, d->v, d->cp, d->ev);
}

static void forward_wino(const struct geom *g, const float *u, const float *bias, const float *x,
                         float *y, int64_t n0, int64_t n1, float *buf)
{
    struct wino_bufs d;
    int64_t n;
    int e;
    wino_bufs_of(g, buf, &d);
    for (n = n0; n < n1; n += g->wb) {
        const int64_t nb = n1 - n < g->wb ? n1 - n : g->wb, nt = nb * bti_wino_tiles(g->h, g->w);
        wino_input_of(g, x, n, nb, &d);
        for (e = 0; e < 16; e++)
            bti_sgemm(BTI_NO_TRANS, BTI_NO_TRANS, nt, g->co, g->c, 1.0f, d.v + e * d.ev, d.cp,
                      u + e * g->co * g->c, g->co, 0.0f, d.m + e * d.em, d.cop);
        bti_wino_output(d.m, d.cop, d.em, nb, g->h, g->w, g->co, d.pb, d.cop);
        bti_direct_from_pixels(d.pb, g->co, nb, d.hw, bias, y + n * g->co * d.hw);
    }
}

/* part[16][co][c] += dU; dx = the input gradient when u is set. */
static void backward_wino(const struct geom *g, const float *u, const float *x, const float *dy,
                          float *dx, int64_t n0, int64_t n1, float *buf, float *part)
{
    struct wino_bufs d;
    int64_t n;
    int e;
    wino_bufs_of(g, buf, &d);
    for (n = n0; n < n1; n += g->wb) {
        const int64_t nb = n1 - n < g->wb ? n1 - n : g->wb, nt = nb * bti_wino_tiles(g->h, g->w);
        bti_direct_to_pixels(dy + n * g->co * d.hw, g->co, nb, d.hw, d.pb);
        bti_wino_output_adjoint(d.pb, d.cop, nb, g->h, g->w, g->co, d.m, d.cop, d.em);
        wino_input_of(g, x, n, nb, &d);
        for (e = 0; e < 16; e++)
            bti_sgemm(BTI_TRANS, BTI_NO_TRANS, g->co, g->c, nt, 1.0f, d.m + e * d.em, d.cop,
                      d.v + e * d.ev, d.cp, 1.0f, part + e * g->co * g->c, g->c);
        if (!u)
            continue;
        for (e = 0; e < 16; e++) /* dV over V */
            bti_sgemm(BTI_NO_TRANS, BTI_NO_TRANS, nt, g->c, g->co, 1.0f, d.m + e * d.em, d.cop,
                      u + e * g->co * g->c, g->c, 0.0f, d.v + e * d.ev, d.cp);
        memset(d.pa, 0, (size_t)(nb * d.hw * d.cp) * sizeof *d.pa);
        bti_wino_input_adjoint(d.v, d.cp, d.ev, nb, g->h, g->w, g->c, d.pa, d.cp);
        bti_direct_from_pixels(d.pa, g->c, nb, d.hw, NULL, dx + n * g->c * d.hw);
    }
}

static void forward_per_image(bt_layer *l, const struct geom *g, const float *x, float *y)
{
    const float *w = l->value[0]->data, *bias = l->has_bias ? l->value[1]->data : NULL;
    const size_t stride = pi_stride(g);
    float *base = (float *)l->scratch->p, *wpk = base + (size_t)l->threads * stride;
    bti_blas_set_threads(1);
#pragma omp parallel num_threads(l->threads)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *col = base + (size_t)t * stride;
        if (g->wino) {
            bti_wino_weights(w, g->co, g->c, 1, g->c * t / tn, g->c * (t + 1) / tn, wpk);
#pragma omp barrier
            forward_wino(g, wpk, bias, x, y, g->n * t / tn, g->n * (t + 1) / tn, col);
        } else if (g->direct) {
            pack_weights(g, w, 0, wpk, t, tn);
#pragma omp barrier
            forward_direct(g, wpk, bias, x, y, g->n * t / tn, g->n * (t + 1) / tn, col);
        } else if (g->grid)
            forward_grid(g, w, bias, x, y, g->n * t / tn, g->n * (t + 1) / tn, col);
        else
            forward_images(g, w, bias, x, y, g->n * t / tn, g->n * (t + 1) / tn, col,
                           col + pi_col(g));
    }
}

/* Images [n0, n1) in groups of pb: dW part += dy x col^T; dx = col2im(W^T x dy). */
static void backward_images(const struct geom *g, const float *w, const float *x, const float *dy,
                            float *dx, int64_t n0, int64_t n1, float *col, float *tmp, float *part)
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
        bti_sgemm(BTI_NO_TRANS, BTI_TRANS, g->co, g->k2, cols, 1.0f, dyc, cols, colp, cols, 1.0f,
                  part, g->k2);
        if (!dx)
            continue;
        if (g->identity && nb == 1) {
            bti_sgemm(BTI_TRANS, BTI_NO_TRANS, g->k2, cols, g->co, 1.0f, w, g->k2, dyc, cols, 0.0f,
                      dx + n * g->c * g->h * g->w, cols);
        } else {
            bti_sgemm(BTI_TRANS, BTI_NO_TRANS, g->k2, cols, g->co, 1.0f, w, g->k2, dyc, cols, 0.0f,
                      col, cols);
            col2im(g, col, nb, dx + n * g->c * g->h * g->w, 1);
        }
    }
}

/* dW += the threads' parts, in thread order, channels split over the threads. */
static void add_direct_parts(const struct geom *g, const float *base, size_t stride, size_t poff,
                             int nt, float *dw)
{
    const int64_t blocks = (g->co + 15) / 16;
#pragma omp parallel num_threads(nt) if (g->co * g->k2 * nt > BTI_PAR_MIN)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        bti_direct_add_parts(base + poff, stride, nt, g->co, g->k2, 16 * (blocks * t / tn),
                             16 * (blocks * (t + 1) / tn), dw);
    }
}

static void backward_per_image(bt_layer *l, const struct geom *g, const float *x, const float *dy,
                               float *dx)
{
    const float *w = l->value[0]->data;
    const size_t stride = pi_stride(g), poff = part_at(g);
    const int nt = l->conv_threads; /* the forward's count, for which scratch was reserved */
    float *base = (float *)l->scratch->p, *dw = l->grad[0]->data;
    float *wt = base + (size_t)nt * stride;
    int64_t i, nw = g->wino     ? (int64_t)wn_u(g)
                    : g->direct ? (int64_t)(dr_part(g))
                                : g->co * g->k2;
    bti_blas_set_threads(1);
    if (g->grid && dx)
        flip_weights(g, w, wt);
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *col = base + (size_t)t * stride, *part = col + poff;
        memset(part, 0, (size_t)nw * sizeof *part);
        if (g->direct && dx) {
            pack_weights(g, w, 1, wt, t, tn);
#pragma omp barrier
        }
        if (g->wino && dx) {
            bti_wino_weights(w, g->co, g->c, 0, g->co * t / tn, g->co * (t + 1) / tn, wt);
#pragma omp barrier
        }
        if (g->wino)
            backward_wino(g, dx ? wt : NULL, x, dy, dx, g->n * t / tn, g->n * (t + 1) / tn, col,
                          part);
        else if (g->direct)
            backward_direct(g, dx ? wt : NULL, x, dy, dx, g->n * t / tn, g->n * (t + 1) / tn, col,
                            part);
        else if (g->grid)
            backward_grid(g, wt, x, dy, dx, g->n * t / tn, g->n * (t + 1) / tn, col, part);
        else
            backward_images(g, w, x, dy, dx, g->n * t / tn, g->n * (t + 1) / tn, col,
                            col + pi_col(g), part);
    }
    /* the threads' partial sums, added in thread order: deterministic for a thread count */
    if (g->direct) {
        add_direct_parts(g, base, stride, poff, nt, dw);
        return;
    }
    if (g->wino) {
#pragma omp parallel num_threads(nt) if (nw * nt > BTI_PAR_MIN)
        {
            const int t = omp_get_thread_num(), tn = omp_get_num_threads();
            bti_wino_weight_grad(base + poff, stride, nt, g->co, g->c, g->co * t / tn,
                                 g->co * (t + 1) / tn, dw);
        }
        return;
    }
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nw * nt > BTI_PAR_MIN)
    for (i = 0; i < nw; i++) {
        float s = dw[i];
        int t;
        for (t = 0; t < nt; t++)
            s += base[(size_t)t * stride + poff + (size_t)i];
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
    l->conv_per_image = choose_form(l, &g); /* remembered for backward */
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
    set_form(&g, l->conv_per_image);
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
