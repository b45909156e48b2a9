/* memory.c - aligned allocation with overflow checks, and growable buffers. */
#include "common/internal.h"

#include <stdlib.h>
#include <string.h>

#define BTI_ALIGN 64

int bti_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

void *bti_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0 || bytes > SIZE_MAX - BTI_ALIGN)
        return NULL;
    /* Round up so the vector loops may read whole cache lines. */
    bytes = (bytes + BTI_ALIGN - 1) / BTI_ALIGN * BTI_ALIGN;
    if (posix_memalign(&p, BTI_ALIGN, bytes) != 0)
        return NULL;
    return p;
}

void *bti_calloc(size_t count, size_t size)
{
    size_t bytes;
    void *p;
    if (bti_mul_size(count, size, &bytes) != 0)
        return NULL;
    p = bti_alloc(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void bti_free(void *p) { free(p); }

bt_status bti_buffer_reserve(struct bti_buffer *b, size_t count, size_t size, const char *fn)
{
    size_t bytes;
    void *q;
    if (bti_mul_size(count ? count : 1, size, &bytes) != 0)
        return bti_fail(BT_E_NOMEM, "%s: buffer of %zu elements is too large", fn, count);
    if (bytes <= b->bytes && b->p)
        return BT_OK;
    q = bti_alloc(bytes);
    if (!q)
        return bti_fail(BT_E_NOMEM, "%s: out of memory for a %zu-byte buffer", fn, bytes);
    if (b->p)
        memcpy(q, b->p, b->bytes);
    bti_free(b->p);
    b->p = q;
    b->bytes = bytes;
    return BT_OK;
}

void bti_buffer_release(struct bti_buffer *b)
{
    if (!b)
        return;
    bti_free(b->p);
    b->p = NULL;
    b->bytes = 0;
}
