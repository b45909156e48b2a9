/* aug_blur.c - ImageFilter.GaussianBlur(radius=sigma) as Pillow computes it
 * (BoxBlur.c): an "extended" box blur (Gwosdek et al. 2011) of fractional
 * radius r chosen so that three passes have variance sigma^2, applied three
 * times along rows, then three times along columns, each pass rounded back to
 * uint8 with 24-bit fixed-point weights and edge replication. */
#include "augment.h"

#include <math.h>

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

/* One pass over a line of n values: out[x] = (ww * sum(in[x-R..x+R]) +
 * fw * (in[x-R-1] + in[x+R+1]) + 2^23) >> 24, indices clamped to the line. */
static void box_line(const uint8_t *in, uint8_t *out, int n, int radius, uint32_t ww, uint32_t fw)
{
    int last = n - 1, x, k;
    uint32_t acc = 0;
#define AT(i) ((uint32_t)in[(i) < 0 ? 0 : (i) > last ? last : (i)])
    for (k = -radius - 1; k < radius; k++) /* window of x = -1 */
        acc += AT(k);
    for (x = 0; x < n; x++) {
        uint32_t bulk;
        acc += AT(x + radius) - AT(x - radius - 1);
        bulk = acc * ww + (AT(x - radius - 1) + AT(x + radius + 1)) * fw;
        out[x] = (uint8_t)((bulk + (1u << 23)) >> 24);
    }
#undef AT
}

/* Three passes over the n values at p, p+stride, ...; a and b are line buffers. */
static void box_3(uint8_t *p, size_t stride, int n, int radius, uint32_t ww, uint32_t fw,
                  uint8_t *a, uint8_t *b)
{
    int x;
    for (x = 0; x < n; x++)
        a[x] = p[(size_t)x * stride];
    box_line(a, b, n, radius, ww, fw);
    box_line(b, a, n, radius, ww, fw);
    box_line(a, b, n, radius, ww, fw);
    for (x = 0; x < n; x++)
        p[(size_t)x * stride] = b[x];
}

void bti_aug_blur(uint8_t *px, int w, int h, int c, float sigma, uint8_t *line)
{
    float r = bti_blur_box_radius(sigma);
    int radius = (int)r, y, x, ch, m = w > h ? w : h;
    /* Pillow: (UINT32)(1 << 24) / (floatRadius * 2 + 1), a float division */
    uint32_t ww = (uint32_t)((float)(1u << 24) / (r * 2 + 1));
    uint32_t fw = ((1u << 24) - (uint32_t)(radius * 2 + 1) * ww) / 2;
    uint8_t *a = line, *b = line + m;
    if (r == 0)
        return;
    for (y = 0; y < h; y++)
        for (ch = 0; ch < c; ch++)
            box_3(px + (size_t)y * w * c + ch, (size_t)c, w, radius, ww, fw, a, b);
    for (x = 0; x < w; x++)
        for (ch = 0; ch < c; ch++)
            box_3(px + (size_t)x * c + ch, (size_t)w * c, h, radius, ww, fw, a, b);
}
