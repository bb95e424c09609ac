/*
 * money.h - return codes, limits and the C-only helpers of core/money.c.
 * The functions Lua calls are declared in ffi.h; this header adds what only C
 * needs (the TAX_RATE parser) and the constants both sides rely on.
 */
#ifndef OS_MONEY_H
#define OS_MONEY_H

#include <stddef.h>
#include <stdint.h>

#include "ffi.h"

/* Return codes of os_money_parse, os_money_parse_ppm and os_money_totals. */
enum {
    OS_MONEY_OK = 0,
    OS_MONEY_ESYNTAX = -1,    /* not [-]digits[.digits] */
    OS_MONEY_EPRECISION = -2, /* more fraction digits than the unit allows */
    OS_MONEY_EINVAL = -3,     /* negative or NULL argument where none is allowed */
    OS_MONEY_ERANGE = -4      /* result would leave the supported range */
};

/* Largest magnitude a parsed value may have: 10^15 cents (or ppm). It sits far
 * below INT64_MAX so sums of a few parsed values cannot overflow. */
#define OS_MONEY_MAX_CENTS INT64_C(1000000000000000)

/* Largest amount a numeric(10,2) column stores: 99,999,999.99. */
#define OS_MONEY_NUMERIC_10_2_MAX INT64_C(9999999999)

/* Buffer size that fits any os_money_format output: "-92233720368547758.08" + NUL. */
#define OS_MONEY_FORMAT_MAX 22

/** Parses a rate like "0.0725" (up to 6 decimals) into parts per million; codes as os_money_parse. */
int os_money_parse_ppm(const char *s, size_t len, int64_t *ppm_out);

#endif
