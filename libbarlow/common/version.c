/* version.c - version numbers and build facts (BLAS, its core, threading). */
#include "common/cpu.h"
#include "common/internal.h"
#include "kernels/blas.h"

#include <pthread.h>
#include <stdio.h>

#define STR2(x) #x
#define STR(x) STR2(x)

BT_API int32_t bt_version_number(void) { return BT_VERSION_NUMBER; }

BT_API const char *bt_version_string(void)
{
    return STR(BT_VERSION_MAJOR) "." STR(BT_VERSION_MINOR) "." STR(BT_VERSION_PATCH);
}

const char *bti_build_blas(void)
{
#ifdef BT_BLAS_OPENBLAS
    return "openblas";
#else
    return "reference";
#endif
}

const char *bti_build_blas_core(void)
{
#ifdef BT_BLAS_OPENBLAS
    const char *core = openblas_get_corename();
    return core ? core : "unknown";
#else
    return "none";
#endif
}

const char *bti_build_blas_config(void)
{
#ifdef BT_BLAS_OPENBLAS
    const char *cfg = openblas_get_config();
    return cfg ? cfg : "unknown";
#else
    return "reference CBLAS (netlib)";
#endif
}

const char *bti_build_threads(void)
{
#ifdef _OPENMP
    return "openmp";
#else
    return "serial";
#endif
}

static char info[512];
static pthread_once_t info_once = PTHREAD_ONCE_INIT;

static void build_info(void)
{
    snprintf(info, sizeof info,
             "libbarlow %s; blas=%s; blas_core=%s; blas_config=%s; threads=%s; cpu=%s; cpu_best=%s",
             bt_version_string(), bti_build_blas(), bti_build_blas_core(),
             bti_build_blas_config(), bti_build_threads(), bti_cpu_name(bti_cpu_default()),
             bti_cpu_name(bti_cpu_best()));
}

BT_API const char *bt_build_info(void)
{
    pthread_once(&info_once, build_info);
    return info;
}
