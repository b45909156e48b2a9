/* util_golden.c - golden-file reader and comparison helpers for the tests. */
#include "golden.h"

#include <barlow.h>

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    char name[128];
    int ndim;
    int64_t shape[8];
    int64_t numel;
    float *data;
};

struct golden {
    int count;
    struct entry *e;
};

static int rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

golden *golden_load(const char *file)
{
    char path[512], magic[8];
    uint32_t count, i;
    golden *g;
    FILE *f;
    snprintf(path, sizeof path, "golden/%s", file);
    f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (run the tests from tests/)", path);
    ck_assert_msg(rd(f, magic, 8) && memcmp(magic, "BTGOLD1\n", 8) == 0, "%s: bad magic", path);
    ck_assert(rd(f, &count, 4));
    g = calloc(1, sizeof *g);
    g->e = calloc(count, sizeof *g->e);
    g->count = (int)count;
    for (i = 0; i < count; i++) {
        struct entry *e = &g->e[i];
        uint16_t len;
        uint8_t nd;
        int k;
        ck_assert(rd(f, &len, 2) && len < sizeof e->name && rd(f, e->name, len));
        e->name[len] = '\0';
        ck_assert(rd(f, &nd, 1) && nd <= 8);
        e->ndim = nd;
        e->numel = 1;
        for (k = 0; k < nd; k++) {
            ck_assert(rd(f, &e->shape[k], 8));
            e->numel *= e->shape[k];
        }
        e->data = malloc((size_t)(e->numel ? e->numel : 1) * sizeof(float));
        ck_assert_msg(rd(f, e->data, (size_t)e->numel * sizeof(float)), "%s: truncated at %s", path,
                      e->name);
    }
    fclose(f);
    return g;
}

void golden_free(golden *g)
{
    int i;
    if (!g)
        return;
    for (i = 0; i < g->count; i++)
        free(g->e[i].data);
    free(g->e);
    free(g);
}

static const struct entry *find(const golden *g, const char *name)
{
    int i;
    for (i = 0; i < g->count; i++)
        if (strcmp(g->e[i].name, name) == 0)
            return &g->e[i];
    return NULL;
}

int golden_has(const golden *g, const char *name) { return find(g, name) != NULL; }

const float *golden_get(const golden *g, const char *name, int *ndim, int64_t *shape)
{
    const struct entry *e = find(g, name);
    ck_assert_msg(e != NULL, "golden array '%s' missing", name);
    if (ndim)
        *ndim = e->ndim;
    if (shape)
        memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return e->data;
}

int64_t golden_numel(const golden *g, const char *name)
{
    const struct entry *e = find(g, name);
    ck_assert_msg(e != NULL, "golden array '%s' missing", name);
    return e->numel;
}

/* One body for the three precisions (NaN in got counts as an infinite error); the
 * scale's floor is below the smallest normal of the reference's type. */
#define REL_ERR(name, tgot, twant, floor)                                                  \
    double name(const tgot *got, const twant *want, int64_t n)                             \
    {                                                                                      \
        double scale = floor, worst = 0;                                                   \
        int64_t i;                                                                         \
        for (i = 0; i < n; i++)                                                            \
            scale = fmax(scale, fabs((double)want[i]));                                    \
        for (i = 0; i < n; i++) {                                                          \
            double d = fabs((double)got[i] - (double)want[i]);                             \
            if (!(d <= worst))                                                             \
                worst = isnan(d) ? INFINITY : d;                                           \
        }                                                                                  \
        return worst / scale;                                                              \
    }
REL_ERR(rel_err, float, float, 1e-30)
REL_ERR(rel_err_d, double, double, 1e-300)
REL_ERR(rel_err_fd, float, double, 1e-300)

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

float golden_uni(uint64_t stream, uint64_t k)
{
    return (float)(mix64((stream << 32) + k) >> 40) * (1.0f / 16777216.0f) - 0.5f;
}

double golden_pattern(uint64_t t, uint64_t i)
{
    uint64_t h = (i * 2654435761u + t * 40503u + 12345u) & 0xffffffffu;
    h = ((h ^ (h >> 13)) * 1274126177u) & 0xffffffffu;
    h ^= h >> 16;
    return (double)h / 4294967296.0 - 0.5;
}

int golden_ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

void golden_fill_model(bt_model *m)
{
    int32_t t, n = bt_model_tensor_count(m);
    for (t = 0; t < n; t++) {
        const char *name;
        bt_tensor *v;
        int64_t i, numel;
        float *d;
        ck_assert_int_eq(bt_model_tensor(m, t, &name, &v, NULL), BT_OK);
        numel = bt_tensor_numel(v);
        d = bt_tensor_data(v);
        for (i = 0; i < numel; i++) {
            double p = golden_pattern((uint64_t)t, (uint64_t)i);
            if (golden_ends_with(name, "num_batches_tracked"))
                d[i] = 0;
            else if (golden_ends_with(name, "running_mean"))
                d[i] = (float)(0.2 * p);
            else if (golden_ends_with(name, "running_var"))
                d[i] = (float)(1.0 + p);
            else if (bt_tensor_ndim(v) == 1)
                d[i] = (float)((golden_ends_with(name, "weight") ? 1.0 : 0.0) + 0.4 * p);
            else
                d[i] = (float)(p * 2.0 * sqrt(6.0 / (double)(numel / bt_tensor_dim(v, 0))));
        }
    }
}
