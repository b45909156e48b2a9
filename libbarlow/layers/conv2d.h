/* conv2d.h - the convolution's forms (private to layer_conv2d.c and the
 * conv2d_*.c files): one geometry, one interface per form, and the table of
 * forms each CPU level runs (conv2d_forms.c).
 *
 * A form computes a whole forward or backward of the layer in its own way
 * (chunked GEMMs, per-image GEMMs, the padded grid, the direct tiles, the
 * flat tiles, Winograd). The level's table lists the forms that level can
 * run, fastest first, ending in the plain GEMM form, which always applies;
 * the automatic choice is the first form that fits the geometry and wins by
 * the level's rules (struct bti_conv_rules: data, measured per level and
 * recorded in docs/perf.md). */
#ifndef BARLOW_CONV2D_H
#define BARLOW_CONV2D_H

#include "layers/layer.h"

struct bti_conv_form;

/* The layer (layer_conv2d.c): what every layer has, then the convolution's own. */
struct bti_conv2d {
    struct bt_layer base;
    int in_ch, out_ch, kernel, stride, pad, has_bias;
    int64_t chunk_cols; /* output columns per GEMM chunk, 0: the default (tests, benchmarks) */
    int64_t chunk_b;    /* images per chunk of the last forward */
    const char *forced; /* a form's name (tests, benchmarks), or NULL */
    const struct bti_conv_form *form; /* the form of the last forward */
    int form_threads;                 /* and its thread count */
};

/* The bias of a conv2d, or NULL when it has none. */
static inline const float *bti_conv2d_bias(const bt_layer *l)
{
    return BTI_LAYER_OF(struct bti_conv2d, l)->has_bias ? l->value[1]->data : NULL;
}

/* The layer's geometry for one input shape, with every form's blocking. */
struct bti_conv_geom {
    int64_t n, c, h, w, co, ho, wo, p, k2; /* p = ho*wo, k2 = K = c*k*k */
    int k, s, pad;
    int level, threads;
    int identity; /* 1x1, stride 1, no padding */
    int64_t b;    /* gemm form: images per chunk */
    int64_t pb;   /* per-image forms: images per group */
    /* grid and flat forms: images padded to hp x wp planes, pb per group, laid
     * out [channel][image][hp][wp] with a channel stride of lcap floats and
     * tail floats read past the last */
    int64_t hp, wp, lcap, tail;
    int flat; /* the direct family: its flat tiles (conv2d_direct_x86.c) */
};

/* When each form is chosen, for one CPU level (conv2d_forms.c). */
struct bti_conv_rules {
    /* one thread: per-image GEMMs up to this many output channels when the
     * BLAS is fast (0 never); always when the private kernels beat the BLAS */
    int64_t images_max_co;
    double grid_max_overhead; /* padded-grid outputs per real output, at most */
    /* direct tiles: registers of `lanes` channels, at most a third idle, and
     * at most direct_max_co output channels */
    int64_t direct_lanes, direct_max_co;
    /* flat tiles: the larger channel count at most flat_max_ch, or
     * flat_max_ch_large on planes of flat_large_plane pixels or more */
    int64_t flat_max_ch, flat_max_ch_large, flat_large_plane;
    /* Winograd: the smaller channel count at least wino_min_ch, or
     * wino_min_ch_large on planes of wino_large_plane pixels or more */
    int64_t wino_min_ch, wino_min_ch_large, wino_large_plane;
};

struct bti_conv_form {
    const char *name;
    /* the geometry this form computes (whatever the speed) */
    int (*fits)(const struct bti_conv_geom *g);
    /* chosen automatically: faster than the forms after it, by the rules */
    int (*wins)(const struct bti_conv_geom *g, const struct bti_conv_rules *r);
    /* floats of workspace forward and backward need, for all threads */
    size_t (*workspace)(const struct bti_conv_geom *g);
    void (*forward)(bt_layer *l, const struct bti_conv_geom *g, const float *x, float *y);
    /* dW (and dbias elsewhere) accumulate; dx NULL skips the input gradient */
    void (*backward)(bt_layer *l, const struct bti_conv_geom *g, const float *x, const float *dy,
                     float *dx);
};

BTI_HIDDEN extern const struct bti_conv_form bti_conv_gemm, bti_conv_images, bti_conv_grid;
#if defined(__x86_64__) || defined(__i386__)
BTI_HIDDEN extern const struct bti_conv_form bti_conv_direct, bti_conv_flat, bti_conv_winograd;
#endif

/* The form for g at g->level: `forced` (a form's name, or NULL) where that
 * level runs it and it fits, else the first of the level's table that fits
 * and wins. Never NULL. */
BTI_HIDDEN const struct bti_conv_form *bti_conv_choose(const struct bti_conv_geom *g,
                                                       const char *forced);
/* The level's form of that name, or NULL when the level does not run it. */
BTI_HIDDEN const struct bti_conv_form *bti_conv_find(int level, const char *name);

/* ---- shared by the forms (layer_conv2d.c) ------------------------------- */

BTI_HIDDEN size_t bti_conv_round16(size_t n);
/* n >= 2 images, at least one per thread: the per-image forms' condition */
BTI_HIDDEN int bti_conv_images_each(const struct bti_conv_geom *g);
/* Floats of ch channels of padded planes (lcap each) and their tail. */
BTI_HIDDEN size_t bti_conv_padded_floats(const struct bti_conv_geom *g, int64_t ch);
/* Zero-padded planes dst[ch][b][hp][wp] of src [nb][ch][h][w], and zeros
 * over the tail the GEMMs and tiles read past the last image. */
BTI_HIDDEN void bti_conv_grid_pack(const struct bti_conv_geom *g, const float *src, int64_t ch,
                                   int64_t nb, float *dst);
/* dw[i] += sum over the nt threads' parts base[t*stride + poff + i], i < nw,
 * in thread order (deterministic for a thread count). nt is the team that
 * ran, which can be smaller than asked (a host's nested OpenMP region,
 * OMP_THREAD_LIMIT): the other threads' parts were never zeroed. */
BTI_HIDDEN void bti_conv_sum_parts(const float *base, size_t stride, size_t poff, int64_t nw,
                                   int nt, float *dw);

#endif /* BARLOW_CONV2D_H */
