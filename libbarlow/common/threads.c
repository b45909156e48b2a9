/* threads.c - how many threads to use, and keeping the BLAS in step. */
#include "common/internal.h"
#include "kernels/blas.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

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

/* OpenBLAS's thread count is one for the whole process. The library keeps it
 * at 1 between its calls: a product on n > 1 threads holds the lock
 * exclusively while the count is n, and every 1-thread product (inside the
 * OpenMP teams, any number at once) holds it shared. So no product runs on
 * more threads than its handle asked for, whatever other handles do at the
 * same time (docs/THREADS.md). */
static pthread_rwlock_t blas_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_set(int n)
{
#ifdef BT_BLAS_OPENBLAS
    /* Setting the count is not free in OpenBLAS: skip when unchanged. */
    if (openblas_get_num_threads() != n)
        openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

static void blas_start(void) { blas_set(1); }

void bti_blas_begin(int n)
{
    pthread_once(&blas_once, blas_start);
    if (n > 1) {
        pthread_rwlock_wrlock(&blas_lock);
        blas_set(n);
    } else {
        pthread_rwlock_rdlock(&blas_lock);
    }
}

void bti_blas_end(int n)
{
    if (n > 1)
        blas_set(1);
    pthread_rwlock_unlock(&blas_lock);
}
