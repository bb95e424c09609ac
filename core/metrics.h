/*
 * metrics.h - Prometheus counters kept per worker and summed at scrape time.
 */
#ifndef OS_METRICS_H
#define OS_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct os_metrics os_metrics_t;

/** Allocates the counters of one worker and registers them for scraping. */
os_metrics_t *os_metrics_create(int worker_id);
/** Unregisters and frees them (only after every worker has stopped). */
void os_metrics_destroy_all(void);
/** Counts one answered request: route pattern, method, status and duration. */
void os_metrics_observe_http(os_metrics_t *m, const char *route, const char *method, size_t method_len, int status,
                             uint64_t duration_us);
/** Counts a script reload that succeeded (ok = 1) or was refused (ok = 0). */
void os_metrics_count_reload(os_metrics_t *m, int ok);
/** Publishes the worker's gauges (tasks running, pool occupancy) for other threads to read. */
void os_metrics_set_gauges(os_metrics_t *m, uint64_t tasks, uint64_t db_size, uint64_t db_connected, uint64_t db_busy,
                           uint64_t db_waiting);

#endif
