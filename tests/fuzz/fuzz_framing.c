/*
 * fuzz_framing.c - libFuzzer target for core/framing_scan.c: any bytes as a request head, as
 * HTTP/1.0 and HTTP/1.1. Besides memory errors (ASan/UBSan), it checks two properties the
 * server relies on: the answer is one of the known messages or NULL, and a head without any
 * Content-Length or Transfer-Encoding byte sequence and without a line starting in
 * whitespace is never refused (the check does not invent faults).
 */
#include "framing_scan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const KNOWN[] = {
    "obsolete line folding is not accepted",  "both Transfer-Encoding and Content-Length",
    "more than one Content-Length",           "malformed Content-Length",
    "Transfer-Encoding must be exactly chunked", "Transfer-Encoding in an HTTP/1.0 request",
};

static int mentions(const uint8_t *data, size_t size, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= size; i++)
        if (strncasecmp((const char *)data + i, word, n) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes, so ASan sees any read past the end */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    for (int version = 0x100; version <= 0x101; version++) {
        const char *fault = os_framing_check_head(buf, size, version);
        if (fault == NULL)
            continue;
        int known = 0;
        for (size_t i = 0; i < sizeof(KNOWN) / sizeof(KNOWN[0]); i++)
            known |= fault == KNOWN[i] || strcmp(fault, KNOWN[i]) == 0;
        if (!known)
            abort();
        int folded = 0;
        for (size_t i = 1; i < size; i++)
            folded |= data[i - 1] == '\n' && (data[i] == ' ' || data[i] == '\t');
        if (!folded && !mentions(data, size, "content-length") && !mentions(data, size, "transfer-encoding"))
            abort();
    }
    free(buf);
    return 0;
}
