/* fuzz_checkpoint.c - bt_checkpoint_load, bt_checkpoint_load_ex,
 * bt_checkpoint_metadata and bt_config_read_checkpoint of hostile files, against a
 * tiny real model, LARS optimizer and augmentation made once. The header's promise
 * is checked on every failed load: the model's tensors and the optimizer's step
 * count are unchanged. After a load that succeeds, the handles are restored from
 * the checkpoint written at start-up, so every input meets the same state.
 * With FUZZ_SEED_OUT=dir it writes its seed checkpoints there and exits
 * (tests/fuzz/make_seeds.sh). */
#include "fuzz_util.h"

#include <barlow.h>

static bt_model *model;
static bt_optim *optim;
static bt_augment *aug;
static const char *in_path, *orig_path;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OK(call)                                                               \
    do {                                                                       \
        bt_status st_ = (call);                                                \
        FUZZ_CHECK(st_ == BT_OK, "%s: %s", #call, bt_last_error());            \
    } while (0)

/* The small model of tests/check_checkpoint.c. */
static const char *const small[][2] = {
    {"model.arch", "resnet"}, {"model.blocks", "1-1"}, {"model.widths", "8-16"},
    {"model.stem", "cifar"},  {"model.in_channels", "1"}, {"model.projector", "32-16"},
    {"optim.kind", "lars"},   {"optim.batch_size", "256"}, {"optim.warmup_steps", "2"},
    {"optim.total_steps", "6"}, {"aug.preset", "fmnist"}, {"aug.size", "16"},
    {NULL, NULL}};

static uint64_t state_sum(void)
{
    uint64_t h = FUZZ_FNV_INIT;
    int32_t t;
    int64_t steps = bt_optim_step_count(optim);
    for (t = 0; t < bt_model_tensor_count(model); t++) {
        bt_tensor *v;
        OK(bt_model_tensor(model, t, NULL, &v, NULL));
        h = fuzz_fnv(h, bt_tensor_data(v), (size_t)bt_tensor_numel(v) * sizeof(float));
    }
    return fuzz_fnv(h, &steps, sizeof steps);
}

/* One optimizer step with made-up gradients, so the checkpoint has optimizer state. */
static void train_step(void)
{
    int32_t t;
    for (t = 0; t < bt_model_tensor_count(model); t++) {
        bt_tensor *v, *g;
        int64_t i;
        OK(bt_model_tensor(model, t, NULL, &v, &g));
        if (!g)
            continue;
        for (i = 0; i < bt_tensor_numel(g); i++)
            bt_tensor_data(g)[i] = 0.001f * (float)((i * 7 + t) % 13) + 0.1f * bt_tensor_data(v)[i];
    }
    OK(bt_optim_step(optim));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    bt_config *c;
    int i;
    (void)argc;
    (void)argv;
    fuzz_dir_make("ckpt");
    in_path = fuzz_path("in.safetensors");
    orig_path = fuzz_path("orig.safetensors");
    OK(bt_config_create(&c));
    for (i = 0; small[i][0]; i++)
        OK(bt_config_set(c, small[i][0], small[i][1]));
    OK(bt_model_create(&model, c));
    OK(bt_optim_create(&optim, c));
    OK(bt_optim_add_model(optim, model));
    OK(bt_augment_create(&aug, c));
    bt_config_free(c);
    train_step();
    OK(bt_checkpoint_save(orig_path, model, optim, aug));
    if (getenv("FUZZ_SEED_OUT")) {
        /* make_seeds.sh: this model's files, then stop */
        char p[1024];
        const char *dir = getenv("FUZZ_SEED_OUT");
        snprintf(p, sizeof p, "%s/full.safetensors", dir);
        OK(bt_checkpoint_save(p, model, optim, aug));
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        OK(bt_checkpoint_save(p, model, NULL, NULL));
        snprintf(p, sizeof p, "%s/torchvision_backbone.safetensors", dir);
        OK(bt_checkpoint_save_ex(p, model, NULL, NULL, "backbone.=", BT_SAVE_MAPPED_ONLY));
        exit(0);
    }
    return 0;
}

/* A load failed: it must say why and have changed nothing. */
static void failed(const char *what, bt_status st, uint64_t before)
{
    FUZZ_CHECK(bt_last_error()[0], "%s: status %d without a message", what, st);
    FUZZ_CHECK(state_sum() == before, "%s failed (%d: %s) but changed the model", what, st,
               bt_last_error());
}

static void restore(void)
{
    OK(bt_checkpoint_load(orig_path, model, optim, aug));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t before = state_sum();
    char buf[256], report[512];
    bt_config *c;
    bt_status st;
    int k;

    fuzz_write(in_path, data, size);

    st = bt_checkpoint_load(in_path, model, optim, aug);
    if (st != BT_OK)
        failed("bt_checkpoint_load(m, o, a)", st, before);
    else
        restore();

    st = bt_checkpoint_load(in_path, model, NULL, NULL);
    if (st != BT_OK)
        failed("bt_checkpoint_load(m)", st, before);
    else
        restore();

    /* partial and renamed: the file as it is, then a torchvision state dict */
    for (k = 0; k < 2; k++) {
        report[0] = 'x';
        st = bt_checkpoint_load_ex(in_path, model, NULL, NULL, k ? "module.=;=backbone." : NULL,
                                   BT_LOAD_PARTIAL | BT_LOAD_IGNORE_EXTRA, report, sizeof report);
        if (st != BT_OK) {
            failed("bt_checkpoint_load_ex", st, before);
            FUZZ_CHECK(report[0] == '\0', "report '%.40s' after a failure", report);
        } else {
            FUZZ_CHECK(memchr(report, '\0', sizeof report), "report not terminated");
            restore();
        }
    }

    st = bt_checkpoint_metadata(in_path, "libbarlow.model", buf, sizeof buf);
    if (st == BT_OK)
        FUZZ_CHECK(memchr(buf, '\0', sizeof buf), "metadata not terminated");
    (void)bt_checkpoint_metadata(in_path, "libbarlow.augment", buf, 4);

    OK(bt_config_create(&c));
    st = bt_config_read_checkpoint(c, in_path);
    if (st == BT_OK) {
        /* what it set reads back (not built: a hostile file may ask for resnet50) */
        st = bt_config_get(c, "model.widths", buf, sizeof buf);
        FUZZ_CHECK(st == BT_OK || st == BT_E_INVALID_ARG, "model.widths: %s", bt_last_error());
        st = bt_config_get(c, "aug.view1.size", buf, sizeof buf);
        FUZZ_CHECK(st == BT_OK, "aug.view1.size: %s", bt_last_error());
    } else {
        FUZZ_CHECK(bt_last_error()[0], "bt_config_read_checkpoint: status %d without a message", st);
        FUZZ_CHECK(bt_config_is_set(c, "model.arch") == 0, "a failed read set model.arch");
    }
    bt_config_free(c);
    return 0;
}
