/* conv2d_direct_x86.c - the direct forms of 3x3, padding-1 convolutions
 * (stride 1 or 2), per image on OpenMP threads, over the level's tiles
 * (kernels/conv_direct.h: AVX-512 channel and flat tiles, AVX2 channel
 * tiles): no GEMM, no im2col, no junk outputs.
 *  - direct: the channel tiles. The input's planes are read in place pixel
 *    by pixel through pixel lists split by the taps inside the image; outputs
 *    come back pixel-major and are transposed into NCHW. At stride 1 the
 *    input gradient is the same kind of convolution of dy with the mirrored,
 *    transposed weights. At stride 2, an input pixel (y, x) receives dy at
 *    (y/2, x/2) and its neighbours through the kernel rows and columns of y's
 *    and x's parity only (row 1 when y is even; rows 2 and 0 when odd,
 *    reading dy rows y/2 and y/2 + 1): four classes of pixels, each a
 *    convolution with 1, 2, 2 or 4 taps of dy read in place, written to its
 *    pixels' rows. The weight gradient always takes the channel tiles.
 *  - flat: stride 1, for few channels: the forward and the input gradient in
 *    registers of neighbouring output pixels over padded planes (the weight
 *    gradient as in the direct form). */
#include "kernels/conv_direct.h"
#include "layers/conv2d.h"

#include <omp.h>
#include <string.h>

/* The level's tiles. */
static const struct bti_direct_ops *ops(const struct bti_conv_geom *g)
{
    return bti_direct_ops_of(g->level);
}

static int direct_fits(const struct bti_conv_geom *g)
{
    return g->k == 3 && (g->s == 1 || g->s == 2) && g->pad == 1;
}

static int flat_fits(const struct bti_conv_geom *g)
{
    return direct_fits(g) && g->s == 1 && ops(g)->flat_conv;
}

/* A tile's registers hold `lanes` channels (outputs; inputs for the input
 * gradient): chosen when neither count leaves more than a third idle. */
static int lanes_ok(int64_t ch, const struct bti_conv_rules *r)
{
    return 2 * ((ch + r->direct_lanes - 1) / r->direct_lanes * r->direct_lanes) <= 3 * ch;
}

/* A stem (1-4 input channels) at stride 1, where the level has flat tiles:
 * its forward and input gradient go to the flat form, whose registers hold
 * pixels, and its weight gradient to the channel tiles over its outputs. */
static int stem(const struct bti_conv_geom *g)
{
    return g->s == 1 && g->c <= 4 && ops(g)->flat_conv;
}

static int direct_wins(const struct bti_conv_geom *g, const struct bti_conv_rules *r)
{
    return bti_conv_images_each(g) && (lanes_ok(g->c, r) || stem(g)) && lanes_ok(g->co, r) &&
           g->co <= r->direct_max_co;
}

/* The channel tiles have one or two registers of outputs for few channels
 * and broadcast an input float for every one or two FMAs; the flat tiles
 * compute every tap and two junk lanes per row, so small planes stay with
 * the channel tiles. */
static int flat_wins(const struct bti_conv_geom *g, const struct bti_conv_rules *r)
{
    const int64_t ch = g->c > g->co ? g->c : g->co;
    return direct_wins(g, r) &&
           (ch <= r->flat_max_ch ||
            (ch <= r->flat_max_ch_large && g->h * g->w >= r->flat_large_plane) || stem(g));
}

/* Per thread: the flat form's padded buffer (x or dy), one pixel-major
 * buffer (dy for the weight gradient, then the conv outputs), the dW part
 * [c][9][co rounded], a pixel list (offsets and rows, int64) and the flat
 * form's stores (int64). After all threads: the packed weights. Pixel lists
 * cover the larger of the input and output planes (the stride-2 input
 * gradient has one row per input pixel). */
static size_t dr_pad(const struct bti_conv_geom *g)
{
    const size_t x = bti_conv_padded_floats(g, g->c), dy = bti_conv_padded_floats(g, g->co);
    return !g->flat ? 0 : x > dy ? x : dy;
}
static int64_t dr_rows(const struct bti_conv_geom *g)
{
    return bti_direct_list_len(g->pb * (g->p > g->h * g->w ? g->p : g->h * g->w));
}
static size_t dr_pix(const struct bti_conv_geom *g)
{
    const int64_t cop = bti_direct_round(g->co), cip = bti_direct_round(g->c);
    return bti_conv_round16((size_t)(dr_rows(g) * (cop > cip ? cop : cip)));
}
static size_t dr_part(const struct bti_conv_geom *g)
{
    return bti_conv_round16((size_t)(g->c * 9 * bti_direct_round(g->co)));
}
static size_t dr_weights(const struct bti_conv_geom *g)
{
    const int64_t a = bti_direct_round(g->co) * g->c, b = bti_direct_round(g->c) * g->co;
    return bti_conv_round16((size_t)(9 * (a > b ? a : b)));
}
static size_t part_at(const struct bti_conv_geom *g) { return dr_pad(g) + dr_pix(g); }
static size_t dr_stride(const struct bti_conv_geom *g)
{
    return part_at(g) + dr_part(g) +
           bti_conv_round16((size_t)(4 * dr_rows(g) + 2 * bti_flat_runs(g->h, g->wp)));
}

static size_t family_workspace(const struct bti_conv_geom *g)
{
    return (size_t)g->threads * dr_stride(g) + dr_weights(g);
}

static struct bti_conv_geom as_flat(const struct bti_conv_geom *g, int flat)
{
    struct bti_conv_geom f = *g;
    f.flat = flat;
    return f;
}

static size_t direct_workspace(const struct bti_conv_geom *g)
{
    const struct bti_conv_geom d = as_flat(g, 0);
    return family_workspace(&d);
}

static size_t flat_workspace(const struct bti_conv_geom *g)
{
    const struct bti_conv_geom f = as_flat(g, 1);
    return family_workspace(&f);
}

/* All nine kernel entries in order (mirrored: the input gradient's), to pack
 * the weights by; the pixel classes give the offsets the tiles read at. */
static void taps_all(int mirror, struct bti_taps *tp)
{
    int t;
    tp->n = tp->slots = 9;
    for (t = 0; t < 9; t++) {
        tp->w[t] = mirror ? 8 - t : t;
        tp->slot[t] = t;
    }
}

/* Stride 2, class (py, px): the taps of dy (rows of wo floats) from (y/2, x/2).
 * Kernel row 1 (even y) and row 2 (odd y) read that dy row, row 0 (odd y) the
 * next one; columns alike. */
static void taps_class(int py, int px, int64_t wo, struct bti_taps *tp)
{
    static const int rows[2][2] = {{1, 1}, {2, 0}}; /* kernel rows (cols) by parity */
    int a, b;
    tp->n = 0;
    for (a = 0; a < 1 + py; a++)
        for (b = 0; b < 1 + px; b++) {
            const int i = rows[py][a], j = rows[px][b];
            tp->off[tp->n] = (i == 0 ? wo : 0) + (j == 0 ? 1 : 0);
            tp->slot[tp->n] = tp->n;
            tp->w[tp->n++] = i * 3 + j;
        }
    tp->slots = tp->n;
}

/* Weights packed for the forward (dx 0) or the input gradient (dx 1: stride 1
 * one set; stride 2 the four classes one after the other), for the flat form
 * or the channel tiles. This thread's share. */
static void pack_weights(const struct bti_conv_geom *g, const float *w, int dx, float *wpk, int t,
                         int tn)
{
    struct bti_taps tp;
    int cls;
    if (g->flat) {
        bti_flat_pack(w, g->co, g->c, dx, wpk, t, tn);
        return;
    }
    if (!dx || g->s == 1) {
        taps_all(dx, &tp);
        ops(g)->pack(w, g->co, g->c, dx, &tp, wpk, t, tn);
        return;
    }
    for (cls = 0; cls < 4; cls++) {
        taps_class(cls / 2, cls % 2, g->wo, &tp);
        ops(g)->pack(w, g->co, g->c, 1, &tp, wpk, t, tn);
        wpk += bti_direct_round(g->c) * g->co * tp.n;
    }
}

/* A thread's buffers in the direct form (the layout of dr_stride). */
struct direct_bufs {
    float *pad, *pix; /* pad (flat form): x's planes in the forward, dy's in the backward */
    int64_t *off, *rows;
    int64_t *st; /* the flat form's stores, once per call */
};

static void direct_bufs_of(const struct bti_conv_geom *g, float *buf, struct direct_bufs *d)
{
    d->pad = buf;
    d->pix = buf + dr_pad(g);
    d->off = (int64_t *)(buf + part_at(g) + dr_part(g));
    d->rows = d->off + dr_rows(g);
    d->st = d->rows + dr_rows(g);
    if (g->flat)
        bti_flat_stores(g->h, g->w, d->st);
}

/* The forward's convolution of nb images src [nb][cin][h][w] into dst
 * [nb][cout][ho][wo] (+ bias), or the stride-1 input gradient's (dy in, dx
 * out: the same pixels and taps, wpk the mirrored weights). The flat form
 * reads padded planes and writes NCHW; the channel tiles read src in place,
 * the output pixels by class (the taps inside the image only), into
 * pixel-major rows, then transposed: reading in place costs less than
 * padding first (docs/perf.md). */
static void conv_image(const struct bti_conv_geom *g, const float *src, int64_t cin, int64_t cout,
                       const float *wpk, const float *bias, int64_t nb,
                       const struct direct_bufs *d, float *dst)
{
    struct bti_pixel_classes pc;
    if (g->flat) {
        bti_conv_grid_pack(g, src, cin, nb, d->pad);
        ops(g)->flat_conv(d->pad, g->lcap, g->hp * g->wp, g->wp, g->h, nb, cin, wpk, cout, d->st,
                      bias, dst);
        return;
    }
    bti_direct_classes(nb, g->h, g->w, g->ho, g->wo, cin * g->h * g->w, g->w, g->s, d->off,
                       d->rows, &pc);
    ops(g)->conv(src, g->h * g->w, cin, d->off, d->rows, &pc, wpk, cout, d->pix);
    ops(g)->from_pixels(d->pix, cout, nb, g->p, bias, dst);
}

static void forward_direct(const struct bti_conv_geom *g, const float *wpk, const float *bias,
                           const float *x, float *y, int64_t n0, int64_t n1, float *buf)
{
    struct direct_bufs d;
    int64_t n;
    direct_bufs_of(g, buf, &d);
    for (n = n0; n < n1; n += g->pb)
        conv_image(g, x + n * g->c * g->h * g->w, g->c, g->co, wpk, bias,
                   n1 - n < g->pb ? n1 - n : g->pb, &d, y + n * g->co * g->p);
}

/* Stride 2, class (py, px): its pixels (y, x) split by whether dy row y/2 + 1
 * (column x/2 + 1) exists, which kernel row (column) 0 reads: the last odd row
 * of an even height, and the last odd column of an even width, do without it.
 * Up to 4 sub-classes, each with the taps of the full class it keeps (packed
 * weights read through their slots). Returns the full class's taps, by which
 * its packed weights are laid out (pack_weights). */
static int dx_class(const struct bti_conv_geom *g, int py, int px, int64_t nb, int64_t *off,
                     int64_t *rows, struct bti_pixel_classes *pc)
{
    const int64_t plane = g->co * g->ho * g->wo;
    /* rows (columns) of the class from ys (xs) on have no dy row y/2 + 1: the
     * odd ones from 2*ho - 1 */
    const int64_t ys = py ? 2 * g->ho - 1 : g->h, xs = px ? 2 * g->wo - 1 : g->w;
    struct bti_taps full;
    int64_t b, y, x, q = 0;
    int lr, lc, t;
    taps_class(py, px, g->wo, &full);
    pc->n = 0;
    for (lr = 0; lr < 2; lr++)     /* rows with dy row y/2 + 1 (lr 0), without (lr 1) */
        for (lc = 0; lc < 2; lc++) { /* columns alike */
            struct bti_taps *tp = &pc->tp[pc->n];
            const int64_t start = q;
            tp->n = 0;
            tp->slots = full.slots;
            for (t = 0; t < full.n; t++)
                if (!(lr && full.w[t] / 3 == 0) && !(lc && full.w[t] % 3 == 0)) {
                    tp->off[tp->n] = full.off[t];
                    tp->slot[tp->n] = full.slot[t];
                    tp->w[tp->n++] = full.w[t];
                }
            for (b = 0; b < nb; b++)
                for (y = py; y < g->h; y += 2)
                    if ((y >= ys) == lr)
                        for (x = lc ? xs : px; x < (lc ? g->w : xs < g->w ? xs : g->w); x += 2) {
                            off[q] = b * plane + y / 2 * g->wo + x / 2;
                            rows[q++] = (b * g->h + y) * g->w + x;
                        }
            if (q == start)
                continue;
            pc->start[pc->n] = start;
            pc->count[pc->n] = q - start;
            bti_direct_slack(q - start, off + start, rows + start);
            q += BTI_DIRECT_SLACK;
            pc->n++;
        }
    return full.slots;
}

/* Stride 2: dx rows (pixel-major, one per input pixel) from dy read in place. */
static void dx_stride2(const struct bti_conv_geom *g, const float *wpk, const float *dy, int64_t nb,
                       const struct direct_bufs *d)
{
    int cls;
    for (cls = 0; cls < 4; cls++) {
        struct bti_pixel_classes pc;
        const int taps = dx_class(g, cls / 2, cls % 2, nb, d->off, d->rows, &pc);
        if (pc.n > 0)
            ops(g)->conv(dy, g->ho * g->wo, g->co, d->off, d->rows, &pc, wpk, g->c, d->pix);
        wpk += bti_direct_round(g->c) * g->co * taps;
    }
}

/* part[c][9][co rounded] += the weight gradient; dx = the input gradient when wpk is set. */
static void backward_direct(const struct bti_conv_geom *g, const float *wpk, const float *x,
                            const float *dy, float *dx, int64_t n0, int64_t n1, float *buf,
                            float *part)
{
    struct direct_bufs d;
    struct bti_pixel_classes pc;
    int64_t n;
    direct_bufs_of(g, buf, &d);
    for (n = n0; n < n1; n += g->pb) {
        const int64_t nb = n1 - n < g->pb ? n1 - n : g->pb;
        const float *dyc = dy + n * g->co * g->p;
        /* the weight gradient reads x as it is: its classes skip the outside taps */
        bti_direct_classes(nb, g->h, g->w, g->ho, g->wo, g->c * g->h * g->w, g->w, g->s, d.off,
                           d.rows, &pc);
        ops(g)->to_pixels(dyc, g->co, nb, g->p, d.pix);
        ops(g)->weight_grad(x + n * g->c * g->h * g->w, g->h * g->w, g->w, g->c, d.off, d.rows,
                               &pc, d.pix, g->co, part);
        if (!wpk)
            continue;
        if (g->s == 1) {
            conv_image(g, dyc, g->co, g->c, wpk, NULL, nb, &d, dx + n * g->c * g->h * g->w);
            continue;
        }
        dx_stride2(g, wpk, dyc, nb, &d);
        ops(g)->from_pixels(d.pix, g->c, nb, g->h * g->w, NULL, dx + n * g->c * g->h * g->w);
    }
}


static void family_forward(bt_layer *l, const struct bti_conv_geom *g, const float *x, float *y)
{
    const float *w = l->value[0]->data, *bias = bti_conv2d_bias(l);
    const size_t stride = dr_stride(g);
    float *base = (float *)l->scratch->p, *wpk = base + (size_t)g->threads * stride;
#pragma omp parallel num_threads(g->threads)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        pack_weights(g, w, 0, wpk, t, tn);
#pragma omp barrier
        forward_direct(g, wpk, bias, x, y, g->n * t / tn, g->n * (t + 1) / tn,
                       base + (size_t)t * stride);
    }
}

/* dW += the threads' parts, in thread order, channels split over the threads. */
static void add_direct_parts(const struct bti_conv_geom *g, const float *base, size_t stride,
                             size_t poff, int nt, float *dw)
{
    const int64_t blocks = (g->co + 15) / 16;
#pragma omp parallel num_threads(nt) if (g->co * g->k2 * nt > BTI_PAR_MIN)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        ops(g)->add_parts(base + poff, stride, nt, g->co, g->k2, 16 * (blocks * t / tn),
                             16 * (blocks * (t + 1) / tn), dw);
    }
}

static void family_backward(bt_layer *l, const struct bti_conv_geom *g, const float *x,
                            const float *dy, float *dx)
{
    const float *w = l->value[0]->data;
    const size_t stride = dr_stride(g), poff = part_at(g);
    float *base = (float *)l->scratch->p, *wpk = base + (size_t)g->threads * stride;
    int ran = 1;
    /* parts of the team that ran (bti_conv_sum_parts) */
#pragma omp parallel num_threads(g->threads)
    {
        const int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *buf = base + (size_t)t * stride, *part = buf + poff;
        if (t == 0)
            ran = tn;
        memset(part, 0, dr_part(g) * sizeof *part);
        if (dx) {
            pack_weights(g, w, 1, wpk, t, tn);
#pragma omp barrier
        }
        backward_direct(g, dx ? wpk : NULL, x, dy, dx, g->n * t / tn, g->n * (t + 1) / tn, buf,
                        part);
    }
    add_direct_parts(g, base, stride, poff, ran, l->grad[0]->data);
}

static void direct_forward(bt_layer *l, const struct bti_conv_geom *g, const float *x, float *y)
{
    const struct bti_conv_geom d = as_flat(g, 0);
    family_forward(l, &d, x, y);
}

static void direct_backward(bt_layer *l, const struct bti_conv_geom *g, const float *x,
                            const float *dy, float *dx)
{
    const struct bti_conv_geom d = as_flat(g, 0);
    family_backward(l, &d, x, dy, dx);
}

static void flat_forward(bt_layer *l, const struct bti_conv_geom *g, const float *x, float *y)
{
    const struct bti_conv_geom f = as_flat(g, 1);
    family_forward(l, &f, x, y);
}

static void flat_backward(bt_layer *l, const struct bti_conv_geom *g, const float *x,
                          const float *dy, float *dx)
{
    const struct bti_conv_geom f = as_flat(g, 1);
    family_backward(l, &f, x, dy, dx);
}

const struct bti_conv_form bti_conv_direct = {
    "direct", direct_fits, direct_wins, direct_workspace, direct_forward, direct_backward,
};

const struct bti_conv_form bti_conv_flat = {
    "flat", flat_fits, flat_wins, flat_workspace, flat_forward, flat_backward,
};
