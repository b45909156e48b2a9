/* checkpoint.c - bt_checkpoint_save / bt_checkpoint_load: model tensors, optimizer
 * state and augmentation RNG state in one safetensors file (docs/checkpoint.md).
 *
 * Loading validates the whole file against the handles before changing any of
 * them, so a bad file leaves model, optimizer and augmentation as they were. */
#include "common/internal.h"

#include "common/cpu.h"
#include "model/model.h"
#include "augment/augment.h"
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
    e->name = bti_calloc((size_t)e->n + 1, sizeof *e->name);
    e->value = bti_calloc((size_t)e->n + 1, sizeof *e->value);
    if (!e->name || !e->value) {
        bti_free(e->name);
        bti_free(e->value);
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
    bti_free(e->name);
    bti_free(e->value);
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

/* ---- prefix maps ------------------------------------------------------------ */

#define MAP_PAIRS 8
#define NAME_MAX_LEN 192 /* a tensor name under a map */

/* A prefix map "from=to;from=to": a file tensor's name that starts with the
 * first matching `from` has it replaced by `to` ("" matches every name). */
struct prefix_map {
    int n;
    char from[MAP_PAIRS][64], to[MAP_PAIRS][64];
    int used[MAP_PAIRS];
};

static bt_status parse_map(const char *text, struct prefix_map *pm, const char *fn)
{
    const char *p = text;
    memset(pm, 0, sizeof *pm);
    while (text && *p) {
        const char *end = strchr(p, ';'), *eq;
        size_t len = end ? (size_t)(end - p) : strlen(p);
        eq = memchr(p, '=', len);
        if (!eq || pm->n == MAP_PAIRS || (size_t)(eq - p) >= sizeof pm->from[0] ||
            len - (size_t)(eq - p) - 1 >= sizeof pm->to[0])
            return bti_fail(BT_E_INVALID_ARG,
                            "%s: prefix_map '%s': want up to %d pairs 'from=to' separated by ';', "
                            "each side under 64 bytes",
                            fn, text, MAP_PAIRS);
        memcpy(pm->from[pm->n], p, (size_t)(eq - p));
        memcpy(pm->to[pm->n], eq + 1, len - (size_t)(eq - p) - 1);
        pm->n++;
        p = end ? end + 1 : p + len;
    }
    return BT_OK;
}

/* `name` under pm (into buf), or NULL when it does not fit; *hit tells
 * whether a pair matched. Optimizer state keeps its names. */
static const char *map_name(struct prefix_map *pm, const char *name, char *buf, size_t cap,
                            int *hit)
{
    int k;
    *hit = 0;
    if (strncmp(name, "optim.", 6) == 0)
        return name;
    for (k = 0; k < pm->n; k++) {
        size_t fl = strlen(pm->from[k]);
        if (strncmp(name, pm->from[k], fl) == 0) {
            pm->used[k] = *hit = 1;
            return snprintf(buf, cap, "%s%s", pm->to[k], name + fl) < (int)cap ? buf : NULL;
        }
    }
    return name;
}

/* BT_E_INVALID_ARG naming the first pair of pm that matched nothing. */
static bt_status unused_pair(const struct prefix_map *pm, const char *path, const char *fn)
{
    int k;
    for (k = 0; k < pm->n; k++)
        if (!pm->used[k])
            return bti_fail(BT_E_INVALID_ARG, "%s: prefix_map pair '%s=%s' matches no tensor of %s",
                            fn, pm->from[k], pm->to[k], path);
    return BT_OK;
}

static bt_status save(const char *path, bt_model *m, bt_optim *o, bt_augment *a, const char *map,
                      uint32_t flags, const char *fn)
{
    struct entries e;
    struct prefix_map pm;
    struct bti_st_tensor *t = NULL;
    int64_t *counts = NULL;
    char(*names)[NAME_MAX_LEN] = NULL;
    const char *keys[MAX_META], *vals[MAX_META];
    char step[32], rng[64];
    int i, n = 0, nmeta = 0, ncount = 0;
    bt_status st = check_handles(fn, m, o, a);
    if (st != BT_OK)
        return st;
    if (!path)
        return bti_fail(BT_E_MISUSE, "%s: path is NULL", fn);
    if (flags & ~(uint32_t)BT_SAVE_MAPPED_ONLY)
        return bti_fail(BT_E_INVALID_ARG, "%s: flags 0x%x has bits other than BT_SAVE_MAPPED_ONLY",
                        fn, (unsigned)flags);
    if (map && o)
        return bti_fail(BT_E_INVALID_ARG, "%s: a renamed file holds weights only; o must be NULL",
                        fn);
    if ((st = parse_map(map, &pm, fn)) != BT_OK)
        return st;
    if ((st = collect(m, o, &e, fn)) != BT_OK)
        return st;
    t = bti_calloc((size_t)e.n + 1, sizeof *t);
    counts = bti_calloc((size_t)e.n + 1, sizeof *counts);
    names = bti_calloc((size_t)e.n + 1, sizeof *names);
    if (!t || !counts || !names) {
        st = bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    for (i = 0; i < e.n; i++) {
        bt_tensor *v = e.value[i];
        int hit;
        const char *name = map_name(&pm, e.name[i], names[i], sizeof names[i], &hit);
        if ((flags & BT_SAVE_MAPPED_ONLY) && !hit)
            continue;
        if (!name || !*name) {
            st = bti_fail(BT_E_INVALID_ARG, "%s: prefix_map makes tensor '%s' %s", fn, e.name[i],
                          name ? "an empty name" : "a name too long");
            goto done;
        }
        t[n].name = name;
        if (is_count(e.name[i])) { /* PyTorch keeps this as an int64 scalar */
            counts[ncount] = (int64_t)v->data[0];
            t[n].dtype = BTI_ST_I64;
            t[n].ndim = 0;
            t[n].data = &counts[ncount++];
        } else {
            t[n].dtype = BTI_ST_F32;
            t[n].ndim = v->ndim;
            memcpy(t[n].shape, v->shape, (size_t)v->ndim * sizeof v->shape[0]);
            t[n].data = v->data;
        }
        n++;
    }
    if ((st = unused_pair(&pm, "the model", fn)) != BT_OK)
        goto done;
    keys[nmeta] = "format";
    vals[nmeta++] = "pt";
    keys[nmeta] = "libbarlow.version";
    vals[nmeta++] = bt_version_string();
    /* what the file holds, so it can be loaded without its run's config (not
     * under other names), and where it was trained (docs/checkpoint.md) */
    if (!map) {
        keys[nmeta] = "libbarlow.model";
        vals[nmeta++] = bti_model_options(m);
    }
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
        if (!map) {
            keys[nmeta] = "libbarlow.augment";
            vals[nmeta++] = bti_augment_eval_options(a);
        }
    }
    st = bti_st_write(path, t, n, keys, vals, nmeta);
done:
    bti_free(t);
    bti_free(counts);
    bti_free(names);
    release(&e);
    return st;
}

BT_API bt_status bt_checkpoint_save(const char *path, bt_model *m, bt_optim *o, bt_augment *a)
{
    return save(path, m, o, a, NULL, 0, "bt_checkpoint_save");
}

BT_API bt_status bt_checkpoint_save_ex(const char *path, bt_model *m, bt_optim *o, bt_augment *a,
                                       const char *prefix_map, uint32_t flags)
{
    return save(path, m, o, a, prefix_map, flags, "bt_checkpoint_save_ex");
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

/* ---- loading --------------------------------------------------------------- */

/* Appends a line to the report; a report that is full ends in "...". */
static void report_line(char *report, size_t cap, const char *what, const char *name)
{
    size_t len = strlen(report);
    if (len + 4 >= cap)
        return;
    if ((size_t)snprintf(report + len, cap - len, "%s %s\n", what, name) >= cap - len)
        memcpy(report + cap - 4, "...", 4);
}

static bt_status load(const char *path, bt_model *m, bt_optim *o, bt_augment *a, const char *map,
                      uint32_t flags, char *report, size_t rcap, const char *fn)
{
    struct entries e;
    struct prefix_map pm;
    bti_st_file *f = NULL;
    const struct bti_st_tensor **src = NULL; /* per model entry: its file tensor, or NULL */
    char *extra = NULL;                      /* per file tensor: skipped (BT_LOAD_IGNORE_EXTRA) */
    void *scratch = NULL;                    /* dtype conversions while applying */
    size_t scratch_bytes = 0;
    const char *meta_step = NULL, *meta_rng = NULL;
    int64_t step = 0;
    uint64_t seed = 0, calls = 0;
    int i, k, known, nfile, loaded = 0, kept = 0, skipped = 0;
    char sa[96], sb[96], mapped[NAME_MAX_LEN];
    bt_status st = check_handles(fn, m, o, a);
    if (st != BT_OK)
        return st;
    if (!path)
        return bti_fail(BT_E_MISUSE, "%s: path is NULL", fn);
    if (flags & ~(uint32_t)(BT_LOAD_PARTIAL | BT_LOAD_IGNORE_EXTRA))
        return bti_fail(BT_E_INVALID_ARG, "%s: flags 0x%x has bits other than BT_LOAD_PARTIAL and "
                        "BT_LOAD_IGNORE_EXTRA", fn, (unsigned)flags);
    if ((flags & BT_LOAD_PARTIAL) && o)
        return bti_fail(BT_E_INVALID_ARG, "%s: BT_LOAD_PARTIAL loads weights only; o must be NULL",
                        fn);
    if ((st = parse_map(map, &pm, fn)) != BT_OK)
        return st;
    if ((st = collect(m, o, &e, fn)) != BT_OK)
        return st;
    if (report && rcap)
        report[0] = '\0';
    if ((st = bti_st_open(path, &f)) != BT_OK) /* the header; the data stays in the file */
        goto done;
    nfile = bti_st_count(f);
    src = bti_calloc((size_t)e.n + 1, sizeof *src);
    extra = bti_calloc((size_t)nfile + 1, 1);
    if (!src || !extra) {
        st = bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
        goto done;
    }

    /* 1. Match and validate everything. */
    known = e.n;
    for (i = 0; i < nfile; i++) {
        const struct bti_st_tensor *t = bti_st_get(f, i);
        int hit, found = -1;
        const char *name;
        if (!o && strncmp(t->name, "optim.", 6) == 0)
            continue; /* weights only were asked for */
        name = map_name(&pm, t->name, mapped, sizeof mapped, &hit);
        for (k = 0; name && k < known && found < 0; k++)
            if (strcmp(e.name[k], name) == 0)
                found = k;
        if (found >= 0 && src[found]) {
            st = bti_fail(BT_E_FORMAT, "%s: %s: tensors '%s' and '%s' both load as '%s'", fn, path,
                          src[found]->name, t->name, e.name[found]);
            goto done;
        } else if (found >= 0) {
            src[found] = t;
        } else if (flags & BT_LOAD_IGNORE_EXTRA) {
            extra[i] = 1;
            skipped++;
        } else {
            st = bti_fail(BT_E_FORMAT, "%s: %s has a tensor '%s'%s%s%s this model does not have",
                          fn, path, t->name, hit ? " (as '" : "",
                          hit ? (name ? name : "a name too long") : "", hit ? "')" : "");
            goto done;
        }
    }
    if ((st = unused_pair(&pm, path, fn)) != BT_OK)
        goto done;
    for (i = 0; i < e.n; i++) {
        const struct bti_st_tensor *t = src[i];
        bt_tensor *v = e.value[i];
        int same = 1;
        if (!t) {
            if (!(flags & BT_LOAD_PARTIAL) && !(map && is_count(e.name[i]))) {
                st = bti_fail(BT_E_FORMAT, "%s: %s has no tensor '%s'", fn, path, e.name[i]);
                goto done;
            }
            kept++;
            continue;
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
                          path, t->name, bti_dims_str(t->ndim, t->shape, sa, sizeof sa),
                          bti_shape_str(v, sb, sizeof sb));
            goto done;
        }
        if ((st = bti_st_load_f32(f, t, NULL, NULL)) != BT_OK)
            goto done;
        if (bti_st_load_scratch(t) > scratch_bytes)
            scratch_bytes = bti_st_load_scratch(t);
        loaded++;
    }
    if (loaded == 0) {
        st = bti_fail(BT_E_FORMAT, "%s: no tensor of %s matches the model%s", fn, path,
                      map ? " under the prefix map" : " (a prefix_map may be needed)");
        goto done;
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

    /* The conversions' buffer, before anything is written. */
    if (scratch_bytes && !(scratch = bti_malloc(scratch_bytes))) {
        st = bti_fail(BT_E_NOMEM, "%s: %s: out of memory for a %zu-byte buffer", fn, path,
                      scratch_bytes);
        goto done;
    }

    /* 2. Apply. Only a read can fail now: the file changed or the disk failed
     * between the passes (the message says the model may be partly loaded). */
    for (i = 0; i < e.n; i++)
        if (src[i] && (st = bti_st_load_f32(f, src[i], e.value[i]->data, scratch)) != BT_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", bt_last_error());
            st = bti_fail(st, "%s: %s (after validation: the model may be partly loaded)", fn,
                          why);
            goto done;
        }
    if (o)
        bti_optim_set_step(o, step);
    if (a)
        bt_augment_set_state(a, seed, calls);
    if (report && rcap) {
        snprintf(report, rcap, "loaded %d of %d tensors, kept %d, skipped %d of the file's\n",
                 loaded, e.n, kept, skipped);
        for (i = 0; i < e.n; i++)
            if (!src[i])
                report_line(report, rcap, "kept", e.name[i]);
        for (i = 0; i < nfile; i++)
            if (extra[i])
                report_line(report, rcap, "skipped", bti_st_get(f, i)->name);
    }
done:
    bti_free(scratch);
    bti_free(src);
    bti_free(extra);
    bti_st_close(f);
    release(&e);
    return st;
}

BT_API bt_status bt_checkpoint_load(const char *path, bt_model *m, bt_optim *o, bt_augment *a)
{
    return load(path, m, o, a, NULL, 0, NULL, 0, "bt_checkpoint_load");
}

BT_API bt_status bt_checkpoint_load_ex(const char *path, bt_model *m, bt_optim *o, bt_augment *a,
                                       const char *prefix_map, uint32_t flags, char *report,
                                       size_t report_cap)
{
    return load(path, m, o, a, prefix_map, flags, report, report_cap, "bt_checkpoint_load_ex");
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
    if ((st = bti_st_open(path, &f)) != BT_OK)
        return st;
    options = bti_st_meta(f, "libbarlow.model");
    if (!options) {
        st = bti_fail(BT_E_FORMAT,
                      "%s: %s holds no model options (metadata libbarlow.model; a file saved "
                      "by an older libbarlow needs the config it was trained with)",
                      fn, path);
    } else {
        /* and the evaluation view when an augmentation handle was saved,
         * both in one all-or-nothing set */
        const char *aug = bti_st_meta(f, "libbarlow.augment");
        size_t n = strlen(options), k = aug ? strlen(aug) : 0;
        char *text = bti_malloc(n + k + 2);
        if (!text) {
            st = bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
        } else {
            snprintf(text, n + k + 2, "%s\n%s", options, aug ? aug : "");
            snprintf(what, sizeof what, "%s, metadata libbarlow.model%s", path,
                     aug ? " and libbarlow.augment" : "");
            st = bti_config_set_lines(c, text, fn, what);
            bti_free(text);
        }
    }
    bti_st_close(f);
    return st;
}

BT_API bt_status bt_checkpoint_metadata(const char *path, const char *key, char *buf, size_t cap)
{
    static const char *fn = "bt_checkpoint_metadata";
    bti_st_file *f = NULL;
    const char *v;
    bt_status st;
    if (!path || !key || !buf)
        return bti_fail(BT_E_MISUSE, "%s: %s is NULL", fn, !path ? "path" : !key ? "key" : "buf");
    if ((st = bti_st_open(path, &f)) != BT_OK)
        return st;
    v = bti_st_meta(f, key);
    if (!v)
        st = bti_fail(BT_E_FORMAT, "%s: %s has no metadata '%s'", fn, path, key);
    else if (strlen(v) + 1 > cap)
        st = bti_fail(BT_E_INVALID_ARG, "%s: metadata '%s' of %s needs a buffer of %zu bytes, got %zu",
                      fn, key, path, strlen(v) + 1, cap);
    else
        memcpy(buf, v, strlen(v) + 1);
    bti_st_close(f);
    return st;
}
