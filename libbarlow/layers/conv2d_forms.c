/* conv2d_forms.c - which convolution forms each CPU level runs, in which
 * order, and the rules by which they are chosen. The numbers are data:
 * docs/perf.md has the measurements behind each, per level and CPU. */
#include "layers/conv2d.h"

#include <stdint.h>
#include <string.h>

#define ALWAYS INT64_MAX

static const struct bti_conv_rules rules[BTI_CPU_LEVELS] = {
    [BTI_CPU_GENERIC] = {.images_max_co = 0},
    [BTI_CPU_AVX2] = {.images_max_co = 16,
                      .grid_max_overhead = 0,
                      .direct_lanes = 16,
                      .direct_max_co = 256,
                      .wino_min_ch = 128,
                      .wino_min_ch_large = 48,
                      .wino_large_plane = 14 * 14},
    [BTI_CPU_AVX512] = {.images_max_co = ALWAYS,
                        .grid_max_overhead = 1.35,
                        .direct_lanes = 16,
                        .direct_max_co = ALWAYS,
                        .flat_max_ch = 16,
                        .flat_max_ch_large = 32,
                        .flat_large_plane = 14 * 14,
                        .wino_min_ch = 128,
                        .wino_min_ch_large = 64,
                        .wino_large_plane = 32 * 32},
};

/* Fastest first; each ends in the plain GEMM form, which always applies. */
static const struct bti_conv_form *const generic_forms[] = {&bti_conv_images, &bti_conv_gemm,
                                                            NULL};
#if defined(__x86_64__) || defined(__i386__)
static const struct bti_conv_form *const avx2_forms[] = {
    &bti_conv_winograd, &bti_conv_direct, &bti_conv_grid, &bti_conv_images, &bti_conv_gemm, NULL};
static const struct bti_conv_form *const avx512_forms[] = {
    &bti_conv_winograd, &bti_conv_flat,   &bti_conv_direct, &bti_conv_grid,
    &bti_conv_images,   &bti_conv_gemm, NULL};
#else
#define avx2_forms generic_forms
#define avx512_forms generic_forms
#endif

static const struct bti_conv_form *const *const tables[BTI_CPU_LEVELS] = {
    [BTI_CPU_GENERIC] = generic_forms,
    [BTI_CPU_AVX2] = avx2_forms,
    [BTI_CPU_AVX512] = avx512_forms,
};

const struct bti_conv_form *bti_conv_find(int level, const char *name)
{
    const struct bti_conv_form *const *f;
    for (f = tables[level]; name && *f; f++)
        if (strcmp((*f)->name, name) == 0)
            return *f;
    return NULL;
}

const struct bti_conv_form *bti_conv_choose(const struct bti_conv_geom *g, const char *forced)
{
    const struct bti_conv_form *const *f, *want = bti_conv_find(g->level, forced);
    if (want && want->fits(g))
        return want;
    for (f = tables[g->level]; f[1]; f++)
        if ((*f)->fits(g) && (*f)->wins(g, &rules[g->level]))
            return *f;
    return *f;
}
