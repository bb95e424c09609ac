/*
 * log.c - structured logging. Owns the log level and the line format: every line is a
 * JSON object {"ts","level","worker","msg"} so that log shippers need no parser of ours.
 * Each line is written with a single write(2) so lines from worker threads never interleave.
 * Every line parses, whatever it carries: bytes that are not UTF-8 become \ufffd, and a line
 * over the buffer is cut inside its longest strings, each ending "…[truncated]", so short
 * fields (status, request_id) and the closing brace always survive.
 */
#include "log.h"
#include "ffi.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int min_level = OS_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};
static __thread int thread_worker_id = -1;

void os_log_set_level(int level)
{
    min_level = level;
}

void os_log_set_worker(int worker_id)
{
    thread_worker_id = worker_id;
}

int os_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int os_log_enabled(int level)
{
    return level >= min_level;
}

/* What replaces the end of a string cut to fit the line (U+2026 then ASCII). */
static const char TRUNCATED[] = "\xe2\x80\xa6[truncated]";
#define TRUNCATED_LEN (sizeof(TRUNCATED) - 1)

/* Length of the valid UTF-8 sequence at s (n bytes there), or 0 when it is not one
 * (overlong forms, surrogates and code points past U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t min;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, min = 0x80;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, min = 0x800;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    uint32_t cp = s[0] & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Writes the body of a JSON string (no quotes) for in[0..len) to out, or only counts it when
 * out is NULL. json = 1: in already is a JSON string body (cjson's output), whose escapes are
 * kept; json = 0: raw text, escaped here. Bytes that are not UTF-8 become \ufffd, so every line
 * parses. When the body would pass limit bytes it is cut between two characters and ends with
 * TRUNCATED (so it takes at most limit + TRUNCATED_LEN). Returns the bytes written.
 */
static size_t put_string_body(char *out, const char *in, size_t len, int json, size_t limit)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char c = (unsigned char)in[i];
        char unit[8];
        size_t ulen = 1, used = 1;
        if (json && c == '\\' && i + 1 < len && strchr("\"\\/bfnrt", in[i + 1]) != NULL && in[i + 1] != '\0') {
            ulen = used = 2;
            memcpy(unit, in + i, 2);
        } else if (json && c == '\\' && i + 5 < len && in[i + 1] == 'u' && is_hex(in[i + 2]) && is_hex(in[i + 3]) &&
                   is_hex(in[i + 4]) && is_hex(in[i + 5])) {
            ulen = used = 6;
            memcpy(unit, in + i, 6);
        } else if (c == '"' || c == '\\') {
            unit[0] = '\\', unit[1] = (char)c, ulen = 2;
        } else if (c == '\n') {
            unit[0] = '\\', unit[1] = 'n', ulen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            ulen = (size_t)snprintf(unit, sizeof(unit), "\\u%04x", c);
        } else if (c < 0x80) {
            unit[0] = (char)c;
        } else if ((used = utf8_len((const unsigned char *)in + i, len - i)) != 0) {
            ulen = used;
            memcpy(unit, in + i, used);
        } else {
            memcpy(unit, "\\ufffd", 6);
            ulen = 6, used = 1;
        }
        if (o + ulen > limit) {
            if (out != NULL)
                memcpy(out + o, TRUNCATED, TRUNCATED_LEN);
            return o + TRUNCATED_LEN;
        }
        if (out != NULL)
            memcpy(out + o, unit, ulen);
        o += ulen;
        i += used;
    }
    return o;
}

/*
 * Copies JSON object members (`"k":v,...` as lib/log.lua's cjson writes them) to out, or
 * only counts them when out is NULL, with every string body passed through put_string_body
 * (limit applies to each string on its own, so short fields such as status and request_id
 * survive the cut of a long one). Returns SIZE_MAX when in does not look like such members.
 */
static size_t put_members(char *out, const char *in, size_t len, size_t limit)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (in[i] == '"') {
            size_t j = i + 1;
            while (j < len && in[j] != '"')
                j += in[j] == '\\' ? 2 : 1;
            if (j >= len)
                return SIZE_MAX;
            size_t body = put_string_body(out != NULL ? out + o + 1 : NULL, in + i + 1, j - i - 1, 1, limit);
            if (out != NULL)
                out[o] = '"', out[o + 1 + body] = '"';
            o += body + 2;
            i = j + 1;
        } else if (in[i] != '\0' && strchr("{}[]:,-+.0123456789eEtrufalsn \t", in[i]) != NULL) {
            if (out != NULL)
                out[o] = in[i];
            o++, i++;
        } else {
            return SIZE_MAX;
        }
    }
    return o;
}

/* Members that fit avail bytes: the largest per-string limit that fits, found by bisection
 * (only for a line that does not fit whole). Writes them to out; returns the bytes written,
 * or SIZE_MAX when in is not members or cannot fit even with every string cut. */
static size_t put_members_fitting(char *out, size_t avail, const char *in, size_t len)
{
    size_t need = put_members(NULL, in, len, SIZE_MAX), limit = SIZE_MAX;
    if (need == SIZE_MAX)
        return SIZE_MAX;
    if (need > avail) {
        size_t lo = 0, hi = avail;
        if (put_members(NULL, in, len, 0) > avail)
            return SIZE_MAX;
        while (lo < hi) {
            size_t mid = lo + (hi - lo + 1) / 2;
            if (put_members(NULL, in, len, mid) <= avail)
                lo = mid;
            else
                hi = mid - 1;
        }
        limit = lo;
    }
    return put_members(out, in, len, limit);
}

void os_log_write(int level, const char *msg, size_t len)
{
    if (level < OS_LOG_DEBUG || level > OS_LOG_ERROR || level < min_level)
        return;
    char line[8192];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03dZ\",\"level\":\"%s\",\"worker\":%d,", (int)(tv.tv_usec / 1000),
                          level_names[level], thread_worker_id);
    size_t avail = sizeof(line) - n - 2, wrote = SIZE_MAX; /* 2: the closing brace and newline */
    /* A message that already is JSON members (starts with '"key":') is merged as fields. */
    if (len > 0 && msg[0] == '"')
        wrote = put_members_fitting(line + n, avail, msg, len);
    if (wrote != SIZE_MAX) {
        n += wrote;
    } else {
        static const char key[] = "\"msg\":\"";
        size_t body_avail = avail - (sizeof(key) - 1) - 1;
        size_t need = put_string_body(NULL, msg, len, 0, SIZE_MAX);
        memcpy(line + n, key, sizeof(key) - 1);
        n += sizeof(key) - 1;
        n += put_string_body(line + n, msg, len, 0, need > body_avail ? body_avail - TRUNCATED_LEN : SIZE_MAX);
        line[n++] = '"';
    }
    line[n++] = '}';
    line[n++] = '\n';
    ssize_t r = write(STDERR_FILENO, line, n);
    (void)r;
}

void os_log(int level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(msg)) { /* cut by vsnprintf: say so at the end */
        n = (int)sizeof(msg) - 1;
        memcpy(msg + n - TRUNCATED_LEN, TRUNCATED, TRUNCATED_LEN);
    }
    os_log_write(level, msg, (size_t)n);
}
