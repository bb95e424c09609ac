/*
 * random.h - random numbers seeded per thread from getrandom(2) (os_random_u64 itself is
 * declared in ffi.h, so Lua can seed its own generator from it).
 */
#ifndef OS_RANDOM_H
#define OS_RANDOM_H

#include <stdint.h>

/** A uniformly distributed integer in [0, n) (0 when n is 0), from this thread's generator. */
uint64_t os_random_below(uint64_t n);
/** Seeds libc's rand() from getrandom, for code that still calls rand(). */
void os_random_seed_libc(void);

#endif
