/* train_loop.c - a complete Barlow Twins training loop owned by the host program.
 *
 * The data here is synthetic (random shapes drawn into 32x32 grey images) so the
 * program runs anywhere; replace next_batch() with your own data source. Every
 * call is checked: a failing call returns a status and bt_last_error() says why.
 *
 *   cc train_loop.c $(pkg-config --cflags --libs barlow) -o train_loop
 *   ./train_loop [steps]
 */
#include <barlow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 64
#define SIDE 32

#define CHECK(call)                                                                                \
    do {                                                                                           \
        bt_status st_ = (call);                                                                    \
        if (st_ != BT_OK) {                                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, bt_status_string(st_),        \
                    bt_last_error());                                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Your data source: fill `batch` grey images of SIDE x SIDE pixels. */
static void next_batch(uint8_t pixels[BATCH][SIDE * SIDE], unsigned *state)
{
    int n, y, x;
    for (n = 0; n < BATCH; n++) {
        int cx, cy, r, square;
        *state = *state * 1103515245u + 12345u;
        cx = 8 + (int)(*state >> 16) % 16;
        *state = *state * 1103515245u + 12345u;
        cy = 8 + (int)(*state >> 16) % 16;
        r = 3 + (int)(*state >> 8) % 6;
        square = (*state >> 4) & 1;
        for (y = 0; y < SIDE; y++)
            for (x = 0; x < SIDE; x++) {
                int dx = x - cx, dy = y - cy;
                int in = square ? (abs(dx) <= r && abs(dy) <= r) : (dx * dx + dy * dy <= r * r);
                pixels[n][y * SIDE + x] = (uint8_t)(in ? 220 : 30);
            }
    }
}

int main(int argc, char **argv)
{
    static uint8_t pixels[BATCH][SIDE * SIDE];
    const uint8_t *images[BATCH];
    int32_t heights[BATCH], widths[BATCH];
    int steps = argc > 1 ? atoi(argv[1]) : 20, step, i;
    unsigned data_state = 1;
    bt_config *cfg;
    bt_model *model;
    bt_loss *loss;
    bt_augment *aug;
    bt_optim *opt;
    bt_tensor *views[2], *z[2], *dz[2];
    int64_t view_shape[4], z_shape[2];
    char steps_text[32];

    /* 1. Options: a small ResNet for 32x32 grey images, the paper's loss. */
    CHECK(bt_config_create(&cfg));
    CHECK(bt_config_set(cfg, "model.arch", "resnet"));
    CHECK(bt_config_set(cfg, "model.blocks", "1-1-1"));
    CHECK(bt_config_set(cfg, "model.widths", "16-32-64"));
    CHECK(bt_config_set(cfg, "model.stem", "cifar"));
    CHECK(bt_config_set(cfg, "model.in_channels", "1"));
    CHECK(bt_config_set(cfg, "model.projector", "256-256"));
    CHECK(bt_config_set(cfg, "aug.preset", "fmnist"));
    CHECK(bt_config_set(cfg, "aug.size", "32"));
    CHECK(bt_config_set(cfg, "aug.mean", "0.3"));
    CHECK(bt_config_set(cfg, "aug.std", "0.4"));
    CHECK(bt_config_set(cfg, "optim.batch_size", "64"));
    snprintf(steps_text, sizeof steps_text, "%d", steps);
    CHECK(bt_config_set(cfg, "optim.total_steps", steps_text));
    CHECK(bt_config_set(cfg, "optim.warmup_steps", "2"));

    /* 2. Handles. The config can be freed once they exist. */
    CHECK(bt_model_create(&model, cfg));
    CHECK(bt_loss_create(&loss, cfg));
    CHECK(bt_augment_create(&aug, cfg));
    CHECK(bt_optim_create(&opt, cfg));
    CHECK(bt_optim_add_model(opt, model));
    bt_config_free(cfg);

    /* 3. Tensors the host owns: two augmented views, embeddings, their gradients. */
    view_shape[0] = BATCH;
    view_shape[1] = 1;
    view_shape[2] = view_shape[3] = SIDE;
    z_shape[0] = BATCH;
    z_shape[1] = bt_model_embed_dim(model);
    for (i = 0; i < 2; i++) {
        CHECK(bt_tensor_create(&views[i], 4, view_shape));
        CHECK(bt_tensor_create(&z[i], 2, z_shape));
        CHECK(bt_tensor_create(&dz[i], 2, z_shape));
    }
    for (i = 0; i < BATCH; i++) {
        images[i] = pixels[i];
        heights[i] = widths[i] = SIDE;
    }

    /* 4. The loop: augment, forward, loss, backward, step. */
    for (step = 0; step < steps; step++) {
        double value, on, off;
        next_batch(pixels, &data_state);
        CHECK(bt_augment_views(aug, BATCH, images, heights, widths, 1, 2, views));
        CHECK(bt_model_zero_grad(model));
        CHECK(bt_model_forward(model, 2, (const bt_tensor *const *)views, z));
        CHECK(bt_loss_forward(loss, z[0], z[1], &value));
        CHECK(bt_loss_backward(loss, dz[0], dz[1]));
        CHECK(bt_model_backward(model, 2, (const bt_tensor *const *)dz));
        CHECK(bt_optim_step(opt));
        CHECK(bt_loss_terms(loss, &on, &off));
        printf("step %3d  loss %9.3f  on-diag %8.3f  off-diag %9.3f  lr %.4f\n", step, value, on,
               off, bt_optim_lr(opt, 0));
    }

    /* 5. Save everything needed to resume, then release. */
    CHECK(bt_checkpoint_save("train_loop.safetensors", model, opt, aug));
    for (i = 0; i < 2; i++) {
        bt_tensor_free(views[i]);
        bt_tensor_free(z[i]);
        bt_tensor_free(dz[i]);
    }
    bt_optim_free(opt);
    bt_augment_free(aug);
    bt_loss_free(loss);
    bt_model_free(model);
    printf("saved train_loop.safetensors\n");
    return 0;
}
