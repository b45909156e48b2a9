/* check_safetensors.c - the checkpoint file format: round trips, files written
 * as the reference `safetensors` package writes them (from PyTorch), strict
 * rejection of malformed files, atomic writes, and a byte-flip fuzz loop. */
#include "golden.h"
#include "io/safetensors.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bt_st_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[512];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void cleanup_tmpdir(void) { remove_tree(tmpdir); }

/* Number of entries in a directory (without . and ..); only is set to the
 * name of the entry when there is exactly one. */
static int dir_entries(const char *dir, char *only, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (only)
            snprintf(only, cap, "%s", de->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long len;
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)len + 1);
    ck_assert(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *size = (size_t)len;
    return buf;
}

static void spit(const char *path, const void *buf, size_t size)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert(fwrite(buf, 1, size, f) == size);
    ck_assert_int_eq(fclose(f), 0);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static struct bti_st_tensor tensor(const char *name, int dtype, int ndim, const int64_t *shape,
                                   const void *data)
{
    struct bti_st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.dtype = dtype;
    t.ndim = ndim;
    if (ndim > 0)
        memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
    t.data = data;
    return t;
}

/* The bytes of a file with this header (not padded) and n data bytes 0..n-1. */
static unsigned char *build(const char *header, size_t ndata, size_t *size)
{
    size_t hl = strlen(header), i;
    unsigned char *b = malloc(8 + hl + ndata + 1);
    for (i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (i = 0; i < ndata; i++)
        b[8 + hl + i] = (unsigned char)i;
    *size = 8 + hl + ndata;
    return b;
}

/* Expect the memory reader to refuse this header with status and a message
 * containing every needle given (NULL-terminated list). */
static void expect_bad(const char *header, size_t ndata, bt_status want, const char *needle1,
                       const char *needle2)
{
    size_t size;
    unsigned char *b = build(header, ndata, &size);
    bti_st_file *f = (bti_st_file *)1;
    bt_status st = bti_st_read_mem(b, size, "bad.safetensors", &f);
    ck_assert_msg(st == want, "header %s: status %d (want %d): %s", header, st, want,
                  bt_last_error());
    ck_assert_ptr_null(f);
    ck_assert_msg(contains(bt_last_error(), "bad.safetensors"), "no file name in: %s",
                  bt_last_error());
    if (needle1)
        ck_assert_msg(contains(bt_last_error(), needle1), "header %s: '%s' not in: %s", header,
                      needle1, bt_last_error());
    if (needle2)
        ck_assert_msg(contains(bt_last_error(), needle2), "header %s: '%s' not in: %s", header,
                      needle2, bt_last_error());
    free(b);
}

static void expect_ok(const char *header, size_t ndata)
{
    size_t size;
    unsigned char *b = build(header, ndata, &size);
    bti_st_file *f = NULL;
    bt_status st = bti_st_read_mem(b, size, "ok.safetensors", &f);
    ck_assert_msg(st == BT_OK, "header %s: %s", header, bt_last_error());
    bti_st_close(f);
    free(b);
}

/* Rewrite every tensor and metadata pair of f (in file order) to path. */
static void rewrite(const bti_st_file *f, const char *path)
{
    int n = bti_st_count(f), nm = bti_st_meta_count(f), i;
    struct bti_st_tensor *t = calloc((size_t)n + 1, sizeof *t);
    const char **k = calloc((size_t)nm + 1, sizeof *k), **v = calloc((size_t)nm + 1, sizeof *v);
    for (i = 0; i < n; i++)
        t[i] = *bti_st_get(f, i);
    for (i = 0; i < nm; i++)
        bti_st_meta_at(f, i, &k[i], &v[i]);
    ck_assert_msg(bti_st_write(path, t, n, k, v, nm) == BT_OK, "%s", bt_last_error());
    free(t);
    free(k);
    free(v);
}

static void assert_same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    ck_assert_msg(na == nb, "%s has %zu bytes, %s %zu", a, na, b, nb);
    ck_assert_msg(memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* Every tensor of f converts to float32 equal (bit for bit) to the golden values. */
static void assert_matches_golden(const bti_st_file *f, const char *golden_file)
{
    golden *g = golden_load(golden_file);
    int i, checked = 0;
    for (i = 0; i < bti_st_count(f); i++) {
        const struct bti_st_tensor *t = bti_st_get(f, i);
        float *got;
        const float *want;
        if (t->numel == 0)
            continue;
        want = golden_get(g, t->name, NULL, NULL);
        ck_assert_int_eq(golden_numel(g, t->name), t->numel);
        got = malloc((size_t)t->numel * sizeof *got);
        ck_assert_msg(bti_st_to_f32(t, got, bti_st_path(f)) == BT_OK, "%s", bt_last_error());
        ck_assert_msg(memcmp(got, want, (size_t)t->numel * sizeof *got) == 0, "tensor %s differs",
                      t->name);
        free(got);
        checked++;
    }
    ck_assert_int_gt(checked, 0);
    golden_free(g);
}

/* ---- round trips ------------------------------------------------------------ */

static const char *const meta_k[] = {"step", "rng", "quote \" back \\ slash", "caf\xc3\xa9",
                                     "ctl"};
static const char *const meta_v[] = {"1234", "18446744073709551615:7",
                                     "a \"quoted\" C:\\path\\ / end",
                                     "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
                                     "\n\t\r\b\f\x01\x1f\x7f"};

START_TEST(round_trip)
{
    float w[6] = {1.5f, -2.25f, 3e-38f, 1e30f, -0.0f, 7.0f};
    int64_t nbt = 123456789012LL;
    double d[4] = {0.1, -1e300, 5e-324, 3.0};
    const int64_t s23[2] = {2, 3}, s4[1] = {4}, s0[2] = {0, 5};
    struct bti_st_tensor in[4];
    char path[128], hdr[8];
    bti_st_file *f = NULL;
    const struct bti_st_tensor *t;
    size_t size;
    unsigned char *raw;
    uint64_t n;
    int i;

    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    in[0] = tensor("backbone.conv1.weight", BTI_ST_F32, 2, s23, w);
    in[1] = tensor("backbone.bn1.num_batches_tracked", BTI_ST_I64, 0, NULL, &nbt);
    in[2] = tensor("optim.state", BTI_ST_F64, 1, s4, d);
    in[3] = tensor("empty", BTI_ST_F32, 2, s0, NULL);
    ck_assert_msg(bti_st_write(path, in, 4, meta_k, meta_v, 5) == BT_OK, "%s", bt_last_error());
    ck_assert_int_eq(dir_entries(tmpdir, NULL, 0), 1);

    /* Layout as the reference writer: header padded to 8, I64 then F64 then F32. */
    raw = slurp(path, &size);
    memcpy(&n, raw, 8);
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_uint_eq(size, 8 + n + 8 + 32 + 24);
    ck_assert_int_eq(raw[8], '{');
    memcpy(hdr, raw + 8 + n - 1, 1);
    ck_assert(hdr[0] == '}' || hdr[0] == ' ');
    free(raw);

    ck_assert_msg(bti_st_read(path, &f) == BT_OK, "%s", bt_last_error());
    ck_assert_int_eq(bti_st_count(f), 4);
    ck_assert_str_eq(bti_st_get(f, 0)->name, "backbone.bn1.num_batches_tracked");
    ck_assert_str_eq(bti_st_get(f, 1)->name, "optim.state");
    ck_assert_str_eq(bti_st_get(f, 2)->name, "backbone.conv1.weight"); /* F32 by name */
    ck_assert_str_eq(bti_st_get(f, 3)->name, "empty");
    ck_assert_ptr_null(bti_st_get(f, 4));
    ck_assert_ptr_null(bti_st_get(f, -1));

    t = bti_st_find(f, "backbone.conv1.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, BTI_ST_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert(t->shape[0] == 2 && t->shape[1] == 3);
    ck_assert_int_eq(t->numel, 6);
    ck_assert_uint_eq(t->nbytes, 24);
    ck_assert_uint_eq((uintptr_t)t->data % 4, 0);
    ck_assert(memcmp(t->data, w, sizeof w) == 0);

    t = bti_st_find(f, "backbone.bn1.num_batches_tracked");
    ck_assert_int_eq(t->dtype, BTI_ST_I64);
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_int_eq(t->numel, 1);
    ck_assert_uint_eq((uintptr_t)t->data % 8, 0);
    ck_assert(*(const int64_t *)t->data == nbt);

    t = bti_st_find(f, "optim.state");
    ck_assert_int_eq(t->dtype, BTI_ST_F64);
    ck_assert(memcmp(t->data, d, sizeof d) == 0);

    t = bti_st_find(f, "empty");
    ck_assert_int_eq(t->numel, 0);
    ck_assert(t->shape[0] == 0 && t->shape[1] == 5);
    ck_assert_ptr_null(bti_st_find(f, "missing"));
    ck_assert_ptr_null(bti_st_find(f, "backbone.conv1"));

    ck_assert_int_eq(bti_st_meta_count(f), 5);
    for (i = 0; i < 5; i++) {
        const char *k, *v;
        bti_st_meta_at(f, i, &k, &v);
        ck_assert_str_eq(k, meta_k[i]); /* caller's order kept */
        ck_assert_str_eq(v, meta_v[i]);
        ck_assert_str_eq(bti_st_meta(f, meta_k[i]), meta_v[i]);
    }
    ck_assert_ptr_null(bti_st_meta(f, "absent"));
    bti_st_close(f);

    /* No tensors, no metadata: the reference's 16-byte empty file. */
    ck_assert(bti_st_write(path, NULL, 0, NULL, NULL, 0) == BT_OK);
    raw = slurp(path, &size);
    ck_assert_uint_eq(size, 16);
    ck_assert(memcmp(raw, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(raw);
    ck_assert(bti_st_read(path, &f) == BT_OK);
    ck_assert_int_eq(bti_st_count(f), 0);
    ck_assert_int_eq(bti_st_meta_count(f), 0);
    bti_st_close(f);
}
END_TEST

/* The byte vectors of the reference implementation's own serialisation tests. */
START_TEST(reference_vectors)
{
    static const unsigned char one[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
        116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
        58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
        101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
        0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    static const char meta_only[] = "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}"
                                    "     ";
    const float v[6] = {0, 1, 2, 3, 4, 5};
    const int64_t shape[3] = {1, 2, 3};
    const char *k = "framework", *val = "pt";
    struct bti_st_tensor t = tensor("attn.0", BTI_ST_F32, 3, shape, v);
    char path[128];
    unsigned char *raw;
    size_t size;

    snprintf(path, sizeof path, "%s/ref.safetensors", tmpdir);
    ck_assert(bti_st_write(path, &t, 1, NULL, NULL, 0) == BT_OK);
    raw = slurp(path, &size);
    ck_assert_uint_eq(size, sizeof one);
    ck_assert(memcmp(raw, one, sizeof one) == 0);
    free(raw);
    ck_assert(bti_st_write(path, NULL, 0, &k, &val, 1) == BT_OK);
    raw = slurp(path, &size);
    ck_assert_uint_eq(size, sizeof meta_only - 1);
    ck_assert(memcmp(raw, meta_only, size) == 0);
    free(raw);
}
END_TEST

/* ---- files written by PyTorch (tests/golden/gen_safetensors.py) ------------ */

START_TEST(torch_state_dict)
{
    static const char *const names[] = {
        "backbone.conv1.weight", "backbone.bn1.weight", "backbone.bn1.bias",
        "backbone.bn1.running_mean", "backbone.bn1.running_var",
        "backbone.layer1.0.conv1.weight", "backbone.layer1.0.bn1.running_var",
        "projector.0.weight", "projector.1.weight", "projector.1.running_mean",
        "projector.3.weight"};
    const char *nbt[3] = {"backbone.bn1.num_batches_tracked",
                          "backbone.layer1.0.bn1.num_batches_tracked",
                          "projector.1.num_batches_tracked"};
    bti_st_file *f = NULL;
    char path[128];
    size_t i;

    ck_assert_msg(bti_st_read("golden/st_torch_model.safetensors", &f) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bti_st_count(f), 19);
    ck_assert_str_eq(bti_st_meta(f, "format"), "pt");
    for (i = 0; i < sizeof names / sizeof *names; i++) {
        const struct bti_st_tensor *t = bti_st_find(f, names[i]);
        ck_assert_msg(t != NULL, "%s missing", names[i]);
        ck_assert_int_eq(t->dtype, BTI_ST_F32);
    }
    ck_assert_int_eq(bti_st_find(f, "backbone.conv1.weight")->ndim, 4);
    ck_assert_int_eq(bti_st_find(f, "backbone.conv1.weight")->shape[0], 4);
    ck_assert_int_eq(bti_st_find(f, "projector.3.weight")->shape[0], 6);
    for (i = 0; i < 3; i++) {
        const struct bti_st_tensor *t = bti_st_find(f, nbt[i]);
        float v = -1;
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->dtype, BTI_ST_I64);
        ck_assert_int_eq(t->ndim, 0);
        ck_assert_int_eq(*(const int64_t *)t->data, 2);
        ck_assert(bti_st_to_f32(t, &v, "x") == BT_OK && v == 2.0f);
    }
    assert_matches_golden(f, "st_torch_model.bin");

    /* Our writer reproduces the reference writer's file byte for byte. */
    snprintf(path, sizeof path, "%s/again.safetensors", tmpdir);
    rewrite(f, path);
    assert_same_bytes(path, "golden/st_torch_model.safetensors");
    bti_st_close(f);
}
END_TEST

START_TEST(mixed_dtypes_and_metadata)
{
    bti_st_file *f = NULL, *g = NULL;
    const struct bti_st_tensor *t;
    char path[128];
    int i;

    ck_assert_msg(bti_st_read("golden/st_mixed.safetensors", &f) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bti_st_count(f), 14);
    ck_assert_str_eq(bti_st_meta(f, "quote \" back \\ slash"),
                     "line1\nline2\ttab \x01 ctrl \x1f / slash");
    ck_assert_str_eq(bti_st_meta(f, "unicode"),
                     "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80");
    ck_assert_str_eq(bti_st_meta(f, "empty"), "");
    t = bti_st_find(f, "\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
    ck_assert_ptr_nonnull(t);
    t = bti_st_find(f, "e.empty");
    ck_assert(t && t->numel == 0 && t->ndim == 2 && t->shape[1] == 3);
    ck_assert(bti_st_to_f32(t, NULL, "x") == BT_OK);
    t = bti_st_find(f, "e.scalar");
    ck_assert(t && t->ndim == 0 && t->numel == 1);
    ck_assert_int_eq(bti_st_find(f, "d.bf16")->dtype, BTI_ST_BF16);
    ck_assert_int_eq(bti_st_find(f, "d.f16")->dtype, BTI_ST_F16);
    ck_assert_int_eq(bti_st_find(f, "c.bool")->dtype, BTI_ST_BOOL);
    for (i = 0; i < bti_st_count(f); i++) /* every pointer aligned to its element */
        ck_assert_uint_eq((uintptr_t)bti_st_get(f, i)->data % bti_st_dtype_size(bti_st_get(f, i)->dtype), 0);
    assert_matches_golden(f, "st_mixed.bin");

    snprintf(path, sizeof path, "%s/again.safetensors", tmpdir);
    rewrite(f, path);
    assert_same_bytes(path, "golden/st_mixed.safetensors");

    /* \uXXXX escapes (surrogate pairs too) decode to the same strings. */
    ck_assert_msg(bti_st_read("golden/st_escaped.safetensors", &g) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bti_st_count(g), bti_st_count(f));
    ck_assert_int_eq(bti_st_meta_count(g), bti_st_meta_count(f));
    for (i = 0; i < bti_st_count(f); i++) {
        const struct bti_st_tensor *a = bti_st_get(f, i), *b = bti_st_get(g, i);
        ck_assert_str_eq(a->name, b->name);
        ck_assert_uint_eq(a->nbytes, b->nbytes);
        ck_assert(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
    }
    for (i = 0; i < bti_st_meta_count(f); i++) {
        const char *k1, *v1, *k2, *v2;
        bti_st_meta_at(f, i, &k1, &v1);
        bti_st_meta_at(g, i, &k2, &v2);
        ck_assert_str_eq(k1, k2);
        ck_assert_str_eq(v1, v2);
    }
    /* ... and writing them back gives the raw-UTF-8 form. */
    rewrite(g, path);
    assert_same_bytes(path, "golden/st_mixed.safetensors");
    bti_st_close(g);
    bti_st_close(f);
}
END_TEST

START_TEST(legacy_layout)
{
    bti_st_file *f = NULL;
    const struct bti_st_tensor *t;
    float v[3];
    ck_assert_msg(bti_st_read("golden/st_legacy.safetensors", &f) == BT_OK, "%s",
                  bt_last_error());
    ck_assert_int_eq(bti_st_count(f), 3);
    t = bti_st_find(f, "b"); /* at offset 12: copied to aligned memory */
    ck_assert_int_eq(t->dtype, BTI_ST_F64);
    ck_assert_uint_eq((uintptr_t)t->data % 8, 0);
    ck_assert(((const double *)t->data)[0] == 0.25 && ((const double *)t->data)[1] == -8.0);
    ck_assert(bti_st_to_f32(t, v, "x") == BT_OK && v[0] == 0.25f && v[1] == -8.0f);
    t = bti_st_find(f, "c");
    ck_assert_uint_eq((uintptr_t)t->data % 8, 0);
    ck_assert_int_eq(*(const int64_t *)t->data, 41);
    t = bti_st_find(f, "a");
    ck_assert(bti_st_to_f32(t, v, "x") == BT_OK && v[0] == 1.5f && v[2] == 3.5f);
    ck_assert_int_eq(bti_st_meta_count(f), 0);
    ck_assert_ptr_null(bti_st_meta(f, "format"));
    bti_st_close(f);
}
END_TEST

/* ---- malformed files ---------------------------------------------------------- */

#define T1 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"

START_TEST(truncated_files)
{
    size_t size, cut;
    unsigned char *good;
    char path[128];
    bti_st_file *f = NULL;
    ck_assert(bti_st_read("golden/st_torch_model.safetensors", &f) == BT_OK);
    bti_st_close(f);
    good = slurp("golden/st_torch_model.safetensors", &size);
    snprintf(path, sizeof path, "%s/cut.safetensors", tmpdir);
    for (cut = 0; cut < size; cut += (cut < 16 ? 1 : 37)) {
        bt_status st;
        spit(path, good, cut);
        f = (bti_st_file *)1;
        st = bti_st_read(path, &f);
        ck_assert_msg(st == BT_E_FORMAT, "cut at %zu: status %d: %s", cut, st, bt_last_error());
        ck_assert_ptr_null(f);
        ck_assert_msg(contains(bt_last_error(), path), "%s", bt_last_error());
        ck_assert(bti_st_read_mem(good, cut, "m", &f) == BT_E_FORMAT);
    }
    /* The last byte missing, one byte too many. */
    spit(path, good, size - 1);
    ck_assert(bti_st_read(path, &f) == BT_E_FORMAT);
    ck_assert_msg(contains(bt_last_error(), "truncated"), "%s", bt_last_error());
    good = realloc(good, size + 1);
    good[size] = 0;
    spit(path, good, size + 1);
    ck_assert(bti_st_read(path, &f) == BT_E_FORMAT);
    ck_assert_msg(contains(bt_last_error(), "trailing"), "%s", bt_last_error());
    free(good);
}
END_TEST

START_TEST(header_length)
{
    size_t size;
    unsigned char *b = build(T1, 8, &size);
    bti_st_file *f = NULL;
    uint64_t n = size - 7; /* one more than there is */
    memcpy(b, &n, 8);
    ck_assert(bti_st_read_mem(b, size, "len.safetensors", &f) == BT_E_FORMAT);
    ck_assert_msg(contains(bt_last_error(), "exceeds"), "%s", bt_last_error());
    n = UINT64_MAX;
    memcpy(b, &n, 8);
    ck_assert(bti_st_read_mem(b, size, "len.safetensors", &f) == BT_E_FORMAT);
    n = 100000001;
    memcpy(b, &n, 8);
    ck_assert(bti_st_read_mem(b, size, "len.safetensors", &f) == BT_E_FORMAT);
    ck_assert_msg(contains(bt_last_error(), "limit"), "%s", bt_last_error());
    n = 0;
    memcpy(b, &n, 8);
    ck_assert(bti_st_read_mem(b, size, "len.safetensors", &f) == BT_E_FORMAT);
    free(b);
    expect_ok(T1, 8);
    expect_ok("{}", 0);
    expect_ok(T1 "   \n\t ", 8); /* trailing JSON white space */
}
END_TEST

START_TEST(bad_json)
{
    static const char *const bad[] = {
        "",
        " {}", /* must start with '{' */
        "[]",
        "{",
        "{}x",
        "{} {}",
        "{\"a\"}",
        "{\"a\":}",
        "{'a':{}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[+2],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[-],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":F32,\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":true}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":null}}",
        "{\"a\\x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\\u12\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\\udc00\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\\ud800\\u0041\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",     /* overlong */
        "{\"a\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", /* surrogate */
        "{\"a\xf4\x90\x80\x80\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\xe6\x97\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\nb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"__metadata__\":{\"k\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"__metadata__\":null,\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"__metadata__\":{\"k\":\"v\"},\"__metadata__\":{},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
        "\"data_offsets\":[0,8]}}",
        "{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
        "\"data_offsets\":[0,8]}}",
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_bad(bad[i], 8, BT_E_FORMAT, NULL, NULL);
    /* Messages name the tensor and the field. */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
               BT_E_FORMAT, "tensor 'w'", "integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"offsets\":[0,8]}}", 8, BT_E_FORMAT,
               "tensor 'w'", "unexpected field 'offsets'");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, BT_E_FORMAT, "tensor 'w'",
               "missing field 'data_offsets'");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, BT_E_FORMAT, "tensor 'w'", "twice");
    expect_bad("{\"__metadata__\":{\"k\":[\"v\"]}}", 0, BT_E_FORMAT, "__metadata__",
               "not a string");
    expect_bad("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, BT_E_FORMAT, "duplicate key 'k'",
               NULL);
    expect_bad("{\"w\":{\"shape\":[2],\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, BT_E_FORMAT, "tensor 'w'", "field 'shape' given twice");
    expect_bad("{\"w", 0, BT_E_FORMAT, "unterminated string", NULL);
    expect_bad("{\"w\\", 0, BT_E_FORMAT, NULL, NULL); /* the file ends inside an escape */
    /* And what is fine: escapes, white space, empty metadata, key order. */
    expect_ok("{ \"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u00C9\\ud83d\\uDE00\" : { \"data_offsets\" : [ 0 , 8 ] ,"
              " \"shape\" : [ 2 ] , \"dtype\" : \"F32\" } , \"__metadata__\" : { } }",
              8);
}
END_TEST

START_TEST(bad_tensors)
{
    expect_bad("{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BT_E_FORMAT,
               "tensor 'w'", "unknown dtype 'F33'");
    expect_bad("{\"w\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BT_E_FORMAT,
               "tensor 'w'", "unknown dtype");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, BT_E_FORMAT,
               "tensor 'w'", "negative dimension -2");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}",
               8, BT_E_FORMAT, "tensor 'w'", "more than 8");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}",
               8, BT_E_FORMAT, "tensor 'w'", "overflows");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2305843009213693952,4],\"data_offsets\":[0,8]}}",
               8, BT_E_FORMAT, "tensor 'w'", "overflows"); /* numel fits, bytes do not */
    /* size mismatch */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, BT_E_FORMAT,
               "tensor 'w'", "needs 12");
    expect_bad("{\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BT_E_FORMAT,
               "tensor 'w'", "needs 16");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, BT_E_FORMAT,
               "tensor 'w'", "negative offset");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, BT_E_FORMAT,
               "tensor 'w'", "end before");
    /* out of range */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, BT_E_FORMAT,
               "tensor 'w'", "past the data area");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775800,"
               "9223372036854775808]}}", 8, BT_E_FORMAT, NULL, NULL);
    /* overlap, hole, trailing, not starting at 0 */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, BT_E_FORMAT,
               "tensor 'b'", "overlap tensor 'a'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BT_E_FORMAT,
               "overlap", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, BT_E_FORMAT,
               "tensor 'b'", "hole of 4 bytes");
    expect_bad("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, BT_E_FORMAT,
               "tensor 'b'", "hole");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, BT_E_FORMAT,
               "trailing", NULL);
    expect_bad("{}", 1, BT_E_FORMAT, "trailing", NULL);
    /* duplicate names */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, BT_E_FORMAT,
               "duplicate tensor name 'a'", NULL);
    /* zero-sized tensors may share an offset; order in the header is free */
    expect_ok("{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
              "\"y\":{\"dtype\":\"I64\",\"shape\":[0,7],\"data_offsets\":[4,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 8);
}
END_TEST

START_TEST(conversion_must_be_exact)
{
    const double d[3] = {0.5, 0.1, 2.0};
    const double big[1] = {1e39};
    const int64_t i64[2] = {16777216, 16777217};
    const int64_t imax[1] = {INT64_MAX};
    const uint64_t u64[1] = {UINT64_MAX};
    const unsigned char b[2] = {1, 2};
    const int64_t s3[1] = {3}, s1[1] = {1}, s2[1] = {2};
    float out[3] = {-7, -7, -7};
    struct bti_st_tensor t = tensor("optim.bad", BTI_ST_F64, 1, s3, d);

    ck_assert(bti_st_to_f32(&t, out, "ckpt.safetensors") == BT_E_FORMAT);
    ck_assert_msg(contains(bt_last_error(), "ckpt.safetensors") &&
                  contains(bt_last_error(), "tensor 'optim.bad'") &&
                  contains(bt_last_error(), "element 1") && contains(bt_last_error(), "0.1"),
                  "%s", bt_last_error());
    ck_assert(out[0] == -7 && out[1] == -7 && out[2] == -7); /* unchanged */
    ck_assert(bti_st_to_f32(&t, NULL, "ckpt.safetensors") == BT_E_FORMAT);
    t.shape[0] = 1; /* only 0.5 */
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_OK && out[0] == 0.5f && out[1] == -7);
    t = tensor("big", BTI_ST_F64, 1, s1, big);
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_E_FORMAT);
    t = tensor("n", BTI_ST_I64, 1, s2, i64);
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_E_FORMAT);
    ck_assert_msg(contains(bt_last_error(), "16777217"), "%s", bt_last_error());
    t.shape[0] = 1;
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_OK && out[0] == 16777216.0f);
    t = tensor("m", BTI_ST_I64, 1, s1, imax);
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_E_FORMAT);
    t = tensor("u", BTI_ST_U64, 1, s1, u64);
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_E_FORMAT);
    t = tensor("b", BTI_ST_BOOL, 1, s2, b);
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_E_FORMAT);
    t = tensor("f8", BTI_ST_F8_E4M3, 1, s2, b);
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_E_UNSUPPORTED);
    ck_assert(bti_st_to_f32(NULL, out, "c") == BT_E_INVALID_ARG);
    t = tensor("nodata", BTI_ST_F32, 1, s2, NULL);
    ck_assert(bti_st_to_f32(&t, out, "c") == BT_E_INVALID_ARG);
}
END_TEST

/* The integer dtypes, F16 and BF16 convert exactly, infinities and NaN included; an integer
 * that float32 cannot hold is refused, naming the element; a malformed tensor record is an
 * argument error. */
START_TEST(integers_and_halves_convert_exactly)
{
    const int8_t i8[3] = {-128, 127, -1};
    const int16_t i16[2] = {-32768, 32767};
    const uint16_t u16[1] = {65535};
    const int32_t i32[2] = {-2147483647 - 1, 16777217};
    const uint32_t u32[2] = {4294967040u, 4294967295u};
    const uint16_t f16[7] = {0x3C00, 0xC000, 0x0001, 0x8000, 0x7C00, 0xFC00, 0x7E00};
    const uint16_t bf16[2] = {0x3F80, 0xC2F7};
    const int64_t s1[1] = {1}, s2[1] = {2}, s3[1] = {3}, s7[1] = {7}, neg[1] = {-1};
    float out[7];
    struct bti_st_tensor t = tensor("i8", BTI_ST_I8, 1, s3, i8);
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_OK);
    ck_assert(out[0] == -128.0f && out[1] == 127.0f && out[2] == -1.0f);
    t = tensor("i16", BTI_ST_I16, 1, s2, i16);
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_OK);
    ck_assert(out[0] == -32768.0f && out[1] == 32767.0f);
    t = tensor("u16", BTI_ST_U16, 1, s1, u16);
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_OK);
    ck_assert(out[0] == 65535.0f);
    t = tensor("i32", BTI_ST_I32, 1, s2, i32);
    out[0] = out[1] = -7;
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_E_FORMAT);
    ck_assert_msg(contains(bt_last_error(), "tensor 'i32' (I32, shape [2]): element 1 = 16777217"),
                  "%s", bt_last_error());
    ck_assert(out[0] == -7 && out[1] == -7); /* checked before anything is written */
    t.shape[0] = 1;
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_OK);
    ck_assert(out[0] == -2147483648.0f);
    t = tensor("u32", BTI_ST_U32, 1, s2, u32);
    ck_assert_int_eq(bti_st_to_f32(&t, out, NULL), BT_E_FORMAT);
    ck_assert_msg(contains(bt_last_error(), "'(unnamed)'") && contains(bt_last_error(), "4294967295"),
                  "%s", bt_last_error());
    t.shape[0] = 1;
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_OK);
    ck_assert(out[0] == 4294967040.0f);
    t = tensor("f16", BTI_ST_F16, 1, s7, f16);
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_OK);
    ck_assert(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1.0f, -24));
    ck_assert(out[3] == 0.0f && signbit(out[3]));
    ck_assert(isinf(out[4]) && out[4] > 0 && isinf(out[5]) && out[5] < 0 && isnan(out[6]));
    t = tensor("bf16", BTI_ST_BF16, 1, s2, bf16);
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_OK);
    ck_assert(out[0] == 1.0f && out[1] == -123.5f);
    /* records no reader makes */
    t = tensor("x", BTI_ST_DTYPE_COUNT, 1, s1, u16);
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "tensor 'x' has dtype"));
    t = tensor("x", BTI_ST_F32, 1, s1, u16);
    t.ndim = BTI_ST_MAX_DIMS + 1;
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "9 dimensions"));
    t = tensor("x", BTI_ST_F32, 1, neg, u16);
    ck_assert_int_eq(bti_st_to_f32(&t, out, "c"), BT_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(bt_last_error(), "tensor 'x' has shape [-1]"));
}
END_TEST

/* ---- atomic writes ------------------------------------------------------------ */

static void write_one(const char *path, const char *name, int64_t n, float fill)
{
    float *v = malloc((size_t)n * sizeof *v);
    int64_t i;
    struct bti_st_tensor t = tensor(name, BTI_ST_F32, 1, &n, v);
    for (i = 0; i < n; i++)
        v[i] = fill + (float)i;
    ck_assert_msg(bti_st_write(path, &t, 1, NULL, NULL, 0) == BT_OK, "%s", bt_last_error());
    free(v);
}

START_TEST(write_to_missing_directory)
{
    char path[160], only[256];
    float v = 1;
    const int64_t s1[1] = {1};
    struct bti_st_tensor t = tensor("x", BTI_ST_F32, 1, s1, &v);
    snprintf(path, sizeof path, "%s/no/such/dir/ck.safetensors", tmpdir);
    ck_assert(bti_st_write(path, &t, 1, NULL, NULL, 0) == BT_E_IO);
    ck_assert_msg(contains(bt_last_error(), path) &&
                  contains(bt_last_error(), "No such file or directory"), "%s", bt_last_error());
    ck_assert_int_eq(dir_entries(tmpdir, only, sizeof only), 0);
}
END_TEST

START_TEST(overwrite_replaces_fully)
{
    char path[160], only[256], cwd[4096];
    bti_st_file *f = NULL;
    struct stat sb;
    bt_status st;
    mode_t old = umask(022);
    snprintf(path, sizeof path, "%s/ck.safetensors", tmpdir);
    write_one(path, "big", 100000, 1.0f);
    write_one(path, "small", 3, 5.0f);
    ck_assert_int_eq(dir_entries(tmpdir, only, sizeof only), 1);
    ck_assert_str_eq(only, "ck.safetensors");
    ck_assert(bti_st_read(path, &f) == BT_OK);
    ck_assert_int_eq(bti_st_count(f), 1);
    ck_assert_str_eq(bti_st_get(f, 0)->name, "small");
    ck_assert(((const float *)bti_st_get(f, 0)->data)[2] == 7.0f);
    bti_st_close(f);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0644); /* 0666 minus the umask, not mkstemp's 0600 */
    umask(old);
    /* A relative path without a directory part works too. */
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(tmpdir), 0);
    write_one("rel.safetensors", "r", 2, 0.0f);
    st = bti_st_read("rel.safetensors", &f);
    ck_assert_int_eq(chdir(cwd), 0); /* later tests read golden/ relative to tests/ */
    ck_assert(st == BT_OK);
    bti_st_close(f);
    ck_assert_int_eq(dir_entries(tmpdir, NULL, 0), 2);
}
END_TEST

START_TEST(failed_write_keeps_previous_file)
{
    char path[160], only[256];
    size_t n0, n1;
    unsigned char *before, *after;
    float v[2] = {1, 2};
    const int64_t s2[1] = {2}, sneg[1] = {-1};
    struct bti_st_tensor t[2];
    const char *k[2] = {"a", "a"}, *val[2] = {"1", "2"}, *knull[1] = {NULL};
    int i;

    snprintf(path, sizeof path, "%s/ck.safetensors", tmpdir);
    write_one(path, "keep", 1000, 3.0f);
    before = slurp(path, &n0);

    for (i = 0; i < 9; i++) {
        bt_status st;
        t[0] = tensor("w", BTI_ST_F32, 1, s2, v);
        t[1] = tensor("b", BTI_ST_F32, 1, s2, v);
        switch (i) {
        case 0: t[1].name = "w"; break;                 /* duplicate */
        case 1: t[1].name = NULL; break;
        case 2: t[1].name = "__metadata__"; break;
        case 3: t[1].name = "bad\xff utf8"; break;
        case 4: t[1] = tensor("b", BTI_ST_F32, 1, sneg, v); break;
        case 5: t[1].data = NULL; break;
        case 6: t[1].dtype = 99; break;
        case 7: t[1].ndim = 9; break;
        default: break;
        }
        if (i == 8)
            st = bti_st_write(path, t, 2, k, val, 2); /* duplicate metadata key */
        else
            st = bti_st_write(path, t, 2, NULL, NULL, 0);
        ck_assert_msg(st == BT_E_INVALID_ARG, "case %d: %d %s", i, st, bt_last_error());
        ck_assert_msg(contains(bt_last_error(), path), "%s", bt_last_error());
        if (i == 0 || i == 4 || i == 5)
            ck_assert_msg(contains(bt_last_error(), i == 0 ? "'w'" : "'b'"), "%s",
                          bt_last_error());
    }
    ck_assert(bti_st_write(path, t, 2, knull, val, 1) == BT_E_INVALID_ARG);
    ck_assert(bti_st_write(NULL, t, 2, NULL, NULL, 0) == BT_E_INVALID_ARG);
    ck_assert(bti_st_write(path, NULL, 2, NULL, NULL, 0) == BT_E_INVALID_ARG);

    /* The rename fails: the destination is a directory. */
    {
        char dpath[200];
        snprintf(dpath, sizeof dpath, "%s/adir", tmpdir);
        ck_assert_int_eq(mkdir(dpath, 0755), 0);
        t[0] = tensor("w", BTI_ST_F32, 1, s2, v);
        ck_assert(bti_st_write(dpath, t, 1, NULL, NULL, 0) == BT_E_IO);
        ck_assert_msg(contains(bt_last_error(), "rename"), "%s", bt_last_error());
        ck_assert_int_eq(dir_entries(tmpdir, NULL, 0), 2);
        ck_assert_int_eq(rmdir(dpath), 0);
    }

    /* A write that fails half way (file size limit): old file intact, no temp left. */
    {
        struct rlimit old, lim;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = 64;
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
        write_one(path, "x", 0, 0.0f); /* small enough: succeeds */
        {
            bti_st_file *small = NULL;
            ck_assert(bti_st_read(path, &small) == BT_OK && bti_st_count(small) == 1);
            bti_st_close(small);
        }
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
        spit(path, before, n0);
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
        {
            float big[100] = {0};
            const int64_t s100[1] = {100};
            struct bti_st_tensor bt = tensor("big", BTI_ST_F32, 1, s100, big);
            bt_status st = bti_st_write(path, &bt, 1, NULL, NULL, 0);
            ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
            ck_assert_msg(st == BT_E_IO, "%d %s", st, bt_last_error());
            ck_assert_msg(contains(bt_last_error(), "File too large"), "%s", bt_last_error());
        }
        signal(SIGXFSZ, prev);
    }

    after = slurp(path, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert(memcmp(before, after, n0) == 0);
    ck_assert_int_eq(dir_entries(tmpdir, only, sizeof only), 1);
    ck_assert_str_eq(only, "ck.safetensors");
    free(before);
    free(after);
}
END_TEST

START_TEST(read_errors)
{
    bti_st_file *f = (bti_st_file *)1;
    char path[160];
    ck_assert(bti_st_read("golden/does-not-exist.safetensors", &f) == BT_E_IO);
    ck_assert_ptr_null(f);
    ck_assert_msg(contains(bt_last_error(), "does-not-exist") &&
                  contains(bt_last_error(), "No such file"), "%s", bt_last_error());
    ck_assert(bti_st_read("golden", &f) == BT_E_IO);
    ck_assert_msg(contains(bt_last_error(), "not a regular file"), "%s", bt_last_error());
    ck_assert(bti_st_read(NULL, &f) == BT_E_INVALID_ARG);
    ck_assert(bti_st_read("golden/st_legacy.safetensors", NULL) == BT_E_INVALID_ARG);
    ck_assert(bti_st_read_mem(NULL, 10, "m", &f) == BT_E_INVALID_ARG);
    snprintf(path, sizeof path, "%s/unreadable.safetensors", tmpdir);
    spit(path, "x", 1);
    if (geteuid() != 0) { /* root reads anything */
        ck_assert_int_eq(chmod(path, 0), 0);
        ck_assert(bti_st_read(path, &f) == BT_E_IO);
        ck_assert_msg(contains(bt_last_error(), "Permission denied"), "%s", bt_last_error());
    }
    ck_assert_int_eq(bti_st_count(NULL), 0);
    ck_assert_ptr_null(bti_st_get(NULL, 0));
    ck_assert_ptr_null(bti_st_find(NULL, "a"));
    ck_assert_ptr_null(bti_st_meta(NULL, "a"));
    bti_st_close(NULL);
    ck_assert_str_eq(bti_st_dtype_name(BTI_ST_I64), "I64");
    ck_assert_str_eq(bti_st_dtype_name(-1), "?");
    ck_assert_uint_eq(bti_st_dtype_size(BTI_ST_F64), 8);
    ck_assert_uint_eq(bti_st_dtype_size(BTI_ST_DTYPE_COUNT), 0);
}
END_TEST

/* ---- fuzz ----------------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

START_TEST(fuzz_byte_flips)
{
    size_t size;
    unsigned char *good = slurp("golden/st_mixed.safetensors", &size), *b = malloc(size + 64);
    uint64_t seed = 0x9E3779B97F4A7C15ull, hlen;
    int iter, ok = 0, bad = 0;
    memcpy(&hlen, good, 8);
    for (iter = 0; iter < 4000; iter++) {
        size_t len = size, k, nflip = 1 + xorshift(&seed) % 4;
        bti_st_file *f = NULL;
        bt_status st;
        memcpy(b, good, size);
        for (k = 0; k < nflip; k++) {
            uint64_t r = xorshift(&seed);
            /* mostly the header (where the parser lives), sometimes anywhere */
            size_t pos = (r & 3) ? (size_t)((r >> 8) % (8 + hlen)) : (size_t)((r >> 8) % size);
            switch ((r >> 4) & 3) {
            case 0: b[pos] ^= (unsigned char)(1u << ((r >> 40) & 7)); break;
            case 1: b[pos] = (unsigned char)(r >> 48); break;
            case 2: b[pos] = "{}[]\":,\\u0-9 e"[(r >> 48) % 15]; break;
            default: len = (r & 8) ? pos : size + (r >> 56) % 64; break;
            }
        }
        if (len > size)
            memset(b + size, (int)(seed & 0xFF), len - size);
        st = bti_st_read_mem(b, len, "fuzz", &f);
        ck_assert_msg(st == BT_OK || st == BT_E_FORMAT, "iteration %d: status %d", iter, st);
        if (st == BT_OK) {
            int i;
            ok++;
            for (i = 0; i < bti_st_count(f); i++) {
                const struct bti_st_tensor *t = bti_st_get(f, i);
                float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *out);
                ck_assert_ptr_eq(bti_st_find(f, t->name), t);
                (void)bti_st_to_f32(t, out, "fuzz");
                free(out);
            }
            for (i = 0; i < bti_st_meta_count(f); i++) {
                const char *key, *v;
                bti_st_meta_at(f, i, &key, &v);
                ck_assert(strlen(key) + strlen(v) < size);
            }
            bti_st_close(f);
        } else {
            ck_assert_ptr_null(f);
            bad++;
        }
    }
    /* both outcomes happen, so the loop exercises the parser and the data paths */
    ck_assert_int_gt(ok, 100);
    ck_assert_int_gt(bad, 1000);
    free(b);
    free(good);
}
END_TEST

Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    /* checked: a fresh directory per test, removed even when the test fails */
    tcase_add_checked_fixture(tc, make_tmpdir, cleanup_tmpdir);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, reference_vectors);
    tcase_add_test(tc, torch_state_dict);
    tcase_add_test(tc, mixed_dtypes_and_metadata);
    tcase_add_test(tc, legacy_layout);
    tcase_add_test(tc, truncated_files);
    tcase_add_test(tc, header_length);
    tcase_add_test(tc, bad_json);
    tcase_add_test(tc, bad_tensors);
    tcase_add_test(tc, conversion_must_be_exact);
    tcase_add_test(tc, integers_and_halves_convert_exactly);
    tcase_add_test(tc, write_to_missing_directory);
    tcase_add_test(tc, overwrite_replaces_fully);
    tcase_add_test(tc, failed_write_keeps_previous_file);
    tcase_add_test(tc, read_errors);
    tcase_add_test(tc, fuzz_byte_flips);
    suite_add_tcase(s, tc);
    return s;
}
