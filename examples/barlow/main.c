/* main.c - the `barlow` command: Barlow Twins pretraining, evaluation and
 * feature export with libbarlow, on Fashion-MNIST (default), CIFAR-10 or a
 * folder of images.
 *
 *   barlow pretrain [--data DIR|FILE] [--dataset fmnist|cifar10|folder] [--out DIR]
 *                   [--epochs N | --minutes M] [--batch N] [--threads N] [--seed N]
 *                   [--set name=value ...] [--config FILE] [--limit N] [--resume]
 *   barlow eval     --checkpoint FILE [--data ...] [--dataset ...]
 *   barlow embed    --checkpoint FILE --out FEATURES.npy [--split train|test]
 *
 * It is also the example of owning a training loop with libbarlow: the data,
 * the epoch order, logging, checkpoint policy and evaluation are all here,
 * on the public API only (include/barlow.h). `barlow help` lists every flag.
 *
 * Exit status: 0 done, 2 bad input (usage, option, value, dataset,
 * checkpoint: a one-line message names it, nothing is overwritten),
 * 1 a failure while running (e.g. training diverged), 130 interrupted
 * (Ctrl-C: the checkpoint was saved; `--resume` continues exactly). */
#include <barlow.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <stb/stb_image_write.h>

#include "data.c"
#include "probe.c"
#include "fast_blas.c"

#define DEFAULT_FMNIST "/usr/share/datasets/fashion-mnist"
#define MAX_SETS 256
#define PATH_CAP 4096

/* ---- small utilities -------------------------------------------------------- */

static const char *g_cmd = "barlow";

/* Bad input: one line on stderr, exit status 2. */
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: error: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* A failure while running (not the user's input): exit status 1. */
static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: error: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* A failed checkpoint load: the library's message, prefixed with the file when it lacks it. */
static void die_checkpoint(const char *path)
{
    const char *msg = bt_last_error();
    if (strstr(msg, path))
        die("%s", msg);
    die("checkpoint %s: %s", path, msg);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_duration(char *buf, size_t cap, double s)
{
    long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        fail("out of memory (%zu bytes)", n);
    return p;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void mkdirs(const char *dir)
{
    char p[PATH_CAP];
    size_t i;
    snprintf(p, sizeof p, "%s", dir);
    for (i = 1; p[i]; i++) {
        if (p[i] != '/')
            continue;
        p[i] = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            die("%s: cannot create folder: %s", p, strerror(errno));
        p[i] = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        die("%s: cannot create folder: %s", p, strerror(errno));
    if (!data_is_dir(p))
        die("%s: not a folder", p);
}

/* The folder part of a path ("." when there is none). */
static void dir_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == path)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

/* Write a file atomically: the caller fills a temporary FILE, we rename it into place. */
static FILE *atomic_open(const char *path, char *tmp, size_t cap)
{
    FILE *f;
    snprintf(tmp, cap, "%s.tmp%ld", path, (long)getpid());
    f = fopen(tmp, "wb");
    if (!f)
        fail("%s: cannot write: %s", tmp, strerror(errno));
    return f;
}

static void atomic_close(FILE *f, const char *tmp, const char *path)
{
    int bad = ferror(f);
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        fail("%s: cannot write: %s", path, strerror(errno));
    }
}

/* ---- command line --------------------------------------------------------------- */

struct args {
    const char *cmd;
    const char *data, *dataset, *out, *config, *checkpoint, *split, *labels_out;
    const char *sets[MAX_SETS];
    int nsets;
    int64_t epochs, steps, batch, limit, threads, seed, max_steps;
    double minutes;
    int resume, no_eval, no_baselines, has_seed, has_threads;
    int64_t knn_bank, knn_test, knn_k, eval_train, eval_test, probe_epochs, eval_size;
    double probe_lr;
    int progress; /* -1 auto (TTY), 0 plain lines, 1 bar */
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: barlow pretrain [options]   Barlow Twins pretraining, then evaluation\n"
        "       barlow eval --checkpoint FILE [options]   linear probe + kNN on frozen features\n"
        "       barlow embed --checkpoint FILE --out FEATURES.npy [options]\n"
        "       barlow help\n"
        "\n"
        "data:\n"
        "  --data DIR|FILE       dataset location (default " DEFAULT_FMNIST ")\n"
        "  --dataset KIND        fmnist | cifar10 | folder (default: guessed from --data)\n"
        "  --limit N             use only the first N images of each split\n"
        "pretrain:\n"
        "  --out DIR             run folder: checkpoint, log.jsonl, config.txt, pictures (default runs/KIND)\n"
        "  --epochs N            epochs (default 10), or\n"
        "  --minutes M           a time budget: the schedule length is fixed from a short timing run\n"
        "  --steps N             or exactly N optimizer steps (reproducible whatever the load)\n"
        "  --batch N             images per step (optim.batch_size)\n"
        "  --threads N           worker threads (0 = all cores)\n"
        "  --seed N              seed of initialisation, augmentation and data order\n"
        "  --set name=value      any library option (repeatable), e.g. --set loss.lambda=0.004\n"
        "  --config FILE         options as name=value lines (applied before --set)\n"
        "  --resume              continue the run in --out exactly where its checkpoint stopped\n"
        "  --max-steps N         stop (saving the checkpoint, as Ctrl-C does) after global step N\n"
        "  --knn-bank N --knn-test N   images of the per-epoch kNN (default 10000 / 2000)\n"
        "  --no-eval             skip the final evaluation\n"
        "  --progress bar|lines  progress display (default: bar on a terminal)\n"
        "eval / embed:\n"
        "  --checkpoint FILE     a checkpoint; its model options come from config.txt beside it,\n"
        "                        --config and --set (defaults: the dataset's preset)\n"
        "  --eval-train N --eval-test N  images used for the probes (default all)\n"
        "  --eval-size N         side of the evaluation view (default: the images' own, 28 for\n"
        "                        fmnist, 32 for cifar10; aug.size for a folder)\n"
        "  --probe-epochs N --probe-lr X  linear probe schedule (default 30, 0.1)\n"
        "  --knn-k N             neighbours of kNN (default 20)\n"
        "  --no-baselines        skip the random-init encoder and raw-pixel probes\n"
        "  --split train|test    embed: which split (default train)\n"
        "  --labels FILE.npy     embed: also write the labels (int32)\n");
}

static int64_t parse_int(const char *flag, const char *v, int64_t lo, int64_t hi)
{
    char *end;
    long long x;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        die("%s: '%s' is not an integer in [%lld, %lld]", flag, v, (long long)lo, (long long)hi);
    return x;
}

static double parse_real(const char *flag, const char *v, double lo, double hi)
{
    char *end;
    double x;
    errno = 0;
    x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        die("%s: '%s' is not a number in [%g, %g]", flag, v, lo, hi);
    return x;
}

static void parse_args(int argc, char **argv, struct args *a)
{
    int i;
    memset(a, 0, sizeof *a);
    a->progress = -1;
    a->knn_bank = 10000;
    a->knn_test = 2000;
    a->knn_k = 20;
    a->probe_epochs = 30;
    a->probe_lr = 0.1;
    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    a->cmd = argv[1];
    if (!strcmp(a->cmd, "help") || !strcmp(a->cmd, "--help") || !strcmp(a->cmd, "-h")) {
        usage(stdout);
        exit(0);
    }
    if (strcmp(a->cmd, "pretrain") && strcmp(a->cmd, "eval") && strcmp(a->cmd, "embed"))
        die("unknown command '%s' (pretrain, eval, embed or help)", a->cmd);
    for (i = 2; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        char flag[64];
        const char *val = NULL;
        if (strncmp(arg, "--", 2) != 0)
            die("unexpected argument '%s' (options start with --; see barlow help)", arg);
        if (eq && (size_t)(eq - arg) < sizeof flag) {
            snprintf(flag, sizeof flag, "%.*s", (int)(eq - arg), arg);
            val = eq + 1;
        } else {
            snprintf(flag, sizeof flag, "%s", arg);
        }
#define FLAG(name) (!strcmp(flag, name))
#define VALUE() (val ? val : (i + 1 < argc ? argv[++i] : (die("%s needs a value", flag), "")))
        if (FLAG("--resume") || FLAG("--no-eval") || FLAG("--no-baselines")) {
            if (val)
                die("%s takes no value", flag);
            if (FLAG("--resume"))
                a->resume = 1;
            else if (FLAG("--no-eval"))
                a->no_eval = 1;
            else
                a->no_baselines = 1;
        } else if (FLAG("--data"))
            a->data = VALUE();
        else if (FLAG("--dataset")) {
            a->dataset = VALUE();
            if (strcmp(a->dataset, "fmnist") && strcmp(a->dataset, "cifar10") && strcmp(a->dataset, "folder"))
                die("--dataset: '%s' is not one of fmnist, cifar10, folder", a->dataset);
        } else if (FLAG("--out"))
            a->out = VALUE();
        else if (FLAG("--config"))
            a->config = VALUE();
        else if (FLAG("--checkpoint"))
            a->checkpoint = VALUE();
        else if (FLAG("--labels"))
            a->labels_out = VALUE();
        else if (FLAG("--split")) {
            a->split = VALUE();
            if (strcmp(a->split, "train") && strcmp(a->split, "test"))
                die("--split: '%s' is not train or test", a->split);
        } else if (FLAG("--set")) {
            const char *s = VALUE();
            if (!strchr(s, '=') || s[0] == '=')
                die("--set: '%s' is not name=value", s);
            if (a->nsets == MAX_SETS)
                die("--set: more than %d options", MAX_SETS);
            a->sets[a->nsets++] = s;
        } else if (FLAG("--epochs"))
            a->epochs = parse_int(flag, VALUE(), 1, 1000000);
        else if (FLAG("--steps"))
            a->steps = parse_int(flag, VALUE(), 1, INT64_MAX / 4);
        else if (FLAG("--minutes"))
            a->minutes = parse_real(flag, VALUE(), 0.01, 1e6);
        else if (FLAG("--batch"))
            a->batch = parse_int(flag, VALUE(), 2, 1000000);
        else if (FLAG("--limit"))
            a->limit = parse_int(flag, VALUE(), 1, INT32_MAX);
        else if (FLAG("--threads")) {
            a->threads = parse_int(flag, VALUE(), 0, 1024);
            a->has_threads = 1;
        } else if (FLAG("--seed")) {
            a->seed = parse_int(flag, VALUE(), 0, 1000000000000000LL);
            a->has_seed = 1;
        } else if (FLAG("--max-steps"))
            a->max_steps = parse_int(flag, VALUE(), 1, INT64_MAX / 2);
        else if (FLAG("--knn-bank"))
            a->knn_bank = parse_int(flag, VALUE(), 1, INT32_MAX);
        else if (FLAG("--knn-test"))
            a->knn_test = parse_int(flag, VALUE(), 1, INT32_MAX);
        else if (FLAG("--knn-k"))
            a->knn_k = parse_int(flag, VALUE(), 1, 10000);
        else if (FLAG("--eval-train"))
            a->eval_train = parse_int(flag, VALUE(), 2, INT32_MAX);
        else if (FLAG("--eval-size"))
            a->eval_size = parse_int(flag, VALUE(), 1, 4096);
        else if (FLAG("--eval-test"))
            a->eval_test = parse_int(flag, VALUE(), 1, INT32_MAX);
        else if (FLAG("--probe-epochs"))
            a->probe_epochs = parse_int(flag, VALUE(), 1, 100000);
        else if (FLAG("--probe-lr"))
            a->probe_lr = parse_real(flag, VALUE(), 1e-9, 1000);
        else if (FLAG("--progress")) {
            const char *p = VALUE();
            if (!strcmp(p, "bar"))
                a->progress = 1;
            else if (!strcmp(p, "lines"))
                a->progress = 0;
            else
                die("--progress: '%s' is not bar or lines", p);
        } else
            die("unknown option '%s' (see barlow help)", flag);
#undef FLAG
#undef VALUE
    }
    if ((a->epochs != 0) + (a->minutes > 0) + (a->steps != 0) > 1)
        die("--epochs, --minutes and --steps exclude each other");
    if (strcmp(a->cmd, "pretrain") != 0) {
        if (!a->checkpoint)
            die("%s needs --checkpoint FILE", a->cmd);
        if (a->resume || a->epochs || a->steps || a->minutes > 0 || a->batch || a->max_steps)
            die("--resume, --epochs, --steps, --minutes, --batch and --max-steps belong to pretrain");
        if (!strcmp(a->cmd, "embed") && !a->out)
            die("embed needs --out FEATURES.npy");
    } else if (a->checkpoint || a->split || a->labels_out) {
        die("--checkpoint, --split and --labels belong to eval and embed");
    }
}

/* ---- options -------------------------------------------------------------------- */

/* Per-dataset presets, applied before the config file and --set.
 * Fashion-MNIST's was chosen by measuring short runs (docs/results.md): 16 px
 * crops train 3x faster than 28 px at equal accuracy; a 256-wide last stage
 * (after narrow early ones, for more steps in the budget), a 2048 projector
 * and a learning rate far above ImageNet's 0.2 each helped, since a 10-minute
 * run has about a thousand steps, not hundreds of thousands. */
static const char *const preset_fmnist[][2] = {
    {"model.arch", "resnet"},       {"model.block", "basic"},      {"model.blocks", "1-1-1"},
    {"model.widths", "16-32-256"},  {"model.stem", "cifar"},       {"model.in_channels", "1"},
    {"model.projector", "2048-2048-2048"}, {"aug.preset", "fmnist"}, {"aug.size", "16"},
    {"optim.kind", "lars"},         {"optim.batch_size", "128"},   {"optim.lr", "4"},
    {"optim.lr_bias", "0.096"},     {"optim.weight_decay", "1e-5"}, {"loss.lambda", "0.0051"},
    {NULL, NULL}};

static const char *const preset_cifar10[][2] = {
    {"model.arch", "resnet18"},     {"model.stem", "cifar"},       {"model.in_channels", "3"},
    {"model.projector", "2048-2048-2048"}, {"model.projector_bias", "1"}, {"aug.preset", "cifar"},
    {"optim.kind", "lars"},         {"optim.lars_variant", "solo"}, {"optim.eta", "0.02"},
    {"optim.batch_size", "256"},    {"optim.lr", "0.3"},           {"optim.lr_bias", "0.3"},
    {"optim.weight_decay", "1e-4"}, {"loss.scale", "0.1"},         {NULL, NULL}};

static const char *const preset_folder[][2] = {
    {"model.arch", "resnet18"},     {"model.stem", "imagenet"},    {"model.in_channels", "3"},
    {"model.projector", "2048-2048-2048"}, {"aug.preset", "imagenet"}, {"aug.size", "96"},
    {"optim.kind", "lars"},         {"optim.batch_size", "128"},   {NULL, NULL}};

static void cfg_set(bt_config *c, const char *name, const char *value, const char *where)
{
    if (bt_config_set(c, name, value) != BT_OK)
        die("%s%s%s", where ? where : "", where ? ": " : "", bt_last_error());
}

static void cfg_get(const bt_config *c, const char *name, char *buf, size_t cap)
{
    if (bt_config_get(c, name, buf, cap) != BT_OK)
        fail("%s", bt_last_error());
}

static int64_t cfg_int(const bt_config *c, const char *name)
{
    char buf[64];
    cfg_get(c, name, buf, sizeof buf);
    return strtoll(buf, NULL, 10);
}

static void cfg_apply_preset(bt_config *c, const char *kind)
{
    const char *const(*p)[2] = !strcmp(kind, "fmnist") ? preset_fmnist
                               : !strcmp(kind, "cifar10") ? preset_cifar10 : preset_folder;
    for (; (*p)[0]; p++)
        cfg_set(c, (*p)[0], (*p)[1], "preset");
}

/* A config file: name=value lines; blank lines and # comments ignored. */
static void cfg_load_file(bt_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int ln = 0;
    if (!f)
        die("%s: cannot open: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f)) {
        char *s = line, *e, *eq, where[PATH_CAP + 32];
        ln++;
        while (*s == ' ' || *s == '\t')
            s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = 0;
        if (!*s || *s == '#')
            continue;
        eq = strchr(s, '=');
        if (!eq)
            die("%s:%d: '%s' is not name=value", path, ln, s);
        e = eq;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *e = 0;
        eq++;
        while (*eq == ' ' || *eq == '\t')
            eq++;
        snprintf(where, sizeof where, "%s:%d", path, ln);
        cfg_set(c, s, eq, where);
    }
    fclose(f);
}

static void cfg_apply_sets(bt_config *c, const struct args *a)
{
    int i;
    for (i = 0; i < a->nsets; i++) {
        char name[256];
        const char *eq = strchr(a->sets[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - a->sets[i]), a->sets[i]);
        cfg_set(c, name, eq + 1, "--set");
    }
}

/* The evaluation side of a dataset kind: the images' own size where they all
 * share one (training may use smaller crops: the encoder is convolutional
 * with a global pool), else aug.size (0). */
static int64_t native_eval_size(const char *kind)
{
    return !strcmp(kind, "fmnist") ? 28 : !strcmp(kind, "cifar10") ? 32 : 0;
}

/* The evaluation pipeline: bt_augment_eval at side `size` (0 = aug.view1.size).
 * cfg is changed only for the creation and restored. */
static bt_augment *make_eval_augment(bt_config *cfg, int64_t size)
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

/* Write every option that differs from the library default (explicitly set),
 * in a form cfg_load_file reads back to the same effective configuration. */
static void cfg_write_file(const bt_config *c, const char *path)
{
    char tmp[PATH_CAP + 32], val[1024], shared[1024], vname[256];
    int32_t i, n = bt_config_option_count();
    FILE *f = atomic_open(path, tmp, sizeof tmp);
    fprintf(f, "# libbarlow %s options of this run (name=value; barlow --config reads it)\n",
            bt_version_string());
    for (i = 0; i < n; i++) {
        const char *name;
        int v;
        if (bt_config_option(i, &name, NULL, NULL, NULL, NULL) != BT_OK)
            fail("%s", bt_last_error());
        if (bt_config_is_set(c, name) == 1) {
            cfg_get(c, name, val, sizeof val);
            fprintf(f, "%s=%s\n", name, val);
        }
        if (strncmp(name, "aug.", 4) != 0 || !strcmp(name, "aug.preset"))
            continue;
        cfg_get(c, name, shared, sizeof shared);
        for (v = 1; v <= 2; v++) {
            snprintf(vname, sizeof vname, "aug.view%d.%s", v, name + 4);
            if (bt_config_is_set(c, vname) != 1)
                continue;
            cfg_get(c, vname, val, sizeof val);
            if (strcmp(val, shared) != 0 || bt_config_is_set(c, name) != 1)
                fprintf(f, "%s=%s\n", vname, val);
        }
    }
    atomic_close(f, tmp, path);
}

/* ---- run state (the CLI's own facts about a run, beside the checkpoint) ---------- */

struct run {
    char dataset[32];
    char data[PATH_CAP];
    int64_t limit, batch, total_steps, steps_per_epoch, knn_bank, knn_test, eval_size;
};

static void run_write(const struct run *r, const char *path)
{
    char tmp[PATH_CAP + 32];
    FILE *f = atomic_open(path, tmp, sizeof tmp);
    fprintf(f, "# barlow pretrain run state (read by --resume, eval and embed)\n");
    fprintf(f, "dataset=%s\ndata=%s\nlimit=%lld\nbatch=%lld\ntotal_steps=%lld\nsteps_per_epoch=%lld\n"
               "knn_bank=%lld\nknn_test=%lld\neval_size=%lld\n",
            r->dataset, r->data, (long long)r->limit, (long long)r->batch, (long long)r->total_steps,
            (long long)r->steps_per_epoch, (long long)r->knn_bank, (long long)r->knn_test,
            (long long)r->eval_size);
    atomic_close(f, tmp, path);
}

/* Returns 0 when the file does not exist; dies on a malformed one. */
static int run_read(struct run *r, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[PATH_CAP + 64];
    int ln = 0, have = 0;
    memset(r, 0, sizeof *r);
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        char *eq, *e;
        ln++;
        e = line + strlen(line);
        while (e > line && (e[-1] == '\n' || e[-1] == '\r'))
            *--e = 0;
        if (!line[0] || line[0] == '#')
            continue;
        eq = strchr(line, '=');
        if (!eq)
            die("%s:%d: malformed line", path, ln);
        *eq++ = 0;
        if (!strcmp(line, "dataset"))
            snprintf(r->dataset, sizeof r->dataset, "%s", eq), have |= 1;
        else if (!strcmp(line, "data"))
            snprintf(r->data, sizeof r->data, "%s", eq), have |= 2;
        else if (!strcmp(line, "limit"))
            r->limit = parse_int(path, eq, 0, INT32_MAX);
        else if (!strcmp(line, "batch"))
            r->batch = parse_int(path, eq, 2, 1000000), have |= 4;
        else if (!strcmp(line, "total_steps"))
            r->total_steps = parse_int(path, eq, 1, INT64_MAX / 2), have |= 8;
        else if (!strcmp(line, "steps_per_epoch"))
            r->steps_per_epoch = parse_int(path, eq, 1, INT64_MAX / 2), have |= 16;
        else if (!strcmp(line, "knn_bank"))
            r->knn_bank = parse_int(path, eq, 0, INT32_MAX);
        else if (!strcmp(line, "knn_test"))
            r->knn_test = parse_int(path, eq, 0, INT32_MAX);
        else if (!strcmp(line, "eval_size"))
            r->eval_size = parse_int(path, eq, 0, 4096);
        else
            die("%s:%d: unknown key '%s'", path, ln, line);
    }
    fclose(f);
    if (have != 31)
        die("%s: incomplete run state (dataset, data, batch, total_steps, steps_per_epoch)", path);
    return 1;
}

/* ---- pictures (PNG through stb_image_write) ----------------------------------------- */

struct canvas {
    int w, h;
    uint8_t *px; /* RGB */
};

static void canvas_init(struct canvas *c, int w, int h)
{
    c->w = w;
    c->h = h;
    c->px = xmalloc((size_t)w * (size_t)h * 3);
    memset(c->px, 255, (size_t)w * (size_t)h * 3);
}

static void canvas_dot(struct canvas *c, int x, int y, uint32_t rgb)
{
    uint8_t *p;
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = (uint8_t)(rgb >> 16);
    p[1] = (uint8_t)(rgb >> 8);
    p[2] = (uint8_t)rgb;
}

static void canvas_line(struct canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb)
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        int e2 = 2 * e;
        canvas_dot(c, x0, y0, rgb);
        if (x0 == x1 && y0 == y1)
            break;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

/* A 3x5 pixel font for axis labels: digits, '.', '-', 'e', 'k'; drawn 2x. */
static void canvas_text(struct canvas *c, int x, int y, const char *s, uint32_t rgb)
{
    static const char *chars = "0123456789.-ek";
    static const uint16_t glyph[] = {
        075557, 026227, 071747, 071717, 055711, 074717, 074757, 071111, 075757, 075717,
        000002, 000700, 025743, 045655};
    for (; *s; s++, x += 8) {
        const char *k = strchr(chars, *s);
        int r, col;
        if (!k || !*s)
            continue;
        for (r = 0; r < 5; r++)
            for (col = 0; col < 3; col++)
                if (glyph[k - chars] >> ((4 - r) * 3 + (2 - col)) & 1) {
                    canvas_dot(c, x + 2 * col, y + 2 * r, rgb);
                    canvas_dot(c, x + 2 * col + 1, y + 2 * r, rgb);
                    canvas_dot(c, x + 2 * col, y + 2 * r + 1, rgb);
                    canvas_dot(c, x + 2 * col + 1, y + 2 * r + 1, rgb);
                }
    }
}

static void canvas_save(struct canvas *c, const char *path)
{
    char tmp[PATH_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    if (!stbi_write_png(tmp, c->w, c->h, 3, c->px, c->w * 3) || rename(tmp, path) != 0) {
        remove(tmp);
        fail("%s: cannot write the picture", path);
    }
    free(c->px);
    c->px = NULL;
}

/* The loss per step on a log scale: raw (light), running mean over a tenth of
 * an epoch (dark), epoch boundaries (grey), decades labelled. */
static void draw_loss(const char *path, const double *loss, int64_t n, int64_t spe)
{
    const int W = 800, H = 450, L = 70, R = 20, T = 20, B = 40;
    struct canvas c;
    double lo = INFINITY, hi = -INFINITY, win, acc = 0;
    int64_t i, w;
    int px, py, prev_x = -1, prev_y = -1, mx = -1, my = -1, d;
    if (n < 1)
        return;
    for (i = 0; i < n; i++)
        if (isfinite(loss[i]) && loss[i] > 0) {
            lo = fmin(lo, loss[i]);
            hi = fmax(hi, loss[i]);
        }
    if (!(lo <= hi))
        return;
    lo = floor(log10(lo));
    hi = ceil(log10(hi));
    if (hi <= lo)
        hi = lo + 1;
    canvas_init(&c, W, H);
    for (d = (int)lo; d <= (int)hi; d++) {
        char lab[16];
        py = H - B - (int)((d - lo) / (hi - lo) * (H - T - B));
        canvas_line(&c, L, py, W - R, py, 0xE0E0E0);
        snprintf(lab, sizeof lab, "1e%d", d);
        canvas_text(&c, 8, py - 5, lab, 0x404040);
    }
    for (i = spe; i < n && spe > 0; i += spe) {
        px = L + (int)((double)i / (double)n * (W - L - R));
        canvas_line(&c, px, T, px, H - B, 0xD0D0D0);
    }
    {
        char lab[32];
        snprintf(lab, sizeof lab, "%lld", (long long)n);
        canvas_text(&c, W - R - 8 * (int)strlen(lab), H - B + 12, lab, 0x404040);
        canvas_text(&c, L, H - B + 12, "0", 0x404040);
    }
    canvas_line(&c, L, T, L, H - B, 0x000000);
    canvas_line(&c, L, H - B, W - R, H - B, 0x000000);
    w = spe / 10 > 1 ? spe / 10 : 1;
    win = 0;
    for (i = 0; i < n; i++) {
        double v = isfinite(loss[i]) && loss[i] > 0 ? loss[i] : pow(10, lo);
        px = L + (int)((double)i / (double)(n > 1 ? n - 1 : 1) * (W - L - R));
        py = H - B - (int)((log10(v) - lo) / (hi - lo) * (H - T - B));
        if (prev_x >= 0)
            canvas_line(&c, prev_x, prev_y, px, py, 0xA8C8F0);
        prev_x = px;
        prev_y = py;
        acc += v;
        win++;
        if (i >= w) {
            acc -= isfinite(loss[i - w]) && loss[i - w] > 0 ? loss[i - w] : pow(10, lo);
            win--;
        }
        py = H - B - (int)((log10(acc / win) - lo) / (hi - lo) * (H - T - B));
        if (mx >= 0)
            canvas_line(&c, mx, my, px, py, 0x1040A0);
        mx = px;
        my = py;
    }
    canvas_save(&c, path);
}

/* The leading k x k block of the cross-correlation matrix C of the last step:
 * red positive, blue negative, white 0 (the paper's Figure 1 wants a red diagonal). */
static void draw_correlation(const char *path, bt_loss *loss, int64_t D)
{
    int64_t k = D < 64 ? D : 64, shape[2];
    int cell = (int)(512 / k), x, y, i, j;
    struct canvas c;
    bt_tensor *ct = NULL;
    const float *v;
    shape[0] = shape[1] = k;
    if (cell < 1)
        cell = 1;
    if (bt_tensor_create(&ct, 2, shape) != BT_OK || bt_loss_correlation(loss, ct) != BT_OK) {
        fprintf(stderr, "%s: warning: no correlation picture: %s\n", g_cmd, bt_last_error());
        bt_tensor_free(ct);
        return;
    }
    v = bt_tensor_data(ct);
    canvas_init(&c, (int)k * cell, (int)k * cell);
    for (i = 0; i < k; i++)
        for (j = 0; j < k; j++) {
            double a = v[i * k + j];
            int t = (int)(255 * (1 - fmin(1, fabs(a))) + 0.5);
            uint32_t rgb = a >= 0 ? 0xFF0000u | (uint32_t)t << 8 | (uint32_t)t
                                  : (uint32_t)t << 16 | (uint32_t)t << 8 | 0xFFu;
            for (y = 0; y < cell; y++)
                for (x = 0; x < cell; x++)
                    canvas_dot(&c, (int)j * cell + x, (int)i * cell + y, rgb);
        }
    bt_tensor_free(ct);
    canvas_save(&c, path);
}

/* ---- .npy output -------------------------------------------------------------------- */

/* NumPy format 1.0: magic, version, little-endian header length, a dict padded
 * with spaces and a newline to a multiple of 64 bytes, then the raw data. */
static void npy_write(const char *path, const char *descr, int64_t rows, int64_t cols, const void *data,
                      size_t elem)
{
    char hdr[256], tmp[PATH_CAP + 32];
    int len;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    FILE *f;
    if (cols > 0)
        len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       descr, (long long)rows, (long long)cols);
    else
        len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }",
                       descr, (long long)rows);
    while ((10 + len + 1) % 64 != 0)
        hdr[len++] = ' ';
    hdr[len++] = '\n';
    pre[8] = (unsigned char)(len & 0xFF);
    pre[9] = (unsigned char)(len >> 8);
    f = atomic_open(path, tmp, sizeof tmp);
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)len, f);
    fwrite(data, elem, (size_t)(rows * (cols > 0 ? cols : 1)), f);
    atomic_close(f, tmp, path);
}

/* ---- one training step ---------------------------------------------------------------- */

struct trainer {
    bt_model *m;
    bt_loss *loss;
    bt_augment *aug;
    bt_optim *opt; /* NULL: no update (timing runs) */
    bt_tensor *view[2], *z[2], *dz[2];
    int64_t batch;
    const uint8_t **img;
    int32_t *h, *w;
};

static void trainer_init(struct trainer *t, const bt_config *cfg, int64_t batch, int with_optim)
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

static void trainer_free(struct trainer *t)
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

/* Augment the images idx[0..batch), forward both views, the loss, backward, update. */
static bt_status trainer_step(struct trainer *t, const struct dataset *d, const int64_t *idx, double *loss,
                              double *on, double *off)
{
    bt_status st;
    int64_t i;
    for (i = 0; i < t->batch; i++) {
        t->img[i] = d->image[idx[i]];
        t->h[i] = d->height[idx[i]];
        t->w[i] = d->width[idx[i]];
    }
    st = bt_augment_views(t->aug, (int32_t)t->batch, t->img, t->h, t->w, d->channels, 2, t->view);
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

/* ---- progress -------------------------------------------------------------------------- */

struct progress {
    int bar;
    double t0, last;
    int64_t first_step, spe, total, batch;
};

static void progress_step(struct progress *p, int64_t step, double loss, double on, double off, int force)
{
    double t = now_s(), rate, eta;
    int64_t done = step - p->first_step, e = (step - 1) / p->spe, in = step - e * p->spe;
    char eta_s[32];
    if (!force && t - p->last < (p->bar ? 0.2 : 30.0) && !(!p->bar && in == p->spe))
        return;
    p->last = t;
    rate = done > 0 ? (double)(done * p->batch) / (t - p->t0) : 0;
    eta = done > 0 ? (t - p->t0) / (double)done * (double)(p->total - step) : 0;
    fmt_duration(eta_s, sizeof eta_s, eta);
    if (p->bar) {
        int width = 20, fill = (int)(width * in / p->spe), i;
        char bar[32];
        for (i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] step %lld/%lld loss %.4g (on %.3g off %.3g) %.0f img/s ETA %s",
                (long long)e + 1, (long long)((p->total + p->spe - 1) / p->spe), bar, (long long)in,
                (long long)p->spe, loss, on, off, rate, eta_s);
        fflush(stderr);
    } else {
        printf("epoch %lld/%lld step %lld/%lld loss %.6g on_diag %.6g off_diag %.6g %.0f img/s ETA %s\n",
               (long long)e + 1, (long long)((p->total + p->spe - 1) / p->spe), (long long)in,
               (long long)p->spe, loss, on, off, rate, eta_s);
        fflush(stdout);
    }
}

static void progress_clear(const struct progress *p)
{
    if (p->bar) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

/* ---- the JSON-lines log -------------------------------------------------------------- */

/* The "step" number of a log record, or -1. */
static int64_t log_step_of(const char *line)
{
    const char *s = strstr(line, "\"step\":");
    return s ? strtoll(s + 7, NULL, 10) : -1;
}

/* Keep the records up to step `upto` (a crash may have logged steps after the
 * checkpoint), and recover the per-step losses from them. */
static void log_rewind(const char *path, int64_t upto, double *hist, int64_t cap)
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
            const char *l = strstr(line, "\"loss\":");
            if (l)
                hist[s - 1] = strtod(l + 7, NULL);
        }
    }
    free(line);
    fclose(in);
    atomic_close(out, tmp, path);
}

/* ---- evaluation ------------------------------------------------------------------------ */

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

/* Linear probe and kNN of the trained encoder, a randomly initialised one (the
 * same initialisation pretraining started from) and raw pixels, side by side. */
static void evaluate(bt_model *m, const bt_config *cfg, bt_augment *aug, const struct dataset *train,
                     const struct dataset *test, const struct args *a, FILE *log, int64_t step)
{
    bt_model *rnd = NULL;
    struct scores s[3];
    const char *names[3] = {"Barlow Twins encoder", "random-init encoder", "raw pixels"};
    const char *keys[3] = {"trained", "random", "pixels"};
    int64_t ntr = a->eval_train && a->eval_train < train->n ? a->eval_train : train->n;
    int64_t nte = a->eval_test && a->eval_test < test->n ? a->eval_test : test->n;
    int32_t threads = (int32_t)cfg_int(cfg, "threads"), rows = a->no_baselines ? 1 : 3, r;
    uint64_t seed = (uint64_t)cfg_int(cfg, "seed");
    int top5 = train->nclasses > 5;
    double t0 = now_s();
    if (!train->label || test->n == 0)
        die("evaluation needs a labelled dataset with a test split");
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

/* ---- pretrain ---------------------------------------------------------------------------- */

static volatile sig_atomic_t g_interrupted = 0;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once (the last checkpoint stays intact) */
}

static void load_split(struct dataset *d, const char *kind, const char *path, int test, int32_t channels,
                       int64_t limit)
{
    char err[DATA_ERR_CAP];
    if (data_load(d, kind, path, test, channels, limit, err) != 0)
        die("%s", err);
}

static void save_checkpoint(const char *path, struct trainer *t)
{
    if (bt_checkpoint_save(path, t->m, t->opt, t->aug) != BT_OK)
        fail("saving %s: %s", path, bt_last_error());
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
    if (!train->label || test->n == 0)
        return;
    if (probe_encode(t->m, eval_aug, train, r->knn_bank, S, &fb, err) != 0
        || probe_encode(t->m, eval_aug, test, r->knn_test, S, &fq, err) != 0
        || probe_knn(&fb, 0, &fq, 0, train->nclasses, 20, threads, top1, top5, err) != 0)
        fail("%s", err);
    feats_free(&fb);
    feats_free(&fq);
}

static int cmd_pretrain(const struct args *a)
{
    char out[PATH_CAP], ckpt[PATH_CAP + 32], cfgp[PATH_CAP + 32], runp[PATH_CAP + 32], logp[PATH_CAP + 32];
    char lossp[PATH_CAP + 32], corrp[PATH_CAP + 32], buf[256];
    struct run r;
    struct dataset train, test;
    struct trainer t;
    struct progress pg;
    bt_config *cfg = NULL;
    bt_augment *eval_aug;
    FILE *log;
    double *hist, t_epoch, t_start = now_s();
    int64_t *perm, step, step0, perm_epoch = -1, threads;
    struct sigaction sa;
    int stopped = 0;

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
    if (bt_config_create(&cfg) != BT_OK)
        fail("%s", bt_last_error());

    if (a->resume) {
        if (!file_exists(ckpt))
            die("--resume: %s does not exist", ckpt);
        if (!run_read(&r, runp))
            die("--resume: %s does not exist (was %s written by barlow pretrain?)", runp, ckpt);
        if (a->nsets || a->config || a->epochs || a->steps || a->minutes > 0 || a->batch || a->limit || a->has_seed
            || a->dataset)
            die("--resume continues the run in %s with its recorded options (%s, %s); "
                "--set, --config, --epochs, --steps, --minutes, --batch, --limit, --seed and --dataset cannot change them",
                out, cfgp, runp);
        cfg_load_file(cfg, cfgp);
        if (a->data)
            snprintf(r.data, sizeof r.data, "%s", a->data);
        if (a->eval_size)
            r.eval_size = a->eval_size; /* evaluation only: training continues exactly */
    } else {
        const char *kind;
        if (file_exists(ckpt))
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

    trainer_init(&t, cfg, r.batch, 1);
    eval_aug = make_eval_augment(cfg, r.eval_size);
    if (a->resume && bt_checkpoint_load(ckpt, t.m, t.opt, t.aug) != BT_OK)
        die_checkpoint(ckpt);
    step0 = bt_optim_step_count(t.opt);

    hist = xmalloc((size_t)r.total_steps * sizeof *hist);
    memset(hist, 0, (size_t)r.total_steps * sizeof *hist);
    if (a->resume) {
        log_rewind(logp, step0, hist, r.total_steps);
    } else {
        mkdirs(out);
        cfg_write_file(cfg, cfgp);
        run_write(&r, runp);
        remove(logp);
    }
    log = fopen(logp, "a");
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
    if (a->resume)
        printf("continuing at step %lld\n", (long long)step0);
    fflush(stdout);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    perm = xmalloc((size_t)train.n * sizeof *perm);
    pg.bar = a->progress >= 0 ? a->progress : isatty(2);
    pg.t0 = pg.last = now_s();
    pg.first_step = step0;
    pg.spe = r.steps_per_epoch;
    pg.total = r.total_steps;
    pg.batch = r.batch;
    t_epoch = now_s();
    for (step = step0; step < r.total_steps;) {
        int64_t e = step / r.steps_per_epoch, pos = step % r.steps_per_epoch;
        double loss, on, off, lr = bt_optim_lr(t.opt, 0);
        bt_status st;
        if (g_interrupted || (a->max_steps && step >= a->max_steps)) {
            stopped = 1;
            break;
        }
        if (e != perm_epoch) {
            /* the order of epoch e is a function of (seed, e) only: resuming mid-epoch replays it */
            probe_permutation(perm, train.n, (uint64_t)cfg_int(cfg, "seed"), 1, (uint64_t)e);
            perm_epoch = e;
        }
        st = trainer_step(&t, &train, perm + pos * r.batch, &loss, &on, &off);
        if (st != BT_OK) {
            progress_clear(&pg);
            if (st == BT_E_NUMERIC || !isfinite(loss))
                fail("training diverged at step %lld (loss %g): %s; the last checkpoint (%s) is intact; "
                     "try a smaller optim.lr", (long long)step + 1, loss, bt_last_error(), ckpt);
            fail("step %lld: %s", (long long)step + 1, bt_last_error());
        }
        step++;
        hist[step - 1] = loss;
        fprintf(log, "{\"event\":\"step\",\"step\":%lld,\"epoch\":%lld,\"loss\":%.17g,\"on_diag\":%.17g,"
                     "\"off_diag\":%.17g,\"lr\":%.9g,\"images_per_s\":%.1f}\n",
                (long long)step, (long long)e + 1, loss, on, off, lr,
                (double)((step - step0) * r.batch) / (now_s() - pg.t0));
        progress_step(&pg, step, loss, on, off, step == r.total_steps);
        if (step % r.steps_per_epoch == 0 || step == r.total_steps) {
            double k1, k5, secs = now_s() - t_epoch, epoch_loss = 0;
            int64_t i, first = e * r.steps_per_epoch;
            for (i = first; i < step; i++) /* the whole epoch's, also after a resume */
                epoch_loss += hist[i];
            epoch_loss /= (double)(step - first);
            epoch_knn(&t, eval_aug, &train, &test, &r, (int32_t)threads, &k1, &k5);
            save_checkpoint(ckpt, &t);
            draw_loss(lossp, hist, step, r.steps_per_epoch);
            draw_correlation(corrp, t.loss, bt_model_embed_dim(t.m));
            progress_clear(&pg);
            printf("epoch %lld done: mean loss %.6g, kNN top-1 %.2f%% (top-5 %.2f%%), %.0f s, checkpoint %s\n",
                   (long long)e + 1, epoch_loss, 100 * k1, 100 * k5, secs, ckpt);
            fflush(stdout);
            fprintf(log, "{\"event\":\"epoch\",\"step\":%lld,\"epoch\":%lld,\"loss_mean\":%.9g,\"knn_top1\":%.6f,"
                         "\"knn_top5\":%.6f,\"seconds\":%.3f}\n",
                    (long long)step, (long long)e + 1, epoch_loss, k1, k5, secs);
            fflush(log);
            t_epoch = now_s();
        }
    }
    if (stopped) {
        progress_clear(&pg);
        if (step > step0) {
            save_checkpoint(ckpt, &t);
            draw_loss(lossp, hist, step, r.steps_per_epoch);
            draw_correlation(corrp, t.loss, bt_model_embed_dim(t.m));
        }
        fprintf(log, "{\"event\":\"%s\",\"step\":%lld}\n", g_interrupted ? "interrupted" : "stopped",
                (long long)step);
        fclose(log);
        printf("%s at step %lld of %lld; checkpoint %s saved; continue with: barlow pretrain --out %s --resume\n",
               g_interrupted ? "interrupted" : "stopped (--max-steps)", (long long)step,
               (long long)r.total_steps, ckpt, out);
        trainer_free(&t);
        bt_augment_free(eval_aug);
        bt_config_free(cfg);
        data_free(&train);
        data_free(&test);
        free(perm);
        free(hist);
        return g_interrupted ? 130 : 0;
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    printf("pretraining done: %lld steps; pictures %s, %s\n", (long long)step, lossp, corrp);
    fflush(stdout);
    if (!a->no_eval)
        evaluate(t.m, cfg, eval_aug, &train, &test, a, log, step);
    fclose(log);
    trainer_free(&t);
    bt_augment_free(eval_aug);
    bt_config_free(cfg);
    data_free(&train);
    data_free(&test);
    free(perm);
    free(hist);
    return 0;
}

/* ---- eval and embed ----------------------------------------------------------------------- */

/* Model options and dataset of a checkpoint: preset, config.txt and run.txt
 * beside it, then --config, --set, --threads. */
static bt_model *load_for_eval(const struct args *a, bt_config **cfg_out, char *kind, size_t kcap, char *data,
                               size_t dcap, int64_t *limit, int64_t *eval_size)
{
    char dir[PATH_CAP], p[PATH_CAP + 32], buf[64];
    struct run r;
    bt_config *cfg = NULL;
    bt_model *m = NULL;
    int have_run;
    if (!file_exists(a->checkpoint))
        die("%s: no such checkpoint", a->checkpoint);
    dir_of(a->checkpoint, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/run.txt", dir);
    have_run = run_read(&r, p);
    snprintf(data, dcap, "%s", a->data ? a->data : have_run ? r.data : DEFAULT_FMNIST);
    snprintf(kind, kcap, "%s", a->dataset ? a->dataset : have_run && !a->data ? r.dataset : data_guess_kind(data));
    *limit = a->limit;
    *eval_size = a->eval_size ? a->eval_size : have_run ? r.eval_size : native_eval_size(kind);
    if (bt_config_create(&cfg) != BT_OK)
        fail("%s", bt_last_error());
    cfg_apply_preset(cfg, kind);
    snprintf(p, sizeof p, "%s/config.txt", dir);
    if (file_exists(p))
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

static int cmd_eval(const struct args *a)
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

static int cmd_embed(const struct args *a)
{
    char kind[32], data[PATH_CAP], err[PROBE_ERR_CAP];
    int64_t limit, eval_size;
    bt_config *cfg;
    bt_model *m = load_for_eval(a, &cfg, kind, sizeof kind, data, sizeof data, &limit, &eval_size);
    bt_augment *aug = make_eval_augment(cfg, eval_size);
    struct dataset d;
    struct feats f;
    int test = a->split && !strcmp(a->split, "test");
    load_split(&d, kind, data, test, (int32_t)cfg_int(cfg, "model.in_channels"), limit);
    if (d.n == 0)
        die("%s: no %s split", data, test ? "test" : "train");
    if (a->labels_out && !d.label)
        die("--labels: %s has no labels", data);
    if (probe_encode(m, aug, &d, d.n, bt_augment_output_size(aug, 0), &f, err) != 0)
        fail("%s", err);
    npy_write(a->out, "<f4", f.n, f.dim, f.x, sizeof(float));
    if (a->labels_out)
        npy_write(a->labels_out, "<i4", d.n, 0, d.label, sizeof(int32_t));
    printf("wrote %s: %lld x %lld float32 features of the %s split of %s%s%s\n", a->out, (long long)f.n,
           (long long)f.dim, test ? "test" : "train", data, a->labels_out ? "; labels in " : "",
           a->labels_out ? a->labels_out : "");
    feats_free(&f);
    bt_augment_free(aug);
    data_free(&d);
    bt_model_free(m);
    bt_config_free(cfg);
    return 0;
}

/* Flush subnormal floats to zero in this thread and in every thread it starts
 * later (the OpenMP workers inherit the setting), as torch.set_flush_denormal(True)
 * does. Training produces some subnormals, and each one costs the CPU a
 * microcode assist: measured on the Fashion-MNIST preset, 0.37 s per step
 * without, 0.30 s with, and the same losses to the printed digits. A program
 * that owns its process may choose this; the library leaves the host's
 * floating-point environment alone. */
static void flush_subnormals(void)
{
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) and DAZ (bit 6) */
#endif
}

int main(int argc, char **argv)
{
    struct args a;
    parse_args(argc, argv, &a);
    fast_blas_reexec(argv); /* after parsing: usage errors need no second start */
    flush_subnormals();
    if (bt_version_number() != BT_VERSION_NUMBER)
        fprintf(stderr, "%s: warning: built against libbarlow %d, running %d\n", g_cmd, BT_VERSION_NUMBER,
                bt_version_number());
    if (!strcmp(a.cmd, "pretrain"))
        return cmd_pretrain(&a);
    if (!strcmp(a.cmd, "eval"))
        return cmd_eval(&a);
    return cmd_embed(&a);
}
