/*
 * worker.h - what one worker thread owns: its h2o context and event loop, its listener,
 * its timers, its LuaJIT VM and its database pool. Nothing here is shared between
 * workers except the metrics slots, which other threads only read.
 */
#ifndef OS_WORKER_H
#define OS_WORKER_H

#include <h2o.h>
#include <pthread.h>

#include "timer.h"

typedef struct os_vm os_vm_t;
typedef struct os_db_pool os_db_pool_t;
typedef struct os_metrics os_metrics_t;
typedef struct os_http_pools os_http_pools_t;
typedef struct os_replica os_replica_t;

typedef struct os_worker {
    int id;
    pthread_t thread;
    h2o_context_t ctx; /* ctx.loop is this worker's event loop */
    h2o_accept_ctx_t accept_ctx;
    int listen_fd;
    h2o_socket_t *listener;
    os_timers_t timers;
    os_timer_t tick;
    os_vm_t *vm;        /* the current VM generation; new requests start here */
    uint64_t vm_generation; /* the reload generation vm was built for */
    /* reload.c's: a VM built for a newer generation, kept aside until every worker has built
     * it; the newest generation built (vm's or next_vm's) and the files it was built from; the
     * newest generation tried. */
    os_vm_t *next_vm;
    uint64_t built_generation;
    uint64_t built_fingerprint;
    uint64_t tried_generation;
    os_db_pool_t *db;   /* NULL when DATABASE_URL is not set */
    os_replica_t *replica; /* NULL when DATABASE_READ_URL is not set */
    /* replica.c's verdict, which db.c's read path follows: the replica's pool while reads may
     * go there (up and within READ_MAX_LAG_MS), else NULL. */
    os_db_pool_t *read_db;
    os_metrics_t *metrics;
    os_http_pools_t *http;
    size_t tasks_running;
    size_t jobs_running;    /* background job runners (one per VM generation) and the tasks they spawned */
    size_t connections;     /* HTTP connections open, for the shutdown drain */
    int in_lua; /* a coroutine of this worker is running (so resumes must wait) */
    uint64_t stop_deadline_ms; /* 0 until shutdown begins */
    int exit_status;
} os_worker_t;

/** The worker running on the calling thread, or NULL outside workers. */
os_worker_t *os_worker_current(void);
/** Records worker as the calling thread's (once, as the worker thread starts). */
void os_worker_set_current(os_worker_t *worker);

#endif
