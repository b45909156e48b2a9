/* augment.h - private pieces of the augmentation module: the per-view settings,
 * the sampled parameters of one view of one image, and the pixel operations,
 * each reproducing Pillow's integer/fixed-point arithmetic (Pillow 9.4, whose
 * math equals the 8.1 of the official runs; see reference/barlowtwins.md §4).
 *
 * Images are uint8, HWC, rows `stride` bytes apart, in one of the BT_PIXELS_*
 * layouts; the pipeline itself works on packed grey or RGB (channels 1 or 3). */
#ifndef BARLOW_AUGMENT_H
#define BARLOW_AUGMENT_H

#include "common/internal.h"

/* Largest accepted image side; keeps every fixed-point sum and size in range. */
#define BTI_AUG_MAX_SIDE 32768
/* Most views one bt_augment_views call produces; views >= 2 use view 2's settings. */
#define BTI_AUG_MAX_VIEWS 8

/* Resolved options of one view. */
struct bti_aug_view {
    int size;                  /* output side S */
    double scale_lo, scale_hi; /* crop area fraction */
    double ratio_lo, ratio_hi; /* crop aspect w/h */
    int bicubic;               /* 1 bicubic, 0 bilinear */
    double flip_p, jitter_p, gray_p, blur_p, solarize_p;
    double brightness, contrast, saturation, hue; /* ColorJitter arguments; 0 = op absent */
    int nmean, nstd;
    double mean[3], std[3];
};

/* Everything random about one view of one image. */
struct bti_aug_params {
    int32_t top, left, height, width; /* crop box (RandomResizedCrop) */
    int flip;
    int jitter;      /* colour jitter applied at all */
    int order[4];    /* permutation of 0 brightness, 1 contrast, 2 saturation, 3 hue */
    int has[4];      /* which of the four ops exist (non-zero ColorJitter argument) */
    double factor[4]; /* brightness, contrast, saturation factors; hue shift in [-0.5, 0.5] */
    int gray;
    int blur;
    double sigma;
    int solarize;
};

/* Draw counters of one view's stream (the stream key encodes seed, call, image, view). */
enum {
    BTI_AUG_CTR_CROP = 0,     /* 2 per attempt, 10 attempts: area, log-ratio */
    BTI_AUG_CTR_OFFSET = 20,  /* top, left */
    BTI_AUG_CTR_FLIP = 22,
    BTI_AUG_CTR_JITTER = 23,
    BTI_AUG_CTR_PERM = 24,    /* 3 draws: Fisher-Yates */
    BTI_AUG_CTR_FACTOR = 27,  /* 4 draws: b, c, s, h */
    BTI_AUG_CTR_GRAY = 31,
    BTI_AUG_CTR_BLUR = 32,
    BTI_AUG_CTR_SIGMA = 33,
    BTI_AUG_CTR_SOLARIZE = 34,
};

/* The evaluation view's options as "name=value\n" lines, for checkpoints. */
BTI_HIDDEN const char *bti_augment_eval_options(const bt_augment *a);

/* torchvision's RandomResizedCrop.get_params: 10 attempts drawn from stream
 * `key`, then the centre-crop fallback. */
BTI_HIDDEN void bti_aug_crop_params(uint64_t key, int height, int width, double scale_lo,
                                    double scale_hi, double ratio_lo, double ratio_hi,
                                    int32_t *top, int32_t *left, int32_t *h, int32_t *w);
/* All parameters of one view of one height x width image. */
BTI_HIDDEN void bti_aug_sample(const struct bti_aug_view *v, uint64_t key, int height, int width,
                               struct bti_aug_params *p);

/* uint8 -> normalised float32 table per channel, as ToTensor + Normalize compute it. */
BTI_HIDDEN void bti_aug_lut(const struct bti_aug_view *v, float lut[3][256]);
/* One source image as the host holds it. */
struct bti_aug_src {
    const uint8_t *px;
    size_t stride; /* bytes from one row to the next */
    int bpp;       /* bytes per pixel: 1, 3 or 4 */
    int bgr;       /* blue first (BT_PIXELS_BGR, BT_PIXELS_BGRA) */
};

/* Workspace bytes bti_aug_run needs for this task (bpp: the source's bytes per pixel). */
BTI_HIDDEN size_t bti_aug_task_ws(const struct bti_aug_view *v, const struct bti_aug_params *p,
                                  int bpp);
/* The whole pipeline for one view of one image into dst [c, S, S] (c = 1 for a grey
 * source, else 3 in R, G, B order). */
BTI_HIDDEN void bti_aug_run(const struct bti_aug_view *v, const float (*lut)[256],
                            const struct bti_aug_params *p, const struct bti_aug_src *src,
                            uint8_t *ws, float *dst);

/* ---- resampling (aug_resample.c): PIL Image.resize, BICUBIC or BILINEAR ---- */

/* The "image" PIL resizes is the box (bx, by, bw, bh) of src (so a crop followed
 * by resize((out_w, out_h))). Only the output window (ox, oy, ow, oh) is computed,
 * into dst (ow x oh x c packed). ws must hold bti_resample_ws_bytes(...) bytes. */
BTI_HIDDEN size_t bti_resample_ws_bytes(int bw, int bh, int out_w, int out_h, int ow, int oh,
                                        int c, int bicubic);
BTI_HIDDEN void bti_resample(const uint8_t *src, size_t src_stride, int c, int bx, int by, int bw,
                             int bh, int out_w, int out_h, int ox, int oy, int ow, int oh,
                             int bicubic, uint8_t *dst, void *ws);

/* ---- colour (aug_color.c): ImageEnhance, to_grayscale, adjust_hue, solarize ---- */

/* PIL ImagingBlend of one value: degenerate d, image x, alpha as float. */
BTI_HIDDEN uint8_t bti_blend(int d, int x, float alpha);
BTI_HIDDEN void bti_aug_brightness(uint8_t *px, size_t npix, int c, double f);
BTI_HIDDEN void bti_aug_contrast(uint8_t *px, size_t npix, int c, double f);
BTI_HIDDEN void bti_aug_saturation(uint8_t *px, size_t npix, int c, double f); /* c 1: no-op */
BTI_HIDDEN void bti_aug_hue(uint8_t *px, size_t npix, int c, double h);        /* c 1: no-op */
BTI_HIDDEN void bti_aug_grayscale(uint8_t *px, size_t npix, int c);            /* c 1: no-op */
BTI_HIDDEN void bti_aug_solarize(uint8_t *px, size_t nbytes);
BTI_HIDDEN void bti_aug_hflip(uint8_t *px, int w, int h, int c);

/* ---- blur (aug_blur.c): ImageFilter.GaussianBlur(radius=sigma) ---- */

/* PIL's extended box radius for a Gaussian of standard deviation sigma, 3 passes. */
BTI_HIDDEN float bti_blur_box_radius(float sigma);
/* Workspace bytes of bti_aug_blur (at most w*h*c + (w+6)*c for sigma <= 2). */
BTI_HIDDEN size_t bti_blur_ws_bytes(int w, int h, int c, float sigma);
/* In place; ws must hold bti_blur_ws_bytes(w, h, c, sigma) bytes. */
BTI_HIDDEN void bti_aug_blur(uint8_t *px, int w, int h, int c, float sigma, uint8_t *ws);

#endif
