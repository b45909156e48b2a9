/* layer.h - private layer interface: the handle, the per-type operation table,
 * and the entry points the model calls directly (no handle checks there). */
#ifndef BARLOW_LAYER_H
#define BARLOW_LAYER_H

#include "common/cpu.h"

#define BTI_LAYER_MAX_TENSORS 5

/* Element-wise loops over fewer elements than this run on one thread: a
 * parallel region costs more than it saves there, and much more when the
 * cores are contended (a descheduled team member stalls the whole region). */
#define BTI_PAR_MIN ((int64_t)1 << 18)

enum bti_layer_type {
    BTI_LAYER_CONV2D = 1,
    BTI_LAYER_LINEAR,
    BTI_LAYER_BATCHNORM,
    BTI_LAYER_RELU,
    BTI_LAYER_MAXPOOL2D,
    BTI_LAYER_AVGPOOL,
};

/* What each layer type provides. The generic code validates handles, tensor
 * shapes and aliasing; `prepare` validates what is specific to the type and
 * allocates every buffer forward AND backward will need, so that once it has
 * succeeded neither can fail (a failed call changes nothing). */
struct bti_layer_ops {
    const char *name; /* "conv2d", ..., used in messages */
    bt_status (*shape)(const bt_layer *l, int32_t ndim, const int64_t *in, int32_t *out_ndim,
                       int64_t *out, const char *fn);
    bt_status (*prepare)(bt_layer *l, const bt_tensor *x, int training, int groups, const char *fn);
    void (*forward)(bt_layer *l, const bt_tensor *x, bt_tensor *y, int training, int groups);
    void (*backward)(bt_layer *l, const bt_tensor *dy, bt_tensor *dx);
    void (*reset)(bt_layer *l, uint64_t seed);
    void (*release)(bt_layer *l); /* free the type's own buffers (NULL: none) */
    /* BatchNorm only (NULL for the others): the bodies of bti_layer_forward_fused
     * and bti_layer_backward_masked, called once those have checked everything */
    void (*forward_fused)(bt_layer *l, const bt_tensor *x, bt_tensor *y, int training, int groups,
                          const bt_tensor *skip, int relu);
    void (*backward_masked)(bt_layer *l, const bt_tensor *dy, bt_tensor *dx, const bt_tensor *mask);
};

/* What every layer has. A type's own state is a struct of its file (or of its
 * private header) whose first member is this one, reached from the handle with
 * BTI_LAYER_OF; a type without state (relu, avgpool) is this struct alone. */
struct bt_layer {
    const struct bti_layer_ops *ops;
    int type;
    int threads;
    int level;      /* CPU level of its kernels (common/cpu.h), fixed at creation */
    int registered; /* a public handle (bt_layer_*_create) */

    /* parameters and buffers, in PyTorch's state_dict order */
    int ntensors;
    const char *names[BTI_LAYER_MAX_TENSORS];
    bt_tensor *value[BTI_LAYER_MAX_TENSORS];
    bt_tensor *grad[BTI_LAYER_MAX_TENSORS]; /* NULL for buffers */

    /* the last successful forward */
    int have_forward;
    const bt_tensor *x; /* borrowed input (the public API points it at xcopy) */
    int training, groups;
    int32_t in_ndim, out_ndim;
    int64_t in_shape[BT_TENSOR_MAX_DIMS], out_shape[BT_TENSOR_MAX_DIMS];

    /* public API: private copy of the input, so a user may free x before backward */
    bt_tensor *xcopy;

    /* Scratch: its content does not survive from one call to the next, so
     * several layers run one after another may share one (bti_layer_set_scratch). */
    struct bti_buffer own_scratch;
    struct bti_buffer *scratch; /* &own_scratch unless shared */
};

/* The type's own struct T around the layer l (its first member), const when l is. */
#define BTI_LAYER_OF(T, l) _Generic((l), const bt_layer *: (const T *)(l), default: (T *)(l))

/* Forward. groups >= 1 splits the batch (dim 0) into `groups` equal slices; BatchNorm normalises
 * each slice with its own batch statistics and, in training, updates the running statistics once
 * per slice in slice order (exactly as if each slice went through the layer alone); every other
 * layer ignores groups. groups=1 is the public behaviour. The layer BORROWS x: the caller keeps x
 * alive and unchanged until the matching backward (no copy). y may not alias x except for ReLU
 * (in place allowed). Reuses internal buffers (no malloc after the first call at a given shape). */
BTI_HIDDEN bt_status bti_layer_forward(bt_layer *l, const bt_tensor *x, bt_tensor *y, int training,
                                       int groups);
/* Reserve every buffer a forward and backward of x would need, changing nothing else: a model
 * prepares all its layers before running the first, so that its forward fails before any
 * running statistics move. x is trusted (the model checked its shapes). */
BTI_HIDDEN bt_status bti_layer_prepare(bt_layer *l, const bt_tensor *x, int training, int groups);
/* Backward of the last forward: dx may be NULL (skip input gradient); parameter gradients
 * ACCUMULATE. For ReLU, dx may alias dy. */
BTI_HIDDEN bt_status bti_layer_backward(bt_layer *l, const bt_tensor *dy, bt_tensor *dx);
/* The CPU level of the layer's kernels (a model gives its layers its own;
 * tests force one); level must be one the CPU runs. */
BTI_HIDDEN void bti_layer_set_level(bt_layer *l, int level);
/* Threads used by this layer's loops and GEMMs (default bti_threads_resolve(NULL) at create). */
BTI_HIDDEN void bti_layer_set_threads(bt_layer *l, int n);
/* Re-initialise parameters as PyTorch's default init for that layer type, from a seed (counter RNG of rng.h). */
BTI_HIDDEN bt_status bti_layer_reset_parameters(bt_layer *l, uint64_t seed);
/* Direct access for the model (no handle check): number of tensors and the i-th (name as PyTorch,
 * value, grad or NULL for buffers), same order as bt_layer_tensor. */
BTI_HIDDEN int bti_layer_tensor_count(const bt_layer *l);
BTI_HIDDEN bt_tensor *bti_layer_value(bt_layer *l, int i);
BTI_HIDDEN bt_tensor *bti_layer_grad(bt_layer *l, int i);
BTI_HIDDEN const char *bti_layer_tensor_name(const bt_layer *l, int i);
/* Free a layer without a handle check (the model owns its layers). */
BTI_HIDDEN void bti_layer_destroy(bt_layer *l);

/* ---- extras (not part of the fixed list above) ---------------------------- */

/* Create a layer WITHOUT registering it as a public handle (for the model, which
 * frees it with bti_layer_destroy). Same arguments and checks as the public
 * create functions; `fn` names the caller in messages. */
BTI_HIDDEN bt_status bti_layer_conv2d_new(bt_layer **out, int in_ch, int out_ch, int kernel,
                                          int stride, int pad, int bias, const char *fn);
BTI_HIDDEN bt_status bti_layer_linear_new(bt_layer **out, int in_features, int out_features,
                                          int bias, const char *fn);
BTI_HIDDEN bt_status bti_layer_batchnorm_new(bt_layer **out, int channels, double eps,
                                             double momentum, int affine, const char *fn);
BTI_HIDDEN bt_status bti_layer_relu_new(bt_layer **out, const char *fn);
BTI_HIDDEN bt_status bti_layer_maxpool2d_new(bt_layer **out, int kernel, int stride, int pad,
                                             const char *fn);
BTI_HIDDEN bt_status bti_layer_avgpool_new(bt_layer **out, const char *fn);

/* Output shape for an input shape (BT_E_SHAPE with a message when it does not fit). */
BTI_HIDDEN bt_status bti_layer_output_shape(const bt_layer *l, int32_t ndim, const int64_t *in,
                                            int32_t *out_ndim, int64_t *out);
/* Make the layer use a shared scratch area (NULL: its own again). The owner of
 * s keeps it alive while the layer uses it and releases it with bti_buffer_release. */
BTI_HIDDEN void bti_layer_set_scratch(bt_layer *l, struct bti_buffer *s);
/* conv2d: target number of output columns per GEMM, per chunk or per group of
 * images in the per-image strategy (tests force small chunks and groups). */
BTI_HIDDEN void bti_layer_conv2d_set_chunk(bt_layer *l, int64_t cols);
/* conv2d: take the form of this name (conv2d.h: "gemm", "images", "grid",
 * "direct", "flat", "winograd") wherever the layer's CPU level runs it and
 * the shape fits it, whatever the speed; NULL: the automatic choice. The
 * name must stay valid while the layer lives (tests, benchmarks). */
BTI_HIDDEN void bti_layer_conv2d_set_form(bt_layer *l, const char *name);
/* conv2d: the name of the last forward's form, or NULL before one. */
BTI_HIDDEN const char *bti_layer_conv2d_form(const bt_layer *l);
/* BatchNorm fused with what follows it in a ResNet (the model's fast path), checked as
 * bti_layer_forward: y = relu?(bn(x) + skip) with skip NULL or of y's shape (it may not
 * alias y), relu 0 or 1. BT_E_INVALID_ARG when l is not a BatchNorm. Writes nothing but
 * y and the layer's state; the matching backward is bti_layer_backward_masked (or plain
 * bti_layer_backward when neither skip nor relu was used). */
BTI_HIDDEN bt_status bti_layer_forward_fused(bt_layer *l, const bt_tensor *x, bt_tensor *y,
                                             int training, int groups, const bt_tensor *skip,
                                             int relu);
/* BatchNorm backward with dy read as 0 wherever mask <= 0: mask is the output of a fused
 * ReLU, so this equals ReLU backward followed by BatchNorm backward, in one pass pair.
 * mask NULL: plain backward. dx may be NULL; it may not alias dy, mask or x. */
BTI_HIDDEN bt_status bti_layer_backward_masked(bt_layer *l, const bt_tensor *dy, bt_tensor *dx,
                                               const bt_tensor *mask);
/* BatchNorm: write relu?(bn(x)) of the last forward again into y (the output's
 * shape), from the borrowed x and the saved statistics, with the same bits as a
 * training forward wrote: the model recomputes a fused ReLU's output for the
 * backward instead of keeping it. l must be a BatchNorm whose last forward ran
 * in training with x still alive and its parameters unchanged since. */
BTI_HIDDEN void bti_layer_batchnorm_output(bt_layer *l, bt_tensor *y, int relu);
/* The bytes of scratch a forward and backward of x's shape would reserve (only
 * x's shape is read), without reserving them; the layer's own per-shape state
 * (BatchNorm statistics, max-pool indices) is sized as the forward would size it.
 * Fails as that forward's preparation would. */
BTI_HIDDEN bt_status bti_layer_scratch_bytes(bt_layer *l, const bt_tensor *x, int training,
                                             int groups, size_t *bytes, const char *fn);
/* BatchNorm, data-parallel (common/comm.h): while k is set, training forwards and
 * backwards use the global batch's statistics through k's collectives (forward: two
 * all-reduces, of groups*C + 1 and groups*C doubles; backward: one of 2*groups*C), the
 * weight and bias gradients stay this rank's share, and a training forward leaves its
 * running statistics pending. The local batch may be 1. NULL: one process. */
struct bti_coll;
BTI_HIDDEN void bti_layer_batchnorm_set_coll(bt_layer *l, struct bti_coll *k);
/* Apply (apply 1) or drop the pending running statistics of the last data-parallel
 * forward; nothing without one. */
BTI_HIDDEN void bti_layer_batchnorm_commit(bt_layer *l, int apply);
/* Zero the parameter gradients. */
BTI_HIDDEN void bti_layer_zero_grad(bt_layer *l);

/* ---- shared by the layer_*.c files ---------------------------------------- */

/* A new, unregistered layer with `ops`, zeroed over the `size` bytes of its
 * type's struct (at least sizeof(struct bt_layer)); the type file fills its own
 * part and adds its tensors. */
BTI_HIDDEN bt_status bti_layer_alloc(bt_layer **out, size_t size,
                                     const struct bti_layer_ops *ops, int type, const char *fn);
/* The end of a public bt_layer_*_create: give the new layer l the CPU level of
 * BT_CPU or the CPU (a public layer has no options) and register it as a
 * public handle into *out; on failure free l and leave *out as it was. */
BTI_HIDDEN bt_status bti_layer_publish(bt_layer **out, bt_layer *l, const char *fn);
/* Append a tensor (and its gradient when with_grad) named `name`. */
BTI_HIDDEN bt_status bti_layer_add_tensor(bt_layer *l, const char *name, int32_t ndim,
                                          const int64_t *shape, int with_grad, const char *fn);
/* U(-bound, bound) into t from (seed, stream). */
BTI_HIDDEN void bti_layer_fill_uniform(bt_tensor *t, double bound, uint64_t seed, uint64_t stream,
                                       int threads);

#endif /* BARLOW_LAYER_H */
