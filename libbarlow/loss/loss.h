/*
 * loss.h - private declarations of the Barlow Twins loss (loss.c, loss_paths.c).
 *
 * The forward is a chain of separate steps so that a distributed build can
 * reduce each batch statistic across processes between them:
 *   1. column sums of Z                    (reduction over the batch)
 *   2. centred column sums of squares      (reduction over the batch)
 *   3. normalise A = (Z - mu) / s          (element-wise, local)
 *   4. products: diag(C) = sum_n A_ni B_ni (reduction), and either C = A^T B
 *      (reduction over the batch) or the Gram matrices A A^T, B B^T
 *   5. the two terms and the loss from those reduced quantities.
 * The backward adds two more reductions (sum_n dA and sum_n dA * A per column)
 * before the element-wise normalisation backward.
 */
#ifndef BARLOW_LOSS_H
#define BARLOW_LOSS_H

#include "common/internal.h"

enum bti_loss_mode {
    BTI_LOSS_BARLOW = 0,
    BTI_LOSS_INVARIANCE_ONLY,
    BTI_LOSS_REDUNDANCY_ONLY,
    BTI_LOSS_FEATURE_NORM,
    BTI_LOSS_XENT,
};

#define BTI_LOSS_EPS 1e-5

struct bt_loss {
    /* settings */
    double lambda, scale, tau;
    int mode;
    int threads;    /* BLAS threads */
    int level;      /* CPU level (common/cpu.h) */
    int ew_threads; /* OpenMP threads of the element-wise passes (set per forward) */
    int path_req; /* BT_LOSS_PATH_* asked for the next forwards */

    /* the last good forward */
    int valid;
    int path; /* BT_LOSS_PATH_DXD or BT_LOSS_PATH_GRAM */
    int64_t n, d;
    double on, off, value;
    double xent_m, xent_s; /* xent: max and sum of exp(max(C,0)/tau - m) off the diagonal */
    double xent_lse_d;     /* xent: log sum_i exp(C_ii / tau) */

    /* buffers, reused while the shape stays */
    struct bti_buffer a, b;           /* float [N, D]: normalised views */
    struct bti_buffer mean_a, istd_a; /* double [D] (batch norm) or [N] (feature norm) */
    struct bti_buffer mean_b, istd_b;
    struct bti_buffer diag;           /* double [D]: C_ii, accumulated in double */
    struct bti_buffer hv;             /* double [D]: dL/dC_ii / N (backward) */
    struct bti_buffer red;            /* double scratch: 2 * max(N, D) */
    struct bti_buffer c;              /* float [D, D] (D x D path) */
    struct bti_buffer ka, kb;         /* float [N, N] (Gram path) */
    struct bti_buffer gblk;           /* float [rows, D]: a block of dL/dC (xent backward) */
};

/* ---- steps (loss_paths.c) ------------------------------------------------- */

/* loss.c calls these; they call nothing in loss.c. */

/* OpenMP threads for an element-wise pass over count elements. */
BTI_HIDDEN int bti_loss_ew_threads(const bt_loss *l, int64_t count);
/* Rows of dL/dC held at once by the xent backward. */
BTI_HIDDEN int64_t bti_loss_gblock_rows(int64_t d);

/* Batch statistics, reduced over the rows of a row-major [n, d] matrix, one
 * double per column, in a fixed order (independent of the thread count). */
BTI_HIDDEN void bti_loss_colsum(const float *z, int64_t n, int64_t d, double *out, int threads);
BTI_HIDDEN void bti_loss_colsq(const float *z, int64_t n, int64_t d, const double *mean, double *out,
                               int threads);
/* out[j] = sum_n x[n,j] * y[n,j]. */
BTI_HIDDEN void bti_loss_coldot(const float *x, const float *y, int64_t n, int64_t d, double *out,
                                int threads);

/* Products of step 4; each sets the BLAS thread count itself. */
BTI_HIDDEN void bti_loss_cross_dxd(bt_loss *l);  /* C = A^T B / N, diagonal from diag */
BTI_HIDDEN void bti_loss_gram(bt_loss *l);       /* K_a = A A^T, K_b = B B^T (full) */
/* Terms from the products. */
BTI_HIDDEN double bti_loss_offsq_dxd(const bt_loss *l);  /* sum_{i != j} C_ij^2 */
BTI_HIDDEN double bti_loss_offsq_gram(const bt_loss *l); /* the same from <K_a, K_b> */
BTI_HIDDEN void bti_loss_xent_off(bt_loss *l);           /* xent_m, xent_s */

/* Backward GEMM parts: xa = dL/dA and xb = dL/dB without their diagonal
 * (dL/dC_ii) part, which the caller adds as B * h and A * h. */
BTI_HIDDEN void bti_loss_back_dxd(const bt_loss *l, float alpha, float *xa, float *xb);
BTI_HIDDEN void bti_loss_back_gram(const bt_loss *l, float alpha, float *xa, float *xb);
BTI_HIDDEN void bti_loss_back_xent(bt_loss *l, float *xa, float *xb);

#endif /* BARLOW_LOSS_H */
