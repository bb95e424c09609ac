/*
 * order_rules.c - the status vocabularies of an order and the moves between them.
 *
 * Owns the three status columns (order, payment, shipping): which values exist
 * and which changes are allowed. Each is one table below, so changing a rule
 * means editing a row, and a reviewer can check the whole state machine at a
 * glance. Values compare byte for byte, case included: they are stored as-is,
 * and shipping values are spelt in mixed case ("Shipped") unlike the other two,
 * so folding case would let "SHIPPED" through as a shipping status.
 */
#include <string.h>

#include "order_rules.h"

#define BIT(i) (1u << (i))

typedef struct st_os_vocab_t {
    const char *const *names;
    const unsigned *next; /* next[i] has BIT(j) set when names[i] -> names[j] is allowed */
    int count;
} os_vocab_t;

enum { O_PENDING, O_CONFIRMED, O_SHIPPED, O_DELIVERED, O_CANCELLED, O_COUNT };
static const char *const order_names[O_COUNT] = {
    [O_PENDING] = "PENDING",     [O_CONFIRMED] = "CONFIRMED", [O_SHIPPED] = "SHIPPED",
    [O_DELIVERED] = "DELIVERED", [O_CANCELLED] = "CANCELLED",
};
static const unsigned order_next[O_COUNT] = {
    [O_PENDING] = BIT(O_CONFIRMED) | BIT(O_CANCELLED),
    [O_CONFIRMED] = BIT(O_SHIPPED) | BIT(O_CANCELLED),
    [O_SHIPPED] = BIT(O_DELIVERED),
};

enum { P_PENDING, P_PAID, P_FAILED, P_REFUNDED, P_COUNT };
static const char *const payment_names[P_COUNT] = {
    [P_PENDING] = "PENDING", [P_PAID] = "PAID", [P_FAILED] = "FAILED", [P_REFUNDED] = "REFUNDED",
};
static const unsigned payment_next[P_COUNT] = {
    [P_PENDING] = BIT(P_PAID) | BIT(P_FAILED),
    [P_PAID] = BIT(P_REFUNDED),
};

enum { S_PENDING, S_SHIPPED, S_DELIVERED, S_FAILED, S_UNKNOWN, S_CANCELLED, S_COUNT };
static const char *const shipping_names[S_COUNT] = {
    [S_PENDING] = "Pending", [S_SHIPPED] = "Shipped", [S_DELIVERED] = "Delivered",
    [S_FAILED] = "Failed",   [S_UNKNOWN] = "Unknown", [S_CANCELLED] = "Cancelled",
};
static const unsigned shipping_next[S_COUNT] = {
    [S_UNKNOWN] = BIT(S_PENDING) | BIT(S_SHIPPED) | BIT(S_DELIVERED) | BIT(S_FAILED) | BIT(S_CANCELLED),
    [S_PENDING] = BIT(S_SHIPPED) | BIT(S_FAILED) | BIT(S_CANCELLED),
    [S_SHIPPED] = BIT(S_DELIVERED) | BIT(S_FAILED),
    [S_FAILED] = BIT(S_PENDING) | BIT(S_CANCELLED),
};

static const os_vocab_t vocabs[] = {
    [OS_STATUS_ORDER] = {order_names, order_next, O_COUNT},
    [OS_STATUS_PAYMENT] = {payment_names, payment_next, P_COUNT},
    [OS_STATUS_SHIPPING] = {shipping_names, shipping_next, S_COUNT},
};

static const os_vocab_t *vocab_for(int kind)
{
    if (kind < 0 || (size_t)kind >= sizeof(vocabs) / sizeof(vocabs[0]))
        return NULL;
    return &vocabs[kind];
}

/* Returns the index of s in v, or -1. s need not be NUL-terminated. */
static int vocab_find(const os_vocab_t *v, const char *s, size_t len)
{
    int i;

    if (s == NULL)
        return -1;
    for (i = 0; i < v->count; i++) {
        if (strlen(v->names[i]) == len && memcmp(v->names[i], s, len) == 0)
            return i;
    }
    return -1;
}

int os_status_valid(int kind, const char *s, size_t len)
{
    const os_vocab_t *v = vocab_for(kind);

    return v != NULL && vocab_find(v, s, len) >= 0;
}

int os_status_transition(int kind, const char *from, size_t from_len, const char *to, size_t to_len)
{
    const os_vocab_t *v = vocab_for(kind);
    int f, t;

    if (v == NULL || (t = vocab_find(v, to, to_len)) < 0)
        return OS_TRANSITION_UNKNOWN;
    f = vocab_find(v, from, from_len);
    if (f == t)
        return OS_TRANSITION_SAME;
    /* An unknown `from` is legacy data: refuse rather than guess what it meant. */
    if (f < 0)
        return OS_TRANSITION_REFUSED;
    return (v->next[f] & BIT(t)) ? OS_TRANSITION_ALLOWED : OS_TRANSITION_REFUSED;
}

const char *os_status_shipping_for_order(const char *order_status, size_t len)
{
    switch (vocab_find(&vocabs[OS_STATUS_ORDER], order_status, len)) {
    case O_SHIPPED:
        return shipping_names[S_SHIPPED];
    case O_DELIVERED:
        return shipping_names[S_DELIVERED];
    case O_CANCELLED:
        return shipping_names[S_CANCELLED];
    default:
        return NULL;
    }
}
