/* comm_harness.h - W ranks as W threads of one process, for the data-parallel tests:
 * the collectives are sums in rank order behind a barrier (the same bits on every
 * rank, as MPI_Allreduce gives), and a rank's k-th callback can be made to fail. */
#ifndef COMM_HARNESS_H
#define COMM_HARNESS_H

#include <barlow.h>

#define HARNESS_MAX_RANKS 8

struct harness_rank {
    int rank, size;
    bt_comm *comm;
    int calls;   /* callbacks made so far */
    int fail_at; /* make callback number fail_at (1-based) return 1; 0: never */
    void *arg;   /* the test's */
};

/* Run body(rank) on `size` threads, each with its own communicator (with an allgather
 * callback when `gather`); fail_at[r] as above (NULL: none). Returns 0 when every body
 * returned 0; a callback whose count or dtype differs between ranks makes every rank's
 * callback fail (MPI's truncation error) instead of hanging. */
/* The callbacks, for a test that makes a communicator of its own (user: the rank). */
int32_t harness_allreduce(void *user, void *buf, int64_t count, int32_t dtype);
int32_t harness_allgather(void *user, const void *send, void *recv, int64_t count, int32_t dtype);

int harness_run(int size, int gather, const int *fail_at, int (*body)(struct harness_rank *),
                void *arg);

#endif
