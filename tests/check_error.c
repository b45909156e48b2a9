/* check_error.c - status texts, version, build info, thread-local errors. */
#include "barlow.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

START_TEST(status_strings_are_distinct)
{
    bt_status s, t;
    for (s = 0; s <= BT_E_COMM; s++) {
        ck_assert_ptr_nonnull(bt_status_string(s));
        ck_assert_str_ne(bt_status_string(s), "unknown status");
        for (t = 0; t < s; t++)
            ck_assert_str_ne(bt_status_string(s), bt_status_string(t));
    }
    ck_assert_str_eq(bt_status_string(-1), "unknown status");
    ck_assert_str_eq(bt_status_string(BT_E_COMM + 1), "unknown status");
}
END_TEST

START_TEST(version_matches_header)
{
    char buf[32];
    ck_assert_int_eq(bt_version_number(), BT_VERSION_NUMBER);
    snprintf(buf, sizeof buf, "%d.%d.%d", BT_VERSION_MAJOR, BT_VERSION_MINOR, BT_VERSION_PATCH);
    ck_assert_str_eq(bt_version_string(), buf);
}
END_TEST

START_TEST(build_info_names_the_blas)
{
    const char *info = bt_build_info();
    bt_config *c;
    char blas[64], core[64];
    ck_assert_ptr_nonnull(strstr(info, bt_version_string()));
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_get(c, "build.blas", blas, sizeof blas), BT_OK);
    ck_assert(strcmp(blas, "openblas") == 0 || strcmp(blas, "reference") == 0);
    ck_assert_int_eq(bt_config_get(c, "build.blas_core", core, sizeof core), BT_OK);
    ck_assert_ptr_nonnull(strstr(info, blas));
    ck_assert_ptr_nonnull(strstr(info, core));
    ck_assert_int_eq(bt_config_set(c, "build.blas", "x"), BT_E_INVALID_ARG);
    bt_config_free(c);
}
END_TEST

static void *fail_in_thread(void *arg)
{
    static char seen[2][256];
    int id = *(int *)arg;
    bt_tensor *t;
    int64_t shape[2] = {2, id == 0 ? 0 : -7};
    ck_assert_int_eq(bt_tensor_create(&t, 2, shape), BT_E_INVALID_ARG);
    strncpy(seen[id], bt_last_error(), sizeof seen[id] - 1);
    return seen[id];
}

START_TEST(last_error_is_thread_local)
{
    pthread_t th[2];
    int ids[2] = {0, 1};
    void *res[2];
    bt_tensor *t;
    int64_t bad = 0;
    /* This thread's message must survive the other threads' failures. */
    ck_assert_int_eq(bt_tensor_create(&t, 1, &bad), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "shape[0] is 0"));
    ck_assert_int_eq(pthread_create(&th[0], NULL, fail_in_thread, &ids[0]), 0);
    ck_assert_int_eq(pthread_create(&th[1], NULL, fail_in_thread, &ids[1]), 0);
    pthread_join(th[0], &res[0]);
    pthread_join(th[1], &res[1]);
    ck_assert_ptr_nonnull(strstr((char *)res[0], "shape[1] is 0"));
    ck_assert_ptr_nonnull(strstr((char *)res[1], "shape[1] is -7"));
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "shape[0] is 0"));
}
END_TEST

Suite *error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, status_strings_are_distinct);
    tcase_add_test(tc, version_matches_header);
    tcase_add_test(tc, build_info_names_the_blas);
    tcase_add_test(tc, last_error_is_thread_local);
    suite_add_tcase(s, tc);
    return s;
}
