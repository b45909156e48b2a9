/* fast_blas.c - re-run the program with OpenBLAS's fast kernels when Debian's
 * OpenBLAS picked its generic ones (why, in fast_blas.h). */
#include "fast_blas.h"

#include <barlow.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fast_blas_reexec(char **argv)
{
    const char *core = NULL;
    char have[64];
    bt_config *c;
    if (getenv("OPENBLAS_CORETYPE") || bt_config_create(&c) != BT_OK)
        return;
    if (bt_config_get(c, "build.blas_core", have, sizeof have) == BT_OK &&
        strcmp(have, "Prescott") == 0) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
            core = "SkylakeX";
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            core = "Haswell";
#endif
    }
    bt_config_free(c);
    if (!core)
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the generic kernels */
}
