/* bench_model.c - one full training step of the model (two views, forward, loss-free
 * backward with a fixed upstream gradient) at the shapes the design names, against
 * PyTorch doing the same step with the same thread count, in one run.
 * Each case runs in its own process so its peak memory is its own; the peak is
 * reported as the process's high-water RSS minus its RSS just before the model
 * was created, on both sides (the twin does the same around nn.Module creation).
 * BENCH_MODEL_CASES="cifar18:256,small" runs only those cases (name, or
 * name:batch); BENCH_MODEL_REPS sets the timed steps per case (default 5). */
#include "bench_util.h"

#include <math.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

struct model_case {
    const char *name;
    const char *opts[16];
    int64_t ch, hw;
};

static const struct model_case cases[] = {
    {"small",
     {"model.arch", "resnet", "model.blocks", "1-1-1", "model.widths", "16-32-64", "model.stem",
      "cifar", "model.in_channels", "1", "model.projector", "512-512-512", NULL},
     1, 28},
    {"cifar18", {"model.arch", "resnet18", "model.stem", "cifar", "model.projector", "2048-2048", NULL},
     3, 32},
};

/* Forward multiply-adds per image: convolutions at their output resolution
 * (cifar stem: stage s runs at hw / 2^(s-1)), linear layers once. */
static double macs_per_image(bt_model *m, int64_t hw)
{
    double macs = 0;
    int32_t t;
    for (t = 0; t < bt_model_tensor_count(m); t++) {
        const char *name;
        bt_tensor *v, *g;
        bt_model_tensor(m, t, &name, &v, &g);
        if (!g || bt_tensor_ndim(v) < 2 || strstr(name, ".weight") == NULL)
            continue;
        if (bt_tensor_ndim(v) == 2) {
            macs += (double)bt_tensor_numel(v);
        } else {
            int stage = 1;
            const char *p = strstr(name, "layer");
            int64_t side;
            if (p)
                stage = p[5] - '0';
            side = hw >> (stage - 1);
            macs += (double)bt_tensor_numel(v) * (double)(side * side);
        }
    }
    return macs;
}

/* A field of /proc/self/status ("VmRSS", "VmHWM") in MB, or -1. */
static double status_mb(const char *field)
{
    char line[256];
    double kb = -1;
    size_t n = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = atof(line + n + 1);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

/* Whether BENCH_MODEL_CASES (unset: everything) selects this case. */
static int selected(const char *name, int64_t batch)
{
    const char *sel = getenv("BENCH_MODEL_CASES");
    char list[256], *tok, *save = NULL;
    if (!sel || !*sel)
        return 1;
    snprintf(list, sizeof list, "%s", sel);
    for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (colon)
            *colon = 0;
        if (strcmp(tok, name) == 0 && (!colon || atoll(colon + 1) == batch))
            return 1;
    }
    return 0;
}

/* Runs in a child: writes "images/s peakMB GFLOP/s" to fd. */
static void run_case(const struct model_case *c, int64_t batch, int threads, int reps, int fd)
{
    bt_config *cfg;
    bt_model *m;
    bt_tensor *x[2], *z[2];
    int64_t xs[4] = {batch, c->ch, c->hw, c->hw}, zs[2];
    double t[16], flops;
    char buf[16];
    int i, v;
    double base_mb = status_mb("VmRSS");
    bt_config_create(&cfg);
    for (i = 0; c->opts[i]; i += 2)
        bt_config_set(cfg, c->opts[i], c->opts[i + 1]);
    snprintf(buf, sizeof buf, "%d", threads);
    bt_config_set(cfg, "threads", buf);
    if (bt_model_create(&m, cfg) != BT_OK) {
        printf("model: %s\n", bt_last_error());
        exit(1);
    }
    zs[0] = batch;
    zs[1] = bt_model_embed_dim(m);
    for (v = 0; v < 2; v++) {
        bt_tensor_create(&x[v], 4, xs);
        bt_tensor_create(&z[v], 2, zs);
        for (i = 0; i < bt_tensor_numel(x[v]); i++)
            bt_tensor_data(x[v])[i] = (float)sin(0.37 * i + v);
    }
    for (i = 0; i <= reps; i++) {
        double t0 = bench_now();
        bt_model_zero_grad(m);
        if (bt_model_forward(m, 2, (const bt_tensor *const *)x, z) != BT_OK ||
            bt_model_backward(m, 2, (const bt_tensor *const *)z) != BT_OK) {
            printf("step: %s\n", bt_last_error());
            exit(1);
        }
        if (i)
            t[i - 1] = bench_now() - t0;
    }
    /* forward + backward ~ 3x the forward multiply-adds, 2 flops each, two views */
    flops = 3.0 * 2.0 * macs_per_image(m, c->hw) * (double)batch * 2.0;
    {
        double med = bench_median(t, reps);
        struct rusage ru;
        double peak_mb = status_mb("VmHWM");
        getrusage(RUSAGE_SELF, &ru);
        if (peak_mb < 0 || base_mb < 0) /* no /proc: the whole process */
            peak_mb = (double)ru.ru_maxrss / 1024.0, base_mb = 0;
        dprintf(fd, "%f %f %f\n", (double)batch / med, peak_mb - base_mb, flops / med * 1e-9);
    }
    for (v = 0; v < 2; v++) {
        bt_tensor_free(x[v]);
        bt_tensor_free(z[v]);
    }
    bt_model_free(m);
    bt_config_free(cfg);
}

static int have_torch(void)
{
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

int main(void)
{
    static const int64_t batches[] = {64, 256};
    int threads = getenv("BT_NUM_THREADS") ? atoi(getenv("BT_NUM_THREADS")) : 2;
    int torch = have_torch(), reps = 5;
    size_t c, b;
    double sgemm;
    if (getenv("BENCH_MODEL_REPS")) /* timed steps per case (1 to 16; default 5) */
        reps = atoi(getenv("BENCH_MODEL_REPS"));
    if (reps < 1 || reps > 16)
        reps = 5;
    sgemm = bench_sgemm_seconds(1024, 1024, 1024, 5);
    bench_header("model training step: two views, forward + backward");
    printf("same-run sgemm 1024^3: %.1f GFLOP/s\n", 2.0 * 1024 * 1024 * 1024 / sgemm * 1e-9);
    printf("%-8s %6s %4s %10s %9s %9s | %12s %9s %7s\n", "model", "batch", "thr", "images/s",
           "peak MB", "GFLOP/s", "torch img/s", "torch MB", "ratio");
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (b = 0; b < 2; b++) {
            pid_t pid;
            int fds[2];
            char line[256];
            double ips = 0, mb = 0, gf = 0, tips = 0, tmb = 0;
            FILE *in;
            if (!selected(cases[c].name, batches[b]))
                continue;
            if (pipe(fds) != 0)
                return 1;
            fflush(stdout);
            pid = fork();
            if (pid == 0) {
                close(fds[0]);
                run_case(&cases[c], batches[b], threads, reps, fds[1]);
                _exit(0);
            }
            close(fds[1]);
            in = fdopen(fds[0], "r");
            if (!in || !fgets(line, sizeof line, in) || sscanf(line, "%lf %lf %lf", &ips, &mb, &gf) != 3)
                printf("%s: case failed\n", cases[c].name);
            if (in)
                fclose(in);
            waitpid(pid, NULL, 0);
            if (torch) {
                char cmd[256];
                FILE *p;
                snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/bench/bench_model.py %s %lld %d %d",
                         cases[c].name, (long long)batches[b], threads, reps);
                p = popen(cmd, "r");
                if (!p || !fgets(line, sizeof line, p) ||
                    sscanf(line, "%*s %*s %*s %lf %lf", &tips, &tmb) != 2)
                    tips = tmb = 0;
                if (p)
                    pclose(p);
            }
            printf("%-8s %6lld %4d %10.1f %9.0f %9.1f | %12.1f %9.0f %7.2f\n", cases[c].name,
                   (long long)batches[b], threads, ips, mb, gf, tips, tmb, tips > 0 ? ips / tips : 0.0);
        }
    printf("ratio = libbarlow images/s / PyTorch images/s (same threads); GFLOP/s counts conv and\n"
           "linear multiply-adds x2, backward as twice the forward; peak MB = high-water RSS\n"
           "minus the RSS before the model was created, both sides\n");
    return 0;
}
