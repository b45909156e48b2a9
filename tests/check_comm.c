/* check_comm.c - data-parallel training: W ranks (threads, tests/util_comm.c) with
 * N/W images each compute what one process computes with N: embeddings, running
 * statistics, gradients (a sum over the ranks, earlier gradients counted once); bad
 * arguments and failing callbacks fail the call on every rank and change nothing. */
#include "comm_harness.h"
#include "fixtures.h"
#include "common/comm.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NB 13 /* images per view in the global batch: uneven over 2, 3, 4 ranks */
#define SIDE 8
#define EMB 16
#define NV 2
#define MAXT 64 /* model tensors */

static const char *const opts[] = {"model.arch", "resnet", "model.block", "basic",
                                   "model.blocks", "1-1", "model.widths", "4-8",
                                   "model.stem", "cifar", "model.in_channels", "1",
                                   "model.projector", "16-16", "threads", "1",
                                   "seed", "3", NULL};

static bt_model *make_model(void) { return test_model(opts, NULL); }

static bt_tensor *tensor(int64_t n, int64_t d1, int64_t d2, int64_t d3, int ndim)
{
    int64_t shape[4] = {n, d1, d2, d3};
    bt_tensor *t;
    ck_assert_int_eq(bt_tensor_create(&t, ndim, shape), BT_OK);
    return t;
}

/* The one-process reference: views, dz, embeddings, gradients after one backward, and
 * the running statistics after 1, 2, 3 forwards of the same views. */
static struct {
    float x[NV][NB * SIDE * SIDE], dz[NV][NB * EMB], z[NV][NB * EMB];
    int ntensors;
    float *grad[MAXT];     /* NULL for buffers */
    float *stats[4][MAXT]; /* buffers (running statistics) after k forwards */
    int64_t numel[MAXT];
} ref;

static void fill(float *p, int64_t n, uint64_t seed)
{
    int64_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5);
    }
}

static void copy_tensors(bt_model *m, int grads, float **out)
{
    int i;
    for (i = 0; i < bt_model_tensor_count(m); i++) {
        const char *name;
        bt_tensor *v, *g;
        ck_assert_int_eq(bt_model_tensor(m, i, &name, &v, &g), BT_OK);
        out[i] = NULL;
        if (grads ? !g : !!g)
            continue;
        out[i] = malloc((size_t)bt_tensor_numel(v) * sizeof(float));
        memcpy(out[i], bt_tensor_data(grads ? g : v), (size_t)bt_tensor_numel(v) * sizeof(float));
    }
}

static void forward_all(bt_model *m, float z[NV][NB * EMB])
{
    bt_tensor *x[NV], *zt[NV];
    int v;
    for (v = 0; v < NV; v++) {
        x[v] = tensor(NB, 1, SIDE, SIDE, 4);
        zt[v] = tensor(NB, EMB, 0, 0, 2);
        memcpy(bt_tensor_data(x[v]), ref.x[v], sizeof ref.x[v]);
    }
    ck_assert_int_eq(bt_model_forward(m, NV, (const bt_tensor *const *)x, zt), BT_OK);
    for (v = 0; v < NV; v++) {
        if (z)
            memcpy(z[v], bt_tensor_data(zt[v]), sizeof ref.z[v]);
        bt_tensor_free(x[v]);
        bt_tensor_free(zt[v]);
    }
}

static void setup(void)
{
    bt_model *m = make_model();
    bt_tensor *dz[NV];
    int v, k;
    fill(&ref.x[0][0], NV * NB * SIDE * SIDE, 1);
    fill(&ref.dz[0][0], NV * NB * EMB, 2);
    ref.ntensors = bt_model_tensor_count(m);
    ck_assert_int_le(ref.ntensors, MAXT);
    copy_tensors(m, 0, ref.stats[0]);
    forward_all(m, ref.z);
    copy_tensors(m, 0, ref.stats[1]);
    for (v = 0; v < NV; v++) {
        dz[v] = tensor(NB, EMB, 0, 0, 2);
        memcpy(bt_tensor_data(dz[v]), ref.dz[v], sizeof ref.dz[v]);
    }
    ck_assert_int_eq(bt_model_backward(m, NV, (const bt_tensor *const *)dz), BT_OK);
    copy_tensors(m, 1, ref.grad);
    for (k = 2; k <= 3; k++) {
        forward_all(m, NULL);
        copy_tensors(m, 0, ref.stats[k]);
    }
    for (k = 0; k < ref.ntensors; k++) {
        const char *name;
        bt_tensor *val, *g;
        bt_model_tensor(m, k, &name, &val, &g);
        ref.numel[k] = bt_tensor_numel(val);
    }
    for (v = 0; v < NV; v++)
        bt_tensor_free(dz[v]);
    bt_model_free(m);
}

static void teardown(void)
{
    int i, k;
    for (i = 0; i < ref.ntensors; i++) {
        free(ref.grad[i]);
        for (k = 0; k < 4; k++)
            free(ref.stats[k][i]);
    }
}

/* max |got - scale * want| <= 1e-5 * max |scale * want| (sums in another order) */
static int close_to(const float *got, const float *want, int64_t n, float scale)
{
    double big = 1e-6, err = 0.0;
    int64_t i;
    for (i = 0; i < n; i++) {
        double w = (double)scale * want[i];
        if (fabs(w) > big)
            big = fabs(w);
        if (fabs(got[i] - w) > err)
            err = fabs(got[i] - w);
    }
    return err <= 1e-5 * big;
}

/* ---- one rank's training --------------------------------------------------------- */

struct rank_state {
    struct harness_rank *h;
    bt_model *m;
    int64_t n, first; /* its shard of the global batch */
    bt_tensor *x[NV], *z[NV], *dz[NV];
    int forwards, backwards; /* successful ones */
};

static void rank_open(struct rank_state *s, struct harness_rank *h)
{
    int v;
    int64_t i;
    s->h = h;
    s->m = make_model();
    s->n = NB / h->size + (h->rank < NB % h->size);
    s->first = 0;
    for (i = 0; i < h->rank; i++)
        s->first += NB / h->size + (i < NB % h->size);
    for (v = 0; v < NV; v++) {
        s->x[v] = tensor(s->n, 1, SIDE, SIDE, 4);
        s->z[v] = tensor(s->n, EMB, 0, 0, 2);
        s->dz[v] = tensor(s->n, EMB, 0, 0, 2);
        memcpy(bt_tensor_data(s->x[v]), ref.x[v] + s->first * SIDE * SIDE,
               (size_t)(s->n * SIDE * SIDE) * sizeof(float));
        memcpy(bt_tensor_data(s->dz[v]), ref.dz[v] + s->first * EMB,
               (size_t)(s->n * EMB) * sizeof(float));
    }
    s->forwards = s->backwards = 0;
}

static void rank_close(struct rank_state *s)
{
    int v;
    for (v = 0; v < NV; v++) {
        bt_tensor_free(s->x[v]);
        bt_tensor_free(s->z[v]);
        bt_tensor_free(s->dz[v]);
    }
    bt_model_free(s->m);
}

/* 0 when every buffer (running statistic) equals the reference after k forwards, and
 * every gradient `mult` times the reference's */
static int rank_matches(struct rank_state *s, int k, int mult)
{
    int i, bad = 0;
    for (i = 0; i < ref.ntensors; i++) {
        const char *name;
        bt_tensor *v, *g;
        bt_model_tensor(s->m, i, &name, &v, &g);
        if (g)
            bad |= !close_to(bt_tensor_data(g), ref.grad[i], ref.numel[i], (float)mult);
        else
            bad |= !close_to(bt_tensor_data(v), ref.stats[k][i], ref.numel[i], 1.0f);
    }
    return bad;
}

static int z_matches(struct rank_state *s)
{
    int v, bad = 0;
    for (v = 0; v < NV; v++)
        bad |= !close_to(bt_tensor_data(s->z[v]), ref.z[v] + s->first * EMB, s->n * EMB, 1.0f);
    return bad;
}

static bt_status rank_forward(struct rank_state *s)
{
    bt_status st = bt_model_forward(s->m, NV, (const bt_tensor *const *)s->x, s->z);
    s->forwards += st == BT_OK;
    return st;
}

static bt_status rank_backward(struct rank_state *s)
{
    bt_status st = bt_model_backward(s->m, NV, (const bt_tensor *const *)s->dz);
    s->backwards += st == BT_OK;
    return st;
}

/* set_comm, forward, backward, forward, backward: everything as one process */
static int train_body(struct harness_rank *h)
{
    struct rank_state s;
    int bad = 0;
    rank_open(&s, h);
    bad |= bt_model_set_comm(s.m, h->comm) != BT_OK;
    bad |= rank_forward(&s) != BT_OK || z_matches(&s) || rank_matches(&s, 1, 0);
    bad |= rank_backward(&s) != BT_OK || rank_matches(&s, 1, 1);
    bad |= rank_forward(&s) != BT_OK || z_matches(&s) || rank_matches(&s, 2, 1);
    bad |= rank_backward(&s) != BT_OK || rank_matches(&s, 2, 2);
    /* back to one process: this rank's own batch, no collectives */
    if (!bad) {
        int before = h->calls;
        bad |= bt_model_set_comm(s.m, NULL) != BT_OK;
        bad |= h->size > 1 && s.n >= 2 && rank_forward(&s) != BT_OK;
        bad |= h->calls != before;
    }
    rank_close(&s);
    return bad;
}

START_TEST(ranks_compute_what_one_process_computes)
{
    int w;
    for (w = 1; w <= 4; w++)
        ck_assert_msg(harness_run(w, 0, NULL, train_body, NULL) == 0,
                      "%d ranks differ from one process", w);
}
END_TEST

/* ---- failures ----------------------------------------------------------------------- */

struct walk {
    int bounds[5]; /* rank 1's callback count after each call of the clean run */
    int fail_at;   /* on rank 1 */
};

static int count_body(struct harness_rank *h)
{
    struct walk *wk = h->arg;
    struct rank_state s;
    int bad = 0;
    rank_open(&s, h);
    bad |= bt_model_set_comm(s.m, h->comm) != BT_OK;
    if (h->rank == 1)
        wk->bounds[0] = h->calls;
    bad |= rank_forward(&s) != BT_OK;
    if (h->rank == 1)
        wk->bounds[1] = h->calls;
    bad |= rank_backward(&s) != BT_OK;
    if (h->rank == 1)
        wk->bounds[2] = h->calls;
    bad |= rank_forward(&s) != BT_OK;
    if (h->rank == 1)
        wk->bounds[3] = h->calls;
    bad |= rank_backward(&s) != BT_OK;
    if (h->rank == 1)
        wk->bounds[4] = h->calls;
    rank_close(&s);
    return bad;
}

static int grads_equal(struct rank_state *s, float **want)
{
    int i;
    for (i = 0; i < ref.ntensors; i++) {
        const char *name;
        bt_tensor *v, *g;
        bt_model_tensor(s->m, i, &name, &v, &g);
        if (g && memcmp(bt_tensor_data(g), want[i], (size_t)ref.numel[i] * sizeof(float)) != 0)
            return 0;
    }
    return 1;
}

static bt_status run_step(struct rank_state *s, int step)
{
    return step == 0 ? bt_model_set_comm(s->m, s->h->comm)
                     : step % 2 ? rank_forward(s) : rank_backward(s);
}

/* The clean sequence with rank 1's callback number fail_at failing. A failure inside a
 * call makes it fail on both ranks with nothing changed, and the sequence resumes; one
 * in a closing agreement (the call's last callback) is known to rank 1 only, whose
 * communicator is then broken, and both stop there. */
static int fail_body(struct harness_rank *h)
{
    struct walk *wk = h->arg;
    struct rank_state s;
    int step = 0, bad = 0, failed = 0;
    rank_open(&s, h);
    while (step < 5 && !bad) {
        const int closing = wk->fail_at == wk->bounds[step];
        const int inside = wk->fail_at > (step ? wk->bounds[step - 1] : 0) &&
                           wk->fail_at <= wk->bounds[step];
        float *before[MAXT] = {0};
        bt_status st;
        int i;
        if (step > 0 && step % 2 == 0 && inside && !failed)
            copy_tensors(s.m, 1, before); /* only a failing backward compares with them */
        st = run_step(&s, step);
        if (inside && !failed && closing) /* the call is not retried: nothing to compare */
            for (i = 0; i < ref.ntensors; i++)
                free(before[i]);
        if (inside && !failed && closing && h->rank == 0) {
            bad |= st != BT_OK; /* rank 0 cannot know */
            break;
        }
        if (inside && !failed && closing) {
            int calls = h->calls;
            bad |= st != BT_E_COMM || !h->comm->broken;
            /* a broken communicator fails at once, making no collective */
            bad |= (step == 0 ? bt_model_set_comm(s.m, h->comm) : rank_forward(&s)) != BT_E_COMM ||
                   h->calls != calls;
            break;
        }
        if (inside && !failed) {
            failed = 1;
            bad |= st != BT_E_COMM;
            /* nothing changed: running statistics and gradients as before the call */
            bad |= rank_matches(&s, s.forwards, s.backwards);
            if (step > 0 && step % 2 == 0) /* bit for bit: set aside and restored */
                bad |= !grads_equal(&s, before);
            for (i = 0; i < ref.ntensors; i++)
                free(before[i]);
            if (step > 0 && step % 2 == 0)
                step--; /* the backward consumed the forward: run both again */
            continue;
        }
        for (i = 0; i < ref.ntensors; i++)
            free(before[i]);
        bad |= st != BT_OK;
        if (step % 2 == 1)
            bad |= z_matches(&s);
        if (step > 0)
            bad |= rank_matches(&s, s.forwards, s.backwards);
        step++;
    }
    if (bad)
        fprintf(stderr, "rank %d: fail_at %d, step %d: %s\n", h->rank, wk->fail_at, step,
                bt_last_error());
    rank_close(&s);
    return bad;
}

START_TEST(a_failing_callback_fails_the_call_everywhere)
{
    struct walk wk;
    int k, fail[2] = {0, 0};
    memset(&wk, 0, sizeof wk);
    ck_assert_int_eq(harness_run(2, 0, NULL, count_body, &wk), 0);
    ck_assert_int_gt(wk.bounds[4], wk.bounds[3]);
    for (k = 1; k <= wk.bounds[4]; k++) {
        wk.fail_at = fail[1] = k;
        ck_assert_msg(harness_run(2, 0, fail, fail_body, &wk) == 0,
                      "callback %d of %d failing on rank 1", k, wk.bounds[4]);
    }
}
END_TEST

/* One rank with a bad view shape: it returns its own status, the others BT_E_COMM
 * naming it; nothing changes anywhere and the next good call works. */
static int bad_shape_body(struct harness_rank *h)
{
    struct rank_state s;
    bt_tensor *wrong[NV];
    int bad = 0, v;
    bt_status st;
    rank_open(&s, h);
    bad |= bt_model_set_comm(s.m, h->comm) != BT_OK;
    for (v = 0; v < NV; v++)
        wrong[v] = h->rank == 1 ? tensor(s.n, 2, SIDE, SIDE, 4) : s.x[v]; /* 2 channels */
    st = bt_model_forward(s.m, NV, (const bt_tensor *const *)wrong, s.z);
    if (h->rank == 1)
        bad |= st != BT_E_SHAPE;
    else
        bad |= st != BT_E_COMM || !strstr(bt_last_error(), "rank 1 of");
    bad |= rank_matches(&s, 0, 0);
    /* a height the ranks disagree on is caught by the agreement itself */
    bad |= rank_forward(&s) != BT_OK || z_matches(&s) || rank_matches(&s, 1, 0);
    /* backward: a missing dz on rank 0 */
    st = bt_model_backward(s.m, NV, h->rank == 0 ? NULL : (const bt_tensor *const *)s.dz);
    bad |= st != (h->rank == 0 ? BT_E_MISUSE : BT_E_COMM);
    bad |= rank_matches(&s, 1, 0);
    bad |= rank_backward(&s) != BT_OK || rank_matches(&s, 1, 1);
    if (h->rank == 1)
        for (v = 0; v < NV; v++)
            bt_tensor_free(wrong[v]);
    if (bad)
        fprintf(stderr, "rank %d: %s\n", h->rank, bt_last_error());
    rank_close(&s);
    return bad;
}

START_TEST(a_bad_argument_on_one_rank_fails_everywhere)
{
    ck_assert_int_eq(harness_run(3, 0, NULL, bad_shape_body, NULL), 0);
}
END_TEST

/* Different heights on different ranks (each valid alone) are refused by all. */
static int height_body(struct harness_rank *h)
{
    bt_model *m = make_model();
    bt_tensor *x[NV], *z[NV];
    int v, bad = 0;
    bt_status st;
    bad |= bt_model_set_comm(m, h->comm) != BT_OK;
    for (v = 0; v < NV; v++) {
        x[v] = tensor(3, 1, h->rank ? 10 : SIDE, h->rank ? 10 : SIDE, 4);
        z[v] = tensor(3, EMB, 0, 0, 2);
    }
    st = bt_model_forward(m, NV, (const bt_tensor *const *)x, z);
    bad |= st != BT_E_COMM || !strstr(bt_last_error(), "height");
    for (v = 0; v < NV; v++) {
        bt_tensor_free(x[v]);
        bt_tensor_free(z[v]);
    }
    bt_model_free(m);
    return bad;
}

START_TEST(ranks_must_agree_on_the_view_size)
{
    ck_assert_int_eq(harness_run(2, 0, NULL, height_body, NULL), 0);
}
END_TEST

/* set_comm checks sizes, ranks and models on every rank */
static int join_body(struct harness_rank *h)
{
    const int mode = *(const int *)h->arg;
    bt_model *m = make_model();
    bt_comm *c = NULL;
    int bad = 0;
    bt_status st;
    if (mode == 0) /* rank 0 believes in one rank more */
        bad |= bt_comm_create(&c, h->rank, h->size + (h->rank == 0), harness_allreduce, NULL, h) !=
               BT_OK;
    else if (mode == 1) /* two ranks 0 */
        bad |= bt_comm_create(&c, h->rank == 1 ? 0 : h->rank, h->size, harness_allreduce, NULL, h) !=
               BT_OK;
    else
        c = h->comm;
    if (mode == 2 && h->rank == 1) { /* another model */
        static const char *const other[] = {"model.projector", "16-8", NULL};
        bt_model_free(m);
        m = test_model(opts, other);
    }
    st = bt_model_set_comm(m, c);
    bad |= st != BT_E_COMM;
    bad |= !strstr(bt_last_error(), mode == 0 ? "ranks" : mode == 1 ? "same rank" : "disagree");
    if (c != h->comm)
        bt_comm_free(c);
    bt_model_free(m);
    return bad;
}

START_TEST(set_comm_checks_every_rank)
{
    int mode;
    for (mode = 0; mode < 3; mode++)
        ck_assert_msg(harness_run(3, 0, NULL, join_body, &mode) == 0, "mode %d", mode);
}
END_TEST

START_TEST(comm_create_validates)
{
    bt_comm *c = (bt_comm *)1;
    bt_model *m = make_model();
    ck_assert_int_eq(bt_comm_create(NULL, 0, 1, harness_allreduce, NULL, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_comm_create(&c, 0, 1, NULL, NULL, NULL), BT_E_MISUSE);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(bt_comm_create(&c, 0, 0, harness_allreduce, NULL, NULL), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_comm_create(&c, 2, 2, harness_allreduce, NULL, NULL), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "rank is 2"));
    ck_assert_int_eq(bt_comm_create(&c, -1, 2, harness_allreduce, NULL, NULL), BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_model_set_comm(m, (bt_comm *)m), BT_E_MISUSE);
    ck_assert_int_eq(bt_model_set_comm(NULL, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_model_set_comm(m, NULL), BT_OK);
    bt_comm_free(NULL);
    bt_comm_free((bt_comm *)m); /* not a communicator: ignored */
    ck_assert_int_eq(bt_model_tensor_count(m), ref.ntensors);
    ck_assert_str_eq(bt_status_string(BT_E_COMM), "communication failed");
    bt_model_free(m);
}
END_TEST

/* Uneven row blocks gathered in rank order, with and without an allgather. */
static int gather_body(struct harness_rank *h)
{
    struct bti_coll k;
    int64_t rows[4], total = 0, r, i;
    float send[4 * 3], recv[40 * 3];
    int bad = 0;
    for (r = 0; r < h->size; r++)
        total += rows[r] = r + 1;
    for (i = 0; i < rows[h->rank] * 3; i++)
        send[i] = (float)(100 * h->rank + i);
    bad |= bti_coll_begin(&k, h->comm, "test") != BT_OK;
    bad |= bti_coll_gather_reserve(h->comm, rows, 3, "test") != BT_OK;
    bti_coll_gather_rows(&k, send, rows, 3, recv, "rows");
    bad |= bti_coll_agree(&k, BT_OK, rows[h->rank], NULL, 0, NULL, NULL) != BT_OK;
    for (r = 0, i = 0; r < h->size; r++) {
        int64_t j;
        for (j = 0; j < rows[r] * 3; j++, i++)
            bad |= recv[i] != (float)(100 * r + j);
    }
    bad |= i != total * 3;
    for (r = 0; r < h->size; r++)
        bad |= h->comm->counts[r] != rows[r];
    return bad;
}

START_TEST(gathers_uneven_rows_in_rank_order)
{
    int w, g;
    for (w = 1; w <= 4; w++)
        for (g = 0; g < 2; g++)
            ck_assert_msg(harness_run(w, g, NULL, gather_body, NULL) == 0, "%d ranks, allgather %d",
                          w, g);
}
END_TEST

/* Allreduce of one rank: the buffer is already the sum; counts the calls. */
static int32_t one_rank_allreduce(void *user, void *buf, int64_t count, int32_t dtype)
{
    (void)buf, (void)count, (void)dtype;
    ++*(int *)user;
    return 0;
}

/* A model whose communicator was freed refuses its training passes with BT_E_MISUSE instead
 * of calling through a dangling handle; set back to NULL it trains as one process. One rank
 * over a communicator computes what one process does. */
START_TEST(a_freed_communicator_is_misuse)
{
    bt_model *m = make_model();
    bt_comm *c;
    bt_tensor *x[NV], *zt[NV];
    float z[NV][NB * EMB];
    int calls = 0, v;
    ck_assert_int_eq(bt_comm_create(&c, 0, 1, one_rank_allreduce, NULL, &calls), BT_OK);
    ck_assert_int_eq(bt_model_set_comm(m, c), BT_OK);
    ck_assert_int_gt(calls, 0); /* the agreement on sizes and models */
    forward_all(m, z);
    for (v = 0; v < NV; v++)
        ck_assert_msg(close_to(z[v], ref.z[v], NB * EMB, 1.0f), "view %d", v);

    bt_comm_free(c);
    for (v = 0; v < NV; v++) {
        x[v] = tensor(NB, 1, SIDE, SIDE, 4);
        zt[v] = tensor(NB, EMB, 0, 0, 2);
        memcpy(bt_tensor_data(x[v]), ref.x[v], sizeof ref.x[v]);
    }
    calls = 0;
    ck_assert_int_eq(bt_model_forward(m, NV, (const bt_tensor *const *)x, zt), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "its communicator was freed"));
    ck_assert_int_eq(calls, 0);
    for (v = 0; v < NV; v++) {
        int64_t i;
        for (i = 0; i < NB * EMB; i++)
            ck_assert_float_eq(bt_tensor_data(zt[v])[i], 0.0f); /* nothing written */
    }
    ck_assert_int_eq(bt_model_set_comm(m, NULL), BT_OK);
    ck_assert_int_eq(bt_model_forward(m, NV, (const bt_tensor *const *)x, zt), BT_OK);
    for (v = 0; v < NV; v++) {
        ck_assert_msg(close_to(bt_tensor_data(zt[v]), ref.z[v], NB * EMB, 1.0f), "view %d", v);
        bt_tensor_free(x[v]);
        bt_tensor_free(zt[v]);
    }
    bt_model_free(m);
}
END_TEST

Suite *comm_suite(void)
{
    Suite *s = suite_create("comm");
    TCase *t = tcase_create("model");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, comm_create_validates);
    tcase_add_test(t, a_freed_communicator_is_misuse);
    tcase_add_test(t, gathers_uneven_rows_in_rank_order);
    tcase_add_test(t, ranks_compute_what_one_process_computes);
    tcase_add_test(t, a_bad_argument_on_one_rank_fails_everywhere);
    tcase_add_test(t, ranks_must_agree_on_the_view_size);
    tcase_add_test(t, set_comm_checks_every_rank);
    tcase_add_test(t, a_failing_callback_fails_the_call_everywhere);
    tcase_set_timeout(t, 120);
    suite_add_tcase(s, t);
    return s;
}
