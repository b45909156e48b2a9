/* cpu.c - CPU probe and level resolution (see cpu.h). */
#include "common/cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int best = BTI_CPU_GENERIC;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe(void)
{
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = BTI_CPU_AVX2;
    if (best == BTI_CPU_AVX2 && __builtin_cpu_supports("avx512f"))
        best = BTI_CPU_AVX512;
#endif
}

int bti_cpu_best(void)
{
    pthread_once(&probe_once, probe);
    return best;
}

static const char *const names[BTI_CPU_LEVELS] = {"generic", "avx2", "avx512"};

const char *bti_cpu_name(int level)
{
    return level >= 0 && level < BTI_CPU_LEVELS ? names[level] : "?";
}

static int parse(const char *s)
{
    int i;
    for (i = 0; i < BTI_CPU_LEVELS; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return strcmp(s, "auto") == 0 ? -1 : -2;
}

static bt_status runnable(int level, const char *what, const char *fn)
{
    if (level > bti_cpu_best())
        return bti_fail(BT_E_UNSUPPORTED, "%s: %s asks for cpu level %s; this CPU runs at most %s",
                        fn, what, bti_cpu_name(level), bti_cpu_name(bti_cpu_best()));
    return BT_OK;
}

bt_status bti_cpu_resolve(const bt_config *cfg, int *level, const char *fn)
{
    const char *text = "auto", *env = getenv("BT_CPU");
    int want;
    bt_status st;
    if (cfg && (st = bti_config_text(cfg, "cpu.level", &text)) != BT_OK)
        return st;
    want = parse(text);
    if (want >= 0) {
        if ((st = runnable(want, "option cpu.level", fn)) != BT_OK)
            return st;
        *level = want;
        return BT_OK;
    }
    if (env && *env) {
        want = parse(env);
        if (want == -2)
            return bti_fail(BT_E_INVALID_ARG,
                            "%s: environment variable BT_CPU is '%.32s'; it must be "
                            "generic, avx2, avx512 or auto",
                            fn, env);
        if (want >= 0) {
            if ((st = runnable(want, "environment variable BT_CPU", fn)) != BT_OK)
                return st;
            *level = want;
            return BT_OK;
        }
    }
    *level = bti_cpu_best();
    return BT_OK;
}

int bti_cpu_default(void)
{
    const char *env = getenv("BT_CPU");
    const int want = env ? parse(env) : -1;
    return want >= 0 && want <= bti_cpu_best() ? want : bti_cpu_best();
}
