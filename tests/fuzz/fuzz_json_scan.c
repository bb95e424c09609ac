/*
 * fuzz_json_scan.c - libFuzzer target for core/json_scan.c, the strict scanner the JWT
 * payload goes through: os_json_each_member over any bytes, and os_json_scan_string /
 * os_json_scan_number on each member's value. Checks: no memory error, each member's value
 * lies inside the input, a scanned string fits its buffer and its reported length.
 */
#include "json_scan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *text;
    size_t len;
} span_t;

static int on_member(void *ctx, const char *name, size_t name_len, const char *start, const char *end)
{
    const span_t *in = ctx;
    if (start < in->text || end > in->text + in->len || start > end)
        abort();
    (void)name;
    (void)name_len;
    os_json_string_equals(start, end, "exp");
    char out[64];
    size_t out_len = 0;
    os_json_cursor_t c = {start, end};
    if (os_json_scan_string(&c, out, sizeof(out), &out_len) == 0 && out_len >= sizeof(out))
        abort();
    c.p = start;
    int integer = 0;
    os_json_scan_number(&c, &integer);
    if (c.p < start || c.p > end)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    span_t in = {buf, size};
    os_json_each_member(buf, size, on_member, &in);
    free(buf);
    return 0;
}
