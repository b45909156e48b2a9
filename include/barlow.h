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

/*
 * Standalone building blocks with PyTorch's semantics: nn.Conv2d, nn.Linear,
 * nn.BatchNorm1d/2d, nn.ReLU, nn.MaxPool2d and global average pooling. Each
 * layer owns its parameters, buffers and their gradients (bt_layer_tensor),
 * initialised at creation as PyTorch's reset_parameters() does, drawn from
 * seed 0 of libbarlow's counter-based generator (bt_layer_reset_parameters
 * draws again from another seed; the values are not PyTorch's own draws).
 *
 * Forward and backward: bt_layer_forward() computes y from x and remembers
 * what backward needs; bt_layer_backward() then gives the input gradient and
 * ADDS the parameter gradients to the gradient tensors (until
 * bt_layer_zero_grad()). The forward COPIES x into the layer, so the caller
 * may free or overwrite x (and y may be the same tensor as x) before
 * backward. Output tensors are created by the caller with exactly the shape
 * bt_layer_output_shape() gives; a wrong shape is BT_E_SHAPE with a message
 * giving the expected and actual shapes.
 *
 * Threads: each layer uses the thread count of BT_NUM_THREADS, or all cores,
 * read at creation (bt_layer_set_threads changes it): OpenMP for element-wise
 * loops, the BLAS's threads for GEMMs, never both at once. Results are
 * deterministic for a given thread count.
 */

/* nn.Conv2d(in_ch, out_ch, kernel, stride, pad, bias): square kernel, groups
 * 1, dilation 1. Input [N, in_ch, H, W], output [N, out_ch, Ho, Wo] with
 * Ho = (H + 2*pad - kernel)/stride + 1 (floor). Tensors: "weight"
 * [out_ch, in_ch, kernel, kernel], then "bias" [out_ch] when bias is 1; both
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_ch*kernel*kernel.
 * Returns BT_OK, BT_E_MISUSE (out NULL), BT_E_INVALID_ARG (a size < 1,
 * pad < 0, bias not 0/1), BT_E_NOMEM. */
BT_API bt_status bt_layer_conv2d_create(bt_layer **out, int32_t in_ch, int32_t out_ch,
                                        int32_t kernel, int32_t stride, int32_t pad, int32_t bias);

/* nn.Linear(in_features, out_features, bias): x [N, in_features] ->
 * [N, out_features]. Tensors "weight" [out_features, in_features] and "bias"
 * [out_features] (when bias is 1), U(-1/sqrt(in_features), 1/sqrt(in_features)).
 * Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG, BT_E_NOMEM. */
BT_API bt_status bt_layer_linear_create(bt_layer **out, int32_t in_features,
                                        int32_t out_features, int32_t bias);

/* nn.BatchNorm1d/2d(channels, eps, momentum, affine), track_running_stats on.
 * Input [N, C], [N, C, L] or [N, C, H, W]. Training: normalise with the
 * batch's mean and biased variance; update running_mean and running_var
 * (with the UNBIASED batch variance) as (1-momentum)*running + momentum*batch;
 * num_batches_tracked += 1. Training needs more than one value per channel
 * (else BT_E_SHAPE). Eval (training 0): the running statistics. Tensors, in
 * PyTorch's order: "weight" (1) and "bias" (0) [C] when affine is 1, then the
 * buffers "running_mean" (0), "running_var" (1) [C] and "num_batches_tracked"
 * [1] (a count stored as float), whose grad is NULL. eps > 0, momentum in [0, 1].
 * Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG, BT_E_NOMEM. */
BT_API bt_status bt_layer_batchnorm_create(bt_layer **out, int32_t channels, double eps,
                                           double momentum, int32_t affine);

/* nn.ReLU: any shape; no tensors. The gradient is 0 where x <= 0. */
BT_API bt_status bt_layer_relu_create(bt_layer **out);

/* nn.MaxPool2d(kernel, stride, pad): [N, C, H, W] -> [N, C, Ho, Wo], floor
 * mode, padding never wins; pad must be at most kernel/2 (BT_E_INVALID_ARG).
 * Ties go to the first maximum in scan order, as in PyTorch. No tensors. */
BT_API bt_status bt_layer_maxpool2d_create(bt_layer **out, int32_t kernel, int32_t stride,
                                           int32_t pad);

/* Global average pooling: [N, C, H, W] -> [N, C] (nn.AdaptiveAvgPool2d(1)
 * then flatten). No tensors. */
BT_API bt_status bt_layer_avgpool_create(bt_layer **out);

/* Release a layer with its tensors (which become invalid). NULL does nothing. */
BT_API void bt_layer_free(bt_layer *l);

/* The output shape for an input of shape in_shape[0..ndim-1]: *out_ndim and
 * out_shape[0..*out_ndim-1] (out_shape must hold BT_TENSOR_MAX_DIMS values).
 * Returns BT_OK, BT_E_MISUSE (NULL), BT_E_INVALID_ARG (bad shape),
 * BT_E_SHAPE (the layer cannot take this input; the message says why). */
BT_API bt_status bt_layer_output_shape(const bt_layer *l, int32_t ndim, const int64_t *in_shape,
                                       int32_t *out_ndim, int64_t *out_shape);

/* y = layer(x), in training mode when training is non-zero (only batchnorm
 * differs). x is copied into the layer (see above); y must have the output
 * shape and is overwritten. Batchnorm in training updates its running
 * statistics. Returns BT_OK, BT_E_MISUSE (bad handle), BT_E_SHAPE (x does
 * not fit the layer, or y has the wrong shape), BT_E_NOMEM; on failure
 * nothing changed, including what a pending backward would use. */
BT_API bt_status bt_layer_forward(bt_layer *l, const bt_tensor *x, bt_tensor *y, int32_t training);

/* Backward of the last forward: dy has the forward's output shape; dx, when
 * not NULL, receives the input gradient (overwritten; it must not overlap dy
 * except for relu, where dx may be dy). Parameter gradients ACCUMULATE.
 * May be called more than once per forward (each call adds again).
 * Returns BT_OK, BT_E_MISUSE, BT_E_STATE (no forward yet), BT_E_SHAPE (dy or
 * dx shape differs from the forward's), BT_E_INVALID_ARG (dx overlaps dy). */
BT_API bt_status bt_layer_backward(bt_layer *l, const bt_tensor *dy, bt_tensor *dx);

/* Number of parameter and buffer tensors (0 for relu and pooling), or -1
 * with bt_last_error set for a bad handle. */
BT_API int32_t bt_layer_tensor_count(const bt_layer *l);

/* Tensor i (0 <= i < count) with its PyTorch name ("weight", "bias",
 * "running_mean", "running_var", "num_batches_tracked"), its value and its
 * gradient (NULL for buffers). All borrowed: owned by the layer, valid until
 * bt_layer_free, never to be passed to bt_tensor_free. Values and gradients
 * may be read and written. Any of name, value, grad may be NULL.
 * Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG (i out of range). */
BT_API bt_status bt_layer_tensor(bt_layer *l, int32_t i, const char **name, bt_tensor **value,
                                 bt_tensor **grad);

/* Set every parameter gradient to zero. Returns BT_OK or BT_E_MISUSE. */
BT_API bt_status bt_layer_zero_grad(bt_layer *l);

/* Extension: the number of threads this layer uses (0 = BT_NUM_THREADS, or
 * all cores). Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG (n < 0 or > 1024). */
BT_API bt_status bt_layer_set_threads(bt_layer *l, int32_t n);

/* Extension: re-initialise parameters and buffers as PyTorch's
 * reset_parameters() (distributions above; batchnorm: weight 1, bias 0,
 * running_mean 0, running_var 1, num_batches_tracked 0) with values drawn
 * from `seed`: the same seed gives the same values on every machine and
 * thread count. Gradients are unchanged. Returns BT_OK or BT_E_MISUSE. */
BT_API bt_status bt_layer_reset_parameters(bt_layer *l, uint64_t seed);

/* ------------------------------------------------------------------------ */
/* Model (issue: model)                                                    */
/* ------------------------------------------------------------------------ */

/* (declarations of this section go here) */

/* ------------------------------------------------------------------------ */
/* Loss (issue: loss)                                                      */
/* ------------------------------------------------------------------------ */

/* (declarations of this section go here) */

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
