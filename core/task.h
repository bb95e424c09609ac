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

enum os_task_wait {
    OS_WAIT_NONE = 0,
    OS_WAIT_SLEEP,
    OS_WAIT_DB_ACQUIRE, /* queued for a connection */
    OS_WAIT_DB_QUERY,   /* query in flight on task->conn */
};

typedef struct os_task {
    os_worker_t *worker;
    os_vm_t *vm;
    lua_State *co;
    int co_ref;
    h2o_req_t *req; /* NULL once the client has gone away */
    void *guard;    /* lives in req->pool; clears req when h2o disposes it */
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
    char error[256];

    /* set while an operation is being started, so that one completing at once is
     * returned by the start call instead of resuming a coroutine that is running */
    int starting;
    int has_early;
    int early_status;
} os_task_t;

/** Resumes the task's coroutine with status as yield's result; frees the task if it finished. */
void os_task_resume(os_task_t *task, int status);
/** Marks the start of an operation's start call. */
static inline void os_task_start_begin(os_task_t *task)
{
    task->starting = 1;
    task->has_early = 0;
}

/** Ends a start call: returns rc, or the status of an operation that already completed (OS_DONE for success). */
static inline int os_task_start_end(os_task_t *task, int rc)
{
    task->starting = 0;
    if (!task->has_early)
        return rc;
    task->wait = 0;
    return task->early_status == 0 ? 1 /* OS_DONE */ : task->early_status;
}

/** Records an error message for the Lua side to read with os_task_error(). */
void os_task_set_error(os_task_t *task, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
