/* rng.c - a counter-based random generator.
 *
 * Every draw is a pure function of (key, counter): no hidden state, so work can
 * be split over threads in any way and give the same numbers, and a stream is
 * resumed from a checkpoint by storing two integers. The mixer is SplitMix64's
 * finaliser applied twice with distinct constants, which passes BigCrush as a
 * counter-based generator for these uses (initialisation and augmentation). */
#include "common/rng.h"

#include <math.h>

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t bti_rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t k = mix(seed + 0x9e3779b97f4a7c15ULL);
    k = mix(k ^ (a + 0x632be59bd9b4e019ULL));
    k = mix(k ^ (b + 0x8cb92ba72f3d8dd7ULL));
    return mix(k ^ (c + 0xd1b54a32d192ed03ULL));
}

uint64_t bti_rng_u64(uint64_t key, uint64_t counter)
{
    return mix(key ^ mix(counter * 0x9e3779b97f4a7c15ULL + 0x2545f4914f6cdd1dULL));
}

double bti_rng_uniform(uint64_t key, uint64_t counter)
{
    return (double)(bti_rng_u64(key, counter) >> 11) * 0x1.0p-53;
}

uint64_t bti_rng_below(uint64_t key, uint64_t counter, uint64_t n)
{
    /* A 53-bit uniform scaled down: the bias is below n * 2^-53, negligible for
     * the small ranges used here (crop offsets, permutations). */
    return n ? (uint64_t)(bti_rng_uniform(key, counter) * (double)n) : 0;
}

double bti_rng_normal(uint64_t key, uint64_t counter)
{
    /* Box-Muller on two draws at counters 2c and 2c+1. */
    double u1 = ((double)(bti_rng_u64(key, 2 * counter) >> 11) + 0.5) * 0x1.0p-53;
    double u2 = (double)(bti_rng_u64(key, 2 * counter + 1) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
