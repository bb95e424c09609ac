/*
 * db.c - owns each worker's PostgreSQL connections (DB_POOL_SIZE of them, DATABASE_URL)
 * and runs queries without ever blocking the worker.
 *
 * Every connection is non-blocking libpq (PQconnectStartParams / PQconnectPoll, then
 * PQsend* and PQconsumeInput) watched by the worker's h2o loop through a socket made on
 * a dup() of libpq's descriptor: h2o may close its copy while libpq keeps its own.
 *
 * A task asks for a query; it gets an idle connection or waits in a FIFO queue for at most
 * DB_ACQUIRE_TIMEOUT_MS (then OS_ETIMEDOUT, which the Lua side answers with 503). When no
 * connection is up at all the request fails at once with OS_EUNAVAILABLE rather than
 * queueing behind a dead database. Statements are prepared once per connection under the
 * name the Lua side gives them. A broken connection fails the query on it, is closed, and
 * is reconnected after an exponential backoff with jitter.
 */
#include "db.h"
#include "config.h"
#include "ffi.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_IDLE, CONN_BUSY };
enum conn_step { STEP_NONE, STEP_PREPARE, STEP_EXECUTE };

struct os_db_conn {
    os_db_pool_t *pool;
    PGconn *pg;
    h2o_socket_t *sock;
    int sock_fd; /* libpq's descriptor that sock watches (through a dup) */
    int state;
    int step;
    int want_write;
    os_task_t *task;
    char **prepared;
    size_t nprepared;
    os_timer_t retry_timer;
    uint64_t backoff_ms;
};

struct os_db_pool {
    os_worker_t *worker;
    char *conninfo;
    os_db_conn_t *conns;
    size_t size;
    h2o_linklist_t waiters;
    size_t nwaiting;
};

static void conn_poll_connect(os_db_conn_t *conn);
static void conn_on_readable(h2o_socket_t *sock, const char *err);
static void conn_on_writable(h2o_socket_t *sock, const char *err);
static void pool_hand_over(os_db_pool_t *pool, os_db_conn_t *conn);
static void query_start(os_db_conn_t *conn);

/* ---- connection life ---- */

static void conn_unwatch(os_db_conn_t *conn)
{
    if (conn->sock != NULL) {
        h2o_socket_close(conn->sock);
        conn->sock = NULL;
    }
    conn->sock_fd = -1;
    conn->want_write = 0;
}

static int conn_watch(os_db_conn_t *conn)
{
    int fd = PQsocket(conn->pg);
    if (fd < 0)
        return -1;
    if (conn->sock != NULL && conn->sock_fd == fd)
        return 0;
    conn_unwatch(conn);
    int dupfd = dup(fd);
    if (dupfd < 0)
        return -1;
    conn->sock = h2o_evloop_socket_create(conn->pool->worker->ctx.loop, dupfd, H2O_SOCKET_FLAG_DONT_READ);
    conn->sock->data = conn;
    conn->sock_fd = fd;
    h2o_socket_read_start(conn->sock, conn_on_readable);
    return 0;
}

static void conn_want_write(os_db_conn_t *conn)
{
    if (!conn->want_write) {
        conn->want_write = 1;
        h2o_socket_notify_write(conn->sock, conn_on_writable);
    }
}

static void free_prepared(os_db_conn_t *conn)
{
    for (size_t i = 0; i < conn->nprepared; i++)
        free(conn->prepared[i]);
    free(conn->prepared);
    conn->prepared = NULL;
    conn->nprepared = 0;
}

static void on_retry(os_timer_t *timer);
static void conn_fail(os_db_conn_t *conn, const char *why);

/* Server notices ("relation already exists, skipping") go to the log, not raw to stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    os_log(OS_LOG_DEBUG, "database notice: %.*s", (int)strcspn(message, "\n"), message);
}

/* Starts a non-blocking connection attempt. */
static void conn_connect(os_db_conn_t *conn)
{
    static const char *keys[] = {"dbname", "application_name", "options", NULL};
    char options[128];
    snprintf(options, sizeof(options), "-c TimeZone=UTC -c DateStyle=ISO -c statement_timeout=%d",
             os_config.db_statement_timeout_ms);
    const char *values[] = {conn->pool->conninfo, "orderservice", options, NULL};
    conn->pg = PQconnectStartParams(keys, values, 1);
    conn->state = CONN_CONNECTING;
    if (conn->pg == NULL || PQstatus(conn->pg) == CONNECTION_BAD || PQsetnonblocking(conn->pg, 1) != 0 ||
        conn_watch(conn) != 0) {
        conn_fail(conn, conn->pg != NULL ? PQerrorMessage(conn->pg) : "out of memory");
        return;
    }
    PQsetNoticeProcessor(conn->pg, on_notice, NULL);
    conn_want_write(conn);
}

/* Closes a broken connection, fails the query on it, and schedules a reconnect. */
static void conn_fail(os_db_conn_t *conn, const char *reason)
{
    os_task_t *task = conn->task;
    char why[256]; /* reason may point into libpq's state, which PQfinish frees */
    snprintf(why, sizeof(why), "%.*s", (int)strcspn(reason, "\n"), reason);
    if (conn->state != CONN_CONNECTING || conn->backoff_ms == 0)
        os_log(OS_LOG_WARN, "database connection lost: %s", why);
    conn_unwatch(conn);
    PQfinish(conn->pg);
    conn->pg = NULL;
    conn->state = CONN_DOWN;
    conn->step = STEP_NONE;
    conn->task = NULL;
    free_prepared(conn);
    /* Jitter keeps the workers of all replicas from reconnecting in lockstep after an outage. */
    conn->backoff_ms = conn->backoff_ms ? conn->backoff_ms * 2 : 100;
    if (conn->backoff_ms > 5000)
        conn->backoff_ms = 5000;
    os_timer_start(&conn->pool->worker->timers, &conn->retry_timer,
                   conn->backoff_ms / 2 + (uint64_t)rand() % (conn->backoff_ms / 2 + 1));
    if (task != NULL) {
        task->conn = NULL;
        task->pin_broken = task->pinned; /* the rest of that transaction must fail, not autocommit */
        task->pinned = 0;
        os_task_set_error(task, "database unavailable: %s", why);
        os_task_resume(task, OS_EUNAVAILABLE);
    }
    /* Waiters would otherwise sit out their whole timeout behind a pool that is down. */
    os_db_pool_t *pool = conn->pool;
    for (size_t i = 0; i < pool->size; i++)
        if (pool->conns[i].state != CONN_DOWN)
            return;
    while (!h2o_linklist_is_empty(&pool->waiters)) {
        os_task_t *waiter = H2O_STRUCT_FROM_MEMBER(os_task_t, waiter_link, pool->waiters.next);
        h2o_linklist_unlink(&waiter->waiter_link);
        pool->nwaiting--;
        os_timer_stop(&pool->worker->timers, &waiter->timer);
        os_task_set_error(waiter, "database unavailable");
        os_task_resume(waiter, OS_EUNAVAILABLE);
    }
}

static void on_retry(os_timer_t *timer)
{
    os_db_conn_t *conn = H2O_STRUCT_FROM_MEMBER(os_db_conn_t, retry_timer, timer);
    conn_connect(conn);
}

static void conn_poll_connect(os_db_conn_t *conn)
{
    switch (PQconnectPoll(conn->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(conn) != 0)
            conn_fail(conn, "no socket");
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch(conn) != 0)
            conn_fail(conn, "no socket");
        else
            conn_want_write(conn);
        return;
    case PGRES_POLLING_OK:
        if (conn->backoff_ms != 0)
            os_log(OS_LOG_INFO, "database connection re-established");
        conn->backoff_ms = 0;
        conn->state = CONN_IDLE;
        pool_hand_over(conn->pool, conn);
        return;
    default:
        conn_fail(conn, PQerrorMessage(conn->pg));
        return;
    }
}

/* ---- query execution on one connection ---- */

static int is_prepared(os_db_conn_t *conn, const char *name)
{
    for (size_t i = 0; i < conn->nprepared; i++)
        if (strcmp(conn->prepared[i], name) == 0)
            return 1;
    return 0;
}

static void remember_prepared(os_db_conn_t *conn, const char *name)
{
    char **list = realloc(conn->prepared, (conn->nprepared + 1) * sizeof(*list));
    if (list == NULL)
        return; /* it will simply be prepared again next time */
    conn->prepared = list;
    conn->prepared[conn->nprepared++] = strdup(name);
}

static void conn_flush(os_db_conn_t *conn)
{
    int r = PQflush(conn->pg);
    if (r < 0)
        conn_fail(conn, PQerrorMessage(conn->pg));
    else if (r > 0)
        conn_want_write(conn);
}

static void query_start(os_db_conn_t *conn)
{
    os_task_t *task = conn->task;
    int ok;
    conn->state = CONN_BUSY;
    if (task->stmt_name[0] == '\0') {
        ok = PQsendQueryParams(conn->pg, task->stmt_sql, task->nparams, NULL, (const char *const *)task->params, NULL,
                               NULL, 0);
        conn->step = STEP_EXECUTE;
    } else if (!is_prepared(conn, task->stmt_name)) {
        ok = PQsendPrepare(conn->pg, task->stmt_name, task->stmt_sql, task->nparams, NULL);
        conn->step = STEP_PREPARE;
    } else {
        ok = PQsendQueryPrepared(conn->pg, task->stmt_name, task->nparams, (const char *const *)task->params, NULL,
                                 NULL, 0);
        conn->step = STEP_EXECUTE;
    }
    if (!ok) {
        conn_fail(conn, PQerrorMessage(conn->pg));
        return;
    }
    conn_flush(conn);
}

static void free_pending(os_task_t *task)
{
    for (int i = 0; i < task->nparams; i++)
        free(task->params[i]);
    free(task->params);
    free(task->stmt_name);
    free(task->stmt_sql);
    task->params = NULL;
    task->stmt_name = task->stmt_sql = NULL;
    task->nparams = 0;
}

/* A query finished on conn: give the result to its task and the connection to the next. */
static void query_done(os_db_conn_t *conn, PGresult *res)
{
    os_task_t *task = conn->task;
    ExecStatusType st = PQresultStatus(res);
    int status = OS_OK;
    if (conn->step == STEP_PREPARE && st == PGRES_COMMAND_OK) {
        PQclear(res);
        remember_prepared(conn, task->stmt_name);
        conn->step = STEP_EXECUTE;
        if (!PQsendQueryPrepared(conn->pg, task->stmt_name, task->nparams, (const char *const *)task->params, NULL,
                                 NULL, 0))
            conn_fail(conn, PQerrorMessage(conn->pg));
        else
            conn_flush(conn);
        return;
    }
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        os_task_set_error(task, "%s", PQresultErrorMessage(res));
        task->error[strcspn(task->error, "\n")] = '\0';
        status = OS_ERR;
    }
    conn->step = STEP_NONE;
    free_pending(task);
    PQclear(task->result);
    task->result = res;
    if (!task->pinned) {
        task->conn = NULL;
        conn->task = NULL;
        conn->state = CONN_IDLE;
        pool_hand_over(conn->pool, conn); /* waiters first: a busy task must not starve the queue */
    }
    os_task_resume(task, status);
}

static void conn_read_results(os_db_conn_t *conn)
{
    if (!PQconsumeInput(conn->pg)) {
        conn_fail(conn, PQerrorMessage(conn->pg));
        return;
    }
    /* Notices and stray input on an idle connection are consumed above; nothing to deliver. */
    while (conn->step != STEP_NONE && !PQisBusy(conn->pg)) {
        PGresult *res = PQgetResult(conn->pg), *next;
        if (res == NULL)
            return;
        /* A single statement yields one result then NULL; drain to keep the protocol in step. */
        while ((next = PQgetResult(conn->pg)) != NULL)
            PQclear(next);
        query_done(conn, res);
        return;
    }
    if (PQstatus(conn->pg) == CONNECTION_BAD)
        conn_fail(conn, "server closed the connection");
}

static void conn_on_readable(h2o_socket_t *sock, const char *err)
{
    os_db_conn_t *conn = sock->data;
    (void)err;
    if (conn->state == CONN_CONNECTING)
        conn_poll_connect(conn);
    else if (conn->state != CONN_DOWN)
        conn_read_results(conn);
}

/* A write notification fires once; conn_want_write re-arms it when libpq has more to send. */
static void conn_on_writable(h2o_socket_t *sock, const char *err)
{
    os_db_conn_t *conn = sock->data;
    (void)err;
    conn->want_write = 0;
    if (conn->state == CONN_CONNECTING)
        conn_poll_connect(conn);
    else if (conn->state != CONN_DOWN)
        conn_flush(conn);
}

/* ---- the pool ---- */

static void pool_assign(os_db_conn_t *conn, os_task_t *task)
{
    conn->task = task;
    task->conn = conn;
    conn->state = CONN_BUSY;
    if (task->want_pin) {
        task->want_pin = 0;
        task->pinned = 1;
        os_task_resume(task, OS_OK);
    } else {
        query_start(conn);
    }
}

static void pool_hand_over(os_db_pool_t *pool, os_db_conn_t *conn)
{
    if (h2o_linklist_is_empty(&pool->waiters))
        return;
    os_task_t *task = H2O_STRUCT_FROM_MEMBER(os_task_t, waiter_link, pool->waiters.next);
    h2o_linklist_unlink(&task->waiter_link);
    pool->nwaiting--;
    os_timer_stop(&pool->worker->timers, &task->timer);
    pool_assign(conn, task);
}

static void on_acquire_timeout(os_timer_t *timer)
{
    os_task_t *task = H2O_STRUCT_FROM_MEMBER(os_task_t, timer, timer);
    h2o_linklist_unlink(&task->waiter_link);
    task->worker->db->nwaiting--;
    task->want_pin = 0;
    free_pending(task);
    os_task_set_error(task, "no database connection became free within %d ms", os_config.db_acquire_timeout_ms);
    os_task_resume(task, OS_ETIMEDOUT);
}

/* Gets task a connection now, or queues it; returns OS_OK or a failure status. */
static int pool_acquire(os_task_t *task)
{
    os_db_pool_t *pool = task->worker->db;
    int any_up = 0;
    if (pool == NULL) {
        os_task_set_error(task, "database not configured (DATABASE_URL is empty)");
        return OS_EUNAVAILABLE;
    }
    for (size_t i = 0; i < pool->size; i++) {
        os_db_conn_t *conn = &pool->conns[i];
        if (conn->state == CONN_IDLE) {
            task->wait = OS_WAIT_DB_QUERY;
            pool_assign(conn, task);
            return OS_OK;
        }
        any_up |= conn->state != CONN_DOWN;
    }
    if (!any_up) {
        os_task_set_error(task, "database unavailable");
        return OS_EUNAVAILABLE;
    }
    task->wait = OS_WAIT_DB_ACQUIRE;
    task->timer.cb = on_acquire_timeout;
    os_timer_start(&pool->worker->timers, &task->timer, (uint64_t)os_config.db_acquire_timeout_ms);
    h2o_linklist_insert(&pool->waiters, &task->waiter_link);
    pool->nwaiting++;
    return OS_OK;
}

os_db_pool_t *os_db_pool_create(os_worker_t *worker, const char *conninfo, size_t size)
{
    os_db_pool_t *pool = calloc(1, sizeof(*pool));
    pool->worker = worker;
    pool->conninfo = strdup(conninfo);
    pool->size = size;
    pool->conns = calloc(size, sizeof(*pool->conns));
    h2o_linklist_init_anchor(&pool->waiters);
    for (size_t i = 0; i < size; i++) {
        os_db_conn_t *conn = &pool->conns[i];
        conn->pool = pool;
        conn->sock_fd = -1;
        os_timer_init(&conn->retry_timer, on_retry);
        conn_connect(conn);
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
        conn_unwatch(conn);
        PQfinish(conn->pg);
        free_prepared(conn);
    }
    free(pool->conns);
    free(pool->conninfo);
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
        out->connected += pool->conns[i].state == CONN_IDLE || pool->conns[i].state == CONN_BUSY;
        out->busy += pool->conns[i].state == CONN_BUSY;
    }
}

void os_db_task_done(os_task_t *task)
{
    PQclear(task->result);
    task->result = NULL;
    free_pending(task);
    os_db_conn_t *conn = task->conn;
    if (conn == NULL)
        return;
    task->conn = NULL;
    task->pinned = 0;
    conn->task = NULL;
    /* A coroutine that died inside a transaction leaves the session in an unknown state. */
    if (conn->step != STEP_NONE || PQtransactionStatus(conn->pg) != PQTRANS_IDLE) {
        conn_fail(conn, "released inside a transaction");
        return;
    }
    conn->state = CONN_IDLE;
    pool_hand_over(conn->pool, conn);
}

/* ---- FFI ---- */

int os_db_query(os_task_t *task, const char *name, const char *sql, int nparams, const char *const *params)
{
    if (task->wait != OS_WAIT_NONE || sql == NULL || nparams < 0) {
        os_task_set_error(task, "bad query call");
        return OS_ESTATE;
    }
    if (task->pin_broken) {
        os_task_set_error(task, "database connection lost inside the transaction");
        return OS_EUNAVAILABLE;
    }
    PQclear(task->result);
    task->result = NULL;
    task->stmt_name = strdup(name != NULL ? name : "");
    task->stmt_sql = strdup(sql);
    task->nparams = nparams;
    task->params = calloc((size_t)nparams + 1, sizeof(char *));
    for (int i = 0; i < nparams; i++)
        task->params[i] = params[i] != NULL ? strdup(params[i]) : NULL;
    if (!task->pinned) {
        int rc = pool_acquire(task);
        if (rc != OS_OK)
            free_pending(task);
        return rc;
    }
    task->wait = OS_WAIT_DB_QUERY;
    query_start(task->conn);
    return OS_OK;
}

int os_db_pin(os_task_t *task)
{
    if (task->wait != OS_WAIT_NONE || task->pinned) {
        os_task_set_error(task, "a transaction is already open");
        return OS_ESTATE;
    }
    task->want_pin = 1;
    int rc = pool_acquire(task);
    if (rc != OS_OK)
        task->want_pin = 0;
    return rc;
}

int os_db_unpin(os_task_t *task)
{
    task->pin_broken = 0;
    if (!task->pinned)
        return OS_ESTATE;
    os_db_task_done(task);
    return OS_OK;
}

int os_db_nrows(os_task_t *task)
{
    return task->result != NULL ? PQntuples(task->result) : 0;
}

int os_db_ncols(os_task_t *task)
{
    return task->result != NULL ? PQnfields(task->result) : 0;
}

const char *os_db_colname(os_task_t *task, int col)
{
    return task->result != NULL ? PQfname(task->result, col) : NULL;
}

uint32_t os_db_coltype(os_task_t *task, int col)
{
    return task->result != NULL ? PQftype(task->result, col) : 0;
}

const char *os_db_value(os_task_t *task, int row, int col, size_t *len)
{
    if (task->result == NULL || PQgetisnull(task->result, row, col))
        return NULL;
    *len = (size_t)PQgetlength(task->result, row, col);
    return PQgetvalue(task->result, row, col);
}

const char *os_db_sqlstate(os_task_t *task)
{
    const char *s = task->result != NULL ? PQresultErrorField(task->result, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

int64_t os_db_affected(os_task_t *task)
{
    const char *s = task->result != NULL ? PQcmdTuples(task->result) : "";
    return *s ? strtoll(s, NULL, 10) : 0;
}

void os_db_clear(os_task_t *task)
{
    PQclear(task->result);
    task->result = NULL;
}
