/* conv_planes.h - im2col / col2im / zero padding of one input plane (private). */
#ifndef BARLOW_CONV_PLANES_H
#define BARLOW_CONV_PLANES_H

#include "common/cpu.h"

/* im2col and col2im of one input plane for one kernel tap (i, j) of a
 * convolution with stride s and padding pad (h x w input, ho x wo output):
 *   im2col: d[oy*wo + ox] = x[oy*s - pad + i][ox*s - pad + j], 0 outside;
 *   col2im: x[oy*s - pad + i][ox*s - pad + j] += d[oy*wo + ox] inside.
 * lo/hi: the first and one-past-last ox whose input column is inside [0, w).
 * At the AVX-512 level (common/cpu.h) masked rows (small images have rows of a few floats,
 * where memcpy/memset calls cost more than the copy); plain loops otherwise. */
BTI_HIDDEN void bti_im2col_plane(int level, float *d, const float *x, int64_t h, int64_t w,
                                 int64_t ho, int64_t wo, int s, int pad, int i, int j, int64_t lo,
                                 int64_t hi);
BTI_HIDDEN void bti_col2im_plane(int level, const float *d, float *x, int64_t h, int64_t w,
                                 int64_t ho, int64_t wo, int s, int pad, int i, int j, int64_t lo,
                                 int64_t hi);

/* Zero padding of ch x nb planes: channel c of image b of x ([nb][ch][h][w])
 * becomes the (h + 2*pad) x (w + 2*pad) plane at d + c*lcap + b*plane, planes
 * of an image group side by side. AVX-512 masked copies at that level. */
BTI_HIDDEN void bti_pad_planes(int level, float *d, int64_t lcap, const float *x, int64_t ch,
                               int64_t nb, int64_t h, int64_t w, int pad);

#endif /* BARLOW_CONV_PLANES_H */
