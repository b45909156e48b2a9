/* fast_blas.c - for command-line tools: re-run the program with OpenBLAS's fast
 * kernels when Debian's OpenBLAS picked its generic ones.
 *
 * Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise recent Xeons
 * and falls back to its "Prescott" kernels, several times slower than its
 * SkylakeX (AVX-512) or Haswell (AVX2) ones on the same CPU. OpenBLAS reads
 * OPENBLAS_CORETYPE once, when it loads, so the only way to switch is to set it
 * and start again. A library must not do this behind its host's back; a
 * program that owns its process may. Set OPENBLAS_CORETYPE yourself (any
 * value) to keep full control: this then does nothing. */
#ifndef BARLOW_EXAMPLES_FAST_BLAS_H
#define BARLOW_EXAMPLES_FAST_BLAS_H

#include <barlow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fast_blas_reexec(char **argv)
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

#endif
