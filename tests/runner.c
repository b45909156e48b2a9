/* runner.c - runs every Check suite (the list is generated from tests/check_*.c)
 * at the CPU level BT_CPU names (the library's best when unset). A level this
 * CPU cannot run is skipped with a line saying so, never silently. */
#include "common/cpu.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BT_SUITE(name) Suite *name##_suite(void);
#include "suites.inc"
#undef BT_SUITE

int main(void)
{
    const char *want = getenv("BT_CPU");
    SRunner *sr;
    int failed, level;
    for (level = 0; want && level < BTI_CPU_LEVELS; level++)
        if (strcmp(want, bti_cpu_name(level)) == 0 && level > bti_cpu_best()) {
            printf("cpu level %s: skipped (this CPU runs at most %s)\n", want,
                   bti_cpu_name(bti_cpu_best()));
            return EXIT_SUCCESS;
        }
    printf("cpu level %s (this CPU runs at most %s)\n", bti_cpu_name(bti_cpu_default()),
           bti_cpu_name(bti_cpu_best()));
    fflush(stdout);
    sr = srunner_create(NULL);
#define BT_SUITE(name) srunner_add_suite(sr, name##_suite());
#include "suites.inc"
#undef BT_SUITE
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
