/* conv_winograd.h - Winograd F(2x2, 3x3) for 3x3 convolutions with stride 1 and
 * padding 1 (private): 16 multiplies per 2x2 outputs and channel pair instead
 * of 36, the multiplies done as 16 GEMMs by the caller; these are the
 * transforms around them, vectorised over channels, one ops table per x86
 * level (conv_winograd_body.h, written once for 16 and 8 lanes).
 *
 * Tiles: the 2x2 outputs of an h x w image, th = (h + 1)/2 rows of tw = (w +
 * 1)/2; tile t = (b*th + ty)*tw + tx of a group of images reads input rows
 * 2ty - 1 .. 2ty + 2 and columns 2tx - 1 .. 2tx + 2 (outside the image: 0).
 * Transformed data: 16 matrices, element e = k*4 + l of the 4x4 transform,
 * matrix e at + e*es, row t (a tile) at + t*ld, a channel per column.
 * Pixel-major rows (conv_direct.h): pixel (b, y, x) at row (b*h + y)*w + x.
 * Weights: u[e][o][c], 16 matrices [co][c] (or [c][co]).
 *
 * With V = B^T d B (input tiles d), U = G g G^T (kernels g) and M = the sum
 * over input channels of U.V (elementwise), the outputs are A^T M A; the
 * gradients are their adjoints: dM = A dY A^T, dU = the sum over tiles of
 * dM.V (a GEMM), dd = B dV B^T with dV = the sum over outputs of U.dM. */
#ifndef BARLOW_CONV_WINOGRAD_H
#define BARLOW_CONV_WINOGRAD_H

#include "common/internal.h"

/* Tiles per h x w image. */
BTI_HIDDEN int64_t bti_wino_tiles(int64_t h, int64_t w);

/* Row offsets (times ld) of tile t's n x n pixels in pixel-major rows, -1
 * outside the image: n 4, its input window from (2ty - 1, 2tx - 1); n 2, its
 * outputs from (2ty, 2tx). */
BTI_HIDDEN void bti_wino_window(int64_t t, int64_t h, int64_t w, int64_t ld, int n, int64_t *off);

struct bti_wino_ops {
    /* u[e][o][c] = (G g[o][c] G^T)[e] from w [co][c][3][3], for o in [r0, r1);
     * by_input: u[e][c][o] instead, for c in [r0, r1). */
    void (*weights)(const float *w, int64_t co, int64_t c, int by_input, int64_t r0, int64_t r1,
                    float *u);
    /* dw[o][c] += G^T du G for o in [o0, o1), du the sum of nt parts [16][co][c]
     * at parts + t*stride, added in t order. */
    void (*weight_grad)(const float *parts, size_t stride, int nt, int64_t co, int64_t c,
                        int64_t o0, int64_t o1, float *dw);
    /* v[e][t][ch] = (B^T d B)[e] of each tile of nb images in pixel-major rows
     * xp (rows of ldx floats); channels ch rounded up to 16 (spare ones read 0). */
    void (*input)(const float *xp, int64_t ldx, int64_t nb, int64_t h, int64_t w, int64_t ch,
                  float *v, int64_t ld, int64_t es);
    /* dxp += B dv B^T of each tile, on the tile's pixels inside the image (tiles
     * overlap, so they add up in tile order). */
    void (*input_adjoint)(const float *dv, int64_t ld, int64_t es, int64_t nb, int64_t h,
                          int64_t w, int64_t ch, float *dxp, int64_t ldx);
    /* out = A^T m A of each tile, on the pixels inside the image, into
     * pixel-major rows (ldo floats; spare channels up to the 16-rounding are 0). */
    void (*output)(const float *m, int64_t ld, int64_t es, int64_t nb, int64_t h, int64_t w,
                   int64_t ch, float *out, int64_t ldo);
    /* dm[e][t] = (A dY A^T)[e] of each tile of dy's pixel-major rows (pixels
     * outside the image read 0). */
    void (*output_adjoint)(const float *dyp, int64_t ldy, int64_t nb, int64_t h, int64_t w,
                           int64_t ch, float *dm, int64_t ld, int64_t es);
};

BTI_HIDDEN extern const struct bti_wino_ops bti_wino_avx512, bti_wino_avx2;

/* The transforms of an x86 level (BTI_CPU_AVX2 or BTI_CPU_AVX512). */
BTI_HIDDEN const struct bti_wino_ops *bti_wino_ops_of(int level);

#endif /* BARLOW_CONV_WINOGRAD_H */
