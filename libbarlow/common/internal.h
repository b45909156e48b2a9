/*
 * internal.h - private declarations shared by libbarlow's modules.
 * Nothing here is installed or exported: every symbol is hidden and named bti_*.
 */
#ifndef BARLOW_INTERNAL_H
#define BARLOW_INTERNAL_H

#include "barlow.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define BTI_HIDDEN __attribute__((visibility("hidden")))

#if defined(__GNUC__)
#define BTI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BTI_PRINTF(f, a)
#endif

/* loop bodies and their helpers: inlined so that they get the instructions of
 * the per-level function they are inlined into (BTI_PER_LEVEL, common/cpu.h) */
#if defined(__GNUC__)
#define BTI_INLINE __attribute__((always_inline)) inline
#else
#define BTI_INLINE inline
#endif

/* ---- errors (error.c) ---------------------------------------------------- */

/* Record a thread-local message and return status, so a failure reads
 * `return bti_fail(BT_E_SHAPE, "conv2d forward: ...", ...);`. */
BTI_HIDDEN bt_status bti_fail(bt_status status, const char *fmt, ...) BTI_PRINTF(2, 3);

/* ---- handle registry (handle.c) ------------------------------------------ */

/* Every public handle is registered while alive, so that a freed, foreign or
 * wrong-kind pointer is detected without dereferencing it. */
enum bti_kind {
    BTI_KIND_TENSOR = 1,
    BTI_KIND_CONFIG,
    BTI_KIND_LAYER,
    BTI_KIND_MODEL,
    BTI_KIND_LOSS,
    BTI_KIND_AUGMENT,
    BTI_KIND_OPTIM,
    BTI_KIND_XENT,
    BTI_KIND_COMM,
};

BTI_HIDDEN bt_status bti_handle_add(const void *p, int kind);
BTI_HIDDEN void bti_handle_remove(const void *p);
/* 1 when p is a live handle of this kind. */
BTI_HIDDEN int bti_handle_is(const void *p, int kind);
/* BT_OK, or BT_E_MISUSE with "<fn>: <arg> is NULL / not a live <kind> handle". */
BTI_HIDDEN bt_status bti_check(const void *p, int kind, const char *fn, const char *arg);

/* ---- memory (memory.c) --------------------------------------------------- */

/* Every allocation of the library goes through these (the fault hook below
 * sees them all); each takes the call site, filled in by the macros.
 * bti_alloc: 64-byte aligned, size rounded up to whole cache lines;
 * bti_calloc: the same, zeroed; bti_malloc/bti_realloc: as malloc/realloc.
 * NULL on failure, on size 0 and on overflow; release any of them with bti_free. */
BTI_HIDDEN void *bti_alloc_at(size_t bytes, const char *site);
BTI_HIDDEN void *bti_calloc_at(size_t count, size_t size, const char *site);
BTI_HIDDEN void *bti_malloc_at(size_t bytes, const char *site);
BTI_HIDDEN void *bti_realloc_at(void *p, size_t bytes, const char *site);
BTI_HIDDEN void bti_free(void *p);
#define BTI_STR2(x) #x
#define BTI_STR(x) BTI_STR2(x)
#define BTI_SITE __FILE__ ":" BTI_STR(__LINE__)
#define bti_alloc(bytes) bti_alloc_at((bytes), BTI_SITE)
#define bti_calloc(count, size) bti_calloc_at((count), (size), BTI_SITE)
#define bti_malloc(bytes) bti_malloc_at((bytes), BTI_SITE)
#define bti_realloc(p, bytes) bti_realloc_at((p), (bytes), BTI_SITE)

/* Test hook (tests/check_alloc.c), never called by the library: from now on the
 * n-th allocation fails (n >= 1), and with `persistent` every one after it too;
 * n = 0 disarms. bti_fault_failed tells how many allocations were refused since
 * arming and the site of the first; bti_fault_live counts allocations not yet
 * freed, process-wide (a leak check that needs no sanitizer). */
BTI_HIDDEN void bti_fault_arm(long n, int persistent);
BTI_HIDDEN long bti_fault_failed(const char **first_site);
BTI_HIDDEN long bti_fault_live(void);
/* a*b with overflow detection: 0 on success, -1 when it does not fit. */
BTI_HIDDEN int bti_mul_size(size_t a, size_t b, size_t *out);

/* A growable buffer of `bytes` bytes at p (NULL and 0 until the first reserve),
 * the one every module uses for memory it reuses from call to call. */
struct bti_buffer {
    void *p;
    size_t bytes;
};

/* Grow b to at least count elements of `size` bytes (at least one element),
 * keeping its content: a buffer may hold what a pending backward needs while a
 * later step of the same call can still fail, and growth is rare. Never
 * shrinks. BT_E_NOMEM, with a message naming fn, leaves b as it was. */
BTI_HIDDEN bt_status bti_buffer_reserve_at(struct bti_buffer *b, size_t count, size_t size,
                                           const char *fn, const char *site);
#define bti_buffer_reserve(b, count, size, fn) bti_buffer_reserve_at((b), (count), (size), (fn), BTI_SITE)
/* Free b's memory and empty it; NULL is a no-op. */
BTI_HIDDEN void bti_buffer_release(struct bti_buffer *b);

/* ---- tensors (tensor.c) -------------------------------------------------- */

struct bt_tensor {
    int32_t ndim;
    int32_t owned_by_parent; /* a layer/model tensor: the caller may not free it */
    int32_t borrowed;        /* data belongs to the caller (bt_tensor_wrap) */
    int64_t shape[BT_TENSOR_MAX_DIMS];
    int64_t numel;
    float *data;
};

/* Validate a shape; fn names the caller in the message. */
BTI_HIDDEN bt_status bti_shape_check(const char *fn, const char *arg, int32_t ndim,
                                     const int64_t *shape, int64_t *numel);
/* Create a registered tensor owned by a parent handle (bt_tensor_free refuses it). */
BTI_HIDDEN bt_status bti_tensor_new_owned(bt_tensor **out, int32_t ndim, const int64_t *shape);
/* Create a registered tensor over memory owned by a parent handle (not freed with it). */
BTI_HIDDEN bt_status bti_tensor_wrap_owned(bt_tensor **out, float *data, int32_t ndim,
                                           const int64_t *shape);
/* Free a tensor whatever its ownership. */
BTI_HIDDEN void bti_tensor_destroy(bt_tensor *t);
/* Format a shape as "[2, 3, 4]" into buf (always terminated). */
BTI_HIDDEN const char *bti_shape_str(const bt_tensor *t, char *buf, size_t cap);
BTI_HIDDEN const char *bti_dims_str(int32_t ndim, const int64_t *shape, char *buf, size_t cap);
/* 1 when t has exactly this shape. */
BTI_HIDDEN int bti_tensor_has_shape(const bt_tensor *t, int32_t ndim, const int64_t *shape);

/* ---- options (options.c, config.c) --------------------------------------- */

enum bti_opt_type {
    BTI_OPT_INT,
    BTI_OPT_REAL,
    BTI_OPT_CHOICE,
    BTI_OPT_INT_LIST,
    BTI_OPT_REAL_LIST,
};

#define BTI_OPT_PER_VIEW 1 /* also settable as aug.view1.X / aug.view2.X */

struct bti_option {
    const char *name;
    int type;
    const char *def;     /* default as text */
    double lo, hi;       /* bounds of a number or of each list element */
    int min_len, max_len; /* list length bounds */
    const char *choices; /* "a|b|c" for BTI_OPT_CHOICE */
    int flags;
    const char *help;
};

struct bti_preset_value {
    const char *preset; /* value of aug.preset */
    int view;           /* 0 both views, 1 or 2 one view */
    const char *name;   /* option name, "aug.X" */
    const char *value;
};

BTI_HIDDEN extern const struct bti_option bti_options[];
BTI_HIDDEN extern const int bti_option_count;
BTI_HIDDEN extern const struct bti_preset_value bti_presets[];
BTI_HIDDEN extern const int bti_preset_count;

/* Index of an option by name, or -1. */
BTI_HIDDEN int bti_option_find(const char *name);

/* Typed reads for modules. `name` must be a registered option (per-view names
 * allowed); an unknown name is a bug and returns BT_E_INTERNAL. */
BTI_HIDDEN bt_status bti_config_text(const bt_config *c, const char *name, const char **out);
/* The options named in the NULL-terminated `names`, or without a list all
 * those starting with `prefix`, as "name=value\n" lines in *out (malloc'd). */
BTI_HIDDEN bt_status bti_config_lines(const bt_config *c, const char *prefix,
                                     const char *const *names, const char *fn, char **out);
/* Sets the options of "name=value" lines (empty lines skipped), all or none:
 * any unknown name or invalid value fails with BT_E_FORMAT naming `what`. */
BTI_HIDDEN bt_status bti_config_set_lines(bt_config *c, const char *text, const char *fn,
                                          const char *what);
BTI_HIDDEN bt_status bti_config_int(const bt_config *c, const char *name, int64_t *out);
BTI_HIDDEN bt_status bti_config_real(const bt_config *c, const char *name, double *out);
/* Parsed list into out[0..cap-1]; *n gets the count. */
BTI_HIDDEN bt_status bti_config_int_list(const bt_config *c, const char *name, int64_t *out,
                                         int cap, int *n);
BTI_HIDDEN bt_status bti_config_real_list(const bt_config *c, const char *name, double *out,
                                          int cap, int *n);

/* Parsers shared by config.c and modules; 0 on success. */
BTI_HIDDEN int bti_parse_int(const char *s, int64_t *out);
BTI_HIDDEN int bti_parse_real(const char *s, double *out);
BTI_HIDDEN int bti_parse_list(const char *s, char sep, int is_int, double *out, int cap, int *n);

/* ---- threads (threads.c) ------------------------------------------------- */

/* The thread count a handle created from cfg should use: the "threads"
 * option when > 0, else BT_NUM_THREADS when set, else the number of cores. */
BTI_HIDDEN int bti_threads_resolve(const bt_config *cfg);
/* Number of online cores (>= 1). */
BTI_HIDDEN int bti_cores(void);
/* Around every BLAS call: the BLAS runs the calls between begin(n) and end(n)
 * on n threads, and on 1 outside them. begin(1) may be called by many threads
 * at once (OpenMP team members); begin(n > 1) waits until it is alone. Never
 * nested. */
BTI_HIDDEN void bti_blas_begin(int n);
BTI_HIDDEN void bti_blas_end(int n);

/* ---- build facts (version.c) --------------------------------------------- */

BTI_HIDDEN const char *bti_build_blas(void);
BTI_HIDDEN const char *bti_build_blas_core(void);
BTI_HIDDEN const char *bti_build_blas_config(void);
BTI_HIDDEN const char *bti_build_threads(void);

#endif /* BARLOW_INTERNAL_H */
