/* conv_planes.c - im2col / col2im of one input plane for one kernel tap, and
 * zero-padded planes (see conv_planes.h): AVX-512 masked copies when the CPU
 * has them (the level of the private SGEMM kernels), plain loops otherwise. */
#include "kernels/conv_planes.h"

#include "kernels/sgemm.h"
#include "kernels/simd_x86.h"

#if BTI_X86

/* Planes of at most FLAT_MAX_PLANE floats are walked 16 floats at a time
 * whatever their row length: plane_mask gives the lanes q0 + l < n, on rows of
 * wr floats, whose row and column shifted by (di, dj) fall inside h x w (row
 * and column from a float multiply, exact for planes this small). */
#define FLAT_MAX_PLANE 4096

T512 static __mmask16 plane_mask(int64_t q0, int64_t n, int64_t wr, int64_t h, int64_t w,
                                 int64_t di, int64_t dj)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i q = _mm512_add_epi32(iota, _mm512_set1_epi32((int)q0));
    const __m512i oy = _mm512_cvttps_epi32(
        _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(0.5f)),
                      _mm512_set1_ps(1.0f / (float)wr)));
    const __m512i ox = _mm512_sub_epi32(q, _mm512_mullo_epi32(oy, _mm512_set1_epi32((int)wr)));
    const __m512i iy = _mm512_add_epi32(oy, _mm512_set1_epi32((int)di)),
                  ix = _mm512_add_epi32(ox, _mm512_set1_epi32((int)dj));
    __mmask16 m = mask16(n - q0);
    m = _mm512_mask_cmpge_epi32_mask(m, iy, _mm512_setzero_si512());
    m = _mm512_mask_cmplt_epi32_mask(m, iy, _mm512_set1_epi32((int)h));
    m = _mm512_mask_cmpge_epi32_mask(m, ix, _mm512_setzero_si512());
    return _mm512_mask_cmplt_epi32_mask(m, ix, _mm512_set1_epi32((int)w));
}

/* Row by row: masked loads for stride 1, gathers for larger strides. */
T512 static void im2col512_rows(float *d, const float *x, int64_t h, int64_t w, int64_t ho,
                                int64_t wo, int s, int pad, int i, int j, int64_t lo, int64_t hi)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 z = _mm512_setzero_ps();
    int64_t oy, ox;
    for (oy = 0; oy < ho; oy++) {
        const int64_t iy = oy * s - pad + i;
        float *dr = d + oy * wo;
        if (iy < 0 || iy >= h) {
            for (ox = 0; ox < wo; ox += 16)
                _mm512_mask_storeu_ps(dr + ox, mask16(wo - ox), z);
            continue;
        }
        {
            /* lanes ox in [lo, hi) read x[iy][ox*s - pad + j]; the others are zeros */
            const float *xr = x + iy * w;
            const int64_t c0 = (int64_t)j - pad;
            for (ox = 0; ox < wo; ox += 16) {
                const __mmask16 st = mask16(wo - ox), v = st & mask16(hi - ox) & ~mask16(lo - ox);
                __m512 r;
                if (!v)
                    r = z;
                else if (s == 1)
                    r = _mm512_maskz_loadu_ps(v, xr + c0 + ox);
                else
                    r = _mm512_mask_i32gather_ps(
                        z, v,
                        _mm512_add_epi32(
                            _mm512_mullo_epi32(_mm512_add_epi32(iota, _mm512_set1_epi32((int)ox)),
                                               _mm512_set1_epi32(s)),
                            _mm512_set1_epi32((int)c0)),
                        xr, 4);
                _mm512_mask_storeu_ps(dr + ox, st, r);
            }
        }
    }
}

T512 static void im2col512(float *d, const float *x, int64_t h, int64_t w, int64_t ho, int64_t wo,
                           int s, int pad, int i, int j, int64_t lo, int64_t hi)
{
    if (s == 1 && h == ho && w == wo && h * w <= FLAT_MAX_PLANE) {
        const int64_t p = h * w, off = (int64_t)(i - pad) * w + (j - pad);
        int64_t q0;
        for (q0 = 0; q0 < p; q0 += 16)
            _mm512_mask_storeu_ps(
                d + q0, mask16(p - q0),
                _mm512_maskz_loadu_ps(plane_mask(q0, p, w, h, w, i - pad, j - pad), x + off + q0));
        return;
    }
    im2col512_rows(d, x, h, w, ho, wo, s, pad, i, j, lo, hi);
}

T512 static void col2im512(const float *d, float *x, int64_t h, int64_t w, int64_t ho, int64_t wo,
                           int s, int pad, int i, int j, int64_t lo, int64_t hi)
{
    int64_t oy, ox;
    if (s == 1 && h == ho && w == wo && h * w <= FLAT_MAX_PLANE) {
        const int64_t p = h * w, off = (int64_t)(i - pad) * w + (j - pad);
        int64_t q0;
        for (q0 = 0; q0 < p; q0 += 16) {
            const __mmask16 v = plane_mask(q0, p, w, h, w, i - pad, j - pad);
            _mm512_mask_storeu_ps(x + off + q0, v,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(v, x + off + q0),
                                                _mm512_maskz_loadu_ps(v, d + q0)));
        }
        return;
    }
    for (oy = 0; oy < ho; oy++) {
        const int64_t iy = oy * s - pad + i;
        const float *dr = d + oy * wo;
        float *xr;
        if (iy < 0 || iy >= h)
            continue;
        xr = x + iy * w + ((int64_t)j - pad);
        if (s != 1) {
            for (ox = lo; ox < hi; ox++)
                xr[ox * s] += dr[ox];
            continue;
        }
        for (ox = lo; ox < hi; ox += 16) {
            const __mmask16 v = mask16(hi - ox);
            _mm512_mask_storeu_ps(xr + ox, v, _mm512_add_ps(_mm512_maskz_loadu_ps(v, xr + ox),
                                                            _mm512_maskz_loadu_ps(v, dr + ox)));
        }
    }
}

#define EXPAND_MAX 128 /* planes of up to this many registers use pad512_expand */

/* Small planes, one register of the padded plane at a time: the next image
 * floats, loaded and expanded (in registers: an expanding load from memory is
 * far slower) into the lanes its mask (worked out once for all planes) marks
 * as inside the image, zeros elsewhere. Row by row (im2col's
 * rows), a row of a few floats costs a masked load and store; here 16 floats do. */
T512 static void pad512_expand(float *d, int64_t lcap, const float *x, int64_t ch, int64_t nb,
                               int64_t h, int64_t w, int pad)
{
    const int64_t wp = w + 2 * (int64_t)pad, n = (h + 2 * (int64_t)pad) * wp, hw = h * w;
    const int64_t nv = (n + 15) / 16;
    __mmask16 mask[EXPAND_MAX];
    int64_t start[EXPAND_MAX + 1], c, b, k;
    start[0] = 0;
    for (k = 0; k < nv; k++) {
        mask[k] = plane_mask(16 * k, n, wp, h, w, -pad, -pad);
        start[k + 1] = start[k] + __builtin_popcount((unsigned)mask[k]);
    }
    for (c = 0; c < ch; c++)
        for (b = 0; b < nb; b++) {
            const float *src = x + (b * ch + c) * hw;
            float *dst = d + c * lcap + b * n;
            for (k = 0; k < nv; k++) {
                const __m512 v = _mm512_maskz_loadu_ps(mask16(start[k + 1] - start[k]),
                                                       src + start[k]);
                _mm512_mask_storeu_ps(dst + 16 * k, mask16(n - 16 * k),
                                      _mm512_maskz_expand_ps(mask[k], v));
            }
        }
}

#endif /* BTI_X86 */

void bti_im2col_plane(int level, float *d, const float *x, int64_t h, int64_t w, int64_t ho,
                      int64_t wo, int s, int pad, int i, int j, int64_t lo, int64_t hi)
{
    int64_t oy, ox;
#if BTI_X86
    if (level == BTI_CPU_AVX512) {
        im2col512(d, x, h, w, ho, wo, s, pad, i, j, lo, hi);
        return;
    }
#else
    (void)level;
#endif
    for (oy = 0; oy < ho; oy++) {
        const int64_t iy = oy * s - pad + i;
        float *restrict dr = d + oy * wo;
        const float *restrict xr;
        if (iy < 0 || iy >= h) {
            for (ox = 0; ox < wo; ox++)
                dr[ox] = 0.0f;
            continue;
        }
        xr = x + iy * w + ((int64_t)j - pad);
        for (ox = 0; ox < lo; ox++)
            dr[ox] = 0.0f;
        for (ox = lo; ox < hi; ox++)
            dr[ox] = xr[ox * s];
        for (ox = hi; ox < wo; ox++)
            dr[ox] = 0.0f;
    }
}

void bti_col2im_plane(int level, const float *d, float *x, int64_t h, int64_t w, int64_t ho,
                      int64_t wo, int s, int pad, int i, int j, int64_t lo, int64_t hi)
{
    int64_t oy, ox;
#if BTI_X86
    if (level == BTI_CPU_AVX512) {
        col2im512(d, x, h, w, ho, wo, s, pad, i, j, lo, hi);
        return;
    }
#else
    (void)level;
#endif
    for (oy = 0; oy < ho; oy++) {
        const int64_t iy = oy * s - pad + i;
        const float *restrict dr = d + oy * wo;
        float *restrict xr;
        if (iy < 0 || iy >= h)
            continue;
        xr = x + iy * w + ((int64_t)j - pad);
        for (ox = lo; ox < hi; ox++)
            xr[ox * s] += dr[ox];
    }
}

void bti_pad_planes(int level, float *d, int64_t lcap, const float *x, int64_t ch, int64_t nb,
                    int64_t h, int64_t w, int pad)
{
    const int64_t plane = (h + 2 * (int64_t)pad) * (w + 2 * (int64_t)pad);
    int64_t c, b;
#if BTI_X86
    if (level == BTI_CPU_AVX512 && (plane + 15) / 16 <= EXPAND_MAX) {
        pad512_expand(d, lcap, x, ch, nb, h, w, pad);
        return;
    }
#endif
    /* a padded plane is the im2col plane of tap (0, 0) with the padded size as output */
    for (c = 0; c < ch; c++)
        for (b = 0; b < nb; b++)
            bti_im2col_plane(level, d + c * lcap + b * plane, x + (b * ch + c) * h * w, h, w,
                             h + 2 * (int64_t)pad, w + 2 * (int64_t)pad, 1, pad, 0, 0, pad,
                             pad + w);
}
