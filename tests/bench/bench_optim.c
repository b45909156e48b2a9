/* bench_optim.c - one optimizer step over ResNet-50's parameters (fc removed,
 * 23.5 M floats in 161 tensors): LARS (official), SGD with momentum, AdamW,
 * against the same step in PyTorch (tests/bench/bench_optim.py, run here via
 * popen when /usr/bin/python3 has torch). The step is memory-bound. */
#include "bench_util.h"

#define MAXT 200
#define REPS 15

static int nt;
static bt_tensor *val[MAXT], *grd[MAXT];

static void add(int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t shape[4] = {a, b, c, d};
    int64_t i, n;
    float *v, *g;
    bt_tensor_create(&val[nt], ndim, shape);
    bt_tensor_create(&grd[nt], ndim, shape);
    n = bt_tensor_numel(val[nt]);
    v = bt_tensor_data(val[nt]);
    g = bt_tensor_data(grd[nt]);
    for (i = 0; i < n; i++) {
        v[i] = 0.01f * (float)((i * 7 + nt) % 13 - 6);
        g[i] = 0.001f * (float)((i * 5 + nt) % 11 - 5);
    }
    nt++;
}

static void conv_bn(int64_t out, int64_t in, int64_t k)
{
    add(4, out, in, k, k);
    add(1, out, 0, 0, 0);
    add(1, out, 0, 0, 0);
}

/* torchvision resnet50 parameter shapes, in its order, without fc. */
static void resnet50(void)
{
    static const int blocks[4] = {3, 4, 6, 3};
    int64_t in = 64;
    int l, b;
    conv_bn(64, 3, 7);
    for (l = 0; l < 4; l++) {
        int64_t w = 64 << l;
        for (b = 0; b < blocks[l]; b++) {
            conv_bn(w, in, 1);
            conv_bn(w, w, 3);
            conv_bn(4 * w, w, 1);
            if (b == 0)
                conv_bn(4 * w, in, 1);
            in = 4 * w;
        }
    }
}

int main(void)
{
    static const char *const kinds[3] = {"lars", "sgd", "adamw"};
    int64_t total = 0;
    int k, t, r;
    char nthreads[16];
    const char *env = getenv("BT_NUM_THREADS");
    FILE *py;

    bench_header("optimizer step, ResNet-50 parameters");
    resnet50();
    for (t = 0; t < nt; t++)
        total += bt_tensor_numel(val[t]);
    snprintf(nthreads, sizeof nthreads, "%s", env ? env : "2");
    printf("%d tensors, %lld floats; threads %s\n", nt, (long long)total, nthreads);
    printf("%-8s %12s %12s %8s\n", "kind", "C ms", "torch ms", "torch/C");
    for (k = 0; k < 3; k++) {
        bt_config *c;
        bt_optim *o;
        double times[REPS], ms, tms = -1.0;
        char cmd[256], line[256];
        bt_config_create(&c);
        bt_config_set(c, "optim.kind", kinds[k]);
        bt_config_set(c, "threads", nthreads);
        bt_optim_create(&o, c);
        bt_config_free(c);
        for (t = 0; t < nt; t++)
            bt_optim_add_tensor(o, val[t], grd[t], NULL);
        bt_optim_step(o); /* warm-up */
        for (r = 0; r < REPS; r++) {
            double t0 = bench_now();
            if (bt_optim_step(o) != BT_OK) {
                printf("step failed: %s\n", bt_last_error());
                return 1;
            }
            times[r] = bench_now() - t0;
        }
        ms = 1e3 * bench_median(times, REPS);
        bt_optim_free(o);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 tests/bench/bench_optim.py %s %s 2>/dev/null", kinds[k],
                 nthreads);
        py = popen(cmd, "r");
        if (py) {
            if (fgets(line, sizeof line, py))
                tms = atof(line);
            pclose(py);
        }
        if (tms > 0)
            printf("%-8s %12.2f %12.2f %8.2f\n", kinds[k], ms, tms, tms / ms);
        else
            printf("%-8s %12.2f %12s %8s\n", kinds[k], ms, "n/a", "-");
    }
    for (t = 0; t < nt; t++) {
        bt_tensor_free(val[t]);
        bt_tensor_free(grd[t]);
    }
    return 0;
}
