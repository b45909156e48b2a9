/* conv_flat_avx512.c - the flat form of the stride-1 direct 3x3 convolution (see
 * conv_direct.h), for layers with few channels.
 *
 * The channel-vectorised tiles of conv_direct_avx512.c broadcast one input float per
 * FMA when a layer has a single register of output channels (16), so they
 * wait on loads. Here a register holds 16 neighbouring output pixels of one
 * channel instead: an image's padded plane is read as one flat run, output
 * (y, x) at y*wp + x, tap (i, j) at + i*wp + j, so every tap is one unaligned
 * load. The two padding columns of each row give junk lanes, which are never
 * stored: each register's valid lanes are consecutive NCHW outputs, packed
 * together in the register and written by one masked store. A tile is FV
 * registers of pixels x FO output channels: per input channel and tap, FV
 * loads and FO weight broadcasts feed FV*FO FMAs. */
#include "kernels/conv_direct.h"
#include "kernels/simd_x86.h"

#define FO BTI_FLAT_OUTPUTS
#define FV 3 /* registers of 16 pixels per tile */

#define INLINE __attribute__((always_inline)) inline

/* NV registers of pixels from the runs at st x NO outputs (their weights FO
 * apart), over all input channels; valid lanes stored to the first nout
 * outputs' planes (plus bias). */
T512 static INLINE void flat_tile(const int NV, const int NO, const float *x, int64_t lcap,
                                  int64_t wp,
                                  int64_t cin, const float *restrict wg, const int64_t *st,
                                  int64_t nout, const float *bias, float *dst, int64_t p)
{
    __m512 acc[FV][FO];
    int64_t c;
    int v, k, i, j;
#pragma GCC unroll 4
    for (v = 0; v < NV; v++)
#pragma GCC unroll 8
        for (k = 0; k < NO; k++)
            acc[v][k] = _mm512_setzero_ps();
    for (c = 0; c < cin; c++) {
        const float *xc = x + c * lcap, *wc = wg + c * 9 * FO;
#pragma GCC unroll 3
        for (i = 0; i < 3; i++)
#pragma GCC unroll 3
            for (j = 0; j < 3; j++) {
                const float *xr = xc + i * wp + j, *wt = wc + (i * 3 + j) * FO;
                __m512 xv[FV];
#pragma GCC unroll 4
                for (v = 0; v < NV; v++)
                    xv[v] = _mm512_loadu_ps(xr + 16 * v);
#pragma GCC unroll 8
                for (k = 0; k < NO; k++) {
                    const __m512 b = _mm512_set1_ps(wt[k]);
#pragma GCC unroll 4
                    for (v = 0; v < NV; v++)
                        acc[v][k] = _mm512_fmadd_ps(xv[v], b, acc[v][k]);
                }
            }
    }
    /* compressed in registers: a compressing store to memory is far slower */
#pragma GCC unroll 4
    for (v = 0; v < NV; v++) {
        const __mmask16 m = (__mmask16)(st[v] & 0xFFFF),
                        sm = mask16(__builtin_popcount((unsigned)m));
        float *d = dst + (st[v] >> 16);
#pragma GCC unroll 8
        for (k = 0; k < NO; k++)
            if (k < nout)
                _mm512_mask_storeu_ps(
                    d + k * p, sm,
                    _mm512_maskz_compress_ps(
                        m, bias ? _mm512_add_ps(acc[v][k], _mm512_set1_ps(bias[k])) : acc[v][k]));
    }
}

typedef void (*flat_tile_fn)(const float *, int64_t, int64_t, int64_t, const float *,
                             const int64_t *, int64_t, const float *, float *, int64_t);
#define FLAT_TILE(NV, NO)                                                                      \
    T512 static void flat_tile##NV##_##NO(const float *x, int64_t lcap, int64_t wp,           \
                                          int64_t cin, const float *wg, const int64_t *st,    \
                                          int64_t nout, const float *bias, float *dst,        \
                                          int64_t p)                                          \
    {                                                                                          \
        flat_tile(NV, NO, x, lcap, wp, cin, wg, st, nout, bias, dst, p);                       \
    }
FLAT_TILE(1, 8)
FLAT_TILE(2, 8)
FLAT_TILE(3, 8)
FLAT_TILE(1, 4)
FLAT_TILE(2, 4)
FLAT_TILE(3, 4)
FLAT_TILE(1, 2)
FLAT_TILE(2, 2)
FLAT_TILE(3, 2)
FLAT_TILE(1, 1)
FLAT_TILE(2, 1)
FLAT_TILE(3, 1)
/* [outputs 8, 4, 2, 1][registers - 1] */
static const flat_tile_fn flat_tiles[4][FV] = {{flat_tile1_8, flat_tile2_8, flat_tile3_8},
                                               {flat_tile1_4, flat_tile2_4, flat_tile3_4},
                                               {flat_tile1_2, flat_tile2_2, flat_tile3_2},
                                               {flat_tile1_1, flat_tile2_1, flat_tile3_1}};

/* The last group of fewer than FO outputs (the input gradient of a 1-3 channel
 * stem) takes a tile of the next power of two: 8 outputs would waste most of
 * the FMAs, and one output at a time read each input run again per output
 * (from L2: a 64-channel image's planes do not fit L1), which made the 3->64
 * stem's input gradient take 1.6x as long as with a tile of 4. */
void bti_flat_conv_avx512(const float *x, int64_t lcap, int64_t plane, int64_t wp, int64_t h,
                   int64_t nb, int64_t cin, const float *wpk, int64_t cout, const int64_t *st,
                   const float *bias, float *dst)
{
    const int64_t nr = bti_flat_runs(h, wp), p = h * (wp - 2);
    int64_t b, o, r;
    for (b = 0; b < nb; b++)
        for (o = 0; o < cout; o += FO) {
            const int64_t left = cout - o;
            const int kind = left > 4 ? 0 : left > 2 ? 1 : left > 1 ? 2 : 3;
            const float *wg = wpk + o / FO * cin * 9 * FO;
            for (r = 0; r < nr; r += FV)
                flat_tiles[kind][(nr - r < FV ? nr - r : FV) - 1](
                    x + b * plane + 16 * r, lcap, wp, cin, wg, st + r, left,
                    bias ? bias + o : NULL, dst + (b * cout + o) * p, p);
        }
}
