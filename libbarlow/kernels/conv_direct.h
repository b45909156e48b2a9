/* conv_direct.h - direct 3x3 convolution, stride 1 or 2, padding 1 (private):
 * the forward, the input gradient and the weight gradient computed straight
 * from the input's planes, with no im2col and no padded-grid junk, vectorised
 * over channels with input pixels broadcast. The vectorised calls come in
 * one ops table per x86 level (struct bti_direct_ops: AVX-512 tiles of 16
 * lanes in conv_direct_avx512.c, AVX2 tiles of 8 in conv_direct_avx2.c); the
 * layouts are the same at both, channels rounded to 16 (conv_direct_x86.c
 * has the level-free parts).
 *
 * Layouts shared by the calls:
 *  - planes: channel ch of image b of a group starts at p + ch*lcap +
 *    b*plane, rows of wp floats: NCHW tensors as they are (lcap = h*w);
 *  - a pixel list: off[q], q < npix, where output pixel q's taps are measured
 *    from in a channel's planes (its window's centre in bti_direct_classes;
 *    dy pixel (y/2, x/2) in the stride-2 input gradient's classes), and
 *    rows[q], the pixel-major row it is written to; both followed by
 *    BTI_DIRECT_SLACK copies of their last entry (tiles run past npix and
 *    recompute that pixel);
 *  - pixel classes: a list made of up to 9 such lists, one per set of taps
 *    that stay inside the image (the interior, the edges, the corners), so
 *    no tap that would read padding is computed;
 *  - pixel-major rows: r[q][chp], chp = bti_direct_round(channels), with
 *    BTI_DIRECT_SLACK spare rows after the last pixel;
 *  - taps: the window's taps as offsets from off[q], the kernel entry (i*3 +
 *    j) of each, and where its weights sit among the `slots` packed per input
 *    channel (a class uses a subset of the packed taps).
 * Each output is one fixed sequence of FMAs (input channel, then tap, in
 * order), so results are the same bits on every call for a given shape. */
#ifndef BARLOW_CONV_DIRECT_H
#define BARLOW_CONV_DIRECT_H

#include "common/internal.h"

#define BTI_DIRECT_SLACK 16

struct bti_taps {
    int n;          /* taps, 1..9 */
    int slots;      /* taps per input channel in the packed weights */
    int64_t off[9]; /* offset from the window start in the planes */
    int w[9];       /* kernel entry i*3 + j */
    int slot[9];    /* position among the packed taps */
};

/* A pixel list split into classes by the taps inside the image. */
#define BTI_DIRECT_CLASSES 9
struct bti_pixel_classes {
    int n;
    int64_t start[BTI_DIRECT_CLASSES], count[BTI_DIRECT_CLASSES];
    struct bti_taps tp[BTI_DIRECT_CLASSES];
};

/* Channels rounded up to 16: a whole number of registers at either width. */
BTI_HIDDEN int64_t bti_direct_round(int64_t ch);

/* Entries of a class list for npix pixels (with every class's slack). */
BTI_HIDDEN int64_t bti_direct_list_len(int64_t npix);

/* The classes of nb images of ho x wo outputs, stride s, over unpadded
 * inputs of h x w, images `plane` floats apart, rows of wp: output pixel (b,
 * y, x) is row (b*ho + y)*wo + x and reads taps (i, j) with 0 <= y*s + i - 1
 * < h and 0 <= x*s + j - 1 < w only. off[q] = b*plane + s*(y*wp + x), the
 * window's centre; the taps' offsets from it start at -wp - 1. Each class's
 * taps use the nine packed taps (tap (i, j) in slot i*3 + j). */
BTI_HIDDEN void bti_direct_classes(int64_t nb, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                   int64_t plane, int64_t wp, int s, int64_t *off, int64_t *rows,
                                   struct bti_pixel_classes *pc);
/* The slack copies after a pixel list of npix entries built by the caller. */
BTI_HIDDEN void bti_direct_slack(int64_t npix, int64_t *off, int64_t *rows);

/* The tiles' shared bookkeeping (both widths):
 * input channels per pass of the forward tiles, cb for classes of 9 taps and
 * proportionally more when no class has 9 (the same bytes of weights in L1); */
BTI_HIDDEN int64_t bti_direct_pass_channels(const struct bti_pixel_classes *pc, int64_t cb);
/* masks[k]: bit s set when class k uses packed slot s; */
BTI_HIDDEN void bti_direct_slot_masks(const struct bti_pixel_classes *pc, int *masks);
/* the mask of the taps (bit i*3 + j) of kernel rows rm and columns cm (bit i,
 * bit j), and X(rm, cm) for the nine that bti_direct_classes makes on images
 * of 2 or more rows and columns (the weight-gradient tiles compile one each). */
#define BTI_TAP_MASK(rm, cm)                                                                   \
    (((rm) & 1 ? (cm) : 0) | ((rm) & 2 ? (cm) << 3 : 0) | ((rm) & 4 ? (cm) << 6 : 0))
#define BTI_DIRECT_CLASS_MASKS(X)                                                              \
    X(7, 7) X(6, 6) X(6, 3) X(3, 6) X(3, 3) X(6, 7) X(3, 7) X(7, 6) X(7, 3)

/* The flat form (conv_flat_avx512.c), stride 1 only, for few channels: registers of
 * 16 neighbouring output pixels of one channel, read from each image's padded
 * plane (rows of wp = w + 2) as one flat run, so the row ends give junk lanes
 * that are never stored. Run r covers flat positions [16r, 16r + 16) of
 * output (y, x) at y*wp + x; reads go up to 15 floats past an image's plane. */

#define BTI_FLAT_OUTPUTS 8 /* output channels per flat tile, and their packing */

/* Runs per image of h rows in planes with rows of wp. */
BTI_HIDDEN int64_t bti_flat_runs(int64_t h, int64_t wp);
/* Each run's stores for h x w images: st[r] = (the NCHW offset of its first
 * valid lane) << 16 | (the mask of its valid lanes). bti_flat_runs entries. */
BTI_HIDDEN void bti_flat_stores(int64_t h, int64_t w, int64_t *st);
/* Weights [co][c][3][3] packed for flat_conv, as pack (transpose
 * 1: the stride-1 input gradient, mirrored): outputs rounded up to 8, times
 * inputs times 9 floats (no more than pack's); this call's share
 * `part` of `parts`. */
BTI_HIDDEN void bti_flat_pack(const float *w, int64_t co, int64_t c, int transpose, float *wpk,
                              int part, int parts);

/* The vectorised calls of one level. */
struct bti_direct_ops {
    /* Weights [co][c][3][3] packed for conv with taps tp (only tp->w is read).
     * transpose 0: the forward (outputs co, inputs c); 1: the input gradient
     * (outputs c, inputs co). bti_direct_round(outputs) * inputs * tp->n
     * floats in all, of which this call writes share `part` of `parts`. */
    void (*pack)(const float *w, int64_t co, int64_t c, int transpose, const struct bti_taps *tp,
                 float *wpk, int part, int parts);
    /* out[rows[q]][o] = sum over input channels ci and taps t of
     * x[ci*lcap + off[q] + tp->off[t]] * w(o, ci, tp->w[t]), for q in each class
     * of pc with that class's taps tp, and o < cout (wpk from pack with
     * tp->slots taps, the same for all classes, tap t's weights in slot
     * tp->slot[t]; spare channels come out 0). */
    void (*conv)(const float *x, int64_t lcap, int64_t cin, const int64_t *off,
                 const int64_t *rows, const struct bti_pixel_classes *pc, const float *wpk,
                 int64_t cout, float *out);
    /* part[(ci*9 + i*3 + j)][o] += sum over q in the classes of pc and the taps
     * (i, j) of each class of dy[rows[q]][o] * x[ci*lcap + off[q] + (i - 1)*wp +
     * j - 1]: x unpadded, the classes of bti_direct_classes.
     * dy and part have rows of bti_direct_round(cout) floats. */
    void (*weight_grad)(const float *x, int64_t lcap, int64_t wp, int64_t cin,
                        const int64_t *off, const int64_t *rows,
                        const struct bti_pixel_classes *pc, const float *dy, int64_t cout,
                        float *part);
    /* dw[o][kk] += (sum over t < nt of parts[t*stride + kk*chp + o], added in t
     * order) for o in [o0, o1) (o0 a multiple of 16) and kk < k2; the parts are
     * weight_grad's, chp = bti_direct_round(co). */
    void (*add_parts)(const float *parts, size_t stride, int nt, int64_t co, int64_t k2,
                      int64_t o0, int64_t o1, float *dw);
    /* NCHW images [nb][ch][p] to pixel-major rows dst[b*p + q][chp] (spare
     * channels zeroed), and back (plus bias[c] when bias is not NULL). */
    void (*to_pixels)(const float *src, int64_t ch, int64_t nb, int64_t p, float *dst);
    void (*from_pixels)(const float *src, int64_t ch, int64_t nb, int64_t p, const float *bias,
                        float *dst);
    /* The flat tiles (above), or NULL where the level has none:
     * dst[b][o][y][x] = sum over ci < cin and the taps (i, j) of w(o, ci, i*3 + j)
     * * x[ci*lcap + b*plane + (y + i)*wp + x + j] (+ bias[o]), for nb images of h
     * rows and o < cout; st from bti_flat_stores. */
    void (*flat_conv)(const float *x, int64_t lcap, int64_t plane, int64_t wp, int64_t h,
                      int64_t nb, int64_t cin, const float *wpk, int64_t cout, const int64_t *st,
                      const float *bias, float *dst);
};

BTI_HIDDEN extern const struct bti_direct_ops bti_direct_avx512, bti_direct_avx2;

/* The tiles of an x86 level (BTI_CPU_AVX2 or BTI_CPU_AVX512). */
BTI_HIDDEN const struct bti_direct_ops *bti_direct_ops_of(int level);

/* The AVX-512 flat tiles (conv_flat_avx512.c), for bti_direct_avx512. */
BTI_HIDDEN void bti_flat_conv_avx512(const float *x, int64_t lcap, int64_t plane, int64_t wp,
                                     int64_t h, int64_t nb, int64_t cin, const float *wpk,
                                     int64_t cout, const int64_t *st, const float *bias,
                                     float *dst);

#endif /* BARLOW_CONV_DIRECT_H */
