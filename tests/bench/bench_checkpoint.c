/* bench_checkpoint.c - saving and loading the largest checkpoint of the design
 * card: ResNet-50 with an 8192-8192-8192 projector and its LARS momentum
 * (about 1.4 GB). Reports the seconds of each and the peak resident memory a
 * load adds over the model's own (the streaming reader's promise: at most
 * 64 MiB), read from /proc/self/status around the load. */
#include "bench_util.h"

#include <sys/stat.h>
#include <unistd.h>

#define REPS 3

/* A field of /proc/self/status in KiB, or -1. */
static long status_kib(const char *key)
{
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0)
            v = atol(line + n);
    if (f)
        fclose(f);
    return v;
}

/* Resets VmHWM to the current RSS (Linux: 5 in clear_refs); 0 on success. */
static int reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    int ok = f && fputs("5", f) >= 0;
    if (f)
        ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

int main(void)
{
    char path[] = "/tmp/bench_checkpoint_XXXXXX";
    double save[REPS], load[REPS];
    long growth = -1, rss = 0;
    struct stat st;
    bt_config *c;
    bt_model *m;
    bt_optim *o;
    int fd = mkstemp(path), r;
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    close(fd);
    if (bt_config_create(&c) != BT_OK || bt_config_set(c, "model.arch", "resnet50") != BT_OK ||
        bt_config_set(c, "model.projector", "8192-8192-8192") != BT_OK ||
        bt_model_create(&m, c) != BT_OK || bt_optim_create(&o, c) != BT_OK ||
        bt_optim_add_model(o, m) != BT_OK) {
        fprintf(stderr, "bench_checkpoint: %s\n", bt_last_error());
        return 1;
    }
    for (r = 0; r < REPS; r++) {
        double t0 = bench_now();
        if (bt_checkpoint_save(path, m, o, NULL) != BT_OK)
            break;
        save[r] = bench_now() - t0;
        t0 = bench_now();
        if (bt_checkpoint_load(path, m, o, NULL) != BT_OK) /* also touches every page */
            break;
        load[r] = bench_now() - t0;
    }
    if (r < REPS) {
        fprintf(stderr, "bench_checkpoint: %s\n", bt_last_error());
        unlink(path);
        return 1;
    }
    if (stat(path, &st) != 0)
        st.st_size = 0;
    rss = status_kib("VmRSS:");
    if (reset_peak() == 0) {
        if (bt_checkpoint_load(path, m, o, NULL) != BT_OK) {
            fprintf(stderr, "bench_checkpoint: %s\n", bt_last_error());
            unlink(path);
            return 1;
        }
        growth = status_kib("VmHWM:") - rss;
    }
    printf("checkpoint: ResNet-50 + 8192-8192-8192 projector + LARS momentum, %s\n",
           bench_cpu_model());
    printf("  file %.0f MB; save %.2f s, load %.2f s (median of %d)\n",
           (double)st.st_size / 1e6, bench_median(save, REPS),
           bench_median(load, REPS), REPS);
    if (growth >= 0)
        printf("  load: peak RSS %ld MB over the model's %ld MB (limit 64 MiB)\n", growth / 1024,
               rss / 1024);
    else
        printf("  load: peak RSS not measured (no /proc/self/clear_refs)\n");
    unlink(path);
    bt_optim_free(o);
    bt_model_free(m);
    bt_config_free(c);
    return 0;
}
