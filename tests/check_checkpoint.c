/* check_checkpoint.c - bt_checkpoint_save / bt_checkpoint_load: round trips, files
 * written by PyTorch, and malformed files that must leave the model unchanged. */
#include "barlow.h"
#include "golden.h"
#include "io/safetensors.h"

#include "fixtures.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static bt_model *make(const char *projector, const char *seed)
{
    static const char *const small[] = {"model.arch", "resnet", "model.blocks", "1-1",
                                        "model.widths", "8-16", "model.stem", "cifar",
                                        "model.in_channels", "1", NULL};
    const char *const more[] = {"model.projector", projector, "seed", seed, NULL};
    return test_model(small, more);
}

/* One training step so running statistics and num_batches_tracked move. */
static void step(bt_model *m)
{
    bt_tensor *x[2], *z[2];
    int64_t xs[4] = {4, 1, 12, 12}, zs[2] = {4, bt_model_embed_dim(m)};
    int v, i;
    for (v = 0; v < 2; v++) {
        ck_assert_int_eq(bt_tensor_create(&x[v], 4, xs), BT_OK);
        ck_assert_int_eq(bt_tensor_create(&z[v], 2, zs), BT_OK);
        for (i = 0; i < 4 * 144; i++)
            bt_tensor_data(x[v])[i] = (float)sin(0.1 * i + v);
    }
    ck_assert_int_eq(bt_model_forward(m, 2, (const bt_tensor *const *)x, z), BT_OK);
    for (v = 0; v < 2; v++) {
        bt_tensor_free(x[v]);
        bt_tensor_free(z[v]);
    }
}

/* 1 when every tensor of a and b is bit-identical. */
static int same_tensors(bt_model *a, bt_model *b)
{
    int32_t t;
    if (bt_model_tensor_count(a) != bt_model_tensor_count(b))
        return 0;
    for (t = 0; t < bt_model_tensor_count(a); t++) {
        bt_tensor *va, *vb;
        bt_model_tensor(a, t, NULL, &va, NULL);
        bt_model_tensor(b, t, NULL, &vb, NULL);
        if (bt_tensor_numel(va) != bt_tensor_numel(vb) ||
            memcmp(bt_tensor_data(va), bt_tensor_data(vb), (size_t)bt_tensor_numel(va) * 4) != 0)
            return 0;
    }
    return 1;
}

START_TEST(model_round_trip_is_exact)
{
    bt_model *a = make("32-16", "0"), *b = make("32-16", "1");
    bt_tensor *nbt;
    const char *name;
    step(a);
    ck_assert(!same_tensors(a, b));
    ck_assert_msg(bt_checkpoint_save(test_path("a.safetensors"), a, NULL, NULL) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_msg(bt_checkpoint_load(test_path("a.safetensors"), b, NULL, NULL) == BT_OK, "%s",
                  bt_last_error());
    ck_assert(same_tensors(a, b));
    ck_assert_int_eq(bt_model_tensor(b, 5, &name, &nbt, NULL), BT_OK);
    ck_assert_str_eq(name, "backbone.bn1.num_batches_tracked");
    ck_assert(bt_tensor_data(nbt)[0] == 2.0f);
    bt_model_free(a);
    bt_model_free(b);
}
END_TEST

START_TEST(augmentation_state_round_trips)
{
    bt_model *m = make("32-16", "0");
    bt_augment *a, *b;
    uint64_t seed, calls;
    ck_assert_int_eq(bt_augment_create(&a, NULL), BT_OK);
    ck_assert_int_eq(bt_augment_create(&b, NULL), BT_OK);
    ck_assert_int_eq(bt_augment_set_state(a, 12345678901234ULL, 77), BT_OK);
    ck_assert_int_eq(bt_checkpoint_save(test_path("s.safetensors"), m, NULL, a), BT_OK);
    ck_assert_int_eq(bt_checkpoint_load(test_path("s.safetensors"), m, NULL, b), BT_OK);
    ck_assert_int_eq(bt_augment_get_state(b, &seed, &calls), BT_OK);
    ck_assert(seed == 12345678901234ULL && calls == 77);
    /* a file without augmentation state cannot restore one */
    ck_assert_int_eq(bt_checkpoint_save(test_path("m.safetensors"), m, NULL, NULL), BT_OK);
    ck_assert_int_eq(bt_checkpoint_load(test_path("m.safetensors"), m, NULL, b), BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "augmentation"));
    bt_augment_free(a);
    bt_augment_free(b);
    bt_model_free(m);
}
END_TEST

/* Same formula as gen_model.py's pattern(). */
static double pattern(uint64_t t, uint64_t i)
{
    uint64_t h = (i * 2654435761u + t * 40503u + 12345u) & 0xffffffffu;
    h = ((h ^ (h >> 13)) * 1274126177u) & 0xffffffffu;
    h ^= h >> 16;
    return (double)h / 4294967296.0 - 0.5;
}

START_TEST(file_written_by_pytorch_loads)
{
    bt_config *c;
    bt_model *m;
    bt_tensor *x, *f;
    golden *g = golden_load("model_bottleneck.bin");
    int64_t n = (int64_t)golden_get(g, "n", NULL, NULL)[0], hw = 33, xs[4], fs[2];
    int64_t i;
    double err;
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    bt_config_set(c, "model.arch", "resnet");
    bt_config_set(c, "model.block", "bottleneck");
    bt_config_set(c, "model.blocks", "1-2");
    bt_config_set(c, "model.widths", "8-16");
    bt_config_set(c, "model.projector", "64-32");
    ck_assert_int_eq(bt_model_create(&m, c), BT_OK);
    bt_config_free(c);
    ck_assert_msg(bt_checkpoint_load("golden/model_bottleneck_torch.safetensors", m, NULL, NULL) ==
                      BT_OK,
                  "%s", bt_last_error());
    xs[0] = n;
    xs[1] = 3;
    xs[2] = xs[3] = hw;
    fs[0] = n;
    fs[1] = bt_model_feature_dim(m);
    ck_assert_int_eq(bt_tensor_create(&x, 4, xs), BT_OK);
    ck_assert_int_eq(bt_tensor_create(&f, 2, fs), BT_OK);
    for (i = 0; i < bt_tensor_numel(x); i++)
        bt_tensor_data(x)[i] = (float)(2.0 * pattern(1000, (uint64_t)i));
    ck_assert_int_eq(bt_model_encode(m, x, f), BT_OK);
    err = rel_err(bt_tensor_data(f), golden_get(g, "eval_features", NULL, NULL), fs[0] * fs[1]);
    ck_assert_msg(err <= 1e-4, "eval features after loading PyTorch's file: relative error %g", err);
    bt_tensor_free(x);
    bt_tensor_free(f);
    bt_model_free(m);
    golden_free(g);
}
END_TEST

static void expect_format_error(bt_model *m, const char *file, const char *needle)
{
    int32_t t, n = bt_model_tensor_count(m);
    float **saved = calloc((size_t)n, sizeof *saved);
    for (t = 0; t < n; t++) { /* snapshot every tensor */
        bt_tensor *v;
        bt_model_tensor(m, t, NULL, &v, NULL);
        saved[t] = malloc((size_t)bt_tensor_numel(v) * 4);
        memcpy(saved[t], bt_tensor_data(v), (size_t)bt_tensor_numel(v) * 4);
    }
    ck_assert_int_eq(bt_checkpoint_load(file, m, NULL, NULL), BT_E_FORMAT);
    ck_assert_msg(strstr(bt_last_error(), needle) != NULL, "message '%s' lacks '%s'",
                  bt_last_error(), needle);
    for (t = 0; t < n; t++) {
        bt_tensor *v;
        bt_model_tensor(m, t, NULL, &v, NULL);
        ck_assert(memcmp(saved[t], bt_tensor_data(v), (size_t)bt_tensor_numel(v) * 4) == 0);
        free(saved[t]);
    }
    free(saved);
}

START_TEST(malformed_files_leave_the_model_unchanged)
{
    bt_model *m = make("32-16", "0"), *other = make("32-8", "3"), *wide = make("32-16-4", "3");
    FILE *f;
    char *buf;
    long size;
    ck_assert_int_eq(bt_checkpoint_save(test_path("good.safetensors"), other, NULL, NULL), BT_OK);
    /* another architecture: a mis-shaped tensor, named */
    expect_format_error(m, test_path("good.safetensors"), "projector.3.weight");
    /* an extra tensor */
    ck_assert_int_eq(bt_checkpoint_save(test_path("wide.safetensors"), wide, NULL, NULL), BT_OK);
    expect_format_error(m, test_path("wide.safetensors"), "projector");
    /* a missing tensor: the smaller file lacks what this model has */
    expect_format_error(wide, test_path("good.safetensors"), "projector");
    /* truncated and corrupt copies of a good file */
    ck_assert_int_eq(bt_checkpoint_save(test_path("ok.safetensors"), m, NULL, NULL), BT_OK);
    f = fopen(test_path("ok.safetensors"), "rb");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size);
    ck_assert_int_eq(fread(buf, 1, (size_t)size, f), size);
    fclose(f);
    f = fopen(test_path("trunc.safetensors"), "wb");
    fwrite(buf, 1, (size_t)size - 100, f);
    fclose(f);
    expect_format_error(m, test_path("trunc.safetensors"), "trunc.safetensors");
    buf[12] = '#'; /* inside the JSON header */
    f = fopen(test_path("bad.safetensors"), "wb");
    fwrite(buf, 1, (size_t)size, f);
    fclose(f);
    expect_format_error(m, test_path("bad.safetensors"), "bad.safetensors");
    free(buf);
    /* unreadable */
    ck_assert_int_eq(bt_checkpoint_load(test_path("missing.safetensors"), m, NULL, NULL), BT_E_IO);
    ck_assert_int_eq(bt_checkpoint_save("/nonexistent-dir/x.safetensors", m, NULL, NULL), BT_E_IO);
    ck_assert_int_eq(access("/nonexistent-dir", F_OK), -1);
    /* misuse */
    ck_assert_int_eq(bt_checkpoint_save(NULL, m, NULL, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_checkpoint_save(test_path("x"), NULL, NULL, NULL), BT_E_MISUSE);
    ck_assert_int_eq(bt_checkpoint_load(test_path("ok.safetensors"), (bt_model *)(void *)test_dir, NULL, NULL),
                     BT_E_MISUSE);
    bt_model_free(m);
    bt_model_free(other);
    bt_model_free(wide);
}
END_TEST

static bt_optim *make_optim(bt_model *m, const char *kind)
{
    bt_config *c;
    bt_optim *o;
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "optim.kind", kind), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "optim.batch_size", "256"), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "optim.warmup_steps", "2"), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "optim.total_steps", "6"), BT_OK);
    ck_assert_int_eq(bt_optim_create(&o, c), BT_OK);
    ck_assert_msg(bt_optim_add_model(o, m) == BT_OK, "%s", bt_last_error());
    bt_config_free(c);
    return o;
}

/* Gradients that depend on the step k and on the current weights. */
static void train_step(bt_model *m, bt_optim *o, int k)
{
    int32_t t;
    for (t = 0; t < bt_model_tensor_count(m); t++) {
        bt_tensor *v, *g;
        int64_t i;
        bt_model_tensor(m, t, NULL, &v, &g);
        if (!g)
            continue;
        for (i = 0; i < bt_tensor_numel(g); i++)
            bt_tensor_data(g)[i] = (float)(0.01 * sin(0.3 * (double)i + k + t)) +
                                   0.1f * bt_tensor_data(v)[i];
    }
    ck_assert_msg(bt_optim_step(o) == BT_OK, "%s", bt_last_error());
}

static void resume_case(const char *kind)
{
    bt_model *a = make("32-16", "0"), *b = make("32-16", "9");
    bt_optim *oa = make_optim(a, kind), *ob = make_optim(b, kind);
    int k;
    for (k = 0; k < 3; k++)
        train_step(a, oa, k);
    ck_assert_int_eq(bt_checkpoint_save(test_path("r.safetensors"), a, oa, NULL), BT_OK);
    for (k = 3; k < 6; k++)
        train_step(a, oa, k);
    ck_assert_msg(bt_checkpoint_load(test_path("r.safetensors"), b, ob, NULL) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bt_optim_step_count(ob), 3);
    for (k = 3; k < 6; k++)
        train_step(b, ob, k);
    ck_assert_int_eq(bt_optim_step_count(ob), bt_optim_step_count(oa));
    ck_assert_msg(same_tensors(a, b), "%s: resumed run differs", kind);
    bt_optim_free(oa);
    bt_optim_free(ob);
    bt_model_free(a);
    bt_model_free(b);
}

START_TEST(resume_is_bit_identical)
{
    resume_case("lars");
    resume_case("sgd");
    resume_case("adamw");
}
END_TEST

START_TEST(optimizer_state_of_another_kind_is_refused)
{
    bt_model *m = make("32-16", "0");
    bt_optim *lars = make_optim(m, "lars"), *adam = make_optim(m, "adamw");
    ck_assert_int_eq(bt_checkpoint_save(test_path("o.safetensors"), m, lars, NULL), BT_OK);
    ck_assert_int_eq(bt_checkpoint_load(test_path("o.safetensors"), m, adam, NULL), BT_E_FORMAT);
    /* weights only: the optimizer tensors are skipped */
    ck_assert_int_eq(bt_checkpoint_load(test_path("o.safetensors"), m, NULL, NULL), BT_OK);
    ck_assert_int_eq(bt_checkpoint_save(test_path("w.safetensors"), m, NULL, NULL), BT_OK);
    ck_assert_int_eq(bt_checkpoint_load(test_path("w.safetensors"), m, lars, NULL), BT_E_FORMAT);
    bt_optim_free(lars);
    bt_optim_free(adam);
    bt_model_free(m);
}
END_TEST

/* LARS and SGD keep the same state tensors ("momentum"), so only the metadata tells them
 * apart: loading one's state into the other is refused before anything moves. Saves with
 * bad arguments write no file. */
START_TEST(save_and_load_arguments_are_checked)
{
    bt_model *m = make("32-16", "0"), *b = make("32-16", "1"), *b0 = make("32-16", "1");
    bt_optim *lars = make_optim(m, "lars"), *sgd = make_optim(b, "sgd");
    const char *first;
    char map[128];
    step(m);
    ck_assert_int_eq(bt_optim_step(lars), BT_OK);
    ck_assert_int_eq(bt_checkpoint_save(test_path("lars.safetensors"), m, lars, NULL), BT_OK);
    ck_assert_int_eq(bt_checkpoint_load(test_path("lars.safetensors"), b, sgd, NULL), BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "holds lars optimizer state, not sgd"));
    ck_assert(same_tensors(b, b0));
    ck_assert_int_eq(bt_optim_step_count(sgd), 0);
    ck_assert_int_eq(bt_checkpoint_load(test_path("lars.safetensors"), b, NULL, NULL), BT_OK);
    ck_assert(same_tensors(b, m)); /* the weights alone load */

    ck_assert_int_eq(bt_checkpoint_save(NULL, m, lars, NULL), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "path is NULL"));
    ck_assert_int_eq(bt_checkpoint_load(NULL, m, NULL, NULL), BT_E_MISUSE);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "path is NULL"));
    ck_assert_int_eq(bt_checkpoint_save_ex(test_path("map.safetensors"), m, lars, NULL,
                                           "backbone.=", 0), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "a renamed file holds weights only"));
    ck_assert_int_eq(bt_model_tensor(m, 0, &first, NULL, NULL), BT_OK);
    snprintf(map, sizeof map, "%s=", first);
    ck_assert_int_eq(bt_checkpoint_save_ex(test_path("map.safetensors"), m, NULL, NULL, map, 0),
                     BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "an empty name"));
    ck_assert_ptr_nonnull(strstr(bt_last_error(), first));
    ck_assert_int_eq(access(test_path("map.safetensors"), F_OK), -1);
    bt_optim_free(lars);
    bt_optim_free(sgd);
    bt_model_free(m);
    bt_model_free(b);
    bt_model_free(b0);
}
END_TEST

/* The evaluation view travels with a saved augmentation handle, so a config
 * read from the file prepares images as in training; the training views do
 * not, and a file saved without the handle (or renamed) carries none. */
START_TEST(checkpoint_describes_its_eval_view)
{
    bt_model *m = make("32-16", "0");
    bt_augment *a;
    bt_config *c;
    char buf[64];
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "aug.view1.size", "20"), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "aug.view1.mean", "0.25"), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "aug.view1.std", "0.5"), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "aug.view2.size", "12"), BT_OK);
    ck_assert_int_eq(bt_augment_create(&a, c), BT_OK);
    bt_config_free(c);
    ck_assert_int_eq(bt_checkpoint_save(test_path("v.safetensors"), m, NULL, a), BT_OK);
    ck_assert_int_eq(bt_checkpoint_save(test_path("w.safetensors"), m, NULL, NULL), BT_OK);
    ck_assert_int_eq(bt_checkpoint_save_ex(test_path("x.safetensors"), m, NULL, a, "backbone.=",
                                           BT_SAVE_MAPPED_ONLY), BT_OK);

    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_msg(bt_config_read_checkpoint(c, test_path("v.safetensors")) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bt_config_get(c, "aug.view1.size", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "20");
    ck_assert_int_eq(bt_config_get(c, "aug.view1.mean", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "0.25");
    ck_assert_int_eq(bt_config_get(c, "aug.view1.std", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "0.5");
    ck_assert_int_eq(bt_config_is_set(c, "aug.view2.size"), 0);
    ck_assert_int_eq(bt_config_get(c, "model.projector", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "32-16");
    bt_config_free(c);

    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_read_checkpoint(c, test_path("w.safetensors")), BT_OK);
    ck_assert_int_eq(bt_config_is_set(c, "aug.view1.size"), 0);
    ck_assert_int_eq(bt_checkpoint_metadata(test_path("x.safetensors"), "libbarlow.augment", buf,
                                            sizeof buf), BT_E_FORMAT);
    bt_config_free(c);
    bt_augment_free(a);
    bt_model_free(m);
}
END_TEST

/* The model's options travel in the file: a config read from it builds a
 * model the file loads into; a file without them, or with an option this
 * version refuses, fails and leaves the config as it was. */
START_TEST(checkpoint_describes_its_model)
{
    bt_model *a = make("32-16", "0"), *b;
    bt_config *c;
    char buf[64], head[4096];
    const char *keys[1] = {"libbarlow.model"}, *bad[1];
    struct bti_st_tensor t = {"x", BTI_ST_F32, 1, {1}, head, 0, 0};
    FILE *f;
    size_t n;
    int k;
    step(a);
    ck_assert_int_eq(bt_checkpoint_save(test_path("a.safetensors"), a, NULL, NULL), BT_OK);
    f = fopen(test_path("a.safetensors"), "rb");
    ck_assert_ptr_nonnull(f);
    n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = '\0';
    for (k = 0; k < (int)n; k++) /* the header is followed by binary data */
        head[k] = head[k] ? head[k] : ' ';
    ck_assert_ptr_nonnull(strstr(head, "\"libbarlow.model\":\"model.arch=resnet\\n"));
    ck_assert_ptr_nonnull(strstr(head, "model.widths=8-16\\n"));
    ck_assert_ptr_nonnull(strstr(head, "\"libbarlow.cpu_level\":\""));
    ck_assert_ptr_nonnull(strstr(head, "\"libbarlow.blas_core\":\""));
    ck_assert_int_eq(bt_checkpoint_metadata(test_path("a.safetensors"), "libbarlow.version", buf,
                                            sizeof buf), BT_OK);
    ck_assert_str_eq(buf, bt_version_string());
    ck_assert_int_eq(bt_checkpoint_metadata(test_path("a.safetensors"), "libbarlow.version", buf, 2),
                     BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_checkpoint_metadata(test_path("a.safetensors"), "nope", buf, sizeof buf),
                     BT_E_FORMAT);
    ck_assert_int_eq(bt_checkpoint_metadata(NULL, "nope", buf, sizeof buf), BT_E_MISUSE);

    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "seed", "1"), BT_OK);
    ck_assert_msg(bt_config_read_checkpoint(c, test_path("a.safetensors")) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bt_config_get(c, "model.projector", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "32-16");
    ck_assert_int_eq(bt_config_get(c, "model.stem", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "cifar");
    ck_assert_int_eq(bt_config_get(c, "seed", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "1"); /* not a model option: left alone */
    ck_assert_msg(bt_model_create(&b, c) == BT_OK, "%s", bt_last_error());
    ck_assert_msg(bt_checkpoint_load(test_path("a.safetensors"), b, NULL, NULL) == BT_OK, "%s",
                  bt_last_error());
    ck_assert(same_tensors(a, b));
    bt_model_free(b);

    /* a file PyTorch wrote says nothing of its model */
    ck_assert_int_eq(bt_config_read_checkpoint(c, "golden/model_bottleneck_torch.safetensors"),
                     BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "libbarlow.model"));
    /* an unknown option, an invalid value, a line without '=': nothing is set */
    bad[0] = "model.widths=4-4\nmodel.nope=1\n";
    ck_assert_int_eq(bti_st_write(test_path("b1.safetensors"), &t, 1, keys, bad, 1), BT_OK);
    ck_assert_int_eq(bt_config_read_checkpoint(c, test_path("b1.safetensors")), BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "model.nope"));
    bad[0] = "model.widths=4-4\nmodel.in_channels=-3";
    ck_assert_int_eq(bti_st_write(test_path("b2.safetensors"), &t, 1, keys, bad, 1), BT_OK);
    ck_assert_int_eq(bt_config_read_checkpoint(c, test_path("b2.safetensors")), BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "model.in_channels"));
    bad[0] = "model.widths=4-4\nmodel.stem";
    ck_assert_int_eq(bti_st_write(test_path("b3.safetensors"), &t, 1, keys, bad, 1), BT_OK);
    ck_assert_int_eq(bt_config_read_checkpoint(c, test_path("b3.safetensors")), BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "not name=value"));
    ck_assert_int_eq(bt_config_get(c, "model.widths", buf, sizeof buf), BT_OK);
    ck_assert_str_eq(buf, "8-16");
    ck_assert_int_eq(bt_config_read_checkpoint(c, test_path("missing.safetensors")), BT_E_IO);
    ck_assert_int_eq(bt_config_read_checkpoint(c, NULL), BT_E_MISUSE);
    bt_config_free(c);
    bt_model_free(a);
}
END_TEST

/* Writes m's tensors to file as `prefix` + name, or, with bare, the
 * backbone's without "backbone." and without their counters, plus an extra
 * fc.weight (a torchvision state dict's shape). */
static void write_renamed(bt_model *m, const char *file, const char *prefix, int bare)
{
    struct bti_st_tensor t[512];
    char names[512][96];
    int64_t counts[512];
    static float fc[4] = {1, 2, 3, 4};
    int32_t i, n = 0;
    for (i = 0; i < bt_model_tensor_count(m); i++) {
        const char *name;
        bt_tensor *v;
        bt_model_tensor(m, i, &name, &v, NULL);
        if (bare && (strncmp(name, "backbone.", 9) != 0 || strstr(name, "num_batches_tracked")))
            continue;
        snprintf(names[n], sizeof names[n], "%s%s", prefix, bare ? name + 9 : name);
        memset(&t[n], 0, sizeof t[n]);
        t[n].name = names[n];
        if (strstr(name, "num_batches_tracked")) {
            counts[n] = (int64_t)bt_tensor_data(v)[0];
            t[n].dtype = BTI_ST_I64;
            t[n].data = &counts[n];
        } else {
            t[n].dtype = BTI_ST_F32;
            ck_assert_int_eq(bt_tensor_shape(v, &t[n].ndim, t[n].shape, BTI_ST_MAX_DIMS), BT_OK);
            t[n].data = bt_tensor_data(v);
        }
        n++;
    }
    if (bare) {
        memset(&t[n], 0, sizeof t[n]);
        t[n].name = "fc.weight";
        t[n].dtype = BTI_ST_F32;
        t[n].ndim = 2;
        t[n].shape[0] = t[n].shape[1] = 2;
        t[n].data = fc;
        n++;
    }
    ck_assert_int_eq(bti_st_write(file, t, n, NULL, NULL, 0), BT_OK);
}

/* 1 when tensor i of a and b are bit-identical. */
static int same_tensor(bt_model *a, bt_model *b, int32_t i)
{
    bt_tensor *va, *vb;
    bt_model_tensor(a, i, NULL, &va, NULL);
    bt_model_tensor(b, i, NULL, &vb, NULL);
    return memcmp(bt_tensor_data(va), bt_tensor_data(vb), (size_t)bt_tensor_numel(va) * 4) == 0;
}

START_TEST(partial_and_renamed_loads)
{
    bt_model *a = make("32-16", "0"), *b = make("32-16", "1"), *b0 = make("32-16", "1");
    bt_optim *o;
    char report[4096];
    const char *name;
    int32_t i;
    step(a);
    write_renamed(a, test_path("bare.safetensors"), "", 1);
    write_renamed(a, test_path("ddp.safetensors"), "module.", 0);

    /* a bare backbone with an extra head: refused unless both flags say so */
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("bare.safetensors"), b, NULL, NULL, "=backbone.",
                                           BT_LOAD_PARTIAL, report, sizeof report), BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "'fc.weight'"));
    ck_assert_str_eq(report, "");
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("bare.safetensors"), b, NULL, NULL, "=backbone.",
                                           BT_LOAD_IGNORE_EXTRA, report, sizeof report),
                     BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "has no tensor 'projector."));
    ck_assert(same_tensors(b, b0));
    ck_assert_msg(bt_checkpoint_load_ex(test_path("bare.safetensors"), b, NULL, NULL, "=backbone.",
                                        BT_LOAD_PARTIAL | BT_LOAD_IGNORE_EXTRA, report,
                                        sizeof report) == BT_OK,
                  "%s", bt_last_error());
    for (i = 0; i < bt_model_tensor_count(b); i++) {
        bt_model_tensor(b, i, &name, NULL, NULL);
        if (strncmp(name, "backbone.", 9) == 0 && !strstr(name, "num_batches_tracked"))
            ck_assert_msg(same_tensor(a, b, i), "%s not loaded", name);
        else
            ck_assert_msg(same_tensor(b0, b, i), "%s changed", name);
    }
    ck_assert_ptr_nonnull(strstr(report, "loaded "));
    ck_assert_ptr_nonnull(strstr(report, "\nkept projector.0.weight\n"));
    ck_assert_ptr_nonnull(strstr(report, "\nkept backbone.bn1.num_batches_tracked\n"));
    ck_assert_ptr_nonnull(strstr(report, "\nskipped fc.weight\n"));
    /* a report too small is cut, and says so */
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("bare.safetensors"), b, NULL, NULL, "=backbone.",
                                           BT_LOAD_PARTIAL | BT_LOAD_IGNORE_EXTRA, report, 64),
                     BT_OK);
    ck_assert_uint_eq(strlen(report), 63);
    ck_assert_str_eq(report + 60, "...");

    /* DDP's prefix stripped: the whole model, exactly */
    ck_assert_msg(bt_checkpoint_load_ex(test_path("ddp.safetensors"), b0, NULL, NULL, "module.=", 0, NULL,
                                        0) == BT_OK,
                  "%s", bt_last_error());
    ck_assert(same_tensors(a, b0));

    /* misuse: a pair matching nothing, a malformed map, unknown flags,
     * a partial load with an optimizer, nothing matching at all */
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("ddp.safetensors"), b, NULL, NULL,
                                           "module.=;other.=", 0, NULL, 0),
                     BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "'other.='"));
    /* two file tensors onto one model tensor */
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("ddp.safetensors"), b, NULL, NULL,
                                           "module.backbone.conv1.=backbone.bn1.;module.=", 0, NULL,
                                           0),
                     BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "both load as"));
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("ddp.safetensors"), b, NULL, NULL, "module.", 0,
                                           NULL, 0),
                     BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("ddp.safetensors"), b, NULL, NULL, NULL, 4, NULL, 0),
                     BT_E_INVALID_ARG);
    o = make_optim(b, "lars");
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("bare.safetensors"), b, o, NULL, "=backbone.",
                                           BT_LOAD_PARTIAL, NULL, 0),
                     BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_checkpoint_load_ex(test_path("bare.safetensors"), b, NULL, NULL, NULL,
                                           BT_LOAD_PARTIAL | BT_LOAD_IGNORE_EXTRA, NULL, 0),
                     BT_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "no tensor of"));
    bt_optim_free(o);
    bt_model_free(a);
    bt_model_free(b);
    bt_model_free(b0);
}
END_TEST

static char *slurp(const char *file, long *len)
{
    FILE *f = fopen(file, "rb");
    char *buf;
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    rewind(f);
    buf = malloc((size_t)*len);
    ck_assert_uint_eq(fread(buf, 1, (size_t)*len, f), (size_t)*len);
    fclose(f);
    return buf;
}

/* A ResNet-18 backbone out in torchvision's names (no prefix, no projector,
 * int64 counters), into another model and out again: the same bytes. */
START_TEST(backbone_export_round_trips)
{
    bt_config *c;
    bt_model *a, *b;
    bti_st_file *f;
    char *one, *two;
    long l1, l2;
    int i;
    ck_assert_int_eq(bt_config_create(&c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "model.arch", "resnet18"), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "model.projector", "64-32"), BT_OK);
    ck_assert_int_eq(bt_model_create(&a, c), BT_OK);
    ck_assert_int_eq(bt_config_set(c, "seed", "1"), BT_OK);
    ck_assert_int_eq(bt_model_create(&b, c), BT_OK);
    bt_config_free(c);
    ck_assert_msg(bt_checkpoint_save_ex(test_path("tv.safetensors"), a, NULL, NULL, "backbone.=",
                                        BT_SAVE_MAPPED_ONLY) == BT_OK,
                  "%s", bt_last_error());
    ck_assert_int_eq(bti_st_read(test_path("tv.safetensors"), &f), BT_OK);
    ck_assert_ptr_nonnull(bti_st_find(f, "conv1.weight"));
    ck_assert_ptr_nonnull(bti_st_find(f, "layer4.1.bn2.running_var"));
    ck_assert_int_eq(bti_st_find(f, "layer1.0.bn1.num_batches_tracked")->dtype, BTI_ST_I64);
    for (i = 0; i < bti_st_count(f); i++)
        ck_assert_msg(strncmp(bti_st_get(f, i)->name, "backbone.", 9) != 0 &&
                          strncmp(bti_st_get(f, i)->name, "projector.", 10) != 0,
                      "%s", bti_st_get(f, i)->name);
    ck_assert_int_eq(bti_st_count(f), 120); /* torchvision's resnet18: 122 with fc.weight, fc.bias */
    ck_assert_ptr_null(bti_st_meta(f, "libbarlow.model"));
    bti_st_close(f);
    ck_assert_msg(bt_checkpoint_load_ex(test_path("tv.safetensors"), b, NULL, NULL, "=backbone.",
                                        BT_LOAD_PARTIAL, NULL, 0) == BT_OK,
                  "%s", bt_last_error());
    ck_assert_int_eq(bt_checkpoint_save_ex(test_path("tv2.safetensors"), b, NULL, NULL, "backbone.=",
                                           BT_SAVE_MAPPED_ONLY),
                     BT_OK);
    one = slurp(test_path("tv.safetensors"), &l1);
    two = slurp(test_path("tv2.safetensors"), &l2);
    ck_assert(l1 == l2 && memcmp(one, two, (size_t)l1) == 0);
    free(one);
    free(two);
    /* misuse: an optimizer with a map, unknown flags, a pair matching nothing */
    ck_assert_int_eq(bt_checkpoint_save_ex(test_path("x.safetensors"), a, NULL, NULL, "head.=",
                                           BT_SAVE_MAPPED_ONLY),
                     BT_E_INVALID_ARG);
    ck_assert_int_eq(bt_checkpoint_save_ex(test_path("x.safetensors"), a, NULL, NULL, NULL, 2),
                     BT_E_INVALID_ARG);
    ck_assert_int_eq(access(test_path("x.safetensors"), F_OK), -1);
    bt_model_free(a);
    bt_model_free(b);
}
END_TEST

/* Loads read the data by pread, other dtypes in chunks of BTI_ST_STREAM_CHUNK
 * bytes: a tensor of F64 over several chunks loads exactly, and a value not
 * exact in float32 in its third chunk is named by its index in the tensor,
 * the model unchanged. */
START_TEST(streamed_loads_convert_across_chunks)
{
    bt_model *a = make("2200-2200", "0"), *b = make("2200-2200", "1"), *b0 = make("2200-2200", "1");
    struct bti_st_tensor t[512];
    static int64_t counts[512];
    double *wide[512];
    int32_t i, n = bt_model_tensor_count(a), big = -1;
    int64_t k, elems = 0;
    char want[64];
    ck_assert_int_le(n, 512);
    for (i = 0; i < n; i++) {
        const char *name;
        bt_tensor *v;
        bt_model_tensor(a, i, &name, &v, NULL);
        memset(&t[i], 0, sizeof t[i]);
        t[i].name = name;
        wide[i] = NULL;
        if (strstr(name, "num_batches_tracked")) {
            t[i].dtype = BTI_ST_I64;
            t[i].data = &counts[i];
            continue;
        }
        t[i].dtype = BTI_ST_F64;
        ck_assert_int_eq(bt_tensor_shape(v, &t[i].ndim, t[i].shape, BTI_ST_MAX_DIMS), BT_OK);
        wide[i] = malloc((size_t)bt_tensor_numel(v) * sizeof(double));
        for (k = 0; k < bt_tensor_numel(v); k++)
            wide[i][k] = bt_tensor_data(v)[k];
        t[i].data = wide[i];
        if (bt_tensor_numel(v) > elems) {
            elems = bt_tensor_numel(v);
            big = i;
        }
    }
    /* 2200 x 2200 doubles: 37 MiB, two chunks and a part */
    ck_assert_int_gt(elems * 8, (int64_t)(2 * BTI_ST_STREAM_CHUNK));
    ck_assert_int_eq(bti_st_write(test_path("f64.safetensors"), t, n, NULL, NULL, 0), BT_OK);
    ck_assert_msg(bt_checkpoint_load(test_path("f64.safetensors"), b, NULL, NULL) == BT_OK, "%s",
                  bt_last_error());
    ck_assert(same_tensors(a, b));
    k = (int64_t)(2 * BTI_ST_STREAM_CHUNK / 8) + 5;
    wide[big][k] = 0.1; /* not a float32 */
    ck_assert_int_eq(bti_st_write(test_path("f64.safetensors"), t, n, NULL, NULL, 0), BT_OK);
    ck_assert_int_eq(bt_checkpoint_load(test_path("f64.safetensors"), b0, NULL, NULL), BT_E_FORMAT);
    snprintf(want, sizeof want, "element %lld = 0.1", (long long)k);
    ck_assert_msg(strstr(bt_last_error(), want) != NULL, "%s", bt_last_error());
    ck_assert(!same_tensors(a, b0)); /* b0 kept its own initialisation */
    for (i = 0; i < n; i++)
        free(wide[i]);
    bt_model_free(a);
    bt_model_free(b);
    bt_model_free(b0);
}
END_TEST

Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, model_round_trip_is_exact);
    tcase_add_test(tc, augmentation_state_round_trips);
    tcase_add_test(tc, file_written_by_pytorch_loads);
    tcase_add_test(tc, malformed_files_leave_the_model_unchanged);
    tcase_add_test(tc, resume_is_bit_identical);
    tcase_add_test(tc, optimizer_state_of_another_kind_is_refused);
    tcase_add_test(tc, save_and_load_arguments_are_checked);
    tcase_add_test(tc, checkpoint_describes_its_model);
    tcase_add_test(tc, checkpoint_describes_its_eval_view);
    tcase_add_test(tc, partial_and_renamed_loads);
    tcase_add_test(tc, backbone_export_round_trips);
    tcase_add_test(tc, streamed_loads_convert_across_chunks);
    suite_add_tcase(s, tc);
    return s;
}
