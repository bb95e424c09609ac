/*
 * order_rules.h - constants of core/order_rules.c. The functions themselves
 * are declared in ffi.h because the Lua handlers call them.
 */
#ifndef OS_ORDER_RULES_H
#define OS_ORDER_RULES_H

#include "ffi.h"

/* The `kind` argument: which status column a value belongs to. */
#define OS_STATUS_ORDER 0    /* orders.order_status */
#define OS_STATUS_PAYMENT 1  /* orders.payment_status */
#define OS_STATUS_SHIPPING 2 /* orders.shipping_status */

/* Results of os_status_transition and the HTTP status each maps to. */
#define OS_TRANSITION_UNKNOWN (-1) /* `to` not a value of kind, or bad kind: 400 */
#define OS_TRANSITION_REFUSED 0    /* not allowed from the current value: 409 */
#define OS_TRANSITION_ALLOWED 1
#define OS_TRANSITION_SAME 2       /* from == to: a no-op, not an error */

#endif
