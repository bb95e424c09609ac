/*
 * json_scan.h - a strict, allocation-free JSON scanner (core/json_scan.c), C-only.
 */
#ifndef OS_JSON_SCAN_H
#define OS_JSON_SCAN_H

#include <stddef.h>

typedef struct os_json_cursor {
    const char *p, *end;
} os_json_cursor_t;

/** A top-level member: name decoded (a name longer than 63 bytes comes as "", matching
 *  nothing), value as its raw extent [start, end). A non-zero return stops the walk. */
typedef int (*os_json_member_fn)(void *ctx, const char *name, size_t name_len, const char *start,
                                 const char *end);

/** Advances past JSON whitespace. */
void os_json_skip_ws(os_json_cursor_t *c);
/** Scans the string at c->p (its opening quote): 0 or -1. With out, decodes it there (cap bytes,
 *  length in *out_len); a non-ASCII \u escape decodes to 0xff, which compares equal to no name. */
int os_json_scan_string(os_json_cursor_t *c, char *out, size_t cap, size_t *out_len);
/** Scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?: 0 or -1; *integer: no fraction or exponent. */
int os_json_scan_number(os_json_cursor_t *c, int *integer);
/** Validates text as exactly one JSON object and calls fn per member: 0, -1 when it is not one,
 *  or fn's first non-zero return. */
int os_json_each_member(const char *text, size_t len, os_json_member_fn fn, void *ctx);
/** 1 when [start, end) is a JSON string whose decoded value (under 512 bytes) equals want. */
int os_json_string_equals(const char *start, const char *end, const char *want);

#endif
