/* check_loss.c - the Barlow Twins loss: PyTorch golden values for every mode and
 * both paths, finite differences against a double-precision reference, the
 * invariances of the normalisation, C on demand, and misuse. */
#include "barlow.h"
#include "golden.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const modes[] = {"barlow", "invariance_only", "redundancy_only", "feature_norm",
                                    "xent"};
enum { NMODES = 5, XENT = 4, FEATURE_NORM = 3 };

/* ---- inputs shared with tests/golden/gen_loss.py (golden_uni, bit for bit) ---- */

static void gen_inputs(int64_t n, int64_t d, float *za, float *zb)
{
    int64_t i, j;
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) {
            uint64_t k = (uint64_t)(i * d + j);
            float u1 = golden_uni(1, k), u2 = golden_uni(2, k);
            float sc = (float)(1 + j % 4), off = 0.25f * (float)(j % 3);
            float t = u1 * sc;
            za[k] = t + off;
            zb[k] = u1 + 0.5f * u2;
        }
}

static bt_tensor *mat(int64_t n, int64_t d)
{
    int64_t shape[2] = {n, d};
    bt_tensor *t = NULL;
    ck_assert_int_eq(bt_tensor_create(&t, 2, shape), BT_OK);
    return t;
}

static bt_loss *make_loss(const char *mode, const char *lambda, const char *scale, const char *tau)
{
    bt_config *cfg;
    bt_loss *l = NULL;
    ck_assert_int_eq(bt_config_create(&cfg), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "loss.mode", mode), BT_OK);
    if (lambda)
        ck_assert_int_eq(bt_config_set(cfg, "loss.lambda", lambda), BT_OK);
    if (scale)
        ck_assert_int_eq(bt_config_set(cfg, "loss.scale", scale), BT_OK);
    if (tau)
        ck_assert_int_eq(bt_config_set(cfg, "loss.temperature", tau), BT_OK);
    ck_assert_int_eq(bt_loss_create(&l, cfg), BT_OK);
    bt_config_free(cfg);
    return l;
}

static double rel(double got, double want) { return fabs(got - want) / fmax(fabs(want), 1e-300); }

/* ---- double-precision reference (naive, O(N D^2)) -------------------------------- */

struct refcfg {
    int mode;
    double lambda, scale, tau;
};

static void ref_norm(int feature, int64_t n, int64_t d, const double *z, double *a)
{
    int64_t i, j;
    if (feature) {
        for (i = 0; i < n; i++) {
            double mu = 0, var = 0;
            for (j = 0; j < d; j++)
                mu += z[i * d + j];
            mu /= (double)d;
            for (j = 0; j < d; j++)
                var += (z[i * d + j] - mu) * (z[i * d + j] - mu);
            var /= (double)d;
            for (j = 0; j < d; j++)
                a[i * d + j] = (z[i * d + j] - mu) / sqrt(var + 1e-5);
        }
        return;
    }
    for (j = 0; j < d; j++) {
        double mu = 0, var = 0;
        for (i = 0; i < n; i++)
            mu += z[i * d + j];
        mu /= (double)n;
        for (i = 0; i < n; i++)
            var += (z[i * d + j] - mu) * (z[i * d + j] - mu);
        var /= (double)n;
        for (i = 0; i < n; i++)
            a[i * d + j] = (z[i * d + j] - mu) / sqrt(var + 1e-5);
    }
}

/* Loss, terms and (when c is not NULL) C, in double. */
static double ref_loss(const struct refcfg *r, int64_t n, int64_t d, const double *za,
                       const double *zb, double *on_out, double *off_out, double *c)
{
    double *a = malloc((size_t)(n * d) * sizeof *a), *b = malloc((size_t)(n * d) * sizeof *b);
    double *cc = c ? c : malloc((size_t)(d * d) * sizeof *cc);
    double on = 0, off = 0, loss;
    int64_t i, j, k;
    ref_norm(r->mode == FEATURE_NORM, n, d, za, a);
    ref_norm(r->mode == FEATURE_NORM, n, d, zb, b);
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0;
            for (k = 0; k < n; k++)
                s += a[k * d + i] * b[k * d + j];
            cc[i * d + j] = s / (double)n;
        }
    if (r->mode == XENT) {
        double m = -HUGE_VAL, s = 0;
        for (i = 0; i < d; i++)
            m = fmax(m, cc[i * d + i] / r->tau);
        for (i = 0; i < d; i++)
            s += exp(cc[i * d + i] / r->tau - m);
        on = -(m + log(s));
        m = 0;
        s = 0;
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++)
                if (i != j)
                    m = fmax(m, fmax(cc[i * d + j], 0) / r->tau);
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++)
                if (i != j)
                    s += exp(fmax(cc[i * d + j], 0) / r->tau - m);
        off = m + log(s);
        loss = on + r->lambda * off;
    } else {
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++)
                if (i == j)
                    on += (1 - cc[i * d + j]) * (1 - cc[i * d + j]);
                else
                    off += cc[i * d + j] * cc[i * d + j];
        loss = r->mode == 1 ? on : r->mode == 2 ? r->lambda * off : on + r->lambda * off;
    }
    if (on_out)
        *on_out = on;
    if (off_out)
        *off_out = off;
    free(a);
    free(b);
    if (!c)
        free(cc);
    return r->scale * loss;
}

/* ---- golden: every case, every mode, both paths --------------------------------- */

static const int64_t cases[][2] = {{8, 16}, {32, 128}, {256, 2048}, {64, 8192}, {512, 256}};

/* Relative error of a gradient against the golden data of this case/mode:
 * full arrays when stored, else the subset, the norm and the dot product. */
static double grad_err(const golden *g, const char *mode, const char *view, const float *got,
                       int64_t n, int64_t d)
{
    char name[64];
    double err = 0, norm = 0, dot = 0, wn = 0;
    int64_t i;
    snprintf(name, sizeof name, "%s.%s", mode, view);
    if (golden_has(g, name)) {
        ck_assert_int_eq(golden_numel(g, name), n * d);
        err = rel_err(got, golden_get(g, name, NULL, NULL), n * d);
    } else {
        float sub[512];
        snprintf(name, sizeof name, "%s.%s_sub", mode, view);
        ck_assert_int_eq(golden_numel(g, name), 512);
        for (i = 0; i < 512; i++)
            sub[i] = got[(int64_t)(((uint64_t)i * 2654435761ULL) % (uint64_t)(n * d))];
        err = rel_err(sub, golden_get(g, name, NULL, NULL), 512);
    }
    for (i = 0; i < n * d; i++) {
        double w = (double)golden_uni(3, (uint64_t)i);
        norm += (double)got[i] * got[i];
        dot += (double)got[i] * w;
        wn += w * w;
    }
    norm = sqrt(norm);
    snprintf(name, sizeof name, "%s.%s_norm", mode, view);
    err = fmax(err, rel(norm, golden_get(g, name, NULL, NULL)[0]));
    snprintf(name, sizeof name, "%s.%s_dot", mode, view);
    /* the dot's natural scale is ||g|| ||w|| (Cauchy-Schwarz) */
    err = fmax(err, fabs(dot - golden_get(g, name, NULL, NULL)[0]) / (norm * sqrt(wn)));
    return err;
}

static void run_golden_case(int ci)
{
    int64_t n = cases[ci][0], d = cases[ci][1];
    char file[64], name[64];
    bt_tensor *za = mat(n, d), *zb = mat(n, d), *ga[2], *gb[2];
    golden *g;
    int m, p;
    ga[0] = mat(n, d);
    ga[1] = mat(n, d);
    gb[0] = mat(n, d);
    gb[1] = mat(n, d);
    snprintf(file, sizeof file, "loss_%lldx%lld.bin", (long long)n, (long long)d);
    g = golden_load(file);
    gen_inputs(n, d, bt_tensor_data(za), bt_tensor_data(zb));
    if (golden_has(g, "za")) { /* the two generators agree bit for bit */
        ck_assert(memcmp(bt_tensor_data(za), golden_get(g, "za", NULL, NULL),
                         (size_t)(n * d) * sizeof(float)) == 0);
        ck_assert(memcmp(bt_tensor_data(zb), golden_get(g, "zb", NULL, NULL),
                         (size_t)(n * d) * sizeof(float)) == 0);
    }
    for (m = 0; m < NMODES; m++) {
        bt_loss *l = make_loss(modes[m], NULL, NULL, NULL);
        double loss[2], on[2], off[2];
        /* both paths everywhere, except that at D = 8192 the D x D path of the
         * variants that share barlow's products is left out (run time) */
        int np = m == XENT ? 1 : 2, p0 = d >= 8192 && m != 0 && m != XENT ? 1 : 0;
        int64_t k = d < 16 ? d : 16;
        for (p = p0; p < np; p++) {
            bt_tensor *c = mat(k, k);
            double e, eg, ec;
            ck_assert_int_eq(bt_loss_set_path(l, p == 0 ? BT_LOSS_PATH_DXD : BT_LOSS_PATH_GRAM),
                             BT_OK);
            ck_assert_int_eq(bt_loss_forward(l, za, zb, &loss[p]), BT_OK);
            ck_assert_int_eq(bt_loss_path(l), p == 0 ? BT_LOSS_PATH_DXD : BT_LOSS_PATH_GRAM);
            ck_assert_int_eq(bt_loss_terms(l, &on[p], &off[p]), BT_OK);
            ck_assert_int_eq(bt_loss_backward(l, ga[p], gb[p]), BT_OK);
            snprintf(name, sizeof name, "%s.loss", modes[m]);
            e = rel(loss[p], golden_get(g, name, NULL, NULL)[0]);
            snprintf(name, sizeof name, "%s.on", modes[m]);
            e = fmax(e, rel(on[p], golden_get(g, name, NULL, NULL)[0]));
            snprintf(name, sizeof name, "%s.off", modes[m]);
            e = fmax(e, rel(off[p], golden_get(g, name, NULL, NULL)[0]));
            ck_assert_msg(e <= 1e-4, "%s %s path %d: loss/terms rel err %g", file, modes[m], p, e);
            eg = fmax(grad_err(g, modes[m], "dza", bt_tensor_data(ga[p]), n, d),
                     grad_err(g, modes[m], "dzb", bt_tensor_data(gb[p]), n, d));
            ck_assert_msg(eg <= 1e-4, "%s %s path %d: gradient rel err %g", file, modes[m], p, eg);
            ck_assert_int_eq(bt_loss_correlation(l, c), BT_OK);
            snprintf(name, sizeof name, "%s.c16", modes[m]);
            ec = rel_err(bt_tensor_data(c), golden_get(g, name, NULL, NULL), k * k);
            ck_assert_msg(ec <= 1e-4, "%s %s path %d: C block rel err %g", file, modes[m], p, ec);
            e = fmax(e, fmax(eg, ec));
            if (getenv("BT_TEST_VERBOSE"))
                printf("%s %-16s path %d: loss/terms/C/gradients within %.3e\n", file, modes[m],
                       p, e);
            bt_tensor_free(c);
        }
        if (np == 2 && p0 == 0) { /* the two paths agree */
            double e = fmax(rel(loss[1], loss[0]), fmax(rel(on[1], on[0]), rel(off[1], off[0])));
            e = fmax(e, rel_err(bt_tensor_data(ga[1]), bt_tensor_data(ga[0]), n * d));
            e = fmax(e, rel_err(bt_tensor_data(gb[1]), bt_tensor_data(gb[0]), n * d));
            if (getenv("BT_TEST_VERBOSE"))
                printf("%s %-16s paths agree to %.3e (loss %.1e, a %.1e, b %.1e)\n", file,
                       modes[m], e, rel(loss[1], loss[0]),
                       rel_err(bt_tensor_data(ga[1]), bt_tensor_data(ga[0]), n * d),
                       rel_err(bt_tensor_data(gb[1]), bt_tensor_data(gb[0]), n * d));
            ck_assert_msg(e <= 1e-5, "%s %s: D x D and Gram paths differ by %g", file, modes[m],
                          e);
        }
        bt_loss_free(l);
    }
    golden_free(g);
    bt_tensor_free(za);
    bt_tensor_free(zb);
    bt_tensor_free(ga[0]);
    bt_tensor_free(ga[1]);
    bt_tensor_free(gb[0]);
    bt_tensor_free(gb[1]);
}

START_TEST(golden_cases) { run_golden_case(_i); }
END_TEST

/* ---- finite differences in double ---------------------------------------------- */

static void fd_check(int mode, int64_t n, int64_t d, int path)
{
    struct refcfg r = {mode, 0.02, 0.5, 0.5};
    bt_loss *l = make_loss(modes[mode], "0.02", "0.5", "0.5");
    bt_tensor *za = mat(n, d), *zb = mat(n, d), *ga = mat(n, d), *gb = mat(n, d);
    double *xa = malloc((size_t)(n * d) * sizeof *xa), *xb = malloc((size_t)(n * d) * sizeof *xb);
    double *fa = malloc((size_t)(n * d) * sizeof *fa), *fb = malloc((size_t)(n * d) * sizeof *fb);
    double *got = malloc((size_t)(2 * n * d) * sizeof *got);
    double *want = malloc((size_t)(2 * n * d) * sizeof *want);
    double loss, ref, on, off, ron, roff, e, h = 1e-5;
    float *pa = bt_tensor_data(za), *pb = bt_tensor_data(zb);
    int64_t i;

    gen_inputs(n, d, pa, pb);
    for (i = 0; i < n * d; i++) {
        xa[i] = pa[i];
        xb[i] = pb[i];
    }
    if (mode != XENT)
        ck_assert_int_eq(bt_loss_set_path(l, path), BT_OK);
    ck_assert_int_eq(bt_loss_forward(l, za, zb, &loss), BT_OK);
    ck_assert_int_eq(bt_loss_terms(l, &on, &off), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l, ga, gb), BT_OK);
    ref = ref_loss(&r, n, d, xa, xb, &ron, &roff, NULL);
    e = fmax(rel(loss, ref), fmax(rel(on, ron), rel(off, roff)));
    ck_assert_msg(e <= 1e-5, "%s %lldx%lld: loss %.9g vs double %.9g (rel %g)", modes[mode],
                  (long long)n, (long long)d, loss, ref, e);
    for (i = 0; i < n * d; i++) {
        double keep = xa[i], lp, lm;
        xa[i] = keep + h;
        lp = ref_loss(&r, n, d, xa, xb, NULL, NULL, NULL);
        xa[i] = keep - h;
        lm = ref_loss(&r, n, d, xa, xb, NULL, NULL, NULL);
        xa[i] = keep;
        fa[i] = (lp - lm) / (2 * h);
        keep = xb[i];
        xb[i] = keep + h;
        lp = ref_loss(&r, n, d, xa, xb, NULL, NULL, NULL);
        xb[i] = keep - h;
        lm = ref_loss(&r, n, d, xa, xb, NULL, NULL, NULL);
        xb[i] = keep;
        fb[i] = (lp - lm) / (2 * h);
        got[i] = bt_tensor_data(ga)[i];
        got[n * d + i] = bt_tensor_data(gb)[i];
        want[i] = fa[i];
        want[n * d + i] = fb[i];
    }
    e = rel_err_d(got, want, 2 * n * d);
    if (getenv("BT_TEST_VERBOSE"))
        printf("fd %-16s %lldx%lld path %d: loss %.2e grad %.2e\n", modes[mode], (long long)n,
               (long long)d, path, rel(loss, ref), e);
    ck_assert_msg(e <= 1e-4, "%s %lldx%lld path %d: gradient vs finite differences rel %g",
                  modes[mode], (long long)n, (long long)d, path, e);
    free(xa);
    free(xb);
    free(fa);
    free(fb);
    free(got);
    free(want);
    bt_tensor_free(za);
    bt_tensor_free(zb);
    bt_tensor_free(ga);
    bt_tensor_free(gb);
    bt_loss_free(l);
}

START_TEST(finite_differences)
{
    int m = _i;
    fd_check(m, 8, 16, BT_LOSS_PATH_DXD);  /* D > N, forced D x D */
    fd_check(m, 8, 16, BT_LOSS_PATH_GRAM); /* D > N, its natural path */
    fd_check(m, 12, 5, BT_LOSS_PATH_AUTO); /* D < N */
    fd_check(m, 2, 3, BT_LOSS_PATH_AUTO);  /* the smallest batch */
}
END_TEST

/* ---- invariances ------------------------------------------------------------------ */

/* The normalisation makes the loss invariant to a positive affine change of
 * each feature (batch modes) or of each sample (feature_norm); the gradient
 * transforms by the chain rule: dL/dz' = dL/dz / a. The inputs are scaled x10
 * so that eps = 1e-5 is negligible next to the variances. */
static void affine_case(int mode, int view, int path)
{
    int64_t n = 24, d = 40, i, j;
    bt_loss *l = make_loss(modes[mode], NULL, NULL, NULL);
    bt_tensor *za = mat(n, d), *zb = mat(n, d), *ya = mat(n, d), *yb = mat(n, d);
    bt_tensor *ga = mat(n, d), *gb = mat(n, d), *ha = mat(n, d), *hb = mat(n, d);
    float *pa = bt_tensor_data(za), *pb = bt_tensor_data(zb);
    float *qa = bt_tensor_data(ya), *qb = bt_tensor_data(yb);
    double l0, l1, l2;
    float *gs, *hs, *ref;
    double ge = 0, gscale = 0, ge_other;

    gen_inputs(n, d, pa, pb);
    for (i = 0; i < n * d; i++) {
        pa[i] *= 10;
        pb[i] *= 10;
    }
    memcpy(qa, pa, (size_t)(n * d) * sizeof(float));
    memcpy(qb, pb, (size_t)(n * d) * sizeof(float));
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) {
            int64_t k = mode == FEATURE_NORM ? i : j; /* the normalised group */
            float a = 0.5f + 1.5f * (golden_uni(7, (uint64_t)k) + 0.5f);
            float b = 6.0f * golden_uni(8, (uint64_t)k);
            float *q = view == 0 ? qa : qb;
            q[i * d + j] = a * q[i * d + j] + b;
        }
    if (mode != XENT)
        ck_assert_int_eq(bt_loss_set_path(l, path), BT_OK);
    ck_assert_int_eq(bt_loss_forward(l, za, zb, &l0), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l, ga, gb), BT_OK);
    ck_assert_int_eq(bt_loss_forward(l, ya, yb, &l1), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l, ha, hb), BT_OK);
    ck_assert_msg(rel(l1, l0) <= 1e-5, "%s view %d: affine change moved the loss %.9g -> %.9g",
                  modes[mode], view, l0, l1);
    /* chain rule on the changed view; the other view's gradient is unchanged */
    gs = bt_tensor_data(view == 0 ? ga : gb);
    hs = bt_tensor_data(view == 0 ? ha : hb);
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) {
            int64_t k = mode == FEATURE_NORM ? i : j;
            float a = 0.5f + 1.5f * (golden_uni(7, (uint64_t)k) + 0.5f);
            ge = fmax(ge, fabs((double)hs[i * d + j] * a - gs[i * d + j]));
            gscale = fmax(gscale, fabs(gs[i * d + j]));
        }
    ck_assert_msg(ge / gscale <= 1e-4, "%s view %d: gradient after affine change rel %g",
                  modes[mode], view, ge / gscale);
    ref = bt_tensor_data(view == 0 ? gb : ga);
    ge_other = rel_err(bt_tensor_data(view == 0 ? hb : ha), ref, n * d);
    ck_assert_msg(ge_other <= 1e-4, "%s: other view's gradient rel %g", modes[mode], ge_other);

    /* a change that is not affine per group does move the loss */
    for (i = 0; i < n; i++)
        qa[i * d + 3] = qa[i * d + 3] * qa[i * d + 3] * 0.1f;
    for (j = 0; j < d; j++)
        qa[5 * d + j] = qa[5 * d + j] * qa[5 * d + j] * 0.1f;
    ck_assert_int_eq(bt_loss_forward(l, ya, yb, &l2), BT_OK);
    ck_assert_msg(rel(l2, l0) > 1e-3, "%s: a squared column/row left the loss at %.9g vs %.9g",
                  modes[mode], l2, l0);
    bt_tensor_free(za);
    bt_tensor_free(zb);
    bt_tensor_free(ya);
    bt_tensor_free(yb);
    bt_tensor_free(ga);
    bt_tensor_free(gb);
    bt_tensor_free(ha);
    bt_tensor_free(hb);
    bt_loss_free(l);
}

START_TEST(affine_invariance)
{
    int m = _i;
    affine_case(m, 0, BT_LOSS_PATH_DXD);
    affine_case(m, 1, BT_LOSS_PATH_DXD);
    affine_case(m, 0, BT_LOSS_PATH_GRAM);
    affine_case(m, 1, BT_LOSS_PATH_GRAM);
}
END_TEST

/* ---- paths, C on demand, determinism, reuse -------------------------------------- */

START_TEST(auto_path_choice)
{
    bt_loss *l = make_loss("barlow", NULL, NULL, NULL), *x = make_loss("xent", NULL, NULL, NULL);
    bt_tensor *a = mat(8, 16), *b = mat(8, 16), *c = mat(16, 8), *e = mat(16, 8);
    double v;
    gen_inputs(8, 16, bt_tensor_data(a), bt_tensor_data(b));
    gen_inputs(16, 8, bt_tensor_data(c), bt_tensor_data(e));
    ck_assert_int_eq(bt_loss_path(l), BT_LOSS_PATH_AUTO);
    ck_assert_int_eq(bt_loss_forward(l, a, b, &v), BT_OK);
    ck_assert_int_eq(bt_loss_path(l), BT_LOSS_PATH_GRAM); /* D > N */
    ck_assert_int_eq(bt_loss_forward(l, c, e, &v), BT_OK);
    ck_assert_int_eq(bt_loss_path(l), BT_LOSS_PATH_DXD); /* D <= N */
    ck_assert_int_eq(bt_loss_forward(x, a, b, &v), BT_OK);
    ck_assert_int_eq(bt_loss_path(x), BT_LOSS_PATH_DXD); /* xent always */
    ck_assert_int_eq(bt_loss_set_path(x, BT_LOSS_PATH_GRAM), BT_E_UNSUPPORTED);
    ck_assert_int_eq(bt_loss_set_path(l, 3), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_loss_set_path(l, -1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_loss_path(NULL), -1);
    bt_tensor_free(a);
    bt_tensor_free(b);
    bt_tensor_free(c);
    bt_tensor_free(e);
    bt_loss_free(l);
    bt_loss_free(x);
}
END_TEST

START_TEST(correlation_on_demand)
{
    int64_t n = 20, d = 48, i;
    struct refcfg r = {0, 0.0051, 1, 0.1};
    bt_loss *l = make_loss("barlow", NULL, NULL, NULL);
    bt_tensor *za = mat(n, d), *zb = mat(n, d), *full[2], *blk = mat(7, 7), *bad = mat(7, 6),
              *big = mat(d + 1, d + 1);
    double *xa = malloc((size_t)(n * d) * sizeof *xa), *xb = malloc((size_t)(n * d) * sizeof *xb);
    double *cref = malloc((size_t)(d * d) * sizeof *cref), *cg = malloc((size_t)(d * d) * sizeof *cg);
    double v;
    int p;
    gen_inputs(n, d, bt_tensor_data(za), bt_tensor_data(zb));
    for (i = 0; i < n * d; i++) {
        xa[i] = bt_tensor_data(za)[i];
        xb[i] = bt_tensor_data(zb)[i];
    }
    ref_loss(&r, n, d, xa, xb, NULL, NULL, cref);
    ck_assert_int_eq(bt_loss_correlation(l, blk), BT_E_STATE);
    for (p = 0; p < 2; p++) {
        full[p] = mat(d, d);
        ck_assert_int_eq(bt_loss_set_path(l, p ? BT_LOSS_PATH_GRAM : BT_LOSS_PATH_DXD), BT_OK);
        ck_assert_int_eq(bt_loss_forward(l, za, zb, &v), BT_OK);
        ck_assert_int_eq(bt_loss_correlation(l, full[p]), BT_OK);
        for (i = 0; i < d * d; i++)
            cg[i] = bt_tensor_data(full[p])[i];
        ck_assert_double_le(rel_err_d(cg, cref, d * d), 1e-5);
        ck_assert_int_eq(bt_loss_correlation(l, blk), BT_OK);
        for (i = 0; i < 49; i++) /* the leading block of the same C */
            ck_assert_float_eq_tol(bt_tensor_data(blk)[i],
                                   bt_tensor_data(full[p])[(i / 7) * d + i % 7], 1e-6);
        ck_assert_int_eq(bt_loss_correlation(l, bad), BT_E_SHAPE);
        ck_assert_int_eq(bt_loss_correlation(l, big), BT_E_SHAPE);
    }
    ck_assert_double_le(rel_err(bt_tensor_data(full[1]), bt_tensor_data(full[0]), d * d), 1e-5);
    free(xa);
    free(xb);
    free(cref);
    free(cg);
    bt_tensor_free(full[0]);
    bt_tensor_free(full[1]);
    bt_tensor_free(blk);
    bt_tensor_free(bad);
    bt_tensor_free(big);
    bt_tensor_free(za);
    bt_tensor_free(zb);
    bt_loss_free(l);
}
END_TEST

START_TEST(deterministic_and_reusable)
{
    bt_loss *l = make_loss("barlow", NULL, NULL, NULL), *fresh = make_loss("barlow", NULL, NULL,
                                                                           NULL);
    bt_tensor *a = mat(8, 16), *b = mat(8, 16), *c = mat(32, 128), *e = mat(32, 128);
    bt_tensor *g1 = mat(8, 16), *g2 = mat(8, 16), *h1 = mat(8, 16), *h2 = mat(8, 16);
    bt_tensor *k1 = mat(32, 128), *k2 = mat(32, 128);
    double v1, v2, v3;
    gen_inputs(8, 16, bt_tensor_data(a), bt_tensor_data(b));
    gen_inputs(32, 128, bt_tensor_data(c), bt_tensor_data(e));
    ck_assert_int_eq(bt_loss_forward(fresh, a, b, &v1), BT_OK);
    ck_assert_int_eq(bt_loss_backward(fresh, g1, h1), BT_OK);
    /* other shapes in between, then back: bit-identical results */
    ck_assert_int_eq(bt_loss_forward(l, c, e, &v2), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l, k1, k2), BT_OK);
    ck_assert_int_eq(bt_loss_forward(l, a, b, &v2), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l, g2, h2), BT_OK);
    ck_assert(v1 == v2);
    ck_assert(memcmp(bt_tensor_data(g1), bt_tensor_data(g2), 128 * sizeof(float)) == 0);
    ck_assert(memcmp(bt_tensor_data(h1), bt_tensor_data(h2), 128 * sizeof(float)) == 0);
    /* backward twice gives the same (it overwrites, never accumulates) */
    ck_assert_int_eq(bt_loss_backward(l, g2, h2), BT_OK);
    ck_assert(memcmp(bt_tensor_data(g1), bt_tensor_data(g2), 128 * sizeof(float)) == 0);
    ck_assert_int_eq(bt_loss_forward(l, a, b, &v3), BT_OK);
    ck_assert(v3 == v1);
    bt_tensor_free(a);
    bt_tensor_free(b);
    bt_tensor_free(c);
    bt_tensor_free(e);
    bt_tensor_free(g1);
    bt_tensor_free(g2);
    bt_tensor_free(h1);
    bt_tensor_free(h2);
    bt_tensor_free(k1);
    bt_tensor_free(k2);
    bt_loss_free(l);
    bt_loss_free(fresh);
}
END_TEST

START_TEST(scale_lambda_and_modes)
{
    /* loss = scale * (on + lambda off) with the terms reported raw; the
     * ablation modes keep one term. Gradients scale linearly. */
    bt_tensor *a = mat(16, 24), *b = mat(16, 24), *g1 = mat(16, 24), *g2 = mat(16, 24),
              *h = mat(16, 24);
    bt_loss *l1 = make_loss("barlow", "0.0051", "1", NULL), *l2 = make_loss("barlow", "0.0051",
                                                                            "2.5", NULL);
    bt_loss *li = make_loss("invariance_only", "0.3", "2", NULL);
    bt_loss *lr = make_loss("redundancy_only", "0.3", "2", NULL);
    bt_loss *dflt = NULL;
    double v1, v2, vi, vr, on, off, on2, off2, vd;
    int64_t i;
    gen_inputs(16, 24, bt_tensor_data(a), bt_tensor_data(b));
    ck_assert_int_eq(bt_loss_forward(l1, a, b, &v1), BT_OK);
    ck_assert_int_eq(bt_loss_terms(l1, &on, &off), BT_OK);
    ck_assert_double_le(rel(v1, on + 0.0051 * off), 1e-12);
    ck_assert_double_gt(on, 0);
    ck_assert_double_gt(off, 0);
    ck_assert_int_eq(bt_loss_forward(l2, a, b, &v2), BT_OK);
    ck_assert_double_le(rel(v2, 2.5 * v1), 1e-12);
    ck_assert_int_eq(bt_loss_terms(l2, &on2, NULL), BT_OK);
    ck_assert_int_eq(bt_loss_terms(l2, NULL, &off2), BT_OK);
    ck_assert(on2 == on && off2 == off);
    ck_assert_int_eq(bt_loss_backward(l1, g1, h), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l2, g2, h), BT_OK);
    for (i = 0; i < 16 * 24; i++)
        bt_tensor_data(g1)[i] *= 2.5f;
    ck_assert_double_le(rel_err(bt_tensor_data(g2), bt_tensor_data(g1), 16 * 24), 1e-6);
    ck_assert_int_eq(bt_loss_forward(li, a, b, &vi), BT_OK);
    ck_assert_double_le(rel(vi, 2 * on), 1e-12);
    ck_assert_int_eq(bt_loss_forward(lr, a, b, &vr), BT_OK);
    ck_assert_double_le(rel(vr, 2 * 0.3 * off), 1e-12);
    /* NULL config: the defaults (barlow, lambda 0.0051, scale 1) */
    ck_assert_int_eq(bt_loss_create(&dflt, NULL), BT_OK);
    ck_assert_int_eq(bt_loss_forward(dflt, a, b, &vd), BT_OK);
    ck_assert(vd == v1);
    bt_loss_free(dflt);
    bt_tensor_free(a);
    bt_tensor_free(b);
    bt_tensor_free(g1);
    bt_tensor_free(g2);
    bt_tensor_free(h);
    bt_loss_free(l1);
    bt_loss_free(l2);
    bt_loss_free(li);
    bt_loss_free(lr);
}
END_TEST

/* ---- misuse: the right status, a message, nothing changed ------------------------- */

START_TEST(misuse_leaves_state)
{
    bt_loss *l = make_loss("barlow", NULL, NULL, NULL);
    bt_tensor *a = mat(8, 16), *b = mat(8, 16), *g = mat(8, 16), *h = mat(8, 16);
    bt_tensor *g2 = mat(8, 16), *h2 = mat(8, 16), *w = mat(8, 15), *one = mat(1, 16);
    bt_tensor *one_b = mat(1, 16), *big_a = mat(32, 64), *big_b = mat(32, 64), *v1 = NULL;
    bt_tensor *t3 = NULL;
    int64_t s1 = 128, s3[3] = {2, 4, 16};
    double v, v0, on0, off0, on, off;
    float keep;
    bt_config *cfg;

    ck_assert_int_eq(bt_tensor_create(&v1, 1, &s1), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&t3, 3, s3), BT_OK);
    gen_inputs(8, 16, bt_tensor_data(a), bt_tensor_data(b));
    gen_inputs(32, 64, bt_tensor_data(big_a), bt_tensor_data(big_b));

    /* before any forward */
    ck_assert_int_eq(bt_loss_backward(l, g, h), BT_E_STATE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bt_loss_backward"));
    ck_assert_int_eq(bt_loss_terms(l, &on, &off), BT_E_STATE);

    ck_assert_int_eq(bt_loss_forward(l, a, b, &v0), BT_OK);
    ck_assert_int_eq(bt_loss_terms(l, &on0, &off0), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l, g, h), BT_OK);

    /* bad calls */
    ck_assert_int_eq(bt_loss_forward(NULL, a, b, &v), BT_E_MISUSE);
    ck_assert_int_eq(bt_loss_forward(l, NULL, b, &v), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "za"));
    ck_assert_int_eq(bt_loss_forward(l, a, NULL, &v), BT_E_MISUSE);
    ck_assert_int_eq(bt_loss_forward(l, a, b, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_loss_forward(l, a, w, &v), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[8, 15]"));
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[8, 16]"));
    ck_assert_int_eq(bt_loss_forward(l, a, big_b, &v), BT_E_SHAPE);
    ck_assert_int_eq(bt_loss_forward(l, v1, v1, &v), BT_E_SHAPE);
    ck_assert_int_eq(bt_loss_forward(l, t3, t3, &v), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[2, 4, 16]"));
    ck_assert_int_eq(bt_loss_forward(l, a, t3, &v), BT_E_SHAPE); /* only zb has three */
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "zb has shape [2, 4, 16]; expected 2 dimensions"));
    ck_assert_int_eq(bt_loss_forward(l, one, one_b, &v), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "N must be >= 2"));
    ck_assert_int_eq(bt_loss_forward(l, (bt_tensor *)l, b, &v), BT_E_MISUSE);
    keep = bt_tensor_data(b)[37];
    bt_tensor_data(b)[37] = NAN;
    ck_assert_int_eq(bt_loss_forward(l, a, b, &v), BT_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "zb[2, 5]"));
    bt_tensor_data(b)[37] = keep;
    keep = bt_tensor_data(a)[0];
    bt_tensor_data(a)[0] = -INFINITY;
    ck_assert_int_eq(bt_loss_forward(l, a, b, &v), BT_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "za[0, 0]"));
    bt_tensor_data(a)[0] = keep;
    /* a bad input at a new shape must not disturb the kept one either */
    bt_tensor_data(big_a)[100] = INFINITY;
    ck_assert_int_eq(bt_loss_forward(l, big_a, big_b, &v), BT_E_NUMERIC);

    /* the last good forward is intact */
    ck_assert_int_eq(bt_loss_terms(l, &on, &off), BT_OK);
    ck_assert(on == on0 && off == off0);
    ck_assert_int_eq(bt_loss_backward(l, g2, h2), BT_OK);
    ck_assert(memcmp(bt_tensor_data(g), bt_tensor_data(g2), 128 * sizeof(float)) == 0);
    ck_assert(memcmp(bt_tensor_data(h), bt_tensor_data(h2), 128 * sizeof(float)) == 0);

    /* backward misuse */
    ck_assert_int_eq(bt_loss_backward(l, w, h), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "dza"));
    ck_assert_int_eq(bt_loss_backward(l, g, w), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "dzb"));
    ck_assert_int_eq(bt_loss_backward(l, g, g), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_loss_backward(l, NULL, h), BT_E_MISUSE);
    ck_assert_int_eq(bt_loss_backward(NULL, g, h), BT_E_MISUSE);
    ck_assert_int_eq(bt_loss_terms(NULL, &on, &off), BT_E_MISUSE);
    ck_assert_int_eq(bt_loss_correlation(l, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_loss_correlation(l, t3), BT_E_SHAPE);
    ck_assert_int_eq(bt_loss_set_path(NULL, 0), BT_E_MISUSE);

    /* create misuse */
    ck_assert_int_eq(bt_loss_create(NULL, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_config_create(&cfg), BT_OK);
    bt_config_free(cfg);
    {
        bt_loss *x = (bt_loss *)0x1;
        ck_assert_int_eq(bt_loss_create(&x, cfg), BT_E_MISUSE); /* freed config */
        ck_assert_ptr_null(x);
    }
    bt_loss_free(NULL);

    bt_tensor_free(a);
    bt_tensor_free(b);
    bt_tensor_free(g);
    bt_tensor_free(h);
    bt_tensor_free(g2);
    bt_tensor_free(h2);
    bt_tensor_free(w);
    bt_tensor_free(one);
    bt_tensor_free(one_b);
    bt_tensor_free(big_a);
    bt_tensor_free(big_b);
    bt_tensor_free(v1);
    bt_tensor_free(t3);
    bt_loss_free(l);
}
END_TEST

Suite *loss_suite(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("core"), *tg = tcase_create("golden");
    tcase_add_test(tc, auto_path_choice);
    tcase_add_test(tc, correlation_on_demand);
    tcase_add_test(tc, deterministic_and_reusable);
    tcase_add_test(tc, scale_lambda_and_modes);
    tcase_add_test(tc, misuse_leaves_state);
    tcase_add_loop_test(tc, finite_differences, 0, NMODES);
    tcase_add_loop_test(tc, affine_invariance, 0, NMODES);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tg, golden_cases, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_set_timeout(tg, 240);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, tg);
    return s;
}
