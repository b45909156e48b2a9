/* util_tmpdir.c - the per-test directory of tmpdir.h. */
#include "tmpdir.h"

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
