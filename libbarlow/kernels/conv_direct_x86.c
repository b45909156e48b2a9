/* conv_direct_x86.c - the level-free parts of the direct and flat forms
 * (see conv_direct.h): channel rounding, pixel lists and their classes, the
 * flat form's runs, stores and packed weights, and each level's tiles. */
#include "common/cpu.h"
#include "kernels/conv_direct.h"

#define TAPS 9
#define FO BTI_FLAT_OUTPUTS

int64_t bti_direct_round(int64_t ch) { return (ch + 15) / 16 * 16; }

int64_t bti_direct_list_len(int64_t npix) { return npix + BTI_DIRECT_CLASSES * BTI_DIRECT_SLACK; }

/* The kernel rows (columns) inside the image for output row y: bit i set
 * when input row y*s + i - 1 is in [0, h). */
static int inside(int64_t y, int s, int64_t h)
{
    int i, m = 0;
    for (i = 0; i < TAPS / 3; i++)
        m |= (y * s + i - 1 >= 0 && y * s + i - 1 < h) << i;
    return m;
}

/* The kinds of output rows (columns) of n by their taps inside, each a run
 * [lo, hi): the valid kernel rows slide with y, so a set never comes back
 * once it changed (first, middle, last; at most 3). */
static int kinds(int64_t n, int s, int64_t h, int mask[3], int64_t lo[3], int64_t hi[3])
{
    int64_t y;
    int k = 0;
    for (y = 0; y < n; y++) {
        const int m = inside(y, s, h);
        if (k == 0 || mask[k - 1] != m) {
            mask[k] = m;
            lo[k++] = y;
        }
        hi[k - 1] = y + 1;
    }
    return k;
}

void bti_direct_classes(int64_t nb, int64_t h, int64_t w, int64_t ho, int64_t wo, int64_t plane,
                        int64_t wp, int s, int64_t *off, int64_t *rows,
                        struct bti_pixel_classes *pc)
{
    int64_t rl[3], rh[3], cl[3], ch[3], b, y, x, q = 0;
    int rm[3], cm[3], a, c, i, j;
    const int nr = kinds(ho, s, h, rm, rl, rh), nc = kinds(wo, s, w, cm, cl, ch);
    pc->n = 0;
    for (a = 0; a < nr; a++)
        for (c = 0; c < nc; c++) {
            struct bti_taps *tp = &pc->tp[pc->n];
            tp->n = 0;
            tp->slots = TAPS;
            for (i = 0; i < 3; i++)
                for (j = 0; j < 3; j++)
                    if ((rm[a] >> i & 1) && (cm[c] >> j & 1)) {
                        tp->off[tp->n] = (i - 1) * wp + (j - 1);
                        tp->slot[tp->n] = i * 3 + j;
                        tp->w[tp->n++] = i * 3 + j;
                    }
            pc->start[pc->n] = q;
            for (b = 0; b < nb; b++)
                for (y = rl[a]; y < rh[a]; y++)
                    for (x = cl[c]; x < ch[c]; x++) {
                        off[q] = b * plane + s * (y * wp + x);
                        rows[q++] = (b * ho + y) * wo + x;
                    }
            pc->count[pc->n] = q - pc->start[pc->n];
            bti_direct_slack(pc->count[pc->n], off + pc->start[pc->n], rows + pc->start[pc->n]);
            q += BTI_DIRECT_SLACK;
            pc->n++;
        }
}

void bti_direct_slack(int64_t npix, int64_t *off, int64_t *rows)
{
    int64_t k;
    for (k = 0; k < BTI_DIRECT_SLACK; k++) {
        off[npix + k] = npix > 0 ? off[npix - 1] : 0;
        rows[npix + k] = npix > 0 ? rows[npix - 1] : 0;
    }
}


/* An image's flat positions: h rows of wp, less the last row's two junk ones. */
static int64_t flat_len(int64_t h, int64_t wp) { return h * wp - 2; }

int64_t bti_flat_runs(int64_t h, int64_t wp) { return (flat_len(h, wp) + 15) / 16; }

void bti_flat_pack(const float *w, int64_t co, int64_t c, int transpose, float *wpk, int part,
                   int parts)
{
    const int64_t nout = transpose ? c : co, nin = transpose ? co : c, ng = (nout + FO - 1) / FO;
    int64_t gr, ci, o;
    int t, k;
    for (gr = ng * part / parts; gr < ng * (part + 1) / parts; gr++)
        for (ci = 0; ci < nin; ci++)
            for (t = 0; t < 9; t++)
                for (k = 0; k < FO; k++) {
                    o = gr * FO + k;
                    wpk[((gr * nin + ci) * 9 + t) * FO + k] =
                        o >= nout   ? 0.0f
                        : transpose ? w[(ci * c + o) * 9 + 8 - t]
                                    : w[(o * c + ci) * 9 + t];
                }
}

void bti_flat_stores(int64_t h, int64_t w, int64_t *st)
{
    const int64_t wp = w + 2, len = flat_len(h, wp), nr = bti_flat_runs(h, wp);
    int64_t r, g, first, y = 0, x = 0;
    unsigned m;
    int l;
    /* row and column counted along, not divided out: this runs per image group */
    for (r = 0; r < nr; r++) {
        m = 0;
        first = 0;
        for (l = 0, g = 16 * r; l < 16; l++, g++) {
            if (g < len && x < w) {
                if (!m)
                    first = y * w + x;
                m |= 1u << l;
            }
            if (++x == wp) {
                x = 0;
                y++;
            }
        }
        st[r] = first << 16 | m;
    }
}

int64_t bti_direct_pass_channels(const struct bti_pixel_classes *pc, int64_t cb)
{
    int k, most = 1;
    for (k = 0; k < pc->n; k++)
        most = pc->tp[k].n > most ? pc->tp[k].n : most;
    return cb * TAPS / most;
}

void bti_direct_slot_masks(const struct bti_pixel_classes *pc, int *masks)
{
    int k, t;
    for (k = 0; k < pc->n; k++)
        for (masks[k] = 0, t = 0; t < pc->tp[k].n; t++)
            masks[k] |= 1 << pc->tp[k].slot[t];
}

const struct bti_direct_ops *bti_direct_ops_of(int level)
{
    return level == BTI_CPU_AVX512 ? &bti_direct_avx512 : &bti_direct_avx2;
}
