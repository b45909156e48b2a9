/* check_layer.c - layers against PyTorch golden files (forward, backward, running
 * statistics), the private API the model uses, initialisation, and misuse. */
#include "barlow.h"
#include "golden.h"
#include "kernels/conv_direct.h"
#include "layers/layer.h"
#include "kernels/sgemm.h"

#include <check.h>
#include <omp.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

/* ---- helpers ------------------------------------------------------------------ */

static bt_tensor *tensor_from(const golden *g, const char *name)
{
    int nd;
    int64_t shape[8];
    const float *d = golden_get(g, name, &nd, shape);
    bt_tensor *t = NULL;
    ck_assert_int_eq(bt_tensor_create(&t, nd, shape), BT_OK);
    memcpy(bt_tensor_data(t), d, (size_t)bt_tensor_numel(t) * sizeof(float));
    return t;
}

static bt_tensor *tensor_like(const golden *g, const char *name)
{
    int nd;
    int64_t shape[8];
    bt_tensor *t = NULL;
    golden_get(g, name, &nd, shape);
    ck_assert_int_eq(bt_tensor_create(&t, nd, shape), BT_OK);
    return t;
}

static void expect_close(const golden *g, const char *name, const bt_tensor *t, double tol,
                         const char *what)
{
    int64_t n = golden_numel(g, name);
    double e;
    ck_assert_int_eq(bt_tensor_numel(t), n);
    e = rel_err(bt_tensor_data((bt_tensor *)t), golden_get(g, name, NULL, NULL), n);
    ck_assert_msg(e <= tol, "%s: %s relative error %.3g > %.1g", what, name, e, tol);
}

/* Index of the layer tensor called name, or -1. */
static int tensor_index(bt_layer *l, const char *name)
{
    int i, n = bt_layer_tensor_count(l);
    for (i = 0; i < n; i++) {
        const char *nm;
        ck_assert_int_eq(bt_layer_tensor(l, i, &nm, NULL, NULL), BT_OK);
        if (strcmp(nm, name) == 0)
            return i;
    }
    return -1;
}

static void set_tensor(bt_layer *l, const char *name, const golden *g, const char *gname)
{
    bt_tensor *v;
    int i = tensor_index(l, name);
    ck_assert_msg(i >= 0, "layer has no tensor %s", name);
    ck_assert_int_eq(bt_layer_tensor(l, i, NULL, &v, NULL), BT_OK);
    ck_assert_int_eq(bt_tensor_numel(v), golden_numel(g, gname));
    memcpy(bt_tensor_data(v), golden_get(g, gname, NULL, NULL),
           (size_t)bt_tensor_numel(v) * sizeof(float));
}

static bt_tensor *value_of(bt_layer *l, const char *name)
{
    bt_tensor *v = NULL;
    int i = tensor_index(l, name);
    ck_assert_msg(i >= 0, "layer has no tensor %s", name);
    bt_layer_tensor(l, i, NULL, &v, NULL);
    return v;
}

static bt_tensor *grad_of(bt_layer *l, const char *name)
{
    bt_tensor *gr = NULL;
    int i = tensor_index(l, name);
    ck_assert_msg(i >= 0, "layer has no tensor %s", name);
    bt_layer_tensor(l, i, NULL, NULL, &gr);
    ck_assert_ptr_nonnull(gr);
    return gr;
}

static uint64_t lcg_state = 88172645463325252ULL;

static float frand(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(lcg_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static bt_tensor *random_tensor(int nd, const int64_t *shape)
{
    bt_tensor *t = NULL;
    int64_t i;
    ck_assert_int_eq(bt_tensor_create(&t, nd, shape), BT_OK);
    for (i = 0; i < bt_tensor_numel(t); i++)
        bt_tensor_data(t)[i] = frand();
    return t;
}

/* ---- convolution -------------------------------------------------------------- */

static const char *const conv_files[] = {
    "layers_conv_7x7s2p3.bin", "layers_conv_3x3s1p1_b1.bin", "layers_conv_3x3s2p1.bin",
    "layers_conv_1x1s2.bin",   "layers_conv_1x1s1.bin",      "layers_conv_1x1s1_wide.bin",
    "layers_conv_3x3s1p0_odd.bin", "layers_conv_5x5s3p2.bin", "layers_conv_3x3s1p1_c16.bin",
};

/* chunk: GEMM columns per chunk (0 default, 1 one image per GEMM, else several images);
 * bwd_threads > 0: the backward's thread count, set after the forward. */
static void run_conv_case_ex(const char *file, int64_t chunk, int threads, const char *form,
                             int bwd_threads)
{
    golden *g = golden_load(file);
    const float *cfg = golden_get(g, "cfg", NULL, NULL);
    int bias = (int)cfg[5];
    bt_layer *l = NULL;
    bt_tensor *x = tensor_from(g, "x"), *y = tensor_like(g, "y"), *dy = tensor_from(g, "dy"),
              *dx = tensor_like(g, "dx");
    char what[128];
    snprintf(what, sizeof what, "%s chunk %lld threads %d form %s", file, (long long)chunk,
             threads, form ? form : "auto");
    ck_assert_int_eq(bt_layer_conv2d_create(&l, (int32_t)cfg[0], (int32_t)cfg[1], (int32_t)cfg[2],
                                            (int32_t)cfg[3], (int32_t)cfg[4], bias),
                     BT_OK);
    ck_assert_int_eq(bt_layer_tensor_count(l), bias ? 2 : 1);
    bti_layer_conv2d_set_chunk(l, chunk);
    bti_layer_conv2d_set_form(l, form);
    ck_assert_int_eq(bt_layer_set_threads(l, threads), BT_OK);
    set_tensor(l, "weight", g, "weight");
    if (bias)
        set_tensor(l, "bias", g, "bias");
    ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
    expect_close(g, "y", y, TOL, what);
    if (bwd_threads > 0)
        ck_assert_int_eq(bt_layer_set_threads(l, bwd_threads), BT_OK);
    ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
    expect_close(g, "dx", dx, TOL, what);
    expect_close(g, "dweight", grad_of(l, "weight"), TOL, what);
    if (bias)
        expect_close(g, "dbias", grad_of(l, "bias"), TOL, what);
    /* Parameter gradients accumulate: a second backward without dx doubles them. */
    ck_assert_int_eq(bt_layer_backward(l, dy, NULL), BT_OK);
    {
        bt_tensor *gw = grad_of(l, "weight");
        int64_t i, n = bt_tensor_numel(gw);
        float *half = bt_tensor_data(gw);
        for (i = 0; i < n; i++)
            half[i] *= 0.5f;
        expect_close(g, "dweight", gw, TOL, what);
    }
    bt_tensor_free(x);
    bt_tensor_free(y);
    bt_tensor_free(dy);
    bt_tensor_free(dx);
    bt_layer_free(l);
    golden_free(g);
}

static void run_conv_case(const char *file, int64_t chunk, int threads, const char *form)
{
    run_conv_case_ex(file, chunk, threads, form, 0);
}

/* Every form, called from the master of a host's OpenMP region: nested
 * regions get one thread, whatever num_threads asks. */
static void run_conv_nested(const char *file)
{
    static const char *const forms[] = {"images", "grid", "direct", "flat", "winograd"};
    size_t i;
    omp_set_max_active_levels(1);
    for (i = 0; i < sizeof forms / sizeof forms[0]; i++) {
#pragma omp parallel num_threads(2)
        {
#pragma omp master
            run_conv_case(file, 0, 2, forms[i]);
        }
    }
}

START_TEST(conv_matches_pytorch)
{
    static const int64_t chunks[] = {0, 1, 40};
    size_t f, c;
    for (f = 0; f < sizeof conv_files / sizeof *conv_files; f++) {
        for (c = 0; c < 3; c++)
            run_conv_case(conv_files[f], chunks[c], 1 + (int)c % 2, "gemm");
        run_conv_case(conv_files[f], 0, 2, "images"); /* images spread over OpenMP threads */
        run_conv_case(conv_files[f], 0, 3, "images");
        run_conv_case(conv_files[f], 0, 2, NULL);
        run_conv_case(conv_files[f], 0, 2, "grid"); /* each form where the level runs it */
        run_conv_case(conv_files[f], 0, 3, "grid");
        run_conv_case(conv_files[f], 0, 2, "direct");
        run_conv_case(conv_files[f], 0, 2, "flat");
        run_conv_case(conv_files[f], 0, 3, "winograd");
        /* inside a host's parallel region the team has 1 thread, not the 2 asked */
        run_conv_nested(conv_files[f]);
        /* fewer threads between a forward and its backward: the backward takes them */
        run_conv_case_ex(conv_files[f], 0, 2, NULL, 1);
        run_conv_case_ex(conv_files[f], 0, 3, "direct", 2);
    }
}
END_TEST

/* The 3x3 forms at the run's level against a double-precision reference:
 * input channels across the direct tiles' 16-channel passes, output channels
 * that fill 1-4 registers with a partial last one (forward and
 * weight-gradient tiles block them differently), pixel counts that leave
 * partial tiles, odd and even sizes (the stride-2 input gradient's four pixel
 * classes), and images in several groups per thread. "direct": the channel
 * tiles; "flat": the flat tiles at stride 1 (runs of 16 pixels over one or
 * several rows, partial last tiles, 8-output groups with a partial last
 * one); "winograd" at stride 1 (partial tiles at odd sizes, partial channel
 * registers, several tile groups). A level without a form runs its
 * automatic choice instead (check_cpu.c checks which forms each level has). */
static void direct_case_form(int64_t n, int64_t c, int64_t h, int64_t w, int64_t co, int s,
                             int threads, const char *form)
{
    const int64_t ho = (h - 1) / s + 1, wo = (w - 1) / s + 1, hw = h * w, pq = ho * wo;
    const int64_t xs[4] = {n, c, h, w}, ys[4] = {n, co, ho, wo};
    bt_tensor *x = random_tensor(4, xs), *dy = random_tensor(4, ys), *y = NULL, *dx = NULL;
    bt_layer *l = NULL;
    double *yr = calloc((size_t)(n * co * pq), sizeof *yr),
           *dxr = calloc((size_t)(n * c * hw), sizeof *dxr),
           *dwr = calloc((size_t)(co * c * 9), sizeof *dwr);
    const float *wv, *xv = bt_tensor_data(x), *dyv = bt_tensor_data(dy);
    int64_t b, o, ci, oy, ox;
    int i, j;
    char what[96];
    snprintf(what, sizeof what,
             "direct n %lld c %lld %lldx%lld co %lld stride %d threads %d form %s", (long long)n,
             (long long)c, (long long)h, (long long)w, (long long)co, s, threads,
             form ? form : "auto");
    ck_assert_int_eq(bt_tensor_create(&y, 4, ys), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&dx, 4, xs), BT_OK);
    ck_assert_int_eq(bti_layer_conv2d_new(&l, (int)c, (int)co, 3, s, 1, 1, "test"), BT_OK);
    bti_layer_conv2d_set_form(l, form);
    bti_layer_set_threads(l, threads);
    wv = bti_layer_value(l, 0)->data;
    for (b = 0; b < n; b++)
        for (o = 0; o < co; o++)
            for (ci = 0; ci < c; ci++)
                for (i = 0; i < 3; i++)
                    for (j = 0; j < 3; j++)
                        for (oy = 0; oy < ho; oy++)
                            for (ox = 0; ox < wo; ox++) {
                                const int64_t iy = oy * s + i - 1, ix = ox * s + j - 1;
                                const double wt = wv[((o * c + ci) * 3 + i) * 3 + j];
                                const int64_t yi = (b * co + o) * pq + oy * wo + ox,
                                              xi = (b * c + ci) * hw + iy * w + ix;
                                if (iy < 0 || ix < 0 || iy >= h || ix >= w)
                                    continue;
                                yr[yi] += wt * xv[xi];
                                dxr[xi] += wt * dyv[yi];
                                dwr[((o * c + ci) * 3 + i) * 3 + j] += (double)dyv[yi] * xv[xi];
                            }
    for (b = 0; b < n; b++)
        for (o = 0; o < co; o++)
            for (oy = 0; oy < pq; oy++)
                yr[(b * co + o) * pq + oy] += bti_layer_value(l, 1)->data[o];
    ck_assert_int_eq(bti_layer_forward(l, x, y, 1, 1), BT_OK);
    ck_assert_int_eq(bti_layer_backward(l, dy, dx), BT_OK);
    ck_assert_msg(rel_err_fd(bt_tensor_data(y), yr, n * co * pq) < 1e-5, "%s: y", what);
    ck_assert_msg(rel_err_fd(bt_tensor_data(dx), dxr, n * c * hw) < 1e-5, "%s: dx", what);
    ck_assert_msg(rel_err_fd(bti_layer_grad(l, 0)->data, dwr, co * c * 9) < 1e-5,
                  "%s: dweight", what);
    /* without the input gradient (a first layer), the weight gradient accumulates alike */
    ck_assert_int_eq(bti_layer_backward(l, dy, NULL), BT_OK);
    for (i = 0; i < co * c * 9; i++)
        dwr[i] *= 2.0;
    ck_assert_msg(rel_err_fd(bti_layer_grad(l, 0)->data, dwr, co * c * 9) < 1e-5,
                  "%s: dweight without dx", what);
    free(yr);
    free(dxr);
    free(dwr);
    bt_tensor_free(x);
    bt_tensor_free(dy);
    bt_tensor_free(y);
    bt_tensor_free(dx);
    bti_layer_destroy(l);
}

static void direct_case(int64_t n, int64_t c, int64_t h, int64_t w, int64_t co, int s,
                        int threads)
{
    direct_case_form(n, c, h, w, co, s, threads, "direct");
    if (s == 1) {
        direct_case_form(n, c, h, w, co, s, threads, "flat");
        direct_case_form(n, c, h, w, co, s, threads, "winograd");
    }
}

START_TEST(conv_direct_matches_reference)
{
    int s;
    for (s = 1; s <= 2; s++) {
        direct_case(3, 17, 5, 4, 33, s, 2);
        direct_case(2, 40, 3, 7, 70, s, 1);
        direct_case(5, 3, 6, 6, 16, s, 2);
        direct_case(4, 64, 4, 4, 64, s, 2);
        direct_case(20, 5, 8, 8, 20, s, 2);
        direct_case(3, 1, 9, 2, 1, s, 3);
        direct_case(2, 20, 16, 17, 24, s, 2); /* few taps outside: one class */
        direct_case(2, 16, 16, 8, 16, s, 2);  /* one register of outputs */
        direct_case(3, 10, 16, 8, 12, s, 1);
        direct_case(3, 16, 1, 6, 16, s, 1);   /* images of one row, of one column */
        direct_case(2, 8, 5, 1, 16, s, 1);
    }
    direct_case(40, 6, 7, 9, 24, 2, 2); /* several groups of odd-sized images */
    direct_case(40, 6, 7, 9, 24, 1, 2);
    direct_case(3, 16, 28, 28, 16, 1, 2); /* the flat form's own shapes */
    direct_case(2, 32, 14, 14, 32, 1, 1);
    /* stems: flat form, dx in a tile of 4 (3 used), 1, 2 and 4 outputs */
    direct_case_form(2, 3, 10, 12, 40, 1, 2, NULL);
    direct_case_form(3, 1, 8, 8, 16, 1, 1, NULL);
    direct_case_form(2, 2, 9, 11, 24, 1, 2, NULL);
    direct_case_form(2, 4, 6, 20, 16, 1, 1, NULL);
    direct_case_form(3, 128, 4, 4, 128, 1, 2, NULL); /* where the automatic choice is Winograd */
    direct_case_form(2, 64, 32, 32, 64, 1, 1, NULL);
}
END_TEST

#if defined(__x86_64__) /* the direct form is x86-only */
/* The pixel classes: every output pixel in exactly one class, each class's
 * taps exactly those inside the image for each of its pixels (slot and
 * offset from the window's centre alike), and slack copies after each class. */
static void classes_case(int64_t nb, int64_t h, int64_t w, int s)
{
    const int64_t ho = (h - 1) / s + 1, wo = (w - 1) / s + 1, wp = w, plane = 3 * h * w;
    const int64_t n = bti_direct_list_len(nb * ho * wo);
    int64_t *off = malloc((size_t)n * sizeof *off), *rows = malloc((size_t)n * sizeof *rows);
    int *seen = calloc((size_t)(nb * ho * wo), sizeof *seen);
    struct bti_pixel_classes pc;
    int64_t q;
    int k, t, i, j;
    bti_direct_classes(nb, h, w, ho, wo, plane, wp, s, off, rows, &pc);
    ck_assert(pc.n >= 1 && pc.n <= BTI_DIRECT_CLASSES);
    for (k = 0; k < pc.n; k++) {
        const struct bti_taps *tp = &pc.tp[k];
        const int64_t end = pc.start[k] + pc.count[k];
        ck_assert(k == 0 || pc.start[k] >= pc.start[k - 1] + pc.count[k - 1] + BTI_DIRECT_SLACK);
        ck_assert_int_eq(tp->slots, 9);
        for (q = pc.start[k]; q < end; q++) {
            const int64_t r = rows[q], b = r / (ho * wo), y = r / wo % ho, x = r % wo;
            ck_assert(r >= 0 && r < nb * ho * wo && !seen[r]);
            seen[r] = 1;
            ck_assert_int_eq(off[q], b * plane + s * (y * wp + x));
            for (i = 0; i < 3; i++)
                for (j = 0; j < 3; j++) {
                    const int in = y * s + i - 1 >= 0 && y * s + i - 1 < h && x * s + j - 1 >= 0 &&
                                   x * s + j - 1 < w;
                    int found = 0;
                    for (t = 0; t < tp->n; t++)
                        if (tp->slot[t] == i * 3 + j) {
                            found = 1;
                            ck_assert_int_eq(tp->off[t], (i - 1) * wp + j - 1);
                        }
                    ck_assert(found == in);
                }
        }
        for (q = end; q < end + BTI_DIRECT_SLACK; q++)
            ck_assert(off[q] == off[end - 1] && rows[q] == rows[end - 1]);
    }
    for (q = 0; q < nb * ho * wo; q++)
        ck_assert_msg(seen[q], "pixel %lld in no class", (long long)q);
    free(off);
    free(rows);
    free(seen);
}

START_TEST(conv_direct_classes)
{
    int s;
    for (s = 1; s <= 2; s++) {
        classes_case(2, 7, 7, s);
        classes_case(3, 4, 5, s);
        classes_case(1, 1, 6, s);
        classes_case(2, 5, 1, s);
        classes_case(1, 1, 1, s);
        classes_case(2, 2, 2, s);
    }
}
END_TEST
#endif

/* ---- linear ----------------------------------------------------------------------- */

START_TEST(linear_matches_pytorch)
{
    static const char *const files[] = {"layers_linear_4x7x5.bin", "layers_linear_b1_nobias.bin",
                                        "layers_linear_16x64x10.bin"};
    size_t f;
    for (f = 0; f < 3; f++) {
        golden *g = golden_load(files[f]);
        const float *cfg = golden_get(g, "cfg", NULL, NULL);
        int bias = (int)cfg[2];
        bt_layer *l = NULL;
        bt_tensor *x = tensor_from(g, "x"), *y = tensor_like(g, "y"), *dy = tensor_from(g, "dy"),
                  *dx = tensor_like(g, "dx");
        ck_assert_int_eq(bt_layer_linear_create(&l, (int32_t)cfg[0], (int32_t)cfg[1], bias), BT_OK);
        set_tensor(l, "weight", g, "weight");
        if (bias)
            set_tensor(l, "bias", g, "bias");
        ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
        expect_close(g, "y", y, TOL, files[f]);
        ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
        expect_close(g, "dx", dx, TOL, files[f]);
        expect_close(g, "dweight", grad_of(l, "weight"), TOL, files[f]);
        if (bias)
            expect_close(g, "dbias", grad_of(l, "bias"), TOL, files[f]);
        bt_tensor_free(x);
        bt_tensor_free(y);
        bt_tensor_free(dy);
        bt_tensor_free(dx);
        bt_layer_free(l);
        golden_free(g);
    }
}
END_TEST

/* ---- batchnorm ---------------------------------------------------------------------- */

static void run_bn_case(const char *file, int threads)
{
    golden *g = golden_load(file);
    const float *cfg = golden_get(g, "cfg", NULL, NULL);
    int c = (int)cfg[0], affine = (int)cfg[3], steps = (int)cfg[4], groups = (int)cfg[5], s;
    bt_layer *l = NULL;
    char name[64], what[128];
    ck_assert_int_eq(bt_layer_batchnorm_create(&l, c, cfg[1], cfg[2], affine), BT_OK);
    ck_assert_int_eq(bt_layer_tensor_count(l), affine ? 5 : 3);
    ck_assert_int_eq(tensor_index(l, "running_mean"), affine ? 2 : 0);
    ck_assert_int_eq(tensor_index(l, "num_batches_tracked"), affine ? 4 : 2);
    bt_layer_set_threads(l, threads);
    if (affine) {
        set_tensor(l, "weight", g, "weight");
        set_tensor(l, "bias", g, "bias");
    }
    for (s = 0; s < steps; s++) {
        bt_tensor *x, *y, *dy, *dx;
        snprintf(name, sizeof name, "x%d", s);
        x = tensor_from(g, name);
        y = tensor_like(g, name);
        dx = tensor_like(g, name);
        snprintf(name, sizeof name, "dy%d", s);
        dy = tensor_from(g, name);
        snprintf(what, sizeof what, "%s step %d threads %d", file, s, threads);
        /* groups > 1 exists only in the private API (the model's per-view batches) */
        if (groups == 1)
            ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
        else
            ck_assert_int_eq(bti_layer_forward(l, x, y, 1, groups), BT_OK);
        snprintf(name, sizeof name, "y%d", s);
        expect_close(g, name, y, TOL, what);
        snprintf(name, sizeof name, "running_mean%d", s);
        expect_close(g, name, value_of(l, "running_mean"), TOL, what);
        snprintf(name, sizeof name, "running_var%d", s);
        expect_close(g, name, value_of(l, "running_var"), TOL, what);
        if (groups == 1)
            ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
        else
            ck_assert_int_eq(bti_layer_backward(l, dy, dx), BT_OK);
        snprintf(name, sizeof name, "dx%d", s);
        expect_close(g, name, dx, TOL, what);
        bt_tensor_free(x);
        bt_tensor_free(y);
        bt_tensor_free(dy);
        bt_tensor_free(dx);
    }
    ck_assert(bt_tensor_data(value_of(l, "num_batches_tracked"))[0] ==
              golden_get(g, "num_batches_tracked", NULL, NULL)[0]);
    if (affine) {
        expect_close(g, "dweight", grad_of(l, "weight"), TOL, file);
        expect_close(g, "dbias", grad_of(l, "bias"), TOL, file);
        ck_assert_int_eq(bt_layer_zero_grad(l), BT_OK);
    }
    {
        bt_tensor *x = tensor_from(g, "xe"), *y = tensor_like(g, "ye"), *dy = tensor_from(g, "dye"),
                  *dx = tensor_like(g, "dxe");
        float rm0 = bt_tensor_data(value_of(l, "running_mean"))[0];
        snprintf(what, sizeof what, "%s eval", file);
        ck_assert_int_eq(bt_layer_forward(l, x, y, 0), BT_OK);
        ck_assert(bt_tensor_data(value_of(l, "running_mean"))[0] == rm0); /* eval: no update */
        expect_close(g, "ye", y, TOL, what);
        ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
        expect_close(g, "dxe", dx, TOL, what);
        if (affine) {
            expect_close(g, "dweight_e", grad_of(l, "weight"), TOL, what);
            expect_close(g, "dbias_e", grad_of(l, "bias"), TOL, what);
        }
        bt_tensor_free(x);
        bt_tensor_free(y);
        bt_tensor_free(dy);
        bt_tensor_free(dx);
    }
    bt_layer_free(l);
    golden_free(g);
}

START_TEST(batchnorm_matches_pytorch)
{
    static const char *const files[] = {
        "layers_bn2d.bin",          "layers_bn1d.bin",          "layers_bn1d_ncl.bin",
        "layers_bn2d_noaffine.bin", "layers_bn2d_b1.bin",       "layers_bn1d_groups3.bin",
        "layers_bn2d_groups2.bin",  "layers_bn2d_wide.bin",     "layers_bn2d_wide_groups2.bin",
    };
    size_t f;
    for (f = 0; f < sizeof files / sizeof *files; f++) {
        run_bn_case(files[f], 1);
        run_bn_case(files[f], 2);
    }
}
END_TEST

/* ---- relu and pooling ------------------------------------------------------------------ */

START_TEST(relu_matches_pytorch_in_place_too)
{
    golden *g = golden_load("layers_relu.bin");
    bt_layer *l = NULL;
    bt_tensor *x = tensor_from(g, "x"), *y = tensor_like(g, "y"), *dy = tensor_from(g, "dy"),
              *dx = tensor_like(g, "dx");
    ck_assert_int_eq(bt_layer_relu_create(&l), BT_OK);
    ck_assert_int_eq(bt_layer_tensor_count(l), 0);
    ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
    ck_assert_double_eq(rel_err(bt_tensor_data(y), golden_get(g, "y", NULL, NULL), 120), 0.0);
    ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
    ck_assert_double_eq(rel_err(bt_tensor_data(dx), golden_get(g, "dx", NULL, NULL), 120), 0.0);
    /* the private API in place: y is x, dx is dy */
    ck_assert_int_eq(bti_layer_forward(l, x, x, 1, 1), BT_OK);
    ck_assert_double_eq(rel_err(bt_tensor_data(x), golden_get(g, "y", NULL, NULL), 120), 0.0);
    ck_assert_int_eq(bti_layer_backward(l, dy, dy), BT_OK);
    ck_assert_double_eq(rel_err(bt_tensor_data(dy), golden_get(g, "dx", NULL, NULL), 120), 0.0);
    bt_tensor_free(x);
    bt_tensor_free(y);
    bt_tensor_free(dy);
    bt_tensor_free(dx);
    bt_layer_free(l);
    golden_free(g);
}
END_TEST

START_TEST(maxpool_matches_pytorch)
{
    static const char *const files[] = {"layers_maxpool_k3s2p1.bin", "layers_maxpool_k2s2_b1.bin",
                                        "layers_maxpool_k3s1p1.bin", "layers_maxpool_ties.bin"};
    size_t f;
    for (f = 0; f < 4; f++) {
        golden *g = golden_load(files[f]);
        const float *cfg = golden_get(g, "cfg", NULL, NULL);
        bt_layer *l = NULL;
        bt_tensor *x = tensor_from(g, "x"), *y = tensor_like(g, "y"), *dy = tensor_from(g, "dy"),
                  *dx = tensor_like(g, "dx");
        ck_assert_int_eq(
            bt_layer_maxpool2d_create(&l, (int32_t)cfg[0], (int32_t)cfg[1], (int32_t)cfg[2]), BT_OK);
        ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
        expect_close(g, "y", y, 0.0, files[f]);
        ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
        expect_close(g, "dx", dx, TOL, files[f]);
        bt_tensor_free(x);
        bt_tensor_free(y);
        bt_tensor_free(dy);
        bt_tensor_free(dx);
        bt_layer_free(l);
        golden_free(g);
    }
}
END_TEST

/* PyTorch's max-pooling rule on awkward inputs, against a plain loop: the
 * first maximum in scan order wins (ties, and -inf everywhere: the window's
 * first element), a NaN wins over everything, and a later NaN over an earlier
 * one; the gradient goes to the winner. Planes wider than a register (the
 * AVX-512 path takes 16 output columns at a time) and several strides. */
static void maxpool_rule_case(int level, int64_t h, int64_t w, int k, int s, int pad)
{
    const int64_t ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1;
    const int64_t xs[4] = {2, 1, h, w}, ys[4] = {2, 1, ho, wo};
    bt_tensor *x = random_tensor(4, xs), *dy = random_tensor(4, ys), *y = NULL, *dx = NULL;
    bt_layer *l = NULL;
    float *xv = bt_tensor_data(x);
    int64_t i, b, oy, ox, iy, ix;
    for (i = 0; i < bt_tensor_numel(x); i++) { /* few distinct values: many ties */
        const int r = (int)(i * 7919 % 23);
        xv[i] = r == 0 ? NAN : r < 4 ? -INFINITY : (float)(r % 3);
    }
    for (i = 0; i < 2 * w && i < h * w; i++) /* first rows of -inf: the first outputs' windows */
        xv[i] = -INFINITY;
    ck_assert_int_eq(bt_tensor_create(&y, 4, ys), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&dx, 4, xs), BT_OK);
    ck_assert_int_eq(bt_layer_maxpool2d_create(&l, k, s, pad), BT_OK);
    bti_layer_set_level(l, level);
    ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
    ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
    for (b = 0; b < 2; b++) {
        float *want = calloc((size_t)(h * w), sizeof *want); /* summed as the layer does */
        const float *xb = xv + b * h * w, *dyb = bt_tensor_data(dy) + b * ho * wo;
        for (oy = 0; oy < ho; oy++)
            for (ox = 0; ox < wo; ox++) {
                const int64_t y0 = oy * s - pad, x0 = ox * s - pad;
                int64_t at = (y0 > 0 ? y0 : 0) * w + (x0 > 0 ? x0 : 0);
                float m = -INFINITY, got = bt_tensor_data(y)[(b * ho + oy) * wo + ox];
                for (iy = y0; iy < y0 + k; iy++)
                    for (ix = x0; ix < x0 + k; ix++)
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w &&
                            (xb[iy * w + ix] > m || isnan(xb[iy * w + ix]))) {
                            m = xb[iy * w + ix];
                            at = iy * w + ix;
                        }
                ck_assert_msg(isnan(m) ? isnan(got) : got == m, "maxpool %lldx%lld k%d s%d p%d: y",
                              (long long)h, (long long)w, k, s, pad);
                want[at] += dyb[oy * wo + ox];
            }
        for (i = 0; i < h * w; i++)
            ck_assert_msg(bt_tensor_data(dx)[b * h * w + i] == want[i],
                          "maxpool %lldx%lld k%d s%d p%d: dx at %lld", (long long)h, (long long)w,
                          k, s, pad, (long long)i);
        free(want);
    }
    bt_tensor_free(x);
    bt_tensor_free(dy);
    bt_tensor_free(y);
    bt_tensor_free(dx);
    bt_layer_free(l);
}

START_TEST(maxpool_rule)
{
    int level;
    for (level = bti_cpu_default(); level >= BTI_CPU_GENERIC; level--) { /* the plain loop too */
        maxpool_rule_case(level, 9, 40, 3, 2, 1);
        maxpool_rule_case(level, 7, 35, 3, 1, 1);
        maxpool_rule_case(level, 6, 50, 2, 3, 0);
        maxpool_rule_case(level, 5, 5, 3, 2, 1);
    }
}
END_TEST

START_TEST(avgpool_matches_pytorch)
{
    golden *g = golden_load("layers_avgpool.bin");
    bt_layer *l = NULL;
    bt_tensor *x = tensor_from(g, "x"), *y = tensor_like(g, "y"), *dy = tensor_from(g, "dy"),
              *dx = tensor_like(g, "dx");
    int64_t in[4] = {3, 4, 5, 7}, out[4] = {0};
    int32_t ond = 0;
    ck_assert_int_eq(bt_layer_avgpool_create(&l), BT_OK);
    ck_assert_int_eq(bt_layer_output_shape(l, 4, in, &ond, out), BT_OK);
    ck_assert_int_eq(ond, 2);
    ck_assert_int_eq(out[1], 4);
    ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
    expect_close(g, "y", y, TOL, "avgpool");
    ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
    expect_close(g, "dx", dx, TOL, "avgpool");
    bt_tensor_free(x);
    bt_tensor_free(y);
    bt_tensor_free(dy);
    bt_tensor_free(dx);
    bt_layer_free(l);
    golden_free(g);
}
END_TEST

/* ---- initialisation ---------------------------------------------------------------------- */

START_TEST(default_init_is_pytorchs)
{
    bt_layer *c = NULL, *c2 = NULL, *lin = NULL, *bn = NULL;
    bt_tensor *w, *b;
    double bound = 1.0 / sqrt(16.0 * 9.0), sum = 0, sq = 0, mx = 0;
    int64_t i, n;
    ck_assert_int_eq(bt_layer_conv2d_create(&c, 16, 32, 3, 1, 1, 1), BT_OK);
    w = value_of(c, "weight");
    n = bt_tensor_numel(w);
    for (i = 0; i < n; i++) {
        double v = bt_tensor_data(w)[i];
        sum += v;
        sq += v * v;
        mx = fmax(mx, fabs(v));
    }
    ck_assert(mx <= bound && mx > 0.98 * bound);
    ck_assert(fabs(sum / n) < 0.05 * bound);
    /* U(-a, a) has variance a^2/3; 4608 draws give this within a few percent */
    ck_assert(fabs(sq / n / (bound * bound / 3.0) - 1.0) < 0.06);
    b = value_of(c, "bias");
    for (i = 0; i < 32; i++)
        ck_assert(fabs(bt_tensor_data(b)[i]) <= bound);
    ck_assert(bt_tensor_data(b)[0] != bt_tensor_data(w)[0]);
    /* seed 0 at creation; another seed gives other values, the same seed the same */
    ck_assert_int_eq(bt_layer_conv2d_create(&c2, 16, 32, 3, 1, 1, 1), BT_OK);
    ck_assert_mem_eq(bt_tensor_data(w), bt_tensor_data(value_of(c2, "weight")), 16 * sizeof(float));
    ck_assert_int_eq(bt_layer_reset_parameters(c2, 7), BT_OK);
    ck_assert(memcmp(bt_tensor_data(w), bt_tensor_data(value_of(c2, "weight")), 16 * sizeof(float)));
    ck_assert_int_eq(bt_layer_reset_parameters(c, 7), BT_OK);
    ck_assert_mem_eq(bt_tensor_data(w), bt_tensor_data(value_of(c2, "weight")), n * sizeof(float));

    ck_assert_int_eq(bt_layer_linear_create(&lin, 100, 10, 1), BT_OK);
    w = value_of(lin, "weight");
    ck_assert_int_eq(bt_tensor_dim(w, 0), 10);
    ck_assert_int_eq(bt_tensor_dim(w, 1), 100);
    for (i = 0, mx = 0; i < 1000; i++)
        mx = fmax(mx, fabs(bt_tensor_data(w)[i]));
    ck_assert(mx <= 0.1 && mx > 0.09);

    ck_assert_int_eq(bt_layer_batchnorm_create(&bn, 3, 1e-5, 0.1, 1), BT_OK);
    for (i = 0; i < 3; i++) {
        ck_assert(bt_tensor_data(value_of(bn, "weight"))[i] == 1.0f);
        ck_assert(bt_tensor_data(value_of(bn, "bias"))[i] == 0.0f);
        ck_assert(bt_tensor_data(value_of(bn, "running_mean"))[i] == 0.0f);
        ck_assert(bt_tensor_data(value_of(bn, "running_var"))[i] == 1.0f);
        ck_assert(bt_tensor_data(grad_of(bn, "weight"))[i] == 0.0f);
    }
    ck_assert(bt_tensor_data(value_of(bn, "num_batches_tracked"))[0] == 0.0f);
    {
        bt_tensor *gr = (bt_tensor *)1;
        ck_assert_int_eq(bt_layer_tensor(bn, 3, NULL, NULL, &gr), BT_OK);
        ck_assert_ptr_null(gr); /* buffers have no gradient */
    }
    bt_layer_free(c);
    bt_layer_free(c2);
    bt_layer_free(lin);
    bt_layer_free(bn);
}
END_TEST

/* ---- public API safety and the private API --------------------------------------------------- */

START_TEST(public_forward_copies_x)
{
    int64_t xs[4] = {2, 3, 6, 6}, ys[4] = {2, 4, 6, 6};
    bt_layer *l = NULL;
    bt_tensor *x = random_tensor(4, xs), *x2, *y = NULL, *dy = random_tensor(4, ys), *dx = NULL,
              *dx2 = NULL;
    float *gw;
    int64_t i, nw = 4 * 3 * 9;
    float ref[108];
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 3, 4, 3, 1, 1, 0), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&y, 4, ys), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&dx, 4, xs), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&dx2, 4, xs), BT_OK);
    ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
    ck_assert_int_eq(bt_layer_backward(l, dy, dx), BT_OK);
    gw = bt_tensor_data(grad_of(l, "weight"));
    memcpy(ref, gw, sizeof ref);
    bt_layer_zero_grad(l);
    for (i = 0; i < nw; i++)
        ck_assert(gw[i] == 0.0f);
    /* forward, then free x: backward must still work and give the same gradients */
    x2 = random_tensor(4, xs);
    memcpy(bt_tensor_data(x2), bt_tensor_data(x), 2 * 3 * 36 * sizeof(float));
    ck_assert_int_eq(bt_layer_forward(l, x2, y, 1), BT_OK);
    bt_tensor_free(x2);
    ck_assert_int_eq(bt_layer_backward(l, dy, dx2), BT_OK);
    ck_assert_mem_eq(ref, gw, sizeof ref);
    ck_assert_mem_eq(bt_tensor_data(dx), bt_tensor_data(dx2), 2 * 3 * 36 * sizeof(float));
    bt_tensor_free(x);
    bt_tensor_free(y);
    bt_tensor_free(dy);
    bt_tensor_free(dx);
    bt_tensor_free(dx2);
    bt_layer_free(l);
}
END_TEST

START_TEST(private_api_for_the_model)
{
    bt_layer *l = NULL;
    int64_t shape[2] = {6, 4};
    bt_tensor *x = random_tensor(2, shape), *y1 = random_tensor(2, shape),
              *y2 = random_tensor(2, shape), *x0;
    struct bti_buffer shared = {NULL, 0};
    int64_t half[2] = {3, 4};
    ck_assert_int_eq(bti_layer_batchnorm_new(&l, 4, 1e-5, 0.1, 1, "test"), BT_OK);
    ck_assert(!bti_handle_is(l, BTI_KIND_LAYER)); /* the model owns it, not a public handle */
    ck_assert_int_eq(bti_layer_tensor_count(l), 5);
    ck_assert_str_eq(bti_layer_tensor_name(l, 0), "weight");
    ck_assert_str_eq(bti_layer_tensor_name(l, 1), "bias");
    ck_assert_str_eq(bti_layer_tensor_name(l, 2), "running_mean");
    ck_assert_str_eq(bti_layer_tensor_name(l, 3), "running_var");
    ck_assert_str_eq(bti_layer_tensor_name(l, 4), "num_batches_tracked");
    ck_assert_ptr_nonnull(bti_layer_grad(l, 1));
    ck_assert_ptr_null(bti_layer_grad(l, 2));
    ck_assert_ptr_eq(bti_layer_value(l, 0)->data, bt_tensor_data(bti_layer_value(l, 0)));
    ck_assert_ptr_null(bti_layer_value(l, 5));
    bti_layer_set_scratch(l, &shared);
    bti_layer_set_threads(l, 2);
    /* groups=2 equals the two halves, one after the other, on a fresh layer */
    ck_assert_int_eq(bti_layer_forward(l, x, y1, 1, 2), BT_OK);
    ck_assert_int_eq(bti_layer_forward(l, x, y1, 1, 5), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "groups 5"));
    {
        bt_layer *r = NULL;
        bt_tensor *xa, *xb, *ya, *yb;
        float *rm = bti_layer_value(l, 2)->data;
        ck_assert_int_eq(bti_layer_batchnorm_new(&r, 4, 1e-5, 0.1, 1, "test"), BT_OK);
        ck_assert_int_eq(bt_tensor_wrap(&xa, bt_tensor_data(x), 2, half), BT_OK);
        ck_assert_int_eq(bt_tensor_wrap(&xb, bt_tensor_data(x) + 12, 2, half), BT_OK);
        ck_assert_int_eq(bt_tensor_wrap(&ya, bt_tensor_data(y2), 2, half), BT_OK);
        ck_assert_int_eq(bt_tensor_wrap(&yb, bt_tensor_data(y2) + 12, 2, half), BT_OK);
        ck_assert_int_eq(bti_layer_forward(r, xa, ya, 1, 1), BT_OK);
        ck_assert_int_eq(bti_layer_forward(r, xb, yb, 1, 1), BT_OK);
        ck_assert_mem_eq(bt_tensor_data(y1), bt_tensor_data(y2), 24 * sizeof(float));
        ck_assert_mem_eq(rm, bti_layer_value(r, 2)->data, 4 * sizeof(float));
        ck_assert(bti_layer_value(l, 4)->data[0] == 2.0f);
        bt_tensor_free(xa);
        bt_tensor_free(xb);
        bt_tensor_free(ya);
        bt_tensor_free(yb);
        bti_layer_destroy(r);
    }
    /* forward borrows x: no copy is made by the private API */
    x0 = random_tensor(2, shape);
    ck_assert_int_eq(bti_layer_forward(l, x0, y1, 0, 1), BT_OK);
    ck_assert_ptr_eq(l->x, x0);
    ck_assert_ptr_null(l->xcopy);
    /* y may not alias x except for relu */
    ck_assert_int_eq(bti_layer_forward(l, x0, x0, 1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bti_layer_backward(l, y1, y1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bti_layer_backward(l, y1, NULL), BT_OK);
    bti_layer_zero_grad(l);
    ck_assert(bti_layer_grad(l, 0)->data[0] == 0.0f);
    ck_assert_int_eq(bti_layer_reset_parameters(l, 3), BT_OK);
    ck_assert(bti_layer_value(l, 4)->data[0] == 0.0f);
    /* the model's pointers are owned: users cannot free them */
    bt_tensor_free(bti_layer_value(l, 0));
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "belongs to a layer"));
    {
        int32_t ond = 0;
        int64_t o[4] = {0};
        ck_assert_int_eq(bti_layer_output_shape(l, 2, shape, &ond, o), BT_OK);
        ck_assert_int_eq(ond, 2);
        ck_assert_int_eq(o[1], 4);
    }
    bt_tensor_free(x);
    bt_tensor_free(x0);
    bt_tensor_free(y1);
    bt_tensor_free(y2);
    bti_layer_destroy(l);
    bti_buffer_release(&shared);
}
END_TEST

START_TEST(results_are_deterministic)
{
    int64_t xs[4] = {4, 8, 9, 9}, ys[4] = {4, 16, 5, 5};
    bt_tensor *x = random_tensor(4, xs), *dy = random_tensor(4, ys), *y1 = NULL, *y2 = NULL,
              *dx1 = NULL, *dx2 = NULL;
    bt_layer *a = NULL, *b = NULL;
    ck_assert_int_eq(bt_tensor_create(&y1, 4, ys), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&y2, 4, ys), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&dx1, 4, xs), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&dx2, 4, xs), BT_OK);
    ck_assert_int_eq(bt_layer_conv2d_create(&a, 8, 16, 3, 2, 1, 1), BT_OK);
    ck_assert_int_eq(bt_layer_conv2d_create(&b, 8, 16, 3, 2, 1, 1), BT_OK);
    bt_layer_set_threads(a, 2);
    bt_layer_set_threads(b, 2);
    ck_assert_int_eq(bt_layer_forward(a, x, y1, 1), BT_OK);
    ck_assert_int_eq(bt_layer_forward(b, x, y2, 1), BT_OK);
    ck_assert_int_eq(bt_layer_backward(a, dy, dx1), BT_OK);
    ck_assert_int_eq(bt_layer_backward(b, dy, dx2), BT_OK);
    ck_assert_mem_eq(bt_tensor_data(y1), bt_tensor_data(y2), 4 * 16 * 25 * sizeof(float));
    ck_assert_mem_eq(bt_tensor_data(dx1), bt_tensor_data(dx2), 4 * 8 * 81 * sizeof(float));
    ck_assert_mem_eq(bt_tensor_data(grad_of(a, "weight")), bt_tensor_data(grad_of(b, "weight")),
                     16 * 72 * sizeof(float));
    bt_tensor_free(x);
    bt_tensor_free(dy);
    bt_tensor_free(y1);
    bt_tensor_free(y2);
    bt_tensor_free(dx1);
    bt_tensor_free(dx2);
    bt_layer_free(a);
    bt_layer_free(b);
}
END_TEST

/* ---- misuse ------------------------------------------------------------------------------ */

START_TEST(bad_create_arguments)
{
    bt_layer *l = (bt_layer *)0x1;
    ck_assert_int_eq(bt_layer_conv2d_create(NULL, 3, 4, 3, 1, 1, 1), BT_E_MISUSE);
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 0, 4, 3, 1, 1, 1), BT_E_INVALID_ARG);
    ck_assert_ptr_null(l);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "in_ch 0"));
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 3, 4, 0, 1, 1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 3, 4, 3, 0, 1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 3, 4, 3, 1, -1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 3, 4, 3, 1, 1, 2), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_linear_create(&l, 0, 4, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_linear_create(&l, 3, -1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_linear_create(&l, 3, 4, 2), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bias is 2; it must be 0 or 1"));
    ck_assert_int_eq(bt_layer_linear_create(NULL, 3, 4, 1), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "out is NULL"));
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 3, 4, 4097, 1, 1, 1), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "kernel 4097"));
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "too large"));
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 3, 1 << 27, 3, 1, 1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_batchnorm_create(&l, 0, 1e-5, 0.1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_batchnorm_create(&l, 4, 0.0, 0.1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_batchnorm_create(&l, 4, NAN, 0.1, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_batchnorm_create(&l, 4, 1e-5, 1.5, 1), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "momentum is 1.5"));
    ck_assert_int_eq(bt_layer_batchnorm_create(&l, 4, 1e-5, 0.1, 3), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_maxpool2d_create(&l, 3, 2, 2), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "half the kernel"));
    ck_assert_int_eq(bt_layer_maxpool2d_create(&l, 0, 1, 0), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_maxpool2d_create(NULL, 3, 2, 1), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "out is NULL"));
    ck_assert_int_eq(bt_layer_relu_create(NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_layer_avgpool_create(NULL), BT_E_MISUSE);
    ck_assert_ptr_null(l);
}
END_TEST

START_TEST(wrong_shapes_and_order)
{
    bt_layer *l = NULL, *bn = NULL;
    int64_t xs[4] = {2, 3, 8, 8}, ys[4] = {2, 4, 4, 4}, bad_c[4] = {2, 5, 8, 8},
            bad_y[4] = {2, 4, 8, 8}, tiny[4] = {1, 3, 1, 1}, out[4];
    int32_t ond;
    bt_tensor *x = random_tensor(4, xs), *y = random_tensor(4, ys), *xc = random_tensor(4, bad_c),
              *yb = random_tensor(4, bad_y), *dx = random_tensor(4, xs), *t1 = random_tensor(4, tiny),
              *t1y = random_tensor(4, tiny);
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 3, 4, 3, 2, 1, 1), BT_OK);
    /* backward before any forward */
    ck_assert_int_eq(bt_layer_backward(l, y, dx), BT_E_STATE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "forward"));
    /* input channels */
    ck_assert_int_eq(bt_layer_forward(l, xc, y, 1), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "5 channels"));
    /* output of the wrong shape: the message gives expected and actual */
    ck_assert_int_eq(bt_layer_forward(l, x, yb, 1), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[2, 4, 8, 8]"));
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "expected [2, 4, 4, 4]"));
    ck_assert_int_eq(bt_layer_output_shape(l, 4, xs, &ond, out), BT_OK);
    ck_assert_int_eq(ond, 4);
    ck_assert_int_eq(out[2], 4);
    ck_assert_int_eq(bt_layer_output_shape(l, 3, xs, &ond, out), BT_E_SHAPE);
    ck_assert_int_eq(bt_layer_output_shape(l, 4, xs, NULL, out), BT_E_MISUSE);
    /* a 1x1 image padded by 1 is smaller than the kernel 3? no: 3 >= 3, fine; 1x1 unpadded is not */
    {
        bt_layer *k5 = NULL;
        ck_assert_int_eq(bt_layer_conv2d_create(&k5, 3, 4, 5, 1, 1, 0), BT_OK);
        ck_assert_int_eq(bt_layer_forward(k5, t1, t1y, 1), BT_E_SHAPE);
        ck_assert_ptr_nonnull(strstr(bt_last_error(), "smaller than the 5x5 kernel"));
        bt_layer_free(k5);
    }
    ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
    /* dy of another shape, dx of another shape, dx overlapping dy */
    ck_assert_int_eq(bt_layer_backward(l, yb, dx), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[2, 4, 4, 4]"));
    ck_assert_int_eq(bt_layer_backward(l, y, xc), BT_E_SHAPE);
    ck_assert_int_eq(bt_layer_backward(l, y, NULL), BT_OK);
    ck_assert_int_eq(bt_layer_backward(NULL, y, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_layer_forward(l, NULL, y, 1), BT_E_MISUSE);
    ck_assert_int_eq(bt_layer_forward(l, x, NULL, 1), BT_E_MISUSE);

    /* batchnorm: a failed forward changes nothing, and the pending backward still works */
    ck_assert_int_eq(bt_layer_batchnorm_create(&bn, 3, 1e-5, 0.1, 1), BT_OK);
    ck_assert_int_eq(bt_layer_forward(bn, t1, t1y, 1), BT_E_SHAPE); /* one value per channel */
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "more than 1 value"));
    ck_assert_int_eq(bt_layer_forward(bn, t1, t1y, 0), BT_OK); /* fine in eval */
    ck_assert_int_eq(bt_layer_forward(bn, x, dx, 1), BT_OK);
    {
        bt_tensor *rm = value_of(bn, "running_mean"), *gw = grad_of(bn, "weight");
        float before[3], g1[3];
        bt_tensor *dx2 = random_tensor(4, xs);
        memcpy(before, bt_tensor_data(rm), sizeof before);
        ck_assert_int_eq(bt_layer_forward(bn, x, y, 1), BT_E_SHAPE);
        ck_assert_int_eq(bt_layer_forward(bn, xc, yb, 1), BT_E_SHAPE);
        ck_assert_mem_eq(before, bt_tensor_data(rm), sizeof before);
        ck_assert(bt_tensor_data(value_of(bn, "num_batches_tracked"))[0] == 1.0f);
        ck_assert_int_eq(bt_layer_backward(bn, x, dx2), BT_OK);
        memcpy(g1, bt_tensor_data(gw), sizeof g1);
        ck_assert(g1[0] != 0.0f);
        bt_tensor_free(dx2);
    }
    /* wrong handle kinds and freed handles */
    ck_assert_int_eq(bt_layer_forward((bt_layer *)x, x, y, 1), BT_E_MISUSE);
    ck_assert_int_eq(bt_layer_tensor(l, 2, NULL, NULL, NULL), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_tensor(l, -1, NULL, NULL, NULL), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_layer_set_threads(l, -1), BT_E_INVALID_ARG);
    {
        bt_tensor *w = value_of(l, "weight");
        bt_tensor_free(w); /* refused: owned by the layer */
        ck_assert_int_eq(bt_tensor_ndim(w), 4);
    }
    bt_layer_free(l);
    ck_assert_int_eq(bt_layer_tensor_count(l), -1);
    ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_E_MISUSE);
    ck_assert_int_eq(bt_layer_zero_grad(l), BT_E_MISUSE);
    bt_layer_free(NULL);
    bt_layer_free(bn);
    bt_tensor_free(x);
    bt_tensor_free(y);
    bt_tensor_free(xc);
    bt_tensor_free(yb);
    bt_tensor_free(dx);
    bt_tensor_free(t1);
    bt_tensor_free(t1y);
}
END_TEST

START_TEST(relu_and_pool_misuse)
{
    bt_layer *r = NULL, *m = NULL, *a = NULL, *lin = NULL;
    int64_t s2[2] = {4, 6}, s4[4] = {1, 2, 2, 2}, s3[2] = {4, 3};
    bt_tensor *x2 = random_tensor(2, s2), *x4 = random_tensor(4, s4), *y3 = random_tensor(2, s3);
    ck_assert_int_eq(bt_layer_relu_create(&r), BT_OK);
    ck_assert_int_eq(bt_layer_forward(r, x2, y3, 1), BT_E_SHAPE);
    ck_assert_int_eq(bt_layer_forward(r, x2, x2, 1), BT_OK); /* in place through the public API */
    ck_assert_int_eq(bt_layer_backward(r, x2, x2), BT_OK);
    ck_assert_int_eq(bt_layer_maxpool2d_create(&m, 3, 1, 0), BT_OK);
    ck_assert_int_eq(bt_layer_forward(m, x2, x2, 1), BT_E_SHAPE);
    ck_assert_int_eq(bt_layer_forward(m, x4, x4, 1), BT_E_SHAPE); /* 2x2 smaller than 3x3 */
    ck_assert_int_eq(bt_layer_avgpool_create(&a), BT_OK);
    ck_assert_int_eq(bt_layer_forward(a, x2, x2, 1), BT_E_SHAPE);
    ck_assert_int_eq(bt_layer_linear_create(&lin, 6, 3, 1), BT_OK);
    ck_assert_int_eq(bt_layer_forward(lin, x4, y3, 1), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[N, 6]"));
    ck_assert_int_eq(bt_layer_forward(lin, x2, y3, 1), BT_OK);
    ck_assert_int_eq(bt_layer_backward(lin, y3, y3), BT_E_SHAPE);
    bt_layer_free(r);
    bt_layer_free(m);
    bt_layer_free(a);
    bt_layer_free(lin);
    bt_tensor_free(x2);
    bt_tensor_free(x4);
    bt_tensor_free(y3);
}
END_TEST

/* Overlapping tensors (bt_tensor_wrap over one buffer): relu runs in place but refuses a dx
 * that partly overlaps dy, other layers refuse any overlap; a refused call writes nothing. */
START_TEST(overlapping_tensors_are_refused)
{
    float buf[20], keep[20];
    int64_t s8[2] = {2, 4};
    bt_tensor *a, *b, *c, *x, *y;
    bt_layer *r = NULL, *lin = NULL;
    int i;
    for (i = 0; i < 20; i++)
        buf[i] = (float)(i % 3) - 1.0f; /* -1, 0, 1, ... */
    ck_assert_int_eq(bt_tensor_wrap(&a, buf, 2, s8), BT_OK);      /* buf[0..8) */
    ck_assert_int_eq(bt_tensor_wrap(&b, buf + 2, 2, s8), BT_OK);  /* buf[2..10) */
    ck_assert_int_eq(bt_tensor_wrap(&c, buf + 10, 2, s8), BT_OK); /* buf[10..18) */
    ck_assert_int_eq(bt_layer_relu_create(&r), BT_OK);
    ck_assert_int_eq(bt_layer_forward(r, a, a, 1), BT_OK);
    memcpy(keep, buf, sizeof keep);
    ck_assert_int_eq(bt_layer_backward(r, a, b), BT_E_INVALID_ARG);
    ck_assert_str_eq(bt_last_error(), "bt_layer_backward: dx partly overlaps dy");
    ck_assert_mem_eq(keep, buf, sizeof keep);
    ck_assert_int_eq(bt_layer_backward(r, a, c), BT_OK); /* apart: the masked gradient */
    for (i = 0; i < 8; i++)
        ck_assert_float_eq(buf[10 + i], keep[i] > 0 ? keep[i] : 0.0f);

    ck_assert_int_eq(bt_layer_linear_create(&lin, 4, 4, 0), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&x, 2, s8), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&y, 2, s8), BT_OK);
    ck_assert_int_eq(bt_layer_forward(lin, x, y, 1), BT_OK);
    memcpy(keep, buf, sizeof keep);
    ck_assert_int_eq(bt_layer_backward(lin, a, b), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "dx overlaps dy or x"));
    ck_assert_int_eq(bt_layer_backward(lin, a, a), BT_E_INVALID_ARG);
    ck_assert_mem_eq(keep, buf, sizeof keep);
    ck_assert_int_eq(bt_layer_backward(lin, a, c), BT_OK);
    bt_layer_free(r);
    bt_layer_free(lin);
    bt_tensor_free(a);
    bt_tensor_free(b);
    bt_tensor_free(c);
    bt_tensor_free(x);
    bt_tensor_free(y);
}
END_TEST

/* The private entry points the model calls check what the public ones do: groups,
 * NULL tensors, and the BatchNorm-only fused forms on another type. */
START_TEST(private_checks_refuse_bad_arguments)
{
    bt_layer *bn = NULL, *lin = NULL;
    int64_t shape[2] = {4, 3};
    bt_tensor *x = random_tensor(2, shape), *y = random_tensor(2, shape),
              *wrong = random_tensor(2, (int64_t[2]){4, 2});
    struct bti_buffer shared = {NULL, 0};
    float rm[3];
    ck_assert_int_eq(bti_layer_batchnorm_new(&bn, 3, 1e-5, 0.1, 1, "test"), BT_OK);
    ck_assert_int_eq(bti_layer_linear_new(&lin, 3, 3, 1, "test"), BT_OK);
    bti_layer_set_scratch(bn, &shared);
    memcpy(rm, bti_layer_value(bn, 2)->data, sizeof rm);
    ck_assert_int_eq(bti_layer_forward(bn, x, y, 1, 0), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "groups is 0; it must be >= 1"));
    ck_assert_int_eq(bti_layer_forward(bn, NULL, y, 1, 1), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "x is NULL"));
    ck_assert_int_eq(bti_layer_forward(bn, x, NULL, 1, 1), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "y is NULL"));
    ck_assert_int_eq(bti_layer_forward_fused(lin, x, y, 1, 1, NULL, 1), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "not a batchnorm"));
    ck_assert_int_eq(bti_layer_forward_fused(bn, x, NULL, 1, 1, NULL, 1), BT_E_MISUSE);
    ck_assert_int_eq(bti_layer_forward_fused(bn, x, y, 1, 1, wrong, 1), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "skip does not have the output's shape"));
    ck_assert_int_eq(bti_layer_forward_fused(bn, x, y, 1, 1, y, 1), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "y overlaps x or skip"));
    ck_assert_mem_eq(rm, bti_layer_value(bn, 2)->data, sizeof rm); /* no statistics moved */
    ck_assert_int_eq(bti_layer_backward(bn, y, NULL), BT_E_STATE); /* no forward yet */
    ck_assert_int_eq(bti_layer_forward_fused(bn, x, y, 1, 1, NULL, 1), BT_OK);
    ck_assert_int_eq(bti_layer_backward(bn, NULL, NULL), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "dy is NULL"));
    ck_assert_int_eq(bti_layer_backward_masked(lin, y, NULL, y), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "not a batchnorm"));
    ck_assert_int_eq(bti_layer_backward_masked(bn, NULL, NULL, y), BT_E_MISUSE);
    ck_assert_int_eq(bti_layer_backward_masked(bn, x, NULL, wrong), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "mask does not have the output's shape"));
    ck_assert_int_eq(bti_layer_backward_masked(bn, x, y, y), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "dx overlaps mask"));
    ck_assert_int_eq(bti_layer_backward_masked(bn, x, NULL, y), BT_OK);
    bti_layer_destroy(bn);
    bti_layer_destroy(lin);
    bti_buffer_release(&shared);
    bt_tensor_free(x);
    bt_tensor_free(y);
    bt_tensor_free(wrong);
}
END_TEST

/* The model's fused BatchNorm forms in the combinations its ResNet never asks for: a skip
 * without ReLU in training, and the masked backward after an eval forward, for [N, C] and
 * [N, C, H, W]; each must equal the plain form followed by the add or the mask. */
START_TEST(fused_batchnorm_forms_match_the_plain_ones)
{
    static const int64_t shapes[2][4] = {{6, 3, 0, 0}, {4, 3, 5, 5}};
    int si;
    for (si = 0; si < 2; si++) {
        const int nd = si == 0 ? 2 : 4;
        bt_layer *f = NULL, *p = NULL;
        struct bti_buffer sf = {NULL, 0}, sp = {NULL, 0};
        bt_tensor *x = random_tensor(nd, shapes[si]), *skip = random_tensor(nd, shapes[si]),
                  *y1 = random_tensor(nd, shapes[si]), *y2 = random_tensor(nd, shapes[si]),
                  *dy = random_tensor(nd, shapes[si]), *mask = random_tensor(nd, shapes[si]),
                  *dx1 = random_tensor(nd, shapes[si]), *dx2 = random_tensor(nd, shapes[si]);
        int64_t i, n = bt_tensor_numel(x), masked = 0;
        ck_assert_int_eq(bti_layer_batchnorm_new(&f, 3, 1e-5, 0.1, 1, "test"), BT_OK);
        ck_assert_int_eq(bti_layer_batchnorm_new(&p, 3, 1e-5, 0.1, 1, "test"), BT_OK);
        bti_layer_set_scratch(f, &sf);
        bti_layer_set_scratch(p, &sp);
        ck_assert_int_eq(bti_layer_forward_fused(f, x, y1, 1, 1, skip, 0), BT_OK);
        ck_assert_int_eq(bti_layer_forward(p, x, y2, 1, 1), BT_OK);
        for (i = 0; i < n; i++) {
            const float want = bt_tensor_data(y2)[i] + bt_tensor_data(skip)[i];
            ck_assert_msg(fabsf(bt_tensor_data(y1)[i] - want) <= 1e-6f * (1 + fabsf(want)),
                          "%dd: y[%lld] = %g, want %g", nd, (long long)i,
                          (double)bt_tensor_data(y1)[i], (double)want);
        }
        ck_assert_mem_eq(bti_layer_value(f, 2)->data, bti_layer_value(p, 2)->data,
                         3 * sizeof(float)); /* the same running statistics */
        ck_assert_int_eq(bti_layer_forward(f, x, y1, 0, 1), BT_OK);
        ck_assert_int_eq(bti_layer_forward(p, x, y2, 0, 1), BT_OK);
        ck_assert_int_eq(bti_layer_backward_masked(f, dy, dx1, mask), BT_OK);
        ck_assert_int_eq(bti_layer_backward(p, dy, dx2), BT_OK);
        for (i = 0; i < n; i++) {
            const float m = bt_tensor_data(mask)[i], want = m > 0 ? bt_tensor_data(dx2)[i] : 0.0f;
            masked += m <= 0;
            ck_assert_msg(fabsf(bt_tensor_data(dx1)[i] - want) <= 1e-6f * (1 + fabsf(want)),
                          "%dd: dx[%lld] = %g, want %g", nd, (long long)i,
                          (double)bt_tensor_data(dx1)[i], (double)want);
        }
        ck_assert(masked > 0 && masked < n);
        bti_layer_destroy(f);
        bti_layer_destroy(p);
        bti_buffer_release(&sf);
        bti_buffer_release(&sp);
        bt_tensor_free(x);
        bt_tensor_free(skip);
        bt_tensor_free(y1);
        bt_tensor_free(y2);
        bt_tensor_free(dy);
        bt_tensor_free(mask);
        bt_tensor_free(dx1);
        bt_tensor_free(dx2);
    }
}
END_TEST

Suite *layer_suite(void)
{
    Suite *s = suite_create("layer");
    TCase *tc = tcase_create("golden");
    TCase *api = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, conv_matches_pytorch);
    tcase_add_test(tc, conv_direct_matches_reference);
#if defined(__x86_64__)
    tcase_add_test(tc, conv_direct_classes);
#endif
    tcase_add_test(tc, linear_matches_pytorch);
    tcase_add_test(tc, batchnorm_matches_pytorch);
    tcase_add_test(tc, relu_matches_pytorch_in_place_too);
    tcase_add_test(tc, maxpool_matches_pytorch);
    tcase_add_test(tc, maxpool_rule);
    tcase_add_test(tc, avgpool_matches_pytorch);
    tcase_add_test(api, default_init_is_pytorchs);
    tcase_add_test(api, public_forward_copies_x);
    tcase_add_test(api, private_api_for_the_model);
    tcase_add_test(api, results_are_deterministic);
    tcase_add_test(api, bad_create_arguments);
    tcase_add_test(api, wrong_shapes_and_order);
    tcase_add_test(api, relu_and_pool_misuse);
    tcase_add_test(api, overlapping_tensors_are_refused);
    tcase_add_test(api, private_checks_refuse_bad_arguments);
    tcase_add_test(api, fused_batchnorm_forms_match_the_plain_ones);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, api);
    return s;
}
