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
 *    from different threads concurrently. Each handle has its own thread
 *    count; OpenBLAS's is process-wide (docs/THREADS.md says what follows).
 *  - The library never aborts, exits or prints.
 *
 * Statuses: each declaration lists the codes it can return and when.
 * BT_E_MISUSE always means a required pointer is NULL, or a handle is freed,
 * foreign or of another kind. BT_E_INTERNAL is not listed: only a bug in
 * libbarlow returns it. Functions that return a count, a size or a pointer
 * instead of a status say what they return on failure (-1 or NULL) and set
 * bt_last_error() then; free functions never fail.
 *
 * "Extension:" marks a function beyond the contract list of libbarlow's
 * design (the calls every binding and test relies on). Extensions are just as
 * stable: the ABI promise (docs/ABI.md) covers every declaration here.
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
 * Compare with BT_VERSION_NUMBER to detect a header/library mismatch.
 * Cannot fail; thread-safe. */
BT_API int32_t bt_version_number(void);

/* The same as a static string, "0.1.0". Never NULL; cannot fail; thread-safe. */
BT_API const char *bt_version_string(void);

/* Extension: a static, human-readable line describing how the library was
 * built and what it runs on: its version, the BLAS it calls (OpenBLAS or the
 * reference CBLAS), for OpenBLAS its configuration and the kernel core it
 * chose on this CPU, the threading back end, "cpu=<level>" (the CPU level a
 * handle created without the cpu.level option uses, see "CPU levels" below:
 * BT_CPU when it names a level this CPU runs, else the best) and
 * "cpu_best=<level>" (the best level this CPU runs). The line is made at
 * the first call, so a later change of BT_CPU does not show in it. The same
 * facts are readable one by one through bt_config_get() as "build.version",
 * "build.blas", "build.blas_core", "build.blas_config" and "build.threads";
 * "build.cpu_level" gives the level of one configuration.
 * Never NULL; cannot fail; thread-safe. */
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
#define BT_E_COMM 11       /* a communicator callback failed, or another rank's call did */
/* Codes are only ever appended. */

/* Static text for a status ("invalid argument", ...). Unknown codes give
 * "unknown status". Never NULL; cannot fail; thread-safe. */
BT_API const char *bt_status_string(bt_status s);

/* The detail message of the last failed call made by this thread, such as
 * "bt_tensor_create: shape[1] is 0; every dimension must be >= 1".
 * Successful calls do not clear it. The text is thread-local, owned by the
 * library, and valid until this thread's next failing call. Never NULL
 * (empty string when nothing failed yet); cannot fail. */
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
typedef struct bt_xent bt_xent;
typedef struct bt_comm bt_comm;

/* ------------------------------------------------------------------------ */
/* Tensors: float32, row-major (C order), 1 to 4 dimensions; images are NCHW */
/* ------------------------------------------------------------------------ */

#define BT_TENSOR_MAX_DIMS 4

/* Create a zero-filled tensor of shape[0] x ... x shape[ndim-1].
 * ndim: 1..BT_TENSOR_MAX_DIMS; every dimension >= 1; at most 2^40 elements.
 * The data is 64-byte aligned. Free with bt_tensor_free().
 * Returns BT_OK; BT_E_MISUSE (out or shape NULL); BT_E_INVALID_ARG (ndim
 * outside 1..4, a dimension < 1, more than 2^40 elements); BT_E_NOMEM. */
BT_API bt_status bt_tensor_create(bt_tensor **out, int32_t ndim, const int64_t *shape);

/* Create a tensor that borrows caller memory: data must hold numel floats and
 * stay valid (and not be freed) until bt_tensor_free() of this tensor, which
 * does not free it. The library reads and writes it in place. No alignment is
 * required. Returns as bt_tensor_create (BT_E_NOMEM only for the handle
 * itself), plus BT_E_MISUSE when data is NULL. */
BT_API bt_status bt_tensor_wrap(bt_tensor **out, float *data, int32_t ndim, const int64_t *shape);

/* Release a tensor (and its data unless wrapped). NULL does nothing.
 * Tensors owned by layers, models or other handles (see bt_layer_tensor())
 * must not be freed by the caller: that, like a pointer that is not a live
 * tensor, is ignored with BT_E_MISUSE recorded in bt_last_error(). */
BT_API void bt_tensor_free(bt_tensor *t);

/* Number of dimensions, or -1 (BT_E_MISUSE in bt_last_error) for a bad handle. */
BT_API int32_t bt_tensor_ndim(const bt_tensor *t);

/* Size of one axis; axis may be negative (-1 is the last). Returns -1 with
 * bt_last_error set for a bad handle (BT_E_MISUSE) or an axis outside
 * -ndim..ndim-1 (BT_E_INVALID_ARG). */
BT_API int64_t bt_tensor_dim(const bt_tensor *t, int32_t axis);

/* Number of elements, or -1 (BT_E_MISUSE in bt_last_error) for a bad handle. */
BT_API int64_t bt_tensor_numel(const bt_tensor *t);

/* Pointer to the first element (borrowed, valid for the tensor's life), or
 * NULL (BT_E_MISUSE in bt_last_error) for a bad handle. */
BT_API float *bt_tensor_data(bt_tensor *t);

/* Extension: copy the shape into shape[0..cap-1] and the dimension count
 * into *ndim. Returns BT_OK; BT_E_MISUSE (t bad, ndim or shape NULL);
 * BT_E_INVALID_ARG (cap smaller than the tensor's ndim). */
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
 *
 * CPU levels. The kernels exist for several instruction sets: "generic"
 * (portable C over the CBLAS, every platform), "avx2" (AVX2 + FMA) and
 * "avx512" (AVX-512F). Each handle fixes its level when it is created
 * (bt_model_create, bt_loss_create, bt_optim_create, bt_augment_create,
 * bt_xent_create), from the option "cpu.level" = auto|generic|avx2|avx512
 * (default auto); with auto, the environment variable BT_CPU =
 * generic|avx2|avx512 forces the level, and without it the handle takes the
 * best level this CPU runs. Layers made with bt_layer_*_create have no
 * configuration: they take BT_CPU or the CPU's best; a model's layers take
 * the model's level. A level the CPU cannot run makes the create call return
 * BT_E_UNSUPPORTED; a BT_CPU value other than generic, avx2, avx512, auto or
 * empty makes create calls that consult it (cpu.level auto) return
 * BT_E_INVALID_ARG with a message naming BT_CPU. The read-only key
 * "build.cpu_level" (bt_config_get) gives the level a handle created from
 * that configuration would use; bt_build_info() shows "cpu=" and
 * "cpu_best=". Results are deterministic for a given level and thread count;
 * different levels may differ in the last bits (each stays within the 1e-4
 * tolerance against PyTorch).
 */

/* Create a configuration holding every default.
 * Returns BT_OK; BT_E_MISUSE (out NULL); BT_E_NOMEM. */
BT_API bt_status bt_config_create(bt_config **out);

/* Release a configuration. NULL does nothing; a pointer that is not a live
 * configuration is ignored (BT_E_MISUSE recorded in bt_last_error). Handles
 * created from it do not keep a reference: it may be freed right after use. */
BT_API void bt_config_free(bt_config *c);

/* Set an option from text. The value is parsed and validated: a malformed or
 * out-of-range value gives BT_E_INVALID_ARG and a message naming the option,
 * the value and the bounds; an unknown name gives BT_E_UNSUPPORTED; a
 * read-only "build.*" key gives BT_E_INVALID_ARG. On error the stored value
 * is unchanged. value NULL restores the option's default.
 * Returns BT_OK; BT_E_MISUSE (c bad, name NULL); BT_E_INVALID_ARG (value
 * malformed, out of range or longer than 255 characters; a "build.*" key);
 * BT_E_UNSUPPORTED (unknown name); BT_E_NOMEM. */
BT_API bt_status bt_config_set(bt_config *c, const char *name, const char *value);

/* Read an option's value as text into buf (capacity cap bytes, always
 * NUL-terminated on success). A buffer too small gives BT_E_INVALID_ARG with
 * the needed size in the message; then buf is left untouched.
 * "build.cpu_level" resolves the level as a create call would, and fails as
 * it would (see CPU levels above).
 * Returns BT_OK; BT_E_MISUSE (c bad, name or buf NULL); BT_E_INVALID_ARG
 * (cap too small; for "build.cpu_level" an unknown BT_CPU value);
 * BT_E_UNSUPPORTED (unknown name; for "build.cpu_level" a level this CPU
 * cannot run). */
BT_API bt_status bt_config_get(const bt_config *c, const char *name, char *buf, size_t cap);

/* Extension: number of registered options (the per-view "aug.viewK.*" forms
 * and the read-only "build.*" keys are not counted separately). Cannot fail. */
BT_API int32_t bt_config_option_count(void);

/* Extension: describe option i (0 <= i < bt_config_option_count()): its
 * name, type ("int", "real", "choice", "int-list" or "real-list"), default
 * value, allowed range or choices (as text, e.g. "[0, 1]" or "lars|sgd|adamw")
 * and a one-line description. All strings are static. Any out pointer may be
 * NULL. Returns BT_OK or BT_E_INVALID_ARG (i out of range). */
BT_API bt_status bt_config_option(int32_t i, const char **name, const char **type,
                                  const char **default_value, const char **range,
                                  const char **description);

/* Extension: whether the option was set explicitly on this configuration (1)
 * or holds its default / preset value (0); -1 with bt_last_error set for a
 * bad handle or NULL name (BT_E_MISUSE) or an unknown name, "build.*" keys
 * included (BT_E_UNSUPPORTED). For per-view names, a shared "aug.X" setting
 * counts. */
BT_API int32_t bt_config_is_set(const bt_config *c, const char *name);

/* ------------------------------------------------------------------------ */
/* Layers                                                                   */
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
 * read at creation (bt_layer_set_threads changes it; a convolution's
 * backward runs on the smaller of its forward's count and the current one):
 * OpenMP for loops and for per-image or per-row GEMMs, the BLAS's threads
 * for GEMMs that run alone, never both at once (docs/THREADS.md). Results
 * are deterministic for a given thread count and CPU level.
 *
 * CPU level: a layer made here has no configuration; it takes BT_CPU, or the
 * best level this CPU runs, at creation (see CPU levels under Options). So
 * every bt_layer_*_create below can also return BT_E_INVALID_ARG (BT_CPU is
 * not generic, avx2, avx512 or auto) and BT_E_UNSUPPORTED (BT_CPU names a
 * level this CPU cannot run). A model's layers run at the model's level.
 */

/* nn.Conv2d(in_ch, out_ch, kernel, stride, pad, bias): square kernel, groups
 * 1, dilation 1. Input [N, in_ch, H, W], output [N, out_ch, Ho, Wo] with
 * Ho = (H + 2*pad - kernel)/stride + 1 (floor). Tensors: "weight"
 * [out_ch, in_ch, kernel, kernel], then "bias" [out_ch] when bias is 1; both
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_ch*kernel*kernel.
 * Returns BT_OK; BT_E_MISUSE (out NULL); BT_E_INVALID_ARG (in_ch, out_ch,
 * kernel or stride < 1, pad < 0, kernel, stride or pad > 4096, in_ch *
 * kernel^2 or out_ch >= 2^27, bias not 0/1; BT_CPU unknown);
 * BT_E_UNSUPPORTED (BT_CPU level); BT_E_NOMEM. */
BT_API bt_status bt_layer_conv2d_create(bt_layer **out, int32_t in_ch, int32_t out_ch,
                                        int32_t kernel, int32_t stride, int32_t pad, int32_t bias);

/* nn.Linear(in_features, out_features, bias): x [N, in_features] ->
 * [N, out_features]. Tensors "weight" [out_features, in_features] and "bias"
 * [out_features] (when bias is 1), U(-1/sqrt(in_features), 1/sqrt(in_features)).
 * Returns BT_OK; BT_E_MISUSE (out NULL); BT_E_INVALID_ARG (in_features or
 * out_features < 1 or >= 2^30, bias not 0/1; BT_CPU unknown);
 * BT_E_UNSUPPORTED (BT_CPU level); BT_E_NOMEM. */
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
 * [1] (a count stored as float), whose grad is NULL.
 * Returns BT_OK; BT_E_MISUSE (out NULL); BT_E_INVALID_ARG (channels < 1, eps
 * not finite and > 0, momentum outside [0, 1], affine not 0/1; BT_CPU
 * unknown); BT_E_UNSUPPORTED (BT_CPU level); BT_E_NOMEM. */
BT_API bt_status bt_layer_batchnorm_create(bt_layer **out, int32_t channels, double eps,
                                           double momentum, int32_t affine);

/* nn.ReLU: any shape; no tensors. The gradient is 0 where x <= 0.
 * Returns BT_OK; BT_E_MISUSE (out NULL); BT_E_INVALID_ARG (BT_CPU unknown);
 * BT_E_UNSUPPORTED (BT_CPU level); BT_E_NOMEM. */
BT_API bt_status bt_layer_relu_create(bt_layer **out);

/* nn.MaxPool2d(kernel, stride, pad): [N, C, H, W] -> [N, C, Ho, Wo], floor
 * mode, padding never wins. Ties go to the first maximum in scan order, as in
 * PyTorch. No tensors.
 * Returns BT_OK; BT_E_MISUSE (out NULL); BT_E_INVALID_ARG (kernel or stride
 * outside 1..4096, pad < 0 or more than kernel/2; BT_CPU unknown);
 * BT_E_UNSUPPORTED (BT_CPU level); BT_E_NOMEM. */
BT_API bt_status bt_layer_maxpool2d_create(bt_layer **out, int32_t kernel, int32_t stride,
                                           int32_t pad);

/* Global average pooling: [N, C, H, W] -> [N, C] (nn.AdaptiveAvgPool2d(1)
 * then flatten). No tensors.
 * Returns BT_OK; BT_E_MISUSE (out NULL); BT_E_INVALID_ARG (BT_CPU unknown);
 * BT_E_UNSUPPORTED (BT_CPU level); BT_E_NOMEM. */
BT_API bt_status bt_layer_avgpool_create(bt_layer **out);

/* Release a layer with its tensors (which become invalid). NULL does
 * nothing; a pointer that is not a live layer is ignored with BT_E_MISUSE
 * recorded in bt_last_error. */
BT_API void bt_layer_free(bt_layer *l);

/* The output shape for an input of shape in_shape[0..ndim-1]: *out_ndim and
 * out_shape[0..*out_ndim-1] (out_shape must hold BT_TENSOR_MAX_DIMS values).
 * Returns BT_OK; BT_E_MISUSE (l bad; in_shape, out_ndim or out_shape NULL);
 * BT_E_INVALID_ARG (ndim outside 1..4, a dimension < 1, more than 2^40
 * elements); BT_E_SHAPE (the layer cannot take this input: wrong number of
 * dimensions or channels, smaller than the kernel after padding, too large
 * for one GEMM; the message says which). */
BT_API bt_status bt_layer_output_shape(const bt_layer *l, int32_t ndim, const int64_t *in_shape,
                                       int32_t *out_ndim, int64_t *out_shape);

/* y = layer(x), in training mode when training is non-zero (only batchnorm
 * differs). x is copied into the layer (see above); y must have the output
 * shape and is overwritten. Batchnorm in training updates its running
 * statistics. Returns BT_OK; BT_E_MISUSE (l, x or y NULL or not live);
 * BT_E_SHAPE (x does not fit the layer as bt_layer_output_shape says, y has
 * another shape, or batchnorm training with one value per channel);
 * BT_E_NOMEM. On failure nothing changed, including what a pending backward
 * would use. */
BT_API bt_status bt_layer_forward(bt_layer *l, const bt_tensor *x, bt_tensor *y, int32_t training);

/* Backward of the last forward: dy has the forward's output shape; dx, when
 * not NULL, receives the input gradient (overwritten; it must not overlap dy
 * except for relu, where dx may be dy). Parameter gradients ACCUMULATE.
 * May be called more than once per forward (each call adds again).
 * Returns BT_OK; BT_E_MISUSE (l or dy NULL or not live, dx not live);
 * BT_E_STATE (no successful forward yet); BT_E_SHAPE (dy or dx shape differs
 * from the forward's); BT_E_INVALID_ARG (dx overlaps dy; for relu, dx
 * overlaps dy without being the same memory). Cannot run out of memory: the
 * forward allocated what the backward needs. */
BT_API bt_status bt_layer_backward(bt_layer *l, const bt_tensor *dy, bt_tensor *dx);

/* Number of parameter and buffer tensors (0 for relu and pooling), or -1
 * (BT_E_MISUSE in bt_last_error) for a bad handle. */
BT_API int32_t bt_layer_tensor_count(const bt_layer *l);

/* Tensor i (0 <= i < count) with its PyTorch name ("weight", "bias",
 * "running_mean", "running_var", "num_batches_tracked"), its value and its
 * gradient (NULL for buffers). All borrowed: owned by the layer, valid until
 * bt_layer_free, never to be passed to bt_tensor_free. Values and gradients
 * may be read and written. Any of name, value, grad may be NULL.
 * Returns BT_OK; BT_E_MISUSE (l bad); BT_E_INVALID_ARG (i out of range). */
BT_API bt_status bt_layer_tensor(bt_layer *l, int32_t i, const char **name, bt_tensor **value,
                                 bt_tensor **grad);

/* Set every parameter gradient to zero.
 * Returns BT_OK or BT_E_MISUSE (l bad). */
BT_API bt_status bt_layer_zero_grad(bt_layer *l);

/* Extension: the number of threads this layer uses (0 = BT_NUM_THREADS, or
 * all cores). Returns BT_OK; BT_E_MISUSE (l bad); BT_E_INVALID_ARG (n < 0
 * or > 1024). */
BT_API bt_status bt_layer_set_threads(bt_layer *l, int32_t n);

/* Extension: re-initialise parameters and buffers as PyTorch's
 * reset_parameters() (distributions above; batchnorm: weight 1, bias 0,
 * running_mean 0, running_var 1, num_batches_tracked 0) with values drawn
 * from `seed`: the same seed gives the same values on every machine and
 * thread count. Gradients are unchanged.
 * Returns BT_OK or BT_E_MISUSE (l bad). */
BT_API bt_status bt_layer_reset_parameters(bt_layer *l, uint64_t seed);

/* ------------------------------------------------------------------------ */
/* Model                                                                    */
/* ------------------------------------------------------------------------ */
/*
 * The Barlow Twins network: an encoder of the ResNet family (torchvision's
 * semantics and initialisation) followed by an MLP projector, built from the
 * model.* options. Tensors are named as the official implementation's
 * state_dict ("backbone.conv1.weight", "backbone.layer1.0.bn1.running_var",
 * "projector.0.weight", ...), so checkpoints map onto PyTorch modules.
 *
 * Memory: the model owns one workspace, sized at the first forward for a given
 * batch and image size and reused afterwards; training forward keeps every
 * activation the backward needs until the next forward.
 */

/* Build a model from cfg: model.arch, model.block, model.blocks, model.widths,
 * model.stem, model.in_channels, model.zero_init_residual, model.projector,
 * model.projector_bias, model.projector_bn, model.feature_dim, seed
 * (initialisation), threads and cpu.level (the model and all its layers run
 * at that level). cfg is required here (unlike the other create functions)
 * and not kept. model.arch "none" builds the projector alone: its input is
 * the host's own features, [N, model.feature_dim] per view (2-D), from an
 * encoder the host runs itself; bt_model_feature_dim is then
 * model.feature_dim and bt_model_encode the identity.
 * Returns BT_OK; BT_E_MISUSE (out NULL, cfg NULL or not a live config);
 * BT_E_INVALID_ARG (model.blocks and model.widths of different lengths with
 * model.arch "resnet"; model.arch "none" without model.feature_dim >= 1, or
 * model.feature_dim set with another arch; BT_CPU unknown); BT_E_UNSUPPORTED (cpu.level or
 * BT_CPU names a level this CPU cannot run); BT_E_NOMEM. */
BT_API bt_status bt_model_create(bt_model **out, const bt_config *cfg);

/* Release the model, its tensors and workspace. NULL does nothing; a pointer
 * that is not a live model is ignored (BT_E_MISUSE in bt_last_error). */
BT_API void bt_model_free(bt_model *m);

/* Width of the backbone's output (e.g. 2048 for resnet50, 512 for resnet18),
 * or -1 (BT_E_MISUSE in bt_last_error) for a bad handle. */
BT_API int64_t bt_model_feature_dim(const bt_model *m);

/* Width of the projector's output (the last model.projector size), or -1
 * (BT_E_MISUSE in bt_last_error) for a bad handle. */
BT_API int64_t bt_model_embed_dim(const bt_model *m);

/* Training-mode forward of nviews views (1 to 8). x[v] are [N, C, H, W] with
 * the same shape for every view ([N, model.feature_dim] with model.arch
 * "none") (C = model.in_channels, N >= 2 since
 * BatchNorm needs a batch, H and W large enough for the strides); z[v] are
 * caller-created [N, embed_dim] outputs. Each view is its own BatchNorm batch,
 * exactly as if each view went through the network alone, and running
 * statistics are updated once per view, in view order. The views are batched
 * together internally for speed. x is copied; it may be changed or freed
 * after the call.
 * Returns BT_OK; BT_E_MISUSE (m bad; x, z, an x[v] or a z[v] NULL or not
 * live); BT_E_INVALID_ARG (nviews outside 1..8); BT_E_SHAPE (an x[v] not
 * [N, model.in_channels, H, W], views of different shapes, N < 2, a z[v] not
 * [N, embed_dim], or H, W too small for the network; the message gives the
 * expected and actual shapes); BT_E_NOMEM. The argument checks come first
 * and a call failing them changes nothing. Every buffer is reserved before
 * the first layer runs, so BT_E_NOMEM leaves the weights and running
 * statistics as they were; it does discard the cached forward when the pass
 * was planned for a new shape (bt_model_backward then returns BT_E_STATE
 * until a forward succeeds). x is not checked for NaN or infinity: one passes
 * through the convolutions and BatchNorm (into its running statistics) and is
 * zeroed by the next ReLU, so z may be finite; the first convolution's
 * gradient is then not, and bt_optim_step refuses the step. Running
 * statistics are floats: a batch variance beyond FLT_MAX is kept as inf, with
 * BT_OK (training uses batch statistics; eval mode and checkpoints see it).
 * With a communicator (bt_model_set_comm) x holds this
 * rank's N_r >= 1 images per view, the views' H and W must match on every
 * rank and the global N = sum N_r must be >= 2; a failed call leaves the
 * running statistics unchanged; and BT_E_COMM as that section says. */
BT_API bt_status bt_model_forward(bt_model *m, int32_t nviews, const bt_tensor *const *x,
                                  bt_tensor *const *z);

/* Backward of the last bt_model_forward: dz[v] are [N, embed_dim] gradients of
 * the loss with respect to z[v]. Parameter gradients ACCUMULATE (sum over the
 * views) until bt_model_zero_grad().
 * Returns BT_OK; BT_E_MISUSE (m bad; dz or a dz[v] NULL or not live);
 * BT_E_STATE (no training forward cached: none yet, or bt_model_encode or a
 * failed bt_model_forward since); BT_E_SHAPE (nviews differs from the
 * forward's, a dz[v] not [N, embed_dim]). Allocates nothing. One backward
 * per forward: the backward reuses the memory of what it has read, so a
 * second call without a new forward returns BT_E_STATE (bt_model_features
 * stays valid). With a communicator, dz[v] are this rank's rows of the global
 * loss's gradient and the gradients gain that loss's whole parameter gradient
 * (summed over the ranks; what was accumulated before is counted once); a
 * failed call leaves the gradients as they were but, like a successful one,
 * consumes the forward; and BT_E_COMM as that section says. With model.arch
 * "none" it also keeps the gradient with respect to the input views, for
 * bt_model_input_grad. */
BT_API bt_status bt_model_backward(bt_model *m, int32_t nviews, const bt_tensor *const *dz);

/* Training-mode forward of the backbone alone, for a host that trains the
 * encoder with its own head (a bt_layer linear classifier, say) instead of the
 * projector and the Barlow Twins loss. x[v] are [N, model.in_channels, H, W]
 * views as for bt_model_forward (same shape for every view, N >= 2); features[v]
 * are caller-created [N, bt_model_feature_dim(m)] outputs. Each view is its own
 * BatchNorm batch and running statistics update once per view, in view order,
 * as bt_model_forward does; the projector does not run. x is copied. The
 * forward replaces any cached one (bt_model_features then gives these
 * features); a switch between this call and bt_model_forward, or a new shape,
 * plans the workspace again.
 * Returns BT_OK; BT_E_MISUSE (m bad; x, features, an x[v] or a features[v]
 * NULL or not live); BT_E_INVALID_ARG (nviews outside 1..8); BT_E_SHAPE (as
 * bt_model_forward, with features[v] in place of z[v]; the message gives the
 * expected and actual shapes); BT_E_UNSUPPORTED (model.arch "none", which has
 * no backbone; a communicator is set); BT_E_NOMEM. A failed call changes no
 * weights or running statistics (BT_E_NOMEM discards the cached forward, as
 * bt_model_forward). One handle, one thread at a time. */
BT_API bt_status bt_model_forward_backbone(bt_model *m, int32_t nviews, const bt_tensor *const *x,
                                           bt_tensor *const *features);

/* Backward of the last bt_model_forward_backbone: dfeatures[v] are the
 * [N, feature_dim] gradients of the host's loss with respect to features[v].
 * Parameter gradients ACCUMULATE (sum over the views) until
 * bt_model_zero_grad(); the projector's are untouched. dx is NULL (no input
 * gradient, which saves the first convolution's input gradient) or nviews
 * caller-created tensors shaped like x[v], which receive the gradient with
 * respect to each view (overwritten). dfeatures and dx are borrowed.
 * Returns BT_OK; BT_E_MISUSE (m bad; dfeatures, a dfeatures[v] or a dx[v]
 * NULL or not live); BT_E_STATE (no backbone forward cached: none yet, or
 * the cached forward is a bt_model_forward's, or bt_model_encode, a failed
 * forward or a backward since); BT_E_SHAPE (nviews differs from the
 * forward's, a dfeatures[v] not [N, feature_dim], a dx[v] not the shape of
 * x[v]). The checks come first: a failed call changes nothing. Allocates
 * nothing. One backward per forward, as bt_model_backward. One handle, one
 * thread at a time. */
BT_API bt_status bt_model_backward_backbone(bt_model *m, int32_t nviews,
                                            const bt_tensor *const *dfeatures,
                                            bt_tensor *const *dx);

/* After bt_model_backward of a model.arch "none" model: the gradient with
 * respect to view `view`'s input (x[view] of the forward, the host's
 * features) into dx, a caller-created [N, feature_dim] tensor (overwritten),
 * so a host chains the backward into its own encoder. Valid until the next
 * forward or bt_model_encode; with a communicator, this rank's rows.
 * Returns BT_OK; BT_E_MISUSE (m bad; dx NULL or not live); BT_E_UNSUPPORTED
 * (a ResNet model: its bt_model_backward does not compute the image gradient;
 * bt_model_backward_backbone with dx gives it); BT_E_STATE (no such backward:
 * none yet, or a forward or bt_model_encode since); BT_E_INVALID_ARG (view
 * outside 0..nviews-1); BT_E_SHAPE (dx not [N, feature_dim]). A failed call
 * changes nothing; m is only read, but like every call on m it must not
 * overlap another call on m from a second thread. */
BT_API bt_status bt_model_input_grad(bt_model *m, int32_t view, bt_tensor *dx);

/* The bytes of workspace a training step (bt_model_forward of nviews views,
 * each of shape[0..ndim-1] = [N, C, H, W], then bt_model_backward) reserves:
 * one arena holding the activations the backward reads, the outputs it
 * recomputes and the gradients, plus the scratch the layers share. Callable
 * before the first forward, so a host can size batches to its memory; a step
 * at that shape then reserves this much (threads as set now; the scratch only
 * grows, so more after a bigger shape). Not
 * counted: parameters and their gradients, optimizer state, the caller's
 * tensors, and each layer's few statistics (a max-pool stem's indices, 4 bytes
 * per pooled output). shape is borrowed, *bytes written on success only.
 * Returns BT_OK; BT_E_MISUSE (m bad, shape or bytes NULL); BT_E_INVALID_ARG
 * (nviews not 1 to 8, ndim not 4, shape not [N >= 2, model.in_channels, H, W]
 * or H, W too small for the network; the message gives the shape); BT_E_NOMEM.
 * Changes nothing in m. */
BT_API bt_status bt_model_workspace_bytes(bt_model *m, int32_t nviews, int32_t ndim,
                                          const int64_t *shape, size_t *bytes);

/* The backbone output [N, feature_dim] of view `view` of the last training
 * forward, borrowed (valid until the next forward or bt_model_encode), for
 * online probes.
 * Returns BT_OK; BT_E_MISUSE (m bad, out NULL); BT_E_STATE (no training
 * forward cached, as bt_model_backward); BT_E_INVALID_ARG (view outside
 * 0..nviews-1 of that forward). */
BT_API bt_status bt_model_features(bt_model *m, int32_t view, const bt_tensor **out);

/* Eval-mode encoding: backbone only, BatchNorm with running statistics, no
 * statistics updated. x is [N, C, H, W] (N >= 1), features a caller-created
 * [N, feature_dim]. With model.arch "none" (no backbone) x is [N, feature_dim]
 * and features a copy of it: the identity. Invalidates the cached training activations: a
 * bt_model_backward after it returns BT_E_STATE.
 * Returns BT_OK; BT_E_MISUSE (m, x or features NULL or not live);
 * BT_E_SHAPE (x not [N, model.in_channels, H, W] ([N, feature_dim] with
 * model.arch "none"), H or W too small for the
 * network, features not [N, feature_dim]); BT_E_NOMEM. */
BT_API bt_status bt_model_encode(bt_model *m, const bt_tensor *x, bt_tensor *features);

/* Set every parameter gradient to zero.
 * Returns BT_OK or BT_E_MISUSE (m bad). */
BT_API bt_status bt_model_zero_grad(bt_model *m);

/* Number of tensors: every parameter AND buffer (BatchNorm running statistics
 * and num_batches_tracked), or -1 (BT_E_MISUSE in bt_last_error) for a bad
 * handle. */
BT_API int32_t bt_model_tensor_count(const bt_model *m);

/* Tensor i (0 <= i < count) in state_dict order: *name (static to the model),
 * *value and *grad (NULL for buffers), all borrowed; any out pointer may be
 * NULL. The caller may read and write values and gradients (for its own
 * gradient reduction, say) but not free them.
 * Returns BT_OK; BT_E_MISUSE (m bad); BT_E_INVALID_ARG (i out of range). */
BT_API bt_status bt_model_tensor(bt_model *m, int32_t i, const char **name, bt_tensor **value,
                                 bt_tensor **grad);

/* Extension: threads for the model's loops and GEMMs, 1 to 1024 (overrides
 * the threads option; every layer of the model follows).
 * Returns BT_OK; BT_E_MISUSE (m bad); BT_E_INVALID_ARG (threads outside
 * 1..1024). */
BT_API bt_status bt_model_set_threads(bt_model *m, int32_t threads);

/* ------------------------------------------------------------------------ */
/* Loss                                                                     */
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

/* Create a loss from cfg's "loss.*" options, "threads" and "cpu.level"; cfg
 * NULL means every default. cfg may be freed right after. *out is NULL on
 * failure. Returns BT_OK; BT_E_MISUSE (out NULL, cfg not a live config);
 * BT_E_INVALID_ARG (BT_CPU unknown); BT_E_UNSUPPORTED (cpu.level or BT_CPU
 * names a level this CPU cannot run); BT_E_NOMEM. */
BT_API bt_status bt_loss_create(bt_loss **out, const bt_config *cfg);

/* Release a loss and its buffers. NULL does nothing; a pointer that is not a
 * live loss is ignored (BT_E_MISUSE in bt_last_error). */
BT_API void bt_loss_free(bt_loss *l);

/* Compute the loss of za, zb (both [N, D], same shape, N >= 2, all finite;
 * only read) into *loss, and keep what the backward needs. On any error the
 * handle is unchanged: bt_loss_backward, bt_loss_terms and
 * bt_loss_correlation still refer to the last successful forward.
 * Returns BT_OK; BT_E_MISUSE (l, za or zb NULL or not live, loss NULL);
 * BT_E_SHAPE (ndim != 2, shapes differ, N < 2, N or D >= 2^31);
 * BT_E_NUMERIC (a NaN or infinity in za or zb; the message gives its
 * index); BT_E_NOMEM (the buffers for a new shape or path).
 * With a communicator (bt_loss_set_comm) za and zb are this rank's N_r >= 1
 * rows, the global N = sum N_r >= 2 and the value is the global batch's; and
 * BT_E_COMM as that section says. */
BT_API bt_status bt_loss_forward(bt_loss *l, const bt_tensor *za, const bt_tensor *zb,
                                 double *loss);

/* Write dloss/dza into dza and dloss/dzb into dzb (both [N, D] as the last
 * successful forward; OVERWRITTEN, not accumulated; distinct memory), through
 * the normalisation. May be called more than once per forward.
 * Returns BT_OK; BT_E_MISUSE (l, dza or dzb NULL or not live); BT_E_STATE
 * (no successful forward yet); BT_E_SHAPE (dza or dzb not the forward's
 * [N, D]); BT_E_INVALID_ARG (dza and dzb have the same data pointer; memory
 * that only partly overlaps is not detected). Allocates nothing. */
BT_API bt_status bt_loss_backward(bt_loss *l, bt_tensor *dza, bt_tensor *dzb);

/* The raw terms of the last successful forward, before lambda and scale:
 * barlow-type modes sum_i (1 - C_ii)^2 and sum_{i != j} C_ij^2 (both are
 * computed whatever the mode); xent -log sum_i exp(C_ii / tau) and
 * log sum_{i != j} exp(max(C_ij, 0) / tau). Either pointer may be NULL.
 * Returns BT_OK; BT_E_MISUSE (l bad); BT_E_STATE (no successful forward
 * yet). */
BT_API bt_status bt_loss_terms(const bt_loss *l, double *on_diag, double *off_diag);

/* Extension: choose the computation path of the following forwards
 * (BT_LOSS_PATH_AUTO, _DXD or _GRAM); the last forward is not affected.
 * Returns BT_OK; BT_E_MISUSE (l bad); BT_E_INVALID_ARG (unknown path);
 * BT_E_UNSUPPORTED (_GRAM with loss.mode xent). */
BT_API bt_status bt_loss_set_path(bt_loss *l, int32_t path);

/* Extension: the path the last successful forward used (BT_LOSS_PATH_DXD or
 * BT_LOSS_PATH_GRAM), BT_LOSS_PATH_AUTO (0) before any, -1 (BT_E_MISUSE in
 * bt_last_error) for a bad handle. */
BT_API int32_t bt_loss_path(const bt_loss *l);

/* Extension: the cross-correlation matrix C of the last successful forward,
 * or its leading block: c must be a caller-created [k, k] tensor, 1 <= k <= D,
 * and receives C[0..k, 0..k] (diagonal as the terms use it). Works on either
 * path (the Gram path computes the block from the kept normalised views: 2 N
 * k^2 flops). A full C is D^2 floats (256 MB for D = 8192); a block suits
 * pictures. Returns BT_OK; BT_E_MISUSE (l or c NULL or not live);
 * BT_E_STATE (no successful forward yet); BT_E_SHAPE (c not [k, k] with
 * k <= D). Allocates nothing. */
BT_API bt_status bt_loss_correlation(bt_loss *l, bt_tensor *c);

/* ------------------------------------------------------------------------ */
/* Cross-entropy for linear probes                                          */
/* ------------------------------------------------------------------------ */
/*
 * Softmax cross-entropy for linear probes and fine-tuning, as
 * torch.nn.functional.cross_entropy with mean reduction: for logits z [N, K]
 * and labels y, loss = (1/N) sum_n (log sum_k exp z[n,k] - z[n,y_n]),
 * computed with a log-sum-exp in double. The forward keeps the softmax for
 * the backward; its buffers grow to the largest N x K seen and are reused.
 * Threads: the "threads" option (OpenMP, rows in parallel); the mean is
 * summed in row order, so it does not depend on the thread count.
 */

/* Extension: create a cross-entropy handle. cfg may be NULL; its "threads"
 * and "cpu.level" options are read (NULL: BT_NUM_THREADS or all cores, and
 * the CPU level as described under Options).
 * Returns BT_OK; BT_E_MISUSE (out NULL, cfg not a live config);
 * BT_E_INVALID_ARG (BT_CPU unknown); BT_E_UNSUPPORTED (cpu.level or BT_CPU
 * names a level this CPU cannot run); BT_E_NOMEM. */
BT_API bt_status bt_xent_create(bt_xent **out, const bt_config *cfg);

/* Extension: release the handle. NULL does nothing; a pointer that is not a
 * live cross-entropy handle is ignored (BT_E_MISUSE in bt_last_error). */
BT_API void bt_xent_free(bt_xent *x);

/* Extension: forward. logits is [N, K] (K >= 1), labels holds N class
 * indices in [0, K). Writes the mean loss and the number of rows whose label
 * is the arg-max (top-1) or among the min(5, K) largest logits (top-5); ties
 * go to the lower class index, as torch.argmax. Any of mean_loss,
 * top1_correct, top5_correct may be NULL.
 * Returns BT_OK; BT_E_MISUSE (x, logits or labels NULL / not live);
 * BT_E_SHAPE (logits not 2-D); BT_E_INVALID_ARG (a label out of range,
 * named with its row); BT_E_NUMERIC (a non-finite logit); BT_E_NOMEM. On
 * failure the previous forward stays usable. */
BT_API bt_status bt_xent_forward(bt_xent *x, const bt_tensor *logits, const int32_t *labels,
                                 double *mean_loss, int64_t *top1_correct, int64_t *top5_correct);

/* Extension: backward of the last forward: overwrites dlogits ([N, K], the
 * forward's shape) with d(mean loss)/d logits = (softmax(z) - onehot(y)) / N.
 * May be called more than once per forward.
 * Returns BT_OK; BT_E_MISUSE (x or dlogits NULL or not live); BT_E_STATE (no
 * successful forward yet); BT_E_SHAPE (dlogits not the forward's [N, K]).
 * Allocates nothing. */
BT_API bt_status bt_xent_backward(bt_xent *x, bt_tensor *dlogits);

/* ------------------------------------------------------------------------ */
/* Augmentation                                                             */
/* ------------------------------------------------------------------------ */
/*
 * The official Barlow Twins augmentation (BYOL's asymmetric pair), computed
 * on host-owned uint8 images with Pillow's and torchvision's arithmetic, in
 * this order for each view of each image:
 *
 *   RandomResizedCrop(S, scale, ratio; bicubic or bilinear with antialiasing)
 *   -> horizontal flip (flip_p) -> colour jitter (jitter_p; brightness,
 *   contrast, saturation, hue in a uniformly random order, each rounded to
 *   uint8 as PIL does) -> grayscale (gray_p) -> PIL GaussianBlur with
 *   sigma ~ U[0.1, 2.0] (blur_p) -> solarize at 128 (solarize_p)
 *   -> x/255 -> (x - mean) / std.
 *
 * Settings are read per view at creation: "aug.view1.X" for the first output,
 * "aug.view2.X" for the second (each defaulting to the shared "aug.X", then to
 * "aug.preset"). The imagenet preset is the paper's: 224 px, bicubic, blur
 * 1.0 / 0.1, solarize 0 / 0.2.
 *
 * Images: image i is heights[i] x widths[i] pixels of `channels` (1 or 3)
 * interleaved uint8 values, rows packed (row stride = width * channels), at
 * most 32768 pixels per side. Each image may have its own size; all share the
 * channel count. Grayscale, saturation and hue leave 1-channel images as they
 * are (as torchvision does for PIL "L" images).
 *
 * Normalisation: aug.mean / aug.std with 3 values apply per channel to RGB
 * images; with 1 value, to every channel. 1-channel images need 1 value in
 * both (else BT_E_INVALID_ARG); 2 values are refused at creation.
 *
 * Randomness: every random choice of view v of image i in the k-th successful
 * bt_augment_views call since the state was set is drawn from a counter-based
 * generator keyed by (seed, k, i, v). Output is therefore bit-identical for
 * any thread count and any scheduling, and the state is two integers (see
 * bt_augment_get_state). Failed calls do not advance k.
 *
 * Threads: images (and views) are processed in parallel on OpenMP threads, as
 * many as the "threads" option of the creating configuration says.
 */

/* Create an augmentation pipeline from cfg's aug.*, "seed", "threads" and
 * "cpu.level" options; cfg NULL means all defaults (imagenet preset, seed 0,
 * threads from BT_NUM_THREADS or all cores). cfg is not kept. The call
 * counter starts at 0.
 * Returns BT_OK; BT_E_MISUSE (out NULL, cfg not a live config);
 * BT_E_INVALID_ARG (aug.viewK.scale_min > scale_max, ratio_min > ratio_max,
 * a 2-value mean or std; BT_CPU unknown); BT_E_UNSUPPORTED (cpu.level or
 * BT_CPU names a level this CPU cannot run); BT_E_NOMEM. */
BT_API bt_status bt_augment_create(bt_augment **out, const bt_config *cfg);

/* Release the pipeline and its workspaces. NULL does nothing, and so does a
 * pointer that is not a live pipeline (silently: bt_last_error is not set). */
BT_API void bt_augment_free(bt_augment *a);

/* Produce nviews augmented views of n images. out[v] (v = 0..nviews-1) must be
 * a tensor of shape [n, channels, S_v, S_v] where S_v = aug.view1.size for
 * v = 0 and aug.view2.size otherwise (bt_augment_output_size); it is
 * overwritten. nviews is 1..8: view 0 uses the aug.view1.* settings, every
 * later view the aug.view2.* settings, each with its own random stream (so
 * nviews > 2 gives extra independent view-2 crops). images, heights, widths
 * (n entries each) and out (nviews entries, distinct tensors) are borrowed for
 * the call only. On success the call counter advances by one.
 * Returns BT_OK; BT_E_MISUSE (a, images, images[i], heights, widths, out or
 * out[v] NULL or not a live handle); BT_E_INVALID_ARG (n < 1, channels not 1
 * or 3, an image side outside 1..32768, nviews outside 1..8, out tensors
 * repeated, 1-channel images with a 3-value mean or std); BT_E_SHAPE (out[v]
 * of another shape); BT_E_NOMEM (per-call parameters or the per-thread
 * workspaces). On error nothing is written and the counter stays. */
BT_API bt_status bt_augment_views(bt_augment *a, int32_t n, const uint8_t *const *images,
                                  const int32_t *heights, const int32_t *widths, int32_t channels,
                                  int32_t nviews, bt_tensor *const *out);

/* The evaluation transform, deterministic (no random draws; the call counter
 * does not move): resize so the short side is R = round(S * 256 / 224)
 * (S = aug.view1.size: 224 -> 256, 32 -> 37, 28 -> 32) and the long side
 * int(R * long / short), with PIL's BILINEAR filter and antialiasing; crop the
 * S x S centre (offsets round((H' - S) / 2) half to even, as torchvision's
 * CenterCrop); then x/255 and aug.view1.mean / aug.view1.std. This is
 * torchvision's Resize(256), CenterCrop(224) for S = 224. out must be
 * [n, channels, S, S]. Arguments as bt_augment_views.
 * Returns BT_OK; BT_E_MISUSE (a, images, images[i], heights, widths or out
 * NULL or not a live handle); BT_E_INVALID_ARG (n < 1, channels not 1 or 3,
 * an image side outside 1..32768, 1-channel images with a 3-value
 * aug.view1.mean or std); BT_E_SHAPE (out of another shape); BT_E_NOMEM. On
 * error nothing is written. */
BT_API bt_status bt_augment_eval(bt_augment *a, int32_t n, const uint8_t *const *images,
                                 const int32_t *heights, const int32_t *widths, int32_t channels,
                                 bt_tensor *out);

/* Pixel layouts of bt_augment_views_at and bt_augment_eval_ex: interleaved
 * uint8 values per pixel. Grey images give 1-channel views, every other layout
 * RGB ones (channels in R, G, B order whatever the source order; alpha is
 * ignored). BGR is OpenCV's order. */
#define BT_PIXELS_GRAY 1    /* 1 byte per pixel */
#define BT_PIXELS_RGB 3     /* R, G, B */
#define BT_PIXELS_BGR 19    /* B, G, R */
#define BT_PIXELS_RGBA 4    /* R, G, B, A */
#define BT_PIXELS_BGRA 20   /* B, G, R, A */

/* Extension: bt_augment_views for images as pipelines hold them, keyed by their
 * global index. Image i (0..n-1) is heights[i] x widths[i] pixels in `format`
 * (BT_PIXELS_*), its rows strides[i] bytes apart (strides NULL: packed rows;
 * each stride at least width * bytes per pixel), so an OpenCV Mat or a camera
 * frame goes in without a copy. Its views are drawn from the stream keyed by
 * (seed, call, first_index + i, view): several callers (data-parallel ranks,
 * or one host splitting a batch) that each pass their slice [k, k + n) of a
 * batch in the same call number produce exactly the views one call over the
 * whole batch would, and bt_augment_views is this call with first_index 0,
 * packed rows and BT_PIXELS_GRAY or BT_PIXELS_RGB. A BGR or RGBA image gives
 * the same views as its packed RGB copy. out[v] is [n, C, S_v, S_v] with C = 1
 * for BT_PIXELS_GRAY, else 3. On success the call counter advances by one.
 * Returns as bt_augment_views, and BT_E_INVALID_ARG for first_index < 0, an
 * unknown format or a stride below its row's bytes. On error nothing is
 * written and the counter stays. */
BT_API bt_status bt_augment_views_at(bt_augment *a, int64_t first_index, int32_t n,
                                     const uint8_t *const *images, const int32_t *heights,
                                     const int32_t *widths, const int64_t *strides,
                                     int32_t format, int32_t nviews, bt_tensor *const *out);

/* Extension: bt_augment_eval for strided images in any BT_PIXELS_* layout
 * (arguments as bt_augment_views_at). The same bytes as bt_augment_eval of the
 * packed grey or RGB copy. Returns as bt_augment_eval, and BT_E_INVALID_ARG for
 * an unknown format or a short stride; on error nothing is written. */
BT_API bt_status bt_augment_eval_ex(bt_augment *a, int32_t n, const uint8_t *const *images,
                                    const int32_t *heights, const int32_t *widths,
                                    const int64_t *strides, int32_t format, bt_tensor *out);

/* Extension: the output side S of view `view` (0 = first output,
 * aug.view1.size; 1..7 = aug.view2.size), or -1 with bt_last_error set for a
 * bad handle (BT_E_MISUSE) or a view outside 0..7 (BT_E_INVALID_ARG). */
BT_API int32_t bt_augment_output_size(const bt_augment *a, int32_t view);

/* Extension: read the random state: the seed and the number of successful
 * bt_augment_views calls made since creation or the last set_state. Either
 * pointer may be NULL. Store both in a checkpoint to resume the exact stream.
 * Returns BT_OK or BT_E_MISUSE (a bad). */
BT_API bt_status bt_augment_get_state(const bt_augment *a, uint64_t *seed, uint64_t *calls);

/* Extension: set the random state: the next bt_augment_views call draws
 * exactly what the call number `calls` of a pipeline seeded with `seed` drew.
 * Settings and workspaces are unchanged.
 * Returns BT_OK or BT_E_MISUSE (a bad). */
BT_API bt_status bt_augment_set_state(bt_augment *a, uint64_t seed, uint64_t calls);

/* ------------------------------------------------------------------------ */
/* Optimizers                                                               */
/* ------------------------------------------------------------------------ */

/*
 * An optimizer updates a list of (value, gradient) tensor pairs in place, in
 * two groups as the official Barlow Twins code does:
 *   group 0: tensors with >= 2 dimensions (conv and linear weights), rate
 *            "optim.lr", weight decay and (LARS) the trust-ratio adaptation;
 *   group 1: 1-dimensional tensors (BatchNorm gamma/beta, biases), rate
 *            "optim.lr_bias"; with "optim.exclude_bias_bn" = 1 (the default)
 *            they get no weight decay and no adaptation, with 0 they are
 *            decayed and adapted like group 0 (but keep their own rate).
 *
 * Options read at creation ("optim.*", see docs/options.md):
 *   kind            lars | sgd | adamw
 *   lr, lr_bias     per-group rates, both multiplied by batch_size/256
 *   momentum        momentum (LARS, SGD) or beta1 (AdamW)
 *   weight_decay, eta, exclude_bias_bn, nesterov (sgd only), beta2, adam_eps
 *   grad_scale      every gradient is multiplied by it first (1 = exact; 1/W
 *                   reproduces the official W-GPU runs' gradient scale)
 *   lars_variant    official | solo (below)
 *   schedule, batch_size, warmup_steps, total_steps, final_lr_ratio (below)
 *   threads         element-wise loops use this many OpenMP threads
 *
 * Schedule, for the step s about to be taken (s = bt_optim_step_count()) and
 * base_g = batch_size/256 * lr_g of group g:
 *   s <  warmup_steps:  lr_g(s) = base_g * s / warmup_steps   (so lr(0) = 0)
 *   otherwise, with schedule "constant" or total_steps = 0:  lr_g(s) = base_g
 *   otherwise ("cosine"), s < total_steps: t = s - warmup_steps,
 *       T = total_steps - warmup_steps, q = (1 + cos(pi t / T)) / 2,
 *       lr_g(s) = base_g * (q + final_lr_ratio * (1 - q))
 *   s >= total_steps:  lr_g(s) = final_lr_ratio * base_g   (held for ever)
 * This is the official main.py schedule with its 10-epoch warm-up and
 * 0.001 end ratio made options.
 *
 * Updates, per tensor p with gradient g (g already multiplied by grad_scale),
 * state mu / m / v starting at zero, wd = weight_decay for decayed tensors
 * and 0 otherwise, norms ||.|| of the whole tensor, accumulated in double:
 *   lars, official (facebookresearch/barlowtwins main.py):
 *       adapted tensors: u = g + wd p;  q = eta ||p|| / ||u|| when both norms
 *       are > 0, else 1;  u = q u.   Other tensors: u = g.
 *       mu = momentum mu + u;  p -= lr mu.
 *   lars, solo (solo-learn / Lightning Bolts, with clip_lars_lr on):
 *       adapted tensors with ||p|| > 0 and ||g|| > 0:
 *       t = eta ||p|| / (||g|| + wd ||p|| + 1e-8);  q = min(t / lr, 1)
 *       (q = 1 when lr = 0), so the rate applied to this tensor's update is
 *       min(t, lr);  u = q (g + wd p).  Otherwise u = g (no decay either).
 *       mu = momentum mu + u;  p -= lr mu.
 *   sgd (torch.optim.SGD, dampening 0): d = g + wd p;  mu = momentum mu + d;
 *       p -= lr (d + momentum mu) with nesterov, p -= lr mu without.
 *   adamw (torch.optim.AdamW, beta1 = momentum, t = step count + 1):
 *       p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *       p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + adam_eps).
 *
 * A step whose gradients hold an infinity or NaN anywhere is refused with
 * BT_E_NUMERIC before anything is written: no parameter, no state, no step
 * count changes (a GradScaler-style loop can then skip the batch).
 *
 * Determinism: norms are summed in fixed-size blocks in a fixed order, so the
 * result does not even depend on the thread count. The optimizer state
 * (momentum or Adam moments, the step count) is saved and restored by
 * bt_checkpoint_save/load, and a run resumed from step k is bit-identical to
 * one that never stopped.
 */

/* Create an optimizer from the "optim.*", "threads" and "cpu.level" options
 * of cfg (NULL: all defaults; cfg may be freed after the call). It starts
 * with no tensors and step 0.
 * Returns BT_OK; BT_E_MISUSE (out NULL, cfg not a live config);
 * BT_E_INVALID_ARG for an inconsistent combination: "optim.nesterov" = 1
 * with a kind other than sgd or with momentum 0, or a cosine schedule whose
 * total_steps (> 0) is not larger than warmup_steps; also for an unknown
 * BT_CPU value; BT_E_UNSUPPORTED (cpu.level or BT_CPU names a level this CPU
 * cannot run); BT_E_NOMEM. */
BT_API bt_status bt_optim_create(bt_optim **out, const bt_config *cfg);

/* Release the optimizer and its state. The tensors it updates are not
 * touched. NULL does nothing; a pointer that is not a live optimizer is
 * ignored (BT_E_MISUSE in bt_last_error). */
BT_API void bt_optim_free(bt_optim *o);

/* Extension: add one parameter: value is updated in place from grad (same
 * shape, 1 to 4 dimensions). The group follows the number of dimensions.
 * name identifies the tensor's optimizer state in checkpoints
 * ("optim.<name>.momentum", "optim.<name>.exp_avg", ...): use the model's
 * tensor name, e.g. "backbone.conv1.weight". It is copied; it must be 1 to
 * 200 printable ASCII characters without '"' or '\\', and unique within the
 * optimizer; NULL gives "param.<index>".
 * value and grad are BORROWED: they must stay alive, with the same shape,
 * for as long as the optimizer is used (bt_optim_step() refuses with
 * BT_E_MISUSE a tensor that was freed). Tensors must be added before the
 * first step. Returns BT_OK; BT_E_MISUSE (o, value or grad NULL or not
 * live, value and grad the same tensor or data); BT_E_STATE (the optimizer
 * has already stepped); BT_E_SHAPE (grad's shape differs); BT_E_INVALID_ARG
 * (bad or duplicate name, value or grad, or their data, already added);
 * BT_E_NOMEM. */
BT_API bt_status bt_optim_add_tensor(bt_optim *o, bt_tensor *value, bt_tensor *grad,
                                     const char *name);

/* One update of every added tensor with the rates bt_optim_lr() reports,
 * then the step count + 1. Gradients are only read (never cleared: zero them
 * yourself before accumulating the next ones). Uses the "threads" option's
 * thread count (OpenMP) for the element-wise loops.
 * Returns BT_OK; BT_E_MISUSE (o not live, or an added tensor freed or
 * reshaped); BT_E_STATE (no tensors added); BT_E_NUMERIC (a gradient, or a
 * LARS-adapted parameter, is not finite; the message names the tensor). On
 * any error nothing changed. Allocates nothing. The update itself is not
 * checked: with finite gradients a rate large enough can write +-inf into a
 * parameter (sgd, lars) or into AdamW's exp_avg_sq with BT_OK; LARS refuses
 * such a parameter at its next step. No option allows non-finite values. */
BT_API bt_status bt_optim_step(bt_optim *o);

/* Number of steps taken (restored by bt_checkpoint_load), or -1
 * (BT_E_MISUSE in bt_last_error) for a bad handle. */
BT_API int64_t bt_optim_step_count(const bt_optim *o);

/* The learning rate the NEXT bt_optim_step() applies to group 0 (weights)
 * or 1 (biases and BatchNorm); -1 with bt_last_error set for a bad handle
 * (BT_E_MISUSE) or a group other than 0 and 1 (BT_E_INVALID_ARG). */
BT_API double bt_optim_lr(const bt_optim *o, int32_t group);

/* Add every trainable tensor of layer l (the entries of bt_layer_tensor()
 * with a gradient; buffers such as BatchNorm running statistics are skipped)
 * with bt_optim_add_tensor(), named as bt_layer_tensor() names them ("weight",
 * "bias"). The layer must outlive the optimizer. Adding two layers to one
 * optimizer gives duplicate state names (BT_E_INVALID_ARG): use
 * bt_optim_add_tensor() with your own names then. All or nothing: on
 * failure no tensor of l was added.
 * Returns as bt_optim_add_tensor: BT_OK; BT_E_MISUSE (o or l bad);
 * BT_E_STATE (the optimizer has already stepped, or l has no trainable
 * tensor: relu, pooling, batchnorm without affine); BT_E_INVALID_ARG (a
 * duplicate name or a tensor already added); BT_E_NOMEM. */
BT_API bt_status bt_optim_add_layer(bt_optim *o, bt_layer *l);

/* Add every trainable tensor of model m (the entries of bt_model_tensor()
 * with a gradient), named as in checkpoints ("backbone.conv1.weight", ...),
 * so the optimizer state is saved as "optim.backbone.conv1.weight.momentum".
 * Grouped by dimension count as bt_optim_add_tensor(). The model must outlive
 * the optimizer. All or nothing: on failure no tensor of m was added.
 * Returns as bt_optim_add_tensor: BT_OK; BT_E_MISUSE (o or m bad);
 * BT_E_STATE (the optimizer has already stepped); BT_E_INVALID_ARG (a tensor
 * of m is already added, e.g. the model added twice); BT_E_NOMEM. */
BT_API bt_status bt_optim_add_model(bt_optim *o, bt_model *m);

/* ------------------------------------------------------------------------ */
/* Data-parallel training                                                   */
/* ------------------------------------------------------------------------ */
/*
 * W processes (ranks), each with N_r images of a global batch of N = sum N_r,
 * compute what one process computes with all N (docs/distributed.md): with a
 * communicator set, every training-mode BatchNorm (backbone, projector and the
 * loss's normalisation) uses the statistics of the global batch, forward and
 * backward; the loss is the global batch's, identical on every rank; and
 * bt_model_backward adds to every rank's gradients the gradient of that one
 * loss (a sum over ranks, not an average), so bt_optim_step keeps the ranks'
 * weights identical. Uneven shards work. Augment with bt_augment_views_at and
 * the global index of the rank's first image.
 *
 * The library does not link MPI: the host passes its collectives as
 * callbacks (examples/mpi_comm.h wraps MPI_Allreduce / MPI_Allgather).
 * dtype is 0 for float32, 1 for float64; a callback returns 0 on success. The
 * library calls them on the calling thread, in the same order and with the
 * same counts on every rank, and relies on the results being bitwise
 * identical on every rank (MPI_Allreduce gives that). A communicator serves
 * one thread at a time: calls on the handles that share it must not overlap.
 *
 * Collective calls: with a communicator, bt_model_forward, bt_model_backward,
 * bt_loss_forward, bt_loss_backward and the set_comm calls themselves must be
 * made by every rank, in the same order. Arguments one rank rejects fail the
 * call on every rank: that rank returns its own status and message, the others
 * BT_E_COMM naming the rank; nothing changes anywhere. A callback that fails
 * gives BT_E_COMM: the rank keeps making the rest of the call's collectives
 * (so no rank waits for it), the call's closing agreement tells every rank,
 * and nothing changes. If a callback fails in that closing agreement itself,
 * only the ranks it failed on know: they return BT_E_COMM and their
 * communicator is broken (every later collective call returns BT_E_COMM at
 * once); the other ranks may then block in their next collective. With MPI's
 * default error handler (MPI_ERRORS_ARE_FATAL) MPI ends the job instead.
 */

/* Sum count elements of buf over the ranks, in place. */
typedef int32_t (*bt_comm_allreduce_fn)(void *user, void *buf, int64_t count, int32_t dtype);
/* recv = every rank's `count` elements of send, in rank order (count * W elements). */
typedef int32_t (*bt_comm_allgather_fn)(void *user, const void *send, void *recv, int64_t count,
                                        int32_t dtype);

/* Create a communicator for rank `rank` of `size` ranks. allgather may be NULL
 * (gathers are then made with allreduce, moving W times the bytes). user is
 * passed to the callbacks, never dereferenced. Not collective: nothing is
 * called until the communicator is set on a model or loss.
 * Returns BT_OK; BT_E_MISUSE (out or allreduce NULL); BT_E_INVALID_ARG (size
 * < 1, rank outside 0..size-1); BT_E_NOMEM. */
BT_API bt_status bt_comm_create(bt_comm **out, int32_t rank, int32_t size,
                                bt_comm_allreduce_fn allreduce, bt_comm_allgather_fn allgather,
                                void *user);

/* Release a communicator. Free the models and losses using it first, or set
 * their communicator to NULL. NULL does nothing, and so does a pointer that is
 * not a live communicator. */
BT_API void bt_comm_free(bt_comm *c);

/* Make m's training passes data-parallel over c (NULL: one process again). A
 * collective call when c is not NULL: it checks that every rank passes a
 * communicator of the same size with a distinct rank, and a model with the
 * same tensors (count and sizes). c is borrowed: it must outlive its use by m.
 * The cached forward is dropped (call bt_model_forward again).
 * Returns BT_OK; BT_E_MISUSE (m bad, c not a live communicator); BT_E_COMM
 * (a callback failed, or the ranks disagree: sizes, ranks or models, named in
 * the message; nothing changed). */
BT_API bt_status bt_model_set_comm(bt_model *m, bt_comm *c);

/* Make l's loss the loss of the global batch over c (NULL: one process). A
 * collective call as bt_model_set_comm (the ranks' losses must have the same
 * options). The cached forward is dropped. Each forward then either gathers
 * both views' rows on every rank and computes the whole loss there (the bits
 * one process computes), when that moves fewer bytes than the other way:
 * 2 N D < D^2, i.e. 2N < D; or all-reduces the column statistics and the D x D
 * cross-correlation, as the official code does. A Gram path asked for with
 * bt_loss_set_path always gathers. bt_loss_backward gives this rank's rows.
 * Returns as bt_model_set_comm. */
BT_API bt_status bt_loss_set_comm(bt_loss *l, bt_comm *c);

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */
/* ------------------------------------------------------------------------ */
/*
 * One safetensors file (docs/checkpoint.md) holds the model's tensors under
 * the official state_dict names, the optimizer state under "optim." and, in
 * "__metadata__", the step count, the augmentation RNG state and the library
 * version. PyTorch loads the model tensors directly; a file written from
 * PyTorch with only the model's tensors loads with o and a NULL.
 */

/* Write m (required), o and a (each may be NULL) to path. The write is
 * atomic: a temporary file in the same directory is written, flushed to disk
 * and renamed over path, so path always holds either the old or the new file.
 * Returns BT_OK; BT_E_MISUSE (path NULL, m NULL or not live, o or a given
 * but not live); BT_E_INVALID_ARG (path empty or ending in '/');
 * BT_E_IO (with the path and the system's reason; if only the final fsync
 * of the directory failed, the new file is in place and the message says
 * so); BT_E_UNSUPPORTED (a big-endian host); BT_E_NOMEM. */
BT_API bt_status bt_checkpoint_save(const char *path, bt_model *m, bt_optim *o, bt_augment *a);

/* Load path into m (required), o and a (each may be NULL), read with pread in
 * two passes (no mmap; at most 16 MiB of buffers beyond the handles' memory:
 * docs/checkpoint.md). The whole file is validated first - every offset,
 * size, dtype and shape, every tensor of m present, no tensor m lacks (optimizer tensors are ignored when o is NULL),
 * optimizer state of the same kind when o is given, RNG state when a is given
 * - and BT_E_FORMAT, with a message naming the file and the tensor, leaves
 * all three handles unchanged (so does every other error, except a read
 * that fails after validation, whose message says the model may be partly
 * loaded). F32 is read as
 * is, F16 and BF16 are widened; F64 and the integer dtypes are accepted
 * where every value converts to float32 exactly.
 * Returns BT_OK; BT_E_MISUSE (path NULL, m NULL or not live, o or a given
 * but not live); BT_E_IO (the file cannot be opened or read, or is not a
 * regular file); BT_E_FORMAT (malformed file, a missing, extra or
 * differently shaped tensor, a value not exact in float32, missing or
 * mismatched optimizer or RNG metadata); BT_E_UNSUPPORTED (an F8 dtype, a
 * big-endian host); BT_E_NOMEM. */
BT_API bt_status bt_checkpoint_load(const char *path, bt_model *m, bt_optim *o, bt_augment *a);

/* Flag of bt_checkpoint_save_ex. */
#define BT_SAVE_MAPPED_ONLY 1u /* only the tensors a prefix_map pair matches are written */

/* bt_checkpoint_save under other names, for other programs: prefix_map as
 * in bt_checkpoint_load_ex, applied to the model's names ("backbone.=" with
 * BT_SAVE_MAPPED_ONLY writes the backbone in torchvision's names, a state
 * dict that torchvision.models.resnet18/50(), fc = Identity(), loads with
 * strict=True). Weights only (o must be NULL with a map); the file then has
 * no libbarlow.model (it no longer names this model's tensors).
 * Returns as bt_checkpoint_save, plus BT_E_INVALID_ARG (unknown flags, o with
 * a map, a malformed map, a pair matching no tensor, a name mapped to ""). */
BT_API bt_status bt_checkpoint_save_ex(const char *path, bt_model *m, bt_optim *o, bt_augment *a,
                                       const char *prefix_map, uint32_t flags);

/* Flags of bt_checkpoint_load_ex. */
#define BT_LOAD_PARTIAL 1u      /* tensors of m the file lacks keep their values (o must be NULL) */
#define BT_LOAD_IGNORE_EXTRA 2u /* tensors of the file m lacks are skipped */

/* bt_checkpoint_load with a subset and renamed tensors, for weights from
 * elsewhere (torchvision, the official code, a DDP file) or one part of a
 * model (backbone only, projector only). Validation is as complete as
 * bt_checkpoint_load's and a failed call changes nothing.
 * prefix_map (NULL for none): up to 8 pairs "from=to" separated by ';'
 * (each side under 64 bytes); a file tensor whose name starts with the first
 * matching `from` is loaded as `to` + the rest of its name ("" matches every
 * name): "=backbone." loads a bare torchvision state dict into the backbone,
 * "module.=" strips DDP's prefix. Optimizer tensors (optim.*) keep their
 * names. A pair that matches no tensor of the file is an error, and so are
 * two file tensors that load as one (BT_E_FORMAT). With a map,
 * missing num_batches_tracked counters are allowed (older files lack them).
 * flags: BT_LOAD_PARTIAL, BT_LOAD_IGNORE_EXTRA or 0. At least one tensor must
 * load.
 * report (may be NULL; report_cap bytes): on success, a line "loaded L of N
 * tensors, kept K, skipped S of the file's", then "kept NAME" and "skipped
 * NAME" lines (file names), cut with "..." when full; "" on failure.
 * Returns as bt_checkpoint_load, plus BT_E_INVALID_ARG (unknown flags,
 * BT_LOAD_PARTIAL with o, a malformed map or a pair matching nothing) and
 * BT_E_FORMAT when no tensor matches. */
BT_API bt_status bt_checkpoint_load_ex(const char *path, bt_model *m, bt_optim *o, bt_augment *a,
                                       const char *prefix_map, uint32_t flags, char *report,
                                       size_t report_cap);

/* Set c's model.* options to those of the model saved in path (the file's
 * metadata libbarlow.model, written by bt_checkpoint_save beside
 * libbarlow.version, libbarlow.cpu_level and libbarlow.blas_core), so that
 * bt_model_create(&m, c) builds a model the file loads into; and when the
 * file was saved with an augmentation handle, the evaluation view it used
 * (aug.view1.size, aug.view1.mean, aug.view1.std: metadata
 * libbarlow.augment), so that bt_augment_eval prepares images as in
 * training. Other options are left alone, and options set on c afterwards
 * override the file's.
 * All or nothing: on any error c is unchanged.
 * Returns BT_OK; BT_E_MISUSE (c not live, path NULL); BT_E_IO (the file
 * cannot be opened or read); BT_E_FORMAT (malformed file, no model options
 * in it - files from older libbarlow versions - or an option this version
 * does not know or accept, named in the message); BT_E_NOMEM. */
BT_API bt_status bt_config_read_checkpoint(bt_config *c, const char *path);

/* Copy the value of path's metadata key (e.g. "libbarlow.cpu_level",
 * "libbarlow.version"; docs/checkpoint.md lists them) into buf of cap bytes,
 * NUL-terminated; only the header is read.
 * Returns BT_OK; BT_E_MISUSE (a NULL argument); BT_E_IO; BT_E_FORMAT (a
 * malformed file, or no such key); BT_E_INVALID_ARG (cap too small, with the
 * size needed); BT_E_NOMEM. */
BT_API bt_status bt_checkpoint_metadata(const char *path, const char *key, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* BARLOW_H */
