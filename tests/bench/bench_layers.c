/* bench_layers.c - forward + backward of each layer at the shapes of a CIFAR
 * ResNet-18 (batch 64), of a 28x28 one-channel small ResNet (widths 16-32-64,
 * batch 256), and the 3x3 convolutions of the Fashion-MNIST preset (widths
 * 16-32-256, batch 128, 28x28 and 16x16), through the private API the model
 * uses (no copy of x).
 *
 * Convolutions and linear layers: GFLOP/s of forward + both backward GEMMs, and
 * the ratio to a square cblas_sgemm of the same FLOPs (capped at 2048^3)
 * measured in the same run with the same threads. Element-wise layers: GB/s of
 * their minimal memory traffic, and its ratio to a memcpy moving the same bytes
 * with the same threads, measured once after the layer's rounds.
 * When /usr/bin/python3 imports torch, tests/bench/bench_layers.py times the
 * same layers with the same thread count and the ratio is printed.
 *
 * The machine is shared and its speed drifts by up to 2x within seconds, so
 * each case is timed call by call in turn: one forward + backward by
 * libbarlow, then one by PyTorch (the twin runs as a server beside this
 * process), BENCH_REPS times (default 11), each side's timed call right after
 * an untimed one of its own (which wakes its threads); every
 * number printed is the median of those calls, and the two sides of a ratio
 * see the same drift. The drift comes in spells of seconds that slow every call
 * by up to 1.5x, so the medians of the two sides can fall on different sides
 * of a spell; "paired" is the median over rounds of the ratio of the two calls
 * of one round, which share the spell they ran in.
 *
 * Environment: BT_NUM_THREADS (threads), BENCH_REPS (default 11, at most 63),
 * BENCH_FILTER (substring of the case or network names to run), BT_CPU (the
 * library's CPU level), BENCH_CONV_FORM (force a convolution form by name),
 * BENCH_CHUNK (conv2d GEMM columns per chunk, for tuning), BENCH_NO_TORCH (skip the PyTorch twin), BENCH_PAUSE_MS
 * (the pause before each side's pair of calls, default 200). */
#include "bench_util.h"
#include "layers/layer.h"
#include "kernels/sgemm.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REPS 63

struct bcase {
    const char *net;  /* "cifar18" or "small28" */
    const char *name; /* human name */
    char spec[96];    /* "kind:args" shared with the python twin */
    double flops, bytes;  /* work of one forward + backward: FLOPs, or minimal traffic */
    double ms, torch_ms, ref; /* medians; ref: sgemm GFLOP/s or memcpy GB/s for that work */
    double im2col;            /* 3x3 convolutions: GFLOP/s of the sgemm of their im2col shape */
    double best, torch_best;  /* fastest calls: the speed with the least interference */
    double paired;            /* median over rounds of PyTorch's call / ours in that round */
};

static struct bcase cases[64];
static int ncases;

static void add(const char *net, const char *name, const char *spec)
{
    struct bcase *c = &cases[ncases++];
    c->net = net;
    c->name = name;
    snprintf(c->spec, sizeof c->spec, "%s", spec);
    c->torch_ms = -1;
}

static void define_cases(void)
{
    /* CIFAR ResNet-18 (3x3 stem, no max-pool), batch 64 */
    add("cifar18", "conv1 3->64 3x3 @32", "conv:64,3,32,32,64,3,1,1");
    add("cifar18", "layer1 64->64 3x3 @32", "conv:64,64,32,32,64,3,1,1");
    add("cifar18", "layer2 64->128 3x3 s2 @32", "conv:64,64,32,32,128,3,2,1");
    add("cifar18", "layer2 128->128 3x3 @16", "conv:64,128,16,16,128,3,1,1");
    add("cifar18", "layer2 down 1x1 s2 64->128", "conv:64,64,32,32,128,1,2,0");
    add("cifar18", "layer3 128->256 3x3 s2 @16", "conv:64,128,16,16,256,3,2,1");
    add("cifar18", "layer3 256->256 3x3 @8", "conv:64,256,8,8,256,3,1,1");
    add("cifar18", "layer4 256->512 3x3 s2 @8", "conv:64,256,8,8,512,3,2,1");
    add("cifar18", "layer4 512->512 3x3 @4", "conv:64,512,4,4,512,3,1,1");
    add("cifar18", "layer4 down 1x1 s2 256->512", "conv:64,256,8,8,512,1,2,0");
    add("cifar18", "bn 64 @32", "bn:64,64,32,32");
    add("cifar18", "bn 512 @4", "bn:64,512,4,4");
    add("cifar18", "relu 64x64x32x32", "relu:64,64,32,32");
    add("cifar18", "bn+relu fused 64 @32", "bnrelu:64,64,32,32");
    add("cifar18", "maxpool 3x3 s2 64x64x32x32", "maxpool:64,64,32,32,3,2,1");
    add("cifar18", "avgpool 512x4x4", "avgpool:64,512,4,4");
    add("cifar18", "projector linear 512->2048", "linear:64,512,2048");
    add("cifar18", "projector bn1d 2048", "bn:64,2048,1,1");
    /* 28x28 one-channel small ResNet, widths 16-32-64, batch 256 */
    add("small28", "conv1 1->16 3x3 @28", "conv:256,1,28,28,16,3,1,1");
    add("small28", "layer1 16->16 3x3 @28", "conv:256,16,28,28,16,3,1,1");
    add("small28", "layer2 16->32 3x3 s2 @28", "conv:256,16,28,28,32,3,2,1");
    add("small28", "layer2 32->32 3x3 @14", "conv:256,32,14,14,32,3,1,1");
    add("small28", "layer2 down 1x1 s2 16->32", "conv:256,16,28,28,32,1,2,0");
    add("small28", "layer3 32->64 3x3 s2 @14", "conv:256,32,14,14,64,3,2,1");
    add("small28", "layer3 64->64 3x3 @7", "conv:256,64,7,7,64,3,1,1");
    add("small28", "bn 16 @28", "bn:256,16,28,28");
    add("small28", "relu 256x16x28x28", "relu:256,16,28,28");
    add("small28", "bn+relu fused 16 @28", "bnrelu:256,16,28,28");
    /* the Fashion-MNIST preset (examples/barlow.c): widths 16-32-256, batch 128,
     * at 28x28 and at 16x16 */
    add("fmnist", "f28 layer3 32->256 3x3 s2 @14", "conv:128,32,14,14,256,3,2,1");
    add("fmnist", "f28 layer3 256->256 3x3 @7", "conv:128,256,7,7,256,3,1,1");
    add("fmnist", "f16 layer1 16->16 3x3 @16", "conv:128,16,16,16,16,3,1,1");
    add("fmnist", "f16 layer2 32->32 3x3 @8", "conv:128,32,8,8,32,3,1,1");
    add("fmnist", "f16 layer3 32->256 3x3 s2 @8", "conv:128,32,8,8,256,3,2,1");
    add("fmnist", "f16 layer3 256->256 3x3 @4", "conv:128,256,4,4,256,3,1,1");
}

static int parse(const char *spec, char *kind, int64_t *a)
{
    const char *p = strchr(spec, ':');
    int n = 0;
    memcpy(kind, spec, (size_t)(p - spec));
    kind[p - spec] = '\0';
    for (p++; *p && n < 8; n++) {
        char *end;
        a[n] = strtoll(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

static void fill(bt_tensor *t, uint32_t seed)
{
    int64_t i;
    for (i = 0; i < t->numel; i++) {
        seed = seed * 1664525u + 1013904223u;
        t->data[i] = (float)((seed >> 8) * (1.0 / 16777216.0) - 0.5);
    }
}

static double sgemm_rate(double flops)
{
    static double cache_s[16], cache_r[16];
    static int nc;
    int s = (int)(cbrt(flops / 2.0) / 64.0 + 0.5) * 64, i;
    double t;
    if (s < 128)
        s = 128;
    if (s > 2048)
        s = 2048;
    for (i = 0; i < nc; i++)
        if (cache_s[i] == s)
            return cache_r[i];
    t = bench_sgemm_seconds(s, s, s, s >= 1536 ? 3 : 5);
    if (nc < 16) {
        cache_s[nc] = s;
        cache_r[nc++] = 2.0 * s * s * (double)s / t * 1e-9;
    }
    return 2.0 * s * s * (double)s / t * 1e-9;
}

/* A 3x3 convolution's forward as the GEMM of its im2col shape, Co x N*Ho*Wo x
 * 9*Ci, timed with the same threads: GFLOP/s, or 0 for other cases. */
static double im2col_rate(const struct bcase *c)
{
    int64_t a[8];
    char kind[16];
    parse(c->spec, kind, a);
    if (strcmp(kind, "conv") || a[5] != 3)
        return 0;
    {
        const int64_t ho = (a[2] + 2 * a[7] - 3) / a[6] + 1, wo = (a[3] + 2 * a[7] - 3) / a[6] + 1;
        const int m = (int)a[4], n = (int)(a[0] * ho * wo), k = (int)(9 * a[1]);
        return 2.0 * m * (double)n * k / bench_sgemm_seconds(m, n, k, 3) * 1e-9;
    }
}

static int selected(const struct bcase *c, const char *filter);

/* The 3x3 layers of one network (stems of 1-3 channels left out), FLOP-weighted:
 * their time against that of their im2col GEMMs, and PyTorch's against ours. */
static void im2col_summary(const char *net, const char *filter)
{
    double t = 0, gemm = 0, torch = 0, ours_t = 0;
    int i, n = 0, torch_all = 1;
    for (i = 0; i < ncases; i++) {
        const struct bcase *c = &cases[i];
        int64_t a[8];
        char kind[16];
        if (strcmp(c->net, net) || !selected(c, filter) || c->im2col <= 0)
            continue;
        parse(c->spec, kind, a);
        if (a[1] <= 3)
            continue;
        n++;
        t += c->ms;
        gemm += c->flops / (c->im2col * 1e9) * 1e3;
        if (c->torch_ms > 0) {
            torch += c->torch_ms;
            ours_t += c->ms;
        } else {
            torch_all = 0;
        }
    }
    if (n == 0)
        return;
    printf("   %d 3x3 layers, FLOP-weighted: %.0f%% of their im2col sgemm", n, 100.0 * gemm / t);
    if (torch_all && ours_t > 0)
        printf("; PyTorch's time over ours %.2f", torch / ours_t);
    printf("\n");
}

/* GB/s (read + write) of copying `bytes` / 2 bytes with `threads`, median of
 * 5 after a warm-up: the same traffic as an element-wise case, in the same run. */
static double memcpy_same_gbs(double bytes, int threads)
{
    const int64_t n = (int64_t)(bytes / 8.0); /* floats copied */
    float *a = bti_alloc((size_t)n * 4), *b = bti_alloc((size_t)n * 4);
    double t[6];
    int r, reps = 5;
    memset(a, 1, (size_t)n * 4);
    memset(b, 0, (size_t)n * 4);
    for (r = 0; r <= reps; r++) {
        double t0 = bench_now();
        int64_t i;
#pragma omp parallel for num_threads(threads) schedule(static) if (n > (1 << 18))
        for (i = 0; i < n; i += 1 << 16)
            memcpy(b + i, a + i, (size_t)(n - i < (1 << 16) ? n - i : (1 << 16)) * 4);
        t[r] = bench_now() - t0;
    }
    bti_free(a);
    bti_free(b);
    return bytes / bench_median(t + 1, reps) * 1e-9;
}

/* A case's layer and tensors, made once for all its calls. */
struct run {
    char kind[16];
    bt_layer *l;
    bt_tensor *x, *y, *dy, *dx;
};

static void run_open(struct bcase *c, int threads, struct run *u)
{
    int64_t a[8], xs[4], ys[4];
    int32_t xnd = 4, ynd;
    memset(u, 0, sizeof *u);
    parse(c->spec, u->kind, a);
    if (!strcmp(u->kind, "conv")) {
        bti_layer_conv2d_new(&u->l, (int)a[1], (int)a[4], (int)a[5], (int)a[6], (int)a[7], 0,
                             "bench");
    } else if (!strcmp(u->kind, "bn") || !strcmp(u->kind, "bnrelu")) {
        bti_layer_batchnorm_new(&u->l, (int)a[1], 1e-5, 0.1, 1, "bench");
        if (a[2] * a[3] == 1)
            xnd = 2;
    } else if (!strcmp(u->kind, "relu")) {
        bti_layer_relu_new(&u->l, "bench");
    } else if (!strcmp(u->kind, "maxpool")) {
        bti_layer_maxpool2d_new(&u->l, (int)a[4], (int)a[5], (int)a[6], "bench");
    } else if (!strcmp(u->kind, "avgpool")) {
        bti_layer_avgpool_new(&u->l, "bench");
    } else {
        bti_layer_linear_new(&u->l, (int)a[1], (int)a[2], 1, "bench");
        xnd = 2;
    }
    memcpy(xs, a, sizeof xs);
    bti_layer_set_threads(u->l, threads);
    if (getenv("BENCH_CHUNK")) /* conv2d GEMM columns per chunk, for tuning */
        bti_layer_conv2d_set_chunk(u->l, atoll(getenv("BENCH_CHUNK")));
    if (getenv("BENCH_CONV_FORM")) /* a form by name (layers/conv2d.h): "gemm", "images", ... */
        bti_layer_conv2d_set_form(u->l, getenv("BENCH_CONV_FORM"));
    bti_layer_output_shape(u->l, xnd, xs, &ynd, ys);
    bt_tensor_create(&u->x, xnd, xs);
    bt_tensor_create(&u->dx, xnd, xs);
    bt_tensor_create(&u->y, ynd, ys);
    bt_tensor_create(&u->dy, ynd, ys);
    fill(u->x, 1);
    fill(u->dy, 2);
    c->flops = c->bytes = 0;
    if (!strcmp(u->kind, "conv"))
        c->flops = 3.0 * 2.0 * (double)ys[1] * (double)(a[1] * a[5] * a[5]) * (double)ys[0] *
                (double)(ys[2] * ys[3]);
    else if (!strcmp(u->kind, "linear"))
        c->flops = 3.0 * 2.0 * (double)a[0] * (double)a[1] * (double)a[2];
    else /* forward reads x, writes y; backward reads x (or y) and dy, writes dx */
        c->bytes = 4.0 * (2.0 * (double)u->x->numel + (double)u->y->numel) +
                   4.0 * (double)(u->x->numel + u->y->numel) +
                   (!strcmp(u->kind, "bnrelu") ? 4.0 * (double)u->y->numel /* the ReLU mask */
                                               : 0.0);
}

/* Seconds of one forward + backward. */
static double run_call(struct bcase *c, struct run *u)
{
    const double t0 = bench_now();
    bt_status st;
    if (!strcmp(u->kind, "bnrelu")) /* the model's fused BatchNorm + ReLU */
        st = bti_layer_forward_fused(u->l, u->x, u->y, 1, 1, NULL, 1) != BT_OK
                 ? BT_E_STATE
                 : bti_layer_backward_masked(u->l, u->dy, u->dx, u->y);
    else
        st = bti_layer_forward(u->l, u->x, u->y, 1, 1) != BT_OK
                 ? BT_E_STATE
                 : bti_layer_backward(u->l, u->dy, u->dx);
    if (st != BT_OK) {
        printf("%s: %s\n", c->name, bt_last_error());
        exit(1);
    }
    return bench_now() - t0;
}

static void run_close(struct run *u)
{
    bt_tensor_free(u->x);
    bt_tensor_free(u->y);
    bt_tensor_free(u->dx);
    bt_tensor_free(u->dy);
    bti_layer_destroy(u->l);
}

/* The PyTorch twin runs beside this process as a server (bench_layers.py
 * --serve), so each case is timed by both in turn, round after round. */
static FILE *twin_in, *twin_out;

static int twin_start(int threads)
{
    int to[2], from[2];
    pid_t pid;
    char line[128], arg[16];
    if (getenv("BENCH_NO_TORCH"))
        return 0;
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0 ||
        access("tests/bench/bench_layers.py", R_OK) != 0) {
        printf("PyTorch: not available (no /usr/bin/python3 with torch); skipped\n");
        return 0;
    }
    if (pipe(to) != 0 || pipe(from) != 0)
        return 0;
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[1]);
        close(from[0]);
        snprintf(arg, sizeof arg, "%d", threads);
        execl("/usr/bin/python3", "python3", "tests/bench/bench_layers.py", "--serve", arg,
              (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    twin_in = fdopen(to[1], "w");
    twin_out = fdopen(from[0], "r");
    if (!twin_in || !twin_out || !fgets(line, sizeof line, twin_out) ||
        strncmp(line, "ready ", 6) != 0)
        return 0;
    line[strcspn(line, "\n")] = '\0';
    printf("PyTorch %s, torch.set_num_threads(%d), timed case by case beside libbarlow\n",
           line + 6, threads);
    return 1;
}

/* PyTorch's median of reps calls of one case, in ms (-1 if the twin failed);
 * the twin keeps the case's module and tensors from one request to the next. */
static double twin_time(const char *spec, int reps)
{
    char line[256];
    double ms;
    fprintf(twin_in, "%s %d\n", spec, reps);
    fflush(twin_in);
    if (!fgets(line, sizeof line, twin_out) || sscanf(line, "%*s %lf", &ms) != 1)
        return -1;
    return ms;
}

static void twin_stop(void)
{
    if (twin_in)
        fclose(twin_in); /* the server ends at end of input */
    if (twin_out)
        fclose(twin_out);
    wait(NULL);
}

static int selected(const struct bcase *c, const char *filter)
{
    return !filter || strstr(c->name, filter) || strstr(c->net, filter);
}

int main(void)
{
    int threads = bti_threads_resolve(NULL), reps = 11, i, r, torch = 0;
    /* OpenBLAS's idle workers (PyTorch's linear layers run on it) spin for
     * 2^28 cycles, about 0.1 s, after a call: with 50 ms between the sides, the
     * 512->2048 linear layer at 2 threads took 16 ms after PyTorch's call
     * instead of 3.9 ms with 300 ms. */
    const long pause_ms = getenv("BENCH_PAUSE_MS") ? atol(getenv("BENCH_PAUSE_MS")) : 200;
    const struct timespec pause = {pause_ms / 1000, pause_ms % 1000 * 1000000L};
    double ours[MAX_REPS], theirs[MAX_REPS], ratio[MAX_REPS];
    const char *filter = getenv("BENCH_FILTER"), *net = "";
    double mem, rate;
    if (getenv("BENCH_REPS"))
        reps = atoi(getenv("BENCH_REPS"));
    if (reps < 1 || reps > MAX_REPS)
        reps = reps < 1 ? 1 : MAX_REPS;
    bench_header("layers: forward + backward (input and parameter gradients)");
    printf("threads %d (BLAS threads for GEMMs, OpenMP for the rest); medians of %d calls,\n"
           "libbarlow's and PyTorch's in turn, each right after an untimed one; the machine is\n"
           "shared, so expect noise of 10-30%%\n", threads, reps);
    define_cases();
    torch = twin_start(threads);
    for (i = 0; i < ncases; i++) {
        struct bcase *c = &cases[i];
        if (!selected(c, filter))
            continue;
        struct run u;
        run_open(c, threads, &u);
        run_call(c, &u); /* the first call sizes the buffers */
        if (torch && twin_time(c->spec, 0) < 0)
            torch = 0;
        for (r = 0; r < reps; r++) {
            /* each side starts after the other's idle threads stopped spinning,
             * and times its second call: the first wakes its threads (docs/perf.md:
             * on this project's VMs an idle worker starts up to 4 ms late) */
            nanosleep(&pause, NULL);
            run_call(c, &u);
            ours[r] = 1e3 * run_call(c, &u);
            nanosleep(&pause, NULL);
            if (torch && (theirs[r] = twin_time(c->spec, 1)) < 0) {
                printf("PyTorch: the twin stopped answering; its column is left out\n");
                torch = 0;
            }
        }
        run_close(&u);
        for (r = 0; r < reps && torch; r++)
            ratio[r] = theirs[r] / ours[r];
        c->paired = torch ? bench_median(ratio, reps) : -1;
        c->ms = bench_median(ours, reps); /* sorts: [0] is the fastest */
        c->best = ours[0];
        c->torch_ms = torch ? bench_median(theirs, reps) : -1;
        c->torch_best = torch ? theirs[0] : -1;
    }
    twin_stop();
    /* The references after all cases: OpenBLAS's idle threads spin for about
     * 0.1 s after a call and would slow the next case's first calls. The
     * layers left the BLAS at one thread; the reference gets them all. */
    bti_blas_begin(threads);
    for (i = 0; i < ncases; i++)
        if (selected(&cases[i], filter)) {
            cases[i].ref = cases[i].flops > 0 ? sgemm_rate(cases[i].flops)
                                              : memcpy_same_gbs(cases[i].bytes, threads);
            cases[i].im2col = im2col_rate(&cases[i]);
        }
    bti_blas_end(threads);
    mem = memcpy_same_gbs(8.0 * (16 << 20), threads); /* 64 MiB each way */
    printf("memcpy: %.1f GB/s (read + write) with %d threads\n\n", mem, threads);
    printf("%-30s %10s %9s %8s %8s %10s %8s %9s %9s %6s %6s\n", "layer", "ms", "GFLOP/s",
           "/sgemm", "/im2col", "GB/s", "/memcpy", "torch ms", "torch/us", "best", "paired");
    for (i = 0; i < ncases; i++) {
        struct bcase *c = &cases[i];
        if (!selected(c, filter))
            continue;
        if (strcmp(net, c->net)) {
            if (*net)
                im2col_summary(net, filter);
            net = c->net;
            printf("-- %s\n", !strcmp(net, "cifar18")  ? "CIFAR ResNet-18, batch 64"
                               : !strcmp(net, "small28") ? "28x28x1 small ResNet 16-32-64, batch 256"
                                                         : "Fashion-MNIST preset 16-32-256, batch 128, "
                                                           "28x28 (f28) and 16x16 (f16)");
        }
        rate = (c->flops > 0 ? c->flops : c->bytes) / (c->ms * 1e-3) * 1e-9;
        printf("%-30s %10.3f ", c->name, c->ms);
        if (c->flops > 0 && c->im2col > 0)
            printf("%9.1f %7.0f%% %7.0f%% %10s %8s ", rate, 100.0 * rate / c->ref,
                   100.0 * rate / c->im2col, "", "");
        else if (c->flops > 0)
            printf("%9.1f %7.0f%% %8s %10s %8s ", rate, 100.0 * rate / c->ref, "", "", "");
        else
            printf("%9s %8s %8s %10.1f %7.0f%% ", "", "", "", rate, 100.0 * rate / c->ref);
        if (c->torch_ms > 0)
            printf("%9.3f %9.2f %6.2f %6.2f\n", c->torch_ms, c->torch_ms / c->ms,
                   c->torch_best / c->best, c->paired);
        else
            printf("%9s %9s %6s %6s\n", "-", "-", "-", "-");
    }
    if (*net)
        im2col_summary(net, filter);
    printf("(GFLOP/s: a direct convolution's multiply-adds x2 per second, whatever the form; the\n"
           " Winograd form does 16 multiplies where the direct one does 36, so it can pass the FMA "
           "peak;\n /sgemm: rate relative to a square sgemm of the same FLOPs, capped at 2048^3, in "
           "this run;\n /im2col: the same against the sgemm of a 3x3 layer's im2col shape (Co x "
           "N*Ho*Wo x 9*Ci),\n same threads, in this run (the summary lines weigh each layer by its "
           "FLOPs);\n /memcpy: GB/s of the layer's minimal traffic relative to a memcpy of the same "
           "bytes,\n same threads, in this run; torch/us: PyTorch's median over libbarlow's, > 1 "
           "means\n libbarlow is faster; best: the same for the fastest call of each; paired: the median\n"
           " over rounds of the ratio of the two calls made one after the other in that round)\n");
    return 0;
}
