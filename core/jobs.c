/*
 * jobs.c - owns what the process knows about its background jobs' health: for each running
 * instance of a job (routes.lua's `jobs`: a job runs on worker 0, or on every worker with
 * `workers = "all"`), its interval and when it last completed a cycle.
 *
 * Each worker's job runner declares the jobs it runs and reports their cycles here through
 * the FFI; /health/ (on any worker) asks whether an instance is stalled, and /metrics shows
 * each job's last success: the oldest across its instances, so that one stalled worker shows.
 * An instance is stalled when it has not completed a cycle for STALL_INTERVALS of its
 * intervals plus STALL_MARGIN_MS (counted from its declaration while it has never completed
 * one): the margin covers a cycle that is slow for a while (a downstream timing out) without
 * taking the replica out of service. Readers are other threads, hence the mutex; it is
 * taken a few times per job cycle and per probe, never in a hot path.
 */
#include "jobs.h"
#include "ffi.h"
#include "timer.h"
#include "text.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STALL_INTERVALS 3
#define STALL_MARGIN_MS 5000

typedef struct instance {
    char name[64];
    int worker;
    int declared;             /* still in its worker's set (cleared and set again by a declaration) */
    int64_t every_ms;
    uint64_t since_ms;        /* monotonic: declaration or last success, whichever is later */
    double last_success_unix; /* 0 until the first success */
} instance_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static instance_t *instances;
static size_t ninstances, capacity;

static instance_t *find(int worker, const char *name)
{
    for (size_t i = 0; i < ninstances; i++)
        if (instances[i].worker == worker && strcmp(instances[i].name, name) == 0)
            return &instances[i];
    return NULL;
}

static instance_t *add(int worker, const char *name)
{
    if (ninstances == capacity) {
        size_t cap = capacity ? 2 * capacity : 16;
        instance_t *grown = realloc(instances, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL; /* out of memory: the instance goes unwatched, as it did before it was declared */
        instances = grown;
        capacity = cap;
    }
    instance_t *j = &instances[ninstances++];
    memset(j, 0, sizeof(*j));
    snprintf(j->name, sizeof(j->name), "%s", name);
    j->worker = worker;
    j->since_ms = os_clock_ms();
    return j;
}

void os_jobs_declare(int worker, const char *const *names, const int64_t *every_ms, size_t n)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < ninstances; i++)
        if (instances[i].worker == worker)
            instances[i].declared = 0;
    for (size_t k = 0; k < n; k++) {
        instance_t *j = find(worker, names[k]);
        if (j == NULL)
            j = add(worker, names[k]);
        if (j != NULL) {
            j->declared = 1;
            j->every_ms = every_ms[k]; /* a reload may change it; the history stays */
        }
    }
    /* A job the worker no longer runs (removed, or moved to worker 0 only) is forgotten: it
     * would otherwise count as stalled. */
    size_t kept = 0;
    for (size_t i = 0; i < ninstances; i++)
        if (instances[i].worker != worker || instances[i].declared)
            instances[kept++] = instances[i];
    ninstances = kept;
    pthread_mutex_unlock(&lock);
}

void os_job_succeeded(int worker, const char *name)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&lock);
    instance_t *j = find(worker, name);
    if (j != NULL) {
        j->since_ms = os_clock_ms();
        j->last_success_unix = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    }
    pthread_mutex_unlock(&lock);
}

size_t os_jobs_stalled(char *buf, size_t cap)
{
    size_t len = 0;
    if (cap > 0)
        buf[0] = '\0';
    pthread_mutex_lock(&lock);
    uint64_t now = os_clock_ms(); /* under the lock: no since_ms can be later than now */
    for (size_t i = 0; i < ninstances; i++) {
        const instance_t *j = &instances[i];
        uint64_t idle = now - j->since_ms;
        if (idle <= (uint64_t)(STALL_INTERVALS * j->every_ms + STALL_MARGIN_MS))
            continue;
        int n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
                         "%sjob %s has not completed a cycle for %llu ms on worker %d (every %lld ms)",
                         len ? "; " : "", j->name, (unsigned long long)idle, j->worker, (long long)j->every_ms);
        if (n > 0)
            len += (size_t)n;
    }
    pthread_mutex_unlock(&lock);
    return len < cap ? len : (cap > 0 ? cap - 1 : 0);
}

size_t os_jobs_render(char *buf, size_t cap)
{
    os_text_t o = {buf, cap, 0};
    pthread_mutex_lock(&lock);
    if (ninstances > 0)
        os_text_put(&o, "# HELP orderservice_jobs_last_success_timestamp_seconds When each background job last completed a "
            "cycle on all of its workers (Unix time, the oldest of its instances; 0: one has never).\n"
            "# TYPE orderservice_jobs_last_success_timestamp_seconds gauge\n");
    for (size_t i = 0; i < ninstances; i++) {
        const char *job = instances[i].name;
        int first = 1;
        double oldest = instances[i].last_success_unix;
        for (size_t k = 0; k < ninstances; k++) {
            if (strcmp(instances[k].name, job) != 0)
                continue;
            if (k < i) {
                first = 0; /* rendered with its first instance */
                break;
            }
            if (instances[k].last_success_unix < oldest)
                oldest = instances[k].last_success_unix;
        }
        if (!first)
            continue;
        /* Job names come from routes.lua as Lua identifiers-like keys; quote and backslash are escaped anyway. */
        char name[2 * sizeof(instances[i].name)], *p = name;
        for (const char *s = job; *s; s++) {
            if (*s == '"' || *s == '\\')
                *p++ = '\\';
            *p++ = *s == '\n' ? ' ' : *s;
        }
        *p = '\0';
        os_text_put(&o, "orderservice_jobs_last_success_timestamp_seconds{job=\"%s\"} %.3f\n", name, oldest);
    }
    pthread_mutex_unlock(&lock);
    return o.len;
}
