/* bench_sgemm.c - the machine's SGEMM rate: the yardstick every other benchmark is set against. */
#include "bench_util.h"

#include <omp.h>

int main(void)
{
    static const int sizes[] = {256, 512, 1024, 2048};
    size_t i;
    bench_header("sgemm (row-major, no transpose)");
    printf("%8s %12s %10s\n", "m=n=k", "ms", "GFLOP/s");
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int s = sizes[i];
        double t = bench_sgemm_seconds(s, s, s, s >= 2048 ? 3 : 7);
        printf("%8d %12.3f %10.1f\n", s, 1e3 * t, 2.0 * s * s * (double)s / t * 1e-9);
    }
    printf("threads: OpenMP max %d\n", omp_get_max_threads());
    return 0;
}
