/* runner.c - runs every Check suite (the list is generated from tests/check_*.c). */
#include <check.h>
#include <stdlib.h>

#define BT_SUITE(name) Suite *name##_suite(void);
#include "suites.inc"
#undef BT_SUITE

int main(void)
{
    SRunner *sr = srunner_create(NULL);
    int failed;
#define BT_SUITE(name) srunner_add_suite(sr, name##_suite());
#include "suites.inc"
#undef BT_SUITE
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
