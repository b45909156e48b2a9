/* conv_winograd_avx512.c - the transforms of Winograd F(2x2, 3x3) (see conv_winograd.h),
 * 16 channels per AVX-512 register, tile by tile: B^T = [1 0 -1 0; 0 1 1 0;
 * 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], A^T = [1 1 1
 * 0; 0 1 -1 -1] (Lavin and Gray, 2016). Each transform is applied to the rows
 * of a tile, then to its columns. */
#include "kernels/conv_winograd.h"
#include "kernels/simd_x86.h"

int64_t bti_wino_tiles(int64_t h, int64_t w) { return (h + 1) / 2 * ((w + 1) / 2); }


#define INLINE __attribute__((always_inline)) inline

/* Tiles of nb images of h x w. */
static int64_t group_tiles(int64_t nb, int64_t h, int64_t w) { return nb * bti_wino_tiles(h, w); }

/* Row offsets (times ld) of tile t's n x n pixels, -1 outside the image:
 * n 4, its input window from (2ty - 1, 2tx - 1); n 2, its outputs from (2ty, 2tx). */
static void tile_window(int64_t t, int64_t h, int64_t w, int64_t ld, int n, int64_t *off)
{
    const int64_t tw = (w + 1) / 2, tpi = bti_wino_tiles(h, w), b = t / tpi;
    const int64_t y0 = (t % tpi) / tw * 2 - (n == 4), x0 = t % tw * 2 - (n == 4);
    int i, j;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            const int64_t y = y0 + i, x = x0 + j;
            off[i * n + j] = y >= 0 && y < h && x >= 0 && x < w ? ((b * h + y) * w + x) * ld : -1;
        }
}

/* The 16 floats at p + e*es, masked to the channels left. */
T512 static INLINE void load16(const float *p, int64_t es, __mmask16 m, __m512 r[16])
{
    int e;
    for (e = 0; e < 16; e++)
        r[e] = _mm512_maskz_loadu_ps(m, p + e * es);
}

T512 static INLINE void store16(float *p, int64_t es, const __m512 r[16])
{
    int e;
    for (e = 0; e < 16; e++)
        _mm512_storeu_ps(p + e * es, r[e]);
}

/* B^T on the rows of a 4x4 tile (r[i*4 + j]), then on its columns. */
T512 static INLINE void input_tf(const __m512 d[16], __m512 v[16])
{
    __m512 r[16];
    int i;
    for (i = 0; i < 4; i++) {
        r[i] = _mm512_sub_ps(d[i], d[8 + i]);
        r[4 + i] = _mm512_add_ps(d[4 + i], d[8 + i]);
        r[8 + i] = _mm512_sub_ps(d[8 + i], d[4 + i]);
        r[12 + i] = _mm512_sub_ps(d[4 + i], d[12 + i]);
    }
    for (i = 0; i < 4; i++) {
        const __m512 *q = r + 4 * i;
        v[4 * i] = _mm512_sub_ps(q[0], q[2]);
        v[4 * i + 1] = _mm512_add_ps(q[1], q[2]);
        v[4 * i + 2] = _mm512_sub_ps(q[2], q[1]);
        v[4 * i + 3] = _mm512_sub_ps(q[1], q[3]);
    }
}

/* B (the adjoint of input_tf) on the rows, then on the columns. */
T512 static INLINE void input_adj(const __m512 v[16], __m512 d[16])
{
    __m512 r[16];
    int i;
    for (i = 0; i < 4; i++) {
        r[i] = v[i];
        r[4 + i] = _mm512_add_ps(_mm512_sub_ps(v[4 + i], v[8 + i]), v[12 + i]);
        r[8 + i] = _mm512_sub_ps(_mm512_add_ps(v[4 + i], v[8 + i]), v[i]);
        r[12 + i] = _mm512_sub_ps(_mm512_setzero_ps(), v[12 + i]);
    }
    for (i = 0; i < 4; i++) {
        const __m512 *q = r + 4 * i;
        d[4 * i] = q[0];
        d[4 * i + 1] = _mm512_add_ps(_mm512_sub_ps(q[1], q[2]), q[3]);
        d[4 * i + 2] = _mm512_sub_ps(_mm512_add_ps(q[1], q[2]), q[0]);
        d[4 * i + 3] = _mm512_sub_ps(_mm512_setzero_ps(), q[3]);
    }
}

T512 void bti_wino_input(const float *xp, int64_t ldx, int64_t nb, int64_t h, int64_t w,
                         int64_t ch, float *v, int64_t ld, int64_t es)
{
    int64_t t, c0, off[16];
    int k;
    for (t = 0; t < group_tiles(nb, h, w); t++) {
        tile_window(t, h, w, ldx, 4, off);
        for (c0 = 0; c0 < ch; c0 += 16) {
            const __mmask16 m = mask16(ch - c0);
            __m512 d[16], r[16];
            for (k = 0; k < 16; k++)
                d[k] = off[k] < 0 ? _mm512_setzero_ps()
                                  : _mm512_maskz_loadu_ps(m, xp + off[k] + c0);
            input_tf(d, r);
            store16(v + t * ld + c0, es, r);
        }
    }
}

T512 void bti_wino_input_adjoint(const float *dv, int64_t ld, int64_t es, int64_t nb, int64_t h,
                                 int64_t w, int64_t ch, float *dxp, int64_t ldx)
{
    int64_t t, c0, off[16];
    int k;
    for (t = 0; t < group_tiles(nb, h, w); t++) {
        tile_window(t, h, w, ldx, 4, off);
        for (c0 = 0; c0 < ch; c0 += 16) {
            __m512 r[16], d[16];
            load16(dv + t * ld + c0, es, mask16(ch - c0), r);
            input_adj(r, d);
            for (k = 0; k < 16; k++)
                if (off[k] >= 0) {
                    float *p = dxp + off[k] + c0;
                    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), d[k]));
                }
        }
    }
}

T512 void bti_wino_output(const float *m, int64_t ld, int64_t es, int64_t nb, int64_t h,
                          int64_t w, int64_t ch, float *out, int64_t ldo)
{
    int64_t t, c0, off[4];
    int i, k;
    for (t = 0; t < group_tiles(nb, h, w); t++) {
        tile_window(t, h, w, ldo, 2, off);
        for (c0 = 0; c0 < ch; c0 += 16) {
            __m512 r[16], s[8], y[4];
            load16(m + t * ld + c0, es, mask16(ch - c0), r);
            for (i = 0; i < 4; i++) { /* A^T on the rows */
                s[i] = _mm512_add_ps(_mm512_add_ps(r[i], r[4 + i]), r[8 + i]);
                s[4 + i] = _mm512_sub_ps(_mm512_sub_ps(r[4 + i], r[8 + i]), r[12 + i]);
            }
            for (i = 0; i < 2; i++) { /* and on the columns */
                const __m512 *q = s + 4 * i;
                y[2 * i] = _mm512_add_ps(_mm512_add_ps(q[0], q[1]), q[2]);
                y[2 * i + 1] = _mm512_sub_ps(_mm512_sub_ps(q[1], q[2]), q[3]);
            }
            for (k = 0; k < 4; k++)
                if (off[k] >= 0)
                    _mm512_storeu_ps(out + off[k] + c0, y[k]);
        }
    }
}

T512 void bti_wino_output_adjoint(const float *dyp, int64_t ldy, int64_t nb, int64_t h, int64_t w,
                                  int64_t ch, float *dm, int64_t ld, int64_t es)
{
    int64_t t, c0, off[4];
    int i, k;
    for (t = 0; t < group_tiles(nb, h, w); t++) {
        tile_window(t, h, w, ldy, 2, off);
        for (c0 = 0; c0 < ch; c0 += 16) {
            const __mmask16 msk = mask16(ch - c0);
            __m512 d[4], q[8], r[16];
            for (k = 0; k < 4; k++)
                d[k] = off[k] < 0 ? _mm512_setzero_ps()
                                  : _mm512_maskz_loadu_ps(msk, dyp + off[k] + c0);
            for (i = 0; i < 2; i++) { /* A on the rows: [1 0; 1 1; 1 -1; 0 -1] */
                q[i] = d[i];
                q[2 + i] = _mm512_add_ps(d[i], d[2 + i]);
                q[4 + i] = _mm512_sub_ps(d[i], d[2 + i]);
                q[6 + i] = _mm512_sub_ps(_mm512_setzero_ps(), d[2 + i]);
            }
            for (i = 0; i < 4; i++) { /* and on the columns */
                r[4 * i] = q[2 * i];
                r[4 * i + 1] = _mm512_add_ps(q[2 * i], q[2 * i + 1]);
                r[4 * i + 2] = _mm512_sub_ps(q[2 * i], q[2 * i + 1]);
                r[4 * i + 3] = _mm512_sub_ps(_mm512_setzero_ps(), q[2 * i + 1]);
            }
            store16(dm + t * ld + c0, es, r);
        }
    }
}

/* G g G^T of 16 kernels whose entry k is at w + k + idx[lane] (lanes of m), into dst + e*es. */
T512 static INLINE void weights16(const float *w, __m512i idx, __mmask16 m, float *dst, int64_t es)
{
    const __m512 half = _mm512_set1_ps(0.5f);
    __m512 g[9], r[12];
    int i, k;
    for (k = 0; k < 9; k++)
        g[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, w + k, 4);
    for (i = 0; i < 3; i++) { /* G on the rows */
        const __m512 a = _mm512_add_ps(g[i], g[6 + i]);
        r[i] = g[i];
        r[3 + i] = _mm512_mul_ps(half, _mm512_add_ps(a, g[3 + i]));
        r[6 + i] = _mm512_mul_ps(half, _mm512_sub_ps(a, g[3 + i]));
        r[9 + i] = g[6 + i];
    }
    for (i = 0; i < 4; i++) { /* and on the columns */
        const __m512 *q = r + 3 * i, a = _mm512_add_ps(q[0], q[2]);
        const __m512 u[4] = {q[0], _mm512_mul_ps(half, _mm512_add_ps(a, q[1])),
                             _mm512_mul_ps(half, _mm512_sub_ps(a, q[1])), q[2]};
        for (k = 0; k < 4; k++)
            _mm512_mask_storeu_ps(dst + (4 * i + k) * es, m, u[k]);
    }
}

/* 16 kernels at a time along the rows of u: their entries are 9 floats apart
 * along c, 9*c along co. */
T512 void bti_wino_weights(const float *w, int64_t co, int64_t c, int by_input, int64_t r0,
                           int64_t r1, float *u)
{
    const int64_t n = by_input ? co : c; /* along a row of u */
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(by_input ? (int)(9 * c) : 9));
    int64_t r, j;
    for (r = r0; r < r1; r++)
        for (j = 0; j < n; j += 16)
            weights16(w + (by_input ? j * c + r : r * c + j) * 9, idx, mask16(n - j),
                      u + r * n + j, co * c);
}

T512 void bti_wino_weight_grad(const float *parts, size_t stride, int nt, int64_t co, int64_t c,
                               int64_t o0, int64_t o1, float *dw)
{
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(9));
    const __m512 half = _mm512_set1_ps(0.5f);
    int64_t o, c0;
    int e, t, i, k;
    for (o = o0; o < o1; o++)
        for (c0 = 0; c0 < c; c0 += 16) {
            const __mmask16 m = mask16(c - c0);
            __m512 du[16], s[12], g[9];
            for (e = 0; e < 16; e++) {
                const float *p = parts + (e * co + o) * c + c0;
                du[e] = _mm512_maskz_loadu_ps(m, p);
                for (t = 1; t < nt; t++)
                    du[e] = _mm512_add_ps(du[e], _mm512_maskz_loadu_ps(m, p + (size_t)t * stride));
            }
            for (i = 0; i < 4; i++) { /* G^T on the rows: [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1] */
                const __m512 a = _mm512_add_ps(du[4 + i], du[8 + i]);
                s[i] = _mm512_fmadd_ps(half, a, du[i]);
                s[4 + i] = _mm512_mul_ps(half, _mm512_sub_ps(du[4 + i], du[8 + i]));
                s[8 + i] = _mm512_fmadd_ps(half, a, du[12 + i]);
            }
            for (i = 0; i < 3; i++) { /* and on the columns */
                const __m512 *q = s + 4 * i, a = _mm512_add_ps(q[1], q[2]);
                g[3 * i] = _mm512_fmadd_ps(half, a, q[0]);
                g[3 * i + 1] = _mm512_mul_ps(half, _mm512_sub_ps(q[1], q[2]));
                g[3 * i + 2] = _mm512_fmadd_ps(half, a, q[3]);
            }
            for (k = 0; k < 9; k++) {
                float *p = dw + (o * c + c0) * 9 + k;
                const __m512 old = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, p, 4);
                _mm512_mask_i32scatter_ps(p, m, idx, _mm512_add_ps(old, g[k]), 4);
            }
        }
}
