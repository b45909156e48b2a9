/* check_cpu.c - the CPU levels: one probe, BT_CPU and cpu.level at handle
 * creation, the level visible at run time, and which convolution forms each
 * level runs (none absent from a level's table is ever run there). */
#include "barlow.h"
#include "common/cpu.h"
#include "layers/conv2d.h"
#include "layers/layer.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set BT_CPU for one test and put the runner's value back after (CK_FORK=no
 * runs every test in one process). */
static char saved_env[32];
static int had_env;

static void env_set(const char *v)
{
    const char *old = getenv("BT_CPU");
    had_env = old != NULL;
    snprintf(saved_env, sizeof saved_env, "%s", old ? old : "");
    if (v)
        setenv("BT_CPU", v, 1);
    else
        unsetenv("BT_CPU");
}

static void env_restore(void)
{
    if (had_env)
        setenv("BT_CPU", saved_env, 1);
    else
        unsetenv("BT_CPU");
}

static void *probe_thread(void *arg)
{
    *(int *)arg = bti_cpu_best();
    return NULL;
}

START_TEST(probe_is_one_answer_for_every_thread)
{
    pthread_t t[8];
    int got[8], i;
    for (i = 0; i < 8; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, probe_thread, &got[i]), 0);
    for (i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(got[i], bti_cpu_best());
    }
    ck_assert(bti_cpu_best() >= BTI_CPU_GENERIC && bti_cpu_best() < BTI_CPU_LEVELS);
#if !defined(__x86_64__)
    ck_assert_int_eq(bti_cpu_best(), BTI_CPU_GENERIC);
#endif
}
END_TEST

/* The level a config resolves to, through the read-only key. */
static const char *level_of(bt_config *c)
{
    static char buf[32];
    ck_assert_int_eq(bt_config_get(c, "build.cpu_level", buf, sizeof buf), BT_OK);
    return buf;
}

START_TEST(option_and_environment_choose_the_level)
{
    bt_config *c = NULL;
    int level;
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    env_set(NULL);
    ck_assert_str_eq(level_of(c), bti_cpu_name(bti_cpu_best()));
    env_set("generic");
    ck_assert_str_eq(level_of(c), "generic");
    for (level = 0; level <= bti_cpu_best(); level++) { /* the option wins over BT_CPU */
        ck_assert_int_eq(bt_config_set(c, "cpu.level", bti_cpu_name(level)), BT_OK);
        ck_assert_str_eq(level_of(c), bti_cpu_name(level));
    }
    ck_assert_int_eq(bt_config_set(c, "cpu.level", "auto"), BT_OK);
    ck_assert_str_eq(level_of(c), "generic");
    ck_assert_int_eq(bt_config_set(c, "cpu.level", "neon"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(c, "build.cpu_level", "generic"), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "read-only"));
    env_restore();
    bt_config_free(c);
}
END_TEST

START_TEST(unknown_bt_cpu_fails_every_create)
{
    bt_config *c = NULL;
    bt_model *m = (bt_model *)&m;
    bt_loss *l = (bt_loss *)&l;
    bt_optim *o = (bt_optim *)&o;
    bt_augment *a = (bt_augment *)&a;
    bt_xent *x = (bt_xent *)&x;
    bt_layer *r = (bt_layer *)&r;
    char buf[32];
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    env_set("avx1024");
    ck_assert_int_eq(bt_model_create(&m, c), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "BT_CPU"));
    ck_assert_ptr_null(m);
    ck_assert_int_eq(bt_loss_create(&l, c), BT_E_INVALID_ARG);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(bt_optim_create(&o, c), BT_E_INVALID_ARG);
    ck_assert_ptr_null(o);
    ck_assert_int_eq(bt_augment_create(&a, c), BT_E_INVALID_ARG);
    ck_assert_ptr_null(a);
    ck_assert_int_eq(bt_xent_create(&x, c), BT_E_INVALID_ARG);
    ck_assert_ptr_null(x);
    ck_assert_int_eq(bt_layer_relu_create(&r), BT_E_INVALID_ARG);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(bt_config_get(c, "build.cpu_level", buf, sizeof buf), BT_E_INVALID_ARG);
    /* an explicit option does not read BT_CPU at all */
    ck_assert_int_eq(bt_config_set(c, "cpu.level", "generic"), BT_OK);
    ck_assert_int_eq(bt_loss_create(&l, c), BT_OK);
    bt_loss_free(l);
    env_restore();
    bt_config_free(c);
}
END_TEST

START_TEST(a_level_the_cpu_lacks_is_unsupported)
{
    bt_config *c = NULL;
    bt_loss *l = NULL;
    bt_layer *r = NULL;
    if (bti_cpu_best() == BTI_CPU_LEVELS - 1) {
        printf("check_cpu: this CPU runs every level; the unsupported case is skipped\n");
        return;
    }
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "cpu.level", "avx512"), BT_OK);
    ck_assert_int_eq(bt_loss_create(&l, c), BT_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "cpu.level"));
    ck_assert_ptr_null(l);
    env_set("avx512");
    ck_assert_int_eq(bt_layer_relu_create(&r), BT_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "BT_CPU"));
    env_restore();
    bt_config_free(c);
}
END_TEST

START_TEST(build_info_names_the_level)
{
    char want[64];
    snprintf(want, sizeof want, "cpu=%s;", bti_cpu_name(bti_cpu_default()));
    ck_assert_ptr_nonnull(strstr(bt_build_info(), want));
    snprintf(want, sizeof want, "cpu_best=%s", bti_cpu_name(bti_cpu_best()));
    ck_assert_ptr_nonnull(strstr(bt_build_info(), want));
}
END_TEST

/* The forms each level's table has: the generic level only the GEMM forms,
 * AVX2 the padded grid, the direct channel tiles and Winograd too, AVX-512
 * the flat tiles as well. */
START_TEST(each_level_has_its_forms)
{
    static const char *const names[] = {"gemm", "images", "grid", "direct", "flat", "winograd"};
    static const int first_level[] = {BTI_CPU_GENERIC, BTI_CPU_GENERIC, BTI_CPU_AVX2,
                                      BTI_CPU_AVX2,    BTI_CPU_AVX512,  BTI_CPU_AVX2};
    int level;
    size_t f;
    for (level = 0; level < BTI_CPU_LEVELS; level++)
        for (f = 0; f < sizeof names / sizeof names[0]; f++) {
#if defined(__x86_64__)
            const int has = level >= first_level[f];
#else
            const int has = first_level[f] == BTI_CPU_GENERIC;
#endif
            ck_assert_msg((bti_conv_find(level, names[f]) != NULL) == has, "level %s form %s",
                          bti_cpu_name(level), names[f]);
        }
    ck_assert_ptr_null(bti_conv_find(BTI_CPU_GENERIC, "no such form"));
}
END_TEST

/* A forced form runs where the layer's level has it and the shape fits it;
 * elsewhere the layer takes its automatic choice, from its own level's table. */
static const char *form_run(int level, const char *form, int k, int s, int pad)
{
    const int64_t xs[4] = {4, 8, 8, 8};
    int64_t ys[4];
    int32_t nd;
    bt_tensor *x = NULL, *y = NULL, *dx = NULL;
    bt_layer *l = NULL;
    const char *got;
    ck_assert_int_eq(bt_layer_conv2d_create(&l, 8, 8, k, s, pad, 1), BT_OK);
    bti_layer_set_level(l, level);
    bti_layer_conv2d_set_form(l, form);
    ck_assert_int_eq(bt_layer_output_shape(l, 4, xs, &nd, ys), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&x, 4, xs), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&y, 4, ys), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&dx, 4, xs), BT_OK);
    ck_assert_int_eq(bt_layer_forward(l, x, y, 1), BT_OK);
    ck_assert_int_eq(bt_layer_backward(l, y, dx), BT_OK);
    got = bti_layer_conv2d_form(l);
    ck_assert_ptr_nonnull(got);
    ck_assert_ptr_nonnull(bti_conv_find(level, got));
    bt_tensor_free(x);
    bt_tensor_free(y);
    bt_tensor_free(dx);
    bt_layer_free(l);
    return got;
}

START_TEST(forced_forms_run_only_where_their_level_has_them)
{
    static const char *const names[] = {"gemm", "images", "grid", "direct", "flat", "winograd"};
    int level;
    size_t f;
    for (level = 0; level <= bti_cpu_default(); level++)
        for (f = 0; f < sizeof names / sizeof names[0]; f++) {
            const char *got = form_run(level, names[f], 3, 1, 1);
            if (bti_conv_find(level, names[f]))
                ck_assert_str_eq(got, names[f]);
            else
                ck_assert_str_ne(got, names[f]);
        }
    /* a form whose geometry does not fit: 1x1 is no grid, stride 2 no Winograd */
    ck_assert_str_ne(form_run(bti_cpu_default(), "grid", 1, 1, 0), "grid");
    ck_assert_str_ne(form_run(bti_cpu_default(), "winograd", 3, 2, 1), "winograd");
}
END_TEST

Suite *cpu_suite(void)
{
    Suite *s = suite_create("cpu");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, probe_is_one_answer_for_every_thread);
    tcase_add_test(tc, option_and_environment_choose_the_level);
    tcase_add_test(tc, unknown_bt_cpu_fails_every_create);
    tcase_add_test(tc, a_level_the_cpu_lacks_is_unsupported);
    tcase_add_test(tc, build_info_names_the_level);
    tcase_add_test(tc, each_level_has_its_forms);
    tcase_add_test(tc, forced_forms_run_only_where_their_level_has_them);
    suite_add_tcase(s, tc);
    return s;
}
