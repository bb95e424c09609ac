/*
 * http_client.h - downstream HTTP/1.1 calls from a task, on the worker's event loop.
 */
#ifndef OS_HTTP_CLIENT_H
#define OS_HTTP_CLIENT_H

#include "worker.h"

typedef struct os_http_pools os_http_pools_t;

/** Creates the worker's keep-alive connection pools (one per host:port, made on first use). */
os_http_pools_t *os_http_pools_create(os_worker_t *worker);

#endif
