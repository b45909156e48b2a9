/* util_fixtures.c - the fixtures of fixtures.h. */
#include "fixtures.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char test_dir[64];

void test_dir_make(void)
{
    strcpy(test_dir, "/tmp/bt_test_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(test_dir));
}

void test_dir_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", test_dir);
    ck_assert_int_eq(system(cmd), 0);
}

const char *test_path(const char *name)
{
    static char buf[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_dir, name);
    return buf[k];
}

bt_config *test_config(const char *const *kv, const char *const *more)
{
    bt_config *c;
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    for (; kv && *kv; kv += 2)
        ck_assert_msg(bt_config_set(c, kv[0], kv[1]) == BT_OK, "%s", bt_last_error());
    for (; more && *more; more += 2)
        ck_assert_msg(bt_config_set(c, more[0], more[1]) == BT_OK, "%s", bt_last_error());
    return c;
}

bt_model *test_model(const char *const *kv, const char *const *more)
{
    bt_config *c = test_config(kv, more);
    bt_model *m;
    ck_assert_msg(bt_model_create(&m, c) == BT_OK, "%s", bt_last_error());
    bt_config_free(c);
    return m;
}
