/* check_tensor.c - tensor lifecycle, wrapping, shape queries and misuse. */
#include "barlow.h"

#include <check.h>
#include <stdint.h>
#include <string.h>

START_TEST(create_is_zero_filled_and_aligned)
{
    bt_tensor *t = NULL;
    int64_t shape[4] = {2, 3, 4, 5};
    float *d;
    int64_t i;
    ck_assert_int_eq(bt_tensor_create(&t, 4, shape), BT_OK);
    ck_assert_int_eq(bt_tensor_ndim(t), 4);
    ck_assert_int_eq(bt_tensor_numel(t), 120);
    ck_assert_int_eq(bt_tensor_dim(t, 0), 2);
    ck_assert_int_eq(bt_tensor_dim(t, 3), 5);
    ck_assert_int_eq(bt_tensor_dim(t, -1), 5);
    ck_assert_int_eq(bt_tensor_dim(t, -4), 2);
    d = bt_tensor_data(t);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq((uintptr_t)d % 64, 0);
    for (i = 0; i < 120; i++)
        ck_assert(d[i] == 0.0f);
    d[119] = 7.0f; /* the whole range is writable */
    bt_tensor_free(t);
}
END_TEST

START_TEST(wrap_borrows_caller_memory)
{
    float buf[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3}, got[4];
    int32_t nd = 0;
    bt_tensor *t;
    ck_assert_int_eq(bt_tensor_wrap(&t, buf, 2, shape), BT_OK);
    ck_assert_ptr_eq(bt_tensor_data(t), buf);
    ck_assert_int_eq(bt_tensor_shape(t, &nd, got, 4), BT_OK);
    ck_assert_int_eq(nd, 2);
    ck_assert_int_eq(got[0], 2);
    ck_assert_int_eq(got[1], 3);
    bt_tensor_data(t)[5] = 60.0f;
    bt_tensor_free(t); /* must not free buf */
    ck_assert(buf[5] == 60.0f);
    ck_assert(buf[0] == 1.0f);
}
END_TEST

START_TEST(bad_shapes_are_rejected)
{
    bt_tensor *t = (bt_tensor *)0x1;
    int64_t ok[5] = {1, 1, 1, 1, 1}, zero[2] = {3, 0}, huge[2] = {INT64_C(1) << 30, INT64_C(1) << 30};
    ck_assert_int_eq(bt_tensor_create(&t, 0, ok), BT_E_INVALID_ARG);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "ndim is 0"));
    ck_assert_int_eq(bt_tensor_create(&t, 5, ok), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_tensor_create(&t, 2, zero), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "shape[1] is 0"));
    ck_assert_int_eq(bt_tensor_create(&t, 2, huge), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[1073741824, 1073741824]"));
    ck_assert_int_eq(bt_tensor_create(&t, 2, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_tensor_create(NULL, 2, ok), BT_E_MISUSE);
    ck_assert_int_eq(bt_tensor_wrap(&t, NULL, 2, ok), BT_E_MISUSE);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(null_and_freed_handles_are_misuse)
{
    bt_tensor *t;
    bt_config *c;
    int64_t shape[1] = {4}, got[4];
    int32_t nd;
    bt_tensor_free(NULL); /* no-op */
    ck_assert_int_eq(bt_tensor_ndim(NULL), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "t is NULL"));
    ck_assert_int_eq(bt_tensor_create(&t, 1, shape), BT_OK);
    bt_tensor_free(t);
    /* A freed handle is recognised without being dereferenced (clean under ASan). */
    ck_assert_int_eq(bt_tensor_ndim(t), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "not a live bt_tensor"));
    ck_assert_int_eq(bt_tensor_numel(t), -1);
    ck_assert_ptr_null(bt_tensor_data(t));
    ck_assert_int_eq(bt_tensor_shape(t, &nd, got, 4), BT_E_MISUSE);
    bt_tensor_free(t); /* double free is refused, not a crash */
    /* A handle of another kind is refused too. */
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_tensor_numel((const bt_tensor *)(void *)c), -1);
    ck_assert_int_eq(bt_config_set((bt_config *)(void *)t, "seed", "1"), BT_E_MISUSE);
    bt_config_free(c);
}
END_TEST

START_TEST(axis_and_cap_are_checked)
{
    bt_tensor *t;
    int64_t shape[2] = {2, 3}, got[1];
    int32_t nd;
    ck_assert_int_eq(bt_tensor_create(&t, 2, shape), BT_OK);
    ck_assert_int_eq(bt_tensor_dim(t, 2), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "axis 2"));
    ck_assert_int_eq(bt_tensor_dim(t, -3), -1);
    ck_assert_int_eq(bt_tensor_shape(t, &nd, got, 1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_tensor_shape(t, NULL, got, 1), BT_E_MISUSE);
    bt_tensor_free(t);
}
END_TEST

START_TEST(many_handles_stay_distinct)
{
    enum { N = 2000 };
    static bt_tensor *ts[N];
    int64_t shape[1] = {1};
    int i;
    for (i = 0; i < N; i++) {
        ck_assert_int_eq(bt_tensor_create(&ts[i], 1, shape), BT_OK);
        bt_tensor_data(ts[i])[0] = (float)i;
    }
    for (i = 0; i < N; i += 2)
        bt_tensor_free(ts[i]);
    for (i = 1; i < N; i += 2)
        ck_assert(bt_tensor_data(ts[i])[0] == (float)i);
    for (i = 1; i < N; i += 2)
        bt_tensor_free(ts[i]);
}
END_TEST

Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, create_is_zero_filled_and_aligned);
    tcase_add_test(tc, wrap_borrows_caller_memory);
    tcase_add_test(tc, bad_shapes_are_rejected);
    tcase_add_test(tc, null_and_freed_handles_are_misuse);
    tcase_add_test(tc, axis_and_cap_are_checked);
    tcase_add_test(tc, many_handles_stay_distinct);
    suite_add_tcase(s, tc);
    return s;
}
