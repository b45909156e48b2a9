/* config.c - the bt_config handle: set, validate, resolve and read options. */
#include "common/cpu.h"
#include "common/internal.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALUE_CAP 256 /* longest accepted option text */

struct bt_config {
    char *(*val)[3]; /* per option: [0] shared, [1] view 1, [2] view 2; NULL = unset */
};

/* ---- parsing ------------------------------------------------------------- */

int bti_parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;
    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

int bti_parse_real(const char *s, double *out)
{
    char *end;
    double v;
    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno == ERANGE || end == s || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int bti_parse_list(const char *s, char sep, int is_int, double *out, int cap, int *n)
{
    char item[VALUE_CAP];
    int count = 0;
    if (!s || !*s)
        return -1;
    for (;;) {
        const char *e = strchr(s, sep);
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || len >= sizeof item || count >= cap)
            return -1;
        memcpy(item, s, len);
        item[len] = '\0';
        if (is_int) {
            int64_t v;
            if (bti_parse_int(item, &v) != 0)
                return -1;
            out[count] = (double)v;
        } else if (bti_parse_real(item, &out[count]) != 0) {
            return -1;
        }
        count++;
        if (!e)
            break;
        s = e + 1;
    }
    *n = count;
    return 0;
}

/* ---- names --------------------------------------------------------------- */

/* Split "aug.view2.blur_p" into option index and view; -1 when unknown. */
/* For a per-view name "aug.viewV.X": V (1 or 2), with *rest at X; else 0. */
static int view_prefix(const char *name, const char **rest)
{
    if (strncmp(name, "aug.view", 8) != 0 || (name[8] != '1' && name[8] != '2') || name[9] != '.')
        return 0;
    *rest = name + 10;
    return name[8] - '0';
}

static int lookup(const char *name, int *view)
{
    char base[128];
    const char *rest;
    *view = view_prefix(name, &rest);
    if (*view) {
        int i;
        if (snprintf(base, sizeof base, "aug.%s", rest) >= (int)sizeof base)
            return -1;
        i = bti_option_find(base);
        if (i < 0 || !(bti_options[i].flags & BTI_OPT_PER_VIEW))
            return -1;
        return i;
    }
    return bti_option_find(name);
}

/* ---- "did you mean" for unknown names ------------------------------------ */

/* Edit distance (insertions, deletions, substitutions) of a and b, or more
 * than `cap` when it passes cap (names longer than 127 are never close). */
static int edit_distance(const char *a, const char *b, int cap)
{
    int row[128], i, j, la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 127 || lb > 127 || abs(la - lb) > cap)
        return cap + 1;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        int diag = row[0], best;
        row[0] = best = i;
        for (j = 1; j <= lb; j++) {
            const int up = row[j],
                      sub = diag + (a[i - 1] != b[j - 1]),
                      del = up + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            diag = up;
            if (row[j] < best)
                best = row[j];
        }
        if (best > cap)
            return cap + 1;
    }
    return row[lb];
}

/* The registered name closest to an unknown one: within 1 edit for names of
 * up to 6 characters, 2 beyond; or an option whose part after the section
 * is the whole name ("lambda" -> "loss.lambda"). Per-view names are matched
 * as aug.X and suggested with their prefix. NULL when nothing is close. */
static const char *closest_option(const char *name, char *buf, size_t cap)
{
    const char *base = name, *best = NULL;
    const int view = view_prefix(name, &base);
    int i, best_d;
    best_d = strlen(base) + (view ? 4 : 0) <= 6 ? 1 : 2;
    for (i = 0; i < bti_option_count; i++) {
        const struct bti_option *o = &bti_options[i];
        const char *cand = o->name, *dot = strchr(cand, '.');
        int d;
        if (view) {
            if (!(o->flags & BTI_OPT_PER_VIEW))
                continue;
            cand += 4; /* "aug." */
        }
        d = edit_distance(base, cand, best_d);
        if (d > best_d && !view && dot && strcmp(dot + 1, name) == 0)
            d = best_d; /* the section left out */
        if (d <= best_d && (!best || d < best_d)) {
            best = o->name;
            best_d = d;
        }
    }
    if (!best)
        return NULL;
    if (view)
        snprintf(buf, cap, "aug.view%d.%s", view, best + 4);
    else
        snprintf(buf, cap, "%s", best);
    return buf;
}

/* BT_E_UNSUPPORTED for an unknown name, with the closest registered one. */
static bt_status unknown_option(const char *fn, const char *name)
{
    char near[160];
    if (closest_option(name, near, sizeof near))
        return bti_fail(BT_E_UNSUPPORTED, "%s: unknown option '%s' (did you mean '%s'?)", fn, name,
                        near);
    return bti_fail(BT_E_UNSUPPORTED, "%s: unknown option '%s'", fn, name);
}

static const char *type_name(int type)
{
    switch (type) {
    case BTI_OPT_INT: return "int";
    case BTI_OPT_REAL: return "real";
    case BTI_OPT_CHOICE: return "choice";
    case BTI_OPT_INT_LIST: return "int-list";
    default: return "real-list";
    }
}

/* ---- ranges as text, built once ------------------------------------------ */

static char ranges[64][96];
static pthread_once_t ranges_once = PTHREAD_ONCE_INIT;

static void build_ranges(void)
{
    int i;
    for (i = 0; i < bti_option_count && i < 64; i++) {
        const struct bti_option *o = &bti_options[i];
        if (o->type == BTI_OPT_CHOICE)
            snprintf(ranges[i], sizeof ranges[i], "%s", o->choices);
        else if (o->type == BTI_OPT_INT || o->type == BTI_OPT_REAL)
            snprintf(ranges[i], sizeof ranges[i], "[%.15g, %.15g]", o->lo, o->hi);
        else
            snprintf(ranges[i], sizeof ranges[i], "%d to %d items in [%.15g, %.15g]", o->min_len,
                     o->max_len, o->lo, o->hi);
    }
}

static const char *range_of(int i)
{
    pthread_once(&ranges_once, build_ranges);
    return i < 64 ? ranges[i] : "";
}

/* ---- validation ---------------------------------------------------------- */

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (p) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static bt_status validate(int i, const char *name, const char *v)
{
    const struct bti_option *o = &bti_options[i];
    double items[16];
    int n = 0, k;
    int64_t iv;
    double dv;

    if (strlen(v) >= VALUE_CAP)
        return bti_fail(BT_E_INVALID_ARG, "option %s: value is longer than %d characters", name,
                        VALUE_CAP - 1);
    switch (o->type) {
    case BTI_OPT_INT:
        if (bti_parse_int(v, &iv) != 0)
            return bti_fail(BT_E_INVALID_ARG, "option %s: '%s' is not an integer (range %s)", name,
                            v, range_of(i));
        if ((double)iv < o->lo || (double)iv > o->hi)
            return bti_fail(BT_E_INVALID_ARG, "option %s: %s is out of range %s", name, v,
                            range_of(i));
        return BT_OK;
    case BTI_OPT_REAL:
        if (bti_parse_real(v, &dv) != 0)
            return bti_fail(BT_E_INVALID_ARG, "option %s: '%s' is not a finite number (range %s)",
                            name, v, range_of(i));
        if (dv < o->lo || dv > o->hi)
            return bti_fail(BT_E_INVALID_ARG, "option %s: %s is out of range %s", name, v,
                            range_of(i));
        return BT_OK;
    case BTI_OPT_CHOICE:
        if (!choice_ok(o->choices, v))
            return bti_fail(BT_E_INVALID_ARG, "option %s: '%s' is not one of %s", name, v,
                            o->choices);
        return BT_OK;
    default:
        if (bti_parse_list(v, o->type == BTI_OPT_INT_LIST ? '-' : ',', o->type == BTI_OPT_INT_LIST,
                           items, 16, &n) != 0 ||
            n < o->min_len || n > o->max_len)
            return bti_fail(BT_E_INVALID_ARG,
                            "option %s: '%s' is not a list of %d to %d %s separated by '%c'", name,
                            v, o->min_len, o->max_len,
                            o->type == BTI_OPT_INT_LIST ? "integers" : "numbers",
                            o->type == BTI_OPT_INT_LIST ? '-' : ',');
        for (k = 0; k < n; k++)
            if (items[k] < o->lo || items[k] > o->hi)
                return bti_fail(BT_E_INVALID_ARG, "option %s: item %d of '%s' is out of range %s",
                                name, k + 1, v, range_of(i));
        return BT_OK;
    }
}

/* ---- resolution ---------------------------------------------------------- */

static const char *preset_value(const char *preset, int view, const char *name)
{
    int k;
    const char *both = NULL;
    for (k = 0; k < bti_preset_count; k++) {
        const struct bti_preset_value *p = &bti_presets[k];
        if (strcmp(p->preset, preset) != 0 || strcmp(p->name, name) != 0)
            continue;
        if (p->view == view)
            return p->value;
        if (p->view == 0)
            both = p->value;
    }
    return both;
}

/* The effective text of option i for a view (0 = shared name, read as view 1). */
static const char *resolve(const bt_config *c, int i, int view)
{
    const char *v = NULL;
    if (view && c->val[i][view])
        return c->val[i][view];
    if (c->val[i][0])
        return c->val[i][0];
    if (bti_options[i].flags & BTI_OPT_PER_VIEW) {
        int p = bti_option_find("aug.preset");
        const char *preset = c->val[p][0] ? c->val[p][0] : bti_options[p].def;
        v = preset_value(preset, view ? view : 1, bti_options[i].name);
        if (v)
            return v;
    }
    return bti_options[i].def;
}

/* ---- public API ---------------------------------------------------------- */

BT_API bt_status bt_config_create(bt_config **out)
{
    bt_config *c;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "bt_config_create: out is NULL");
    *out = NULL;
    c = bti_calloc(1, sizeof *c);
    if (c)
        c->val = bti_calloc((size_t)bti_option_count, sizeof *c->val);
    if (!c || !c->val) {
        bti_free(c);
        return bti_fail(BT_E_NOMEM, "bt_config_create: out of memory");
    }
    st = bti_handle_add(c, BTI_KIND_CONFIG);
    if (st != BT_OK) {
        bti_free(c->val);
        bti_free(c);
        return st;
    }
    *out = c;
    return BT_OK;
}

BT_API void bt_config_free(bt_config *c)
{
    int i, v;
    if (!c || bti_check(c, BTI_KIND_CONFIG, "bt_config_free", "c") != BT_OK)
        return;
    bti_handle_remove(c);
    for (i = 0; i < bti_option_count; i++)
        for (v = 0; v < 3; v++)
            bti_free(c->val[i][v]);
    bti_free(c->val);
    bti_free(c);
}

static const char *build_key(const char *name)
{
    if (strcmp(name, "build.version") == 0)
        return bt_version_string();
    if (strcmp(name, "build.blas") == 0)
        return bti_build_blas();
    if (strcmp(name, "build.blas_core") == 0)
        return bti_build_blas_core();
    if (strcmp(name, "build.blas_config") == 0)
        return bti_build_blas_config();
    if (strcmp(name, "build.threads") == 0)
        return bti_build_threads();
    if (strcmp(name, "build.cpu_level") == 0)
        return "(resolved per config)";
    return NULL;
}

BT_API bt_status bt_config_set(bt_config *c, const char *name, const char *value)
{
    int i, view;
    char *copy = NULL;
    bt_status st = bti_check(c, BTI_KIND_CONFIG, "bt_config_set", "c");
    if (st != BT_OK)
        return st;
    if (!name)
        return bti_fail(BT_E_MISUSE, "bt_config_set: name is NULL");
    if (build_key(name))
        return bti_fail(BT_E_INVALID_ARG, "bt_config_set: option %s is read-only", name);
    i = lookup(name, &view);
    if (i < 0)
        return unknown_option("bt_config_set", name);
    if (value) {
        st = validate(i, name, value);
        if (st != BT_OK)
            return st;
        copy = bti_malloc(strlen(value) + 1);
        if (!copy)
            return bti_fail(BT_E_NOMEM, "bt_config_set: out of memory");
        strcpy(copy, value);
    }
    bti_free(c->val[i][view]);
    c->val[i][view] = copy;
    return BT_OK;
}

BT_API bt_status bt_config_get(const bt_config *c, const char *name, char *buf, size_t cap)
{
    int i, view;
    const char *v = NULL;
    size_t len;
    bt_status st = bti_check(c, BTI_KIND_CONFIG, "bt_config_get", "c");
    if (st != BT_OK)
        return st;
    if (!name || !buf)
        return bti_fail(BT_E_MISUSE, "bt_config_get: %s is NULL", name ? "buf" : "name");
    v = build_key(name);
    if (v && strcmp(name, "build.cpu_level") == 0) {
        int level;
        st = bti_cpu_resolve(c, &level, "bt_config_get");
        if (st != BT_OK)
            return st;
        v = bti_cpu_name(level);
    }
    if (!v) {
        i = lookup(name, &view);
        if (i < 0)
            return unknown_option("bt_config_get", name);
        v = resolve(c, i, view);
    }
    len = strlen(v);
    if (len + 1 > cap)
        return bti_fail(BT_E_INVALID_ARG, "bt_config_get: option %s needs a buffer of %zu bytes, got %zu",
                        name, len + 1, cap);
    memcpy(buf, v, len + 1);
    return BT_OK;
}

BT_API int32_t bt_config_is_set(const bt_config *c, const char *name)
{
    int i, view;
    if (bti_check(c, BTI_KIND_CONFIG, "bt_config_is_set", "c") != BT_OK)
        return -1;
    if (!name) {
        bti_fail(BT_E_MISUSE, "bt_config_is_set: name is NULL");
        return -1;
    }
    i = lookup(name, &view);
    if (i < 0) {
        unknown_option("bt_config_is_set", name);
        return -1;
    }
    return c->val[i][view] != NULL || c->val[i][0] != NULL;
}

BT_API int32_t bt_config_option_count(void) { return bti_option_count; }

BT_API bt_status bt_config_option(int32_t i, const char **name, const char **type,
                                  const char **default_value, const char **range,
                                  const char **description)
{
    const struct bti_option *o;
    if (i < 0 || i >= bti_option_count)
        return bti_fail(BT_E_INVALID_ARG, "bt_config_option: index %d is not in [0, %d)", (int)i,
                        bti_option_count);
    o = &bti_options[i];
    if (name)
        *name = o->name;
    if (type)
        *type = type_name(o->type);
    if (default_value)
        *default_value = o->def;
    if (range)
        *range = range_of(i);
    if (description)
        *description = o->help;
    return BT_OK;
}

/* ---- typed reads for modules --------------------------------------------- */

bt_status bti_config_text(const bt_config *c, const char *name, const char **out)
{
    int view, i = lookup(name, &view);
    if (i < 0)
        return bti_fail(BT_E_INTERNAL, "internal: option '%s' is not registered", name);
    *out = resolve(c, i, view);
    return BT_OK;
}

bt_status bti_config_int(const bt_config *c, const char *name, int64_t *out)
{
    const char *v = NULL;
    bt_status st = bti_config_text(c, name, &v);
    if (st == BT_OK && bti_parse_int(v, out) != 0)
        st = bti_fail(BT_E_INTERNAL, "internal: option '%s' holds '%s', not an integer", name, v);
    return st;
}

bt_status bti_config_real(const bt_config *c, const char *name, double *out)
{
    const char *v = NULL;
    bt_status st = bti_config_text(c, name, &v);
    if (st == BT_OK && bti_parse_real(v, out) != 0)
        st = bti_fail(BT_E_INTERNAL, "internal: option '%s' holds '%s', not a number", name, v);
    return st;
}

bt_status bti_config_real_list(const bt_config *c, const char *name, double *out, int cap, int *n)
{
    const char *v = NULL;
    bt_status st = bti_config_text(c, name, &v);
    if (st == BT_OK && bti_parse_list(v, ',', 0, out, cap, n) != 0)
        st = bti_fail(BT_E_INTERNAL, "internal: option '%s' holds '%s', not a list", name, v);
    return st;
}

bt_status bti_config_int_list(const bt_config *c, const char *name, int64_t *out, int cap, int *n)
{
    double tmp[16];
    int k;
    const char *v = NULL;
    bt_status st = bti_config_text(c, name, &v);
    if (st != BT_OK)
        return st;
    if (cap > 16)
        cap = 16;
    if (bti_parse_list(v, '-', 1, tmp, cap, n) != 0)
        return bti_fail(BT_E_INTERNAL, "internal: option '%s' holds '%s', not a list", name, v);
    for (k = 0; k < *n; k++)
        out[k] = (int64_t)tmp[k];
    return BT_OK;
}

#define LINES_MAX 64 /* options in one text: more than the registry's model.* ones */

/* One "name=value" line of len bytes into fresh strings and its option's
 * index and view; BT_OK only for a registered, settable name and a valid value. */
static bt_status parse_line(const char *p, size_t len, char **name, char **value, int *idx,
                            int *view, const char *fn, const char *what)
{
    const char *eq = memchr(p, '=', len);
    size_t nl = eq ? (size_t)(eq - p) : 0;
    *name = *value = NULL;
    if (!eq)
        return bti_fail(BT_E_FORMAT, "%s: %s: line '%.*s' is not name=value", fn, what,
                        (int)(len > 60 ? 60 : len), p);
    *name = bti_malloc(nl + 1);
    *value = bti_malloc(len - nl);
    if (!*name || !*value)
        return bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
    memcpy(*name, p, nl);
    (*name)[nl] = '\0';
    memcpy(*value, eq + 1, len - nl - 1);
    (*value)[len - nl - 1] = '\0';
    *idx = lookup(*name, view);
    if (*idx < 0 || build_key(*name))
        return bti_fail(BT_E_FORMAT, "%s: %s: unknown option '%s'", fn, what, *name);
    if (validate(*idx, *name, *value) != BT_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", bt_last_error());
        return bti_fail(BT_E_FORMAT, "%s: %s: %s", fn, what, why);
    }
    return BT_OK;
}

bt_status bti_config_set_lines(bt_config *c, const char *text, const char *fn, const char *what)
{
    char *name[LINES_MAX], *value[LINES_MAX];
    int idx[LINES_MAX], view[LINES_MAX], n = 0, k;
    bt_status st = BT_OK;
    const char *p = text;
    while (*p && st == BT_OK) {
        const char *end = strchr(p, '\n');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0 && n == LINES_MAX)
            st = bti_fail(BT_E_FORMAT, "%s: %s: more than %d options", fn, what, LINES_MAX);
        else if (len > 0) {
            st = parse_line(p, len, &name[n], &value[n], &idx[n], &view[n], fn, what);
            n++; /* freed below, whether it parsed or not */
        }
        p = end ? end + 1 : p + len;
    }
    /* every value validated and copied: now nothing can fail */
    for (k = 0; k < n; k++) {
        if (st == BT_OK) {
            bti_free(c->val[idx[k]][view[k]]);
            c->val[idx[k]][view[k]] = value[k];
        } else {
            bti_free(value[k]);
        }
        bti_free(name[k]);
    }
    return st;
}

/* Options of c as "name=value\n" lines: those named in the NULL-terminated
 * list `names`, or without one every registered option starting with
 * `prefix`, in registry order. Measured in pass 0, written in pass 1. */
bt_status bti_config_lines(const bt_config *c, const char *prefix, const char *const *names,
                           const char *fn, char **out)
{
    size_t len = 0;
    char *text = NULL, *p = NULL;
    int pass, i;
    for (pass = 0; pass < 2; pass++) {
        if (pass == 1 && !(text = p = bti_calloc(len + 1, 1)))
            return bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
        for (i = 0; names ? names[i] != NULL : i < bti_option_count; i++) {
            const char *name = names ? names[i] : bti_options[i].name, *value = NULL;
            bt_status st;
            if (!names && strncmp(name, prefix, strlen(prefix)) != 0)
                continue;
            if ((st = bti_config_text(c, name, &value)) != BT_OK) {
                bti_free(text);
                return st;
            }
            if (pass == 0)
                len += strlen(name) + strlen(value) + 2;
            else
                p += sprintf(p, "%s=%s\n", name, value);
        }
    }
    *out = text;
    return BT_OK;
}
