/* loss.c - the Barlow Twins loss: public API, normalisation, terms, backward.
 *
 * Forward (barlowtwins.md 1.1): A, B = per-view BatchNorm without affine
 * (biased variance, eps 1e-5), C = A^T B / N, loss = scale * (sum (1 - C_ii)^2
 * + lambda sum_{i != j} C_ij^2). The products go through one of two exact
 * paths (loss_paths.c): D x D when D <= N, Gram (N x N) when D > N. With a
 * communicator the forward and backward are loss_comm.c's, built from the parts
 * below (declared in loss.h). */
#include "common/cpu.h"
#include "loss/loss.h"

#include "kernels/blas.h"

#include <limits.h>
#include <math.h>
#include <string.h>

static const char *const mode_names[] = {"barlow", "invariance_only", "redundancy_only",
                                         "feature_norm", "xent"};

/* ---- buffers ------------------------------------------------------------------- */

/* Grow every buffer that is too small. A buffer keeps its content when it
 * grows, so on failure the last good forward stays usable. */
bt_status bti_loss_plan_reserve(const struct bti_loss_plan_item *it, int count, const char *fn)
{
    int i;
    for (i = 0; i < count; i++) {
        bt_status st = it[i].need ? bti_buffer_reserve(it[i].buf, it[i].need, 1, fn) : BT_OK;
        if (st != BT_OK)
            return st;
    }
    return BT_OK;
}

/* Release the buffers this forward does not need: only once it commits. */
void bti_loss_plan_release(const struct bti_loss_plan_item *it, int count)
{
    int i;
    for (i = 0; i < count; i++)
        if (!it[i].need)
            bti_buffer_release(it[i].buf);
}

/* The buffers of a forward over n rows of d columns on `path`. */
int bti_loss_plan(bt_loss *l, struct bti_loss_plan_item *plan, int64_t n, int64_t d, int path)
{
    const int64_t mx = n > d ? n : d;
    const size_t nd = (size_t)n * (size_t)d, dd = (size_t)d * (size_t)d, nn = (size_t)n * (size_t)n;
    int i = 0;
    plan[i++] = (struct bti_loss_plan_item){&l->a, nd * sizeof(float)};
    plan[i++] = (struct bti_loss_plan_item){&l->b, nd * sizeof(float)};
    plan[i++] = (struct bti_loss_plan_item){&l->mean_a, (size_t)mx * sizeof(double)};
    plan[i++] = (struct bti_loss_plan_item){&l->istd_a, (size_t)mx * sizeof(double)};
    plan[i++] = (struct bti_loss_plan_item){&l->mean_b, (size_t)mx * sizeof(double)};
    plan[i++] = (struct bti_loss_plan_item){&l->istd_b, (size_t)mx * sizeof(double)};
    plan[i++] = (struct bti_loss_plan_item){&l->diag, (size_t)d * sizeof(double)};
    plan[i++] = (struct bti_loss_plan_item){&l->hv, (size_t)d * sizeof(double)};
    plan[i++] = (struct bti_loss_plan_item){&l->red, 2 * (size_t)mx * sizeof(double)};
    plan[i++] =
        (struct bti_loss_plan_item){&l->c, path == BT_LOSS_PATH_DXD ? dd * sizeof(float) : 0};
    plan[i++] =
        (struct bti_loss_plan_item){&l->ka, path == BT_LOSS_PATH_GRAM ? nn * sizeof(float) : 0};
    plan[i++] =
        (struct bti_loss_plan_item){&l->kb, path == BT_LOSS_PATH_GRAM ? nn * sizeof(float) : 0};
    plan[i++] = (struct bti_loss_plan_item){
        &l->gblk,
        l->mode == BTI_LOSS_XENT ? (size_t)bti_loss_gblock_rows(d) * (size_t)d * sizeof(float) : 0};
    return i;
}

/* ---- create / free / settings --------------------------------------------------- */

BT_API bt_status bt_loss_create(bt_loss **out, const bt_config *cfg)
{
    const char *mode = NULL;
    double lambda, scale, tau;
    bt_status st;
    bt_loss *l;
    int m, level;

    if (!out)
        return bti_fail(BT_E_MISUSE, "bt_loss_create: out is NULL");
    *out = NULL;
    if (cfg && (st = bti_check(cfg, BTI_KIND_CONFIG, "bt_loss_create", "cfg")) != BT_OK)
        return st;
    if (!cfg) { /* the defaults: read them from a fresh configuration */
        bt_config *dflt = NULL;
        if ((st = bt_config_create(&dflt)) != BT_OK)
            return st;
        st = bt_loss_create(out, dflt);
        bt_config_free(dflt);
        return st;
    }
    if ((st = bti_config_real(cfg, "loss.lambda", &lambda)) != BT_OK ||
        (st = bti_config_real(cfg, "loss.scale", &scale)) != BT_OK ||
        (st = bti_config_real(cfg, "loss.temperature", &tau)) != BT_OK ||
        (st = bti_config_text(cfg, "loss.mode", &mode)) != BT_OK)
        return st;
    for (m = 0; m < (int)(sizeof mode_names / sizeof mode_names[0]); m++)
        if (strcmp(mode, mode_names[m]) == 0)
            break;
    if (m == (int)(sizeof mode_names / sizeof mode_names[0]))
        return bti_fail(BT_E_INTERNAL, "bt_loss_create: loss.mode '%s' is not known", mode);

    if ((st = bti_cpu_resolve(cfg, &level, "bt_loss_create")) != BT_OK)
        return st;
    l = bti_calloc(1, sizeof *l);
    if (!l)
        return bti_fail(BT_E_NOMEM, "bt_loss_create: out of memory");
    l->level = level;
    l->lambda = lambda;
    l->scale = scale;
    l->tau = tau;
    l->mode = m;
    l->threads = bti_threads_resolve(cfg);
    l->ew_threads = 1;
    l->path_req = BT_LOSS_PATH_AUTO;
    if ((st = bti_handle_add(l, BTI_KIND_LOSS)) != BT_OK) {
        bti_free(l);
        return st;
    }
    *out = l;
    return BT_OK;
}

BT_API void bt_loss_free(bt_loss *l)
{
    if (!l || bti_check(l, BTI_KIND_LOSS, "bt_loss_free", "l") != BT_OK)
        return;
    bti_handle_remove(l);
    bti_buffer_release(&l->a);
    bti_buffer_release(&l->b);
    bti_buffer_release(&l->mean_a);
    bti_buffer_release(&l->istd_a);
    bti_buffer_release(&l->mean_b);
    bti_buffer_release(&l->istd_b);
    bti_buffer_release(&l->diag);
    bti_buffer_release(&l->hv);
    bti_buffer_release(&l->red);
    bti_buffer_release(&l->c);
    bti_buffer_release(&l->ka);
    bti_buffer_release(&l->kb);
    bti_buffer_release(&l->gblk);
    bti_loss_comm_release(l);
    bti_free(l);
}

BT_API bt_status bt_loss_set_path(bt_loss *l, int32_t path)
{
    bt_status st = bti_check(l, BTI_KIND_LOSS, "bt_loss_set_path", "l");
    if (st != BT_OK)
        return st;
    if (path != BT_LOSS_PATH_AUTO && path != BT_LOSS_PATH_DXD && path != BT_LOSS_PATH_GRAM)
        return bti_fail(BT_E_INVALID_ARG,
                        "bt_loss_set_path: path is %d; expected BT_LOSS_PATH_AUTO (0), _DXD (1) "
                        "or _GRAM (2)",
                        (int)path);
    if (path == BT_LOSS_PATH_GRAM && l->mode == BTI_LOSS_XENT)
        return bti_fail(BT_E_UNSUPPORTED,
                        "bt_loss_set_path: loss.mode 'xent' needs every C_ij; it has no Gram path");
    l->path_req = path;
    return BT_OK;
}

BT_API int32_t bt_loss_path(const bt_loss *l)
{
    if (bti_check(l, BTI_KIND_LOSS, "bt_loss_path", "l") != BT_OK)
        return -1;
    return l->valid ? l->path : BT_LOSS_PATH_AUTO;
}

/* ---- input checks ------------------------------------------------------------------ */

/* Two [n, d] views of the same shape, min_n <= n (2 on one process; 1 for a rank
 * of several, whose global batch is at least 2), n and d < 2^31. */
bt_status bti_loss_check_views(const char *fn, const bt_tensor *za, const bt_tensor *zb,
                               int64_t min_n)
{
    char s1[96], s2[96];
    bt_status st;
    if ((st = bti_check(za, BTI_KIND_TENSOR, fn, "za")) != BT_OK ||
        (st = bti_check(zb, BTI_KIND_TENSOR, fn, "zb")) != BT_OK)
        return st;
    if (za->ndim != 2)
        return bti_fail(BT_E_SHAPE, "%s: za has shape %s; expected 2 dimensions [N, D]", fn,
                        bti_shape_str(za, s1, sizeof s1));
    if (zb->ndim != 2)
        return bti_fail(BT_E_SHAPE, "%s: zb has shape %s; expected 2 dimensions [N, D]", fn,
                        bti_shape_str(zb, s1, sizeof s1));
    if (za->shape[0] != zb->shape[0] || za->shape[1] != zb->shape[1])
        return bti_fail(BT_E_SHAPE, "%s: za has shape %s but zb has shape %s; they must match", fn,
                        bti_shape_str(za, s1, sizeof s1), bti_shape_str(zb, s2, sizeof s2));
    if (za->shape[0] < min_n)
        return bti_fail(BT_E_SHAPE, "%s: za and zb have shape %s; the batch N must be >= %lld", fn,
                        bti_shape_str(za, s1, sizeof s1), (long long)min_n);
    if (za->shape[0] > INT_MAX || za->shape[1] > INT_MAX)
        return bti_fail(BT_E_SHAPE, "%s: za and zb have shape %s; N and D must be < 2^31", fn,
                        bti_shape_str(za, s1, sizeof s1));
    return BT_OK;
}

/* Index of the first non-finite element, or -1. */
static int64_t first_nonfinite(const float *x, int64_t count, int threads)
{
    int64_t i, bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) num_threads(threads)
    for (i = 0; i < count; i++)
        bad += !isfinite(x[i]);
    if (!bad)
        return -1;
    for (i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}

bt_status bti_loss_check_finite(const char *fn, const bt_tensor *za, const bt_tensor *zb, int ew)
{
    const int64_t d = za->shape[1];
    int64_t at;
    if ((at = first_nonfinite(za->data, za->numel, ew)) >= 0)
        return bti_fail(BT_E_NUMERIC, "%s: za[%lld, %lld] is %g; every value must be finite", fn,
                        (long long)(at / d), (long long)(at % d), (double)za->data[at]);
    if ((at = first_nonfinite(zb->data, zb->numel, ew)) >= 0)
        return bti_fail(BT_E_NUMERIC, "%s: zb[%lld, %lld] is %g; every value must be finite", fn,
                        (long long)(at / d), (long long)(at % d), (double)zb->data[at]);
    return BT_OK;
}

/* ---- normalisation ------------------------------------------------------------------ */

/* Step 3, local: a = (z - mean) * istd per column. */
void bti_loss_norm_rows(const float *z, int64_t n, int64_t d, const double *mean,
                        const double *istd, float *a, int threads)
{
    int64_t i;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (i = 0; i < n; i++) {
        const float *zr = z + i * d;
        float *ar = a + i * d;
        int64_t j;
        for (j = 0; j < d; j++)
            ar[j] = (float)(((double)zr[j] - mean[j]) * istd[j]);
    }
}

/* Batch normalisation of one view (per column over the batch), steps 1-3. */
static void norm_batch(const bt_loss *l, const float *z, float *a, double *mean, double *istd)
{
    int64_t n = l->n, d = l->d, i;
    double *sq = (double *)l->red.p;
    bti_loss_colsum(z, n, d, mean, l->ew_threads); /* step 1: reduction */
    for (i = 0; i < d; i++)
        mean[i] /= (double)n;
    bti_loss_colsq(z, n, d, mean, sq, l->ew_threads); /* step 2: reduction */
    for (i = 0; i < d; i++)
        istd[i] = 1.0 / sqrt(sq[i] / (double)n + BTI_LOSS_EPS);
    bti_loss_norm_rows(z, n, d, mean, istd, a, l->ew_threads); /* step 3: local */
}

/* Feature normalisation: each row to zero mean, unit (biased) variance over D.
 * Purely per sample, so nothing here is a batch statistic. */
void bti_loss_norm_feature(const float *z, int64_t n, int64_t d, float *a, double *mean,
                           double *istd, int threads)
{
    int64_t i;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (i = 0; i < n; i++) {
        const float *zr = z + i * d;
        float *ar = a + i * d;
        double s = 0, q = 0, mu, is;
        int64_t j;
        for (j = 0; j < d; j++)
            s += (double)zr[j];
        mu = s / (double)d;
        for (j = 0; j < d; j++)
            q += ((double)zr[j] - mu) * ((double)zr[j] - mu);
        is = 1.0 / sqrt(q / (double)d + BTI_LOSS_EPS);
        for (j = 0; j < d; j++)
            ar[j] = (float)(((double)zr[j] - mu) * is);
        mean[i] = mu;
        istd[i] = is;
    }
}

/* ---- forward ---------------------------------------------------------------------- */

int bti_loss_choose_path(const bt_loss *l, int64_t n, int64_t d)
{
    if (l->mode == BTI_LOSS_XENT)
        return BT_LOSS_PATH_DXD;
    if (l->path_req == BT_LOSS_PATH_AUTO)
        return d <= n ? BT_LOSS_PATH_DXD : BT_LOSS_PATH_GRAM;
    return l->path_req;
}

/* Step 5: the terms and the value from diag and C (or the Gram matrices). */
void bti_loss_finish(bt_loss *l)
{
    const double *dg = l->diag.p;
    double on = 0, off, value;
    int64_t i, d = l->d;
    if (l->mode == BTI_LOSS_XENT) {
        double mxd = -HUGE_VAL, s = 0;
        for (i = 0; i < d; i++)
            mxd = dg[i] / l->tau > mxd ? dg[i] / l->tau : mxd;
        for (i = 0; i < d; i++)
            s += exp(dg[i] / l->tau - mxd);
        l->xent_lse_d = mxd + log(s);
        bti_loss_xent_off(l);
        on = -l->xent_lse_d;
        off = l->xent_m + log(l->xent_s);
        value = l->scale * (on + l->lambda * off);
    } else {
        for (i = 0; i < d; i++)
            on += (1.0 - dg[i]) * (1.0 - dg[i]);
        off = l->path == BT_LOSS_PATH_DXD ? bti_loss_offsq_dxd(l) : bti_loss_offsq_gram(l);
        value = l->mode == BTI_LOSS_INVARIANCE_ONLY   ? on
                : l->mode == BTI_LOSS_REDUNDANCY_ONLY ? l->lambda * off
                                                      : on + l->lambda * off;
        value *= l->scale;
    }
    l->on = on;
    l->off = off;
    l->value = value;
    l->valid = 1;
}

/* The whole forward of one batch of n rows, its buffers reserved: cannot fail,
 * and replaces the last forward. */
void bti_loss_forward_local(bt_loss *l, const float *za, const float *zb, int64_t n, int64_t d,
                            int path, int ew)
{
    double *dg;
    int64_t i;
    l->n = n;
    l->d = d;
    l->path = path;
    l->ew_threads = ew;
    if (l->mode == BTI_LOSS_FEATURE_NORM) {
        bti_loss_norm_feature(za, n, d, l->a.p, l->mean_a.p, l->istd_a.p, ew);
        bti_loss_norm_feature(zb, n, d, l->b.p, l->mean_b.p, l->istd_b.p, ew);
    } else {
        norm_batch(l, za, l->a.p, l->mean_a.p, l->istd_a.p);
        norm_batch(l, zb, l->b.p, l->mean_b.p, l->istd_b.p);
    }

    /* step 4: products (reductions over the batch) */
    dg = l->diag.p;
    bti_loss_coldot(l->a.p, l->b.p, n, d, dg, ew);
    for (i = 0; i < d; i++)
        dg[i] /= (double)n;
    if (path == BT_LOSS_PATH_DXD)
        bti_loss_cross_dxd(l);
    else
        bti_loss_gram(l);
    bti_loss_finish(l);
}

BT_API bt_status bt_loss_forward(bt_loss *l, const bt_tensor *za, const bt_tensor *zb, double *loss)
{
    static const char fn[] = "bt_loss_forward";
    struct bti_loss_plan_item plan[BTI_LOSS_PLAN_MAX];
    int64_t n, d;
    bt_status st;
    int path, count, ew;

    if ((st = bti_check(l, BTI_KIND_LOSS, fn, "l")) != BT_OK)
        return st;
    if (l->comm)
        return bti_loss_forward_comm(l, za, zb, loss);
    if ((st = bti_loss_check_views(fn, za, zb, 2)) != BT_OK)
        return st;
    if (!loss)
        return bti_fail(BT_E_MISUSE, "%s: loss is NULL", fn);
    n = za->shape[0];
    d = za->shape[1];
    ew = bti_loss_ew_threads(l, za->numel);
    if ((st = bti_loss_check_finite(fn, za, zb, ew)) != BT_OK)
        return st;

    path = bti_loss_choose_path(l, n, d);
    count = bti_loss_plan(l, plan, n, d, path);
    if ((st = bti_loss_plan_reserve(plan, count, fn)) != BT_OK)
        return st;
    bti_loss_plan_release(plan, count);

    /* From here on nothing can fail: the new forward replaces the old one. */
    bti_loss_forward_local(l, za->data, zb->data, n, d, path, ew);
    *loss = l->value;
    return BT_OK;
}

BT_API bt_status bt_loss_terms(const bt_loss *l, double *on_diag, double *off_diag)
{
    bt_status st = bti_check(l, BTI_KIND_LOSS, "bt_loss_terms", "l");
    if (st != BT_OK)
        return st;
    if (!l->valid)
        return bti_fail(BT_E_STATE, "bt_loss_terms: no successful bt_loss_forward yet");
    if (on_diag)
        *on_diag = l->on;
    if (off_diag)
        *off_diag = l->off;
    return BT_OK;
}

/* ---- backward -------------------------------------------------------------------------- */

/* Batch-mode normaliser backward, first half: v = x + other * h (h per column:
 * the dL/dC_ii part) written over x, and the two column reductions s1 = sum_n v,
 * s2 = sum_n v * own - batch statistics. */
void bti_loss_back_sums(const bt_loss *l, float *x, const float *other, const double *h,
                        const float *own, double *s1, double *s2)
{
    int64_t n = l->n, d = l->d, i;
    if (h) {
#pragma omp parallel for schedule(static) num_threads(l->ew_threads)
        for (i = 0; i < n; i++) {
            float *xr = x + i * d;
            const float *orow = other + i * d;
            int64_t j;
            for (j = 0; j < d; j++)
                xr[j] = (float)((double)xr[j] + (double)orow[j] * h[j]);
        }
    }
    bti_loss_colsum(x, n, d, s1, l->ew_threads);
    bti_loss_coldot(x, own, n, d, s2, l->ew_threads);
}

/* Second half, element-wise; inv = 1 / (the batch the sums are over). */
void bti_loss_back_apply(const bt_loss *l, float *x, const float *own, const double *istd,
                         const double *s1, const double *s2, double inv)
{
    int64_t n = l->n, d = l->d, i;
#pragma omp parallel for schedule(static) num_threads(l->ew_threads)
    for (i = 0; i < n; i++) {
        float *xr = x + i * d;
        const float *ar = own + i * d;
        int64_t j;
        for (j = 0; j < d; j++)
            xr[j] = (float)(istd[j] * ((double)xr[j] - s1[j] * inv - (double)ar[j] * s2[j] * inv));
    }
}

static void norm_back_batch(const bt_loss *l, float *x, const float *other, const double *h,
                            const float *own, const double *istd)
{
    double *s1 = l->red.p, *s2 = s1 + l->d;
    bti_loss_back_sums(l, x, other, h, own, s1, s2);
    bti_loss_back_apply(l, x, own, istd, s1, s2, 1.0 / (double)l->n);
}

void bti_loss_norm_back_feature(const bt_loss *l, float *x, const float *other, const double *h,
                                const float *own, const double *istd)
{
    int64_t n = l->n, d = l->d, i;
    double inv = 1.0 / (double)d;
#pragma omp parallel for schedule(static) num_threads(l->ew_threads)
    for (i = 0; i < n; i++) {
        float *xr = x + i * d;
        const float *orow = other + i * d, *ar = own + i * d;
        double s1 = 0, s2 = 0;
        int64_t j;
        for (j = 0; j < d; j++) {
            double v = (double)xr[j] + (h ? (double)orow[j] * h[j] : 0.0);
            s1 += v;
            s2 += v * (double)ar[j];
        }
        for (j = 0; j < d; j++) {
            double v = (double)xr[j] + (h ? (double)orow[j] * h[j] : 0.0);
            xr[j] = (float)(istd[i] * (v - s1 * inv - (double)ar[j] * s2 * inv));
        }
    }
}

/* dL/dA and dL/dB of the l->n rows held, without the normaliser's backward, into
 * xa, xb; h (l->hv) gets the dL/dC_ii part. nb is the batch C is over (l->n on one
 * process, the global batch when the rows are one rank's). */
void bti_loss_back_products(bt_loss *l, int64_t nb, float *xa, float *xb)
{
    const double *diag = l->diag.p;
    double *h = l->hv.p, nn = (double)nb;
    int64_t i, d = l->d;
    if (l->mode == BTI_LOSS_XENT) {
        /* on = -log sum exp(C_ii / tau): dL/dC_ii = -scale softmax_i / tau */
        for (i = 0; i < d; i++)
            h[i] = -l->scale * exp(diag[i] / l->tau - l->xent_lse_d) / l->tau / nn;
        bti_loss_back_xent(l, 1.0f / (float)nb, xa, xb);
    } else {
        /* dL/dC = scale * (w_off 2 lambda C_offdiag + diag(w_on 2 (C_ii - 1))):
         * the GEMM part takes w_off 2 lambda C whole, h corrects the diagonal. */
        double won = l->mode == BTI_LOSS_REDUNDANCY_ONLY ? 0.0 : 1.0;
        double woff = l->mode == BTI_LOSS_INVARIANCE_ONLY ? 0.0 : 1.0;
        double k = l->scale * woff * 2.0 * l->lambda;
        for (i = 0; i < d; i++)
            h[i] = l->scale * won * 2.0 * (diag[i] - 1.0) / nn - k * diag[i] / nn;
        if (woff == 0.0) {
            memset(xa, 0, (size_t)l->n * (size_t)d * sizeof(float));
            memset(xb, 0, (size_t)l->n * (size_t)d * sizeof(float));
        } else if (l->path == BT_LOSS_PATH_DXD) {
            bti_loss_back_dxd(l, (float)(k / nn), xa, xb); /* B C^T / N */
        } else {
            bti_loss_back_gram(l, (float)(k / (nn * nn)), xa, xb); /* K_b A / N^2 */
        }
    }
}

/* The whole backward of a one-batch forward into xa, xb ([l->n, D]): cannot fail. */
void bti_loss_backward_local(bt_loss *l, float *xa, float *xb)
{
    const double *h = l->hv.p;
    bti_loss_back_products(l, l->n, xa, xb);
    if (l->mode == BTI_LOSS_FEATURE_NORM) {
        bti_loss_norm_back_feature(l, xa, l->b.p, h, l->a.p, l->istd_a.p);
        bti_loss_norm_back_feature(l, xb, l->a.p, h, l->b.p, l->istd_b.p);
    } else {
        norm_back_batch(l, xa, l->b.p, h, l->a.p, l->istd_a.p);
        norm_back_batch(l, xb, l->a.p, h, l->b.p, l->istd_b.p);
    }
}

/* dza, dzb: live tensors of shape [n, D], not sharing their data. */
bt_status bti_loss_check_grads(const char *fn, const bt_loss *l, const bt_tensor *dza,
                               const bt_tensor *dzb, int64_t n)
{
    char s1[96], s2[96];
    int64_t shape[2];
    bt_status st;
    if ((st = bti_check(dza, BTI_KIND_TENSOR, fn, "dza")) != BT_OK ||
        (st = bti_check(dzb, BTI_KIND_TENSOR, fn, "dzb")) != BT_OK)
        return st;
    if (!l->valid)
        return bti_fail(BT_E_STATE, "%s: no successful bt_loss_forward to differentiate", fn);
    shape[0] = n;
    shape[1] = l->d;
    if (!bti_tensor_has_shape(dza, 2, shape))
        return bti_fail(BT_E_SHAPE, "%s: dza has shape %s; the last forward had za %s", fn,
                        bti_shape_str(dza, s1, sizeof s1), bti_dims_str(2, shape, s2, sizeof s2));
    if (!bti_tensor_has_shape(dzb, 2, shape))
        return bti_fail(BT_E_SHAPE, "%s: dzb has shape %s; the last forward had zb %s", fn,
                        bti_shape_str(dzb, s1, sizeof s1), bti_dims_str(2, shape, s2, sizeof s2));
    if (dza->data == dzb->data)
        return bti_fail(BT_E_INVALID_ARG, "%s: dza and dzb share their data; they must not", fn);
    return BT_OK;
}

BT_API bt_status bt_loss_backward(bt_loss *l, bt_tensor *dza, bt_tensor *dzb)
{
    static const char fn[] = "bt_loss_backward";
    bt_status st;
    if ((st = bti_check(l, BTI_KIND_LOSS, fn, "l")) != BT_OK)
        return st;
    if (l->comm)
        return bti_loss_backward_comm(l, dza, dzb);
    if ((st = bti_loss_check_grads(fn, l, dza, dzb, l->n)) != BT_OK)
        return st;
    bti_loss_backward_local(l, dza->data, dzb->data);
    return BT_OK;
}

/* ---- C on demand --------------------------------------------------------------------- */

BT_API bt_status bt_loss_correlation(bt_loss *l, bt_tensor *c)
{
    static const char fn[] = "bt_loss_correlation";
    char s1[96];
    const double *dg;
    int64_t k, i;
    bt_status st;
    float *out;

    if ((st = bti_check(l, BTI_KIND_LOSS, fn, "l")) != BT_OK ||
        (st = bti_check(c, BTI_KIND_TENSOR, fn, "c")) != BT_OK)
        return st;
    if (!l->valid)
        return bti_fail(BT_E_STATE, "%s: no successful bt_loss_forward yet", fn);
    k = c->shape[0];
    if (c->ndim != 2 || c->shape[1] != k || k > l->d)
        return bti_fail(BT_E_SHAPE,
                        "%s: c has shape %s; expected a square [k, k] with k <= D = %lld", fn,
                        bti_shape_str(c, s1, sizeof s1), (long long)l->d);
    out = c->data;
    dg = l->diag.p;
    if (l->path == BT_LOSS_PATH_DXD) {
        const float *cf = l->c.p;
        for (i = 0; i < k; i++)
            memcpy(out + i * k, cf + i * l->d, (size_t)k * sizeof(float));
    } else {
        bti_blas_begin(l->threads);
        cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, (int)k, (int)k, (int)l->n,
                    1.0f / (float)l->n, l->a.p, (int)l->d, l->b.p, (int)l->d, 0.0f, out, (int)k);
        bti_blas_end(l->threads);
        for (i = 0; i < k; i++)
            out[i * k + i] = (float)dg[i];
    }
    return BT_OK;
}
