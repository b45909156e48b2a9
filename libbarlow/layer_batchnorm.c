/* layer_batchnorm.c - nn.BatchNorm1d/2d over [N, C], [N, C, L] or [N, C, H, W].
 *
 * Training: each slice of the batch (groups) is normalised with its own
 * statistics (biased variance), and the running statistics are updated once
 * per slice, in slice order, with the UNBIASED variance, as PyTorch does.
 * Eval: the running statistics. Sums are accumulated in double per channel in
 * a fixed order, so results do not depend on the thread count. The saved
 * per-(slice, channel) mean and 1/std let backward recompute x-hat from the
 * borrowed x instead of storing it. */
#include "layer.h"

#include <math.h>
#include <string.h>

#define CBLK 64 /* channels per task in the [N, C] layout */

struct bn_dims {
    int64_t n, c, s, g, ns, m; /* batch, channels, spatial size, slices, batch per slice, count */
};

static void bn_dims_of(const bt_layer *l, const int64_t *shape, int32_t ndim, int groups,
                       struct bn_dims *d)
{
    int32_t i;
    d->n = shape[0];
    d->c = l->in_ch;
    d->s = 1;
    for (i = 2; i < ndim; i++)
        d->s *= shape[i];
    d->g = groups;
    d->ns = d->n / groups;
    d->m = d->ns * d->s;
}

static bt_status bn_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                          int64_t *out, const char *fn)
{
    char a[96];
    if (ndim < 2 || ndim > 4 || in[1] != l->in_ch)
        return bti_fail(BT_E_SHAPE,
                        "%s: batchnorm expects x of shape [N, %d], [N, %d, L] or [N, %d, H, W]; "
                        "got %s",
                        fn, l->in_ch, l->in_ch, l->in_ch, bti_dims_str(ndim, in, a, sizeof a));
    *ondim = ndim;
    memcpy(out, in, (size_t)ndim * sizeof *in);
    return BT_OK;
}

static bt_status bn_prepare(bt_layer *l, const bt_tensor *x, int training, int groups,
                            const char *fn)
{
    struct bn_dims d;
    char a[96];
    bt_status st;
    bn_dims_of(l, x->shape, x->ndim, groups, &d);
    if (training && d.m < 2)
        return bti_fail(BT_E_SHAPE,
                        "%s: batchnorm training needs more than 1 value per channel; x %s in %d "
                        "group(s) gives %lld",
                        fn, bti_shape_str(x, a, sizeof a), groups, (long long)d.m);
    /* saved: mean, invstd, biased var per (slice, channel); scratch: two sums per (slice, channel) */
    st = bti_buffer_reserve((void **)&l->saved, &l->saved_count, (size_t)(3 * d.g * d.c),
                            sizeof(double), fn);
    if (st == BT_OK)
        st = bti_scratch_reserve(l->scratch, (size_t)(2 * d.g * d.c) * sizeof(double), fn);
    return st;
}

/* mean and biased variance of slice g, channel block or channel, into the saved arrays. */
static void stats_planes(const struct bn_dims *d, const float *restrict x, double *mean,
                         double *var, int threads)
{
    int64_t g, c;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (g = 0; g < d->g; g++) {
        for (c = 0; c < d->c; c++) {
            double s = 0.0, v = 0.0, mu;
            int64_t n, q;
            for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
                const float *restrict r = x + (n * d->c + c) * d->s;
                double t = 0.0;
#pragma omp simd reduction(+ : t)
                for (q = 0; q < d->s; q++)
                    t += r[q];
                s += t;
            }
            mu = s / (double)d->m;
            for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
                const float *restrict r = x + (n * d->c + c) * d->s;
                double t = 0.0;
#pragma omp simd reduction(+ : t)
                for (q = 0; q < d->s; q++)
                    t += (r[q] - mu) * (r[q] - mu);
                v += t;
            }
            mean[g * d->c + c] = mu;
            var[g * d->c + c] = v / (double)d->m;
        }
    }
}

static void stats_rows(const struct bn_dims *d, const float *restrict x, double *mean, double *var,
                       int threads)
{
    int64_t g, c0;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (g = 0; g < d->g; g++) {
        for (c0 = 0; c0 < d->c; c0 += CBLK) {
            const int64_t cm = d->c - c0 < CBLK ? d->c - c0 : CBLK;
            double *restrict mu = mean + g * d->c + c0, *restrict v = var + g * d->c + c0;
            int64_t n, c;
            for (c = 0; c < cm; c++)
                mu[c] = v[c] = 0.0;
            for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
                const float *restrict r = x + n * d->c + c0;
                for (c = 0; c < cm; c++)
                    mu[c] += r[c];
            }
            for (c = 0; c < cm; c++)
                mu[c] /= (double)d->m;
            for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
                const float *restrict r = x + n * d->c + c0;
                for (c = 0; c < cm; c++)
                    v[c] += (r[c] - mu[c]) * (r[c] - mu[c]);
            }
            for (c = 0; c < cm; c++)
                v[c] /= (double)d->m;
        }
    }
}

static void bn_forward(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training, int groups)
{
    struct bn_dims d;
    double *mean, *invstd, *var;
    const float *w = l->has_bias ? l->value[0]->data : NULL, *b = l->has_bias ? l->value[1]->data : NULL;
    const int ri = l->has_bias ? 2 : 0; /* index of running_mean */
    float *rm = l->value[ri]->data, *rv = l->value[ri + 1]->data, *nbt = l->value[ri + 2]->data;
    const float *restrict x = xt->data;
    float *restrict y = yt->data;
    const int nt = l->threads;
    int64_t i, g, c;
    bn_dims_of(l, xt->shape, xt->ndim, groups, &d);
    mean = l->saved;
    invstd = mean + d.g * d.c;
    var = invstd + d.g * d.c;

    if (training) {
        const double mom = l->momentum, unbias = (double)d.m / (double)(d.m - 1);
        if (d.s == 1)
            stats_rows(&d, x, mean, var, nt);
        else
            stats_planes(&d, x, mean, var, nt);
        for (i = 0; i < d.g * d.c; i++)
            invstd[i] = 1.0 / sqrt(var[i] + l->eps);
        /* once per slice, in slice order: exactly as if each slice ran alone */
        for (g = 0; g < d.g; g++) {
            for (c = 0; c < d.c; c++) {
                rm[c] = (float)((1.0 - mom) * rm[c] + mom * mean[g * d.c + c]);
                rv[c] = (float)((1.0 - mom) * rv[c] + mom * var[g * d.c + c] * unbias);
            }
            nbt[0] += 1.0f;
        }
    } else {
        for (g = 0; g < d.g; g++) {
            for (c = 0; c < d.c; c++) {
                mean[g * d.c + c] = rm[c];
                var[g * d.c + c] = rv[c];
                invstd[g * d.c + c] = 1.0 / sqrt((double)rv[c] + l->eps);
            }
        }
    }

    if (d.s == 1) {
        int64_t n;
#pragma omp parallel for num_threads(nt) schedule(static) if (d.n * d.c > BTI_PAR_MIN)
        for (n = 0; n < d.n; n++) {
            const int64_t gi = n / d.ns;
            const float *restrict r = x + n * d.c;
            float *restrict o = y + n * d.c;
            const double *restrict mu = mean + gi * d.c, *restrict is = invstd + gi * d.c;
            for (c = 0; c < d.c; c++) {
                const float sc = (float)(is[c] * (w ? w[c] : 1.0f));
                o[c] = (r[c] - (float)mu[c]) * sc + (b ? b[c] : 0.0f);
            }
        }
    } else {
        int64_t n, cc;
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if (d.n * d.c * d.s > BTI_PAR_MIN)
        for (n = 0; n < d.n; n++) {
            for (cc = 0; cc < d.c; cc++) {
                const int64_t k = (n / d.ns) * d.c + cc;
                const float mu = (float)mean[k], sc = (float)(invstd[k] * (w ? w[cc] : 1.0f)),
                            sh = b ? b[cc] : 0.0f;
                const float *restrict r = x + (n * d.c + cc) * d.s;
                float *restrict o = y + (n * d.c + cc) * d.s;
                int64_t q;
#pragma omp simd
                for (q = 0; q < d.s; q++)
                    o[q] = (r[q] - mu) * sc + sh;
            }
        }
    }
}

/* Per (slice, channel): sdy = sum dy, sdx = sum dy * xhat. */
static void sums_planes(const struct bn_dims *d, const float *restrict x, const float *restrict dy,
                        const double *mean, const double *invstd, double *sdy, double *sdx,
                        int threads)
{
    int64_t g, c;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (g = 0; g < d->g; g++) {
        for (c = 0; c < d->c; c++) {
            const int64_t k = g * d->c + c;
            const double mu = mean[k];
            double a = 0.0, bsum = 0.0;
            int64_t n, q;
            for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
                const float *restrict r = x + (n * d->c + c) * d->s;
                const float *restrict e = dy + (n * d->c + c) * d->s;
                double t = 0.0, u = 0.0;
#pragma omp simd reduction(+ : t, u)
                for (q = 0; q < d->s; q++) {
                    t += e[q];
                    u += e[q] * (r[q] - mu);
                }
                a += t;
                bsum += u;
            }
            sdy[k] = a;
            sdx[k] = bsum * invstd[k];
        }
    }
}

static void sums_rows(const struct bn_dims *d, const float *restrict x, const float *restrict dy,
                      const double *mean, const double *invstd, double *sdy, double *sdx,
                      int threads)
{
    int64_t g, c0;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (g = 0; g < d->g; g++) {
        for (c0 = 0; c0 < d->c; c0 += CBLK) {
            const int64_t cm = d->c - c0 < CBLK ? d->c - c0 : CBLK, k0 = g * d->c + c0;
            double *restrict a = sdy + k0, *restrict bs = sdx + k0;
            const double *restrict mu = mean + k0;
            int64_t n, c;
            for (c = 0; c < cm; c++)
                a[c] = bs[c] = 0.0;
            for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
                const float *restrict r = x + n * d->c + c0, *restrict e = dy + n * d->c + c0;
                for (c = 0; c < cm; c++) {
                    a[c] += e[c];
                    bs[c] += e[c] * (r[c] - mu[c]);
                }
            }
            for (c = 0; c < cm; c++)
                bs[c] *= invstd[k0 + c];
        }
    }
}

static void bn_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    struct bn_dims d;
    const double *mean, *invstd;
    double *sdy, *sdx;
    const float *w = l->has_bias ? l->value[0]->data : NULL;
    const float *restrict x = l->x->data, *restrict dy = dyt->data;
    const int nt = l->threads, training = l->training;
    int64_t c;
    bn_dims_of(l, l->in_shape, l->in_ndim, l->groups, &d);
    mean = l->saved;
    invstd = mean + d.g * d.c;
    sdy = (double *)l->scratch->p;
    sdx = sdy + d.g * d.c;

    if (d.s == 1)
        sums_rows(&d, x, dy, mean, invstd, sdy, sdx, nt);
    else
        sums_planes(&d, x, dy, mean, invstd, sdy, sdx, nt);

    if (l->has_bias) {
        float *dw = l->grad[0]->data, *db = l->grad[1]->data;
        for (c = 0; c < d.c; c++) {
            double a = 0.0, bsum = 0.0;
            int64_t g;
            for (g = 0; g < d.g; g++) {
                a += sdy[g * d.c + c];
                bsum += sdx[g * d.c + c];
            }
            db[c] += (float)a;
            dw[c] += (float)bsum;
        }
    }
    if (!dxt)
        return;

    if (d.s == 1) {
        float *restrict dx = dxt->data;
        int64_t n;
#pragma omp parallel for num_threads(nt) schedule(static) if (d.n * d.c > BTI_PAR_MIN)
        for (n = 0; n < d.n; n++) {
            const int64_t k0 = (n / d.ns) * d.c;
            const float *restrict r = x + n * d.c, *restrict e = dy + n * d.c;
            float *restrict o = dx + n * d.c;
            int64_t cc;
            for (cc = 0; cc < d.c; cc++) {
                const double is = invstd[k0 + cc];
                const float sc = (float)(is * (w ? w[cc] : 1.0f));
                if (training) {
                    const float mdy = (float)(sdy[k0 + cc] / (double)d.m),
                                kx = (float)(sdx[k0 + cc] / (double)d.m * is),
                                mu = (float)mean[k0 + cc];
                    o[cc] = sc * (e[cc] - mdy - (r[cc] - mu) * kx);
                } else {
                    o[cc] = sc * e[cc];
                }
            }
        }
    } else {
        float *restrict dx = dxt->data;
        int64_t n, cc;
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if (d.n * d.c * d.s > BTI_PAR_MIN)
        for (n = 0; n < d.n; n++) {
            for (cc = 0; cc < d.c; cc++) {
                const int64_t k = (n / d.ns) * d.c + cc;
                const double is = invstd[k];
                const float sc = (float)(is * (w ? w[cc] : 1.0f));
                const float *restrict r = x + (n * d.c + cc) * d.s, *restrict e = dy + (n * d.c + cc) * d.s;
                float *restrict o = dx + (n * d.c + cc) * d.s;
                int64_t q;
                if (training) {
                    /* dx = w*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)), with xhat = (x-mu)*invstd */
                    const float mdy = (float)(sdy[k] / (double)d.m),
                                kx = (float)(sdx[k] / (double)d.m * is), mu = (float)mean[k];
#pragma omp simd
                    for (q = 0; q < d.s; q++)
                        o[q] = sc * (e[q] - mdy - (r[q] - mu) * kx);
                } else {
#pragma omp simd
                    for (q = 0; q < d.s; q++)
                        o[q] = sc * e[q];
                }
            }
        }
    }
}

static void bn_reset(bt_layer *l, uint64_t seed)
{
    int i;
    (void)seed;
    for (i = 0; i < l->ntensors; i++) {
        float *p = l->value[i]->data;
        int64_t k, n = l->value[i]->numel;
        float v = strcmp(l->names[i], "weight") == 0 || strcmp(l->names[i], "running_var") == 0
                      ? 1.0f
                      : 0.0f;
        for (k = 0; k < n; k++)
            p[k] = v;
    }
}

const struct bti_layer_ops bti_batchnorm_ops = {
    "batchnorm", bn_shape, bn_prepare, bn_forward, bn_backward, bn_reset, NULL,
};

bt_status bti_layer_batchnorm_new(bt_layer **out, int channels, double eps, double momentum,
                                  int affine, const char *fn)
{
    int64_t cshape[1] = {channels}, one[1] = {1};
    bt_layer *l;
    bt_status st;
    *out = NULL;
    if (channels < 1)
        return bti_fail(BT_E_INVALID_ARG, "%s: channels is %d; it must be >= 1", fn, channels);
    if (!(eps > 0.0) || !isfinite(eps))
        return bti_fail(BT_E_INVALID_ARG, "%s: eps is %g; it must be finite and > 0", fn, eps);
    if (!(momentum >= 0.0 && momentum <= 1.0))
        return bti_fail(BT_E_INVALID_ARG, "%s: momentum is %g; it must be in [0, 1]", fn,
                        momentum);
    if (affine != 0 && affine != 1)
        return bti_fail(BT_E_INVALID_ARG, "%s: affine is %d; it must be 0 or 1", fn, affine);
    st = bti_layer_alloc(&l, &bti_batchnorm_ops, BTI_LAYER_BATCHNORM, fn);
    if (st != BT_OK)
        return st;
    l->in_ch = channels;
    l->eps = eps;
    l->momentum = momentum;
    l->has_bias = affine; /* affine: weight and bias exist */
    if (affine) {
        st = bti_layer_add_tensor(l, "weight", 1, cshape, 1, fn);
        if (st == BT_OK)
            st = bti_layer_add_tensor(l, "bias", 1, cshape, 1, fn);
    }
    if (st == BT_OK)
        st = bti_layer_add_tensor(l, "running_mean", 1, cshape, 0, fn);
    if (st == BT_OK)
        st = bti_layer_add_tensor(l, "running_var", 1, cshape, 0, fn);
    if (st == BT_OK)
        st = bti_layer_add_tensor(l, "num_batches_tracked", 1, one, 0, fn);
    if (st != BT_OK) {
        bti_layer_destroy(l);
        return st;
    }
    bn_reset(l, 0);
    *out = l;
    return BT_OK;
}
