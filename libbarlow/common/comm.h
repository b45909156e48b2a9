/* comm.h - the data-parallel communicator: the host's collectives behind
 * bt_comm, and what every data-parallel call is built from.
 *
 * A collective call runs as: bti_coll_begin; the preflight bti_coll_agree
 * (before anything whose size depends on the ranks' arguments); its sums and
 * gathers; the closing bti_coll_agree; then it commits its changes. Every rank
 * makes the same collectives in the same order whatever happens locally: a
 * rank whose callback failed keeps calling (its data are then garbage, never
 * used) so that no other rank waits, and the closing agreement fails the call
 * everywhere. */
#ifndef BARLOW_COMM_H
#define BARLOW_COMM_H

#include "common/internal.h"

struct bt_comm {
    int32_t rank, size;
    bt_comm_allreduce_fn allreduce;
    bt_comm_allgather_fn allgather; /* NULL: gathers through allreduce */
    void *user;
    int broken;               /* an agreement's own callback failed here: no more collectives */
    struct bti_buffer agree;  /* the agreements' doubles */
    int64_t *counts;          /* every rank's count in the last agreement */
    struct bti_buffer gather; /* padded rows of a gather */
};

/* One call's collectives. */
struct bti_coll {
    bt_comm *c;
    const char *fn;   /* the public call, for messages */
    int failed;       /* a callback of this call returned nonzero */
    int32_t code;     /* the first failure's return value */
    const char *what; /* and what it was summing */
    int agreements;   /* made so far in this call: the first is the preflight */
};

/* Start a call's collectives; BT_E_COMM at once if c is broken. */
BTI_HIDDEN bt_status bti_coll_begin(struct bti_coll *k, bt_comm *c, const char *fn);

/* In-place sums over the ranks (float64, float32). */
BTI_HIDDEN void bti_coll_sum_f64(struct bti_coll *k, double *buf, int64_t count, const char *what);
BTI_HIDDEN void bti_coll_sum_f32(struct bti_coll *k, float *buf, int64_t count, const char *what);

/* Every rank's rows of `width` floats, in rank order, into recv (sum of rows[r] rows);
 * rows[r] is rank r's count (all ranks know them from an agreement). send holds
 * rows[rank] rows. May allocate: BT_E_NOMEM before any collective is the caller's to
 * agree on, so reserve with bti_coll_gather_reserve in the call's checks. */
BTI_HIDDEN bt_status bti_coll_gather_reserve(bt_comm *c, const int64_t *rows, int64_t width,
                                             const char *fn);
BTI_HIDDEN void bti_coll_gather_rows(struct bti_coll *k, const float *send, const int64_t *rows,
                                     int64_t width, float *recv, const char *what);

/* The agreement: one all-reduce of size * (2 + nsame) doubles. Each rank gives its
 * status st (BT_E_COMM if one of this call's callbacks failed), a count, and nsame
 * values (|v| < 2^53) that must be equal on every rank, named by names[j] in messages.
 * Returns BT_OK on every rank when every status is BT_OK and the values agree, with
 * counts[r] (may be NULL) every rank's count. Otherwise this rank's own status (its
 * message kept) if it failed, else BT_E_COMM naming the first rank that failed or the
 * value that differs. counts[r] is also left in k->c->counts. Cannot fail locally: its
 * buffers are reserved at bt_comm_create.
 * If the callback itself fails: in the preflight (the call's first agreement) this rank
 * goes on with what arrived, as if every rank agreed, and the call fails everywhere at
 * its closing agreement; in any later agreement only this rank knows: it returns
 * BT_E_COMM and c is broken. */
BTI_HIDDEN bt_status bti_coll_agree(struct bti_coll *k, bt_status st, int64_t count,
                                    const int64_t *same, int nsame, const char *const *names,
                                    int64_t *counts);
#define BTI_COLL_MAX_SAME 8

/* An agreement between the preflight and the closing one, on statuses only (e.g. a
 * reservation sized by the preflight's counts): a failed callback here marks the call
 * failed and returns BT_OK, so the rank goes on to the closing agreement with the others.
 * Leaves c->counts as they were. */
BTI_HIDDEN bt_status bti_coll_confirm(struct bti_coll *k, bt_status st);

/* set_comm's join, collective: the ranks' sizes and ranks are consistent, and the nsame
 * values (a model's or loss's shape facts) equal everywhere. BT_E_NOMEM is agreed on too. */
BTI_HIDDEN bt_status bti_comm_join(bt_comm *c, const int64_t *same, int nsame,
                                   const char *const *names, const char *fn);
/* The same with this rank's own status st (e.g. a failed reservation), agreed on. */
BTI_HIDDEN bt_status bti_comm_join_st(bt_comm *c, bt_status st, const int64_t *same, int nsame,
                                      const char *const *names, const char *fn);

#endif
