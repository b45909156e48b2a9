/* dist.c - data-parallel pretraining under mpirun: the command's only MPI code.
 *
 * Built with `make MPI=1` (-DBARLOW_MPI, linked with mpicc): MPI_Init, the
 * library's communicator over MPI_COMM_WORLD (examples/mpi_comm.h), the ranks'
 * agreement on a stop flag, and stdout of ranks other than 0 sent to /dev/null
 * (rank 0 alone prints and writes the run's files). Without BARLOW_MPI, or
 * with a single rank, every call is trivial: rank 0 of 1, no communicator. */
#include "cli.h"

#ifdef BARLOW_MPI

#include <mpi.h>

#include "../mpi_comm.h"

static struct barlow_mpi g_mp;
static bt_comm *g_comm;
static int g_rank = 0, g_size = 1, g_init = 0;

void dist_init(int *argc, char ***argv)
{
    int provided;
    /* the library calls the collectives from the thread that calls it */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        fail("MPI_Init_thread failed");
    g_init = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_size > 1 && barlow_mpi_open(&g_mp, MPI_COMM_WORLD, &g_comm) != 0)
        fail("rank %d: cannot make the communicator: %s", g_rank, bt_last_error());
    if (g_rank != 0 && !freopen("/dev/null", "w", stdout))
        fail("rank %d: cannot send stdout to /dev/null", g_rank);
}

int dist_rank(void) { return g_rank; }

int dist_size(void) { return g_size; }

bt_comm *dist_comm(void) { return g_comm; }

int dist_any(int flag)
{
    int in = flag != 0, out = in;
    if (g_size > 1 && MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD) != MPI_SUCCESS)
        fail("rank %d: MPI_Allreduce of the stop flag failed", g_rank);
    return out;
}

void dist_finalize(void)
{
    if (!g_init)
        return;
    if (g_comm)
        barlow_mpi_close(&g_mp);
    g_comm = NULL;
    fflush(stdout);
    MPI_Finalize();
    g_init = 0;
}

#else /* one process */

void dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
}

int dist_rank(void) { return 0; }

int dist_size(void) { return 1; }

bt_comm *dist_comm(void) { return NULL; }

int dist_any(int flag) { return flag != 0; }

void dist_finalize(void) {}

#endif
