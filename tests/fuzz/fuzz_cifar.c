/* fuzz_cifar.c - the barlow command's CIFAR-10 reader (examples/barlow/data.c,
 * data_load "cifar10") on hostile batch files.
 * Input: byte 0 picks the split (bit 0: test), a limit (bit 1: keep 2 images) and
 * the layout (bit 2: a folder holding data_batch_1..5.bin and test_batch.bin, each
 * the rest of the input; bit 3 puts them in DIR/cifar-10-batches-bin/; else one
 * batch FILE); the rest is the batch file. */
#include "data.h"

#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char sub[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_dir_make("cifar");
    snprintf(sub, sizeof sub, "%s", fuzz_path("cifar-10-batches-bin"));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                        "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    struct dataset d;
    char err[DATA_ERR_CAP], path[1024];
    int flags, test, rc, k;
    const char *where;
    if (size < 1)
        return 0;
    flags = data[0];
    test = flags & 1;
    data++;
    size--;
    fuzz_rm_tree(sub);
    for (k = 0; k < 6; k++)
        unlink(fuzz_path(names[k]));
    unlink(fuzz_path("batch.bin"));
    if (flags & 4) {
        const char *dir = fuzz_dir;
        if (flags & 8) {
            if (mkdir(sub, 0700) != 0)
                abort();
            dir = sub;
        }
        for (k = 0; k < 6; k++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[k]);
            fuzz_write(path, data, size);
        }
        where = fuzz_dir;
    } else {
        where = fuzz_path("batch.bin");
        fuzz_write(where, data, size);
    }
    err[0] = '\0';
    rc = data_load(&d, "cifar10", where, test, 3, (flags & 2) ? 2 : 0, err);
    if (rc != 0) {
        FUZZ_CHECK(err[0], "data_load failed without a message");
        FUZZ_CHECK(d.n == 0 && !d.image && !d.block, "a failed load left a dataset");
    } else {
        int64_t i;
        FUZZ_CHECK(d.channels == 3 && d.label && d.nclasses == 10, "loaded %lld images", (long long)d.n);
        for (i = 0; i < d.n; i++) {
            FUZZ_CHECK(d.height[i] == 32 && d.width[i] == 32, "image %lld is %dx%d", (long long)i,
                       d.height[i], d.width[i]);
            FUZZ_CHECK(d.label[i] >= 0 && d.label[i] < 10, "label %d", d.label[i]);
            (void)fuzz_fnv(FUZZ_FNV_INIT, d.image[i], 3072);
        }
    }
    data_free(&d);
    return 0;
}
