/* pretrain.c - `barlow pretrain`: a run folder (checkpoint saved every epoch and
 * on Ctrl-C, config.txt, run.txt, log.jsonl, pictures), the schedule fitted to
 * --minutes, exact --resume, per-epoch kNN and the final evaluation. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"
#include "probe.h"

#define CALIBRATE_STEPS 6

/* A sustained run's step rate over the timed one's: the timed steps run in a
 * short burst, and over minutes of load both cores slow down (measured,
 * Fashion-MNIST preset: 0.283 s per step timed, 0.30 over a run). */
#define SUSTAINED_RATE 0.93

/* Seconds per training step and per encoded image, measured on throwaway
 * copies of the handles (the run's own model is not touched). The steps are
 * whole ones, optimizer included, on different images each: measured, a
 * calibration without the optimizer step on one repeated batch predicted
 * 0.228 s per step for a run that then took 0.31. */
static double calibrate(const bt_config *cfg, const struct dataset *d, int64_t batch, double *enc_per_image)
{
    struct trainer t;
    int64_t *idx = xmalloc((size_t)batch * sizeof *idx), i, n = d->n < 256 ? d->n : 256;
    double l, on, off, t0 = 0, per_step;
    struct feats f;
    char err[PROBE_ERR_CAP];
    int k;
    trainer_init(&t, cfg, batch, 1);
    for (k = 0; k < CALIBRATE_STEPS + 1; k++) {
        if (k == 1)
            t0 = now_s(); /* the first step sizes the buffers */
        for (i = 0; i < batch; i++)
            idx[i] = (k * batch + i) % d->n;
        if (trainer_step(&t, d, idx, &l, &on, &off) != BT_OK)
            die("%s", bt_last_error());
    }
    per_step = (now_s() - t0) / CALIBRATE_STEPS;
    t0 = now_s();
    if (probe_encode(t.m, t.aug, d, n, bt_augment_output_size(t.aug, 0), &f, err) != 0)
        die("%s", err);
    *enc_per_image = (now_s() - t0) / (double)n;
    feats_free(&f);
    trainer_free(&t);
    free(idx);
    return per_step;
}

/* The "step" number of a log record, or -1. */
static int64_t log_step_of(const char *line)
{
    const char *s = strstr(line, "\"step\":");
    return s ? strtoll(s + 7, NULL, 10) : -1;
}

/* The number after "key": in a log record, or `none`. */
static double log_number(const char *line, const char *key, double none)
{
    const char *v = strstr(line, key);
    return v ? strtod(v + strlen(key), NULL) : none;
}

/* Keep the records up to step `upto` (a crash may have logged steps after the
 * checkpoint), and recover the losses per step (cap of them; the logged
 * off-diagonal term times lambda) and the kNN per epoch (ecap) from them. */
static void log_rewind(const char *path, int64_t upto, struct history *h, int64_t cap, int64_t ecap,
                       double lambda)
{
    FILE *in = fopen(path, "r"), *out;
    char tmp[PATH_CAP + 32], *line = NULL;
    size_t lcap = 0;
    if (!in)
        return;
    out = atomic_open(path, tmp, sizeof tmp);
    while (getline(&line, &lcap, in) > 0) {
        int64_t s = log_step_of(line);
        if (s > upto)
            continue;
        fputs(line, out);
        if (strstr(line, "\"event\":\"step\"") && s >= 1 && s <= cap) {
            h->loss[s - 1] = log_number(line, "\"loss\":", 0);
            h->on[s - 1] = log_number(line, "\"on_diag\":", 0);
            h->off[s - 1] = lambda * log_number(line, "\"off_diag\":", 0);
        } else if (strstr(line, "\"event\":\"epoch\"")) {
            const int64_t e = (int64_t)log_number(line, "\"epoch\":", 0);
            if (e >= 1 && e <= ecap)
                h->knn[e - 1] = log_number(line, "\"knn_top1\":", -1);
        }
    }
    free(line);
    fclose(in);
    atomic_close(out, tmp, path);
}

static volatile sig_atomic_t g_interrupted = 0;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once (the last checkpoint stays intact) */
}

/* The run folder's pictures (titled by the folder):
 * loss.png, correlation.png and, with kNN numbers, knn.png. */
struct pictures {
    const char *out, *loss, *corr, *knn;
};

static void draw_pictures(const struct pictures *pic, struct trainer *t, const struct history *h,
                          int64_t steps, int64_t spe, int64_t epochs)
{
    if (dist_rank() != 0) /* under mpirun rank 0 alone writes the run's files */
        return;
    draw_loss(pic->loss, pic->out, h, steps, spe);
    draw_correlation(pic->corr, pic->out, t->loss, bt_model_embed_dim(t->m));
    draw_knn(pic->knn, pic->out, h, epochs);
}

/* The first non-finite value among the model's tensors (only the buffers,
 * which have no gradient, when buffers_only): 1 with "name[index] is value" in
 * msg, else 0. A weight that goes non-finite makes the next loss forward fail
 * (BT_E_NUMERIC); BatchNorm running statistics (a batch variance beyond the
 * float range is stored as inf) and the weights of a run's last step are only
 * seen here. */
static int model_nonfinite(bt_model *m, int buffers_only, char *msg, size_t cap)
{
    int32_t i, n = bt_model_tensor_count(m);
    for (i = 0; i < n; i++) {
        const char *name;
        bt_tensor *v, *g;
        const float *d;
        int64_t k, numel;
        if (bt_model_tensor(m, i, &name, &v, &g) != BT_OK || (buffers_only && g))
            continue;
        d = bt_tensor_data(v);
        numel = bt_tensor_numel(v);
        for (k = 0; k < numel; k++)
            if (!isfinite(d[k])) {
                snprintf(msg, cap, "model tensor %s[%lld] is %g", name, (long long)k, (double)d[k]);
                return 1;
            }
    }
    return 0;
}

/* The step of the checkpoint on disk (-1: none yet), for the divergence message. */
static int64_t g_saved_step = -1;

/* Stop a run whose numbers are no longer finite: one line naming the step and
 * the value, a "diverged" log record, exit 1; the checkpoint on disk (saved
 * before the failure) is not touched. */
static void diverged(FILE *log, int64_t step, const char *what, const char *ckpt)
{
    char saved[PATH_CAP + 96];
    if (log) {
        fprintf(log, "{\"event\":\"diverged\",\"step\":%lld}\n", (long long)step);
        fflush(log);
    }
    if (g_saved_step >= 0)
        snprintf(saved, sizeof saved, "the last checkpoint (%s, step %lld) is intact", ckpt,
                 (long long)g_saved_step);
    else
        snprintf(saved, sizeof saved, "no checkpoint was saved");
    fail("training diverged at step %lld: %s; %s; try a smaller optim.lr", (long long)step, what,
         saved);
}

static void save_checkpoint(const char *path, struct trainer *t, FILE *log, int64_t step)
{
    char what[512];
    /* never a checkpoint of non-finite numbers: the last good one stays */
    if (model_nonfinite(t->m, 0, what, sizeof what))
        diverged(log, step, what, path);
    if (dist_rank() != 0) /* the ranks' weights are identical: rank 0 saves them */
        return;
    if (bt_checkpoint_save(path, t->m, t->opt, t->aug) != BT_OK)
        fail("saving %s: %s", path, bt_last_error());
    g_saved_step = step;
}

/* Per-epoch kNN on subsets (documented in docs/results.md): the first knn_bank
 * training images are the bank, the first knn_test test images the queries. */
static void epoch_knn(struct trainer *t, bt_augment *eval_aug, const struct dataset *train,
                      const struct dataset *test, const struct run *r, int32_t threads, double *top1, double *top5)
{
    struct feats fb, fq;
    char err[PROBE_ERR_CAP];
    int32_t S = bt_augment_output_size(eval_aug, 0);
    *top1 = *top5 = -1;
    if (!train->label || test->n == 0 || dist_rank() != 0) /* eval-mode encoding: not collective */
        return;
    if (probe_encode(t->m, eval_aug, train, r->knn_bank, S, &fb, err) != 0
        || probe_encode(t->m, eval_aug, test, r->knn_test, S, &fq, err) != 0
        || probe_knn(&fb, 0, &fq, 0, train->nclasses, 20, threads, top1, top5, err) != 0)
        fail("%s", err);
    feats_free(&fb);
    feats_free(&fq);
}

/* The evaluation after pretraining, where it makes sense: with labels and a
 * test split, and after a run of EVAL_MIN_STEPS or more (or --eval); else a
 * line saying why not. Neither case is an error. */
static void final_evaluation(struct trainer *t, const bt_config *cfg, bt_augment *eval_aug,
                             const struct dataset *train, const struct dataset *test,
                             const struct args *a, const struct run *r, FILE *log, int64_t step,
                             const char *ckpt)
{
    if (!train->label || test->n == 0) {
        printf("no evaluation: %s has no labels (class sub-folders) or no test split\n", r->data);
    } else if (step < EVAL_MIN_STEPS && !a->eval) {
        printf("no evaluation after %lld steps (under %d; --eval asks for it); later: "
               "barlow eval --checkpoint %s\n", (long long)step, EVAL_MIN_STEPS, ckpt);
    } else {
        /* its cost, from encoding a few images: the trained and the random
         * encoder each encode both splits (the probes' own training comes on top) */
        const int64_t k = train->n < 256 ? train->n : 256;
        int64_t ntr, nte;
        struct feats f;
        char err[PROBE_ERR_CAP];
        double t0 = now_s(), per;
        if (probe_encode(t->m, eval_aug, train, k, bt_augment_output_size(eval_aug, 0), &f, err) != 0)
            fail("%s", err);
        feats_free(&f);
        per = (now_s() - t0) / (double)k;
        eval_sizes(a, train, test, &ntr, &nte);
        printf("final evaluation (--no-eval skips it): about %.0f s of encoding %lld + %lld images%s, "
               "then the probes\n", per * (double)(ntr + nte) * (a->no_baselines ? 1 : 2),
               (long long)ntr, (long long)nte, a->no_baselines ? "" : " twice (trained, random)");
        evaluate(t->m, cfg, eval_aug, train, test, a, log, step);
    }
}

int cmd_pretrain(const struct args *a)
{
    char out[PATH_CAP], ckpt[PATH_CAP + 32], cfgp[PATH_CAP + 32], runp[PATH_CAP + 32], logp[PATH_CAP + 32];
    char lossp[PATH_CAP + 32], corrp[PATH_CAP + 32], knnp[PATH_CAP + 32], buf[256];
    struct run r;
    struct dataset train, test;
    struct trainer t;
    struct progress pg;
    bt_config *cfg = NULL;
    bt_augment *eval_aug;
    FILE *log;
    struct history h;
    const struct pictures pic = {out, lossp, corrp, knnp};
    int64_t nepochs;
    double lambda, t_epoch, t_start = now_s();
    int64_t *perm, step, step0, perm_epoch = -1, threads, extend = 0;
    struct sigaction sa;
    int stopped = 0, interrupted = 0;
    int64_t lo, hi; /* this rank's slice [lo, hi) of every global batch */

    memset(&r, 0, sizeof r);
    if (a->out)
        snprintf(out, sizeof out, "%s", a->out);
    else
        snprintf(out, sizeof out, "runs/%s",
                 a->dataset ? a->dataset : data_guess_kind(a->data ? a->data : DEFAULT_FMNIST));
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", out);
    snprintf(cfgp, sizeof cfgp, "%s/config.txt", out);
    snprintf(runp, sizeof runp, "%s/run.txt", out);
    snprintf(logp, sizeof logp, "%s/log.jsonl", out);
    snprintf(lossp, sizeof lossp, "%s/loss.png", out);
    snprintf(corrp, sizeof corrp, "%s/correlation.png", out);
    snprintf(knnp, sizeof knnp, "%s/knn.png", out);
    if (bt_config_create(&cfg) != BT_OK)
        fail("%s", bt_last_error());

    if (a->resume) {
        if (!path_exists(ckpt))
            die("--resume: %s does not exist", ckpt);
        if (!run_read(&r, runp))
            die("--resume: %s does not exist (was %s written by barlow pretrain?)", runp, ckpt);
        if (a->nsets || a->config || a->minutes > 0 || a->batch || a->limit || a->has_seed || a->dataset)
            die("--resume continues the run in %s with its recorded options (%s, %s); "
                "--set, --config, --minutes, --batch, --limit, --seed and --dataset cannot change them "
                "(--epochs or --steps extend it)",
                out, cfgp, runp);
        cfg_load_file(cfg, cfgp);
        if (a->epochs || a->steps) /* a new length: the schedule of a run planned for it */
            extend = a->steps ? a->steps : a->epochs * r.steps_per_epoch;
        if (a->data)
            snprintf(r.data, sizeof r.data, "%s", a->data);
        if (a->eval_size)
            r.eval_size = a->eval_size; /* evaluation only: training continues exactly */
    } else {
        const char *kind;
        if (path_exists(ckpt))
            die("%s exists: continue it with --resume, or choose another --out", ckpt);
        snprintf(r.data, sizeof r.data, "%s", a->data ? a->data : DEFAULT_FMNIST);
        kind = a->dataset ? a->dataset : data_guess_kind(r.data);
        snprintf(r.dataset, sizeof r.dataset, "%s", kind);
        cfg_apply_preset(cfg, kind);
        if (a->config)
            cfg_load_file(cfg, a->config);
        cfg_apply_sets(cfg, a);
        if (a->has_seed) {
            snprintf(buf, sizeof buf, "%lld", (long long)a->seed);
            cfg_set(cfg, "seed", buf, "--seed");
        }
        if (a->batch) {
            snprintf(buf, sizeof buf, "%lld", (long long)a->batch);
            cfg_set(cfg, "optim.batch_size", buf, "--batch");
        }
        r.limit = a->limit;
        r.knn_bank = a->knn_bank;
        r.knn_test = a->knn_test;
        r.eval_size = a->eval_size ? a->eval_size : native_eval_size(kind);
    }
    if (a->has_threads) {
        snprintf(buf, sizeof buf, "%lld", (long long)a->threads);
        cfg_set(cfg, "threads", buf, "--threads");
    }
    threads = cfg_int(cfg, "threads");
    r.batch = a->resume ? r.batch : cfg_int(cfg, "optim.batch_size");

    load_split(&train, r.dataset, r.data, 0, (int32_t)cfg_int(cfg, "model.in_channels"), r.limit);
    load_split(&test, r.dataset, r.data, 1, (int32_t)cfg_int(cfg, "model.in_channels"), r.limit);
    if (train.n < r.batch)
        die("--batch %lld is larger than the %lld training images", (long long)r.batch, (long long)train.n);
    if (!a->resume) {
        r.steps_per_epoch = train.n / r.batch;
        if (a->minutes > 0 && dist_size() > 1)
            die("--minutes times one process; under mpirun (%d ranks) give --steps or --epochs",
                dist_size());
        if (a->minutes > 0) {
            double enc, per_step, per_epoch_extra, steps, budget;
            printf("timing a few steps to fit the schedule into %g minutes...\n", a->minutes);
            fflush(stdout);
            per_step = calibrate(cfg, &train, r.batch, &enc);
            per_epoch_extra = train.label && test.n
                ? enc * (double)((r.knn_bank < train.n ? r.knn_bank : train.n)
                                 + (r.knn_test < test.n ? r.knn_test : test.n)) : 0;
            /* what is left of the budget after loading and timing, at the rate
             * of a sustained run */
            budget = a->minutes * 60 - (now_s() - t_start);
            steps = budget * SUSTAINED_RATE / (per_step + per_epoch_extra / (double)r.steps_per_epoch);
            r.total_steps = steps >= 1 ? (int64_t)steps : 1;
            printf("%.3f s/step, %.1f s of kNN per epoch -> %lld steps (%.2f epochs of %lld)\n", per_step,
                   per_epoch_extra, (long long)r.total_steps, (double)r.total_steps / (double)r.steps_per_epoch,
                   (long long)r.steps_per_epoch);
        } else if (a->steps) {
            r.total_steps = a->steps;
        } else {
            r.total_steps = (a->epochs ? a->epochs : 10) * r.steps_per_epoch;
        }
        /* The schedule spans the run unless the user fixed it. */
        if (bt_config_is_set(cfg, "optim.total_steps") != 1) {
            snprintf(buf, sizeof buf, "%lld", (long long)r.total_steps);
            cfg_set(cfg, "optim.total_steps", buf, "schedule");
        }
        if (bt_config_is_set(cfg, "optim.warmup_steps") != 1) {
            snprintf(buf, sizeof buf, "%lld", (long long)(r.total_steps / 10));
            cfg_set(cfg, "optim.warmup_steps", buf, "schedule");
        }
    } else if (train.n / r.batch != r.steps_per_epoch) {
        die("%s: the run had %lld steps per epoch, the data at %s now gives %lld", runp,
            (long long)r.steps_per_epoch, r.data, (long long)(train.n / r.batch));
    }
    if (extend) {
        snprintf(buf, sizeof buf, "%lld", (long long)extend);
        cfg_set(cfg, "optim.total_steps", buf, "--epochs/--steps");
    }

    if (r.batch < dist_size())
        die("--batch %lld is smaller than the %d ranks (each needs an image of every batch)",
            (long long)r.batch, dist_size());
    lo = r.batch * dist_rank() / dist_size();
    hi = r.batch * (dist_rank() + 1) / dist_size();
    trainer_init(&t, cfg, hi - lo, 1);
    t.first = lo;
    /* collective: after it every rank has read config.txt and run.txt, so rank 0 may rewrite them */
    if (dist_comm() && (bt_model_set_comm(t.m, dist_comm()) != BT_OK
                        || bt_loss_set_comm(t.loss, dist_comm()) != BT_OK))
        fail("rank %d: %s", dist_rank(), bt_last_error());
    eval_aug = make_eval_augment(cfg, r.eval_size);
    if (a->resume && bt_checkpoint_load(ckpt, t.m, t.opt, t.aug) != BT_OK)
        die_checkpoint(ckpt);
    step0 = bt_optim_step_count(t.opt);
    if (a->resume)
        g_saved_step = step0;
    if (extend) {
        if (extend <= step0)
            die("--resume: the run is at step %lld; a new length of %lld steps does not extend it",
                (long long)step0, (long long)extend);
        printf("extending the run from %lld to %lld steps: the learning rate now follows the "
               "schedule of a %lld-step run from step %lld on\n", (long long)r.total_steps,
               (long long)extend, (long long)extend, (long long)step0);
        r.total_steps = extend;
        if (dist_rank() == 0) {
            cfg_write_file(cfg, cfgp);
            run_write(&r, runp);
        }
    }

    nepochs = (r.total_steps + r.steps_per_epoch - 1) / r.steps_per_epoch;
    h.loss = xmalloc((size_t)(3 * r.total_steps + nepochs) * sizeof *h.loss);
    memset(h.loss, 0, (size_t)(3 * r.total_steps) * sizeof *h.loss);
    h.on = h.loss + r.total_steps;
    h.off = h.on + r.total_steps;
    h.knn = h.off + r.total_steps;
    lambda = cfg_real(cfg, "loss.lambda");
    for (int64_t k = 0; k < nepochs; k++) /* no kNN measured yet */
        h.knn[k] = -1;
    if (dist_rank() != 0) {
        /* nothing to write: the log goes to /dev/null below */
    } else if (a->resume) {
        log_rewind(logp, step0, &h, r.total_steps, nepochs, lambda);
    } else {
        mkdirs(out);
        cfg_write_file(cfg, cfgp);
        run_write(&r, runp);
        remove(logp);
    }
    log = fopen(dist_rank() == 0 ? logp : "/dev/null", "a");
    if (!log)
        fail("%s: cannot write: %s", logp, strerror(errno));
    fprintf(log, "{\"event\":\"start\",\"step\":%lld,\"version\":\"%s\",\"dataset\":\"%s\",\"train\":%lld,"
                 "\"test\":%lld,\"batch\":%lld,\"steps_per_epoch\":%lld,\"total_steps\":%lld,\"threads\":%lld,"
                 "\"resume\":%d}\n",
            (long long)step0, bt_version_string(), r.dataset, (long long)train.n, (long long)test.n,
            (long long)r.batch, (long long)r.steps_per_epoch, (long long)r.total_steps, (long long)threads,
            a->resume);
    fflush(log);
    printf("%s %s: %lld train / %lld test images, batch %lld, %lld steps (%lld per epoch), encoder %lld-d, "
           "projector %lld-d, out %s\n",
           a->resume ? "resuming" : "pretraining", r.dataset, (long long)train.n, (long long)test.n,
           (long long)r.batch, (long long)r.total_steps, (long long)r.steps_per_epoch,
           (long long)bt_model_feature_dim(t.m), (long long)bt_model_embed_dim(t.m), out);
    if (a->resume) {
        char was[32], now[32];
        printf("continuing at step %lld\n", (long long)step0);
        if (bt_checkpoint_metadata(ckpt, "libbarlow.cpu_level", was, sizeof was) == BT_OK &&
            bt_config_get(cfg, "build.cpu_level", now, sizeof now) == BT_OK && strcmp(was, now))
            printf("note: the checkpoint was trained at CPU level %s and continues at %s: the run "
                   "stays valid, but is no longer bit-identical to one that never stopped\n",
                   was, now);
    }
    fflush(stdout);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    perm = xmalloc((size_t)train.n * sizeof *perm);
    pg.bar = dist_rank() != 0 ? 0 : a->progress >= 0 ? a->progress : isatty(2);
    pg.t0 = pg.last = now_s();
    pg.first_step = step0;
    pg.spe = r.steps_per_epoch;
    pg.total = r.total_steps;
    pg.batch = r.batch;
    t_epoch = now_s();
    for (step = step0; step < r.total_steps;) {
        int64_t e = step / r.steps_per_epoch, pos = step % r.steps_per_epoch;
        double loss = NAN, on = NAN, off = NAN, lr = bt_optim_lr(t.opt, 0);
        char what[512];
        bt_status st;
        /* the ranks agree: a signal on any of them stops all at this step */
        interrupted = dist_any(g_interrupted);
        if (interrupted || (a->max_steps && step >= a->max_steps)) {
            stopped = 1;
            break;
        }
        if (e != perm_epoch) {
            /* the order of epoch e is a function of (seed, e) only: resuming mid-epoch replays it */
            probe_permutation(perm, train.n, (uint64_t)cfg_int(cfg, "seed"), 1, (uint64_t)e);
            perm_epoch = e;
        }
        st = trainer_step(&t, &train, perm + pos * r.batch + lo, &loss, &on, &off);
        if (st == BT_E_NUMERIC || (st == BT_OK && (!isfinite(loss) || !isfinite(on) || !isfinite(off)))) {
            progress_clear(&pg);
            if (st == BT_OK)
                snprintf(what, sizeof what, "the loss is %g", loss);
            diverged(log, step + 1, st == BT_OK ? what : bt_last_error(), ckpt);
        }
        if (st != BT_OK) {
            progress_clear(&pg);
            fail("step %lld: %s", (long long)step + 1, bt_last_error());
        }
        /* buffers every step (cheap); every tensor before an epoch's kNN and checkpoint */
        if (model_nonfinite(t.m, (step + 1) % r.steps_per_epoch != 0 && step + 1 != r.total_steps, what,
                            sizeof what)) {
            progress_clear(&pg);
            diverged(log, step + 1, what, ckpt);
        }
        step++;
        h.loss[step - 1] = loss;
        h.on[step - 1] = on;
        h.off[step - 1] = lambda * off;
        fprintf(log, "{\"event\":\"step\",\"step\":%lld,\"epoch\":%lld,\"loss\":%.17g,\"on_diag\":%.17g,"
                     "\"off_diag\":%.17g,\"lr\":%.9g,\"images_per_s\":%.1f}\n",
                (long long)step, (long long)e + 1, loss, on, off, lr,
                (double)((step - step0) * r.batch) / (now_s() - pg.t0));
        progress_step(&pg, step, loss, on, off, step == r.total_steps);
        if (step % r.steps_per_epoch == 0 || step == r.total_steps) {
            double k1, k5, secs = now_s() - t_epoch, epoch_loss = 0;
            int64_t i, first = e * r.steps_per_epoch;
            for (i = first; i < step; i++) /* the whole epoch's, also after a resume */
                epoch_loss += h.loss[i];
            epoch_loss /= (double)(step - first);
            epoch_knn(&t, eval_aug, &train, &test, &r, (int32_t)threads, &k1, &k5);
            save_checkpoint(ckpt, &t, log, step);
            h.knn[e] = k1;
            draw_pictures(&pic, &t, &h, step, r.steps_per_epoch, e + 1);
            progress_clear(&pg);
            printf("epoch %lld done: mean loss %.6g, ", (long long)e + 1, epoch_loss);
            if (k1 >= 0) /* no labels, no kNN */
                printf("kNN top-1 %.2f%% (top-5 %.2f%%), ", 100 * k1, 100 * k5);
            printf("%.0f s, checkpoint %s\n", secs, ckpt);
            fflush(stdout);
            fprintf(log, "{\"event\":\"epoch\",\"step\":%lld,\"epoch\":%lld,\"loss_mean\":%.9g,",
                    (long long)step, (long long)e + 1, epoch_loss);
            if (k1 >= 0)
                fprintf(log, "\"knn_top1\":%.6f,\"knn_top5\":%.6f,", k1, k5);
            fprintf(log, "\"seconds\":%.3f}\n", secs);
            fflush(log);
            t_epoch = now_s();
        }
    }
    if (stopped) {
        progress_clear(&pg);
        if (step > step0) {
            save_checkpoint(ckpt, &t, log, step);
            draw_pictures(&pic, &t, &h, step, r.steps_per_epoch, step / r.steps_per_epoch);
        }
        fprintf(log, "{\"event\":\"%s\",\"step\":%lld}\n", interrupted ? "interrupted" : "stopped",
                (long long)step);
        fclose(log);
        printf("%s at step %lld of %lld; checkpoint %s saved; continue with: barlow pretrain --out %s --resume\n",
               interrupted ? "interrupted" : "stopped (--max-steps)", (long long)step,
               (long long)r.total_steps, ckpt, out);
        trainer_free(&t);
        bt_augment_free(eval_aug);
        bt_config_free(cfg);
        data_free(&train);
        data_free(&test);
        free(perm);
        free(h.loss);
        return interrupted ? 130 : 0;
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    printf("pretraining done: %lld steps; pictures %s, %s%s%s\n", (long long)step, lossp, corrp,
           train.label ? ", " : "", train.label ? knnp : "");
    fflush(stdout);
    if (!a->no_eval && dist_rank() == 0) /* the other ranks are done */
        final_evaluation(&t, cfg, eval_aug, &train, &test, a, &r, log, step, ckpt);
    fclose(log);
    trainer_free(&t);
    bt_augment_free(eval_aug);
    bt_config_free(cfg);
    data_free(&train);
    data_free(&test);
    free(perm);
    free(h.loss);
    return 0;
}
