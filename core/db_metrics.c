/*
 * db_metrics.c - owns the database's metrics: orderservice_db_query_duration_seconds{statement},
 * orderservice_db_errors_total{class} and orderservice_db_pool_acquire_duration_seconds. db.c
 * calls the two hooks below; the families live in metric_registry.c like the scripts' own.
 *
 * The statement label is the prepared statement's base name (db.statement's name without the
 * hash of its SQL that lib/db.lua appends), "begin" / "commit" / "rollback" for those, and
 * "unnamed" for other plain SQL: bounded by the code, not the data (every list text shares
 * "orders_list").
 * Each worker keeps its own small cache from name to series, so a query's hot path takes no
 * lock (the registry's mutex only on a worker's first use of a statement).
 */
#include "ffi.h"
#include "metrics.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define CACHE 128
#define NAME_MAX_LEN 64

static const double query_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double acquire_buckets[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int query_family = -1, error_family = -1, acquire_series = -1;

static void declare(void)
{
    static const char *const statement[] = {"statement"}, *const class[] = {"class"};
    const char *err;
    query_family = os_metric_declare("orderservice_db_query_duration_seconds",
                                     "Time from sending a statement to its last result, by statement name.",
                                     OS_METRIC_HISTOGRAM, OS_METRIC_SUM, statement, 1, query_buckets,
                                     (int)(sizeof(query_buckets) / sizeof(query_buckets[0])), 200, &err);
    error_family = os_metric_declare("orderservice_db_errors_total",
                                     "Statements that failed, by SQLSTATE class (08: the connection broke).",
                                     OS_METRIC_COUNTER, OS_METRIC_SUM, class, 1, NULL, 0, 64, &err);
    int acquire = os_metric_declare("orderservice_db_pool_acquire_duration_seconds",
                                    "Time a task waited for a pooled connection (a timed-out wait counts its timeout).",
                                    OS_METRIC_HISTOGRAM, OS_METRIC_SUM, NULL, 0, acquire_buckets,
                                    (int)(sizeof(acquire_buckets) / sizeof(acquire_buckets[0])), 1, &err);
    acquire_series = os_metric_series(acquire, NULL, 0);
}

/* "orders_details_1a2b3c4d" -> "orders_details"; plain SQL -> begin/commit/rollback/unnamed. */
static void base_name(const char *name, const char *sql, char *out)
{
    if (name == NULL || name[0] == '\0') {
        static const char *const words[] = {"begin", "commit", "rollback"};
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
            size_t n = strlen(words[i]);
            if (sql != NULL && strncasecmp(sql, words[i], n) == 0 && (sql[n] == '\0' || sql[n] == ' ' || sql[n] == ';')) {
                strcpy(out, words[i]);
                return;
            }
        }
        strcpy(out, "unnamed");
        return;
    }
    size_t len = strnlen(name, NAME_MAX_LEN - 1);
    if (len > 9 && name[len - 9] == '_' && strspn(name + len - 8, "0123456789abcdef") == 8)
        len -= 9;
    memcpy(out, name, len);
    out[len] = '\0';
}

typedef struct cached {
    char name[NAME_MAX_LEN];
    int series;
} cached_t;

/* Per worker thread: each worker only ever reads and writes its own. */
static __thread cached_t cache[CACHE];

static int statement_series(const char *base)
{
    uint32_t h = 2166136261u;
    for (const char *p = base; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (int i = 0; i < CACHE; i++) {
        cached_t *c = &cache[(h + (uint32_t)i) % CACHE];
        if (c->name[0] == '\0') {
            const char *values[] = {base};
            int s = os_metric_series(query_family, values, 1);
            strcpy(c->name, base);
            c->series = s;
            return s;
        }
        if (strcmp(c->name, base) == 0)
            return c->series;
    }
    const char *values[] = {base}; /* a full cache: the registry's lookup, still correct */
    return os_metric_series(query_family, values, 1);
}

void os_metrics_db_acquired(uint64_t waited_us)
{
    pthread_once(&once, declare);
    os_metric_observe(acquire_series, (double)waited_us / 1e6);
}

void os_metrics_db_query(const char *name, const char *sql, uint64_t duration_us, const char *failed_sqlstate)
{
    pthread_once(&once, declare);
    char base[NAME_MAX_LEN];
    base_name(name, sql, base);
    os_metric_observe(statement_series(base), (double)duration_us / 1e6);
    if (failed_sqlstate == NULL)
        return;
    /* The class: the SQLSTATE's first two characters (digits and capitals), 08 when there is none. */
    char class[3] = "08";
    if (strlen(failed_sqlstate) == 5 && strspn(failed_sqlstate, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5) {
        class[0] = failed_sqlstate[0];
        class[1] = failed_sqlstate[1];
    }
    const char *values[] = {class};
    os_metric_add(os_metric_series(error_family, values, 1), 1);
}
