/* check_alloc.c - allocation failure at every site: the fault hook of
 * common/memory.c makes the n-th allocation fail (once, or that one and every
 * later one), for n = 1, 2, ... until a whole run meets no failure. The run is
 * a host's life in stages: make a config, a model, a loss, an optimizer, an
 * augmenter and tensors; augment, forward, loss, backward, step; save over an
 * older checkpoint; load it into a second model and its optimizer; read its
 * config and metadata; take one more step on the second model; free.
 *
 * Each stage is one library call. When a call fails it must return BT_E_NOMEM
 * with a message, leave every tensor of the models it touched as it was, leave
 * the older checkpoint whole with no temporary beside it; then the same call,
 * retried with the hook off, must succeed, and the run must end bit for bit
 * where a run without failures ends. After freeing, the count of live
 * allocations is back where it was (check-asan adds LeakSanitizer's view). */
#include "barlow.h"

#include "common/internal.h"
#include "io/safetensors.h"
#include "fixtures.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 4, S = 8, D = 16, IMG = 12, MAX_SITES = 512 };

static const char *const tiny[] = {
    "model.arch", "resnet", "model.block", "basic", "model.blocks", "1-1", "model.widths", "4-8",
    "model.stem", "cifar", "model.in_channels", "1", "model.projector", "16-16", "aug.preset",
    "fmnist", "aug.size", "8", "threads", "1", NULL};

/* The state a run is compared by: every tensor of a model, values then gradients. */
struct snap {
    size_t n;
    float *v;
};

static void snap_take(struct snap *s, bt_model *m)
{
    int32_t t, k;
    size_t at = 0;
    s->n = 0;
    for (k = 0; m && k < 2; k++)
        for (t = 0; t < bt_model_tensor_count(m); t++) {
            bt_tensor *v[2];
            ck_assert_int_eq(bt_model_tensor(m, t, NULL, &v[0], &v[1]), BT_OK);
            if (!v[k])
                continue;
            s->v = realloc(s->v, (at + (size_t)bt_tensor_numel(v[k])) * sizeof *s->v);
            ck_assert_ptr_nonnull(s->v);
            memcpy(s->v + at, bt_tensor_data(v[k]), (size_t)bt_tensor_numel(v[k]) * sizeof *s->v);
            at += (size_t)bt_tensor_numel(v[k]);
        }
    s->n = at;
}

static int snap_same(const struct snap *a, const struct snap *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

/* Everything one run owns. */
struct run {
    bt_config *cfg;
    bt_model *m, *m2;
    bt_loss *l;
    bt_optim *o, *o2;
    bt_augment *a, *a2;
    bt_config *read;
    bt_comm *comm;
    bt_xent *xent;
    bt_tensor *x[2], *z[2], *dz[2], *feat, *dfeat;
    bti_st_file *file[2];
    double loss, xloss;
    char meta[64], widths[64];
};

static uint8_t pixels[N][IMG * IMG];
static const uint8_t *images[N];
static const int32_t sides[N] = {IMG, IMG, IMG, IMG};

static void run_free(struct run *r)
{
    int v;
    bt_config_free(r->cfg);
    bt_config_free(r->read);
    bt_model_free(r->m);
    bt_model_free(r->m2);
    bt_loss_free(r->l);
    bt_optim_free(r->o);
    bt_optim_free(r->o2);
    bt_augment_free(r->a);
    bt_augment_free(r->a2);
    bt_comm_free(r->comm); /* after the model and the loss that use it */
    bt_xent_free(r->xent);
    bt_tensor_free(r->feat);
    bt_tensor_free(r->dfeat);
    for (v = 0; v < 2; v++) {
        bti_st_close(r->file[v]);
        bt_tensor_free(r->x[v]);
        bt_tensor_free(r->z[v]);
        bt_tensor_free(r->dz[v]);
    }
    memset(r, 0, sizeof *r);
}

/* ---- walk 1: a training run, save and load ---------------------------------- */

/* The model stage k may change, or NULL. */
static bt_model *train_model(const struct run *r, int k)
{
    if (k == 23 || k == 26 || k == 27)
        return r->m;
    if (k == 34 || k == 39 || k == 42 || k == 43)
        return r->m2;
    return NULL;
}

/* Stage k of the run: one library call; 44 stages. */
static bt_status train_stage(struct run *r, int k)
{
    const int64_t xs[4] = {N, 1, S, S}, zs[2] = {N, D};
    const char *path = test_path("run.safetensors");
    const int second = k >= 38;
    bt_model *m = second ? r->m2 : r->m;
    switch (k) {
    case 0: return bt_config_create(&r->cfg);
    case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8: case 9: case 10:
        return bt_config_set(r->cfg, tiny[2 * (k - 1)], tiny[2 * (k - 1) + 1]);
    case 11: return bt_model_create(&r->m, r->cfg);
    case 12: return bt_loss_create(&r->l, r->cfg);
    case 13: return bt_optim_create(&r->o, r->cfg);
    case 14: return bt_optim_add_model(r->o, r->m);
    case 15: return bt_augment_create(&r->a, r->cfg);
    case 16: case 17: return bt_tensor_create(&r->x[k - 16], 4, xs);
    case 18: case 19: return bt_tensor_create(&r->z[k - 18], 2, zs);
    case 20: case 21: return bt_tensor_create(&r->dz[k - 20], 2, zs);
    case 22: case 38:
        return bt_augment_views(second ? r->a2 : r->a, N, images, sides, sides, 1, 2, r->x);
    case 23: case 39: return bt_model_forward(m, 2, (const bt_tensor *const *)r->x, r->z);
    case 24: case 40: return bt_loss_forward(r->l, r->z[0], r->z[1], &r->loss);
    case 25: case 41: return bt_loss_backward(r->l, r->dz[0], r->dz[1]);
    case 26: case 42: return bt_model_backward(m, 2, (const bt_tensor *const *)r->dz);
    case 27: case 43: return bt_optim_step(second ? r->o2 : r->o);
    case 28: return bt_checkpoint_save(path, r->m, r->o, r->a);
    /* the second model starts elsewhere, so that the load visibly replaces it */
    case 29: return bt_config_set(r->cfg, "seed", "7");
    case 30: return bt_model_create(&r->m2, r->cfg);
    case 31: return bt_optim_create(&r->o2, r->cfg);
    case 32: return bt_optim_add_model(r->o2, r->m2);
    case 33: return bt_augment_create(&r->a2, r->cfg);
    case 34: return bt_checkpoint_load(path, r->m2, r->o2, r->a2);
    case 35: return bt_config_create(&r->read);
    case 36: return bt_config_read_checkpoint(r->read, path);
    case 37: {
        bt_status st = bt_checkpoint_metadata(path, "format", r->meta, sizeof r->meta);
        return st == BT_OK ? bt_config_get(r->read, "model.widths", r->widths, sizeof r->widths)
                           : st;
    }
    }
    return BT_E_INVALID_ARG;
}

/* ---- walk 2: the other handles ------------------------------------------------ */

/* The same network with the max-pool stem, on 16 x 16 views. */
static const char *const tiny_pool[] = {
    "model.arch", "resnet", "model.block", "basic", "model.blocks", "1-1", "model.widths", "4-8",
    "model.stem", "imagenet", "model.in_channels", "1", "model.projector", "16-16", "aug.preset",
    "fmnist", "aug.size", "16", "threads", "1", NULL};
static const int32_t labels[N] = {0, 3, 1, 2};

/* One process as a communicator of size 1: the sums and gathers of one rank. */
static int32_t one_allreduce(void *user, void *buf, int64_t count, int32_t dtype)
{
    (void)user, (void)buf, (void)count, (void)dtype;
    return 0;
}

static int32_t one_allgather(void *user, const void *send, void *recv, int64_t count, int32_t dtype)
{
    (void)user;
    memcpy(recv, send, (size_t)count * (dtype == 1 ? 8 : 4)); /* dtype 1: float64 */
    return 0;
}

static bt_model *other_model(const struct run *r, int k)
{
    return k == 24 || k == 27 || k == 30 ? r->m : NULL;
}

/* 35 stages. */
static bt_status other_stage(struct run *r, int k)
{
    const int64_t xs[4] = {N, 1, 16, 16}, zs[2] = {N, D};
    int64_t fs[2] = {N, 0};
    switch (k) {
    case 0: return bt_config_create(&r->cfg);
    case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8: case 9: case 10:
        return bt_config_set(r->cfg, tiny_pool[2 * (k - 1)], tiny_pool[2 * (k - 1) + 1]);
    case 11: return bt_model_create(&r->m, r->cfg);
    case 12: return bt_comm_create(&r->comm, 0, 1, one_allreduce, one_allgather, NULL);
    case 13: return bt_model_set_comm(r->m, r->comm);
    case 14: return bt_loss_create(&r->l, r->cfg);
    case 15: return bt_loss_set_comm(r->l, r->comm);
    case 16: return bt_augment_create(&r->a, r->cfg);
    case 17: case 18: return bt_tensor_create(&r->x[k - 17], 4, xs);
    case 19: case 20: return bt_tensor_create(&r->z[k - 19], 2, zs);
    case 21: case 22: return bt_tensor_create(&r->dz[k - 21], 2, zs);
    case 23: return bt_augment_views(r->a, N, images, sides, sides, 1, 2, r->x);
    case 24: return bt_model_forward(r->m, 2, (const bt_tensor *const *)r->x, r->z);
    case 25: return bt_loss_forward(r->l, r->z[0], r->z[1], &r->loss);
    case 26: return bt_loss_backward(r->l, r->dz[0], r->dz[1]);
    case 27: return bt_model_backward(r->m, 2, (const bt_tensor *const *)r->dz);
    case 28:
        fs[1] = bt_model_feature_dim(r->m);
        return bt_tensor_create(&r->feat, 2, fs);
    case 29: return bt_augment_eval(r->a, N, images, sides, sides, 1, r->x[0]);
    case 30: return bt_model_encode(r->m, r->x[0], r->feat);
    case 31: return bt_xent_create(&r->xent, r->cfg);
    case 32: return bt_xent_forward(r->xent, r->feat, labels, &r->xloss, NULL, NULL);
    case 33:
        fs[1] = bt_model_feature_dim(r->m);
        return bt_tensor_create(&r->dfeat, 2, fs);
    case 34: return bt_xent_backward(r->xent, r->dfeat);
    }
    return BT_E_INVALID_ARG;
}

/* ---- walk 3: the private whole-file safetensors reader ---------------------------- */

static unsigned char *old_bytes;
static size_t old_size;

static bt_model *no_model(const struct run *r, int k)
{
    (void)r, (void)k;
    return NULL;
}

/* 2 stages: the older checkpoint from its file and from memory. */
static bt_status reader_stage(struct run *r, int k)
{
    if (k == 0)
        return bti_st_read(test_path("run.safetensors"), &r->file[0]);
    return bti_st_read_mem(old_bytes, old_size, "old", &r->file[1]);
}

struct walk {
    int stages, save_stage; /* save_stage: the one that overwrites the older checkpoint, or -1 */
    bt_status (*stage)(struct run *r, int k);
    bt_model *(*model)(const struct run *r, int k);
};

static const struct walk walks[] = {
    {44, 28, train_stage, train_model},
    {35, -1, other_stage, other_model},
    {2, -1, reader_stage, no_model},
};

/* What a run ends with, to compare with the run without failures. */
struct outcome {
    struct snap m, m2;
    double loss, xloss;
    char meta[64], widths[64];
    uint64_t seed, calls;
    int64_t steps;
    int tensors;
};

static void outcome_take(struct outcome *o, struct run *r)
{
    snap_take(&o->m, r->m);
    snap_take(&o->m2, r->m2);
    o->loss = r->loss;
    o->xloss = r->xloss;
    memcpy(o->meta, r->meta, sizeof o->meta);
    memcpy(o->widths, r->widths, sizeof o->widths);
    if (r->a2)
        ck_assert_int_eq(bt_augment_get_state(r->a2, &o->seed, &o->calls), BT_OK);
    o->steps = r->o2 ? bt_optim_step_count(r->o2) : -1;
    o->tensors = r->file[0] ? bti_st_count(r->file[0]) + bti_st_count(r->file[1]) : -1;
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long n;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    b = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void write_old_checkpoint(void)
{
    FILE *f = fopen(test_path("run.safetensors"), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(old_bytes, 1, old_size, f), old_size);
    ck_assert_int_eq(fclose(f), 0);
}

/* The older checkpoint is still there byte for byte, alone in its folder. */
static void check_old_checkpoint(int k, long n)
{
    size_t size;
    unsigned char *now = read_file(test_path("run.safetensors"), &size);
    DIR *d = opendir(test_dir);
    struct dirent *e;
    ck_assert_msg(size == old_size && memcmp(now, old_bytes, size) == 0,
                  "stage %d, n %ld: the failed save changed the older checkpoint", k, n);
    free(now);
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)))
        ck_assert_msg(e->d_name[0] == '.' || strcmp(e->d_name, "run.safetensors") == 0,
                      "stage %d, n %ld: the failed save left %s", k, n, e->d_name);
    closedir(d);
}

static void setup(void)
{
    int i, j;
    bt_model *m;
    const char *old_path;
    test_dir_make();
    for (i = 0; i < N; i++) {
        for (j = 0; j < IMG * IMG; j++)
            pixels[i][j] = (uint8_t)((i * 37 + j * 11 + (j / IMG) * 5) & 0xff);
        images[i] = pixels[i];
    }
    m = test_model(tiny, (const char *const[]){"seed", "3", NULL});
    old_path = test_path("old.safetensors");
    ck_assert_int_eq(bt_checkpoint_save(old_path, m, NULL, NULL), BT_OK);
    bt_model_free(m);
    old_bytes = read_file(old_path, &old_size);
    ck_assert_int_eq(remove(old_path), 0);
}

static void teardown(void)
{
    free(old_bytes);
    old_bytes = NULL;
    test_dir_remove();
}

/* Walk n = 1, 2, ... (persistent: the n-th allocation and every later one
 * fail) until a run meets no refused allocation. */
START_TEST(every_allocation_fails_cleanly)
{
    const struct walk *w = &walks[_i / 2];
    const int persistent = _i % 2;
    struct run r;
    struct outcome want, got;
    const char *sites[MAX_SITES];
    int nsites = 0, k, i;
    long n, failures = 0;

    memset(&r, 0, sizeof r);
    memset(&want, 0, sizeof want);
    write_old_checkpoint();
    for (k = 0; k < w->stages; k++)
        ck_assert_msg(w->stage(&r, k) == BT_OK, "stage %d: %s", k, bt_last_error());
    outcome_take(&want, &r);
    run_free(&r);
    if (w->save_stage >= 0) {
        ck_assert_str_eq(want.meta, "pt");
        ck_assert_str_eq(want.widths, "4-8");
    }

    for (n = 1;; n++) {
        const long live = bti_fault_live();
        int refused = 0;
        memset(&got, 0, sizeof got);
        write_old_checkpoint();
        bti_fault_arm(n, persistent);
        for (k = 0; k < w->stages; k++) {
            bt_model *m = w->model(&r, k);
            struct snap before = {0, NULL}, after = {0, NULL};
            const char *site = NULL;
            bt_status st;
            if (m)
                snap_take(&before, m);
            st = w->stage(&r, k);
            if (bti_fault_failed(&site) > 0) {
                refused = 1;
                for (i = 0; i < nsites && strcmp(sites[i], site) != 0; i++)
                    ;
                if (i == nsites && nsites < MAX_SITES)
                    sites[nsites++] = site;
            }
            if (st != BT_OK) {
                bti_fault_arm(0, 0);
                failures++;
                ck_assert_msg(site != NULL, "stage %d, n %ld: status %d with no allocation refused: %s",
                              k, n, (int)st, bt_last_error());
                ck_assert_msg(st == BT_E_NOMEM, "stage %d, n %ld (refused at %s): status %d: %s", k, n,
                              site, (int)st, bt_last_error());
                ck_assert_msg(strstr(bt_last_error(), "memory") != NULL,
                              "stage %d, n %ld (refused at %s): message '%s'", k, n, site,
                              bt_last_error());
                if (m) {
                    snap_take(&after, m);
                    ck_assert_msg(snap_same(&before, &after),
                                  "stage %d, n %ld (refused at %s): the failed call changed the model",
                                  k, n, site);
                }
                if (k == w->save_stage)
                    check_old_checkpoint(k, n);
                st = w->stage(&r, k);
                ck_assert_msg(st == BT_OK, "stage %d, n %ld: the retried call failed: %s", k, n,
                              bt_last_error());
            }
            free(before.v);
            free(after.v);
        }
        bti_fault_arm(0, 0);
        outcome_take(&got, &r);
        ck_assert_msg(snap_same(&got.m, &want.m), "n %ld: the first model differs from a clean run", n);
        ck_assert_msg(snap_same(&got.m2, &want.m2), "n %ld: the loaded model differs from a clean run",
                      n);
        ck_assert_msg(got.loss == want.loss && got.xloss == want.xloss && got.steps == want.steps && got.tensors == want.tensors && got.seed == want.seed &&
                          got.calls == want.calls,
                      "n %ld: loss, steps or augment state differ from a clean run", n);
        ck_assert_str_eq(got.meta, want.meta);
        ck_assert_str_eq(got.widths, want.widths);
        free(got.m.v);
        free(got.m2.v);
        run_free(&r);
        ck_assert_msg(bti_fault_live() == live, "n %ld: %ld allocations leaked", n,
                      bti_fault_live() - live);
        if (!refused)
            break;
    }
    free(want.m.v);
    free(want.m2.v);
    if (getenv("BT_ALLOC_STATS"))
        fprintf(stderr, "alloc walk %d (%s): %ld runs, %ld failed calls, %d sites\n", _i / 2 + 1,
                persistent ? "persistent" : "once", n, failures, nsites);
    if (getenv("BT_ALLOC_STATS") && strcmp(getenv("BT_ALLOC_STATS"), "sites") == 0)
        for (i = 0; i < nsites; i++)
            fprintf(stderr, "  %s\n", sites[i]);
    ck_assert_int_gt(failures, 0);
}
END_TEST

Suite *alloc_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("walk");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_loop_test(tc, every_allocation_fails_cleanly, 0, 6);
    suite_add_tcase(s, tc);
    return s;
}
