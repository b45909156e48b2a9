/* data.h - the datasets of the `barlow` command.
 *
 * A dataset is a list of uint8 images (HWC, packed rows, one channel count for
 * all) with optional int32 labels. Three sources:
 *   fmnist   Fashion-MNIST / MNIST idx files, gzip or plain (read with zlib):
 *            DIR/train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
 *            t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]
 *   cifar10  CIFAR-10 binary batches: DIR/data_batch_{1..5}.bin and
 *            DIR/test_batch.bin (DIR may also hold cifar-10-batches-bin/), or a
 *            single batch FILE (then every 10th image is held out as the test split)
 *   folder   a folder of PNG/JPEG/BMP/... images decoded by stb_image: either
 *            class sub-folders DIR/<class>/<image> (labels = sorted class names,
 *            every 10th image of each class held out as the test split) or
 *            images directly in DIR (no labels, no test split)
 *
 * Every failure is one line naming the file, written into the caller's
 * buffer of DATA_ERR_CAP bytes; the loaders never exit. */
#ifndef BARLOW_DATA_H
#define BARLOW_DATA_H

#include <stdint.h>

#define DATA_ERR_CAP 512

struct dataset {
    int64_t n;
    int32_t channels;
    const uint8_t **image; /* n pointers into `block` or into per-image buffers */
    int32_t *height, *width;
    int32_t *label;        /* NULL when unlabelled */
    int32_t nclasses;      /* 0 when unlabelled */
    uint8_t *block;        /* one allocation holding every image (fmnist, cifar10) */
    uint8_t **owned;       /* per-image allocations (folder), n entries */
};

/* Load split "train" (test 0) or "test" (test 1) of dataset `kind` at `path`.
 * channels is the model's input channel count (fmnist is 1, cifar10 is 3, a
 * folder is decoded to it). limit > 0 keeps the first limit images. A missing
 * test split leaves d->n = 0 and returns 0. Returns -1 with the message in err. */
int data_load(struct dataset *d, const char *kind, const char *path, int test, int32_t channels,
              int64_t limit, char *err);

/* Free what data_load allocated and zero *d; a zeroed dataset is fine. */
void data_free(struct dataset *d);

/* Which loader reads `path` when the user named none: idx files -> "fmnist",
 * CIFAR batches -> "cifar10", anything else -> "folder". */
const char *data_guess_kind(const char *path);

#endif
