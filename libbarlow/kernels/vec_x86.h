/* vec_x86.h - one register of VL floats, for kernels written once for both
 * x86 widths (the Winograd transforms): define BTI_VEC_LANES as 16 (AVX-512)
 * or 8 (AVX2 + FMA), then include this in the one .c file of that width.
 * Every operation maps to one instruction of that width, except the tails
 * (v_load_n, v_store_n: masked moves, slow on AMD Zen at 8 lanes, so kept
 * to the ends of rows) and v_scatter_add_n at 8 lanes (no scatter in AVX2). */
#ifndef BARLOW_VEC_X86_H
#define BARLOW_VEC_X86_H

#include "kernels/simd_x86.h"

#if BTI_VEC_LANES == 16
typedef __m512 vf;
#define VL 16
#define VT T512
#define v_zero() _mm512_setzero_ps()
#define v_set1(x) _mm512_set1_ps(x)
#define v_load(p) _mm512_loadu_ps(p)
#define v_store(p, a) _mm512_storeu_ps(p, a)
#define v_add(a, b) _mm512_add_ps(a, b)
#define v_sub(a, b) _mm512_sub_ps(a, b)
#define v_mul(a, b) _mm512_mul_ps(a, b)
#define v_fmadd(a, b, c) _mm512_fmadd_ps(a, b, c)

/* Lanes i < n of p (the others 0; n >= VL: all). */
VT static inline vf v_load_n(const float *p, int64_t n)
{
    return _mm512_maskz_loadu_ps(mask16(n), p);
}
VT static inline void v_store_n(float *p, vf a, int64_t n)
{
    _mm512_mask_storeu_ps(p, mask16(n), a);
}
/* Lane i < n: p[i*stride] (the others 0). */
VT static inline vf v_gather_n(const float *p, int stride, int64_t n)
{
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(stride));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask16(n), idx, p, 4);
}
/* p[i*stride] += lane i, for i < n. */
VT static inline void v_scatter_add_n(float *p, int stride, vf a, int64_t n)
{
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(stride));
    const __mmask16 m = mask16(n);
    const __m512 old = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, p, 4);
    _mm512_mask_i32scatter_ps(p, m, idx, _mm512_add_ps(old, a), 4);
}

#elif BTI_VEC_LANES == 8
typedef __m256 vf;
#define VL 8
#define VT T256
#define v_zero() _mm256_setzero_ps()
#define v_set1(x) _mm256_set1_ps(x)
#define v_load(p) _mm256_loadu_ps(p)
#define v_store(p, a) _mm256_storeu_ps(p, a)
#define v_add(a, b) _mm256_add_ps(a, b)
#define v_sub(a, b) _mm256_sub_ps(a, b)
#define v_mul(a, b) _mm256_mul_ps(a, b)
#define v_fmadd(a, b, c) _mm256_fmadd_ps(a, b, c)

VT static inline vf v_load_n(const float *p, int64_t n)
{
    return n >= 8 ? _mm256_loadu_ps(p) : n <= 0 ? _mm256_setzero_ps()
                                                : _mm256_maskload_ps(p, mask8(n));
}
VT static inline void v_store_n(float *p, vf a, int64_t n)
{
    if (n >= 8)
        _mm256_storeu_ps(p, a);
    else if (n > 0)
        _mm256_maskstore_ps(p, mask8(n), a);
}
VT static inline vf v_gather_n(const float *p, int stride, int64_t n)
{
    const __m256i idx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx, _mm256_castsi256_ps(mask8(n)),
                                    4);
}
VT static inline void v_scatter_add_n(float *p, int stride, vf a, int64_t n)
{
    float t[8];
    int64_t i;
    _mm256_storeu_ps(t, a);
    for (i = 0; i < n && i < 8; i++)
        p[i * stride] += t[i];
}

#else
#error "define BTI_VEC_LANES as 16 or 8"
#endif

#endif /* BARLOW_VEC_X86_H */
