/* pictures.c - the pictures of a run folder, drawn on an RGB canvas and written
 * as PNG by stb_image_write: loss.png (the loss and its two terms per step),
 * knn.png (kNN top-1 per epoch) and correlation.png (the cross-correlation
 * matrix, with its colour scale). */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

struct canvas {
    int w, h;
    uint8_t *px; /* RGB */
};

static void canvas_init(struct canvas *c, int w, int h)
{
    c->w = w;
    c->h = h;
    c->px = xmalloc((size_t)w * (size_t)h * 3);
    memset(c->px, 255, (size_t)w * (size_t)h * 3);
}

static void canvas_dot(struct canvas *c, int x, int y, uint32_t rgb)
{
    uint8_t *p;
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = (uint8_t)(rgb >> 16);
    p[1] = (uint8_t)(rgb >> 8);
    p[2] = (uint8_t)rgb;
}

static void canvas_line(struct canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb)
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        int e2 = 2 * e;
        canvas_dot(c, x0, y0, rgb);
        if (x0 == x1 && y0 == y1)
            break;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

/* A 3x5 pixel font, drawn 2x (6 x 10 pixels, 8 apart): digits, capitals
 * (lower case is drawn as capitals) and a few signs. Each glyph is 5 rows of
 * 3 bits, top row first, as one octal digit per row. */
static const char font_chars[] = "0123456789.-ABCDEFGHIJKLMNOPQRSTUVWXYZ :()%/=+,_";
static const uint16_t font_glyphs[] = {
    075557, 026227, 071747, 071717, 055711, 074717, 074757, 071111, 075757, 075717, 000002,
    000700, 025755, 065656, 034443, 065556, 074647, 074644, 034553, 055755, 072227, 011152,
    055655, 044447, 057755, 065555, 025552, 065644, 025563, 065655, 034216, 072222, 055557,
    055552, 055775, 055255, 055222, 071247, 000000, 002020, 012221, 042224, 051245, 011244,
    007070, 002720, 000024, 000007};

static void canvas_text(struct canvas *c, int x, int y, const char *s, uint32_t rgb)
{
    for (; *s; s++, x += 8) {
        const int ch = *s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s;
        const char *k = ch ? strchr(font_chars, ch) : NULL;
        int r, col;
        if (!k)
            continue;
        for (r = 0; r < 5; r++)
            for (col = 0; col < 3; col++)
                if (font_glyphs[k - font_chars] >> ((4 - r) * 3 + (2 - col)) & 1) {
                    canvas_dot(c, x + 2 * col, y + 2 * r, rgb);
                    canvas_dot(c, x + 2 * col + 1, y + 2 * r, rgb);
                    canvas_dot(c, x + 2 * col, y + 2 * r + 1, rgb);
                    canvas_dot(c, x + 2 * col + 1, y + 2 * r + 1, rgb);
                }
    }
}

static int text_width(const char *s) { return 8 * (int)strlen(s); }

static void canvas_box(struct canvas *c, int x, int y, int w, int h, uint32_t rgb)
{
    int i, j;
    for (j = 0; j < h; j++)
        for (i = 0; i < w; i++)
            canvas_dot(c, x + i, y + j, rgb);
}

/* Red for +1, white for 0, blue for -1 (clamped). */
static uint32_t diverging(double a)
{
    const int t = (int)(255 * (1 - fmin(1, fabs(a))) + 0.5);
    return a >= 0 ? 0xFF0000u | (uint32_t)t << 8 | (uint32_t)t
                  : (uint32_t)t << 16 | (uint32_t)t << 8 | 0xFFu;
}

static void canvas_save(struct canvas *c, const char *path)
{
    char tmp[PATH_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    if (!stbi_write_png(tmp, c->w, c->h, 3, c->px, c->w * 3) || rename(tmp, path) != 0) {
        remove(tmp);
        fail("%s: cannot write the picture", path);
    }
    free(c->px);
    c->px = NULL;
}

/* A plot area of a canvas: data x in [x0, x1], y in [y0, y1] (log10 of the
 * value with logy) inside margins left L, right R, top T, bottom B. */
struct plot {
    struct canvas c;
    int L, R, T, B;
    double x0, x1, y0, y1;
    int logy;
};

static int plot_x(const struct plot *p, double x)
{
    return p->L + (int)((x - p->x0) / (p->x1 - p->x0) * (p->c.w - p->L - p->R));
}

static int plot_y(const struct plot *p, double y)
{
    const double v = p->logy ? log10(y) : y;
    return p->c.h - p->B - (int)((v - p->y0) / (p->y1 - p->y0) * (p->c.h - p->T - p->B));
}

/* Frame, title, axis names and x ticks at about five round steps. */
static void plot_axes(struct plot *p, const char *title, const char *xname, const char *yname)
{
    const int W = p->c.w, H = p->c.h;
    double span = p->x1 - p->x0, step = pow(10, floor(log10(span > 0 ? span : 1))), x;
    char lab[32];
    if (span / step < 3)
        step /= 2;
    if (span / step > 8)
        step *= 2;
    for (x = ceil(p->x0 / step) * step; x <= p->x1 + 1e-9; x += step) {
        const int px = plot_x(p, x);
        snprintf(lab, sizeof lab, "%g", x);
        canvas_line(&p->c, px, H - p->B, px, H - p->B + 4, 0x000000);
        canvas_text(&p->c, px - text_width(lab) / 2, H - p->B + 8, lab, 0x404040);
    }
    canvas_line(&p->c, p->L, p->T, p->L, H - p->B, 0x000000);
    canvas_line(&p->c, p->L, H - p->B, W - p->R, H - p->B, 0x000000);
    canvas_text(&p->c, (W - text_width(title)) / 2, 8, title, 0x000000);
    canvas_text(&p->c, (p->L + W - p->R - text_width(xname)) / 2, H - 14, xname, 0x000000);
    canvas_text(&p->c, 8, p->T - 22, yname, 0x000000);
}

/* A series as a line, points with non-positive values (log scale) or
 * negative ones (no data) skipped; each point the mean of the last `win`. */
/* A point of a series counts when it is finite and, on a log scale,
 * positive (elsewhere non-negative: -1 marks "no data"). */
static int plottable(const struct plot *p, double v)
{
    return isfinite(v) && (p->logy ? v > 0 : v >= 0);
}

/* A series as a line, each point the mean of the plottable values among the
 * last `win` (a gap where there are none). */
static void plot_series(struct plot *p, const double *v, int64_t n, int64_t win, uint32_t rgb)
{
    double acc = 0;
    int64_t i, m = 0;
    int prev_x = -1, prev_y = -1;
    for (i = 0; i < n; i++) {
        if (plottable(p, v[i])) {
            acc += v[i];
            m++;
        }
        if (i >= win && plottable(p, v[i - win])) {
            acc -= v[i - win];
            m--;
        }
        if (m == 0) {
            prev_x = -1;
            continue;
        }
        {
            const int px = plot_x(p, (double)(i + 1)), py = plot_y(p, acc / (double)m);
            if (prev_x >= 0)
                canvas_line(&p->c, prev_x, prev_y, px, py, rgb);
            else
                canvas_dot(&p->c, px, py, rgb);
            prev_x = px;
            prev_y = py;
        }
    }
}

/* A labelled grid line at data value y. */
static void y_tick(struct plot *p, double y, const char *lab)
{
    const int py = plot_y(p, y);
    canvas_line(&p->c, p->L, py, p->c.w - p->R, py, 0xE0E0E0);
    canvas_text(&p->c, p->L - 8 - text_width(lab), py - 5, lab, 0x404040);
}

static void legend(struct plot *p, int row, uint32_t rgb, const char *what)
{
    const int x = p->c.w - p->R - 8 - text_width(what) - 22, y = p->T + 6 + 16 * row;
    canvas_box(&p->c, x, y + 4, 16, 3, rgb);
    canvas_text(&p->c, x + 22, y, what, 0x202020);
}

void draw_loss(const char *path, const char *title, const struct history *h, int64_t n, int64_t spe)
{
    const double *series[3] = {h->loss, h->on, h->off};
    const uint32_t dark[3] = {0x1040A0, 0xD06000, 0x208020};
    struct plot p = {{0}, 90, 20, 44, 44, 0, 0, 0, 0, 1};
    double lo = INFINITY, hi = -INFINITY;
    int64_t i, w = spe / 10 > 1 ? spe / 10 : 1;
    int d, s;
    char lab[48], full[PATH_CAP + 32];
    if (n < 1)
        return;
    for (s = 0; s < 3; s++)
        for (i = 0; i < n; i++)
            if (plottable(&p, series[s][i])) {
                lo = fmin(lo, series[s][i]);
                hi = fmax(hi, series[s][i]);
            }
    if (!(lo <= hi))
        return;
    p.y0 = floor(log10(lo));
    p.y1 = ceil(log10(hi));
    if (p.y1 <= p.y0)
        p.y1 = p.y0 + 1;
    p.x0 = 0;
    p.x1 = (double)(n > 1 ? n : 2);
    canvas_init(&p.c, 900, 500);
    for (d = (int)p.y0; d <= (int)p.y1; d++) {
        snprintf(lab, sizeof lab, "1e%d", d);
        y_tick(&p, pow(10, d), lab);
    }
    for (i = spe; i < n && spe > 0; i += spe) /* epoch boundaries */
        canvas_line(&p.c, plot_x(&p, (double)i), p.T, plot_x(&p, (double)i), p.c.h - p.B, 0xD8D8D8);
    snprintf(full, sizeof full, "loss per step: %s", title);
    plot_axes(&p, full, "step", "loss (log)");
    plot_series(&p, h->loss, n, 1, 0xB8D0F0);
    for (s = 0; s < 3; s++)
        plot_series(&p, series[s], n, w, dark[s]);
    legend(&p, 0, dark[0], "total (light: each step)");
    legend(&p, 1, dark[1], "on-diagonal term");
    legend(&p, 2, dark[2], "lambda x off-diagonal term");
    snprintf(lab, sizeof lab, "dark: mean of %lld steps", (long long)w);
    canvas_text(&p.c, p.L + 8, p.T + 6, lab, 0x404040);
    canvas_save(&p.c, path);
}

void draw_knn(const char *path, const char *title, const struct history *h, int64_t nepochs)
{
    struct plot p = {{0}, 70, 20, 44, 44, 0, 0, 0, 1, 0};
    char full[PATH_CAP + 32], lab[16];
    int64_t i, have = 0;
    int d;
    for (i = 0; i < nepochs; i++)
        have += plottable(&p, h->knn[i]);
    if (have == 0)
        return;
    p.x0 = 0;
    p.x1 = (double)(nepochs > 1 ? nepochs : 2);
    canvas_init(&p.c, 700, 400);
    for (d = 0; d <= 100; d += 20) {
        snprintf(lab, sizeof lab, "%d%%", d);
        y_tick(&p, d / 100.0, lab);
    }
    snprintf(full, sizeof full, "kNN top-1 per epoch: %s", title);
    plot_axes(&p, full, "epoch", "kNN top-1");
    plot_series(&p, h->knn, nepochs, 1, 0x1040A0);
    canvas_save(&p.c, path);
}

void draw_correlation(const char *path, const char *title, bt_loss *loss, int64_t D)
{
    int64_t k = D < 64 ? D : 64, shape[2];
    const int cell = (int)(512 / k) > 1 ? (int)(512 / k) : 1, top = 40, left = 16;
    int x, y, i, j, side;
    struct canvas c;
    bt_tensor *ct = NULL;
    const float *v;
    char lab[PATH_CAP + 64];
    shape[0] = shape[1] = k;
    if (bt_tensor_create(&ct, 2, shape) != BT_OK || bt_loss_correlation(loss, ct) != BT_OK) {
        fprintf(stderr, "%s: warning: no correlation picture: %s\n", g_cmd, bt_last_error());
        bt_tensor_free(ct);
        return;
    }
    v = bt_tensor_data(ct);
    side = (int)k * cell;
    canvas_init(&c, left + side + 110, top + side + 30);
    for (i = 0; i < k; i++)
        for (j = 0; j < k; j++)
            for (y = 0; y < cell; y++)
                for (x = 0; x < cell; x++)
                    canvas_dot(&c, left + (int)j * cell + x, top + (int)i * cell + y,
                               diverging(v[i * k + j]));
    bt_tensor_free(ct);
    /* the colour scale: +1 at the top, -1 at the bottom */
    for (y = 0; y < side; y++)
        canvas_box(&c, left + side + 20, top + y, 20, 1, diverging(1.0 - 2.0 * y / (side - 1)));
    canvas_text(&c, left + side + 46, top, "+1", 0x000000);
    canvas_text(&c, left + side + 46, top + side / 2 - 5, "0", 0x000000);
    canvas_text(&c, left + side + 46, top + side - 10, "-1", 0x000000);
    snprintf(lab, sizeof lab, "cross-correlation C: %s", title);
    canvas_text(&c, left, 8, lab, 0x000000);
    snprintf(lab, sizeof lab, "first %lld of %lld dimensions, last step", (long long)k,
             (long long)D);
    canvas_text(&c, left, top + side + 12, lab, 0x404040);
    canvas_save(&c, path);
}
