/* loss_comm.c - the loss of a global batch spread over ranks (bt_loss_set_comm).
 *
 * Rank r holds N_r rows; the loss is that of the N = sum N_r rows in rank order,
 * the same value on every rank, and rank r's gradient is its rows of the global
 * one. Two ways, chosen alike on every rank from the agreed N and D:
 *   gather  all-gather the raw rows of both views and run the one-process forward
 *           and backward on the global batch: the bits of one process with N rows;
 *           each rank keeps its rows of dL/dza, dL/dzb.
 *   reduce  (the official code's way) sum over the ranks the column sums, then the
 *           centred column sums of squares around the global mean (one-process
 *           accuracy), diag(C) in double and C = sum_r A_r^T B_r / N in float32;
 *           the terms come from the global C. The backward sums the normaliser's
 *           two column reductions (4 D doubles); feature_norm needs neither.
 * The rule, by what each rank receives: gather brings 2 N D floats (both views),
 * reduce D^2 (C; its O(D) vectors aside), so gather when 2 N D < D^2. A Gram path
 * asked for with bt_loss_set_path needs every row: auto then gathers.
 *
 * A forward's collectives: the preflight agreement (status, N_r; D and the
 * settings equal), the confirm agreement (every rank reserved its buffers for
 * the agreed N: their sizes depend on it), the data, the closing agreement; only
 * then does it replace the last forward (the reduce path computes into the sh_*
 * buffers meanwhile and swaps them in). A backward: preflight, its sums,
 * closing, then it writes dza and dzb. A rank whose callback failed goes on
 * with the others (comm.h), and the next agreement fails the call everywhere.
 */
#include "common/comm.h"
#include "loss/loss.h"

#include "kernels/blas.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- settings ------------------------------------------------------------------ */

static void drop_forward(bt_loss *l)
{
    l->valid = 0;
    l->comm_path = 0;
}

void bti_loss_comm_release(bt_loss *l)
{
    struct bti_buffer *const bufs[] = {&l->wa,        &l->wb,        &l->sh_a,    &l->sh_b,
                                       &l->sh_mean_a, &l->sh_istd_a, &l->sh_mean_b, &l->sh_istd_b,
                                       &l->sh_diag,   &l->sh_c};
    size_t i;
    for (i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        bti_buffer_release(bufs[i]);
}

BT_API bt_status bt_loss_set_comm(bt_loss *l, bt_comm *c)
{
    static const char fn[] = "bt_loss_set_comm";
    static const char *const names[] = {
        "loss.mode",
        "loss.lambda (high 32 bits)",
        "loss.lambda (low 32 bits)",
        "loss.scale (high 32 bits)",
        "loss.scale (low 32 bits)",
        "loss.temperature (high 32 bits)",
        "loss.temperature (low 32 bits)",
    };
    double opt[3];
    int64_t same[7];
    bt_status st;
    int i;
    if ((st = bti_check(l, BTI_KIND_LOSS, fn, "l")) != BT_OK)
        return st;
    if (!c) { /* one process again: not collective */
        l->comm = NULL;
        drop_forward(l);
        bti_loss_comm_release(l);
        return BT_OK;
    }
    if ((st = bti_check(c, BTI_KIND_COMM, fn, "c")) != BT_OK)
        return st;
    /* the options as exact integers (an agreement carries |v| < 2^53) */
    opt[0] = l->lambda;
    opt[1] = l->scale;
    opt[2] = l->tau;
    same[0] = l->mode;
    for (i = 0; i < 3; i++) {
        uint64_t bits;
        memcpy(&bits, &opt[i], sizeof bits);
        same[1 + 2 * i] = (int64_t)(bits >> 32);
        same[2 + 2 * i] = (int64_t)(bits & 0xffffffffu);
    }
    if ((st = bti_comm_join(c, same, 7, names, fn)) != BT_OK)
        return st;
    l->comm = c;
    drop_forward(l);
    return BT_OK;
}

bt_status bti_loss_set_comm_path(bt_loss *l, int path)
{
    bt_status st = bti_check(l, BTI_KIND_LOSS, "bti_loss_set_comm_path", "l");
    if (st != BT_OK)
        return st;
    if (path < BTI_LOSS_COMM_AUTO || path > BTI_LOSS_COMM_REDUCE)
        return bti_fail(BT_E_INVALID_ARG,
                        "bti_loss_set_comm_path: path is %d; expected 0 (auto), 1 (gather) or 2 "
                        "(reduce)",
                        path);
    l->comm_path_req = path;
    return BT_OK;
}

int bti_loss_comm_path(const bt_loss *l) { return l->valid ? l->comm_path : 0; }

/* ---- forward ------------------------------------------------------------------- */

static int choose_comm_path(const bt_loss *l, int64_t n, int64_t d)
{
    if (l->comm_path_req != BTI_LOSS_COMM_AUTO)
        return l->comm_path_req;
    if (l->path_req == BT_LOSS_PATH_GRAM && l->mode != BTI_LOSS_XENT)
        return BTI_LOSS_COMM_GATHER; /* the Gram matrices need every row */
    /* floats each rank receives: 2 N D gathered, D^2 reduced (header comment) */
    return 2.0 * (double)n * (double)d < (double)d * (double)d ? BTI_LOSS_COMM_GATHER
                                                               : BTI_LOSS_COMM_REDUCE;
}

/* Every buffer of this forward, before the confirm agreement; grows keep content,
 * and nothing is released until the forward commits. */
static bt_status reserve(bt_loss *l, int cpath, int path, const int64_t *rows, int64_t n,
                         int64_t n_own, int64_t d, const char *fn)
{
    struct bti_loss_plan_item it[BTI_LOSS_PLAN_MAX + 12];
    const size_t dd = (size_t)d * (size_t)d;
    int count;
    bt_status st;
    if (cpath == BTI_LOSS_COMM_GATHER) {
        const size_t nd = (size_t)n * (size_t)d;
        count = bti_loss_plan(l, it, n, d, path);
        it[count++] = (struct bti_loss_plan_item){&l->wa, nd * sizeof(float)};
        it[count++] = (struct bti_loss_plan_item){&l->wb, nd * sizeof(float)};
        if ((st = bti_loss_plan_reserve(it, count, fn)) != BT_OK)
            return st;
        return bti_coll_gather_reserve(l->comm, rows, d, fn);
    } else {
        const size_t nd = (size_t)n_own * (size_t)d;
        const size_t mx = (size_t)(n_own > d ? n_own : d);
        const size_t red = 2 * mx > 4 * (size_t)d ? 2 * mx : 4 * (size_t)d;
        count = 0;
        it[count++] = (struct bti_loss_plan_item){&l->sh_a, nd * sizeof(float)};
        it[count++] = (struct bti_loss_plan_item){&l->sh_b, nd * sizeof(float)};
        it[count++] = (struct bti_loss_plan_item){&l->sh_mean_a, mx * sizeof(double)};
        it[count++] = (struct bti_loss_plan_item){&l->sh_istd_a, mx * sizeof(double)};
        it[count++] = (struct bti_loss_plan_item){&l->sh_mean_b, mx * sizeof(double)};
        it[count++] = (struct bti_loss_plan_item){&l->sh_istd_b, mx * sizeof(double)};
        it[count++] = (struct bti_loss_plan_item){&l->sh_diag, (size_t)d * sizeof(double)};
        it[count++] = (struct bti_loss_plan_item){&l->sh_c, dd * sizeof(float)};
        it[count++] = (struct bti_loss_plan_item){&l->wa, nd * sizeof(float)};
        it[count++] = (struct bti_loss_plan_item){&l->wb, nd * sizeof(float)};
        it[count++] = (struct bti_loss_plan_item){&l->hv, (size_t)d * sizeof(double)};
        it[count++] = (struct bti_loss_plan_item){&l->red, red * sizeof(double)};
        if (l->mode == BTI_LOSS_XENT)
            it[count++] = (struct bti_loss_plan_item){
                &l->gblk, (size_t)bti_loss_gblock_rows(d) * (size_t)d * sizeof(float)};
        return bti_loss_plan_reserve(it, count, fn);
    }
}

/* The reduce path's forward into the sh_* buffers, its sums over the ranks
 * interleaved (a failed callback leaves garbage that is never used). */
static void reduce_forward(bt_loss *l, struct bti_coll *k, const float *za, const float *zb,
                           int64_t n_own, int64_t n, int64_t d, int ew)
{
    double *s = l->red.p, *ma = l->sh_mean_a.p, *ia = l->sh_istd_a.p, *mb = l->sh_mean_b.p;
    double *ib = l->sh_istd_b.p, *dg = l->sh_diag.p;
    float *a = l->sh_a.p, *b = l->sh_b.p, *c = l->sh_c.p;
    int64_t j;
    if (l->mode == BTI_LOSS_FEATURE_NORM) { /* per row: nothing to sum */
        bti_loss_norm_feature(za, n_own, d, a, ma, ia, ew);
        bti_loss_norm_feature(zb, n_own, d, b, mb, ib, ew);
    } else {
        bti_loss_colsum(za, n_own, d, s, ew);
        bti_loss_colsum(zb, n_own, d, s + d, ew);
        bti_coll_sum_f64(k, s, 2 * d, "the column sums of za and zb");
        for (j = 0; j < d; j++) {
            ma[j] = s[j] / (double)n;
            mb[j] = s[d + j] / (double)n;
        }
        /* centred around the global mean: no cancellation, as on one process */
        bti_loss_colsq(za, n_own, d, ma, s, ew);
        bti_loss_colsq(zb, n_own, d, mb, s + d, ew);
        bti_coll_sum_f64(k, s, 2 * d, "the centred column sums of squares of za and zb");
        for (j = 0; j < d; j++) {
            ia[j] = 1.0 / sqrt(s[j] / (double)n + BTI_LOSS_EPS);
            ib[j] = 1.0 / sqrt(s[d + j] / (double)n + BTI_LOSS_EPS);
        }
        bti_loss_norm_rows(za, n_own, d, ma, ia, a, ew);
        bti_loss_norm_rows(zb, n_own, d, mb, ib, b, ew);
    }
    bti_loss_coldot(a, b, n_own, d, dg, ew);
    bti_coll_sum_f64(k, dg, d, "diag(C)");
    for (j = 0; j < d; j++)
        dg[j] /= (double)n;
    bti_blas_begin(l->threads);
    cblas_sgemm(BTI_ROW_MAJOR, BTI_TRANS, BTI_NO_TRANS, (int)d, (int)d, (int)n_own,
                1.0f / (float)n, a, (int)d, b, (int)d, 0.0f, c, (int)d);
    bti_blas_end(l->threads);
    bti_coll_sum_f32(k, c, d * d, "C");
    for (j = 0; j < d; j++) /* the diagonal from the double reduction, as on one process */
        c[j * d + j] = (float)dg[j];
}

static void swap(struct bti_buffer *x, struct bti_buffer *y)
{
    struct bti_buffer t = *x;
    *x = *y;
    *y = t;
}

bt_status bti_loss_forward_comm(bt_loss *l, const bt_tensor *za, const bt_tensor *zb, double *loss)
{
    static const char fn[] = "bt_loss_forward";
    static const char *const names[] = {"D", "loss.mode", "the product path (bt_loss_set_path)",
                                        "the communication path"};
    bt_comm *c = l->comm;
    const int32_t w = c->size, me = c->rank;
    struct bti_coll k;
    int64_t n_own = 0, d = 0, n = 0, row0 = 0, same[4];
    const int64_t *rows;
    int path = BT_LOSS_PATH_DXD, cpath = BTI_LOSS_COMM_REDUCE, ew = 1;
    bt_status st, pre, st2 = BT_OK, conf;
    int32_t r;

    /* local checks: a rank of several may hold a single row */
    st = bti_loss_check_views(fn, za, zb, w == 1 ? 2 : 1);
    if (st == BT_OK && !loss)
        st = bti_fail(BT_E_MISUSE, "%s: loss is NULL", fn);
    if (st == BT_OK) {
        n_own = za->shape[0];
        d = za->shape[1];
        ew = bti_loss_ew_threads(l, za->numel);
        st = bti_loss_check_finite(fn, za, zb, ew);
    }
    if (st == BT_OK && l->comm_path_req == BTI_LOSS_COMM_REDUCE && l->path_req == BT_LOSS_PATH_GRAM)
        st = bti_fail(BT_E_UNSUPPORTED,
                      "%s: the reduce path sums C over the ranks; it has no Gram path "
                      "(bt_loss_set_path)",
                      fn);

    if ((pre = bti_coll_begin(&k, c, fn)) != BT_OK)
        return pre;
    same[0] = d;
    same[1] = l->mode;
    same[2] = l->path_req;
    same[3] = l->comm_path_req;
    if ((pre = bti_coll_agree(&k, st, n_own, same, 4, names, NULL)) != BT_OK)
        return pre; /* known to every rank */
    rows = c->counts; /* until the closing agreement */
    for (r = 0; r < w; r++) {
        n += rows[r];
        row0 += r < me ? rows[r] : 0;
    }
    if (k.failed) {
        st2 = BT_E_COMM; /* the counts may be garbage: reserve nothing, fail at the confirm */
    } else if (n > INT_MAX) {
        st2 = bti_fail(BT_E_SHAPE, "%s: the global batch N = %lld (%d ranks) must be < 2^31", fn,
                       (long long)n, (int)w);
    } else {
        cpath = choose_comm_path(l, n, d);
        path = cpath == BTI_LOSS_COMM_GATHER ? bti_loss_choose_path(l, n, d) : BT_LOSS_PATH_DXD;
        st2 = reserve(l, cpath, path, rows, n, n_own, d, fn);
    }
    if ((conf = bti_coll_confirm(&k, st2)) != BT_OK)
        return conf;

    if (cpath == BTI_LOSS_COMM_GATHER) {
        bti_coll_gather_rows(&k, za->data, rows, d, l->wa.p, "the rows of za");
        bti_coll_gather_rows(&k, zb->data, rows, d, l->wb.p, "the rows of zb");
    } else {
        reduce_forward(l, &k, za->data, zb->data, n_own, n, d, ew);
    }
    if ((st = bti_coll_agree(&k, BT_OK, 0, NULL, 0, NULL, NULL)) != BT_OK)
        return st;

    /* every rank succeeded: commit (nothing can fail from here) */
    if (cpath == BTI_LOSS_COMM_GATHER) {
        struct bti_loss_plan_item it[BTI_LOSS_PLAN_MAX];
        int count = bti_loss_plan(l, it, n, d, path);
        struct bti_buffer *const sh[] = {&l->sh_a,      &l->sh_b,      &l->sh_mean_a,
                                         &l->sh_istd_a, &l->sh_mean_b, &l->sh_istd_b,
                                         &l->sh_diag,   &l->sh_c};
        size_t i;
        bti_loss_plan_release(it, count);
        for (i = 0; i < sizeof sh / sizeof sh[0]; i++) /* the reduce path's */
            bti_buffer_release(sh[i]);
        bti_loss_forward_local(l, l->wa.p, l->wb.p, n, d, path,
                               bti_loss_ew_threads(l, n * d));
    } else {
        swap(&l->a, &l->sh_a);
        swap(&l->b, &l->sh_b);
        swap(&l->mean_a, &l->sh_mean_a);
        swap(&l->istd_a, &l->sh_istd_a);
        swap(&l->mean_b, &l->sh_mean_b);
        swap(&l->istd_b, &l->sh_istd_b);
        swap(&l->diag, &l->sh_diag);
        swap(&l->c, &l->sh_c);
        bti_buffer_release(&l->ka);
        bti_buffer_release(&l->kb);
        if (l->mode != BTI_LOSS_XENT)
            bti_buffer_release(&l->gblk);
        l->n = n_own;
        l->d = d;
        l->path = BT_LOSS_PATH_DXD;
        l->ew_threads = ew;
        bti_loss_finish(l);
    }
    l->comm_path = cpath;
    l->n_glob = n;
    l->n_own = n_own;
    l->row0 = row0;
    *loss = l->value;
    return BT_OK;
}

/* ---- backward ------------------------------------------------------------------ */

/* The reduce path's backward of this rank's rows into wa, wb. */
static void reduce_backward(bt_loss *l, struct bti_coll *k)
{
    float *xa = l->wa.p, *xb = l->wb.p;
    const float *a = l->a.p, *b = l->b.p;
    const double *h = l->hv.p;
    double *s = l->red.p, inv = 1.0 / (double)l->n_glob;
    const int64_t d = l->d;
    bti_loss_back_products(l, l->n_glob, xa, xb);
    if (l->mode == BTI_LOSS_FEATURE_NORM) { /* per row: nothing to sum */
        bti_loss_norm_back_feature(l, xa, b, h, a, l->istd_a.p);
        bti_loss_norm_back_feature(l, xb, a, h, b, l->istd_b.p);
        return;
    }
    bti_loss_back_sums(l, xa, b, h, a, s, s + d);
    bti_loss_back_sums(l, xb, a, h, b, s + 2 * d, s + 3 * d);
    bti_coll_sum_f64(k, s, 4 * d, "the normalisation's column sums of dL/dA and dL/dB");
    bti_loss_back_apply(l, xa, a, l->istd_a.p, s, s + d, inv);
    bti_loss_back_apply(l, xb, b, l->istd_b.p, s + 2 * d, s + 3 * d, inv);
}

bt_status bti_loss_backward_comm(bt_loss *l, bt_tensor *dza, bt_tensor *dzb)
{
    static const char fn[] = "bt_loss_backward";
    static const char *const names[] = {"D", "the global batch N", "the communication path"};
    struct bti_coll k;
    int64_t same[3];
    size_t bytes;
    bt_status st, pre;

    st = bti_loss_check_grads(fn, l, dza, dzb, l->n_own);
    if ((pre = bti_coll_begin(&k, l->comm, fn)) != BT_OK)
        return pre;
    same[0] = l->valid ? l->d : -1;
    same[1] = l->valid ? l->n_glob : -1;
    same[2] = l->valid ? l->comm_path : -1;
    if ((pre = bti_coll_agree(&k, st, l->n_own, same, 3, names, NULL)) != BT_OK)
        return pre;
    if (l->comm_path == BTI_LOSS_COMM_REDUCE)
        reduce_backward(l, &k);
    if ((st = bti_coll_agree(&k, BT_OK, 0, NULL, 0, NULL, NULL)) != BT_OK)
        return st;

    /* every rank succeeded: only now are dza and dzb written */
    bytes = (size_t)l->n_own * (size_t)l->d * sizeof(float);
    if (l->comm_path == BTI_LOSS_COMM_GATHER) {
        const size_t off = (size_t)l->row0 * (size_t)l->d;
        bti_loss_backward_local(l, l->wa.p, l->wb.p); /* the global batch's gradient */
        memcpy(dza->data, (const float *)l->wa.p + off, bytes);
        memcpy(dzb->data, (const float *)l->wb.p + off, bytes);
    } else {
        memcpy(dza->data, l->wa.p, bytes);
        memcpy(dzb->data, l->wb.p, bytes);
    }
    return BT_OK;
}
