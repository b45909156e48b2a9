/* aug_resample.c - Image.resize(size, BICUBIC | BILINEAR) as Pillow computes it
 * (Resample.c): separable convolution, horizontal pass first, uint8 between
 * the passes; the kernel is stretched by the scale when downsampling
 * (antialiasing); weights are normalised in double, then rounded to 22-bit
 * fixed point; each sum starts at 2^21 and is shifted back and clipped.
 *
 * The box (bx, by, bw, bh) plays the part of the cropped image PIL resizes, so
 * crop + resize reads the source in place. Only an output window is computed,
 * which gives Resize + CenterCrop without the discarded pixels. */
#include "augment/augment.h"

#include <math.h>
#include <string.h>

#define PREC 22 /* PRECISION_BITS = 32 - 8 - 2 */

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double bilinear(double x)
{
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return 1.0 - x;
    return 0.0;
}

static int ksize_of(int in_size, int out_size, int bicubic_)
{
    double scale = (double)in_size / out_size, fs = scale < 1.0 ? 1.0 : scale;
    double support = (bicubic_ ? 2.0 : 1.0) * fs;
    return (int)ceil(support) * 2 + 1;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for outputs first..first+count-1
 * of an in_size -> out_size axis: bounds[2i] = xmin, bounds[2i+1] = tap count. */
static void coeffs(int in_size, int out_size, int first, int count, int bicubic_, int ksize,
                   int *bounds, int32_t *kk, double *w)
{
    double scale = (double)in_size / out_size, fs = scale < 1.0 ? 1.0 : scale;
    double support = (bicubic_ ? 2.0 : 1.0) * fs, ss = 1.0 / fs;
    int i, x;
    for (i = 0; i < count; i++) {
        int xx = first + i, xmin, xmax;
        double center = (xx + 0.5) * scale, sum = 0.0;
        int32_t *k = kk + (size_t)i * ksize;
        xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (x = 0; x < xmax; x++) {
            double t = (x + xmin - center + 0.5) * ss;
            w[x] = bicubic_ ? bicubic(t) : bilinear(t);
            sum += w[x];
        }
        for (x = 0; x < xmax; x++) {
            double v = sum != 0.0 ? w[x] / sum : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC)) : (int32_t)(0.5 + v * (1 << PREC));
        }
        for (; x < ksize; x++)
            k[x] = 0;
        bounds[2 * i] = xmin;
        bounds[2 * i + 1] = xmax;
    }
}

static inline uint8_t clip_acc(int32_t acc)
{
    int32_t v = acc >> PREC; /* arithmetic shift, as Pillow's lookup index */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Workspace layout: kk_h, kk_v (int32), bounds_h, bounds_v (int), w (double), tmp (uint8),
 * acc (int32, one output row). */
size_t bti_resample_ws_bytes(int bw, int bh, int out_w, int out_h, int ow, int oh, int c,
                             int bicubic_)
{
    size_t kh = (size_t)ksize_of(bw, out_w, bicubic_), kv = (size_t)ksize_of(bh, out_h, bicubic_);
    size_t km = kh > kv ? kh : kv;
    return align64(kh * (size_t)ow * 4) + align64(kv * (size_t)oh * 4) +
           align64((size_t)ow * 2 * sizeof(int)) + align64((size_t)oh * 2 * sizeof(int)) +
           align64(km * sizeof(double)) + align64((size_t)ow * (size_t)bh * (size_t)c) +
           align64((size_t)ow * (size_t)c * sizeof(int32_t));
}

void bti_resample(const uint8_t *src, size_t src_stride, int c, int bx, int by, int bw, int bh,
                  int out_w, int out_h, int ox, int oy, int ow, int oh, int bicubic_, uint8_t *dst,
                  void *ws)
{
    int kh = ksize_of(bw, out_w, bicubic_), kv = ksize_of(bh, out_h, bicubic_);
    int km = kh > kv ? kh : kv;
    /* Pillow skips a pass whose size does not change */
    int need_h = out_w != bw, need_v = out_h != bh;
    uint8_t *p = ws;
    int32_t *kk_h = (int32_t *)p;
    int32_t *kk_v = (int32_t *)(p += align64((size_t)kh * ow * 4));
    int *b_h = (int *)(p += align64((size_t)kv * oh * 4));
    int *b_v = (int *)(p += align64((size_t)ow * 2 * sizeof(int)));
    double *w = (double *)(p += align64((size_t)oh * 2 * sizeof(int)));
    uint8_t *tmp = (p += align64((size_t)km * sizeof(double)));
    int32_t *acc = (int32_t *)(p + align64((size_t)ow * (size_t)bh * (size_t)c));
    const uint8_t *mid; /* horizontal result: rows y0.. of the box, ow*c wide */
    size_t mid_stride;
    int y0, y1, xx, yy, x, ch;

    if (need_v) {
        coeffs(bh, out_h, oy, oh, bicubic_, kv, b_v, kk_v, w);
        y0 = b_v[0];
        y1 = b_v[2 * (oh - 1)] + b_v[2 * (oh - 1) + 1];
    } else {
        y0 = oy;
        y1 = oy + oh;
    }
    if (need_h) {
        coeffs(bw, out_w, ox, ow, bicubic_, kh, b_h, kk_h, w);
        for (yy = y0; yy < y1; yy++) {
            const uint8_t *row = src + (size_t)(by + yy) * src_stride + (size_t)bx * c;
            uint8_t *o = tmp + (size_t)(yy - y0) * ow * c;
            for (xx = 0; xx < ow; xx++) {
                const int32_t *k = kk_h + (size_t)xx * kh;
                const uint8_t *in = row + (size_t)b_h[2 * xx] * c;
                int n = b_h[2 * xx + 1];
                if (c == 3) {
                    int32_t a0 = 1 << (PREC - 1), a1 = a0, a2 = a0;
                    for (x = 0; x < n; x++) {
                        a0 += (int32_t)in[3 * x] * k[x];
                        a1 += (int32_t)in[3 * x + 1] * k[x];
                        a2 += (int32_t)in[3 * x + 2] * k[x];
                    }
                    o[3 * xx] = clip_acc(a0);
                    o[3 * xx + 1] = clip_acc(a1);
                    o[3 * xx + 2] = clip_acc(a2);
                } else {
                    for (ch = 0; ch < c; ch++) {
                        int32_t a0 = 1 << (PREC - 1);
                        for (x = 0; x < n; x++)
                            a0 += (int32_t)in[(size_t)x * c + ch] * k[x];
                        o[(size_t)xx * c + ch] = clip_acc(a0);
                    }
                }
            }
        }
        mid = tmp;
        mid_stride = (size_t)ow * c;
    } else {
        /* no horizontal pass: the window's columns straight from the source */
        mid = src + (size_t)(by + y0) * src_stride + (size_t)(bx + ox) * c;
        mid_stride = src_stride;
    }
    if (need_v) {
        /* row by row: each tap adds a whole source row, a contiguous loop */
        int m = ow * c;
        for (yy = 0; yy < oh; yy++) {
            const int32_t *k = kk_v + (size_t)yy * kv;
            const uint8_t *base = mid + (size_t)(b_v[2 * yy] - y0) * mid_stride;
            int n = b_v[2 * yy + 1];
            uint8_t *o = dst + (size_t)yy * m;
            for (xx = 0; xx < m; xx++)
                acc[xx] = 1 << (PREC - 1);
            for (x = 0; x < n; x++) {
                const uint8_t *row = base + (size_t)x * mid_stride;
                int32_t kx = k[x];
                for (xx = 0; xx < m; xx++)
                    acc[xx] += (int32_t)row[xx] * kx;
            }
            for (xx = 0; xx < m; xx++)
                o[xx] = clip_acc(acc[xx]);
        }
    } else {
        for (yy = 0; yy < oh; yy++)
            memcpy(dst + (size_t)yy * ow * c, mid + (size_t)(yy + oy - y0) * mid_stride,
                   (size_t)ow * c);
    }
}
