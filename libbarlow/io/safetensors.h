/*
 * safetensors.h - private reader and writer of the safetensors format.
 *
 * The file format of libbarlow's checkpoints (DESIGN §5, docs/checkpoint.md):
 *   8 bytes   N, little-endian u64, the header length
 *   N bytes   UTF-8 JSON object: tensor name -> {"dtype", "shape", "data_offsets"}
 *             plus an optional "__metadata__" object of string -> string;
 *             may be padded at its end with spaces (the writer pads to 8 bytes)
 *   the rest  the tensors' raw little-endian bytes, C order, packed back to back
 *             (data_offsets are relative to the first byte after the header)
 *
 * Only little-endian hosts are supported: on a big-endian host every function
 * here fails with BT_E_UNSUPPORTED.
 *
 * Nothing here is exported; bt_checkpoint_save/load are built on top.
 */
#ifndef BARLOW_SAFETENSORS_H
#define BARLOW_SAFETENSORS_H

#include "common/internal.h"

#include <stddef.h>
#include <stdint.h>

/* The dtypes of the safetensors specification, in the order of its reference
 * implementation (the writer sorts tensors by this rank, descending, then by
 * name, as that implementation does). */
enum bti_st_dtype {
    BTI_ST_BOOL,
    BTI_ST_U8,
    BTI_ST_I8,
    BTI_ST_F8_E5M2,
    BTI_ST_F8_E4M3,
    BTI_ST_I16,
    BTI_ST_U16,
    BTI_ST_F16,
    BTI_ST_BF16,
    BTI_ST_I32,
    BTI_ST_U32,
    BTI_ST_F32,
    BTI_ST_F64,
    BTI_ST_I64,
    BTI_ST_U64,
    BTI_ST_DTYPE_COUNT
};

/* Largest rank the reader accepts and the writer writes. */
#define BTI_ST_MAX_DIMS 8
/* Largest header the reader accepts, as the reference implementation. */
#define BTI_ST_MAX_HEADER ((uint64_t)100000000)

struct bti_st_tensor {
    const char *name;                /* UTF-8, unique within a file, not "__metadata__" */
    int dtype;                       /* enum bti_st_dtype */
    int32_t ndim;                    /* 0 (a scalar) .. BTI_ST_MAX_DIMS */
    int64_t shape[BTI_ST_MAX_DIMS];  /* each >= 0 */
    const void *data;                /* numel * dtype size bytes, little endian, C order */
    /* Filled by the reader, ignored by the writer: */
    int64_t numel;
    uint64_t nbytes;
};

typedef struct bti_st_file bti_st_file;

/* "F32", "I64", ... for a valid dtype, else "?". */
BTI_HIDDEN const char *bti_st_dtype_name(int dtype);
/* Bytes per element of a valid dtype, else 0. */
BTI_HIDDEN size_t bti_st_dtype_size(int dtype);

/*
 * Write n tensors and nmeta metadata pairs to path, atomically: the bytes go
 * to a new temporary file beside path (path + ".tmp.<pid>.<k>", created with
 * mode 0666 minus the umask), which is fsync'ed, renamed over path, and then
 * the directory is fsync'ed. Tensors are laid out as the reference writer
 * does (dtype rank descending, then name in byte order); metadata pairs keep
 * the caller's order and are omitted entirely when nmeta is 0. Strings are
 * escaped as serde_json does (", \, control characters), so the output is
 * byte-identical to the reference writer's for the same content.
 *
 * Every argument is validated before anything touches the file system: names
 * and metadata keys/values must be non-NULL valid UTF-8, tensor names unique
 * and not "__metadata__", metadata keys unique, dtype known, ndim 0..8, each
 * dimension >= 0, data non-NULL unless the tensor is empty.
 *
 * On failure path is untouched and the temporary file removed, except in one
 * case that the message states: the rename succeeded but the directory fsync
 * failed (the new file is in place, its durability is not guaranteed).
 * Returns BT_OK, BT_E_INVALID_ARG (arguments, message names the tensor/key),
 * BT_E_IO (message names the path and strerror), BT_E_NOMEM, BT_E_UNSUPPORTED
 * (big-endian host).
 */
BTI_HIDDEN bt_status bti_st_write(const char *path, const struct bti_st_tensor *t, int n,
                                  const char *const *meta_keys, const char *const *meta_values,
                                  int nmeta);

/*
 * Read and validate a whole file. *out gets a handle owning everything (NULL
 * on failure). Validation: at least 8 bytes; N <= BTI_ST_MAX_HEADER and
 * N <= file size - 8; the header is valid UTF-8 and strict JSON (objects,
 * arrays, strings with every escape incl. \uXXXX surrogate pairs, integers;
 * nothing else; only spaces/tabs/newlines around it); every entry has exactly
 * the keys dtype, shape and data_offsets; dtype known; shape of at most 8
 * dimensions each >= 0; data_offsets [begin, end] with end - begin = numel *
 * dtype size; sorted by offset the tensors tile the data area exactly (start
 * at 0, no overlap, no hole, end at file size - 8 - N); names unique and free
 * of NUL; "__metadata__", if present, an object of unique string keys to
 * string values. Anything else gives BT_E_FORMAT with a message naming the
 * file and the tensor or field; a file that cannot be opened or read gives
 * BT_E_IO with strerror; BT_E_NOMEM; BT_E_INVALID_ARG for NULL arguments.
 */
BTI_HIDDEN bt_status bti_st_read(const char *path, bti_st_file **out);

/* The same, validating the header against the file's size but leaving the
 * data in the file (kept open until bti_st_close): the tensors' data
 * pointers are NULL, and bti_st_load_f32 reads them. */
BTI_HIDDEN bt_status bti_st_open(const char *path, bti_st_file **out);

/* bti_st_to_f32 for tensor t of a file from bti_st_open, by pread: F32
 * straight into out, other dtypes through a buffer of at most
 * BTI_ST_STREAM_CHUNK bytes (out NULL: check only, reading only the dtypes
 * whose values need checking). A read failure is BT_E_IO (BT_E_FORMAT if the
 * file became shorter); out may then be partly written. scratch: NULL, or
 * bti_st_load_scratch(t) bytes, so that the call allocates nothing. */
#define BTI_ST_STREAM_CHUNK ((size_t)16 << 20)
BTI_HIDDEN bt_status bti_st_load_f32(const bti_st_file *f, const struct bti_st_tensor *t,
                                     float *out, void *scratch);
/* The bytes of buffer bti_st_load_f32 needs to write tensor t somewhere (0: none). */
BTI_HIDDEN size_t bti_st_load_scratch(const struct bti_st_tensor *t);

/* The same from memory (size bytes at buf, copied); name is used in messages. */
BTI_HIDDEN bt_status bti_st_read_mem(const void *buf, size_t size, const char *name,
                                     bti_st_file **out);

/* Tensors in the order of their data in the file (index 0..count-1). The
 * pointers returned (tensor, name, data) live until bti_st_close. The data of
 * every tensor is aligned to its element size (data may be NULL for a tensor
 * with no elements). The whole data area is held in memory. */
BTI_HIDDEN int bti_st_count(const bti_st_file *f);
BTI_HIDDEN const struct bti_st_tensor *bti_st_get(const bti_st_file *f, int i);
/* By name (binary search), NULL if absent. */
BTI_HIDDEN const struct bti_st_tensor *bti_st_find(const bti_st_file *f, const char *name);

/* Metadata: the value of key, or NULL if absent; pairs by index in file order. */
BTI_HIDDEN const char *bti_st_meta(const bti_st_file *f, const char *key);
BTI_HIDDEN int bti_st_meta_count(const bti_st_file *f);
BTI_HIDDEN void bti_st_meta_at(const bti_st_file *f, int i, const char **key, const char **value);

/* The path (or name) the file was read from. */
BTI_HIDDEN const char *bti_st_path(const bti_st_file *f);

/*
 * Convert a stored tensor to float32 (numel values into out). F32 is copied
 * as is; F16 and BF16 always convert exactly; F64, I64 and the other integer
 * types only where every value converts exactly (F64 NaN and infinities do),
 * else BT_E_FORMAT naming path, the tensor, the element and its value. F8
 * types give BT_E_UNSUPPORTED. Every value is checked before the first is
 * written, so out is unchanged on failure. out may be NULL to only check, so a
 * loader can validate every tensor before it changes anything.
 */
BTI_HIDDEN bt_status bti_st_to_f32(const struct bti_st_tensor *t, float *out, const char *path);

/* Release everything; NULL is a no-op. */
BTI_HIDDEN void bti_st_close(bti_st_file *f);

#endif /* BARLOW_SAFETENSORS_H */
