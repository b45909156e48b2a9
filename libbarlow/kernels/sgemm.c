/* sgemm.c - private SGEMM kernels for the convolution shapes (see sgemm.h).
 *
 * One blocked driver (Goto's loop order: blocks of NC columns of C, then KC of
 * depth, then MC rows of A packed into slivers of MR rows, then panels of NR
 * columns of B) around one outer-product micro-kernel, C tile [MR][NR] +=
 * Apack[k][MR] x Bpanel[k][NR] (AVX-512 8 x 48, AVX2 6 x 16):
 *  - NN (op(B) = B): the forward (W x col) and the input gradient (W^T x dy).
 *    Over AVX-512 with A of NN_PACKED_MIN_ROWS (32) rows or more, each kc x 48
 *    panel of B is copied into a contiguous buffer first (it then sits in L1
 *    for all the MC/8 row slivers, whatever ldb is: rows 2-4 KiB apart in place
 *    fall into a few L1 sets); below that the copy costs more than it saves
 *    and B is read in place with masked loads at the right edge.
 *  - NT (op(B) = B^T): the weight gradient (dy x col^T). With A of
 *    NT_PACKED_MIN_ROWS rows or more, through the same driver: each kc x 48
 *    panel is a transposed copy of B (8 x 8 blocks in registers). Below that,
 *    nt_driver: 4 x 4 tiles of dot products along the contiguous k.
 * A (the small weight or dy matrix, either orientation) is packed per MC x KC
 * block, 8 x 8 blocks transposed in registers. Row offsets (bti_sgemm_rows)
 * are read when B is packed or read in place. Each C element is produced by
 * one fixed sequence of FMAs (k in order, KC blocks in order), so results are
 * the same bits on every call for a given level and shape, and the same for
 * the rows form and the dense form. */
#include "kernels/sgemm.h"
#include "kernels/simd_x86.h"

#include "kernels/blas.h"

#include <limits.h>
#include <pthread.h>

/* OpenBLAS cores with AVX2/AVX-512 kernels at least as fast as ours (docs/perf.md). */
static int blas_is_fast(void)
{
#ifdef BT_BLAS_OPENBLAS
    static const char *const fast[] = {"haswell", "skylakex", "zen", "cooperlake",
                                       "sapphirerapids"};
    const char *core = openblas_get_corename();
    size_t i, j;
    for (i = 0; core && i < sizeof fast / sizeof fast[0]; i++) {
        for (j = 0; core[j] && fast[i][j] && (core[j] | 0x20) == fast[i][j]; j++)
            ;
        if (!fast[i][j] && !core[j])
            return 1;
    }
#endif
    return 0; /* the reference BLAS, or an OpenBLAS on generic kernels */
}

static int blas_fast;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_probe(void) { blas_fast = blas_is_fast(); }

int bti_sgemm_prefer_private(int level)
{
    pthread_once(&blas_once, blas_probe);
    return level != BTI_CPU_GENERIC && !blas_fast;
}

static void blas(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    bti_blas_begin(1);
    cblas_sgemm(BTI_ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb,
                beta, c, (int)ldc);
    bti_blas_end(1);
}

#if BTI_X86

#define MC 240     /* rows of A packed at a time (a multiple of every MR): 180 KiB, in L2 */
#define KC_MAX 192 /* depth of a packed block: a KC x NR panel of B (36 KiB) stays in L1 */
#define APACK_SLACK 8 /* floats past packed A that pack_a's last store may write */
#define NT_KC 4096 /* depth of an NT pass */
/* NN with packed B panels from this many rows of A (AVX-512; docs/perf.md). */
#define NN_PACKED_MIN_ROWS 32
/* Columns of C per pass over k: an MC x NC block of C stays in L2 across the
 * KC passes (the weight gradient at 512 channels has a 9 MiB C). */
#define NC 480

/* dst[kk * ld + r] = row[r][kk] for kk < kc, r < 8: 8 x 8 blocks transposed in
 * registers; rows at and past `rows` become zeros (their pointers must still be
 * readable: callers repeat a valid row). */
T256 static void transpose_rows8(const float *const *row, int rows, int64_t kc, float *restrict dst,
                                 int64_t ld)
{
    int64_t kk;
    for (kk = 0; kk < kc; kk += 8) {
        const __m256i km = mask8(kc - kk);
        __m256 r0 = _mm256_maskload_ps(row[0] + kk, km), r1 = _mm256_maskload_ps(row[1] + kk, km),
               r2 = _mm256_maskload_ps(row[2] + kk, km), r3 = _mm256_maskload_ps(row[3] + kk, km),
               r4 = _mm256_maskload_ps(row[4] + kk, km), r5 = _mm256_maskload_ps(row[5] + kk, km),
               r6 = _mm256_maskload_ps(row[6] + kk, km), r7 = _mm256_maskload_ps(row[7] + kk, km);
        __m256 o[8];
        int q;
        if (rows < 8) {
            const __m256 z = _mm256_setzero_ps();
            r1 = rows > 1 ? r1 : z;
            r2 = rows > 2 ? r2 : z;
            r3 = rows > 3 ? r3 : z;
            r4 = rows > 4 ? r4 : z;
            r5 = rows > 5 ? r5 : z;
            r6 = rows > 6 ? r6 : z;
            r7 = z;
        }
        tr8x8(r0, r1, r2, r3, r4, r5, r6, r7, o);
        for (q = 0; q < 8 && kk + q < kc; q++)
            _mm256_storeu_ps(dst + (kk + q) * ld, o[q]);
    }
}

/* ap[t][kk][r] = op(A)[m0 + t*mr + r][k0 + kk], zero past row m0 + mc:
 * slivers of mr rows, 8 (AVX-512) or 6 (AVX2). The row-major form transposes
 * 8 x 8 blocks in registers (transpose_rows8), the transposed form copies 8
 * contiguous floats per k. Each column is stored as 8 floats mr apart: at mr
 * 6 its 2 spare lanes (zeros) land where the next column's store comes after,
 * and a sliver's last column spills 2 floats into the next sliver, packed
 * after it, or into the slack at the end of ap (APACK_SLACK). */
T256 static void pack_a(int mr, int ta, const float *a, int64_t lda, int64_t m0, int64_t mc,
                        int64_t k0, int64_t kc, float *restrict ap)
{
    int64_t t, kk;
    int r;
    for (t = 0; t * mr < mc; t++) {
        float *restrict dst = ap + t * kc * mr;
        const int rows = mc - t * mr < mr ? (int)(mc - t * mr) : mr;
        if (ta != BTI_NO_TRANS) {
            const float *src = a + k0 * lda + m0 + t * mr;
            const __m256i rm = mask8(rows);
            for (kk = 0; kk < kc; kk++)
                _mm256_storeu_ps(dst + kk * mr, _mm256_maskload_ps(src + kk * lda, rm));
            continue;
        }
        {
            const float *row[8];
            for (r = 0; r < 8; r++) /* rows past `rows` read row 0 and are zeroed */
                row[r] = a + (m0 + t * mr + (r < rows ? r : 0)) * lda + k0;
            transpose_rows8(row, rows, kc, dst, mr);
        }
    }
}

/* ---- AVX-512: NN 8 x 48, NT 4 x 4 ---------------------------------------- */

#define PF_AHEAD 8 /* rows of B fetched ahead in the NN kernels */

/* The 8 x 48 tile's steps, shared by nn512 and nn512p: row i of A (aa[i])
 * times the B vectors b0..b2 (or the first 2 or 1 of them) into accumulators
 * ci0..ci2, and the final store of row i (alpha, beta, masks m0..m2). */
#define ROW512_3(i)                                                                                \
    av = _mm512_set1_ps(aa[i]);                                                                    \
    c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                    \
    c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                                    \
    c##i##2 = _mm512_fmadd_ps(av, b2, c##i##2);
#define ROW512_2(i)                                                                                \
    av = _mm512_set1_ps(aa[i]);                                                                    \
    c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                    \
    c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);
#define ROW512_1(i)                                                                                \
    av = _mm512_set1_ps(aa[i]);                                                                    \
    c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);
#define ST512(i)                                                                                   \
    if (i < mr) {                                                                                  \
        float *cr = c + (int64_t)i * ldc;                                                          \
        __m512 r0 = _mm512_mul_ps(va, c##i##0), r1 = _mm512_mul_ps(va, c##i##1),                   \
               r2 = _mm512_mul_ps(va, c##i##2);                                                    \
        if (beta != 0.0f) {                                                                        \
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), r0);                           \
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), r1);                      \
            r2 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m2, cr + 32), r2);                      \
        }                                                                                          \
        _mm512_mask_storeu_ps(cr, m0, r0);                                                         \
        _mm512_mask_storeu_ps(cr + 16, m1, r1);                                                    \
        _mm512_mask_storeu_ps(cr + 32, m2, r2);                                                    \
    }
#define ROWS8(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7)

T512 static void nn512(int64_t kc, const float *restrict ap, const float *restrict b, int64_t ldb,
                       const int64_t *boff, float *restrict c, int64_t ldc, int mr, int64_t nr,
                       float alpha, float beta)
{
    const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16), m2 = mask16(nr - 32);
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    __m512 c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00;
    __m512 c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
    int64_t k;
    for (k = 0; k < kc; k++) {
        const float *br = boff ? b + boff[k] : b + k * ldb, *aa = ap + k * 8;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, br), b1 = _mm512_maskz_loadu_ps(m1, br + 16),
                     b2 = _mm512_maskz_loadu_ps(m2, br + 32);
        __m512 av;
        if (k + PF_AHEAD < kc) {
            /* rows of B are far apart: fetch a few ahead, the prefetchers stop at pages */
            const float *pf = boff ? b + boff[k + PF_AHEAD] : br + PF_AHEAD * ldb;
            _mm_prefetch((const char *)pf, _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + 32), _MM_HINT_T0);
        }
        ROWS8(ROW512_3)
    }
    {
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        ROWS8(ST512)
    }
}

/* As nn512, B packed: bp[k][48] contiguous (zeros past nr), so the loads are
 * plain and the hardware prefetchers follow one stream. */
T512 static void nn512p(int64_t kc, const float *restrict ap, const float *restrict bp,
                        float *restrict c, int64_t ldc, int mr, int64_t nr, float alpha, float beta)
{
    const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16), m2 = mask16(nr - 32);
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    __m512 c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00;
    __m512 c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
    int64_t k;
    /* C is read (or written) at the end: fetch a row of it every 8 steps */
#define PF_C(k)                                                                                    \
    if (((k) & 7) == 0 && (k) < 8 * (int64_t)mr) {                                                 \
        const float *cr = c + ((k) >> 3) * ldc;                                                    \
        _mm_prefetch((const char *)cr, _MM_HINT_T0);                                               \
        _mm_prefetch((const char *)(cr + 16), _MM_HINT_T0);                                        \
        _mm_prefetch((const char *)(cr + 32), _MM_HINT_T0);                                        \
        _mm_prefetch((const char *)(cr + 47), _MM_HINT_T0);                                        \
    }
    /* a narrow last panel runs only the vectors it has: a 48-wide tile for the
     * 11 columns left of N = 539 would waste three quarters of its FMAs */
    if (nr > 32) {
        for (k = 0; k < kc; k++) {
            const float *br = bp + k * 48, *aa = ap + k * 8;
            const __m512 b0 = _mm512_load_ps(br), b1 = _mm512_load_ps(br + 16),
                         b2 = _mm512_load_ps(br + 32);
            __m512 av;
            PF_C(k)
            ROWS8(ROW512_3)
        }
    } else if (nr > 16) {
        for (k = 0; k < kc; k++) {
            const float *br = bp + k * 48, *aa = ap + k * 8;
            const __m512 b0 = _mm512_load_ps(br), b1 = _mm512_load_ps(br + 16);
            __m512 av;
            PF_C(k)
            ROWS8(ROW512_2)
        }
    } else {
        for (k = 0; k < kc; k++) {
            const float *br = bp + k * 48, *aa = ap + k * 8;
            const __m512 b0 = _mm512_load_ps(br);
            __m512 av;
            PF_C(k)
            ROWS8(ROW512_1)
        }
    }
#undef PF_C
    {
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        ROWS8(ST512)
    }
}

#undef ROW512_3
#undef ROW512_2
#undef ROW512_1
#undef ST512
#undef ROWS8

/* bp[kk][48] = B[k0 + kk][n0 .. n0 + nr) (rows at b + boff[k0 + kk] + n0, or
 * ldb apart), zeros past nr. */
T512 static void pack_b512(const float *b, int64_t ldb, const int64_t *boff, int64_t k0,
                           int64_t kc, int64_t n0, int64_t nr, float *restrict bp)
{
    const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16), m2 = mask16(nr - 32);
    int64_t kk;
    for (kk = 0; kk < kc; kk++) {
        const float *src = (boff ? b + boff[k0 + kk] : b + (k0 + kk) * ldb) + n0;
        float *dst = bp + kk * 48;
        _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(dst + 16, _mm512_maskz_loadu_ps(m1, src + 16));
        _mm512_store_ps(dst + 32, _mm512_maskz_loadu_ps(m2, src + 32));
    }
}

/* C[i][j] (i < mr, j < nr, both <= 4) = alpha * sum_k a_i[k] b_j[k] + beta * C. */
T512 static void nt512(int64_t k, const float *a, int64_t lda, const float *const *brow,
                       float *c, int64_t ldc, int mr, int nr, float alpha, float beta)
{
    const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * lda, *a2 = a + (mr > 2 ? 2 : 0) * lda,
                *a3 = a + (mr > 3 ? 3 : 0) * lda;
    const float *b0 = brow[0], *b1 = brow[1], *b2 = brow[2], *b3 = brow[3];
    __m512 s00 = _mm512_setzero_ps(), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00,
           s12 = s00, s13 = s00, s20 = s00, s21 = s00, s22 = s00, s23 = s00, s30 = s00, s31 = s00,
           s32 = s00, s33 = s00;
    int64_t kk = 0;
    float out[4][4];
    int i, j;
#define NT512_STEP(LOAD)                                                                           \
    {                                                                                              \
        const __m512 x0 = LOAD(a0), x1 = LOAD(a1), x2 = LOAD(a2), x3 = LOAD(a3);                   \
        __m512 y;                                                                                  \
        y = LOAD(b0);                                                                              \
        s00 = _mm512_fmadd_ps(x0, y, s00);                                                         \
        s10 = _mm512_fmadd_ps(x1, y, s10);                                                         \
        s20 = _mm512_fmadd_ps(x2, y, s20);                                                         \
        s30 = _mm512_fmadd_ps(x3, y, s30);                                                         \
        y = LOAD(b1);                                                                              \
        s01 = _mm512_fmadd_ps(x0, y, s01);                                                         \
        s11 = _mm512_fmadd_ps(x1, y, s11);                                                         \
        s21 = _mm512_fmadd_ps(x2, y, s21);                                                         \
        s31 = _mm512_fmadd_ps(x3, y, s31);                                                         \
        y = LOAD(b2);                                                                              \
        s02 = _mm512_fmadd_ps(x0, y, s02);                                                         \
        s12 = _mm512_fmadd_ps(x1, y, s12);                                                         \
        s22 = _mm512_fmadd_ps(x2, y, s22);                                                         \
        s32 = _mm512_fmadd_ps(x3, y, s32);                                                         \
        y = LOAD(b3);                                                                              \
        s03 = _mm512_fmadd_ps(x0, y, s03);                                                         \
        s13 = _mm512_fmadd_ps(x1, y, s13);                                                         \
        s23 = _mm512_fmadd_ps(x2, y, s23);                                                         \
        s33 = _mm512_fmadd_ps(x3, y, s33);                                                         \
    }
#define LD_FULL(p) _mm512_loadu_ps((p) + kk)
#define LD_MASK(p) _mm512_maskz_loadu_ps(tail, (p) + kk)
    for (; kk + 16 <= k; kk += 16)
        NT512_STEP(LD_FULL)
    if (kk < k) {
        const __mmask16 tail = mask16(k - kk);
        NT512_STEP(LD_MASK)
    }
#undef LD_FULL
#undef LD_MASK
#undef NT512_STEP
    out[0][0] = _mm512_reduce_add_ps(s00);
    out[0][1] = _mm512_reduce_add_ps(s01);
    out[0][2] = _mm512_reduce_add_ps(s02);
    out[0][3] = _mm512_reduce_add_ps(s03);
    out[1][0] = _mm512_reduce_add_ps(s10);
    out[1][1] = _mm512_reduce_add_ps(s11);
    out[1][2] = _mm512_reduce_add_ps(s12);
    out[1][3] = _mm512_reduce_add_ps(s13);
    out[2][0] = _mm512_reduce_add_ps(s20);
    out[2][1] = _mm512_reduce_add_ps(s21);
    out[2][2] = _mm512_reduce_add_ps(s22);
    out[2][3] = _mm512_reduce_add_ps(s23);
    out[3][0] = _mm512_reduce_add_ps(s30);
    out[3][1] = _mm512_reduce_add_ps(s31);
    out[3][2] = _mm512_reduce_add_ps(s32);
    out[3][3] = _mm512_reduce_add_ps(s33);
    for (i = 0; i < mr; i++)
        for (j = 0; j < nr; j++)
            c[i * ldc + j] = beta != 0.0f ? alpha * out[i][j] + beta * c[i * ldc + j]
                                          : alpha * out[i][j];
}

/* ---- AVX2 + FMA: NN 6 x 16, NT 2 x 4 ------------------------------------- */

/* 6 x 16: 12 accumulators, 2 B registers and the broadcast of A fit the 16
 * ymm registers (4 x 24 needs all 16 and more for the masks: GCC kept an
 * accumulator on the stack, and its store-to-load chain halved the speed).
 * FULL: nr is 16, so B and C move with plain loads and stores; masked ones
 * (vmaskmovps: slow on AMD Zen, the stores most) only at the right edge. */
T256 static inline __attribute__((always_inline)) void
nn256_tile(const int FULL, int64_t kc, const float *restrict ap, const float *restrict b,
           int64_t ldb, const int64_t *boff, float *restrict c, int64_t ldc, int mr, int64_t nr,
           float alpha, float beta)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    int64_t k;
#define LD256(p, n) (FULL ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask8(n)))
    for (k = 0; k < kc; k++) {
        const float *br = boff ? b + boff[k] : b + k * ldb, *aa = ap + k * 6;
        const __m256 b0 = LD256(br, nr), b1 = LD256(br + 8, nr - 8);
        __m256 av;
#define ROW256(i)                                                                                  \
    av = _mm256_broadcast_ss(aa + i);                                                              \
    c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                    \
    c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);
        ROW256(0) ROW256(1) ROW256(2) ROW256(3) ROW256(4) ROW256(5)
#undef ROW256
    }
    {
        const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#define ST256(p, n, v) (FULL ? _mm256_storeu_ps(p, v) : _mm256_maskstore_ps(p, mask8(n), v))
#define ROWST256(i)                                                                                \
    if (i < mr) {                                                                                  \
        float *cr = c + (int64_t)i * ldc;                                                          \
        __m256 r0 = _mm256_mul_ps(va, c##i##0), r1 = _mm256_mul_ps(va, c##i##1);                   \
        if (beta != 0.0f) {                                                                        \
            r0 = _mm256_fmadd_ps(vb, LD256(cr, nr), r0);                                           \
            r1 = _mm256_fmadd_ps(vb, LD256(cr + 8, nr - 8), r1);                                   \
        }                                                                                          \
        ST256(cr, nr, r0);                                                                         \
        ST256(cr + 8, nr - 8, r1);                                                                 \
    }
        ROWST256(0) ROWST256(1) ROWST256(2) ROWST256(3) ROWST256(4) ROWST256(5)
#undef ROWST256
#undef ST256
    }
#undef LD256
}

T256 static void nn256(int64_t kc, const float *restrict ap, const float *restrict b, int64_t ldb,
                       const int64_t *boff, float *restrict c, int64_t ldc, int mr, int64_t nr,
                       float alpha, float beta)
{
    if (nr == 16)
        nn256_tile(1, kc, ap, b, ldb, boff, c, ldc, mr, nr, alpha, beta);
    else
        nn256_tile(0, kc, ap, b, ldb, boff, c, ldc, mr, nr, alpha, beta);
}

T256 static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T256 static void nt256(int64_t k, const float *a, int64_t lda, const float *const *brow,
                       float *c, int64_t ldc, int mr, int nr, float alpha, float beta)
{
    const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * lda;
    const float *b0 = brow[0], *b1 = brow[1], *b2 = brow[2], *b3 = brow[3];
    __m256 s00 = _mm256_setzero_ps(), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00,
           s12 = s00, s13 = s00;
    int64_t kk = 0;
    float out[2][4];
    int i, j;
#define NT256_STEP(LOAD)                                                                           \
    {                                                                                              \
        const __m256 x0 = LOAD(a0), x1 = LOAD(a1);                                                 \
        __m256 y;                                                                                  \
        y = LOAD(b0);                                                                              \
        s00 = _mm256_fmadd_ps(x0, y, s00);                                                         \
        s10 = _mm256_fmadd_ps(x1, y, s10);                                                         \
        y = LOAD(b1);                                                                              \
        s01 = _mm256_fmadd_ps(x0, y, s01);                                                         \
        s11 = _mm256_fmadd_ps(x1, y, s11);                                                         \
        y = LOAD(b2);                                                                              \
        s02 = _mm256_fmadd_ps(x0, y, s02);                                                         \
        s12 = _mm256_fmadd_ps(x1, y, s12);                                                         \
        y = LOAD(b3);                                                                              \
        s03 = _mm256_fmadd_ps(x0, y, s03);                                                         \
        s13 = _mm256_fmadd_ps(x1, y, s13);                                                         \
    }
#define LD_FULL(p) _mm256_loadu_ps((p) + kk)
#define LD_MASK(p) _mm256_maskload_ps((p) + kk, tail)
    for (; kk + 8 <= k; kk += 8)
        NT256_STEP(LD_FULL)
    if (kk < k) {
        const __m256i tail = mask8(k - kk);
        NT256_STEP(LD_MASK)
    }
#undef LD_FULL
#undef LD_MASK
#undef NT256_STEP
    out[0][0] = hsum256(s00);
    out[0][1] = hsum256(s01);
    out[0][2] = hsum256(s02);
    out[0][3] = hsum256(s03);
    out[1][0] = hsum256(s10);
    out[1][1] = hsum256(s11);
    out[1][2] = hsum256(s12);
    out[1][3] = hsum256(s13);
    for (i = 0; i < mr; i++)
        for (j = 0; j < nr; j++)
            c[i * ldc + j] = beta != 0.0f ? alpha * out[i][j] + beta * c[i * ldc + j]
                                          : alpha * out[i][j];
}

/* ---- drivers --------------------------------------------------------------- */

/* NT through the NN kernel: C[i][j] = sum_k A[i][k] B[j][k] with B^T packed, a
 * block of kc x nrmax at a time, by a transposing copy; A is packed as in NN.
 * The copy (8 x 8 blocks transposed in registers, about a quarter cycle per
 * element of B per block of MC rows of A) against MC/32 cycles of FMAs: worth
 * it from a few dozen rows of A, where the dot-product tiles of nt_driver are
 * bound by L2 reads and reductions.
 * bp[kk][j] = B[n0 + j][k0 + kk] (nrmax a multiple of 8; zeros past nr). */
T256 static void pack_bt(const float *b, int64_t ldb, const int64_t *boff, int64_t n0, int64_t nr,
                         int64_t k0, int64_t kc, int64_t nrmax, float *restrict bp)
{
    int64_t j0, kk;
    int r;
    for (j0 = 0; j0 < nr; j0 += 8) {
        const int rows = nr - j0 < 8 ? (int)(nr - j0) : 8;
        const float *row[8];
        for (r = 0; r < 8; r++) { /* missing rows read row j0 and are zeroed below */
            const int64_t j = n0 + j0 + (r < rows ? r : 0);
            row[r] = (boff ? b + boff[j] : b + j * ldb) + k0;
        }
        transpose_rows8(row, rows, kc, bp + j0, nrmax);
    }
    if (nr < nrmax) { /* the kernels load whole panels: zeros, not stale data, past nr */
        const int64_t j1 = (nr + 7) & ~(int64_t)7;
        for (kk = 0; kk < kc; kk++)
            for (r = (int)j1; r < nrmax; r++)
                bp[kk * nrmax + r] = 0.0f;
    }
}

/* The blocked loop over packed A (MC rows at a time). B: NN (tb = 0) packed
 * into panels (pack_b512) or read in place, see NN_PACKED_MIN_ROWS; NT (tb)
 * through a transposed copy of each kc x nrmax block (pack_bt). */
static void blocked_driver(int level, int ta, int tb, int64_t m, int64_t n, int64_t k,
                           float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                           const int64_t *boff, float beta, float *c, int64_t ldc)
{
    float ap[MC * KC_MAX + APACK_SLACK] __attribute__((aligned(64)));
    float bp[KC_MAX * 48] __attribute__((aligned(64)));
    const int mr = level == BTI_CPU_AVX512 ? 8 : 6;
    const int64_t nrmax = level == BTI_CPU_AVX512 ? 48 : 16;
    /* packed B panels: always for NT; for NN over AVX-512 once A is tall enough */
    const int packb = level == BTI_CPU_AVX512 && (tb || m >= NN_PACKED_MIN_ROWS);
    const int64_t nkb = (k + KC_MAX - 1) / KC_MAX, kcs = (k + nkb - 1) / nkb;
    int64_t n1, k0, m0, n0, i;
    for (n1 = 0; n1 < n; n1 += NC) {
        const int64_t n1e = n - n1 < NC ? n : n1 + NC;
        for (k0 = 0; k0 < k; k0 += kcs) {
            const int64_t kc = k - k0 < kcs ? k - k0 : kcs;
            const float bet = k0 == 0 ? beta : 1.0f;
            for (m0 = 0; m0 < m; m0 += MC) {
                const int64_t mc = m - m0 < MC ? m - m0 : MC;
                pack_a(mr, ta, a, lda, m0, mc, k0, kc, ap);
                for (n0 = n1; n0 < n1e; n0 += nrmax) {
                    const int64_t nr = n1e - n0 < nrmax ? n1e - n0 : nrmax;
                    /* the kernel's view of B: the packed copy, row offsets, or rows of ldb */
                    const float *bt = tb ? bp : boff ? b + n0 : b + k0 * ldb + n0;
                    const int64_t *bo = !tb && boff ? boff + k0 : NULL, bld = tb ? nrmax : ldb;
                    if (tb)
                        pack_bt(b, ldb, boff, n0, nr, k0, kc, nrmax, bp);
                    else if (packb)
                        pack_b512(b, ldb, boff, k0, kc, n0, nr, bp);
                    for (i = 0; i < mc; i += mr) {
                        const int rows = mc - i < mr ? (int)(mc - i) : mr;
                        const float *at = ap + (i / mr) * kc * mr;
                        float *ct = c + (m0 + i) * ldc + n0;
                        if (packb)
                            nn512p(kc, at, bp, ct, ldc, rows, nr, alpha, bet);
                        else if (level == BTI_CPU_AVX512)
                            nn512(kc, at, bt, bld, bo, ct, ldc, rows, nr, alpha, bet);
                        else
                            nn256(kc, at, bt, bld, bo, ct, ldc, rows, nr, alpha, bet);
                    }
                }
            }
        }
    }
}

static void nt_driver(int level, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, const int64_t *boff, float beta,
                      float *c, int64_t ldc)
{
    const int mr = level == BTI_CPU_AVX512 ? 4 : 2;
    const int64_t nkb = (k + NT_KC - 1) / NT_KC, kcs = (k + nkb - 1) / nkb;
    int64_t k0, i, j;
    for (k0 = 0; k0 < k; k0 += kcs) {
        const int64_t kc = k - k0 < kcs ? k - k0 : kcs;
        const float bet = k0 == 0 ? beta : 1.0f;
        for (i = 0; i < m; i += mr) {
            const int rows = m - i < mr ? (int)(m - i) : mr;
            for (j = 0; j < n; j += 4) {
                const int cols = n - j < 4 ? (int)(n - j) : 4;
                const float *at = a + i * lda + k0, *bt[4];
                float *ct = c + i * ldc + j;
                int q;
                for (q = 0; q < 4; q++) {
                    const int64_t r = j + (q < cols ? q : 0); /* short tiles repeat row j */
                    bt[q] = (boff ? b + boff[r] : b + r * ldb) + k0;
                }
                if (level == BTI_CPU_AVX512)
                    nt512(kc, at, lda, bt, ct, ldc, rows, cols, alpha, bet);
                else
                    nt256(kc, at, lda, bt, ct, ldc, rows, cols, alpha, bet);
            }
        }
    }
}

/* Which NT form: the packed one from this many rows of A (docs/perf.md). */
#define NT_PACKED_MIN_ROWS 32
/* the AVX2 level's, measured with an older scalar transposing copy */
#define NT_PACKED_MIN_ROWS_AVX2 128
static int nt_packed(int level, int64_t m)
{
    return m >= (level == BTI_CPU_AVX512 ? NT_PACKED_MIN_ROWS : NT_PACKED_MIN_ROWS_AVX2);
}

/* The private kernels, when they run and can take this form: 1 done, 0 not. */
static int private_gemm(int level, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb,
                        const int64_t *boff, float beta, float *c, int64_t ldc)
{
    if (level == BTI_CPU_GENERIC || m <= 0 || n <= 0 || k <= 0)
        return 0;
    if (tb == BTI_NO_TRANS)
        blocked_driver(level, ta, 0, m, n, k, alpha, a, lda, b, ldb, boff, beta, c, ldc);
    else if (ta != BTI_NO_TRANS)
        return 0;
    else if (nt_packed(level, m))
        blocked_driver(level, BTI_NO_TRANS, 1, m, n, k, alpha, a, lda, b, ldb, boff, beta, c,
                       ldc);
    else
        nt_driver(level, m, n, k, alpha, a, lda, b, ldb, boff, beta, c, ldc);
    return 1;
}

#endif /* BTI_X86 */

void bti_sgemm(int level, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc)
{
#if BTI_X86
    if (private_gemm(level, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, NULL, beta, c, ldc))
        return;
#else
    (void)level;
#endif
    blas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int bti_sgemm_rows(int level, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                   float alpha, const float *a, int64_t lda, const float *b, const int64_t *boff,
                   float beta, float *c, int64_t ldc)
{
#if BTI_X86
    return private_gemm(level, trans_a, trans_b, m, n, k, alpha, a, lda, b, 0, boff, beta, c, ldc);
#else
    (void)level, (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a,
        (void)lda;
    (void)b, (void)boff, (void)beta, (void)c, (void)ldc;
    return 0;
#endif
}
