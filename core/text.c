/*
 * text.c - owns os_text_put, the one way /metrics renderers append text (see text.h).
 */
#include "text.h"

#include <stdarg.h>
#include <stdio.h>

void os_text_put(os_text_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->len < t->cap ? t->buf + t->len : NULL, t->len < t->cap ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
}
