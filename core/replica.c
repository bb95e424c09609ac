/*
 * replica.c - owns each worker's read replica (DATABASE_READ_URL, READ_MAX_LAG_MS): its pool,
 * and the verdict the request path follows to decide whether a read may go there, published as
 * worker->read_db (the replica's pool, or NULL) for db.c's read path to consult.
 *
 * The lag is measured off the request path: a timer on the worker runs one probe at a time on
 * the replica's pool, through the same non-blocking path as a request's query (a task of this
 * file's own, whose resume callback is C), and records whether the replica is close enough.
 * Until the first probe answers, after any probe fails (replica down, pool exhausted, query
 * error) and while a probe takes longer than the budget, reads go to the primary: a stale read
 * is the one failure this file exists to prevent, an extra read on the primary is not.
 *
 * How far behind: a standby whose WAL receiver is streaming and that has replayed everything it
 * received has nothing pending, so its lag is 0 however old its last replayed transaction is (an
 * idle primary writes no transactions, and the replay timestamp ages without any real lag).
 * Otherwise (replay behind or paused, or the stream broken) the lag is the age of the last
 * replayed transaction, which only grows while replay is stuck. A server that is not in
 * recovery (the URL names a primary) has no lag.
 */
#include "replica.h"
#include "config.h"
#include "db.h"
#include "ffi.h"
#include "log.h"
#include "task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_MIN_MS 100
#define PROBE_MAX_MS 1000

static const char probe_sql[] =
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
    "  AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0"
    " ELSE coalesce((extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint, -1)"
    " END AS lag_ms";

struct os_replica {
    os_worker_t *worker;
    os_db_pool_t *pool;
    os_task_t probe; /* this file's task: the probe's query is its operation */
    os_timer_t timer;
    uint64_t every_ms;
    uint64_t probe_started_ms; /* 0: no probe in flight */
    int usable;
    char why[160]; /* why reads stay off the replica, for the log on a change */
};

/* Records the verdict; logs only changes, so a replica that stays down is one line, not one a probe. */
static void set_usable(os_replica_t *r, int usable, const char *why)
{
    if (usable && !r->usable)
        os_log(OS_LOG_INFO, "read replica in use");
    else if (!usable && (r->usable || strcmp(r->why, why) != 0))
        os_log(OS_LOG_WARN, "reads go to the primary: %s", why);
    r->usable = usable;
    r->worker->read_db = usable ? r->pool : NULL;
    snprintf(r->why, sizeof(r->why), "%s", usable ? "" : why);
}

static void on_probe_done(os_task_t *task, int status)
{
    os_replica_t *r = H2O_STRUCT_FROM_MEMBER(os_replica_t, probe, task);
    char why[160];
    size_t len = 0;
    const char *v = status == OS_OK && os_db_nrows(task) == 1 ? os_db_value(task, 0, 0, &len) : NULL;
    r->probe_started_ms = 0;
    if (v == NULL) {
        snprintf(why, sizeof(why), "the replica's lag probe failed: %.120s",
                 status == OS_OK ? "no answer" : status == OS_ERR ? os_db_sqlstate(task) : task->error);
        set_usable(r, 0, why);
    } else {
        long long lag = strtoll(v, NULL, 10);
        if (lag >= 0 && lag <= os_config.read_max_lag_ms) {
            set_usable(r, 1, "");
        } else {
            if (lag < 0)
                snprintf(why, sizeof(why), "the replica has replayed no transaction yet");
            else
                snprintf(why, sizeof(why), "the replica is lagging (READ_MAX_LAG_MS %d)", os_config.read_max_lag_ms);
            set_usable(r, 0, why);
        }
    }
    os_db_clear(task);
}

static void on_timer(os_timer_t *timer)
{
    os_replica_t *r = H2O_STRUCT_FROM_MEMBER(os_replica_t, timer, timer);
    uint64_t now = os_clock_ms();
    if (r->probe_started_ms != 0) {
        /* A replica that takes this long to say how far behind it is cannot be trusted to be close. */
        if (now - r->probe_started_ms > (uint64_t)os_config.read_max_lag_ms + r->every_ms)
            set_usable(r, 0, "the replica's lag probe is not answering");
    } else {
        /* Set first: a connection that fails as the query is sent completes the probe at once. */
        r->probe_started_ms = now;
        if (os_db_query_pool(r->pool, &r->probe, "os_replica_lag", probe_sql, 0, NULL) != OS_OK) {
            char why[160];
            r->probe_started_ms = 0;
            snprintf(why, sizeof(why), "%.150s", r->probe.error);
            set_usable(r, 0, why);
        }
    }
    os_timer_start(&r->worker->timers, &r->timer, r->every_ms);
}

os_replica_t *os_replica_create(os_worker_t *worker, const char *conninfo, size_t size, char *err, size_t errlen)
{
    os_replica_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if ((r->pool = os_db_pool_create(worker, "DATABASE_READ_URL", 1, conninfo, size, err, errlen)) == NULL) {
        free(r);
        return NULL;
    }
    r->worker = worker;
    os_task_init(&r->probe, worker, on_probe_done);
    /* Probe often enough that a replica falling behind is noticed well within the budget. */
    uint64_t every = (uint64_t)os_config.read_max_lag_ms / 2;
    r->every_ms = every < PROBE_MIN_MS ? PROBE_MIN_MS : every > PROBE_MAX_MS ? PROBE_MAX_MS : every;
    snprintf(r->why, sizeof(r->why), "no lag probe has answered yet");
    os_timer_init(&r->timer, on_timer);
    os_timer_start(&worker->timers, &r->timer, 0);
    return r;
}

void os_replica_stop(os_replica_t *r)
{
    if (r == NULL)
        return;
    os_timer_stop(&r->worker->timers, &r->timer);
    os_task_dispose(&r->probe);
    r->probe_started_ms = 0;
    r->usable = 0;
    r->worker->read_db = NULL;
}

void os_replica_destroy(os_replica_t *r)
{
    if (r == NULL)
        return;
    os_db_pool_destroy(r->pool);
    free(r);
}
