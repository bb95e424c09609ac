/*
 * metric_registry.c - owns the metrics declared at run time: by scripts through the FFI
 * (scripts/lib/metrics.lua, docs/operators.md) and by the core itself (db.c's query timings).
 *
 * A family (name, help, type, label names, buckets) is declared once per process; declaring
 * it again with the same shape returns the same id, which is how a reload keeps its values:
 * the new VM declares again and finds them. A series (one set of label values) is claimed
 * once under a mutex and then never moves; its cells (the value, or a histogram's count, sum
 * and buckets) sit at the same offset in every worker's own array. A worker writes only its
 * own array, with relaxed atomic stores (one writer per array, so no read-modify-write needs
 * a lock), and a scrape on any worker sums (or takes the max, or the latest) over the arrays.
 * Everything is fixed-size tables: when a family reaches its series limit, further label sets
 * fold into one series whose label values are all "overflow"; the process never grows memory
 * because of what clients send.
 */
#include "metrics.h"
#include "ffi.h"
#include "timer.h"
#include "worker.h"
#include "text.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 128
#define MAX_SERIES 4096
#define MAX_CELLS 32768
#define MAX_LABELS 8
#define MAX_BUCKETS 24
#define MAX_VALUE_LEN 128
#define DEFAULT_SERIES_PER_FAMILY 100
/* Arrays per worker id, plus one shared by code outside the workers (the main thread: checks, specs). */
#define ARRAYS (OS_METRICS_WORKERS_MAX + 1)

typedef struct family {
    char name[96];
    char help[256];
    int type, aggregate;
    int nlabels;
    char labels[MAX_LABELS][64];
    int nbuckets;
    double buckets[MAX_BUCKETS];
    int max_series, nseries;
    int overflow;             /* the series label sets fold into once the family is full; -1 until then */
    atomic_int head;          /* first series of the family (-1: none), for the scrape */
    int tail;
} family_t;

typedef struct series {
    int family;
    int cell;                 /* offset of its cells in every worker's array */
    atomic_int next;          /* the family's next series (-1: last) */
    size_t key_len;
    char *key;                /* the raw values, each followed by a NUL */
    char *rendered;           /* name="value",... escaped for the text format */
} series_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static family_t families[MAX_FAMILIES];
static atomic_int nfamilies;
static series_t series_table[MAX_SERIES];
static int nseries_total;
static int ncells;
static _Atomic(_Atomic double *) arrays[ARRAYS];

/* Names the core renders itself: a script must not declare them a second time. */
static const char *const reserved[] = {
    "orderservice_http_requests_total", "orderservice_http_request_duration_seconds", "orderservice_tasks_running",
    "orderservice_db_pool_size", "orderservice_db_pool_connected", "orderservice_db_pool_busy",
    "orderservice_db_pool_waiting", "orderservice_script_reloads_total", "orderservice_workers",
    "orderservice_jobs_last_success_timestamp_seconds", "orderservice_start_time_seconds",
    "orderservice_build_info", "orderservice_lua_memory_bytes", "orderservice_http_connections_active",
    "orderservice_orders_needing_attention", "orderservice_outbox_pending", "orderservice_outbox_oldest_pending_seconds",
    "orderservice_sagas_in_flight"};

static int valid_name(const char *s, int colon_ok)
{
    if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              (colon_ok && *s == ':')))
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int cells_of(const family_t *f)
{
    if (f->type == OS_METRIC_HISTOGRAM)
        return 2 + f->nbuckets; /* count, sum, then each bucket (not cumulative) */
    return f->aggregate == OS_METRIC_LATEST ? 2 : 1; /* the value, and when it was set */
}

/* Checks a declaration; returns NULL or a static reason. */
static const char *check_declaration(const char *name, const char *help, int type, int aggregate,
                                     const char *const *labels, int nlabels, const double *buckets, int nbuckets)
{
    if (!valid_name(name, 1) || strlen(name) >= sizeof(families[0].name))
        return "bad metric name (letters, digits, '_' and ':', not starting with a digit, under 96 bytes)";
    if (strncmp(name, "process_", 8) == 0 || strncmp(name, "__", 2) == 0)
        return "metric names starting with process_ or __ are reserved";
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcmp(name, reserved[i]) == 0)
            return "this metric is rendered by the core";
    if (help == NULL || strlen(help) >= sizeof(families[0].help))
        return "help text missing or over 255 bytes";
    if (type != OS_METRIC_COUNTER && type != OS_METRIC_GAUGE && type != OS_METRIC_HISTOGRAM)
        return "unknown metric type";
    if (type == OS_METRIC_COUNTER && !ends_with(name, "_total"))
        return "a counter's name ends in _total";
    if (type != OS_METRIC_COUNTER && ends_with(name, "_total"))
        return "only counters end in _total";
    if (type == OS_METRIC_HISTOGRAM &&
        (ends_with(name, "_bucket") || ends_with(name, "_sum") || ends_with(name, "_count")))
        return "a histogram's name must not end in _bucket, _sum or _count";
    if (aggregate != OS_METRIC_SUM && (type != OS_METRIC_GAUGE || (aggregate != OS_METRIC_MAX && aggregate != OS_METRIC_LATEST)))
        return "only gauges aggregate other than by sum (max or latest)";
    if (nlabels < 0 || nlabels > MAX_LABELS)
        return "at most 8 labels";
    for (int i = 0; i < nlabels; i++) {
        if (!valid_name(labels[i], 0) || strlen(labels[i]) >= sizeof(families[0].labels[0]))
            return "bad label name (letters, digits and '_', not starting with a digit, under 64 bytes)";
        if (strncmp(labels[i], "__", 2) == 0)
            return "label names starting with __ are reserved";
        if (type == OS_METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0)
            return "a histogram cannot have a label named le";
        if (strcmp(labels[i], "job") == 0 || strcmp(labels[i], "instance") == 0)
            return "job and instance are Prometheus' target labels";
        for (int j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0)
                return "a label name is given twice";
    }
    if (type == OS_METRIC_HISTOGRAM) {
        if (nbuckets < 1 || nbuckets > MAX_BUCKETS)
            return "a histogram needs 1 to 24 buckets";
        for (int i = 0; i < nbuckets; i++)
            if (!(buckets[i] == buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
                return "bucket bounds must increase";
    }
    return NULL;
}

static int same_shape(const family_t *f, int type, int aggregate, const char *const *labels, int nlabels,
                      const double *buckets, int nbuckets)
{
    if (f->type != type || f->aggregate != aggregate || f->nlabels != nlabels ||
        (type == OS_METRIC_HISTOGRAM && f->nbuckets != nbuckets))
        return 0;
    for (int i = 0; i < nlabels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return 0;
    for (int i = 0; type == OS_METRIC_HISTOGRAM && i < nbuckets; i++)
        if (f->buckets[i] != buckets[i])
            return 0;
    return 1;
}

int os_metric_declare(const char *name, const char *help, int type, int aggregate, const char *const *labels,
                      int nlabels, const double *buckets, int nbuckets, int max_series, const char **err)
{
    const char *why = check_declaration(name, help, type, aggregate, labels, nlabels, buckets, nbuckets);
    if (why == NULL && max_series < 0)
        why = "max_series must be positive";
    if (why != NULL) {
        if (err != NULL)
            *err = why;
        return -1;
    }
    pthread_mutex_lock(&lock);
    int n = atomic_load_explicit(&nfamilies, memory_order_relaxed), id = -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(families[i].name, name) != 0)
            continue;
        if (same_shape(&families[i], type, aggregate, labels, nlabels, buckets, nbuckets))
            id = i;
        else
            why = "already declared with another type, aggregation, labels or buckets";
        break;
    }
    if (id < 0 && why == NULL) {
        if (n == MAX_FAMILIES) {
            why = "too many metrics declared (128)";
        } else {
            family_t *f = &families[n];
            snprintf(f->name, sizeof(f->name), "%s", name);
            snprintf(f->help, sizeof(f->help), "%s", help);
            f->type = type;
            f->aggregate = aggregate;
            f->nlabels = nlabels;
            for (int i = 0; i < nlabels; i++)
                snprintf(f->labels[i], sizeof(f->labels[i]), "%s", labels[i]);
            f->nbuckets = type == OS_METRIC_HISTOGRAM ? nbuckets : 0;
            for (int i = 0; i < f->nbuckets; i++)
                f->buckets[i] = buckets[i];
            f->max_series = max_series > 0 ? max_series : DEFAULT_SERIES_PER_FAMILY;
            f->overflow = -1;
            atomic_store_explicit(&f->head, -1, memory_order_relaxed);
            f->tail = -1;
            id = n;
            atomic_store_explicit(&nfamilies, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&lock);
    if (id < 0 && err != NULL)
        *err = why;
    return id;
}

/* Appends one escaped label value (backslash, quote, newline) to out; returns the new length. */
static size_t escape_into(char *out, size_t len, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            out[len++] = '\\';
            out[len++] = *p == '\n' ? 'n' : *p;
        } else {
            out[len++] = *p;
        }
    }
    return len;
}

/* Claims a new series under the lock; -1 when the tables are full. */
static int claim(family_t *f, int fid, const char *key, size_t key_len, const char *const *values)
{
    int need = cells_of(f);
    if (nseries_total == MAX_SERIES || ncells + need > MAX_CELLS)
        return -1;
    size_t room = 1;
    for (int i = 0; i < f->nlabels; i++)
        room += strlen(f->labels[i]) + 4 + 2 * strlen(values[i]);
    series_t *s = &series_table[nseries_total];
    s->key = malloc(key_len + 1);
    s->rendered = malloc(room);
    if (s->key == NULL || s->rendered == NULL) {
        free(s->key);
        free(s->rendered);
        s->key = s->rendered = NULL;
        return -1;
    }
    memcpy(s->key, key, key_len);
    s->key_len = key_len;
    size_t len = 0;
    for (int i = 0; i < f->nlabels; i++) {
        len += (size_t)sprintf(s->rendered + len, "%s%s=\"", i ? "," : "", f->labels[i]);
        len = escape_into(s->rendered, len, values[i]);
        s->rendered[len++] = '"';
    }
    s->rendered[len] = '\0';
    s->family = fid;
    s->cell = ncells;
    ncells += need;
    atomic_store_explicit(&s->next, -1, memory_order_relaxed);
    int id = nseries_total++;
    /* Published last: a scrape that reaches the series sees it whole. */
    if (f->tail < 0)
        atomic_store_explicit(&f->head, id, memory_order_release);
    else
        atomic_store_explicit(&series_table[f->tail].next, id, memory_order_release);
    f->tail = id;
    return id;
}

int os_metric_series(int family, const char *const *values, int nvalues)
{
    if (family < 0 || family >= atomic_load_explicit(&nfamilies, memory_order_acquire))
        return -1;
    family_t *f = &families[family];
    if (nvalues != f->nlabels)
        return -1;
    /* The key: each value (cut to MAX_VALUE_LEN bytes) followed by a NUL. */
    char key[MAX_LABELS * (MAX_VALUE_LEN + 1)];
    const char *cut[MAX_LABELS];
    char cuts[MAX_LABELS][MAX_VALUE_LEN + 1];
    size_t key_len = 0;
    for (int i = 0; i < nvalues; i++) {
        const char *v = values[i] != NULL ? values[i] : "";
        size_t n = strnlen(v, MAX_VALUE_LEN);
        memcpy(cuts[i], v, n);
        cuts[i][n] = '\0';
        cut[i] = cuts[i];
        memcpy(key + key_len, v, n);
        key_len += n;
        key[key_len++] = '\0';
    }
    int id = -1;
    pthread_mutex_lock(&lock);
    for (int s = atomic_load_explicit(&f->head, memory_order_relaxed); s >= 0;
         s = atomic_load_explicit(&series_table[s].next, memory_order_relaxed))
        if (series_table[s].key_len == key_len && memcmp(series_table[s].key, key, key_len) == 0) {
            id = s;
            break;
        }
    if (id < 0 && f->nseries < f->max_series) {
        if ((id = claim(f, family, key, key_len, cut)) >= 0)
            f->nseries++;
    }
    if (id < 0) {
        if (f->overflow < 0) {
            const char *over[MAX_LABELS];
            char okey[MAX_LABELS * 9];
            for (int i = 0; i < f->nlabels; i++) {
                over[i] = "overflow";
                memcpy(okey + 9 * i, "overflow", 9);
            }
            f->overflow = claim(f, family, okey, (size_t)(9 * f->nlabels), over);
        }
        id = f->overflow;
    }
    pthread_mutex_unlock(&lock);
    return id;
}

/* The calling thread's array, made on its first write (the thread is its only writer). */
static _Atomic double *own_array(void)
{
    int w = os_worker_id();
    int slot = w >= 0 && w < OS_METRICS_WORKERS_MAX ? w : OS_METRICS_WORKERS_MAX;
    _Atomic double *a = atomic_load_explicit(&arrays[slot], memory_order_acquire);
    if (a == NULL) {
        a = calloc(MAX_CELLS, sizeof(*a));
        if (a == NULL)
            return NULL;
        _Atomic double *expected = NULL;
        /* Only the main thread shares the last slot; the exchange keeps any race harmless. */
        if (!atomic_compare_exchange_strong(&arrays[slot], &expected, a)) {
            free(a);
            a = expected;
        }
    }
    return a;
}

static series_t *series_of(int series)
{
    /* A series id below the count was published before the id was handed out. */
    return series >= 0 && series < MAX_SERIES && series_table[series].key != NULL ? &series_table[series] : NULL;
}

static void cell_add(_Atomic double *c, double v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

int os_metric_add(int series, double value)
{
    series_t *s = series_of(series);
    _Atomic double *a = own_array();
    if (s == NULL || a == NULL)
        return -1;
    const family_t *f = &families[s->family];
    if (f->type == OS_METRIC_HISTOGRAM || (f->type == OS_METRIC_COUNTER && !(value >= 0)))
        return -1; /* a counter only goes up */
    if (f->aggregate == OS_METRIC_LATEST) {
        atomic_store_explicit(&a[s->cell + 1], (double)os_clock_us(), memory_order_relaxed);
    }
    cell_add(&a[s->cell], value);
    return 0;
}

int os_metric_set(int series, double value)
{
    series_t *s = series_of(series);
    _Atomic double *a = own_array();
    if (s == NULL || a == NULL || families[s->family].type != OS_METRIC_GAUGE)
        return -1;
    atomic_store_explicit(&a[s->cell], value, memory_order_relaxed);
    if (families[s->family].aggregate == OS_METRIC_LATEST)
        atomic_store_explicit(&a[s->cell + 1], (double)os_clock_us(), memory_order_relaxed);
    return 0;
}

int os_metric_observe(int series, double value)
{
    series_t *s = series_of(series);
    _Atomic double *a = own_array();
    if (s == NULL || a == NULL || families[s->family].type != OS_METRIC_HISTOGRAM)
        return -1;
    const family_t *f = &families[s->family];
    int b = 0;
    while (b < f->nbuckets && value > f->buckets[b])
        b++;
    if (b < f->nbuckets)
        cell_add(&a[s->cell + 2 + b], 1);
    cell_add(&a[s->cell + 1], value);
    cell_add(&a[s->cell], 1); /* the count last: a scrape never sees more buckets than count */
    return 0;
}

/* Sums (or aggregates) one cell over every array. */
static double read_cell(const family_t *f, int cell)
{
    double v = 0, newest = -1;
    int seen = 0;
    for (int w = 0; w < ARRAYS; w++) {
        _Atomic double *a = atomic_load_explicit(&arrays[w], memory_order_acquire);
        if (a == NULL)
            continue;
        double x = atomic_load_explicit(&a[cell], memory_order_relaxed);
        if (f->aggregate == OS_METRIC_MAX) {
            v = !seen || x > v ? x : v;
        } else if (f->aggregate == OS_METRIC_LATEST) {
            double at = atomic_load_explicit(&a[cell + 1], memory_order_relaxed);
            if (at > newest) {
                newest = at;
                v = x;
            }
        } else {
            v += x;
        }
        seen = 1;
    }
    return v;
}

size_t os_metric_registry_render(char *buf, size_t cap)
{
    os_text_t o = {buf, cap, 0};
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int n = atomic_load_explicit(&nfamilies, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        const family_t *f = &families[i];
        /* Help text is escaped like the format asks (backslash and newline). */
        os_text_put(&o, "# HELP %s ", f->name);
        for (const char *p = f->help; *p; p++)
            os_text_put(&o, "%s", *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : (char[]){*p, 0});
        os_text_put(&o, "\n# TYPE %s %s\n", f->name, types[f->type]);
        for (int s = atomic_load_explicit(&f->head, memory_order_acquire); s >= 0;
             s = atomic_load_explicit(&series_table[s].next, memory_order_acquire)) {
            const series_t *se = &series_table[s];
            const char *open = se->rendered[0] ? "{" : "", *close = se->rendered[0] ? "}" : "";
            if (f->type != OS_METRIC_HISTOGRAM) {
                os_text_put(&o, "%s%s%s%s %.15g\n", f->name, open, se->rendered, close, read_cell(f, se->cell));
                continue;
            }
            double count = read_cell(f, se->cell), cumulative = 0;
            const char *sep = se->rendered[0] ? "," : "";
            for (int b = 0; b < f->nbuckets; b++) {
                cumulative += read_cell(f, se->cell + 2 + b);
                os_text_put(&o, "%s_bucket{%s%sle=\"%g\"} %.15g\n", f->name, se->rendered, sep, f->buckets[b],
                    cumulative > count ? count : cumulative);
            }
            os_text_put(&o, "%s_bucket{%s%sle=\"+Inf\"} %.15g\n", f->name, se->rendered, sep, count);
            os_text_put(&o, "%s_sum%s%s%s %.15g\n", f->name, open, se->rendered, close, read_cell(f, se->cell + 1));
            os_text_put(&o, "%s_count%s%s%s %.15g\n", f->name, open, se->rendered, close, count);
        }
    }
    return o.len;
}

void os_metric_registry_free(void)
{
    pthread_mutex_lock(&lock);
    for (int w = 0; w < ARRAYS; w++) {
        free(atomic_load(&arrays[w]));
        atomic_store(&arrays[w], NULL);
    }
    for (int i = 0; i < nseries_total; i++) {
        free(series_table[i].key);
        free(series_table[i].rendered);
        series_table[i].key = series_table[i].rendered = NULL;
    }
    nseries_total = ncells = 0;
    atomic_store(&nfamilies, 0);
    pthread_mutex_unlock(&lock);
}
