/* cpu.h - the one owner of CPU levels: which instruction sets the kernels may
 * use. The CPU is probed once; every handle resolves its level when it is
 * created (option cpu.level, else the environment variable BT_CPU, else the
 * best the CPU runs) and its kernels dispatch on that level alone. */
#ifndef BARLOW_CPU_H
#define BARLOW_CPU_H

#include "common/internal.h"

/* Ordered: a CPU that runs a level runs every level below it. */
enum bti_cpu_level {
    BTI_CPU_GENERIC = 0, /* portable C over CBLAS: every platform */
    BTI_CPU_AVX2 = 1,    /* x86-64 AVX2 + FMA */
    BTI_CPU_AVX512 = 2,  /* x86-64 AVX-512F */
    BTI_CPU_LEVELS
};

/* The best level this CPU runs (probed once, thread-safe). */
BTI_HIDDEN int bti_cpu_best(void);
/* "generic", "avx2", "avx512"; "?" for anything else. */
BTI_HIDDEN const char *bti_cpu_name(int level);
/* The level a handle created from cfg (NULL: no options) uses: cpu.level
 * unless "auto", else BT_CPU when set, else bti_cpu_best(). BT_E_INVALID_ARG
 * for an unknown BT_CPU value, BT_E_UNSUPPORTED for a level the CPU cannot
 * run; fn names the caller in the message. */
BTI_HIDDEN bt_status bti_cpu_resolve(const bt_config *cfg, int *level, const char *fn);
/* The level handles take without options: BT_CPU when valid and runnable,
 * else the best; for bt_build_info(). */
BTI_HIDDEN int bti_cpu_default(void);

/* BTI_PER_LEVEL(name, (params), (args)) turns the loop body
 * `static BTI_INLINE void name##_body params` into one function per level,
 * each compiled for that level's instructions (the body and its inline
 * helpers are inlined into it and vectorised there), and a dispatcher
 * `static void name(int level, params)`. One source, every level; the
 * results of a level depend on nothing but the level. */
#define BTI_UNPAREN(...) __VA_ARGS__
#if defined(__GNUC__) && defined(__x86_64__)
#define BTI_PER_LEVEL(name, params, args)                                                         \
    static void name##_generic params { name##_body args; }                                       \
    __attribute__((target("avx2,fma"))) static void name##_avx2 params { name##_body args; }      \
    __attribute__((target("avx512f"))) static void name##_avx512 params { name##_body args; }     \
    static void name(int level, BTI_UNPAREN params)                                               \
    {                                                                                             \
        if (level == BTI_CPU_AVX512)                                                              \
            name##_avx512 args;                                                                   \
        else if (level == BTI_CPU_AVX2)                                                           \
            name##_avx2 args;                                                                     \
        else                                                                                      \
            name##_generic args;                                                                  \
    }
#else
#define BTI_PER_LEVEL(name, params, args)                                                         \
    static void name(int level, BTI_UNPAREN params)                                               \
    {                                                                                             \
        (void)level;                                                                              \
        name##_body args;                                                                         \
    }
#endif

#endif /* BARLOW_CPU_H */
