/* rng.h - counter-based random numbers (see rng.c). */
#ifndef BARLOW_RNG_H
#define BARLOW_RNG_H

#include "common/internal.h"

/* A stream key from a seed and up to three stream indices (e.g. call, image, view). */
BTI_HIDDEN uint64_t bti_rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
/* 64 random bits: draw number `counter` of stream `key`. */
BTI_HIDDEN uint64_t bti_rng_u64(uint64_t key, uint64_t counter);
/* Uniform in [0, 1) with 53 random bits. */
BTI_HIDDEN double bti_rng_uniform(uint64_t key, uint64_t counter);
/* Uniform integer in [0, n). */
BTI_HIDDEN uint64_t bti_rng_below(uint64_t key, uint64_t counter, uint64_t n);
/* Standard normal (uses counters 2*counter and 2*counter+1). */
BTI_HIDDEN double bti_rng_normal(uint64_t key, uint64_t counter);

#endif
