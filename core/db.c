/*
 * db.c - owns each worker's PostgreSQL connections (DB_POOL_SIZE of them, DATABASE_URL,
 * DB_CONNECT_TIMEOUT_MS, DB_ACQUIRE_TIMEOUT_MS) and runs queries without ever blocking the worker.
 *
 * Connecting (db_connect.c): each connection goes through DATABASE_URL's targets and their
 * addresses without blocking, and after a failed round waits out a backoff (db_conn_down).
 *
 * Queries: a task asks for a query; it gets an idle connection or waits in a FIFO queue for at
 * most DB_ACQUIRE_TIMEOUT_MS (then OS_ETIMEDOUT). When no connection is even trying, it fails at
 * once with OS_EUNAVAILABLE. Statements are prepared once per connection under the name the
 * Lua side gives them, PREPARED_MAX at most: past those a held connection deallocates the least
 * recently used one first, and a pipeline sends the statement unnamed. Results are read only
 * while !PQisBusy, until PQgetResult says NULL.
 * A read outside a transaction goes to worker->read_db when replica.c has set it (the replica is
 * up and close enough), else to the primary.
 *
 * Pipelines (DB_PIPELINE_DEPTH > 0; off by default, since on a machine whose cores PostgreSQL
 * shares with the service a backend that never sleeps lengthens the latency tail: measured in
 * docs/benchmarks.md, "Pipelines"): most of PostgreSQL's cost per short statement is its
 * backend sleeping and waking for each one. A named read outside a transaction (os_db_read with
 * a db.statement: details, and lists, whose counts are bounded; a read never waits for a row
 * lock, which would hold up the statements behind it) therefore shares a connection: it goes
 * to the first connection already in libpq's pipeline mode with room (fewer than
 * DB_PIPELINE_DEPTH in flight), else takes an idle one and puts it in pipeline mode, else
 * queues like any other. Its backend then finds the next
 * statement already waiting when it finishes one. Each statement is sent with its own sync point
 * (PQpipelineSync), so an error aborts only that statement, and with its PQsendPrepare ahead of
 * it the first time on that connection. Results come back in the order sent and go to the tasks
 * through the connection's ring of entries (pipe_entry_t), read only while !PQisBusy. A drained
 * pipeline leaves pipeline mode and the connection is idle again. Unnamed SQL (which may run
 * long) and transactions still get a connection of their own: a pipeline is not idle until it
 * drains, and a waiter for a connection of its own at the head of the queue keeps every later
 * statement out of every pipeline, so the pipelines drain and it cannot starve.
 *
 * Ownership: the wait (queued, then the query) is the task's operation (task.h), completed
 * here exactly once; the per-task state (a held or pinned connection, the pending statement,
 * the last result) is this file's, released by its done callback when the task is freed.
 * A connection is held by at most one task (conn->holder <-> holder->conn, state BUSY), or
 * carries a pipeline (state CONN_PIPELINE, no holder; entry->task <-> task->entry). When a
 * connection dies, its holder is resumed only if it is waiting on that connection's query; a
 * task that merely has it pinned finds its transaction broken at its next query, and its
 * next transaction gets a fresh connection. Every statement in a dying pipeline fails
 * (OS_EUNAVAILABLE) and none is sent again: each may have run. A task that stops waiting on a
 * pipelined statement (freed, or its client gone) only leaves its entry: closing or cancelling
 * the connection would hit other tasks' statements; its result is read and dropped.
 */
#include "db_internal.h"
#include "config.h"
#include "ffi.h"
#include "log.h"
#include "metrics.h"
#include "random.h"
#include "task.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statements one connection keeps prepared: db.statement's fixed ones (about 40) and the list
 * shapes requests have asked for (each list shape's cached plans take ~200 KB of the backend's
 * memory). Past the cap, a held connection deallocates its least recently used statement to
 * prepare a new one; a pipeline runs a new one unnamed (query_start, pipe_send). */
#define PREPARED_MAX 64

static void query_start(os_db_conn_t *conn);

static void free_prepared(os_db_conn_t *conn)
{
    for (size_t i = 0; i < conn->nprepared; i++)
        free(conn->prepared[i].name);
    free(conn->prepared);
    conn->prepared = NULL;
    conn->nprepared = 0;
}

/* ---- a connection's holder ---- */

static void free_pending(db_task_t *dt)
{
    for (int i = 0; i < dt->nparams; i++)
        free(dt->params[i]);
    free(dt->params);
    free(dt->stmt_name);
    free(dt->stmt_sql);
    dt->params = NULL;
    dt->stmt_name = dt->stmt_sql = NULL;
    dt->nparams = 0;
}

static void hold(os_db_conn_t *conn, db_task_t *dt)
{
    assert(conn->state == CONN_IDLE && conn->holder == NULL && dt->conn == NULL);
    conn->holder = dt;
    dt->conn = conn;
    conn->state = CONN_BUSY;
}

static void unhold(os_db_conn_t *conn)
{
    assert(conn->holder != NULL && conn->holder->conn == conn);
    conn->holder->conn = NULL;
    conn->holder = NULL;
}

/* The holder gives the connection back: to the pool when its session is clean, else closed. */
static void release(os_db_conn_t *conn)
{
    unhold(conn);
    if (conn->step != STEP_NONE || PQtransactionStatus(conn->pg) != PQTRANS_IDLE) {
        /* A coroutine that finished inside a transaction leaves the session in an unknown state. */
        db_conn_down(conn, "released inside a transaction");
        return;
    }
    conn->state = CONN_IDLE;
    db_pool_hand_over(conn->pool, conn);
}

/* Forgets the session: libpq's connection, a pending result, the statements it had prepared.
 * The pipeline's entries stay for db_conn_down to fail one by one. */
static void conn_reset(os_db_conn_t *conn)
{
    db_close_pg(conn);
    PQclear(conn->pending);
    conn->pending = NULL;
    conn->state = CONN_DOWN;
    conn->step = STEP_NONE;
    conn->epoch++;
    free_prepared(conn);
}

/* Takes the oldest entry out of conn's pipeline; returns its task (NULL: nobody waits) and result. */
static db_task_t *pipe_pop(os_db_conn_t *conn, PGresult **result)
{
    pipe_entry_t *e = &conn->pipe[conn->pipe_head];
    db_task_t *dt = e->task;
    *result = e->result;
    free(e->preparing);
    memset(e, 0, sizeof(*e));
    conn->pipe_head = (conn->pipe_head + 1) % conn->pool->depth;
    conn->pipe_count--;
    if (dt != NULL) {
        dt->entry = NULL;
        dt->phase = PHASE_NONE;
    }
    return dt;
}

/* The connection broke or no target could be reached: close it, tell its holder, and retry later. */
void db_conn_down(os_db_conn_t *conn, const char *reason)
{
    os_db_pool_t *pool = conn->pool;
    char why[256]; /* reason may point into libpq's state, which PQfinish frees */
    snprintf(why, sizeof(why), "%.*s", (int)strcspn(reason, "\n"), reason);
    if (conn->state == CONN_IDLE || conn->state == CONN_BUSY || conn->state == CONN_PIPELINE)
        os_log(OS_LOG_WARN, "database connection lost: %s", why);
    else if (conn->backoff_ms == 0) /* once per outage, not at every retry */
        os_log(OS_LOG_WARN, "cannot connect to the database: %s", why);
    db_task_t *holder = conn->holder;
    if (holder != NULL)
        unhold(conn);
    os_timer_stop(&pool->worker->timers, &conn->connect_timer);
    if (conn->resolving != NULL) {
        h2o_hostinfo_getaddr_cancel(conn->resolving);
        conn->resolving = NULL;
    }
    conn_reset(conn);
    /* Jitter keeps the workers of all replicas from reconnecting in lockstep after an outage. */
    conn->backoff_ms = conn->backoff_ms ? conn->backoff_ms * 2 : 100;
    if (conn->backoff_ms > 5000)
        conn->backoff_ms = 5000;
    os_timer_start(&pool->worker->timers, &conn->retry_timer,
                   conn->backoff_ms / 2 + os_random_below(conn->backoff_ms / 2 + 1));
    /* Only a holder waiting on this connection's query is resumed; a pinned one that is doing
     * something else (or has a resume pending) learns at its next query. */
    if (holder != NULL && holder->phase == PHASE_QUERY && os_op_pending(&holder->op)) {
        holder->phase = PHASE_NONE;
        os_metrics_db_query(holder->stmt_name, holder->stmt_sql, os_clock_us() - holder->query_us, "");
        free_pending(holder);
        os_task_set_error(holder->task, "database unavailable: %s", why);
        os_op_complete(&holder->op, OS_EUNAVAILABLE);
    }
    /* Every statement in the pipeline may have run: each fails, none is sent again. One at a
     * time off the live ring, so a task freed by another's resume just leaves its entry. */
    while (conn->pipe_count > 0) {
        PGresult *res;
        db_task_t *dt = pipe_pop(conn, &res);
        PQclear(res);
        if (dt == NULL)
            continue;
        os_metrics_db_query(dt->stmt_name, dt->stmt_sql, os_clock_us() - dt->query_us, "");
        free_pending(dt);
        os_task_set_error(dt->task, "database unavailable: %s", why);
        os_op_complete(&dt->op, OS_EUNAVAILABLE);
    }
    /* Waiters would otherwise sit out their whole timeout behind a pool that is down. */
    for (size_t i = 0; i < pool->size; i++)
        if (pool->conns[i].state != CONN_DOWN)
            return;
    while (!h2o_linklist_is_empty(&pool->waiters)) {
        db_task_t *waiter = H2O_STRUCT_FROM_MEMBER(db_task_t, waiter_link, pool->waiters.next);
        h2o_linklist_unlink(&waiter->waiter_link);
        pool->nwaiting--;
        os_timer_stop(&pool->worker->timers, &waiter->acquire_timer);
        waiter->phase = PHASE_NONE;
        waiter->want_pin = 0;
        free_pending(waiter);
        os_task_set_error(waiter->task, "database unavailable: %s", why);
        os_op_complete(&waiter->op, OS_EUNAVAILABLE);
    }
}

/* ---- query execution on one connection ---- */

/* The index of name among conn's prepared statements, or -1. */
static int find_prepared(const os_db_conn_t *conn, const char *name)
{
    for (size_t i = 0; i < conn->nprepared; i++)
        if (strcmp(conn->prepared[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Whether name is prepared on conn; if so, it is being executed now (the LRU's use). */
static int use_prepared(os_db_conn_t *conn, const char *name)
{
    int i = find_prepared(conn, name);
    if (i < 0)
        return 0;
    conn->prepared[i].used = ++conn->uses;
    return 1;
}

static int remember_prepared(os_db_conn_t *conn, const char *name)
{
    prepared_t *list = realloc(conn->prepared, (conn->nprepared + 1) * sizeof(*list));
    char *copy = strdup(name);
    if (list != NULL)
        conn->prepared = list;
    if (list == NULL || copy == NULL) {
        free(copy);
        return -1; /* it will simply be prepared again next time */
    }
    conn->prepared[conn->nprepared++] = (prepared_t){copy, ++conn->uses};
    return 0;
}

static void forget_prepared_at(os_db_conn_t *conn, size_t i)
{
    free(conn->prepared[i].name);
    conn->prepared[i] = conn->prepared[--conn->nprepared];
}

/* A prepare sent in a pipeline failed: the next statement of that name prepares it again. */
static void forget_prepared(os_db_conn_t *conn, const char *name)
{
    int i = find_prepared(conn, name);
    if (i >= 0)
        forget_prepared_at(conn, (size_t)i);
}

/* The index of conn's least recently used statement (conn->nprepared > 0). The list does not
 * change while a held connection's DEALLOCATE is answered: it names the same one then. */
static size_t least_recently_used(const os_db_conn_t *conn)
{
    size_t lru = 0;
    for (size_t i = 1; i < conn->nprepared; i++)
        if (conn->prepared[i].used < conn->prepared[lru].used)
            lru = i;
    return lru;
}

/* Sends a DEALLOCATE of conn's least recently used statement (STEP_EVICT), to make room. It is
 * forgotten when the server confirms, so that a failed one (in an aborted transaction) is not
 * prepared again under a name the server still has. */
static int evict_prepared(os_db_conn_t *conn)
{
    const char *name = conn->prepared[least_recently_used(conn)].name;
    char *ident = PQescapeIdentifier(conn->pg, name, strlen(name));
    char *sql = ident != NULL ? malloc(strlen(ident) + sizeof("DEALLOCATE ")) : NULL;
    int ok = sql != NULL;
    if (ok) {
        strcpy(sql, "DEALLOCATE ");
        strcat(sql, ident);
        conn->step = STEP_EVICT;
        ok = PQsendQuery(conn->pg, sql);
    }
    free(sql);
    PQfreemem(ident);
    return ok;
}

static void conn_flush(os_db_conn_t *conn)
{
    int r = PQflush(conn->pg);
    if (r < 0)
        db_conn_down(conn, PQerrorMessage(conn->pg));
    else if (r > 0)
        db_conn_want_write(conn);
}

static void query_start(os_db_conn_t *conn)
{
    db_task_t *dt = conn->holder;
    int ok;
    assert(conn->state == CONN_BUSY && dt != NULL && dt->phase == PHASE_QUERY && conn->step == STEP_NONE);
    dt->query_us = os_clock_us();
    if (dt->stmt_name[0] == '\0') {
        ok = PQsendQueryParams(conn->pg, dt->stmt_sql, dt->nparams, NULL, (const char *const *)dt->params, NULL, NULL,
                               0);
        conn->step = STEP_EXECUTE;
    } else if (use_prepared(conn, dt->stmt_name)) {
        ok = PQsendQueryPrepared(conn->pg, dt->stmt_name, dt->nparams, (const char *const *)dt->params, NULL, NULL, 0);
        conn->step = STEP_EXECUTE;
    } else if (conn->nprepared >= PREPARED_MAX) {
        ok = evict_prepared(conn);
    } else {
        ok = PQsendPrepare(conn->pg, dt->stmt_name, dt->stmt_sql, dt->nparams, NULL);
        conn->step = STEP_PREPARE;
    }
    if (!ok) {
        db_conn_down(conn, PQerrorMessage(conn->pg));
        return;
    }
    conn_flush(conn);
}

/* Gives the task its statement's result (the one that counts); returns the wait's status. */
static int deliver(db_task_t *dt, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    int status = OS_OK;
    const char *sqlstate = NULL;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        os_task_set_error(dt->task, "%s", PQresultErrorMessage(res));
        dt->task->error[strcspn(dt->task->error, "\n")] = '\0';
        status = OS_ERR;
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        sqlstate = sqlstate != NULL ? sqlstate : "";
    }
    os_metrics_db_query(dt->stmt_name, dt->stmt_sql, os_clock_us() - dt->query_us, sqlstate);
    free_pending(dt);
    PQclear(dt->result);
    dt->result = res;
    return status;
}

/* The command on conn has delivered all its results (res is the one that counts). */
static void query_done(os_db_conn_t *conn, PGresult *res)
{
    db_task_t *dt = conn->holder;
    assert(dt != NULL && dt->phase == PHASE_QUERY && os_op_pending(&dt->op));
    ExecStatusType st = PQresultStatus(res);
    if (conn->step == STEP_EVICT && st == PGRES_COMMAND_OK) {
        PQclear(res);
        forget_prepared_at(conn, least_recently_used(conn));
        conn->step = STEP_PREPARE;
        if (!PQsendPrepare(conn->pg, dt->stmt_name, dt->stmt_sql, dt->nparams, NULL))
            db_conn_down(conn, PQerrorMessage(conn->pg));
        else
            conn_flush(conn);
        return;
    }
    if (conn->step == STEP_PREPARE && st == PGRES_COMMAND_OK) {
        PQclear(res);
        remember_prepared(conn, dt->stmt_name);
        conn->step = STEP_EXECUTE;
        if (!PQsendQueryPrepared(conn->pg, dt->stmt_name, dt->nparams, (const char *const *)dt->params, NULL, NULL, 0))
            db_conn_down(conn, PQerrorMessage(conn->pg));
        else
            conn_flush(conn);
        return;
    }
    conn->step = STEP_NONE;
    dt->phase = PHASE_NONE;
    int status = deliver(dt, res);
    if (PQstatus(conn->pg) == CONNECTION_BAD) {
        /* "terminating connection" (57P01) and the like: the result goes to the task (the Lua
         * side classifies its SQLSTATE), the connection is closed; a pinned holder's
         * transaction is over. */
        unhold(conn);
        db_conn_down(conn, "server closed the connection");
    } else if (!dt->pinned) {
        release(conn); /* waiters first: a busy task must not starve the queue */
    }
    os_op_complete(&dt->op, status);
}

/* Keeps a command's first result, or its first error (a later one never hides it), in *slot. */
static void keep_result(PGresult **slot, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    int is_error = st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK;
    ExecStatusType pst = *slot != NULL ? PQresultStatus(*slot) : PGRES_COMMAND_OK;
    if (*slot == NULL || (is_error && (pst == PGRES_COMMAND_OK || pst == PGRES_TUPLES_OK))) {
        PQclear(*slot);
        *slot = r;
    } else {
        PQclear(r);
    }
}

/* ---- pipelines: one connection carrying many tasks' statements ---- */

/* Sends dt's statement in conn's pipeline (conn idle, or a pipeline with room), with its own sync
 * point so that its failure aborts nothing else, and its prepare ahead of it the first time. */
static void pipe_send(os_db_conn_t *conn, db_task_t *dt)
{
    os_db_pool_t *pool = conn->pool;
    assert((conn->state == CONN_IDLE || conn->state == CONN_PIPELINE) && conn->pipe_count < pool->depth);
    if (conn->state == CONN_IDLE) {
        if (!PQenterPipelineMode(conn->pg)) {
            db_conn_down(conn, PQerrorMessage(conn->pg));
            return;
        }
        conn->state = CONN_PIPELINE;
    }
    pipe_entry_t *e = &conn->pipe[(conn->pipe_head + conn->pipe_count++) % pool->depth];
    e->task = dt;
    dt->entry = e;
    dt->phase = PHASE_PIPELINE;
    dt->query_us = os_clock_us();
    int ok = 1;
    int prepared = use_prepared(conn, dt->stmt_name);
    if (!prepared && conn->nprepared >= PREPARED_MAX) {
        /* No deallocating here, under statements of other tasks: this one runs unnamed. */
        ok = PQsendQueryParams(conn->pg, dt->stmt_sql, dt->nparams, NULL, (const char *const *)dt->params, NULL, NULL,
                               0);
    } else {
        if (!prepared) {
            /* Counted as prepared from now on: a statement behind this one must not prepare it twice. */
            ok = PQsendPrepare(conn->pg, dt->stmt_name, dt->stmt_sql, dt->nparams, NULL);
            if (ok && remember_prepared(conn, dt->stmt_name) == 0) {
                e->preparing = strdup(dt->stmt_name);
                e->in_prepare = 1;
            }
        }
        ok = ok && PQsendQueryPrepared(conn->pg, dt->stmt_name, dt->nparams, (const char *const *)dt->params, NULL,
                                       NULL, 0);
    }
    if (!ok || !PQpipelineSync(conn->pg)) {
        db_conn_down(conn, PQerrorMessage(conn->pg));
        return;
    }
    conn_flush(conn);
}

/* The pipeline's oldest statement reached its sync point: its task (if it still waits) resumes. */
static void pipe_done(os_db_conn_t *conn)
{
    PGresult *res;
    db_task_t *dt = pipe_pop(conn, &res);
    if (conn->pipe_count == 0) {
        /* Drained: back to normal mode, so the connection can serve a transaction too. */
        if (!PQexitPipelineMode(conn->pg)) {
            PQclear(res);
            db_conn_down(conn, PQerrorMessage(conn->pg));
            return;
        }
        conn->state = CONN_IDLE;
    }
    db_pool_hand_over(conn->pool, conn); /* waiters first: a busy task must not starve the queue */
    if (dt == NULL) {
        PQclear(res);
        return;
    }
    int status;
    if (res == NULL) {
        os_metrics_db_query(dt->stmt_name, dt->stmt_sql, os_clock_us() - dt->query_us, "");
        free_pending(dt);
        os_task_set_error(dt->task, "database unavailable: the server sent no result");
        status = OS_EUNAVAILABLE;
    } else {
        status = deliver(dt, res);
    }
    os_op_complete(&dt->op, status);
}

/* Reads the pipeline's results in order. libpq's pipeline mode gives, per statement, the
 * prepare's result and a NULL (when one was sent), the execution's result(s) and a NULL, then
 * PGRES_PIPELINE_SYNC (no NULL after it); a statement behind a failed prepare in the same sync
 * segment gives PGRES_PIPELINE_ABORTED. */
static void pipe_read(os_db_conn_t *conn)
{
    uint64_t epoch = conn->epoch;
    int nulls = 0;
    while (conn->state == CONN_PIPELINE && conn->pipe_count > 0 && !PQisBusy(conn->pg)) {
        if (PQstatus(conn->pg) == CONNECTION_BAD)
            break;
        pipe_entry_t *e = &conn->pipe[conn->pipe_head];
        PGresult *r = PQgetResult(conn->pg);
        if (r == NULL) {
            /* Two in a row would mean libpq has no command where this file counts one. */
            if (++nulls > 1) {
                db_conn_down(conn, "the pipeline's results are out of step");
                return;
            }
            if (e->seen)
                e->seen = e->in_prepare = 0;
            continue;
        }
        nulls = 0;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            pipe_done(conn); /* may resume a task, which may use or drop this connection */
            if (conn->epoch != epoch)
                return;
            continue;
        }
        e->seen = 1;
        if (e->in_prepare && PQresultStatus(r) == PGRES_COMMAND_OK) {
            PQclear(r);
            continue;
        }
        if (e->in_prepare)
            forget_prepared(conn, e->preparing);
        keep_result(&e->result, r);
    }
    if (conn->pg != NULL && PQstatus(conn->pg) == CONNECTION_BAD)
        db_conn_down(conn, "server closed the connection");
}

static void conn_read_results(os_db_conn_t *conn)
{
    if (!PQconsumeInput(conn->pg)) {
        db_conn_down(conn, PQerrorMessage(conn->pg));
        return;
    }
    if (conn->state == CONN_PIPELINE) {
        pipe_read(conn);
        return;
    }
    /* PQgetResult would block while libpq is busy: take results only while it is not. */
    while (conn->step != STEP_NONE && !PQisBusy(conn->pg)) {
        PGresult *r = PQgetResult(conn->pg);
        if (r != NULL) {
            keep_result(&conn->pending, r);
            continue;
        }
        PGresult *res = conn->pending;
        conn->pending = NULL;
        if (res == NULL) {
            db_conn_down(conn, "the server sent no result");
            return;
        }
        query_done(conn, res); /* may resume the task, which may use or drop this connection */
        return;
    }
    if (PQstatus(conn->pg) == CONNECTION_BAD)
        db_conn_down(conn, "server closed the connection");
}

void db_conn_on_readable(h2o_socket_t *sock, const char *err)
{
    os_db_conn_t *conn = sock->data;
    (void)err;
    if (conn->state == CONN_CONNECTING) {
        if (!conn->poll_write)
            db_conn_poll_connect(conn);
    } else if (conn->state == CONN_IDLE || conn->state == CONN_BUSY || conn->state == CONN_PIPELINE) {
        conn_read_results(conn);
    }
}

/* A write notification fires once; db_conn_want_write re-arms it when libpq has more to send. */
void db_conn_on_writable(h2o_socket_t *sock, const char *err)
{
    os_db_conn_t *conn = sock->data;
    (void)err;
    conn->want_write = 0;
    if (conn->state == CONN_CONNECTING) {
        if (conn->poll_write)
            db_conn_poll_connect(conn);
    } else if (conn->state == CONN_IDLE || conn->state == CONN_BUSY || conn->state == CONN_PIPELINE) {
        conn_flush(conn);
    }
}

/* ---- the pool ---- */

static void pool_assign(os_db_conn_t *conn, db_task_t *dt)
{
    os_metrics_db_acquired(os_clock_us() - dt->acquire_us);
    if (dt->pipe) {
        pipe_send(conn, dt);
        return;
    }
    hold(conn, dt);
    if (dt->want_pin) {
        dt->want_pin = 0;
        dt->pinned = 1;
        dt->phase = PHASE_NONE;
        os_op_complete(&dt->op, OS_OK);
    } else {
        dt->phase = PHASE_QUERY;
        query_start(conn);
    }
}

/* Whether conn can take dt's statement or transaction now. */
static int conn_serves(const os_db_conn_t *conn, const db_task_t *dt)
{
    return conn->state == CONN_IDLE ||
           (dt->pipe && conn->state == CONN_PIPELINE && conn->pipe_count < conn->pool->depth);
}

/* conn became idle or has room in its pipeline: the waiters take it in queue order. The first
 * waiter it cannot serve (a transaction or an unnamed statement, while conn carries a pipeline)
 * stops the hand-over, and, being first in the queue, keeps every later statement out of every
 * pipeline: the pipelines drain, and the first to become idle is its. */
void db_pool_hand_over(os_db_pool_t *pool, os_db_conn_t *conn)
{
    while (!h2o_linklist_is_empty(&pool->waiters)) {
        db_task_t *dt = H2O_STRUCT_FROM_MEMBER(db_task_t, waiter_link, pool->waiters.next);
        assert(dt->phase == PHASE_ACQUIRE && os_op_pending(&dt->op));
        if (!conn_serves(conn, dt))
            return;
        h2o_linklist_unlink(&dt->waiter_link);
        pool->nwaiting--;
        os_timer_stop(&pool->worker->timers, &dt->acquire_timer);
        pool_assign(conn, dt);
    }
}

static void on_acquire_timeout(os_timer_t *timer)
{
    db_task_t *dt = H2O_STRUCT_FROM_MEMBER(db_task_t, acquire_timer, timer);
    assert(dt->phase == PHASE_ACQUIRE);
    os_metrics_db_acquired(os_clock_us() - dt->acquire_us);
    h2o_linklist_unlink(&dt->waiter_link);
    dt->pool->nwaiting--;
    dt->want_pin = 0;
    dt->phase = PHASE_NONE;
    free_pending(dt);
    os_task_set_error(dt->task, "no database connection became free within %d ms", os_config.db_acquire_timeout_ms);
    os_op_complete(&dt->op, OS_ETIMEDOUT);
}

/* Closes a connection whose query nobody waits for any more and connects it again at once (no
 * backoff, no warning: nothing failed). Closing is what stops the server's work: libpq 15 has
 * no non-blocking cancel (PQcancel blocks the loop; PQcancelStart is libpq 17), and with
 * client_connection_check_interval (the pool's options) the backend checks its client socket
 * while a query runs and ends the query within that interval once the socket is closed.
 * pg_cancel_backend() on another connection would keep this one, but needs a free connection
 * exactly when the pool is busiest, and this one could not be reused until the cancel's own
 * answer arrived (else the signal could hit the next holder's query). */
static void conn_recycle(os_db_conn_t *conn)
{
    os_log(OS_LOG_DEBUG, "database connection closed to stop a query nobody waits for");
    os_timer_stop(&conn->pool->worker->timers, &conn->connect_timer);
    conn_reset(conn);
    conn->backoff_ms = 0;
    db_conn_connect(conn);
}

/* The task is freed while it waits, or its client went away (os_task_cancel): leave the
 * queue, or drop the connection its query is on. */
static void cancel_op(os_op_t *op)
{
    db_task_t *dt = H2O_STRUCT_FROM_MEMBER(db_task_t, op, op);
    os_db_pool_t *pool = dt->pool;
    if (dt->phase == PHASE_ACQUIRE) {
        h2o_linklist_unlink(&dt->waiter_link);
        pool->nwaiting--;
        os_timer_stop(&pool->worker->timers, &dt->acquire_timer);
    } else if (dt->phase == PHASE_PIPELINE) {
        /* Other tasks' statements share the connection: it is neither closed nor cancelled (the
         * statement is short; it runs to its end), and its result is dropped when it comes. */
        dt->entry->task = NULL;
        dt->entry = NULL;
    } else if (dt->phase == PHASE_QUERY && dt->conn != NULL) {
        /* The session is mid-command; closing it is the only way to get a clean one back. */
        os_db_conn_t *conn = dt->conn;
        unhold(conn);
        if (dt->task->cancelled)
            conn_recycle(conn);
        else
            db_conn_down(conn, "query abandoned by its task");
    }
    dt->phase = PHASE_NONE;
    dt->want_pin = 0;
}

/* Gets dt a connection of pool now, or queues it; returns OS_OK (the op is begun) or a failure status. */
static int pool_acquire(os_db_pool_t *pool, db_task_t *dt)
{
    int any_up = 0;
    dt->acquire_us = os_clock_us();
    dt->pool = pool;
    /* A pipeline with room first, the first one in the pool's order: few backends doing the work
     * back to back wake less often than many each woken per statement. Never past the queue. */
    os_db_conn_t *idle = NULL;
    for (size_t i = 0; i < pool->size; i++) {
        os_db_conn_t *conn = &pool->conns[i];
        if (conn->state == CONN_PIPELINE && conn_serves(conn, dt) && h2o_linklist_is_empty(&pool->waiters)) {
            idle = conn;
            break;
        }
        if (conn->state == CONN_IDLE && idle == NULL)
            idle = conn;
        any_up |= conn->state != CONN_DOWN;
    }
    if (idle != NULL) {
        os_op_begin(dt->task, &dt->op, OS_OP_DB, cancel_op);
        pool_assign(idle, dt);
        return OS_OK;
    }
    if (!any_up) {
        os_task_set_error(dt->task, "database unavailable (%s): %s", pool->setting,
                          pool->conns[0].last_error[0] ? pool->conns[0].last_error : "no connection");
        return OS_EUNAVAILABLE;
    }
    os_op_begin(dt->task, &dt->op, OS_OP_DB, cancel_op);
    dt->phase = PHASE_ACQUIRE;
    os_timer_start(&pool->worker->timers, &dt->acquire_timer, (uint64_t)os_config.db_acquire_timeout_ms);
    h2o_linklist_insert(&pool->waiters, &dt->waiter_link);
    pool->nwaiting++;
    return OS_OK;
}

os_db_pool_t *os_db_pool_create(os_worker_t *worker, const char *setting, int replica, const char *conninfo,
                                size_t size, char *err, size_t errlen)
{
    os_db_pool_t *pool = calloc(1, sizeof(*pool));
    pool->worker = worker;
    pool->setting = setting;
    pool->replica = replica;
    h2o_linklist_init_anchor(&pool->waiters);
    if (db_pool_parse(pool, conninfo, err, errlen) != 0) {
        pool->size = 0;
        os_db_pool_destroy(pool);
        return NULL;
    }
    pool->size = size;
    pool->depth = (size_t)os_config.db_pipeline_depth;
    pool->conns = calloc(size, sizeof(*pool->conns));
    for (size_t i = 0; i < size; i++) {
        os_db_conn_t *conn = &pool->conns[i];
        conn->pool = pool;
        conn->pipe = pool->depth > 0 ? calloc(pool->depth, sizeof(*conn->pipe)) : NULL;
        db_conn_init(conn);
        db_conn_connect(conn);
    }
    return pool;
}

void os_db_pool_destroy(os_db_pool_t *pool)
{
    if (pool == NULL)
        return;
    for (size_t i = 0; i < pool->size; i++) {
        os_db_conn_t *conn = &pool->conns[i];
        os_timer_stop(&pool->worker->timers, &conn->retry_timer);
        os_timer_stop(&pool->worker->timers, &conn->connect_timer);
        if (conn->resolving != NULL)
            h2o_hostinfo_getaddr_cancel(conn->resolving);
        db_close_pg(conn);
        PQclear(conn->pending);
        free_prepared(conn);
        for (size_t j = 0; j < pool->depth && conn->pipe != NULL; j++) {
            PQclear(conn->pipe[j].result);
            free(conn->pipe[j].preparing);
        }
        free(conn->pipe);
    }
    PQconninfoFree(pool->parsed);
    free(pool->keys);
    free(pool->values);
    free(pool->targets);
    free(pool->lists);
    free(pool->conns);
    free(pool);
}

void os_db_pool_stats(const os_db_pool_t *pool, os_db_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (pool == NULL)
        return;
    out->size = pool->size;
    out->waiting = pool->nwaiting;
    for (size_t i = 0; i < pool->size; i++) {
        int state = pool->conns[i].state;
        out->connected += state == CONN_IDLE || state == CONN_BUSY || state == CONN_PIPELINE;
        out->busy += state == CONN_BUSY || state == CONN_PIPELINE;
    }
}

/* ---- per-task state ---- */

/* The task is being freed (its wait, if any, already cancelled): give back what it holds. */
static void db_task_done(os_task_ext_t *ext)
{
    db_task_t *dt = (db_task_t *)ext;
    assert(!os_op_pending(&dt->op) && dt->phase == PHASE_NONE);
    if (dt->conn != NULL)
        release(dt->conn);
    PQclear(dt->result);
    free_pending(dt);
    free(dt);
}

static db_task_t *db_task(os_task_t *task)
{
    db_task_t *dt = (db_task_t *)task->ext[OS_TASK_EXT_DB];
    if (dt == NULL && (dt = calloc(1, sizeof(*dt))) != NULL) {
        dt->ext.done = db_task_done;
        dt->task = task;
        os_timer_init(&dt->acquire_timer, on_acquire_timeout);
        task->ext[OS_TASK_EXT_DB] = &dt->ext;
    }
    return dt;
}

static PGresult *result_of(os_task_t *task)
{
    db_task_t *dt = (db_task_t *)task->ext[OS_TASK_EXT_DB];
    return dt != NULL ? dt->result : NULL;
}

/* ---- FFI ---- */

/* may_share: the statement is a read (os_db_read), so it may share a connection's pipeline. */
static int query_on(os_db_pool_t *pool, os_task_t *task, const char *name, const char *sql, int nparams,
                    const char *const *params, int may_share)
{
    db_task_t *dt = db_task(task);
    if (dt == NULL) {
        os_task_set_error(task, "out of memory");
        return OS_ERR;
    }
    if (task->op != NULL || sql == NULL || nparams < 0 || (dt->pinned && pool != task->worker->db)) {
        os_task_set_error(task, "bad query call");
        return OS_ESTATE;
    }
    if (task->cancelled)
        return os_task_check_cancelled(task);
    if (pool == NULL) {
        os_task_set_error(task, "database not configured (DATABASE_URL is empty)");
        return OS_EUNAVAILABLE;
    }
    dt->on_replica = pool->replica;
    if (dt->pinned && dt->conn == NULL) {
        os_task_set_error(task, "database connection lost inside the transaction");
        return OS_EUNAVAILABLE;
    }
    PQclear(dt->result);
    dt->result = NULL;
    dt->stmt_name = strdup(name != NULL ? name : "");
    dt->stmt_sql = strdup(sql);
    dt->nparams = nparams;
    dt->params = calloc((size_t)nparams + 1, sizeof(char *));
    for (int i = 0; i < nparams; i++)
        dt->params[i] = params[i] != NULL ? strdup(params[i]) : NULL;
    if (dt->pinned) {
        os_op_begin(task, &dt->op, OS_OP_DB, cancel_op);
        dt->phase = PHASE_QUERY;
        query_start(dt->conn);
        return OS_OK;
    }
    /* Only a named read shares a connection. Unnamed SQL may run long, and only a connection of
     * its own can be closed to stop it when nobody waits for it (conn_recycle). A write may wait
     * for a row lock until another transaction ends, and would hold up every statement behind
     * it in the pipeline; a read never waits for a row lock. */
    dt->pipe = may_share && pool->depth > 0 && dt->stmt_name[0] != '\0';
    int rc = pool_acquire(pool, dt);
    if (rc != OS_OK)
        free_pending(dt);
    return rc;
}

int os_db_query_pool(os_db_pool_t *pool, os_task_t *task, const char *name, const char *sql, int nparams,
                     const char *const *params)
{
    return query_on(pool, task, name, sql, nparams, params, 0);
}

int os_db_query(os_task_t *task, const char *name, const char *sql, int nparams, const char *const *params)
{
    return query_on(task->worker->db, task, name, sql, nparams, params, 0);
}

int os_db_read(os_task_t *task, const char *name, const char *sql, int nparams, const char *const *params)
{
    db_task_t *dt = (db_task_t *)task->ext[OS_TASK_EXT_DB];
    const char *what = name != NULL && name[0] != '\0' ? name : "(unnamed)";
    os_db_pool_t *replica = task->worker->read_db; /* replica.c's verdict: NULL while reads stay on the primary */
    /* Inside a transaction a read must see the transaction's own writes: its connection. */
    if (replica != NULL && (dt == NULL || !dt->pinned)) {
        int rc = query_on(replica, task, name, sql, nparams, params, 1);
        if (rc != OS_EUNAVAILABLE) {
            os_log(OS_LOG_DEBUG, "database read %s on the replica", what);
            return rc;
        }
        /* Every replica connection went down since the last lag probe. */
        os_log(OS_LOG_DEBUG, "database read %s on the primary: %s", what, task->error);
    } else {
        os_log(OS_LOG_DEBUG, "database read %s on the primary", what);
    }
    return query_on(task->worker->db, task, name, sql, nparams, params, 1);
}

int os_db_on_replica(os_task_t *task)
{
    db_task_t *dt = (db_task_t *)task->ext[OS_TASK_EXT_DB];
    return dt != NULL && dt->on_replica;
}

int os_db_pin(os_task_t *task)
{
    db_task_t *dt = db_task(task);
    if (dt == NULL) {
        os_task_set_error(task, "out of memory");
        return OS_ERR;
    }
    if (task->op != NULL || dt->pinned) {
        os_task_set_error(task, "a transaction is already open");
        return OS_ESTATE;
    }
    if (task->cancelled)
        return os_task_check_cancelled(task);
    if (task->worker->db == NULL) {
        os_task_set_error(task, "database not configured (DATABASE_URL is empty)");
        return OS_EUNAVAILABLE;
    }
    dt->want_pin = 1;
    dt->pipe = 0;
    dt->on_replica = 0;
    int rc = pool_acquire(task->worker->db, dt);
    if (rc != OS_OK)
        dt->want_pin = 0;
    return rc;
}

int os_db_unpin(os_task_t *task)
{
    db_task_t *dt = (db_task_t *)task->ext[OS_TASK_EXT_DB];
    if (dt == NULL || !dt->pinned || task->op != NULL)
        return OS_ESTATE;
    dt->pinned = 0;
    if (dt->conn != NULL)
        release(dt->conn);
    return OS_OK;
}

int os_db_nrows(os_task_t *task)
{
    PGresult *r = result_of(task);
    return r != NULL ? PQntuples(r) : 0;
}

int os_db_ncols(os_task_t *task)
{
    PGresult *r = result_of(task);
    return r != NULL ? PQnfields(r) : 0;
}

const char *os_db_colname(os_task_t *task, int col)
{
    PGresult *r = result_of(task);
    return r != NULL ? PQfname(r, col) : NULL;
}

uint32_t os_db_coltype(os_task_t *task, int col)
{
    PGresult *r = result_of(task);
    return r != NULL ? PQftype(r, col) : 0;
}

const char *os_db_value(os_task_t *task, int row, int col, size_t *len)
{
    PGresult *r = result_of(task);
    if (r == NULL || PQgetisnull(r, row, col))
        return NULL;
    *len = (size_t)PQgetlength(r, row, col);
    return PQgetvalue(r, row, col);
}

const char *os_db_sqlstate(os_task_t *task)
{
    PGresult *r = result_of(task);
    const char *s = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

int64_t os_db_affected(os_task_t *task)
{
    PGresult *r = result_of(task);
    const char *s = r != NULL ? PQcmdTuples(r) : "";
    return *s ? strtoll(s, NULL, 10) : 0;
}

void os_db_clear(os_task_t *task)
{
    db_task_t *dt = (db_task_t *)task->ext[OS_TASK_EXT_DB];
    if (dt != NULL) {
        PQclear(dt->result);
        dt->result = NULL;
    }
}
