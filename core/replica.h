/*
 * replica.h - each worker's read replica (DATABASE_READ_URL) and whether reads may go to it
 * (published as worker->read_db: the pool reads may use now, or NULL).
 */
#ifndef OS_REPLICA_H
#define OS_REPLICA_H

#include <stddef.h>

#include "worker.h"

typedef struct os_replica os_replica_t;

/** Creates worker's replica pool and starts probing its lag (never blocks). NULL and a message in err when
 *  conninfo does not parse. */
os_replica_t *os_replica_create(os_worker_t *worker, const char *conninfo, size_t size, char *err, size_t errlen);
/** Stops probing and abandons a probe in flight (on the worker's thread, as its loop ends). */
void os_replica_stop(os_replica_t *replica);
/** Closes the replica's connections (only once the worker's loop has stopped). */
void os_replica_destroy(os_replica_t *replica);

#endif
