/* conv_direct_avx512.c - direct 3x3 convolution tiles, stride 1 or 2, 16 channels per
 * AVX-512 register (see conv_direct.h).
 *
 * Forward and input gradient: a tile is NP output pixels x V registers of 16
 * output channels (NP*V <= 28 accumulators). For each input channel and tap
 * it loads V weight registers and broadcasts NP input floats, so every
 * weight read serves NP pixels and every input read V*16 channels. Pixels
 * come from a list, so a tile crosses rows and images freely, any stride is
 * a different list, and no junk pixel is computed. Input channels are taken
 * CB at a time (the tile's weights, CB*taps*V*64 bytes, then stay in L1
 * across all the group's pixels), partial sums going through the output rows.
 * Weight gradient: a tile is the 9 taps of one input channel x V <= 3
 * registers of output channels, summed over the pixel list (27 accumulators;
 * V dy loads and 9 broadcasts per pixel). */
#include "kernels/conv_direct.h"
#include "kernels/simd_x86.h"

#define TAPS 9
#define CB 16 /* input channels per pass of the forward tiles (with 9 taps) */

#define VMAX 4 /* registers of output channels per forward tile */

/* Registers of output channels in the forward tile that starts at register v0 of nv. */
static int fwd_v(int64_t nv, int64_t v0) { return nv - v0 >= VMAX ? VMAX : (int)(nv - v0); }

#define INLINE __attribute__((always_inline)) inline

/* r[i][j] -> r[j][i] for a 16 x 16 block: 4-float pairs, then 2-float pairs,
 * then 128-bit lanes across the rows. */
T512 static INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    int i, m;
    for (i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4g + m]: rows 4g..4g+3 of columns m, m+4, m+8, m+12 (one per 128-bit lane) */
    for (i = 0; i < 4; i++) {
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]),
                      c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (m = 0; m < 4; m++) {
        const __m512 v0 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x44),
                     v1 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xEE),
                     v2 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x44),
                     v3 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xEE);
        t[m] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        t[m + 4] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        t[m + 8] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        t[m + 12] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
    for (i = 0; i < 16; i++)
        r[i] = t[i];
}

/* A 16 x 16 block through registers: rows i < nr of src (16 floats at src +
 * i*ss, lanes lm; other rows and lanes read as 0), transposed, into rows
 * j < nw of dst (at dst + j*ds, lanes sm), plus bias[j] when bias is given. */
T512 static INLINE void move_block(const float *src, int64_t ss, int64_t nr, __mmask16 lm,
                                   float *dst, int64_t ds, int64_t nw, __mmask16 sm,
                                   const float *bias)
{
    __m512 r[16];
    int k;
    for (k = 0; k < 16; k++)
        r[k] = k < nr ? _mm512_maskz_loadu_ps(lm, src + k * ss) : _mm512_setzero_ps();
    transpose16(r);
    for (k = 0; k < 16 && k < nw; k++)
        _mm512_mask_storeu_ps(dst + k * ds, sm,
                              bias ? _mm512_add_ps(r[k], _mm512_set1_ps(bias[k])) : r[k]);
}

/* One register of 16 output channels at a time: the forward's rows through
 * transposes, other tap lists gathered from the 16 rows of w. */
T512 static void pack(const float *w, int64_t co, int64_t c, int transpose,
                          const struct bti_taps *tp, float *wpk, int part, int parts)
{
    const int64_t nout = transpose ? c : co, nin = transpose ? co : c, chp = bti_direct_round(nout);
    const int64_t r0 = chp / 16 * part / parts, r1 = chp / 16 * (part + 1) / parts;
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
                                                            4, 3, 2, 1, 0),
                                           _mm512_set1_epi32((int)(transpose ? TAPS : c * TAPS)));
    const int nt = tp->n;
    int64_t r, ci;
    int t, in_order = !transpose && nt == TAPS;
    for (t = 0; t < nt; t++)
        in_order &= tp->w[t] == t;
    for (r = r0; r < r1; r++) {
        const int64_t v0 = r / VMAX * VMAX, lanes = 16 * fwd_v(chp / 16, v0);
        const __mmask16 m = mask16(nout - r * 16);
        float *dst = wpk + v0 * 16 * nin * nt + (r - v0) * 16;
        if (in_order) { /* the 16 rows of w, 16 kernel entries at a time */
            const int64_t k2 = c * TAPS;
            int64_t k0;
            for (k0 = 0; k0 < k2; k0 += 16)
                move_block(w + r * 16 * k2 + k0, k2, co - r * 16, mask16(k2 - k0),
                           dst + k0 * lanes, lanes, k2 - k0, 0xFFFF, NULL);
            continue;
        }
        for (ci = 0; ci < nin; ci++) {
            const float *src = w + (transpose ? ci * c + r * 16 : r * 16 * c + ci) * TAPS;
            for (t = 0; t < nt; t++)
                _mm512_storeu_ps(dst + (ci * nt + t) * lanes,
                                 _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx,
                                                          src + tp->w[t], 4));
        }
    }
}

/* Both transposes move 16 x 16 blocks (16 pixels x 16 channels) through registers. */
T512 static void to_pixels(const float *src, int64_t ch, int64_t nb, int64_t p, float *dst)
{
    const int64_t chp = bti_direct_round(ch);
    int64_t b, q0, c0;
    for (b = 0; b < nb; b++)
        for (c0 = 0; c0 < chp; c0 += 16)
            for (q0 = 0; q0 < p; q0 += 16)
                move_block(src + (b * ch + c0) * p + q0, p, ch - c0, mask16(p - q0),
                           dst + (b * p + q0) * chp + c0, chp, p - q0, 0xFFFF, NULL);
}

T512 static void from_pixels(const float *src, int64_t ch, int64_t nb, int64_t p,
                                 const float *bias, float *dst)
{
    const int64_t chp = bti_direct_round(ch);
    int64_t b, q0, c0;
    for (b = 0; b < nb; b++)
        for (c0 = 0; c0 < ch; c0 += 16)
            for (q0 = 0; q0 < p; q0 += 16)
                move_block(src + (b * p + q0) * chp + c0, chp, p - q0, 0xFFFF,
                           dst + (b * ch + c0) * p + q0, p, ch - c0, mask16(p - q0),
                           bias ? bias + c0 : NULL);
}

/* 16 channels x 16 kernel entries at a time: the threads' rows summed in
 * order, transposed, added to 16 runs of dw. */
T512 static void add_parts(const float *parts, size_t stride, int nt, int64_t co, int64_t k2,
                               int64_t o0, int64_t o1, float *dw)
{
    const int64_t chp = bti_direct_round(co);
    int64_t o, kk;
    int k, t;
    for (o = o0; o < o1; o += 16)
        for (kk = 0; kk < k2; kk += 16) {
            const __mmask16 mk = mask16(k2 - kk);
            __m512 r[16];
            for (k = 0; k < 16; k++) {
                r[k] = _mm512_setzero_ps();
                if (kk + k < k2)
                    for (t = 0; t < nt; t++)
                        r[k] = _mm512_add_ps(r[k], _mm512_loadu_ps(parts + (size_t)t * stride +
                                                                   (kk + k) * chp + o));
            }
            transpose16(r);
            for (k = 0; k < 16 && o + k < co; k++) {
                float *d = dw + (o + k) * k2 + kk;
                _mm512_mask_storeu_ps(d, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, d), r[k]));
            }
        }
}

/* NP pixels x V registers over cin channels and the taps, into pixel-major
 * rows; first: start from zero instead of the output rows. ALL: the taps are
 * the packed ones in order (weights read in sequence, not through tp->slot). */
T512 static INLINE void conv_tile(const int V, const int NP, const int ALL, const float *restrict x,
                                  int64_t lcap, int64_t cin, const int64_t *off,
                                  const int64_t *rows, const struct bti_taps *tp,
                                  const float *restrict w, float *out, int64_t ldo, int first)
{
    __m512 acc[14][4];
    int64_t o[14], c;
    int r, v, t;
#pragma GCC unroll 14
    for (r = 0; r < NP; r++) {
        o[r] = off[r];
#pragma GCC unroll 4
        for (v = 0; v < V; v++)
            acc[r][v] = first ? _mm512_setzero_ps()
                              : _mm512_loadu_ps(out + rows[r] * ldo + 16 * v);
    }
    for (c = 0; c < cin; c++) {
        const float *xc = x + c * lcap, *wc = w + c * tp->slots * 16 * V;
        for (t = 0; t < tp->n; t++) {
            const float *xk = xc + tp->off[t], *wt = wc + (ALL ? t : tp->slot[t]) * 16 * V;
            __m512 wv[4];
            /* Opaque to the compiler: it then broadcasts from xk + o[r] as it
             * stands, instead of rebuilding each pixel's index with an add. */
            __asm__("" : "+r"(xk));
#pragma GCC unroll 4
            for (v = 0; v < V; v++)
                wv[v] = _mm512_loadu_ps(wt + 16 * v);
#pragma GCC unroll 14
            for (r = 0; r < NP; r++) {
                const __m512 b = _mm512_set1_ps(xk[o[r]]);
#pragma GCC unroll 4
                for (v = 0; v < V; v++)
                    acc[r][v] = _mm512_fmadd_ps(b, wv[v], acc[r][v]);
            }
        }
    }
#pragma GCC unroll 14
    for (r = 0; r < NP; r++)
#pragma GCC unroll 4
        for (v = 0; v < V; v++)
            _mm512_storeu_ps(out + rows[r] * ldo + 16 * v, acc[r][v]);
}

typedef void (*conv_tile_fn)(const float *, int64_t, int64_t, const int64_t *, const int64_t *,
                             const struct bti_taps *, const float *, float *, int64_t, int);
#define CONV_TILE(V, NP, ALL, NAME)                                                            \
    T512 static void NAME(const float *x, int64_t lcap, int64_t cin, const int64_t *off,        \
                          const int64_t *rows, const struct bti_taps *tp, const float *w,       \
                          float *out, int64_t ldo, int first)                                   \
    {                                                                                          \
        conv_tile(V, NP, ALL, x, lcap, cin, off, rows, tp, w, out, ldo, first);                \
    }
/* One register takes 14 pixels as two do: with 8, its 8 accumulator chains are
 * the FMA latency's bound (4 cycles on 2 ports; docs/perf.md). */
CONV_TILE(1, 14, 0, conv_tile1)
CONV_TILE(2, 14, 0, conv_tile2)
CONV_TILE(3, 9, 0, conv_tile3)
CONV_TILE(4, 7, 0, conv_tile4)
CONV_TILE(1, 14, 1, conv_tile1_all)
CONV_TILE(2, 14, 1, conv_tile2_all)
CONV_TILE(3, 9, 1, conv_tile3_all)
CONV_TILE(4, 7, 1, conv_tile4_all)
static const conv_tile_fn conv_tiles[2][4] = {
    {conv_tile1, conv_tile2, conv_tile3, conv_tile4},
    {conv_tile1_all, conv_tile2_all, conv_tile3_all, conv_tile4_all}};
static const int conv_np[4] = {14, 14, 9, 7};

static void conv(const float *x, int64_t lcap, int64_t cin, const int64_t *off,
                     const int64_t *rows, const struct bti_pixel_classes *pc, const float *wpk,
                     int64_t cout, float *out)
{
    /* Fewer taps, more channels per pass: the same weights in L1. Classes go
     * innermost, so a pass's weights are read from memory once for all. */
    const int64_t chp = bti_direct_round(cout), nv = chp / 16, slots = pc->tp[0].slots;
    const int64_t cbmax = bti_direct_pass_channels(pc, CB);
    int64_t c0, v0, q;
    int v, k;
    for (c0 = 0; c0 < cin; c0 += cbmax) {
        const int64_t cb = cin - c0 < cbmax ? cin - c0 : cbmax;
        for (v0 = 0; v0 < nv; v0 += v) {
            const float *w;
            int np;
            v = fwd_v(nv, v0);
            w = wpk + v0 * 16 * cin * slots + c0 * slots * 16 * v; /* block v0, channel c0 */
            np = conv_np[v - 1];
            for (k = 0; k < pc->n; k++) {
                const int64_t *ok = off + pc->start[k], *rk = rows + pc->start[k];
                const conv_tile_fn tile = conv_tiles[pc->tp[k].n == slots][v - 1];
                for (q = 0; q < pc->count[k]; q += np)
                    tile(x + c0 * lcap, lcap, cb, ok + q, rk + q, &pc->tp[k], w, out + v0 * 16,
                         chp, c0 == 0);
            }
        }
    }
}

/* Pixels [q, end) of one class into acc, the taps of MASK only (the others
 * fall outside the image); x is read around each pixel's window centre
 * xc + off[q]; dy's row of pixel q is rws[q]. */
T512 static INLINE void grad_pixels(const int V, const int MASK, __m512 acc[TAPS][3],
                                    const float *restrict xc, int64_t wp, const int64_t *off,
                                    const int64_t *rws, int64_t q, int64_t end,
                                    const float *restrict dy, int64_t ld)
{
    int t, v;
    for (; q < end; q++) {
        const float *x0 = xc + off[q], *d = dy + rws[q] * ld;
        __m512 g[3];
#pragma GCC unroll 3
        for (v = 0; v < V; v++)
            g[v] = _mm512_loadu_ps(d + 16 * v);
#pragma GCC unroll 9
        for (t = 0; t < TAPS; t++) {
            if (MASK >> t & 1) {
                const __m512 b = _mm512_set1_ps(x0[(t / 3 - 1) * wp + t % 3 - 1]);
#pragma GCC unroll 3
                for (v = 0; v < V; v++)
                    acc[t][v] = _mm512_fmadd_ps(b, g[v], acc[t][v]);
            }
        }
    }
}

/* The 9 taps of one input channel x V registers of output channels, over
 * the classes' pixels, each class with its own taps: the interior all nine,
 * edges and corners those inside (compiled for each; images of one row or
 * column through a general loop). */
T512 static INLINE void grad_tile(const int V, const float *restrict xc, int64_t wp,
                                  const int64_t *off, const int64_t *rws,
                                  const struct bti_pixel_classes *pc, const int *masks,
                                  const float *restrict dy, int64_t ld, float *restrict part)
{
    __m512 acc[TAPS][3];
    int t, v, k;
#pragma GCC unroll 9
    for (t = 0; t < TAPS; t++)
#pragma GCC unroll 3
        for (v = 0; v < V; v++)
            acc[t][v] = _mm512_loadu_ps(part + t * ld + 16 * v);
    for (k = 0; k < pc->n; k++) {
        const int64_t q = pc->start[k], end = q + pc->count[k];
#define GRAD_CASE(rm, cm)                                                                      \
    case BTI_TAP_MASK(rm, cm):                                                                 \
        grad_pixels(V, BTI_TAP_MASK(rm, cm), acc, xc, wp, off, rws, q, end, dy, ld);           \
        break;
        switch (masks[k]) {
            BTI_DIRECT_CLASS_MASKS(GRAD_CASE)
        default:
            grad_pixels(V, masks[k], acc, xc, wp, off, rws, q, end, dy, ld);
        }
#undef GRAD_CASE
    }
#pragma GCC unroll 9
    for (t = 0; t < TAPS; t++)
#pragma GCC unroll 3
        for (v = 0; v < V; v++)
            _mm512_storeu_ps(part + t * ld + 16 * v, acc[t][v]);
}

typedef void (*grad_tile_fn)(const float *, int64_t, const int64_t *, const int64_t *,
                             const struct bti_pixel_classes *, const int *, const float *, int64_t,
                             float *);
#define GRAD_TILE(V)                                                                          \
    T512 static void grad_tile##V(const float *xc, int64_t wp, const int64_t *off,            \
                                  const int64_t *rws, const struct bti_pixel_classes *pc,     \
                                  const int *masks, const float *dy, int64_t ld, float *part) \
    {                                                                                         \
        grad_tile(V, xc, wp, off, rws, pc, masks, dy, ld, part);                              \
    }
GRAD_TILE(1)
GRAD_TILE(2)
GRAD_TILE(3)
static const grad_tile_fn grad_tiles[3] = {grad_tile1, grad_tile2, grad_tile3};

static void weight_grad(const float *x, int64_t lcap, int64_t wp, int64_t cin,
                            const int64_t *off, const int64_t *rows,
                            const struct bti_pixel_classes *pc, const float *dy, int64_t cout,
                            float *part)
{
    const int64_t chp = bti_direct_round(cout), nv = chp / 16;
    int64_t c, v0;
    int v, masks[BTI_DIRECT_CLASSES];
    bti_direct_slot_masks(pc, masks);
    for (c = 0; c < cin; c++)
        for (v0 = 0; v0 < nv; v0 += v) {
            v = nv - v0 == 4 ? 2 : nv - v0 >= 3 ? 3 : (int)(nv - v0); /* 4 as 2 + 2, not 3 + 1 */
            grad_tiles[v - 1](x + c * lcap, wp, off, rows, pc, masks, dy + v0 * 16, chp,
                              part + c * TAPS * chp + v0 * 16);
        }
}

const struct bti_direct_ops bti_direct_avx512 = {
    pack, conv, weight_grad, add_parts, to_pixels, from_pixels, bti_flat_conv_avx512,
};
