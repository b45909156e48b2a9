/* fuzz_safetensors.c - the private safetensors reader on hostile bytes
 * (libbarlow/io/safetensors.h): from memory (bti_st_read_mem), and from a file
 * both whole (bti_st_read) and streamed (bti_st_open + bti_st_load_f32); every
 * tensor of a file that parses is converted (check-only and into a buffer) and
 * looked up by name, and every metadata pair read. What parses must obey the
 * header's promises: tensors tile the data area, names are found again, and
 * the memory and file readers agree. */
#include "io/safetensors.h"

#include "fuzz_util.h"

#include <barlow.h>

static const char *st_path;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_dir_make("st");
    st_path = fuzz_path("in.safetensors");
    return 0;
}

/* Every tensor of f, converted; returns a checksum of the converted values and of
 * the metadata so that two readers of the same bytes can be compared. */
static uint64_t walk(const bti_st_file *f, int streamed)
{
    uint64_t h = FUZZ_FNV_INIT, end = 0;
    int i, n = bti_st_count(f);
    for (i = 0; i < n; i++) {
        const struct bti_st_tensor *t = bti_st_get(f, i);
        bt_status st, st2;
        float *buf;
        FUZZ_CHECK(t && t->name, "tensor %d of %d is NULL", i, n);
        FUZZ_CHECK(bti_st_find(f, t->name) == t, "'%s' is not found by name", t->name);
        FUZZ_CHECK(t->nbytes == (uint64_t)t->numel * bti_st_dtype_size(t->dtype),
                   "'%s': %llu bytes for %lld elements", t->name, (unsigned long long)t->nbytes,
                   (long long)t->numel);
        end += t->nbytes;
        h = fuzz_fnv(h, t->name, strlen(t->name) + 1);
        if (t->numel > (int64_t)1 << 22)
            continue; /* announced big and valid: reading it is not the parser's business */
        st = streamed ? bti_st_load_f32(f, t, NULL, NULL) : bti_st_to_f32(t, NULL, bti_st_path(f));
        buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *buf);
        FUZZ_CHECK(buf, "malloc");
        if (streamed) { /* through the caller's conversion buffer, as bt_checkpoint_load does */
            void *scratch = malloc(bti_st_load_scratch(t) + 1);
            FUZZ_CHECK(scratch, "malloc");
            st2 = bti_st_load_f32(f, t, buf, scratch);
            free(scratch);
        } else {
            st2 = bti_st_to_f32(t, buf, bti_st_path(f));
        }
        FUZZ_CHECK(st == st2, "'%s': check-only %d, converting %d", t->name, st, st2);
        if (st2 == BT_OK)
            h = fuzz_fnv(h, buf, (size_t)t->numel * sizeof *buf);
        else
            FUZZ_CHECK(bt_last_error()[0], "'%s': status %d without a message", t->name, st2);
        free(buf);
    }
    for (i = 0; i < bti_st_meta_count(f); i++) {
        const char *k = NULL, *v = NULL;
        bti_st_meta_at(f, i, &k, &v);
        FUZZ_CHECK(k && v, "metadata pair %d is NULL", i);
        FUZZ_CHECK(bti_st_meta(f, k) == v, "metadata '%s' is not found by key", k);
        h = fuzz_fnv(h, k, strlen(k) + 1);
        h = fuzz_fnv(h, v, strlen(v) + 1);
    }
    (void)bti_st_find(f, "");
    (void)bti_st_find(f, "zzzz");
    (void)bti_st_meta(f, "libbarlow.model");
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bti_st_file *mem = NULL, *whole = NULL, *streamed = NULL;
    bt_status sm, sw, ss;
    uint64_t hm = 0, hw = 0, hs = 0;

    sm = bti_st_read_mem(data, size, "fuzz", &mem);
    FUZZ_CHECK((sm == BT_OK) == (mem != NULL), "status %d with handle %p", sm, (void *)mem);
    if (sm != BT_OK)
        FUZZ_CHECK(bt_last_error()[0], "status %d without a message", sm);
    else
        hm = walk(mem, 0);
    bti_st_close(mem);

    fuzz_write(st_path, data, size);
    sw = bti_st_read(st_path, &whole);
    if (sw == BT_OK)
        hw = walk(whole, 0);
    bti_st_close(whole);
    ss = bti_st_open(st_path, &streamed);
    if (ss == BT_OK)
        hs = walk(streamed, 1);
    bti_st_close(streamed);

    /* the three readers validate the same bytes the same way */
    FUZZ_CHECK(sm == sw && sw == ss, "memory %d, file %d, streamed %d", sm, sw, ss);
    FUZZ_CHECK(hm == hw && hw == hs, "the memory, whole and streamed reads differ");
    return 0;
}
