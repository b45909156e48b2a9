/* conv_winograd_x86.c - what the Winograd transforms of both widths share:
 * the tiles of an image, and the ops table of each level. */
#include "common/cpu.h"
#include "kernels/conv_winograd.h"

int64_t bti_wino_tiles(int64_t h, int64_t w) { return (h + 1) / 2 * ((w + 1) / 2); }

void bti_wino_window(int64_t t, int64_t h, int64_t w, int64_t ld, int n, int64_t *off)
{
    const int64_t tw = (w + 1) / 2, tpi = bti_wino_tiles(h, w), b = t / tpi;
    const int64_t y0 = (t % tpi) / tw * 2 - (n == 4), x0 = t % tw * 2 - (n == 4);
    int i, j;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            const int64_t y = y0 + i, x = x0 + j;
            off[i * n + j] = y >= 0 && y < h && x >= 0 && x < w ? ((b * h + y) * w + x) * ld : -1;
        }
}

const struct bti_wino_ops *bti_wino_ops_of(int level)
{
    return level == BTI_CPU_AVX512 ? &bti_wino_avx512 : &bti_wino_avx2;
}
