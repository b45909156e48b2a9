/* golden.h - read the golden files written by tests/golden/golden_io.py, and
 * compare arrays with a relative tolerance. */
#ifndef BT_TESTS_GOLDEN_H
#define BT_TESTS_GOLDEN_H

#include <stddef.h>
#include <stdint.h>

typedef struct golden golden;

/* Load tests/golden/<file> (path relative to tests/); aborts the test on failure. */
golden *golden_load(const char *file);
void golden_free(golden *g);
/* The named array; fails the test when missing. ndim/shape may be NULL. */
const float *golden_get(const golden *g, const char *name, int *ndim, int64_t *shape);
/* Element count of the named array. */
int64_t golden_numel(const golden *g, const char *name);
/* 1 when present. */
int golden_has(const golden *g, const char *name);

/* Max over i of |got-want| / max(|want|_inf over the array, tiny): the relative error
 * measured against the array's scale, as the design's "relative error <= 1e-4" means. */
double rel_err(const float *got, const float *want, int64_t n);
double rel_err_d(const double *got, const double *want, int64_t n);
double rel_err_fd(const float *got, const double *want, int64_t n);

/* Value k of stream `stream`, uniform in [-0.5, 0.5): the inputs of the loss cases,
 * the formula of tests/golden/gen_loss.py bit for bit. */
float golden_uni(uint64_t stream, uint64_t k);

/* gen_model.py's pattern(t, i), bit for bit: values in [-0.5, 0.5). */
double golden_pattern(uint64_t t, uint64_t i);

/* 1 when s ends with tail (tensor names: "bn1.weight", "running_var"). */
int golden_ends_with(const char *s, const char *tail);

typedef struct bt_model bt_model;
/* gen_model.py's fill(): tensor t of m gets golden_pattern(t, .), scaled per kind
 * (weights fan-in-scaled, BatchNorm affine near 1/0, running statistics, a zero count). */
void golden_fill_model(bt_model *m);

#endif
