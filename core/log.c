/*
 * log.c - structured logging. Owns the log level, the line format and how lines reach stderr:
 * every line is a JSON object {"ts","level","worker","msg",...} so that log shippers need no
 * parser of ours. Every line parses, whatever it carries: bytes that are not UTF-8 become
 * \ufffd, and a line over the buffer is cut inside its longest strings, each ending
 * "…[truncated]", so short fields (status, request_id) and the closing brace always survive.
 *
 * The access log (os_log_request) is buffered per worker, as nginx's `access_log ... buffer=`:
 * its info lines collect in the worker thread's own buffer (ACCESS_LOG_BUFFER_BYTES, no lock)
 * and are written when the next one would not fit, ACCESS_LOG_FLUSH_MS after the first of them
 * (a timer on the worker's loop), when the worker writes any other line (appended first, so a
 * worker's lines stay in order and a warning is never held back) and when the worker stops.
 * Every write(2) carries whole lines, all of them (a short write is continued), under one
 * process-wide lock: lines from different threads never interleave, whatever stderr is (a pipe
 * takes only 4 KiB atomically).
 */
#include "log.h"
#include "ffi.h"
#include "timer.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192

static int min_level = OS_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};
static __thread int thread_worker_id = -1;

/* The calling worker's access log buffer; NULL: every line is written at once. */
typedef struct line_buffer {
    char *data;
    size_t len, cap;
    uint64_t flush_ms;
    os_timers_t *timers;
    os_timer_t timer; /* due flush_ms after the oldest line waiting; idle while empty */
} line_buffer_t;
static __thread line_buffer_t *buffer;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* The second the cached start of "ts" stands for: a line costs no strftime. */
static __thread time_t ts_second = -1;
static __thread char ts_text[40];
static __thread size_t ts_len;

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

/* The bytes put_string_body copies as they are, whatever json says: printable ASCII, not '"'
 * or '\\' (a table: one load a byte in the loop that copies nearly every byte of a line). */
static const unsigned char plain_byte[256] = {
    [0x20] = 1, [0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7e] = 1,
};

static int is_plain(unsigned char c)
{
    return plain_byte[c];
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
        /* A run of printable ASCII that needs no escape (an access line's every text, nearly
         * always) in one copy: the same bytes and the same cut as one unit at a time. */
        size_t run = 0;
        while (i + run < len && is_plain((unsigned char)in[i + run]))
            run++;
        if (run > 0) {
            if (run > limit - o) {
                if (out != NULL) {
                    memcpy(out + o, in + i, limit - o);
                    memcpy(out + limit, TRUNCATED, TRUNCATED_LEN);
                }
                return limit + TRUNCATED_LEN;
            }
            if (out != NULL)
                memcpy(out + o, in + i, run);
            o += run;
            i += run;
            continue;
        }
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

/* Writes n bytes of whole lines to stderr, all of them: a short write is continued, and a
 * non-blocking stderr (a parent sharing its pipe may have set O_NONBLOCK) is waited for as a
 * blocking one would be, so a line is never torn. Nothing is left to report a failure to. */
static void write_lines(const char *p, size_t n)
{
    pthread_mutex_lock(&write_lock);
    while (n > 0) {
        ssize_t r = write(STDERR_FILENO, p, n);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                break;
        } else if (r == 0 || errno != EINTR) {
            break;
        }
    }
    pthread_mutex_unlock(&write_lock);
}

static void flush(line_buffer_t *b)
{
    if (b->len > 0)
        write_lines(b->data, b->len);
    b->len = 0;
    os_timer_stop(b->timers, &b->timer);
}

static void on_flush_timer(os_timer_t *timer)
{
    flush((line_buffer_t *)((char *)timer - offsetof(line_buffer_t, timer)));
}

/* Hands one whole line to stderr: an access log line (buffered) waits in the calling worker's
 * buffer; any other line goes out at once, after (and in one write with) the lines waiting. */
static void emit(const char *line, size_t n, int buffered)
{
    line_buffer_t *b = buffer;
    if (b == NULL || (!buffered && b->len == 0)) {
        write_lines(line, n);
        return;
    }
    if (b->len + n > b->cap)
        flush(b);
    if (n > b->cap) { /* a buffer smaller than one line */
        write_lines(line, n);
        return;
    }
    memcpy(b->data + b->len, line, n);
    b->len += n;
    if (!buffered || (b->len == n && os_timer_start(b->timers, &b->timer, b->flush_ms) != 0))
        flush(b);
}

int os_log_buffer_start(os_timers_t *timers, size_t bytes, uint64_t flush_ms)
{
    if (bytes == 0)
        return 0;
    line_buffer_t *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->data = malloc(bytes)) == NULL) {
        free(b);
        return -1;
    }
    b->cap = bytes;
    b->flush_ms = flush_ms;
    b->timers = timers;
    os_timer_init(&b->timer, on_flush_timer);
    buffer = b;
    return 0;
}

void os_log_flush(void)
{
    if (buffer != NULL)
        flush(buffer);
}

void os_log_buffer_stop(void)
{
    line_buffer_t *b = buffer;
    if (b == NULL)
        return;
    flush(b);
    buffer = NULL;
    free(b->data);
    free(b);
}

static size_t put_uint(char *out, uint64_t v)
{
    char digits[20];
    size_t n = 0, o = 0;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n > 0)
        out[o++] = digits[--n];
    return o;
}

static size_t put_int(char *out, int64_t v)
{
    if (v >= 0)
        return put_uint(out, (uint64_t)v);
    out[0] = '-';
    return 1 + put_uint(out + 1, -(uint64_t)v);
}

/* `{"ts":"...","level":"...","worker":N,` (the members follow). */
static size_t put_prefix(char *line, int level)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != ts_second) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        ts_len = strftime(ts_text, sizeof(ts_text), "{\"ts\":\"%Y-%m-%dT%H:%M:%S.", &tm);
        ts_second = tv.tv_sec;
    }
    size_t n = ts_len;
    memcpy(line, ts_text, n);
    int ms = (int)(tv.tv_usec / 1000);
    line[n++] = (char)('0' + ms / 100);
    line[n++] = (char)('0' + ms / 10 % 10);
    line[n++] = (char)('0' + ms % 10);
    static const char level_key[] = "Z\",\"level\":\"", worker_key[] = "\",\"worker\":";
    memcpy(line + n, level_key, sizeof(level_key) - 1);
    n += sizeof(level_key) - 1;
    size_t len = strlen(level_names[level]);
    memcpy(line + n, level_names[level], len);
    n += len;
    memcpy(line + n, worker_key, sizeof(worker_key) - 1);
    n += sizeof(worker_key) - 1;
    n += put_int(line + n, thread_worker_id);
    line[n++] = ',';
    return n;
}

void os_log_write(int level, const char *msg, size_t len)
{
    if (level < OS_LOG_DEBUG || level > OS_LOG_ERROR || level < min_level)
        return;
    char line[LINE_MAX_BYTES];
    size_t n = put_prefix(line, level);
    size_t avail = sizeof(line) - n - 2, wrote = SIZE_MAX; /* 2: the closing brace and newline */
    /* A message that already is JSON members (starts with '"key":') is merged as fields:
     * in one pass when even the worst escaping (6 bytes a byte) fits, else cut to fit. */
    if (len > 0 && msg[0] == '"')
        wrote = len <= avail / 6 ? put_members(line + n, msg, len, SIZE_MAX) : put_members_fitting(line + n, avail, msg, len);
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
    emit(line, n, 0);
}

/* `"key":"value",` with value escaped and cut at limit bytes; nothing when value is NULL. */
static size_t put_text_member(char *out, const char *key, const char *value, size_t len, size_t limit)
{
    if (value == NULL)
        return 0;
    size_t n = 0, klen = strlen(key);
    out[n++] = '"';
    memcpy(out + n, key, klen);
    n += klen;
    memcpy(out + n, "\":\"", 3);
    n += 3;
    n += put_string_body(out + n, value, len, 0, limit);
    out[n++] = '"';
    out[n++] = ',';
    return n;
}

static size_t put_int_member(char *out, const char *key, int64_t value)
{
    size_t n = 0, klen = strlen(key);
    out[n++] = '"';
    memcpy(out + n, key, klen);
    n += klen;
    out[n++] = '"';
    out[n++] = ':';
    n += put_int(out + n, value);
    out[n++] = ',';
    return n;
}

void os_log_request(int level, const char *msg, size_t msg_len, const char *method, size_t method_len,
                    const char *path, size_t path_len, int status, int64_t ms, const char *request_id,
                    size_t request_id_len, const char *sub, size_t sub_len, const char *role, size_t role_len)
{
    if (level < OS_LOG_DEBUG || level > OS_LOG_ERROR || level < min_level)
        return;
    /* Each text has its own cut, so the line always fits: the prefix (under 100 bytes), the
     * keys and numbers (under 150) and at most 5,760 bytes of texts, markers included. */
    char line[LINE_MAX_BYTES];
    size_t n = put_prefix(line, level);
    n += put_text_member(line + n, "msg", msg, msg_len, 256);
    n += put_text_member(line + n, "method", method, method_len, 64);
    n += put_text_member(line + n, "path", path, path_len, 4096);
    n += put_int_member(line + n, "status", status);
    n += put_int_member(line + n, "ms", ms);
    n += put_text_member(line + n, "request_id", request_id, request_id_len, 256);
    n += put_text_member(line + n, "sub", sub, sub_len, 512);
    n += put_text_member(line + n, "role", role, role_len, 64);
    line[n - 1] = '}'; /* over the last member's comma */
    line[n++] = '\n';
    emit(line, n, level <= OS_LOG_INFO);
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
