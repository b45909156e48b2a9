/* trainer.c - the handles and buffers of one Barlow Twins training step, and the
 * step itself: augment two views, forward, loss, backward, optimizer update. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

void trainer_init(struct trainer *t, const bt_config *cfg, int64_t batch, int with_optim)
{
    int64_t S, D, vs[4], zs[2];
    int v;
    memset(t, 0, sizeof *t);
    t->batch = batch;
    if (bt_model_create(&t->m, cfg) != BT_OK || bt_loss_create(&t->loss, cfg) != BT_OK
        || bt_augment_create(&t->aug, cfg) != BT_OK)
        die("%s", bt_last_error());
    if (with_optim && (bt_optim_create(&t->opt, cfg) != BT_OK || bt_optim_add_model(t->opt, t->m) != BT_OK))
        die("%s", bt_last_error());
    S = bt_augment_output_size(t->aug, 0);
    if (S != bt_augment_output_size(t->aug, 1))
        die("aug.view1.size (%lld) and aug.view2.size (%d) differ; the model needs equal views",
            (long long)S, bt_augment_output_size(t->aug, 1));
    D = bt_model_embed_dim(t->m);
    vs[0] = batch;
    vs[1] = cfg_int(cfg, "model.in_channels");
    vs[2] = vs[3] = S;
    zs[0] = batch;
    zs[1] = D;
    for (v = 0; v < 2; v++)
        if (bt_tensor_create(&t->view[v], 4, vs) != BT_OK || bt_tensor_create(&t->z[v], 2, zs) != BT_OK
            || bt_tensor_create(&t->dz[v], 2, zs) != BT_OK)
            fail("%s", bt_last_error());
    t->img = xmalloc((size_t)batch * sizeof *t->img);
    t->h = xmalloc((size_t)batch * sizeof *t->h);
    t->w = xmalloc((size_t)batch * sizeof *t->w);
}

void trainer_free(struct trainer *t)
{
    int v;
    for (v = 0; v < 2; v++) {
        bt_tensor_free(t->view[v]);
        bt_tensor_free(t->z[v]);
        bt_tensor_free(t->dz[v]);
    }
    bt_optim_free(t->opt);
    bt_augment_free(t->aug);
    bt_loss_free(t->loss);
    bt_model_free(t->m);
    free(t->img);
    free(t->h);
    free(t->w);
    memset(t, 0, sizeof *t);
}

bt_status trainer_step(struct trainer *t, const struct dataset *d, const int64_t *idx, double *loss,
                       double *on, double *off)
{
    bt_status st;
    int64_t i;
    for (i = 0; i < t->batch; i++) {
        t->img[i] = d->image[idx[i]];
        t->h[i] = d->height[idx[i]];
        t->w[i] = d->width[idx[i]];
    }
    /* views keyed by the images' index within the global batch: a rank's slice
     * [first, first + batch) gets the views one process makes for it */
    st = bt_augment_views_at(t->aug, t->first, (int32_t)t->batch, t->img, t->h, t->w, NULL,
                             d->channels == 1 ? BT_PIXELS_GRAY : BT_PIXELS_RGB, 2, t->view);
    if (st == BT_OK)
        st = bt_model_zero_grad(t->m);
    if (st == BT_OK)
        st = bt_model_forward(t->m, 2, (const bt_tensor *const *)t->view, t->z);
    if (st == BT_OK)
        st = bt_loss_forward(t->loss, t->z[0], t->z[1], loss);
    if (st == BT_OK)
        st = bt_loss_terms(t->loss, on, off);
    if (st == BT_OK)
        st = bt_loss_backward(t->loss, t->dz[0], t->dz[1]);
    if (st == BT_OK)
        st = bt_model_backward(t->m, 2, (const bt_tensor *const *)t->dz);
    if (st == BT_OK && t->opt)
        st = bt_optim_step(t->opt);
    return st;
}
