/*
 * task.h - a request's coroutine and the one asynchronous operation it may be waiting on.
 *
 * A task is created for each request, runs its handler in a fresh coroutine, and is freed
 * when the coroutine has finished and no operation is in flight. Operations (a timer, a
 * database query, a downstream call) are started by a C function called through the FFI;
 * the Lua wrapper then yields, and the operation's completion calls os_task_resume() with
 * a status the wrapper receives as coroutine.yield()'s return value.
 */
#ifndef OS_TASK_H
#define OS_TASK_H

#include <h2o.h>
#include <libpq-fe.h>
#include <lua.h>

#include "timer.h"
#include "worker.h"

typedef struct os_db_conn os_db_conn_t;
typedef struct os_http_call os_http_call_t;

enum os_task_wait {
    OS_WAIT_NONE = 0,
    OS_WAIT_SLEEP,
    OS_WAIT_DB_ACQUIRE, /* queued for a connection */
    OS_WAIT_DB_QUERY,   /* query in flight on task->conn */
    OS_WAIT_HTTP,       /* downstream call in flight (task->http) */
    OS_WAIT_RESUME,     /* finished; resumed by the loop (os_task_resume) */
};

typedef struct os_task {
    os_worker_t *worker;
    os_vm_t *vm;
    lua_State *co;
    int co_ref;
    h2o_req_t *req; /* NULL once the client has gone away */
    void *guard;    /* lives in req->pool; clears req when h2o disposes it */
    int background; /* a job runner, not a request: not counted for the shutdown drain */
    uint64_t started_us;
    int wait;
    os_timer_t timer;

    /* database: the connection held for a query or a pinned transaction */
    os_db_conn_t *conn;
    int pinned;
    int pin_broken; /* the pinned connection died: fail until unpinned */
    int want_pin;
    h2o_linklist_t waiter_link;
    char *stmt_name; /* pending query, owned by the task until it completes */
    char *stmt_sql;
    int nparams;
    char **params;
    PGresult *result;
    /* downstream HTTP: the last call and its response */
    os_http_call_t *http;

    char error[256];

    int resume_status; /* for a resume deferred to the loop (see os_task_resume) */
} os_task_t;

/** Resumes the task's coroutine with status as yield's result; frees the task if it finished.
 *  Called while Lua runs on this worker (from inside an FFI call), it defers the resume to
 *  the event loop: re-entering the VM from a C function the FFI called is not allowed. */
void os_task_resume(os_task_t *task, int status);
/** Records an error message for the Lua side to read with os_task_error(). */
void os_task_set_error(os_task_t *task, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
