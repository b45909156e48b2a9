/* check_optim.c - LARS (official, solo), SGD, AdamW and the schedule against
 * PyTorch golden data; exact resume through the exported state; refused steps
 * change nothing; misuse. */
#include "barlow.h"
#include "golden.h"
#include "optim/optim.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NT 4 /* tensors of the golden cases */
#define NSTEPS 5

static const char *const gnames[NT] = {"w2", "w4", "b", "z2"};

static bt_config *config_of(const char *const *kv)
{
    bt_config *c;
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    for (; kv && kv[0]; kv += 2)
        ck_assert_msg(bt_config_set(c, kv[0], kv[1]) == BT_OK, "%s=%s: %s", kv[0], kv[1],
                      bt_last_error());
    return c;
}

static bt_optim *optim_of(const char *const *kv)
{
    bt_config *c = config_of(kv);
    bt_optim *o = NULL;
    ck_assert_msg(bt_optim_create(&o, c) == BT_OK, "%s", bt_last_error());
    bt_config_free(c);
    return o;
}

static bt_tensor *tensor_from(int ndim, const int64_t *shape, const float *data)
{
    bt_tensor *t;
    ck_assert_int_eq(bt_tensor_create(&t, ndim, shape), BT_OK);
    if (data)
        memcpy(bt_tensor_data(t), data, (size_t)bt_tensor_numel(t) * sizeof(float));
    return t;
}

static void assert_rel(double got, double want, double tol, const char *what)
{
    double err = fabs(got - want) / (fabs(want) > 1e-30 ? fabs(want) : 1e-30);
    ck_assert_msg(want == got || err <= tol, "%s: got %.9g want %.9g (rel %.3g)", what, got, want,
                  err);
}

/* ---- golden: five steps of each optimizer --------------------------------- */

struct gcase {
    const char *name;
    const char *kv[40];
};

#define SCHED "optim.batch_size", "512", "optim.warmup_steps", "2", "optim.total_steps", "5", \
              "optim.final_lr_ratio", "0.01", "threads", "2"

static const struct gcase gcases[] = {
    {"lars", {"optim.kind", "lars", "optim.lr", "0.2", "optim.lr_bias", "0.05",
              "optim.weight_decay", "0.01", "optim.momentum", "0.9", "optim.eta", "0.02",
              "optim.exclude_bias_bn", "1", SCHED, NULL}},
    {"lars_noexcl", {"optim.kind", "lars", "optim.lr", "0.2", "optim.lr_bias", "0.05",
                     "optim.weight_decay", "0.01", "optim.momentum", "0.9", "optim.eta", "0.02",
                     "optim.exclude_bias_bn", "0", SCHED, NULL}},
    {"lars_solo", {"optim.kind", "lars", "optim.lars_variant", "solo", "optim.lr", "0.2",
                   "optim.lr_bias", "0.05", "optim.weight_decay", "0.01", "optim.momentum", "0.9",
                   "optim.eta", "0.02", "optim.exclude_bias_bn", "1", SCHED, NULL}},
    {"sgd", {"optim.kind", "sgd", "optim.lr", "0.05", "optim.lr_bias", "0.02",
             "optim.weight_decay", "0.01", "optim.momentum", "0.9", SCHED, NULL}},
    {"sgd_nesterov", {"optim.kind", "sgd", "optim.nesterov", "1", "optim.lr", "0.05",
                      "optim.lr_bias", "0.02", "optim.weight_decay", "0.01", "optim.momentum",
                      "0.9", SCHED, NULL}},
    {"adamw", {"optim.kind", "adamw", "optim.lr", "0.01", "optim.lr_bias", "0.004",
               "optim.weight_decay", "0.05", "optim.momentum", "0.9", "optim.beta2", "0.99",
               "optim.adam_eps", "1e-8", SCHED, NULL}},
};

START_TEST(golden_five_steps)
{
    const struct gcase *gc = &gcases[_i];
    golden *g = golden_load("optim.bin");
    bt_tensor *val[NT], *grd[NT];
    bt_optim *o = optim_of(gc->kv);
    int adam = strcmp(gc->name, "adamw") == 0, nstate = adam ? 2 : 1;
    static const char *const state_label[2][2] = {{"momentum", ""}, {"exp_avg", "exp_avg_sq"}};
    const float *lr0, *lr1;
    char key[128];
    int t, s, k;

    for (t = 0; t < NT; t++) {
        int nd;
        int64_t shape[8];
        const float *init;
        snprintf(key, sizeof key, "init.%s", gnames[t]);
        init = golden_get(g, key, &nd, shape);
        val[t] = tensor_from(nd, shape, init);
        grd[t] = tensor_from(nd, shape, NULL);
        ck_assert_int_eq(bt_optim_add_tensor(o, val[t], grd[t], gnames[t]), BT_OK);
    }
    ck_assert_int_eq(bti_optim_state_count(o), NT * nstate);
    snprintf(key, sizeof key, "%s.lr0", gc->name);
    lr0 = golden_get(g, key, NULL, NULL);
    snprintf(key, sizeof key, "%s.lr1", gc->name);
    lr1 = golden_get(g, key, NULL, NULL);

    for (s = 0; s < NSTEPS; s++) {
        ck_assert_int_eq(bt_optim_step_count(o), s);
        assert_rel(bt_optim_lr(o, 0), lr0[s], 1e-6, "lr group 0");
        assert_rel(bt_optim_lr(o, 1), lr1[s], 1e-6, "lr group 1");
        for (t = 0; t < NT; t++) {
            snprintf(key, sizeof key, "grad.%d.%s", s, gnames[t]);
            memcpy(bt_tensor_data(grd[t]), golden_get(g, key, NULL, NULL),
                   (size_t)bt_tensor_numel(grd[t]) * sizeof(float));
        }
        ck_assert_msg(bt_optim_step(o) == BT_OK, "%s", bt_last_error());
        for (t = 0; t < NT; t++) {
            double e;
            snprintf(key, sizeof key, "%s.%d.%s", gc->name, s, gnames[t]);
            e = rel_err(bt_tensor_data(val[t]), golden_get(g, key, NULL, NULL),
                        bt_tensor_numel(val[t]));
            ck_assert_msg(e <= 1e-5, "%s: value rel err %.3g", key, e);
            for (k = 0; k < nstate; k++) {
                const char *sname;
                bt_tensor *st;
                char want_name[96];
                ck_assert_int_eq(bti_optim_state(o, t * nstate + k, &sname, &st), BT_OK);
                snprintf(want_name, sizeof want_name, "optim.%s.%s", gnames[t],
                         state_label[adam][k]);
                ck_assert_str_eq(sname, want_name);
                snprintf(key, sizeof key, "%s.%d.%s.%s", gc->name, s, gnames[t],
                         state_label[adam][k]);
                e = rel_err(bt_tensor_data(st), golden_get(g, key, NULL, NULL),
                            bt_tensor_numel(st));
                ck_assert_msg(e <= 1e-5, "%s: state rel err %.3g", key, e);
            }
        }
    }
    bt_optim_free(o);
    for (t = 0; t < NT; t++) {
        bt_tensor_free(val[t]);
        bt_tensor_free(grd[t]);
    }
    golden_free(g);
}
END_TEST

/* ---- the schedule ---------------------------------------------------------- */

START_TEST(schedule_matches_official_imagenet_run)
{
    static const char *const kv[] = {"optim.batch_size", "2048", "optim.warmup_steps", "6260",
                                     "optim.total_steps", "626000", NULL};
    golden *g = golden_load("optim_lr.bin");
    bt_optim *o = optim_of(kv);
    int64_t n = golden_numel(g, "steps"), i;
    const float *steps = golden_get(g, "steps", NULL, NULL), *lr0 = golden_get(g, "lr0", NULL, NULL),
                *lr1 = golden_get(g, "lr1", NULL, NULL);
    ck_assert_int_ge(n, 10);
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(bti_optim_set_step(o, (int64_t)steps[i]), BT_OK);
        ck_assert_int_eq(bt_optim_step_count(o), (int64_t)steps[i]);
        assert_rel(bt_optim_lr(o, 0), lr0[i], 1e-6, "lr0");
        assert_rel(bt_optim_lr(o, 1), lr1[i], 1e-6, "lr1");
    }
    /* The peak is batch/256 x lr (official: 8 x 0.2 = 1.6, 8 x 0.0048 = 0.0384). */
    bti_optim_set_step(o, 6260);
    assert_rel(bt_optim_lr(o, 0), 1.6, 1e-12, "peak lr0");
    assert_rel(bt_optim_lr(o, 1), 0.0384, 1e-12, "peak lr1");
    bt_optim_free(o);
    golden_free(g);
}
END_TEST

START_TEST(schedule_constant_and_open_ended)
{
    static const char *const constant[] = {"optim.batch_size", "256", "optim.lr", "0.5",
                                           "optim.lr_bias", "0.1", "optim.warmup_steps", "4",
                                           "optim.total_steps", "100", "optim.schedule",
                                           "constant", NULL};
    static const char *const open[] = {"optim.batch_size", "512", "optim.lr", "0.5",
                                       "optim.warmup_steps", "4", "optim.total_steps", "0", NULL};
    static const char *const cosine[] = {"optim.batch_size", "256", "optim.lr", "1",
                                         "optim.warmup_steps", "0", "optim.total_steps", "10",
                                         "optim.final_lr_ratio", "0.1", NULL};
    static const char *const nowarm[] = {"optim.batch_size", "256", "optim.lr", "0.3", NULL};
    bt_optim *o = optim_of(constant);
    bti_optim_set_step(o, 0);
    ck_assert(bt_optim_lr(o, 0) == 0.0);
    bti_optim_set_step(o, 2);
    assert_rel(bt_optim_lr(o, 0), 0.25, 1e-15, "warm-up half");
    assert_rel(bt_optim_lr(o, 1), 0.05, 1e-15, "warm-up half, group 1");
    bti_optim_set_step(o, 4);
    assert_rel(bt_optim_lr(o, 0), 0.5, 1e-15, "after warm-up");
    bti_optim_set_step(o, 50);
    assert_rel(bt_optim_lr(o, 0), 0.5, 1e-15, "constant");
    bti_optim_set_step(o, 1000);
    assert_rel(bt_optim_lr(o, 0), 0.5, 1e-15, "constant past total");
    bt_optim_free(o);

    o = optim_of(open);
    bti_optim_set_step(o, 1);
    assert_rel(bt_optim_lr(o, 0), 0.25, 1e-15, "open warm-up");
    bti_optim_set_step(o, 123456789);
    assert_rel(bt_optim_lr(o, 0), 1.0, 1e-15, "total 0: no decay");
    bt_optim_free(o);

    o = optim_of(cosine);
    ck_assert(bt_optim_lr(o, 0) == 1.0); /* no warm-up: full rate at step 0 */
    bti_optim_set_step(o, 5);             /* half-way: q = 1/2 */
    assert_rel(bt_optim_lr(o, 0), 0.5 + 0.1 * 0.5, 1e-12, "cosine mid");
    bti_optim_set_step(o, 10);
    assert_rel(bt_optim_lr(o, 0), 0.1, 1e-15, "final");
    bti_optim_set_step(o, 1000000);
    assert_rel(bt_optim_lr(o, 0), 0.1, 1e-15, "final held");
    bt_optim_free(o);

    o = optim_of(nowarm);
    assert_rel(bt_optim_lr(o, 0), 0.3, 1e-15, "defaults: constant");
    bt_optim_free(o);
}
END_TEST

/* ---- exact resume ---------------------------------------------------------- */

/* Big enough to use several threads and several norm blocks. */
#define RA 300
#define RB 211
#define RC 37

struct run {
    bt_tensor *val[3], *grd[3];
    bt_optim *o;
};

static void run_init(struct run *r, const char *const *kv, const float *const *init)
{
    static const int64_t s0[2] = {RA, RB}, s1[4] = {RC, 3, 3, 3}, s2[1] = {RB};
    static const char *const names[3] = {"layer.weight", "conv.weight", "bn.bias"};
    const int64_t *shapes[3] = {s0, s1, s2};
    const int nd[3] = {2, 4, 1};
    int t;
    r->o = optim_of(kv);
    for (t = 0; t < 3; t++) {
        r->val[t] = tensor_from(nd[t], shapes[t], init ? init[t] : NULL);
        r->grd[t] = tensor_from(nd[t], shapes[t], NULL);
        if (!init) {
            float *v = bt_tensor_data(r->val[t]);
            int64_t i, n = bt_tensor_numel(r->val[t]);
            for (i = 0; i < n; i++)
                v[i] = (float)sin(0.37 * (double)i + t) * 0.1f;
        }
        ck_assert_int_eq(bt_optim_add_tensor(r->o, r->val[t], r->grd[t], names[t]), BT_OK);
    }
}

static void run_grads(struct run *r, int64_t step)
{
    int t;
    for (t = 0; t < 3; t++) {
        float *g = bt_tensor_data(r->grd[t]);
        int64_t i, n = bt_tensor_numel(r->grd[t]);
        for (i = 0; i < n; i++)
            g[i] = (float)cos(0.011 * (double)(i * (step + 3)) + 0.5 * t) * (1.0f + 0.1f * t);
    }
}

static void run_steps(struct run *r, int64_t upto)
{
    while (bt_optim_step_count(r->o) < upto) {
        run_grads(r, bt_optim_step_count(r->o));
        ck_assert_msg(bt_optim_step(r->o) == BT_OK, "%s", bt_last_error());
    }
}

static void run_free(struct run *r)
{
    int t;
    bt_optim_free(r->o);
    for (t = 0; t < 3; t++) {
        bt_tensor_free(r->val[t]);
        bt_tensor_free(r->grd[t]);
    }
}

static const char *const resume_kinds[][30] = {
    {"optim.kind", "lars", "optim.warmup_steps", "2", "optim.total_steps", "10",
     "optim.weight_decay", "0.001", "optim.eta", "0.02", NULL},
    {"optim.kind", "lars", "optim.lars_variant", "solo", "optim.warmup_steps", "2",
     "optim.total_steps", "10", "optim.eta", "0.02", "optim.exclude_bias_bn", "0", NULL},
    {"optim.kind", "sgd", "optim.nesterov", "1", "optim.warmup_steps", "2", "optim.total_steps",
     "10", "optim.lr", "0.01", "optim.weight_decay", "0.01", NULL},
    {"optim.kind", "adamw", "optim.warmup_steps", "2", "optim.total_steps", "10", "optim.lr",
     "0.001", "optim.weight_decay", "0.1", NULL},
};

START_TEST(resume_is_bit_identical)
{
    enum { K = 3, N = 8 };
    const char *const *kv = resume_kinds[_i];
    struct run a, b, c;
    float *saved_val[3], *saved_state[6];
    const float *init[3];
    int64_t step;
    int32_t ns, i;
    int t;

    /* Reference: 0 -> N without stopping. */
    run_init(&a, kv, NULL);
    run_steps(&a, N);

    /* Interrupted: 0 -> K, save parameters, state and step, destroy everything. */
    run_init(&b, kv, NULL);
    run_steps(&b, K);
    ns = bti_optim_state_count(b.o);
    ck_assert_int_ge(ns, 3);
    ck_assert_int_le(ns, 6);
    for (t = 0; t < 3; t++) {
        size_t bytes = (size_t)bt_tensor_numel(b.val[t]) * sizeof(float);
        saved_val[t] = malloc(bytes);
        memcpy(saved_val[t], bt_tensor_data(b.val[t]), bytes);
        init[t] = saved_val[t];
    }
    for (i = 0; i < ns; i++) {
        bt_tensor *st;
        size_t bytes;
        ck_assert_int_eq(bti_optim_state(b.o, i, NULL, &st), BT_OK);
        bytes = (size_t)bt_tensor_numel(st) * sizeof(float);
        saved_state[i] = malloc(bytes);
        memcpy(saved_state[i], bt_tensor_data(st), bytes);
    }
    step = bt_optim_step_count(b.o);
    ck_assert_int_eq(step, K);
    run_free(&b);

    /* Resumed: fresh tensors and optimizer, state copied in, K -> N. */
    run_init(&c, kv, init);
    for (i = 0; i < ns; i++) {
        bt_tensor *st;
        const char *name;
        ck_assert_int_eq(bti_optim_state(c.o, i, &name, &st), BT_OK);
        ck_assert_ptr_nonnull(strstr(name, "optim."));
        memcpy(bt_tensor_data(st), saved_state[i], (size_t)bt_tensor_numel(st) * sizeof(float));
    }
    ck_assert_int_eq(bti_optim_set_step(c.o, step), BT_OK);
    run_steps(&c, N);

    for (t = 0; t < 3; t++)
        ck_assert_msg(memcmp(bt_tensor_data(a.val[t]), bt_tensor_data(c.val[t]),
                             (size_t)bt_tensor_numel(a.val[t]) * sizeof(float)) == 0,
                      "%s: tensor %d differs after resume", kv[1], t);
    /* And the run is not trivially unchanged. */
    ck_assert(memcmp(bt_tensor_data(a.val[0]), saved_val[0], (size_t)RA * RB * sizeof(float)) != 0);

    for (t = 0; t < 3; t++)
        free(saved_val[t]);
    for (i = 0; i < ns; i++)
        free(saved_state[i]);
    run_free(&a);
    run_free(&c);
}
END_TEST

START_TEST(results_do_not_depend_on_thread_count)
{
    const char *kv1[40], *kv4[40];
    struct run a, b;
    int n = 0, t;
    const char *const *kv = resume_kinds[_i];
    while (kv[n]) {
        kv1[n] = kv4[n] = kv[n];
        n++;
    }
    kv1[n] = kv4[n] = "threads";
    kv1[n + 1] = "1";
    kv4[n + 1] = "4";
    kv1[n + 2] = kv4[n + 2] = NULL;
    run_init(&a, kv1, NULL);
    run_init(&b, kv4, NULL);
    run_steps(&a, 4);
    run_steps(&b, 4);
    for (t = 0; t < 3; t++)
        ck_assert(memcmp(bt_tensor_data(a.val[t]), bt_tensor_data(b.val[t]),
                         (size_t)bt_tensor_numel(a.val[t]) * sizeof(float)) == 0);
    run_free(&a);
    run_free(&b);
}
END_TEST

/* grad_scale s with gradient g is exactly gradient (float)(s g) with scale 1. */
START_TEST(grad_scale_multiplies_gradients_first)
{
    const char *kv_s[40], *kv_1[40];
    struct run a, b;
    int n = 0, t;
    const char *const *kv = resume_kinds[_i];
    while (kv[n]) {
        kv_s[n] = kv_1[n] = kv[n];
        n++;
    }
    kv_s[n] = "optim.grad_scale";
    kv_s[n + 1] = "0.0625";
    kv_s[n + 2] = kv_1[n] = NULL;
    run_init(&a, kv_s, NULL);
    run_init(&b, kv_1, NULL);
    while (bt_optim_step_count(a.o) < 4) {
        run_grads(&a, bt_optim_step_count(a.o));
        run_grads(&b, bt_optim_step_count(b.o));
        for (t = 0; t < 3; t++) {
            float *g = bt_tensor_data(b.grd[t]);
            int64_t i, m = bt_tensor_numel(b.grd[t]);
            for (i = 0; i < m; i++)
                g[i] *= 0.0625f;
        }
        ck_assert_int_eq(bt_optim_step(a.o), BT_OK);
        ck_assert_int_eq(bt_optim_step(b.o), BT_OK);
    }
    for (t = 0; t < 3; t++)
        ck_assert(memcmp(bt_tensor_data(a.val[t]), bt_tensor_data(b.val[t]),
                         (size_t)bt_tensor_numel(a.val[t]) * sizeof(float)) == 0);
    run_free(&a);
    run_free(&b);
}
END_TEST

/* ---- refused steps ----------------------------------------------------------- */

/* Parameters and state of a run, concatenated; *n gets the float count. */
static float *snapshot(struct run *r, size_t *n)
{
    int32_t ns = bti_optim_state_count(r->o), i;
    size_t total = 0, off = 0;
    float *buf;
    int t;
    for (t = 0; t < 3; t++)
        total += (size_t)bt_tensor_numel(r->val[t]);
    for (i = 0; i < ns; i++) {
        bt_tensor *st;
        ck_assert_int_eq(bti_optim_state(r->o, i, NULL, &st), BT_OK);
        total += (size_t)bt_tensor_numel(st);
    }
    buf = malloc(total * sizeof *buf);
    for (t = 0; t < 3; t++) {
        size_t m = (size_t)bt_tensor_numel(r->val[t]);
        memcpy(buf + off, bt_tensor_data(r->val[t]), m * sizeof *buf);
        off += m;
    }
    for (i = 0; i < ns; i++) {
        bt_tensor *st;
        size_t m;
        bti_optim_state(r->o, i, NULL, &st);
        m = (size_t)bt_tensor_numel(st);
        memcpy(buf + off, bt_tensor_data(st), m * sizeof *buf);
        off += m;
    }
    *n = total;
    return buf;
}

static void assert_unchanged(struct run *r, const float *before, size_t n)
{
    size_t m;
    float *now = snapshot(r, &m);
    ck_assert_uint_eq(m, n);
    ck_assert_msg(memcmp(now, before, n * sizeof(float)) == 0, "a refused step changed data");
    free(now);
}

START_TEST(non_finite_gradient_changes_nothing)
{
    const char *const *kv = resume_kinds[_i];
    struct run r;
    float *before, *g;
    size_t n;
    run_init(&r, kv, NULL);
    run_steps(&r, 2); /* non-zero state */
    before = snapshot(&r, &n);

    run_grads(&r, 2);
    /* the LAST tensor is bad: the earlier ones must not have been updated */
    g = bt_tensor_data(r.grd[2]);
    g[RB - 1] = NAN;
    ck_assert_int_eq(bt_optim_step(r.o), BT_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bn.bias"));
    ck_assert_int_eq(bt_optim_step_count(r.o), 2);
    assert_unchanged(&r, before, n);

    g[RB - 1] = INFINITY;
    ck_assert_int_eq(bt_optim_step(r.o), BT_E_NUMERIC);
    g[RB - 1] = 0.5f;
    bt_tensor_data(r.grd[0])[RA * RB - 1] = -INFINITY;
    ck_assert_int_eq(bt_optim_step(r.o), BT_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "layer.weight"));
    ck_assert_int_eq(bt_optim_step_count(r.o), 2);
    assert_unchanged(&r, before, n);

    /* Fixed gradients: the step goes through. */
    bt_tensor_data(r.grd[0])[RA * RB - 1] = 0.25f;
    ck_assert_int_eq(bt_optim_step(r.o), BT_OK);
    ck_assert_int_eq(bt_optim_step_count(r.o), 3);
    free(before);
    run_free(&r);
}
END_TEST

START_TEST(grad_scale_overflow_is_refused)
{
    static const char *const kv[] = {"optim.kind", "sgd", "optim.grad_scale", "1e12", NULL};
    struct run r;
    float *before;
    size_t n;
    run_init(&r, kv, NULL);
    run_grads(&r, 0);
    bt_tensor_data(r.grd[1])[5] = 1e30f; /* finite, but 1e42 after scaling */
    before = snapshot(&r, &n);
    ck_assert_int_eq(bt_optim_step(r.o), BT_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "grad_scale"));
    assert_unchanged(&r, before, n);
    free(before);
    run_free(&r);
}
END_TEST

/* ---- misuse ---------------------------------------------------------------- */

START_TEST(create_rejects_bad_combinations)
{
    static const char *const nest_lars[] = {"optim.kind", "lars", "optim.nesterov", "1", NULL};
    static const char *const nest_m0[] = {"optim.kind", "sgd", "optim.nesterov", "1",
                                          "optim.momentum", "0", NULL};
    static const char *const short_total[] = {"optim.warmup_steps", "10", "optim.total_steps",
                                              "10", NULL};
    static const char *const short_const[] = {"optim.warmup_steps", "10", "optim.total_steps",
                                              "10", "optim.schedule", "constant", NULL};
    bt_optim *o = (bt_optim *)0x1;
    bt_config *c;
    bt_tensor *t;
    int64_t shape[1] = {3};

    ck_assert_int_eq(bt_optim_create(NULL, NULL), BT_E_MISUSE);
    c = config_of(nest_lars);
    ck_assert_int_eq(bt_optim_create(&o, c), BT_E_INVALID_ARG);
    ck_assert_ptr_null(o);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "optim.nesterov"));
    bt_config_free(c);
    c = config_of(nest_m0);
    ck_assert_int_eq(bt_optim_create(&o, c), BT_E_INVALID_ARG);
    bt_config_free(c);
    c = config_of(short_total);
    ck_assert_int_eq(bt_optim_create(&o, c), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "optim.total_steps"));
    bt_config_free(c);
    c = config_of(short_const);
    ck_assert_int_eq(bt_optim_create(&o, c), BT_OK);
    bt_optim_free(o);
    bt_config_free(c);

    /* a tensor is not a config */
    ck_assert_int_eq(bt_tensor_create(&t, 1, shape), BT_OK);
    ck_assert_int_eq(bt_optim_create(&o, (const bt_config *)(void *)t), BT_E_MISUSE);
    bt_tensor_free(t);

    /* NULL config: defaults (lars, 2048/256 x 0.2, no warm-up, no decay) */
    ck_assert_int_eq(bt_optim_create(&o, NULL), BT_OK);
    assert_rel(bt_optim_lr(o, 0), 1.6, 1e-15, "default lr0");
    assert_rel(bt_optim_lr(o, 1), 0.0384, 1e-15, "default lr1");
    ck_assert_str_eq(bti_optim_kind_name(o), "lars");
    bt_optim_free(o);
    bt_optim_free(NULL);
}
END_TEST

START_TEST(add_tensor_misuse)
{
    bt_optim *o;
    bt_tensor *v, *g, *g_bad, *v2, *g2, *v3, *g3, *st;
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s4[1] = {4};
    const char *name;
    char longname[300];

    ck_assert_int_eq(bt_optim_create(&o, NULL), BT_OK);
    v = tensor_from(2, s23, NULL);
    g = tensor_from(2, s23, NULL);
    g_bad = tensor_from(2, s32, NULL);
    v2 = tensor_from(1, s4, NULL);
    g2 = tensor_from(1, s4, NULL);
    v3 = tensor_from(1, s4, NULL);
    g3 = tensor_from(1, s4, NULL);

    ck_assert_int_eq(bt_optim_step(o), BT_E_STATE); /* nothing added */
    ck_assert_int_eq(bt_optim_add_tensor(NULL, v, g, "w"), BT_E_MISUSE);
    ck_assert_int_eq(bt_optim_add_tensor(o, NULL, g, "w"), BT_E_MISUSE);
    ck_assert_int_eq(bt_optim_add_tensor(o, v, NULL, "w"), BT_E_MISUSE);
    ck_assert_int_eq(bt_optim_add_tensor(o, v, v, "w"), BT_E_MISUSE);
    ck_assert_int_eq(bt_optim_add_tensor(o, v, g_bad, "w"), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[3, 2]"));
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[2, 3]"));
    ck_assert_int_eq(bt_optim_add_tensor(o, v, g, ""), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_optim_add_tensor(o, v, g, "bad\"name"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_optim_add_tensor(o, v, g, "tab\tname"), BT_E_INVALID_ARG);
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(bt_optim_add_tensor(o, v, g, longname), BT_E_INVALID_ARG);
    ck_assert_int_eq(bti_optim_state_count(o), 0); /* failed calls added nothing */

    ck_assert_int_eq(bt_optim_add_tensor(o, v, g, "fc.weight"), BT_OK);
    ck_assert_int_eq(bt_optim_add_tensor(o, v2, g2, "fc.weight"), BT_E_INVALID_ARG); /* dup name */
    ck_assert_int_eq(bt_optim_add_tensor(o, v, g, "x"), BT_E_INVALID_ARG); /* already added */
    ck_assert_int_eq(bt_optim_add_tensor(o, v2, g, "x"), BT_E_SHAPE);
    ck_assert_int_eq(bt_optim_add_tensor(o, v2, g2, NULL), BT_OK); /* automatic name */
    ck_assert_int_eq(bti_optim_state_count(o), 2);
    ck_assert_int_eq(bti_optim_state(o, 1, &name, &st), BT_OK);
    ck_assert_str_eq(name, "optim.param.1.momentum");
    ck_assert_int_eq(bt_tensor_numel(st), 4);
    bt_tensor_free(st); /* owned by the optimizer: refused */
    ck_assert_int_eq(bt_tensor_numel(st), 4);
    ck_assert_int_eq(bti_optim_state(o, 2, &name, &st), BT_E_INVALID_ARG);
    ck_assert_int_eq(bti_optim_state(o, -1, &name, &st), BT_E_INVALID_ARG);
    ck_assert_int_eq(bti_optim_set_step(o, -1), BT_E_INVALID_ARG);

    ck_assert_int_eq(bt_optim_lr(o, 2), -1.0);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "group is 2"));
    ck_assert_int_eq(bt_optim_lr(NULL, 0), -1.0);
    ck_assert_int_eq(bt_optim_step_count(NULL), -1);

    ck_assert_int_eq(bt_optim_step(o), BT_OK);
    ck_assert_int_eq(bt_optim_add_tensor(o, v3, g3, "late"), BT_E_STATE);

    /* A borrowed tensor freed under the optimizer is detected, nothing is updated. */
    bt_tensor_data(g)[0] = 1.0f;
    bt_tensor_free(g2);
    ck_assert_int_eq(bt_optim_step(o), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "param.1"));
    ck_assert_int_eq(bt_optim_step_count(o), 1);

    bt_optim_free(o);
    ck_assert_int_eq(bt_optim_step(o), BT_E_MISUSE); /* freed */
    ck_assert_int_eq(bt_optim_step_count(o), -1);
    bt_optim_free(o); /* double free refused, not a crash */
    bt_tensor_free(v);
    bt_tensor_free(g);
    bt_tensor_free(g_bad);
    bt_tensor_free(v2);
    bt_tensor_free(v3);
    bt_tensor_free(g3);
}
END_TEST

/* bt_optim_add_layer: the layer's trainable tensors under its names, a step that moves them
 * by -lr * grad (sgd, no momentum or decay), and all or nothing on failure. */
START_TEST(add_layer_attaches_all_or_nothing)
{
    static const char *const kv[] = {"optim.kind", "sgd", "optim.momentum", "0",
                                     "optim.weight_decay", "0", "optim.schedule", "constant",
                                     "optim.lr", "0.5", "optim.lr_bias", "0.25", NULL};
    bt_optim *o = optim_of(kv), *o2 = optim_of(kv);
    bt_layer *lin, *relu, *bn, *lin2;
    bt_tensor *w, *gw, *b, *gb, *other, *gother;
    const char *name;
    float w0[12], b0[3];
    int64_t s1[1] = {3};
    double lr0, lr1;
    int i;
    ck_assert_int_eq(bt_layer_linear_create(&lin, 4, 3, 1), BT_OK);
    ck_assert_int_eq(bt_layer_linear_create(&lin2, 4, 3, 1), BT_OK);
    ck_assert_int_eq(bt_layer_relu_create(&relu), BT_OK);
    ck_assert_int_eq(bt_layer_batchnorm_create(&bn, 3, 1e-5, 0.1, 0), BT_OK);

    /* bad handles and layers without a trainable tensor add nothing */
    ck_assert_int_eq(bt_optim_add_layer(NULL, lin), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bt_optim_add_layer: o is NULL"));
    ck_assert_int_eq(bt_optim_add_layer(o, NULL), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bt_optim_add_layer: l is NULL"));
    ck_assert_int_eq(bt_optim_add_layer(o, (bt_layer *)o2), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "not a live"));
    ck_assert_int_eq(bt_optim_add_model(o, NULL), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bt_optim_add_model: m is NULL"));
    ck_assert_int_eq(bt_optim_add_model(NULL, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_optim_add_layer(o, relu), BT_E_STATE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "no trainable tensor"));
    ck_assert_int_eq(bt_optim_add_layer(o, bn), BT_E_STATE); /* no affine: buffers only */
    ck_assert_int_eq(bti_optim_tensor_count(o), 0);

    /* a failure on the layer's second tensor takes back its first */
    other = tensor_from(1, s1, NULL);
    gother = tensor_from(1, s1, NULL);
    ck_assert_int_eq(bt_optim_add_tensor(o2, other, gother, "bias"), BT_OK);
    ck_assert_int_eq(bt_optim_add_layer(o2, lin2), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bias"));
    ck_assert_int_eq(bti_optim_tensor_count(o2), 1);
    ck_assert_int_eq(bti_optim_state_count(o2), 1);

    /* the layer's two tensors, its names, one step of sgd */
    ck_assert_int_eq(bt_optim_add_layer(o, lin), BT_OK);
    ck_assert_int_eq(bti_optim_tensor_count(o), 2);
    ck_assert_int_eq(bti_optim_state_count(o), 2);
    ck_assert_int_eq(bti_optim_state(o, 0, &name, NULL), BT_OK);
    ck_assert_str_eq(name, "optim.weight.momentum");
    ck_assert_int_eq(bti_optim_state(o, 1, &name, NULL), BT_OK);
    ck_assert_str_eq(name, "optim.bias.momentum");
    ck_assert_int_eq(bt_optim_add_layer(o, lin), BT_E_INVALID_ARG); /* already added */
    ck_assert_int_eq(bti_optim_tensor_count(o), 2);
    ck_assert_int_eq(bt_layer_tensor(lin, 0, NULL, &w, &gw), BT_OK);
    ck_assert_int_eq(bt_layer_tensor(lin, 1, NULL, &b, &gb), BT_OK);
    for (i = 0; i < 12; i++)
        bt_tensor_data(gw)[i] = (float)(i - 5) / 8;
    for (i = 0; i < 3; i++)
        bt_tensor_data(gb)[i] = (float)(i + 1) / 4;
    memcpy(w0, bt_tensor_data(w), sizeof w0);
    memcpy(b0, bt_tensor_data(b), sizeof b0);
    lr0 = bt_optim_lr(o, 0);
    lr1 = bt_optim_lr(o, 1);
    ck_assert_double_gt(lr0, 0);
    ck_assert_double_gt(lr1, 0);
    ck_assert_double_ne(lr0, lr1);
    ck_assert_int_eq(bt_optim_step(o), BT_OK);
    for (i = 0; i < 12; i++)
        ck_assert_float_eq_tol(bt_tensor_data(w)[i], w0[i] - (float)lr0 * bt_tensor_data(gw)[i],
                               1e-6f);
    for (i = 0; i < 3; i++)
        ck_assert_float_eq_tol(bt_tensor_data(b)[i], b0[i] - (float)lr1 * bt_tensor_data(gb)[i],
                               1e-6f);
    /* an optimizer that has stepped takes no more tensors */
    ck_assert_int_eq(bt_optim_add_layer(o, lin2), BT_E_STATE);
    ck_assert_int_eq(bti_optim_tensor_count(o), 2);

    bt_optim_free(o);
    bt_optim_free(o2);
    bt_tensor_free(other);
    bt_tensor_free(gother);
    bt_layer_free(lin);
    bt_layer_free(lin2);
    bt_layer_free(relu);
    bt_layer_free(bn);
}
END_TEST

START_TEST(truncate_removes_tensors_and_names)
{
    bt_optim *o;
    bt_tensor *v[3], *g[3];
    int64_t s[1] = {5};
    static const char *const names[3] = {"a", "b", "c"};
    static const char *const adam[] = {"optim.kind", "adamw", NULL};
    const char *name;
    int t;
    o = optim_of(adam);
    for (t = 0; t < 3; t++) {
        v[t] = tensor_from(1, s, NULL);
        g[t] = tensor_from(1, s, NULL);
        ck_assert_int_eq(bt_optim_add_tensor(o, v[t], g[t], names[t]), BT_OK);
    }
    ck_assert_int_eq(bti_optim_tensor_count(o), 3);
    ck_assert_int_eq(bti_optim_state_count(o), 6);
    ck_assert_int_eq(bti_optim_state(o, 5, &name, NULL), BT_OK);
    ck_assert_str_eq(name, "optim.c.exp_avg_sq");
    bti_optim_truncate(o, 1);
    ck_assert_int_eq(bti_optim_tensor_count(o), 1);
    ck_assert_int_eq(bti_optim_state_count(o), 2);
    ck_assert_int_eq(bt_optim_add_tensor(o, v[2], g[2], "b"), BT_OK); /* name free again */
    ck_assert_str_eq(bti_optim_kind_name(o), "adamw");
    bt_optim_free(o);
    for (t = 0; t < 3; t++) {
        bt_tensor_free(v[t]);
        bt_tensor_free(g[t]);
    }
}
END_TEST

Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    int nk = (int)(sizeof resume_kinds / sizeof resume_kinds[0]);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, golden_five_steps, 0, (int)(sizeof gcases / sizeof gcases[0]));
    tcase_add_test(tc, schedule_matches_official_imagenet_run);
    tcase_add_test(tc, schedule_constant_and_open_ended);
    tcase_add_loop_test(tc, resume_is_bit_identical, 0, nk);
    tcase_add_loop_test(tc, results_do_not_depend_on_thread_count, 0, nk);
    tcase_add_loop_test(tc, grad_scale_multiplies_gradients_first, 0, nk);
    tcase_add_loop_test(tc, non_finite_gradient_changes_nothing, 0, nk);
    tcase_add_test(tc, grad_scale_overflow_is_refused);
    tcase_add_test(tc, create_rejects_bad_combinations);
    tcase_add_test(tc, add_tensor_misuse);
    tcase_add_test(tc, add_layer_attaches_all_or_nothing);
    tcase_add_test(tc, truncate_removes_tensors_and_names);
    suite_add_tcase(s, tc);
    return s;
}
