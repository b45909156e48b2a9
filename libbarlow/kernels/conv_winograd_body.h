/* conv_winograd_body.h - the transforms of Winograd F(2x2, 3x3) (see
 * conv_winograd.h), written once over the register of vec_x86.h: VL channels
 * per register, tile by tile. Included by conv_winograd_avx512.c (16 lanes)
 * and conv_winograd_avx2.c (8 lanes), each of which ends with its ops table.
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5
 * .5; 0 0 1], A^T = [1 1 1 0; 0 1 -1 -1] (Lavin and Gray, 2016). Each
 * transform is applied to the rows of a tile, then to its columns. Channel
 * loops run to the channels rounded up to 16, the layout's rounding at both
 * widths, so spare channels come out 0 alike. */
#include "kernels/conv_direct.h"
#include "kernels/conv_winograd.h"
#include "kernels/vec_x86.h"

#define INLINE __attribute__((always_inline)) inline

/* The 16 floats of a tile's transform at p + e*es, masked to the n channels left. */
VT static INLINE void load16(const float *p, int64_t es, int64_t n, vf r[16])
{
    int e;
    for (e = 0; e < 16; e++)
        r[e] = v_load_n(p + e * es, n);
}

VT static INLINE void store16(float *p, int64_t es, const vf r[16])
{
    int e;
    for (e = 0; e < 16; e++)
        v_store(p + e * es, r[e]);
}

/* B^T on the rows of a 4x4 tile (r[i*4 + j]), then on its columns. */
VT static INLINE void input_tf(const vf d[16], vf v[16])
{
    vf r[16];
    int i;
    for (i = 0; i < 4; i++) {
        r[i] = v_sub(d[i], d[8 + i]);
        r[4 + i] = v_add(d[4 + i], d[8 + i]);
        r[8 + i] = v_sub(d[8 + i], d[4 + i]);
        r[12 + i] = v_sub(d[4 + i], d[12 + i]);
    }
    for (i = 0; i < 4; i++) {
        const vf *q = r + 4 * i;
        v[4 * i] = v_sub(q[0], q[2]);
        v[4 * i + 1] = v_add(q[1], q[2]);
        v[4 * i + 2] = v_sub(q[2], q[1]);
        v[4 * i + 3] = v_sub(q[1], q[3]);
    }
}

/* B (the adjoint of input_tf) on the rows, then on the columns. */
VT static INLINE void input_adj(const vf v[16], vf d[16])
{
    vf r[16];
    int i;
    for (i = 0; i < 4; i++) {
        r[i] = v[i];
        r[4 + i] = v_add(v_sub(v[4 + i], v[8 + i]), v[12 + i]);
        r[8 + i] = v_sub(v_add(v[4 + i], v[8 + i]), v[i]);
        r[12 + i] = v_sub(v_zero(), v[12 + i]);
    }
    for (i = 0; i < 4; i++) {
        const vf *q = r + 4 * i;
        d[4 * i] = q[0];
        d[4 * i + 1] = v_add(v_sub(q[1], q[2]), q[3]);
        d[4 * i + 2] = v_sub(v_add(q[1], q[2]), q[0]);
        d[4 * i + 3] = v_sub(v_zero(), q[3]);
    }
}

VT static void wino_input(const float *xp, int64_t ldx, int64_t nb, int64_t h, int64_t w,
                          int64_t ch, float *v, int64_t ld, int64_t es)
{
    const int64_t cr = bti_direct_round(ch);
    int64_t t, c0, off[16];
    int k;
    for (t = 0; t < nb * bti_wino_tiles(h, w); t++) {
        bti_wino_window(t, h, w, ldx, 4, off);
        for (c0 = 0; c0 < cr; c0 += VL) {
            vf d[16], r[16];
            for (k = 0; k < 16; k++)
                d[k] = off[k] < 0 ? v_zero() : v_load_n(xp + off[k] + c0, ch - c0);
            input_tf(d, r);
            store16(v + t * ld + c0, es, r);
        }
    }
}

VT static void wino_input_adjoint(const float *dv, int64_t ld, int64_t es, int64_t nb, int64_t h,
                                  int64_t w, int64_t ch, float *dxp, int64_t ldx)
{
    const int64_t cr = bti_direct_round(ch);
    int64_t t, c0, off[16];
    int k;
    for (t = 0; t < nb * bti_wino_tiles(h, w); t++) {
        bti_wino_window(t, h, w, ldx, 4, off);
        for (c0 = 0; c0 < cr; c0 += VL) {
            vf r[16], d[16];
            load16(dv + t * ld + c0, es, ch - c0, r);
            input_adj(r, d);
            for (k = 0; k < 16; k++)
                if (off[k] >= 0) {
                    float *p = dxp + off[k] + c0;
                    v_store(p, v_add(v_load(p), d[k]));
                }
        }
    }
}

VT static void wino_output(const float *m, int64_t ld, int64_t es, int64_t nb, int64_t h,
                           int64_t w, int64_t ch, float *out, int64_t ldo)
{
    const int64_t cr = bti_direct_round(ch);
    int64_t t, c0, off[4];
    int i, k;
    for (t = 0; t < nb * bti_wino_tiles(h, w); t++) {
        bti_wino_window(t, h, w, ldo, 2, off);
        for (c0 = 0; c0 < cr; c0 += VL) {
            vf r[16], s[8], y[4];
            load16(m + t * ld + c0, es, ch - c0, r);
            for (i = 0; i < 4; i++) { /* A^T on the rows */
                s[i] = v_add(v_add(r[i], r[4 + i]), r[8 + i]);
                s[4 + i] = v_sub(v_sub(r[4 + i], r[8 + i]), r[12 + i]);
            }
            for (i = 0; i < 2; i++) { /* and on the columns */
                const vf *q = s + 4 * i;
                y[2 * i] = v_add(v_add(q[0], q[1]), q[2]);
                y[2 * i + 1] = v_sub(v_sub(q[1], q[2]), q[3]);
            }
            for (k = 0; k < 4; k++)
                if (off[k] >= 0)
                    v_store(out + off[k] + c0, y[k]);
        }
    }
}

VT static void wino_output_adjoint(const float *dyp, int64_t ldy, int64_t nb, int64_t h,
                                   int64_t w, int64_t ch, float *dm, int64_t ld, int64_t es)
{
    const int64_t cr = bti_direct_round(ch);
    int64_t t, c0, off[4];
    int i, k;
    for (t = 0; t < nb * bti_wino_tiles(h, w); t++) {
        bti_wino_window(t, h, w, ldy, 2, off);
        for (c0 = 0; c0 < cr; c0 += VL) {
            vf d[4], q[8], r[16];
            for (k = 0; k < 4; k++)
                d[k] = off[k] < 0 ? v_zero() : v_load_n(dyp + off[k] + c0, ch - c0);
            for (i = 0; i < 2; i++) { /* A on the rows: [1 0; 1 1; 1 -1; 0 -1] */
                q[i] = d[i];
                q[2 + i] = v_add(d[i], d[2 + i]);
                q[4 + i] = v_sub(d[i], d[2 + i]);
                q[6 + i] = v_sub(v_zero(), d[2 + i]);
            }
            for (i = 0; i < 4; i++) { /* and on the columns */
                r[4 * i] = q[2 * i];
                r[4 * i + 1] = v_add(q[2 * i], q[2 * i + 1]);
                r[4 * i + 2] = v_sub(q[2 * i], q[2 * i + 1]);
                r[4 * i + 3] = v_sub(v_zero(), q[2 * i + 1]);
            }
            store16(dm + t * ld + c0, es, r);
        }
    }
}

/* G g G^T of the n <= VL kernels whose entry k is at w + k + lane*stride, into dst + e*es. */
VT static INLINE void weights_v(const float *w, int stride, int64_t n, float *dst, int64_t es)
{
    const vf half = v_set1(0.5f);
    vf g[9], r[12];
    int i, k;
    for (k = 0; k < 9; k++)
        g[k] = v_gather_n(w + k, stride, n);
    for (i = 0; i < 3; i++) { /* G on the rows */
        const vf a = v_add(g[i], g[6 + i]);
        r[i] = g[i];
        r[3 + i] = v_mul(half, v_add(a, g[3 + i]));
        r[6 + i] = v_mul(half, v_sub(a, g[3 + i]));
        r[9 + i] = g[6 + i];
    }
    for (i = 0; i < 4; i++) { /* and on the columns */
        const vf *q = r + 3 * i, a = v_add(q[0], q[2]);
        const vf u[4] = {q[0], v_mul(half, v_add(a, q[1])), v_mul(half, v_sub(a, q[1])), q[2]};
        for (k = 0; k < 4; k++)
            v_store_n(dst + (4 * i + k) * es, u[k], n);
    }
}

/* VL kernels at a time along the rows of u: their entries are 9 floats apart
 * along c, 9*c along co. */
VT static void wino_weights(const float *w, int64_t co, int64_t c, int by_input, int64_t r0,
                            int64_t r1, float *u)
{
    const int64_t n = by_input ? co : c; /* along a row of u */
    const int stride = by_input ? (int)(9 * c) : 9;
    int64_t r, j;
    for (r = r0; r < r1; r++)
        for (j = 0; j < n; j += VL)
            weights_v(w + (by_input ? j * c + r : r * c + j) * 9, stride, n - j, u + r * n + j,
                      co * c);
}

VT static void wino_weight_grad(const float *parts, size_t stride, int nt, int64_t co, int64_t c,
                                int64_t o0, int64_t o1, float *dw)
{
    const vf half = v_set1(0.5f);
    int64_t o, c0;
    int e, t, i, k;
    for (o = o0; o < o1; o++)
        for (c0 = 0; c0 < c; c0 += VL) {
            const int64_t n = c - c0;
            vf du[16], s[12], g[9];
            for (e = 0; e < 16; e++) {
                const float *p = parts + (e * co + o) * c + c0;
                du[e] = v_load_n(p, n);
                for (t = 1; t < nt; t++)
                    du[e] = v_add(du[e], v_load_n(p + (size_t)t * stride, n));
            }
            for (i = 0; i < 4; i++) { /* G^T on the rows: [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1] */
                const vf a = v_add(du[4 + i], du[8 + i]);
                s[i] = v_fmadd(half, a, du[i]);
                s[4 + i] = v_mul(half, v_sub(du[4 + i], du[8 + i]));
                s[8 + i] = v_fmadd(half, a, du[12 + i]);
            }
            for (i = 0; i < 3; i++) { /* and on the columns */
                const vf *q = s + 4 * i, a = v_add(q[1], q[2]);
                g[3 * i] = v_fmadd(half, a, q[0]);
                g[3 * i + 1] = v_mul(half, v_sub(q[1], q[2]));
                g[3 * i + 2] = v_fmadd(half, a, q[3]);
            }
            for (k = 0; k < 9; k++)
                v_scatter_add_n(dw + (o * c + c0) * 9 + k, 9, g[k], n);
        }
}

/* The ops table of this width, named by the including file. */
#define BTI_WINO_OPS(name)                                                                     \
    const struct bti_wino_ops name = {wino_weights, wino_weight_grad,   wino_input,            \
                                      wino_input_adjoint, wino_output, wino_output_adjoint}
