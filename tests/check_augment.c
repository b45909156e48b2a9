/* check_augment.c - the augmentation pipeline: each operation bit-exact against
 * Pillow / torchvision (golden/augment.bin from gen_augment.py), the sampling
 * distributions, determinism across thread counts, and misuse. */
#include "augment/augment.h"
#include "golden.h"
#include "common/rng.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static golden *g;

static void setup(void) { g = golden_load("augment.bin"); }
static void teardown(void) { golden_free(g); }

/* Golden image k as uint8 HWC; *h, *w, *c its shape. Caller frees. */
static uint8_t *image(int k, int *h, int *w, int *c)
{
    char name[32];
    int64_t shape[8];
    int nd, i;
    const float *f;
    uint8_t *u;
    snprintf(name, sizeof name, "img.%d", k);
    f = golden_get(g, name, &nd, shape);
    ck_assert_int_eq(nd, 3);
    *h = (int)shape[0];
    *w = (int)shape[1];
    *c = (int)shape[2];
    u = malloc((size_t)(*h * *w * *c));
    for (i = 0; i < *h * *w * *c; i++)
        u[i] = (uint8_t)f[i];
    return u;
}

static const float *param(const char *op, int k, int64_t *n)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%d.p", op, k);
    *n = golden_numel(g, name);
    return golden_get(g, name, NULL, NULL);
}

static int has_case(const char *op, int k)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%d.out", op, k);
    return golden_has(g, name);
}

static int src_of(const char *op, int k)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%d.src", op, k);
    return (int)golden_get(g, name, NULL, NULL)[0];
}

/* Largest |got - want| over a case's uint8 output. */
static int max_diff_u8(const char *op, int k, const uint8_t *got, int64_t n)
{
    char name[64];
    const float *want;
    int64_t i;
    int m = 0;
    snprintf(name, sizeof name, "%s.%d.out", op, k);
    ck_assert_int_eq(golden_numel(g, name), n);
    want = golden_get(g, name, NULL, NULL);
    for (i = 0; i < n; i++) {
        int d = abs((int)got[i] - (int)want[i]);
        if (d > m)
            m = d;
    }
    return m;
}

/* Run a per-pixel op over every golden case of `op`; all must be bit-exact. */
static int colour_cases(const char *op)
{
    int k;
    for (k = 0; has_case(op, k); k++) {
        int h, w, c;
        int64_t np;
        uint8_t *img = image(src_of(op, k), &h, &w, &c);
        size_t npix = (size_t)h * w;
        double p = param(op, k, &np)[0];
        if (!strcmp(op, "brightness"))
            bti_aug_brightness(img, npix, c, p);
        else if (!strcmp(op, "contrast"))
            bti_aug_contrast(img, npix, c, p);
        else if (!strcmp(op, "saturation"))
            bti_aug_saturation(img, npix, c, p);
        else if (!strcmp(op, "hue"))
            bti_aug_hue(img, npix, c, p);
        else if (!strcmp(op, "gray"))
            bti_aug_grayscale(img, npix, c);
        else if (!strcmp(op, "solarize"))
            bti_aug_solarize(img, npix * c);
        else if (!strcmp(op, "flip"))
            bti_aug_hflip(img, w, h, c);
        else if (!strcmp(op, "blur")) {
            uint8_t *line = malloc(bti_blur_ws_bytes(w, h, c, (float)p));
            bti_aug_blur(img, w, h, c, (float)p, line);
            free(line);
        }
        ck_assert_msg(max_diff_u8(op, k, img, (int64_t)npix * c) == 0,
                      "%s case %d (param %.6g, image %d): differs from PIL by %d", op, k, p,
                      src_of(op, k), max_diff_u8(op, k, img, (int64_t)npix * c));
        free(img);
    }
    return k;
}

START_TEST(blend_ops_match_pil)
{
    ck_assert_int_eq(colour_cases("brightness"), 7);
    ck_assert_int_eq(colour_cases("contrast"), 7);
    ck_assert_int_eq(colour_cases("saturation"), 5);
}
END_TEST

START_TEST(hue_matches_pil)
{
    ck_assert_int_eq(colour_cases("hue"), 9);
}
END_TEST

START_TEST(gray_solarize_flip_match_pil)
{
    ck_assert_int_eq(colour_cases("gray"), 2);
    ck_assert_int_eq(colour_cases("solarize"), 2);
    ck_assert_int_eq(colour_cases("flip"), 2);
}
END_TEST

START_TEST(blur_matches_pil)
{
    ck_assert_int_eq(colour_cases("blur"), 8);
    /* the documented extended-box radii */
    ck_assert_double_eq_tol(bti_blur_box_radius(1.0f), 0.25, 1e-6);
    ck_assert_double_eq_tol(bti_blur_box_radius(2.0f), 1.375, 1e-6);
}
END_TEST

/* Pillow's box pass written out (BoxBlur.c): out[x] = (ww * sum(in[x-R..x+R]) +
 * fw * (in[x-R-1] + in[x+R+1]) + 2^23) >> 24, indices clamped to the line. */
static void ref_box_line(const uint8_t *in, uint8_t *out, int n, ptrdiff_t step, float r)
{
    int ri = (int)r, x, k;
    uint32_t ww = (uint32_t)((float)(1u << 24) / (r * 2 + 1));
    uint32_t fw = ((1u << 24) - (uint32_t)(ri * 2 + 1) * ww) / 2;
#define AT(i) in[(ptrdiff_t)((i) < 0 ? 0 : (i) >= n ? n - 1 : (i)) * step]
    for (x = 0; x < n; x++) {
        uint32_t acc = 0;
        for (k = -ri; k <= ri; k++)
            acc += AT(x + k);
        out[(ptrdiff_t)x * step] =
            (uint8_t)((acc * ww + ((uint32_t)AT(x - ri - 1) + AT(x + ri + 1)) * fw + (1u << 23)) >> 24);
    }
#undef AT
}

/* Three passes along the rows, then three along the columns, each rounded to uint8. */
static void ref_blur(uint8_t *px, int w, int h, int c, float sigma)
{
    float r = bti_blur_box_radius(sigma);
    uint8_t *tmp = malloc((size_t)w * h * c);
    int pass, y, x, ch;
    for (pass = 0; pass < 6; pass++) {
        memcpy(tmp, px, (size_t)w * h * c);
        if (pass < 3)
            for (y = 0; y < h; y++)
                for (ch = 0; ch < c; ch++)
                    ref_box_line(tmp + (size_t)y * w * c + ch, px + (size_t)y * w * c + ch, w, c, r);
        else
            for (x = 0; x < w; x++)
                for (ch = 0; ch < c; ch++)
                    ref_box_line(tmp + (size_t)x * c + ch, px + (size_t)x * c + ch, h,
                                 (ptrdiff_t)w * c, r);
    }
    free(tmp);
}

/* bti_aug_blur has a loop for box radius 0, one for 1 (every sigma of the official
 * augmentation, <= 2, checked against PIL above) and a general one for wider boxes. The
 * written-out pass agrees with the first two, which ties it to PIL, and then must agree
 * with the general loop at sigmas 2.5 to 6 (radius 2 to 5), on images narrower than the box. */
START_TEST(blur_wide_radius_matches_pillow_passes)
{
    static const float sigmas[] = {0.4f, 1.0f, 1.9f, 2.5f, 3.3f, 6.0f};
    static const int dims[][3] = {{13, 9, 3}, {5, 17, 1}, {2, 3, 3}};
    size_t si, di;
    int radius_seen[6] = {0};
    for (si = 0; si < sizeof sigmas / sizeof sigmas[0]; si++)
        for (di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            int w = dims[di][0], h = dims[di][1], c = dims[di][2];
            size_t n = (size_t)w * h * c, i;
            uint8_t *got = malloc(n), *want = malloc(n);
            uint8_t *ws = malloc(bti_blur_ws_bytes(w, h, c, sigmas[si]));
            int changed = 0;
            for (i = 0; i < n; i++)
                got[i] = want[i] = (uint8_t)((i * 97 + (i / 7) * 31 + (i % 5 ? 0 : 200)) & 0xff);
            bti_aug_blur(got, w, h, c, sigmas[si], ws);
            ref_blur(want, w, h, c, sigmas[si]);
            for (i = 0; i < n; i++) {
                ck_assert_msg(got[i] == want[i], "sigma %g, %dx%dx%d, byte %zu: %d, want %d",
                              (double)sigmas[si], w, h, c, i, got[i], want[i]);
                changed += got[i] != (uint8_t)((i * 97 + (i / 7) * 31 + (i % 5 ? 0 : 200)) & 0xff);
            }
            ck_assert_msg(changed > 0, "sigma %g left the image as it was", (double)sigmas[si]);
            radius_seen[(int)bti_blur_box_radius(sigmas[si])] = 1;
            free(got);
            free(want);
            free(ws);
        }
    ck_assert(radius_seen[0] && radius_seen[1] && radius_seen[2] && radius_seen[5]);
    { /* sigma 0: Pillow returns the image as it is */
        uint8_t img[12] = {0, 255, 3, 250, 9, 7, 128, 1, 2, 200, 100, 50}, same[12];
        uint8_t *ws = malloc(bti_blur_ws_bytes(2, 2, 3, 0.0f));
        memcpy(same, img, sizeof img);
        bti_aug_blur(img, 2, 2, 3, 0.0f, ws);
        ck_assert_mem_eq(img, same, sizeof img);
        free(ws);
    }
}
END_TEST

START_TEST(resize_matches_pil)
{
    int k;
    for (k = 0; has_case("resize", k); k++) {
        int h, w, c;
        int64_t np;
        uint8_t *img = image(src_of("resize", k), &h, &w, &c);
        const float *p = param("resize", k, &np);
        int top = (int)p[0], left = (int)p[1], ch = (int)p[2], cw = (int)p[3], s = (int)p[4];
        int bic = (int)p[5], d;
        uint8_t *out = malloc((size_t)s * s * c);
        void *ws = malloc(bti_resample_ws_bytes(cw, ch, s, s, s, s, c, bic));
        bti_resample(img, (size_t)w * c, c, left, top, cw, ch, s, s, 0, 0, s, s, bic, out, ws);
        d = max_diff_u8("resize", k, out, (int64_t)s * s * c);
        /* the issue allows 1 grey level; Pillow's fixed point is reproduced exactly */
        ck_assert_msg(d == 0, "resize case %d (%dx%d at %d,%d -> %d, %s): max diff %d", k, cw, ch,
                      left, top, s, bic ? "bicubic" : "bilinear", d);
        free(ws);
        free(out);
        free(img);
    }
    ck_assert_int_eq(k, 16);
}
END_TEST

START_TEST(crop_fallback_matches_torchvision)
{
    int k;
    for (k = 0; has_case("fallback", k); k++) {
        int64_t np;
        const float *p = param("fallback", k, &np);
        char name[64];
        const float *want;
        int32_t top, left, h, w;
        uint64_t seed;
        snprintf(name, sizeof name, "fallback.%d.out", k);
        want = golden_get(g, name, NULL, NULL);
        for (seed = 0; seed < 20; seed++) { /* every attempt fails whatever is drawn */
            bti_aug_crop_params(bti_rng_key(seed, 1, 2, 3), (int)p[0], (int)p[1], p[2], p[3], p[4],
                                p[5], &top, &left, &h, &w);
            ck_assert_int_eq(top, (int)want[0]);
            ck_assert_int_eq(left, (int)want[1]);
            ck_assert_int_eq(h, (int)want[2]);
            ck_assert_int_eq(w, (int)want[3]);
        }
    }
    ck_assert_int_eq(k, 6);
}
END_TEST

static void view_defaults(struct bti_aug_view *v)
{
    memset(v, 0, sizeof *v);
    v->size = 224;
    v->scale_lo = 0.08;
    v->scale_hi = 1.0;
    v->ratio_lo = 3.0 / 4;
    v->ratio_hi = 4.0 / 3;
    v->bicubic = 1;
    v->flip_p = 0.5;
    v->jitter_p = 0.8;
    v->brightness = 0.4;
    v->contrast = 0.4;
    v->saturation = 0.2;
    v->hue = 0.1;
    v->gray_p = 0.2;
    v->blur_p = 1.0;
    v->solarize_p = 0.0;
    v->nmean = v->nstd = 3;
    v->mean[0] = 0.485, v->mean[1] = 0.456, v->mean[2] = 0.406;
    v->std[0] = 0.229, v->std[1] = 0.224, v->std[2] = 0.225;
}

START_TEST(pipeline_matches_torchvision)
{
    int k;
    for (k = 0; has_case("pipe", k); k++) {
        int h, w, c, j;
        int64_t np, n;
        uint8_t *img = image(src_of("pipe", k), &h, &w, &c);
        const float *p = param("pipe", k, &np);
        struct bti_aug_view v;
        struct bti_aug_params q;
        float lut[3][256], *out;
        const float *want;
        char name[64];
        struct bti_aug_src src;
        void *ws;
        view_defaults(&v);
        if (c == 1) {
            v.nmean = v.nstd = 1;
            v.mean[0] = 0.2860;
            v.std[0] = 0.3530;
        }
        v.size = (int)p[4];
        v.bicubic = (int)p[5];
        q.top = (int32_t)p[0], q.left = (int32_t)p[1], q.height = (int32_t)p[2], q.width = (int32_t)p[3];
        q.flip = (int)p[6];
        q.jitter = (int)p[7];
        for (j = 0; j < 4; j++) {
            q.order[j] = (int)p[8 + j];
            q.has[j] = (int)p[12 + j];
            q.factor[j] = p[16 + j];
        }
        q.gray = (int)p[20];
        q.blur = (int)p[21];
        q.sigma = p[22];
        q.solarize = (int)p[23];
        bti_aug_lut(&v, lut);
        n = (int64_t)c * v.size * v.size;
        out = malloc((size_t)n * sizeof *out);
        ws = malloc(bti_aug_task_ws(&v, &q, c));
        src.px = img, src.stride = (size_t)w * c, src.bpp = c, src.bgr = 0;
        bti_aug_run(&v, (const float(*)[256])lut, &q, &src, ws, out);
        snprintf(name, sizeof name, "pipe.%d.out", k);
        ck_assert_int_eq(golden_numel(g, name), n);
        want = golden_get(g, name, NULL, NULL);
        for (j = 0; j < n; j++)
            ck_assert_msg(out[j] == want[j], "pipe case %d element %d: %.9g vs torchvision %.9g",
                          k, j, out[j], want[j]);
        free(ws);
        free(out);
        free(img);
    }
    ck_assert_int_eq(k, 10);
}
END_TEST

START_TEST(eval_matches_torchvision)
{
    int k;
    for (k = 0; has_case("eval", k); k++) {
        int h, w, c, s;
        int64_t np, shape[4], n, j;
        uint8_t *img = image(src_of("eval", k), &h, &w, &c);
        const uint8_t *imgs[1] = {img};
        int32_t hh[1] = {h}, ww[1] = {w};
        bt_config *cfg;
        bt_augment *a;
        bt_tensor *out;
        const float *want;
        char name[64], size[16];
        s = (int)param("eval", k, &np)[0];
        snprintf(size, sizeof size, "%d", s);
        ck_assert_int_eq(bt_config_create(&cfg), BT_OK);
        ck_assert_int_eq(bt_config_set(cfg, "aug.size", size), BT_OK);
        if (c == 1)
            ck_assert_int_eq(bt_config_set(cfg, "aug.preset", "fmnist"), BT_OK);
        ck_assert_int_eq(bt_augment_create(&a, cfg), BT_OK);
        shape[0] = 1, shape[1] = c, shape[2] = s, shape[3] = s;
        ck_assert_int_eq(bt_tensor_create(&out, 4, shape), BT_OK);
        ck_assert_msg(bt_augment_eval(a, 1, imgs, hh, ww, c, out) == BT_OK, "%s", bt_last_error());
        snprintf(name, sizeof name, "eval.%d.out", k);
        n = golden_numel(g, name);
        ck_assert_int_eq(n, bt_tensor_numel(out));
        want = golden_get(g, name, NULL, NULL);
        for (j = 0; j < n; j++)
            ck_assert_msg(bt_tensor_data(out)[j] == want[j], "eval case %d (S %d) element %d: %.9g vs %.9g",
                          k, s, (int)j, bt_tensor_data(out)[j], want[j]);
        bt_tensor_free(out);
        bt_augment_free(a);
        bt_config_free(cfg);
        free(img);
    }
    ck_assert_int_eq(k, 6);
}
END_TEST

/* ---- sampling statistics -------------------------------------------------- */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Kolmogorov-Smirnov distance of samples v[0..n-1] from U[lo, hi]. */
static double ks_uniform(double *v, int n, double lo, double hi)
{
    double d = 0;
    int i;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    for (i = 0; i < n; i++) {
        double f = (v[i] - lo) / (hi - lo);
        double a = fabs(f - (double)i / n), b = fabs((double)(i + 1) / n - f), m = fmax(a, b);
        /* not d = fmax(d, m): Debian 12's aarch64 gcc 12.2 -O2 dies vectorizing that reduction
           (internal compiler error in vect_transform_reduction); same result, d is never NaN */
        if (m > d)
            d = m;
    }
    return d;
}

/* KS critical value at significance 1e-4: sqrt(-ln(alpha/2)/2)/sqrt(n) = 2.2/sqrt(n). */
#define KS_CRIT(n) (2.23 / sqrt((double)(n)))

START_TEST(crop_area_and_log_ratio_are_uniform)
{
    enum { N = 20000 };
    /* an image so large that rounding w, h is negligible and with scale <= 0.5
     * no attempt is rejected: then area fraction and log aspect are exactly the
     * torchvision draws */
    const int side = 1 << 15;
    double *area = malloc(N * sizeof *area), *lr = malloc(N * sizeof *lr);
    const double llo = log(3.0 / 4), lhi = log(4.0 / 3);
    int i;
    for (i = 0; i < N; i++) {
        int32_t t, l, h, w;
        bti_aug_crop_params(bti_rng_key(5, 0, (uint64_t)i, 0), side, side, 0.08, 0.5, 3.0 / 4,
                            4.0 / 3, &t, &l, &h, &w);
        area[i] = (double)h * w / ((double)side * side);
        lr[i] = log((double)w / h);
        ck_assert(t >= 0 && l >= 0 && t + h <= side && l + w <= side);
    }
    ck_assert_double_lt(ks_uniform(area, N, 0.08, 0.5), KS_CRIT(N) + 1e-3);
    ck_assert_double_lt(ks_uniform(lr, N, llo, lhi), KS_CRIT(N) + 1e-3);
    /* the check can fail: the same samples are far from U[0.08, 0.6] */
    ck_assert_double_gt(ks_uniform(area, N, 0.08, 0.6), 5 * KS_CRIT(N));
    free(area);
    free(lr);
}
END_TEST

START_TEST(crop_offsets_are_uniform_and_inside)
{
    enum { N = 12000 };
    int i, hist[6] = {0};
    for (i = 0; i < N; i++) {
        int32_t t, l, h, w;
        /* fixed size crops: scale and ratio ranges pinned so w = h = 10 in a 15 x 10 image */
        bti_aug_crop_params(bti_rng_key(9, 1, (uint64_t)i, 1), 15, 10, 100.0 / 150, 100.0 / 150, 1,
                            1, &t, &l, &h, &w);
        ck_assert_int_eq(h, 10);
        ck_assert_int_eq(w, 10);
        ck_assert_int_eq(l, 0);
        ck_assert(t >= 0 && t <= 5);
        hist[t]++;
    }
    for (i = 0; i < 6; i++) /* binomial sd = sqrt(N p (1-p)) = 40.8; 5 sd */
        ck_assert_int_lt(abs(hist[i] - N / 6), 205);
}
END_TEST

START_TEST(probabilities_and_jitter_order)
{
    enum { N = 24000 };
    struct bti_aug_view v;
    int i, k, flips = 0, jit = 0, gray = 0, blur = 0, sol = 0, perm[24] = {0};
    double *sig = malloc(N * sizeof *sig), *fac[4], chi2 = 0;
    double lo[4] = {0.6, 0.6, 0.8, -0.1}, hi[4] = {1.4, 1.4, 1.2, 0.1};
    for (k = 0; k < 4; k++)
        fac[k] = malloc(N * sizeof *fac[k]);
    view_defaults(&v);
    v.flip_p = 0.5, v.jitter_p = 0.8, v.gray_p = 0.2, v.blur_p = 0.1, v.solarize_p = 0.2;
    for (i = 0; i < N; i++) {
        struct bti_aug_params p;
        int code = 0, used = 0;
        bti_aug_sample(&v, bti_rng_key(11, 3, (uint64_t)i, 1), 375, 500, &p);
        flips += p.flip, jit += p.jitter, gray += p.gray, blur += p.blur, sol += p.solarize;
        sig[i] = p.sigma;
        for (k = 0; k < 4; k++) {
            fac[k][i] = p.factor[k];
            ck_assert(p.has[k]);
        }
        /* rank the permutation (Lehmer code) */
        for (k = 0; k < 4; k++) {
            int j, smaller = 0;
            for (j = 0; j < p.order[k]; j++)
                smaller += !(used >> j & 1);
            used |= 1 << p.order[k];
            code = code * (4 - k) + smaller;
        }
        perm[code]++;
    }
#define BINOM_OK(count, p) (fabs((count) - N * (p)) < 5 * sqrt(N * (p) * (1 - (p))))
    ck_assert_msg(BINOM_OK(flips, 0.5), "flips %d", flips);
    ck_assert_msg(BINOM_OK(jit, 0.8), "jitter %d", jit);
    ck_assert_msg(BINOM_OK(gray, 0.2), "gray %d", gray);
    ck_assert_msg(BINOM_OK(blur, 0.1), "blur %d", blur);
    ck_assert_msg(BINOM_OK(sol, 0.2), "solarize %d", sol);
    ck_assert(!BINOM_OK(gray, 0.25)); /* the bound is tight enough to tell 0.2 from 0.25 */
    /* chi-square over the 24 orders, 23 degrees of freedom: P(chi2 > 62) ~ 2e-5 */
    for (k = 0; k < 24; k++)
        chi2 += (perm[k] - N / 24.0) * (perm[k] - N / 24.0) / (N / 24.0);
    ck_assert_msg(chi2 < 62, "chi2 %g", chi2);
    ck_assert_double_lt(ks_uniform(sig, N, 0.1, 2.0), KS_CRIT(N));
    for (k = 0; k < 4; k++)
        ck_assert_double_lt(ks_uniform(fac[k], N, lo[k], hi[k]), KS_CRIT(N));
    for (k = 0; k < 4; k++)
        free(fac[k]);
    free(sig);
}
END_TEST

START_TEST(zero_arguments_remove_jitter_ops)
{
    struct bti_aug_view v;
    struct bti_aug_params p;
    view_defaults(&v);
    v.saturation = 0;
    v.hue = 0;
    v.flip_p = 0, v.blur_p = 0, v.gray_p = 1, v.solarize_p = 1, v.jitter_p = 1;
    bti_aug_sample(&v, bti_rng_key(1, 2, 3, 4), 28, 28, &p);
    ck_assert(p.has[0] && p.has[1] && !p.has[2] && !p.has[3]);
    ck_assert(!p.flip && !p.blur && p.gray && p.solarize && p.jitter);
}
END_TEST

/* ---- the public API -------------------------------------------------------- */

enum { NI = 5 };
static uint8_t *pix[NI];
static int32_t hs[NI] = {375, 64, 29, 500, 31}, wsz[NI] = {500, 64, 37, 333, 17};

static void make_images(int c)
{
    int i;
    size_t k;
    for (i = 0; i < NI; i++) {
        size_t n = (size_t)hs[i] * wsz[i] * c;
        pix[i] = malloc(n);
        for (k = 0; k < n; k++)
            pix[i][k] = (uint8_t)((k * 2654435761u >> 13) ^ (k / (size_t)(wsz[i] * c)));
    }
}

static void free_images(void)
{
    int i;
    for (i = 0; i < NI; i++)
        free(pix[i]);
}

static bt_augment *make_aug(const char *preset, const char *threads, const char *seed)
{
    bt_config *cfg;
    bt_augment *a;
    ck_assert_int_eq(bt_config_create(&cfg), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.preset", preset), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "threads", threads), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "seed", seed), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.size", "48"), BT_OK);
    ck_assert_int_eq(bt_augment_create(&a, cfg), BT_OK);
    bt_config_free(cfg);
    return a;
}

static void make_out(bt_tensor **out, int n, int c, int s)
{
    int64_t shape[4] = {n, c, s, s};
    ck_assert_int_eq(bt_tensor_create(out, 4, shape), BT_OK);
}

START_TEST(same_bytes_for_any_thread_count)
{
    bt_augment *a1 = make_aug("imagenet", "1", "42"), *a2 = make_aug("imagenet", "2", "42");
    bt_tensor *o1[2], *o2[2];
    size_t bytes = (size_t)NI * 3 * 48 * 48 * sizeof(float);
    int call, v;
    make_images(3);
    for (v = 0; v < 2; v++) {
        make_out(&o1[v], NI, 3, 48);
        make_out(&o2[v], NI, 3, 48);
    }
    for (call = 0; call < 3; call++) {
        uint64_t calls;
        ck_assert_int_eq(bt_augment_views(a1, NI, (const uint8_t *const *)pix, hs, wsz, 3, 2, o1), BT_OK);
        ck_assert_int_eq(bt_augment_views(a2, NI, (const uint8_t *const *)pix, hs, wsz, 3, 2, o2), BT_OK);
        for (v = 0; v < 2; v++)
            ck_assert(memcmp(bt_tensor_data(o1[v]), bt_tensor_data(o2[v]), bytes) == 0);
        /* the two views differ */
        ck_assert(memcmp(bt_tensor_data(o1[0]), bt_tensor_data(o1[1]), bytes) != 0);
        ck_assert_int_eq(bt_augment_get_state(a1, NULL, &calls), BT_OK);
        ck_assert_int_eq((int)calls, call + 1);
    }
    for (v = 0; v < 2; v++) {
        bt_tensor_free(o1[v]);
        bt_tensor_free(o2[v]);
    }
    bt_augment_free(a1);
    bt_augment_free(a2);
    free_images();
}
END_TEST

START_TEST(state_replays_and_calls_differ)
{
    bt_augment *a = make_aug("imagenet", "2", "7");
    bt_tensor *o[2], *first;
    size_t bytes = (size_t)NI * 3 * 48 * 48 * sizeof(float);
    uint64_t seed, calls;
    float *keep = malloc(bytes);
    make_images(3);
    make_out(&o[0], NI, 3, 48);
    make_out(&o[1], NI, 3, 48);
    first = o[0];
    ck_assert_int_eq(bt_augment_views(a, NI, (const uint8_t *const *)pix, hs, wsz, 3, 2, o), BT_OK);
    memcpy(keep, bt_tensor_data(first), bytes);
    ck_assert_int_eq(bt_augment_views(a, NI, (const uint8_t *const *)pix, hs, wsz, 3, 2, o), BT_OK);
    ck_assert(memcmp(keep, bt_tensor_data(first), bytes) != 0); /* next call, new draws */
    ck_assert_int_eq(bt_augment_get_state(a, &seed, &calls), BT_OK);
    ck_assert(seed == 7 && calls == 2);
    ck_assert_int_eq(bt_augment_set_state(a, 7, 0), BT_OK);
    ck_assert_int_eq(bt_augment_views(a, NI, (const uint8_t *const *)pix, hs, wsz, 3, 2, o), BT_OK);
    ck_assert(memcmp(keep, bt_tensor_data(first), bytes) == 0); /* replayed */
    ck_assert_int_eq(bt_augment_set_state(a, 8, 0), BT_OK);
    ck_assert_int_eq(bt_augment_views(a, NI, (const uint8_t *const *)pix, hs, wsz, 3, 2, o), BT_OK);
    ck_assert(memcmp(keep, bt_tensor_data(first), bytes) != 0); /* another seed */
    ck_assert_int_eq(bt_augment_get_state(NULL, &seed, &calls), BT_E_MISUSE);
    ck_assert_int_eq(bt_augment_set_state(NULL, 1, 1), BT_E_MISUSE);
    bt_tensor_free(o[0]);
    bt_tensor_free(o[1]);
    bt_augment_free(a);
    free(keep);
    free_images();
}
END_TEST

START_TEST(views_are_normalised_and_follow_the_view_settings)
{
    bt_config *cfg;
    bt_augment *a;
    bt_tensor *o[3];
    int v, i;
    make_images(1);
    ck_assert_int_eq(bt_config_create(&cfg), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.preset", "fmnist"), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.view2.size", "20"), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "threads", "2"), BT_OK);
    ck_assert_int_eq(bt_augment_create(&a, cfg), BT_OK);
    bt_config_free(cfg);
    ck_assert_int_eq(bt_augment_output_size(a, 0), 28);
    ck_assert_int_eq(bt_augment_output_size(a, 1), 20);
    ck_assert_int_eq(bt_augment_output_size(a, 2), 20);
    ck_assert_int_eq(bt_augment_output_size(a, 8), -1);
    make_out(&o[0], NI, 1, 28);
    make_out(&o[1], NI, 1, 20);
    make_out(&o[2], NI, 1, 20);
    ck_assert_msg(bt_augment_views(a, NI, (const uint8_t *const *)pix, hs, wsz, 1, 3, o) == BT_OK,
                  "%s", bt_last_error());
    for (v = 0; v < 3; v++) {
        const float *d = bt_tensor_data(o[v]);
        for (i = 0; i < bt_tensor_numel(o[v]); i++) {
            /* every value is (u/255 - 0.2860)/0.3530 for a byte u */
            double u = (d[i] * 0.3530 + 0.2860) * 255;
            ck_assert_double_lt(fabs(u - floor(u + 0.5)), 1e-3);
            ck_assert(u > -0.01 && u < 255.01);
        }
    }
    /* the third view is another draw with view-2 settings */
    ck_assert(memcmp(bt_tensor_data(o[1]), bt_tensor_data(o[2]), (size_t)NI * 400 * sizeof(float)) != 0);
    for (v = 0; v < 3; v++)
        bt_tensor_free(o[v]);
    bt_augment_free(a);
    free_images();
}
END_TEST

START_TEST(bad_input_writes_nothing)
{
    bt_augment *a = make_aug("imagenet", "2", "1");
    bt_tensor *o[2], *bad, *gray[2];
    const uint8_t *imgs[NI];
    int32_t h2[NI], w2[NI];
    uint64_t calls;
    int i, v;
    make_images(3);
    for (i = 0; i < NI; i++)
        imgs[i] = pix[i], h2[i] = hs[i], w2[i] = wsz[i];
    make_out(&o[0], NI, 3, 48);
    make_out(&o[1], NI, 3, 48);
    make_out(&bad, NI, 3, 47);
    make_out(&gray[0], NI, 1, 48);
    make_out(&gray[1], NI, 1, 48);
    for (v = 0; v < 2; v++)
        for (i = 0; i < bt_tensor_numel(o[v]); i++)
            bt_tensor_data(o[v])[i] = 1234.5f;

    ck_assert_int_eq(bt_augment_views(NULL, NI, imgs, h2, w2, 3, 2, o), BT_E_MISUSE);
    ck_assert_int_eq(bt_augment_views(a, 0, imgs, h2, w2, 3, 2, o), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_augment_views(a, NI, NULL, h2, w2, 3, 2, o), BT_E_MISUSE);
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, NULL, w2, 3, 2, o), BT_E_MISUSE);
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, NULL, 3, 2, o), BT_E_MISUSE);
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 2, 2, o), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "channels is 2"));
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 0, o), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 9, o), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 2, NULL), BT_E_MISUSE);
    imgs[3] = NULL;
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 2, o), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "images[3]"));
    imgs[3] = pix[3];
    h2[2] = 0;
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 2, o), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "image 2 is 0 x 37"));
    h2[2] = hs[2];
    w2[4] = 40000;
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 2, o), BT_E_INVALID_ARG);
    w2[4] = wsz[4];
    {
        bt_tensor *mixed[2] = {o[0], bad};
        bt_tensor *same[2] = {o[0], o[0]};
        ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 2, mixed), BT_E_SHAPE);
        ck_assert_ptr_nonnull(strstr(bt_last_error(), "out[1] has shape [5, 3, 47, 47]"));
        ck_assert_int_eq(bt_augment_views(a, NI - 1, imgs, h2, w2, 3, 2, o), BT_E_SHAPE);
        ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 2, same), BT_E_INVALID_ARG);
        /* imagenet's 3-value mean cannot normalise 1-channel images */
        ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 1, 2, gray), BT_E_INVALID_ARG);
        ck_assert_ptr_nonnull(strstr(bt_last_error(), "1 channel"));
        ck_assert_int_eq(bt_augment_eval(a, NI, imgs, h2, w2, 1, gray[0]), BT_E_INVALID_ARG);
        ck_assert_int_eq(bt_augment_eval(a, NI, imgs, h2, w2, 3, bad), BT_E_SHAPE);
    }
    bt_tensor_free(bad);
    ck_assert_int_eq(bt_augment_views(a, NI, imgs, h2, w2, 3, 2, (bt_tensor *const[]){o[0], bad}),
                     BT_E_MISUSE); /* freed tensor */
    for (v = 0; v < 2; v++)
        for (i = 0; i < bt_tensor_numel(o[v]); i++)
            ck_assert(bt_tensor_data(o[v])[i] == 1234.5f);
    ck_assert_int_eq(bt_augment_get_state(a, NULL, &calls), BT_OK);
    ck_assert(calls == 0);
    ck_assert_int_eq(bt_augment_output_size(NULL, 0), -1);
    bt_tensor_free(o[0]);
    bt_tensor_free(o[1]);
    bt_tensor_free(gray[0]);
    bt_tensor_free(gray[1]);
    bt_augment_free(a);
    bt_augment_free(NULL);
    free_images();
}
END_TEST

/* Copies of the packed images in layout `format` with rows `pad` bytes longer. */
static uint8_t **relayout(int c, int format, int pad, int64_t *strides)
{
    uint8_t **out = malloc(NI * sizeof *out);
    int bpp = format == BT_PIXELS_GRAY ? 1 : format == BT_PIXELS_RGB || format == BT_PIXELS_BGR ? 3 : 4;
    int bgr = format == BT_PIXELS_BGR || format == BT_PIXELS_BGRA;
    int i, y, x, k;
    for (i = 0; i < NI; i++) {
        strides[i] = (int64_t)wsz[i] * bpp + pad;
        out[i] = malloc((size_t)strides[i] * hs[i]);
        memset(out[i], 0xA5, (size_t)strides[i] * hs[i]); /* padding and alpha: noise */
        for (y = 0; y < hs[i]; y++)
            for (x = 0; x < wsz[i]; x++)
                for (k = 0; k < c; k++) {
                    int to = bgr && c == 3 ? 2 - k : k;
                    out[i][(size_t)y * strides[i] + (size_t)x * bpp + to] =
                        pix[i][((size_t)y * wsz[i] + x) * c + k];
                }
    }
    return out;
}

START_TEST(strided_layouts_give_the_packed_views)
{
    static const int formats[] = {BT_PIXELS_RGB, BT_PIXELS_BGR, BT_PIXELS_RGBA, BT_PIXELS_BGRA,
                                  BT_PIXELS_GRAY};
    int f;
    for (f = 0; f < 5; f++) {
        const int c = formats[f] == BT_PIXELS_GRAY ? 1 : 3;
        bt_augment *a = make_aug(c == 1 ? "fmnist" : "imagenet", "2", "5");
        bt_tensor *want[2], *got[2], *ew, *eg;
        size_t bytes = (size_t)NI * c * 48 * 48 * sizeof(float);
        int64_t strides[NI];
        uint8_t **img;
        int call, v, i;
        make_images(c);
        img = relayout(c, formats[f], 13, strides);
        for (v = 0; v < 2; v++) {
            make_out(&want[v], NI, c, 48);
            make_out(&got[v], NI, c, 48);
        }
        make_out(&ew, NI, c, 48);
        make_out(&eg, NI, c, 48);
        for (call = 0; call < 3; call++) {
            ck_assert_int_eq(bt_augment_set_state(a, 5, (uint64_t)call), BT_OK);
            ck_assert_int_eq(bt_augment_views(a, NI, (const uint8_t *const *)pix, hs, wsz, c, 2, want),
                             BT_OK);
            ck_assert_int_eq(bt_augment_set_state(a, 5, (uint64_t)call), BT_OK);
            ck_assert_int_eq(bt_augment_views_at(a, 0, NI, (const uint8_t *const *)img, hs, wsz,
                                                 strides, formats[f], 2, got),
                             BT_OK);
            for (v = 0; v < 2; v++)
                ck_assert_msg(memcmp(bt_tensor_data(want[v]), bt_tensor_data(got[v]), bytes) == 0,
                              "format %d call %d view %d differs from the packed copy's",
                              formats[f], call, v);
        }
        ck_assert_int_eq(bt_augment_eval(a, NI, (const uint8_t *const *)pix, hs, wsz, c, ew), BT_OK);
        ck_assert_int_eq(bt_augment_eval_ex(a, NI, (const uint8_t *const *)img, hs, wsz, strides,
                                            formats[f], eg),
                         BT_OK);
        ck_assert_msg(memcmp(bt_tensor_data(ew), bt_tensor_data(eg), bytes) == 0,
                      "format %d: eval differs from the packed copy's", formats[f]);
        for (v = 0; v < 2; v++) {
            bt_tensor_free(want[v]);
            bt_tensor_free(got[v]);
        }
        bt_tensor_free(ew);
        bt_tensor_free(eg);
        for (i = 0; i < NI; i++)
            free(img[i]);
        free(img);
        bt_augment_free(a);
        free_images();
    }
}
END_TEST

/* Two pipelines (two ranks) each augmenting their slice of the batch in the same call
 * make the views one pipeline makes for the whole batch. */
START_TEST(slices_at_their_global_index_equal_one_call)
{
    bt_augment *one = make_aug("imagenet", "2", "9"), *r0 = make_aug("imagenet", "1", "9"),
               *r1 = make_aug("imagenet", "2", "9");
    const int k = 2; /* rank 0 holds images [0, 2), rank 1 [2, NI) */
    bt_tensor *all[2], *s0[2], *s1[2];
    size_t plane = (size_t)3 * 48 * 48;
    int call, v;
    make_images(3);
    for (v = 0; v < 2; v++) {
        make_out(&all[v], NI, 3, 48);
        make_out(&s0[v], k, 3, 48);
        make_out(&s1[v], NI - k, 3, 48);
    }
    for (call = 0; call < 2; call++) {
        ck_assert_int_eq(bt_augment_views(one, NI, (const uint8_t *const *)pix, hs, wsz, 3, 2, all),
                         BT_OK);
        ck_assert_int_eq(bt_augment_views_at(r0, 0, k, (const uint8_t *const *)pix, hs, wsz, NULL,
                                             BT_PIXELS_RGB, 2, s0),
                         BT_OK);
        ck_assert_int_eq(bt_augment_views_at(r1, k, NI - k, (const uint8_t *const *)pix + k, hs + k,
                                             wsz + k, NULL, BT_PIXELS_RGB, 2, s1),
                         BT_OK);
        for (v = 0; v < 2; v++) {
            ck_assert(memcmp(bt_tensor_data(all[v]), bt_tensor_data(s0[v]),
                             k * plane * sizeof(float)) == 0);
            ck_assert(memcmp(bt_tensor_data(all[v]) + k * plane, bt_tensor_data(s1[v]),
                             (NI - k) * plane * sizeof(float)) == 0);
        }
    }
    /* the index, not the place in the call, keys the draws: image 2 first in a call of
       its own at index 0 is drawn differently */
    ck_assert_int_eq(bt_augment_set_state(r1, 9, 0), BT_OK);
    ck_assert_int_eq(bt_augment_views_at(r1, 0, NI - k, (const uint8_t *const *)pix + k, hs + k,
                                         wsz + k, NULL, BT_PIXELS_RGB, 2, s1),
                     BT_OK);
    ck_assert_int_eq(bt_augment_set_state(one, 9, 0), BT_OK);
    ck_assert_int_eq(bt_augment_views(one, NI, (const uint8_t *const *)pix, hs, wsz, 3, 2, all),
                     BT_OK);
    ck_assert(memcmp(bt_tensor_data(all[0]) + k * plane, bt_tensor_data(s1[0]),
                     plane * sizeof(float)) != 0);
    for (v = 0; v < 2; v++) {
        bt_tensor_free(all[v]);
        bt_tensor_free(s0[v]);
        bt_tensor_free(s1[v]);
    }
    bt_augment_free(one);
    bt_augment_free(r0);
    bt_augment_free(r1);
    free_images();
}
END_TEST

START_TEST(bad_layouts_write_nothing)
{
    bt_augment *a = make_aug("imagenet", "2", "1");
    bt_tensor *o[2];
    int64_t strides[NI];
    uint64_t calls;
    uint8_t **img;
    int i, v;
    make_images(3);
    img = relayout(3, BT_PIXELS_BGRA, 0, strides);
    make_out(&o[0], NI, 3, 48);
    make_out(&o[1], NI, 3, 48);
    for (v = 0; v < 2; v++)
        for (i = 0; i < bt_tensor_numel(o[v]); i++)
            bt_tensor_data(o[v])[i] = 1234.5f;
    ck_assert_int_eq(bt_augment_views_at(a, -1, NI, (const uint8_t *const *)img, hs, wsz, strides,
                                         BT_PIXELS_BGRA, 2, o),
                     BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "first_index is -1"));
    ck_assert_int_eq(bt_augment_views_at(a, 0, NI, (const uint8_t *const *)img, hs, wsz, strides,
                                         2, 2, o),
                     BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "pixel format is 2"));
    strides[3]--;
    ck_assert_int_eq(bt_augment_views_at(a, 0, NI, (const uint8_t *const *)img, hs, wsz, strides,
                                         BT_PIXELS_BGRA, 2, o),
                     BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "strides[3] is 1331 bytes"));
    ck_assert_int_eq(bt_augment_eval_ex(a, NI, (const uint8_t *const *)img, hs, wsz, strides,
                                        BT_PIXELS_BGRA, o[0]),
                     BT_E_INVALID_ARG);
    strides[3]++;
    /* a grey layout gives 1-channel views: 3-channel outputs are the wrong shape */
    ck_assert_int_eq(bt_augment_views_at(a, 0, NI, (const uint8_t *const *)img, hs, wsz, NULL,
                                         BT_PIXELS_GRAY, 2, o),
                     BT_E_SHAPE);
    ck_assert_int_eq(bt_augment_views_at(NULL, 0, NI, (const uint8_t *const *)img, hs, wsz,
                                         strides, BT_PIXELS_BGRA, 2, o),
                     BT_E_MISUSE);
    for (v = 0; v < 2; v++)
        for (i = 0; i < bt_tensor_numel(o[v]); i++)
            ck_assert(bt_tensor_data(o[v])[i] == 1234.5f);
    ck_assert_int_eq(bt_augment_get_state(a, NULL, &calls), BT_OK);
    ck_assert(calls == 0);
    bt_tensor_free(o[0]);
    bt_tensor_free(o[1]);
    for (i = 0; i < NI; i++)
        free(img[i]);
    free(img);
    bt_augment_free(a);
    free_images();
}
END_TEST

START_TEST(create_validates_options)
{
    bt_config *cfg;
    bt_augment *a = (bt_augment *)&a;
    ck_assert_int_eq(bt_augment_create(NULL, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_config_create(&cfg), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.view2.scale_min", "0.9"), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.scale_max", "0.5"), BT_OK);
    ck_assert_int_eq(bt_augment_create(&a, cfg), BT_E_INVALID_ARG);
    ck_assert_ptr_null(a);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "aug.view2.scale_min"));
    ck_assert_int_eq(bt_config_set(cfg, "aug.view2.scale_min", NULL), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.mean", "0.5,0.5"), BT_OK);
    ck_assert_int_eq(bt_augment_create(&a, cfg), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_config_set(cfg, "aug.mean", "0.5"), BT_OK);
    ck_assert_int_eq(bt_augment_create(&a, cfg), BT_OK);
    bt_augment_free(a);
    ck_assert_int_eq(bt_augment_create(&a, NULL), BT_OK); /* defaults */
    ck_assert_int_eq(bt_augment_output_size(a, 0), 224);
    bt_augment_free(a);
    ck_assert_int_eq(bt_augment_create(&a, (const bt_config *)&cfg), BT_E_MISUSE);
    bt_config_free(cfg);
}
END_TEST

START_TEST(one_value_mean_normalises_rgb)
{
    bt_config *cfg;
    bt_augment *a;
    bt_tensor *o;
    const uint8_t *imgs[1];
    int32_t h = 8, w = 8;
    uint8_t px[8 * 8 * 3];
    int i;
    for (i = 0; i < 8 * 8 * 3; i++)
        px[i] = (uint8_t)(i % 3 == 0 ? 255 : i % 3 == 1 ? 0 : 51);
    imgs[0] = px;
    ck_assert_int_eq(bt_config_create(&cfg), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.size", "4"), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.mean", "0.5"), BT_OK);
    ck_assert_int_eq(bt_config_set(cfg, "aug.std", "0.25"), BT_OK);
    ck_assert_int_eq(bt_augment_create(&a, cfg), BT_OK);
    make_out(&o, 1, 3, 4);
    ck_assert_int_eq(bt_augment_eval(a, 1, imgs, &h, &w, 3, o), BT_OK);
    for (i = 0; i < 16; i++) { /* constant channels survive the resize exactly */
        ck_assert_float_eq(bt_tensor_data(o)[i], (1.0f - 0.5f) / 0.25f);
        ck_assert_float_eq(bt_tensor_data(o)[16 + i], (0.0f - 0.5f) / 0.25f);
        ck_assert_float_eq(bt_tensor_data(o)[32 + i], (51 / 255.0f - 0.5f) / 0.25f);
    }
    bt_tensor_free(o);
    bt_augment_free(a);
    bt_config_free(cfg);
}
END_TEST

Suite *augment_suite(void)
{
    Suite *s = suite_create("augment");
    TCase *ops = tcase_create("ops");
    TCase *stats = tcase_create("sampling");
    TCase *api = tcase_create("api");
    tcase_add_checked_fixture(ops, setup, teardown);
    tcase_add_test(ops, blend_ops_match_pil);
    tcase_add_test(ops, hue_matches_pil);
    tcase_add_test(ops, gray_solarize_flip_match_pil);
    tcase_add_test(ops, blur_matches_pil);
    tcase_add_test(ops, blur_wide_radius_matches_pillow_passes);
    tcase_add_test(ops, resize_matches_pil);
    tcase_add_test(ops, crop_fallback_matches_torchvision);
    tcase_add_test(ops, pipeline_matches_torchvision);
    tcase_add_test(ops, eval_matches_torchvision);
    tcase_add_test(stats, crop_area_and_log_ratio_are_uniform);
    tcase_add_test(stats, crop_offsets_are_uniform_and_inside);
    tcase_add_test(stats, probabilities_and_jitter_order);
    tcase_add_test(stats, zero_arguments_remove_jitter_ops);
    tcase_add_test(api, same_bytes_for_any_thread_count);
    tcase_add_test(api, state_replays_and_calls_differ);
    tcase_add_test(api, views_are_normalised_and_follow_the_view_settings);
    tcase_add_test(api, bad_input_writes_nothing);
    tcase_add_test(api, strided_layouts_give_the_packed_views);
    tcase_add_test(api, slices_at_their_global_index_equal_one_call);
    tcase_add_test(api, bad_layouts_write_nothing);
    tcase_add_test(api, create_validates_options);
    tcase_add_test(api, one_value_mean_normalises_rgb);
    tcase_set_timeout(stats, 60);
    tcase_set_timeout(api, 60);
    suite_add_tcase(s, ops);
    suite_add_tcase(s, stats);
    suite_add_tcase(s, api);
    return s;
}
