/*
 * optim.c - bt_optim: LARS (the official Barlow Twins code, or solo-learn's
 * variant), SGD and AdamW over a list of borrowed (value, gradient) tensor
 * pairs, with the state exposed (optim.h) so that checkpoints resume exactly.
 *
 * A step runs in two passes so that a refused step changes nothing:
 *   1. check every tensor is still alive and sum, per tensor, the squares the
 *      update needs (||g||, and for LARS ||p|| and ||g + wd p||) in double,
 *      in fixed blocks; a non-finite sum means a non-finite gradient;
 *   2. update every tensor element-wise.
 * The per-element arithmetic is float32 in the order PyTorch uses, so the
 * results follow torch.optim to rounding.
 */
#include "common/cpu.h"
#include "optim/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_LARS, KIND_SGD, KIND_ADAMW };

/* Norms are sums of per-block partial sums added in block order: the result
 * is the same for any thread count. */
#define BLOCK ((int64_t)8192)
/* Loops over fewer elements than this stay on one thread. */
#define PAR_MIN ((int64_t)32768)
#define NAME_CAP 200

struct param {
    bt_tensor *value, *grad; /* borrowed */
    const float *vdata, *gdata; /* their data, compared without dereferencing the handles */
    int32_t ndim;
    int64_t shape[BT_TENSOR_MAX_DIMS];
    int64_t numel;
    int group;   /* 0: >= 2 dims, 1: 1 dim */
    int decayed; /* weight decay and LARS adaptation apply */
    char *name;
    bt_tensor *state[2]; /* lars/sgd: momentum; adamw: exp_avg, exp_avg_sq */
    char *state_name[2];
    /* filled by the check pass of a step */
    int adapt;   /* LARS: multiply the update by coef (and add wd p) */
    double coef; /* LARS trust factor q */
};

struct bt_optim {
    int kind, solo, nesterov, cosine, threads;
    int level; /* CPU level of the update loops (common/cpu.h) */
    int exclude; /* optim.exclude_bias_bn */
    double lr[2], batch_scale, momentum, wd, eta, grad_scale, final_ratio, beta2, eps;
    int64_t warmup, total, step;
    struct param *p;
    int32_t n, cap;
    int32_t nstate; /* state tensors per parameter */
    struct bti_buffer partial; /* doubles: two per block of the largest tensor (norms) */
};

static const char *const kind_names[] = {"lars", "sgd", "adamw"};

/* ---- creation ---------------------------------------------------------- */

static bt_status read_options(bt_optim *o, const bt_config *cfg)
{
    const char *kind, *sched, *variant;
    int64_t exclude, batch, nesterov;
    bt_status st;
    if ((st = bti_config_text(cfg, "optim.kind", &kind)) != BT_OK ||
        (st = bti_config_text(cfg, "optim.schedule", &sched)) != BT_OK ||
        (st = bti_config_text(cfg, "optim.lars_variant", &variant)) != BT_OK ||
        (st = bti_config_real(cfg, "optim.lr", &o->lr[0])) != BT_OK ||
        (st = bti_config_real(cfg, "optim.lr_bias", &o->lr[1])) != BT_OK ||
        (st = bti_config_real(cfg, "optim.momentum", &o->momentum)) != BT_OK ||
        (st = bti_config_real(cfg, "optim.weight_decay", &o->wd)) != BT_OK ||
        (st = bti_config_real(cfg, "optim.eta", &o->eta)) != BT_OK ||
        (st = bti_config_int(cfg, "optim.exclude_bias_bn", &exclude)) != BT_OK ||
        (st = bti_config_int(cfg, "optim.batch_size", &batch)) != BT_OK ||
        (st = bti_config_int(cfg, "optim.warmup_steps", &o->warmup)) != BT_OK ||
        (st = bti_config_int(cfg, "optim.total_steps", &o->total)) != BT_OK ||
        (st = bti_config_real(cfg, "optim.final_lr_ratio", &o->final_ratio)) != BT_OK ||
        (st = bti_config_real(cfg, "optim.grad_scale", &o->grad_scale)) != BT_OK ||
        (st = bti_config_int(cfg, "optim.nesterov", &nesterov)) != BT_OK ||
        (st = bti_config_real(cfg, "optim.beta2", &o->beta2)) != BT_OK ||
        (st = bti_config_real(cfg, "optim.adam_eps", &o->eps)) != BT_OK)
        return st;
    if (strcmp(kind, "sgd") == 0)
        o->kind = KIND_SGD;
    else if (strcmp(kind, "adamw") == 0)
        o->kind = KIND_ADAMW;
    else
        o->kind = KIND_LARS;
    o->cosine = strcmp(sched, "cosine") == 0;
    o->solo = strcmp(variant, "solo") == 0;
    o->exclude = exclude != 0;
    o->nesterov = nesterov != 0;
    o->batch_scale = (double)batch / 256.0;
    o->nstate = o->kind == KIND_ADAMW ? 2 : 1;

    if (o->nesterov && o->kind != KIND_SGD)
        return bti_fail(BT_E_INVALID_ARG,
                        "bt_optim_create: optim.nesterov is 1 but optim.kind is %s; Nesterov "
                        "momentum applies to sgd only", kind);
    if (o->nesterov && o->momentum == 0.0)
        return bti_fail(BT_E_INVALID_ARG,
                        "bt_optim_create: optim.nesterov is 1 but optim.momentum is 0; Nesterov "
                        "momentum needs a momentum > 0");
    if (o->cosine && o->total > 0 && o->total <= o->warmup)
        return bti_fail(BT_E_INVALID_ARG,
                        "bt_optim_create: optim.total_steps (%lld) must be larger than "
                        "optim.warmup_steps (%lld) for the cosine schedule (or 0 for no decay)",
                        (long long)o->total, (long long)o->warmup);
    return BT_OK;
}

BT_API bt_status bt_optim_create(bt_optim **out, const bt_config *cfg)
{
    bt_config *own = NULL;
    bt_optim *o;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "bt_optim_create: out is NULL");
    *out = NULL;
    if (cfg) {
        st = bti_check(cfg, BTI_KIND_CONFIG, "bt_optim_create", "cfg");
        if (st != BT_OK)
            return st;
    } else {
        st = bt_config_create(&own);
        if (st != BT_OK)
            return st;
        cfg = own;
    }
    o = bti_calloc(1, sizeof *o);
    if (!o) {
        bt_config_free(own);
        return bti_fail(BT_E_NOMEM, "bt_optim_create: out of memory");
    }
    st = read_options(o, cfg);
    if (st == BT_OK)
        st = bti_cpu_resolve(cfg, &o->level, "bt_optim_create");
    if (st == BT_OK) {
        o->threads = bti_threads_resolve(cfg);
        st = bti_handle_add(o, BTI_KIND_OPTIM);
    }
    bt_config_free(own);
    if (st != BT_OK) {
        bti_free(o);
        return st;
    }
    *out = o;
    return BT_OK;
}

static void param_release(struct param *p)
{
    int k;
    for (k = 0; k < 2; k++) {
        bti_tensor_destroy(p->state[k]);
        bti_free(p->state_name[k]);
    }
    bti_free(p->name);
}

BT_API void bt_optim_free(bt_optim *o)
{
    int32_t i;
    if (!o || bti_check(o, BTI_KIND_OPTIM, "bt_optim_free", "o") != BT_OK)
        return;
    bti_handle_remove(o);
    for (i = 0; i < o->n; i++)
        param_release(&o->p[i]);
    bti_free(o->p);
    bti_buffer_release(&o->partial);
    bti_free(o);
}

/* ---- adding tensors ---------------------------------------------------- */

static char *dup_printf(const char *fmt, const char *a, const char *b)
{
    size_t len = strlen(fmt) + strlen(a) + strlen(b) + 1;
    char *s = bti_malloc(len);
    if (s)
        snprintf(s, len, fmt, a, b);
    return s;
}

static bt_status check_name(const bt_optim *o, const char *name)
{
    size_t len = strlen(name), i;
    int32_t k;
    if (len == 0 || len > NAME_CAP)
        return bti_fail(BT_E_INVALID_ARG,
                        "bt_optim_add_tensor: name has %zu characters; it must have 1 to %d",
                        len, NAME_CAP);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return bti_fail(BT_E_INVALID_ARG,
                            "bt_optim_add_tensor: name has character %u at %zu; only printable "
                            "ASCII other than '\"' and '\\' is allowed", (unsigned)c, i);
    }
    for (k = 0; k < o->n; k++)
        if (strcmp(o->p[k].name, name) == 0)
            return bti_fail(BT_E_INVALID_ARG,
                            "bt_optim_add_tensor: name '%s' is already used by tensor %d", name,
                            (int)k);
    return BT_OK;
}

BT_API bt_status bt_optim_add_tensor(bt_optim *o, bt_tensor *value, bt_tensor *grad,
                                     const char *name)
{
    static const char *const suffix[2][2] = {{"momentum", ""}, {"exp_avg", "exp_avg_sq"}};
    struct param np;
    char auto_name[32], sv[96], sg[96];
    int64_t blocks;
    int32_t k;
    int s;
    bt_status st;

    if ((st = bti_check(o, BTI_KIND_OPTIM, "bt_optim_add_tensor", "o")) != BT_OK ||
        (st = bti_check(value, BTI_KIND_TENSOR, "bt_optim_add_tensor", "value")) != BT_OK ||
        (st = bti_check(grad, BTI_KIND_TENSOR, "bt_optim_add_tensor", "grad")) != BT_OK)
        return st;
    if (o->step > 0)
        return bti_fail(BT_E_STATE,
                        "bt_optim_add_tensor: the optimizer has taken %lld steps; add every "
                        "tensor before the first step", (long long)o->step);
    if (value == grad || value->data == grad->data)
        return bti_fail(BT_E_MISUSE, "bt_optim_add_tensor: value and grad are the same tensor");
    if (!bti_tensor_has_shape(grad, value->ndim, value->shape))
        return bti_fail(BT_E_SHAPE, "bt_optim_add_tensor: grad has shape %s, value has %s",
                        bti_shape_str(grad, sg, sizeof sg), bti_shape_str(value, sv, sizeof sv));
    for (k = 0; k < o->n; k++)
        if (o->p[k].value == value || o->p[k].grad == grad || o->p[k].vdata == value->data ||
            o->p[k].gdata == grad->data || o->p[k].vdata == grad->data ||
            o->p[k].gdata == value->data)
            return bti_fail(BT_E_INVALID_ARG,
                            "bt_optim_add_tensor: value or grad is already added (as '%s')",
                            o->p[k].name);
    if (!name) {
        snprintf(auto_name, sizeof auto_name, "param.%d", (int)o->n);
        name = auto_name;
    }
    if ((st = check_name(o, name)) != BT_OK)
        return st;

    /* Allocate everything, then commit: a failure leaves o as it was. */
    memset(&np, 0, sizeof np);
    np.value = value;
    np.grad = grad;
    np.vdata = value->data;
    np.gdata = grad->data;
    np.ndim = value->ndim;
    memcpy(np.shape, value->shape, sizeof np.shape);
    np.numel = value->numel;
    np.group = value->ndim >= 2 ? 0 : 1;
    np.decayed = np.group == 0 || !o->exclude;
    np.name = dup_printf("%s%s", name, "");
    st = np.name ? BT_OK : BT_E_NOMEM;
    for (s = 0; s < o->nstate && st == BT_OK; s++) {
        np.state_name[s] = dup_printf("optim.%s.%s", name, suffix[o->kind == KIND_ADAMW][s]);
        if (!np.state_name[s])
            st = BT_E_NOMEM;
        else
            st = bti_tensor_new_owned(&np.state[s], value->ndim, value->shape);
    }
    if (st == BT_OK && o->n == o->cap) {
        int32_t cap = o->cap ? 2 * o->cap : 16;
        struct param *grown = bti_realloc(o->p, (size_t)cap * sizeof *grown);
        if (!grown)
            st = BT_E_NOMEM;
        else {
            o->p = grown;
            o->cap = cap;
        }
    }
    blocks = (np.numel + BLOCK - 1) / BLOCK;
    if (st == BT_OK)
        st = bti_buffer_reserve(&o->partial, (size_t)blocks * 2, sizeof(double),
                                "bt_optim_add_tensor");
    if (st != BT_OK) {
        param_release(&np);
        return bti_fail(BT_E_NOMEM, "bt_optim_add_tensor: out of memory adding '%s' (%lld floats)",
                        name, (long long)value->numel);
    }
    o->p[o->n++] = np;
    return BT_OK;
}

/* ---- the check pass ---------------------------------------------------- */

/* Interleaved accumulators per block: independent chains the compiler turns
 * into vectors. Each sums its own elements in order and they are added in a
 * fixed tree, so every clone and thread count gives the same bits. */
#define LANES 16

/* One block's Σp² (when WANT_P) and Σu², u = g·scale (+ wd·p when DECAY). */
static BTI_INLINE void block_sums(const int WANT_P, const int DECAY, const float *p, const float *g,
                                  int64_t n, float scale, float wd, double *sp_out, double *su_out)
{
    double sp[LANES] = {0.0}, su[LANES] = {0.0};
    int64_t i;
    int k;
    for (i = 0; i + LANES <= n; i += LANES)
        for (k = 0; k < LANES; k++) {
            float u = g[i + k] * scale;
            if (DECAY)
                u = u + wd * p[i + k];
            su[k] += (double)u * (double)u;
            if (WANT_P)
                sp[k] += (double)p[i + k] * (double)p[i + k];
        }
    for (k = 0; i < n; i++, k++) {
        float u = g[i] * scale;
        if (DECAY)
            u = u + wd * p[i];
        su[k] += (double)u * (double)u;
        if (WANT_P)
            sp[k] += (double)p[i] * (double)p[i];
    }
    for (k = LANES / 2; k > 0; k /= 2) {
        int j;
        for (j = 0; j < k; j++) {
            sp[j] += sp[j + k];
            su[j] += su[j + k];
        }
    }
    *sp_out = sp[0];
    *su_out = su[0];
}

static BTI_INLINE void block_sums_any_body(int want_p, const float *p, const float *g, int64_t n,
                                      float scale, float wd, double *sp, double *su)
{
    if (want_p && wd != 0.0f)
        block_sums(1, 1, p, g, n, scale, wd, sp, su);
    else if (want_p)
        block_sums(1, 0, p, g, n, scale, wd, sp, su);
    else if (wd != 0.0f)
        block_sums(0, 1, p, g, n, scale, wd, sp, su);
    else
        block_sums(0, 0, p, g, n, scale, wd, sp, su);
}
BTI_PER_LEVEL(block_sums_any,
              (int want_p, const float *p, const float *g, int64_t n, float scale, float wd,
               double *sp, double *su),
              (want_p, p, g, n, scale, wd, sp, su))

/* Σp² into *pp (when pp) and Σu² into *uu, u = g·scale + wd·p (wd may be 0). */
static void sums(bt_optim *o, const float *p, const float *g, int64_t n, float scale, float wd,
                 double *pp, double *uu)
{
    int64_t nb = (n + BLOCK - 1) / BLOCK, b;
    double *part = o->partial.p, a = 0.0, c = 0.0;
    int want_p = pp != NULL;
#pragma omp parallel for num_threads(o->threads) schedule(static) if (n >= PAR_MIN)
    for (b = 0; b < nb; b++) {
        const int64_t lo = b * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
        block_sums_any(o->level, want_p, p + lo, g + lo, hi - lo, scale, wd, &part[2 * b],
                       &part[2 * b + 1]);
    }
    for (b = 0; b < nb; b++) {
        a += part[2 * b];
        c += part[2 * b + 1];
    }
    if (pp)
        *pp = a;
    *uu = c;
}

/* 1 when every g·scale is finite: an OR over exponent bits, which vectorises
 * (SGD and AdamW need no norms). */
static int all_finite(const bt_optim *o, const float *g, int64_t n, float scale)
{
    int64_t i;
    uint32_t bad = 0;
#pragma omp parallel for simd num_threads(o->threads) schedule(static) reduction(|:bad) \
    if (n >= PAR_MIN)
    for (i = 0; i < n; i++) {
        float u = g[i] * scale;
        uint32_t bits;
        memcpy(&bits, &u, sizeof bits);
        bad |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}

/* Liveness, finiteness and the LARS factors; writes only p->adapt/p->coef. */
static bt_status check_pass(bt_optim *o, const double lr[2])
{
    const float scale = (float)o->grad_scale;
    int32_t k;
    for (k = 0; k < o->n; k++) {
        struct param *p = &o->p[k];
        const float *pv, *gv;
        double pp = 0.0, uu = 0.0;
        int lars_adapt = o->kind == KIND_LARS && p->decayed;
        if (!bti_handle_is(p->value, BTI_KIND_TENSOR) || !bti_handle_is(p->grad, BTI_KIND_TENSOR))
            return bti_fail(BT_E_MISUSE,
                            "bt_optim_step: the value or grad tensor of '%s' was freed; added "
                            "tensors must outlive the optimizer", p->name);
        if (!bti_tensor_has_shape(p->value, p->ndim, p->shape) ||
            !bti_tensor_has_shape(p->grad, p->ndim, p->shape))
            return bti_fail(BT_E_MISUSE,
                            "bt_optim_step: the value or grad tensor of '%s' no longer has the "
                            "shape it was added with", p->name);
        pv = p->value->data;
        gv = p->grad->data;
        /* Official LARS norms the decayed update, solo ||g||; others only check. */
        if (o->kind == KIND_LARS)
            sums(o, pv, gv, p->numel, scale, lars_adapt && !o->solo ? (float)o->wd : 0.0f,
                 lars_adapt ? &pp : NULL, &uu);
        else
            uu = all_finite(o, gv, p->numel, scale) ? 0.0 : INFINITY;
        if (!isfinite(pp))
            return bti_fail(BT_E_NUMERIC, "bt_optim_step: parameter '%s' holds a non-finite value",
                            p->name);
        if (!isfinite(uu))
            return bti_fail(BT_E_NUMERIC,
                            "bt_optim_step: the gradient of '%s' holds a non-finite value (after "
                            "optim.grad_scale %g); nothing was updated", p->name, o->grad_scale);
        p->adapt = 0;
        p->coef = 1.0;
        if (!lars_adapt)
            continue;
        if (!o->solo) {
            double pn = sqrt(pp), un = sqrt(uu);
            p->adapt = 1;
            if (pn > 0.0 && un > 0.0)
                p->coef = o->eta * pn / un;
        } else {
            double pn = sqrt(pp), gn = sqrt(uu);
            if (pn > 0.0 && gn > 0.0) {
                double lrg = lr[p->group], t = pn / (gn + pn * o->wd + 1e-8) * o->eta;
                p->adapt = 1;
                p->coef = lrg > 0.0 ? fmin(t / lrg, 1.0) : 1.0;
            }
        }
    }
    return BT_OK;
}

/* ---- the update kernels ------------------------------------------------ */

static void lars_update(const bt_optim *o, struct param *p, float lr)
{
    float *v = p->value->data, *mu = p->state[0]->data;
    const float *g = p->grad->data;
    const float scale = (float)o->grad_scale, m = (float)o->momentum;
    const float wd = p->adapt ? (float)o->wd : 0.0f, q = (float)p->coef;
    const int adapt = p->adapt;
    int64_t i, n = p->numel;
#pragma omp parallel for num_threads(o->threads) schedule(static) if (n >= PAR_MIN)
    for (i = 0; i < n; i++) {
        float u = g[i] * scale;
        if (adapt)
            u = (u + wd * v[i]) * q;
        mu[i] = mu[i] * m + u;
        v[i] = v[i] - lr * mu[i];
    }
}

static void sgd_update(const bt_optim *o, struct param *p, float lr)
{
    float *v = p->value->data, *mu = p->state[0]->data;
    const float *g = p->grad->data;
    const float scale = (float)o->grad_scale, m = (float)o->momentum;
    const float wd = p->decayed ? (float)o->wd : 0.0f;
    const float nest = o->nesterov ? 1.0f : 0.0f;
    int64_t i, n = p->numel;
    /* Branch-free bodies so the loops vectorise; torch skips the decay when
     * wd is 0, hence two loops. nest*d is exact (0 or d), so d + m*mu (with
     * Nesterov) and mu (without) are computed exactly as torch does. */
    if (wd != 0.0f) {
#pragma omp parallel for simd num_threads(o->threads) schedule(static) if (n >= PAR_MIN)
        for (i = 0; i < n; i++) {
            float d = g[i] * scale + wd * v[i], b = mu[i] * m + d;
            mu[i] = b;
            v[i] = v[i] - lr * (nest != 0.0f ? d + m * b : b);
        }
    } else {
#pragma omp parallel for simd num_threads(o->threads) schedule(static) if (n >= PAR_MIN)
        for (i = 0; i < n; i++) {
            float d = g[i] * scale, b = mu[i] * m + d;
            mu[i] = b;
            v[i] = v[i] - lr * (nest != 0.0f ? d + m * b : b);
        }
    }
}

static void adamw_update(const bt_optim *o, struct param *p, double lr_d, int64_t t)
{
    float *v = p->value->data, *m1 = p->state[0]->data, *m2 = p->state[1]->data;
    const float *g = p->grad->data;
    const float scale = (float)o->grad_scale;
    const float b1 = (float)o->momentum, b2 = (float)o->beta2;
    const float c1 = (float)(1.0 - o->momentum), c2 = (float)(1.0 - o->beta2);
    const int decay = p->decayed && o->wd != 0.0;
    const float shrink = (float)(1.0 - lr_d * o->wd);
    /* As torch.optim.AdamW: the corrections in double, the rest in float. */
    const float step_size = (float)(lr_d / (1.0 - pow(o->momentum, (double)t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, (double)t));
    const float eps = (float)o->eps;
    int64_t i, n = p->numel;
#pragma omp parallel for num_threads(o->threads) schedule(static) if (n >= PAR_MIN)
    for (i = 0; i < n; i++) {
        float gi = g[i] * scale, denom;
        if (decay)
            v[i] = v[i] * shrink;
        m1[i] = m1[i] * b1 + c1 * gi;
        m2[i] = m2[i] * b2 + c2 * gi * gi;
        denom = sqrtf(m2[i]) / bc2_sqrt + eps;
        v[i] = v[i] - step_size * (m1[i] / denom);
    }
}

BT_API bt_status bt_optim_step(bt_optim *o)
{
    double lr[2];
    int32_t k;
    bt_status st = bti_check(o, BTI_KIND_OPTIM, "bt_optim_step", "o");
    if (st != BT_OK)
        return st;
    if (o->n == 0)
        return bti_fail(BT_E_STATE, "bt_optim_step: no tensors were added (bt_optim_add_tensor)");
    for (k = 0; k < 2; k++)
        lr[k] = o->lr[k] * bti_optim_schedule(o->batch_scale, o->step, o->warmup, o->total,
                                              o->cosine, o->final_ratio);
    st = check_pass(o, lr);
    if (st != BT_OK)
        return st;
    for (k = 0; k < o->n; k++) {
        struct param *p = &o->p[k];
        double lrg = lr[p->group];
        switch (o->kind) {
        case KIND_LARS: lars_update(o, p, (float)lrg); break;
        case KIND_SGD: sgd_update(o, p, (float)lrg); break;
        default: adamw_update(o, p, lrg, o->step + 1); break;
        }
    }
    o->step++;
    return BT_OK;
}

/* ---- queries and state ------------------------------------------------- */

BT_API int64_t bt_optim_step_count(const bt_optim *o)
{
    if (bti_check(o, BTI_KIND_OPTIM, "bt_optim_step_count", "o") != BT_OK)
        return -1;
    return o->step;
}

BT_API double bt_optim_lr(const bt_optim *o, int32_t group)
{
    if (bti_check(o, BTI_KIND_OPTIM, "bt_optim_lr", "o") != BT_OK)
        return -1.0;
    if (group != 0 && group != 1) {
        bti_fail(BT_E_INVALID_ARG, "bt_optim_lr: group is %d; it must be 0 (weights) or 1 "
                 "(biases and BatchNorm)", (int)group);
        return -1.0;
    }
    return o->lr[group] * bti_optim_schedule(o->batch_scale, o->step, o->warmup, o->total,
                                             o->cosine, o->final_ratio);
}

int32_t bti_optim_tensor_count(const bt_optim *o)
{
    if (bti_check(o, BTI_KIND_OPTIM, "bti_optim_tensor_count", "o") != BT_OK)
        return -1;
    return o->n;
}

void bti_optim_truncate(bt_optim *o, int32_t keep)
{
    if (bti_check(o, BTI_KIND_OPTIM, "bti_optim_truncate", "o") != BT_OK || keep < 0)
        return;
    while (o->n > keep)
        param_release(&o->p[--o->n]);
}

int32_t bti_optim_state_count(const bt_optim *o)
{
    if (bti_check(o, BTI_KIND_OPTIM, "bti_optim_state_count", "o") != BT_OK)
        return -1;
    return o->n * o->nstate;
}

bt_status bti_optim_state(bt_optim *o, int32_t i, const char **name, bt_tensor **t)
{
    bt_status st = bti_check(o, BTI_KIND_OPTIM, "bti_optim_state", "o");
    struct param *p;
    if (st != BT_OK)
        return st;
    if (i < 0 || i >= o->n * o->nstate)
        return bti_fail(BT_E_INVALID_ARG, "bti_optim_state: index %d is not in [0, %d)", (int)i,
                        (int)(o->n * o->nstate));
    p = &o->p[i / o->nstate];
    if (name)
        *name = p->state_name[i % o->nstate];
    if (t)
        *t = p->state[i % o->nstate];
    return BT_OK;
}

bt_status bti_optim_set_step(bt_optim *o, int64_t step)
{
    bt_status st = bti_check(o, BTI_KIND_OPTIM, "bti_optim_set_step", "o");
    if (st != BT_OK)
        return st;
    if (step < 0)
        return bti_fail(BT_E_INVALID_ARG, "bti_optim_set_step: step is %lld; it must be >= 0",
                        (long long)step);
    o->step = step;
    return BT_OK;
}

const char *bti_optim_kind_name(const bt_optim *o)
{
    if (bti_check(o, BTI_KIND_OPTIM, "bti_optim_kind_name", "o") != BT_OK)
        return NULL;
    return kind_names[o->kind];
}
