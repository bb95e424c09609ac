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

/** Creates worker's pool and starts connecting (never blocks; failures are retried with backoff). */
os_db_pool_t *os_db_pool_create(os_worker_t *worker, const char *conninfo, size_t size);
/** Closes every connection; tasks still waiting are resumed with OS_EUNAVAILABLE. */
void os_db_pool_destroy(os_db_pool_t *pool);
/** Releases whatever the finishing task holds (a pinned connection inside a transaction is discarded). */
void os_db_task_done(os_task_t *task);
/** Current pool occupancy, for metrics. */
void os_db_pool_stats(const os_db_pool_t *pool, os_db_stats_t *out);

#endif
