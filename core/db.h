/*
 * db.h - the per-worker PostgreSQL pool driven by the worker's event loop.
 */
#ifndef OS_DB_H
#define OS_DB_H

#include <stddef.h>

#include "task.h"
#include "worker.h"

typedef struct os_db_stats {
    size_t size, connected, busy, waiting;
} os_db_stats_t;

/** Creates worker's pool and starts connecting (never blocks; failures are retried with backoff). setting names
 *  the URL's variable in messages; replica marks a read replica's pool. NULL and a message in err when conninfo
 *  does not parse. */
os_db_pool_t *os_db_pool_create(os_worker_t *worker, const char *setting, int replica, const char *conninfo,
                                size_t size, char *err, size_t errlen);
/** Whether conninfo (the value of setting) parses into connection targets: 0, or -1 with the reason in err. */
int os_db_url_check(const char *setting, const char *conninfo, char *err, size_t errlen);
/** Closes every connection (only once the worker's loop has stopped). */
void os_db_pool_destroy(os_db_pool_t *pool);
/** os_db_query on a given pool (the primary's or the replica's); a task inside a transaction may use only the
 *  primary. */
int os_db_query_pool(os_db_pool_t *pool, os_task_t *task, const char *name, const char *sql, int nparams,
                     const char *const *params);
/** Current pool occupancy, for metrics. */
void os_db_pool_stats(const os_db_pool_t *pool, os_db_stats_t *out);

#endif
