/* conv_direct_avx2.c - direct 3x3 convolution tiles, stride 1 or 2, 8 channels per
 * AVX2 register (see conv_direct.h), for 16 ymm registers.
 *
 * Forward and input gradient: a tile is 6 output pixels x 2 registers of 8
 * output channels (16 channels, the layout's rounding): 12 accumulators, 2
 * weight registers and the broadcast fit the 16 registers, and 12 chains
 * cover the FMA latency (4 cycles on 2 ports). 3 pixels x 4 registers would
 * read fewer broadcasts but needs 17 registers: GCC then keeps one
 * accumulator on the stack, and its store-to-load chain halved the speed.
 * Input channels go CB at a time as in the AVX-512 tiles (the block's
 * weights, CB*9*64 bytes, stay in L1 across the group's pixels).
 * Weight gradient: the 9 taps of one input channel x one register of output
 * channels (9 accumulators; a dy load and 9 broadcasts per pixel).
 * The transposes between NCHW and pixel-major rows go 8 x 8 through
 * registers; masked moves (slow on AMD Zen) only at the ends of rows. */
#include "kernels/conv_direct.h"
#include "kernels/simd_x86.h"

#define TAPS 9
#define CB 16   /* input channels per pass of the forward tiles (with 9 taps) */
#define V 2     /* registers of output channels per forward tile */
#define NP 6    /* and its pixels */
#define INLINE __attribute__((always_inline)) inline

/* Per call, so plain loops: register r of 8 outputs in its block of V
 * registers (channels are rounded to 16), taps in order. This call's share
 * of the registers. */
static void pack(const float *w, int64_t co, int64_t c, int transpose, const struct bti_taps *tp,
                 float *wpk, int part, int parts)
{
    const int64_t nout = transpose ? c : co, nin = transpose ? co : c;
    const int64_t nv = bti_direct_round(nout) / 8, nt = tp->n;
    int64_t r, ci, t, l;
    for (r = nv * part / parts; r < nv * (part + 1) / parts; r++) {
        const int64_t v0 = r / V * V;
        float *dst = wpk + v0 * 8 * nin * nt + (r - v0) * 8;
        for (ci = 0; ci < nin; ci++)
            for (t = 0; t < nt; t++)
                for (l = 0; l < 8; l++) {
                    const int64_t o = r * 8 + l;
                    dst[(ci * nt + t) * 8 * V + l] =
                        o >= nout   ? 0.0f
                        : transpose ? w[(ci * c + o) * TAPS + tp->w[t]]
                                    : w[(o * c + ci) * TAPS + tp->w[t]];
                }
    }
}

/* An 8 x 8 block: rows i < nr of src (8 floats at src + i*ss, the first nl
 * lanes; the rest read as 0), transposed, into rows j < nw of dst (at dst +
 * j*ds, the first nd lanes), plus bias[j] when bias is given. */
T256 static INLINE void move8(const float *src, int64_t ss, int64_t nr, int64_t nl, float *dst,
                              int64_t ds, int64_t nw, int64_t nd, const float *bias)
{
    __m256 r[8], o[8];
    int k;
    for (k = 0; k < 8; k++)
        r[k] = k >= nr  ? _mm256_setzero_ps()
               : nl >= 8 ? _mm256_loadu_ps(src + k * ss)
                         : _mm256_maskload_ps(src + k * ss, mask8(nl));
    tr8x8(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], o);
    for (k = 0; k < 8 && k < nw; k++) {
        const __m256 v = bias ? _mm256_add_ps(o[k], _mm256_set1_ps(bias[k])) : o[k];
        if (nd >= 8)
            _mm256_storeu_ps(dst + k * ds, v);
        else
            _mm256_maskstore_ps(dst + k * ds, mask8(nd), v);
    }
}

T256 static void to_pixels(const float *src, int64_t ch, int64_t nb, int64_t p, float *dst)
{
    const int64_t chp = bti_direct_round(ch);
    int64_t b, q0, c0;
    for (b = 0; b < nb; b++)
        for (c0 = 0; c0 < chp; c0 += 8)
            for (q0 = 0; q0 < p; q0 += 8)
                move8(src + (b * ch + c0) * p + q0, p, ch - c0, p - q0,
                      dst + (b * p + q0) * chp + c0, chp, p - q0, 8, NULL);
}

T256 static void from_pixels(const float *src, int64_t ch, int64_t nb, int64_t p,
                             const float *bias, float *dst)
{
    const int64_t chp = bti_direct_round(ch);
    int64_t b, q0, c0;
    for (b = 0; b < nb; b++)
        for (c0 = 0; c0 < ch; c0 += 8)
            for (q0 = 0; q0 < p; q0 += 8)
                move8(src + (b * p + q0) * chp + c0, chp, p - q0, 8,
                      dst + (b * ch + c0) * p + q0, p, ch - c0, p - q0, bias ? bias + c0 : NULL);
}

/* 8 channels x 8 kernel entries at a time: the threads' rows summed in
 * order, transposed, added to 8 runs of dw. */
T256 static void add_parts(const float *parts, size_t stride, int nt, int64_t co, int64_t k2,
                           int64_t o0, int64_t o1, float *dw)
{
    const int64_t chp = bti_direct_round(co);
    int64_t o, kk;
    int k, t;
    for (o = o0; o < o1; o += 8)
        for (kk = 0; kk < k2; kk += 8) {
            const int64_t nd = k2 - kk;
            const __m256i mk = mask8(nd);
            __m256 r[8], s[8];
            for (k = 0; k < 8; k++) {
                r[k] = _mm256_setzero_ps();
                if (kk + k < k2)
                    for (t = 0; t < nt; t++)
                        r[k] = _mm256_add_ps(r[k], _mm256_loadu_ps(parts + (size_t)t * stride +
                                                                   (kk + k) * chp + o));
            }
            tr8x8(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], s);
            for (k = 0; k < 8 && o + k < co; k++) {
                float *d = dw + (o + k) * k2 + kk;
                if (nd >= 8)
                    _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), s[k]));
                else
                    _mm256_maskstore_ps(d, mk, _mm256_add_ps(_mm256_maskload_ps(d, mk), s[k]));
            }
        }
}

/* NP pixels x V registers over cin channels and the taps, into pixel-major
 * rows; first: start from zero instead of the output rows. ALL: the taps are
 * the packed ones in order (weights read in sequence, not through tp->slot). */
T256 static INLINE void conv_tile(const int ALL, const float *restrict x, int64_t lcap,
                                  int64_t cin, const int64_t *off, const int64_t *rows,
                                  const struct bti_taps *tp, const float *restrict w, float *out,
                                  int64_t ldo, int first)
{
    __m256 acc[NP][V];
    int64_t o[NP], c;
    int r, v, t;
#pragma GCC unroll 6
    for (r = 0; r < NP; r++) {
        o[r] = off[r];
#pragma GCC unroll 2
        for (v = 0; v < V; v++)
            acc[r][v] =
                first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + rows[r] * ldo + 8 * v);
    }
    for (c = 0; c < cin; c++) {
        const float *xc = x + c * lcap, *wc = w + c * tp->slots * 8 * V;
        for (t = 0; t < tp->n; t++) {
            const float *xk = xc + tp->off[t], *wt = wc + (ALL ? t : tp->slot[t]) * 8 * V;
            __m256 wv[V];
            /* as in the AVX-512 tiles: broadcast from xk + o[r] as it stands */
            __asm__("" : "+r"(xk));
#pragma GCC unroll 2
            for (v = 0; v < V; v++)
                wv[v] = _mm256_loadu_ps(wt + 8 * v);
#pragma GCC unroll 6
            for (r = 0; r < NP; r++) {
                const __m256 b = _mm256_broadcast_ss(xk + o[r]);
#pragma GCC unroll 2
                for (v = 0; v < V; v++)
                    acc[r][v] = _mm256_fmadd_ps(b, wv[v], acc[r][v]);
            }
        }
    }
#pragma GCC unroll 6
    for (r = 0; r < NP; r++)
#pragma GCC unroll 2
        for (v = 0; v < V; v++)
            _mm256_storeu_ps(out + rows[r] * ldo + 8 * v, acc[r][v]);
}

typedef void (*conv_tile_fn)(const float *, int64_t, int64_t, const int64_t *, const int64_t *,
                             const struct bti_taps *, const float *, float *, int64_t, int);
#define CONV_TILE(ALL, NAME)                                                                   \
    T256 static void NAME(const float *x, int64_t lcap, int64_t cin, const int64_t *off,        \
                          const int64_t *rows, const struct bti_taps *tp, const float *w,       \
                          float *out, int64_t ldo, int first)                                   \
    {                                                                                          \
        conv_tile(ALL, x, lcap, cin, off, rows, tp, w, out, ldo, first);                       \
    }
CONV_TILE(0, conv_tile_some)
CONV_TILE(1, conv_tile_all)

static void conv(const float *x, int64_t lcap, int64_t cin, const int64_t *off,
                 const int64_t *rows, const struct bti_pixel_classes *pc, const float *wpk,
                 int64_t cout, float *out)
{
    /* fewer taps, more channels per pass; classes innermost (as at AVX-512) */
    const int64_t chp = bti_direct_round(cout), nv = chp / 8, slots = pc->tp[0].slots;
    const int64_t cbmax = bti_direct_pass_channels(pc, CB);
    int64_t c0, v0, q;
    int k;
    for (c0 = 0; c0 < cin; c0 += cbmax) {
        const int64_t cb = cin - c0 < cbmax ? cin - c0 : cbmax;
        for (v0 = 0; v0 < nv; v0 += V) {
            const float *w = wpk + v0 * 8 * cin * slots + c0 * slots * 8 * V; /* block v0, c0 */
            for (k = 0; k < pc->n; k++) {
                const int64_t *ok = off + pc->start[k], *rk = rows + pc->start[k];
                const conv_tile_fn tile = pc->tp[k].n == slots ? conv_tile_all : conv_tile_some;
                for (q = 0; q < pc->count[k]; q += NP)
                    tile(x + c0 * lcap, lcap, cb, ok + q, rk + q, &pc->tp[k], w, out + v0 * 8,
                         chp, c0 == 0);
            }
        }
    }
}

/* Pixels [q, end) of one class into acc, the taps of MASK only; x is read
 * around each pixel's window centre xc + off[q]; dy's row of pixel q is rws[q]. */
T256 static INLINE void grad_pixels(const int MASK, __m256 acc[TAPS], const float *restrict xc,
                                    int64_t wp, const int64_t *off, const int64_t *rws, int64_t q,
                                    int64_t end, const float *restrict dy, int64_t ld)
{
    int t;
    for (; q < end; q++) {
        const float *x0 = xc + off[q];
        const __m256 g = _mm256_loadu_ps(dy + rws[q] * ld);
#pragma GCC unroll 9
        for (t = 0; t < TAPS; t++)
            if (MASK >> t & 1)
                acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss(x0 + (t / 3 - 1) * wp + t % 3 - 1),
                                         g, acc[t]);
    }
}

/* The 9 taps of one input channel x one register of output channels over
 * the classes' pixels, each class with its own taps (compiled for the
 * interior, edges and corners; images of one row or column through a
 * general loop). */
T256 static void grad_tile(const float *restrict xc, int64_t wp, const int64_t *off,
                           const int64_t *rws, const struct bti_pixel_classes *pc,
                           const int *masks, const float *restrict dy, int64_t ld,
                           float *restrict part)
{
    __m256 acc[TAPS];
    int t, k;
#pragma GCC unroll 9
    for (t = 0; t < TAPS; t++)
        acc[t] = _mm256_loadu_ps(part + t * ld);
    for (k = 0; k < pc->n; k++) {
        const int64_t q = pc->start[k], end = q + pc->count[k];
#define GRAD_CASE(rm, cm)                                                                      \
    case BTI_TAP_MASK(rm, cm):                                                                 \
        grad_pixels(BTI_TAP_MASK(rm, cm), acc, xc, wp, off, rws, q, end, dy, ld);              \
        break;
        switch (masks[k]) {
            BTI_DIRECT_CLASS_MASKS(GRAD_CASE)
        default:
            grad_pixels(masks[k], acc, xc, wp, off, rws, q, end, dy, ld);
        }
#undef GRAD_CASE
    }
#pragma GCC unroll 9
    for (t = 0; t < TAPS; t++)
        _mm256_storeu_ps(part + t * ld, acc[t]);
}

static void weight_grad(const float *x, int64_t lcap, int64_t wp, int64_t cin, const int64_t *off,
                        const int64_t *rows, const struct bti_pixel_classes *pc, const float *dy,
                        int64_t cout, float *part)
{
    const int64_t chp = bti_direct_round(cout);
    int64_t c, o;
    int masks[BTI_DIRECT_CLASSES];
    bti_direct_slot_masks(pc, masks);
    for (c = 0; c < cin; c++)
        for (o = 0; o < chp; o += 8)
            grad_tile(x + c * lcap, wp, off, rows, pc, masks, dy + o, chp,
                      part + c * TAPS * chp + o);
}

const struct bti_direct_ops bti_direct_avx2 = {
    pack, conv, weight_grad, add_parts, to_pixels, from_pixels, NULL,
};
