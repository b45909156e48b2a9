/* args.c - the command line of `barlow`: flags into struct args, checked
 * against each other, and the help text. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: barlow pretrain [options]   Barlow Twins pretraining, then evaluation\n"
        "       barlow eval --checkpoint FILE [options]   linear probe + kNN on frozen features\n"
        "       barlow embed --checkpoint FILE --out FEATURES.npy [options]\n"
        "       barlow finetune --checkpoint FILE|--from-scratch --train-percent P [options]\n"
        "                                    fine-tune encoder + linear head on P %% of the labels\n"
        "       barlow version   the library's version and build (CPU levels, BLAS)\n"
        "       barlow help\n"
        "       mpirun -np W barlow pretrain ...   data-parallel (a `make MPI=1` build)\n"
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
        "  --resume              continue the run in --out exactly where its checkpoint stopped;\n"
        "                        with --epochs or --steps, to a new length (the learning rate\n"
        "                        then follows the schedule of a run of that length)\n"
        "  --max-steps N         stop (saving the checkpoint, as Ctrl-C does) after global step N\n"
        "  --knn-bank N --knn-test N   images of the per-epoch kNN (default 10000 / 2000)\n"
        "  --no-eval             skip the final evaluation (it runs after runs of at least\n"
        "                        " EVAL_MIN_STEPS_TEXT " steps on a labelled dataset)\n"
        "  --eval                evaluate after a shorter run too\n"
        "  --progress bar|lines  progress display (default: bar on a terminal)\n"
        "eval / embed:\n"
        "  --checkpoint FILE     a checkpoint; its model options come from the file itself,\n"
        "                        config.txt beside it, --config and --set, in that order\n"
        "  --eval-train N --eval-test N  images used for the probes (default all)\n"
        "  --eval-size N         side of the evaluation view (default: the images' own, 28 for\n"
        "                        fmnist, 32 for cifar10; aug.size for a folder)\n"
        "  --probe-epochs N --probe-lr X  linear probe schedule (default 30, 0.1)\n"
        "  --knn-k N             neighbours of kNN (default 20)\n"
        "  --no-baselines        skip the random-init encoder and raw-pixel probes\n"
        "  --split train|test    embed: which split (default train)\n"
        "  --labels FILE.npy     embed: also write the labels (int32)\n"
        "finetune (evaluate.py --weights finetune; also --data, --epochs, --batch, --seed, --set,\n"
        "          --threads, --eval-size, --limit as above):\n"
        "  --checkpoint FILE     start from a pretrain checkpoint (its model options as eval), or\n"
        "  --from-scratch        the same network from random init (the checkpoint's, given one;\n"
        "                        else the dataset preset with --config / --set)\n"
        "  --train-percent P     P %% of every class of the training split: 1, 10 or 100 (required)\n"
        "  --subset-seed N       seed choosing that subset (default 0; independent of --seed)\n"
        "  --epochs N            epochs over the subset (default 20); --batch N (default 256)\n"
        "  --lr-backbone X --lr-classifier X  SGD rates per 256 images, scaled by batch/256\n"
        "                        (default 0.005 / 0.5), momentum 0.9, cosine to 0\n"
        "  --weight-decay X      on every parameter, biases and BatchNorm included (default 0)\n"
        "  --out DIR             write log.jsonl, the fine-tuned checkpoint.safetensors,\n"
        "                        classifier.safetensors (fc.weight, fc.bias), config.txt, run.txt\n");
}

int64_t parse_int(const char *flag, const char *v, int64_t lo, int64_t hi)
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

void parse_args(int argc, char **argv, struct args *a)
{
    int i;
    memset(a, 0, sizeof *a);
    a->progress = -1;
    a->knn_bank = 10000;
    a->knn_test = 2000;
    a->knn_k = 20;
    a->probe_epochs = 30;
    a->probe_lr = 0.1;
    a->lr_backbone = 0.005;
    a->lr_classifier = 0.5;
    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    a->cmd = argv[1];
    if (!strcmp(a->cmd, "help") || !strcmp(a->cmd, "--help") || !strcmp(a->cmd, "-h")) {
        usage(stdout);
        exit(0);
    }
    if (!strcmp(a->cmd, "version") || !strcmp(a->cmd, "--version")) {
        printf("barlow %s\n%s\n", bt_version_string(), bt_build_info());
        exit(0);
    }
    if (strcmp(a->cmd, "pretrain") && strcmp(a->cmd, "eval") && strcmp(a->cmd, "embed")
        && strcmp(a->cmd, "finetune"))
        die("unknown command '%s' (pretrain, eval, embed, finetune, version or help)", a->cmd);
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
        if (FLAG("--resume") || FLAG("--eval") || FLAG("--no-eval") || FLAG("--no-baselines")
            || FLAG("--from-scratch")) {
            if (val)
                die("%s takes no value", flag);
            if (FLAG("--from-scratch"))
                a->from_scratch = 1;
            else if (FLAG("--resume"))
                a->resume = 1;
            else if (FLAG("--eval"))
                a->eval = 1;
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
        else if (FLAG("--train-percent")) {
            const char *v = VALUE();
            a->train_percent = parse_real(flag, v, 0, 100);
            if (a->train_percent != 1 && a->train_percent != 10 && a->train_percent != 100)
                die("--train-percent: '%s' is not 1, 10 or 100", v);
        } else if (FLAG("--subset-seed"))
            a->subset_seed = parse_int(flag, VALUE(), 0, 1000000000000000LL);
        else if (FLAG("--lr-backbone"))
            a->lr_backbone = parse_real(flag, VALUE(), 0, 1000);
        else if (FLAG("--lr-classifier"))
            a->lr_classifier = parse_real(flag, VALUE(), 0, 1000);
        else if (FLAG("--weight-decay"))
            a->weight_decay = parse_real(flag, VALUE(), 0, 10);
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
    if (strcmp(a->cmd, "finetune") && (a->from_scratch || a->train_percent > 0 || a->subset_seed
                                        || a->lr_backbone != 0.005 || a->lr_classifier != 0.5 || a->weight_decay))
        die("--from-scratch, --train-percent, --subset-seed, --lr-backbone, --lr-classifier and "
            "--weight-decay belong to finetune");
    if (!strcmp(a->cmd, "finetune")) {
        if (!a->checkpoint && !a->from_scratch)
            die("finetune needs --checkpoint FILE (or --from-scratch)");
        if (a->train_percent <= 0)
            die("finetune needs --train-percent 1, 10 or 100");
        if (a->resume || a->steps || a->minutes > 0 || a->max_steps)
            die("--resume, --steps, --minutes and --max-steps belong to pretrain");
        if (a->split || a->labels_out)
            die("--split and --labels belong to embed");
    } else if (strcmp(a->cmd, "pretrain") != 0) {
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
