/* comm.c - bt_comm: the host's collectives, the agreement that makes a call
 * fail on every rank or on none, and the gather of uneven row blocks. */
#include "common/comm.h"

#include <stdlib.h>
#include <string.h>

#define SLOT (2 + BTI_COLL_MAX_SAME) /* doubles per rank in an agreement */

BT_API bt_status bt_comm_create(bt_comm **out, int32_t rank, int32_t size,
                                bt_comm_allreduce_fn allreduce, bt_comm_allgather_fn allgather,
                                void *user)
{
    static const char fn[] = "bt_comm_create";
    bt_comm *c;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: out is NULL", fn);
    *out = NULL;
    if (!allreduce)
        return bti_fail(BT_E_MISUSE, "%s: allreduce is NULL", fn);
    if (size < 1)
        return bti_fail(BT_E_INVALID_ARG, "%s: size is %d; it must be >= 1", fn, (int)size);
    if (rank < 0 || rank >= size)
        return bti_fail(BT_E_INVALID_ARG, "%s: rank is %d; it must be 0..%d (size %d)", fn,
                        (int)rank, (int)size - 1, (int)size);
    c = bti_calloc(1, sizeof *c);
    if (!c)
        return bti_fail(BT_E_NOMEM, "%s: out of memory for the communicator", fn);
    c->rank = rank;
    c->size = size;
    c->allreduce = allreduce;
    c->allgather = allgather;
    c->user = user;
    st = bti_buffer_reserve(&c->agree, (size_t)size * SLOT, sizeof(double), fn);
    if (st == BT_OK && !(c->counts = bti_calloc((size_t)size, sizeof *c->counts)))
        st = bti_fail(BT_E_NOMEM, "%s: out of memory for %d ranks", fn, (int)size);
    if (st == BT_OK && (st = bti_handle_add(c, BTI_KIND_COMM)) != BT_OK)
        st = bti_fail(BT_E_NOMEM, "%s: out of memory for the handle registry", fn);
    if (st != BT_OK) {
        bti_buffer_release(&c->agree);
        bti_free(c->counts);
        bti_free(c);
        return st;
    }
    *out = c;
    return BT_OK;
}

BT_API void bt_comm_free(bt_comm *c)
{
    if (!c || !bti_handle_is(c, BTI_KIND_COMM))
        return;
    bti_handle_remove(c);
    bti_buffer_release(&c->agree);
    bti_buffer_release(&c->gather);
    bti_free(c->counts);
    bti_free(c);
}

bt_status bti_coll_begin(struct bti_coll *k, bt_comm *c, const char *fn)
{
    k->c = c;
    k->fn = fn;
    k->failed = 0;
    k->code = 0;
    k->what = NULL;
    k->agreements = 0;
    if (!bti_handle_is(c, BTI_KIND_COMM))
        return bti_fail(BT_E_MISUSE, "%s: its communicator was freed (set it to NULL first)", fn);
    if (c->broken)
        return bti_fail(BT_E_COMM,
                        "%s: the communicator (rank %d of %d) failed in an earlier call; the "
                        "ranks may be out of step: create a new one",
                        fn, (int)c->rank, (int)c->size);
    return BT_OK;
}

static void note(struct bti_coll *k, int32_t r, const char *what)
{
    if (r != 0 && !k->failed) {
        k->failed = 1;
        k->code = r;
        k->what = what;
    }
}

void bti_coll_sum_f64(struct bti_coll *k, double *buf, int64_t count, const char *what)
{
    note(k, k->c->allreduce(k->c->user, buf, count, 1), what);
}

void bti_coll_sum_f32(struct bti_coll *k, float *buf, int64_t count, const char *what)
{
    note(k, k->c->allreduce(k->c->user, buf, count, 0), what);
}

static int64_t max_rows(const bt_comm *c, const int64_t *rows)
{
    int64_t m = 0;
    int32_t r;
    for (r = 0; r < c->size; r++)
        if (rows[r] > m)
            m = rows[r];
    return m;
}

bt_status bti_coll_gather_reserve(bt_comm *c, const int64_t *rows, int64_t width, const char *fn)
{
    /* padded blocks: W of them, plus this rank's own to send with allgather */
    size_t block = (size_t)max_rows(c, rows) * (size_t)width;
    return bti_buffer_reserve(&c->gather, block * ((size_t)c->size + 1), sizeof(float), fn);
}

void bti_coll_gather_rows(struct bti_coll *k, const float *send, const int64_t *rows,
                          int64_t width, float *recv, const char *what)
{
    bt_comm *c = k->c;
    const int64_t block = max_rows(c, rows) * width;
    float *all = c->gather.p, *mine = all + (size_t)c->size * (size_t)block;
    int64_t off = 0;
    int32_t r;
    if (c->allgather) {
        memcpy(mine, send, (size_t)(rows[c->rank] * width) * sizeof(float));
        memset(mine + rows[c->rank] * width, 0,
               (size_t)(block - rows[c->rank] * width) * sizeof(float));
        note(k, c->allgather(c->user, mine, all, block, 0), what);
    } else {
        /* a sum of blocks that are zero but on their owner: exact */
        memset(all, 0, (size_t)c->size * (size_t)block * sizeof(float));
        memcpy(all + (size_t)c->rank * (size_t)block, send,
               (size_t)(rows[c->rank] * width) * sizeof(float));
        note(k, c->allreduce(c->user, all, (int64_t)c->size * block, 0), what);
    }
    for (r = 0; r < c->size; r++) {
        memcpy(recv + off, all + (size_t)r * (size_t)block, (size_t)(rows[r] * width) * sizeof(float));
        off += rows[r] * width;
    }
}

/* middle: a confirmation (bti_coll_confirm), which neither breaks c nor sets counts */
static bt_status agree(struct bti_coll *k, bt_status st, int64_t count, const int64_t *same,
                       int nsame, const char *const *names, int64_t *counts, int middle)
{
    bt_comm *c = k->c;
    double *a = c->agree.p;
    const int32_t w = c->size;
    int32_t r, rc;
    int j;
    if (st == BT_OK && k->failed)
        st = BT_E_COMM;
    memset(a, 0, (size_t)w * SLOT * sizeof *a);
    a[(size_t)c->rank * SLOT] = (double)st;
    a[(size_t)c->rank * SLOT + 1] = (double)count;
    for (j = 0; j < nsame; j++)
        a[(size_t)c->rank * SLOT + 2 + j] = (double)same[j];
    rc = c->allreduce(c->user, a, (int64_t)w * SLOT, 1);
    if (middle && rc != 0 && st == BT_OK) {
        note(k, rc, "a confirming agreement"); /* the closing agreement tells every rank */
        return BT_OK;
    }
    if (rc != 0 && (k->agreements > 0 || st != BT_OK)) {
        c->broken = 1;
        return bti_fail(BT_E_COMM,
                        "%s: the communicator's allreduce returned %d in an agreement (rank %d "
                        "of %d); the communicator is now unusable",
                        k->fn, (int)rc, (int)c->rank, (int)w);
    }
    if (k->agreements++ == 0 && rc != 0) {
        /* the preflight: keep in step with the others, fail at the closing agreement */
        note(k, rc, "the opening agreement");
        for (r = 0; r < w; r++)
            c->counts[r] = r == c->rank ? count : (int64_t)a[(size_t)r * SLOT + 1];
        if (counts)
            memcpy(counts, c->counts, (size_t)w * sizeof *counts);
        return BT_OK;
    }
    if (k->failed)
        return bti_fail(BT_E_COMM, "%s: a communicator callback returned %d (%s) on rank %d of %d",
                        k->fn, (int)k->code, k->what, (int)c->rank, (int)w);
    if (st != BT_OK)
        return st; /* this rank's own error: its message stands */
    for (r = 0; r < w; r++) {
        const bt_status sr = (bt_status)a[(size_t)r * SLOT];
        if (sr != BT_OK)
            return bti_fail(BT_E_COMM, "%s: rank %d of %d failed (%s); the call failed on every rank",
                            k->fn, (int)r, (int)w,
                            sr == BT_E_COMM ? "its communicator failed" : bt_status_string(sr));
    }
    for (j = 0; j < nsame; j++)
        for (r = 1; r < w; r++)
            if (a[(size_t)r * SLOT + 2 + j] != a[2 + j])
                return bti_fail(BT_E_COMM, "%s: the ranks disagree: %s is %.0f on rank 0 but %.0f "
                                "on rank %d",
                                k->fn, names[j], a[2 + j], a[(size_t)r * SLOT + 2 + j], (int)r);
    for (r = 0; r < w && !middle; r++) {
        c->counts[r] = (int64_t)a[(size_t)r * SLOT + 1];
        if (counts)
            counts[r] = c->counts[r];
    }
    return BT_OK;
}

bt_status bti_coll_agree(struct bti_coll *k, bt_status st, int64_t count, const int64_t *same,
                         int nsame, const char *const *names, int64_t *counts)
{
    return agree(k, st, count, same, nsame, names, counts, 0);
}

bt_status bti_coll_confirm(struct bti_coll *k, bt_status st)
{
    return agree(k, st, 0, NULL, 0, NULL, NULL, 1);
}

bt_status bti_comm_join(bt_comm *c, const int64_t *same, int nsame, const char *const *names,
                        const char *fn)
{
    return bti_comm_join_st(c, BT_OK, same, nsame, names, fn);
}

bt_status bti_comm_join_st(bt_comm *c, bt_status own, const int64_t *same, int nsame,
                           const char *const *names, const char *fn)
{
    struct bti_coll k;
    double f[4];
    const double s = (double)c->size;
    int32_t rc;
    bt_status st = bti_coll_begin(&k, c, fn);
    if (st != BT_OK)
        return st;
    /* a fixed-size first round: the agreement's own size depends on the communicator size */
    f[0] = 1.0;
    f[1] = s;
    f[2] = (double)c->rank;
    f[3] = (double)c->rank * (double)c->rank;
    rc = c->allreduce(c->user, f, 4, 1);
    if (rc != 0) {
        /* the others go on to the agreement: meet them there, failed */
        note(&k, rc, "the size check");
    } else if (f[0] != s || f[1] != s * s) {
        return bti_fail(BT_E_COMM,
                        "%s: this communicator says %d ranks, but %.0f took part and their sizes "
                        "sum to %.0f",
                        fn, (int)c->size, f[0], f[1]);
    } else if (f[2] != s * (s - 1) / 2 || f[3] != (s - 1) * s * (2 * s - 1) / 6) {
        return bti_fail(BT_E_COMM, "%s: two ranks have the same rank number (this is rank %d of %d)",
                        fn, (int)c->rank, (int)c->size);
    }
    k.agreements = 1; /* the size check was the preflight */
    return bti_coll_agree(&k, own, c->rank, same, nsame, names, NULL);
}
