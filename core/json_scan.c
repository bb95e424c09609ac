/*
 * json_scan.c - owns the strict JSON scanner the token code reads headers and claims with.
 *
 * It validates a whole document (RFC 8259 grammar, nesting capped) without building a tree:
 * the verifier only needs to find a few top-level members and to know the rest is well
 * formed. Strings decode into caller buffers; nothing is allocated.
 */
#include "json_scan.h"

#include <string.h>

#define JSON_MAX_DEPTH 32

void os_json_skip_ws(os_json_cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f')
            v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            v |= (unsigned)(h - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

int os_json_scan_string(os_json_cursor_t *c, char *out, size_t cap, size_t *out_len)
{
    size_t n = 0;
    if (c->p >= c->end || *c->p != '"')
        return -1;
    for (c->p++; c->p < c->end; c->p++) {
        unsigned char ch = (unsigned char)*c->p;
        unsigned decoded = ch;
        if (ch == '"') {
            c->p++;
            if (out_len)
                *out_len = n;
            return out == NULL || n < cap ? 0 : -1;
        } else if (ch < 0x20) {
            return -1;
        } else if (ch == '\\') {
            if (++c->p >= c->end)
                return -1;
            switch (*c->p) {
            case '"': case '\\': case '/': decoded = (unsigned char)*c->p; break;
            case 'b': decoded = '\b'; break;
            case 'f': decoded = '\f'; break;
            case 'n': decoded = '\n'; break;
            case 'r': decoded = '\r'; break;
            case 't': decoded = '\t'; break;
            case 'u':
                if (c->end - c->p < 5 || hex4(c->p + 1, &decoded) != 0)
                    return -1;
                c->p += 4;
                if (decoded >= 0x80)
                    decoded = 0xff;
                break;
            default: return -1;
            }
        }
        if (out != NULL) {
            if (n + 1 >= cap)
                return -1;
            out[n++] = (char)decoded;
        } else {
            n++;
        }
    }
    return -1;
}

static int is_digit(const os_json_cursor_t *c)
{
    return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

int os_json_scan_number(os_json_cursor_t *c, int *integer)
{
    *integer = 1;
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (!is_digit(c))
        return -1;
    if (*c->p == '0')
        c->p++;
    else
        while (is_digit(c))
            c->p++;
    if (c->p < c->end && *c->p == '.') {
        *integer = 0;
        c->p++;
        if (!is_digit(c))
            return -1;
        while (is_digit(c))
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        *integer = 0;
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!is_digit(c))
            return -1;
        while (is_digit(c))
            c->p++;
    }
    return 0;
}

static int scan_literal(os_json_cursor_t *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return -1;
    c->p += n;
    return 0;
}

static int scan_value(os_json_cursor_t *c, int depth)
{
    int integer;
    os_json_skip_ws(c);
    if (c->p >= c->end || depth > JSON_MAX_DEPTH)
        return -1;
    switch (*c->p) {
    case '"': return os_json_scan_string(c, NULL, 0, NULL);
    case 't': return scan_literal(c, "true");
    case 'f': return scan_literal(c, "false");
    case 'n': return scan_literal(c, "null");
    case '{':
    case '[': {
        char close = *c->p == '{' ? '}' : ']';
        c->p++;
        os_json_skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                os_json_skip_ws(c);
                if (os_json_scan_string(c, NULL, 0, NULL) != 0)
                    return -1;
                os_json_skip_ws(c);
                if (c->p >= c->end || *c->p++ != ':')
                    return -1;
            }
            if (scan_value(c, depth + 1) != 0)
                return -1;
            os_json_skip_ws(c);
            if (c->p >= c->end)
                return -1;
            if (*c->p == close) {
                c->p++;
                return 0;
            }
            if (*c->p++ != ',')
                return -1;
        }
    }
    default: return os_json_scan_number(c, &integer);
    }
}

int os_json_each_member(const char *text, size_t len, os_json_member_fn fn, void *ctx)
{
    os_json_cursor_t c = {text, text + len};
    char name[64];
    os_json_skip_ws(&c);
    if (c.p >= c.end || *c.p++ != '{')
        return -1;
    os_json_skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            size_t name_len = 0;
            os_json_skip_ws(&c);
            os_json_cursor_t probe = c;
            if (os_json_scan_string(&c, NULL, 0, NULL) != 0)
                return -1;
            if (os_json_scan_string(&probe, name, sizeof(name), &name_len) != 0)
                name_len = 0;
            os_json_skip_ws(&c);
            if (c.p >= c.end || *c.p++ != ':')
                return -1;
            os_json_skip_ws(&c);
            const char *start = c.p;
            if (scan_value(&c, 1) != 0)
                return -1;
            int rc = fn(ctx, name, name_len, start, c.p);
            if (rc != 0)
                return rc;
            os_json_skip_ws(&c);
            if (c.p >= c.end)
                return -1;
            if (*c.p == '}') {
                c.p++;
                break;
            }
            if (*c.p++ != ',')
                return -1;
        }
    }
    os_json_skip_ws(&c);
    return c.p == c.end ? 0 : -1;
}


int os_json_string_equals(const char *start, const char *end, const char *want)
{
    char buf[512];
    size_t n;
    os_json_cursor_t c = {start, end};
    return os_json_scan_string(&c, buf, sizeof(buf), &n) == 0 && n == strlen(want) && memcmp(buf, want, n) == 0;
}
