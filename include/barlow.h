/*
 * barlow.h - libbarlow, Barlow Twins self-supervised training in C.
 *
 * The one public header of libbarlow. It declares the whole stable API; every
 * declaration says who owns each pointer, whether NULL is accepted, which
 * statuses it returns and what it needs from threads.
 *
 * General rules (they hold for every function below unless it says otherwise):
 *  - Fallible functions return a bt_status. BT_OK is 0; on any other value
 *    bt_last_error() holds a message for this thread naming the argument and
 *    the shapes involved, and the call changed nothing.
 *  - Handles are opaque. A create function stores a new handle in *out (or
 *    NULL on failure); each handle is released with its free function, and
 *    free(NULL) does nothing. A freed, NULL or wrong kind of handle passed to
 *    a function gives BT_E_MISUSE, never a crash.
 *  - Pointers returned by getters are borrowed: they stay owned by the handle
 *    and are valid until it is freed. Nothing the library allocates is handed
 *    to the caller to free.
 *  - A handle is used by one thread at a time; different handles may be used
 *    from different threads concurrently.
 *  - The library never aborts, exits or prints.
 *
 * Copyright the libbarlow authors. SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef BARLOW_H
#define BARLOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(BT_BUILDING_DLL)
#define BT_API __declspec(dllexport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define BT_API __attribute__((visibility("default")))
#else
#define BT_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define BT_VERSION_MAJOR 0
#define BT_VERSION_MINOR 1
#define BT_VERSION_PATCH 0
#define BT_VERSION_NUMBER (BT_VERSION_MAJOR * 10000 + BT_VERSION_MINOR * 100 + BT_VERSION_PATCH)

/* The version of the library actually loaded: MAJOR*10000 + MINOR*100 + PATCH.
 * Compare with BT_VERSION_NUMBER to detect a header/library mismatch. */
BT_API int32_t bt_version_number(void);

/* The same as a static string, "0.1.0". Never NULL. */
BT_API const char *bt_version_string(void);

/* A static, human-readable line describing how the library was built: its
 * version, the BLAS it calls (OpenBLAS or the reference CBLAS), for OpenBLAS
 * its configuration and the kernel core it chose on this CPU, and the
 * threading back end. Never NULL. The same facts are readable one by one
 * through bt_config_get() as "build.version", "build.blas", "build.blas_core",
 * "build.blas_config" and "build.threads". */
BT_API const char *bt_build_info(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

typedef int32_t bt_status;

#define BT_OK 0
#define BT_E_INVALID_ARG 1 /* a value is out of range or not understood */
#define BT_E_NOMEM 2       /* an allocation failed */
#define BT_E_SHAPE 3       /* tensor shapes do not fit together */
#define BT_E_STATE 4       /* the call is not valid now (e.g. backward before forward) */
#define BT_E_UNSUPPORTED 5 /* unknown option name, or a feature this build lacks */
#define BT_E_MISUSE 6      /* NULL, freed or wrong kind of handle */
#define BT_E_IO 7          /* reading or writing a file failed */
#define BT_E_FORMAT 8      /* a file is malformed */
#define BT_E_NUMERIC 9     /* a non-finite value where a finite one is needed */
#define BT_E_INTERNAL 10   /* a bug in libbarlow; please report it */
/* Codes are only ever appended. */

/* Static text for a status ("invalid argument", ...). Unknown codes give
 * "unknown status". Never NULL; thread-safe. */
BT_API const char *bt_status_string(bt_status s);

/* The detail message of the last failed call made by this thread, such as
 * "bt_tensor_create: shape[1] is 0; every dimension must be >= 1".
 * Successful calls do not clear it. The text is thread-local, owned by the
 * library, and valid until this thread's next failing call. Never NULL
 * (empty string when nothing failed yet). */
BT_API const char *bt_last_error(void);

/* ------------------------------------------------------------------------ */
/* Handles                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct bt_tensor bt_tensor;
typedef struct bt_config bt_config;
typedef struct bt_layer bt_layer;
typedef struct bt_model bt_model;
typedef struct bt_loss bt_loss;
typedef struct bt_augment bt_augment;
typedef struct bt_optim bt_optim;

/* ------------------------------------------------------------------------ */
/* Tensors: float32, row-major (C order), 1 to 4 dimensions; images are NCHW */
/* ------------------------------------------------------------------------ */

#define BT_TENSOR_MAX_DIMS 4

/* Create a zero-filled tensor of shape[0] x ... x shape[ndim-1].
 * ndim: 1..BT_TENSOR_MAX_DIMS; every dimension >= 1; the total size must fit
 * in memory (BT_E_INVALID_ARG for absurd sizes, BT_E_NOMEM when allocation
 * fails). The data is 64-byte aligned. Free with bt_tensor_free().
 * Returns BT_OK, BT_E_MISUSE (out or shape NULL), BT_E_INVALID_ARG, BT_E_NOMEM. */
BT_API bt_status bt_tensor_create(bt_tensor **out, int32_t ndim, const int64_t *shape);

/* Create a tensor that borrows caller memory: data must hold numel floats and
 * stay valid (and not be freed) until bt_tensor_free() of this tensor, which
 * does not free it. The library reads and writes it in place. No alignment is
 * required. Returns as bt_tensor_create, plus BT_E_MISUSE when data is NULL. */
BT_API bt_status bt_tensor_wrap(bt_tensor **out, float *data, int32_t ndim, const int64_t *shape);

/* Release a tensor (and its data unless wrapped). NULL does nothing.
 * Tensors owned by layers, models or other handles (see bt_layer_tensor())
 * must not be freed by the caller: that is ignored with BT_E_MISUSE recorded
 * in bt_last_error(). */
BT_API void bt_tensor_free(bt_tensor *t);

/* Number of dimensions, or -1 (with bt_last_error set) for a bad handle. */
BT_API int32_t bt_tensor_ndim(const bt_tensor *t);

/* Size of one axis; axis may be negative (-1 is the last). Returns -1 (with
 * bt_last_error set) for a bad handle or axis. */
BT_API int64_t bt_tensor_dim(const bt_tensor *t, int32_t axis);

/* Number of elements, or -1 (with bt_last_error set) for a bad handle. */
BT_API int64_t bt_tensor_numel(const bt_tensor *t);

/* Pointer to the first element (borrowed, valid for the tensor's life), or
 * NULL (with bt_last_error set) for a bad handle. */
BT_API float *bt_tensor_data(bt_tensor *t);

/* Copy the shape into shape[0..cap-1] and the dimension count into *ndim.
 * cap must be >= the tensor's ndim. Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG. */
BT_API bt_status bt_tensor_shape(const bt_tensor *t, int32_t *ndim, int64_t *shape, int32_t cap);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */
/*
 * One namespace of named, typed options ("loss.lambda", "model.arch", ...),
 * each with a default, bounds and a description; docs/options.md lists them
 * all and bt_config_option() enumerates them at run time. Values are set and
 * read as text: integers ("64"), reals ("0.0051", "1e-6"), choices
 * ("resnet18"), integer lists with dashes ("8192-8192-8192") and real lists
 * with commas ("0.485,0.456,0.406").
 *
 * Every "aug.X" option also exists per view as "aug.view1.X" and
 * "aug.view2.X"; reading a view's value gives, in order of precedence, the
 * view's own setting, the shared "aug.X" setting, the value of "aug.preset"
 * for that view, and the default. Options that a module does not use yet are
 * accepted and stored. Read-only "build.*" keys describe the library build.
 */

/* Create a configuration holding every default. Returns BT_OK, BT_E_MISUSE, BT_E_NOMEM. */
BT_API bt_status bt_config_create(bt_config **out);

/* Release a configuration. NULL does nothing. Handles created from it do not
 * keep a reference: it may be freed right after use. */
BT_API void bt_config_free(bt_config *c);

/* Set an option from text. The value is parsed and validated: a malformed or
 * out-of-range value gives BT_E_INVALID_ARG and a message naming the option,
 * the value and the bounds; an unknown name gives BT_E_UNSUPPORTED; a
 * read-only "build.*" key gives BT_E_INVALID_ARG. On error the stored value
 * is unchanged. value NULL restores the option's default.
 * Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG, BT_E_UNSUPPORTED. */
BT_API bt_status bt_config_set(bt_config *c, const char *name, const char *value);

/* Read an option's value as text into buf (capacity cap bytes, always
 * NUL-terminated on success). A buffer too small gives BT_E_INVALID_ARG with
 * the needed size in the message; then buf is left untouched.
 * Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG, BT_E_UNSUPPORTED. */
BT_API bt_status bt_config_get(const bt_config *c, const char *name, char *buf, size_t cap);

/* Number of registered options (the per-view "aug.viewK.*" forms and the
 * read-only "build.*" keys are not counted separately). */
BT_API int32_t bt_config_option_count(void);

/* Describe option i (0 <= i < bt_config_option_count()): its name, type
 * ("int", "real", "choice", "int-list", "real-list", "text"), default value,
 * allowed range or choices (as text, e.g. "[0, 1]" or "lars|sgd|adamw") and a
 * one-line description. All strings are static. Any out pointer may be NULL.
 * Returns BT_OK or BT_E_INVALID_ARG for i out of range. */
BT_API bt_status bt_config_option(int32_t i, const char **name, const char **type,
                                  const char **default_value, const char **range,
                                  const char **description);

/* Whether the option was set explicitly on this configuration (1) or holds its
 * default / preset value (0); -1 with bt_last_error set for a bad handle or
 * unknown name. For per-view names, a shared "aug.X" setting counts. */
BT_API int32_t bt_config_is_set(const bt_config *c, const char *name);

/* ------------------------------------------------------------------------ */
/* Layers (issue: layers)                                                  */
/* ------------------------------------------------------------------------ */

/* (declarations of this section go here) */

/* ------------------------------------------------------------------------ */
/* Model (issue: model)                                                    */
/* ------------------------------------------------------------------------ */

/* (declarations of this section go here) */

/* ------------------------------------------------------------------------ */
/* Loss (issue: loss)                                                      */
/* ------------------------------------------------------------------------ */
/*
 * The Barlow Twins loss of two embeddings za, zb of shape [N, D] (N >= 2,
 * finite values), exactly as the official implementation computes it:
 *
 *   A, B  = za, zb each batch-normalised per column without affine (biased
 *           variance over the N rows, eps 1e-5), as BatchNorm1d(D,
 *           affine=False) in training mode
 *   C     = A^T B / N                                         [D, D]
 *   on    = sum_i (1 - C_ii)^2,   off = sum_{i != j} C_ij^2
 *   loss  = scale * (on + lambda * off)
 *
 * Options read at creation: "loss.lambda" (0.0051), "loss.scale" (1),
 * "loss.mode", "loss.temperature" (0.1, xent only) and "threads". Modes (the
 * paper's Table 5 ablations):
 *   barlow           the loss above (default)
 *   invariance_only  loss = scale * on
 *   redundancy_only  loss = scale * lambda * off
 *   feature_norm     as barlow, but A, B normalise each ROW over the D
 *                    features instead of each column over the batch:
 *                    A[n,:] = (za[n,:] - mean_j za[n,j]) / sqrt(var_j za[n,j]
 *                    + 1e-5) (biased variance), likewise B; then C = A^T B / N
 *                    and the same on/off terms. (The paper names this
 *                    "normalization along feature dimension"; this is the
 *                    library's reading of it: a LayerNorm without affine.)
 *   xent             C as in barlow, tau = loss.temperature:
 *                    on  = -log sum_i exp(C_ii / tau)
 *                    off = log sum_i sum_{j != i} exp(max(C_ij, 0) / tau)
 *                    loss = scale * (on + lambda * off)
 *
 * Two exact computation paths, chosen per forward: the D x D path forms C
 * (3 GEMMs of N x D x D per forward+backward); the Gram path never forms C
 * but the N x N matrices A A^T and B B^T (cost O(N^2 D), memory O(N^2)).
 * BT_LOSS_PATH_AUTO (default) uses D x D when D <= N and Gram when D > N;
 * xent always uses D x D (its exponentials need every C_ij). Both paths give
 * the same loss (to ~1e-8) and gradients (to < 1e-5 relative to the largest
 * entry; ~5e-6 at N=64, D=8192, less for larger N) and match PyTorch in
 * float64 to < 1e-5. Arithmetic: float32 storage and SGEMM, every statistic
 * and sum accumulated in double; deterministic for a given thread count.
 *
 * The handle keeps the normalised views of the last successful forward (2 N D
 * floats) plus C (D^2 floats) or the Gram matrices (2 N^2 floats); buffers
 * are reused while the shape stays, so only the first call at a shape
 * allocates. Threads: the "threads" option (or BT_NUM_THREADS, or all
 * cores) for OpenMP loops and the BLAS.
 */

#define BT_LOSS_PATH_AUTO 0 /* D x D when D <= N, else Gram */
#define BT_LOSS_PATH_DXD 1  /* form C = A^T B / N */
#define BT_LOSS_PATH_GRAM 2 /* N x N Gram matrices, no D x D matrix */

/* Create a loss from cfg's "loss.*" options and "threads"; cfg NULL means
 * every default. cfg may be freed right after. *out is NULL on failure.
 * Returns BT_OK, BT_E_MISUSE (out NULL, cfg not a live config), BT_E_NOMEM. */
BT_API bt_status bt_loss_create(bt_loss **out, const bt_config *cfg);

/* Release a loss and its buffers. NULL does nothing. */
BT_API void bt_loss_free(bt_loss *l);

/* Compute the loss of za, zb (both [N, D], same shape, N >= 2, all finite;
 * only read) into *loss, and keep what the backward needs. On any error the
 * handle is unchanged: bt_loss_backward, bt_loss_terms and
 * bt_loss_correlation still refer to the last successful forward.
 * Returns BT_OK, BT_E_MISUSE (NULL or bad handle, loss NULL), BT_E_SHAPE
 * (ndim != 2, shapes differ, N < 2, N or D >= 2^31), BT_E_NUMERIC (a NaN or
 * infinity in za or zb; the message gives its index), BT_E_NOMEM. */
BT_API bt_status bt_loss_forward(bt_loss *l, const bt_tensor *za, const bt_tensor *zb,
                                 double *loss);

/* Write dloss/dza into dza and dloss/dzb into dzb (both [N, D] as the last
 * successful forward; OVERWRITTEN, not accumulated; distinct memory), through
 * the normalisation. May be called more than once per forward.
 * Returns BT_OK, BT_E_MISUSE, BT_E_STATE (no successful forward yet),
 * BT_E_SHAPE, BT_E_INVALID_ARG (dza and dzb share their data). */
BT_API bt_status bt_loss_backward(bt_loss *l, bt_tensor *dza, bt_tensor *dzb);

/* The raw terms of the last successful forward, before lambda and scale:
 * barlow-type modes sum_i (1 - C_ii)^2 and sum_{i != j} C_ij^2 (both are
 * computed whatever the mode); xent -log sum_i exp(C_ii / tau) and
 * log sum_{i != j} exp(max(C_ij, 0) / tau). Either pointer may be NULL.
 * Returns BT_OK, BT_E_MISUSE, BT_E_STATE (no successful forward yet). */
BT_API bt_status bt_loss_terms(const bt_loss *l, double *on_diag, double *off_diag);

/* Extension: choose the computation path of the following forwards
 * (BT_LOSS_PATH_AUTO, _DXD or _GRAM); the last forward is not affected.
 * Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG (unknown path),
 * BT_E_UNSUPPORTED (_GRAM with loss.mode xent). */
BT_API bt_status bt_loss_set_path(bt_loss *l, int32_t path);

/* Extension: the path the last successful forward used (BT_LOSS_PATH_DXD or
 * BT_LOSS_PATH_GRAM), BT_LOSS_PATH_AUTO (0) before any, -1 (with
 * bt_last_error set) for a bad handle. */
BT_API int32_t bt_loss_path(const bt_loss *l);

/* Extension: the cross-correlation matrix C of the last successful forward,
 * or its leading block: c must be a caller-created [k, k] tensor, 1 <= k <= D,
 * and receives C[0..k, 0..k] (diagonal as the terms use it). Works on either
 * path (the Gram path computes the block from the kept normalised views: 2 N
 * k^2 flops). A full C is D^2 floats (256 MB for D = 8192); a block suits
 * pictures. Returns BT_OK, BT_E_MISUSE, BT_E_STATE, BT_E_SHAPE. */
BT_API bt_status bt_loss_correlation(bt_loss *l, bt_tensor *c);

/* ------------------------------------------------------------------------ */
/* Augmentation (issue: augment)                                           */
/* ------------------------------------------------------------------------ */

/* (declarations of this section go here) */

/* ------------------------------------------------------------------------ */
/* Optimizers and probe loss (issue: optim)                                */
/* ------------------------------------------------------------------------ */

/* (declarations of this section go here) */

/* ------------------------------------------------------------------------ */
/* Checkpoints (issue: checkpoint)                                         */
/* ------------------------------------------------------------------------ */

/* (declarations of this section go here) */

#ifdef __cplusplus
}
#endif

#endif /* BARLOW_H */
