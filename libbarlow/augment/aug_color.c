/* aug_color.c - the colour operations of the pipeline, with Pillow's exact
 * arithmetic: ImageEnhance (Blend.c), convert("L") (Convert.c L24), the 8-bit
 * HSV round trip of torchvision's adjust_hue (Convert.c rgb2hsv/hsv2rgb),
 * ImageOps.solarize and FLIP_LEFT_RIGHT. Every result is uint8, as in PIL, so
 * rounding happens after each operation. The float/double mix of each
 * expression follows Pillow's source on purpose: it decides the last bit. */
#include "augment/augment.h"

#include <math.h>
#include <string.h>

uint8_t bti_blend(int d, int x, float alpha)
{
    float t;
    if (alpha == 0.0f)
        return (uint8_t)d;
    if (alpha == 1.0f)
        return (uint8_t)x;
    t = (float)d + alpha * (float)(x - d);
    if (alpha >= 0.0f && alpha <= 1.0f)
        return (uint8_t)t; /* interpolation: truncation, always in range */
    if (t <= 0.0f)
        return 0;
    if (t >= 255.0f)
        return 255;
    return (uint8_t)t;
}

/* ITU-R 601-2 luma in 16-bit fixed point, as Convert.c's L24. */
static inline uint8_t luma(const uint8_t *p)
{
    return (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16);
}

static void apply_lut(uint8_t *px, size_t n, const uint8_t *lut)
{
    size_t k;
    for (k = 0; k < n; k++)
        px[k] = lut[px[k]];
}

void bti_aug_brightness(uint8_t *px, size_t npix, int c, double f)
{
    uint8_t lut[256];
    float a = (float)f;
    int v;
    for (v = 0; v < 256; v++)
        lut[v] = bti_blend(0, v, a); /* degenerate: black */
    apply_lut(px, npix * (size_t)c, lut);
}

void bti_aug_contrast(uint8_t *px, size_t npix, int c, double f)
{
    uint64_t sum = 0;
    uint8_t lut[256];
    float a = (float)f;
    size_t k;
    int v, m;
    /* ImageStat mean of the L image: exact sum / count, then int(mean + 0.5). */
    if (c == 3)
        for (k = 0; k < npix; k++)
            sum += luma(px + 3 * k);
    else
        for (k = 0; k < npix; k++)
            sum += px[k];
    m = (int)floor((double)sum / (double)npix + 0.5);
    for (v = 0; v < 256; v++)
        lut[v] = bti_blend(m, v, a); /* degenerate: constant grey m in every channel */
    apply_lut(px, npix * (size_t)c, lut);
}

void bti_aug_saturation(uint8_t *px, size_t npix, int c, double f)
{
    float a = (float)f;
    size_t k;
    if (c != 3) /* ImageEnhance.Color of an L image blends it with itself */
        return;
    for (k = 0; k < npix; k++) {
        uint8_t *p = px + 3 * k;
        int l = luma(p);
        p[0] = bti_blend(l, p[0], a);
        p[1] = bti_blend(l, p[1], a);
        p[2] = bti_blend(l, p[2], a);
    }
}

static inline uint8_t clip8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* Convert.c rgb2hsv_row (float and double exactly where Pillow has them). */
static void rgb2hsv(const uint8_t *in, uint8_t *hsv)
{
    int r = in[0], g = in[1], b = in[2];
    int maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
    int minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    hsv[2] = (uint8_t)maxc;
    if (minc == maxc) {
        hsv[0] = 0;
        hsv[1] = 0;
    } else {
        float h, s, rc, gc, bc, cr;
        cr = (float)(maxc - minc);
        s = cr / (float)maxc;
        rc = (float)(maxc - r) / cr;
        gc = (float)(maxc - g) / cr;
        bc = (float)(maxc - b) / cr;
        if (r == maxc)
            h = bc - gc;
        else if (g == maxc)
            h = (float)(2.0 + rc - bc);
        else
            h = (float)(4.0 + gc - rc);
        {
            /* fmod(h / 6.0 + 1.0, 1.0): the argument lies in (0.5, 2), where
             * subtracting 1 is exact (Sterbenz), so this equals fmod bit for bit */
            double t = h / 6.0 + 1.0;
            h = (float)(t >= 1.0 ? t - 1.0 : t);
        }
        hsv[0] = clip8((int)(h * 255.0));
        hsv[1] = clip8((int)(s * 255.0));
    }
}

/* Convert.c hsv2rgb. */
static void hsv2rgb(const uint8_t *hsv, uint8_t *out)
{
    int h = hsv[0], s = hsv[1], v = hsv[2];
    if (s == 0) {
        out[0] = out[1] = out[2] = (uint8_t)v;
    } else {
        int i = (int)floor((float)h * 6.0 / 255.0);
        float f = (float)((float)h * 6.0 / 255.0 - (float)i);
        float fs = (float)((float)s / 255.0);
        uint8_t up = clip8((int)round((float)v * (1.0 - fs)));
        uint8_t uq = clip8((int)round((float)v * (1.0 - fs * f)));
        uint8_t ut = clip8((int)round((float)v * (1.0 - fs * (1.0 - f))));
        uint8_t uv = (uint8_t)v;
        switch (i % 6) {
        case 0: out[0] = uv; out[1] = ut; out[2] = up; break;
        case 1: out[0] = uq; out[1] = uv; out[2] = up; break;
        case 2: out[0] = up; out[1] = uv; out[2] = ut; break;
        case 3: out[0] = up; out[1] = uq; out[2] = uv; break;
        case 4: out[0] = ut; out[1] = up; out[2] = uv; break;
        default: out[0] = uv; out[1] = up; out[2] = uq; break;
        }
    }
}

void bti_aug_hue(uint8_t *px, size_t npix, int c, double h)
{
    /* np.uint8(h * 255): truncation toward zero, then wrap modulo 256. */
    int shift = (int)(h * 255.0);
    size_t k;
    if (c != 3) /* torchvision returns L images unchanged */
        return;
    for (k = 0; k < npix; k++) {
        uint8_t hsv[3];
        rgb2hsv(px + 3 * k, hsv);
        hsv[0] = (uint8_t)((hsv[0] + shift) & 255);
        hsv2rgb(hsv, px + 3 * k);
    }
}

void bti_aug_grayscale(uint8_t *px, size_t npix, int c)
{
    size_t k;
    if (c != 3)
        return;
    for (k = 0; k < npix; k++) {
        uint8_t *p = px + 3 * k;
        p[0] = p[1] = p[2] = luma(p);
    }
}

void bti_aug_solarize(uint8_t *px, size_t nbytes)
{
    size_t k;
    for (k = 0; k < nbytes; k++)
        if (px[k] >= 128)
            px[k] = (uint8_t)(255 - px[k]);
}

void bti_aug_hflip(uint8_t *px, int w, int h, int c)
{
    int y, x, k;
    for (y = 0; y < h; y++) {
        uint8_t *row = px + (size_t)y * (size_t)w * (size_t)c;
        for (x = 0; x < w / 2; x++) {
            uint8_t *a = row + (size_t)x * c, *b = row + (size_t)(w - 1 - x) * c;
            for (k = 0; k < c; k++) {
                uint8_t t = a[k];
                a[k] = b[k];
                b[k] = t;
            }
        }
    }
}
