/* test_task.c - the operation lifecycle: one completion per wait, stale completions ignored,
 * deferred resumes that neither double nor outlive their task, and freeing a task cancels
 * its wait (timer stopped, queue entry unlinked). */
#include "task.h"
#include "ffi.h"

#include <string.h>

#include "check.h"

static os_worker_t worker;
static int resumes, last_status;

static void on_resume(os_task_t *task, int status)
{
    (void)task;
    resumes++;
    last_status = status;
}

/* A wait of the kind a pool makes: an entry in a queue, and a cancel that unlinks it. */
typedef struct queued {
    os_op_t op;
    h2o_linklist_t link;
    int cancelled;
} queued_t;

static h2o_linklist_t queue;

static void cancel_queued(os_op_t *op)
{
    queued_t *q = H2O_STRUCT_FROM_MEMBER(queued_t, op, op);
    h2o_linklist_unlink(&q->link);
    q->cancelled++;
}

static void begin_queued(os_task_t *task, queued_t *q)
{
    memset(q, 0, sizeof(*q));
    os_op_begin(task, &q->op, OS_OP_TEST, cancel_queued);
    h2o_linklist_insert(&queue, &q->link);
}

/* Completes q the way a subsystem does: off the queue first, then the one entry point. */
static void complete_queued(queued_t *q, int status)
{
    if (h2o_linklist_is_linked(&q->link))
        h2o_linklist_unlink(&q->link);
    os_op_complete(&q->op, status);
}

static int ext_done_calls;
static void ext_done(os_task_ext_t *ext)
{
    (void)ext;
    ext_done_calls++;
}

int main(void)
{
    os_task_t task;
    queued_t a, b;
    h2o_linklist_init_anchor(&queue);
    os_task_abort_on_stale = 0; /* this test provokes stale completions on purpose */

    /* A completion resumes once; the same operation completed again is ignored. */
    os_task_init(&task, &worker, on_resume);
    begin_queued(&task, &a);
    CHECK(task.op == &a.op);
    complete_queued(&a, OS_ETIMEDOUT);
    CHECK(resumes == 1 && last_status == OS_ETIMEDOUT);
    CHECK(task.op == NULL);
    uint64_t stale = os_task_stale_completions();
    os_op_complete(&a.op, OS_OK);
    CHECK(resumes == 1);
    CHECK(os_task_stale_completions() == stale + 1);

    /* A stale completion (of the previous wait) does not resume the task's current wait. */
    begin_queued(&task, &b);
    os_op_complete(&a.op, OS_EUNAVAILABLE);
    CHECK(resumes == 1);
    CHECK(task.op == &b.op);
    complete_queued(&b, OS_OK);
    CHECK(resumes == 2 && last_status == OS_OK);
    os_task_dispose(&task);

    /* A completion while Lua runs becomes a deferred resume: exactly one, from the loop. */
    resumes = 0;
    os_task_init(&task, &worker, on_resume);
    begin_queued(&task, &a);
    worker.in_lua = 1;
    complete_queued(&a, OS_ERR);
    complete_queued(&a, OS_OK); /* a second completion must not arm a second resume */
    CHECK(resumes == 0);
    CHECK(task.op == &task.resume_op);
    CHECK(worker.timers.len == 1);
    worker.in_lua = 0;
    os_timers_run(&worker.timers);
    CHECK(resumes == 1 && last_status == OS_ERR);
    CHECK(worker.timers.len == 0);
    os_timers_run(&worker.timers);
    CHECK(resumes == 1);

    /* Freeing a task with a deferred resume armed cancels it. */
    begin_queued(&task, &a);
    worker.in_lua = 1;
    complete_queued(&a, OS_OK);
    worker.in_lua = 0;
    CHECK(worker.timers.len == 1);
    os_task_dispose(&task);
    CHECK(worker.timers.len == 0);
    os_timers_run(&worker.timers);
    CHECK(resumes == 1);

    /* Freeing a task that sleeps stops its timer. */
    os_task_init(&task, &worker, on_resume);
    CHECK(os_task_sleep(&task, 10000) == OS_OK);
    CHECK(os_task_sleep(&task, 1) == OS_ESTATE); /* one wait at a time */
    CHECK(worker.timers.len == 1 && task.op == &task.sleep_op);
    os_task_dispose(&task);
    CHECK(worker.timers.len == 0 && task.op == NULL);

    /* Freeing a task that waits in a queue unlinks it; nobody can complete it afterwards. */
    os_task_init(&task, &worker, on_resume);
    begin_queued(&task, &a);
    os_task_dispose(&task);
    CHECK(a.cancelled == 1);
    CHECK(h2o_linklist_is_empty(&queue));
    stale = os_task_stale_completions();
    os_op_complete(&a.op, OS_OK);
    CHECK(resumes == 1);
    CHECK(os_task_stale_completions() == stale + 1);

    /* Subsystems' per-task state is released by their own done callbacks, once. */
    os_task_ext_t ext = {ext_done};
    os_task_init(&task, &worker, on_resume);
    task.ext[OS_TASK_EXT_DB] = &ext;
    os_task_dispose(&task);
    os_task_dispose(&task);
    CHECK(ext_done_calls == 1);

    /* A sleep that elapses completes through the same entry point. */
    os_task_init(&task, &worker, on_resume);
    CHECK(os_task_sleep(&task, 0) == OS_OK);
    os_timers_run(&worker.timers);
    CHECK(resumes == 2 && last_status == OS_OK && task.op == NULL);
    os_task_dispose(&task);

    /* A wake ends a sleep early (its timer stopped), and touches no other wait. */
    os_task_init(&task, &worker, on_resume);
    CHECK(os_task_sleep(&task, 10000) == OS_OK);
    CHECK(os_task_wake(&task) == 1);
    CHECK(resumes == 3 && last_status == OS_OK && task.op == NULL && worker.timers.len == 0);
    CHECK(os_task_wake(&task) == 0);
    begin_queued(&task, &a);
    CHECK(os_task_wake(&task) == 0 && task.op == &a.op);
    complete_queued(&a, OS_OK);
    CHECK(resumes == 4);
    /* woken while Lua runs: the resume is deferred to the loop, like any completion */
    CHECK(os_task_sleep(&task, 10000) == OS_OK);
    worker.in_lua = 1;
    CHECK(os_task_wake(&task) == 1);
    worker.in_lua = 0;
    CHECK(resumes == 4 && task.op == &task.resume_op);
    os_timers_run(&worker.timers);
    CHECK(resumes == 5 && task.op == NULL);
    os_task_dispose(&task);

    os_timers_dispose(&worker.timers);
    return check_summary();
}
