/* memory.c - aligned allocation with overflow checks. */
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
