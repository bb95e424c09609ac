/*
 * text.h - appending formatted text to a caller's buffer while counting what the whole text
 * needs, so a renderer that ran short can be called again with a buffer of the right size.
 * Used by every /metrics renderer (metrics.c, metric_registry.c, jobs.c).
 */
#ifndef OS_TEXT_H
#define OS_TEXT_H

#include <stddef.h>

typedef struct os_text {
    char *buf;  /* may be NULL with cap 0: only count */
    size_t cap; /* bytes buf holds */
    size_t len; /* bytes the text needs so far (may exceed cap) */
} os_text_t;

/** Appends printf-style text; what does not fit is counted in len but not written. */
void os_text_put(os_text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
