/* fuzz_folder.c - the barlow command's image-folder reader (examples/barlow/data.c,
 * data_load "folder") on one hostile image file, decoded by stb_image.
 * Input: byte 0 picks the channels (bit 0: 3, else 1), the layout (bit 1: a class
 * sub-folder DIR/a/, else images directly in DIR), the split (bit 2: test) and
 * the file name's extension (bits 3-6, of the nine data.c lists); byte 1 how many
 * copies of the file (bit 0: 10, so that the test split, every tenth image of a
 * class, has one, when the image is at most a megapixel; else 1); the rest is the
 * image file. */
#include "data.h"

#include "fuzz_util.h"

#include <stb/stb_image.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char img_dir[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_dir_make("folder");
    snprintf(img_dir, sizeof img_dir, "%s", fuzz_path("images"));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif",
                                      ".tga", ".ppm", ".pgm", ".psd"};
    struct dataset d;
    char err[DATA_ERR_CAP], dir[600], path[700];
    int flags, copies, channels, test, rc, k;
    if (size < 2)
        return 0;
    flags = data[0];
    copies = (data[1] & 1) ? 10 : 1;
    data += 2;
    size -= 2;
    {
        /* ten copies of a big image are the harness's doing, not the reader's: the
         * loader keeps them all, and -rss_limit_mb would call that a leak */
        int iw, ih, ic;
        if (size >= 1 && (data[0] == 0xff || data[0] == 'P'))
            copies = 1; /* JPEG, PNM: stbi_info would meet the stb bugs data.c guards against */
        else if (size < 0x7fffffff && stbi_info_from_memory(data, (int)size, &iw, &ih, &ic)) {
            int64_t px = (int64_t)iw * ih;
            if (px > ((int64_t)1 << 20))
                copies = 1;
            /* 4 to 64 megapixels load, slowly (20 s under the sanitizers): time, not
             * coverage; over 64 the loader refuses them, which is worth reaching */
            if (px > ((int64_t)1 << 22) && px <= ((int64_t)1 << 26))
                return 0;
        }
    }
    channels = (flags & 1) ? 3 : 1;
    test = (flags >> 2) & 1;
    fuzz_rm_tree(img_dir);
    if (mkdir(img_dir, 0700) != 0)
        abort();
    snprintf(dir, sizeof dir, "%s%s", img_dir, (flags & 2) ? "/a" : "");
    if ((flags & 2) && mkdir(dir, 0700) != 0)
        abort();
    for (k = 0; k < copies; k++) {
        snprintf(path, sizeof path, "%s/img%02d%s", dir, k, ext[((flags >> 3) & 15) % 9]);
        fuzz_write(path, data, size);
    }
    err[0] = '\0';
    rc = data_load(&d, "folder", img_dir, test, channels, 0, err);
    if (rc != 0) {
        FUZZ_CHECK(err[0], "data_load failed without a message");
        FUZZ_CHECK(d.n == 0 && !d.image && !d.owned, "a failed load left a dataset");
    } else {
        int64_t i;
        FUZZ_CHECK(d.n == 0 || d.channels == channels, "channels %d", d.channels);
        for (i = 0; i < d.n; i++) {
            FUZZ_CHECK(d.height[i] >= 1 && d.width[i] >= 1, "image %lld is %dx%d", (long long)i,
                       d.height[i], d.width[i]);
            /* the first and last byte are there (ASan knows the block's size) */
            FUZZ_CHECK(d.image[i][0] + d.image[i][(size_t)d.height[i] * (size_t)d.width[i] * (size_t)channels - 1] >= 0,
                       "unreachable");
        }
    }
    data_free(&d);
    return 0;
}
