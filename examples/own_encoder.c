/* own_encoder.c - Barlow Twins with the host's own encoder in front of libbarlow's
 * projector: a model with model.arch "none" takes the host's [N, K] features,
 * and bt_model_input_grad hands back their gradient for the host's backward.
 *
 * "The user's encoder" here is two libbarlow layers, Linear(32, 48) + ReLU, on
 * synthetic 32-d samples; the two views are each sample plus its own noise. It
 * has no BatchNorm, so both views go through it as one batch of 2N rows, and
 * the projector sees each view as its own batch, as Barlow Twins wants.
 *
 *   cc own_encoder.c $(pkg-config --cflags --libs barlow) -o own_encoder
 *   ./own_encoder [steps]
 */
#include <barlow.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 64   /* samples per batch */
#define IN 32  /* a sample */
#define K 48   /* the encoder's features: model.feature_dim */

#define CHECK(call)                                                                                \
    do {                                                                                           \
        bt_status st_ = (call);                                                                    \
        if (st_ != BT_OK) {                                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, bt_status_string(st_),        \
                    bt_last_error());                                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static float uniform(void) /* in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

int main(int argc, char **argv)
{
    const int steps = argc > 1 ? atoi(argv[1]) : 5;
    const int64_t x_shape[2] = {2 * N, IN}, f_shape[2] = {2 * N, K}, view_shape[2] = {N, K};
    bt_config *cfg;
    bt_layer *linear, *relu;
    bt_model *projector;
    bt_loss *loss;
    bt_optim *opt;
    bt_tensor *x, *h, *f, *df, *dh, *fv[2], *dfv[2], *z[2], *dz[2];
    int64_t z_shape[2] = {N, 0};
    char steps_text[16];
    int step, v, i, j;

    if (steps < 1) {
        fprintf(stderr, "usage: own_encoder [steps >= 1]\n");
        return 2;
    }
    CHECK(bt_config_create(&cfg));
    CHECK(bt_config_set(cfg, "model.arch", "none")); /* the projector alone */
    CHECK(bt_config_set(cfg, "model.feature_dim", "48"));
    CHECK(bt_config_set(cfg, "model.projector", "128-128"));
    CHECK(bt_config_set(cfg, "optim.kind", "adamw"));
    CHECK(bt_config_set(cfg, "optim.lr", "0.002"));
    CHECK(bt_config_set(cfg, "optim.batch_size", "256")); /* no batch-size scaling of lr */
    snprintf(steps_text, sizeof steps_text, "%d", steps);
    CHECK(bt_config_set(cfg, "optim.total_steps", steps_text));
    CHECK(bt_config_set(cfg, "optim.warmup_steps", "0"));
    CHECK(bt_model_create(&projector, cfg));
    CHECK(bt_loss_create(&loss, cfg));
    CHECK(bt_optim_create(&opt, cfg));
    bt_config_free(cfg);

    /* the host's encoder: its layers, trained by the same optimizer */
    CHECK(bt_layer_linear_create(&linear, IN, K, 1));
    CHECK(bt_layer_relu_create(&relu));
    CHECK(bt_optim_add_layer(opt, linear));
    CHECK(bt_optim_add_model(opt, projector));

    CHECK(bt_tensor_create(&x, 2, x_shape)); /* rows 0..N-1 view 0, N..2N-1 view 1 */
    CHECK(bt_tensor_create(&h, 2, f_shape));
    CHECK(bt_tensor_create(&f, 2, f_shape));
    CHECK(bt_tensor_create(&df, 2, f_shape));
    CHECK(bt_tensor_create(&dh, 2, f_shape));
    z_shape[1] = bt_model_embed_dim(projector);
    for (v = 0; v < 2; v++) { /* each view's rows of f and df, without a copy */
        CHECK(bt_tensor_wrap(&fv[v], bt_tensor_data(f) + (size_t)v * N * K, 2, view_shape));
        CHECK(bt_tensor_wrap(&dfv[v], bt_tensor_data(df) + (size_t)v * N * K, 2, view_shape));
        CHECK(bt_tensor_create(&z[v], 2, z_shape));
        CHECK(bt_tensor_create(&dz[v], 2, z_shape));
    }

    for (step = 0; step < steps; step++) {
        double value, on, off;
        float *xd = bt_tensor_data(x);
        for (i = 0; i < N; i++) /* a sample, then its two noisy views */
            for (j = 0; j < IN; j++) {
                const float s = uniform();
                xd[i * IN + j] = s + 0.2f * uniform();
                xd[(N + i) * IN + j] = s + 0.2f * uniform();
            }
        CHECK(bt_layer_zero_grad(linear));
        CHECK(bt_model_zero_grad(projector));
        /* forward: the host's encoder, then the projector and the loss */
        CHECK(bt_layer_forward(linear, x, h, 1));
        CHECK(bt_layer_forward(relu, h, f, 1));
        CHECK(bt_model_forward(projector, 2, (const bt_tensor *const *)fv, z));
        CHECK(bt_loss_forward(loss, z[0], z[1], &value));
        /* backward: the loss, the projector, then the features' gradient into the encoder */
        CHECK(bt_loss_backward(loss, dz[0], dz[1]));
        CHECK(bt_model_backward(projector, 2, (const bt_tensor *const *)dz));
        for (v = 0; v < 2; v++)
            CHECK(bt_model_input_grad(projector, v, dfv[v]));
        CHECK(bt_layer_backward(relu, df, dh));
        CHECK(bt_layer_backward(linear, dh, NULL));
        CHECK(bt_optim_step(opt));
        CHECK(bt_loss_terms(loss, &on, &off));
        printf("step %d: loss %.4f (on-diag %.4f, off-diag %.4f)\n", step + 1, value, on, off);
    }

    for (v = 0; v < 2; v++) {
        bt_tensor_free(fv[v]);
        bt_tensor_free(dfv[v]);
        bt_tensor_free(z[v]);
        bt_tensor_free(dz[v]);
    }
    bt_tensor_free(x);
    bt_tensor_free(h);
    bt_tensor_free(f);
    bt_tensor_free(df);
    bt_tensor_free(dh);
    bt_optim_free(opt);
    bt_loss_free(loss);
    bt_model_free(projector);
    bt_layer_free(relu);
    bt_layer_free(linear);
    return 0;
}
