/* check_layer_fd.c - every layer's backward against central finite differences
 * of an independent double-precision reference of its forward.
 *
 * For random x, parameters and r, L = sum(r * layer(x)). The float layer's
 * backward with dy = r gives dL/dx and the parameter gradients; the reference
 * forward, written here from PyTorch's definitions and evaluated in double,
 * gives the same derivatives by central differences (h = 1e-5, error ~1e-10).
 * The reference also checks the forward values. */
#include "barlow.h"
#include "golden.h"
#include "layers/layer.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4
#define H 1e-5

enum { K_CONV, K_LINEAR, K_BN, K_RELU, K_MAXPOOL, K_AVGPOOL };

struct fd {
    int kind;
    int64_t n, c, h, w, co, k, s, p; /* conv, pools; linear: c = in, co = out */
    int bias, training, groups;
    double eps;
    int64_t nx, nw, nb, ny;
    double *x, *wt, *b, *r;
    double *rm, *rv; /* batchnorm eval */
    int64_t ydim[4];
    int ynd;
};

static uint64_t rs = 0x9e3779b97f4a7c15ULL;

static double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* Random values representable in float, so the layer and the reference see the same inputs. */
static double *rand_array(int64_t n, double scale, double offset)
{
    double *a = malloc((size_t)(n ? n : 1) * sizeof *a);
    int64_t i;
    for (i = 0; i < n; i++)
        a[i] = (double)(float)(offset + scale * urand());
    return a;
}

/* ---- double-precision references ------------------------------------------------ */

static void ref_forward(const struct fd *f, double *y)
{
    int64_t n, c, o, i, j, oy, ox;
    if (f->kind == K_CONV) {
        int64_t ho = f->ydim[2], wo = f->ydim[3];
        for (n = 0; n < f->n; n++)
            for (o = 0; o < f->co; o++)
                for (oy = 0; oy < ho; oy++)
                    for (ox = 0; ox < wo; ox++) {
                        double s = f->bias ? f->b[o] : 0.0;
                        for (c = 0; c < f->c; c++)
                            for (i = 0; i < f->k; i++)
                                for (j = 0; j < f->k; j++) {
                                    int64_t iy = oy * f->s - f->p + i, ix = ox * f->s - f->p + j;
                                    if (iy < 0 || iy >= f->h || ix < 0 || ix >= f->w)
                                        continue;
                                    s += f->wt[((o * f->c + c) * f->k + i) * f->k + j] *
                                         f->x[((n * f->c + c) * f->h + iy) * f->w + ix];
                                }
                        y[((n * f->co + o) * ho + oy) * wo + ox] = s;
                    }
    } else if (f->kind == K_LINEAR) {
        for (n = 0; n < f->n; n++)
            for (o = 0; o < f->co; o++) {
                double s = f->bias ? f->b[o] : 0.0;
                for (c = 0; c < f->c; c++)
                    s += f->wt[o * f->c + c] * f->x[n * f->c + c];
                y[n * f->co + o] = s;
            }
    } else if (f->kind == K_BN) {
        int64_t sp = f->h * f->w, ns = f->n / f->groups, g, q;
        for (g = 0; g < f->groups; g++)
            for (c = 0; c < f->c; c++) {
                double mean = 0, var = 0, inv, m = (double)(ns * sp);
                if (f->training) {
                    for (n = g * ns; n < (g + 1) * ns; n++)
                        for (q = 0; q < sp; q++)
                            mean += f->x[(n * f->c + c) * sp + q];
                    mean /= m;
                    for (n = g * ns; n < (g + 1) * ns; n++)
                        for (q = 0; q < sp; q++) {
                            double d = f->x[(n * f->c + c) * sp + q] - mean;
                            var += d * d;
                        }
                    var /= m;
                } else {
                    mean = f->rm[c];
                    var = f->rv[c];
                }
                inv = 1.0 / sqrt(var + f->eps);
                for (n = g * ns; n < (g + 1) * ns; n++)
                    for (q = 0; q < sp; q++) {
                        int64_t idx = (n * f->c + c) * sp + q;
                        y[idx] = (f->x[idx] - mean) * inv * (f->bias ? f->wt[c] : 1.0) +
                                 (f->bias ? f->b[c] : 0.0);
                    }
            }
    } else if (f->kind == K_RELU) {
        for (i = 0; i < f->nx; i++)
            y[i] = f->x[i] > 0 ? f->x[i] : 0.0;
    } else if (f->kind == K_MAXPOOL) {
        int64_t ho = f->ydim[2], wo = f->ydim[3];
        for (n = 0; n < f->n * f->c; n++)
            for (oy = 0; oy < ho; oy++)
                for (ox = 0; ox < wo; ox++) {
                    double m = -INFINITY;
                    for (i = 0; i < f->k; i++)
                        for (j = 0; j < f->k; j++) {
                            int64_t iy = oy * f->s - f->p + i, ix = ox * f->s - f->p + j;
                            if (iy >= 0 && iy < f->h && ix >= 0 && ix < f->w)
                                m = fmax(m, f->x[(n * f->h + iy) * f->w + ix]);
                        }
                    y[(n * ho + oy) * wo + ox] = m;
                }
    } else {
        for (n = 0; n < f->n * f->c; n++) {
            double s = 0;
            for (i = 0; i < f->h * f->w; i++)
                s += f->x[n * f->h * f->w + i];
            y[n] = s / (double)(f->h * f->w);
        }
    }
}

static double loss(const struct fd *f, double *y)
{
    double s = 0;
    int64_t i;
    ref_forward(f, y);
    for (i = 0; i < f->ny; i++)
        s += f->r[i] * y[i];
    return s;
}

/* Central differences of L with respect to every element of a. */
static void numeric_grad(struct fd *f, double *a, int64_t n, double *out, double *ybuf)
{
    int64_t i;
    for (i = 0; i < n; i++) {
        double keep = a[i], lp, lm;
        a[i] = keep + H;
        lp = loss(f, ybuf);
        a[i] = keep - H;
        lm = loss(f, ybuf);
        a[i] = keep;
        out[i] = (lp - lm) / (2 * H);
    }
}

static bt_tensor *to_tensor(const double *a, int nd, const int64_t *shape)
{
    bt_tensor *t = NULL;
    int64_t i;
    ck_assert_int_eq(bt_tensor_create(&t, nd, shape), BT_OK);
    for (i = 0; i < bt_tensor_numel(t); i++)
        bt_tensor_data(t)[i] = (float)a[i];
    return t;
}

static double err_vs(const bt_tensor *t, const double *want, int64_t n)
{
    ck_assert_int_eq(bt_tensor_numel(t), n);
    return rel_err_fd(bt_tensor_data((bt_tensor *)t), want, n);
}

/* Build the layer for f, run forward + backward, and compare with the reference. */
static void check_fd(struct fd *f, bt_layer *l, const char *what)
{
    int64_t xshape[4] = {f->n, f->c, f->h, f->w};
    int xnd = f->kind == K_LINEAR ? 2 : (f->kind == K_BN && f->h * f->w == 1 ? 2 : 4);
    bt_tensor *x, *y = NULL, *dy, *dx = NULL;
    double *yref, *num, e;
    int32_t ond;
    if (f->kind == K_CONV || f->kind == K_LINEAR || (f->kind == K_BN && f->bias)) {
        {
            int64_t i;
            for (i = 0; i < f->nw; i++)
                bti_layer_value(l, 0)->data[i] = (float)f->wt[i];
            for (i = 0; i < f->nb; i++)
                bti_layer_value(l, 1)->data[i] = (float)f->b[i];
        }
    }
    if (f->kind == K_BN && !f->training) {
        int ri = f->bias ? 2 : 0;
        int64_t i;
        for (i = 0; i < f->c; i++) {
            bti_layer_value(l, ri)->data[i] = (float)f->rm[i];
            bti_layer_value(l, ri + 1)->data[i] = (float)f->rv[i];
        }
    }
    x = to_tensor(f->x, xnd, xshape);
    ck_assert_int_eq(bti_layer_output_shape(l, xnd, xshape, &ond, f->ydim), BT_OK);
    f->ynd = ond;
    ck_assert_int_eq(bt_tensor_create(&y, ond, f->ydim), BT_OK);
    f->ny = bt_tensor_numel(y);
    f->r = rand_array(f->ny, 1.0, 0.0);
    dy = to_tensor(f->r, ond, f->ydim);
    ck_assert_int_eq(bt_tensor_create(&dx, xnd, xshape), BT_OK);
    ck_assert_int_eq(bti_layer_forward(l, x, y, f->training, f->groups), BT_OK);
    ck_assert_int_eq(bti_layer_backward(l, dy, dx), BT_OK);

    yref = malloc((size_t)f->ny * sizeof *yref);
    ref_forward(f, yref);
    e = err_vs(y, yref, f->ny);
    ck_assert_msg(e <= TOL, "%s: forward relative error %.3g", what, e);

    num = malloc((size_t)(f->nx > f->nw ? f->nx : f->nw) * sizeof *num);
    numeric_grad(f, f->x, f->nx, num, yref);
    e = err_vs(dx, num, f->nx);
    ck_assert_msg(e <= TOL, "%s: dx relative error %.3g vs finite differences", what, e);
    if (f->nw) {
        numeric_grad(f, f->wt, f->nw, num, yref);
        e = err_vs(bti_layer_grad(l, 0), num, f->nw);
        ck_assert_msg(e <= TOL, "%s: dweight relative error %.3g vs finite differences", what, e);
    }
    if (f->nb) {
        numeric_grad(f, f->b, f->nb, num, yref);
        e = err_vs(bti_layer_grad(l, 1), num, f->nb);
        ck_assert_msg(e <= TOL, "%s: dbias relative error %.3g vs finite differences", what, e);
    }
    free(yref);
    free(num);
    free(f->x);
    free(f->wt);
    free(f->b);
    free(f->r);
    free(f->rm);
    free(f->rv);
    bt_tensor_free(x);
    bt_tensor_free(y);
    bt_tensor_free(dy);
    bt_tensor_free(dx);
    bti_layer_destroy(l);
}

/* mode: conv2d strategy (0 automatic; 3 the padded-grid form, 5 the direct form,
 * 6 its flat form, 7 Winograd, wherever they apply, on 2 threads) */
static void conv_case_form(int64_t n, int64_t c, int64_t h, int64_t w, int64_t co, int k, int s,
                           int p, int bias, int64_t chunk, const char *form)
{
    struct fd f = {0};
    bt_layer *l = NULL;
    f.kind = K_CONV;
    f.n = n, f.c = c, f.h = h, f.w = w, f.co = co, f.k = k, f.s = s, f.p = p, f.bias = bias;
    f.training = 1, f.groups = 1;
    f.nx = n * c * h * w;
    f.nw = co * c * k * k;
    f.nb = bias ? co : 0;
    f.x = rand_array(f.nx, 1.0, 0.0);
    f.wt = rand_array(f.nw, 0.5, 0.0);
    f.b = rand_array(f.nb, 0.5, 0.0);
    ck_assert_int_eq(bti_layer_conv2d_new(&l, (int)c, (int)co, k, s, p, bias, "fd"), BT_OK);
    bti_layer_conv2d_set_chunk(l, chunk);
    if (form) {
        bti_layer_conv2d_set_form(l, form);
        bti_layer_set_threads(l, 2);
    }
    check_fd(&f, l, form ? form : "conv2d");
}

static void conv_case(int64_t n, int64_t c, int64_t h, int64_t w, int64_t co, int k, int s, int p,
                      int bias, int64_t chunk)
{
    conv_case_form(n, c, h, w, co, k, s, p, bias, chunk, NULL);
}

START_TEST(conv_gradients)
{
    conv_case(2, 3, 7, 6, 4, 3, 2, 1, 1, 0);
    conv_case(2, 3, 7, 6, 4, 3, 2, 1, 1, 1);
    conv_case(1, 2, 5, 5, 3, 1, 1, 0, 0, 0);
    conv_case(3, 2, 5, 4, 3, 1, 1, 0, 1, 1);
    conv_case(2, 2, 6, 6, 2, 4, 1, 2, 0, 0); /* even kernel, output larger than input */
    conv_case(2, 2, 9, 9, 3, 1, 2, 0, 0, 0);
    conv_case(1, 1, 11, 11, 2, 7, 2, 3, 1, 0);
    /* stride-1 "same" convolutions read the padded input in place (the padded-grid form) */
    conv_case_form(3, 2, 5, 4, 3, 3, 1, 1, 1, 0, "grid");
    conv_case_form(4, 2, 6, 5, 3, 5, 1, 2, 0, 0, "grid");
    conv_case_form(2, 3, 4, 4, 2, 1, 1, 0, 0, 0, "grid"); /* 1x1: not a grid case, per image */
    /* the direct 3x3 form (AVX-512), stride 1 and 2, odd sizes */
    conv_case_form(3, 2, 5, 4, 3, 3, 1, 1, 1, 0, "direct");
    conv_case_form(3, 2, 7, 5, 3, 3, 2, 1, 1, 0, "direct");
    conv_case_form(3, 2, 5, 4, 3, 3, 1, 1, 1, 0, "flat"); /* its flat form */
    conv_case_form(3, 2, 5, 4, 3, 3, 1, 1, 1, 0, "winograd"); /* Winograd */
    conv_case_form(2, 3, 4, 3, 2, 3, 1, 1, 0, 0, "winograd");
}
END_TEST

START_TEST(linear_gradients)
{
    struct fd f = {0};
    bt_layer *l = NULL;
    f.kind = K_LINEAR;
    f.n = 3, f.c = 5, f.co = 4, f.h = 1, f.w = 1, f.bias = 1, f.training = 1, f.groups = 1;
    f.nx = 15, f.nw = 20, f.nb = 4;
    f.x = rand_array(f.nx, 1.0, 0.0);
    f.wt = rand_array(f.nw, 0.5, 0.0);
    f.b = rand_array(f.nb, 0.5, 0.0);
    ck_assert_int_eq(bti_layer_linear_new(&l, 5, 4, 1, "fd"), BT_OK);
    check_fd(&f, l, "linear");
}
END_TEST

static void bn_case(int64_t n, int64_t c, int64_t h, int64_t w, int affine, int training,
                    int groups, const char *what)
{
    struct fd f = {0};
    bt_layer *l = NULL;
    f.kind = K_BN;
    f.n = n, f.c = c, f.h = h, f.w = w, f.bias = affine, f.training = training;
    f.groups = groups, f.eps = 1e-5;
    f.nx = n * c * h * w;
    f.nw = affine ? c : 0;
    f.nb = affine ? c : 0;
    f.x = rand_array(f.nx, 2.0, 0.3);
    f.wt = rand_array(f.nw, 0.5, 1.0);
    f.b = rand_array(f.nb, 0.5, 0.0);
    f.rm = rand_array(c, 0.5, 0.0);
    f.rv = rand_array(c, 0.5, 1.0);
    ck_assert_int_eq(bti_layer_batchnorm_new(&l, (int)c, 1e-5, 0.1, affine, "fd"), BT_OK);
    bti_layer_set_threads(l, 2);
    check_fd(&f, l, what);
}

START_TEST(batchnorm_gradients)
{
    bn_case(4, 3, 3, 3, 1, 1, 1, "bn [4,3,3,3] train");
    bn_case(4, 3, 3, 3, 1, 1, 2, "bn [4,3,3,3] train groups 2");
    bn_case(6, 4, 1, 1, 1, 1, 1, "bn [6,4] train");
    bn_case(12, 4, 1, 1, 1, 1, 3, "bn [12,4] train groups 3");
    bn_case(5, 2, 2, 3, 0, 1, 1, "bn no affine train");
    bn_case(3, 2, 2, 2, 1, 0, 1, "bn eval");
    bn_case(4, 70, 1, 1, 1, 1, 1, "bn [4,70] train"); /* more than one channel block */
}
END_TEST

START_TEST(relu_and_pool_gradients)
{
    struct fd f = {0};
    bt_layer *l = NULL;
    int64_t i;
    f.kind = K_RELU, f.n = 2, f.c = 3, f.h = 4, f.w = 3, f.groups = 1, f.training = 1;
    f.nx = 72;
    f.x = rand_array(f.nx, 1.0, 0.0);
    for (i = 0; i < f.nx; i++) /* keep away from the kink at 0 */
        if (fabs(f.x[i]) < 1e-2)
            f.x[i] = 0.5;
    ck_assert_int_eq(bti_layer_relu_new(&l, "fd"), BT_OK);
    check_fd(&f, l, "relu");

    memset(&f, 0, sizeof f);
    f.kind = K_MAXPOOL, f.n = 2, f.c = 2, f.h = 7, f.w = 7, f.k = 3, f.s = 2, f.p = 1;
    f.groups = 1, f.training = 1, f.nx = 196;
    f.x = rand_array(f.nx, 1.0, 0.0);
    ck_assert_int_eq(bti_layer_maxpool2d_new(&l, 3, 2, 1, "fd"), BT_OK);
    check_fd(&f, l, "maxpool2d");

    memset(&f, 0, sizeof f);
    f.kind = K_AVGPOOL, f.n = 2, f.c = 3, f.h = 3, f.w = 4, f.groups = 1, f.training = 1;
    f.nx = 72;
    f.x = rand_array(f.nx, 1.0, 0.0);
    ck_assert_int_eq(bti_layer_avgpool_new(&l, "fd"), BT_OK);
    check_fd(&f, l, "avgpool");
}
END_TEST

Suite *layer_fd_suite(void)
{
    Suite *s = suite_create("layer_fd");
    TCase *tc = tcase_create("finite differences");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, conv_gradients);
    tcase_add_test(tc, linear_gradients);
    tcase_add_test(tc, batchnorm_gradients);
    tcase_add_test(tc, relu_and_pool_gradients);
    suite_add_tcase(s, tc);
    return s;
}
