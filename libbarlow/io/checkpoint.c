/* checkpoint.c - bt_checkpoint_save / bt_checkpoint_load: model tensors, optimizer
 * state and augmentation RNG state in one safetensors file (docs/checkpoint.md).
 *
 * Loading validates the whole file against the handles before changing any of
 * them, so a bad file leaves model, optimizer and augmentation as they were. */
#include "common/internal.h"

#include "common/cpu.h"
#include "model/model.h"
#include "optim/optim.h"
#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_META 12

static int ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

static int is_count(const char *name) { return ends_with(name, "num_batches_tracked"); }

/* The handles' tensors in one list: model tensors, then optimizer state. */
struct entries {
    int n;
    const char **name;
    bt_tensor **value;
};

static bt_status collect(bt_model *m, bt_optim *o, struct entries *e, const char *fn)
{
    int nm = bti_model_tensor_count(m), no = o ? bti_optim_state_count(o) : 0, i;
    e->n = nm + no;
    e->name = calloc((size_t)e->n + 1, sizeof *e->name);
    e->value = calloc((size_t)e->n + 1, sizeof *e->value);
    if (!e->name || !e->value) {
        free(e->name);
        free(e->value);
        return bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
    }
    for (i = 0; i < nm; i++) {
        e->name[i] = bti_model_tensor_name(m, i);
        e->value[i] = bti_model_tensor_value(m, i);
    }
    for (i = 0; i < no; i++)
        bti_optim_state(o, i, &e->name[nm + i], &e->value[nm + i]);
    return BT_OK;
}

static void release(struct entries *e)
{
    free(e->name);
    free(e->value);
}

static bt_status check_handles(const char *fn, bt_model *m, bt_optim *o, bt_augment *a)
{
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st == BT_OK && o)
        st = bti_check(o, BTI_KIND_OPTIM, fn, "o");
    if (st == BT_OK && a)
        st = bti_check(a, BTI_KIND_AUGMENT, fn, "a");
    return st;
}

BT_API bt_status bt_checkpoint_save(const char *path, bt_model *m, bt_optim *o, bt_augment *a)
{
    static const char *fn = "bt_checkpoint_save";
    struct entries e;
    struct bti_st_tensor *t = NULL;
    int64_t *counts = NULL;
    const char *keys[MAX_META], *vals[MAX_META];
    char step[32], rng[64];
    int i, nmeta = 0, ncount = 0;
    bt_status st = check_handles(fn, m, o, a);
    if (st != BT_OK)
        return st;
    if (!path)
        return bti_fail(BT_E_MISUSE, "%s: path is NULL", fn);
    if ((st = collect(m, o, &e, fn)) != BT_OK)
        return st;
    t = calloc((size_t)e.n + 1, sizeof *t);
    counts = calloc((size_t)e.n + 1, sizeof *counts);
    if (!t || !counts) {
        st = bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    for (i = 0; i < e.n; i++) {
        bt_tensor *v = e.value[i];
        t[i].name = e.name[i];
        if (is_count(e.name[i])) { /* PyTorch keeps this as an int64 scalar */
            counts[ncount] = (int64_t)v->data[0];
            t[i].dtype = BTI_ST_I64;
            t[i].ndim = 0;
            t[i].data = &counts[ncount++];
        } else {
            t[i].dtype = BTI_ST_F32;
            t[i].ndim = v->ndim;
            memcpy(t[i].shape, v->shape, (size_t)v->ndim * sizeof v->shape[0]);
            t[i].data = v->data;
        }
    }
    keys[nmeta] = "format";
    vals[nmeta++] = "pt";
    keys[nmeta] = "libbarlow.version";
    vals[nmeta++] = bt_version_string();
    /* what the file holds, so it can be loaded without its run's config, and
     * where it was trained (docs/checkpoint.md) */
    keys[nmeta] = "libbarlow.model";
    vals[nmeta++] = bti_model_options(m);
    keys[nmeta] = "libbarlow.cpu_level";
    vals[nmeta++] = bti_cpu_name(bti_model_level(m));
    keys[nmeta] = "libbarlow.blas_core";
    vals[nmeta++] = bti_build_blas_core();
    if (o) {
        snprintf(step, sizeof step, "%" PRId64, bt_optim_step_count(o));
        keys[nmeta] = "libbarlow.step";
        vals[nmeta++] = step;
        keys[nmeta] = "libbarlow.optim";
        vals[nmeta++] = bti_optim_kind_name(o);
    }
    if (a) {
        uint64_t seed = 0, calls = 0;
        bt_augment_get_state(a, &seed, &calls);
        snprintf(rng, sizeof rng, "%" PRIu64 " %" PRIu64, seed, calls);
        keys[nmeta] = "libbarlow.rng";
        vals[nmeta++] = rng;
    }
    st = bti_st_write(path, t, e.n, keys, vals, nmeta);
done:
    free(t);
    free(counts);
    release(&e);
    return st;
}

static bt_status parse_u64_pair(const char *s, uint64_t *a, uint64_t *b)
{
    char *end;
    *a = strtoull(s, &end, 10);
    if (end == s || *end != ' ')
        return BT_E_FORMAT;
    s = end + 1;
    *b = strtoull(s, &end, 10);
    return (end == s || *end) ? BT_E_FORMAT : BT_OK;
}

BT_API bt_status bt_checkpoint_load(const char *path, bt_model *m, bt_optim *o, bt_augment *a)
{
    static const char *fn = "bt_checkpoint_load";
    struct entries e;
    bti_st_file *f = NULL;
    const char *meta_step = NULL, *meta_rng = NULL;
    int64_t step = 0;
    uint64_t seed = 0, calls = 0;
    int i, known;
    char sa[96], sb[96];
    bt_status st = check_handles(fn, m, o, a);
    if (st != BT_OK)
        return st;
    if (!path)
        return bti_fail(BT_E_MISUSE, "%s: path is NULL", fn);
    if ((st = collect(m, o, &e, fn)) != BT_OK)
        return st;
    if ((st = bti_st_read(path, &f)) != BT_OK)
        goto done;

    /* 1. Validate everything. */
    for (i = 0; i < e.n; i++) {
        const struct bti_st_tensor *t = bti_st_find(f, e.name[i]);
        bt_tensor *v = e.value[i];
        int k, same = 1;
        if (!t) {
            st = bti_fail(BT_E_FORMAT, "%s: %s has no tensor '%s'", fn, path, e.name[i]);
            goto done;
        }
        if (is_count(e.name[i])) {
            same = t->numel == 1;
        } else {
            same = t->ndim == v->ndim;
            for (k = 0; same && k < v->ndim; k++)
                same = t->shape[k] == v->shape[k];
        }
        if (!same) {
            st = bti_fail(BT_E_FORMAT, "%s: %s: tensor '%s' is %s in the file but %s here", fn,
                          path, e.name[i], bti_dims_str(t->ndim, t->shape, sa, sizeof sa),
                          bti_shape_str(v, sb, sizeof sb));
            goto done;
        }
        if ((st = bti_st_to_f32(t, NULL, path)) != BT_OK)
            goto done;
    }
    known = e.n;
    for (i = 0; i < bti_st_count(f); i++) {
        const struct bti_st_tensor *t = bti_st_get(f, i);
        int k, found = 0;
        if (!o && strncmp(t->name, "optim.", 6) == 0)
            continue; /* weights only were asked for */
        for (k = 0; k < known && !found; k++)
            found = strcmp(e.name[k], t->name) == 0;
        if (!found) {
            st = bti_fail(BT_E_FORMAT, "%s: %s has a tensor '%s' this model does not have", fn,
                          path, t->name);
            goto done;
        }
    }
    if (o) {
        char *end;
        meta_step = bti_st_meta(f, "libbarlow.step");
        if (!meta_step || (step = strtoll(meta_step, &end, 10), end == meta_step || *end || step < 0)) {
            st = bti_fail(BT_E_FORMAT, "%s: %s holds no optimizer step (metadata libbarlow.step)",
                          fn, path);
            goto done;
        }
        if (!bti_st_meta(f, "libbarlow.optim") ||
            strcmp(bti_st_meta(f, "libbarlow.optim"), bti_optim_kind_name(o)) != 0) {
            st = bti_fail(BT_E_FORMAT, "%s: %s holds %s optimizer state, not %s", fn, path,
                          bti_st_meta(f, "libbarlow.optim") ? bti_st_meta(f, "libbarlow.optim")
                                                             : "no",
                          bti_optim_kind_name(o));
            goto done;
        }
    }
    if (a) {
        meta_rng = bti_st_meta(f, "libbarlow.rng");
        if (!meta_rng || parse_u64_pair(meta_rng, &seed, &calls) != BT_OK) {
            st = bti_fail(BT_E_FORMAT, "%s: %s holds no augmentation state (metadata libbarlow.rng)",
                          fn, path);
            goto done;
        }
    }

    /* 2. Apply: nothing below can fail. */
    for (i = 0; i < e.n; i++)
        bti_st_to_f32(bti_st_find(f, e.name[i]), e.value[i]->data, path);
    if (o)
        bti_optim_set_step(o, step);
    if (a)
        bt_augment_set_state(a, seed, calls);
done:
    bti_st_close(f);
    release(&e);
    return st;
}

BT_API bt_status bt_config_read_checkpoint(bt_config *c, const char *path)
{
    static const char *fn = "bt_config_read_checkpoint";
    bti_st_file *f = NULL;
    const char *options;
    char what[300];
    bt_status st = bti_check(c, BTI_KIND_CONFIG, fn, "c");
    if (st != BT_OK)
        return st;
    if (!path)
        return bti_fail(BT_E_MISUSE, "%s: path is NULL", fn);
    if ((st = bti_st_read(path, &f)) != BT_OK)
        return st;
    options = bti_st_meta(f, "libbarlow.model");
    if (!options) {
        st = bti_fail(BT_E_FORMAT,
                      "%s: %s holds no model options (metadata libbarlow.model; a file saved "
                      "by an older libbarlow needs the config it was trained with)",
                      fn, path);
    } else {
        snprintf(what, sizeof what, "%s, metadata libbarlow.model", path);
        st = bti_config_set_lines(c, options, fn, what);
    }
    bti_st_close(f);
    return st;
}
