/* check_xent.c - softmax cross-entropy against F.cross_entropy, a double
 * finite-difference check, top-k counting, thread independence and misuse. */
#include "barlow.h"
#include "golden.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bt_tensor *matrix(int64_t n, int64_t k, const float *data)
{
    bt_tensor *t;
    int64_t shape[2];
    shape[0] = n;
    shape[1] = k;
    ck_assert_int_eq(bt_tensor_create(&t, 2, shape), BT_OK);
    if (data)
        memcpy(bt_tensor_data(t), data, (size_t)(n * k) * sizeof(float));
    return t;
}

static const char *const cases[] = {"small", "wide", "offset"};

START_TEST(golden_forward_backward)
{
    golden *g = golden_load("xent.bin");
    const char *name = cases[_i];
    char key[64];
    int nd;
    int64_t shape[8], n, k, i, top1, top5;
    const float *z, *fl, *want_grad;
    int32_t *labels;
    bt_tensor *logits, *grad;
    bt_xent *x;
    double loss, want_loss, e;

    snprintf(key, sizeof key, "%s.logits", name);
    z = golden_get(g, key, &nd, shape);
    ck_assert_int_eq(nd, 2);
    n = shape[0];
    k = shape[1];
    snprintf(key, sizeof key, "%s.labels", name);
    fl = golden_get(g, key, NULL, NULL);
    labels = malloc((size_t)n * sizeof *labels);
    for (i = 0; i < n; i++)
        labels[i] = (int32_t)fl[i];
    logits = matrix(n, k, z);
    grad = matrix(n, k, NULL);

    ck_assert_int_eq(bt_xent_create(&x, NULL), BT_OK);
    ck_assert_msg(bt_xent_forward(x, logits, labels, &loss, &top1, &top5) == BT_OK, "%s",
                  bt_last_error());
    snprintf(key, sizeof key, "%s.loss", name);
    want_loss = golden_get(g, key, NULL, NULL)[0];
    ck_assert_msg(fabs(loss - want_loss) <= 1e-5 * fabs(want_loss), "%s: loss %.9g want %.9g",
                  name, loss, want_loss);
    snprintf(key, sizeof key, "%s.top1", name);
    ck_assert_int_eq(top1, (int64_t)golden_get(g, key, NULL, NULL)[0]);
    snprintf(key, sizeof key, "%s.top5", name);
    ck_assert_int_eq(top5, (int64_t)golden_get(g, key, NULL, NULL)[0]);

    ck_assert_int_eq(bt_xent_backward(x, grad), BT_OK);
    snprintf(key, sizeof key, "%s.grad", name);
    want_grad = golden_get(g, key, NULL, NULL);
    e = rel_err(bt_tensor_data(grad), want_grad, n * k);
    ck_assert_msg(e <= 1e-5, "%s: gradient rel err %.3g", name, e);

    bt_xent_free(x);
    bt_tensor_free(logits);
    bt_tensor_free(grad);
    free(labels);
    golden_free(g);
}
END_TEST

/* Mean cross-entropy in double, for the finite-difference check. */
static double xent_ref(const double *z, const int32_t *y, int64_t n, int64_t k)
{
    double total = 0.0;
    int64_t r, j;
    for (r = 0; r < n; r++) {
        double m = z[r * k], s = 0.0;
        for (j = 1; j < k; j++)
            m = fmax(m, z[r * k + j]);
        for (j = 0; j < k; j++)
            s += exp(z[r * k + j] - m);
        total += m + log(s) - z[r * k + y[r]];
    }
    return total / (double)n;
}

START_TEST(gradient_matches_finite_differences)
{
    enum { N = 5, K = 7 };
    float zf[N * K];
    double zd[N * K];
    int32_t y[N] = {0, 6, 3, 3, 1};
    bt_tensor *logits, *grad;
    bt_xent *x;
    double loss;
    int64_t i;
    for (i = 0; i < N * K; i++) {
        zf[i] = (float)(2.0 * sin(1.3 * (double)i + 0.2));
        zd[i] = zf[i];
    }
    logits = matrix(N, K, zf);
    grad = matrix(N, K, NULL);
    ck_assert_int_eq(bt_xent_create(&x, NULL), BT_OK);
    ck_assert_int_eq(bt_xent_forward(x, logits, y, &loss, NULL, NULL), BT_OK);
    ck_assert(fabs(loss - xent_ref(zd, y, N, K)) <= 1e-12 * fabs(loss));
    ck_assert_int_eq(bt_xent_backward(x, grad), BT_OK);
    for (i = 0; i < N * K; i++) {
        const double h = 1e-6, keep = zd[i];
        double fd, got = bt_tensor_data(grad)[i];
        zd[i] = keep + h;
        fd = xent_ref(zd, y, N, K);
        zd[i] = keep - h;
        fd = (fd - xent_ref(zd, y, N, K)) / (2.0 * h);
        zd[i] = keep;
        /* float32 output: relative to the largest entry (1/N scale) */
        ck_assert_msg(fabs(got - fd) <= 1e-6 / N, "dz[%lld]: %.9g vs fd %.9g", (long long)i, got,
                      fd);
    }
    bt_xent_free(x);
    bt_tensor_free(logits);
    bt_tensor_free(grad);
}
END_TEST

START_TEST(topk_counts_and_ties)
{
    enum { N = 8, K = 10 };
    float z[N * K];
    int32_t y[N];
    bt_tensor *logits;
    bt_xent *x;
    double loss;
    int64_t top1, top5, i;
    /* All logits equal: the loss is log K; ties rank lower indices first. */
    for (i = 0; i < N * K; i++)
        z[i] = 0.5f;
    for (i = 0; i < N; i++)
        y[i] = (int32_t)i; /* labels 0..7 */
    logits = matrix(N, K, z);
    ck_assert_int_eq(bt_xent_create(&x, NULL), BT_OK);
    ck_assert_int_eq(bt_xent_forward(x, logits, y, &loss, &top1, &top5), BT_OK);
    ck_assert(fabs(loss - log((double)K)) <= 1e-12);
    ck_assert_int_eq(top1, 1); /* only label 0 */
    ck_assert_int_eq(top5, 5); /* labels 0..4 */
    bt_tensor_free(logits);

    /* Row r: logits descending from class r, so the label's rank is (y - r) mod K. */
    for (i = 0; i < N * K; i++) {
        int64_t r = i / K, j = i % K;
        z[i] = (float)(K - ((j - r + K) % K));
    }
    for (i = 0; i < N; i++)
        y[i] = (int32_t)((i + i) % K); /* rank i */
    logits = matrix(N, K, z);
    ck_assert_int_eq(bt_xent_forward(x, logits, y, NULL, &top1, &top5), BT_OK);
    ck_assert_int_eq(top1, 1);
    ck_assert_int_eq(top5, 5);
    bt_tensor_free(logits);

    /* Fewer than five classes: top-5 counts every row. */
    logits = matrix(N, 3, NULL);
    for (i = 0; i < N; i++)
        y[i] = (int32_t)(i % 3);
    ck_assert_int_eq(bt_xent_forward(x, logits, y, &loss, &top1, &top5), BT_OK);
    ck_assert_int_eq(top5, N);
    ck_assert(fabs(loss - log(3.0)) <= 1e-12);
    bt_tensor_free(logits);
    bt_xent_free(x);
}
END_TEST

START_TEST(results_do_not_depend_on_thread_count)
{
    enum { N = 300, K = 211 };
    float *z = malloc(sizeof(float) * N * K);
    int32_t y[N];
    bt_tensor *logits, *g1, *g4;
    bt_xent *x1, *x4;
    bt_config *c;
    double l1, l4;
    int64_t a1, b1, a4, b4, i;
    for (i = 0; i < N * K; i++)
        z[i] = (float)(3.0 * sin(0.7 * (double)i) + cos(0.013 * (double)i));
    for (i = 0; i < N; i++)
        y[i] = (int32_t)((i * 37) % K);
    logits = matrix(N, K, z);
    g1 = matrix(N, K, NULL);
    g4 = matrix(N, K, NULL);
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "threads", "1"), BT_OK);
    ck_assert_int_eq(bt_xent_create(&x1, c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "threads", "4"), BT_OK);
    ck_assert_int_eq(bt_xent_create(&x4, c), BT_OK);
    bt_config_free(c);
    ck_assert_int_eq(bt_xent_forward(x1, logits, y, &l1, &a1, &b1), BT_OK);
    ck_assert_int_eq(bt_xent_forward(x4, logits, y, &l4, &a4, &b4), BT_OK);
    ck_assert(l1 == l4);
    ck_assert_int_eq(a1, a4);
    ck_assert_int_eq(b1, b4);
    ck_assert_int_eq(bt_xent_backward(x1, g1), BT_OK);
    ck_assert_int_eq(bt_xent_backward(x4, g4), BT_OK);
    ck_assert(memcmp(bt_tensor_data(g1), bt_tensor_data(g4), sizeof(float) * N * K) == 0);
    bt_xent_free(x1);
    bt_xent_free(x4);
    bt_tensor_free(logits);
    bt_tensor_free(g1);
    bt_tensor_free(g4);
    free(z);
}
END_TEST

START_TEST(misuse_and_failed_calls_change_nothing)
{
    float z[6] = {1, 2, 3, -1, 0, 4};
    int32_t y[2] = {2, 0}, bad_hi[2] = {1, 3}, bad_lo[2] = {-1, 0};
    bt_tensor *logits, *grad, *before, *wrong, *vec, *big;
    bt_xent *x = (bt_xent *)0x1;
    int64_t s1[1] = {6};
    double loss = 0.0, loss2;
    int64_t t1, t5;

    ck_assert_int_eq(bt_xent_create(NULL, NULL), BT_E_MISUSE);
    logits = matrix(2, 3, z);
    ck_assert_int_eq(bt_xent_create(&x, (const bt_config *)(void *)logits), BT_E_MISUSE);
    ck_assert_ptr_null(x);
    ck_assert_int_eq(bt_xent_create(&x, NULL), BT_OK);
    grad = matrix(2, 3, NULL);
    before = matrix(2, 3, NULL);
    wrong = matrix(3, 2, NULL);
    big = matrix(40, 50, NULL);
    ck_assert_int_eq(bt_tensor_create(&vec, 1, s1), BT_OK);

    ck_assert_int_eq(bt_xent_backward(x, grad), BT_E_STATE); /* no forward yet */
    ck_assert_int_eq(bt_xent_forward(NULL, logits, y, &loss, &t1, &t5), BT_E_MISUSE);
    ck_assert_int_eq(bt_xent_forward(x, NULL, y, &loss, &t1, &t5), BT_E_MISUSE);
    ck_assert_int_eq(bt_xent_forward(x, logits, NULL, &loss, &t1, &t5), BT_E_MISUSE);
    ck_assert_int_eq(bt_xent_forward(x, vec, y, &loss, &t1, &t5), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[6]"));

    ck_assert_int_eq(bt_xent_forward(x, logits, y, &loss, &t1, &t5), BT_OK);
    ck_assert_int_eq(t1, 1); /* row 0 right, row 1 wrong (class 0 ranks last of 3) */
    ck_assert_int_eq(t5, 2);
    ck_assert_int_eq(bt_xent_backward(x, before), BT_OK);

    /* Failed forwards keep the last forward and the outputs. */
    loss2 = loss;
    ck_assert_int_eq(bt_xent_forward(x, logits, bad_hi, &loss2, &t1, &t5), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "labels[1] is 3"));
    ck_assert_int_eq(bt_xent_forward(x, logits, bad_lo, &loss2, &t1, &t5), BT_E_INVALID_ARG);
    bt_tensor_data(big)[1234] = NAN;
    {
        int32_t ybig[40] = {0};
        ck_assert_int_eq(bt_xent_forward(x, big, ybig, &loss2, &t1, &t5), BT_E_NUMERIC);
        ck_assert_ptr_nonnull(strstr(bt_last_error(), "logits[24, 34]"));
    }
    ck_assert(loss2 == loss);
    ck_assert_int_eq(bt_xent_backward(x, wrong), BT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[3, 2]"));
    ck_assert_int_eq(bt_xent_backward(x, grad), BT_OK);
    ck_assert(memcmp(bt_tensor_data(grad), bt_tensor_data(before), sizeof(float) * 6) == 0);
    ck_assert_int_eq(bt_xent_backward(NULL, grad), BT_E_MISUSE);
    ck_assert_int_eq(bt_xent_backward(x, NULL), BT_E_MISUSE);

    bt_xent_free(x);
    ck_assert_int_eq(bt_xent_backward(x, grad), BT_E_MISUSE); /* freed */
    bt_xent_free(x);
    bt_xent_free(NULL);
    bt_tensor_free(logits);
    bt_tensor_free(grad);
    bt_tensor_free(before);
    bt_tensor_free(wrong);
    bt_tensor_free(vec);
    bt_tensor_free(big);
}
END_TEST

Suite *xent_suite(void)
{
    Suite *s = suite_create("xent");
    TCase *tc = tcase_create("xent");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, golden_forward_backward, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, gradient_matches_finite_differences);
    tcase_add_test(tc, topk_counts_and_ties);
    tcase_add_test(tc, results_do_not_depend_on_thread_count);
    tcase_add_test(tc, misuse_and_failed_calls_change_nothing);
    suite_add_tcase(s, tc);
    return s;
}
