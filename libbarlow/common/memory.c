/* memory.c - every allocation of the library (aligned, overflow-checked, with a
 * fault hook for the tests), and growable buffers. */
#include "common/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define BTI_ALIGN 64

/* The fault hook's state (internal.h): relaxed atomics, since allocations
 * happen on the host's threads and in OpenMP teams alike. */
static atomic_long fault_at, fault_count, fault_failed, fault_live;
static atomic_int fault_persistent;
static _Atomic(const char *) fault_site;

void bti_fault_arm(long n, int persistent)
{
    atomic_store(&fault_at, 0);
    atomic_store(&fault_count, 0);
    atomic_store(&fault_failed, 0);
    atomic_store(&fault_site, (const char *)NULL);
    atomic_store(&fault_persistent, persistent);
    atomic_store(&fault_at, n > 0 ? n : 0);
}

long bti_fault_failed(const char **first_site)
{
    if (first_site)
        *first_site = atomic_load(&fault_site);
    return atomic_load(&fault_failed);
}

long bti_fault_live(void) { return atomic_load(&fault_live); }

/* Whether the hook refuses this allocation. */
static int refused(const char *site)
{
    long at = atomic_load_explicit(&fault_at, memory_order_relaxed), k;
    if (at == 0)
        return 0;
    k = atomic_fetch_add_explicit(&fault_count, 1, memory_order_relaxed) + 1;
    if (k < at || (k > at && !atomic_load_explicit(&fault_persistent, memory_order_relaxed)))
        return 0;
    if (atomic_fetch_add(&fault_failed, 1) == 0)
        atomic_store(&fault_site, site);
    return 1;
}

static void *counted(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&fault_live, 1, memory_order_relaxed);
    return p;
}

int bti_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

void *bti_alloc_at(size_t bytes, const char *site)
{
    void *p = NULL;
    if (bytes > SIZE_MAX - BTI_ALIGN || refused(site))
        return NULL;
    /* Round up so the vector loops may read whole cache lines; 0 gives one line. */
    bytes = bytes == 0 ? BTI_ALIGN : (bytes + BTI_ALIGN - 1) / BTI_ALIGN * BTI_ALIGN;
    if (posix_memalign(&p, BTI_ALIGN, bytes) != 0)
        return NULL;
    return counted(p);
}

void *bti_calloc_at(size_t count, size_t size, const char *site)
{
    size_t bytes;
    void *p;
    if (bti_mul_size(count, size, &bytes) != 0)
        return NULL;
    p = bti_alloc_at(bytes, site);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void *bti_malloc_at(size_t bytes, const char *site)
{
    if (refused(site))
        return NULL;
    return counted(malloc(bytes ? bytes : 1));
}

void *bti_realloc_at(void *p, size_t bytes, const char *site)
{
    void *q;
    if (refused(site))
        return NULL;
    q = realloc(p, bytes ? bytes : 1);
    return p ? q : counted(q);
}

void bti_free(void *p)
{
    if (p)
        atomic_fetch_sub_explicit(&fault_live, 1, memory_order_relaxed);
    free(p);
}

bt_status bti_buffer_reserve_at(struct bti_buffer *b, size_t count, size_t size, const char *fn,
                                const char *site)
{
    size_t bytes;
    void *q;
    if (bti_mul_size(count ? count : 1, size, &bytes) != 0)
        return bti_fail(BT_E_NOMEM, "%s: buffer of %zu elements is too large", fn, count);
    if (bytes <= b->bytes && b->p)
        return BT_OK;
    q = bti_alloc_at(bytes, site);
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
