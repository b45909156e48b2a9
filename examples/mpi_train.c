/* mpi_train.c - data-parallel Barlow Twins: W processes under mpirun compute what one
 * process computes with the whole global batch (include/barlow.h, "Data-parallel
 * training"). Each rank takes its shard of every global batch, augments it keyed by the
 * global index of its first image, and the model and loss exchange BatchNorm statistics,
 * the loss's sums and the gradients through examples/mpi_comm.h. Synthetic data as in
 * train_loop.c; every call is checked and a failure ends the job (MPI_Abort).
 *
 *   make MPI=1 all && mpirun -n 3 build/examples/mpi_train [steps [checkpoint]]
 */
#include "mpi_comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 32 /* global batch: uneven shards are fine */
#define SIDE 16

static int rank;

#define CHECK(call)                                                                                \
    do {                                                                                           \
        bt_status st_ = (call);                                                                    \
        if (st_ != BT_OK) {                                                                        \
            fprintf(stderr, "rank %d: %s:%d: %s: %s\n", rank, __FILE__, __LINE__,                \
                    bt_status_string(st_), bt_last_error());                                       \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
        }                                                                                          \
    } while (0)

/* Image `index` of batch `step`: a disc or a square, the same whatever rank draws it. */
static void draw(uint8_t *px, int step, int64_t index)
{
    unsigned s = (unsigned)step * 7919u + (unsigned)index * 104729u + 1u;
    int cx, cy, r, square, y, x;
    s = s * 1103515245u + 12345u, cx = 4 + (int)(s >> 16) % 8;
    s = s * 1103515245u + 12345u, cy = 4 + (int)(s >> 16) % 8;
    r = 2 + (int)(s >> 8) % 4;
    square = (s >> 4) & 1;
    for (y = 0; y < SIDE; y++)
        for (x = 0; x < SIDE; x++) {
            int dx = x - cx, dy = y - cy;
            int in = square ? (abs(dx) <= r && abs(dy) <= r) : (dx * dx + dy * dy <= r * r);
            px[y * SIDE + x] = (uint8_t)(in ? 220 : 30);
        }
}

/* FNV-1a over every tensor of the model (weights and running statistics) */
static uint64_t checksum(bt_model *m)
{
    uint64_t h = 1469598103934665603ULL;
    int i;
    for (i = 0; i < bt_model_tensor_count(m); i++) {
        const char *name;
        bt_tensor *v, *g;
        const unsigned char *p;
        int64_t k;
        CHECK(bt_model_tensor(m, i, &name, &v, &g));
        p = (const unsigned char *)bt_tensor_data(v);
        for (k = 0; k < bt_tensor_numel(v) * (int64_t)sizeof(float); k++)
            h = (h ^ p[k]) * 1099511628211ULL;
    }
    return h;
}

int main(int argc, char **argv)
{
    static uint8_t pixels[BATCH][SIDE * SIDE];
    const uint8_t *images[BATCH];
    int32_t heights[BATCH], widths[BATCH];
    const char *opts[] = {"model.arch", "resnet", "model.blocks", "1-1", "model.widths", "8-16",
                          "model.stem", "cifar", "model.in_channels", "1", "model.projector",
                          "64-64", "aug.preset", "fmnist", "aug.size", "16", "aug.mean", "0.3",
                          "aug.std", "0.4", "optim.batch_size", "32", "optim.warmup_steps", "2",
                          "threads", "1", NULL};
    const int steps = argc > 1 ? atoi(argv[1]) : 5;
    int size, step, i, r, same = 1, provided;
    int64_t n, first, vshape[4], zshape[2];
    struct barlow_mpi mp;
    bt_comm *comm;
    bt_config *cfg;
    bt_model *model;
    bt_loss *loss;
    bt_augment *aug;
    bt_optim *opt;
    bt_tensor *views[2], *z[2], *dz[2];
    uint64_t sum, *sums;

    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided); /* libbarlow: main thread */
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > BATCH) {
        if (rank == 0)
            fprintf(stderr, "at most %d ranks for a global batch of %d\n", BATCH, BATCH);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (barlow_mpi_open(&mp, MPI_COMM_WORLD, &comm) != 0) {
        fprintf(stderr, "rank %d: barlow_mpi_open: %s\n", rank, bt_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* this rank's shard: the first BATCH % size ranks take one image more */
    n = BATCH / size + (rank < BATCH % size);
    first = (int64_t)rank * (BATCH / size) + (rank < BATCH % size ? rank : BATCH % size);

    /* Every rank builds the same model (same seed) and the optimizer for the global batch. */
    CHECK(bt_config_create(&cfg));
    for (i = 0; opts[i]; i += 2)
        CHECK(bt_config_set(cfg, opts[i], opts[i + 1]));
    CHECK(bt_model_create(&model, cfg));
    CHECK(bt_loss_create(&loss, cfg));
    CHECK(bt_augment_create(&aug, cfg));
    CHECK(bt_optim_create(&opt, cfg));
    CHECK(bt_optim_add_model(opt, model));
    bt_config_free(cfg);
    CHECK(bt_model_set_comm(model, comm)); /* collective */
    CHECK(bt_loss_set_comm(loss, comm));

    vshape[0] = zshape[0] = n;
    vshape[1] = 1;
    vshape[2] = vshape[3] = SIDE;
    zshape[1] = bt_model_embed_dim(model);
    for (i = 0; i < 2; i++) {
        CHECK(bt_tensor_create(&views[i], 4, vshape));
        CHECK(bt_tensor_create(&z[i], 2, zshape));
        CHECK(bt_tensor_create(&dz[i], 2, zshape));
    }
    for (i = 0; i < n; i++) {
        images[i] = pixels[i];
        heights[i] = widths[i] = SIDE;
    }

    for (step = 0; step < steps; step++) {
        double value, all[BATCH];
        for (i = 0; i < n; i++)
            draw(pixels[i], step, first + i);
        CHECK(bt_augment_views_at(aug, first, (int32_t)n, images, heights, widths, NULL,
                                  BT_PIXELS_GRAY, 2, views));
        CHECK(bt_model_zero_grad(model));
        CHECK(bt_model_forward(model, 2, (const bt_tensor *const *)views, z));
        CHECK(bt_loss_forward(loss, z[0], z[1], &value)); /* the global batch's loss */
        CHECK(bt_loss_backward(loss, dz[0], dz[1]));
        CHECK(bt_model_backward(model, 2, (const bt_tensor *const *)dz)); /* global gradient */
        CHECK(bt_optim_step(opt));                                        /* the same everywhere */
        MPI_Gather(&value, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            for (r = 1; r < size && all[r] == value; r++)
                ;
            same &= r == size;
            printf("step %3d  loss %.9g  %s on %d ranks\n", step, value,
                   r == size ? "identical" : "DIFFERENT", size);
        }
    }

    /* The ranks' weights and running statistics are bit for bit the same. */
    sum = checksum(model);
    sums = malloc((size_t)size * sizeof *sums);
    MPI_Gather(&sum, 1, MPI_UINT64_T, sums, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        for (r = 1; r < size && sums[r] == sum; r++)
            ;
        same &= r == size;
        printf("weights %016llx: %s on %d ranks\n", (unsigned long long)sum,
               r == size ? "identical" : "DIFFERENT", size);
        if (argc > 2) /* only rank 0 writes */
            CHECK(bt_checkpoint_save(argv[2], model, opt, aug));
    }
    free(sums);
    for (i = 0; i < 2; i++) {
        bt_tensor_free(views[i]);
        bt_tensor_free(z[i]);
        bt_tensor_free(dz[i]);
    }
    bt_optim_free(opt);
    bt_augment_free(aug);
    bt_loss_free(loss);
    bt_model_free(model);
    barlow_mpi_close(&mp);
    MPI_Finalize();
    return !same;
}
