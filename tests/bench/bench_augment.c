/* bench_augment.c - images/s of bt_augment_views (two views per image) for the
 * imagenet preset (500 x 375 RGB -> 224) and the fmnist preset (28 x 28 gray),
 * with 1 and 2 threads, a per-operation breakdown, and the official torchvision
 * Transform (PIL path, one thread) run by the twin bench_augment.py. */
#include "bench_util.h"

#include "../../libbarlow/augment/augment.h"

#include <omp.h>

static double views_rate(const char *preset, int threads, int n, int h, int w, int c, int reps)
{
    bt_config *cfg;
    bt_augment *a;
    bt_tensor *out[2];
    uint8_t **img = malloc((size_t)n * sizeof *img);
    int32_t *hs = malloc((size_t)n * sizeof *hs), *ws = malloc((size_t)n * sizeof *ws);
    double t[16];
    char buf[16];
    int i, r, s, v;
    size_t k;
    bt_config_create(&cfg);
    bt_config_set(cfg, "aug.preset", preset);
    snprintf(buf, sizeof buf, "%d", threads);
    bt_config_set(cfg, "threads", buf);
    if (bt_augment_create(&a, cfg) != BT_OK) {
        fprintf(stderr, "%s\n", bt_last_error());
        exit(1);
    }
    s = bt_augment_output_size(a, 0);
    for (v = 0; v < 2; v++) {
        int64_t shape[4] = {n, c, s, s};
        bt_tensor_create(&out[v], 4, shape);
    }
    srand(1);
    for (i = 0; i < n; i++) {
        hs[i] = h, ws[i] = w;
        img[i] = malloc((size_t)h * w * c);
        for (k = 0; k < (size_t)h * w * c; k++) /* smooth-ish content with noise */
            img[i][k] = (uint8_t)((k / (size_t)c % (size_t)w) * 255 / w / 2 + (rand() & 127));
    }
    bt_augment_views(a, n, (const uint8_t *const *)img, hs, ws, c, 2, out); /* warm-up, sizes buffers */
    for (r = 0; r < reps; r++) {
        double t0 = bench_now();
        if (bt_augment_views(a, n, (const uint8_t *const *)img, hs, ws, c, 2, out) != BT_OK) {
            fprintf(stderr, "%s\n", bt_last_error());
            exit(1);
        }
        t[r] = bench_now() - t0;
    }
    for (i = 0; i < n; i++)
        free(img[i]);
    free(img);
    free(hs);
    free(ws);
    bt_tensor_free(out[0]);
    bt_tensor_free(out[1]);
    bt_augment_free(a);
    bt_config_free(cfg);
    return n / bench_median(t, reps);
}

/* Median microseconds of one call of each operation on a 224 x 224 RGB view. */
static void breakdown(void)
{
    enum { S = 224, R = 15 };
    static uint8_t src[375 * 500 * 3], img[S * S * 3], line[S * S * 3 + (S + 8) * 3];
    size_t ws_n = bti_resample_ws_bytes(400, 300, S, S, S, S, 3, 1);
    void *ws = malloc(ws_n);
    double t[8][R];
    const char *names[8] = {"resize 400x300 crop -> 224 bicubic", "brightness", "contrast",
                            "saturation", "hue", "grayscale", "blur sigma 1.05", "solarize"};
    int r, k;
    size_t i;
    for (i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 2654435761u >> 24);
    for (r = 0; r < R; r++) {
        double t0 = bench_now();
        bti_resample(src, 500 * 3, 3, 50, 40, 400, 300, S, S, 0, 0, S, S, 1, img, ws);
        t[0][r] = bench_now() - t0;
        t0 = bench_now(); bti_aug_brightness(img, S * S, 3, 1.21); t[1][r] = bench_now() - t0;
        t0 = bench_now(); bti_aug_contrast(img, S * S, 3, 0.83); t[2][r] = bench_now() - t0;
        t0 = bench_now(); bti_aug_saturation(img, S * S, 3, 1.1); t[3][r] = bench_now() - t0;
        t0 = bench_now(); bti_aug_hue(img, S * S, 3, 0.05); t[4][r] = bench_now() - t0;
        t0 = bench_now(); bti_aug_grayscale(img, S * S, 3); t[5][r] = bench_now() - t0;
        t0 = bench_now(); bti_aug_blur(img, S, S, 3, 1.05f, line); t[6][r] = bench_now() - t0;
        t0 = bench_now(); bti_aug_solarize(img, S * S * 3); t[7][r] = bench_now() - t0;
    }
    printf("per operation, one 224x224 RGB view, 1 thread (median of %d):\n", R);
    for (k = 0; k < 8; k++)
        printf("  %-36s %8.1f us\n", names[k], 1e6 * bench_median(t[k], R));
    free(ws);
}

int main(void)
{
    double in1, in2, fm1, fm2, py_in = 0, py_fm = 0;
    FILE *p;
    bench_header("augment: bt_augment_views, two views per image");
    printf("OpenMP max threads %d; the machine is shared: numbers are noisy (medians)\n",
           omp_get_max_threads());
    in1 = views_rate("imagenet", 1, 32, 375, 500, 3, 5);
    in2 = views_rate("imagenet", 2, 32, 375, 500, 3, 5);
    fm1 = views_rate("fmnist", 1, 1024, 28, 28, 1, 7);
    fm2 = views_rate("fmnist", 2, 1024, 28, 28, 1, 7);
    printf("%-34s %12s %12s %14s\n", "preset (input -> views)", "1 thread", "2 threads",
           "per thread @2");
    printf("%-34s %9.1f/s %9.1f/s %11.1f/s\n", "imagenet (500x375 RGB -> 2x224)", in1, in2, in2 / 2);
    printf("%-34s %9.0f/s %9.0f/s %11.0f/s\n", "fmnist (28x28 gray -> 2x28)", fm1, fm2, fm2 / 2);
    breakdown();
    p = popen("/usr/bin/python3 -c 'import torch' 2>/dev/null && "
              "/usr/bin/python3 tests/bench/bench_augment.py 16 2>/dev/null",
              "r");
    if (p) {
        char line[256];
        while (fgets(line, sizeof line, p)) {
            sscanf(line, "imagenet %lf", &py_in);
            sscanf(line, "fmnist %lf", &py_fm);
        }
        pclose(p);
    }
    if (py_in > 0 && py_fm > 0) {
        printf("torchvision official Transform (PIL, 1 thread): imagenet %.1f/s, fmnist %.0f/s\n",
               py_in, py_fm);
        printf("ratio libbarlow/torchvision at 1 thread: imagenet %.2fx, fmnist %.2fx\n",
               in1 / py_in, fm1 / py_fm);
    } else {
        printf("torchvision twin not run (/usr/bin/python3 cannot import torch)\n");
    }
    return 0;
}
