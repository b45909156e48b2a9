/* bench_loss.c - forward+backward of the Barlow Twins loss on both paths, against
 * three same-size sgemm calls and PyTorch's official formulation (bench_loss.py).
 *
 *   build/bench/bench_loss [reps]      (run from the top of the tree)
 * Targets (issue 5): Gram >= 10x faster than D x D at N=256, D=8192; D x D within
 * 1.5x of three sgemm calls of its size. Times are medians; the machine is shared. */
#include "bench_util.h"

#include <math.h>
#include <stdint.h>

static bt_tensor *mat(int64_t n, int64_t d)
{
    int64_t shape[2] = {n, d};
    bt_tensor *t = NULL;
    if (bt_tensor_create(&t, 2, shape) != BT_OK) {
        fprintf(stderr, "bench_loss: %s\n", bt_last_error());
        exit(1);
    }
    return t;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static float uni(uint64_t stream, uint64_t k)
{
    return (float)(mix64((stream << 32) + k) >> 40) * (1.0f / 16777216.0f) - 0.5f;
}

/* Seconds of one forward+backward (median of reps) on the given path. */
static double time_path(bt_loss *l, int path, bt_tensor *za, bt_tensor *zb, bt_tensor *ga,
                        bt_tensor *gb, int reps, double *loss)
{
    double t[16];
    int r;
    if (bt_loss_set_path(l, path) != BT_OK) {
        fprintf(stderr, "bench_loss: %s\n", bt_last_error());
        exit(1);
    }
    for (r = 0; r < reps; r++) {
        double t0 = bench_now();
        if (bt_loss_forward(l, za, zb, loss) != BT_OK || bt_loss_backward(l, ga, gb) != BT_OK) {
            fprintf(stderr, "bench_loss: %s\n", bt_last_error());
            exit(1);
        }
        t[r] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

static double max_rel(const float *got, const float *want, int64_t n)
{
    double scale = 0, worst = 0;
    int64_t i;
    for (i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)want[i]));
    for (i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - (double)want[i]));
    return worst / scale;
}

/* PyTorch's seconds for the same step, or -1 when it is not installed. */
static double torch_seconds(int n, int d, int reps)
{
    char cmd[512], line[256];
    double s = -1;
    FILE *p;
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/bench/bench_loss.py %d %d %d", n, d, reps);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "torch_seconds %lf", &s) != 1)
            fputs(line, stdout);
    pclose(p);
    return s;
}

int main(int argc, char **argv)
{
    static const int shapes[][2] = {{256, 8192}, {2048, 8192}};
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    size_t si;
    if (reps < 1 || reps > 16)
        reps = 5;
    bench_header("Barlow Twins loss, forward+backward (barlow mode)");
    for (si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int n = shapes[si][0], d = shapes[si][1];
        bt_tensor *za = mat(n, d), *zb = mat(n, d), *ga[2], *gb[2];
        bt_loss *l = NULL;
        double tg, tx, ts, tt, lg, lx, gf_dxd = 6.0 * n * (double)d * d,
                                       gf_gram = 2.0 * n * (double)n * d + 4.0 * n * (double)n * d;
        int rx;
        int64_t i;
        ga[0] = mat(n, d);
        ga[1] = mat(n, d);
        gb[0] = mat(n, d);
        gb[1] = mat(n, d);
        for (i = 0; i < (int64_t)n * d; i++) {
            float u1 = uni(1, (uint64_t)i), u2 = uni(2, (uint64_t)i);
            bt_tensor_data(za)[i] = u1;
            bt_tensor_data(zb)[i] = u1 + 0.5f * u2;
        }
        if (bt_loss_create(&l, NULL) != BT_OK) {
            fprintf(stderr, "bench_loss: %s\n", bt_last_error());
            return 1;
        }
        printf("\nN=%d D=%d\n", n, d);
        time_path(l, BT_LOSS_PATH_GRAM, za, zb, ga[1], gb[1], 1, &lg); /* warm-up, buffers */
        tg = time_path(l, BT_LOSS_PATH_GRAM, za, zb, ga[1], gb[1], reps, &lg);
        printf("  gram path  %10.1f ms  (%6.1f GFLOP/s on 2N^2D syrk + 4N^2D gemm)\n", 1e3 * tg,
               gf_gram / tg * 1e-9);
        /* the D x D path: one untimed call first unless that alone is long */
        tx = time_path(l, BT_LOSS_PATH_DXD, za, zb, ga[0], gb[0], 1, &lx);
        rx = tx > 20 ? 0 : (tx > 5 ? 1 : 3);
        if (rx)
            tx = time_path(l, BT_LOSS_PATH_DXD, za, zb, ga[0], gb[0], rx, &lx);
        printf("  dxd path   %10.1f ms  (%6.1f GFLOP/s on 6ND^2; %s)\n", 1e3 * tx,
               gf_dxd / tx * 1e-9, rx ? "median" : "first and only call");
        ts = bench_sgemm_seconds(d, d, n, rx ? rx : 1) + 2 * bench_sgemm_seconds(n, d, d, rx ? rx : 1);
        printf("  3 sgemm    %10.1f ms  (DxDxN + 2 NxDxD, the D x D path's GEMMs alone)\n",
               1e3 * ts);
        printf("  paths agree: loss %.2e, dza %.2e, dzb %.2e (relative)\n",
               fabs(lg - lx) / fabs(lx), max_rel(bt_tensor_data(ga[1]), bt_tensor_data(ga[0]),
                                                 (int64_t)n * d),
               max_rel(bt_tensor_data(gb[1]), bt_tensor_data(gb[0]), (int64_t)n * d));
        printf("  ratio dxd/gram %.1fx (target >= 10x at N=256)   dxd/3sgemm %.2f (target <= 1.5)\n",
               tx / tg, tx / ts);
        tt = torch_seconds(n, d, n >= 2048 ? 1 : 3);
        if (tt > 0)
            printf("  pytorch official (D x D, float32) %10.1f ms   pytorch/gram %.1fx   "
                   "pytorch/dxd %.2fx\n",
                   1e3 * tt, tt / tg, tt / tx);
        else
            printf("  pytorch: not installed for /usr/bin/python3 (skipped)\n");
        printf("  loss %.6g\n", lg);
        bt_loss_free(l);
        bt_tensor_free(za);
        bt_tensor_free(zb);
        bt_tensor_free(ga[0]);
        bt_tensor_free(ga[1]);
        bt_tensor_free(gb[0]);
        bt_tensor_free(gb[1]);
    }
    return 0;
}
