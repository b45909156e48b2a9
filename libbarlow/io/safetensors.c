/* safetensors.c - reader and writer of the safetensors format (checkpoints).
 *
 * The reader trusts nothing: the header is parsed by a small strict JSON
 * parser that knows exactly the schema of a safetensors header, and every
 * offset and size is checked before a data pointer is handed out. The writer
 * reproduces the reference implementation's layout byte for byte and replaces
 * the destination atomically. */
#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* Names in messages are cut so that the message (512 bytes) keeps its end. */
#define NAME_FMT "%.160s"

static const char *const dtype_names[BTI_ST_DTYPE_COUNT] = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
    "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
};
static const unsigned char dtype_sizes[BTI_ST_DTYPE_COUNT] = {
    1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8,
};

const char *bti_st_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < BTI_ST_DTYPE_COUNT ? dtype_names[dtype] : "?";
}

size_t bti_st_dtype_size(int dtype)
{
    return dtype >= 0 && dtype < BTI_ST_DTYPE_COUNT ? dtype_sizes[dtype] : 0;
}

static int dtype_from_name(const char *s)
{
    int i;
    for (i = 0; i < BTI_ST_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_names[i]) == 0)
            return i;
    return -1;
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static bt_status big_endian_fail(const char *path)
{
    return bti_fail(BT_E_UNSUPPORTED,
                    "safetensors file '%s': this build supports little-endian hosts only", path);
}

/* Elements of a shape: 0 when any dimension is 0, -1 on overflow of int64. */
static int64_t shape_numel(int32_t ndim, const int64_t *shape)
{
    int64_t n = 1;
    int i;
    for (i = 0; i < ndim; i++)
        if (shape[i] == 0)
            return 0;
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0 || n > INT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    return n;
}

static void shape_text(int32_t ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t len = 0;
    int i;
    len += (size_t)snprintf(buf, cap, "[");
    for (i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
}

/* Length of the valid UTF-8 sequence at p (1..4), 0 when invalid (overlong
 * forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t avail = (size_t)(end - p), n, i;
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        size_t n = utf8_len(p, end);
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

/* ======================================================================== */
/* Reader                                                                    */
/* ======================================================================== */

struct entry {
    struct bti_st_tensor t;
    uint64_t begin, end;
    int order; /* position in the header */
};

struct bti_st_file {
    char *path;
    char *pool; /* every decoded string of the header */
    struct entry *e;
    int n, cap;
    const struct entry **by_name;
    const char **mkey, **mval;
    int nmeta, mcap;
    int have_meta;
    unsigned char *data; /* the data area, 64-byte aligned (NULL when streamed) */
    uint64_t data_size;
    int fd;           /* bti_st_open: the open file, read at data_at + offset; else -1 */
    uint64_t data_at; /* where the data area starts in the file */
    void **copies; /* aligned copies of misaligned tensors */
    int ncopies;
};

struct parser {
    const unsigned char *start, *p, *end;
    bti_st_file *f;
    size_t pool_used;
    char where[200]; /* "tensor 'x': " while inside a tensor's entry */
};

static bt_status perr(struct parser *ps, const char *what)
{
    return bti_fail(BT_E_FORMAT, "safetensors file '%s': header byte %zu: %s%s", ps->f->path,
                    (size_t)(ps->p - ps->start), ps->where, what);
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int peek(const struct parser *ps) { return ps->p < ps->end ? *ps->p : -1; }

static bt_status expect(struct parser *ps, int c, const char *what)
{
    skip_ws(ps);
    if (peek(ps) != c)
        return perr(ps, what);
    ps->p++;
    skip_ws(ps);
    return BT_OK;
}

static int hex4(struct parser *ps, uint32_t *out)
{
    uint32_t v = 0;
    int i;
    if (ps->end - ps->p < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        int c = ps->p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + (uint32_t)d;
    }
    ps->p += 4;
    *out = v;
    return 0;
}

static char *put_utf8(char *d, uint32_t cp)
{
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xC0 | (cp >> 6));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xE0 | (cp >> 12));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *d++ = (char)(0xF0 | (cp >> 18));
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    }
    return d;
}

/* A JSON string, decoded into the pool (a decoded string plus its NUL is never
 * longer than its encoded form with the quotes, so the pool of header size + 1
 * always suffices). */
static bt_status parse_string(struct parser *ps, const char **out)
{
    char *dst = ps->f->pool + ps->pool_used, *d = dst;
    if (peek(ps) != '"')
        return perr(ps, "expected a string");
    ps->p++;
    for (;;) {
        unsigned char c;
        if (ps->p >= ps->end)
            return perr(ps, "unterminated string");
        c = *ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20)
            return perr(ps, "control character inside a string");
        if (c == '\\') {
            uint32_t cp, lo;
            if (++ps->p >= ps->end)
                return perr(ps, "unterminated string");
            switch (*ps->p++) {
            case '"': *d++ = '"'; break;
            case '\\': *d++ = '\\'; break;
            case '/': *d++ = '/'; break;
            case 'b': *d++ = '\b'; break;
            case 'f': *d++ = '\f'; break;
            case 'n': *d++ = '\n'; break;
            case 'r': *d++ = '\r'; break;
            case 't': *d++ = '\t'; break;
            case 'u':
                if (hex4(ps, &cp) != 0)
                    return perr(ps, "\\u escape needs four hexadecimal digits");
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return perr(ps, "\\u escape is a lone low surrogate");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
                        return perr(ps, "\\u escape is a high surrogate without its low half");
                    ps->p += 2;
                    if (hex4(ps, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return perr(ps, "\\u escape is a high surrogate without its low half");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp == 0)
                    return perr(ps, "\\u0000 (NUL) inside a string");
                d = put_utf8(d, cp);
                break;
            default:
                ps->p--;
                return perr(ps, "invalid escape sequence");
            }
        } else {
            size_t n = utf8_len(ps->p, ps->end);
            if (n == 0)
                return perr(ps, "invalid UTF-8 inside a string");
            memcpy(d, ps->p, n);
            d += n;
            ps->p += n;
        }
    }
    *d++ = '\0';
    ps->pool_used = (size_t)(d - ps->f->pool);
    *out = dst;
    return BT_OK;
}

/* A JSON number that must be an integer fitting int64. */
static bt_status parse_int(struct parser *ps, int64_t *out)
{
    uint64_t v = 0;
    int neg = 0;
    if (peek(ps) == '-') {
        neg = 1;
        ps->p++;
    }
    if (peek(ps) < '0' || peek(ps) > '9')
        return perr(ps, "expected an integer");
    if (*ps->p == '0' && ps->end - ps->p > 1 && ps->p[1] >= '0' && ps->p[1] <= '9')
        return perr(ps, "integer with a leading zero");
    while (peek(ps) >= '0' && peek(ps) <= '9') {
        unsigned d = (unsigned)(*ps->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return perr(ps, "integer out of range");
        v = v * 10 + d;
        ps->p++;
    }
    if (peek(ps) == '.' || peek(ps) == 'e' || peek(ps) == 'E')
        return perr(ps, "expected an integer, found a fraction or exponent");
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
        return perr(ps, "integer out of range");
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return BT_OK;
}

static bt_status parse_metadata(struct parser *ps)
{
    bti_st_file *f = ps->f;
    bt_status st;
    snprintf(ps->where, sizeof ps->where, "__metadata__: ");
    if ((st = expect(ps, '{', "expected an object")) != BT_OK)
        return st;
    if (peek(ps) == '}') {
        ps->p++;
        ps->where[0] = '\0';
        return BT_OK;
    }
    for (;;) {
        const char *key, *value;
        if ((st = parse_string(ps, &key)) != BT_OK)
            return st;
        if ((st = expect(ps, ':', "expected ':'")) != BT_OK)
            return st;
        if (peek(ps) != '"') {
            char msg[240];
            snprintf(msg, sizeof msg, "value of key '" NAME_FMT "' is not a string", key);
            return perr(ps, msg);
        }
        if ((st = parse_string(ps, &value)) != BT_OK)
            return st;
        if (f->nmeta == f->mcap) {
            int cap = f->mcap ? 2 * f->mcap : 8;
            const char **k = bti_realloc(f->mkey, (size_t)cap * sizeof *k);
            if (k)
                f->mkey = k;
            const char **v = k ? bti_realloc(f->mval, (size_t)cap * sizeof *v) : NULL;
            if (!v)
                return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory", f->path);
            f->mval = v;
            f->mcap = cap;
        }
        f->mkey[f->nmeta] = key;
        f->mval[f->nmeta] = value;
        f->nmeta++;
        skip_ws(ps);
        if (peek(ps) == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (peek(ps) == '}') {
            ps->p++;
            break;
        }
        return perr(ps, "expected ',' or '}'");
    }
    ps->where[0] = '\0';
    return BT_OK;
}

static bt_status parse_tensor(struct parser *ps, const char *name)
{
    bti_st_file *f = ps->f;
    struct entry *e;
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    bt_status st;
    char msg[240];

    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 16;
        struct entry *ne = bti_realloc(f->e, (size_t)cap * sizeof *ne);
        if (!ne)
            return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory", f->path);
        f->e = ne;
        f->cap = cap;
    }
    e = &f->e[f->n];
    memset(e, 0, sizeof *e);
    e->t.name = name;
    e->order = f->n;
    f->n++;
    snprintf(ps->where, sizeof ps->where, "tensor '" NAME_FMT "': ", name);

    if ((st = expect(ps, '{', "expected an object")) != BT_OK)
        return st;
    if (peek(ps) != '}') {
        for (;;) {
            const char *field;
            if ((st = parse_string(ps, &field)) != BT_OK)
                return st;
            if ((st = expect(ps, ':', "expected ':'")) != BT_OK)
                return st;
            if (strcmp(field, "dtype") == 0) {
                const char *s;
                if (have_dtype++)
                    return perr(ps, "field 'dtype' given twice");
                if ((st = parse_string(ps, &s)) != BT_OK)
                    return st;
                e->t.dtype = dtype_from_name(s);
                if (e->t.dtype < 0) {
                    snprintf(msg, sizeof msg, "unknown dtype '%.40s'", s);
                    return perr(ps, msg);
                }
            } else if (strcmp(field, "shape") == 0) {
                if (have_shape++)
                    return perr(ps, "field 'shape' given twice");
                if ((st = expect(ps, '[', "field 'shape': expected an array")) != BT_OK)
                    return st;
                if (peek(ps) == ']') {
                    ps->p++;
                } else {
                    for (;;) {
                        int64_t v;
                        if ((st = parse_int(ps, &v)) != BT_OK)
                            return st;
                        if (v < 0) {
                            snprintf(msg, sizeof msg, "field 'shape': negative dimension %" PRId64,
                                     v);
                            return perr(ps, msg);
                        }
                        if (e->t.ndim == BTI_ST_MAX_DIMS)
                            return perr(ps, "field 'shape': more than 8 dimensions");
                        e->t.shape[e->t.ndim++] = v;
                        skip_ws(ps);
                        if (peek(ps) == ',') {
                            ps->p++;
                            skip_ws(ps);
                            continue;
                        }
                        if (peek(ps) == ']') {
                            ps->p++;
                            break;
                        }
                        return perr(ps, "field 'shape': expected ',' or ']'");
                    }
                }
            } else if (strcmp(field, "data_offsets") == 0) {
                int64_t b, en;
                if (have_offsets++)
                    return perr(ps, "field 'data_offsets' given twice");
                if ((st = expect(ps, '[', "field 'data_offsets': expected an array")) != BT_OK ||
                    (st = parse_int(ps, &b)) != BT_OK ||
                    (st = expect(ps, ',', "field 'data_offsets': expected two integers")) != BT_OK ||
                    (st = parse_int(ps, &en)) != BT_OK ||
                    (st = expect(ps, ']', "field 'data_offsets': expected two integers")) != BT_OK)
                    return st;
                if (b < 0 || en < 0)
                    return perr(ps, "field 'data_offsets': negative offset");
                e->begin = (uint64_t)b;
                e->end = (uint64_t)en;
            } else {
                snprintf(msg, sizeof msg, "unexpected field '%.40s'", field);
                return perr(ps, msg);
            }
            skip_ws(ps);
            if (peek(ps) == ',') {
                ps->p++;
                skip_ws(ps);
                continue;
            }
            if (peek(ps) == '}')
                break;
            return perr(ps, "expected ',' or '}'");
        }
    }
    ps->p++; /* the '}' */
    if (!have_dtype || !have_shape || !have_offsets) {
        snprintf(msg, sizeof msg, "missing field '%s'",
                 !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
        return perr(ps, msg);
    }
    ps->where[0] = '\0';
    return BT_OK;
}

static bt_status parse_header(struct parser *ps)
{
    bt_status st;
    if (peek(ps) != '{')
        return perr(ps, "the header must start with '{'");
    ps->p++;
    skip_ws(ps);
    if (peek(ps) == '}') {
        ps->p++;
    } else {
        for (;;) {
            const char *key;
            if ((st = parse_string(ps, &key)) != BT_OK)
                return st;
            if ((st = expect(ps, ':', "expected ':'")) != BT_OK)
                return st;
            if (strcmp(key, "__metadata__") == 0) {
                if (ps->f->have_meta++)
                    return perr(ps, "'__metadata__' given twice");
                st = parse_metadata(ps);
            } else {
                st = parse_tensor(ps, key);
            }
            if (st != BT_OK)
                return st;
            skip_ws(ps);
            if (peek(ps) == ',') {
                ps->p++;
                skip_ws(ps);
                continue;
            }
            if (peek(ps) == '}') {
                ps->p++;
                break;
            }
            return perr(ps, "expected ',' or '}'");
        }
    }
    skip_ws(ps);
    if (ps->p != ps->end)
        return perr(ps, "unexpected bytes after the header's object");
    return BT_OK;
}

static int cmp_offset(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

static int cmp_entry_name(const void *a, const void *b)
{
    const struct entry *const *x = a, *const *y = b;
    return strcmp((*x)->t.name, (*y)->t.name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Per-tensor sizes, unique names and keys, then the layout of the data area. */
static bt_status validate(bti_st_file *f)
{
    const char *path = f->path;
    uint64_t pos = 0;
    int i;
    for (i = 0; i < f->n; i++) {
        struct entry *e = &f->e[i];
        size_t es = dtype_sizes[e->t.dtype];
        int64_t numel = shape_numel(e->t.ndim, e->t.shape);
        char sh[160];
        shape_text(e->t.ndim, e->t.shape, sh, sizeof sh);
        if (numel < 0 || (uint64_t)numel > UINT64_MAX / es)
            return bti_fail(BT_E_FORMAT, "safetensors file '%s': tensor '" NAME_FMT
                            "': shape %s overflows", path, e->t.name, sh);
        e->t.numel = numel;
        e->t.nbytes = (uint64_t)numel * es;
        if (e->end < e->begin)
            return bti_fail(BT_E_FORMAT, "safetensors file '%s': tensor '" NAME_FMT
                            "': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                            path, e->t.name, e->begin, e->end);
        if (e->end - e->begin != e->t.nbytes)
            return bti_fail(BT_E_FORMAT, "safetensors file '%s': tensor '" NAME_FMT
                            "': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                            " bytes but %s with shape %s needs %" PRIu64, path, e->t.name,
                            e->begin, e->end, e->end - e->begin, dtype_names[e->t.dtype], sh,
                            e->t.nbytes);
        if (e->end > f->data_size)
            return bti_fail(BT_E_FORMAT, "safetensors file '%s': tensor '" NAME_FMT
                            "': data_offsets [%" PRIu64 ", %" PRIu64 "] reach past the data"
                            " area of %" PRIu64 " bytes (truncated file?)", path, e->t.name,
                            e->begin, e->end, f->data_size);
    }

    /* File order; cmp_offset is a total order, so qsort's instability is harmless. */
    if (f->n > 1)
        qsort(f->e, (size_t)f->n, sizeof *f->e, cmp_offset);
    for (i = 0; i < f->n; i++) {
        const struct entry *e = &f->e[i];
        if (e->begin < pos)
            return bti_fail(BT_E_FORMAT, "safetensors file '%s': tensor '" NAME_FMT
                            "': data_offsets [%" PRIu64 ", %" PRIu64 "] overlap tensor '"
                            NAME_FMT "'", path, e->t.name, e->begin, e->end, f->e[i - 1].t.name);
        if (e->begin > pos)
            return bti_fail(BT_E_FORMAT, "safetensors file '%s': tensor '" NAME_FMT
                            "': data_offsets [%" PRIu64 ", %" PRIu64 "] leave a hole of %"
                            PRIu64 " bytes before it", path, e->t.name, e->begin, e->end,
                            e->begin - pos);
        pos = e->end;
    }
    if (pos != f->data_size)
        return bti_fail(BT_E_FORMAT, "safetensors file '%s': the tensors cover %" PRIu64
                        " bytes but the data area holds %" PRIu64 " (trailing bytes)", path, pos,
                        f->data_size);

    if (f->n > 0) {
        f->by_name = bti_malloc((size_t)f->n * sizeof *f->by_name);
        if (!f->by_name)
            return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory", path);
        for (i = 0; i < f->n; i++)
            f->by_name[i] = &f->e[i];
        qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_entry_name);
        for (i = 1; i < f->n; i++)
            if (strcmp(f->by_name[i - 1]->t.name, f->by_name[i]->t.name) == 0)
                return bti_fail(BT_E_FORMAT, "safetensors file '%s': duplicate tensor name '"
                                NAME_FMT "'", path, f->by_name[i]->t.name);
    }
    if (f->nmeta > 1) {
        const char **keys = bti_malloc((size_t)f->nmeta * sizeof *keys);
        if (!keys)
            return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory", path);
        memcpy(keys, f->mkey, (size_t)f->nmeta * sizeof *keys);
        qsort(keys, (size_t)f->nmeta, sizeof *keys, cmp_str);
        for (i = 1; i < f->nmeta; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                bt_status st = bti_fail(BT_E_FORMAT, "safetensors file '%s': __metadata__: "
                                        "duplicate key '" NAME_FMT "'", path, keys[i]);
                bti_free(keys);
                return st;
            }
        bti_free(keys);
    }
    return BT_OK;
}

/* A file object for name whose header (n bytes at hdr) is parsed and checked
 * against a data area of data_size bytes; the data itself comes later. */
static bt_status open_header(const char *name, const unsigned char *hdr, size_t n,
                             uint64_t data_size, bti_st_file **out)
{
    struct parser ps;
    bti_st_file *f;
    bt_status st;
    *out = NULL;
    f = bti_calloc(1, sizeof *f);
    if (f) {
        f->path = bti_malloc(strlen(name) + 1);
        f->pool = bti_malloc(n + 1);
    }
    if (!f || !f->path || !f->pool) {
        bti_st_close(f);
        return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory for a header of %zu"
                        " bytes", name, n);
    }
    memcpy(f->path, name, strlen(name) + 1);
    f->data_size = data_size;
    f->fd = -1;
    memset(&ps, 0, sizeof ps);
    ps.start = ps.p = hdr;
    ps.end = hdr + n;
    ps.f = f;
    st = parse_header(&ps);
    if (st == BT_OK)
        st = validate(f);
    if (st != BT_OK) {
        bti_st_close(f);
        return st;
    }
    *out = f;
    return BT_OK;
}

/* Point the tensors into the data area; copy those whose offset is not a
 * multiple of their element size (files from writers that do not sort by
 * alignment) so that every data pointer is aligned. */
static bt_status attach_data(bti_st_file *f)
{
    int i, need = 0;
    for (i = 0; i < f->n; i++)
        if (f->e[i].begin % dtype_sizes[f->e[i].t.dtype] != 0 && f->e[i].t.nbytes > 0)
            need++;
    if (need) {
        f->copies = bti_calloc((size_t)need, sizeof *f->copies);
        if (!f->copies)
            return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory", f->path);
    }
    for (i = 0; i < f->n; i++) {
        struct entry *e = &f->e[i];
        if (e->t.nbytes == 0) {
            e->t.data = f->data; /* never dereferenced; may be NULL for an empty area */
        } else if (e->begin % dtype_sizes[e->t.dtype] == 0) {
            e->t.data = f->data + e->begin;
        } else {
            void *c = bti_alloc((size_t)e->t.nbytes);
            if (!c)
                return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory for tensor '"
                                NAME_FMT "'", f->path, e->t.name);
            memcpy(c, f->data + e->begin, (size_t)e->t.nbytes);
            f->copies[f->ncopies++] = c;
            e->t.data = c;
        }
    }
    return BT_OK;
}

static uint64_t le64(const unsigned char *b)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* Header length checks shared by the file and memory readers. */
static bt_status check_length(const char *name, uint64_t size, uint64_t n)
{
    if (n > BTI_ST_MAX_HEADER)
        return bti_fail(BT_E_FORMAT, "safetensors file '%s': header length %" PRIu64
                        " exceeds the limit of %" PRIu64 " bytes", name, n, BTI_ST_MAX_HEADER);
    if (n > size - 8)
        return bti_fail(BT_E_FORMAT, "safetensors file '%s': header length %" PRIu64
                        " exceeds the %" PRIu64 " bytes after the length field (truncated file?)",
                        name, n, size - 8);
    if ((uint64_t)(size - 8 - n) > (uint64_t)SIZE_MAX)
        return bti_fail(BT_E_NOMEM, "safetensors file '%s': too large for this host", name);
    return BT_OK;
}

bt_status bti_st_read_mem(const void *buf, size_t size, const char *name, bti_st_file **out)
{
    const unsigned char *b = buf;
    uint64_t n, data_size;
    bti_st_file *f;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_INVALID_ARG, "bti_st_read_mem: out is NULL");
    *out = NULL;
    if (!name)
        name = "(memory)";
    if (!buf && size > 0)
        return bti_fail(BT_E_INVALID_ARG, "bti_st_read_mem: buf is NULL");
    if (!host_is_little_endian())
        return big_endian_fail(name);
    if (size < 8)
        return bti_fail(BT_E_FORMAT, "safetensors file '%s': %zu bytes, shorter than the 8-byte"
                        " header length (truncated file?)", name, size);
    n = le64(b);
    if ((st = check_length(name, size, n)) != BT_OK)
        return st;
    data_size = size - 8 - n;
    if ((st = open_header(name, b + 8, (size_t)n, data_size, &f)) != BT_OK)
        return st;
    if (data_size > 0) {
        f->data = bti_alloc((size_t)data_size);
        if (!f->data) {
            bti_st_close(f);
            return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory for %" PRIu64
                            " bytes of data", name, data_size);
        }
        memcpy(f->data, b + 8 + n, (size_t)data_size);
    }
    if ((st = attach_data(f)) != BT_OK) {
        bti_st_close(f);
        return st;
    }
    *out = f;
    return BT_OK;
}

/* pread all len bytes at off: 0, 1 at an early end of file, -1 on error (errno). */
static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    unsigned char *p = buf;
    while (len > 0) {
        size_t chunk = len > ((size_t)1 << 30) ? (size_t)1 << 30 : len;
        ssize_t r = pread(fd, p, chunk, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            return 1;
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static bt_status io_fail(const char *path, const char *what, int err)
{
    char msg[128];
    if (strerror_r(err, msg, sizeof msg) != 0)
        snprintf(msg, sizeof msg, "error %d", err);
    return bti_fail(BT_E_IO, "safetensors file '%s': %s: %s", path, what, msg);
}

static bt_status read_fail(const char *path, int r, const char *what)
{
    if (r < 0)
        return io_fail(path, what, errno);
    return bti_fail(BT_E_FORMAT, "safetensors file '%s': %s: unexpected end of file (the file"
                    " shrank while being read)", path, what);
}

/* bti_st_read (stream 0) and bti_st_open (stream 1: the data is left in the
 * file, which stays open). */
static bt_status read_file(const char *path, bti_st_file **out, int stream)
{
    unsigned char len8[8], *hdr = NULL;
    uint64_t size, n, data_size;
    bti_st_file *f = NULL;
    struct stat sb;
    bt_status st;
    int fd, r;

    if (!out)
        return bti_fail(BT_E_INVALID_ARG, "bti_st_read: out is NULL");
    *out = NULL;
    if (!path)
        return bti_fail(BT_E_INVALID_ARG, "bti_st_read: path is NULL");
    if (!host_is_little_endian())
        return big_endian_fail(path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return io_fail(path, "cannot open", errno);
    if (fstat(fd, &sb) != 0) {
        st = io_fail(path, "cannot stat", errno);
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = bti_fail(BT_E_IO, "safetensors file '%s': not a regular file", path);
        goto done;
    }
    size = (uint64_t)sb.st_size;
    if (size < 8) {
        st = bti_fail(BT_E_FORMAT, "safetensors file '%s': %" PRIu64 " bytes, shorter than the"
                      " 8-byte header length (truncated file?)", path, size);
        goto done;
    }
    if ((r = read_at(fd, len8, 8, 0)) != 0) {
        st = read_fail(path, r, "reading the header length");
        goto done;
    }
    n = le64(len8);
    if ((st = check_length(path, size, n)) != BT_OK)
        goto done;
    data_size = size - 8 - n;
    hdr = bti_malloc((size_t)n + 1);
    if (!hdr) {
        st = bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory for a header of %" PRIu64
                      " bytes", path, n);
        goto done;
    }
    if ((r = read_at(fd, hdr, (size_t)n, 8)) != 0) {
        st = read_fail(path, r, "reading the header");
        goto done;
    }
    if ((st = open_header(path, hdr, (size_t)n, data_size, &f)) != BT_OK)
        goto done;
    if (stream) {
        f->fd = fd;
        f->data_at = 8 + n;
        fd = -1;
        goto done;
    }
    if (data_size > 0) {
        f->data = bti_alloc((size_t)data_size);
        if (!f->data) {
            st = bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory for %" PRIu64
                          " bytes of data", path, data_size);
            goto done;
        }
        if ((r = read_at(fd, f->data, (size_t)data_size, 8 + n)) != 0) {
            st = read_fail(path, r, "reading the tensor data");
            goto done;
        }
    }
    st = attach_data(f);
done:
    bti_free(hdr);
    if (fd >= 0)
        close(fd);
    if (st != BT_OK) {
        bti_st_close(f);
        return st;
    }
    *out = f;
    return BT_OK;
}

bt_status bti_st_read(const char *path, bti_st_file **out) { return read_file(path, out, 0); }

bt_status bti_st_open(const char *path, bti_st_file **out) { return read_file(path, out, 1); }

int bti_st_count(const bti_st_file *f) { return f ? f->n : 0; }

const struct bti_st_tensor *bti_st_get(const bti_st_file *f, int i)
{
    return f && i >= 0 && i < f->n ? &f->e[i].t : NULL;
}

const struct bti_st_tensor *bti_st_find(const bti_st_file *f, const char *name)
{
    int lo = 0, hi;
    if (!f || !name)
        return NULL;
    hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->t.name, name);
        if (c == 0)
            return &f->by_name[mid]->t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const char *bti_st_meta(const bti_st_file *f, const char *key)
{
    int i;
    if (!f || !key)
        return NULL;
    for (i = 0; i < f->nmeta; i++)
        if (strcmp(f->mkey[i], key) == 0)
            return f->mval[i];
    return NULL;
}

int bti_st_meta_count(const bti_st_file *f) { return f ? f->nmeta : 0; }

void bti_st_meta_at(const bti_st_file *f, int i, const char **key, const char **value)
{
    int ok = f && i >= 0 && i < f->nmeta;
    if (key)
        *key = ok ? f->mkey[i] : NULL;
    if (value)
        *value = ok ? f->mval[i] : NULL;
}

const char *bti_st_path(const bti_st_file *f) { return f ? f->path : NULL; }

void bti_st_close(bti_st_file *f)
{
    int i;
    if (!f)
        return;
    for (i = 0; i < f->ncopies; i++)
        bti_free(f->copies[i]);
    bti_free(f->copies);
    bti_free(f->data);
    if (f->fd >= 0)
        close(f->fd);
    bti_free(f->by_name);
    bti_free(f->mkey);
    bti_free(f->mval);
    bti_free(f->e);
    bti_free(f->pool);
    bti_free(f->path);
    bti_free(f);
}

/* ======================================================================== */
/* Conversion to float32                                                     */
/* ======================================================================== */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    uint32_t bits;
    float f;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp == 0) {
        f = ldexpf((float)man, -24); /* zero or subnormal, exact */
        return sign ? -f : f;
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Element i of an integer tensor, as int64 (U64 values above INT64_MAX are
 * reported through *big). */
static int64_t int_at(const unsigned char *p, int dtype, int64_t i, uint64_t *big)
{
    *big = 0;
    switch (dtype) {
    case BTI_ST_BOOL: return p[i];
    case BTI_ST_U8: return p[i];
    case BTI_ST_I8: return (int8_t)p[i];
    case BTI_ST_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case BTI_ST_U16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case BTI_ST_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case BTI_ST_U32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case BTI_ST_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    default: { /* U64 */
        uint64_t v;
        memcpy(&v, p + 8 * i, 8);
        if (v > (uint64_t)INT64_MAX) {
            *big = v;
            return 0;
        }
        return (int64_t)v;
    }
    }
}

/* 1 when v is exactly a float32 (2^63 itself is a float but no int64). */
static int int64_fits_float(int64_t v)
{
    float f = (float)v;
    if (f >= 9223372036854775808.0f)
        return 0;
    return (int64_t)f == v;
}

/* Elements [first, first + count) of t, stored at p, into out[0 .. count)
 * (out NULL: check only); messages name the element by its index in t. */
static bt_status convert(const struct bti_st_tensor *t, const unsigned char *p, int64_t first,
                         int64_t count, float *out, const char *path)
{
    int64_t i;
    char sh[160];
    shape_text(t->ndim, t->shape, sh, sizeof sh);
    switch (t->dtype) {
    case BTI_ST_F32:
        if (out && count > 0)
            memcpy(out, p, (size_t)count * 4);
        return BT_OK;
    case BTI_ST_F16:
    case BTI_ST_BF16:
        if (out)
            for (i = 0; i < count; i++) {
                uint16_t h;
                memcpy(&h, p + 2 * i, 2);
                out[i] = t->dtype == BTI_ST_F16 ? half_to_float(h) : bf16_to_float(h);
            }
        return BT_OK;
    case BTI_ST_F8_E5M2:
    case BTI_ST_F8_E4M3:
        return bti_fail(BT_E_UNSUPPORTED, "safetensors file '%s': tensor '" NAME_FMT "': dtype %s"
                        " cannot be loaded (only F32, F64, F16, BF16 and integers)", path,
                        t->name, dtype_names[t->dtype]);
    case BTI_ST_F64:
        for (i = 0; i < count; i++) {
            double v;
            memcpy(&v, p + 8 * i, 8);
            if (isfinite(v) && (fabs(v) > FLT_MAX || (double)(float)v != v))
                return bti_fail(BT_E_FORMAT, "safetensors file '%s': tensor '" NAME_FMT "' (F64,"
                                " shape %s): element %" PRId64 " = %.17g is not exactly"
                                " representable as float32", path, t->name, sh, first + i, v);
        }
        if (out)
            for (i = 0; i < count; i++) {
                double v;
                memcpy(&v, p + 8 * i, 8);
                out[i] = (float)v;
            }
        return BT_OK;
    default:
        for (i = 0; i < count; i++) {
            uint64_t big;
            int64_t v = int_at(p, t->dtype, i, &big);
            if (big || !int64_fits_float(v) || (t->dtype == BTI_ST_BOOL && v > 1)) {
                char val[32];
                if (big)
                    snprintf(val, sizeof val, "%" PRIu64, big);
                else
                    snprintf(val, sizeof val, "%" PRId64, v);
                return bti_fail(BT_E_FORMAT, "safetensors file '%s': tensor '" NAME_FMT "' (%s,"
                                " shape %s): element %" PRId64 " = %s is not exactly"
                                " representable as float32", path, t->name,
                                dtype_names[t->dtype], sh, first + i, val);
            }
        }
        if (out)
            for (i = 0; i < count; i++) {
                uint64_t big;
                out[i] = (float)int_at(p, t->dtype, i, &big);
            }
        return BT_OK;
    }
}

bt_status bti_st_to_f32(const struct bti_st_tensor *t, float *out, const char *path)
{
    int64_t numel;
    char sh[160];
    if (!path)
        path = "(unnamed)";
    if (!t)
        return bti_fail(BT_E_INVALID_ARG, "bti_st_to_f32: tensor is NULL");
    if (t->dtype < 0 || t->dtype >= BTI_ST_DTYPE_COUNT || t->ndim < 0 ||
        t->ndim > BTI_ST_MAX_DIMS)
        return bti_fail(BT_E_INVALID_ARG, "bti_st_to_f32: tensor '" NAME_FMT "' has dtype %d and"
                        " %d dimensions", t->name ? t->name : "?", t->dtype, (int)t->ndim);
    numel = shape_numel(t->ndim, t->shape);
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / sizeof(double)) {
        shape_text(t->ndim, t->shape, sh, sizeof sh);
        return bti_fail(BT_E_INVALID_ARG, "bti_st_to_f32: tensor '" NAME_FMT "' has shape %s",
                        t->name ? t->name : "?", sh);
    }
    if (numel > 0 && !t->data)
        return bti_fail(BT_E_INVALID_ARG, "bti_st_to_f32: tensor '" NAME_FMT "' has no data",
                        t->name ? t->name : "?");
    return convert(t, t->data, 0, numel, out, path);
}

/* A failed read of tensor t's data. */
static bt_status tensor_read_fail(const bti_st_file *f, const struct bti_st_tensor *t, int r)
{
    char what[200];
    snprintf(what, sizeof what, "reading tensor '" NAME_FMT "'", t->name);
    return read_fail(f->path, r, what);
}

size_t bti_st_load_scratch(const struct bti_st_tensor *t)
{
    const size_t es = dtype_sizes[t->dtype];
    const int64_t per = (int64_t)(BTI_ST_STREAM_CHUNK / es);
    if (t->dtype == BTI_ST_F32 || t->dtype == BTI_ST_F8_E5M2 || t->dtype == BTI_ST_F8_E4M3)
        return 0;
    return (size_t)(t->numel < per ? t->numel : per) * es + 1;
}

bt_status bti_st_load_f32(const bti_st_file *f, const struct bti_st_tensor *t, float *out,
                          void *scratch)
{
    const struct entry *e = (const struct entry *)t; /* t is an entry's first member */
    const size_t es = dtype_sizes[t->dtype]; /* the header's tensors are validated */
    const uint64_t at = f->data_at + e->begin;
    const int64_t per = (int64_t)(BTI_ST_STREAM_CHUNK / es);
    unsigned char *buf = scratch;
    int64_t done;
    bt_status st = BT_OK;
    int r;
    if (t->dtype == BTI_ST_F32 && out) { /* straight into place */
        r = read_at(f->fd, out, (size_t)t->nbytes, at);
        return r ? tensor_read_fail(f, t, r) : BT_OK;
    }
    /* F8 fails without its data, and the float dtypes need none to be checked */
    if (t->dtype == BTI_ST_F8_E5M2 || t->dtype == BTI_ST_F8_E4M3 ||
        (!out && (t->dtype == BTI_ST_F32 || t->dtype == BTI_ST_F16 || t->dtype == BTI_ST_BF16)))
        return convert(t, NULL, 0, 0, out, f->path);
    if (!buf && !(buf = bti_malloc(bti_st_load_scratch(t))))
        return bti_fail(BT_E_NOMEM, "safetensors file '%s': out of memory", f->path);
    for (done = 0; done < t->numel && st == BT_OK; done += per) {
        const int64_t count = t->numel - done < per ? t->numel - done : per;
        if ((r = read_at(f->fd, buf, (size_t)count * es, at + (uint64_t)done * es)) != 0)
            st = tensor_read_fail(f, t, r);
        else
            st = convert(t, buf, done, count, out ? out + done : NULL, f->path);
    }
    if (buf != scratch)
        bti_free(buf);
    return st;
}

/* ======================================================================== */
/* Writer                                                                    */
/* ======================================================================== */

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        np = bti_realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* A JSON string escaped as serde_json does: ", \ and bytes below 0x20 only. */
static void sb_json(struct sbuf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    sb_add(b, "\"", 1);
    for (; *p; p++) {
        char esc[8];
        const char *e = NULL;
        switch (*p) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                e = esc;
            }
        }
        if (e)
            sb_str(b, e);
        else
            sb_add(b, (const char *)p, 1);
    }
    sb_add(b, "\"", 1);
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, v);
    sb_str(b, num);
}

/* The reference writer's order: dtype rank descending, then name. */
static int cmp_write_order(const void *a, const void *b)
{
    const struct bti_st_tensor *x = *(const struct bti_st_tensor *const *)a;
    const struct bti_st_tensor *y = *(const struct bti_st_tensor *const *)b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const struct bti_st_tensor *x = *(const struct bti_st_tensor *const *)a;
    const struct bti_st_tensor *y = *(const struct bti_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static bt_status check_write_args(const char *path, const struct bti_st_tensor *t, int n,
                                  const char *const *mk, const char *const *mv, int nmeta,
                                  uint64_t *nbytes)
{
    const char *fn = "safetensors write";
    size_t plen;
    int i, j, d;
    if (!path)
        return bti_fail(BT_E_INVALID_ARG, "%s: path is NULL", fn);
    plen = strlen(path);
    if (plen == 0 || path[plen - 1] == '/')
        return bti_fail(BT_E_INVALID_ARG, "%s: path '%s' does not name a file", fn, path);
    if (n < 0 || (n > 0 && !t))
        return bti_fail(BT_E_INVALID_ARG, "%s '%s': %d tensors at %p", fn, path, n,
                        (const void *)t);
    if (nmeta < 0 || (nmeta > 0 && (!mk || !mv)))
        return bti_fail(BT_E_INVALID_ARG, "%s '%s': %d metadata pairs with keys %p values %p",
                        fn, path, nmeta, (const void *)mk, (const void *)mv);
    *nbytes = 0;
    for (i = 0; i < n; i++) {
        const struct bti_st_tensor *x = &t[i];
        int64_t numel;
        uint64_t bytes;
        if (!x->name)
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': tensor %d has a NULL name", fn, path, i);
        if (!utf8_valid(x->name))
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': tensor %d: name is not valid UTF-8", fn,
                            path, i);
        if (strcmp(x->name, "__metadata__") == 0)
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': tensor %d may not be named '__metadata__'",
                            fn, path, i);
        if (x->dtype < 0 || x->dtype >= BTI_ST_DTYPE_COUNT)
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': tensor '" NAME_FMT "': unknown dtype %d",
                            fn, path, x->name, x->dtype);
        if (x->ndim < 0 || x->ndim > BTI_ST_MAX_DIMS)
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': tensor '" NAME_FMT "': ndim %d (0..%d)",
                            fn, path, x->name, (int)x->ndim, BTI_ST_MAX_DIMS);
        for (d = 0; d < x->ndim; d++)
            if (x->shape[d] < 0)
                return bti_fail(BT_E_INVALID_ARG, "%s '%s': tensor '" NAME_FMT "': dimension %d"
                                " is %" PRId64, fn, path, x->name, d, x->shape[d]);
        numel = shape_numel(x->ndim, x->shape);
        if (numel < 0 || (uint64_t)numel > (UINT64_MAX - *nbytes) / dtype_sizes[x->dtype] ||
            (uint64_t)numel * dtype_sizes[x->dtype] > (uint64_t)SIZE_MAX)
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': tensor '" NAME_FMT "': too large", fn,
                            path, x->name);
        bytes = (uint64_t)numel * dtype_sizes[x->dtype];
        if (bytes > 0 && !x->data)
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': tensor '" NAME_FMT "': data is NULL", fn,
                            path, x->name);
        *nbytes += bytes;
    }
    for (i = 0; i < nmeta; i++) {
        if (!mk[i] || !mv[i])
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': metadata pair %d has a NULL %s", fn, path,
                            i, mk[i] ? "value" : "key");
        if (!utf8_valid(mk[i]) || !utf8_valid(mv[i]))
            return bti_fail(BT_E_INVALID_ARG, "%s '%s': metadata pair %d ('" NAME_FMT "') is not"
                            " valid UTF-8", fn, path, i, utf8_valid(mk[i]) ? mk[i] : "?");
        for (j = 0; j < i; j++) /* few keys: quadratic is fine */
            if (strcmp(mk[i], mk[j]) == 0)
                return bti_fail(BT_E_INVALID_ARG, "%s '%s': metadata key '" NAME_FMT "' given"
                                " twice", fn, path, mk[i]);
    }
    return BT_OK;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        size_t chunk = len > ((size_t)1 << 30) ? (size_t)1 << 30 : len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static atomic_uint tmp_counter;

/* The directory part of path ("." when there is none), malloc'ed; NULL when out of memory. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t len = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = bti_malloc(len + 1);
    if (dir) {
        memcpy(dir, slash ? path : ".", len);
        dir[len] = '\0';
    }
    return dir;
}

/* path's directory, fsync'ed best effort. */
static int sync_dir(const char *path)
{
    char *dir = dir_of(path);
    int fd, rc = 0;
    if (!dir)
        return 0;
    fd = open(dir, O_RDONLY | O_CLOEXEC);
    bti_free(dir);
    if (fd < 0)
        return 0; /* e.g. a write-only directory: nothing we can sync */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = errno;
    close(fd);
    return rc;
}

/* p past one or more decimal digits, or NULL when there are none. */
static const char *skip_digits(const char *p)
{
    const char *q = p;
    while (*q >= '0' && *q <= '9')
        q++;
    return q > p ? q : NULL;
}

/* Remove the temporaries of path ("<base>.tmp.<pid>.<k>") that processes
 * killed while saving left behind. Only those of dead processes: a live one
 * (this one included) may be saving right now. Best effort, errors ignored. */
static void remove_stale_temps(const char *path)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const size_t blen = strlen(base);
    char *dir = dir_of(path);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    bti_free(dir);
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        const char *p = de->d_name, *end;
        long pid;
        if (strncmp(p, base, blen) != 0 || strncmp(p + blen, ".tmp.", 5) != 0)
            continue;
        p += blen + 5;
        end = skip_digits(p);
        if (!end || *end != '.' || !(end = skip_digits(end + 1)) || *end != '\0')
            continue;
        errno = 0;
        pid = strtol(p, NULL, 10);
        if (errno != 0 || pid <= 0 || (long)(pid_t)pid != pid) /* kill(0) is the group */
            continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

bt_status bti_st_write(const char *path, const struct bti_st_tensor *t, int n,
                       const char *const *meta_keys, const char *const *meta_values, int nmeta)
{
    const struct bti_st_tensor **order = NULL;
    struct sbuf hb = {NULL, 0, 0, 0};
    uint64_t total = 0, off = 0;
    unsigned char len8[8];
    char *tmp = NULL;
    bt_status st;
    int i, d, fd = -1, err;

    if ((st = check_write_args(path, t, n, meta_keys, meta_values, nmeta, &total)) != BT_OK)
        return st;
    if (!host_is_little_endian())
        return big_endian_fail(path);

    if (n > 0) {
        order = bti_malloc((size_t)n * sizeof *order);
        if (!order)
            return bti_fail(BT_E_NOMEM, "safetensors write '%s': out of memory", path);
        for (i = 0; i < n; i++)
            order[i] = &t[i];
        qsort(order, (size_t)n, sizeof *order, cmp_tensor_name);
        for (i = 1; i < n; i++)
            if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
                st = bti_fail(BT_E_INVALID_ARG, "safetensors write '%s': tensor name '" NAME_FMT
                              "' given twice", path, order[i]->name);
                bti_free(order);
                return st;
            }
        qsort(order, (size_t)n, sizeof *order, cmp_write_order);
    }

    /* The header, compact as serde_json writes it, padded to 8 bytes. */
    sb_add(&hb, "{", 1);
    if (nmeta > 0) {
        sb_str(&hb, "\"__metadata__\":{");
        for (i = 0; i < nmeta; i++) {
            if (i)
                sb_add(&hb, ",", 1);
            sb_json(&hb, meta_keys[i]);
            sb_add(&hb, ":", 1);
            sb_json(&hb, meta_values[i]);
        }
        sb_add(&hb, "}", 1);
    }
    for (i = 0; i < n; i++) {
        const struct bti_st_tensor *x = order[i];
        uint64_t bytes = (uint64_t)shape_numel(x->ndim, x->shape) * dtype_sizes[x->dtype];
        if (i || nmeta > 0)
            sb_add(&hb, ",", 1);
        sb_json(&hb, x->name);
        sb_str(&hb, ":{\"dtype\":\"");
        sb_str(&hb, dtype_names[x->dtype]);
        sb_str(&hb, "\",\"shape\":[");
        for (d = 0; d < x->ndim; d++) {
            if (d)
                sb_add(&hb, ",", 1);
            sb_u64(&hb, (uint64_t)x->shape[d]);
        }
        sb_str(&hb, "],\"data_offsets\":[");
        sb_u64(&hb, off);
        sb_add(&hb, ",", 1);
        sb_u64(&hb, off + bytes);
        sb_str(&hb, "]}");
        off += bytes;
    }
    sb_add(&hb, "}", 1);
    while (!hb.oom && hb.len % 8 != 0) /* sb_add does nothing once out of memory */
        sb_add(&hb, " ", 1);
    if (hb.oom || hb.len > BTI_ST_MAX_HEADER) {
        st = hb.oom ? bti_fail(BT_E_NOMEM, "safetensors write '%s': out of memory", path)
                    : bti_fail(BT_E_INVALID_ARG, "safetensors write '%s': header of %zu bytes"
                               " exceeds the format's limit", path, hb.len);
        goto fail;
    }
    for (i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hb.len >> (8 * i));

    /* A fresh temporary file beside the destination, so rename is atomic. */
    remove_stale_temps(path);
    tmp = bti_malloc(strlen(path) + 48);
    if (!tmp) {
        st = bti_fail(BT_E_NOMEM, "safetensors write '%s': out of memory", path);
        goto fail;
    }
    for (i = 0; i < 100; i++) {
        unsigned k = atomic_fetch_add(&tmp_counter, 1u);
        sprintf(tmp, "%s.tmp.%ld.%u", path, (long)getpid(), k);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        st = io_fail(path, "cannot create a temporary file beside it", errno);
        bti_free(tmp);
        tmp = NULL; /* nothing to remove */
        goto fail;
    }
    if (write_full(fd, len8, 8) != 0 || write_full(fd, hb.p, hb.len) != 0)
        goto fail_io;
    for (i = 0; i < n; i++) {
        const struct bti_st_tensor *x = order[i];
        size_t bytes = (size_t)shape_numel(x->ndim, x->shape) * dtype_sizes[x->dtype];
        if (bytes > 0 && write_full(fd, x->data, bytes) != 0)
            goto fail_io;
    }
    if (fsync(fd) != 0)
        goto fail_io;
    err = close(fd);
    fd = -1;
    if (err != 0)
        goto fail_io;
    if (rename(tmp, path) != 0) {
        st = io_fail(path, "cannot rename the temporary file over it", errno);
        goto fail;
    }
    bti_free(tmp);
    bti_free(order);
    bti_free(hb.p);
    if ((err = sync_dir(path)) != 0)
        return io_fail(path, "the file was replaced, but syncing its directory failed", err);
    return BT_OK;

fail_io:
    st = io_fail(path, "writing the temporary file failed", errno);
fail:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        bti_free(tmp);
    }
    bti_free(order);
    bti_free(hb.p);
    return st;
}
