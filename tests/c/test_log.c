/* test_log.c - every log line is one valid JSON object in valid UTF-8, however long or odd its
 * input: long strings are cut inside with a marker, short fields survive, bad bytes are escaped.
 * The access log's lines wait in the worker's buffer until it is full, its timer fires, another
 * line is written (after them) or the worker stops. */
#include "ffi.h"
#include "log.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* ---- a small strict JSON validator (RFC 8259) that also requires valid UTF-8 ---- */
static const char *p, *end;

static int value(int depth);

static int ws(void)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return 1;
}

static int utf8(void)
{
    const unsigned char *s = (const unsigned char *)p;
    int len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (s[0] > 0xf4 || len == 0 || end - p < len)
        return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    p += len;
    return 1;
}

static int string(void)
{
    if (p >= end || *p++ != '"')
        return 0;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            p++;
            if (p < end && *p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (p + i >= end || strchr("0123456789abcdefABCDEF", p[i]) == NULL)
                        return 0;
                p += 5;
            } else if (p < end && strchr("\"\\/bfnrt", *p) != NULL && *p != '\0') {
                p++;
            } else {
                return 0;
            }
        } else if (c >= 0x80) {
            if (!utf8())
                return 0;
        } else {
            p++;
        }
    }
    return p < end && *p++ == '"';
}

static int number(void)
{
    const char *start = p;
    if (p < end && *p == '-')
        p++;
    while (p < end && strchr("0123456789.eE+-", *p) != NULL && *p != '\0')
        p++;
    return p > start;
}

static int container(int depth, char close)
{
    p++;
    ws();
    if (p < end && *p == close)
        return p++, 1;
    for (;;) {
        if (close == '}' && !(string() && ws() && p < end && *p++ == ':'))
            return 0;
        if (!value(depth + 1))
            return 0;
        ws();
        if (p < end && *p == ',') {
            p++;
            ws();
            continue;
        }
        return p < end && *p++ == close;
    }
}

static int value(int depth)
{
    ws();
    if (p >= end || depth > 64)
        return 0;
    if (*p == '{')
        return container(depth, '}');
    if (*p == '[')
        return container(depth, ']');
    if (*p == '"')
        return string();
    for (const char *lit = "true\0false\0null\0"; *lit; lit += strlen(lit) + 1)
        if ((size_t)(end - p) >= strlen(lit) && memcmp(p, lit, strlen(lit)) == 0)
            return p += strlen(lit), 1;
    return number();
}

/* One line: a whole JSON object followed by the newline and nothing else. */
static int valid_line(const char *line, size_t len)
{
    if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1) != NULL)
        return 0;
    p = line, end = line + len - 1;
    return *p == '{' && value(0) && p == end;
}

/* ---- capture what the logger writes on stderr ---- */
static char captured[1 << 16];

static size_t capture(int level, const char *msg, size_t len)
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    if (msg != NULL)
        os_log_write(level, msg, len);
    else
        os_log(level, "text %s", "with a \"quote\" and a \\ backslash");
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(captured, 1, sizeof(captured) - 1, tmp);
    captured[n] = '\0';
    fclose(tmp);
    return n;
}

/* ---- stderr to a file for a whole sequence of calls ---- */
static FILE *seq_file;
static int seq_saved;

static void seq_begin(void)
{
    fflush(stderr);
    seq_file = tmpfile();
    seq_saved = dup(STDERR_FILENO);
    dup2(fileno(seq_file), STDERR_FILENO);
}

/* What the logger has written since seq_begin, as whole valid lines: their count, or -1. */
static int seq_lines(void)
{
    long size = lseek(fileno(seq_file), 0, SEEK_END);
    if (size < 0 || (size_t)size >= sizeof(captured))
        return -1;
    if (pread(fileno(seq_file), captured, (size_t)size, 0) != size)
        return -1;
    captured[size] = '\0';
    int lines = 0;
    for (char *line = captured, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, lines++)
        if (!valid_line(line, (size_t)(nl - line + 1)))
            return -1;
    return captured[0] != '\0' && captured[size - 1] != '\n' ? -1 : lines;
}

static void seq_end(void)
{
    dup2(seq_saved, STDERR_FILENO);
    close(seq_saved);
    fclose(seq_file);
}

static void request_line(const char *request_id)
{
    os_log_request(OS_LOG_INFO, "request", 7, "GET", 3, "/health/live/", 13, 200, 0, request_id, strlen(request_id),
                   NULL, 0, NULL, 0);
}

static void test_buffer(void)
{
    os_timers_t timers = {0};
    seq_begin();
    CHECK(os_log_buffer_start(&timers, 1024, 5) == 0);

    /* A line waits, with the flush timer armed; a warning writes it first, then itself. */
    request_line("buf-1");
    CHECK(seq_lines() == 0);
    CHECK(os_timers_next_wait(&timers, 1000) <= 5);
    os_log_write(OS_LOG_WARN, "\"msg\":\"careful\"", 16);
    CHECK(seq_lines() == 2);
    CHECK(strstr(captured, "buf-1") != NULL && strstr(captured, "buf-1") < strstr(captured, "careful"));
    CHECK(os_timers_next_wait(&timers, 1000) == 1000); /* nothing waits: no timer */

    /* Full: the line that does not fit writes the ones before it, whole. */
    int written = 0;
    for (int i = 0; i < 12; i++) {
        char id[16];
        snprintf(id, sizeof(id), "fill-%d", i);
        request_line(id);
        written = seq_lines();
        CHECK(written >= 0);
    }
    CHECK(written > 2 && written < 14);

    /* The timer writes the rest once due (waited for, not slept). */
    while (os_timers_next_wait(&timers, 1000) > 0)
        ;
    os_timers_run(&timers);
    CHECK(seq_lines() == 14);

    /* A slow request's warning is written at once; the stop writes what waits. */
    os_log_request(OS_LOG_WARN, "slow request", 12, "GET", 3, "/x", 2, 200, 1500, "slow-1", 6, "44", 2, "customer", 8);
    CHECK(seq_lines() == 15 && strstr(captured, "\"sub\":\"44\",\"role\":\"customer\"}") != NULL);
    request_line("last-1");
    CHECK(seq_lines() == 15);
    os_log_buffer_stop();
    CHECK(seq_lines() == 16 && strstr(captured, "last-1") != NULL);
    request_line("after-stop"); /* no buffer: at once */
    CHECK(seq_lines() == 17);
    seq_end();
    os_timers_dispose(&timers);
}

static void test_request_lines(void)
{
    static char path[20001];
    memset(path, 'p', sizeof(path) - 1);
    path[0] = '/';
    seq_begin();
    os_log_request(OS_LOG_INFO, "request", 7, "GET", 3, path, sizeof(path) - 1, 404, 3, "req-long", 8, NULL, 0, NULL, 0);
    os_log_request(OS_LOG_INFO, "request", 7, "G\"T", 3, "/caf\xc3\xa9/\xff/\"q\"\n", 13, 200, -1, NULL, 0, "s\\b", 3,
                   NULL, 0);
    CHECK(seq_lines() == 2);
    char *second = strchr(captured, '\n') + 1;
    CHECK(second - captured <= 8192);
    CHECK(strstr(captured, "\xe2\x80\xa6[truncated]\",\"status\":404,\"ms\":3,\"request_id\":\"req-long\"}") != NULL);
    CHECK(strstr(second, "\"method\":\"G\\\"T\"") != NULL);
    CHECK(strstr(second, "\"path\":\"/caf\xc3\xa9/\\ufffd/\\\"q\\\"\\n\"") != NULL);
    CHECK(strstr(second, "\"ms\":-1,\"sub\":\"s\\\\b\"}") != NULL); /* no request_id, no role */
    seq_end();
}

int main(void)
{
    static char big[40000], members[90000];
    size_t n;

    /* A 20 KB path among short fields: cut inside the path, status and request_id kept. */
    memset(big, 'a', 20000);
    big[20000] = '\0';
    snprintf(members, sizeof(members), "\"msg\":\"request\",\"method\":\"GET\",\"path\":\"/%s\",\"status\":404,\"ms\":0,"
                                       "\"request_id\":\"req-1\"", big);
    n = capture(OS_LOG_INFO, members, strlen(members));
    CHECK(valid_line(captured, n));
    CHECK(n <= 8192);
    CHECK(strstr(captured, "\"status\":404") != NULL);
    CHECK(strstr(captured, "\"request_id\":\"req-1\"") != NULL);
    CHECK(strstr(captured, "\xe2\x80\xa6[truncated]\"") != NULL);

    /* Two long strings share the room; both are cut, the line still parses. */
    snprintf(members, sizeof(members), "\"a\":\"%s\",\"status\":200,\"b\":\"%s\",\"request_id\":\"r2\"", big, big);
    n = capture(OS_LOG_INFO, members, strlen(members));
    CHECK(valid_line(captured, n));
    CHECK(strstr(captured, "\"status\":200") != NULL && strstr(captured, "\"request_id\":\"r2\"") != NULL);

    /* Invalid UTF-8 (a lone continuation byte, a cut sequence, an overlong form, a surrogate)
     * inside a member string becomes \ufffd; valid multibyte text is kept. */
    static const char bad[] = "\"path\":\"/caf\xc3\xa9/\x80/\xe2\x82/\xc0\xaf/\xed\xa0\x80/\xff\",\"status\":200";
    n = capture(OS_LOG_INFO, bad, sizeof(bad) - 1);
    CHECK(valid_line(captured, n));
    CHECK(strstr(captured, "/caf\xc3\xa9/\\ufffd/") != NULL);
    CHECK(strstr(captured, "\"status\":200") != NULL);

    /* Escapes in members are kept as they are. */
    static const char esc[] = "\"msg\":\"a \\\"b\\\" \\\\ \\n \\u00e9\",\"n\":1";
    n = capture(OS_LOG_INFO, esc, sizeof(esc) - 1);
    CHECK(valid_line(captured, n));
    CHECK(strstr(captured, esc) != NULL);

    /* Plain text: escaped, bad bytes replaced, a long one cut with the marker. */
    n = capture(OS_LOG_WARN, "raw \xff\xfe text \"q\"\n\x01", 17);
    CHECK(valid_line(captured, n));
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[100] = '\xc3'; /* a lone lead byte early on */
    n = capture(OS_LOG_ERROR, big, strlen(big));
    CHECK(valid_line(captured, n));
    CHECK(n <= 8192);
    CHECK(strstr(captured, "[truncated]\"}") != NULL);

    /* Something that starts like members but is not JSON is logged as text. */
    static const char notjson[] = "\"unterminated, {]";
    n = capture(OS_LOG_INFO, notjson, sizeof(notjson) - 1);
    CHECK(valid_line(captured, n));
    CHECK(strstr(captured, "\"msg\":\"\\\"unterminated") != NULL);
    static const char newline[] = "\"k\":1,\n\"j\":2";
    n = capture(OS_LOG_INFO, newline, sizeof(newline) - 1);
    CHECK(valid_line(captured, n));

    /* os_log's printf path. */
    n = capture(OS_LOG_INFO, NULL, 0);
    CHECK(valid_line(captured, n));
    CHECK(strstr(captured, "with a \\\"quote\\\" and a \\\\ backslash") != NULL);

    /* A cut never splits a multibyte character: 3-byte characters all the way. */
    for (size_t i = 0; i + 3 < 30000; i += 3)
        memcpy(big + i, "\xe2\x82\xac", 3);
    big[30000 - 30000 % 3] = '\0';
    snprintf(members, sizeof(members), "\"euro\":\"%s\",\"status\":201", big);
    n = capture(OS_LOG_INFO, members, strlen(members));
    CHECK(valid_line(captured, n));
    CHECK(strstr(captured, "\"status\":201") != NULL);

    test_buffer();
    test_request_lines();
    return check_summary();
}
