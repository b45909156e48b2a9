/* conv_direct.h - direct 3x3 stride-1 convolution (private): the forward, the
 * input gradient and the weight gradient computed straight from zero-padded
 * planes, with no im2col and no padded-grid junk, vectorised over channels
 * (16 per AVX-512 register) with input pixels broadcast. Run these only when
 * bti_sgemm_level() is BTI_SGEMM_AVX512.
 *
 * Layouts shared by the calls:
 *  - padded planes: channel ch of image b of a group starts at p + ch*lcap +
 *    b*plane, rows of wp floats, as the padded-grid form of layer_conv2d.c packs them;
 *  - a pixel list off[q], q < npix: where output pixel q's window starts in
 *    a channel's planes (b*plane + oy*wp + ox), followed by BTI_DIRECT_SLACK
 *    copies of the last entry (tiles run past npix and recompute that pixel);
 *  - pixel-major rows: r[q][chp], chp = bti_direct_round(channels), with
 *    BTI_DIRECT_SLACK spare rows after the last pixel.
 * Each output is one fixed sequence of FMAs (input channel, then tap, in
 * order), so results are the same bits on every call for a given shape. */
#ifndef BARLOW_CONV_DIRECT_H
#define BARLOW_CONV_DIRECT_H

#include "internal.h"

#define BTI_DIRECT_SLACK 16

/* Channels rounded up to a whole number of registers. */
BTI_HIDDEN int64_t bti_direct_round(int64_t ch);

/* Weights [co][c][3][3] packed for bti_direct_conv. flip 0: the forward
 * (outputs co, inputs c); flip 1: the input gradient (outputs c, inputs co,
 * taps mirrored). bti_direct_round(outputs) * inputs * 9 floats in all, of
 * which this call writes share `part` of `parts` (threads split the work). */
BTI_HIDDEN void bti_direct_pack(const float *w, int64_t co, int64_t c, int flip, float *wpk,
                                int part, int parts);

/* off[q] for nb images of ho x wo outputs in planes of `plane` floats and rows
 * of wp, then the slack copies. */
BTI_HIDDEN void bti_direct_offsets(int64_t nb, int64_t ho, int64_t wo, int64_t plane, int64_t wp,
                                   int64_t *off);

/* out[q][o] = sum over input channels ci and taps (i, j) of
 * x[ci*lcap + off[q] + i*wp + j] * w(o, ci, i, j), for q < npix and o < cout
 * (wpk from bti_direct_pack; rows out[q][cout..chp) come out 0). */
BTI_HIDDEN void bti_direct_conv(const float *x, int64_t lcap, int64_t wp, int64_t cin,
                                const int64_t *off, int64_t npix, const float *wpk, int64_t cout,
                                float *out);

/* part[(ci*9 + i*3 + j)][o] += sum over q < npix of
 * dy[q][o] * x[ci*lcap + off[q] + i*wp + j]; dy and part have rows of
 * bti_direct_round(cout) floats. */
BTI_HIDDEN void bti_direct_weight_grad(const float *x, int64_t lcap, int64_t wp, int64_t cin,
                                       const int64_t *off, int64_t npix, const float *dy,
                                       int64_t cout, float *part);

/* NCHW images [nb][ch][p] to pixel-major rows dst[b*p + q][chp] (spare
 * channels zeroed), and back (plus bias[c] when bias is not NULL). */
BTI_HIDDEN void bti_direct_to_pixels(const float *src, int64_t ch, int64_t nb, int64_t p,
                                     float *dst);
BTI_HIDDEN void bti_direct_from_pixels(const float *src, int64_t ch, int64_t nb, int64_t p,
                                       const float *bias, float *dst);

#endif /* BARLOW_CONV_DIRECT_H */
