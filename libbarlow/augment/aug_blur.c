/* aug_blur.c - ImageFilter.GaussianBlur(radius=sigma) as Pillow computes it
 * (BoxBlur.c): an "extended" box blur (Gwosdek et al. 2011) of fractional
 * radius r chosen so that three passes have variance sigma^2, applied three
 * times along rows, then three times along columns, each pass rounded back to
 * uint8 with 24-bit fixed-point weights and edge replication. */
#include "augment/augment.h"

#include <math.h>
#include <string.h>

float bti_blur_box_radius(float sigma)
{
    /* float and double exactly as Pillow's _gaussian_blur_radius (passes = 3) */
    float sigma2, L, l, a;
    sigma2 = sigma * sigma / 3;
    L = (float)sqrt(12.0 * sigma2 + 1.0);
    l = (float)floor((L - 1.0) / 2.0);
    a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
    a /= 6 * (sigma2 - (l + 1) * (l + 1));
    return l + a;
}

/* Pillow's sliding-window pass, out[x] = (ww * sum(in[x-R..x+R]) +
 * fw * (in[x-R-1] + in[x+R+1]) + 2^23) >> 24 with indices clamped to the line,
 * is computed here as that direct sum (R <= 1 for sigma <= 2), over padded
 * rows for the horizontal passes and over whole rows at once for the vertical
 * ones, so both run as contiguous, vectorisable loops. */

/* Horizontal: pad holds the row with R+1 replicated pixels on each side. */
static void box_row(const uint8_t *pad, uint8_t *out, int n, int c, int radius, uint32_t ww,
                    uint32_t fw)
{
    const uint8_t *mid = pad + (size_t)(radius + 1) * c;
    const uint8_t *lo = mid - (radius + 1) * c, *hi = mid + (radius + 1) * c;
    int m = n * c, i, k;
    if (radius == 0) {
        for (i = 0; i < m; i++)
            out[i] = (uint8_t)(((uint32_t)mid[i] * ww + ((uint32_t)lo[i] + hi[i]) * fw + (1u << 23)) >> 24);
    } else if (radius == 1) {
        const uint8_t *a = mid - c, *b = mid + c;
        for (i = 0; i < m; i++)
            out[i] = (uint8_t)((((uint32_t)a[i] + mid[i] + b[i]) * ww + ((uint32_t)lo[i] + hi[i]) * fw +
                                (1u << 23)) >> 24);
    } else {
        for (i = 0; i < m; i++) {
            uint32_t acc = 0;
            for (k = -radius; k <= radius; k++)
                acc += mid[i + k * c];
            out[i] = (uint8_t)((acc * ww + ((uint32_t)lo[i] + hi[i]) * fw + (1u << 23)) >> 24);
        }
    }
}

static void pad_row(const uint8_t *row, uint8_t *pad, int n, int c, int radius)
{
    int k, ch;
    for (k = 0; k <= radius; k++)
        for (ch = 0; ch < c; ch++) {
            pad[(size_t)k * c + ch] = row[ch];
            pad[(size_t)(n + radius + 1 + k) * c + ch] = row[(size_t)(n - 1) * c + ch];
        }
    memcpy(pad + (size_t)(radius + 1) * c, row, (size_t)n * c);
}

/* Vertical: one output row from the clamped input rows. */
static void box_col(const uint8_t *in, uint8_t *out, int y, int h, size_t stride, int radius,
                    uint32_t ww, uint32_t fw)
{
#define ROW(i) (in + (size_t)((i) < 0 ? 0 : (i) >= h ? h - 1 : (i)) * stride)
    const uint8_t *lo = ROW(y - radius - 1), *hi = ROW(y + radius + 1);
    uint8_t *o = out + (size_t)y * stride;
    size_t i;
    int k;
    if (radius == 0) {
        const uint8_t *r0 = ROW(y);
        for (i = 0; i < stride; i++)
            o[i] = (uint8_t)(((uint32_t)r0[i] * ww + ((uint32_t)lo[i] + hi[i]) * fw + (1u << 23)) >> 24);
    } else if (radius == 1) {
        const uint8_t *a = ROW(y - 1), *b = ROW(y), *d = ROW(y + 1);
        for (i = 0; i < stride; i++)
            o[i] = (uint8_t)((((uint32_t)a[i] + b[i] + d[i]) * ww + ((uint32_t)lo[i] + hi[i]) * fw +
                              (1u << 23)) >> 24);
    } else {
        for (i = 0; i < stride; i++) {
            uint32_t acc = 0;
            for (k = -radius; k <= radius; k++)
                acc += ROW(y + k)[i];
            o[i] = (uint8_t)((acc * ww + ((uint32_t)lo[i] + hi[i]) * fw + (1u << 23)) >> 24);
        }
    }
#undef ROW
}

size_t bti_blur_ws_bytes(int w, int h, int c, float sigma)
{
    int radius = (int)bti_blur_box_radius(sigma);
    return (size_t)w * h * c + (size_t)(w + 2 * radius + 2) * c;
}

void bti_aug_blur(uint8_t *px, int w, int h, int c, float sigma, uint8_t *ws)
{
    float r = bti_blur_box_radius(sigma);
    int radius = (int)r, y, pass;
    /* Pillow: (UINT32)(1 << 24) / (floatRadius * 2 + 1), a float division */
    uint32_t ww = (uint32_t)((float)(1u << 24) / (r * 2 + 1));
    uint32_t fw = ((1u << 24) - (uint32_t)(radius * 2 + 1) * ww) / 2;
    size_t stride = (size_t)w * c;
    uint8_t *tmp = ws, *pad = ws + stride * h;
    if (r == 0)
        return;
    for (y = 0; y < h; y++) {
        uint8_t *row = px + (size_t)y * stride;
        for (pass = 0; pass < 3; pass++) {
            pad_row(row, pad, w, c, radius);
            box_row(pad, row, w, c, radius, ww, fw);
        }
    }
    for (y = 0; y < h; y++)
        box_col(px, tmp, y, h, stride, radius, ww, fw);
    for (y = 0; y < h; y++)
        box_col(tmp, px, y, h, stride, radius, ww, fw);
    for (y = 0; y < h; y++)
        box_col(px, tmp, y, h, stride, radius, ww, fw);
    memcpy(px, tmp, stride * h);
}
