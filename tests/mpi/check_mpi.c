/* check_mpi.c - data-parallel training under mpirun (tests/mpi/run.sh runs it).
 *
 *   check_mpi ref FILE KIND        one process, no communicator: writes the reference
 *   check_mpi train FILE KIND [skew]  W ranks with examples/mpi_comm.h: compares with FILE
 *   check_mpi bad KIND             arguments the ranks disagree on
 *   check_mpi fault KIND           rank W-1's k-th callback fails, for every k of a step
 *   check_mpi adapter              the adapter's split into chunks and its gathers
 *
 * KIND is "full" (model + loss + LARS) or "model" (the loss replaced by fixed dz, no
 * bt_loss_* collective). A global batch of NB images per view, sharded unevenly (skew:
 * rank 0 takes one image), augmented with bt_augment_views_at(first global index), 3 LARS
 * steps. Rank 0 prints one line "ok NAME ..." or "FAIL NAME ..."; the exit status is 0 when
 * every rank passed. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t chunk_elems = INT_MAX / 2; /* the adapter test makes it small */
#define BARLOW_MPI_CHUNK chunk_elems
#include "mpi_comm.h"

#define NB 13  /* global batch per view: uneven over 2, 3, 4 ranks */
#define SRC 12 /* source image side */
#define SIDE 8 /* view side */
#define NV 2
#define STEPS 3
#define MAXT 64

static int rank, size, full;

static const char *const opts[] = {
    "model.arch", "resnet", "model.block", "basic", "model.blocks", "1-1", "model.widths", "4-8",
    "model.stem", "cifar", "model.in_channels", "1", "model.projector", "16-16", "threads", "1",
    "seed", "3", "aug.preset", "fmnist", "aug.mean", "0.5", "aug.std", "0.25",
    /* big enough steps that the updates, not only the initial weights, are compared */
    "optim.kind", "lars", "optim.batch_size", "13", "optim.lr", "20", "optim.lr_bias", "0.2",
    "optim.eta", "0.01", "optim.schedule", "constant", NULL};

#define CHECK(call)                                                                                \
    do {                                                                                           \
        bt_status st_ = (call);                                                                    \
        if (st_ != BT_OK) {                                                                        \
            fprintf(stderr, "rank %d: %s:%d: %s: %s\n", rank, __FILE__, __LINE__,                \
                    bt_status_string(st_), bt_last_error());                                       \
            MPI_Abort(MPI_COMM_WORLD, 3);                                                          \
        }                                                                                          \
    } while (0)

/* ---- one rank's training -------------------------------------------------------------- */

struct run {
    bt_model *m;
    bt_loss *l;
    bt_augment *a;
    bt_optim *o;
    int64_t n, first; /* the shard */
    bt_tensor *x[NV], *z[NV], *dz[NV];
    uint8_t px[NB][SRC * SRC];
    double loss;
};

static void shard(int skew, int64_t *n, int64_t *first)
{
    if (skew && size > 1) { /* 1 image on rank 0, the rest as evenly as it goes */
        const int64_t rest = NB - 1, w = size - 1, r = rank - 1;
        *n = rank == 0 ? 1 : rest / w + (r < rest % w);
        *first = rank == 0 ? 0 : 1 + r * (rest / w) + (r < rest % w ? r : rest % w);
        return;
    }
    *n = NB / size + (rank < NB % size);
    *first = (int64_t)rank * (NB / size) + (rank < NB % size ? rank : NB % size);
}

static bt_tensor *tensor(int64_t n, int64_t d1, int64_t d2, int64_t d3, int ndim)
{
    int64_t shape[4] = {n, d1, d2, d3};
    bt_tensor *t;
    CHECK(bt_tensor_create(&t, ndim, shape));
    return t;
}

static void run_open(struct run *R, int64_t n, int64_t first, int view_side)
{
    bt_config *c;
    const char *const *o;
    char side[16];
    int v;
    memset(R, 0, sizeof *R);
    R->n = n;
    R->first = first;
    snprintf(side, sizeof side, "%d", view_side);
    CHECK(bt_config_create(&c));
    for (o = opts; *o; o += 2)
        CHECK(bt_config_set(c, o[0], o[1]));
    CHECK(bt_config_set(c, "aug.size", side));
    CHECK(bt_model_create(&R->m, c));
    CHECK(bt_loss_create(&R->l, c));
    CHECK(bt_augment_create(&R->a, c));
    CHECK(bt_optim_create(&R->o, c));
    CHECK(bt_optim_add_model(R->o, R->m));
    bt_config_free(c);
    for (v = 0; v < NV; v++) {
        R->x[v] = tensor(n, 1, view_side, view_side, 4);
        R->z[v] = tensor(n, bt_model_embed_dim(R->m), 0, 0, 2);
        R->dz[v] = tensor(n, bt_model_embed_dim(R->m), 0, 0, 2);
    }
}

static void run_close(struct run *R)
{
    int v;
    for (v = 0; v < NV; v++) {
        bt_tensor_free(R->x[v]);
        bt_tensor_free(R->z[v]);
        bt_tensor_free(R->dz[v]);
    }
    bt_optim_free(R->o);
    bt_augment_free(R->a);
    bt_loss_free(R->l);
    bt_model_free(R->m);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* global image `index` of step `step`: uniform noise, whichever rank draws it */
static void views(struct run *R, int step)
{
    const uint8_t *img[NB];
    int32_t h[NB], w[NB];
    int64_t i, p;
    for (i = 0; i < R->n; i++) {
        for (p = 0; p < SRC * SRC; p++)
            R->px[i][p] = (uint8_t)mix(((uint64_t)step << 40) ^ ((uint64_t)(R->first + i) << 20) ^
                                       (uint64_t)p);
        img[i] = R->px[i];
        h[i] = w[i] = SRC;
    }
    CHECK(bt_augment_views_at(R->a, R->first, (int32_t)R->n, img, h, w, NULL, BT_PIXELS_GRAY, NV,
                              R->x));
}

/* "model": dz of global row r drawn from (step, view, r), instead of the loss */
static void fixed_dz(struct run *R, int step)
{
    int v;
    int64_t i, j, d = bt_tensor_dim(R->dz[0], 1);
    for (v = 0; v < NV; v++)
        for (i = 0; i < R->n; i++)
            for (j = 0; j < d; j++)
                bt_tensor_data(R->dz[v])[i * d + j] =
                    (float)((double)(mix(((uint64_t)step << 48) ^ ((uint64_t)v << 40) ^
                                         ((uint64_t)(R->first + i) << 20) ^ (uint64_t)j) >> 11) /
                                9007199254740992.0 - 0.5) / NB;
}


/* ---- records: the reference file, written or compared ---------------------------------- */

enum { C_VIEWS, C_LOSS, C_GRAD, C_PARAM, C_STAT, C_DELTA, NCAT };
static const char *const cat_name[NCAT] = {"views", "loss", "grad", "param", "stat", "update"};
static const double cat_tol[NCAT] = {0, 1e-5, 1e-5, 1e-5, 1e-5, 1e-4};

struct rec {
    FILE *f;
    int write;
    double err[NCAT]; /* max over tensors of max|got - want| / max|want| */
};

/* got[0..n) against rows off..off+n of the next `total` values of the file */
static void rec(struct rec *r, int cat, const double *got, int64_t n, int64_t off, int64_t total)
{
    double *want, big = 0, err = 0;
    int64_t i;
    if (r->write) {
        if (fwrite(got, sizeof *got, (size_t)total, r->f) != (size_t)total) {
            fprintf(stderr, "rank %d: cannot write the reference\n", rank);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        return;
    }
    want = malloc((size_t)total * sizeof *want);
    if (!want || fread(want, sizeof *want, (size_t)total, r->f) != (size_t)total) {
        fprintf(stderr, "rank %d: the reference is short (another KIND?)\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    for (i = 0; i < n; i++)
        big = fmax(big, fabs(want[off + i]));
    for (i = 0; i < n; i++)
        err = fmax(err, fabs(got[i] - want[off + i]));
    if (big > 0)
        err /= big;
    r->err[cat] = fmax(r->err[cat], err);
    free(want);
}

static void rec_floats(struct rec *r, int cat, const float *p, int64_t n, int64_t off,
                       int64_t total)
{
    double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    int64_t i;
    for (i = 0; i < n; i++)
        d[i] = p[i];
    rec(r, cat, d, n, off, total);
    free(d);
}

static uint64_t fnv(uint64_t h, const void *p, size_t bytes)
{
    const unsigned char *c = p;
    size_t i;
    for (i = 0; i < bytes; i++)
        h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}

/* every tensor of the model: values (grads 0) or gradients (grads 1), into the hash */
static uint64_t model_hash(bt_model *m, uint64_t h, int grads)
{
    int i;
    for (i = 0; i < bt_model_tensor_count(m); i++) {
        const char *name;
        bt_tensor *v, *g;
        CHECK(bt_model_tensor(m, i, &name, &v, &g));
        if (grads && !g)
            continue;
        h = fnv(h, bt_tensor_data(grads ? g : v), (size_t)bt_tensor_numel(v) * sizeof(float));
    }
    return h;
}

static int all_ok(int ok)
{
    int all;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    return all;
}

/* 1 when h is the same on every rank */
static int same_everywhere(uint64_t h)
{
    uint64_t lo, hi;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

/* STEPS steps of the whole host loop; comm NULL: one process without a communicator */
static uint64_t train(struct run *R, bt_comm *comm, struct rec *r)
{
    const int64_t pixels = (int64_t)SIDE * SIDE;
    float *start[MAXT];
    uint64_t h = 1469598103934665603ULL;
    int s, v, i, nt = bt_model_tensor_count(R->m);
    if (nt > MAXT)
        MPI_Abort(MPI_COMM_WORLD, 3);
    if (comm) {
        CHECK(bt_model_set_comm(R->m, comm));
        if (full)
            CHECK(bt_loss_set_comm(R->l, comm));
    }
    for (i = 0; i < nt; i++) { /* the weights before the steps, for the updates */
        const char *name;
        bt_tensor *val, *g;
        CHECK(bt_model_tensor(R->m, i, &name, &val, &g));
        start[i] = malloc((size_t)bt_tensor_numel(val) * sizeof(float));
        memcpy(start[i], bt_tensor_data(val), (size_t)bt_tensor_numel(val) * sizeof(float));
    }
    for (s = 0; s < STEPS; s++) {
        views(R, s);
        for (v = 0; v < NV; v++) /* bit for bit the views of one call over the whole batch */
            rec_floats(r, C_VIEWS, bt_tensor_data(R->x[v]), R->n * pixels, R->first * pixels,
                       NB * pixels);
        CHECK(bt_model_zero_grad(R->m));
        CHECK(bt_model_forward(R->m, NV, (const bt_tensor *const *)R->x, R->z));
        if (full) {
            CHECK(bt_loss_forward(R->l, R->z[0], R->z[1], &R->loss));
            CHECK(bt_loss_backward(R->l, R->dz[0], R->dz[1]));
        } else {
            fixed_dz(R, s);
            R->loss = 0;
        }
        rec(r, C_LOSS, &R->loss, 1, 0, 1);
        h = fnv(h, &R->loss, sizeof R->loss);
        CHECK(bt_model_backward(R->m, NV, (const bt_tensor *const *)R->dz));
        for (i = 0; i < nt; i++) { /* every rank holds the global gradient */
            const char *name;
            bt_tensor *val, *g;
            CHECK(bt_model_tensor(R->m, i, &name, &val, &g));
            if (g)
                rec_floats(r, C_GRAD, bt_tensor_data(g), bt_tensor_numel(g), 0, bt_tensor_numel(g));
        }
        h = model_hash(R->m, h, 1);
        CHECK(bt_optim_step(R->o));
    }
    for (i = 0; i < nt; i++) {
        const char *name;
        bt_tensor *val, *g;
        int64_t j, k;
        float *d;
        CHECK(bt_model_tensor(R->m, i, &name, &val, &g));
        k = bt_tensor_numel(val);
        d = malloc((size_t)k * sizeof *d);
        rec_floats(r, g ? C_PARAM : C_STAT, bt_tensor_data(val), k, 0, k);
        for (j = 0; j < k; j++)
            d[j] = bt_tensor_data(val)[j] - start[i][j];
        if (g)
            rec_floats(r, C_DELTA, d, k, 0, k);
        free(d);
        free(start[i]);
    }
    return model_hash(R->m, h, 0);
}

static int mode_train(const char *path, int write, int skew)
{
    struct rec r;
    struct run R;
    struct barlow_mpi mp;
    bt_comm *comm = NULL;
    int64_t n, first;
    uint64_t h;
    int ok = 1, c, identical;
    memset(&r, 0, sizeof r);
    r.write = write;
    if (write && size != 1) {
        fprintf(stderr, "ref runs on one rank\n");
        return 1;
    }
    if (!(r.f = fopen(path, write ? "wb" : "rb"))) {
        fprintf(stderr, "rank %d: cannot open %s\n", rank, path);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    shard(skew, &n, &first);
    run_open(&R, n, first, SIDE);
    if (!write && barlow_mpi_open(&mp, MPI_COMM_WORLD, &comm) != 0)
        MPI_Abort(MPI_COMM_WORLD, 3);
    h = train(&R, comm, &r);
    fclose(r.f);
    run_close(&R);
    if (comm)
        barlow_mpi_close(&mp);
    if (write) {
        printf("ok ref %s: one process, no communicator, %d images per view\n", path, NB);
        return 0;
    }
    for (c = 0; c < NCAT; c++) {
        double e;
        ok &= r.err[c] <= cat_tol[c];
        MPI_Allreduce(&r.err[c], &e, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        r.err[c] = e;
    }
    identical = same_everywhere(h); /* loss, gradients, weights, statistics */
    ok = all_ok(ok && identical);
    if (rank == 0) {
        printf("%s W=%d%s %s: max rel err", ok ? "ok" : "FAIL", size, skew ? " skew" : "",
               full ? "full" : "model");
        for (c = 0; c < NCAT; c++)
            printf(" %s %.2g", cat_name[c], r.err[c]);
        printf("; ranks %s\n", identical ? "bitwise identical" : "DIFFER");
    }
    return !ok;
}

/* ---- ranks that disagree ------------------------------------------------------------------ */

struct snap {
    uint64_t values, grads, z, dz;
};

static struct snap snapshot(struct run *R)
{
    struct snap s;
    int v;
    s.values = model_hash(R->m, 1, 0);
    s.grads = model_hash(R->m, 1, 1);
    s.z = s.dz = 1;
    for (v = 0; v < NV; v++) {
        s.z = fnv(s.z, bt_tensor_data(R->z[v]), (size_t)bt_tensor_numel(R->z[v]) * sizeof(float));
        s.dz =
            fnv(s.dz, bt_tensor_data(R->dz[v]), (size_t)bt_tensor_numel(R->dz[v]) * sizeof(float));
    }
    return s;
}

static int unchanged(struct run *R, struct snap before)
{
    struct snap now = snapshot(R);
    return now.values == before.values && now.grads == before.grads && now.z == before.z &&
           now.dz == before.dz;
}

/* st must be `want` (-1: any failure) with a message containing `text` (NULL: any) */
static int failed_as(const char *test, bt_status st, bt_status want, const char *text)
{
    const char *msg = bt_last_error();
    int ok = st != BT_OK && (want < 0 || st == want) && msg && *msg && (!text || strstr(msg, text));
    if (!ok)
        fprintf(stderr, "rank %d: %s: got %s: %s\n", rank, test, bt_status_string(st), msg);
    return ok;
}

static int mode_bad(void)
{
    struct run R, small;
    struct barlow_mpi mp;
    bt_comm *comm;
    struct snap s0;
    bt_status st;
    int64_t n, first;
    int ok = 1, ok_size, ok_loss = 1, ok_dz;
    char name[64];
    shard(0, &n, &first);
    run_open(&R, n, first, SIDE);
    run_open(&small, n, first, SIDE + 2); /* aug.size differs on the last rank */
    if (barlow_mpi_open(&mp, MPI_COMM_WORLD, &comm) != 0)
        MPI_Abort(MPI_COMM_WORLD, 3);

    /* 0. set_comm: another model (projector) or loss (loss.lambda) on rank 1: every rank
     * fails and keeps no communicator */
    {
        bt_config *c;
        bt_model *m2;
        bt_loss *l2;
        const char *const *o;
        int ok_join;
        CHECK(bt_config_create(&c));
        for (o = opts; *o; o += 2)
            CHECK(bt_config_set(c, o[0], o[1]));
        if (rank == 1) {
            CHECK(bt_config_set(c, "model.projector", "16-8"));
            CHECK(bt_config_set(c, "loss.lambda", "0.01"));
        }
        CHECK(bt_model_create(&m2, c));
        CHECK(bt_loss_create(&l2, c));
        bt_config_free(c);
        ok_join = failed_as("set_comm model", bt_model_set_comm(m2, comm), BT_E_COMM, "disagree");
        if (full)
            ok_join &= failed_as("set_comm loss", bt_loss_set_comm(l2, comm), BT_E_COMM, NULL);
        ok_join = all_ok(ok_join);
        if (rank == 0)
            printf("%s bad set_comm %s (W=%d): another model%s on rank 1 fails on every rank\n",
                   ok_join ? "ok" : "FAIL", full ? "full" : "model", size,
                   full ? " or loss.lambda" : "");
        ok &= ok_join;
        bt_loss_free(l2);
        bt_model_free(m2);
    }
    CHECK(bt_model_set_comm(R.m, comm));
    if (full)
        CHECK(bt_loss_set_comm(R.l, comm));

    /* 1. a view size the ranks disagree on: every rank fails, nothing changes */
    views(rank == size - 1 ? &small : &R, 0);
    s0 = snapshot(&R);
    st = bt_model_forward(R.m, NV, (const bt_tensor *const *)(rank == size - 1 ? small.x : R.x),
                          R.z);
    ok_size = failed_as("view size", st, BT_E_COMM, "height") && unchanged(&R, s0);
    ok_size = all_ok(ok_size);
    /* and the next good call works everywhere */
    views(&R, 0);
    ok_size = all_ok(ok_size && bt_model_forward(R.m, NV, (const bt_tensor *const *)R.x, R.z) ==
                                    BT_OK);
    if (rank == 0)
        printf("%s bad view size %s (W=%d): every rank fails, nothing changes, next call works\n",
               ok_size ? "ok" : "FAIL", full ? "full" : "model", size);
    ok &= ok_size;

    /* 2. the loss: zb with a row too few on rank 1 */
    if (full) {
        bt_tensor *short_zb = tensor(n - 1, bt_model_embed_dim(R.m), 0, 0, 2);
        double value = -1;
        s0 = snapshot(&R);
        st = bt_loss_forward(R.l, R.z[0], rank == 1 ? short_zb : R.z[1], &value);
        snprintf(name, sizeof name, "rank 1 of %d", size);
        ok_loss = (rank == 1 ? failed_as("loss rows", st, BT_E_SHAPE, NULL)
                             : failed_as("loss rows", st, BT_E_COMM, name)) &&
                  value == -1 && unchanged(&R, s0);
        /* a backward now has no forward to differentiate, on every rank alike */
        st = bt_loss_backward(R.l, R.dz[0], R.dz[1]);
        ok_loss &= st != BT_OK && unchanged(&R, s0);
        ok_loss = all_ok(ok_loss && bt_loss_forward(R.l, R.z[0], R.z[1], &value) == BT_OK &&
                         bt_loss_backward(R.l, R.dz[0], R.dz[1]) == BT_OK);
        if (rank == 0)
            printf("%s bad loss rows (W=%d): rank 1 BT_E_SHAPE, others BT_E_COMM naming it, "
                   "nothing changes\n", ok_loss ? "ok" : "FAIL", size);
        bt_tensor_free(short_zb);
        ok &= ok_loss;
    } else {
        fixed_dz(&R, 0);
    }

    /* 3. backward: no dz on rank 0 */
    s0 = snapshot(&R);
    st = bt_model_backward(R.m, NV, rank == 0 ? NULL : (const bt_tensor *const *)R.dz);
    snprintf(name, sizeof name, "rank 0 of %d", size);
    ok_dz = (rank == 0 ? failed_as("backward dz", st, BT_E_MISUSE, NULL)
                       : failed_as("backward dz", st, BT_E_COMM, name)) &&
            unchanged(&R, s0);
    ok_dz = all_ok(ok_dz && bt_model_backward(R.m, NV, (const bt_tensor *const *)R.dz) == BT_OK);
    ok_dz = all_ok(ok_dz && same_everywhere(model_hash(R.m, 1, 1)));
    if (rank == 0)
        printf("%s bad backward %s (W=%d): rank 0 BT_E_MISUSE, others BT_E_COMM, nothing "
               "changes, retry gives the same gradients everywhere\n",
               ok_dz ? "ok" : "FAIL", full ? "full" : "model", size);
    ok &= ok_dz;
    run_close(&R);
    run_close(&small);
    barlow_mpi_close(&mp);
    return !ok;
}

/* ---- failing callbacks ---------------------------------------------------------------- */

enum { S_SETM, S_SETL, S_FWD, S_LFWD, S_LBWD, S_BWD, NSEQ };
static const char *const seq_name[NSEQ] = {"bt_model_set_comm", "bt_loss_set_comm",
                                           "bt_model_forward", "bt_loss_forward",
                                           "bt_loss_backward", "bt_model_backward"};

static bt_status seq_call(struct run *R, bt_comm *comm, int c)
{
    switch (c) {
    case S_SETM: return bt_model_set_comm(R->m, comm);
    case S_SETL: return bt_loss_set_comm(R->l, comm);
    case S_FWD: return bt_model_forward(R->m, NV, (const bt_tensor *const *)R->x, R->z);
    case S_LFWD: return bt_loss_forward(R->l, R->z[0], R->z[1], &R->loss);
    case S_LBWD: return bt_loss_backward(R->l, R->dz[0], R->dz[1]);
    default: return bt_model_backward(R->m, NV, (const bt_tensor *const *)R->dz);
    }
}

struct outcome {
    long calls;        /* callbacks made on the failing rank */
    int everywhere;    /* the failure reached every rank */
    int closing;       /* it was known to the failing rank only (its communicator broken) */
    int reforward;     /* a failed backward was redone with its forward */
    int call;          /* the call that failed (S_*), -1: none */
    uint64_t result;   /* loss, gradients, weights after the step */
    uint64_t stats;    /* running statistics */
};

/* One step (set_comm ... backward, LARS) with callback fail_at of rank W-1 failing. */
static int fault_step(long fail_at, struct outcome *out)
{
    struct run R;
    struct barlow_mpi mp;
    bt_comm *comm;
    int64_t n, first;
    int c, ok = 1, failed_once = 0;
    memset(out, 0, sizeof *out);
    out->call = -1;
    shard(0, &n, &first);
    run_open(&R, n, first, SIDE);
    if (barlow_mpi_open(&mp, MPI_COMM_WORLD, &comm) != 0)
        MPI_Abort(MPI_COMM_WORLD, 3);
    mp.fail_at = rank == size - 1 ? fail_at : 0;
    views(&R, 0);
    CHECK(bt_model_zero_grad(R.m));
    if (!full)
        fixed_dz(&R, 0);
    for (c = 0; c < NSEQ; c++) {
        struct snap s0;
        bt_status st;
        int failed, nfailed;
        if (!full && (c == S_SETL || c == S_LFWD || c == S_LBWD))
            continue;
        s0 = snapshot(&R);
        st = seq_call(&R, comm, c);
        failed = st != BT_OK;
        MPI_Allreduce(&failed, &nfailed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (!nfailed)
            continue;
        if (failed_once) { /* one callback fails, once */
            fprintf(stderr, "rank %d: %s failed again: %s\n", rank, seq_name[c], bt_last_error());
            ok = 0;
            break;
        }
        failed_once = 1;
        out->call = c;
        /* a status, a message naming the failing rank, nothing changed on every rank that
         * failed */
        if (failed) {
            char who[32];
            snprintf(who, sizeof who, "rank %d of %d", size - 1, size);
            ok &= failed_as(seq_name[c], st, BT_E_COMM, who) && unchanged(&R, s0);
        }
        if (nfailed < size) {
            /* the closing agreement's callback: the failing rank alone knows, and its
             * communicator is broken - the next call fails at once, with no collective */
            long before = mp.calls;
            out->closing = 1;
            if (rank == size - 1)
                ok &= failed && bt_model_set_comm(R.m, comm) == BT_E_COMM && mp.calls == before &&
                      strstr(bt_last_error(), "create a new one");
            else
                ok &= !failed;
            break;
        }
        out->everywhere = 1;
        if (c == S_BWD) { /* the backward used up its forward: run both again */
            out->reforward = 1;
            c = S_FWD - 1;
        } else {
            c--; /* the same call again */
        }
    }
    if (!out->closing) {
        CHECK(bt_optim_step(R.o));
        int i;
        out->result = fnv(model_hash(R.m, 1, 1), &R.loss, sizeof R.loss);
        out->stats = 1;
        for (i = 0; i < bt_model_tensor_count(R.m); i++) { /* weights; running statistics */
            const char *name;
            bt_tensor *v, *g;
            CHECK(bt_model_tensor(R.m, i, &name, &v, &g));
            if (g)
                out->result = fnv(out->result, bt_tensor_data(v),
                                  (size_t)bt_tensor_numel(v) * sizeof(float));
            else
                out->stats = fnv(out->stats, bt_tensor_data(v),
                                 (size_t)bt_tensor_numel(v) * sizeof(float));
        }
    }
    out->calls = mp.calls;
    run_close(&R);
    barlow_mpi_close(&mp);
    return ok;
}

static int mode_fault(void)
{
    struct outcome clean, o;
    long k, total;
    int ok, nclosing = 0, neverywhere = 0, bad = 0, per[NSEQ] = {0}, c;
    ok = fault_step(0, &clean);
    total = clean.calls;
    MPI_Bcast(&total, 1, MPI_LONG, size - 1, MPI_COMM_WORLD);
    ok = all_ok(ok && !clean.closing && !clean.everywhere);
    for (k = 1; k <= total && ok; k++) {
        int this_ok = fault_step(k, &o);
        /* a failure everywhere changes nothing: the redone step is the clean one, bit for
         * bit (the running statistics too unless the forward was redone) */
        if (!o.closing)
            this_ok &= o.everywhere && o.result == clean.result &&
                       (o.reforward || o.stats == clean.stats);
        if (!all_ok(this_ok)) {
            if (rank == 0)
                fprintf(stderr, "fault: callback %ld of %ld failing on rank %d\n", k, total,
                        size - 1);
            bad++;
        }
        MPI_Allreduce(MPI_IN_PLACE, &o.closing, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        nclosing += o.closing;
        neverywhere += !o.closing;
        if (o.call >= 0)
            per[o.call]++;
    }
    ok = ok && !bad && nclosing > 0 && neverywhere > 0;
    if (rank == 0)
        printf("%s failing callback %s (W=%d): %ld callbacks of a step each failing on rank %d: "
               "%d failed every rank and changed nothing (the retried step bitwise the clean "
               "one), %d in a closing agreement broke that rank's communicator; no hang\n",
               ok ? "ok" : "FAIL", full ? "full" : "model", size, total, size - 1, neverywhere,
               nclosing);
    if (rank == 0) /* every rank saw each failure */
        for (c = 0; c < NSEQ; c++)
            if (per[c])
                printf("  fault: %d failing callbacks in %s\n", per[c], seq_name[c]);
    return !ok;
}

/* ---- the adapter itself -------------------------------------------------------------------- */

static int mode_adapter(void)
{
    struct barlow_mpi mp;
    bt_comm *comm;
    float f[37], g[5 * 23], send[23];
    double d[29];
    int i, r, ok = 1;
    chunk_elems = 7; /* every call split */
    if (barlow_mpi_open(&mp, MPI_COMM_WORLD, &comm) != 0)
        return 1;
    for (i = 0; i < 37; i++)
        f[i] = (float)(i + rank);
    for (i = 0; i < 29; i++)
        d[i] = 0.5 * i * (rank + 1);
    ok &= barlow_mpi_allreduce(&mp, f, 37, 0) == 0 && barlow_mpi_allreduce(&mp, d, 29, 1) == 0;
    for (i = 0; i < 37; i++)
        ok &= f[i] == (float)(size * i + size * (size - 1) / 2);
    for (i = 0; i < 29; i++)
        ok &= d[i] == 0.5 * i * size * (size + 1) / 2;
    for (i = 0; i < 23; i++)
        send[i] = (float)(100 * rank + i);
    if (size <= 5) {
        ok &= barlow_mpi_allgather(&mp, send, g, 23, 0) == 0; /* 23 * W > 7: the typed path */
        for (r = 0; r < size; r++)
            for (i = 0; i < 23; i++)
                ok &= g[r * 23 + i] == (float)(100 * r + i);
    }
    /* the hook: the next callback fails after its MPI call, on the last rank only */
    mp.fail_at = rank == size - 1 ? mp.calls + 1 : 0;
    ok &= barlow_mpi_allreduce(&mp, f, 3, 0) == (rank == size - 1);
    ok &= barlow_mpi_allreduce(&mp, f, 3, 0) == 0;
    chunk_elems = INT_MAX / 2;
    ok = all_ok(ok);
    if (rank == 0)
        printf("%s adapter (W=%d): sums and gathers split into chunks of 7, rank order, the "
               "fault hook\n", ok ? "ok" : "FAIL", size);
    barlow_mpi_close(&mp);
    return !ok;
}

int main(int argc, char **argv)
{
    int rc = 2, provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc >= 4 && (!strcmp(argv[1], "ref") || !strcmp(argv[1], "train")))
        full = !strcmp(argv[3], "full");
    else if (argc >= 3 && (!strcmp(argv[1], "bad") || !strcmp(argv[1], "fault")))
        full = !strcmp(argv[2], "full");
    if (argc >= 4 && !strcmp(argv[1], "ref"))
        rc = mode_train(argv[2], 1, 0);
    else if (argc >= 4 && !strcmp(argv[1], "train"))
        rc = mode_train(argv[2], 0, argc > 4 && !strcmp(argv[4], "skew"));
    else if (argc >= 3 && (!strcmp(argv[1], "bad") || !strcmp(argv[1], "fault")) && size < 2)
        fprintf(stderr, "%s needs 2 ranks or more\n", argv[1]);
    else if (argc >= 3 && !strcmp(argv[1], "bad"))
        rc = mode_bad();
    else if (argc >= 3 && !strcmp(argv[1], "fault"))
        rc = mode_fault();
    else if (argc >= 2 && !strcmp(argv[1], "adapter"))
        rc = mode_adapter();
    else if (rank == 0)
        fprintf(stderr, "usage: check_mpi ref|train FILE full|model [skew] | bad|fault "
                        "full|model | adapter\n");
    MPI_Finalize();
    return rc;
}
