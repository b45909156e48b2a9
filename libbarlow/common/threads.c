/* threads.c - how many threads to use, and keeping the BLAS in step. */
#include "common/internal.h"

#include <stdlib.h>
#include <unistd.h>

#ifdef BT_BLAS_OPENBLAS
extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);
#endif

int bti_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)(n > 1024 ? 1024 : n) : 1;
}

int bti_threads_resolve(const bt_config *cfg)
{
    int64_t n = 0;
    const char *env;
    if (cfg && bti_config_int(cfg, "threads", &n) == BT_OK && n > 0)
        return (int)n;
    env = getenv("BT_NUM_THREADS");
    if (env) {
        int64_t e;
        if (bti_parse_int(env, &e) == 0 && e > 0)
            return (int)(e > 1024 ? 1024 : e);
    }
    return bti_cores();
}

void bti_blas_set_threads(int n)
{
#ifdef BT_BLAS_OPENBLAS
    /* Setting the count is not free in OpenBLAS: skip when unchanged. */
    if (openblas_get_num_threads() != n)
        openblas_set_num_threads(n);
#else
    (void)n;
#endif
}
