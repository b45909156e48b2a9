/* check_threads.c - the BLAS's process-wide thread count under handles that
 * ask for different counts, on one thread and on several at once. */
#include "barlow.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* OpenBLAS's own query, when the BLAS is OpenBLAS (weak: the reference
 * CBLAS has none). */
extern int openblas_get_num_threads(void) __attribute__((weak));

static bt_tensor *filled(int64_t n, int64_t d, unsigned seed)
{
    const int64_t shape[2] = {n, d};
    bt_tensor *t = NULL;
    float *p;
    int64_t i;
    ck_assert_int_eq(bt_tensor_create(&t, 2, shape), BT_OK);
    p = bt_tensor_data(t);
    for (i = 0; i < n * d; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (float)((seed >> 8) % 2001) / 1000.0f - 1.0f;
    }
    return t;
}

/* The loss of a fixed batch with `threads`, its gradient's first element in *g. */
static double loss_run(int threads, int path, float *g)
{
    bt_config *c = NULL;
    bt_loss *l = NULL;
    bt_tensor *za = filled(48, 96, 1), *zb = filled(48, 96, 2), *da = filled(48, 96, 3),
              *db = filled(48, 96, 4);
    char t[8];
    double v = 0;
    snprintf(t, sizeof t, "%d", threads);
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "threads", t), BT_OK);
    ck_assert_int_eq(bt_loss_create(&l, c), BT_OK);
    ck_assert_int_eq(bt_loss_set_path(l, path), BT_OK);
    ck_assert_int_eq(bt_loss_forward(l, za, zb, &v), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l, da, db), BT_OK);
    *g = bt_tensor_data(da)[0];
    bt_loss_free(l);
    bt_config_free(c);
    bt_tensor_free(za);
    bt_tensor_free(zb);
    bt_tensor_free(da);
    bt_tensor_free(db);
    return v;
}

START_TEST(blas_count_is_one_between_calls)
{
    float g;
    if (!openblas_get_num_threads) {
        printf("check_threads: not OpenBLAS; its count is not checked\n");
        return;
    }
    (void)loss_run(2, BT_LOSS_PATH_DXD, &g);
    ck_assert_int_eq(openblas_get_num_threads(), 1);
    (void)loss_run(2, BT_LOSS_PATH_GRAM, &g);
    ck_assert_int_eq(openblas_get_num_threads(), 1);
}
END_TEST

struct job {
    int threads, path, rounds;
    double want, got;
    float gwant, ggot;
};

static void *job_run(void *arg)
{
    struct job *j = arg;
    int r;
    for (r = 0; r < j->rounds; r++) {
        j->got = loss_run(j->threads, j->path, &j->ggot);
        if (j->got != j->want || j->ggot != j->gwant)
            break;
    }
    return NULL;
}

/* Handles on 1, 2 and 3 threads at once give the bits each gives alone. */
START_TEST(concurrent_handles_with_different_counts)
{
    struct job jobs[4] = {{1, BT_LOSS_PATH_DXD, 20, 0, 0, 0, 0},
                          {2, BT_LOSS_PATH_DXD, 20, 0, 0, 0, 0},
                          {3, BT_LOSS_PATH_GRAM, 20, 0, 0, 0, 0},
                          {2, BT_LOSS_PATH_GRAM, 20, 0, 0, 0, 0}};
    pthread_t t[4];
    int i;
    for (i = 0; i < 4; i++)
        jobs[i].want = loss_run(jobs[i].threads, jobs[i].path, &jobs[i].gwant);
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, job_run, &jobs[i]), 0);
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(jobs[i].got == jobs[i].want && jobs[i].ggot == jobs[i].gwant,
                      "job %d (%d threads): %.17g vs %.17g alone", i, jobs[i].threads,
                      jobs[i].got, jobs[i].want);
    }
    if (openblas_get_num_threads)
        ck_assert_int_eq(openblas_get_num_threads(), 1);
}
END_TEST

Suite *threads_suite(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, blas_count_is_one_between_calls);
    tcase_add_test(tc, concurrent_handles_with_different_counts);
    suite_add_tcase(s, tc);
    return s;
}
