/* check_sgemm.c - the private SGEMM kernels against a double-precision
 * reference: every transpose pair, edge sizes around the tile sizes, leading
 * dimensions wider than the rows, alpha/beta, beta = 0 ignoring NaN in C,
 * untouched padding, and the same bits on a repeated call; the packed-panel
 * forms across k and column blocks; the row-offset form against the dense
 * one; the im2col/col2im plane helpers against their definition. */
#include "kernels/blas.h"
#include "kernels/conv_planes.h"
#include "common/rng.h"
#include "kernels/sgemm.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *filled(int64_t n, uint64_t key)
{
    float *p = malloc((size_t)n * sizeof *p);
    int64_t i;
    for (i = 0; i < n; i++)
        p[i] = (float)(2.0 * bti_rng_uniform(key, (uint64_t)i) - 1.0);
    return p;
}

/* Runs one shape at the current level; returns the worst error / bound. */
/* The level run_shape runs its GEMMs at (sweep sets it). */
static int level_now;

static double run_shape(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                        uint64_t seed)
{
    const int64_t lda = (ta == BTI_NO_TRANS ? k : m) + 3, ldb = (tb == BTI_NO_TRANS ? n : k) + 5,
                  ldc = n + 2;
    const int64_t arows = ta == BTI_NO_TRANS ? m : k, brows = tb == BTI_NO_TRANS ? k : n;
    float *a = filled(arows * lda, bti_rng_key(seed, 1, 0, 0));
    float *b = filled(brows * ldb, bti_rng_key(seed, 2, 0, 0));
    float *c = filled(m * ldc + 1, bti_rng_key(seed, 3, 0, 0));
    float *c0 = malloc((size_t)(m * ldc + 1) * sizeof *c0), *c2 = malloc((size_t)(m * ldc + 1) * sizeof *c2);
    double worst = 0;
    int64_t i, j, p;
    if (beta == 0.0f)
        for (i = 0; i < m; i++)
            c[i * ldc + (i % n)] = NAN; /* must not be read */
    memcpy(c0, c, (size_t)(m * ldc + 1) * sizeof *c);
    bti_sgemm(level_now, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    for (i = 0; i < m; i++) {
        for (j = 0; j < n; j++) {
            double s = 0, bound = 0;
            for (p = 0; p < k; p++) {
                double x = ta == BTI_NO_TRANS ? a[i * lda + p] : a[p * lda + i];
                double y = tb == BTI_NO_TRANS ? b[p * ldb + j] : b[j * ldb + p];
                s += x * y;
                bound += fabs(x * y);
            }
            s *= alpha;
            bound = fabs(alpha) * bound;
            if (beta != 0.0f) {
                s += beta * (double)c0[i * ldc + j];
                bound += fabs(beta * (double)c0[i * ldc + j]);
            }
            ck_assert_msg(isfinite(c[i * ldc + j]), "non-finite at %lld,%lld", (long long)i, (long long)j);
            worst = fmax(worst, fabs(c[i * ldc + j] - s) / (bound * 1e-6 + 1e-30));
        }
        for (j = n; j < ldc; j++) /* padding untouched */
            ck_assert(memcmp(&c[i * ldc + j], &c0[i * ldc + j], sizeof(float)) == 0);
    }
    ck_assert(memcmp(&c[m * ldc], &c0[m * ldc], sizeof(float)) == 0);
    /* the same bits again */
    memcpy(c2, c0, (size_t)(m * ldc + 1) * sizeof *c0);
    bti_sgemm(level_now, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
    for (i = 0; i < m; i++)
        ck_assert(memcmp(c2 + i * ldc, c + i * ldc, (size_t)n * sizeof(float)) == 0);
    free(a);
    free(b);
    free(c);
    free(c0);
    free(c2);
    return worst;
}

static void sweep(int level)
{
    /* rows: each tile height and one past it (AVX2 6, AVX-512 8), more than one MC block */
    static const int64_t ms[] = {1, 3, 4, 5, 6, 7, 8, 9, 16, 17, 63, 64, 65, 250};
    static const int64_t ns[] = {1, 4, 7, 15, 16, 17, 24, 25, 47, 48, 49, 97, 196};
    static const int64_t ks[] = {1, 2, 9, 15, 16, 17, 33, 191, 192, 193, 400};
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    size_t x, y, z;
    uint64_t seed = 1;
    double worst = 0;
    int tr;
    level_now = level;
    for (tr = 0; tr < 4; tr++) {
        const int ta = tr & 1 ? BTI_TRANS : BTI_NO_TRANS, tb = tr & 2 ? BTI_TRANS : BTI_NO_TRANS;
        for (x = 0; x < sizeof ms / sizeof ms[0]; x++)
            for (y = 0; y < sizeof ns / sizeof ns[0]; y += 1 + (x % 2))
                for (z = (x + y) % 3; z < sizeof ks / sizeof ks[0]; z += 3) {
                    const float beta = betas[(x + y + z) % 3], alpha = (seed % 4 == 0) ? -0.5f : 1.0f;
                    double e = run_shape(ta, tb, ms[x], ns[y], ks[z], alpha, beta, seed++);
                    ck_assert_msg(e < 4.0, "level %d ta %d tb %d %lldx%lldx%lld: error %.3g x 1e-6 of the bound",
                                  level, ta, tb, (long long)ms[x], (long long)ns[y], (long long)ks[z], e);
                    worst = fmax(worst, e);
                }
    }
    /* a deep NT (several k passes) and a tall NN (several row blocks) */
    worst = fmax(worst, run_shape(BTI_NO_TRANS, BTI_TRANS, 5, 6, 9000, 1.0f, 1.0f, seed++));
    worst = fmax(worst, run_shape(BTI_TRANS, BTI_NO_TRANS, 300, 50, 600, 1.0f, 0.0f, seed++));
    /* a tall NT: the packed form, two row blocks and a short one, several k passes */
    worst = fmax(worst, run_shape(BTI_NO_TRANS, BTI_TRANS, 530, 61, 600, 1.0f, 0.5f, seed++));
    /* packed NN B panels (m >= 128) across column blocks of C (NC = 480: 480 + 480 + 41),
     * a ragged last panel, k blocks, every beta; TN the same; packed NT from 32 rows */
    worst = fmax(worst, run_shape(BTI_NO_TRANS, BTI_NO_TRANS, 136, 1001, 385, 1.0f, 0.0f, seed++));
    worst = fmax(worst, run_shape(BTI_NO_TRANS, BTI_NO_TRANS, 257, 530, 200, -0.5f, 1.0f, seed++));
    worst = fmax(worst, run_shape(BTI_TRANS, BTI_NO_TRANS, 128, 963, 17, 1.0f, 0.5f, seed++));
    worst = fmax(worst, run_shape(BTI_TRANS, BTI_NO_TRANS, 300, 49, 1, 2.0f, 0.0f, seed++));
    worst = fmax(worst, run_shape(BTI_NO_TRANS, BTI_TRANS, 32, 1000, 390, 1.0f, 1.0f, seed++));
    worst = fmax(worst, run_shape(BTI_NO_TRANS, BTI_TRANS, 33, 7, 1, 1.0f, 0.5f, seed++));
    worst = fmax(worst, run_shape(BTI_NO_TRANS, BTI_TRANS, 40, 1, 200, 1.0f, 0.0f, seed++));
    worst = fmax(worst, run_shape(BTI_NO_TRANS, BTI_NO_TRANS, 128, 1, 1, 1.0f, 0.0f, seed++));
    ck_assert(worst < 4.0);
}

/* Every level up to the run's (BT_CPU; the generic one is the BLAS). */
START_TEST(levels_match_reference)
{
    int level;
    for (level = BTI_CPU_GENERIC; level <= bti_cpu_default(); level++)
        sweep(level);
}
END_TEST

/* bti_sgemm_rows (B rows given by offsets, as the padded-grid convolution uses)
 * gives the same bits as bti_sgemm on the same rows laid out densely. */
static void rows_case(int level, int tb, int64_t m, int64_t n, int64_t k, uint64_t seed)
{
    const int64_t brows = tb == BTI_NO_TRANS ? k : n, bcols = tb == BTI_NO_TRANS ? n : k;
    const int64_t span = brows * 7 + bcols + 3;
    float *a = filled(m * k, bti_rng_key(seed, 1, 0, 0)), *src = filled(span, bti_rng_key(seed, 2, 0, 0));
    float *dense = malloc((size_t)(brows * bcols) * sizeof *dense);
    float *c1 = filled(m * n, bti_rng_key(seed, 3, 0, 0)), *c2 = malloc((size_t)(m * n) * sizeof *c2);
    int64_t *off = malloc((size_t)brows * sizeof *off), r;
    for (r = 0; r < brows; r++) {
        off[r] = (r * 7 + (r % 3)) % (span - bcols); /* overlapping, unordered windows */
        memcpy(dense + r * bcols, src + off[r], (size_t)bcols * sizeof *dense);
    }
    memcpy(c2, c1, (size_t)(m * n) * sizeof *c2);
    ck_assert_int_eq(
        bti_sgemm_rows(level, BTI_NO_TRANS, tb, m, n, k, 1.0f, a, k, src, off, 0.5f, c1, n), 1);
    bti_sgemm(level, BTI_NO_TRANS, tb, m, n, k, 1.0f, a, k, dense, bcols, 0.5f, c2, n);
    ck_assert_msg(memcmp(c1, c2, (size_t)(m * n) * sizeof *c1) == 0,
                  "level %d tb %d %lldx%lldx%lld: rows differ from dense", level, tb, (long long)m,
                  (long long)n, (long long)k);
    free(a);
    free(src);
    free(dense);
    free(c1);
    free(c2);
    free(off);
}

START_TEST(rows_match_dense)
{
    int level;
    for (level = BTI_CPU_AVX2; level <= bti_cpu_default(); level++) {
        rows_case(level, BTI_NO_TRANS, 20, 100, 300, 1);  /* B read in place */
        rows_case(level, BTI_NO_TRANS, 70, 100, 300, 6);  /* packed B panels over AVX-512 */
        rows_case(level, BTI_NO_TRANS, 130, 530, 300, 4); /* packed B panels, two C column blocks */
        rows_case(level, BTI_TRANS, 20, 75, 500, 2);      /* dot-product NT */
        rows_case(level, BTI_TRANS, 40, 75, 500, 5);      /* packed NT over AVX-512 */
        rows_case(level, BTI_TRANS, 300, 75, 500, 3);     /* packed NT */
    }
}
END_TEST

/* bti_im2col_plane / bti_col2im_plane against plain loops over the definition:
 * the same bits (copies and one add per element per tap), nothing written
 * outside the plane, at the given level. */
static void plane_case(int level, int64_t h, int64_t w, int k, int s, int pad)
{
    const int64_t ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1, guard = 40;
    float *x = filled(h * w, bti_rng_key(7, (uint64_t)h, (uint64_t)w, 1));
    float *d = malloc((size_t)(ho * wo + 2 * guard) * sizeof *d);
    float *xa = malloc((size_t)(h * w + 2 * guard) * sizeof *xa);
    float *xb = malloc((size_t)(h * w + 2 * guard) * sizeof *xb);
    float *dsrc = filled(ho * wo, bti_rng_key(7, (uint64_t)h, (uint64_t)w, 2));
    int i, j;
    int64_t oy, ox, q;
    for (q = 0; q < h * w + 2 * guard; q++)
        xa[q] = xb[q] = (float)q;
    for (i = 0; i < k; i++)
        for (j = 0; j < k; j++) {
            int64_t lo = 0, hi = 0;
            for (ox = 0; ox < wo; ox++) /* the valid columns, found by brute force */
                if (ox * s - pad + j >= 0 && ox * s - pad + j < w) {
                    if (hi == 0)
                        lo = ox;
                    hi = ox + 1;
                }
            if (hi == 0)
                lo = 0;
            for (q = 0; q < ho * wo + 2 * guard; q++)
                d[q] = -7.0f;
            bti_im2col_plane(level, d + guard, x, h, w, ho, wo, s, pad, i, j, lo, hi);
            for (q = 0; q < guard; q++)
                ck_assert(d[q] == -7.0f && d[guard + ho * wo + q] == -7.0f);
            for (oy = 0; oy < ho; oy++)
                for (ox = 0; ox < wo; ox++) {
                    const int64_t iy = oy * s - pad + i, ix = ox * s - pad + j;
                    const float want = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[iy * w + ix] : 0.0f;
                    ck_assert_msg(d[guard + oy * wo + ox] == want,
                                  "im2col level %d %lldx%lld k%d s%d p%d tap %d,%d at %lld,%lld", level,
                                  (long long)h, (long long)w, k, s, pad, i, j, (long long)oy, (long long)ox);
                }
            bti_col2im_plane(level, dsrc, xa + guard, h, w, ho, wo, s, pad, i, j, lo, hi);
            for (oy = 0; oy < ho; oy++)
                for (ox = 0; ox < wo; ox++) {
                    const int64_t iy = oy * s - pad + i, ix = ox * s - pad + j;
                    if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                        xb[guard + iy * w + ix] += dsrc[oy * wo + ox];
                }
        }
    ck_assert_msg(memcmp(xa, xb, (size_t)(h * w + 2 * guard) * sizeof *xa) == 0,
                  "col2im level %d %lldx%lld k%d s%d p%d", level, (long long)h, (long long)w, k, s, pad);
    free(x);
    free(d);
    free(xa);
    free(xb);
    free(dsrc);
}

START_TEST(im2col_col2im_planes)
{
    static const int geo[][5] = {
        /* h, w, k, s, pad */
        {7, 7, 3, 1, 1},   {4, 4, 3, 1, 1}, {8, 5, 3, 1, 1}, {28, 28, 3, 1, 1}, {5, 5, 5, 1, 2},
        {1, 1, 3, 1, 1},   {3, 17, 3, 1, 1}, {70, 70, 3, 1, 1}, /* larger than a flat plane */
        {9, 9, 3, 2, 1},   {14, 14, 3, 2, 1}, {6, 7, 1, 2, 0}, {10, 3, 3, 1, 0}, {4, 40, 3, 1, 0},
        {5, 37, 3, 2, 1},  {2, 2, 3, 1, 2},  {11, 11, 7, 2, 3},
    };
    size_t t;
    int level;
    for (level = BTI_CPU_GENERIC; level <= bti_cpu_default(); level++)
        for (t = 0; t < sizeof geo / sizeof geo[0]; t++)
            plane_case(level, geo[t][0], geo[t][1], geo[t][2], geo[t][3], geo[t][4]);
}
END_TEST

/* Zero padding of ch x nb planes into a group layout with a gap after each
 * channel's planes, against the definition; the gap is left alone. Small
 * planes (expanding loads), planes past their limit (masked rows), pad 0-2. */
static void pad_case(int level, int64_t h, int64_t w, int pad)
{
    const int64_t ch = 3, nb = 2, hp = h + 2 * pad, wp = w + 2 * pad, plane = hp * wp;
    const int64_t lcap = nb * plane + 5, nx = nb * ch * h * w;
    float *x = malloc((size_t)nx * sizeof *x), *d = malloc((size_t)(ch * lcap) * sizeof *d);
    int64_t i, c, b, y, xx;
    for (i = 0; i < nx; i++)
        x[i] = (float)(i % 97) - 40.0f;
    for (i = 0; i < ch * lcap; i++)
        d[i] = 1234.0f;
    bti_pad_planes(level, d, lcap, x, ch, nb, h, w, pad);
    for (c = 0; c < ch; c++) {
        for (b = 0; b < nb; b++)
            for (y = 0; y < hp; y++)
                for (xx = 0; xx < wp; xx++) {
                    const int inside = y >= pad && y < pad + h && xx >= pad && xx < pad + w;
                    const float want =
                        inside ? x[((b * ch + c) * h + y - pad) * w + xx - pad] : 0.0f;
                    ck_assert_msg(d[c * lcap + b * plane + y * wp + xx] == want,
                                  "pad level %d %lldx%lld pad %d: c %lld b %lld (%lld, %lld)",
                                  level, (long long)h, (long long)w, pad, (long long)c,
                                  (long long)b, (long long)y, (long long)xx);
                }
        for (i = nb * plane; i < lcap; i++)
            ck_assert(d[c * lcap + i] == 1234.0f);
    }
    free(x);
    free(d);
}

START_TEST(padded_planes)
{
    static const int geo[][3] = {{4, 4, 1}, {7, 7, 1}, {1, 1, 1}, {3, 17, 2}, {28, 28, 1},
                                 {43, 43, 1}, {44, 44, 1}, {70, 70, 1}, {5, 9, 0}};
    size_t t;
    int level;
    for (level = BTI_CPU_GENERIC; level <= bti_cpu_default(); level++)
        for (t = 0; t < sizeof geo / sizeof geo[0]; t++)
            pad_case(level, geo[t][0], geo[t][1], geo[t][2]);
}
END_TEST

Suite *sgemm_suite(void)
{
    Suite *s = suite_create("sgemm");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, levels_match_reference);
    tcase_add_test(tc, rows_match_dense);
    tcase_add_test(tc, im2col_col2im_planes);
    tcase_add_test(tc, padded_planes);
    suite_add_tcase(s, tc);
    return s;
}
