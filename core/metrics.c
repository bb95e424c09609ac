/*
 * metrics.c - owns the Prometheus metrics. Each worker writes only its own slots; a scrape,
 * on whichever worker serves /metrics, reads every worker's slots with atomic loads and sums
 * them. Slots are claimed once and never move (a fixed table, no realloc), which is what
 * makes the lock-free read safe. When the table is full, new label sets fold into one
 * "overflow" route rather than growing memory without bound. A method outside the standard
 * set is counted as "other", so odd methods a client makes up never claim slots, and every
 * label value is escaped at render, so no request can make a scrape invalid. Process-wide
 * gauges that other subsystems own (the scripts generations: reload.c, luahost.c) are published
 * here by their owners, as the workers publish theirs; a scrape calls none of them back.
 */
#include "metrics.h"
#include "ffi.h"
#include "jobs.h"
#include "text.h"
#include "version.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 256
#define WORKERS_MAX OS_METRICS_WORKERS_MAX
static const double bucket_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

typedef struct slot {
    atomic_int ready; /* set (release) once the key below is written */
    char route[96];
    char method[12];
    int status;
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
    atomic_uint_fast64_t buckets[NBUCKETS]; /* non-cumulative; summed at render */
} slot_t;

enum { G_TASKS, G_DB_SIZE, G_DB_CONNECTED, G_DB_BUSY, G_DB_WAITING, G_COUNT };

struct os_metrics {
    int worker_id;
    atomic_uint_fast64_t reloads[2]; /* refused, succeeded */
    size_t used;
    slot_t slots[SLOTS];
    atomic_uint_fast64_t gauges[G_COUNT];
    atomic_uint_fast64_t lua_bytes, connections;
};

static os_metrics_t *registry[WORKERS_MAX];
static atomic_int registered;
/* Process-wide gauges their owners publish: reload.c the live generation, luahost.c the draining ones. */
static atomic_uint_fast64_t scripts_generation, script_generations_draining;
static time_t started_at;
static double process_started_at; /* from /proc: what process_start_time_seconds means */

/* The process's start (Unix time): its start in clock ticks after boot (/proc/self/stat, field
 * 22) plus the boot time (/proc/stat btime). Falls back to now when /proc is not there. */
static double process_start_time(void)
{
    char buf[1024];
    unsigned long long ticks = 0, btime = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    for (int field = 2; p != NULL && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p + 1, "%llu", &ticks) != 1)
        return (double)time(NULL);
    if ((f = fopen("/proc/stat", "r")) == NULL)
        return (double)time(NULL);
    while (fgets(buf, sizeof(buf), f) != NULL)
        if (sscanf(buf, "btime %llu", &btime) == 1)
            break;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    return btime != 0 && hz > 0 ? (double)btime + (double)ticks / (double)hz : (double)time(NULL);
}

os_metrics_t *os_metrics_create(int worker_id)
{
    os_metrics_t *m = calloc(1, sizeof(*m));
    m->worker_id = worker_id;
    int i = atomic_fetch_add(&registered, 1);
    if (i == 0) {
        started_at = time(NULL);
        process_started_at = process_start_time();
    }
    registry[i] = m;
    return m;
}

void os_metrics_destroy_all(void)
{
    os_metric_registry_free();
    int n = atomic_exchange(&registered, 0);
    for (int i = 0; i < n; i++) {
        free(registry[i]);
        registry[i] = NULL;
    }
}

/* The method as a label value: one of the standard methods, or "other" (bounded cardinality). */
static const char *method_label(const char *method, size_t len)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (len == strlen(known[i]) && memcmp(method, known[i], len) == 0)
            return known[i];
    return "other";
}

static slot_t *find_slot(os_metrics_t *m, const char *route, const char *method_in, size_t method_len, int status)
{
    const char *method = method_label(method_in, method_len);
    for (size_t i = 0; i < m->used; i++) {
        slot_t *s = &m->slots[i];
        if (s->status == status && strcmp(s->method, method) == 0 && strcmp(s->route, route) == 0)
            return s;
    }
    slot_t *s;
    if (m->used == SLOTS - 1) {
        s = &m->slots[SLOTS - 1];
        if (!atomic_load_explicit(&s->ready, memory_order_relaxed)) {
            strcpy(s->route, "overflow");
            strcpy(s->method, "ANY");
            atomic_store_explicit(&s->ready, 1, memory_order_release);
        }
        return s;
    }
    s = &m->slots[m->used++];
    snprintf(s->route, sizeof(s->route), "%s", route);
    snprintf(s->method, sizeof(s->method), "%s", method);
    s->status = status;
    atomic_store_explicit(&s->ready, 1, memory_order_release);
    return s;
}

void os_metrics_observe_http(os_metrics_t *m, const char *route, const char *method, size_t method_len, int status,
                             uint64_t duration_us)
{
    slot_t *s = find_slot(m, route, method, method_len, status);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, duration_us, memory_order_relaxed);
    size_t b = 0;
    while (b < NBUCKETS && (double)duration_us / 1e6 > bucket_bounds[b])
        b++;
    if (b < NBUCKETS)
        atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
}

void os_metrics_count_reload(os_metrics_t *m, int ok)
{
    atomic_fetch_add_explicit(&m->reloads[ok != 0], 1, memory_order_relaxed);
}

void os_metrics_set_scripts_generation(uint64_t generation)
{
    atomic_store_explicit(&scripts_generation, generation, memory_order_relaxed);
}

void os_metrics_set_script_generations_draining(uint64_t generations)
{
    atomic_store_explicit(&script_generations_draining, generations, memory_order_relaxed);
}

void os_metrics_set_gauges(os_metrics_t *m, uint64_t tasks, uint64_t db_size, uint64_t db_connected, uint64_t db_busy,
                           uint64_t db_waiting)
{
    uint64_t v[G_COUNT] = {tasks, db_size, db_connected, db_busy, db_waiting};
    for (int i = 0; i < G_COUNT; i++)
        atomic_store_explicit(&m->gauges[i], v[i], memory_order_relaxed);
}

void os_metrics_set_worker(os_metrics_t *m, uint64_t lua_bytes, uint64_t connections)
{
    atomic_store_explicit(&m->lua_bytes, lua_bytes, memory_order_relaxed);
    atomic_store_explicit(&m->connections, connections, memory_order_relaxed);
}

/* A label value per the text format: backslash, double quote and newline escaped. */
typedef struct label {
    char text[2 * sizeof(((slot_t *)0)->route) + 1];
} label_t;

static const char *escape_label(label_t *l, const char *value)
{
    size_t o = 0;
    for (const char *p = value; *p != '\0' && o + 2 < sizeof(l->text); p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            l->text[o++] = '\\';
            l->text[o++] = *p == '\n' ? 'n' : *p;
        } else {
            l->text[o++] = *p;
        }
    }
    l->text[o] = '\0';
    return l->text;
}

typedef struct agg {
    const slot_t *key;
    uint64_t count, sum_us, buckets[NBUCKETS];
} agg_t;

/* Sums the slots of every worker by key; by_status=0 merges statuses (for the histogram). */
static size_t aggregate(agg_t *aggs, size_t max, int by_status)
{
    size_t n = 0;
    int workers = atomic_load(&registered);
    for (int w = 0; w < workers; w++) {
        os_metrics_t *m = registry[w];
        for (size_t i = 0; i < SLOTS; i++) {
            const slot_t *s = &m->slots[i];
            if (!atomic_load_explicit(&s->ready, memory_order_acquire))
                break;
            size_t j = 0;
            while (j < n && !(strcmp(aggs[j].key->route, s->route) == 0 && strcmp(aggs[j].key->method, s->method) == 0 &&
                              (!by_status || aggs[j].key->status == s->status)))
                j++;
            if (j == n) {
                if (n == max)
                    continue;
                memset(&aggs[n], 0, sizeof(aggs[n]));
                aggs[n++].key = s;
            }
            aggs[j].count += atomic_load_explicit(&s->count, memory_order_relaxed);
            aggs[j].sum_us += atomic_load_explicit(&s->sum_us, memory_order_relaxed);
            for (size_t b = 0; b < NBUCKETS; b++)
                aggs[j].buckets[b] += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
        }
    }
    return n;
}

/* The standard process_* series (what Prometheus' client libraries export), read from /proc. */
static void render_process(os_text_t *o)
{
    char buf[1024];
    long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long long utime = 0, stime = 0, pages = 0, fds = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    for (int field = 2; p != NULL && field < 14; field++) /* utime and stime are fields 14 and 15 */
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p + 1, "%llu %llu", &utime, &stime) != 2)
        utime = stime = 0;
    if ((f = fopen("/proc/self/statm", "r")) != NULL) {
        if (fscanf(f, "%*u %llu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            fds += e->d_name[0] != '.';
        fds--; /* the descriptor opendir itself holds */
        closedir(d);
    }
    struct rlimit lim;
    double max_fds = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY ? (double)lim.rlim_cur : -1;
    os_text_put(o, "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds.\n"
           "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n",
        hz > 0 ? (double)(utime + stime) / (double)hz : 0.0);
    os_text_put(o, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
           "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n",
        pages * (unsigned long long)(page > 0 ? page : 4096));
    os_text_put(o, "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n"
           "process_open_fds %llu\n", fds);
    if (max_fds >= 0)
        os_text_put(o, "# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\n"
               "process_max_fds %.0f\n", max_fds);
    os_text_put(o, "# HELP process_start_time_seconds Start time of the process since the Unix epoch, in seconds.\n"
           "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n", process_started_at);
}

size_t os_metrics_render(char *buf, size_t cap)
{
    os_text_t o = {buf, cap, 0};
    size_t max = SLOTS * 4;
    agg_t *aggs = malloc(max * sizeof(*aggs));
    if (aggs == NULL)
        return 0;

    os_text_put(&o, "# HELP orderservice_http_requests_total HTTP requests answered, by route pattern, method and status.\n"
            "# TYPE orderservice_http_requests_total counter\n");
    label_t route, method;
    size_t n = aggregate(aggs, max, 1);
    for (size_t i = 0; i < n; i++)
        os_text_put(&o, "orderservice_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
            escape_label(&route, aggs[i].key->route), escape_label(&method, aggs[i].key->method), aggs[i].key->status,
            (unsigned long long)aggs[i].count);

    os_text_put(&o, "# HELP orderservice_http_request_duration_seconds Time from request to response, by route pattern and method.\n"
            "# TYPE orderservice_http_request_duration_seconds histogram\n");
    n = aggregate(aggs, max, 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t cumulative = 0;
        const char *r = escape_label(&route, aggs[i].key->route), *m = escape_label(&method, aggs[i].key->method);
        for (size_t b = 0; b < NBUCKETS; b++) {
            cumulative += aggs[i].buckets[b];
            os_text_put(&o, "orderservice_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"%g\"} %llu\n",
                r, m, bucket_bounds[b], (unsigned long long)cumulative);
        }
        os_text_put(&o, "orderservice_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"+Inf\"} %llu\n",
            r, m, (unsigned long long)aggs[i].count);
        os_text_put(&o, "orderservice_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n", r, m, (double)aggs[i].sum_us / 1e6);
        os_text_put(&o, "orderservice_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %llu\n", r, m, (unsigned long long)aggs[i].count);
    }
    free(aggs);

    static const struct {
        const char *name, *help;
    } gauges[G_COUNT] = {
        {"orderservice_tasks_running", "Requests being handled (coroutines alive)."},
        {"orderservice_db_pool_size", "Database connections configured per worker, summed."},
        {"orderservice_db_pool_connected", "Database connections that are up."},
        {"orderservice_db_pool_busy", "Database connections running a query, a transaction or a pipeline of statements."},
        {"orderservice_db_pool_waiting", "Requests queued for a database connection."},
    };
    int workers = atomic_load(&registered);
    for (int g = 0; g < G_COUNT; g++) {
        uint64_t sum = 0;
        for (int w = 0; w < workers; w++)
            sum += atomic_load_explicit(&registry[w]->gauges[g], memory_order_relaxed);
        os_text_put(&o, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", gauges[g].name, gauges[g].help, gauges[g].name,
            gauges[g].name, (unsigned long long)sum);
    }
    uint64_t reloads[2] = {0, 0};
    for (int w = 0; w < workers; w++)
        for (int r = 0; r < 2; r++)
            reloads[r] += atomic_load_explicit(&registry[w]->reloads[r], memory_order_relaxed);
    os_text_put(&o, "# HELP orderservice_script_reloads_total Script reloads per worker, by result.\n"
            "# TYPE orderservice_script_reloads_total counter\n"
            "orderservice_script_reloads_total{result=\"ok\"} %llu\n"
            "orderservice_script_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)reloads[1], (unsigned long long)reloads[0]);
    os_text_put(&o, "# HELP orderservice_workers Worker threads serving requests.\n# TYPE orderservice_workers gauge\n"
            "orderservice_workers %d\n",
        workers);
    uint64_t connections = 0;
    for (int w = 0; w < workers; w++)
        connections += atomic_load_explicit(&registry[w]->connections, memory_order_relaxed);
    os_text_put(&o, "# HELP orderservice_http_connections_active HTTP connections open (published every 100 ms).\n"
            "# TYPE orderservice_http_connections_active gauge\norderservice_http_connections_active %llu\n",
        (unsigned long long)connections);
    os_text_put(&o, "# HELP orderservice_lua_memory_bytes Memory of each worker's current Lua VM (published every 100 ms).\n"
            "# TYPE orderservice_lua_memory_bytes gauge\n");
    for (int w = 0; w < workers; w++)
        os_text_put(&o, "orderservice_lua_memory_bytes{worker=\"%d\"} %llu\n", registry[w]->worker_id,
            (unsigned long long)atomic_load_explicit(&registry[w]->lua_bytes, memory_order_relaxed));
    o.len += os_jobs_render(o.len < cap ? buf + o.len : NULL, o.len < cap ? cap - o.len : 0);
    os_text_put(&o, "# HELP orderservice_scripts_generation The scripts generation new requests start on "
            "(0: as started; +1 per reload asked for).\n"
            "# TYPE orderservice_scripts_generation gauge\norderservice_scripts_generation %llu\n"
            "# HELP orderservice_script_generations_draining Older scripts generations still "
            "finishing requests (or jobs) that started on them.\n"
            "# TYPE orderservice_script_generations_draining gauge\n"
            "orderservice_script_generations_draining %llu\n",
        (unsigned long long)atomic_load_explicit(&scripts_generation, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&script_generations_draining, memory_order_relaxed));
    o.len += os_metric_registry_render(o.len < cap ? buf + o.len : NULL, o.len < cap ? cap - o.len : 0);
    render_process(&o);
    os_text_put(&o, "# HELP orderservice_build_info The running build (always 1).\n# TYPE orderservice_build_info gauge\n"
            "orderservice_build_info{version=\"%s\"} 1\n",
        OS_VERSION);
    os_text_put(&o, "# HELP orderservice_start_time_seconds When the process started (Unix time).\n"
            "# TYPE orderservice_start_time_seconds gauge\norderservice_start_time_seconds %lld\n",
        (long long)started_at);
    if (o.len < cap)
        buf[o.len] = '\0';
    return o.len;
}
