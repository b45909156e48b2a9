/* finetune.c - `barlow finetune`: the semi-supervised protocol of the official
 * evaluate.py (--weights finetune) at the scale of this command's datasets.
 *
 * A class-balanced subset of the training split (--train-percent of every
 * class, chosen by --subset-seed alone, so a Barlow Twins checkpoint and a
 * --from-scratch run see the same images) trains the whole encoder in
 * training mode (bt_model_forward_backbone / bt_model_backward_backbone) with
 * a linear head (a bt_layer linear, weight N(0, 0.01), bias 0) and softmax
 * cross-entropy (bt_xent). Two SGD optimizers (momentum 0.9): the backbone at
 * --lr-backbone, the head at --lr-classifier, both per 256 images (scaled by
 * batch/256 as optim.lr is), weight decay --weight-decay on every parameter
 * (biases and BatchNorm included, as evaluate.py), a cosine schedule to 0
 * over the run (per step; evaluate.py steps it per epoch). Training views are
 * RandomResizedCrop + horizontal flip only, at the evaluation size. After
 * every epoch the test split is encoded in eval mode (bt_model_encode, the
 * centre view) and classified by the head: top-1 and top-5, and at the end
 * the best epoch's and the last epoch's numbers, as evaluate.py reports. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paths.h"
#include "probe.h"

/* splitmix64 and Box-Muller for the head's N(0, 0.01) weights. */
static uint64_t ft_mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double ft_gauss(uint64_t *s)
{
    double u1 = ((double)(ft_mix(s) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (double)(ft_mix(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* The class-balanced subset: of every class c with n_c training images, the
 * first round(n_c * percent / 100) (at least 1) of a permutation that depends
 * on subset_seed only. Returns the number chosen; idx (train->n entries) holds
 * them in ascending order, count[c] the number per class. */
static int64_t choose_subset(const struct dataset *train, double percent, uint64_t subset_seed, int64_t *idx,
                             int64_t *count)
{
    int64_t *perm = xmalloc((size_t)train->n * sizeof *perm), *quota, i, n = 0;
    char *take = xmalloc((size_t)train->n);
    int32_t c;
    quota = xmalloc((size_t)train->nclasses * sizeof *quota);
    for (c = 0; c < train->nclasses; c++)
        quota[c] = count[c] = 0;
    for (i = 0; i < train->n; i++)
        quota[train->label[i]]++;
    for (c = 0; c < train->nclasses; c++) {
        int64_t q = (int64_t)floor((double)quota[c] * percent / 100.0 + 0.5);
        quota[c] = quota[c] == 0 ? 0 : q < 1 ? 1 : q;
    }
    probe_permutation(perm, train->n, subset_seed, 3, 0);
    memset(take, 0, (size_t)train->n);
    for (i = 0; i < train->n; i++) {
        int32_t y = train->label[perm[i]];
        if (count[y] < quota[y]) {
            count[y]++;
            take[perm[i]] = 1;
        }
    }
    for (i = 0; i < train->n; i++)
        if (take[i])
            idx[n++] = i;
    free(perm);
    free(take);
    free(quota);
    return n;
}

/* A backbone optimizer or the head's: SGD, momentum 0.9, decay on every
 * tensor, cosine to 0 over total steps, no warm-up. */
static bt_optim *make_sgd(const bt_config *base, double lr, double wd, int64_t batch, int64_t total)
{
    bt_config *c = NULL;
    bt_optim *o = NULL;
    char buf[64];
    if (bt_config_create(&c) != BT_OK)
        fail("%s", bt_last_error());
    cfg_get(base, "threads", buf, sizeof buf);
    cfg_set(c, "threads", buf, "threads");
    cfg_get(base, "cpu.level", buf, sizeof buf);
    cfg_set(c, "cpu.level", buf, "cpu.level");
    cfg_set(c, "optim.kind", "sgd", NULL);
    snprintf(buf, sizeof buf, "%.17g", lr);
    cfg_set(c, "optim.lr", buf, "learning rate");
    cfg_set(c, "optim.lr_bias", buf, "learning rate");
    cfg_set(c, "optim.momentum", "0.9", NULL);
    snprintf(buf, sizeof buf, "%.17g", wd);
    cfg_set(c, "optim.weight_decay", buf, "--weight-decay");
    cfg_set(c, "optim.exclude_bias_bn", "0", NULL);
    cfg_set(c, "optim.schedule", "cosine", NULL);
    cfg_set(c, "optim.warmup_steps", "0", NULL);
    cfg_set(c, "optim.final_lr_ratio", "0", NULL);
    snprintf(buf, sizeof buf, "%lld", (long long)batch);
    cfg_set(c, "optim.batch_size", buf, "--batch");
    snprintf(buf, sizeof buf, "%lld", (long long)total);
    cfg_set(c, "optim.total_steps", buf, "schedule");
    if (bt_optim_create(&o, c) != BT_OK)
        die("%s", bt_last_error());
    bt_config_free(c);
    return o;
}

/* Top-1 and top-5 hits of the head on the test features, in chunks of B rows. */
static void test_accuracy(bt_layer *head, bt_xent *xent, const struct feats *f, int32_t K, double *top1,
                          double *top5)
{
    const int64_t B = 256;
    int64_t i, hit1 = 0, hit5 = 0;
    for (i = 0; i < f->n; i += B) {
        int64_t c = f->n - i < B ? f->n - i : B, xs[2] = {c, f->dim}, ls[2] = {c, K}, t1 = 0, t5 = 0;
        bt_tensor *x = NULL, *l = NULL;
        bt_status st = bt_tensor_wrap(&x, f->x + i * f->dim, 2, xs);
        if (st == BT_OK)
            st = bt_tensor_create(&l, 2, ls);
        if (st == BT_OK)
            st = bt_layer_forward(head, x, l, 0);
        if (st == BT_OK)
            st = bt_xent_forward(xent, l, f->label + i, NULL, &t1, &t5);
        bt_tensor_free(x);
        bt_tensor_free(l);
        if (st != BT_OK)
            fail("test accuracy: %s", bt_last_error());
        hit1 += t1;
        hit5 += t5;
    }
    *top1 = (double)hit1 / (double)f->n;
    *top5 = (double)hit5 / (double)f->n;
}

/* The head as a safetensors file in torchvision's names (fc.weight [K, D], fc.bias [K]). */
static void save_head(const char *path, bt_layer *head, int64_t K, int64_t D)
{
    char tmp[PATH_CAP + 32], hdr[512];
    bt_tensor *w = NULL, *b = NULL;
    FILE *f;
    size_t n, pad;
    uint64_t len;
    if (bt_layer_tensor(head, 0, NULL, &w, NULL) != BT_OK || bt_layer_tensor(head, 1, NULL, &b, NULL) != BT_OK)
        fail("%s", bt_last_error());
    n = (size_t)snprintf(hdr, sizeof hdr,
                         "{\"__metadata__\":{\"format\":\"pt\"},\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[%lld],"
                         "\"data_offsets\":[0,%lld]},\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],"
                         "\"data_offsets\":[%lld,%lld]}}",
                         (long long)K, (long long)(4 * K), (long long)K, (long long)D, (long long)(4 * K),
                         (long long)(4 * K + 4 * K * D));
    pad = (8 - n % 8) % 8;
    len = n + pad;
    f = atomic_open(path, tmp, sizeof tmp);
    fwrite(&len, 8, 1, f); /* little-endian hosts only, as the library's checkpoints */
    fwrite(hdr, 1, n, f);
    fwrite("        ", 1, pad, f);
    fwrite(bt_tensor_data(b), 4, (size_t)K, f);
    fwrite(bt_tensor_data(w), 4, (size_t)(K * D), f);
    atomic_close(f, tmp, path);
}

/* The model options without a checkpoint (--from-scratch): the dataset's
 * preset, --config, --set, --threads. */
static bt_model *scratch_model(const struct args *a, bt_config **cfg_out, char *kind, size_t kcap, char *data,
                               size_t dcap, int64_t *eval_size)
{
    bt_config *cfg = NULL;
    bt_model *m = NULL;
    char buf[64];
    snprintf(data, dcap, "%s", a->data ? a->data : DEFAULT_FMNIST);
    snprintf(kind, kcap, "%s", a->dataset ? a->dataset : data_guess_kind(data));
    *eval_size = a->eval_size ? a->eval_size : native_eval_size(kind);
    if (bt_config_create(&cfg) != BT_OK)
        fail("%s", bt_last_error());
    cfg_apply_preset(cfg, kind);
    if (a->config)
        cfg_load_file(cfg, a->config);
    cfg_apply_sets(cfg, a);
    if (a->has_threads) {
        snprintf(buf, sizeof buf, "%lld", (long long)a->threads);
        cfg_set(cfg, "threads", buf, "--threads");
    }
    if (a->has_seed) {
        snprintf(buf, sizeof buf, "%lld", (long long)a->seed);
        cfg_set(cfg, "seed", buf, "--seed");
    }
    if (bt_model_create(&m, cfg) != BT_OK)
        die("%s", bt_last_error());
    *cfg_out = cfg;
    return m;
}

int cmd_finetune(const struct args *a)
{
    char kind[32], data[PATH_CAP], buf[64], ckpt[PATH_CAP + 32], headp[PATH_CAP + 32], cfgp[PATH_CAP + 32];
    char runp[PATH_CAP + 32], logp[PATH_CAP + 32];
    int64_t limit = a->limit, eval_size, *subset, *count, nsub, B, spe, epochs = a->epochs ? a->epochs : 20;
    int64_t e, s, i, D, vs[4], fs[2], ls[2], best_epoch = 0;
    int32_t K, ch, threads, nt, S;
    bt_config *cfg;
    bt_model *m;
    bt_augment *aug = NULL;
    bt_layer *head = NULL;
    bt_xent *xent = NULL;
    bt_optim *ob, *oh;
    bt_tensor *view = NULL, *feat = NULL, *dfeat = NULL, *logits = NULL, *dlogits = NULL, *w, *bias;
    struct dataset train, test;
    struct feats ft;
    const uint8_t **img;
    int32_t *hh, *ww, *yb;
    int64_t *perm;
    FILE *log = NULL;
    double best1 = -1, best5 = 0, last1 = 0, last5 = 0, t_start = now_s();
    uint64_t seed, gs, subset_hash = 0xCBF29CE484222325ull;
    char err[PROBE_ERR_CAP];

    if (a->checkpoint) {
        m = load_for_eval(a, &cfg, kind, sizeof kind, data, sizeof data, &limit, &eval_size);
        if (a->has_seed) {
            snprintf(buf, sizeof buf, "%lld", (long long)a->seed);
            cfg_set(cfg, "seed", buf, "--seed");
        }
        if (a->from_scratch) { /* the checkpoint's network, from the initialisation its seed gives */
            bt_model_free(m);
            if (bt_model_create(&m, cfg) != BT_OK)
                die("%s", bt_last_error());
        }
    } else {
        m = scratch_model(a, &cfg, kind, sizeof kind, data, sizeof data, &eval_size);
    }
    /* training views: RandomResizedCrop + flip at the evaluation size; no colour, blur or solarize */
    if (eval_size > 0) {
        snprintf(buf, sizeof buf, "%lld", (long long)eval_size);
        cfg_set(cfg, "aug.view1.size", buf, "--eval-size");
    }
    cfg_set(cfg, "aug.view1.jitter_p", "0", NULL);
    cfg_set(cfg, "aug.view1.gray_p", "0", NULL);
    cfg_set(cfg, "aug.view1.blur_p", "0", NULL);
    cfg_set(cfg, "aug.view1.solarize_p", "0", NULL);
    if (bt_augment_create(&aug, cfg) != BT_OK)
        die("%s", bt_last_error());
    S = bt_augment_output_size(aug, 0);
    threads = (int32_t)cfg_int(cfg, "threads");
    seed = (uint64_t)cfg_int(cfg, "seed");
    ch = (int32_t)cfg_int(cfg, "model.in_channels");

    load_split(&train, kind, data, 0, ch, limit);
    load_split(&test, kind, data, 1, ch, limit);
    if (!train.label || test.n == 0)
        die("finetune needs a labelled dataset with a test split (%s has none)", data);
    K = train.nclasses;
    subset = xmalloc((size_t)train.n * sizeof *subset);
    count = xmalloc((size_t)K * sizeof *count);
    nsub = choose_subset(&train, a->train_percent, (uint64_t)a->subset_seed, subset, count);
    for (i = 0; i < nsub; i++) /* FNV-1a of the chosen indices: which images, in one number */
        subset_hash = (subset_hash ^ (uint64_t)subset[i]) * 0x100000001B3ull;
    B = a->batch ? a->batch : 256;
    if (B > nsub)
        B = nsub;
    if (B < 2)
        die("--train-percent %g leaves %lld training image(s); fine-tuning needs a batch of 2 or more",
            a->train_percent, (long long)nsub);
    spe = nsub / B; /* the rest of an epoch's shuffled subset waits for the next epoch (drop_last) */
    D = bt_model_feature_dim(m);

    ob = make_sgd(cfg, a->lr_backbone, a->weight_decay, B, epochs * spe);
    oh = make_sgd(cfg, a->lr_classifier, a->weight_decay, B, epochs * spe);
    nt = bt_model_tensor_count(m);
    for (i = 0; i < nt; i++) { /* the backbone's parameters only: the projector does not run */
        const char *name;
        bt_tensor *v, *g;
        if (bt_model_tensor(m, (int32_t)i, &name, &v, &g) != BT_OK)
            fail("%s", bt_last_error());
        if (g && !strncmp(name, "backbone.", 9) && bt_optim_add_tensor(ob, v, g, name) != BT_OK)
            fail("%s", bt_last_error());
    }
    if (bt_layer_linear_create(&head, (int32_t)D, K, 1) != BT_OK || bt_layer_set_threads(head, threads) != BT_OK
        || bt_layer_tensor(head, 0, NULL, &w, NULL) != BT_OK || bt_layer_tensor(head, 1, NULL, &bias, NULL) != BT_OK
        || bt_optim_add_layer(oh, head) != BT_OK || bt_xent_create(&xent, cfg) != BT_OK)
        fail("%s", bt_last_error());
    gs = seed ^ 0xF17E7u;
    for (i = 0; i < bt_tensor_numel(w); i++) /* evaluate.py: fc.weight ~ N(0, 0.01), fc.bias = 0 */
        bt_tensor_data(w)[i] = (float)(0.01 * ft_gauss(&gs));
    memset(bt_tensor_data(bias), 0, (size_t)K * sizeof(float));
    vs[0] = B;
    vs[1] = ch;
    vs[2] = vs[3] = S;
    fs[0] = B;
    fs[1] = D;
    ls[0] = B;
    ls[1] = K;
    if (bt_tensor_create(&view, 4, vs) != BT_OK || bt_tensor_create(&feat, 2, fs) != BT_OK
        || bt_tensor_create(&dfeat, 2, fs) != BT_OK || bt_tensor_create(&logits, 2, ls) != BT_OK
        || bt_tensor_create(&dlogits, 2, ls) != BT_OK)
        fail("%s", bt_last_error());
    img = xmalloc((size_t)B * sizeof *img);
    hh = xmalloc((size_t)B * sizeof *hh);
    ww = xmalloc((size_t)B * sizeof *ww);
    yb = xmalloc((size_t)B * sizeof *yb);
    perm = xmalloc((size_t)nsub * sizeof *perm);

    if (a->out) {
        snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", a->out);
        snprintf(headp, sizeof headp, "%s/classifier.safetensors", a->out);
        snprintf(cfgp, sizeof cfgp, "%s/config.txt", a->out);
        snprintf(runp, sizeof runp, "%s/run.txt", a->out);
        snprintf(logp, sizeof logp, "%s/log.jsonl", a->out);
        if (path_exists(ckpt))
            die("%s exists: choose another --out", ckpt);
        mkdirs(a->out);
        log = fopen(logp, "w");
        if (!log)
            fail("%s: cannot write: %s", logp, strerror(errno));
    }
    printf("fine-tuning %s on %s: %s, %lld of %lld training images (%g %% of each class, subset seed %lld), "
           "batch %lld, %lld epochs of %lld steps, %d px views, lr backbone %g / head %g (per 256 images), "
           "weight decay %g, %lld test images\n",
           a->from_scratch ? "from scratch" : a->checkpoint, kind,
           a->from_scratch ? "random init" : "Barlow Twins weights", (long long)nsub, (long long)train.n,
           a->train_percent, (long long)a->subset_seed, (long long)B, (long long)epochs, (long long)spe, S,
           a->lr_backbone, a->lr_classifier, a->weight_decay, (long long)test.n);
    printf("subset per class:");
    for (i = 0; i < K; i++)
        printf(" %lld", (long long)count[i]);
    printf(" (images hash %016llx)\n", (unsigned long long)subset_hash);
    fflush(stdout);
    if (log) {
        fprintf(log, "{\"event\":\"start\",\"version\":\"%s\",\"dataset\":\"%s\",\"init\":\"%s\",\"train_percent\":%g,"
                     "\"subset_seed\":%lld,\"subset\":%lld,\"train\":%lld,\"test\":%lld,\"batch\":%lld,"
                     "\"epochs\":%lld,\"steps_per_epoch\":%lld,\"lr_backbone\":%g,\"lr_classifier\":%g,"
                     "\"weight_decay\":%g,\"threads\":%d,\"seed\":%llu}\n",
                bt_version_string(), kind, a->from_scratch ? "scratch" : "checkpoint", a->train_percent,
                (long long)a->subset_seed, (long long)nsub, (long long)train.n, (long long)test.n, (long long)B,
                (long long)epochs, (long long)spe, a->lr_backbone, a->lr_classifier, a->weight_decay, threads,
                (unsigned long long)seed);
        fprintf(log, "{\"event\":\"subset\",\"count\":%lld,\"per_class\":[", (long long)nsub);
        for (i = 0; i < K; i++)
            fprintf(log, "%s%lld", i ? "," : "", (long long)count[i]);
        fprintf(log, "],\"hash\":\"%016llx\"}\n", (unsigned long long)subset_hash);
        fflush(log);
    }

    for (e = 0; e < epochs; e++) {
        double t0 = now_s(), loss_sum = 0, lr = bt_optim_lr(ob, 0);
        int64_t hits = 0;
        probe_permutation(perm, nsub, seed, 4, (uint64_t)e);
        for (s = 0; s < spe; s++) {
            double loss;
            int64_t t1 = 0;
            bt_status st;
            for (i = 0; i < B; i++) {
                int64_t r = subset[perm[s * B + i]];
                img[i] = train.image[r];
                hh[i] = train.height[r];
                ww[i] = train.width[r];
                yb[i] = train.label[r];
            }
            st = bt_augment_views(aug, (int32_t)B, img, hh, ww, ch, 1, &view);
            if (st == BT_OK)
                st = bt_model_zero_grad(m);
            if (st == BT_OK)
                st = bt_layer_zero_grad(head);
            if (st == BT_OK)
                st = bt_model_forward_backbone(m, 1, (const bt_tensor *const *)&view, &feat);
            if (st == BT_OK)
                st = bt_layer_forward(head, feat, logits, 1);
            if (st == BT_OK)
                st = bt_xent_forward(xent, logits, yb, &loss, &t1, NULL);
            if (st == BT_OK)
                st = bt_xent_backward(xent, dlogits);
            if (st == BT_OK)
                st = bt_layer_backward(head, dlogits, dfeat);
            if (st == BT_OK)
                st = bt_model_backward_backbone(m, 1, (const bt_tensor *const *)&dfeat, NULL);
            if (st == BT_OK)
                st = bt_optim_step(ob);
            if (st == BT_OK)
                st = bt_optim_step(oh);
            if (st == BT_OK && !isfinite(loss))
                fail("fine-tuning diverged at epoch %lld, step %lld: the loss is %g; try smaller learning rates",
                     (long long)e + 1, (long long)s + 1, loss);
            if (st != BT_OK)
                fail("%s at epoch %lld, step %lld: %s", st == BT_E_NUMERIC ? "fine-tuning diverged" : "fine-tuning",
                     (long long)e + 1, (long long)s + 1, bt_last_error());
            loss_sum += loss;
            hits += t1;
        }
        if (probe_encode(m, aug, &test, test.n, S, &ft, err) != 0)
            fail("%s", err);
        test_accuracy(head, xent, &ft, K, &last1, &last5);
        feats_free(&ft);
        if (last1 > best1) {
            best1 = last1;
            best5 = last5;
            best_epoch = e + 1;
        }
        printf("epoch %lld/%lld: loss %.4f, train top-1 %.2f%%, test top-1 %.2f%% top-5 %.2f%% (best %.2f%%), "
               "%.0f s\n", (long long)e + 1, (long long)epochs, loss_sum / (double)spe,
               100.0 * (double)hits / (double)(spe * B), 100 * last1, 100 * last5, 100 * best1, now_s() - t0);
        fflush(stdout);
        if (log) {
            fprintf(log, "{\"event\":\"epoch\",\"epoch\":%lld,\"loss_mean\":%.9g,\"lr_backbone\":%.9g,"
                         "\"train_top1\":%.6f,\"test_top1\":%.6f,\"test_top5\":%.6f,\"seconds\":%.3f}\n",
                    (long long)e + 1, loss_sum / (double)spe, lr, (double)hits / (double)(spe * B), last1,
                    last5, now_s() - t0);
            fflush(log);
        }
    }
    printf("fine-tuning done: best top-1 %.2f%% (top-5 %.2f%%) at epoch %lld, last top-1 %.2f%% (top-5 %.2f%%), "
           "%.0f s\n", 100 * best1, 100 * best5, (long long)best_epoch, 100 * last1, 100 * last5, now_s() - t_start);
    if (log) {
        struct run r;
        fprintf(log, "{\"event\":\"done\",\"best_top1\":%.6f,\"best_top5\":%.6f,\"best_epoch\":%lld,"
                     "\"last_top1\":%.6f,\"last_top5\":%.6f}\n", best1, best5, (long long)best_epoch, last1, last5);
        fclose(log);
        if (bt_checkpoint_save(ckpt, m, NULL, NULL) != BT_OK)
            fail("saving %s: %s", ckpt, bt_last_error());
        save_head(headp, head, K, D);
        cfg_write_file(cfg, cfgp);
        memset(&r, 0, sizeof r);
        snprintf(r.dataset, sizeof r.dataset, "%s", kind);
        snprintf(r.data, sizeof r.data, "%s", data);
        r.limit = limit;
        r.batch = B;
        r.total_steps = epochs * spe;
        r.steps_per_epoch = spe;
        r.eval_size = eval_size;
        run_write(&r, runp);
        printf("fine-tuned encoder %s, classifier %s, log %s\n", ckpt, headp, logp);
    }
    fflush(stdout);
    free(img);
    free(hh);
    free(ww);
    free(yb);
    free(perm);
    free(subset);
    free(count);
    bt_tensor_free(view);
    bt_tensor_free(feat);
    bt_tensor_free(dfeat);
    bt_tensor_free(logits);
    bt_tensor_free(dlogits);
    bt_optim_free(ob);
    bt_optim_free(oh);
    bt_xent_free(xent);
    bt_layer_free(head);
    bt_augment_free(aug);
    bt_model_free(m);
    bt_config_free(cfg);
    data_free(&train);
    data_free(&test);
    return 0;
}
