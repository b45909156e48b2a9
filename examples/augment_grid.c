/* augment_grid.c - look at the augmentations: a PNG grid with one row per image,
 * the original first, then pairs of views (view 1 | view 2) from successive
 * bt_augment_views calls.
 *
 *   augment_grid [out.png] [images-idx3-ubyte.gz | --synthetic]
 *
 * By default it reads the first images of Fashion-MNIST from Debian's
 * dataset-fashion-mnist package (fmnist preset, 28 x 28 gray); with
 * --synthetic, or when the dataset is absent, it draws colourful 160 x 120
 * pictures and uses the paper's imagenet preset at 96 px, where colour jitter,
 * grayscale, blur and solarisation are visible. Needs zlib (-lz) for the .gz. */
#include <barlow.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "png_write.h"

#define ROWS 8  /* images */
#define PAIRS 3 /* calls, each giving view 1 and view 2 */
#define GAP 2   /* pixels between cells */

static const char *default_idx = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* First `n` images of an idx3 file (gzip or plain: gzread reads both). */
static uint8_t *read_idx(const char *path, int n, int *h, int *w)
{
    unsigned char head[16];
    uint8_t *px;
    size_t bytes;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return NULL;
    if (gzread(f, head, 16) != 16 || be32(head) != 0x803 || be32(head + 4) < (uint32_t)n) {
        gzclose(f);
        return NULL;
    }
    *h = (int)be32(head + 8);
    *w = (int)be32(head + 12);
    bytes = (size_t)n * (size_t)*h * (size_t)*w;
    px = malloc(bytes);
    if (!px || gzread(f, px, (unsigned)bytes) != (int)bytes) {
        free(px);
        px = NULL;
    }
    gzclose(f);
    return px;
}

/* Colourful test pictures: a gradient sky, a disc and stripes, different per image. */
static uint8_t *synthetic(int n, int h, int w)
{
    uint8_t *px = malloc((size_t)n * h * w * 3);
    int i, y, x;
    for (i = 0; px && i < n; i++)
        for (y = 0; y < h; y++)
            for (x = 0; x < w; x++) {
                uint8_t *p = px + (((size_t)i * h + y) * w + x) * 3;
                double cx = w * (0.3 + 0.05 * i), cy = h * 0.55, r = h * (0.2 + 0.02 * i);
                int in_disc = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r;
                int stripe = ((x + 2 * y + 7 * i) / 9) % 2;
                p[0] = (uint8_t)(in_disc ? 230 : 40 + 150 * y / h);
                p[1] = (uint8_t)(in_disc ? 60 + 20 * i : stripe && y > h * 3 / 4 ? 200 : 90);
                p[2] = (uint8_t)(in_disc ? 40 : 240 - 120 * y / h);
            }
    return px;
}

/* Undo the normalisation of one [C, S, S] view into cell (row, col) of the grid. */
static void put_view(uint8_t *grid, int gw, int c, int cell, int row, int col, const float *v,
                     int s, const double *mean, const double *std, int zoom)
{
    int y, x, ch;
    for (y = 0; y < s * zoom; y++)
        for (x = 0; x < s * zoom; x++)
            for (ch = 0; ch < c; ch++) {
                double u = (v[((size_t)ch * s + y / zoom) * s + x / zoom] * std[ch] + mean[ch]) * 255;
                size_t gy = (size_t)row * (cell + GAP) + y, gx = (size_t)col * (cell + GAP) + x;
                grid[(gy * gw + gx) * c + ch] = (uint8_t)(u < 0 ? 0 : u > 255 ? 255 : u + 0.5);
            }
}

int main(int argc, char **argv)
{
    const char *out_path = argc > 1 ? argv[1] : "augment_grid.png";
    const char *src = argc > 2 ? argv[2] : default_idx;
    int synth = strcmp(src, "--synthetic") == 0, h = 0, w = 0, c, s, zoom, cell, gw, gh, i, p;
    double mean[3], std[3];
    const uint8_t *imgs[ROWS];
    int32_t hs[ROWS], ws[ROWS];
    uint8_t *px = NULL, *grid;
    bt_config *cfg = NULL;
    bt_augment *a = NULL;
    bt_tensor *views[2] = {NULL, NULL}, *orig = NULL;
    int64_t shape[4];

    if (!synth && !(px = read_idx(src, ROWS, &h, &w))) {
        fprintf(stderr, "augment_grid: cannot read %s; using synthetic pictures\n", src);
        synth = 1;
    }
    if (synth) {
        h = 120, w = 160;
        px = synthetic(ROWS, h, w);
    }
    c = synth ? 3 : 1;
    if (!px || bt_config_create(&cfg) != BT_OK)
        return 1;
    bt_config_set(cfg, "seed", "2021");
    if (synth) {
        bt_config_set(cfg, "aug.preset", "imagenet");
        bt_config_set(cfg, "aug.size", "96");
        mean[0] = 0.485, mean[1] = 0.456, mean[2] = 0.406;
        std[0] = 0.229, std[1] = 0.224, std[2] = 0.225;
    } else {
        bt_config_set(cfg, "aug.preset", "fmnist");
        mean[0] = 0.2860, std[0] = 0.3530;
    }
    if (bt_augment_create(&a, cfg) != BT_OK) {
        fprintf(stderr, "augment_grid: %s\n", bt_last_error());
        return 1;
    }
    s = bt_augment_output_size(a, 0);
    zoom = s < 64 ? 3 : 1;
    cell = s * zoom;
    for (i = 0; i < ROWS; i++) {
        imgs[i] = px + (size_t)i * h * w * c;
        hs[i] = h, ws[i] = w;
    }
    shape[0] = ROWS, shape[1] = c, shape[2] = s, shape[3] = s;
    if (bt_tensor_create(&views[0], 4, shape) != BT_OK ||
        bt_tensor_create(&views[1], 4, shape) != BT_OK || bt_tensor_create(&orig, 4, shape) != BT_OK)
        return 1;
    gw = (1 + 2 * PAIRS) * (cell + GAP) - GAP;
    gh = ROWS * (cell + GAP) - GAP;
    grid = calloc((size_t)gw * gh * c, 1);
    if (!grid)
        return 1;
    /* column 0: the evaluation transform (resize + centre crop) as "the original" */
    if (bt_augment_eval(a, ROWS, imgs, hs, ws, c, orig) != BT_OK) {
        fprintf(stderr, "augment_grid: %s\n", bt_last_error());
        return 1;
    }
    for (i = 0; i < ROWS; i++)
        put_view(grid, gw, c, cell, i, 0, bt_tensor_data(orig) + (size_t)i * c * s * s, s, mean, std,
                 zoom);
    for (p = 0; p < PAIRS; p++) {
        if (bt_augment_views(a, ROWS, imgs, hs, ws, c, 2, views) != BT_OK) {
            fprintf(stderr, "augment_grid: %s\n", bt_last_error());
            return 1;
        }
        for (i = 0; i < ROWS; i++) {
            put_view(grid, gw, c, cell, i, 1 + 2 * p, bt_tensor_data(views[0]) + (size_t)i * c * s * s,
                     s, mean, std, zoom);
            put_view(grid, gw, c, cell, i, 2 + 2 * p, bt_tensor_data(views[1]) + (size_t)i * c * s * s,
                     s, mean, std, zoom);
        }
    }
    if ((c == 1 ? png_write_gray8(out_path, gw, gh, grid) : png_write_rgb8(out_path, gw, gh, grid)) != 0) {
        fprintf(stderr, "augment_grid: cannot write %s\n", out_path);
        return 1;
    }
    printf("wrote %s: %d x %d, %d images (%s); columns: eval crop, then %d x (view 1 | view 2)\n",
           out_path, gw, gh, ROWS, synth ? "synthetic, imagenet preset" : src, PAIRS);
    free(grid);
    free(px);
    bt_tensor_free(views[0]);
    bt_tensor_free(views[1]);
    bt_tensor_free(orig);
    bt_augment_free(a);
    bt_config_free(cfg);
    return 0;
}
