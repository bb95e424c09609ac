/*
 * framing_scan.h - the HTTP/1 framing checks of framing.c as a pure function (no h2o).
 */
#ifndef OS_FRAMING_SCAN_H
#define OS_FRAMING_SCAN_H

#include <stddef.h>

/** The framing fault of the request head in buf[0..size) (header lines up to the first empty
 *  line; CRLF or bare LF) for an HTTP version as h2o numbers it (0x100, 0x101), or NULL. */
const char *os_framing_check_head(const char *buf, size_t size, int version);

#endif
