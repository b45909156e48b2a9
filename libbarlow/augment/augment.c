/* augment.c - the bt_augment handle: reads the aug.* options per view, draws
 * every random parameter from the counter-based generator keyed by (seed,
 * call number, image index, view), and runs the official pipeline over images
 * in parallel:
 *
 *   RandomResizedCrop -> horizontal flip -> colour jitter (random order of
 *   brightness, contrast, saturation, hue) -> grayscale -> PIL Gaussian blur
 *   -> solarize -> /255 -> normalise
 *
 * Every parameter of a task (one view of one image) is drawn before any pixel
 * work, from its own stream, so the bytes produced do not depend on the thread
 * count or on scheduling. All validation and allocation happens before the
 * first output byte is written. */
#include "augment/augment.h"
#include "common/cpu.h"
#include "common/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

struct bt_augment {
    struct bti_aug_view view[2];
    float lut[2][3][256]; /* uint8 -> (u/255 - mean) / std per view and channel, float32 */
    uint64_t seed, calls;
    int threads;
    int level; /* CPU level (common/cpu.h) */
    struct bti_buffer params; /* struct bti_aug_params: one per task of the current call */
    struct bti_buffer *ws;    /* one workspace per thread */
    char *eval_options;       /* the evaluation view's options, for checkpoints */
};

static double uni(uint64_t key, uint64_t ctr) { return bti_rng_uniform(key, ctr); }

/* ---- sampling ------------------------------------------------------------- */

void bti_aug_crop_params(uint64_t key, int height, int width, double scale_lo, double scale_hi,
                         double ratio_lo, double ratio_hi, int32_t *top, int32_t *left, int32_t *h,
                         int32_t *w)
{
    double area = (double)height * (double)width;
    double llo = log(ratio_lo), lhi = log(ratio_hi), in_ratio;
    int attempt;
    for (attempt = 0; attempt < 10; attempt++) {
        double target = area * (scale_lo + (scale_hi - scale_lo) * uni(key, BTI_AUG_CTR_CROP + 2 * attempt));
        double aspect = exp(llo + (lhi - llo) * uni(key, BTI_AUG_CTR_CROP + 2 * attempt + 1));
        /* Python's round(): half to even, which rint does in the default mode */
        double wd = rint(sqrt(target * aspect)), hd = rint(sqrt(target / aspect));
        if (wd > 0 && wd <= width && hd > 0 && hd <= height) {
            *w = (int32_t)wd;
            *h = (int32_t)hd;
            *top = (int32_t)bti_rng_below(key, BTI_AUG_CTR_OFFSET, (uint64_t)(height - *h + 1));
            *left = (int32_t)bti_rng_below(key, BTI_AUG_CTR_OFFSET + 1, (uint64_t)(width - *w + 1));
            return;
        }
    }
    /* fallback: the whole image, clamped to the ratio range, centred */
    in_ratio = (double)width / (double)height;
    if (in_ratio < ratio_lo) {
        *w = width;
        *h = (int32_t)rint(width / ratio_lo);
    } else if (in_ratio > ratio_hi) {
        *h = height;
        *w = (int32_t)rint(height * ratio_hi);
    } else {
        *w = width;
        *h = height;
    }
    *top = (height - *h) / 2;
    *left = (width - *w) / 2;
}

void bti_aug_sample(const struct bti_aug_view *v, uint64_t key, int height, int width,
                    struct bti_aug_params *p)
{
    const double arg[4] = {v->brightness, v->contrast, v->saturation, v->hue};
    int k;
    bti_aug_crop_params(key, height, width, v->scale_lo, v->scale_hi, v->ratio_lo, v->ratio_hi,
                        &p->top, &p->left, &p->height, &p->width);
    p->flip = uni(key, BTI_AUG_CTR_FLIP) < v->flip_p;
    p->jitter = uni(key, BTI_AUG_CTR_JITTER) < v->jitter_p;
    for (k = 0; k < 4; k++)
        p->order[k] = k;
    for (k = 3; k > 0; k--) { /* Fisher-Yates: uniform over the 24 orders */
        int j = (int)bti_rng_below(key, BTI_AUG_CTR_PERM + (uint64_t)(3 - k), (uint64_t)k + 1);
        int t = p->order[k];
        p->order[k] = p->order[j];
        p->order[j] = t;
    }
    for (k = 0; k < 4; k++) {
        double u = uni(key, BTI_AUG_CTR_FACTOR + (uint64_t)k), lo, hi;
        /* torchvision's _check_input: a zero argument removes the operation */
        p->has[k] = arg[k] > 0;
        if (k < 3) {
            lo = 1 - arg[k] > 0 ? 1 - arg[k] : 0;
            hi = 1 + arg[k];
        } else {
            lo = -arg[k];
            hi = arg[k];
        }
        p->factor[k] = lo + (hi - lo) * u;
    }
    p->gray = uni(key, BTI_AUG_CTR_GRAY) < v->gray_p;
    p->blur = uni(key, BTI_AUG_CTR_BLUR) < v->blur_p;
    p->sigma = 0.1 + 1.9 * uni(key, BTI_AUG_CTR_SIGMA); /* official: random.random() * 1.9 + 0.1 */
    p->solarize = uni(key, BTI_AUG_CTR_SOLARIZE) < v->solarize_p;
}

/* ---- creation ------------------------------------------------------------- */

static bt_status read_view(const bt_config *cfg, int vi, struct bti_aug_view *v)
{
    static const char *const reals[] = {"scale_min", "scale_max", "ratio_min", "ratio_max",
                                        "flip_p",    "jitter_p",  "gray_p",    "blur_p",
                                        "solarize_p", "brightness", "contrast", "saturation",
                                        "hue"};
    double *const dst[] = {&v->scale_lo, &v->scale_hi, &v->ratio_lo, &v->ratio_hi,
                           &v->flip_p,   &v->jitter_p, &v->gray_p,   &v->blur_p,
                           &v->solarize_p, &v->brightness, &v->contrast, &v->saturation,
                           &v->hue};
    char name[64];
    const char *interp;
    int64_t size;
    size_t i;
    bt_status st;
    snprintf(name, sizeof name, "aug.view%d.size", vi);
    if ((st = bti_config_int(cfg, name, &size)) != BT_OK)
        return st;
    v->size = (int)size;
    for (i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        snprintf(name, sizeof name, "aug.view%d.%s", vi, reals[i]);
        if ((st = bti_config_real(cfg, name, dst[i])) != BT_OK)
            return st;
    }
    snprintf(name, sizeof name, "aug.view%d.interpolation", vi);
    if ((st = bti_config_text(cfg, name, &interp)) != BT_OK)
        return st;
    v->bicubic = strcmp(interp, "bilinear") != 0;
    snprintf(name, sizeof name, "aug.view%d.mean", vi);
    if ((st = bti_config_real_list(cfg, name, v->mean, 3, &v->nmean)) != BT_OK)
        return st;
    snprintf(name, sizeof name, "aug.view%d.std", vi);
    if ((st = bti_config_real_list(cfg, name, v->std, 3, &v->nstd)) != BT_OK)
        return st;

    if (v->scale_lo > v->scale_hi)
        return bti_fail(BT_E_INVALID_ARG,
                        "bt_augment_create: aug.view%d.scale_min %g > aug.view%d.scale_max %g", vi,
                        v->scale_lo, vi, v->scale_hi);
    if (v->ratio_lo > v->ratio_hi)
        return bti_fail(BT_E_INVALID_ARG,
                        "bt_augment_create: aug.view%d.ratio_min %g > aug.view%d.ratio_max %g", vi,
                        v->ratio_lo, vi, v->ratio_hi);
    if (v->nmean == 2 || v->nstd == 2)
        return bti_fail(BT_E_INVALID_ARG,
                        "bt_augment_create: aug.view%d.mean has %d and aug.view%d.std has %d "
                        "values; each needs 1 (all channels) or 3 (R, G, B)",
                        vi, v->nmean, vi, v->nstd);
    return BT_OK;
}

void bti_aug_lut(const struct bti_aug_view *v, float lut[3][256])
{
    int c, u;
    for (c = 0; c < 3; c++) {
        float m = (float)v->mean[v->nmean == 3 ? c : 0], s = (float)v->std[v->nstd == 3 ? c : 0];
        /* torchvision: to_tensor divides by 255 in float32, Normalize subtracts
         * and divides by float32 mean and std */
        for (u = 0; u < 256; u++)
            lut[c][u] = ((float)u / 255.0f - m) / s;
    }
}

/* What bt_augment_eval reads: view 1's side and normalisation. */
static const char *const eval_names[] = {"aug.view1.size", "aug.view1.mean", "aug.view1.std", NULL};

bt_status bt_augment_create(bt_augment **out, const bt_config *cfg)
{
    bt_config *own = NULL;
    bt_augment *a;
    int64_t seed;
    bt_status st;
    int v;
    if (!out)
        return bti_fail(BT_E_MISUSE, "bt_augment_create: out is NULL");
    *out = NULL;
    if (cfg && (st = bti_check(cfg, BTI_KIND_CONFIG, "bt_augment_create", "cfg")) != BT_OK)
        return st;
    a = bti_calloc(1, sizeof *a);
    if (!a)
        return bti_fail(BT_E_NOMEM, "bt_augment_create: out of memory");
    if (!cfg) {
        if ((st = bt_config_create(&own)) != BT_OK)
            goto fail;
        cfg = own;
    }
    for (v = 0; v < 2 && (st = read_view(cfg, v + 1, &a->view[v])) == BT_OK; v++)
        bti_aug_lut(&a->view[v], a->lut[v]);
    if (st != BT_OK || (st = bti_config_int(cfg, "seed", &seed)) != BT_OK)
        goto fail;
    a->seed = (uint64_t)seed;
    if ((st = bti_config_lines(cfg, NULL, eval_names, "bt_augment_create", &a->eval_options)) !=
        BT_OK)
        goto fail;
    a->threads = bti_threads_resolve(own ? NULL : cfg);
    if ((st = bti_cpu_resolve(own ? NULL : cfg, &a->level, "bt_augment_create")) != BT_OK)
        goto fail;
    a->ws = bti_calloc((size_t)a->threads, sizeof *a->ws);
    if (!a->ws) {
        st = bti_fail(BT_E_NOMEM, "bt_augment_create: out of memory");
        goto fail;
    }
    if ((st = bti_handle_add(a, BTI_KIND_AUGMENT)) != BT_OK)
        goto fail;
    bt_config_free(own);
    *out = a;
    return BT_OK;
fail:
    bt_config_free(own);
    bti_free(a->eval_options);
    bti_free(a->ws);
    bti_free(a);
    return st;
}

void bt_augment_free(bt_augment *a)
{
    int t;
    if (!a || !bti_handle_is(a, BTI_KIND_AUGMENT))
        return;
    bti_handle_remove(a);
    for (t = 0; t < a->threads; t++)
        bti_buffer_release(&a->ws[t]);
    bti_free(a->ws);
    bti_buffer_release(&a->params);
    bti_free(a->eval_options);
    bti_free(a);
}

const char *bti_augment_eval_options(const bt_augment *a) { return a->eval_options; }

bt_status bt_augment_get_state(const bt_augment *a, uint64_t *seed, uint64_t *calls)
{
    bt_status st = bti_check(a, BTI_KIND_AUGMENT, "bt_augment_get_state", "a");
    if (st != BT_OK)
        return st;
    if (seed)
        *seed = a->seed;
    if (calls)
        *calls = a->calls;
    return BT_OK;
}

bt_status bt_augment_set_state(bt_augment *a, uint64_t seed, uint64_t calls)
{
    bt_status st = bti_check(a, BTI_KIND_AUGMENT, "bt_augment_set_state", "a");
    if (st != BT_OK)
        return st;
    a->seed = seed;
    a->calls = calls;
    return BT_OK;
}

int32_t bt_augment_output_size(const bt_augment *a, int32_t view)
{
    if (bti_check(a, BTI_KIND_AUGMENT, "bt_augment_output_size", "a") != BT_OK)
        return -1;
    if (view < 0 || view >= BTI_AUG_MAX_VIEWS) {
        bti_fail(BT_E_INVALID_ARG, "bt_augment_output_size: view is %d; it must be 0..%d",
                 (int)view, BTI_AUG_MAX_VIEWS - 1);
        return -1;
    }
    return a->view[view ? 1 : 0].size;
}

/* ---- validation shared by views and eval ------------------------------------ */

/* The images of one call as the host holds them. */
struct pixels {
    const uint8_t *const *images;
    const int32_t *heights, *widths;
    const int64_t *strides; /* NULL: rows packed */
    int bpp, bgr;           /* bytes per pixel of the layout, blue first */
    int32_t channels;       /* of the output: 1 for grey, else 3 */
};

BTI_INLINE static struct bti_aug_src src_of(const struct pixels *px, int32_t i)
{
    struct bti_aug_src s;
    s.px = px->images[i];
    s.stride = px->strides ? (size_t)px->strides[i] : (size_t)px->widths[i] * (size_t)px->bpp;
    s.bpp = px->bpp;
    s.bgr = px->bgr;
    return s;
}

static bt_status check_images(const char *fn, int32_t n, const uint8_t *const *images,
                              const int32_t *heights, const int32_t *widths,
                              const int64_t *strides, int32_t format, struct pixels *px)
{
    int32_t i;
    if (n < 1)
        return bti_fail(BT_E_INVALID_ARG, "%s: n is %d; it must be >= 1", fn, (int)n);
    if (!images)
        return bti_fail(BT_E_MISUSE, "%s: images is NULL", fn);
    if (!heights)
        return bti_fail(BT_E_MISUSE, "%s: heights is NULL", fn);
    if (!widths)
        return bti_fail(BT_E_MISUSE, "%s: widths is NULL", fn);
    px->bgr = format == BT_PIXELS_BGR || format == BT_PIXELS_BGRA;
    if (format == BT_PIXELS_GRAY || format == BT_PIXELS_RGB || format == BT_PIXELS_BGR)
        px->bpp = format == BT_PIXELS_GRAY ? 1 : 3;
    else if (format == BT_PIXELS_RGBA || format == BT_PIXELS_BGRA)
        px->bpp = 4;
    else
        return bti_fail(BT_E_INVALID_ARG,
                        "%s: pixel format is %d; it must be BT_PIXELS_GRAY (1), _RGB (3), _BGR "
                        "(%d), _RGBA (%d) or _BGRA (%d)",
                        fn, (int)format, BT_PIXELS_BGR, BT_PIXELS_RGBA, BT_PIXELS_BGRA);
    px->channels = px->bpp == 1 ? 1 : 3;
    for (i = 0; i < n; i++) {
        if (!images[i])
            return bti_fail(BT_E_MISUSE, "%s: images[%d] is NULL", fn, (int)i);
        if (heights[i] < 1 || heights[i] > BTI_AUG_MAX_SIDE || widths[i] < 1 ||
            widths[i] > BTI_AUG_MAX_SIDE)
            return bti_fail(BT_E_INVALID_ARG,
                            "%s: image %d is %d x %d (height x width); each side must be 1..%d",
                            fn, (int)i, (int)heights[i], (int)widths[i], BTI_AUG_MAX_SIDE);
        if (strides && strides[i] < (int64_t)widths[i] * px->bpp)
            return bti_fail(BT_E_INVALID_ARG,
                            "%s: strides[%d] is %lld bytes; image %d is %d pixels of %d bytes "
                            "wide, so it must be >= %lld",
                            fn, (int)i, (long long)strides[i], (int)i, (int)widths[i], px->bpp,
                            (long long)widths[i] * px->bpp);
    }
    px->images = images;
    px->heights = heights;
    px->widths = widths;
    px->strides = strides;
    return BT_OK;
}

static bt_status check_norm(const char *fn, const struct bti_aug_view *v, int vi, int32_t channels)
{
    if (channels == 1 && (v->nmean != 1 || v->nstd != 1))
        return bti_fail(BT_E_INVALID_ARG,
                        "%s: the images have 1 channel but aug.view%d.mean has %d values and "
                        "aug.view%d.std %d; set one value each (e.g. aug.preset fmnist)",
                        fn, vi, v->nmean, vi, v->nstd);
    return BT_OK;
}

static bt_status check_out(const char *fn, const char *arg, const bt_tensor *t, int32_t n,
                           int32_t channels, int size)
{
    int64_t want[4] = {n, channels, size, size};
    char a[64], b[64];
    bt_status st = bti_check(t, BTI_KIND_TENSOR, fn, arg);
    if (st != BT_OK)
        return st;
    if (!bti_tensor_has_shape(t, 4, want))
        return bti_fail(BT_E_SHAPE, "%s: %s has shape %s; it must be %s ([n, channels, S, S])",
                        fn, arg, bti_shape_str(t, a, sizeof a), bti_dims_str(4, want, b, sizeof b));
    return BT_OK;
}

/* Make every thread's workspace hold `need` bytes (before any output is written). */
static bt_status ensure_ws(bt_augment *a, int nt, size_t need, const char *fn)
{
    bt_status st = BT_OK;
    int t;
    for (t = 0; t < nt && st == BT_OK; t++)
        st = bti_buffer_reserve(&a->ws[t], need, 1, fn);
    return st;
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static void to_float(const uint8_t *img, int s, int c, const float (*lut)[256], float *dst)
{
    size_t plane = (size_t)s * s, k;
    int ch;
    for (ch = 0; ch < c; ch++) {
        const float *l = lut[ch];
        float *o = dst + (size_t)ch * plane;
        for (k = 0; k < plane; k++)
            o[k] = l[img[k * c + ch]];
    }
}

/* ---- views ------------------------------------------------------------------ */

size_t bti_aug_task_ws(const struct bti_aug_view *v, const struct bti_aug_params *p, int bpp)
{
    size_t s = (size_t)v->size;
    size_t blur = bti_blur_ws_bytes(v->size, v->size, bpp, (float)p->sigma);
    return ((s * s * bpp + 63) & ~(size_t)63) + ((blur + 63) & ~(size_t)63) +
           bti_resample_ws_bytes(p->width, p->height, v->size, v->size, v->size, v->size, bpp,
                                 v->bicubic);
}

/* npix pixels of bpp bytes (blue first if bgr) to packed R, G, B, in place. Resampling
 * treats channels alike, so resampling first and reordering after gives the same bytes
 * as resampling the RGB copy. */
static void to_rgb(uint8_t *px, size_t npix, int bpp, int bgr)
{
    size_t k;
    if (bpp == 1 || (bpp == 3 && !bgr))
        return;
    for (k = 0; k < npix; k++) {
        const uint8_t *i = px + k * (size_t)bpp;
        uint8_t r = i[bgr ? 2 : 0], g = i[1], b = i[bgr ? 0 : 2];
        px[3 * k] = r;
        px[3 * k + 1] = g;
        px[3 * k + 2] = b;
    }
}

void bti_aug_run(const struct bti_aug_view *v, const float (*lut)[256],
                 const struct bti_aug_params *p, const struct bti_aug_src *src, uint8_t *ws,
                 float *dst)
{
    int s = v->size, k, c = src->bpp == 1 ? 1 : 3;
    size_t npix = (size_t)s * s;
    uint8_t *img = ws, *line = ws + ((npix * src->bpp + 63) & ~(size_t)63);
    size_t blur = bti_blur_ws_bytes(s, s, src->bpp, (float)p->sigma);
    uint8_t *rws = line + ((blur + 63) & ~(size_t)63);
    bti_resample(src->px, src->stride, src->bpp, p->left, p->top, p->width, p->height, s, s, 0, 0,
                 s, s, v->bicubic, img, rws);
    to_rgb(img, npix, src->bpp, src->bgr);
    if (p->flip)
        bti_aug_hflip(img, s, s, c);
    if (p->jitter)
        for (k = 0; k < 4; k++) {
            int op = p->order[k];
            if (!p->has[op])
                continue;
            if (op == 0)
                bti_aug_brightness(img, npix, c, p->factor[0]);
            else if (op == 1)
                bti_aug_contrast(img, npix, c, p->factor[1]);
            else if (op == 2)
                bti_aug_saturation(img, npix, c, p->factor[2]);
            else
                bti_aug_hue(img, npix, c, p->factor[3]);
        }
    if (p->gray)
        bti_aug_grayscale(img, npix, c);
    if (p->blur)
        bti_aug_blur(img, s, s, c, (float)p->sigma, line);
    if (p->solarize)
        bti_aug_solarize(img, npix * c);
    to_float(img, s, c, lut, dst);
}

static bt_status views(bt_augment *a, const char *fn, int64_t first, int32_t n,
                       const struct pixels *px, int32_t nviews, bt_tensor *const *out)
{
    const int32_t channels = px->channels;
    struct bti_aug_params *params;
    size_t tasks, need = 0, t;
    bt_status st;
    int32_t v, u;
    int nt;
    long long tk;
    if (nviews < 1 || nviews > BTI_AUG_MAX_VIEWS)
        return bti_fail(BT_E_INVALID_ARG, "%s: nviews is %d; it must be 1..%d", fn, (int)nviews,
                        BTI_AUG_MAX_VIEWS);
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    for (v = 0; v < nviews; v++) {
        const struct bti_aug_view *vw = &a->view[v ? 1 : 0];
        char arg[32];
        snprintf(arg, sizeof arg, "out[%d]", (int)v);
        if ((st = check_out(fn, arg, out[v], n, channels, vw->size)) != BT_OK)
            return st;
        if ((st = check_norm(fn, vw, v ? 2 : 1, channels)) != BT_OK)
            return st;
        for (u = 0; u < v; u++)
            if (out[u] == out[v])
                return bti_fail(BT_E_INVALID_ARG, "%s: out[%d] and out[%d] are the same tensor",
                                fn, (int)u, (int)v);
    }

    tasks = (size_t)n * (size_t)nviews;
    if ((st = bti_buffer_reserve(&a->params, tasks, sizeof *params, fn)) != BT_OK)
        return st;
    params = a->params.p;
    for (t = 0; t < tasks; t++) {
        int32_t i = (int32_t)(t / (size_t)nviews);
        int32_t vv = (int32_t)(t % (size_t)nviews);
        const struct bti_aug_view *vw = &a->view[vv ? 1 : 0];
        uint64_t key = bti_rng_key(a->seed, a->calls, (uint64_t)(first + i), (uint64_t)vv);
        size_t w;
        bti_aug_sample(vw, key, px->heights[i], px->widths[i], &params[t]);
        w = bti_aug_task_ws(vw, &params[t], px->bpp);
        if (w > need)
            need = w;
    }
    nt = a->threads < (int)(tasks < 1024 ? tasks : 1024) ? a->threads : (int)tasks;
    if ((st = ensure_ws(a, nt, need, fn)) != BT_OK)
        return st;

#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (tk = 0; tk < (long long)tasks; tk++) {
        int32_t i = (int32_t)(tk / nviews), vv = (int32_t)(tk % nviews);
        int vi = vv ? 1 : 0;
        const struct bti_aug_view *vw = &a->view[vi];
        size_t plane = (size_t)channels * vw->size * vw->size;
        struct bti_aug_src src = src_of(px, i);
        bti_aug_run(vw, (const float(*)[256])a->lut[vi], &params[tk], &src, a->ws[thread_id()].p,
                    out[vv]->data + (size_t)i * plane);
    }
    a->calls++;
    return BT_OK;
}

/* The plain entry points: packed rows, `channels` 1 (grey) or 3 (RGB). */
static bt_status check_packed(const bt_augment *a, const char *fn, int32_t n,
                              const uint8_t *const *images, const int32_t *heights,
                              const int32_t *widths, int32_t channels, struct pixels *px)
{
    bt_status st = bti_check(a, BTI_KIND_AUGMENT, fn, "a");
    if (st != BT_OK)
        return st;
    if (channels != 1 && channels != 3)
        return bti_fail(BT_E_INVALID_ARG, "%s: channels is %d; it must be 1 or 3", fn,
                        (int)channels);
    return check_images(fn, n, images, heights, widths, NULL,
                        channels == 1 ? BT_PIXELS_GRAY : BT_PIXELS_RGB, px);
}

bt_status bt_augment_views(bt_augment *a, int32_t n, const uint8_t *const *images,
                           const int32_t *heights, const int32_t *widths, int32_t channels,
                           int32_t nviews, bt_tensor *const *out)
{
    static const char *fn = "bt_augment_views";
    struct pixels px;
    bt_status st = check_packed(a, fn, n, images, heights, widths, channels, &px);
    if (st != BT_OK)
        return st;
    return views(a, fn, 0, n, &px, nviews, out);
}

bt_status bt_augment_views_at(bt_augment *a, int64_t first_index, int32_t n,
                              const uint8_t *const *images, const int32_t *heights,
                              const int32_t *widths, const int64_t *strides, int32_t format,
                              int32_t nviews, bt_tensor *const *out)
{
    static const char *fn = "bt_augment_views_at";
    struct pixels px;
    bt_status st;
    if ((st = bti_check(a, BTI_KIND_AUGMENT, fn, "a")) != BT_OK)
        return st;
    if (first_index < 0 || first_index > INT64_MAX - n)
        return bti_fail(BT_E_INVALID_ARG,
                        "%s: first_index is %lld; it must be >= 0 (and first_index + n fit in "
                        "int64)",
                        fn, (long long)first_index);
    if ((st = check_images(fn, n, images, heights, widths, strides, format, &px)) != BT_OK)
        return st;
    return views(a, fn, first_index, n, &px, nviews, out);
}

/* ---- evaluation ------------------------------------------------------------- */

/* torchvision Resize(R) with R = round(S * 256 / 224): short side to R, long
 * side int(R * long / short); then CenterCrop(S) with round-half-even offsets. */
static void eval_geometry(int s, int h, int w, int *nh, int *nw, int *top, int *left)
{
    int r = (s * 256 + 112) / 224;
    if (w <= h) {
        *nw = r;
        *nh = (int)((int64_t)r * h / w);
    } else {
        *nh = r;
        *nw = (int)((int64_t)r * w / h);
    }
    *top = (int)rint((*nh - s) / 2.0);
    *left = (int)rint((*nw - s) / 2.0);
}

static bt_status eval(bt_augment *a, const char *fn, int32_t n, const struct pixels *px,
                      bt_tensor *out)
{
    const struct bti_aug_view *vw = &a->view[0];
    const int32_t channels = px->channels;
    const int s = vw->size;
    size_t need = 0, plane;
    bt_status st;
    int32_t i;
    int nt;
    if ((st = check_out(fn, "out", out, n, channels, s)) != BT_OK)
        return st;
    if ((st = check_norm(fn, vw, 1, channels)) != BT_OK)
        return st;
    for (i = 0; i < n; i++) {
        int nh, nw, top, left;
        size_t w;
        eval_geometry(s, px->heights[i], px->widths[i], &nh, &nw, &top, &left);
        w = (((size_t)s * s * px->bpp + 63) & ~(size_t)63) +
            bti_resample_ws_bytes(px->widths[i], px->heights[i], nw, nh, s, s, px->bpp, 0);
        if (w > need)
            need = w;
    }
    nt = a->threads < n ? a->threads : n;
    if ((st = ensure_ws(a, nt, need, fn)) != BT_OK)
        return st;
    plane = (size_t)channels * s * s;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (i = 0; i < n; i++) {
        int nh, nw, top, left;
        uint8_t *img = a->ws[thread_id()].p;
        uint8_t *rws = img + (((size_t)s * s * px->bpp + 63) & ~(size_t)63);
        struct bti_aug_src src = src_of(px, i);
        eval_geometry(s, px->heights[i], px->widths[i], &nh, &nw, &top, &left);
        bti_resample(src.px, src.stride, src.bpp, 0, 0, px->widths[i], px->heights[i], nw, nh, left,
                     top, s, s, 0, img, rws);
        to_rgb(img, (size_t)s * s, src.bpp, src.bgr);
        to_float(img, s, channels, (const float(*)[256])a->lut[0], out->data + (size_t)i * plane);
    }
    return BT_OK;
}

bt_status bt_augment_eval(bt_augment *a, int32_t n, const uint8_t *const *images,
                          const int32_t *heights, const int32_t *widths, int32_t channels,
                          bt_tensor *out)
{
    static const char *fn = "bt_augment_eval";
    struct pixels px;
    bt_status st = check_packed(a, fn, n, images, heights, widths, channels, &px);
    if (st != BT_OK)
        return st;
    return eval(a, fn, n, &px, out);
}

bt_status bt_augment_eval_ex(bt_augment *a, int32_t n, const uint8_t *const *images,
                             const int32_t *heights, const int32_t *widths,
                             const int64_t *strides, int32_t format, bt_tensor *out)
{
    static const char *fn = "bt_augment_eval_ex";
    struct pixels px;
    bt_status st;
    if ((st = bti_check(a, BTI_KIND_AUGMENT, fn, "a")) != BT_OK ||
        (st = check_images(fn, n, images, heights, widths, strides, format, &px)) != BT_OK)
        return st;
    return eval(a, fn, n, &px, out);
}
