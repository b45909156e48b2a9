/* bench_util.h - timing helpers shared by the benchmarks (header-only). */
#ifndef BT_BENCH_UTIL_H
#define BT_BENCH_UTIL_H

#include <barlow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../libbarlow/kernels/blas.h"

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n samples (sorts them). */
static double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Seconds per sgemm of m x n x k (row-major, no transpose), median of reps. */
static double bench_sgemm_seconds(int m, int n, int k, int reps)
{
    float *a = calloc((size_t)m * k, sizeof *a), *b = calloc((size_t)k * n, sizeof *b),
          *c = calloc((size_t)m * n, sizeof *c);
    double t[32];
    int r;
    if (reps > 32)
        reps = 32;
    for (r = 0; r < m * k; r++)
        a[r] = (float)(r % 7) * 0.1f;
    for (r = 0; r < k * n; r++)
        b[r] = (float)(r % 5) * 0.1f;
    cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    for (r = 0; r < reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(BTI_ROW_MAJOR, BTI_NO_TRANS, BTI_NO_TRANS, m, n, k, 1.0f, a, k, b, n, 0.0f, c,
                    n);
        t[r] = bench_now() - t0;
    }
    free(a);
    free(b);
    free(c);
    return bench_median(t, reps);
}

/* The CPU's model name and family (/proc/cpuinfo), or "unknown CPU". */
static const char *bench_cpu_model(void)
{
    static char name[192] = "unknown CPU";
    char line[256], model[128] = "", family[16] = "?", number[16] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f) && line[0] != '\n') { /* the first CPU */
        const char *v = strchr(line, ':');
        if (!v)
            continue;
        v += v[1] == ' ' ? 2 : 1;
        if (strncmp(line, "model name", 10) == 0)
            snprintf(model, sizeof model, "%s", v);
        else if (strncmp(line, "cpu family", 10) == 0)
            snprintf(family, sizeof family, "%s", v);
        else if (strncmp(line, "model\t", 6) == 0)
            snprintf(number, sizeof number, "%s", v);
    }
    if (f)
        fclose(f);
    model[strcspn(model, "\n")] = family[strcspn(family, "\n")] = number[strcspn(number, "\n")] = 0;
    if (model[0])
        snprintf(name, sizeof name, "%s (family %s, model %s)", model, family, number);
    return name;
}

/* The CPU level this run's handles take: BT_CPU, else the best this CPU runs. */
static const char *bench_cpu_level(void)
{
    static char level[32];
    const char *p = strstr(bt_build_info(), "cpu=");
    snprintf(level, sizeof level, "%s", getenv("BT_CPU") ? getenv("BT_CPU") : p ? p + 4 : "?");
    level[strcspn(level, "; ")] = '\0';
    return level;
}

/* Print what runs: the CPU and the level, the build line (BLAS, kernel core)
 * and the thread count. */
static void bench_header(const char *what)
{
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("== %s ==\ncpu: %s, level %s\n%s\nOPENBLAS_CORETYPE=%s BT_NUM_THREADS=%s\n", what,
           bench_cpu_model(), bench_cpu_level(), bt_build_info(), ct ? ct : "(unset)",
           getenv("BT_NUM_THREADS") ? getenv("BT_NUM_THREADS") : "(unset)");
}

#endif
