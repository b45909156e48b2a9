/* check_loss_comm.c - the loss of a global batch over W ranks (threads,
 * tests/util_comm.c): every mode, uneven shards, both communication paths (forced
 * and chosen) with and without the allgather callback, against the one-process
 * loss of the concatenated batch (gather: the same bits; reduce: to rounding);
 * bad arguments and failing callbacks fail the call on every rank and change
 * nothing, except a failure in the closing agreement (barlow.h). */
#include "comm_harness.h"
#include "golden.h"
#include "loss/loss.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const modes[] = {"barlow", "invariance_only", "redundancy_only", "feature_norm",
                                    "xent"};
enum { NMODES = 5, MAXN = 32, MAXD = 40 };

/* ---- the global batch and its one-process reference -------------------------------- */

/* Correlated views with per-column scales and offsets; `seed` varies the batch. */
static void gen(int64_t n, int64_t d, uint64_t seed, float *za, float *zb)
{
    int64_t i, j;
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) {
            uint64_t k = (uint64_t)(i * d + j);
            float u1 = golden_uni(2 * seed + 1, k), u2 = golden_uni(2 * seed + 2, k);
            za[k] = u1 * (float)(1 + j % 4) + 0.25f * (float)(j % 3);
            zb[k] = u1 + 0.5f * u2;
        }
}

struct ref {
    double value, on, off;
    int path;
    float dza[MAXN * MAXD], dzb[MAXN * MAXD], c[MAXD * MAXD];
};

/* A loss of `mode` with non-default lambda, scale and temperature, one thread
 * (the same BLAS bits on every rank and in the reference); NULL on failure. */
static bt_loss *new_loss(int mode, const char *lambda)
{
    bt_config *cfg = NULL;
    bt_loss *l = NULL;
    if (bt_config_create(&cfg) != BT_OK)
        return NULL;
    if (bt_config_set(cfg, "loss.mode", modes[mode]) == BT_OK &&
        bt_config_set(cfg, "loss.lambda", lambda ? lambda : "0.02") == BT_OK &&
        bt_config_set(cfg, "loss.scale", "0.5") == BT_OK &&
        bt_config_set(cfg, "loss.temperature", "0.2") == BT_OK &&
        bt_config_set(cfg, "threads", "1") == BT_OK)
        bt_loss_create(&l, cfg);
    bt_config_free(cfg);
    return l;
}

static bt_tensor *mat(int64_t n, int64_t d, const float *src)
{
    int64_t shape[2] = {n, d};
    bt_tensor *t = NULL;
    ck_assert_int_eq(bt_tensor_create(&t, 2, shape), BT_OK);
    if (src)
        memcpy(bt_tensor_data(t), src, (size_t)(n * d) * sizeof(float));
    return t;
}

static void reference(int mode, int path_req, int64_t n, int64_t d, const float *za,
                      const float *zb, struct ref *r)
{
    bt_loss *l = new_loss(mode, NULL);
    bt_tensor *a = mat(n, d, za), *b = mat(n, d, zb), *ga = mat(n, d, NULL), *gb = mat(n, d, NULL),
              *c = mat(d, d, NULL);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(bt_loss_set_path(l, path_req), BT_OK);
    ck_assert_int_eq(bt_loss_forward(l, a, b, &r->value), BT_OK);
    ck_assert_int_eq(bt_loss_terms(l, &r->on, &r->off), BT_OK);
    ck_assert_int_eq(bt_loss_backward(l, ga, gb), BT_OK);
    ck_assert_int_eq(bt_loss_correlation(l, c), BT_OK);
    r->path = bt_loss_path(l);
    memcpy(r->dza, bt_tensor_data(ga), (size_t)(n * d) * sizeof(float));
    memcpy(r->dzb, bt_tensor_data(gb), (size_t)(n * d) * sizeof(float));
    memcpy(r->c, bt_tensor_data(c), (size_t)(d * d) * sizeof(float));
    bt_tensor_free(a);
    bt_tensor_free(b);
    bt_tensor_free(ga);
    bt_tensor_free(gb);
    bt_tensor_free(c);
    bt_loss_free(l);
}

/* ---- one job: what the ranks run, what they found ------------------------------------ */

struct job {
    int mode, w, cpath, path_req;
    int64_t n, d, rows[HARNESS_MAX_RANKS], row0[HARNESS_MAX_RANKS];
    float za[MAXN * MAXD], zb[MAXN * MAXD], ya[MAXN * MAXD], yb[MAXN * MAXD];
    struct ref rx, ry; /* references of the batches (za, zb) and (ya, yb) */
    int want_cpath;    /* the path the ranks must take */
    /* results */
    char msg[HARNESS_MAX_RANKS][320];
    double err_value[HARNESS_MAX_RANKS], err_grad[HARNESS_MAX_RANKS], err_c[HARNESS_MAX_RANKS];
    /* failure walks */
    int fail_rank, mark[HARNESS_MAX_RANKS][8];
    int dry, any_closing; /* callbacks: a counting run; the failure is in the closing agreement */
    bt_status got[HARNESS_MAX_RANKS];
};

static void job_init(struct job *j, int mode, int w, int64_t n, int64_t d, const int64_t *rows)
{
    int r;
    memset(j, 0, sizeof *j);
    j->mode = mode;
    j->w = w;
    j->n = n;
    j->d = d;
    for (r = 0; r < w; r++) {
        j->rows[r] = rows ? rows[r] : n / w + (r < n % w); /* 13 over 3: 5/4/4 */
        j->row0[r] = r ? j->row0[r - 1] + j->rows[r - 1] : 0;
    }
    gen(n, d, 1, j->za, j->zb);
    gen(n, d, 7, j->ya, j->yb);
}

static void job_refs(struct job *j)
{
    reference(j->mode, j->path_req, j->n, j->d, j->za, j->zb, &j->rx);
    reference(j->mode, j->path_req, j->n, j->d, j->ya, j->yb, &j->ry);
}

/* The first failure's message wins; a body that fails skips what is left of it
 * (the other ranks then wait in a collective: Check's timeout ends the test). */
#define FAIL(...)                                                                              \
    do {                                                                                       \
        if (!j->msg[hr->rank][0])                                                              \
            snprintf(j->msg[hr->rank], sizeof j->msg[0], __VA_ARGS__);                         \
        goto out;                                                                              \
    } while (0)
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond))                                                                           \
            FAIL(__VA_ARGS__);                                                                 \
    } while (0)

/* The first rank's failure message, or "harness failed" when none says more. */
static const char *first_msg(const struct job *j)
{
    int r;
    for (r = 0; r < j->w; r++)
        if (j->msg[r][0])
            return j->msg[r];
    return "harness failed";
}

static double max_abs(const float *x, int64_t count)
{
    double m = 0;
    int64_t i;
    for (i = 0; i < count; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

/* Max |got - want| over max |want| (0 when equal), of this rank's rows of want. */
static double rows_err(const float *got, const float *want, int64_t count)
{
    double m = 0, s = max_abs(want, count);
    int64_t i;
    for (i = 0; i < count; i++)
        m = fmax(m, fabs((double)got[i] - (double)want[i]));
    return m == 0 ? 0 : m / fmax(s, 1e-30);
}

/* This rank's tensors of a batch. */
struct shard {
    bt_tensor *a, *b, *ga, *gb;
};

static void shard_make(struct shard *s, const struct job *j, int r, const float *za,
                       const float *zb)
{
    const int64_t n = j->rows[r], d = j->d, off = j->row0[r] * d;
    int64_t shape[2] = {n, d};
    memset(s, 0, sizeof *s);
    bt_tensor_create(&s->a, 2, shape);
    bt_tensor_create(&s->b, 2, shape);
    bt_tensor_create(&s->ga, 2, shape);
    bt_tensor_create(&s->gb, 2, shape);
    if (s->a && s->b) {
        memcpy(bt_tensor_data(s->a), za + off, (size_t)(n * d) * sizeof(float));
        memcpy(bt_tensor_data(s->b), zb + off, (size_t)(n * d) * sizeof(float));
    }
}

static void shard_free(struct shard *s)
{
    bt_tensor_free(s->a);
    bt_tensor_free(s->b);
    bt_tensor_free(s->ga);
    bt_tensor_free(s->gb);
}

/* Compare a rank's forward (value, terms, C, path) and backward with a reference;
 * exact on the gather path. 0 when they match, else the message is set. */
static int compare(struct job *j, struct harness_rank *hr, bt_loss *l, const struct shard *s,
                   const struct ref *ref, double value, int cpath)
{
    const int r = hr->rank;
    const int64_t d = j->d, nr = j->rows[r], off = j->row0[r] * d;
    const int exact = cpath == BTI_LOSS_COMM_GATHER;
    bt_tensor *c = mat(d, d, NULL);
    double on = 0, off_ = 0, ev, eg, ec;
    int bad = 1;
    /* the collective backward first, whatever the checks find: no rank waits */
    bt_status sb = bt_loss_backward(l, s->ga, s->gb), st = bt_loss_terms(l, &on, &off_),
              sc = bt_loss_correlation(l, c);
    CHECK(sb == BT_OK && st == BT_OK && sc == BT_OK, "rank %d: backward %d, terms %d, C %d: %s",
          r, (int)sb, (int)st, (int)sc, bt_last_error());
    CHECK(bti_loss_comm_path(l) == cpath, "rank %d: comm path %d, expected %d", r,
          bti_loss_comm_path(l), cpath);
    ev = fabs(value - ref->value) / fabs(ref->value);
    ev = fmax(ev, fabs(on - ref->on) / fmax(fabs(ref->on), 1e-300));
    ev = fmax(ev, fabs(off_ - ref->off) / fmax(fabs(ref->off), 1e-300));
    ec = rows_err(bt_tensor_data(c), ref->c, d * d);
    eg = fmax(rows_err(bt_tensor_data(s->ga), ref->dza + off, nr * d),
              rows_err(bt_tensor_data(s->gb), ref->dzb + off, nr * d));
    j->err_value[r] = fmax(j->err_value[r], ev);
    j->err_grad[r] = fmax(j->err_grad[r], eg);
    j->err_c[r] = fmax(j->err_c[r], ec);
    if (exact) {
        CHECK(ev == 0 && eg == 0 && bt_loss_path(l) == ref->path,
              "rank %d (gather): value %.17g vs %.17g, gradient error %g, path %d vs %d", r, value,
              ref->value, eg, bt_loss_path(l), ref->path);
        /* C: exact on the D x D product path; the Gram path computes it on demand */
        CHECK(ec == 0 || ref->path == BT_LOSS_PATH_GRAM, "rank %d (gather): C error %g", r, ec);
    }
    CHECK(ev <= 1e-6 && eg <= 1e-5 && ec <= 1e-5,
          "rank %d (%s): relative errors value %g gradient %g C %g", r,
          exact ? "gather" : "reduce", ev, eg, ec);
    bad = 0;
out:
    bt_tensor_free(c);
    return bad;
}

/* ---- the global batch's loss and gradient on every rank -------------------------------- */

static int body_match(struct harness_rank *hr)
{
    struct job *j = hr->arg;
    const int r = hr->rank;
    bt_loss *l = new_loss(j->mode, NULL);
    struct shard s, t;
    double v, v2;
    int bad = 1, e;
    shard_make(&s, j, r, j->za, j->zb);
    shard_make(&t, j, r, j->ya, j->yb);
    CHECK(l && s.gb && t.gb, "rank %d: out of memory", r);
    CHECK(bti_loss_set_comm_path(l, j->cpath) == BT_OK, "rank %d: set_comm_path", r);
    CHECK(bt_loss_set_path(l, j->path_req) == BT_OK, "rank %d: set_path", r);
    CHECK(bt_loss_set_comm(l, hr->comm) == BT_OK, "rank %d: set_comm: %s", r, bt_last_error());
    CHECK(bt_loss_forward(l, s.a, s.b, &v) == BT_OK, "rank %d: forward: %s", r, bt_last_error());
    e = compare(j, hr, l, &s, &j->rx, v, j->want_cpath);
    /* a second batch reuses the buffers; a second backward gives the same */
    CHECK(bt_loss_forward(l, t.a, t.b, &v2) == BT_OK, "rank %d: forward 2: %s", r,
          bt_last_error());
    e |= compare(j, hr, l, &t, &j->ry, v2, j->want_cpath);
    e |= compare(j, hr, l, &t, &j->ry, v2, j->want_cpath);
    bad = e;
out:
    shard_free(&s);
    shard_free(&t);
    bt_loss_free(l);
    return bad;
}

static void run_match(int mode, int w, int64_t n, int64_t d, const int64_t *rows, int cpath,
                      int path_req, int gather, double *worst)
{
    struct job *j = malloc(sizeof *j);
    int r, rc, want;
    ck_assert_ptr_nonnull(j);
    job_init(j, mode, w, n, d, rows);
    j->cpath = cpath;
    j->path_req = path_req;
    job_refs(j);
    want = cpath ? cpath
           : (path_req == BT_LOSS_PATH_GRAM && mode != 4) || 2 * n * d < d * d
               ? BTI_LOSS_COMM_GATHER
               : BTI_LOSS_COMM_REDUCE;
    j->want_cpath = want;
    rc = harness_run(w, gather, NULL, body_match, j);
    for (r = 0; r < w; r++) {
        ck_assert_msg(rc == 0 && !j->msg[r][0], "%s, W=%d N=%lld D=%lld path %d gather %d: %s",
                      modes[mode], w, (long long)n, (long long)d, cpath, gather, first_msg(j));
        if (want == BTI_LOSS_COMM_REDUCE) {
            worst[0] = fmax(worst[0], j->err_value[r]);
            worst[1] = fmax(worst[1], j->err_grad[r]);
            worst[2] = fmax(worst[2], j->err_c[r]);
        }
    }
    free(j);
}

static void report(const char *what, const double *worst)
{
    if (getenv("LOSS_COMM_VERBOSE"))
        printf("%s: reduce path max relative error: value/terms %.3g, gradient %.3g, C %.3g\n",
               what, worst[0], worst[1], worst[2]);
}

/* Every mode, W = 1..4, D on both sides of the rule (N = 13: gather when D > 26),
 * each path forced and chosen, with and without the allgather callback. */
START_TEST(global_batch_every_mode)
{
    static const int64_t ds[] = {8, 32};
    double worst[3] = {0, 0, 0};
    int w, di, cp, g;
    for (w = 1; w <= 4; w++)
        for (di = 0; di < 2; di++)
            for (cp = 0; cp <= 2; cp++)
                for (g = 0; g < 2; g++)
                    run_match(_i, w, 13, ds[di], NULL, cp, BT_LOSS_PATH_AUTO, g, worst);
    report(modes[_i], worst);
}
END_TEST

/* Very uneven shards (a single row), a larger batch, both product paths asked for. */
START_TEST(uneven_shards_and_paths)
{
    static const int64_t r2[] = {1, 12}, r3[] = {1, 1, 11}, r4[] = {10, 1, 9, 12};
    double worst[3] = {0, 0, 0};
    int m, cp;
    for (m = 0; m < NMODES; m++)
        for (cp = 0; cp <= 2; cp++) {
            run_match(m, 2, 13, 16, r2, cp, BT_LOSS_PATH_AUTO, 1, worst);
            run_match(m, 3, 13, 40, r3, cp, BT_LOSS_PATH_AUTO, 0, worst);
            run_match(m, 4, 32, 24, r4, cp, BT_LOSS_PATH_AUTO, 1, worst);
            run_match(m, 3, 13, 8, NULL, cp, BT_LOSS_PATH_DXD, 1, worst);
            if (m != 4 && cp != BTI_LOSS_COMM_REDUCE) /* Gram: gathers (auto), or forced */
                run_match(m, 3, 13, 8, NULL, cp, BT_LOSS_PATH_GRAM, 1, worst);
        }
    report("uneven", worst);
}
END_TEST

/* ---- bad arguments on one rank ------------------------------------------------------ */

enum { BAD_SHAPE, BAD_NAN, BAD_D, BAD_NULL_LOSS, BAD_PATH, BAD_GRAD_SHAPE, BAD_NO_FORWARD,
       NBAD };

/* The bad rank's own status, the others' BT_E_COMM naming it (or the disagreement),
 * and nothing changed anywhere: the previous forward's terms and gradient. */
static int body_bad(struct harness_rank *hr)
{
    struct job *j = hr->arg;
    const int r = hr->rank, bad_rank = j->fail_rank, kind = j->mark[0][0];
    const int64_t d = j->d;
    bt_loss *l = new_loss(j->mode, NULL);
    struct shard s, t;
    bt_tensor *odd = NULL, *g1 = NULL, *g2 = NULL;
    double v, v2 = -1, on, off, on2, off2;
    bt_status st, want;
    int bad = 1, i;
    shard_make(&s, j, r, j->za, j->zb);
    shard_make(&t, j, r, j->ya, j->yb);
    CHECK(l && s.gb && t.gb, "rank %d: out of memory", r);
    CHECK(bti_loss_set_comm_path(l, j->cpath) == BT_OK, "rank %d: set_comm_path", r);
    CHECK(bt_loss_set_comm(l, hr->comm) == BT_OK, "rank %d: set_comm: %s", r, bt_last_error());
    if (kind == BAD_NO_FORWARD) { /* every rank: its own BT_E_STATE */
        st = bt_loss_backward(l, s.ga, s.gb);
        CHECK(st == BT_E_STATE, "rank %d: backward before a forward: %d (%s)", r, (int)st,
              bt_last_error());
        bad = 0;
        goto out;
    }
    CHECK(bt_loss_forward(l, s.a, s.b, &v) == BT_OK, "rank %d: forward: %s", r, bt_last_error());
    CHECK(bt_loss_terms(l, &on, &off) == BT_OK, "rank %d: terms", r);
    g1 = mat(j->rows[r], d, NULL);
    g2 = mat(j->rows[r], d, NULL);
    CHECK(bt_loss_backward(l, g1, g2) == BT_OK, "rank %d: backward: %s", r, bt_last_error());

    if (kind == BAD_GRAD_SHAPE) {
        bt_tensor *ga = r == bad_rank ? (odd = mat(j->rows[r] + 1, d, NULL)) : s.ga;
        for (i = 0; i < j->rows[r] * d; i++)
            bt_tensor_data(s.ga)[i] = bt_tensor_data(s.gb)[i] = 12345.0f;
        st = bt_loss_backward(l, ga, s.gb);
        want = r == bad_rank ? BT_E_SHAPE : BT_E_COMM;
        CHECK(st == want, "rank %d: backward with a bad dza on rank %d: %d (%s)", r, bad_rank,
              (int)st, bt_last_error());
        CHECK(r == bad_rank || strstr(bt_last_error(), "rank ") != NULL,
              "rank %d: the message does not name the rank: %s", r, bt_last_error());
        for (i = 0; i < j->rows[r] * d; i++)
            CHECK(bt_tensor_data(s.ga)[i] == 12345.0f && bt_tensor_data(s.gb)[i] == 12345.0f,
                  "rank %d: a failed backward wrote dza/dzb", r);
    } else {
        const bt_tensor *a = t.a, *b = t.b;
        double *out = &v2;
        int path_req = BT_LOSS_PATH_AUTO;
        want = BT_E_COMM;
        if (r == bad_rank) {
            switch (kind) {
            case BAD_SHAPE: /* zb of another shape */
                b = odd = mat(j->rows[r], d + 1, NULL);
                want = BT_E_SHAPE;
                break;
            case BAD_NAN:
                bt_tensor_data(t.a)[j->rows[r] * d - 1] = NAN;
                want = BT_E_NUMERIC;
                break;
            case BAD_D: /* consistent locally: the preflight finds it */
                odd = mat(j->rows[r], d - 1, NULL);
                memcpy(bt_tensor_data(odd), j->za, (size_t)(j->rows[r] * (d - 1)) * 4);
                a = odd;
                b = odd;
                break;
            case BAD_NULL_LOSS:
                out = NULL;
                want = BT_E_MISUSE;
                break;
            case BAD_PATH:
                path_req = BT_LOSS_PATH_DXD;
                break;
            }
        }
        CHECK(bt_loss_set_path(l, path_req) == BT_OK, "rank %d: set_path", r);
        st = bt_loss_forward(l, a, b, out);
        CHECK(st == want, "rank %d: forward, bad kind %d on rank %d: %d, expected %d (%s)", r,
              kind, bad_rank, (int)st, (int)want, bt_last_error());
        if (kind == BAD_D || kind == BAD_PATH)
            CHECK(strstr(bt_last_error(), "disagree") != NULL, "rank %d: message: %s", r,
                  bt_last_error());
        else if (r != bad_rank) {
            char name[32];
            snprintf(name, sizeof name, "rank %d of", bad_rank);
            CHECK(strstr(bt_last_error(), name) != NULL,
                  "rank %d: the message does not name rank %d: %s", r, bad_rank, bt_last_error());
        }
        CHECK(v2 == -1, "rank %d: a failed forward wrote the loss", r);
        CHECK(bt_loss_set_path(l, BT_LOSS_PATH_AUTO) == BT_OK, "rank %d: set_path", r);
    }
    /* nothing changed: the first forward's terms and gradient, on every rank */
    CHECK(bt_loss_terms(l, &on2, &off2) == BT_OK && on2 == on && off2 == off,
          "rank %d: terms changed by a failed call", r);
    CHECK(bt_loss_backward(l, s.ga, s.gb) == BT_OK, "rank %d: backward after: %s", r,
          bt_last_error());
    CHECK(memcmp(bt_tensor_data(s.ga), bt_tensor_data(g1), (size_t)(j->rows[r] * d) * 4) == 0 &&
              memcmp(bt_tensor_data(s.gb), bt_tensor_data(g2), (size_t)(j->rows[r] * d) * 4) == 0,
          "rank %d: the gradient changed after a failed call", r);
    /* and the next good call works */
    CHECK(bt_loss_forward(l, s.a, s.b, &v2) == BT_OK && v2 == v, "rank %d: forward again: %s", r,
          bt_last_error());
    bad = 0;
out:
    bt_tensor_free(odd);
    bt_tensor_free(g1);
    bt_tensor_free(g2);
    shard_free(&s);
    shard_free(&t);
    bt_loss_free(l);
    return bad;
}

START_TEST(bad_arguments_on_one_rank)
{
    struct job *j = malloc(sizeof *j);
    int kind, cp, rank, r, rc;
    ck_assert_ptr_nonnull(j);
    for (kind = 0; kind < NBAD; kind++)
        for (cp = 1; cp <= 2; cp++)
            for (rank = 0; rank < 3; rank++) {
                job_init(j, rank == 1 ? 3 : 0, 3, 13, 8, NULL);
                j->cpath = cp;
                j->fail_rank = rank;
                j->mark[0][0] = kind;
                rc = harness_run(3, rank != 2, NULL, body_bad, j);
                for (r = 0; r < 3; r++)
                    ck_assert_msg(rc == 0 && !j->msg[r][0], "kind %d path %d bad rank %d: %s",
                                  kind, cp, rank, first_msg(j));
            }
    free(j);
}
END_TEST

/* ---- a failing callback, at every callback of a forward and of a backward ------------- */

/* mark[r]: callbacks made before the call under test [0] and after it [1]
 * (a dry run records them); the call under test is forward 2 (test 0) or
 * backward 2 (test 1). */
static int body_callbacks(struct harness_rank *hr)
{
    struct job *j = hr->arg;
    const int r = hr->rank, test_backward = j->path_req; /* reused as the switch */
    const int64_t d = j->d, nd = j->rows[r] * d;
    bt_loss *l = new_loss(j->mode, NULL);
    struct shard s, t;
    bt_tensor *g1 = NULL, *g2 = NULL;
    double v, v2 = -1, on, off, on2, off2;
    bt_status st;
    int bad = 1, i, dry = j->dry, closing, failing, before;
    shard_make(&s, j, r, j->za, j->zb);
    shard_make(&t, j, r, j->ya, j->yb);
    g1 = mat(j->rows[r], d, NULL);
    g2 = mat(j->rows[r], d, NULL);
    CHECK(l && s.gb && t.gb, "rank %d: out of memory", r);
    CHECK(bti_loss_set_comm_path(l, j->cpath) == BT_OK, "rank %d: set_comm_path", r);
    CHECK(bt_loss_set_comm(l, hr->comm) == BT_OK, "rank %d: set_comm: %s", r, bt_last_error());
    CHECK(bt_loss_forward(l, s.a, s.b, &v) == BT_OK, "rank %d: forward: %s", r, bt_last_error());
    CHECK(bt_loss_terms(l, &on, &off) == BT_OK, "rank %d: terms", r);
    CHECK(bt_loss_backward(l, g1, g2) == BT_OK, "rank %d: backward: %s", r, bt_last_error());
    j->mark[r][0] = hr->calls;
    failing = hr->fail_at > 0;
    closing = failing && hr->fail_at == j->mark[r][1]; /* the call's last callback */
    for (i = 0; i < nd; i++)
        bt_tensor_data(s.ga)[i] = bt_tensor_data(s.gb)[i] = 12345.0f;
    if (test_backward)
        st = bt_loss_backward(l, s.ga, s.gb);
    else
        st = bt_loss_forward(l, t.a, t.b, &v2);
    if (dry) {
        j->mark[r][1] = hr->calls;
        CHECK(st == BT_OK, "rank %d: the call under test: %s", r, bt_last_error());
        bad = 0;
        goto out;
    }
    j->got[r] = st;
    if (j->any_closing) {
        /* only the failing rank knows; its communicator is broken */
        if (!failing) {
            CHECK(st == BT_OK, "rank %d: closing agreement failed on rank %d: got %d (%s)", r,
                  j->fail_rank, (int)st, bt_last_error());
            if (!test_backward)
                CHECK(v2 == j->ry.value || j->want_cpath == BTI_LOSS_COMM_REDUCE,
                      "rank %d: value %.17g", r, v2);
            bad = 0;
            goto out;
        }
        CHECK(closing && st == BT_E_COMM && strstr(bt_last_error(), "unusable"),
              "rank %d: failed closing agreement: %d (%s)", r, (int)st, bt_last_error());
        before = hr->calls;
        st = bt_loss_forward(l, s.a, s.b, &v2);
        CHECK(st == BT_E_COMM && hr->calls == before,
              "rank %d: a broken communicator must fail at once: %d, %d callbacks (%s)", r,
              (int)st, hr->calls - before, bt_last_error());
        st = bt_loss_backward(l, s.ga, s.gb);
        CHECK(st == BT_E_COMM && hr->calls == before, "rank %d: broken backward: %d", r, (int)st);
    } else {
        CHECK(st == BT_E_COMM, "rank %d: callback %d failed on rank %d: got %d (%s)", r,
              hr->fail_at, j->fail_rank, (int)st, bt_last_error());
        CHECK(failing || strstr(bt_last_error(), "rank "), "rank %d: message: %s", r,
              bt_last_error());
    }
    /* nothing changed */
    CHECK(v2 == -1, "rank %d: a failed forward wrote the loss", r);
    for (i = 0; i < nd; i++)
        CHECK(bt_tensor_data(s.ga)[i] == 12345.0f && bt_tensor_data(s.gb)[i] == 12345.0f,
              "rank %d: a failed backward wrote dza/dzb", r);
    CHECK(bt_loss_terms(l, &on2, &off2) == BT_OK && on2 == on && off2 == off,
          "rank %d: terms changed by a failed call", r);
    if (j->any_closing) {
        bad = 0;
        goto out;
    }
    /* the communicator still works: backward of the first forward, then forward 2 */
    CHECK(bt_loss_backward(l, s.ga, s.gb) == BT_OK, "rank %d: backward after: %s", r,
          bt_last_error());
    CHECK(memcmp(bt_tensor_data(s.ga), bt_tensor_data(g1), (size_t)nd * 4) == 0 &&
              memcmp(bt_tensor_data(s.gb), bt_tensor_data(g2), (size_t)nd * 4) == 0,
          "rank %d: the gradient changed after a failed call", r);
    CHECK(bt_loss_forward(l, t.a, t.b, &v2) == BT_OK, "rank %d: forward after: %s", r,
          bt_last_error());
    CHECK(fabs(v2 - j->ry.value) <= 1e-6 * fabs(j->ry.value), "rank %d: value after %.17g vs %.17g",
          r, v2, j->ry.value);
    bad = 0;
out:
    bt_tensor_free(g1);
    bt_tensor_free(g2);
    shard_free(&s);
    shard_free(&t);
    bt_loss_free(l);
    return bad;
}

START_TEST(failing_callback_everywhere)
{
    static const int cmodes[] = {0, 3, 4};
    struct job *j = malloc(sizeof *j);
    int mi, cp, g, back, fr, k, r, rc, fail_at[HARNESS_MAX_RANKS], walked = 0;
    ck_assert_ptr_nonnull(j);
    for (mi = 0; mi < 3; mi++)
        for (cp = 1; cp <= 2; cp++)
            for (g = 0; g < 2; g++)
                for (back = 0; back < 2; back++)
                    for (fr = 0; fr < 3; fr += 2) {
                        int lo, hi;
                        job_init(j, cmodes[mi], 3, 13, 8, NULL);
                        j->cpath = cp;
                        j->want_cpath = cp;
                        j->path_req = back;
                        j->fail_rank = fr;
                        reference(j->mode, BT_LOSS_PATH_AUTO, j->n, j->d, j->ya, j->yb, &j->ry);
                        j->dry = 1;
                        ck_assert_int_eq(harness_run(3, g, NULL, body_callbacks, j), 0);
                        j->dry = 0;
                        lo = j->mark[fr][0];
                        hi = j->mark[fr][1];
                        ck_assert_int_gt(hi, lo);
                        for (k = lo + 1; k <= hi; k++) {
                            memset(fail_at, 0, sizeof fail_at);
                            memset(j->msg, 0, sizeof j->msg);
                            fail_at[fr] = k;
                            for (r = 0; r < 3; r++)
                                j->mark[r][1] = hi;
                            j->any_closing = k == hi;
                            rc = harness_run(3, g, fail_at, body_callbacks, j);
                            for (r = 0; r < 3; r++)
                                ck_assert_msg(rc == 0 && !j->msg[r][0],
                                              "%s path %d gather %d %s, callback %d of %d..%d on "
                                              "rank %d: %s",
                                              modes[j->mode], cp, g, back ? "backward" : "forward",
                                              k, lo + 1, hi, fr, first_msg(j));
                            walked++;
                        }
                    }
    ck_assert_int_gt(walked, 0);
    if (getenv("LOSS_COMM_VERBOSE"))
        printf("failing callbacks: %d runs\n", walked);
    free(j);
}
END_TEST

/* ---- set_comm ----------------------------------------------------------------------- */

/* Options that differ on one rank fail set_comm everywhere and leave the loss on one
 * process; NULL brings it back to one process (not collective). */
static int body_set_comm(struct harness_rank *hr)
{
    struct job *j = hr->arg;
    const int r = hr->rank, odd = r == j->fail_rank;
    const int which = j->mark[0][0]; /* 0 lambda, 1 mode */
    bt_loss *l = which == 1 && odd ? new_loss((j->mode + 1) % NMODES, NULL)
                                   : new_loss(j->mode, which == 0 && odd ? "0.03" : NULL);
    bt_loss *one = new_loss(j->mode, NULL);
    struct shard s;
    bt_tensor *ga = NULL, *gb = NULL;
    double v, v1;
    bt_status st;
    int bad = 1;
    shard_make(&s, j, r, j->za, j->zb);
    CHECK(l && one && s.gb, "rank %d: out of memory", r);
    CHECK(bt_loss_forward(one, s.a, s.b, &v1) == BT_OK, "rank %d: one process: %s", r,
          bt_last_error());
    st = bt_loss_set_comm(l, hr->comm);
    CHECK(st == BT_E_COMM && strstr(bt_last_error(), which ? "loss.mode" : "loss.lambda"),
          "rank %d: set_comm with other options on rank %d: %d (%s)", r, j->fail_rank, (int)st,
          bt_last_error());
    /* still one process: the loss of this rank's rows alone */
    if (!odd) {
        CHECK(bt_loss_forward(l, s.a, s.b, &v) == BT_OK && v == v1,
              "rank %d: local forward %.17g vs %.17g (%s)", r, v, v1, bt_last_error());
    }
    bt_loss_free(l);
    l = new_loss(j->mode, NULL);
    CHECK(l && bt_loss_set_comm(l, hr->comm) == BT_OK, "rank %d: set_comm: %s", r,
          bt_last_error());
    CHECK(bt_loss_set_comm(l, (bt_comm *)one) == BT_E_MISUSE, "rank %d: set_comm(not a comm)",
          r);
    CHECK(bt_loss_forward(l, s.a, s.b, &v) == BT_OK, "rank %d: forward: %s", r, bt_last_error());
    CHECK(fabs(v - j->rx.value) <= 1e-6 * fabs(j->rx.value), "rank %d: global value", r);
    /* back to one process: the cached forward is dropped, no collectives are made */
    CHECK(bt_loss_set_comm(l, NULL) == BT_OK, "rank %d: set_comm(NULL)", r);
    CHECK(bt_loss_backward(l, s.ga, s.gb) == BT_E_STATE, "rank %d: backward after NULL", r);
    CHECK(bt_loss_terms(l, NULL, NULL) == BT_E_STATE, "rank %d: terms after NULL", r);
    if (j->rows[r] >= 2) {
        ga = mat(j->rows[r], j->d, NULL);
        gb = mat(j->rows[r], j->d, NULL);
        CHECK(bt_loss_forward(l, s.a, s.b, &v) == BT_OK && v == v1,
              "rank %d: one-process forward after NULL: %.17g vs %.17g", r, v, v1);
        CHECK(bt_loss_backward(l, s.ga, s.gb) == BT_OK && bt_loss_backward(one, ga, gb) == BT_OK,
              "rank %d: backward", r);
        CHECK(memcmp(bt_tensor_data(s.ga), bt_tensor_data(ga),
                     (size_t)(j->rows[r] * j->d) * 4) == 0,
              "rank %d: one-process gradient after NULL", r);
    }
    /* and data-parallel again */
    CHECK(bt_loss_set_comm(l, hr->comm) == BT_OK, "rank %d: set_comm again: %s", r,
          bt_last_error());
    CHECK(bt_loss_forward(l, s.a, s.b, &v) == BT_OK &&
              fabs(v - j->rx.value) <= 1e-6 * fabs(j->rx.value),
          "rank %d: global value again", r);
    bad = 0;
out:
    bt_tensor_free(ga);
    bt_tensor_free(gb);
    shard_free(&s);
    bt_loss_free(l);
    bt_loss_free(one);
    return bad;
}

START_TEST(set_comm_options_and_null)
{
    struct job *j = malloc(sizeof *j);
    int which, fr, g, r, rc;
    ck_assert_ptr_nonnull(j);
    for (which = 0; which < 2; which++)
        for (fr = 0; fr < 3; fr++)
            for (g = 0; g < 2; g++) {
                job_init(j, 0, 3, 13, 8, NULL);
                j->fail_rank = fr;
                j->mark[0][0] = which;
                reference(j->mode, BT_LOSS_PATH_AUTO, j->n, j->d, j->za, j->zb, &j->rx);
                rc = harness_run(3, g, NULL, body_set_comm, j);
                for (r = 0; r < 3; r++)
                    ck_assert_msg(rc == 0 && !j->msg[r][0], "options %d differ on rank %d: %s",
                                  which, fr, first_msg(j));
            }
    free(j);
}
END_TEST

/* One rank of one: its batch is the global one, so it needs two rows; a rank of
 * several may hold one (above). */
static int body_one_row(struct harness_rank *hr)
{
    struct job *j = hr->arg;
    bt_loss *l = new_loss(0, NULL);
    bt_tensor *a = mat(1, 8, j->za), *b = mat(1, 8, j->zb);
    double v;
    int bad = 1;
    CHECK(l && bt_loss_set_comm(l, hr->comm) == BT_OK, "set_comm: %s", bt_last_error());
    CHECK(bt_loss_forward(l, a, b, &v) == BT_E_SHAPE && strstr(bt_last_error(), ">= 2"),
          "a single row on a single rank: %s", bt_last_error());
    bad = 0;
out:
    bt_tensor_free(a);
    bt_tensor_free(b);
    bt_loss_free(l);
    return bad;
}

START_TEST(single_rank_needs_two_rows)
{
    struct job *j = malloc(sizeof *j);
    ck_assert_ptr_nonnull(j);
    job_init(j, 0, 1, 13, 8, NULL);
    ck_assert_msg(harness_run(1, 1, NULL, body_one_row, j) == 0, "%s", first_msg(j));
    free(j);
}
END_TEST

START_TEST(misuse)
{
    bt_loss *l = new_loss(0, NULL);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(bt_loss_set_comm(NULL, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_loss_set_comm(l, NULL), BT_OK); /* already one process */
    ck_assert_int_eq(bti_loss_set_comm_path(l, 3), BT_E_INVALID_ARG);
    ck_assert_int_eq(bti_loss_set_comm_path(l, -1), BT_E_INVALID_ARG);
    ck_assert_int_eq(bti_loss_comm_path(l), 0);
    bt_loss_free(l);
}
END_TEST

Suite *loss_comm_suite(void)
{
    Suite *s = suite_create("loss_comm");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, global_batch_every_mode, 0, NMODES);
    tcase_add_test(tc, uneven_shards_and_paths);
    tcase_add_test(tc, bad_arguments_on_one_rank);
    tcase_add_test(tc, failing_callback_everywhere);
    tcase_add_test(tc, set_comm_options_and_null);
    tcase_add_test(tc, single_rank_needs_two_rows);
    tcase_add_test(tc, misuse);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
