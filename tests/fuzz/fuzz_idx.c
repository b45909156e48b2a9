/* fuzz_idx.c - the barlow command's Fashion-MNIST reader (examples/barlow/data.c,
 * data_load "fmnist") on hostile idx files, gzip or plain.
 * Input: byte 0 picks how each file is written (bits 0-1 the images, bits 2-3 the
 * labels: 0 plain, 1 gzip-compressed here, 2 the bytes as they are under the .gz
 * name, a hostile gzip stream) and the split (bit 4: t10k, else train) and a limit
 * (bit 5: keep 1 image); bytes 1-2 (little endian) the length of the images file;
 * then the images file, then the labels file. */
#include "data.h"

#include "fuzz_util.h"

#include <zlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_dir_make("idx");
    return 0;
}

static void put(const char *split, const char *kind, int how, const uint8_t *p, size_t n)
{
    char name[128], gzname[136];
    snprintf(name, sizeof name, "%s-%s", split, kind);
    snprintf(gzname, sizeof gzname, "%s.gz", name);
    unlink(fuzz_path(name));
    unlink(fuzz_path(gzname));
    if (how == 1) {
        gzFile f = gzopen(fuzz_path(gzname), "wb");
        if (!f || (n && gzwrite(f, p, (unsigned)n) != (int)n) || gzclose(f) != Z_OK)
            abort();
    } else {
        fuzz_write(fuzz_path(how == 2 ? gzname : name), p, n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dataset d;
    char err[DATA_ERR_CAP];
    size_t ni;
    int flags, test, rc;
    const char *split;
    if (size < 3)
        return 0;
    flags = data[0];
    test = (flags >> 4) & 1;
    split = test ? "t10k" : "train";
    ni = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (ni > size)
        ni = size;
    put(split, "images-idx3-ubyte", flags & 3, data, ni);
    put(split, "labels-idx1-ubyte", (flags >> 2) & 3, data + ni, size - ni);
    err[0] = '\0';
    rc = data_load(&d, "fmnist", fuzz_dir, test, 1, (flags >> 5) & 1, err);
    if (rc != 0) {
        FUZZ_CHECK(err[0], "data_load failed without a message");
        FUZZ_CHECK(d.n == 0 && !d.image && !d.block, "a failed load left a dataset");
    } else {
        int64_t i;
        FUZZ_CHECK(d.n >= 1 && d.channels == 1 && d.label, "loaded %lld images", (long long)d.n);
        for (i = 0; i < d.n; i++) {
            uint64_t h = fuzz_fnv(FUZZ_FNV_INIT, d.image[i], (size_t)d.height[i] * (size_t)d.width[i]);
            FUZZ_CHECK(d.label[i] >= 0 && d.label[i] < d.nclasses, "label %d of %d", d.label[i], d.nclasses);
            (void)h;
        }
    }
    data_free(&d);
    return 0;
}
