/*
 * log.c - structured logging. Owns the log level and the line format: every line is a
 * JSON object {"ts","level","worker","msg"} so that log shippers need no parser of ours.
 * Each line is written with a single write(2) so lines from worker threads never interleave.
 */
#include "log.h"
#include "ffi.h"

#include <stdarg.h>
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

/* Escapes msg as a JSON string body into out; returns bytes written (truncates safely). */
static size_t json_escape(char *out, size_t cap, const char *msg, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
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
    /* A message that already is a JSON object body (starts with '"key":') is merged as fields. */
    if (len > 0 && msg[0] == '"') {
        if (len > sizeof(line) - n - 3)
            len = sizeof(line) - n - 3;
        memcpy(line + n, msg, len);
        n += len;
    } else {
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\"msg\":\"");
        n += json_escape(line + n, sizeof(line) - n - 3, msg, len);
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
    os_log_write(level, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}
