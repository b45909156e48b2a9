/* eval.c - frozen-feature evaluation of an encoder beside its baselines (a
 * random-init encoder, raw pixels), loading a checkpoint for it, and `barlow eval`. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "paths.h"
#include "probe.h"

int64_t native_eval_size(const char *kind)
{
    return !strcmp(kind, "fmnist") ? 28 : !strcmp(kind, "cifar10") ? 32 : 0;
}

bt_augment *make_eval_augment(bt_config *cfg, int64_t size)
{
    char old[64], buf[32];
    int was_set = bt_config_is_set(cfg, "aug.view1.size") == 1;
    bt_augment *aug = NULL;
    cfg_get(cfg, "aug.view1.size", old, sizeof old);
    if (size > 0) {
        snprintf(buf, sizeof buf, "%lld", (long long)size);
        cfg_set(cfg, "aug.view1.size", buf, "--eval-size");
    }
    if (bt_augment_create(&aug, cfg) != BT_OK)
        die("%s", bt_last_error());
    if (size > 0 && bt_config_set(cfg, "aug.view1.size", was_set ? old : NULL) != BT_OK)
        fail("%s", bt_last_error());
    return aug;
}

struct scores {
    double lin1, lin5, knn1, knn5;
};

static void eval_one(bt_model *m, bt_augment *aug, const struct dataset *train, const struct dataset *test,
                     int64_t ntr, int64_t nte, const struct args *a, int32_t threads, uint64_t seed,
                     struct scores *s)
{
    struct feats ftr, fte;
    struct probe_opts po;
    char err[PROBE_ERR_CAP];
    int32_t S = bt_augment_output_size(aug, 0);
    if (probe_encode(m, aug, train, ntr, S, &ftr, err) != 0 || probe_encode(m, aug, test, nte, S, &fte, err) != 0)
        fail("%s", err);
    if (probe_knn(&ftr, 0, &fte, 0, train->nclasses, (int32_t)a->knn_k, threads, &s->knn1, &s->knn5, err) != 0)
        fail("%s", err);
    po.epochs = (int32_t)a->probe_epochs;
    po.batch = 256;
    po.lr = a->probe_lr;
    po.wd = 1e-6;
    po.seed = seed;
    po.threads = threads;
    if (probe_linear(&ftr, &fte, train->nclasses, &po, &s->lin1, &s->lin5, err) != 0)
        fail("%s", err);
    feats_free(&ftr);
    feats_free(&fte);
}

void eval_sizes(const struct args *a, const struct dataset *train, const struct dataset *test,
                int64_t *ntr, int64_t *nte)
{
    *ntr = a->eval_train && a->eval_train < train->n ? a->eval_train : train->n;
    *nte = a->eval_test && a->eval_test < test->n ? a->eval_test : test->n;
}

void evaluate(bt_model *m, const bt_config *cfg, bt_augment *aug, const struct dataset *train,
              const struct dataset *test, const struct args *a, FILE *log, int64_t step)
{
    bt_model *rnd = NULL;
    struct scores s[3];
    const char *names[3] = {"Barlow Twins encoder", "random-init encoder", "raw pixels"};
    const char *keys[3] = {"trained", "random", "pixels"};
    int64_t ntr, nte;
    int32_t threads = (int32_t)cfg_int(cfg, "threads"), rows = a->no_baselines ? 1 : 3, r;
    uint64_t seed = (uint64_t)cfg_int(cfg, "seed");
    int top5 = train->nclasses > 5;
    double t0 = now_s();
    if (!train->label || test->n == 0)
        die("evaluation needs a labelled dataset with a test split");
    eval_sizes(a, train, test, &ntr, &nte);
    printf("evaluating: linear probe (%lld epochs, lr %g) and %lld-NN on %lld train / %lld test images, "
           "%d px views\n", (long long)a->probe_epochs, a->probe_lr, (long long)a->knn_k, (long long)ntr,
           (long long)nte, bt_augment_output_size(aug, 0));
    fflush(stdout);
    eval_one(m, aug, train, test, ntr, nte, a, threads, seed, &s[0]);
    if (!a->no_baselines) {
        if (bt_model_create(&rnd, cfg) != BT_OK)
            die("%s", bt_last_error());
        eval_one(rnd, aug, train, test, ntr, nte, a, threads, seed, &s[1]);
        bt_model_free(rnd);
        eval_one(NULL, aug, train, test, ntr, nte, a, threads, seed, &s[2]);
    }
    printf("\n%-22s %12s%s %10s%s\n", "", "linear top-1", top5 ? "   top-5" : "", "kNN top-1",
           top5 ? "   top-5" : "");
    for (r = 0; r < rows; r++) {
        printf("%-22s %11.2f%%", names[r], 100 * s[r].lin1);
        if (top5)
            printf(" %7.2f%%", 100 * s[r].lin5);
        printf(" %9.2f%%", 100 * s[r].knn1);
        if (top5)
            printf(" %7.2f%%", 100 * s[r].knn5);
        printf("\n");
    }
    printf("(evaluation took %.0f s)\n", now_s() - t0);
    fflush(stdout);
    if (log) {
        fprintf(log, "{\"event\":\"eval\",\"step\":%lld,\"train\":%lld,\"test\":%lld", (long long)step,
                (long long)ntr, (long long)nte);
        for (r = 0; r < rows; r++)
            fprintf(log, ",\"%s\":{\"linear_top1\":%.6f,\"linear_top5\":%.6f,\"knn_top1\":%.6f,\"knn_top5\":%.6f}",
                    keys[r], s[r].lin1, s[r].lin5, s[r].knn1, s[r].knn5);
        fprintf(log, "}\n");
        fflush(log);
    }
}

bt_model *load_for_eval(const struct args *a, bt_config **cfg_out, char *kind, size_t kcap, char *data,
                        size_t dcap, int64_t *limit, int64_t *eval_size)
{
    char dir[PATH_CAP], p[PATH_CAP + 32], buf[64];
    struct run r;
    bt_config *cfg = NULL;
    bt_model *m = NULL;
    int have_run;
    if (!path_exists(a->checkpoint))
        die("%s: no such checkpoint", a->checkpoint);
    path_dir(a->checkpoint, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/run.txt", dir);
    have_run = run_read(&r, p);
    snprintf(data, dcap, "%s", a->data ? a->data : have_run ? r.data : DEFAULT_FMNIST);
    snprintf(kind, kcap, "%s", a->dataset ? a->dataset : have_run && !a->data ? r.dataset : data_guess_kind(data));
    *limit = a->limit;
    *eval_size = a->eval_size ? a->eval_size : have_run ? r.eval_size : native_eval_size(kind);
    if (bt_config_create(&cfg) != BT_OK)
        fail("%s", bt_last_error());
    cfg_apply_preset(cfg, kind);
    /* the model the file describes, then the run's config.txt where it is kept:
     * a file of an older libbarlow needs the latter */
    snprintf(p, sizeof p, "%s/config.txt", dir);
    if (bt_config_read_checkpoint(cfg, a->checkpoint) != BT_OK && !path_exists(p) && !a->config)
        die("%s (and no config.txt beside it; name one with --config)", bt_last_error());
    if (path_exists(p))
        cfg_load_file(cfg, p);
    if (a->config)
        cfg_load_file(cfg, a->config);
    cfg_apply_sets(cfg, a);
    if (a->has_threads) {
        snprintf(buf, sizeof buf, "%lld", (long long)a->threads);
        cfg_set(cfg, "threads", buf, "--threads");
    }
    if (bt_model_create(&m, cfg) != BT_OK)
        die("%s", bt_last_error());
    if (bt_checkpoint_load(a->checkpoint, m, NULL, NULL) != BT_OK)
        die_checkpoint(a->checkpoint);
    *cfg_out = cfg;
    return m;
}

int cmd_eval(const struct args *a)
{
    char kind[32], data[PATH_CAP];
    int64_t limit, eval_size;
    bt_config *cfg;
    bt_model *m = load_for_eval(a, &cfg, kind, sizeof kind, data, sizeof data, &limit, &eval_size);
    bt_augment *aug = make_eval_augment(cfg, eval_size);
    struct dataset train, test;
    int32_t ch = (int32_t)cfg_int(cfg, "model.in_channels");
    load_split(&train, kind, data, 0, ch, limit);
    load_split(&test, kind, data, 1, ch, limit);
    printf("checkpoint %s on %s (%s)\n", a->checkpoint, kind, data);
    evaluate(m, cfg, aug, &train, &test, a, NULL, -1);
    bt_augment_free(aug);
    data_free(&train);
    data_free(&test);
    bt_model_free(m);
    bt_config_free(cfg);
    return 0;
}
