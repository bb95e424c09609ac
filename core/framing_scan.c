/*
 * framing_scan.c - the pure part of framing.c: reads an HTTP/1 request head (bytes, as they
 * arrived) and names the first RFC 9112 §6.3 framing fault in it. No h2o, no state, so the
 * fuzzer (tests/fuzz/fuzz_framing.c) drives exactly the code the server runs.
 */
#include "framing_scan.h"

#include <string.h>
#include <strings.h>

#define CL_MAX_DIGITS 18 /* h2o_strtosize refuses 19 digits and more */

typedef struct framing_scan {
    int content_lengths, transfer_encodings, folded;
    int bad_content_length, bad_transfer_encoding;
} framing_scan_t;

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int name_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

static void scan_header(framing_scan_t *scan, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL)
        return; /* h2o's parser refused such a head already */
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + len;
    while (v < end && is_ows(*v))
        v++;
    while (end > v && is_ows(end[-1]))
        end--;
    size_t vlen = (size_t)(end - v);
    if (name_is(line, name_len, "content-length")) {
        scan->content_lengths++;
        int digits_only = vlen > 0 && vlen <= CL_MAX_DIGITS;
        for (size_t i = 0; i < vlen && digits_only; i++)
            digits_only = v[i] >= '0' && v[i] <= '9';
        if (!digits_only)
            scan->bad_content_length = 1;
    } else if (name_is(line, name_len, "transfer-encoding")) {
        scan->transfer_encodings++;
        if (!name_is(v, vlen, "chunked"))
            scan->bad_transfer_encoding = 1;
    }
}

/* Walks the header lines of the head at buf (CRLF or bare LF, as h2o's parser accepts). */
static void scan_head(framing_scan_t *scan, const char *buf, size_t size)
{
    size_t i = 0;
    while (i < size && (buf[i] == '\r' || buf[i] == '\n')) /* empty lines before the request line */
        i++;
    int request_line = 1;
    while (i < size) {
        const char *nl = memchr(buf + i, '\n', size - i);
        if (nl == NULL)
            return;
        size_t len = (size_t)(nl - (buf + i));
        if (len > 0 && buf[i + len - 1] == '\r')
            len--;
        if (len == 0)
            return; /* end of the head */
        if (!request_line) {
            if (is_ows(buf[i]))
                scan->folded = 1;
            else
                scan_header(scan, buf + i, len);
        }
        request_line = 0;
        i = (size_t)(nl - buf) + 1;
    }
}

const char *os_framing_check_head(const char *buf, size_t size, int version)
{
    framing_scan_t scan = {0};
    scan_head(&scan, buf, size);
    if (scan.folded)
        return "obsolete line folding is not accepted";
    if (scan.transfer_encodings > 0 && scan.content_lengths > 0)
        return "both Transfer-Encoding and Content-Length";
    if (scan.content_lengths > 1)
        return "more than one Content-Length";
    if (scan.bad_content_length)
        return "malformed Content-Length";
    if (scan.transfer_encodings > 1 || scan.bad_transfer_encoding)
        return "Transfer-Encoding must be exactly chunked";
    if (scan.transfer_encodings > 0 && version < 0x101)
        return "Transfer-Encoding in an HTTP/1.0 request";
    return NULL;
}
