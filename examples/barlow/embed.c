/* embed.c - `barlow embed`: a checkpoint's features of a dataset split, written
 * as .npy (float32 rows, and optionally the int32 labels). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "probe.h"

/* NumPy format 1.0: magic, version, little-endian header length, a dict padded
 * with spaces and a newline to a multiple of 64 bytes, then the raw data. */
static void npy_write(const char *path, const char *descr, int64_t rows, int64_t cols, const void *data,
                      size_t elem)
{
    char hdr[256], tmp[PATH_CAP + 32];
    int len;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    FILE *f;
    if (cols > 0)
        len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       descr, (long long)rows, (long long)cols);
    else
        len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }",
                       descr, (long long)rows);
    while ((10 + len + 1) % 64 != 0)
        hdr[len++] = ' ';
    hdr[len++] = '\n';
    pre[8] = (unsigned char)(len & 0xFF);
    pre[9] = (unsigned char)(len >> 8);
    f = atomic_open(path, tmp, sizeof tmp);
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)len, f);
    fwrite(data, elem, (size_t)(rows * (cols > 0 ? cols : 1)), f);
    atomic_close(f, tmp, path);
}

int cmd_embed(const struct args *a)
{
    char kind[32], data[PATH_CAP], err[PROBE_ERR_CAP];
    int64_t limit, eval_size;
    bt_config *cfg;
    bt_model *m = load_for_eval(a, &cfg, kind, sizeof kind, data, sizeof data, &limit, &eval_size);
    bt_augment *aug = make_eval_augment(cfg, eval_size);
    struct dataset d;
    struct feats f;
    int test = a->split && !strcmp(a->split, "test");
    load_split(&d, kind, data, test, (int32_t)cfg_int(cfg, "model.in_channels"), limit);
    if (d.n == 0)
        die("%s: no %s split", data, test ? "test" : "train");
    if (a->labels_out && !d.label)
        die("--labels: %s has no labels", data);
    if (probe_encode(m, aug, &d, d.n, bt_augment_output_size(aug, 0), &f, err) != 0)
        fail("%s", err);
    npy_write(a->out, "<f4", f.n, f.dim, f.x, sizeof(float));
    if (a->labels_out)
        npy_write(a->labels_out, "<i4", d.n, 0, d.label, sizeof(int32_t));
    printf("wrote %s: %lld x %lld float32 features of the %s split of %s%s%s\n", a->out, (long long)f.n,
           (long long)f.dim, test ? "test" : "train", data, a->labels_out ? "; labels in " : "",
           a->labels_out ? a->labels_out : "");
    feats_free(&f);
    bt_augment_free(aug);
    data_free(&d);
    bt_model_free(m);
    bt_config_free(cfg);
    return 0;
}
