/*
 * test_money.c - unit tests for core/money.c: parsing, formatting, totals and
 * the numeric(10,2) bound. Exits non-zero if any check fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"

#include "check.h"

#define SENTINEL INT64_C(-777)

/*
 * Parses a heap copy holding exactly strlen(s) bytes and no NUL, so
 * AddressSanitizer reports any read past len. *out is preset to SENTINEL to
 * show that a failed parse leaves it alone.
 */
static int parse_with(int (*fn)(const char *, size_t, int64_t *), const char *s, int64_t *out)
{
    size_t len = strlen(s);
    char *copy = malloc(len ? len : 1);
    int rc;

    if (copy == NULL)
        abort();
    memcpy(copy, s, len);
    *out = SENTINEL;
    rc = fn(copy, len, out);
    free(copy);
    return rc;
}

static int parse_rc(const char *s)
{
    int64_t v;
    int rc = parse_with(os_money_parse, s, &v);

    return rc != OS_MONEY_OK && v != SENTINEL ? 99 : rc; /* 99: out written on failure */
}

static int parses_to(const char *s, int64_t want)
{
    int64_t v;

    return parse_with(os_money_parse, s, &v) == OS_MONEY_OK && v == want;
}

static int ppm_parses_to(const char *s, int64_t want)
{
    int64_t v;

    return parse_with(os_money_parse_ppm, s, &v) == OS_MONEY_OK && v == want;
}

static int ppm_rc(const char *s)
{
    int64_t v;

    return parse_with(os_money_parse_ppm, s, &v);
}

static void test_parse_ok(void)
{
    CHECK(parses_to("0", 0));
    CHECK(parses_to("12", 1200));
    CHECK(parses_to("12.5", 1250));
    CHECK(parses_to("12.50", 1250));
    CHECK(parses_to("0.5", 50));
    CHECK(parses_to("0.05", 5));
    CHECK(parses_to("10.05", 1005));
    CHECK(parses_to("-3.00", -300));
    CHECK(parses_to("-0.01", -1));
    CHECK(parses_to("-0", 0));
    CHECK(parses_to("007", 700));
    CHECK(parses_to("00.10", 10));
    CHECK(parses_to("0000000000000000000000012.34", 1234));
    /* Values where x * 100 in double lands just below the integer. */
    CHECK(parses_to("0.29", 29));
    CHECK(parses_to("1.15", 115));
    CHECK(parses_to("4.35", 435));
}

static void test_parse_errors(void)
{
    int64_t v = SENTINEL;

    CHECK(parse_rc("") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("-") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc(" 1") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("1 ") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("1e3") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("1.") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc(".5") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("-.5") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("+1") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("--1") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("1.5.0") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("1,50") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("1.-5") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("0x10") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("abc") == OS_MONEY_ESYNTAX);
    CHECK(parse_rc("NaN") == OS_MONEY_ESYNTAX);
    CHECK(os_money_parse("1\0", 2, &v) == OS_MONEY_ESYNTAX); /* an embedded NUL is not an end */
    CHECK(os_money_parse(NULL, 0, &v) == OS_MONEY_ESYNTAX);
    CHECK(v == SENTINEL);
    CHECK(os_money_parse("1", 1, NULL) == OS_MONEY_EINVAL);

    CHECK(parse_rc("1.500") == OS_MONEY_EPRECISION);
    CHECK(parse_rc("1.234") == OS_MONEY_EPRECISION);
    CHECK(parse_rc("0.001") == OS_MONEY_EPRECISION);
    CHECK(parse_rc("-1.000") == OS_MONEY_EPRECISION);
    CHECK(parse_rc("1.234x") == OS_MONEY_ESYNTAX); /* syntax is judged before precision */

    /* The cap is 10^15 cents, inclusive, on either side. */
    CHECK(parses_to("10000000000000", INT64_C(1000000000000000)));
    CHECK(parses_to("-10000000000000.00", -INT64_C(1000000000000000)));
    CHECK(parse_rc("10000000000000.01") == OS_MONEY_ERANGE);
    CHECK(parse_rc("-10000000000000.01") == OS_MONEY_ERANGE);
    CHECK(parse_rc("99999999999999999999999") == OS_MONEY_ERANGE); /* past int64: no UB */
    CHECK(parse_rc("92233720368547758.07") == OS_MONEY_ERANGE);
}

static void test_parse_respects_len(void)
{
    const char *s = "12.50xyz";
    int64_t v = SENTINEL;

    CHECK(os_money_parse(s, 5, &v) == OS_MONEY_OK && v == 1250);
    CHECK(os_money_parse(s, 4, &v) == OS_MONEY_OK && v == 1250);
    CHECK(os_money_parse(s, 2, &v) == OS_MONEY_OK && v == 1200);
    CHECK(os_money_parse(s, 3, &v) == OS_MONEY_ESYNTAX); /* "12." */
    CHECK(os_money_parse(s, 6, &v) == OS_MONEY_ESYNTAX); /* "12.50x" */
    CHECK(os_money_parse(s, 0, &v) == OS_MONEY_ESYNTAX);
}

static void test_parse_ppm(void)
{
    CHECK(ppm_parses_to("0", 0));
    CHECK(ppm_parses_to("1", 1000000));
    CHECK(ppm_parses_to("0.05", 50000));
    CHECK(ppm_parses_to("0.0725", 72500));
    CHECK(ppm_parses_to("0.000001", 1));
    CHECK(ppm_parses_to("0.050000", 50000));
    CHECK(ppm_rc("0.0000001") == OS_MONEY_EPRECISION);
    CHECK(ppm_rc(".05") == OS_MONEY_ESYNTAX);
    CHECK(ppm_rc("5%") == OS_MONEY_ESYNTAX);
    CHECK(ppm_rc("") == OS_MONEY_ESYNTAX);
    CHECK(ppm_rc("1000000000.000001") == OS_MONEY_ERANGE);
}

static int formats_to(int64_t cents, const char *want)
{
    char buf[OS_MONEY_FORMAT_MAX];
    size_t n = os_money_format(cents, buf, sizeof(buf));

    return n == strlen(want) && strcmp(buf, want) == 0;
}

static void test_format(void)
{
    char buf[8];

    CHECK(formats_to(0, "0.00"));
    CHECK(formats_to(5, "0.05"));
    CHECK(formats_to(-5, "-0.05"));
    CHECK(formats_to(50, "0.50"));
    CHECK(formats_to(100, "1.00"));
    CHECK(formats_to(-100, "-1.00"));
    CHECK(formats_to(31250, "312.50"));
    CHECK(formats_to(OS_MONEY_NUMERIC_10_2_MAX, "99999999.99"));
    CHECK(formats_to(INT64_MAX, "92233720368547758.07"));
    CHECK(formats_to(INT64_MIN, "-92233720368547758.08"));

    /* "0.00" needs 5 bytes with its NUL; less is refused, not truncated. */
    CHECK(os_money_format(0, buf, 5) == 4 && strcmp(buf, "0.00") == 0);
    CHECK(os_money_format(0, buf, 4) == 0);
    CHECK(os_money_format(-5, buf, 5) == 0);
    CHECK(os_money_format(0, buf, 0) == 0);
    CHECK(os_money_format(0, NULL, 0) == 0);
}

static void test_round_trip(void)
{
    static const char *const samples[] = {"0.00", "0.01", "-0.01", "312.50", "99999999.99",
                                          "-10000000000000.00"};
    size_t i;

    for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        int64_t v = 0;
        char buf[OS_MONEY_FORMAT_MAX];

        CHECK(os_money_parse(samples[i], strlen(samples[i]), &v) == OS_MONEY_OK);
        CHECK(os_money_format(v, buf, sizeof(buf)) == strlen(samples[i]));
        CHECK(strcmp(buf, samples[i]) == 0);
    }
}

/* Totals of one line item, returning the tax or a sentinel on failure. */
static int64_t tax_of(int64_t subtotal, int64_t ppm)
{
    int64_t qty = 1;
    os_order_totals_t t;

    if (os_money_totals(&subtotal, &qty, 1, ppm, 0, &t) != OS_MONEY_OK)
        return SENTINEL;
    return t.tax;
}

static void test_totals_rounding(void)
{
    /* Ties go to the even cent. */
    CHECK(tax_of(1050, 50000) == 52); /* 52.5 */
    CHECK(tax_of(1150, 50000) == 58); /* 57.5 */
    CHECK(tax_of(30, 50000) == 2);    /* 1.5 */
    CHECK(tax_of(10, 50000) == 0);    /* 0.5 */
    CHECK(tax_of(50, 50000) == 2);    /* 2.5 */
    CHECK(tax_of(70, 50000) == 4);    /* 3.5 */
    /* Non-ties round to nearest. */
    CHECK(tax_of(1049, 50000) == 52); /* 52.45 */
    CHECK(tax_of(1051, 50000) == 53); /* 52.55 */
    CHECK(tax_of(9, 50000) == 0);     /* 0.45 */
    CHECK(tax_of(11, 50000) == 1);    /* 0.55 */
    CHECK(tax_of(1, 500000) == 0);    /* 0.5 at 50 % */
    CHECK(tax_of(3, 500000) == 2);    /* 1.5 at 50 % */
    CHECK(tax_of(6997, 72500) == 507); /* 507.2825 */
    CHECK(tax_of(12345, 0) == 0);
    CHECK(tax_of(12345, 1000000) == 12345); /* 100 % */
    CHECK(tax_of(0, 50000) == 0);
}

static void test_totals(void)
{
    int64_t units[] = {6000}, qtys[] = {1};
    int64_t units2[] = {1999, 250, 10, 20}, qtys2[] = {3, 4, 1, 0};
    os_order_totals_t t;

    /* The 113.00 example: one item at 60.00, 5 % tax, 50.00 shipping. */
    CHECK(os_money_totals(units, qtys, 1, 50000, 5000, &t) == OS_MONEY_OK);
    CHECK(t.subtotal == 6000 && t.tax == 300 && t.shipping == 5000 && t.total == 11300);

    /* 5997 + 1000 + 10 + 0 = 7007; 7.25 % of it is 508.0075. */
    CHECK(os_money_totals(units2, qtys2, 4, 72500, 499, &t) == OS_MONEY_OK);
    CHECK(t.subtotal == 7007 && t.tax == 508 && t.shipping == 499 && t.total == 8014);

    /* No items: only shipping, and NULL arrays are fine when n is 0. */
    CHECK(os_money_totals(NULL, NULL, 0, 50000, 700, &t) == OS_MONEY_OK);
    CHECK(t.subtotal == 0 && t.tax == 0 && t.shipping == 700 && t.total == 700);
}

static void test_totals_errors(void)
{
    int64_t one = 1, neg = -1, big = INT64_MAX, half = INT64_MAX / 2 + 1;
    int64_t two_units[] = {half, half}, two_qtys[] = {1, 1};
    int64_t mixed_units[] = {INT64_MAX, 5}, mixed_qtys[] = {2, -1};
    int64_t near_max = INT64_MAX - 10, two = 2;
    os_order_totals_t t = {-1, -1, -1, -1};

    CHECK(os_money_totals(&neg, &one, 1, 50000, 0, &t) == OS_MONEY_EINVAL);
    CHECK(os_money_totals(&one, &neg, 1, 50000, 0, &t) == OS_MONEY_EINVAL);
    CHECK(os_money_totals(&one, &one, 1, -1, 0, &t) == OS_MONEY_EINVAL);
    CHECK(os_money_totals(&one, &one, 1, 50000, -1, &t) == OS_MONEY_EINVAL);
    CHECK(os_money_totals(&one, &one, 1, 50000, 0, NULL) == OS_MONEY_EINVAL);
    CHECK(os_money_totals(NULL, &one, 1, 50000, 0, &t) == OS_MONEY_EINVAL);
    CHECK(os_money_totals(&one, NULL, 1, 50000, 0, &t) == OS_MONEY_EINVAL);
    /* A negative input wins over an overflow earlier in the list. */
    CHECK(os_money_totals(mixed_units, mixed_qtys, 2, 0, 0, &t) == OS_MONEY_EINVAL);

    CHECK(os_money_totals(&big, &two, 1, 0, 0, &t) == OS_MONEY_ERANGE);           /* line */
    CHECK(os_money_totals(two_units, two_qtys, 2, 0, 0, &t) == OS_MONEY_ERANGE);  /* subtotal */
    CHECK(os_money_totals(&big, &one, 1, 2000000, 0, &t) == OS_MONEY_ERANGE);     /* tax */
    CHECK(os_money_totals(&big, &one, 1, INT64_MAX, 0, &t) == OS_MONEY_ERANGE);   /* tax, widest */
    CHECK(os_money_totals(&big, &one, 1, 1, 0, &t) == OS_MONEY_ERANGE);           /* sub + tax */
    CHECK(os_money_totals(&near_max, &one, 1, 0, 11, &t) == OS_MONEY_ERANGE);     /* + shipping */
    CHECK(t.subtotal == -1 && t.tax == -1 && t.shipping == -1 && t.total == -1); /* untouched */

    /* Right at the edge still works. */
    CHECK(os_money_totals(&near_max, &one, 1, 0, 10, &t) == OS_MONEY_OK && t.total == INT64_MAX);
}

static void test_fits_numeric_10_2(void)
{
    CHECK(os_money_fits_numeric_10_2(0) == 1);
    CHECK(os_money_fits_numeric_10_2(INT64_C(9999999999)) == 1);
    CHECK(os_money_fits_numeric_10_2(INT64_C(10000000000)) == 0);
    CHECK(os_money_fits_numeric_10_2(-INT64_C(9999999999)) == 1);
    CHECK(os_money_fits_numeric_10_2(-INT64_C(10000000000)) == 0);
    CHECK(os_money_fits_numeric_10_2(INT64_MAX) == 0);
    CHECK(os_money_fits_numeric_10_2(INT64_MIN) == 0);
}

int main(void)
{
    test_parse_ok();
    test_parse_errors();
    test_parse_respects_len();
    test_parse_ppm();
    test_format();
    test_round_trip();
    test_totals_rounding();
    test_totals();
    test_totals_errors();
    test_fits_numeric_10_2();

    return check_summary();
}
