/*
 * check.h - the assertion the C unit tests share: CHECK counts passes and failures and
 * names the failing expression; check_summary() prints "N passed, N failed" (the line
 * ctest's output ends with) and gives the exit status.
 */
#ifndef OS_TEST_CHECK_H
#define OS_TEST_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (expr) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);                       \
        }                                                                                          \
    } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed != 0;
}

#endif
