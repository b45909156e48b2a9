/* probe.h - frozen-feature evaluation of the `barlow` command: encoding a
 * dataset, weighted kNN and the linear probe.
 *
 * Everything runs through libbarlow's public API: the encoder is
 * bt_model_encode (eval mode), the GEMMs of kNN and of the probe are
 * bt_layer_linear forwards, the probe trains with bt_optim (SGD) and
 * bt_xent (softmax cross-entropy).
 *
 * kNN (as InstDisc / DINO's eval_knn): features L2-normalised, cosine
 * similarity to every bank feature, the k = 20 most similar vote for their
 * class with weight exp(sim / 0.07); top-1 / top-5 from the class scores.
 *
 * Linear probe (evaluate.py's protocol scaled to small data): a Linear layer
 * (weight N(0, 0.01), bias 0) on the frozen eval-mode features, softmax
 * cross-entropy, SGD with momentum 0.9 and weight decay, cosine schedule to 0
 * over all steps, mini-batches of 256. Instead of re-encoding augmented
 * images every epoch, the features are computed once (centre view) and the
 * probe runs many cheap epochs over the cache; features are standardised
 * with the training set's per-dimension mean and standard deviation (which
 * makes one learning rate fit every encoder and raw pixels alike). The number
 * reported is the test accuracy after the last epoch (evaluate.py reports
 * the best epoch, which selects on the test set). */
#ifndef BARLOW_PROBE_H
#define BARLOW_PROBE_H

#include <barlow.h>
#include <stdint.h>

#include "data.h"

#define PROBE_ERR_CAP DATA_ERR_CAP

/* Features of a dataset: n rows of dim floats, with the dataset's labels (borrowed). */
struct feats {
    int64_t n, dim;
    float *x;
    const int32_t *label;
};

/* Free the rows and zero *f; a zeroed struct is fine. */
void feats_free(struct feats *f);

/* A permutation of 0..n-1 that depends only on (seed, stream, epoch). */
void probe_permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t stream, uint64_t epoch);

/* Encode the first n images of d: with a model, eval-mode backbone features
 * (bt_model_encode) of the centre view (bt_augment_eval of `aug`, size S);
 * with m NULL, the raw pixels: the images themselves when they share one
 * size, else the normalised centre view. Returns 0, or -1 with the message in
 * err (PROBE_ERR_CAP bytes). */
int probe_encode(bt_model *m, bt_augment *aug, const struct dataset *d, int64_t n, int32_t size,
                 struct feats *out, char *err);

/* Top-1 and top-5 accuracy (fractions) of weighted kNN: `query` rows voted by
 * the k most cosine-similar `bank` rows. nq or nb may be capped (0 = all). */
int probe_knn(const struct feats *bank, int64_t nb, const struct feats *query, int64_t nq,
              int32_t nclasses, int32_t k, int32_t threads, double *top1, double *top5, char *err);

struct probe_opts {
    int32_t epochs;   /* passes over the cached training features */
    int32_t batch;    /* mini-batch size */
    double lr;        /* peak rate for batch 256 (scaled by batch/256, as optim.lr) */
    double wd;        /* weight decay of the weight */
    uint64_t seed;
    int32_t threads;
};

/* Train a linear classifier on `train` features, report top-1 / top-5 on `test`. */
int probe_linear(const struct feats *train, const struct feats *test, int32_t nclasses,
                 const struct probe_opts *po, double *top1, double *top5, char *err);

#endif
