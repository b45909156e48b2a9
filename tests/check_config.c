/* check_config.c - the option registry: defaults, validation, per-view values, presets. */
#include "barlow.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bt_config *cfg;

static void setup(void) { ck_assert_int_eq(bt_config_create(&cfg), BT_OK); }
static void teardown(void) { bt_config_free(cfg); }

static const char *get(const char *name)
{
    static char buf[256];
    ck_assert_int_eq(bt_config_get(cfg, name, buf, sizeof buf), BT_OK);
    return buf;
}

START_TEST(defaults_follow_the_official_code)
{
    ck_assert_str_eq(get("loss.lambda"), "0.0051");
    ck_assert_str_eq(get("model.projector"), "8192-8192-8192");
    ck_assert_str_eq(get("model.arch"), "resnet50");
    ck_assert_str_eq(get("optim.kind"), "lars");
    ck_assert_str_eq(get("optim.lr"), "0.2");
    ck_assert_str_eq(get("optim.lr_bias"), "0.0048");
    ck_assert_str_eq(get("optim.weight_decay"), "1e-6");
    ck_assert_str_eq(get("aug.mean"), "0.485,0.456,0.406");
    ck_assert_str_eq(get("seed"), "0");
    ck_assert_int_eq(bt_config_is_set(cfg, "loss.lambda"), 0);
}
END_TEST

START_TEST(every_design_option_is_registered)
{
    static const char *names[] = {
        "model.arch", "model.block", "model.blocks", "model.widths", "model.stem",
        "model.in_channels", "model.zero_init_residual", "model.projector", "model.projector_bias",
        "model.projector_bn", "seed", "threads", "loss.lambda", "loss.scale", "loss.mode",
        "loss.temperature", "aug.preset", "aug.size", "aug.scale_min", "aug.scale_max",
        "aug.ratio_min", "aug.ratio_max", "aug.interpolation", "aug.flip_p", "aug.jitter_p",
        "aug.brightness", "aug.contrast", "aug.saturation", "aug.hue", "aug.gray_p", "aug.blur_p",
        "aug.view1.blur_p", "aug.view2.blur_p", "aug.solarize_p", "aug.mean", "aug.std",
        "optim.kind", "optim.lr", "optim.lr_bias", "optim.momentum", "optim.weight_decay",
        "optim.eta", "optim.exclude_bias_bn", "optim.batch_size", "optim.warmup_steps",
        "optim.total_steps", "optim.final_lr_ratio", "optim.grad_scale"};
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        char buf[256];
        ck_assert_msg(bt_config_get(cfg, names[i], buf, sizeof buf) == BT_OK, "%s: %s", names[i],
                      bt_last_error());
    }
}
END_TEST

START_TEST(listing_describes_every_option)
{
    int32_t i, n = bt_config_option_count();
    ck_assert_int_ge(n, 45);
    for (i = 0; i < n; i++) {
        const char *name, *type, *def, *range, *help;
        char buf[256];
        ck_assert_int_eq(bt_config_option(i, &name, &type, &def, &range, &help), BT_OK);
        ck_assert_int_gt(strlen(name), 0);
        ck_assert_int_gt(strlen(help), 10);
        ck_assert_int_gt(strlen(range), 0);
        ck_assert(strstr("int real choice int-list real-list", type) != NULL);
        /* each default is accepted by its own validation */
        ck_assert_msg(bt_config_set(cfg, name, def) == BT_OK, "%s=%s: %s", name, def, bt_last_error());
        ck_assert_int_eq(bt_config_get(cfg, name, buf, sizeof buf), BT_OK);
        ck_assert_str_eq(buf, def);
    }
    ck_assert_int_eq(bt_config_option(n, NULL, NULL, NULL, NULL, NULL), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_option(-1, NULL, NULL, NULL, NULL, NULL), BT_E_INVALID_ARG);
}
END_TEST

START_TEST(set_parses_and_validates)
{
    ck_assert_int_eq(bt_config_set(cfg, "loss.lambda", "0.004"), BT_OK);
    ck_assert_str_eq(get("loss.lambda"), "0.004");
    ck_assert_int_eq(bt_config_is_set(cfg, "loss.lambda"), 1);

    ck_assert_int_eq(bt_config_set(cfg, "loss.lambda", "abc"), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "loss.lambda"));
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "abc"));
    ck_assert_str_eq(get("loss.lambda"), "0.004"); /* unchanged by the failure */

    ck_assert_int_eq(bt_config_set(cfg, "aug.flip_p", "1.5"), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "[0, 1]"));
    ck_assert_int_eq(bt_config_set(cfg, "aug.flip_p", "nan"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "aug.flip_p", "inf"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "threads", "2.5"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "threads", "-1"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "threads", "4x"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "threads", ""), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "threads", "2"), BT_OK);

    ck_assert_int_eq(bt_config_set(cfg, "optim.kind", "adam"), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "lars|sgd|adamw"));
    ck_assert_int_eq(bt_config_set(cfg, "optim.kind", "sgd"), BT_OK);

    ck_assert_int_eq(bt_config_set(cfg, "model.projector", "2048-2048"), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "model.projector", "2048--2048"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "model.projector", "2048-0"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "model.projector", "2048-"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "model.projector", "1-2-3-4-5-6-7-8-9"), BT_E_INVALID_ARG);
    ck_assert_str_eq(get("model.projector"), "2048-2048");

    ck_assert_int_eq(bt_config_set(cfg, "aug.mean", "0.5"), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.mean", "0.5,0.5,0.5,0.5"), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "aug.std", "0.5,0"), BT_E_INVALID_ARG);

    /* NULL restores the default */
    ck_assert_int_eq(bt_config_set(cfg, "loss.lambda", NULL), BT_OK);
    ck_assert_str_eq(get("loss.lambda"), "0.0051");
    ck_assert_int_eq(bt_config_is_set(cfg, "loss.lambda"), 0);
}
END_TEST

START_TEST(unknown_names_are_unsupported)
{
    char buf[16];
    ck_assert_int_eq(bt_config_set(cfg, "loss.lamda", "1"), BT_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "loss.lamda"));
    ck_assert_str_eq(bt_last_error(),
                     "bt_config_set: unknown option 'loss.lamda' (did you mean 'loss.lambda'?)");
    ck_assert_int_eq(bt_config_get(cfg, "nope", buf, sizeof buf), BT_E_UNSUPPORTED);
    ck_assert_ptr_null(strstr(bt_last_error(), "did you mean"));
    /* the section left out, a per-view name, and each call's own name in the text */
    ck_assert_int_eq(bt_config_set(cfg, "lambda", "1"), BT_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "did you mean 'loss.lambda'?"));
    ck_assert_int_eq(bt_config_set(cfg, "aug.view2.blurp", "1"), BT_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "did you mean 'aug.view2.blur_p'?"));
    ck_assert_int_eq(bt_config_get(cfg, "optim.lr_bais", buf, sizeof buf), BT_E_UNSUPPORTED);
    ck_assert_str_eq(bt_last_error(), "bt_config_get: unknown option 'optim.lr_bais' (did you "
                                      "mean 'optim.lr_bias'?)");
    ck_assert_int_eq(bt_config_is_set(cfg, "optim.lrr"), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bt_config_is_set: unknown option 'optim.lrr' "
                                                  "(did you mean 'optim.lr'?)"));
    ck_assert_int_eq(bt_config_set(cfg, "aug.view3.blur_p", "1"), BT_E_UNSUPPORTED);
    ck_assert_int_eq(bt_config_set(cfg, "aug.view1.preset", "cifar"), BT_E_UNSUPPORTED);
    ck_assert_int_eq(bt_config_set(cfg, "aug.view1.", "1"), BT_E_UNSUPPORTED);
    ck_assert_int_eq(bt_config_is_set(cfg, "nope"), -1);
}
END_TEST

/* Values are at most 255 characters; a refused set keeps the value before it. NULL names
 * and handles are misuse, with -1 from bt_config_is_set. */
START_TEST(long_values_and_null_names_are_refused)
{
    char longv[300], buf[300];
    memset(longv, '1', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    ck_assert_int_eq(bt_config_set(cfg, "model.projector", "64-64"), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "model.projector", longv), BT_E_INVALID_ARG);
    ck_assert_str_eq(bt_last_error(), "option model.projector: value is longer than 255 characters");
    ck_assert_str_eq(get("model.projector"), "64-64");
    longv[255] = '\0'; /* 255 characters: long enough to get past the length, not a valid list */
    ck_assert_int_eq(bt_config_set(cfg, "model.projector", longv), BT_E_INVALID_ARG);
    ck_assert_ptr_null(strstr(bt_last_error(), "longer than"));
    ck_assert_str_eq(get("model.projector"), "64-64");
    ck_assert_int_eq(bt_config_set(cfg, "aug.mean", longv), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_is_set(cfg, NULL), -1);
    ck_assert_str_eq(bt_last_error(), "bt_config_is_set: name is NULL");
    ck_assert_int_eq(bt_config_is_set(NULL, "seed"), -1);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "bt_config_is_set: c is NULL"));
    ck_assert_int_eq(bt_config_is_set(cfg, "model.projector"), 1);
    ck_assert_int_eq(bt_config_get(cfg, "aug.mean", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "0.485,0.456,0.406");
}
END_TEST

START_TEST(per_view_values_resolve_in_order)
{
    /* imagenet preset: the paper's asymmetric blur and solarisation */
    ck_assert_str_eq(get("aug.view1.blur_p"), "1");
    ck_assert_str_eq(get("aug.view2.blur_p"), "0.1");
    ck_assert_str_eq(get("aug.view1.solarize_p"), "0");
    ck_assert_str_eq(get("aug.view2.solarize_p"), "0.2");
    /* a shared setting covers both views */
    ck_assert_int_eq(bt_config_set(cfg, "aug.blur_p", "0.5"), BT_OK);
    ck_assert_str_eq(get("aug.view1.blur_p"), "0.5");
    ck_assert_str_eq(get("aug.view2.blur_p"), "0.5");
    /* a view's own setting wins */
    ck_assert_int_eq(bt_config_set(cfg, "aug.view2.blur_p", "0.25"), BT_OK);
    ck_assert_str_eq(get("aug.view1.blur_p"), "0.5");
    ck_assert_str_eq(get("aug.view2.blur_p"), "0.25");
    ck_assert_int_eq(bt_config_is_set(cfg, "aug.view2.blur_p"), 1);
    /* presets change the unset values only */
    ck_assert_int_eq(bt_config_set(cfg, "aug.preset", "fmnist"), BT_OK);
    ck_assert_str_eq(get("aug.size"), "28");
    ck_assert_str_eq(get("aug.view2.size"), "28");
    ck_assert_str_eq(get("aug.view2.hue"), "0");
    ck_assert_str_eq(get("aug.view2.blur_p"), "0.25");
    ck_assert_int_eq(bt_config_set(cfg, "aug.preset", "cifar"), BT_OK);
    ck_assert_str_eq(get("aug.view1.solarize_p"), "0");
    ck_assert_str_eq(get("aug.view2.solarize_p"), "0.2");
    ck_assert_str_eq(get("aug.std"), "0.2470,0.2435,0.2616");
}
END_TEST

START_TEST(get_checks_the_buffer)
{
    char small[4] = "xyz";
    ck_assert_int_eq(bt_config_get(cfg, "loss.lambda", small, sizeof small), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "7 bytes"));
    ck_assert_str_eq(small, "xyz");
    ck_assert_int_eq(bt_config_get(cfg, "loss.lambda", NULL, 8), BT_E_MISUSE);
    ck_assert_int_eq(bt_config_get(cfg, NULL, small, 4), BT_E_MISUSE);
    ck_assert_int_eq(bt_config_get(NULL, "seed", small, 4), BT_E_MISUSE);
    ck_assert_int_eq(bt_config_set(cfg, NULL, "1"), BT_E_MISUSE);
    ck_assert_int_eq(bt_config_create(NULL), BT_E_MISUSE);
    bt_config_free(NULL);
}
END_TEST

START_TEST(configs_are_independent)
{
    bt_config *other;
    ck_assert_int_eq(bt_config_create(&other), BT_OK);
    ck_assert_int_eq(bt_config_set(other, "seed", "42"), BT_OK);
    ck_assert_str_eq(get("seed"), "0");
    bt_config_free(other);
    ck_assert_int_eq(bt_config_set(other, "seed", "1"), BT_E_MISUSE);
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults_follow_the_official_code);
    tcase_add_test(tc, every_design_option_is_registered);
    tcase_add_test(tc, listing_describes_every_option);
    tcase_add_test(tc, set_parses_and_validates);
    tcase_add_test(tc, unknown_names_are_unsupported);
    tcase_add_test(tc, long_values_and_null_names_are_refused);
    tcase_add_test(tc, per_view_values_resolve_in_order);
    tcase_add_test(tc, get_checks_the_buffer);
    tcase_add_test(tc, configs_are_independent);
    suite_add_tcase(s, tc);
    return s;
}
