/* check_rng.c - the counter-based generator: pure, well spread, independent streams. */
#include "common/rng.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>

START_TEST(draws_are_pure_functions)
{
    uint64_t k = bti_rng_key(7, 1, 2, 3);
    ck_assert(bti_rng_u64(k, 5) == bti_rng_u64(k, 5));
    ck_assert(bti_rng_u64(k, 5) != bti_rng_u64(k, 6));
    ck_assert(bti_rng_key(7, 1, 2, 3) == k);
    ck_assert(bti_rng_key(7, 1, 2, 4) != k);
    ck_assert(bti_rng_key(8, 1, 2, 3) != k);
    ck_assert(bti_rng_key(7, 2, 1, 3) != k);
}
END_TEST

START_TEST(uniform_moments)
{
    enum { N = 200000 };
    uint64_t k = bti_rng_key(1, 0, 0, 0);
    double s = 0, s2 = 0, lo = 1, hi = 0;
    int i, hist[10] = {0};
    for (i = 0; i < N; i++) {
        double u = bti_rng_uniform(k, (uint64_t)i);
        s += u;
        s2 += u * u;
        lo = fmin(lo, u);
        hi = fmax(hi, u);
        hist[(int)(u * 10)]++;
    }
    /* mean 1/2 (sd of the mean 0.00065), variance 1/12 */
    ck_assert_double_eq_tol(s / N, 0.5, 0.004);
    ck_assert_double_eq_tol(s2 / N - (s / N) * (s / N), 1.0 / 12, 0.002);
    ck_assert(lo >= 0 && hi < 1);
    for (i = 0; i < 10; i++) /* binomial sd ~134 */
        ck_assert_int_lt(abs(hist[i] - N / 10), 700);
}
END_TEST

START_TEST(normal_and_below)
{
    enum { N = 100000 };
    uint64_t k = bti_rng_key(3, 9, 9, 9);
    double s = 0, s2 = 0;
    int i, count[3] = {0};
    for (i = 0; i < N; i++) {
        double z = bti_rng_normal(k, (uint64_t)i);
        s += z;
        s2 += z * z;
        count[bti_rng_below(k, (uint64_t)i + N * 4, 3)]++;
    }
    ck_assert_double_eq_tol(s / N, 0.0, 0.015);
    ck_assert_double_eq_tol(s2 / N, 1.0, 0.02);
    for (i = 0; i < 3; i++)
        ck_assert_int_lt(abs(count[i] - N / 3), 700);
}
END_TEST

Suite *rng_suite(void)
{
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, draws_are_pure_functions);
    tcase_add_test(tc, uniform_moments);
    tcase_add_test(tc, normal_and_below);
    suite_add_tcase(s, tc);
    return s;
}
