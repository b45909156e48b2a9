/* sgemm.h - a private single-precision GEMM for the convolution shapes (few
 * output channels, many pixels), with AVX-512 and AVX2+FMA kernels chosen at
 * run time; other CPUs, and shapes it does not handle, go to cblas_sgemm.
 *
 * Why: Debian's OpenBLAS runs its generic "Prescott" SSE kernels on CPUs it
 * does not know, and even its good kernels pack both operands, which costs as
 * much as the arithmetic when one side has only 16-64 rows. These kernels
 * read the big operand in place when the other has few rows, and copy it
 * into L1-sized panels (transposed for the NT form) once it has enough rows to
 * repay the copy. */
#ifndef BARLOW_SGEMM_H
#define BARLOW_SGEMM_H

#include "common/cpu.h"

/* Row-major C[m][n] = alpha * op(A) * op(B) + beta * C at a CPU level (cpu.h:
 * the generic level is cblas_sgemm), with the CBLAS meaning of
 * trans_a/trans_b (BTI_NO_TRANS / BTI_TRANS) and leading dimensions. Runs on the
 * calling thread only (no OpenMP, no BLAS threads), also where it falls back to
 * cblas_sgemm. beta == 0 does not read C. For a given level and shape the result
 * is the same bits on every call (the summation order depends on nothing else).
 * Allocates nothing. */
BTI_HIDDEN void bti_sgemm(int level, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                          float beta, float *c, int64_t ldc);

/* As bti_sgemm, but the stored B is given by row offsets: row r of B (k rows
 * when trans_b is BTI_NO_TRANS, n rows of B when BTI_TRANS) is the contiguous
 * run starting at b + boff[r]. Lets a convolution read shifted windows of its
 * padded input in place instead of building im2col columns. Returns 0 (and
 * does nothing) when no private kernel runs this (level BTI_CPU_GENERIC, or
 * both operands transposed); the caller then needs another way. */
BTI_HIDDEN int bti_sgemm_rows(int level, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                              float alpha, const float *a, int64_t lda, const float *b,
                              const int64_t *boff, float beta, float *c, int64_t ldc);

/* 1 when the private kernels run and beat the BLAS: the BLAS is not OpenBLAS,
 * or OpenBLAS chose kernels without AVX2 (Debian's "Prescott" fallback on CPUs
 * it does not know). Large GEMMs then go here rather than to the BLAS. */
BTI_HIDDEN int bti_sgemm_prefer_private(int level);

#endif /* BARLOW_SGEMM_H */
