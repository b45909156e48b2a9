/* mpi_comm.h - an MPI communicator as a bt_comm, header only (copy it into your program).
 *
 *   struct barlow_mpi mp;
 *   bt_comm *comm;
 *   if (barlow_mpi_open(&mp, MPI_COMM_WORLD, &comm) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
 *   bt_model_set_comm(model, comm); bt_loss_set_comm(loss, comm);
 *   ...train...
 *   free the model and loss (or set their communicator to NULL), then barlow_mpi_close(&mp);
 *
 * The callbacks are MPI_Allreduce (MPI_IN_PLACE, MPI_SUM, MPI_FLOAT / MPI_DOUBLE) and
 * MPI_Allgather on a duplicate of the communicator passed in, so the library's collectives
 * never mix with the host's own. Counts are int64_t, MPI's are int: a call is split into
 * chunks of at most INT_MAX / 2 elements. The library relies on every rank getting the same
 * bits back; Open MPI's allreduce gives that (every element is reduced once and sent to
 * all, or summed pairwise in the same order on both sides).
 *
 * Failures: the duplicate has MPI_ERRORS_ARE_FATAL. A dead rank or a broken link cannot be
 * survived by a data-parallel step (the others would wait for it forever), so MPI ends the
 * whole job instead of hanging; with that handler a callback never returns an error in
 * practice. The library's handling of failing callbacks (every rank gets BT_E_COMM, nothing
 * changes) can still be exercised with the test-only hook below.
 *
 * Test only: BARLOW_MPI_FAIL_AT=rank:k in the environment (read by barlow_mpi_open), or
 * fail_at set directly, makes that rank's k-th callback (1-based, counted from the open)
 * return 1 AFTER making its MPI call, so that no rank waits for it.
 *
 * Collective: barlow_mpi_open and barlow_mpi_close (MPI_Comm_dup / MPI_Comm_free).
 * Threads: the library makes its callbacks on the thread that made the bt_* call, never on
 * its OpenMP workers: MPI_Init_thread with MPI_THREAD_FUNNELED fits a host that calls
 * libbarlow from its main thread. */
#ifndef BARLOW_MPI_COMM_H
#define BARLOW_MPI_COMM_H

#include <barlow.h>
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

struct barlow_mpi {
    MPI_Comm comm; /* the duplicate the callbacks use */
    int rank, size;
    bt_comm *bt;
    long calls;   /* callbacks made so far */
    long fail_at; /* test only: callback number fail_at returns 1 (0: never) */
};

/* elements per MPI call; tests define a small one to exercise the split */
#ifndef BARLOW_MPI_CHUNK
#define BARLOW_MPI_CHUNK ((int64_t)(INT_MAX / 2))
#endif

static inline int barlow_mpi_counted(struct barlow_mpi *b, int rc)
{
    b->calls++;
    return rc != MPI_SUCCESS || (b->fail_at > 0 && b->calls == b->fail_at);
}

static inline int32_t barlow_mpi_allreduce(void *user, void *buf, int64_t count, int32_t dtype)
{
    struct barlow_mpi *b = (struct barlow_mpi *)user;
    const MPI_Datatype t = dtype ? MPI_DOUBLE : MPI_FLOAT;
    const size_t es = dtype ? sizeof(double) : sizeof(float);
    int64_t off;
    int rc = MPI_SUCCESS;
    if (dtype != 0 && dtype != 1)
        return 1;
    for (off = 0; off < count && rc == MPI_SUCCESS; off += BARLOW_MPI_CHUNK) {
        const int64_t n = count - off < BARLOW_MPI_CHUNK ? count - off : BARLOW_MPI_CHUNK;
        rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * es, (int)n, t, MPI_SUM,
                           b->comm);
    }
    return barlow_mpi_counted(b, rc);
}

/* recv holds size blocks of count elements. A chunk of n elements lands at offset off of
 * every block: a receive type of n elements whose extent is a whole block. */
static inline int32_t barlow_mpi_allgather(void *user, const void *send, void *recv,
                                           int64_t count, int32_t dtype)
{
    struct barlow_mpi *b = (struct barlow_mpi *)user;
    const MPI_Datatype t = dtype ? MPI_DOUBLE : MPI_FLOAT;
    const size_t es = dtype ? sizeof(double) : sizeof(float);
    int64_t off;
    int rc = MPI_SUCCESS;
    if (dtype != 0 && dtype != 1)
        return 1;
    if (count * b->size <= BARLOW_MPI_CHUNK)
        return barlow_mpi_counted(
            b, MPI_Allgather(send, (int)count, t, recv, (int)count, t, b->comm));
    for (off = 0; off < count && rc == MPI_SUCCESS; off += BARLOW_MPI_CHUNK) {
        const int64_t n = count - off < BARLOW_MPI_CHUNK ? count - off : BARLOW_MPI_CHUNK;
        MPI_Datatype piece, block;
        MPI_Type_contiguous((int)n, t, &piece);
        MPI_Type_create_resized(piece, 0, (MPI_Aint)((size_t)count * es), &block);
        MPI_Type_commit(&block);
        rc = MPI_Allgather((const char *)send + (size_t)off * es, (int)n, t,
                           (char *)recv + (size_t)off * es, 1, block, b->comm);
        MPI_Type_free(&block);
        MPI_Type_free(&piece);
    }
    return barlow_mpi_counted(b, rc);
}

/* Returns 0 and *out (owned by b) on success; nonzero with *out NULL otherwise
 * (bt_last_error says why when bt_comm_create failed). */
static inline int barlow_mpi_open(struct barlow_mpi *b, MPI_Comm comm, bt_comm **out)
{
    const char *env = getenv("BARLOW_MPI_FAIL_AT");
    *out = NULL;
    b->bt = NULL;
    b->calls = b->fail_at = 0;
    if (MPI_Comm_dup(comm, &b->comm) != MPI_SUCCESS)
        return 1;
    MPI_Comm_set_errhandler(b->comm, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(b->comm, &b->rank);
    MPI_Comm_size(b->comm, &b->size);
    if (env) { /* test only: "rank:k" */
        char *end;
        long r = strtol(env, &end, 10);
        if (*end == ':' && r == b->rank)
            b->fail_at = strtol(end + 1, NULL, 10);
    }
    if (bt_comm_create(&b->bt, b->rank, b->size, barlow_mpi_allreduce, barlow_mpi_allgather, b) !=
        BT_OK) {
        MPI_Comm_free(&b->comm);
        return 1;
    }
    *out = b->bt;
    return 0;
}

/* Free the models and losses using the communicator first (or set theirs to NULL). */
static inline void barlow_mpi_close(struct barlow_mpi *b)
{
    bt_comm_free(b->bt);
    b->bt = NULL;
    MPI_Comm_free(&b->comm);
}

#endif
