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
    /* the other facts the line is made of, one by one */
    {
        static const char *const keys[] = {"build.version", "build.blas_config", "build.threads"};
        char fact[256];
        size_t k;
        ck_assert_int_eq(bt_config_get(c, "build.version", fact, sizeof fact), BT_OK);
        ck_assert_str_eq(fact, bt_version_string());
        for (k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            ck_assert_msg(bt_config_get(c, keys[k], fact, sizeof fact) == BT_OK, "%s: %s",
                          keys[k], bt_last_error());
            ck_assert_msg(strstr(info, fact) != NULL, "%s '%s' is not in '%s'", keys[k], fact, info);
        }
    }
    ck_assert_int_eq(bt_config_set(c, "build.blas", "x"), BT_E_INVALID_ARG);
    bt_config_free(c);
}
END_TEST

/* A handle of the wrong kind is misuse, and the message names the argument and the kind the
 * function expected, for every kind of handle; the call writes nothing. */
START_TEST(wrong_kinds_name_the_expected_handle)
{
    bt_config *c;
    bt_tensor *t;
    bt_loss *loss;
    int64_t shape[1] = {4};
    uint64_t seed = 11, calls = 12;
    double on = 3, off = 4;
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&t, 1, shape), BT_OK);
    ck_assert_int_eq(bt_loss_create(&loss, c), BT_OK);

    ck_assert_int_eq(bt_loss_terms((const bt_loss *)c, &on, &off), BT_E_MISUSE);
    ck_assert_str_eq(bt_last_error(),
                     "bt_loss_terms: l is not a live bt_loss (freed, foreign or another kind)");
    ck_assert(on == 3 && off == 4);
    ck_assert_int_eq(bt_augment_get_state((const bt_augment *)c, &seed, &calls), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "a is not a live bt_augment"));
    ck_assert(seed == 11 && calls == 12);
    ck_assert_int_eq(bt_loss_set_comm(loss, (bt_comm *)c), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "c is not a live bt_comm"));
    ck_assert_int_eq(bt_xent_backward((bt_xent *)c, t), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "is not a live bt_xent"));
    ck_assert_int_eq(bt_optim_step((bt_optim *)c), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "is not a live bt_optim"));
    ck_assert_int_eq(bt_model_embed_dim((const bt_model *)c), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "m is not a live bt_model"));
    ck_assert_int_eq(bt_layer_tensor_count((const bt_layer *)c), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "l is not a live bt_layer"));
    ck_assert_int_eq(bt_tensor_ndim((const bt_tensor *)c), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "t is not a live bt_tensor"));
    ck_assert_int_eq(bt_config_is_set((const bt_config *)t, "seed"), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "c is not a live bt_config"));
    /* a free of the wrong kind is ignored: the handles still work */
    bt_loss_free((bt_loss *)t);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bt_loss_free: l is not a live bt_loss"));
    ck_assert_int_eq(bt_tensor_ndim(t), 1);
    ck_assert_int_eq(bt_loss_path(loss) >= 0, 1);
    bt_loss_free(loss);
    bt_tensor_free(t);
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
    tcase_add_test(tc, wrong_kinds_name_the_expected_handle);
    tcase_add_test(tc, last_error_is_thread_local);
    suite_add_tcase(s, tc);
    return s;
}
