/*
 * random.c - owns the process's random numbers. Each thread keeps its own generator
 * (splitmix64, no lock), seeded on first use from getrandom(2), so two replicas started in
 * the same second, or two workers of one replica, never share a sequence. Good for jitter and
 * unique ids; not for secrets (use getrandom itself for those).
 */
#include "random.h"
#include "ffi.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static __thread uint64_t state;
static __thread int seeded;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A forked child would replay its parent's sequence: its one thread seeds afresh instead. */
static void reseed_in_child(void)
{
    seeded = 0;
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, reseed_in_child);
}

/* From the kernel's pool; should it not be ready (very early boot), GRND_NONBLOCK keeps the
 * event loop from blocking and the clock, the pid and the thread stand in. */
static uint64_t seed(void)
{
    uint64_t s = 0;
    ssize_t n;
    do
        n = getrandom(&s, sizeof(s), GRND_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(s)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32) ^
             (uint64_t)pthread_self();
    }
    return s;
}

uint64_t os_random_u64(void)
{
    if (!seeded) {
        pthread_once(&atfork_once, register_atfork);
        state = seed();
        seeded = 1;
    }
    /* splitmix64 (Steele, Lea, Flood 2014): every seed gives a full-period, well-mixed sequence. */
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t os_random_below(uint64_t n)
{
    return n == 0 ? 0 : os_random_u64() % n; /* the bias (n / 2^64) does not matter for jitter */
}

void os_random_seed_libc(void)
{
    srand((unsigned)os_random_u64());
}
