/* pictures.c - the pictures of a run folder, drawn on an RGB canvas and written
 * as PNG by stb_image_write: loss.png (loss per step) and correlation.png (the
 * cross-correlation matrix). */
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

/* A 3x5 pixel font for axis labels: digits, '.', '-', 'e', 'k'; drawn 2x. */
static void canvas_text(struct canvas *c, int x, int y, const char *s, uint32_t rgb)
{
    static const char *chars = "0123456789.-ek";
    static const uint16_t glyph[] = {
        075557, 026227, 071747, 071717, 055711, 074717, 074757, 071111, 075757, 075717,
        000002, 000700, 025743, 045655};
    for (; *s; s++, x += 8) {
        const char *k = strchr(chars, *s);
        int r, col;
        if (!k || !*s)
            continue;
        for (r = 0; r < 5; r++)
            for (col = 0; col < 3; col++)
                if (glyph[k - chars] >> ((4 - r) * 3 + (2 - col)) & 1) {
                    canvas_dot(c, x + 2 * col, y + 2 * r, rgb);
                    canvas_dot(c, x + 2 * col + 1, y + 2 * r, rgb);
                    canvas_dot(c, x + 2 * col, y + 2 * r + 1, rgb);
                    canvas_dot(c, x + 2 * col + 1, y + 2 * r + 1, rgb);
                }
    }
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

void draw_loss(const char *path, const double *loss, int64_t n, int64_t spe)
{
    const int W = 800, H = 450, L = 70, R = 20, T = 20, B = 40;
    struct canvas c;
    double lo = INFINITY, hi = -INFINITY, win, acc = 0;
    int64_t i, w;
    int px, py, prev_x = -1, prev_y = -1, mx = -1, my = -1, d;
    if (n < 1)
        return;
    for (i = 0; i < n; i++)
        if (isfinite(loss[i]) && loss[i] > 0) {
            lo = fmin(lo, loss[i]);
            hi = fmax(hi, loss[i]);
        }
    if (!(lo <= hi))
        return;
    lo = floor(log10(lo));
    hi = ceil(log10(hi));
    if (hi <= lo)
        hi = lo + 1;
    canvas_init(&c, W, H);
    for (d = (int)lo; d <= (int)hi; d++) {
        char lab[16];
        py = H - B - (int)((d - lo) / (hi - lo) * (H - T - B));
        canvas_line(&c, L, py, W - R, py, 0xE0E0E0);
        snprintf(lab, sizeof lab, "1e%d", d);
        canvas_text(&c, 8, py - 5, lab, 0x404040);
    }
    for (i = spe; i < n && spe > 0; i += spe) {
        px = L + (int)((double)i / (double)n * (W - L - R));
        canvas_line(&c, px, T, px, H - B, 0xD0D0D0);
    }
    {
        char lab[32];
        snprintf(lab, sizeof lab, "%lld", (long long)n);
        canvas_text(&c, W - R - 8 * (int)strlen(lab), H - B + 12, lab, 0x404040);
        canvas_text(&c, L, H - B + 12, "0", 0x404040);
    }
    canvas_line(&c, L, T, L, H - B, 0x000000);
    canvas_line(&c, L, H - B, W - R, H - B, 0x000000);
    w = spe / 10 > 1 ? spe / 10 : 1;
    win = 0;
    for (i = 0; i < n; i++) {
        double v = isfinite(loss[i]) && loss[i] > 0 ? loss[i] : pow(10, lo);
        px = L + (int)((double)i / (double)(n > 1 ? n - 1 : 1) * (W - L - R));
        py = H - B - (int)((log10(v) - lo) / (hi - lo) * (H - T - B));
        if (prev_x >= 0)
            canvas_line(&c, prev_x, prev_y, px, py, 0xA8C8F0);
        prev_x = px;
        prev_y = py;
        acc += v;
        win++;
        if (i >= w) {
            acc -= isfinite(loss[i - w]) && loss[i - w] > 0 ? loss[i - w] : pow(10, lo);
            win--;
        }
        py = H - B - (int)((log10(acc / win) - lo) / (hi - lo) * (H - T - B));
        if (mx >= 0)
            canvas_line(&c, mx, my, px, py, 0x1040A0);
        mx = px;
        my = py;
    }
    canvas_save(&c, path);
}

void draw_correlation(const char *path, bt_loss *loss, int64_t D)
{
    int64_t k = D < 64 ? D : 64, shape[2];
    int cell = (int)(512 / k), x, y, i, j;
    struct canvas c;
    bt_tensor *ct = NULL;
    const float *v;
    shape[0] = shape[1] = k;
    if (cell < 1)
        cell = 1;
    if (bt_tensor_create(&ct, 2, shape) != BT_OK || bt_loss_correlation(loss, ct) != BT_OK) {
        fprintf(stderr, "%s: warning: no correlation picture: %s\n", g_cmd, bt_last_error());
        bt_tensor_free(ct);
        return;
    }
    v = bt_tensor_data(ct);
    canvas_init(&c, (int)k * cell, (int)k * cell);
    for (i = 0; i < k; i++)
        for (j = 0; j < k; j++) {
            double a = v[i * k + j];
            int t = (int)(255 * (1 - fmin(1, fabs(a))) + 0.5);
            uint32_t rgb = a >= 0 ? 0xFF0000u | (uint32_t)t << 8 | (uint32_t)t
                                  : (uint32_t)t << 16 | (uint32_t)t << 8 | 0xFFu;
            for (y = 0; y < cell; y++)
                for (x = 0; x < cell; x++)
                    canvas_dot(&c, (int)j * cell + x, (int)i * cell + y, rgb);
        }
    bt_tensor_free(ct);
    canvas_save(&c, path);
}
