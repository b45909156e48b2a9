/*
 * loss.h - private declarations of the Barlow Twins loss (loss.c, loss_paths.c,
 * loss_comm.c).
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
 *
 * With a communicator (loss_comm.c) the batch is the ranks' rows together: either
 * every rank gathers them and runs the one-process steps on the global batch, or
 * the reductions above are summed over the ranks between the steps.
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

/* How a forward with a communicator moves data (bti_loss_set_comm_path). */
enum bti_loss_comm_path {
    BTI_LOSS_COMM_AUTO = 0, /* by bytes moved (loss_comm.c) */
    BTI_LOSS_COMM_GATHER,   /* all-gather the raw rows, one-process forward on the global batch */
    BTI_LOSS_COMM_REDUCE,   /* all-reduce the column statistics and C */
};

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

    /* data-parallel (loss_comm.c); n above is the rows a and b hold: the global
     * batch on the gather path, this rank's rows on the reduce path */
    bt_comm *comm;        /* NULL: one process */
    int comm_path_req;    /* BTI_LOSS_COMM_* for the next forwards */
    int comm_path;        /* the last good forward's (GATHER or REDUCE; 0 without comm) */
    int64_t n_glob;       /* the last good forward's global batch */
    int64_t n_own, row0;  /* and this rank's rows: how many, the first one's global index */
    struct bti_buffer wa, wb; /* float [rows, D]: gathered views; the backward before its copy */
    /* reduce path: the next forward's state, swapped with the one above when it commits */
    struct bti_buffer sh_a, sh_b, sh_mean_a, sh_istd_a, sh_mean_b, sh_istd_b, sh_diag, sh_c;
};

/* ---- the one-process forward and backward, in parts (loss.c) ------------------ */

struct bti_loss_plan_item {
    struct bti_buffer *buf;
    size_t need; /* bytes; 0 = not needed by this forward (released on commit) */
};
#define BTI_LOSS_PLAN_MAX 13

BTI_HIDDEN bt_status bti_loss_check_views(const char *fn, const bt_tensor *za,
                                          const bt_tensor *zb, int64_t min_n);
BTI_HIDDEN bt_status bti_loss_check_finite(const char *fn, const bt_tensor *za,
                                           const bt_tensor *zb, int ew);
BTI_HIDDEN bt_status bti_loss_check_grads(const char *fn, const bt_loss *l, const bt_tensor *dza,
                                          const bt_tensor *dzb, int64_t n);
BTI_HIDDEN int bti_loss_choose_path(const bt_loss *l, int64_t n, int64_t d);
/* The buffers of a forward over n rows (count returned, at most BTI_LOSS_PLAN_MAX);
 * reserve them (keeping content), and release the unneeded ones only on commit. */
BTI_HIDDEN int bti_loss_plan(bt_loss *l, struct bti_loss_plan_item *plan, int64_t n, int64_t d,
                             int path);
BTI_HIDDEN bt_status bti_loss_plan_reserve(const struct bti_loss_plan_item *it, int count,
                                           const char *fn);
BTI_HIDDEN void bti_loss_plan_release(const struct bti_loss_plan_item *it, int count);
/* Forward of one whole batch (buffers reserved; cannot fail) and step 5 alone. */
BTI_HIDDEN void bti_loss_forward_local(bt_loss *l, const float *za, const float *zb, int64_t n,
                                       int64_t d, int path, int ew);
BTI_HIDDEN void bti_loss_finish(bt_loss *l);
BTI_HIDDEN void bti_loss_norm_rows(const float *z, int64_t n, int64_t d, const double *mean,
                                   const double *istd, float *a, int threads);
BTI_HIDDEN void bti_loss_norm_feature(const float *z, int64_t n, int64_t d, float *a, double *mean,
                                      double *istd, int threads);
/* Backward parts over the l->n rows held: products (nb = the batch of C), the
 * batch normaliser's two halves around its column sums, the feature one. */
BTI_HIDDEN void bti_loss_back_products(bt_loss *l, int64_t nb, float *xa, float *xb);
BTI_HIDDEN void bti_loss_back_sums(const bt_loss *l, float *x, const float *other, const double *h,
                                   const float *own, double *s1, double *s2);
BTI_HIDDEN void bti_loss_back_apply(const bt_loss *l, float *x, const float *own,
                                    const double *istd, const double *s1, const double *s2,
                                    double inv);
BTI_HIDDEN void bti_loss_norm_back_feature(const bt_loss *l, float *x, const float *other,
                                           const double *h, const float *own, const double *istd);
BTI_HIDDEN void bti_loss_backward_local(bt_loss *l, float *xa, float *xb);

/* ---- data-parallel (loss_comm.c) ------------------------------------------------ */

/* bt_loss_forward and bt_loss_backward with l->comm set (l checked). */
BTI_HIDDEN bt_status bti_loss_forward_comm(bt_loss *l, const bt_tensor *za, const bt_tensor *zb,
                                           double *loss);
BTI_HIDDEN bt_status bti_loss_backward_comm(bt_loss *l, bt_tensor *dza, bt_tensor *dzb);
/* Free the data-parallel buffers (bt_loss_free, set_comm NULL). */
BTI_HIDDEN void bti_loss_comm_release(bt_loss *l);
/* Tests: force a path (BTI_LOSS_COMM_*) for the next forwards; and the last one's. */
BTI_HIDDEN bt_status bti_loss_set_comm_path(bt_loss *l, int path);
BTI_HIDDEN int bti_loss_comm_path(const bt_loss *l);

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
BTI_HIDDEN void bti_loss_back_xent(bt_loss *l, float alpha, float *xa, float *xb); /* alpha 1/N */

#endif /* BARLOW_LOSS_H */
