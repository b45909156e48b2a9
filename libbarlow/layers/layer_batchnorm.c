/* layer_batchnorm.c - nn.BatchNorm1d/2d over [N, C], [N, C, L] or [N, C, H, W].
 *
 * Training: each slice of the batch (groups) is normalised with its own
 * statistics (biased variance), and the running statistics are updated once
 * per slice, in slice order, with the UNBIASED variance, as PyTorch does.
 * Eval: the running statistics. Sums run in single precision over short runs
 * added up in double, per channel in a fixed order, so results do not depend on
 * the thread count. The saved
 * per-(slice, channel) mean and 1/std let backward recompute x-hat from the
 * borrowed x instead of storing it. */
#include "layers/layer.h"
#include "common/comm.h"

#include <math.h>
#include <string.h>

/* Channels per task in the [N, C] layout: a task reads 2 KiB of each row, so
 * the prefetchers follow it (64 channels, 256 bytes from rows 8 KiB apart,
 * took 1.6x longer at [64, 2048]); a channel's sums do not depend on it. */
#define CBLK 512

/* The layer: what every layer has, then the BatchNorm's own. */
struct batchnorm {
    struct bt_layer base;
    int channels;
    int affine; /* weight and bias exist */
    double eps, momentum;
    struct bti_buffer saved; /* doubles: mean, invstd, biased var per (slice, channel) */
    struct bti_coll *coll;   /* data-parallel: the ranks' collectives (set per model call) */
    int pending;             /* a data-parallel forward's running statistics, to commit */
    int64_t global_m;        /* the last data-parallel forward's count per (slice, channel) */
};

BTI_INLINE static const struct batchnorm *bn_of(const bt_layer *l)
{
    return BTI_LAYER_OF(struct batchnorm, l);
}

/* weight and bias, NULL without affine */
BTI_INLINE static const float *bn_weight(const bt_layer *l)
{
    return bn_of(l)->affine ? l->value[0]->data : NULL;
}

BTI_INLINE static const float *bn_bias(const bt_layer *l)
{
    return bn_of(l)->affine ? l->value[1]->data : NULL;
}

struct bn_dims {
    int64_t n, c, s, g, ns, m; /* batch, channels, spatial size, slices, batch per slice, count */
    int level;                 /* the layer's CPU level: the tasks' instructions */
};

static void bn_dims_of(const bt_layer *l, const int64_t *shape, int32_t ndim, int groups,
                       struct bn_dims *d)
{
    int32_t i;
    d->n = shape[0];
    d->c = bn_of(l)->channels;
    d->s = 1;
    for (i = 2; i < ndim; i++)
        d->s *= shape[i];
    d->g = groups;
    d->ns = d->n / groups;
    d->m = d->ns * d->s;
    d->level = l->level;
}

static bt_status bn_shape(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *ondim,
                          int64_t *out, const char *fn)
{
    const int c = bn_of(l)->channels;
    char a[96];
    if (ndim < 2 || ndim > 4 || in[1] != c)
        return bti_fail(BT_E_SHAPE,
                        "%s: batchnorm expects x of shape [N, %d], [N, %d, L] or [N, %d, H, W]; "
                        "got %s",
                        fn, c, c, c, bti_dims_str(ndim, in, a, sizeof a));
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
    /* data-parallel: the global count is checked by the model's agreement */
    if (training && d.m < (bn_of(l)->coll ? 1 : 2))
        return bti_fail(BT_E_SHAPE,
                        "%s: batchnorm training needs more than 1 value per channel; x %s in %d "
                        "group(s) gives %lld",
                        fn, bti_shape_str(x, a, sizeof a), groups, (long long)d.m);
    /* saved: mean, invstd, biased var per (slice, channel) */
    st = bti_buffer_reserve(&BTI_LAYER_OF(struct batchnorm, l)->saved, (size_t)(3 * d.g * d.c),
                            sizeof(double), fn);
    if (st == BT_OK)
        /* two double sums per (slice, channel), then (row layout) four float coefficients */
        st = bti_buffer_reserve(l->scratch, (size_t)(4 * d.g * d.c), sizeof(double), fn);
    return st;
}

/* ---- plane layout [N, C, S]: one task per (slice, channel) ------------------------
 *
 * A task makes every pass over its channel's planes back to back, so that the
 * second and third passes find the planes in the core's cache and a forward
 * costs one read of x and one write of y from memory. Sums run in single
 * precision in LANES explicit partial sums (a GCC vector) of at most FLUSH values each, which
 * are then added up in double in a fixed order: accurate, and the same bits
 * for any thread count and any vector ISA. Fused variants (for the model): forward adds a residual
 * and/or applies ReLU to the output; backward takes dy as zero where the fused ReLU's output was
 * zero (exactly what a separate ReLU backward would have passed). */

#define LANES 16 /* partial sums per accumulator: a GCC vector of 16 floats, lowered to */
#define FLUSH 16 /* the ISA at hand; vectors added to it before it is flushed to double */

typedef float lanes __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t lanes_i __attribute__((vector_size(LANES * sizeof(int32_t))));

/* (no vector arguments or results: they would change the calling convention) */
#define LANES_LOAD(v, p) memcpy(&(v), (p), sizeof(lanes))

/* The lanes added up in double in a fixed order. */
BTI_INLINE static double lanes_sum(const lanes *p)
{
    double t = 0.0;
    int j;
    for (j = 0; j < LANES; j++)
        t += (*p)[j];
    return t;
}

/* *acc += sum of r[0..s) through the lanes *p (flushed every FLUSH vectors). The
 * planes of a channel are far apart, so each next one (at r + ahead) is fetched
 * while this one is summed: the hardware prefetcher stops at page boundaries. */
BTI_INLINE static void acc_sum(const float *restrict r, int64_t s, int64_t ahead, lanes *p,
                               int *cnt, double *acc)
{
    int64_t q = 0;
    lanes v = *p;
    for (; q + LANES <= s; q += LANES) {
        lanes t;
        __builtin_prefetch(r + q + ahead);
        LANES_LOAD(t, r + q);
        v += t;
        if (++*cnt == FLUSH) {
            *acc += lanes_sum(&v);
            v = (lanes){0};
            *cnt = 0;
        }
    }
    *p = v;
    for (; q < s; q++)
        *acc += r[q];
}

/* *acc += sum of (r - a)^2 */
BTI_INLINE static void acc_sumsq(const float *restrict r, int64_t s, float a, lanes *p, int *cnt,
                                 double *acc)
{
    int64_t q = 0;
    lanes v = *p;
    for (; q + LANES <= s; q += LANES) {
        lanes dd;
        LANES_LOAD(dd, r + q);
        dd -= a;
        v += dd * dd;
        if (++*cnt == FLUSH) {
            *acc += lanes_sum(&v);
            v = (lanes){0};
            *cnt = 0;
        }
    }
    *p = v;
    for (; q < s; q++) {
        const float dd = r[q] - a;
        *acc += dd * dd;
    }
}

/* *se += sum of e, *sex += sum of e * (r - a), with e taken as 0 where mk (if given) <= 0 */
BTI_INLINE static void acc_sums(const float *restrict r, const float *restrict e,
                                const float *restrict mk, int64_t s, int64_t ahead, float a,
                                lanes *p1, lanes *p2, int *cnt, double *se, double *sex)
{
    int64_t q = 0;
    lanes u = *p1, w = *p2;
    for (; q + LANES <= s; q += LANES) {
        lanes v, xr;
        __builtin_prefetch(r + q + ahead);
        __builtin_prefetch(e + q + ahead);
        if (mk)
            __builtin_prefetch(mk + q + ahead);
        LANES_LOAD(v, e + q);
        LANES_LOAD(xr, r + q);
        if (mk) {
            lanes m;
            LANES_LOAD(m, mk + q);
            v = (lanes)((lanes_i)v & (m > 0.0f));
        }
        u += v;
        w += v * (xr - a);
        if (++*cnt == FLUSH) {
            *se += lanes_sum(&u);
            *sex += lanes_sum(&w);
            u = w = (lanes){0};
            *cnt = 0;
        }
    }
    *p1 = u;
    *p2 = w;
    for (; q < s; q++) {
        const float v = !mk || mk[q] > 0.0f ? e[q] : 0.0f;
        *se += v;
        *sex += v * (r[q] - a);
    }
}

/* o = (r - mu) * sc + sh, then + skip, then ReLU, as asked */
BTI_INLINE static void norm_run(const float *restrict r, float *restrict o,
                                const float *restrict skip, int relu, int64_t s, float mu, float sc,
                                float sh)
{
    int64_t q;
    if (skip && relu) {
#pragma omp simd
        for (q = 0; q < s; q++) {
            const float v = (r[q] - mu) * sc + sh + skip[q];
            o[q] = v > 0.0f ? v : 0.0f;
        }
    } else if (skip) {
#pragma omp simd
        for (q = 0; q < s; q++)
            o[q] = (r[q] - mu) * sc + sh + skip[q];
    } else if (relu) {
#pragma omp simd
        for (q = 0; q < s; q++) {
            const float v = (r[q] - mu) * sc + sh;
            o[q] = v > 0.0f ? v : 0.0f;
        }
    } else {
#pragma omp simd
        for (q = 0; q < s; q++)
            o[q] = (r[q] - mu) * sc + sh;
    }
}

/* dx = sc * (e - mdy - (r - mu) * kx), e masked as in sums_run */
BTI_INLINE static void dx_run(const float *restrict r, const float *restrict e,
                              const float *restrict mk, float *restrict o, int64_t s, float mu,
                              float sc, float mdy, float kx)
{
    int64_t q;
    if (mk) {
#pragma omp simd
        for (q = 0; q < s; q++) {
            const float g = e[q], v = mk[q] > 0.0f ? g : 0.0f;
            o[q] = sc * (v - mdy - (r[q] - mu) * kx);
        }
    } else {
#pragma omp simd
        for (q = 0; q < s; q++)
            o[q] = sc * (e[q] - mdy - (r[q] - mu) * kx);
    }
}

BTI_INLINE static void dx_eval_run(const float *restrict e, const float *restrict mk,
                                   float *restrict o, int64_t s, float sc)
{
    int64_t q;
    if (mk) {
#pragma omp simd
        for (q = 0; q < s; q++) {
            const float g = e[q];
            o[q] = mk[q] > 0.0f ? sc * g : 0.0f;
        }
    } else {
#pragma omp simd
        for (q = 0; q < s; q++)
            o[q] = sc * e[q];
    }
}

/* Tasks over planes: (slice, block of channels). Small planes are taken a
 * block of channels at a time, image by image, so that each image gives one
 * contiguous run of up to PLANE_RUN floats: one 16-float plane per read, 32
 * KiB apart, left the prefetchers idle (docs/perf.md). Each channel still
 * sums its planes in the same order. */
#define PLANE_RUN 1024
#define MAX_BLOCK 64

static int64_t plane_block(const struct bn_dims *d)
{
    int64_t b = (PLANE_RUN + d->s - 1) / d->s;
    if (b > MAX_BLOCK)
        b = MAX_BLOCK;
    return b < d->c ? b : d->c;
}

static int64_t plane_tasks(const struct bn_dims *d)
{
    const int64_t b = plane_block(d);
    return d->g * ((d->c + b - 1) / b);
}

/* Task t: channels [c0, c0 + cm) of the images [n0, n1) of its slice, whose
 * statistics start at index k0 = slice * channels + c0. */
struct plane_task {
    int64_t c0, cm, n0, n1, k0;
};

static void plane_task_of(const struct bn_dims *d, int64_t t, struct plane_task *u)
{
    const int64_t b = plane_block(d), nb = (d->c + b - 1) / b, g = t / nb;
    u->c0 = t % nb * b;
    u->cm = d->c - u->c0 < b ? d->c - u->c0 : b;
    u->n0 = g * d->ns;
    u->n1 = u->n0 + d->ns;
    u->k0 = g * d->c + u->c0;
}

/* Where the plane of image n, channel c starts. */
static int64_t plane_at(const struct bn_dims *d, int64_t n, int64_t c)
{
    return (n * d->c + c) * d->s;
}

/* Training forward over planes for task t: statistics and the normalised
 * output. The tasks are compiled once per CPU level (BTI_PER_LEVEL). */
static BTI_INLINE void fwd_train_task_body(const bt_layer *l, const struct bn_dims *d,
                                           const float *x, float *y, const float *skip, int relu,
                                           double *mean, double *invstd, double *var, int64_t t)
{
    const float *w = bn_weight(l), *b = bn_bias(l);
    double s1[MAX_BLOCK], s2[MAX_BLOCK];
    float muf[MAX_BLOCK], sc[MAX_BLOCK], sh[MAX_BLOCK];
    lanes p[MAX_BLOCK];
    int cnt[MAX_BLOCK];
    struct plane_task u;
    int64_t n, c;
    plane_task_of(d, t, &u);
    for (c = 0; c < u.cm; c++) {
        s1[c] = s2[c] = 0.0;
        p[c] = (lanes){0};
        cnt[c] = 0;
    }
    for (n = u.n0; n < u.n1; n++)
        for (c = 0; c < u.cm; c++)
            acc_sum(x + plane_at(d, n, u.c0 + c), d->s, n + 1 < u.n1 ? d->c * d->s : 0, &p[c],
                    &cnt[c], &s1[c]);
    for (c = 0; c < u.cm; c++) {
        s1[c] += lanes_sum(&p[c]);
        p[c] = (lanes){0};
        cnt[c] = 0;
        muf[c] = (float)(s1[c] / (double)d->m);
    }
    for (n = u.n0; n < u.n1; n++)
        for (c = 0; c < u.cm; c++)
            acc_sumsq(x + plane_at(d, n, u.c0 + c), d->s, muf[c], &p[c], &cnt[c], &s2[c]);
    for (c = 0; c < u.cm; c++) {
        const int64_t k = u.k0 + c;
        const double mu = s1[c] / (double)d->m, dm = mu - (double)muf[c];
        double v, is;
        s2[c] += lanes_sum(&p[c]);
        v = s2[c] / (double)d->m - dm * dm; /* E[(x - a)^2] = var + (mu - a)^2 */
        if (v < 0.0)
            v = 0.0;
        is = 1.0 / sqrt(v + bn_of(l)->eps);
        mean[k] = mu;
        var[k] = v;
        invstd[k] = is;
        sc[c] = (float)(is * (w ? w[u.c0 + c] : 1.0f));
        sh[c] = b ? b[u.c0 + c] : 0.0f;
    }
    for (n = u.n0; n < u.n1; n++)
        for (c = 0; c < u.cm; c++) {
            const int64_t off = plane_at(d, n, u.c0 + c);
            norm_run(x + off, y + off, skip ? skip + off : NULL, relu, d->s, muf[c], sc[c], sh[c]);
        }
}
BTI_PER_LEVEL(fwd_train_task,
              (const bt_layer *l, const struct bn_dims *d, const float *x, float *y,
               const float *skip, int relu, double *mean, double *invstd, double *var, int64_t t),
              (l, d, x, y, skip, relu, mean, invstd, var, t))

static void fwd_planes_train(const bt_layer *l, const struct bn_dims *d, const float *x, float *y,
                             const float *skip, int relu, double *mean, double *invstd, double *var)
{
    int64_t t;
#pragma omp parallel for num_threads(l->threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (t = 0; t < plane_tasks(d); t++)
        fwd_train_task(d->level, l, d, x, y, skip, relu, mean, invstd, var, t);
}

/* Normalising with given statistics (eval), planes [k0, k1) of (image, channel). */
static BTI_INLINE void fwd_apply_task_body(const bt_layer *l, const struct bn_dims *d,
                                           const float *x, float *y, const float *skip, int relu,
                                           const double *mean, const double *invstd, int64_t k)
{
    const float *w = bn_weight(l), *b = bn_bias(l);
    const int64_t n = k / d->c, c = k % d->c, j = (n / d->ns) * d->c + c, off = k * d->s;
    norm_run(x + off, y + off, skip ? skip + off : NULL, relu, d->s, (float)mean[j],
             (float)(invstd[j] * (w ? w[c] : 1.0f)), b ? b[c] : 0.0f);
}
BTI_PER_LEVEL(fwd_apply_task,
              (const bt_layer *l, const struct bn_dims *d, const float *x, float *y,
               const float *skip, int relu, const double *mean, const double *invstd, int64_t k),
              (l, d, x, y, skip, relu, mean, invstd, k))

static void fwd_planes_apply(const bt_layer *l, const struct bn_dims *d, const float *x, float *y,
                             const float *skip, int relu, const double *mean, const double *invstd)
{
    int64_t k;
#pragma omp parallel for num_threads(l->threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (k = 0; k < d->n * d->c; k++)
        fwd_apply_task(d->level, l, d, x, y, skip, relu, mean, invstd, k);
}

/* Backward over planes for task t (as the forward's): sdy = sum dy, sdx = sum
 * dy * xhat, then dx from them. */
static BTI_INLINE void bwd_task_body(const bt_layer *l, const struct bn_dims *d, const float *x,
                                const float *dy, const float *mk, float *dx, int training,
                                const double *mean, const double *invstd, double *sdy,
                                double *sdx, int64_t t)
{
    const float *w = bn_weight(l);
    double a[MAX_BLOCK], bs[MAX_BLOCK];
    float muf[MAX_BLOCK], sc[MAX_BLOCK], mdy[MAX_BLOCK], kx[MAX_BLOCK];
    lanes p1[MAX_BLOCK], p2[MAX_BLOCK];
    int cnt[MAX_BLOCK];
    struct plane_task u;
    int64_t n, c;
    plane_task_of(d, t, &u);
    for (c = 0; c < u.cm; c++) {
        a[c] = bs[c] = 0.0;
        p1[c] = p2[c] = (lanes){0};
        cnt[c] = 0;
        muf[c] = (float)mean[u.k0 + c];
        sc[c] = (float)(invstd[u.k0 + c] * (w ? w[u.c0 + c] : 1.0f));
    }
    for (n = u.n0; n < u.n1; n++)
        for (c = 0; c < u.cm; c++) {
            const int64_t off = plane_at(d, n, u.c0 + c);
            acc_sums(x + off, dy + off, mk ? mk + off : NULL, d->s,
                     n + 1 < u.n1 ? d->c * d->s : 0, muf[c], &p1[c], &p2[c], &cnt[c], &a[c],
                     &bs[c]);
        }
    for (c = 0; c < u.cm; c++) {
        const int64_t k = u.k0 + c;
        const double is = invstd[k];
        a[c] += lanes_sum(&p1[c]);
        bs[c] += lanes_sum(&p2[c]);
        bs[c] -= (mean[k] - (double)muf[c]) * a[c]; /* sum e (x - mu) from sum e (x - muf) */
        sdy[k] = a[c];
        sdx[k] = bs[c] * is;
        /* dx = w*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)), xhat = (x-mu)*invstd */
        mdy[c] = (float)(a[c] / (double)d->m);
        kx[c] = (float)(sdx[k] / (double)d->m * is);
    }
    if (!dx)
        return;
    for (n = u.n0; n < u.n1; n++)
        for (c = 0; c < u.cm; c++) {
            const int64_t off = plane_at(d, n, u.c0 + c);
            if (training)
                dx_run(x + off, dy + off, mk ? mk + off : NULL, dx + off, d->s, muf[c], sc[c],
                       mdy[c], kx[c]);
            else
                dx_eval_run(dy + off, mk ? mk + off : NULL, dx + off, d->s, sc[c]);
        }
}
BTI_PER_LEVEL(bwd_task,
              (const bt_layer *l, const struct bn_dims *d, const float *x, const float *dy,
               const float *mk, float *dx, int training, const double *mean, const double *invstd,
               double *sdy, double *sdx, int64_t t),
              (l, d, x, dy, mk, dx, training, mean, invstd, sdy, sdx, t))

static void bwd_planes(const bt_layer *l, const struct bn_dims *d, const float *x, const float *dy,
                       const float *mk, float *dx, int training, const double *mean,
                       const double *invstd, double *sdy, double *sdx)
{
    int64_t t;
#pragma omp parallel for num_threads(l->threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (t = 0; t < plane_tasks(d); t++)
        bwd_task(d->level, l, d, x, dy, mk, dx, training, mean, invstd, sdy, sdx, t);
}

/* ---- row layout [N, C]: channel blocks over the rows ----------------------------------
 *
 * Statistics per block of CBLK channels (a task) over the rows of a slice, in
 * double; then per-(slice, channel) coefficients in float, so that the
 * per-element loops are plain vector loops over a row (the same arithmetic as
 * the plane layout: the same bits as computing them in place). */

static BTI_INLINE void stats_rows_task_body(const struct bn_dims *d, const float *x, double *mean,
                                       double *var, int64_t t)
{
    const int64_t nb = (d->c + CBLK - 1) / CBLK, g = t / nb, c0 = (t % nb) * CBLK;
    const int64_t cm = d->c - c0 < CBLK ? d->c - c0 : CBLK;
    double *restrict mu = mean + g * d->c + c0, *restrict v = var + g * d->c + c0;
    int64_t n, c;
    for (c = 0; c < cm; c++)
        mu[c] = v[c] = 0.0;
    for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
        const float *restrict r = x + n * d->c + c0;
#pragma omp simd
        for (c = 0; c < cm; c++)
            mu[c] += r[c];
    }
    for (c = 0; c < cm; c++)
        mu[c] /= (double)d->m;
    for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
        const float *restrict r = x + n * d->c + c0;
#pragma omp simd
        for (c = 0; c < cm; c++) {
            const double e = r[c] - mu[c];
            v[c] += e * e;
        }
    }
    for (c = 0; c < cm; c++)
        v[c] /= (double)d->m;
}
BTI_PER_LEVEL(stats_rows_task,
              (const struct bn_dims *d, const float *x, double *mean, double *var, int64_t t),
              (d, x, mean, var, t))

static void stats_rows(const struct bn_dims *d, const float *x, double *mean, double *var,
                       int threads)
{
    const int64_t tasks = d->g * ((d->c + CBLK - 1) / CBLK);
    int64_t t;
#pragma omp parallel for num_threads(threads) schedule(static) if (d->n * d->c > BTI_PAR_MIN)
    for (t = 0; t < tasks; t++)
        stats_rows_task(d->level, d, x, mean, var, t);
}

/* y rows: (x - mu) * sc + sh (+ skip) (ReLU), coefficients per (slice, channel) */
static BTI_INLINE void fwd_rows_task_body(const struct bn_dims *d, const float *x, float *y,
                                     const float *skip, int relu, const float *muf,
                                     const float *sc, const float *sh, int64_t n)
{
    const int64_t k0 = (n / d->ns) * d->c;
    const float *restrict r = x + n * d->c, *restrict sk = skip ? skip + n * d->c : NULL;
    const float *restrict mu = muf + k0, *restrict a = sc + k0, *restrict bb = sh + k0;
    float *restrict o = y + n * d->c;
    int64_t c;
    if (sk && relu) {
#pragma omp simd
        for (c = 0; c < d->c; c++) {
            const float v = (r[c] - mu[c]) * a[c] + bb[c] + sk[c];
            o[c] = v > 0.0f ? v : 0.0f;
        }
    } else if (sk) {
#pragma omp simd
        for (c = 0; c < d->c; c++)
            o[c] = (r[c] - mu[c]) * a[c] + bb[c] + sk[c];
    } else if (relu) {
#pragma omp simd
        for (c = 0; c < d->c; c++) {
            const float v = (r[c] - mu[c]) * a[c] + bb[c];
            o[c] = v > 0.0f ? v : 0.0f;
        }
    } else {
#pragma omp simd
        for (c = 0; c < d->c; c++)
            o[c] = (r[c] - mu[c]) * a[c] + bb[c];
    }
}
BTI_PER_LEVEL(fwd_rows_task,
              (const struct bn_dims *d, const float *x, float *y, const float *skip, int relu,
               const float *muf, const float *sc, const float *sh, int64_t n),
              (d, x, y, skip, relu, muf, sc, sh, n))

static void fwd_rows_apply(const bt_layer *l, const struct bn_dims *d, const float *x, float *y,
                           const float *skip, int relu, const double *mean, const double *invstd)
{
    const float *w = bn_weight(l), *b = bn_bias(l);
    float *muf = (float *)l->scratch->p, *sc = muf + d->g * d->c, *sh = sc + d->g * d->c;
    int64_t k, n;
    for (k = 0; k < d->g * d->c; k++) {
        const int64_t c = k % d->c;
        muf[k] = (float)mean[k];
        sc[k] = (float)(invstd[k] * (w ? w[c] : 1.0f));
        sh[k] = b ? b[c] : 0.0f;
    }
#pragma omp parallel for num_threads(l->threads) schedule(static) if (d->n * d->c > BTI_PAR_MIN)
    for (n = 0; n < d->n; n++)
        fwd_rows_task(d->level, d, x, y, skip, relu, muf, sc, sh, n);
}

/* per channel block: sdy = sum dy, sdx = sum dy * xhat (dy masked as in acc_sums) */
static BTI_INLINE void sums_rows_task_body(const struct bn_dims *d, const float *x, const float *dy,
                                      const float *mk, const double *mean, const double *invstd,
                                      double *sdy, double *sdx, int64_t t)
{
    const int64_t nb = (d->c + CBLK - 1) / CBLK, g = t / nb, c0 = (t % nb) * CBLK;
    const int64_t cm = d->c - c0 < CBLK ? d->c - c0 : CBLK, k0 = g * d->c + c0;
    double *restrict a = sdy + k0, *restrict bs = sdx + k0;
    const double *restrict mu = mean + k0;
    int64_t n, c;
    for (c = 0; c < cm; c++)
        a[c] = bs[c] = 0.0;
    for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
        const float *restrict r = x + n * d->c + c0, *restrict e = dy + n * d->c + c0;
        if (mk) {
            const float *restrict m = mk + n * d->c + c0;
#pragma omp simd
            for (c = 0; c < cm; c++) {
                const float u = e[c], v = m[c] > 0.0f ? u : 0.0f;
                a[c] += v;
                bs[c] += v * (r[c] - mu[c]);
            }
        } else {
#pragma omp simd
            for (c = 0; c < cm; c++) {
                a[c] += e[c];
                bs[c] += e[c] * (r[c] - mu[c]);
            }
        }
    }
    for (c = 0; c < cm; c++)
        bs[c] *= invstd[k0 + c];
}
BTI_PER_LEVEL(sums_rows_task,
              (const struct bn_dims *d, const float *x, const float *dy, const float *mk,
               const double *mean, const double *invstd, double *sdy, double *sdx, int64_t t),
              (d, x, dy, mk, mean, invstd, sdy, sdx, t))

static void sums_rows(const struct bn_dims *d, const float *x, const float *dy, const float *mk,
                      const double *mean, const double *invstd, double *sdy, double *sdx,
                      int threads)
{
    const int64_t tasks = d->g * ((d->c + CBLK - 1) / CBLK);
    int64_t t;
#pragma omp parallel for num_threads(threads) schedule(static) if (d->n * d->c > BTI_PAR_MIN)
    for (t = 0; t < tasks; t++)
        sums_rows_task(d->level, d, x, dy, mk, mean, invstd, sdy, sdx, t);
}

/* dx rows: sc * (dy - mdy - (x - mu) * kx), or sc * dy in eval (dy masked) */
static BTI_INLINE void dx_rows_task_body(const struct bn_dims *d, const float *x, const float *dy,
                                    const float *mk, float *dx, int training, const float *muf,
                                    const float *sc, const float *mdy, const float *kx, int64_t n)
{
    const int64_t k0 = (n / d->ns) * d->c;
    const float *restrict r = x + n * d->c, *restrict e = dy + n * d->c;
    const float *restrict m = mk ? mk + n * d->c : NULL;
    const float *restrict mu = muf + k0, *restrict a = sc + k0, *restrict md = mdy + k0,
                          *restrict kk = kx + k0;
    float *restrict o = dx + n * d->c;
    int64_t c;
    if (training && m) {
#pragma omp simd
        for (c = 0; c < d->c; c++) {
            const float u = e[c], v = m[c] > 0.0f ? u : 0.0f;
            o[c] = a[c] * (v - md[c] - (r[c] - mu[c]) * kk[c]);
        }
    } else if (training) {
#pragma omp simd
        for (c = 0; c < d->c; c++)
            o[c] = a[c] * (e[c] - md[c] - (r[c] - mu[c]) * kk[c]);
    } else if (m) {
#pragma omp simd
        for (c = 0; c < d->c; c++) {
            const float u = e[c];
            o[c] = m[c] > 0.0f ? a[c] * u : 0.0f;
        }
    } else {
#pragma omp simd
        for (c = 0; c < d->c; c++)
            o[c] = a[c] * e[c];
    }
}
BTI_PER_LEVEL(dx_rows_task,
              (const struct bn_dims *d, const float *x, const float *dy, const float *mk, float *dx,
               int training, const float *muf, const float *sc, const float *mdy, const float *kx,
               int64_t n),
              (d, x, dy, mk, dx, training, muf, sc, mdy, kx, n))

static void dx_rows(const bt_layer *l, const struct bn_dims *d, const float *x, const float *dy,
                    const float *mk, float *dx, int training, const double *mean,
                    const double *invstd, const double *sdy, const double *sdx)
{
    const float *w = bn_weight(l);
    const int64_t gc = d->g * d->c;
    /* after the sums (2 gc doubles) in scratch: four float coefficients per (slice, channel) */
    float *muf = (float *)(sdx + gc), *sc = muf + gc, *mdy = sc + gc, *kx = mdy + gc;
    int64_t k, n;
    for (k = 0; k < gc; k++) {
        const double is = invstd[k];
        muf[k] = (float)mean[k];
        sc[k] = (float)(is * (w ? w[k % d->c] : 1.0f));
        mdy[k] = (float)(sdy[k] / (double)d->m);
        kx[k] = (float)(sdx[k] / (double)d->m * is);
    }
#pragma omp parallel for num_threads(l->threads) schedule(static) if (d->n * d->c > BTI_PAR_MIN)
    for (n = 0; n < d->n; n++)
        dx_rows_task(d->level, d, x, dy, mk, dx, training, muf, sc, mdy, kx, n);
}

/* Normalise with given statistics, in either layout. */
static void fwd_apply(const bt_layer *l, const struct bn_dims *d, const float *x, float *y,
                      const float *skip, int relu, const double *mean, const double *invstd)
{
    if (d->s == 1)
        fwd_rows_apply(l, d, x, y, skip, relu, mean, invstd);
    else
        fwd_planes_apply(l, d, x, y, skip, relu, mean, invstd);
}

/* The running statistics after a training forward whose per-(slice, channel) batch mean
 * and biased variance are mean, var: updated once per slice, in slice order, exactly as if
 * each slice ran alone; unbias is count / (count - 1). */
static void update_running(bt_layer *l, int64_t groups, const double *mean, const double *var,
                           double unbias)
{
    const struct batchnorm *bn = bn_of(l);
    const int ri = bn->affine ? 2 : 0; /* index of running_mean */
    const int64_t nc = bn->channels;
    float *rm = l->value[ri]->data, *rv = l->value[ri + 1]->data, *nbt = l->value[ri + 2]->data;
    const double mom = bn->momentum;
    int64_t g, c;
    for (g = 0; g < groups; g++) {
        for (c = 0; c < nc; c++) {
            rm[c] = (float)((1.0 - mom) * rm[c] + mom * mean[g * nc + c]);
            rv[c] = (float)((1.0 - mom) * rv[c] + mom * var[g * nc + c] * unbias);
        }
        nbt[0] += 1.0f;
    }
}

/* ---- data-parallel statistics ----------------------------------------------------------
 *
 * The global batch's statistics (SyncBatchNorm): per (slice, channel) the ranks' sums,
 * then their sums of squares around the global mean (two passes, as one process makes
 * them), each by one all-reduce; the normalisation and dx are the one-process loops fed
 * with the global values. Slower than the fused one-process tasks: each pass reads x. */

/* out[k] = sum of x (centre NULL) or of (x - centre[k])^2 over slice k / C's local values,
 * channel k % C, in a fixed order per channel. */
static void local_sums(const bt_layer *l, const struct bn_dims *d, const float *x,
                       const float *centre, double *out)
{
    const int64_t gc = d->g * d->c, nb = (d->c + CBLK - 1) / CBLK;
    int64_t k;
    if (d->s == 1) { /* rows: a block of channels per task, row after row */
#pragma omp parallel for num_threads(l->threads) schedule(static) if (d->n * d->c > BTI_PAR_MIN)
        for (k = 0; k < d->g * nb; k++) {
            const int64_t g = k / nb, c0 = (k % nb) * CBLK;
            const int64_t cm = d->c - c0 < CBLK ? d->c - c0 : CBLK;
            double *restrict o = out + g * d->c + c0;
            const float *restrict a = centre ? centre + g * d->c + c0 : NULL;
            int64_t n, c;
            for (c = 0; c < cm; c++)
                o[c] = 0.0;
            for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
                const float *restrict r = x + n * d->c + c0;
                if (a)
                    for (c = 0; c < cm; c++) {
                        const double e = (double)(r[c] - a[c]);
                        o[c] += e * e;
                    }
                else
                    for (c = 0; c < cm; c++)
                        o[c] += r[c];
            }
        }
        return;
    }
#pragma omp parallel for num_threads(l->threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (k = 0; k < gc; k++) {
        const int64_t g = k / d->c, c = k % d->c;
        lanes p = (lanes){0};
        double acc = 0.0;
        int cnt = 0;
        int64_t n;
        for (n = g * d->ns; n < (g + 1) * d->ns; n++) {
            const float *r = x + plane_at(d, n, c);
            if (centre)
                acc_sumsq(r, d->s, centre[k], &p, &cnt, &acc);
            else
                acc_sum(r, d->s, 0, &p, &cnt, &acc);
        }
        out[k] = acc + lanes_sum(&p);
    }
}

/* Training forward statistics of the global batch into mean, invstd, var (the layer's
 * saved doubles); scratch holds gc + 1 doubles. Returns the global count per slice. */
static int64_t sync_stats(bt_layer *l, const struct bn_dims *d, const float *x, double *mean,
                          double *invstd, double *var)
{
    struct batchnorm *bn = BTI_LAYER_OF(struct batchnorm, l);
    const int64_t gc = d->g * d->c;
    double *sum = (double *)l->scratch->p;
    float *muf = (float *)(sum + gc + 1);
    int64_t k, m;
    local_sums(l, d, x, NULL, sum);
    sum[gc] = (double)d->m;
    bti_coll_sum_f64(bn->coll, sum, gc + 1, "batchnorm statistics");
    m = (int64_t)sum[gc];
    if (m < 1)
        m = 1; /* only after a failed callback: the call fails at its agreement */
    for (k = 0; k < gc; k++) {
        mean[k] = sum[k] / (double)m;
        muf[k] = (float)mean[k];
    }
    local_sums(l, d, x, muf, sum);
    bti_coll_sum_f64(bn->coll, sum, gc, "batchnorm variances");
    for (k = 0; k < gc; k++) {
        const double dm = mean[k] - (double)muf[k];
        double v = sum[k] / (double)m - dm * dm; /* E[(x - a)^2] = var + (mu - a)^2 */
        if (v < 0.0)
            v = 0.0;
        var[k] = v;
        invstd[k] = 1.0 / sqrt(v + bn->eps);
    }
    return m;
}

/* dx over planes from the global sums: the one-process backward's last loop. */
static void dx_planes(const bt_layer *l, const struct bn_dims *d, const float *x, const float *dy,
                      const float *mk, float *dx, const double *mean, const double *invstd,
                      const double *sdy, const double *sdx, int64_t m)
{
    const float *w = bn_weight(l);
    int64_t k;
#pragma omp parallel for num_threads(l->threads) schedule(static) if (d->n * d->c * d->s > BTI_PAR_MIN)
    for (k = 0; k < d->n * d->c; k++) {
        const int64_t n = k / d->c, c = k % d->c, j = (n / d->ns) * d->c + c, off = k * d->s;
        const double is = invstd[j];
        dx_run(x + off, dy + off, mk ? mk + off : NULL, dx + off, d->s, (float)mean[j],
               (float)(is * (w ? w[c] : 1.0f)), (float)(sdy[j] / (double)m),
               (float)(sdx[j] / (double)m * is));
    }
}

/* The weight and bias gradients from this rank's sums (the model sums them over ranks). */
static void add_param_grads(bt_layer *l, const struct bn_dims *d, const double *sdy,
                            const double *sdx)
{
    float *dw = l->grad[0]->data, *db = l->grad[1]->data;
    int64_t c, g;
    for (c = 0; c < d->c; c++) {
        double a = 0.0, bsum = 0.0;
        for (g = 0; g < d->g; g++) {
            a += sdy[g * d->c + c];
            bsum += sdx[g * d->c + c];
        }
        db[c] += (float)a;
        dw[c] += (float)bsum;
    }
}

static void sync_backward(bt_layer *l, const struct bn_dims *d, const float *x, const float *dy,
                          const float *mk, float *dx, const double *mean, const double *invstd)
{
    struct batchnorm *bn = BTI_LAYER_OF(struct batchnorm, l);
    const int64_t gc = d->g * d->c;
    double *sdy = (double *)l->scratch->p, *sdx = sdy + gc;
    struct bn_dims dg = *d;
    if (d->s == 1)
        sums_rows(d, x, dy, mk, mean, invstd, sdy, sdx, l->threads);
    else
        bwd_planes(l, d, x, dy, mk, NULL, 1, mean, invstd, sdy, sdx);
    if (bn->affine)
        add_param_grads(l, d, sdy, sdx);
    bti_coll_sum_f64(bn->coll, sdy, 2 * gc, "batchnorm gradient sums");
    if (!dx)
        return;
    dg.m = bn->global_m;
    if (d->s == 1)
        dx_rows(l, &dg, x, dy, mk, dx, 1, mean, invstd, sdy, sdx);
    else
        dx_planes(l, d, x, dy, mk, dx, mean, invstd, sdy, sdx, dg.m);
}

void bti_layer_batchnorm_set_coll(bt_layer *l, struct bti_coll *k)
{
    BTI_LAYER_OF(struct batchnorm, l)->coll = k;
}

void bti_layer_batchnorm_commit(bt_layer *l, int apply)
{
    struct batchnorm *bn = BTI_LAYER_OF(struct batchnorm, l);
    const double m = (double)bn->global_m;
    const double *mean = (const double *)bn->saved.p;
    if (!bn->pending)
        return;
    bn->pending = 0;
    if (apply)
        update_running(l, l->groups, mean, mean + 2 * (int64_t)l->groups * bn->channels,
                       m > 1.0 ? m / (m - 1.0) : 1.0);
}

/* ---- forward / backward ------------------------------------------------------------- */

/* also the fused forward of bti_layer_forward_fused */
static void bn_forward_fused(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training,
                             int groups, const bt_tensor *skipt, int relu)
{
    struct bn_dims d;
    double *mean, *invstd, *var;
    const struct batchnorm *bn = bn_of(l);
    const int ri = bn->affine ? 2 : 0; /* index of running_mean */
    const float *rv = l->value[ri + 1]->data, *rm = l->value[ri]->data;
    const float *x = xt->data, *skip = skipt ? skipt->data : NULL;
    float *y = yt->data;
    int64_t i, g, c;
    bn_dims_of(l, xt->shape, xt->ndim, groups, &d);
    mean = (double *)bn->saved.p;
    invstd = mean + d.g * d.c;
    var = invstd + d.g * d.c;

    if (training && bn->coll) {
        struct batchnorm *w = BTI_LAYER_OF(struct batchnorm, l); /* bn, writable */
        w->global_m = sync_stats(l, &d, x, mean, invstd, var);
        w->pending = 1; /* running statistics once the model's call has succeeded */
        fwd_apply(l, &d, x, y, skip, relu, mean, invstd);
        return;
    }
    if (training) {
        if (d.s == 1) {
            stats_rows(&d, x, mean, var, l->threads);
            for (i = 0; i < d.g * d.c; i++)
                invstd[i] = 1.0 / sqrt(var[i] + bn->eps);
            fwd_rows_apply(l, &d, x, y, skip, relu, mean, invstd);
        } else {
            fwd_planes_train(l, &d, x, y, skip, relu, mean, invstd, var);
        }
        update_running(l, d.g, mean, var, (double)d.m / (double)(d.m - 1));
        return;
    }
    for (g = 0; g < d.g; g++) {
        for (c = 0; c < d.c; c++) {
            mean[g * d.c + c] = rm[c];
            var[g * d.c + c] = rv[c];
            invstd[g * d.c + c] = 1.0 / sqrt((double)rv[c] + bn->eps);
        }
    }
    fwd_apply(l, &d, x, y, skip, relu, mean, invstd);
}

static void bn_forward(bt_layer *l, const bt_tensor *xt, bt_tensor *yt, int training, int groups)
{
    bn_forward_fused(l, xt, yt, training, groups, NULL, 0);
}

/* also the masked backward of bti_layer_backward_masked */
static void bn_backward_masked(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt,
                               const bt_tensor *maskt)
{
    struct bn_dims d;
    const double *mean, *invstd;
    double *sdy, *sdx;
    const float *x = l->x->data, *dy = dyt->data, *mk = maskt ? maskt->data : NULL;
    float *dx = dxt ? dxt->data : NULL;
    bn_dims_of(l, l->in_shape, l->in_ndim, l->groups, &d);
    mean = (const double *)bn_of(l)->saved.p;
    invstd = mean + d.g * d.c;
    sdy = (double *)l->scratch->p;
    sdx = sdy + d.g * d.c;

    if (l->training && bn_of(l)->coll) {
        sync_backward(l, &d, x, dy, mk, dx, mean, invstd);
        return;
    }
    if (d.s == 1) {
        sums_rows(&d, x, dy, mk, mean, invstd, sdy, sdx, l->threads);
        if (dx)
            dx_rows(l, &d, x, dy, mk, dx, l->training, mean, invstd, sdy, sdx);
    } else {
        bwd_planes(l, &d, x, dy, mk, dx, l->training, mean, invstd, sdy, sdx);
    }
    if (bn_of(l)->affine)
        add_param_grads(l, &d, sdy, sdx);
}

static void bn_backward(bt_layer *l, const bt_tensor *dyt, bt_tensor *dxt)
{
    bn_backward_masked(l, dyt, dxt, NULL);
}

void bti_layer_batchnorm_output(bt_layer *l, bt_tensor *yt, int relu)
{
    struct bn_dims d;
    const double *mean;
    bn_dims_of(l, l->in_shape, l->in_ndim, l->groups, &d);
    mean = (const double *)bn_of(l)->saved.p;
    /* the forward's own coefficients from the same doubles and the same norm_run:
     * the same bits as the training forward wrote */
    fwd_apply(l, &d, l->x->data, yt->data, NULL, relu ? 1 : 0, mean, mean + d.g * d.c);
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

static void bn_release(bt_layer *l)
{
    bti_buffer_release(&BTI_LAYER_OF(struct batchnorm, l)->saved);
}

static const struct bti_layer_ops batchnorm_ops = {
    .name = "batchnorm",
    .shape = bn_shape,
    .prepare = bn_prepare,
    .forward = bn_forward,
    .backward = bn_backward,
    .reset = bn_reset,
    .release = bn_release,
    .forward_fused = bn_forward_fused,
    .backward_masked = bn_backward_masked,
};

bt_status bti_layer_batchnorm_new(bt_layer **out, int channels, double eps, double momentum,
                                  int affine, const char *fn)
{
    int64_t cshape[1] = {channels}, one[1] = {1};
    struct batchnorm *bn;
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
    st = bti_layer_alloc(&l, sizeof(struct batchnorm), &batchnorm_ops, BTI_LAYER_BATCHNORM, fn);
    if (st != BT_OK)
        return st;
    bn = BTI_LAYER_OF(struct batchnorm, l);
    bn->channels = channels;
    bn->eps = eps;
    bn->momentum = momentum;
    bn->affine = affine;
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

BT_API bt_status bt_layer_batchnorm_create(bt_layer **out, int32_t channels, double eps,
                                           double momentum, int32_t affine)
{
    static const char fn[] = "bt_layer_batchnorm_create";
    bt_layer *l;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    *out = NULL;
    st = bti_layer_batchnorm_new(&l, channels, eps, momentum, affine, fn);
    return st == BT_OK ? bti_layer_publish(out, l, fn) : st;
}
