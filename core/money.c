/*
 * money.c - exact money arithmetic: parsing, formatting and order totals.
 *
 * Owns the rule every amount in the service follows: money is an int64 count
 * of cents and never passes through a float or double. 0.10 has no exact
 * binary form, so float totals drift by a cent and round tax the wrong way;
 * integers cannot. Tax rates are integers too, in parts per million, parsed
 * from the TAX_RATE setting by os_money_parse_ppm.
 *
 * Nothing here allocates; results go to caller-provided out-parameters, which
 * are left untouched when a function fails.
 */
#include "money.h"

__extension__ typedef __int128 os_i128_t;

#define PPM_PER_UNIT 1000000

/* Appends one decimal digit to *v, refusing to pass OS_MONEY_MAX_CENTS. */
static int push_digit(int64_t *v, int digit)
{
    if (*v > (OS_MONEY_MAX_CENTS - digit) / 10)
        return OS_MONEY_ERANGE;
    *v = *v * 10 + digit;
    return OS_MONEY_OK;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Parses [-]digits[.digits] into an integer scaled by 10^scale. Cents and ppm
 * share it so a request body and the TAX_RATE setting accept one grammar. The
 * whole string is checked for syntax before anything else so that "1.234x" is
 * reported as a syntax error, not a precision one.
 */
static int parse_fixed(const char *s, size_t len, int scale, int64_t *out)
{
    size_t i = 0, int_end, frac_digits = 0;
    int64_t v = 0;
    int neg = 0, rc;

    if (out == NULL)
        return OS_MONEY_EINVAL;
    if (s == NULL)
        return OS_MONEY_ESYNTAX;

    if (i < len && s[i] == '-') {
        neg = 1;
        i++;
    }
    while (i < len && is_digit(s[i]))
        i++;
    int_end = i;
    if (int_end == (size_t)neg)
        return OS_MONEY_ESYNTAX; /* "", "-", ".5", "+1", " 1" */
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && is_digit(s[i]))
            i++;
        frac_digits = i - int_end - 1;
        if (frac_digits == 0)
            return OS_MONEY_ESYNTAX; /* "1." */
    }
    if (i != len)
        return OS_MONEY_ESYNTAX; /* "1e3", "1 ", "1.5.0" */
    /* Strict: "1.500" is refused too, so no input is silently reinterpreted. */
    if (frac_digits > (size_t)scale)
        return OS_MONEY_EPRECISION;

    for (i = (size_t)neg; i < len; i++) {
        if (s[i] == '.')
            continue;
        if ((rc = push_digit(&v, s[i] - '0')) != OS_MONEY_OK)
            return rc;
    }
    for (; frac_digits < (size_t)scale; frac_digits++) {
        if ((rc = push_digit(&v, 0)) != OS_MONEY_OK)
            return rc;
    }
    *out = neg ? -v : v;
    return OS_MONEY_OK;
}

int os_money_parse(const char *s, size_t len, int64_t *cents_out)
{
    return parse_fixed(s, len, 2, cents_out);
}

int os_money_parse_ppm(const char *s, size_t len, int64_t *ppm_out)
{
    return parse_fixed(s, len, 6, ppm_out);
}

size_t os_money_format(int64_t cents, char *buf, size_t buflen)
{
    char rev[OS_MONEY_FORMAT_MAX];
    /* The magnitude is unsigned because -INT64_MIN does not fit in int64. */
    uint64_t mag = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    size_t n = 0, i;

    rev[n++] = (char)('0' + mag % 10);
    mag /= 10;
    rev[n++] = (char)('0' + mag % 10);
    mag /= 10;
    rev[n++] = '.';
    do {
        rev[n++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag != 0);
    if (cents < 0)
        rev[n++] = '-';

    if (buf == NULL || buflen < n + 1)
        return 0;
    for (i = 0; i < n; i++)
        buf[i] = rev[n - 1 - i];
    buf[n] = '\0';
    return n;
}

/*
 * Divides a non-negative value by 10^6, rounding a tie to the even neighbour.
 * Half-up would bias every tie towards the customer paying more; over many
 * orders half-to-even rounds up and down equally often.
 */
static os_i128_t div_ppm_half_even(os_i128_t x)
{
    os_i128_t q = x / PPM_PER_UNIT, r = x % PPM_PER_UNIT;

    if (2 * r > PPM_PER_UNIT || (2 * r == PPM_PER_UNIT && (q & 1) != 0))
        q++;
    return q;
}

int os_money_totals(const int64_t *unit_cents, const int64_t *quantities, size_t n, int64_t tax_ppm,
                    int64_t shipping_cents, os_order_totals_t *out)
{
    int64_t subtotal = 0, line, tax, total;
    os_i128_t tax_wide;
    size_t i;

    /* Validate everything first so the code returned does not depend on item order. */
    if (out == NULL || (n > 0 && (unit_cents == NULL || quantities == NULL)))
        return OS_MONEY_EINVAL;
    if (tax_ppm < 0 || shipping_cents < 0)
        return OS_MONEY_EINVAL;
    for (i = 0; i < n; i++) {
        if (unit_cents[i] < 0 || quantities[i] < 0)
            return OS_MONEY_EINVAL;
    }

    for (i = 0; i < n; i++) {
        if (__builtin_mul_overflow(quantities[i], unit_cents[i], &line) ||
            __builtin_add_overflow(subtotal, line, &subtotal))
            return OS_MONEY_ERANGE;
    }
    /* Both factors are below 2^63, so the product fits in 127 bits. */
    tax_wide = div_ppm_half_even((os_i128_t)subtotal * tax_ppm);
    if (tax_wide > INT64_MAX)
        return OS_MONEY_ERANGE;
    tax = (int64_t)tax_wide;
    if (__builtin_add_overflow(subtotal, tax, &total) ||
        __builtin_add_overflow(total, shipping_cents, &total))
        return OS_MONEY_ERANGE;

    out->subtotal = subtotal;
    out->tax = tax;
    out->shipping = shipping_cents;
    out->total = total;
    return OS_MONEY_OK;
}

int os_money_fits_numeric_10_2(int64_t cents)
{
    return cents >= -OS_MONEY_NUMERIC_10_2_MAX && cents <= OS_MONEY_NUMERIC_10_2_MAX;
}
