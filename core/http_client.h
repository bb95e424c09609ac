/*
 * http_client.h - downstream HTTP/1.1 calls from a task, on the worker's event loop.
 */
#ifndef OS_HTTP_CLIENT_H
#define OS_HTTP_CLIENT_H

#include "task.h"
#include "worker.h"

typedef struct os_http_pools os_http_pools_t;

/** Creates the worker's keep-alive connection pools (one per host:port, made on first use). */
os_http_pools_t *os_http_pools_create(os_worker_t *worker);
/** Releases what the finishing task holds (a response body). */
void os_http_task_done(os_task_t *task);

#endif
