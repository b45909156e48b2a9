/* throughput.c - images/s of a data-parallel training step (make bench-mpi): the
 * Fashion-MNIST preset of `barlow` (ResNet 1-1-1, 16-32-256, projector 2048-2048-2048,
 * 16 px views, global batch 128, LARS) on synthetic 28 x 28 images. Run it as
 * `mpirun -n W throughput THREADS STEPS`; rank 0 prints the median step time over STEPS
 * timed steps (after 3 untimed ones) and the images per second of the global batch. */
#include "mpi_comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 128
#define SIDE 28

static const char *const preset[][2] = {
    {"model.arch", "resnet"},       {"model.block", "basic"},       {"model.blocks", "1-1-1"},
    {"model.widths", "16-32-256"},  {"model.stem", "cifar"},        {"model.in_channels", "1"},
    {"model.projector", "2048-2048-2048"}, {"aug.preset", "fmnist"}, {"aug.size", "16"},
    {"optim.kind", "lars"},         {"optim.batch_size", "128"},    {"optim.lr", "4"},
    {"optim.lr_bias", "0.096"},     {"optim.weight_decay", "1e-5"}, {"loss.lambda", "0.0051"}};

static void die_on(bt_status st, const char *what)
{
    if (st != BT_OK) {
        fprintf(stderr, "throughput: %s: %s\n", what, bt_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rank, size, threads = argc > 1 ? atoi(argv[1]) : 1, steps = argc > 2 ? atoi(argv[2]) : 10;
    int64_t n, first, i, shape_x[4], shape_z[2];
    struct barlow_mpi mp;
    bt_comm *comm;
    bt_config *cfg;
    bt_model *m;
    bt_loss *l;
    bt_augment *a;
    bt_optim *o;
    bt_tensor *x[2], *z[2], *dz[2];
    uint8_t *px;
    const uint8_t **img;
    int32_t *hs, *ws;
    double *t;
    char buf[16];
    int s, v;
    size_t k;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    n = BATCH / size + (rank < BATCH % size);
    first = (int64_t)rank * (BATCH / size) + (rank < BATCH % size ? rank : BATCH % size);
    die_on(bt_config_create(&cfg), "config");
    for (k = 0; k < sizeof preset / sizeof preset[0]; k++)
        die_on(bt_config_set(cfg, preset[k][0], preset[k][1]), preset[k][0]);
    snprintf(buf, sizeof buf, "%d", threads);
    die_on(bt_config_set(cfg, "threads", buf), "threads");
    die_on(bt_model_create(&m, cfg), "model");
    die_on(bt_loss_create(&l, cfg), "loss");
    die_on(bt_augment_create(&a, cfg), "augment");
    die_on(bt_optim_create(&o, cfg), "optim");
    die_on(bt_optim_add_model(o, m), "optim_add_model");
    if (barlow_mpi_open(&mp, MPI_COMM_WORLD, &comm) != 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (size > 1) {
        die_on(bt_model_set_comm(m, comm), "model_set_comm");
        die_on(bt_loss_set_comm(l, comm), "loss_set_comm");
    }
    shape_x[0] = n, shape_x[1] = 1, shape_x[2] = shape_x[3] = bt_augment_output_size(a, 0);
    shape_z[0] = n, shape_z[1] = bt_model_embed_dim(m);
    for (v = 0; v < 2; v++) {
        die_on(bt_tensor_create(&x[v], 4, shape_x), "tensor");
        die_on(bt_tensor_create(&z[v], 2, shape_z), "tensor");
        die_on(bt_tensor_create(&dz[v], 2, shape_z), "tensor");
    }
    px = malloc((size_t)n * SIDE * SIDE);
    img = malloc((size_t)n * sizeof *img);
    hs = malloc((size_t)n * sizeof *hs);
    ws = malloc((size_t)n * sizeof *ws);
    t = malloc((size_t)steps * sizeof *t);
    for (i = 0; i < n; i++) {
        for (k = 0; k < SIDE * SIDE; k++)
            px[i * SIDE * SIDE + (int64_t)k] = (uint8_t)(((first + i) * 131 + (int64_t)k * 7) % 251);
        img[i] = px + i * SIDE * SIDE, hs[i] = ws[i] = SIDE;
    }
    for (s = -3; s < steps; s++) {
        double t0, value;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        die_on(bt_augment_views_at(a, first, (int32_t)n, img, hs, ws, NULL, BT_PIXELS_GRAY, 2, x),
               "views");
        die_on(bt_model_zero_grad(m), "zero_grad");
        die_on(bt_model_forward(m, 2, (const bt_tensor *const *)x, z), "forward");
        die_on(bt_loss_forward(l, z[0], z[1], &value), "loss");
        die_on(bt_loss_backward(l, dz[0], dz[1]), "loss backward");
        die_on(bt_model_backward(m, 2, (const bt_tensor *const *)dz), "backward");
        die_on(bt_optim_step(o), "step");
        MPI_Barrier(MPI_COMM_WORLD);
        if (s >= 0)
            t[s] = MPI_Wtime() - t0;
    }
    qsort(t, (size_t)steps, sizeof *t, by_value);
    if (rank == 0)
        printf("%d rank(s) x %d thread(s): median step %.1f ms, %.0f images/s (global batch %d)\n",
               size, threads, 1e3 * t[steps / 2], BATCH / t[steps / 2], BATCH);
    for (v = 0; v < 2; v++) {
        bt_tensor_free(x[v]);
        bt_tensor_free(z[v]);
        bt_tensor_free(dz[v]);
    }
    free(px), free(img), free(hs), free(ws), free(t);
    bt_optim_free(o), bt_augment_free(a), bt_loss_free(l), bt_model_free(m), bt_config_free(cfg);
    barlow_mpi_close(&mp);
    MPI_Finalize();
    return 0;
}
