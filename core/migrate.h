/*
 * migrate.h - apply sql/migrations and load the legacy seed (see migrate.c).
 *
 * Blocking libpq: for the CLI (`orderservice migrate`, `orderservice seed`) and for start-up
 * before any worker runs. Never call these from a request path or an event loop.
 */
#ifndef OS_MIGRATE_H
#define OS_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

/* Advisory-lock key ("OSMIGRAT" as a big-endian int64) held while migrations run. */
#define OS_MIGRATE_LOCK_KEY "5715997329187815764"

/** Apply every dir/NNNN_*.sql not yet in schema_migrations, in name order, each in its own
 *  transaction; *applied_out = how many were applied. 0 ok, -1 error (message in err). */
int os_migrate_run(PGconn *conn, const char *dir, int *applied_out, char *err, size_t errlen);

/** Load seed_dir/eci_orders.csv and eci_order_items.csv if ordersapp_order is empty (else load
 *  nothing); *orders_out / *items_out = rows loaded. 0 ok, -1 error (message in err). */
int os_seed_run(PGconn *conn, const char *seed_dir, int *orders_out, int *items_out, char *err,
                size_t errlen);

#endif
