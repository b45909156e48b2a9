/* cli.h - declarations shared by the files of the `barlow` command (private to
 * examples/barlow/). Each section names the file that defines it. Functions
 * that "stop" print one line on stderr and exit: status 2 for bad input (die),
 * 1 for a failure while running (fail). */
#ifndef BARLOW_CLI_H
#define BARLOW_CLI_H

#include <barlow.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data.h"

#if defined(__GNUC__)
#define BARLOW_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define BARLOW_PRINTF(fmt, args)
#endif

#define DEFAULT_FMNIST "/usr/share/datasets/fashion-mnist"
/* Shorter pretraining runs are smoke tests: the final evaluation (minutes of
 * probes) follows them only with --eval. As text for the help. */
#define EVAL_MIN_STEPS 100
#define EVAL_MIN_STEPS_TEXT "100"
#define MAX_SETS 256
#define PATH_CAP 4096

/* ---- util.c: errors, time, memory, files */

extern const char *g_cmd; /* "barlow", the prefix of every message */

/* Bad input: one line on stderr, exit status 2. */
BARLOW_PRINTF(1, 2) _Noreturn void die(const char *fmt, ...);

/* A failure while running (not the user's input): exit status 1. */
BARLOW_PRINTF(1, 2) _Noreturn void fail(const char *fmt, ...);

/* A failed checkpoint load: the library's message, prefixed with the file when it lacks it. */
_Noreturn void die_checkpoint(const char *path);

/* Seconds on the monotonic clock. */
double now_s(void);

/* malloc that stops the program (exit 1) when memory runs out; never NULL. */
void *xmalloc(size_t n);

/* mkdir -p: every missing folder of dir, or stop (exit 2). */
void mkdirs(const char *dir);

/* Write a file atomically: the caller fills a temporary FILE, we rename it into place. */
FILE *atomic_open(const char *path, char *tmp, size_t cap);

/* Flush, fsync and close the temporary file, then rename it onto path (or stop, exit 1). */
void atomic_close(FILE *f, const char *tmp, const char *path);

/* data_load, or stop with its message (exit 2). */
void load_split(struct dataset *d, const char *kind, const char *path, int test, int32_t channels,
                int64_t limit);

/* ---- args.c: the command line */

struct args {
    const char *cmd;
    const char *data, *dataset, *out, *config, *checkpoint, *split, *labels_out;
    const char *sets[MAX_SETS];
    int nsets;
    int64_t epochs, steps, batch, limit, threads, seed, max_steps;
    double minutes;
    int resume, eval, no_eval, no_baselines, has_seed, has_threads;
    int64_t knn_bank, knn_test, knn_k, eval_train, eval_test, probe_epochs, eval_size;
    double probe_lr;
    /* finetune */
    int from_scratch;
    double train_percent, lr_backbone, lr_classifier, weight_decay;
    int64_t subset_seed;
    int progress; /* -1 auto (TTY), 0 plain lines, 1 bar */
};

/* The integer v of `flag` in [lo, hi], or stop naming the flag (exit 2). */
int64_t parse_int(const char *flag, const char *v, int64_t lo, int64_t hi);

/* The command and its flags; prints the help and exits for `help`, stops on bad
 * input (exit 2). */
void parse_args(int argc, char **argv, struct args *a);

/* ---- config.c: library options (presets, config files, --set) */

/* bt_config_set, or stop with the library's message prefixed by `where` (exit 2). */
void cfg_set(bt_config *c, const char *name, const char *value, const char *where);

/* bt_config_get, or stop (exit 1). */
void cfg_get(const bt_config *c, const char *name, char *buf, size_t cap);

/* An integer option's current value. */
int64_t cfg_int(const bt_config *c, const char *name);
double cfg_real(const bt_config *c, const char *name);

/* The options of dataset kind "fmnist", "cifar10" or "folder" (any other: folder). */
void cfg_apply_preset(bt_config *c, const char *kind);

/* A config file: name=value lines; blank lines and # comments ignored. */
void cfg_load_file(bt_config *c, const char *path);
/* The same without exiting: -1 with one line ("path:line: why") in err of cap bytes,
 * the lines before the bad one applied; cfg_load_file dies with that line. */
int cfg_read_file(bt_config *c, const char *path, char *err, size_t cap);

/* Every --set name=value of the command line, in order. */
void cfg_apply_sets(bt_config *c, const struct args *a);

/* Write every option that differs from the library default (explicitly set),
 * in a form cfg_load_file reads back to the same effective configuration. */
void cfg_write_file(const bt_config *c, const char *path);

/* ---- run_state.c: run.txt, the command's own facts about a run, beside the checkpoint */

struct run {
    char dataset[32];
    char data[PATH_CAP];
    int64_t limit, batch, total_steps, steps_per_epoch, knn_bank, knn_test, eval_size;
};

/* Write run.txt atomically. */
void run_write(const struct run *r, const char *path);

/* Read run.txt: 1 when read, 0 when the file does not exist; stops on a
 * malformed one (exit 2). */
int run_read(struct run *r, const char *path);

/* ---- pictures.c: loss.png, knn.png and correlation.png */

/* Per-step losses (the total = on + off: the on-diagonal term and the
 * off-diagonal one times loss.lambda) and per-epoch kNN top-1 (-1 where none
 * was measured) of a run. */
struct history {
    double *loss, *on, *off, *knn;
};

/* The three losses per step on a log scale: the total raw (light) and each as a
 * running mean over a tenth of an epoch (dark), epoch boundaries (grey), axis
 * names, decades and steps labelled, a legend; title names the run. */
void draw_loss(const char *path, const char *title, const struct history *h, int64_t n, int64_t spe);

/* kNN top-1 of the first nepochs epochs, in %; nothing when none was measured. */
void draw_knn(const char *path, const char *title, const struct history *h, int64_t nepochs);

/* The leading k x k block of the cross-correlation matrix C of the last step:
 * red positive, blue negative, white 0 (the paper's Figure 1 wants a red
 * diagonal), with its colour scale and the block's size. */
void draw_correlation(const char *path, const char *title, bt_loss *loss, int64_t D);

/* ---- trainer.c: one training step */

struct trainer {
    bt_model *m;
    bt_loss *loss;
    bt_augment *aug;
    bt_optim *opt; /* NULL: no update (timing runs) */
    bt_tensor *view[2], *z[2], *dz[2];
    int64_t batch; /* this rank's images per step */
    int64_t first; /* the index of its first image within the global batch (0: one process) */
    const uint8_t **img;
    int32_t *h, *w;
};

/* Create the model, loss, augmentation (and optimizer when with_optim) from cfg
 * and the buffers of batch images; stops on bad options (exit 2). */
void trainer_init(struct trainer *t, const bt_config *cfg, int64_t batch, int with_optim);

/* Free everything trainer_init made. */
void trainer_free(struct trainer *t);

/* Augment the images idx[0..batch), forward both views, the loss, backward, update. */
bt_status trainer_step(struct trainer *t, const struct dataset *d, const int64_t *idx, double *loss,
                       double *on, double *off);

/* ---- progress.c: the progress bar or lines of pretrain */

struct progress {
    int bar;
    double t0, last;
    int64_t first_step, spe, total, batch;
};

/* Show step `step` (at most every 0.2 s as a bar, every 30 s and at each
 * epoch's end as lines; always when force). */
void progress_step(struct progress *p, int64_t step, double loss, double on, double off, int force);

/* Erase the bar, before other output. */
void progress_clear(const struct progress *p);

/* ---- eval.c: evaluation (linear probe and kNN) and the eval command */

/* The evaluation side of a dataset kind: the images' own size where they all
 * share one (training may use smaller crops: the encoder is convolutional
 * with a global pool), else aug.size (0). */
int64_t native_eval_size(const char *kind);

/* The evaluation pipeline: bt_augment_eval at side `size` (0 = aug.view1.size).
 * cfg is changed only for the creation and restored. */
bt_augment *make_eval_augment(bt_config *cfg, int64_t size);

/* The training and test images the evaluation uses (--eval-train, --eval-test). */
void eval_sizes(const struct args *a, const struct dataset *train, const struct dataset *test,
                int64_t *ntr, int64_t *nte);

/* Linear probe and kNN of the trained encoder, a randomly initialised one (the
 * same initialisation pretraining started from) and raw pixels, side by side. */
void evaluate(bt_model *m, const bt_config *cfg, bt_augment *aug, const struct dataset *train,
              const struct dataset *test, const struct args *a, FILE *log, int64_t step);

/* Model options and dataset of a checkpoint: preset, config.txt and run.txt
 * beside it, then --config, --set, --threads. */
bt_model *load_for_eval(const struct args *a, bt_config **cfg_out, char *kind, size_t kcap, char *data,
                        size_t dcap, int64_t *limit, int64_t *eval_size);

/* barlow eval: linear probe and kNN of a checkpoint's encoder; the exit status. */
int cmd_eval(const struct args *a);

/* ---- finetune.c: the finetune command */

/* barlow finetune: evaluate.py's semi-supervised protocol (a class-balanced
 * --train-percent subset, backbone and linear head trained together); the exit status. */
int cmd_finetune(const struct args *a);

/* ---- embed.c: the embed command */

/* barlow embed: a split's features (and labels) as .npy; the exit status. */
int cmd_embed(const struct args *a);

/* ---- dist.c: data-parallel pretraining under mpirun (make MPI=1; else rank 0 of 1) */

/* MPI_Init and the library's communicator; ranks other than 0 print nothing
 * on stdout. Call once, before anything prints. */
void dist_init(int *argc, char ***argv);

/* This process's rank and the number of ranks (0 and 1 without mpirun). */
int dist_rank(void);
int dist_size(void);

/* The communicator for bt_model_set_comm / bt_loss_set_comm; NULL for one process. */
bt_comm *dist_comm(void);

/* The logical OR of flag over the ranks (a collective call: every rank, same order). */
int dist_any(int flag);

/* Release the communicator (after the models and losses using it) and MPI_Finalize. */
void dist_finalize(void);

/* ---- pretrain.c: the pretrain command */

/* barlow pretrain (or --resume): the exit status (0, or 130 when interrupted). */
int cmd_pretrain(const struct args *a);

#endif
