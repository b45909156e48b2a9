/* loss_paths.c - the batch reductions and the two exact paths of the loss:
 * D x D (C = A^T B / N) and Gram (K = A A^T, B B^T; O(N^2 D), no D x D matrix).
 * See barlowtwins.md sections 1.4 and 1.5 for the formulas. loss.c calls
 * these steps; nothing here calls back into loss.c. */
#include "loss/loss.h"

#include "kernels/blas.h"

#include <math.h>
#include <string.h>

/* Columns handled by one OpenMP task in the column reductions: each column is
 * summed over the rows in row order by exactly one thread, so the result does
 * not depend on the thread count. */
#define COLBLK 256

/* OpenMP threads for the element-wise passes over count elements. Each pass is
 * memory-bound and O(N D), against O(N^2 D) or O(N D^2) in the GEMMs; below a
 * few million elements a pass takes a few milliseconds on one core, less than
 * the time libgomp's idle workers spin after a parallel region, and that
 * spinning takes cores from the BLAS threads of the next GEMM (measured:
 * N=256, D=8192 forward+backward 2x faster on 2 cores with one thread here). */
int bti_loss_ew_threads(const bt_loss *l, int64_t count)
{
    return count < ((int64_t)1 << 22) ? 1 : l->threads;
}

void bti_loss_colsum(const float *z, int64_t n, int64_t d, double *out, int threads)
{
    int64_t jb;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (jb = 0; jb < d; jb += COLBLK) {
        int64_t je = jb + COLBLK < d ? jb + COLBLK : d, i, j;
        double acc[COLBLK];
        for (j = jb; j < je; j++)
            acc[j - jb] = 0;
        for (i = 0; i < n; i++) {
            const float *r = z + i * d;
            for (j = jb; j < je; j++)
                acc[j - jb] += (double)r[j];
        }
        for (j = jb; j < je; j++)
            out[j] = acc[j - jb];
    }
}

void bti_loss_colsq(const float *z, int64_t n, int64_t d, const double *mean, double *out,
                    int threads)
{
    int64_t jb;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (jb = 0; jb < d; jb += COLBLK) {
        int64_t je = jb + COLBLK < d ? jb + COLBLK : d, i, j;
        double acc[COLBLK];
        for (j = jb; j < je; j++)
            acc[j - jb] = 0;
        for (i = 0; i < n; i++) {
            const float *r = z + i * d;
            for (j = jb; j < je; j++) {
                double v = (double)r[j] - mean[j];
                acc[j - jb] += v * v;
            }
        }
        for (j = jb; j < je; j++)
            out[j] = acc[j - jb];
    }
}

void bti_loss_coldot(const float *x, const float *y, int64_t n, int64_t d, double *out,
                     int threads)
{
    int64_t jb;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (jb = 0; jb < d; jb += COLBLK) {
        int64_t je = jb + COLBLK < d ? jb + COLBLK : d, i, j;
        double acc[COLBLK];
        for (j = jb; j < je; j++)
            acc[j - jb] = 0;
        for (i = 0; i < n; i++) {
            const float *rx = x + i * d, *ry = y + i * d;
            for (j = jb; j < je; j++)
                acc[j - jb] += (double)rx[j] * (double)ry[j];
        }
        for (j = jb; j < je; j++)
            out[j] = acc[j - jb];
    }
}

/* ---- D x D path ------------------------------------------------------------ */

void bti_loss_cross_dxd(bt_loss *l)
{
    const float *a = l->a.p, *b = l->b.p;
    const double *dg = l->diag.p;
    float *c = l->c.p;
    int n = (int)l->n, d = (int)l->d, i;
    bti_blas_begin(l->threads);
    cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, d, d, n, 1.0f / (float)n, a, d, b, d, 0.0f,
                c, d);
    bti_blas_end(l->threads);
    /* The diagonal, the only part the terms single out, comes from the
     * double-accumulated reduction, as on the Gram path. */
    for (i = 0; i < d; i++)
        c[(size_t)i * d + i] = (float)dg[i];
}

double bti_loss_offsq_dxd(const bt_loss *l)
{
    const float *c = l->c.p;
    double *part = l->red.p, s = 0;
    int64_t d = l->d, i;
    int nt = bti_loss_ew_threads(l, d * d);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (i = 0; i < d; i++) {
        const float *r = c + i * d;
        double acc = 0;
        int64_t j;
        for (j = 0; j < d; j++)
            acc += (double)r[j] * (double)r[j];
        part[i] = acc - (double)r[i] * (double)r[i];
    }
    for (i = 0; i < d; i++)
        s += part[i];
    return s;
}

void bti_loss_back_dxd(const bt_loss *l, float alpha, float *xa, float *xb)
{
    const float *a = l->a.p, *b = l->b.p, *c = l->c.p;
    int n = (int)l->n, d = (int)l->d;
    /* dL/dA = alpha B C^T, dL/dB = alpha A C (the diagonal correction is the caller's) */
    bti_blas_begin(l->threads);
    cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_TRANS, n, d, d, alpha, b, d, c, d, 0.0f, xa, d);
    cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, n, d, d, alpha, a, d, c, d, 0.0f, xb, d);
    bti_blas_end(l->threads);
}

/* ---- Gram path ---------------------------------------------------------------- */

static void mirror_lower(float *k, int64_t n)
{
    int64_t i, j;
    for (i = 0; i < n; i++)
        for (j = i + 1; j < n; j++)
            k[i * n + j] = k[j * n + i];
}

void bti_loss_gram(bt_loss *l)
{
    int n = (int)l->n, d = (int)l->d;
    /* syrk: half the flops of a general product; the other triangle is mirrored
     * so that the backward can use plain sgemm. */
    bti_blas_begin(l->threads);
    cblas_ssyrk(BTI_ROW_MAJOR, BTI_LOWER, BTI_NO_TRANS, n, d, 1.0f, l->a.p, d, 0.0f, l->ka.p, n);
    cblas_ssyrk(BTI_ROW_MAJOR, BTI_LOWER, BTI_NO_TRANS, n, d, 1.0f, l->b.p, d, 0.0f, l->kb.p, n);
    bti_blas_end(l->threads);
    mirror_lower(l->ka.p, n);
    mirror_lower(l->kb.p, n);
}

double bti_loss_offsq_gram(const bt_loss *l)
{
    const float *ka = l->ka.p, *kb = l->kb.p;
    const double *dg = l->diag.p;
    double *part = l->red.p, s = 0, sd = 0, nn = (double)l->n;
    int64_t n = l->n, i;
#pragma omp parallel for schedule(static) num_threads(bti_loss_ew_threads(l, n * n))
    for (i = 0; i < n; i++) {
        const float *ra = ka + i * n, *rb = kb + i * n;
        double acc = 0;
        int64_t j;
        for (j = 0; j < n; j++)
            acc += (double)ra[j] * (double)rb[j];
        part[i] = acc;
    }
    for (i = 0; i < n; i++)
        s += part[i];
    for (i = 0; i < l->d; i++)
        sd += dg[i] * dg[i];
    /* ||C||_F^2 = <K_a, K_b> / N^2, minus the diagonal */
    return s / (nn * nn) - sd;
}

void bti_loss_back_gram(const bt_loss *l, float alpha, float *xa, float *xb)
{
    int n = (int)l->n, d = (int)l->d;
    /* B C^T = K_b A / N and A C = K_a B / N */
    bti_blas_begin(l->threads);
    cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, n, d, n, alpha, l->kb.p, n, l->a.p, d,
                0.0f, xa, d);
    cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, n, d, n, alpha, l->ka.p, n, l->b.p, d,
                0.0f, xb, d);
    bti_blas_end(l->threads);
}

/* ---- xent (D x D only: the exponentials need every C_ij) --------------------- */

void bti_loss_xent_off(bt_loss *l)
{
    const float *c = l->c.p;
    double *part = l->red.p, m = 0, s = 0, it = 1.0 / l->tau;
    int64_t d = l->d, i;
    int nt = bti_loss_ew_threads(l, d * d);
    /* max over i != j of max(C_ij, 0) / tau (>= 0), then the shifted sum */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (i = 0; i < d; i++) {
        const float *r = c + i * d;
        double mx = 0;
        int64_t j;
        for (j = 0; j < d; j++)
            if (j != i && (double)r[j] > mx)
                mx = (double)r[j];
        part[i] = mx * it;
    }
    for (i = 0; i < d; i++)
        m = part[i] > m ? part[i] : m;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (i = 0; i < d; i++) {
        const float *r = c + i * d;
        double acc = 0;
        int64_t j;
        /* each term is <= 1 and rounded once (expf); the sum is in double. The
         * diagonal is skipped, not subtracted: its term may overflow (C_ii / tau far
         * above the off-diagonal maximum m) and inf - inf is NaN. */
        for (j = 0; j < d; j++) {
            double v = (double)r[j] > 0 ? (double)r[j] : 0;
            if (j != i)
                acc += (double)expf((float)(v * it - m));
        }
        part[i] = acc;
    }
    for (i = 0; i < d; i++)
        s += part[i];
    l->xent_m = m;
    l->xent_s = s;
}

int64_t bti_loss_gblock_rows(int64_t d)
{
    int64_t r = ((int64_t)1 << 24) / d; /* 64 MB of floats */
    if (r < 64)
        r = 64;
    return r < d ? r : d;
}

void bti_loss_back_xent(bt_loss *l, float alpha, float *xa, float *xb)
{
    const float *a = l->a.p, *b = l->b.p, *c = l->c.p;
    float *g = l->gblk.p;
    int64_t d = l->d, rows = bti_loss_gblock_rows(d), i0;
    int n = (int)l->n;
    double it = 1.0 / l->tau, w = l->scale * l->lambda * it / l->xent_s, m = l->xent_m;
    int nt = bti_loss_ew_threads(l, rows * d);
    for (i0 = 0; i0 < d; i0 += rows) {
        int64_t nr = i0 + rows < d ? rows : d - i0, i;
        /* off-diagonal dL/dC for rows i0..i0+nr: zero where C_ij <= 0 (the clamp) */
#pragma omp parallel for schedule(static) num_threads(nt)
        for (i = 0; i < nr; i++) {
            const float *r = c + (i0 + i) * d;
            float *gr = g + i * d;
            int64_t j;
            for (j = 0; j < d; j++)
                gr[j] = r[j] > 0 ? (float)(w * (double)expf((float)((double)r[j] * it - m))) : 0.0f;
            gr[i0 + i] = 0.0f;
        }
        /* dL/dA[:, I] = B G[I,:]^T / N;  dL/dB += A[:, I] G[I,:] / N  (alpha = 1 / N) */
        bti_blas_begin(l->threads);
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_TRANS, n, (int)nr, (int)d, alpha, b,
                    (int)d, g, (int)d, 0.0f, xa + i0, (int)d);
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, n, (int)d, (int)nr, alpha, a + i0,
                    (int)d, g, (int)d, i0 ? 1.0f : 0.0f, xb, (int)d);
        bti_blas_end(l->threads);
    }
}
