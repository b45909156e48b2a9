/* loss.c - the Barlow Twins loss: public API, normalisation, terms, backward.
 *
 * Forward (barlowtwins.md 1.1): A, B = per-view BatchNorm without affine
 * (biased variance, eps 1e-5), C = A^T B / N, loss = scale * (sum (1 - C_ii)^2
 * + lambda sum_{i != j} C_ij^2). The products go through one of two exact
 * paths (loss_paths.c): D x D when D <= N, Gram (N x N) when D > N. */
#include "common/cpu.h"
#include "loss/loss.h"

#include "kernels/blas.h"

#include <limits.h>
#include <math.h>
#include <string.h>

static const char *const mode_names[] = {"barlow", "invariance_only", "redundancy_only",
                                         "feature_norm", "xent"};

/* ---- buffers ------------------------------------------------------------------- */

struct plan_item {
    struct bti_buffer *buf;
    size_t need; /* bytes; 0 = not needed by this forward (released on commit) */
};

/* Grow every buffer that is too small. A buffer keeps its content when it
 * grows, and the ones this forward does not need are released only once all
 * the others are in place, so on failure the last good forward stays usable. */
static bt_status plan_commit(const struct plan_item *it, int count)
{
    int i;
    for (i = 0; i < count; i++) {
        bt_status st = it[i].need ? bti_buffer_reserve(it[i].buf, it[i].need, 1, "bt_loss_forward")
                                  : BT_OK;
        if (st != BT_OK)
            return st;
    }
    for (i = 0; i < count; i++)
        if (!it[i].need)
            bti_buffer_release(it[i].buf);
    return BT_OK;
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

static bt_status check_views(const char *fn, const bt_tensor *za, const bt_tensor *zb)
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
    if (za->shape[0] < 2)
        return bti_fail(BT_E_SHAPE, "%s: za and zb have shape %s; the batch N must be >= 2", fn,
                        bti_shape_str(za, s1, sizeof s1));
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

/* ---- normalisation ------------------------------------------------------------------ */

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
#pragma omp parallel for schedule(static) num_threads(l->ew_threads)
    for (i = 0; i < n; i++) { /* step 3: local */
        const float *zr = z + i * d;
        float *ar = a + i * d;
        int64_t j;
        for (j = 0; j < d; j++)
            ar[j] = (float)(((double)zr[j] - mean[j]) * istd[j]);
    }
}

/* Feature normalisation: each row to zero mean, unit (biased) variance over D.
 * Purely per sample, so nothing here is a batch statistic. */
static void norm_feature(const bt_loss *l, const float *z, float *a, double *mean, double *istd)
{
    int64_t n = l->n, d = l->d, i;
#pragma omp parallel for schedule(static) num_threads(l->ew_threads)
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

BT_API bt_status bt_loss_forward(bt_loss *l, const bt_tensor *za, const bt_tensor *zb, double *loss)
{
    static const char fn[] = "bt_loss_forward";
    struct plan_item plan[13];
    int64_t n, d, mx, at;
    size_t nd, dd, nn;
    double on = 0, off, value, *dg;
    bt_status st;
    int path, i, ew;

    if ((st = bti_check(l, BTI_KIND_LOSS, fn, "l")) != BT_OK)
        return st;
    if ((st = check_views(fn, za, zb)) != BT_OK)
        return st;
    if (!loss)
        return bti_fail(BT_E_MISUSE, "%s: loss is NULL", fn);
    n = za->shape[0];
    d = za->shape[1];
    ew = bti_loss_ew_threads(l, za->numel);
    if ((at = first_nonfinite(za->data, za->numel, ew)) >= 0)
        return bti_fail(BT_E_NUMERIC, "%s: za[%lld, %lld] is %g; every value must be finite", fn,
                        (long long)(at / d), (long long)(at % d), (double)za->data[at]);
    if ((at = first_nonfinite(zb->data, zb->numel, ew)) >= 0)
        return bti_fail(BT_E_NUMERIC, "%s: zb[%lld, %lld] is %g; every value must be finite", fn,
                        (long long)(at / d), (long long)(at % d), (double)zb->data[at]);

    path = l->path_req;
    if (l->mode == BTI_LOSS_XENT)
        path = BT_LOSS_PATH_DXD;
    else if (path == BT_LOSS_PATH_AUTO)
        path = d <= n ? BT_LOSS_PATH_DXD : BT_LOSS_PATH_GRAM;

    mx = n > d ? n : d;
    nd = (size_t)n * (size_t)d;
    dd = (size_t)d * (size_t)d;
    nn = (size_t)n * (size_t)n;
    i = 0;
    plan[i++] = (struct plan_item){&l->a, nd * sizeof(float)};
    plan[i++] = (struct plan_item){&l->b, nd * sizeof(float)};
    plan[i++] = (struct plan_item){&l->mean_a, (size_t)mx * sizeof(double)};
    plan[i++] = (struct plan_item){&l->istd_a, (size_t)mx * sizeof(double)};
    plan[i++] = (struct plan_item){&l->mean_b, (size_t)mx * sizeof(double)};
    plan[i++] = (struct plan_item){&l->istd_b, (size_t)mx * sizeof(double)};
    plan[i++] = (struct plan_item){&l->diag, (size_t)d * sizeof(double)};
    plan[i++] = (struct plan_item){&l->hv, (size_t)d * sizeof(double)};
    plan[i++] = (struct plan_item){&l->red, 2 * (size_t)mx * sizeof(double)};
    plan[i++] = (struct plan_item){&l->c, path == BT_LOSS_PATH_DXD ? dd * sizeof(float) : 0};
    plan[i++] = (struct plan_item){&l->ka, path == BT_LOSS_PATH_GRAM ? nn * sizeof(float) : 0};
    plan[i++] = (struct plan_item){&l->kb, path == BT_LOSS_PATH_GRAM ? nn * sizeof(float) : 0};
    plan[i++] = (struct plan_item){
        &l->gblk,
        l->mode == BTI_LOSS_XENT ? (size_t)bti_loss_gblock_rows(d) * (size_t)d * sizeof(float) : 0};
    if ((st = plan_commit(plan, i)) != BT_OK)
        return st;

    /* From here on nothing can fail: the new forward replaces the old one. */
    l->n = n;
    l->d = d;
    l->path = path;
    l->ew_threads = ew;
    if (l->mode == BTI_LOSS_FEATURE_NORM) {
        norm_feature(l, za->data, l->a.p, l->mean_a.p, l->istd_a.p);
        norm_feature(l, zb->data, l->b.p, l->mean_b.p, l->istd_b.p);
    } else {
        norm_batch(l, za->data, l->a.p, l->mean_a.p, l->istd_a.p);
        norm_batch(l, zb->data, l->b.p, l->mean_b.p, l->istd_b.p);
    }

    /* step 4: products (reductions over the batch) */
    dg = l->diag.p;
    bti_loss_coldot(l->a.p, l->b.p, n, d, dg, l->ew_threads);
    for (i = 0; i < d; i++)
        dg[i] /= (double)n;
    if (path == BT_LOSS_PATH_DXD)
        bti_loss_cross_dxd(l);
    else
        bti_loss_gram(l);

    /* step 5: terms */
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
        off = path == BT_LOSS_PATH_DXD ? bti_loss_offsq_dxd(l) : bti_loss_offsq_gram(l);
        value = l->mode == BTI_LOSS_INVARIANCE_ONLY   ? on
                : l->mode == BTI_LOSS_REDUNDANCY_ONLY ? l->lambda * off
                                                      : on + l->lambda * off;
        value *= l->scale;
    }
    l->on = on;
    l->off = off;
    l->value = value;
    l->valid = 1;
    *loss = value;
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

/* v = x + other * h (h per column: the dL/dC_ii part), then the normaliser's
 * backward, written over x. Batch mode: two column reductions (sum_n v,
 * sum_n v * own) - batch statistics - then element-wise. */
static void norm_back_batch(const bt_loss *l, float *x, const float *other, const double *h,
                            const float *own, const double *istd)
{
    int64_t n = l->n, d = l->d, i;
    double *s1 = l->red.p, *s2 = s1 + d, inv = 1.0 / (double)n;
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
#pragma omp parallel for schedule(static) num_threads(l->ew_threads)
    for (i = 0; i < n; i++) {
        float *xr = x + i * d;
        const float *ar = own + i * d;
        int64_t j;
        for (j = 0; j < d; j++)
            xr[j] = (float)(istd[j] * ((double)xr[j] - s1[j] * inv - (double)ar[j] * s2[j] * inv));
    }
}

static void norm_back_feature(const bt_loss *l, float *x, const float *other, const double *h,
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

BT_API bt_status bt_loss_backward(bt_loss *l, bt_tensor *dza, bt_tensor *dzb)
{
    static const char fn[] = "bt_loss_backward";
    char s1[96], s2[96];
    int64_t shape[2], i, d;
    double *h, *diag;
    bt_status st;

    if ((st = bti_check(l, BTI_KIND_LOSS, fn, "l")) != BT_OK ||
        (st = bti_check(dza, BTI_KIND_TENSOR, fn, "dza")) != BT_OK ||
        (st = bti_check(dzb, BTI_KIND_TENSOR, fn, "dzb")) != BT_OK)
        return st;
    if (!l->valid)
        return bti_fail(BT_E_STATE, "%s: no successful bt_loss_forward to differentiate", fn);
    shape[0] = l->n;
    shape[1] = l->d;
    if (!bti_tensor_has_shape(dza, 2, shape))
        return bti_fail(BT_E_SHAPE, "%s: dza has shape %s; the last forward had za %s", fn,
                        bti_shape_str(dza, s1, sizeof s1), bti_dims_str(2, shape, s2, sizeof s2));
    if (!bti_tensor_has_shape(dzb, 2, shape))
        return bti_fail(BT_E_SHAPE, "%s: dzb has shape %s; the last forward had zb %s", fn,
                        bti_shape_str(dzb, s1, sizeof s1), bti_dims_str(2, shape, s2, sizeof s2));
    if (dza->data == dzb->data)
        return bti_fail(BT_E_INVALID_ARG, "%s: dza and dzb share their data; they must not", fn);

    d = l->d;
    diag = l->diag.p;
    h = l->hv.p;
    if (l->mode == BTI_LOSS_XENT) {
        /* on = -log sum exp(C_ii / tau): dL/dC_ii = -scale softmax_i / tau */
        for (i = 0; i < d; i++)
            h[i] = -l->scale * exp(diag[i] / l->tau - l->xent_lse_d) / l->tau / (double)l->n;
        bti_loss_back_xent(l, dza->data, dzb->data);
    } else {
        /* dL/dC = scale * (w_off 2 lambda C_offdiag + diag(w_on 2 (C_ii - 1))):
         * the GEMM part takes w_off 2 lambda C whole, h corrects the diagonal. */
        double won = l->mode == BTI_LOSS_REDUNDANCY_ONLY ? 0.0 : 1.0;
        double woff = l->mode == BTI_LOSS_INVARIANCE_ONLY ? 0.0 : 1.0;
        double nn = (double)l->n, k = l->scale * woff * 2.0 * l->lambda;
        for (i = 0; i < d; i++)
            h[i] = l->scale * won * 2.0 * (diag[i] - 1.0) / nn - k * diag[i] / nn;
        if (woff == 0.0) {
            memset(dza->data, 0, (size_t)dza->numel * sizeof(float));
            memset(dzb->data, 0, (size_t)dzb->numel * sizeof(float));
        } else if (l->path == BT_LOSS_PATH_DXD) {
            bti_loss_back_dxd(l, (float)(k / nn), dza->data, dzb->data); /* B C^T / N */
        } else {
            bti_loss_back_gram(l, (float)(k / (nn * nn)), dza->data, dzb->data); /* K_b A / N^2 */
        }
    }
    if (l->mode == BTI_LOSS_FEATURE_NORM) {
        norm_back_feature(l, dza->data, l->b.p, h, l->a.p, l->istd_a.p);
        norm_back_feature(l, dzb->data, l->a.p, h, l->b.p, l->istd_b.p);
    } else {
        norm_back_batch(l, dza->data, l->b.p, h, l->a.p, l->istd_a.p);
        norm_back_batch(l, dzb->data, l->a.p, h, l->b.p, l->istd_b.p);
    }
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
