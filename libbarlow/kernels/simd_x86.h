/* simd_x86.h - what the hand-vectorised kernels (sgemm.c, conv_planes.c,
 * conv_*_avx512.c) share: whether this is an x86
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
#else
#define BTI_X86 0
#endif

#endif /* BARLOW_SIMD_X86_H */
