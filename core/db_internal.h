/*
 * db_internal.h - what db.c (the pool, its queries and pipelines) and db_connect.c (bringing a
 * connection up) share: the connection, pool and per-task structs and the calls between the
 * two files. Nothing outside those two files includes it; the rest of the core sees db.h.
 */
#ifndef OS_DB_INTERNAL_H
#define OS_DB_INTERNAL_H

#include <arpa/inet.h>
#include <h2o.h>
#include <h2o/hostinfo.h>
#include <libpq-fe.h>

#include "db.h"
#include "timer.h"

#define MAX_ADDRS 16
#define DB_CLIENT_CHECK_MS 1000 /* client_connection_check_interval: see conn_recycle */

/* CONN_PIPELINE: in libpq's pipeline mode, carrying one or more tasks' statements (no holder). */
enum conn_state { CONN_DOWN, CONN_RESOLVING, CONN_CONNECTING, CONN_IDLE, CONN_BUSY, CONN_PIPELINE };
/* STEP_EVICT: a DEALLOCATE of the least recently used statement, ahead of a PREPARE. */
enum conn_step { STEP_NONE, STEP_EVICT, STEP_PREPARE, STEP_EXECUTE };
enum task_phase { PHASE_NONE, PHASE_ACQUIRE, PHASE_QUERY, PHASE_PIPELINE };

typedef struct db_task db_task_t;

/* One statement sent in a connection's pipeline; entries are in the order the results come. */
typedef struct pipe_entry {
    db_task_t *task;  /* NULL once the task stopped waiting: its result is read and dropped */
    char *preparing;  /* the name its PQsendPrepare went ahead of it under, until that answers */
    int in_prepare;   /* the results being read are the prepare's */
    int seen;         /* the current command gave a result: the next NULL ends that command */
    PGresult *result; /* the execution's result (or the first error), until its sync point */
} pipe_entry_t;

typedef struct prepared {
    char *name;
    uint64_t used; /* conn->uses at its last execution */
} prepared_t;

struct os_db_conn {
    os_db_pool_t *pool;
    PGconn *pg;
    h2o_socket_t *sock;
    int state;
    int step;
    int poll_write; /* while connecting: PQconnectPoll asked for writability (else readability) */
    int want_write;
    db_task_t *holder; /* the task holding the connection (state BUSY) */
    PGresult *pending; /* the command's first result, until PQgetResult says NULL */
    prepared_t *prepared; /* the statements this session has prepared */
    size_t nprepared;
    uint64_t uses;        /* counts prepared executions: prepared_t.used's clock */
    pipe_entry_t *pipe; /* a ring of pool->depth entries: the statements in flight (CONN_PIPELINE) */
    size_t pipe_head, pipe_count;
    uint64_t epoch; /* bumped when the session is dropped: code that resumed tasks checks it after */
    os_timer_t retry_timer;   /* backoff after every address of every target failed */
    os_timer_t connect_timer; /* bounds the resolution or the attempt in progress */
    uint64_t backoff_ms;
    size_t target;
    char addrs[MAX_ADDRS][INET6_ADDRSTRLEN];
    size_t naddrs, addr;
    h2o_hostinfo_getaddr_req_t *resolving;
    char last_error[256];
};
typedef struct os_db_conn os_db_conn_t;

typedef struct db_target {
    char *host;     /* NULL: libpq's default (a Unix socket) */
    char *hostaddr; /* given in the URL, else filled per attempt */
    char *port;
} db_target_t;

/* Connection keywords: slots 0-2 are host, hostaddr and port, set per attempt. */
enum { KEY_HOST, KEY_HOSTADDR, KEY_PORT, KEY_FIXED };

struct os_db_pool {
    os_worker_t *worker;
    const char *setting; /* DATABASE_URL or DATABASE_READ_URL: named in messages */
    int replica;         /* serves reads only (DATABASE_READ_URL) */
    PQconninfoOption *parsed; /* owns the strings keys/values point to */
    const char **keys, **values;
    char options[512];
    db_target_t *targets;
    size_t ntargets;
    char *lists; /* the split host/hostaddr/port lists targets point into */
    os_db_conn_t *conns;
    size_t size;
    size_t depth; /* DB_PIPELINE_DEPTH: statements one connection carries at once; 0: no pipelining */
    h2o_linklist_t waiters;
    size_t nwaiting;
};

/* What db.c keeps per task: the held connection and the query in preparation. */
struct db_task {
    os_task_ext_t ext; /* first: task->ext[OS_TASK_EXT_DB] points here */
    os_task_t *task;
    os_op_t op; /* the wait: queued (PHASE_ACQUIRE), then the query (PHASE_QUERY) */
    os_db_pool_t *pool; /* the pool the wait is on, or the held connection's */
    int on_replica;     /* the last query was sent to the read replica's pool */
    int phase;
    os_timer_t acquire_timer;
    h2o_linklist_t waiter_link;
    os_db_conn_t *conn;
    int pinned;   /* inside db.transaction; pinned with conn == NULL: the connection died */
    int want_pin; /* the acquire is for a transaction */
    int pipe;     /* the acquire is for a statement that may share a connection (pipeline) */
    pipe_entry_t *entry; /* the statement's place in a pipeline (PHASE_PIPELINE) */
    char *stmt_name;
    char *stmt_sql;
    int nparams;
    char **params;
    PGresult *result;
    uint64_t acquire_us, query_us; /* when the acquire and the query began (for metrics) */
};

/* db_connect.c: bringing a connection up, and the loop's watch on libpq's socket. */
/** Parses conninfo (the value of pool->setting) into the pool's targets and connection keywords: 0, or -1 with
 *  the reason in err. */
int db_pool_parse(os_db_pool_t *pool, const char *conninfo, char *err, size_t errlen);
/** Sets up conn's connect and retry timers, once. */
void db_conn_init(os_db_conn_t *conn);
/** Starts a round over every target (resolving, then each address); ends in db_pool_hand_over or db_conn_down. */
void db_conn_connect(os_db_conn_t *conn);
/** Advances libpq's connect handshake once the socket is ready as it asked. */
void db_conn_poll_connect(os_db_conn_t *conn);
/** Asks the loop for writability once (libpq has output it could not send). */
void db_conn_want_write(os_db_conn_t *conn);
/** Closes the session's libpq connection and the loop's watch on it. */
void db_close_pg(os_db_conn_t *conn);

/* db.c: the pool. */
/** The connection broke or no target could be reached: fails what waits on it and retries with backoff. */
void db_conn_down(os_db_conn_t *conn, const char *reason);
/** An idle connection goes to the first waiter it can serve. */
void db_pool_hand_over(os_db_pool_t *pool, os_db_conn_t *conn);
/** The loop's callbacks on libpq's socket, in every state (connecting included). */
void db_conn_on_readable(h2o_socket_t *sock, const char *err);
void db_conn_on_writable(h2o_socket_t *sock, const char *err);

#endif
