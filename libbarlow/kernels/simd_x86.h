/* simd_x86.h - what the hand-vectorised kernels (sgemm.c, conv_planes.c,
 * conv_*_avx512.c, conv_*_avx2.c) share: whether this is an x86
 * GCC-compatible build, the per-function target attributes (the library is
 * built for the baseline ISA; these functions run only after
 * the handle's CPU level (common/cpu.h) allows them), and lane masks. */
#ifndef BARLOW_SIMD_X86_H
#define BARLOW_SIMD_X86_H

#include <stdint.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define BTI_X86 1
#include <immintrin.h>

#define T256 __attribute__((target("avx2,fma")))
#define T512 __attribute__((target("avx512f")))

/* The first n of 16 lanes (none for n <= 0, all for n >= 16). */
T512 static inline __mmask16 mask16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* The first n of 8 lanes as a vector mask (for the AVX2 masked moves: slow
 * on AMD Zen, so only at the ends of rows). */
T256 static inline __m256i mask8(int64_t n)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int v = n >= 8 ? 8 : n <= 0 ? 0 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(v), iota);
}

/* o[j][i] = r_i[j]: an 8 x 8 transpose. */
T256 static inline __attribute__((always_inline)) void
tr8x8(__m256 r0, __m256 r1, __m256 r2, __m256 r3, __m256 r4, __m256 r5, __m256 r6, __m256 r7,
      __m256 *o)
{
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
                 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
                 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    o[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    o[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    o[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    o[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    o[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    o[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    o[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    o[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#else
#define BTI_X86 0
#endif

#endif /* BARLOW_SIMD_X86_H */
