/* bench_sgemm.c - the machine's SGEMM rate (the yardstick of the other
 * benchmarks), then the private kernels of libbarlow/sgemm.c against OpenBLAS
 * on the convolution GEMM shapes, at one thread.
 *
 * Conv shapes (per-image mode, one group of images per GEMM): M = Co,
 * K = Ci*9, N = group*H*W, in the three forms a 3x3 convolution runs:
 *   fwd  NN  out[Co][N]  = W[Co][K] x col[K][N]
 *   dW   NT  dW[Co][K]  += dy[Co][N] x col[K][N]^T
 *   dx   TN  dcol[K][N]  = W[Co][K]^T x dy[Co][N]
 * OpenBLAS reads OPENBLAS_CORETYPE once when it loads, so its SkylakeX and
 * Prescott kernels are timed by child processes of this program (argv[1] =
 * "child"), interleaved round by round with the private kernel measured here:
 * on a shared machine each variant sees the same noise. GFLOP/s of the median
 * round; a round is the best of a few calls.
 *
 * Environment: BENCH_REPS (rounds, default 5), BENCH_FILTER (substring of the
 * form names "fwd"/"dW"/"dx"), BENCH_NO_BLAS (skip the OpenBLAS children). */
#include "bench_util.h"
#include <unistd.h>
#include "common/internal.h"
#include "kernels/sgemm.h"

#include <omp.h>

struct shape {
    const char *what;
    int co, k, n;
};

static const struct shape shapes[] = {
    {"small 16->16 @28", 16, 144, 784},   {"small 32->32 @14x3", 32, 288, 588},
    {"small 32->256 @7", 256, 288, 539},  {"small 256->256 @7", 256, 2304, 539},
    {"cifar 64->64 @32", 64, 576, 1024},  {"cifar 128->128 @16x2", 128, 1152, 512},
    {"cifar 256->256 @8x8", 256, 2304, 512}, {"cifar 512->512 @4x32", 512, 4608, 512},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))
static const char *const forms[] = {"fwd", "dW", "dx"};

/* M, N, K of one form: fwd Co x N x K, dW Co x K x N, dx K x N x Co. */
static void form_dims(int form, const struct shape *s, int *m, int *n, int *k)
{
    *m = form == 2 ? s->k : s->co;
    *n = form == 1 ? s->k : s->n;
    *k = form == 0 ? s->k : form == 1 ? s->n : s->co;
}

/* The GEMM of one form and shape: private (bti_sgemm) or cblas_sgemm. */
static void gemm(int form, const struct shape *s, int use_blas, const float *a, const float *b,
                 float *c)
{
    const int ta = form == 2 ? BTI_TRANS : BTI_NO_TRANS, tb = form == 1 ? BTI_TRANS : BTI_NO_TRANS;
    const int lda = form == 1 ? s->n : s->k, ldb = s->n, ldc = form == 1 ? s->k : s->n;
    const float beta = form == 1 ? 1.0f : 0.0f; /* dW accumulates */
    int m, n, k;
    form_dims(form, s, &m, &n, &k);
    if (use_blas)
        cblas_sgemm(BTI_ROW_MAJOR, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    else
        bti_sgemm(bti_cpu_default(), ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* Seconds of one round: the best of `calls` calls (after a warm-up). */
static double round_seconds(int form, const struct shape *s, int use_blas)
{
    /* A: Co x max(K, N) covers W and dy; B and C: K x N covers col, dcol, dW */
    const size_t na = (size_t)s->co * (size_t)(s->k > s->n ? s->k : s->n);
    const size_t big = (size_t)s->k * (size_t)s->n;
    float *a = calloc(na, sizeof *a), *b = calloc(big, sizeof *b), *c = calloc(big, sizeof *c);
    double best = 1e30, flops = 2.0 * s->co * s->k * (double)s->n;
    int calls = flops < 2e8 ? 9 : 5, r;
    size_t i;
    if (!a || !b || !c) {
        fprintf(stderr, "bench_sgemm: out of memory\n");
        exit(1);
    }
    for (i = 0; i < na; i++)
        a[i] = (float)(i % 7) * 0.01f;
    for (i = 0; i < big; i++)
        b[i] = (float)(i % 5) * 0.01f;
    gemm(form, s, use_blas, a, b, c);
    for (r = 0; r < calls; r++) {
        double t0 = bench_now(), t;
        gemm(form, s, use_blas, a, b, c);
        t = bench_now() - t0;
        if (t < best)
            best = t;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

static int form_wanted(int form)
{
    const char *f = getenv("BENCH_FILTER");
    return !f || strstr(forms[form], f) != NULL;
}

/* Child: one round of cblas_sgemm over every shape and wanted form, seconds on stdout. */
static int child(void)
{
    int f, i;
    bti_blas_begin(1);
    for (f = 0; f < 3; f++)
        for (i = 0; i < NSHAPES; i++)
            if (form_wanted(f))
                printf("%d %d %.9f\n", f, i, round_seconds(f, &shapes[i], 1));
    bti_blas_end(1);
    return 0;
}

/* Runs a child round with OPENBLAS_CORETYPE=core into t[variant][form][shape][round]. */
static double t[3][3][NSHAPES][32];

static void child_round(int variant, const char *core, const char *self, int round)
{
    char cmd[4200];
    FILE *p;
    int f, i;
    double s;
    snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=%s OPENBLAS_NUM_THREADS=1 '%s' child", core,
             self);
    p = popen(cmd, "r");
    if (!p)
        return;
    while (fscanf(p, "%d %d %lf", &f, &i, &s) == 3)
        if (f >= 0 && f < 3 && i >= 0 && i < NSHAPES)
            t[variant][f][i][round] = s;
    pclose(p);
}

int main(int argc, char **argv)
{
    static const int sizes[] = {256, 512, 1024, 2048};
    const int reps = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 5;
    /* the children only mean something when the BLAS is OpenBLAS */
    const int no_blas = getenv("BENCH_NO_BLAS") != NULL || !strstr(bt_build_info(), "blas=openblas");
    char self[4096];
    ssize_t len;
    size_t i;
    int r, f, v, s;
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child();
    bench_header("sgemm (row-major, no transpose)");
    printf("%8s %12s %10s\n", "m=n=k", "ms", "GFLOP/s");
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int sz = sizes[i];
        double tt = bench_sgemm_seconds(sz, sz, sz, sz >= 2048 ? 3 : 7);
        printf("%8d %12.3f %10.1f\n", sz, 1e3 * tt, 2.0 * sz * sz * (double)sz / tt * 1e-9);
    }
    printf("threads: OpenMP max %d\n", omp_get_max_threads());

    len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return 0;
    self[len] = '\0';
    if (reps < 1 || reps > 32)
        return 1;
    printf("\n== conv GEMM shapes, 1 thread: private (level %s) vs OpenBLAS SkylakeX / "
           "Prescott, GFLOP/s, median of %d interleaved rounds ==\n",
           bti_cpu_name(bti_cpu_default()), reps);
    for (r = 0; r < reps; r++) {
        for (f = 0; f < 3; f++)
            for (s = 0; s < NSHAPES; s++)
                if (form_wanted(f))
                    t[0][f][s][r] = round_seconds(f, &shapes[s], 0);
        if (!no_blas) {
            child_round(1, "SkylakeX", self, r);
            child_round(2, "Prescott", self, r);
        }
    }
    printf("%-22s %4s %5s %5s %5s %9s %9s %9s %7s %6s\n", "shape", "form", "M", "N", "K",
           "private", "SkylakeX", "Prescott", "pr/SkX", "spread");
    for (f = 0; f < 3; f++) {
        if (!form_wanted(f))
            continue;
        for (s = 0; s < NSHAPES; s++) {
            const struct shape *sh = &shapes[s];
            int m, n, k;
            double fl, g[3], lo, hi, tmp[32];
            form_dims(f, sh, &m, &n, &k);
            fl = 2.0 * m * (double)n * k * 1e-9;
            for (v = 0; v < 3; v++) {
                memcpy(tmp, t[v][f][s], (size_t)reps * sizeof *tmp);
                g[v] = (v > 0 && no_blas) ? 0 : fl / bench_median(tmp, reps);
            }
            memcpy(tmp, t[0][f][s], (size_t)reps * sizeof *tmp);
            qsort(tmp, (size_t)reps, sizeof *tmp, bench_cmp);
            lo = fl / tmp[reps - 1];
            hi = fl / tmp[0];
            printf("%-22s %4s %5d %5d %5d %9.1f %9.1f %9.1f %7.2f %5.0f%%\n", sh->what, forms[f], m,
                   n, k, g[0], g[1], g[2], g[1] > 0 ? g[0] / g[1] : 0.0,
                   100.0 * (hi - lo) / g[0]);
        }
    }
    printf("spread: (max - min) / median of the private kernel's rounds\n");
    return 0;
}
