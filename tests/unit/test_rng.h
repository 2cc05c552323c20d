/* test_rng.h: the unit tests' random numbers: xorshift64, fast and the same on every machine,
 * so that a failing random case is the same case when run again. */
#ifndef LT_TEST_RNG_H
#define LT_TEST_RNG_H

#include <stdint.h>

#define TEST_RNG_SEED 0x9e3779b97f4a7c15ull

/* The next number of the sequence in *s (never 0 if *s was not). */
static inline uint64_t test_rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#endif
