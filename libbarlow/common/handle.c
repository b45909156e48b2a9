/* handle.c - the registry of live handles.
 *
 * A handle is checked against this set before it is dereferenced, so a
 * freed, foreign or wrong-kind pointer yields BT_E_MISUSE instead of a crash
 * (and stays clean under AddressSanitizer). Open addressing with tombstones;
 * one mutex, held only for the lookup. */
#include "common/internal.h"

#include <pthread.h>
#include <stdlib.h>

#define TOMBSTONE ((uintptr_t)1)

struct slot {
    uintptr_t key;
    int kind;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;
static size_t cap;  /* power of two */
static size_t used; /* live + tombstones */

static size_t hash(uintptr_t k)
{
    k ^= k >> 33;
    k *= (uintptr_t)0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static struct slot *find(uintptr_t key)
{
    size_t i;
    if (!slots)
        return NULL;
    for (i = hash(key) & (cap - 1);; i = (i + 1) & (cap - 1)) {
        if (slots[i].key == key)
            return &slots[i];
        if (slots[i].key == 0)
            return NULL;
    }
}

static int insert_nolock(uintptr_t key, int kind)
{
    size_t i;
    for (i = hash(key) & (cap - 1);; i = (i + 1) & (cap - 1)) {
        if (slots[i].key == 0 || slots[i].key == TOMBSTONE) {
            if (slots[i].key == 0)
                used++;
            slots[i].key = key;
            slots[i].kind = kind;
            return 0;
        }
    }
}

static int grow(void)
{
    size_t old_cap = cap, i, live = 0;
    struct slot *old = slots, *fresh;
    for (i = 0; i < old_cap; i++)
        live += old[i].key > TOMBSTONE;
    cap = old_cap ? old_cap : 64;
    while (cap < 4 * (live + 1))
        cap *= 2;
    fresh = bti_calloc(cap, sizeof *fresh);
    if (!fresh) {
        cap = old_cap;
        return -1;
    }
    slots = fresh;
    used = 0;
    for (i = 0; i < old_cap; i++)
        if (old[i].key > TOMBSTONE)
            insert_nolock(old[i].key, old[i].kind);
    bti_free(old);
    return 0;
}

bt_status bti_handle_add(const void *p, int kind)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if ((used + 1) * 2 > cap)
        rc = grow();
    if (rc == 0)
        insert_nolock((uintptr_t)p, kind);
    pthread_mutex_unlock(&lock);
    return rc == 0 ? BT_OK : bti_fail(BT_E_NOMEM, "out of memory registering a handle");
}

void bti_handle_remove(const void *p)
{
    struct slot *s;
    pthread_mutex_lock(&lock);
    s = find((uintptr_t)p);
    if (s)
        s->key = TOMBSTONE;
    pthread_mutex_unlock(&lock);
}

int bti_handle_is(const void *p, int kind)
{
    struct slot *s;
    int ok;
    if (!p)
        return 0;
    pthread_mutex_lock(&lock);
    s = find((uintptr_t)p);
    ok = s && s->kind == kind;
    pthread_mutex_unlock(&lock);
    return ok;
}

static const char *kind_name(int kind)
{
    switch (kind) {
    case BTI_KIND_TENSOR: return "bt_tensor";
    case BTI_KIND_CONFIG: return "bt_config";
    case BTI_KIND_LAYER: return "bt_layer";
    case BTI_KIND_MODEL: return "bt_model";
    case BTI_KIND_LOSS: return "bt_loss";
    case BTI_KIND_AUGMENT: return "bt_augment";
    case BTI_KIND_COMM: return "bt_comm";
    case BTI_KIND_OPTIM: return "bt_optim";
    case BTI_KIND_XENT: return "bt_xent";
    default: return "handle";
    }
}

bt_status bti_check(const void *p, int kind, const char *fn, const char *arg)
{
    if (!p)
        return bti_fail(BT_E_MISUSE, "%s: %s is NULL", fn, arg);
    if (!bti_handle_is(p, kind))
        return bti_fail(BT_E_MISUSE, "%s: %s is not a live %s (freed, foreign or another kind)",
                        fn, arg, kind_name(kind));
    return BT_OK;
}
