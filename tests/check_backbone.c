/* check_backbone.c - fine-tuning: bt_model_forward_backbone / _backward_backbone
 * with a host's head, the projector-only model (model.arch none) and its input
 * gradient (bt_model_input_grad), against PyTorch (tests/golden/gen_finetune.py)
 * and against central finite differences of double-precision references;
 * misuse, and an arch none checkpoint. */
#include "barlow.h"
#include "fixtures.h"
#include "golden.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4
#define FD_H 1e-5
#define NV 2


static bt_tensor *tensor(int32_t ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    bt_tensor *t;
    int64_t s[4] = {a, b, c, d};
    ck_assert_int_eq(bt_tensor_create(&t, ndim, s), BT_OK);
    return t;
}

static void fill_pattern(bt_tensor *t, uint64_t id, double scale)
{
    int64_t i, n = bt_tensor_numel(t);
    for (i = 0; i < n; i++)
        bt_tensor_data(t)[i] = (float)(scale * golden_pattern(id, (uint64_t)i));
}

static void free_all(bt_tensor **t, int n)
{
    int i;
    for (i = 0; i < n; i++)
        bt_tensor_free(t[i]);
}

/* Every value and gradient of the model, flattened: the "nothing changed" check. */
static float *snapshot(bt_model *m, int64_t *count)
{
    int32_t t, n = bt_model_tensor_count(m);
    int64_t total = 0, k = 0;
    float *s;
    for (t = 0; t < n; t++) {
        bt_tensor *v, *g;
        ck_assert_int_eq(bt_model_tensor(m, t, NULL, &v, &g), BT_OK);
        total += bt_tensor_numel(v) + (g ? bt_tensor_numel(g) : 0);
    }
    s = malloc((size_t)total * sizeof *s);
    for (t = 0; t < n; t++) {
        bt_tensor *v, *g;
        ck_assert_int_eq(bt_model_tensor(m, t, NULL, &v, &g), BT_OK);
        memcpy(s + k, bt_tensor_data(v), (size_t)bt_tensor_numel(v) * sizeof *s);
        k += bt_tensor_numel(v);
        if (g) {
            memcpy(s + k, bt_tensor_data(g), (size_t)bt_tensor_numel(g) * sizeof *s);
            k += bt_tensor_numel(g);
        }
    }
    *count = total;
    return s;
}

static void assert_unchanged(bt_model *m, const float *before, int64_t count)
{
    int64_t n;
    float *now = snapshot(m, &n);
    ck_assert_int_eq(n, count);
    ck_assert_msg(memcmp(now, before, (size_t)n * sizeof *now) == 0, "the failed call changed the model");
    free(now);
}

static void expect_fail(bt_status got, bt_status want, const char *const *words)
{
    ck_assert_msg(got == want, "status %d (%s), expected %d: %s", (int)got, bt_status_string(got),
                  (int)want, bt_last_error());
    for (; *words; words++)
        ck_assert_msg(strstr(bt_last_error(), *words) != NULL, "message '%s' lacks '%s'",
                      bt_last_error(), *words);
}

static bt_tensor *grad_of(bt_model *m, const char *want)
{
    int32_t t;
    for (t = 0; t < bt_model_tensor_count(m); t++) {
        const char *name;
        bt_tensor *g;
        ck_assert_int_eq(bt_model_tensor(m, t, &name, NULL, &g), BT_OK);
        if (strcmp(name, want) == 0)
            return g;
    }
    ck_abort_msg("no tensor %s", want);
    return NULL;
}

static void report(const char *what, double err)
{
    if (getenv("BT_TEST_VERBOSE"))
        fprintf(stderr, "backbone: %s: max relative error %.3g\n", what, err);
}

/* ---- the fine-tuned ResNet: backbone + a host's Linear head --------------------- */

static const char *const ft_opts[] = {"model.arch", "resnet", "model.block", "basic",
                                      "model.blocks", "1-1", "model.widths", "4-8",
                                      "model.stem", "cifar", "model.in_channels", "3",
                                      "model.projector", "16", NULL};
#define FT_HEAD 5

static bt_layer *make_head(int64_t feat)
{
    bt_layer *h;
    bt_tensor *w, *b;
    int64_t i;
    ck_assert_int_eq(bt_layer_linear_create(&h, (int32_t)feat, FT_HEAD, 1), BT_OK);
    ck_assert_int_eq(bt_layer_tensor(h, 0, NULL, &w, NULL), BT_OK);
    ck_assert_int_eq(bt_layer_tensor(h, 1, NULL, &b, NULL), BT_OK);
    for (i = 0; i < bt_tensor_numel(w); i++)
        bt_tensor_data(w)[i] = (float)(golden_pattern(500, (uint64_t)i) * 2.0 * sqrt(6.0 / (double)feat));
    for (i = 0; i < bt_tensor_numel(b); i++)
        bt_tensor_data(b)[i] = (float)(0.2 * golden_pattern(501, (uint64_t)i));
    return h;
}

START_TEST(finetune_gradients_match_pytorch)
{
    golden *g = golden_load("finetune_resnet.bin");
    bt_model *m = test_model(ft_opts, NULL);
    bt_layer *head;
    bt_tensor *x[NV], *f[NV], *dx[NV], *y[NV], *dy[NV], *df[NV];
    const int64_t n = (int64_t)golden_get(g, "n", NULL, NULL)[0];
    const int64_t hw = (int64_t)golden_get(g, "hw", NULL, NULL)[0];
    const uint64_t x_id = (uint64_t)golden_get(g, "x_id", NULL, NULL)[0];
    const int64_t fd = bt_model_feature_dim(m);
    double worst = 0, err;
    int32_t t, v;
    char key[160];

    ck_assert_int_eq(fd, 8);
    golden_fill_model(m);
    head = make_head(fd);
    for (v = 0; v < NV; v++) {
        x[v] = tensor(4, n, 3, hw, hw);
        dx[v] = tensor(4, n, 3, hw, hw);
        fill_pattern(x[v], x_id + (uint64_t)v, 2.0);
        f[v] = tensor(2, n, fd, 0, 0);
        df[v] = tensor(2, n, fd, 0, 0);
        y[v] = tensor(2, n, FT_HEAD, 0, 0);
        dy[v] = tensor(2, n, FT_HEAD, 0, 0);
        fill_pattern(dy[v], 2000 + (uint64_t)v, 0.1);
    }
    ck_assert_msg(bt_model_forward_backbone(m, NV, (const bt_tensor *const *)x, f) == BT_OK, "%s",
                  bt_last_error());
    for (v = 0; v < NV; v++) {
        const bt_tensor *cached;
        snprintf(key, sizeof key, "features%d", (int)v);
        err = rel_err(bt_tensor_data(f[v]), golden_get(g, key, NULL, NULL), n * fd);
        ck_assert_msg(err <= TOL, "%s: %g", key, err);
        ck_assert_int_eq(bt_model_features(m, v, &cached), BT_OK);
        ck_assert_mem_eq(bt_tensor_data((bt_tensor *)cached), bt_tensor_data(f[v]),
                         (size_t)(n * fd) * sizeof(float));
        /* the host's head, one view at a time (it keeps the last input) */
        ck_assert_int_eq(bt_layer_forward(head, f[v], y[v], 1), BT_OK);
        ck_assert_int_eq(bt_layer_backward(head, dy[v], df[v]), BT_OK);
    }
    ck_assert_msg(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)df, dx) == BT_OK,
                  "%s", bt_last_error());
    for (v = 0; v < NV; v++) {
        snprintf(key, sizeof key, "dx%d", (int)v);
        err = rel_err(bt_tensor_data(dx[v]), golden_get(g, key, NULL, NULL), bt_tensor_numel(dx[v]));
        ck_assert_msg(err <= TOL, "%s: %g", key, err);
        report(key, err);
    }
    for (t = 0; t < bt_model_tensor_count(m); t++) {
        const char *name;
        bt_tensor *gr;
        int64_t i;
        ck_assert_int_eq(bt_model_tensor(m, t, &name, NULL, &gr), BT_OK);
        if (!gr)
            continue;
        if (strncmp(name, "projector.", 10) == 0) { /* untouched by the backbone's backward */
            for (i = 0; i < bt_tensor_numel(gr); i++)
                ck_assert_float_eq(bt_tensor_data(gr)[i], 0.0f);
            continue;
        }
        snprintf(key, sizeof key, "grad.%s", name);
        ck_assert_int_eq(golden_numel(g, key), bt_tensor_numel(gr));
        err = rel_err(bt_tensor_data(gr), golden_get(g, key, NULL, NULL), bt_tensor_numel(gr));
        ck_assert_msg(err <= TOL, "%s: %g", key, err);
        worst = fmax(worst, err);
    }
    report("backbone parameter gradients", worst);
    worst = 0;
    for (t = 0; t < 2; t++) {
        const char *name;
        bt_tensor *gr;
        ck_assert_int_eq(bt_layer_tensor(head, t, &name, NULL, &gr), BT_OK);
        snprintf(key, sizeof key, "grad.head.%s", name);
        err = rel_err(bt_tensor_data(gr), golden_get(g, key, NULL, NULL), bt_tensor_numel(gr));
        ck_assert_msg(err <= TOL, "%s: %g", key, err);
        worst = fmax(worst, err);
    }
    report("head gradients", worst);

    /* dx NULL: the same parameter gradients again (they accumulate: twice) */
    {
        bt_tensor *gw = grad_of(m, "backbone.conv1.weight");
        int64_t i, k = bt_tensor_numel(gw);
        float *once = malloc((size_t)k * sizeof *once);
        memcpy(once, bt_tensor_data(gw), (size_t)k * sizeof *once);
        ck_assert_int_eq(bt_model_forward_backbone(m, NV, (const bt_tensor *const *)x, f), BT_OK);
        ck_assert_msg(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)df, NULL) == BT_OK,
                      "%s", bt_last_error());
        for (i = 0; i < k; i++)
            ck_assert_msg(fabsf(bt_tensor_data(gw)[i] - 2.0f * once[i]) <=
                              1e-5f * (fabsf(once[i]) + 1e-3f),
                          "conv1 gradient %lld did not accumulate", (long long)i);
        free(once);
    }
    free_all(x, NV);
    free_all(f, NV);
    free_all(dx, NV);
    free_all(y, NV);
    free_all(dy, NV);
    free_all(df, NV);
    bt_layer_free(head);
    bt_model_free(m);
    golden_free(g);
}
END_TEST

/* ---- the projector-only model ---------------------------------------------------- */

static const char *const none_opts[] = {"model.arch", "none", "model.feature_dim", "12",
                                        "model.projector", "16-8", NULL};

START_TEST(projector_only_matches_pytorch)
{
    golden *g = golden_load("finetune_none.bin");
    bt_model *m = test_model(none_opts, NULL);
    bt_tensor *x[NV], *z[NV], *dz[NV], *dx[NV], *e;
    const int64_t n = (int64_t)golden_get(g, "n", NULL, NULL)[0];
    const uint64_t x_id = (uint64_t)golden_get(g, "x_id", NULL, NULL)[0];
    double worst = 0, err;
    int32_t t, v;
    char key[160];

    ck_assert_int_eq(bt_model_feature_dim(m), 12);
    ck_assert_int_eq(bt_model_embed_dim(m), 8);
    ck_assert_int_eq(bt_model_tensor_count(m), 7); /* 0.weight, BN's five, 3.weight */
    golden_fill_model(m);
    for (v = 0; v < NV; v++) {
        x[v] = tensor(2, n, 12, 0, 0);
        dx[v] = tensor(2, n, 12, 0, 0);
        fill_pattern(x[v], x_id + (uint64_t)v, 2.0);
        z[v] = tensor(2, n, 8, 0, 0);
        dz[v] = tensor(2, n, 8, 0, 0);
        fill_pattern(dz[v], 2000 + (uint64_t)v, 0.01);
    }
    ck_assert_msg(bt_model_forward(m, NV, (const bt_tensor *const *)x, z) == BT_OK, "%s",
                  bt_last_error());
    for (v = 0; v < NV; v++) {
        snprintf(key, sizeof key, "z%d", (int)v);
        err = rel_err(bt_tensor_data(z[v]), golden_get(g, key, NULL, NULL), n * 8);
        ck_assert_msg(err <= TOL, "%s: %g", key, err);
    }
    ck_assert_int_eq(bt_model_input_grad(m, 0, dx[0]), BT_E_STATE);
    ck_assert_msg(bt_model_backward(m, NV, (const bt_tensor *const *)dz) == BT_OK, "%s",
                  bt_last_error());
    for (v = 0; v < NV; v++) {
        ck_assert_msg(bt_model_input_grad(m, v, dx[v]) == BT_OK, "%s", bt_last_error());
        snprintf(key, sizeof key, "dx%d", (int)v);
        err = rel_err(bt_tensor_data(dx[v]), golden_get(g, key, NULL, NULL), n * 12);
        ck_assert_msg(err <= TOL, "%s: %g", key, err);
        report(key, err);
    }
    for (t = 0; t < bt_model_tensor_count(m); t++) {
        const char *name;
        bt_tensor *gr;
        ck_assert_int_eq(bt_model_tensor(m, t, &name, NULL, &gr), BT_OK);
        if (!gr)
            continue;
        snprintf(key, sizeof key, "grad.%s", name);
        err = rel_err(bt_tensor_data(gr), golden_get(g, key, NULL, NULL), bt_tensor_numel(gr));
        ck_assert_msg(err <= TOL, "%s: %g", key, err);
        worst = fmax(worst, err);
    }
    report("projector gradients (arch none)", worst);

    /* encode is the identity, and discards the input gradient */
    e = tensor(2, n, 12, 0, 0);
    ck_assert_int_eq(bt_model_encode(m, x[1], e), BT_OK);
    ck_assert_mem_eq(bt_tensor_data(e), bt_tensor_data(x[1]), (size_t)(n * 12) * sizeof(float));
    ck_assert_int_eq(bt_model_input_grad(m, 0, dx[0]), BT_E_STATE);
    bt_tensor_free(e);
    free_all(x, NV);
    free_all(z, NV);
    free_all(dz, NV);
    free_all(dx, NV);
    bt_model_free(m);
    golden_free(g);
}
END_TEST

/* ---- finite differences of double-precision references -------------------------- */

/* The model's tensors as doubles, by name. */
struct dtab {
    int n;
    const char *name[64];
    double *v[64];
};

static void dtab_load(struct dtab *d, bt_model *m)
{
    int32_t t;
    d->n = bt_model_tensor_count(m);
    ck_assert_int_le(d->n, 64);
    for (t = 0; t < d->n; t++) {
        bt_tensor *v;
        int64_t i, k;
        ck_assert_int_eq(bt_model_tensor(m, t, &d->name[t], &v, NULL), BT_OK);
        k = bt_tensor_numel(v);
        d->v[t] = malloc((size_t)k * sizeof(double));
        for (i = 0; i < k; i++)
            d->v[t][i] = bt_tensor_data(v)[i];
    }
}

static void dtab_free(struct dtab *d)
{
    int t;
    for (t = 0; t < d->n; t++)
        free(d->v[t]);
}

static double *dget(const struct dtab *d, const char *prefix, const char *suffix)
{
    char want[128];
    int t;
    snprintf(want, sizeof want, "%s.%s", prefix, suffix);
    for (t = 0; t < d->n; t++)
        if (strcmp(d->name[t], want) == 0)
            return d->v[t];
    ck_abort_msg("no tensor %s", want);
    return NULL;
}

/* y [n, co, oh, ow] = conv(x [n, c, h, w]), no bias; returns oh (square). */
static int64_t dconv(const double *x, int64_t n, int64_t c, int64_t h, const double *w, int64_t co,
                     int64_t k, int64_t s, int64_t p, double *y)
{
    const int64_t oh = (h + 2 * p - k) / s + 1;
    int64_t b, o, i, oy, ox, ky, kx;
    for (b = 0; b < n; b++)
        for (o = 0; o < co; o++)
            for (oy = 0; oy < oh; oy++)
                for (ox = 0; ox < oh; ox++) {
                    double acc = 0;
                    for (i = 0; i < c; i++)
                        for (ky = 0; ky < k; ky++)
                            for (kx = 0; kx < k; kx++) {
                                const int64_t iy = oy * s - p + ky, ix = ox * s - p + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= h)
                                    continue;
                                acc += w[((o * c + i) * k + ky) * k + kx] *
                                       x[((b * c + i) * h + iy) * h + ix];
                            }
                    y[((b * co + o) * oh + oy) * oh + ox] = acc;
                }
    return oh;
}

/* Training-mode BatchNorm over [n, c, hw] in place (biased variance, eps 1e-5). */
static void dbn(double *x, int64_t n, int64_t c, int64_t hw, const double *gamma, const double *beta)
{
    int64_t b, ch, i;
    for (ch = 0; ch < c; ch++) {
        double mean = 0, var = 0;
        for (b = 0; b < n; b++)
            for (i = 0; i < hw; i++)
                mean += x[(b * c + ch) * hw + i];
        mean /= (double)(n * hw);
        for (b = 0; b < n; b++)
            for (i = 0; i < hw; i++) {
                const double d = x[(b * c + ch) * hw + i] - mean;
                var += d * d;
            }
        var /= (double)(n * hw);
        for (b = 0; b < n; b++)
            for (i = 0; i < hw; i++) {
                double *e = &x[(b * c + ch) * hw + i];
                *e = gamma[ch] * (*e - mean) / sqrt(var + 1e-5) + beta[ch];
            }
    }
}

static void drelu(double *x, int64_t k)
{
    int64_t i;
    for (i = 0; i < k; i++)
        x[i] = x[i] > 0 ? x[i] : 0;
}

/* conv + BatchNorm of the module `prefix` (conv "<prefix>.conv<j>", bn "<prefix>.bn<j>"). */
static int64_t dconv_bn(const struct dtab *d, const char *conv, const char *bn, const double *x,
                        int64_t n, int64_t c, int64_t h, int64_t co, int64_t k, int64_t s, double *y)
{
    const int64_t oh = dconv(x, n, c, h, dget(d, conv, "weight"), co, k, s, k / 2, y);
    dbn(y, n, co, oh * oh, dget(d, bn, "weight"), dget(d, bn, "bias"));
    return oh;
}

/* The ft_opts backbone in double: features [n, 8] of one view x [n, 3, h, h]. */
static void ref_backbone(const struct dtab *d, const double *x, int64_t n, int64_t h, double *feat)
{
    const size_t big = (size_t)(n * 8 * h * h);
    double *a = malloc(big * sizeof *a), *b = malloc(big * sizeof *b), *c = malloc(big * sizeof *c),
           *s = malloc(big * sizeof *s);
    int64_t i, k, oh;
    dconv_bn(d, "backbone.conv1", "backbone.bn1", x, n, 3, h, 4, 3, 1, a);
    drelu(a, n * 4 * h * h);
    dconv_bn(d, "backbone.layer1.0.conv1", "backbone.layer1.0.bn1", a, n, 4, h, 4, 3, 1, b);
    drelu(b, n * 4 * h * h);
    dconv_bn(d, "backbone.layer1.0.conv2", "backbone.layer1.0.bn2", b, n, 4, h, 4, 3, 1, c);
    for (i = 0; i < n * 4 * h * h; i++)
        a[i] = c[i] + a[i] > 0 ? c[i] + a[i] : 0;
    oh = dconv_bn(d, "backbone.layer2.0.conv1", "backbone.layer2.0.bn1", a, n, 4, h, 8, 3, 2, b);
    drelu(b, n * 8 * oh * oh);
    dconv_bn(d, "backbone.layer2.0.conv2", "backbone.layer2.0.bn2", b, n, 8, oh, 8, 3, 1, c);
    dconv_bn(d, "backbone.layer2.0.downsample.0", "backbone.layer2.0.downsample.1", a, n, 4, h, 8,
             1, 2, s);
    for (i = 0; i < n * 8; i++) {
        double acc = 0;
        for (k = 0; k < oh * oh; k++) {
            const double e = c[i * oh * oh + k] + s[i * oh * oh + k];
            acc += e > 0 ? e : 0;
        }
        feat[i] = acc / (double)(oh * oh);
    }
    free(a);
    free(b);
    free(c);
    free(s);
}

/* sum(r * backbone(x)) for one view */
static double ref_ft_loss(const struct dtab *d, const double *x, const double *r, int64_t n,
                          int64_t h)
{
    double feat[64], l = 0;
    int64_t i;
    ref_backbone(d, x, n, h, feat);
    for (i = 0; i < n * 8; i++)
        l += r[i] * feat[i];
    return l;
}

START_TEST(backbone_backward_matches_finite_differences)
{
    enum { N = 4, HW = 6 };
    const int64_t per = N * 3 * HW * HW;
    bt_model *m = test_model(ft_opts, NULL);
    bt_tensor *x[NV], *f[NV], *r[NV], *dx[NV];
    double *xd[NV], *rd[NV], *fdx = malloc((size_t)per * sizeof(double));
    struct dtab d;
    static const char *const checked[] = {"backbone.conv1.weight", "backbone.bn1.weight",
                                          "backbone.layer1.0.conv2.weight",
                                          "backbone.layer2.0.conv1.weight",
                                          "backbone.layer2.0.bn2.bias",
                                          "backbone.layer2.0.downsample.0.weight"};
    double worst = 0;
    int32_t v, c;
    int64_t i;

    golden_fill_model(m);
    dtab_load(&d, m);
    for (v = 0; v < NV; v++) {
        x[v] = tensor(4, N, 3, HW, HW);
        dx[v] = tensor(4, N, 3, HW, HW);
        f[v] = tensor(2, N, 8, 0, 0);
        r[v] = tensor(2, N, 8, 0, 0);
        fill_pattern(x[v], 3000 + (uint64_t)v, 2.0);
        fill_pattern(r[v], 3100 + (uint64_t)v, 1.0);
        xd[v] = malloc((size_t)per * sizeof(double));
        rd[v] = malloc(N * 8 * sizeof(double));
        for (i = 0; i < per; i++)
            xd[v][i] = bt_tensor_data(x[v])[i];
        for (i = 0; i < N * 8; i++)
            rd[v][i] = bt_tensor_data(r[v])[i];
    }
    ck_assert_int_eq(bt_model_forward_backbone(m, NV, (const bt_tensor *const *)x, f), BT_OK);
    ck_assert_int_eq(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)r, dx), BT_OK);

    for (v = 0; v < NV; v++) { /* dL/dx: every entry */
        double err;
        for (i = 0; i < per; i++) {
            const double keep = xd[v][i];
            double lp, lm;
            xd[v][i] = keep + FD_H;
            lp = ref_ft_loss(&d, xd[v], rd[v], N, HW);
            xd[v][i] = keep - FD_H;
            lm = ref_ft_loss(&d, xd[v], rd[v], N, HW);
            xd[v][i] = keep;
            fdx[i] = (lp - lm) / (2 * FD_H);
        }
        err = rel_err_fd(bt_tensor_data(dx[v]), fdx, per);
        ck_assert_msg(err <= TOL, "dx[%d] vs finite differences: %g", (int)v, err);
        worst = fmax(worst, err);
    }
    report("backbone dx vs finite differences", worst);
    worst = 0;
    for (c = 0; c < (int32_t)(sizeof checked / sizeof *checked); c++) { /* weights: the first 24 */
        const char *dot = strrchr(checked[c], '.');
        char prefix[96];
        bt_tensor *g = grad_of(m, checked[c]);
        const int64_t k = bt_tensor_numel(g) < 24 ? bt_tensor_numel(g) : 24;
        double want[24], *w, err;
        snprintf(prefix, sizeof prefix, "%.*s", (int)(dot - checked[c]), checked[c]);
        w = dget(&d, prefix, dot + 1);
        for (i = 0; i < k; i++) {
            const double keep = w[i];
            double lp = 0, lm = 0;
            w[i] = keep + FD_H;
            for (v = 0; v < NV; v++)
                lp += ref_ft_loss(&d, xd[v], rd[v], N, HW);
            w[i] = keep - FD_H;
            for (v = 0; v < NV; v++)
                lm += ref_ft_loss(&d, xd[v], rd[v], N, HW);
            w[i] = keep;
            want[i] = (lp - lm) / (2 * FD_H);
        }
        err = rel_err_fd(bt_tensor_data(g), want, k);
        ck_assert_msg(err <= TOL, "%s vs finite differences: %g", checked[c], err);
        worst = fmax(worst, err);
    }
    report("backbone weights vs finite differences", worst);
    for (v = 0; v < NV; v++) {
        free(xd[v]);
        free(rd[v]);
    }
    free(fdx);
    dtab_free(&d);
    free_all(x, NV);
    free_all(f, NV);
    free_all(r, NV);
    free_all(dx, NV);
    bt_model_free(m);
}
END_TEST

/* none_opts' projector in double: sum(r * z) of one view x [n, 12]. */
static double ref_none_loss(const struct dtab *d, const double *x, const double *r, int64_t n)
{
    double h[8 * 16], l = 0;
    const double *w0 = dget(d, "projector.0", "weight"), *w3 = dget(d, "projector.3", "weight");
    int64_t b, o, i;
    for (b = 0; b < n; b++)
        for (o = 0; o < 16; o++) {
            double acc = 0;
            for (i = 0; i < 12; i++)
                acc += w0[o * 12 + i] * x[b * 12 + i];
            h[b * 16 + o] = acc;
        }
    dbn(h, n, 16, 1, dget(d, "projector.1", "weight"), dget(d, "projector.1", "bias"));
    drelu(h, n * 16);
    for (b = 0; b < n; b++)
        for (o = 0; o < 8; o++) {
            double acc = 0;
            for (i = 0; i < 16; i++)
                acc += w3[o * 16 + i] * h[b * 16 + i];
            l += r[b * 8 + o] * acc;
        }
    return l;
}

START_TEST(input_grad_matches_finite_differences)
{
    enum { N = 8 };
    bt_model *m = test_model(none_opts, NULL);
    bt_tensor *x[NV], *z[NV], *r[NV], *dx;
    double xd[N * 12], rd[N * 8], want[N * 12], worst = 0;
    struct dtab d;
    int32_t v;
    int64_t i;

    golden_fill_model(m);
    dtab_load(&d, m);
    for (v = 0; v < NV; v++) {
        x[v] = tensor(2, N, 12, 0, 0);
        z[v] = tensor(2, N, 8, 0, 0);
        r[v] = tensor(2, N, 8, 0, 0);
        fill_pattern(x[v], 3200 + (uint64_t)v, 2.0);
        fill_pattern(r[v], 3300 + (uint64_t)v, 1.0);
    }
    dx = tensor(2, N, 12, 0, 0);
    ck_assert_int_eq(bt_model_forward(m, NV, (const bt_tensor *const *)x, z), BT_OK);
    ck_assert_int_eq(bt_model_backward(m, NV, (const bt_tensor *const *)r), BT_OK);
    for (v = 0; v < NV; v++) {
        double err;
        for (i = 0; i < N * 12; i++)
            xd[i] = bt_tensor_data(x[v])[i];
        for (i = 0; i < N * 8; i++)
            rd[i] = bt_tensor_data(r[v])[i];
        for (i = 0; i < N * 12; i++) {
            const double keep = xd[i];
            double lp, lm;
            xd[i] = keep + FD_H;
            lp = ref_none_loss(&d, xd, rd, N);
            xd[i] = keep - FD_H;
            lm = ref_none_loss(&d, xd, rd, N);
            xd[i] = keep;
            want[i] = (lp - lm) / (2 * FD_H);
        }
        ck_assert_int_eq(bt_model_input_grad(m, v, dx), BT_OK);
        err = rel_err_fd(bt_tensor_data(dx), want, N * 12);
        ck_assert_msg(err <= TOL, "input gradient of view %d vs finite differences: %g", (int)v, err);
        worst = fmax(worst, err);
    }
    report("arch none input gradient vs finite differences", worst);
    dtab_free(&d);
    free_all(x, NV);
    free_all(z, NV);
    free_all(r, NV);
    bt_tensor_free(dx);
    bt_model_free(m);
}
END_TEST

/* ---- misuse ------------------------------------------------------------------------ */

START_TEST(backbone_misuse_is_reported_and_changes_nothing)
{
    enum { N = 4, HW = 6 };
    bt_model *m = test_model(ft_opts, NULL);
    bt_tensor *x[NV], *f[NV], *dx[NV], *z[NV], *bad_f = tensor(2, N, 7, 0, 0),
                                             *bad_x = tensor(4, N, 3, HW, HW + 1);
    bt_tensor *mixed[NV];
    float *before;
    int64_t count;
    int32_t v;

    for (v = 0; v < NV; v++) {
        x[v] = tensor(4, N, 3, HW, HW);
        dx[v] = tensor(4, N, 3, HW, HW);
        f[v] = tensor(2, N, 8, 0, 0);
        z[v] = tensor(2, N, 16, 0, 0);
        fill_pattern(x[v], 3400 + (uint64_t)v, 2.0);
        fill_pattern(f[v], 3500 + (uint64_t)v, 1.0);
    }
    before = snapshot(m, &count);
    {
        static const char *const w[] = {"bt_model_backward_backbone", "bt_model_forward_backbone",
                                        NULL};
        expect_fail(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)f, dx), BT_E_STATE, w);
    }
    {
        static const char *const w[] = {"features[0]", "[4, 7]", "[4, 8]", NULL};
        mixed[0] = bad_f;
        mixed[1] = f[1];
        expect_fail(bt_model_forward_backbone(m, NV, (const bt_tensor *const *)x, mixed), BT_E_SHAPE,
                    w);
    }
    assert_unchanged(m, before, count);

    /* a bt_model_forward's cache is not the backbone's, and the other way round */
    ck_assert_int_eq(bt_model_forward(m, NV, (const bt_tensor *const *)x, z), BT_OK);
    free(before);
    before = snapshot(m, &count);
    {
        static const char *const w[] = {"bt_model_forward", "bt_model_backward", NULL};
        expect_fail(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)f, dx), BT_E_STATE, w);
    }
    assert_unchanged(m, before, count);
    ck_assert_int_eq(bt_model_forward_backbone(m, NV, (const bt_tensor *const *)x, f), BT_OK);
    free(before);
    before = snapshot(m, &count);
    {
        static const char *const w[] = {"bt_model_backward_backbone", NULL};
        expect_fail(bt_model_backward(m, NV, (const bt_tensor *const *)z), BT_E_STATE, w);
    }
    {
        static const char *const w[] = {"nviews is 1", "had 2", NULL};
        expect_fail(bt_model_backward_backbone(m, 1, (const bt_tensor *const *)f, dx), BT_E_SHAPE, w);
    }
    {
        static const char *const w[] = {"dfeatures[1]", "[4, 7]", "[4, 8]", NULL};
        mixed[0] = f[0];
        mixed[1] = bad_f;
        expect_fail(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)mixed, dx),
                    BT_E_SHAPE, w);
    }
    {
        static const char *const w[] = {"dx[1]", "[4, 3, 6, 7]", "[4, 3, 6, 6]", NULL};
        mixed[0] = dx[0];
        mixed[1] = bad_x;
        expect_fail(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)f, mixed),
                    BT_E_SHAPE, w);
    }
    {
        static const char *const w[] = {"dfeatures is NULL", NULL};
        expect_fail(bt_model_backward_backbone(m, NV, NULL, dx), BT_E_MISUSE, w);
    }
    {
        static const char *const w[] = {"only for model.arch none", NULL};
        expect_fail(bt_model_input_grad(m, 0, f[0]), BT_E_UNSUPPORTED, w);
    }
    assert_unchanged(m, before, count);
    /* the failed calls kept the forward: its backward still runs, once */
    ck_assert_msg(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)f, dx) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bt_model_backward_backbone(m, NV, (const bt_tensor *const *)f, dx), BT_E_STATE);
    free(before);
    free_all(x, NV);
    free_all(f, NV);
    free_all(dx, NV);
    free_all(z, NV);
    bt_tensor_free(bad_f);
    bt_tensor_free(bad_x);
    bt_model_free(m);
}
END_TEST

START_TEST(projector_only_misuse)
{
    bt_config *c;
    bt_model *m = (bt_model *)&c; /* not NULL: create must clear it */
    bt_tensor *x[NV], *z[NV], *dx = tensor(2, 4, 12, 0, 0), *bad = tensor(2, 4, 11, 0, 0),
                               *img = tensor(4, 4, 12, 1, 1);
    float *before;
    int64_t count;
    int32_t v;
    {
        static const char *const kv[] = {"model.arch", "none", NULL};
        static const char *const w[] = {"model.feature_dim", "model.arch none", NULL};
        c = test_config(kv, NULL);
        expect_fail(bt_model_create(&m, c), BT_E_INVALID_ARG, w);
        ck_assert_ptr_null(m);
        bt_config_free(c);
    }
    {
        static const char *const kv[] = {"model.arch", "resnet18", "model.feature_dim", "5", NULL};
        static const char *const w[] = {"model.feature_dim is 5", "resnet18", NULL};
        c = test_config(kv, NULL);
        expect_fail(bt_model_create(&m, c), BT_E_INVALID_ARG, w);
        bt_config_free(c);
    }
    m = test_model(none_opts, NULL);
    for (v = 0; v < NV; v++) {
        x[v] = tensor(2, 4, 12, 0, 0);
        z[v] = tensor(2, 4, 8, 0, 0);
        fill_pattern(x[v], 3600 + (uint64_t)v, 1.0);
    }
    before = snapshot(m, &count);
    {
        static const char *const w[] = {"model.arch is none", NULL};
        expect_fail(bt_model_forward_backbone(m, NV, (const bt_tensor *const *)x, z),
                    BT_E_UNSUPPORTED, w);
    }
    {
        static const char *const w[] = {"x[0]", "[4, 12, 1, 1]", "[N, 12]", NULL};
        bt_tensor *mix[NV] = {img, x[1]};
        expect_fail(bt_model_forward(m, NV, (const bt_tensor *const *)mix, z), BT_E_SHAPE, w);
    }
    {
        static const char *const w[] = {"bt_model_backward", NULL};
        expect_fail(bt_model_input_grad(m, 0, dx), BT_E_STATE, w);
    }
    assert_unchanged(m, before, count);
    ck_assert_int_eq(bt_model_forward(m, NV, (const bt_tensor *const *)x, z), BT_OK);
    ck_assert_int_eq(bt_model_backward(m, NV, (const bt_tensor *const *)z), BT_OK);
    {
        static const char *const w[] = {"dx is [4, 11]", "[4, 12]", NULL};
        expect_fail(bt_model_input_grad(m, 0, bad), BT_E_SHAPE, w);
    }
    {
        static const char *const w[] = {"view 2", NULL};
        expect_fail(bt_model_input_grad(m, 2, dx), BT_E_INVALID_ARG, w);
    }
    {
        static const char *const w[] = {"dx", NULL};
        expect_fail(bt_model_input_grad(m, 0, NULL), BT_E_MISUSE, w);
    }
    ck_assert_int_eq(bt_model_input_grad(m, 1, dx), BT_OK);
    {
        size_t bytes = 0;
        const int64_t shape[2] = {4, 12};
        ck_assert_msg(bt_model_workspace_bytes(m, NV, 2, shape, &bytes) == BT_OK, "%s",
                      bt_last_error());
        ck_assert(bytes > 0);
        ck_assert_int_eq(bt_model_workspace_bytes(m, NV, 4, shape, &bytes), BT_E_INVALID_ARG);
    }
    free(before);
    free_all(x, NV);
    free_all(z, NV);
    bt_tensor_free(dx);
    bt_tensor_free(bad);
    bt_tensor_free(img);
    bt_model_free(m);
}
END_TEST

START_TEST(projector_only_checkpoint_round_trips)
{
    bt_model *m = test_model(none_opts, NULL), *back;
    bt_config *c;
    char buf[32];
    int32_t t;
    golden_fill_model(m);
    ck_assert_msg(bt_checkpoint_save(test_path("none.safetensors"), m, NULL, NULL) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_msg(bt_config_read_checkpoint(c, test_path("none.safetensors")) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bt_config_get(c, "model.arch", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "none");
    ck_assert_int_eq(bt_config_get(c, "model.feature_dim", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "12");
    ck_assert_msg(bt_model_create(&back, c) == BT_OK, "%s", bt_last_error());
    ck_assert_msg(bt_checkpoint_load(test_path("none.safetensors"), back, NULL, NULL) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bt_model_tensor_count(back), bt_model_tensor_count(m));
    for (t = 0; t < bt_model_tensor_count(m); t++) {
        bt_tensor *a, *b;
        ck_assert_int_eq(bt_model_tensor(m, t, NULL, &a, NULL), BT_OK);
        ck_assert_int_eq(bt_model_tensor(back, t, NULL, &b, NULL), BT_OK);
        ck_assert_mem_eq(bt_tensor_data(a), bt_tensor_data(b),
                         (size_t)bt_tensor_numel(a) * sizeof(float));
    }
    bt_config_free(c);
    bt_model_free(back);
    bt_model_free(m);
}
END_TEST

Suite *backbone_suite(void)
{
    Suite *s = suite_create("backbone");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, finetune_gradients_match_pytorch);
    tcase_add_test(tc, projector_only_matches_pytorch);
    tcase_add_test(tc, backbone_backward_matches_finite_differences);
    tcase_add_test(tc, input_grad_matches_finite_differences);
    tcase_add_test(tc, backbone_misuse_is_reported_and_changes_nothing);
    tcase_add_test(tc, projector_only_misuse);
    tcase_add_test(tc, projector_only_checkpoint_round_trips);
    suite_add_tcase(s, tc);
    return s;
}
