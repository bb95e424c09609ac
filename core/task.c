/*
 * task.c - owns the life of a task's waits: beginning an operation, its one completion,
 * its cancellation when the task is freed, and the resume deferred to the event loop.
 *
 * A resume cannot happen while Lua runs on the worker (re-entering the VM from a C function
 * the FFI called is not allowed), so a completion that arrives then (a pool hand-over from
 * an unpin, a connection failing inside an FFI call) becomes the task's next wait: the
 * RESUME operation, a zero-delay timer that the loop fires. Because it is an operation like
 * any other, freeing the task cancels it and it cannot be armed twice.
 */
#include "task.h"
#include "ffi.h"
#include "log.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t stale_completions; /* per process; only diagnostics read it */
#ifdef NDEBUG
int os_task_abort_on_stale = 0;
#else
int os_task_abort_on_stale = 1;
#endif

uint64_t os_task_stale_completions(void)
{
    return __atomic_load_n(&stale_completions, __ATOMIC_RELAXED);
}

static void on_sleep_timer(os_timer_t *timer)
{
    os_task_t *task = H2O_STRUCT_FROM_MEMBER(os_task_t, sleep_timer, timer);
    os_op_complete(&task->sleep_op, OS_OK);
}

static void cancel_sleep(os_op_t *op)
{
    os_task_t *task = H2O_STRUCT_FROM_MEMBER(os_task_t, sleep_op, op);
    os_timer_stop(&task->worker->timers, &task->sleep_timer);
}

static void on_resume_timer(os_timer_t *timer)
{
    os_task_t *task = H2O_STRUCT_FROM_MEMBER(os_task_t, resume_timer, timer);
    os_op_complete(&task->resume_op, task->resume_status);
}

static void cancel_resume(os_op_t *op)
{
    os_task_t *task = H2O_STRUCT_FROM_MEMBER(os_task_t, resume_op, op);
    os_timer_stop(&task->worker->timers, &task->resume_timer);
}

void os_task_init(os_task_t *task, os_worker_t *worker, os_task_resume_cb resume)
{
    task->worker = worker;
    task->resume = resume;
    task->op = NULL;
    for (int i = 0; i < OS_TASK_EXT_MAX; i++)
        task->ext[i] = NULL;
    task->sleep_op = (os_op_t){NULL, OS_OP_SLEEP, cancel_sleep};
    task->resume_op = (os_op_t){NULL, OS_OP_RESUME, cancel_resume};
    os_timer_init(&task->sleep_timer, on_sleep_timer);
    os_timer_init(&task->resume_timer, on_resume_timer);
    task->cancelled = 0;
    task->error[0] = '\0';
}

void os_op_begin(os_task_t *task, os_op_t *op, int kind, os_op_cancel_cb cancel)
{
    assert(task->op == NULL && "a task waits on one operation at a time");
    assert(op->task == NULL && "an operation is begun once per wait");
    op->task = task;
    op->kind = kind;
    op->cancel = cancel;
    task->op = op;
}

void os_op_complete(os_op_t *op, int status)
{
    os_task_t *task = op->task;
    if (task == NULL || task->op != op) {
        /* Completed already, cancelled, or never begun: resuming now would run the
         * coroutine inside a wait it is not in. */
        __atomic_add_fetch(&stale_completions, 1, __ATOMIC_RELAXED);
        os_log(OS_LOG_ERROR, "ignored a completion of an operation (kind %d) the task is not waiting on", op->kind);
        if (os_task_abort_on_stale)
            abort();
        return;
    }
    op->task = NULL;
    task->op = NULL;
    if (task->worker->in_lua) {
        task->resume_status = status;
        os_op_begin(task, &task->resume_op, OS_OP_RESUME, cancel_resume);
        os_timer_start(&task->worker->timers, &task->resume_timer, 0);
        return;
    }
    task->resume(task, status);
}

void os_task_cancel(os_task_t *task)
{
    os_op_t *op = task->op;
    if (task->cancelled)
        return;
    task->cancelled = 1;
    if (op == NULL || op == &task->resume_op)
        return; /* running (or about to): its next wait fails instead */
    /* The resume goes through the loop, never from here (the caller is h2o disposing the
     * request); armed first, so that without a timer the wait simply runs to its end. */
    if (os_timer_start(&task->worker->timers, &task->resume_timer, 0) != 0)
        return;
    op->task = NULL;
    task->op = NULL;
    op->cancel(op);
    os_task_set_error(task, "client gone");
    task->resume_status = OS_ECANCELED;
    os_op_begin(task, &task->resume_op, OS_OP_RESUME, cancel_resume);
}

int os_task_check_cancelled(os_task_t *task)
{
    if (!task->cancelled)
        return OS_OK;
    os_task_set_error(task, "client gone");
    return OS_ECANCELED;
}

void os_task_dispose(os_task_t *task)
{
    os_op_t *op = task->op;
    if (op != NULL) {
        op->task = NULL;
        task->op = NULL;
        op->cancel(op);
    }
    for (int i = 0; i < OS_TASK_EXT_MAX; i++) {
        os_task_ext_t *ext = task->ext[i];
        task->ext[i] = NULL;
        if (ext != NULL)
            ext->done(ext);
    }
    assert(task->op == NULL && "a done callback must not start a wait");
}

void os_task_set_error(os_task_t *task, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(task->error, sizeof(task->error), fmt, ap);
    va_end(ap);
}

/* ---- FFI ---- */

const char *os_task_error(os_task_t *task)
{
    return task->error;
}

int os_task_sleep(os_task_t *task, int64_t ms)
{
    if (task->op != NULL) {
        os_task_set_error(task, "task is already waiting");
        return OS_ESTATE;
    }
    if (task->cancelled)
        return os_task_check_cancelled(task);
    if (os_timer_start(&task->worker->timers, &task->sleep_timer, ms > 0 ? (uint64_t)ms : 0) != 0) {
        os_task_set_error(task, "out of memory");
        return OS_ERR;
    }
    os_op_begin(task, &task->sleep_op, OS_OP_SLEEP, cancel_sleep);
    return OS_OK;
}

int os_task_wake(os_task_t *task)
{
    /* Only a sleep is ended early: any other wait (a query, a call) must complete on its own. */
    if (task->op != &task->sleep_op)
        return 0;
    os_timer_stop(&task->worker->timers, &task->sleep_timer);
    os_op_complete(&task->sleep_op, OS_OK); /* deferred to the loop when Lua is running */
    return 1;
}

int64_t os_monotonic_us(void)
{
    return (int64_t)os_clock_us();
}

int64_t os_monotonic_ms(void)
{
    return (int64_t)os_clock_ms();
}
