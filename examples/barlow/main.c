/* main.c - the `barlow` command: Barlow Twins pretraining, evaluation and
 * feature export with libbarlow, on Fashion-MNIST (default), CIFAR-10 or a
 * folder of images.
 *
 *   barlow pretrain [--data DIR|FILE] [--dataset fmnist|cifar10|folder] [--out DIR]
 *                   [--epochs N | --minutes M] [--batch N] [--threads N] [--seed N]
 *                   [--set name=value ...] [--config FILE] [--limit N] [--resume]
 *   barlow eval     --checkpoint FILE [--data ...] [--dataset ...]
 *   barlow embed    --checkpoint FILE --out FEATURES.npy [--split train|test]
 *   barlow finetune --checkpoint FILE | --from-scratch, --train-percent 1|10|100 [--out DIR]
 *
 * It is also the example of owning a training loop with libbarlow: the data,
 * the epoch order, logging, checkpoint policy and evaluation are all here,
 * on the public API only (include/barlow.h). `barlow help` lists every flag.
 * The files of this folder, one job each: main.c (this: start-up and the
 * command), args.c (flags), config.c (library options), run_state.c (run.txt),
 * pretrain.c, eval.c, embed.c, finetune.c (the four commands), trainer.c (one training
 * step), progress.c, pictures.c (PNG), data.c (datasets), probe.c (kNN and
 * linear probe), fast_blas.c (OpenBLAS kernels), paths.c and util.c; cli.h
 * declares what they share.
 *
 * Exit status: 0 done, 2 bad input (usage, option, value, dataset,
 * checkpoint: a one-line message names it, nothing is overwritten),
 * 1 a failure while running (e.g. training diverged), 130 interrupted
 * (Ctrl-C: the checkpoint was saved; `--resume` continues exactly). */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "fast_blas.h"

/* Flush subnormal floats to zero in this thread and in every thread it starts
 * later (the OpenMP workers inherit the setting), as torch.set_flush_denormal(True)
 * does. Training produces some subnormals, and each one costs the CPU a
 * microcode assist: measured on the Fashion-MNIST preset, 0.37 s per step
 * without, 0.30 s with, and the same losses to the printed digits. A program
 * that owns its process may choose this; the library leaves the host's
 * floating-point environment alone. */
static void flush_subnormals(void)
{
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) and DAZ (bit 6) */
#endif
}

/* Field `key` of bt_build_info()'s "; "-separated list ("key=value") into out;
 * 0 when the field is absent. */
static int build_info_field(const char *info, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    const char *p = info;
    for (;;) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            snprintf(out, cap, "%.*s", (int)(n - klen - 1), p + klen + 1);
            return 1;
        }
        if (!end)
            return 0;
        p = end + 1;
        while (*p == ' ')
            p++;
    }
}

/* One line naming the CPU level the library's kernels use, with the library's
 * version and OpenBLAS's kernel core, so that the output of every run says what
 * it ran on. Called after fast_blas_reexec, so a re-executed program prints it
 * once, with the core it switched to. */
static void print_cpu(void)
{
    const char *info = bt_build_info();
    char cpu[64], core[64];
    size_t vlen = strcspn(info, ";");
    if (!build_info_field(info, "cpu", cpu, sizeof cpu))
        snprintf(cpu, sizeof cpu, "unknown");
    if (build_info_field(info, "blas_core", core, sizeof core))
        printf("%s: cpu %s (%.*s; blas_core=%s)\n", g_cmd, cpu, (int)vlen, info, core);
    else
        printf("%s: cpu %s (%.*s)\n", g_cmd, cpu, (int)vlen, info);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct args a;
    int rc;
    parse_args(argc, argv, &a);
    fast_blas_reexec(argv); /* after parsing: usage errors need no second start */
    dist_init(&argc, &argv); /* after the re-exec: MPI starts once, in the final program */
    flush_subnormals();
    if (bt_version_number() != BT_VERSION_NUMBER)
        fprintf(stderr, "%s: warning: built against libbarlow %d, running %d\n", g_cmd, BT_VERSION_NUMBER,
                bt_version_number());
    print_cpu();
    if (strcmp(a.cmd, "pretrain") && dist_size() > 1)
        die("only `barlow pretrain` runs on several ranks (mpirun -np %d); run %s as one process",
            dist_size(), a.cmd);
    rc = !strcmp(a.cmd, "pretrain")   ? cmd_pretrain(&a)
         : !strcmp(a.cmd, "eval")     ? cmd_eval(&a)
         : !strcmp(a.cmd, "finetune") ? cmd_finetune(&a)
                                      : cmd_embed(&a);
    dist_finalize();
    return rc;
}
