/*
 * metrics.h - Prometheus counters kept per worker and summed at scrape time.
 */
#ifndef OS_METRICS_H
#define OS_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct os_metrics os_metrics_t;

/** Worker ids at or above this share one set of cells with the main thread. */
#define OS_METRICS_WORKERS_MAX 256

/** Allocates the counters of one worker and registers them for scraping. */
os_metrics_t *os_metrics_create(int worker_id);
/** Unregisters and frees them (only after every worker has stopped). */
void os_metrics_destroy_all(void);
/** Counts one answered request: route pattern, method, status and duration. */
void os_metrics_observe_http(os_metrics_t *m, const char *route, const char *method, size_t method_len, int status,
                             uint64_t duration_us);
/** Counts a script reload that succeeded (ok = 1) or was refused (ok = 0). */
void os_metrics_count_reload(os_metrics_t *m, int ok);
/** Publishes the scripts generation new requests start on (reload.c, as it goes live); any thread. */
void os_metrics_set_scripts_generation(uint64_t generation);
/** Publishes how many older scripts generations still run tasks (luahost.c, as VMs drain); any thread. */
void os_metrics_set_script_generations_draining(uint64_t generations);
/** Publishes the worker's gauges (tasks running, pool occupancy) for other threads to read. */
void os_metrics_set_gauges(os_metrics_t *m, uint64_t tasks, uint64_t db_size, uint64_t db_connected, uint64_t db_busy,
                           uint64_t db_waiting);

/** Publishes the worker's own gauges: its current VM's memory and its open HTTP connections. */
void os_metrics_set_worker(os_metrics_t *m, uint64_t lua_bytes, uint64_t connections);

/** Writes every declared family (metric_registry.c) like snprintf: returns the length the text needs. */
size_t os_metric_registry_render(char *buf, size_t cap);
/** Frees the declared families and every worker's cells (only after every worker has stopped). */
void os_metric_registry_free(void);

/** Times one pool acquire (db.c): how long the task waited for a connection. */
void os_metrics_db_acquired(uint64_t waited_us);
/** Times one statement (db.c): its name as prepared ("" for plain SQL), its SQL, and, when it failed, its SQLSTATE ("" when the connection broke). */
void os_metrics_db_query(const char *name, const char *sql, uint64_t duration_us, const char *failed_sqlstate);

#endif
