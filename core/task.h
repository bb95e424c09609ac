/*
 * task.h - a task (a request's or a job's coroutine) and the one operation it may wait on.
 *
 * Every wait is an operation (os_op_t) owned by the task: a timer, a pool acquire, a query,
 * a downstream call, a resume deferred to the loop. The subsystem that starts a wait fills
 * an os_op_t it owns (embedded in its own per-task state) with a cancel callback and calls
 * os_op_begin(). It ends the wait through the single entry point os_op_complete(), which
 * completes an operation only if it is the one the task currently waits on, and only once.
 * Freeing a task calls the current operation's cancel callback (whoever made the task wait
 * says how to abandon the wait), then each subsystem's per-task state is released through
 * its own done callback (os_task_ext_t): nobody frees another subsystem's state.
 *
 * The host (luahost.c) creates tasks with a resume callback that re-enters the coroutine;
 * this file never sees Lua, libpq or h2o's HTTP client.
 */
#ifndef OS_TASK_H
#define OS_TASK_H

#include <stdint.h>

#include "timer.h"
#include "worker.h"

typedef struct os_task os_task_t;
typedef struct os_op os_op_t;

/** What a task waits on (for assertions and debugging). */
enum os_op_kind {
    OS_OP_NONE = 0,
    OS_OP_SLEEP,
    OS_OP_DB,     /* queued for a connection, then a query on it */
    OS_OP_HTTP,   /* a downstream call */
    OS_OP_RESUME, /* completed while Lua ran; the loop resumes the task */
    OS_OP_TEST,   /* unit tests */
};

/** Abandons the wait (stop its timer, unlink it from a queue, cancel the client): called at most once. */
typedef void (*os_op_cancel_cb)(os_op_t *op);

struct os_op {
    os_task_t *task; /* set while the op is the task's current wait; NULL once completed or cancelled */
    int kind;
    os_op_cancel_cb cancel;
};

/** A subsystem's per-task state, released by its done callback when the task is freed. */
typedef struct os_task_ext os_task_ext_t;
struct os_task_ext {
    void (*done)(os_task_ext_t *ext);
};
enum { OS_TASK_EXT_DB, OS_TASK_EXT_HTTP, OS_TASK_EXT_MAX };

/** Called to re-enter the task's coroutine with an operation's final status. */
typedef void (*os_task_resume_cb)(os_task_t *task, int status);

struct os_task {
    os_worker_t *worker;
    os_task_resume_cb resume; /* the host's: runs the coroutine (and may free the task) */
    os_op_t *op;              /* the operation the task waits on; NULL while it runs */
    os_task_ext_t *ext[OS_TASK_EXT_MAX];
    /* the sleep and the deferred resume are this file's own operations */
    os_op_t sleep_op;
    os_timer_t sleep_timer;
    os_op_t resume_op;
    os_timer_t resume_timer;
    int resume_status;
    int cancelled; /* the client went away: the current wait was abandoned; new ones fail (OS_ECANCELED) */
    char error[256];
};

/** Prepares task (memory owned by the caller, usually embedded in the host's task). */
void os_task_init(os_task_t *task, os_worker_t *worker, os_task_resume_cb resume);
/** Cancels the current operation and releases every subsystem's per-task state; the caller then frees the memory. */
void os_task_dispose(os_task_t *task);
/** Makes op the task's current wait; the task must not be waiting already (asserted). */
void os_op_begin(os_task_t *task, os_op_t *op, int kind, os_op_cancel_cb cancel);
/** Ends op with status: resumes its task if op is its current wait, else ignores it (a stale or double completion). */
void os_op_complete(os_op_t *op, int status);
/** Whether op is the task's current wait. */
static inline int os_op_pending(const os_op_t *op) { return op->task != NULL; }
/** The client went away: abandons the task's current wait (its cancel callback), which then
 * ends with OS_ECANCELED through the loop, and makes every later wait fail at once with
 * OS_ECANCELED, so the coroutine unwinds without more work. A pending resume is left alone
 * (the task runs next anyway). Only for tasks whose work may be abandoned (luahost.c: safe methods). */
void os_task_cancel(os_task_t *task);
/** For a subsystem starting a wait: OS_ECANCELED (with the error set) when the task was cancelled, else OS_OK. */
int os_task_check_cancelled(os_task_t *task);
/** Records an error message for the Lua side to read with os_task_error(). */
void os_task_set_error(os_task_t *task, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Completions that were ignored because their operation was not the current wait (tests and diagnostics). */
uint64_t os_task_stale_completions(void);
/** In debug builds a stale completion aborts unless this is set to 0 (the unit tests provoke them). */
extern int os_task_abort_on_stale;

#endif
