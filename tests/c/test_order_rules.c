/*
 * test_order_rules.c - unit tests for core/order_rules.c: every pair of values
 * of every status kind, unknown and legacy values, and the order-to-shipping
 * mapping. Exits non-zero if any check fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_rules.h"

#include "check.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Heap copy of exactly strlen(s) bytes, no NUL: AddressSanitizer catches reads past len. */
static char *dup_exact(const char *s)
{
    size_t len = strlen(s);
    char *p = malloc(len ? len : 1);

    if (p == NULL)
        abort();
    memcpy(p, s, len);
    return p;
}

static int valid(int kind, const char *s)
{
    char *p = dup_exact(s);
    int rc = os_status_valid(kind, p, strlen(s));

    free(p);
    return rc;
}

static int transition(int kind, const char *from, const char *to)
{
    char *f = dup_exact(from), *t = dup_exact(to);
    int rc = os_status_transition(kind, f, strlen(from), t, strlen(to));

    free(f);
    free(t);
    return rc;
}

/* The rules as the specification states them, written independently of core's tables. */
typedef struct {
    const char *from, *to;
} edge_t;

static const char *const order_values[] = {"PENDING", "CONFIRMED", "SHIPPED", "DELIVERED",
                                           "CANCELLED"};
static const edge_t order_allowed[] = {
    {"PENDING", "CONFIRMED"}, {"PENDING", "CANCELLED"}, {"CONFIRMED", "SHIPPED"},
    {"CONFIRMED", "CANCELLED"}, {"SHIPPED", "DELIVERED"},
};

static const char *const payment_values[] = {"PENDING", "PAID", "FAILED", "REFUNDED"};
static const edge_t payment_allowed[] = {
    {"PENDING", "PAID"}, {"PENDING", "FAILED"}, {"PAID", "REFUNDED"},
};

static const char *const shipping_values[] = {"Pending", "Shipped", "Delivered",
                                              "Failed",  "Unknown", "Cancelled"};
static const edge_t shipping_allowed[] = {
    {"Unknown", "Pending"},   {"Unknown", "Shipped"}, {"Unknown", "Delivered"},
    {"Unknown", "Failed"},    {"Unknown", "Cancelled"}, {"Pending", "Shipped"},
    {"Pending", "Failed"},    {"Pending", "Cancelled"}, {"Shipped", "Delivered"},
    {"Shipped", "Failed"},    {"Failed", "Pending"},    {"Failed", "Cancelled"},
};

static int listed(const edge_t *edges, size_t n, const char *from, const char *to)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(edges[i].from, from) == 0 && strcmp(edges[i].to, to) == 0)
            return 1;
    }
    return 0;
}

/* Checks every ordered pair: same, allowed if listed, refused otherwise. */
static void check_kind(int kind, const char *const *values, size_t nvalues, const edge_t *edges,
                       size_t nedges)
{
    size_t i, j, allowed = 0;

    for (i = 0; i < nvalues; i++) {
        CHECK(valid(kind, values[i]) == 1);
        for (j = 0; j < nvalues; j++) {
            int rc = transition(kind, values[i], values[j]);
            int want = i == j ? OS_TRANSITION_SAME
                              : listed(edges, nedges, values[i], values[j]) ? OS_TRANSITION_ALLOWED
                                                                            : OS_TRANSITION_REFUSED;
            if (rc != want)
                fprintf(stderr, "  kind %d: %s -> %s gave %d, want %d\n", kind, values[i], values[j],
                        rc, want);
            CHECK(rc == want);
            allowed += rc == OS_TRANSITION_ALLOWED;
        }
    }
    /* Catches a misspelt edge in the lists above, which would otherwise go unchecked. */
    CHECK(allowed == nedges);
}

static void test_tables(void)
{
    check_kind(OS_STATUS_ORDER, order_values, NELEM(order_values), order_allowed,
               NELEM(order_allowed));
    check_kind(OS_STATUS_PAYMENT, payment_values, NELEM(payment_values), payment_allowed,
               NELEM(payment_allowed));
    check_kind(OS_STATUS_SHIPPING, shipping_values, NELEM(shipping_values), shipping_allowed,
               NELEM(shipping_allowed));
}

static void test_final_states(void)
{
    size_t i;

    for (i = 0; i < NELEM(order_values); i++) {
        if (strcmp(order_values[i], "DELIVERED") != 0)
            CHECK(transition(OS_STATUS_ORDER, "DELIVERED", order_values[i]) == OS_TRANSITION_REFUSED);
        if (strcmp(order_values[i], "CANCELLED") != 0)
            CHECK(transition(OS_STATUS_ORDER, "CANCELLED", order_values[i]) == OS_TRANSITION_REFUSED);
    }
    CHECK(transition(OS_STATUS_PAYMENT, "REFUNDED", "PAID") == OS_TRANSITION_REFUSED);
    CHECK(transition(OS_STATUS_PAYMENT, "FAILED", "PAID") == OS_TRANSITION_REFUSED);
    CHECK(transition(OS_STATUS_SHIPPING, "Delivered", "Failed") == OS_TRANSITION_REFUSED);
    CHECK(transition(OS_STATUS_SHIPPING, "Cancelled", "Pending") == OS_TRANSITION_REFUSED);
}

static void test_unknown_values(void)
{
    /* Case matters, and each kind has its own vocabulary. */
    CHECK(valid(OS_STATUS_ORDER, "pending") == 0);
    CHECK(valid(OS_STATUS_ORDER, "Shipped") == 0);
    CHECK(valid(OS_STATUS_ORDER, "PAID") == 0);
    CHECK(valid(OS_STATUS_PAYMENT, "CONFIRMED") == 0);
    CHECK(valid(OS_STATUS_SHIPPING, "SHIPPED") == 0);
    CHECK(valid(OS_STATUS_SHIPPING, "UNKNOWN") == 0);
    CHECK(valid(OS_STATUS_ORDER, "") == 0);
    CHECK(valid(OS_STATUS_ORDER, "PENDING ") == 0);
    CHECK(valid(OS_STATUS_ORDER, "PENDINGX") == 0);
    CHECK(valid(OS_STATUS_ORDER, "PEND") == 0);
    CHECK(os_status_valid(OS_STATUS_ORDER, NULL, 0) == 0);
    CHECK(valid(-1, "PENDING") == 0);
    CHECK(valid(3, "PENDING") == 0);

    /* An unknown `to`, or a bad kind, is the caller's mistake (400). */
    CHECK(transition(OS_STATUS_ORDER, "PENDING", "pending") == OS_TRANSITION_UNKNOWN);
    CHECK(transition(OS_STATUS_ORDER, "PENDING", "PAID") == OS_TRANSITION_UNKNOWN);
    CHECK(transition(OS_STATUS_ORDER, "PENDING", "") == OS_TRANSITION_UNKNOWN);
    CHECK(transition(OS_STATUS_SHIPPING, "Pending", "SHIPPED") == OS_TRANSITION_UNKNOWN);
    CHECK(transition(OS_STATUS_ORDER, "legacy", "nonsense") == OS_TRANSITION_UNKNOWN);
    CHECK(transition(-1, "PENDING", "CONFIRMED") == OS_TRANSITION_UNKNOWN);
    CHECK(transition(3, "PENDING", "PENDING") == OS_TRANSITION_UNKNOWN);
    CHECK(os_status_transition(OS_STATUS_ORDER, "PENDING", 7, NULL, 0) == OS_TRANSITION_UNKNOWN);

    /* An unknown `from` is legacy data: refused (409), whatever the target. */
    CHECK(transition(OS_STATUS_ORDER, "NEW", "CONFIRMED") == OS_TRANSITION_REFUSED);
    CHECK(transition(OS_STATUS_ORDER, "pending", "PENDING") == OS_TRANSITION_REFUSED);
    CHECK(transition(OS_STATUS_ORDER, "", "CANCELLED") == OS_TRANSITION_REFUSED);
    CHECK(transition(OS_STATUS_SHIPPING, "In transit", "Delivered") == OS_TRANSITION_REFUSED);
    CHECK(os_status_transition(OS_STATUS_ORDER, NULL, 0, "PENDING", 7) == OS_TRANSITION_REFUSED);
}

static void test_respects_len(void)
{
    const char *s = "CONFIRMEDxyz";

    CHECK(os_status_valid(OS_STATUS_ORDER, s, 9) == 1);
    CHECK(os_status_valid(OS_STATUS_ORDER, s, 10) == 0);
    CHECK(os_status_valid(OS_STATUS_ORDER, s, 4) == 0);
    CHECK(os_status_transition(OS_STATUS_ORDER, "PENDING!", 7, s, 9) == OS_TRANSITION_ALLOWED);
    CHECK(os_status_transition(OS_STATUS_ORDER, s, 9, "CONFIRMED?", 9) == OS_TRANSITION_SAME);
}

static int maps_to(const char *order_status, const char *want)
{
    char *p = dup_exact(order_status);
    const char *got = os_status_shipping_for_order(p, strlen(order_status));

    free(p);
    if (want == NULL)
        return got == NULL;
    return got != NULL && strcmp(got, want) == 0 && os_status_valid(OS_STATUS_SHIPPING, got, strlen(got));
}

static void test_shipping_for_order(void)
{
    CHECK(maps_to("SHIPPED", "Shipped"));
    CHECK(maps_to("DELIVERED", "Delivered"));
    CHECK(maps_to("PENDING", NULL));
    CHECK(maps_to("CONFIRMED", NULL));
    CHECK(maps_to("CANCELLED", "Cancelled"));
    CHECK(maps_to("Shipped", NULL));
    CHECK(maps_to("shipped", NULL));
    CHECK(maps_to("", NULL));
    CHECK(os_status_shipping_for_order(NULL, 0) == NULL);
    CHECK(os_status_shipping_for_order("SHIPPEDxx", 7) != NULL);
    /* Static strings: the same pointer every time, nothing to free. */
    CHECK(os_status_shipping_for_order("SHIPPED", 7) == os_status_shipping_for_order("SHIPPED", 7));
}

int main(void)
{
    test_tables();
    test_final_states();
    test_unknown_values();
    test_respects_len();
    test_shipping_for_order();

    return check_summary();
}
