/* test_random.c - os_random_u64 differs between threads and between processes (a fork too),
 * and os_random_below stays in range. */
#include "ffi.h"
#include "random.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static void *first_value(void *out)
{
    *(uint64_t *)out = os_random_u64();
    return NULL;
}

int main(void)
{
    uint64_t main_first = os_random_u64(), a = 0, b = 0;
    CHECK(os_random_u64() != main_first);

    pthread_t t1, t2;
    pthread_create(&t1, NULL, first_value, &a);
    pthread_create(&t2, NULL, first_value, &b);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(a != b && a != main_first && b != main_first);

    /* A child of fork draws its own numbers, not the parent's next ones. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t v = os_random_u64();
        _exit(write(fds[1], &v, sizeof(v)) == sizeof(v) ? 0 : 1);
    }
    uint64_t child = 0, parent = os_random_u64();
    CHECK(read(fds[0], &child, sizeof(child)) == sizeof(child));
    int status;
    waitpid(pid, &status, 0);
    CHECK(child != parent);

    int in_range = 1, seen_high = 0;
    for (int i = 0; i < 10000; i++) {
        uint64_t v = os_random_below(10);
        in_range &= v < 10;
        seen_high |= v == 9;
    }
    CHECK(in_range && seen_high);
    CHECK(os_random_below(0) == 0);
    return check_summary();
}
