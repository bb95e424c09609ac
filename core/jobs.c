/*
 * jobs.c - owns what the process knows about its background jobs' health: for each job
 * (routes.lua's `jobs`), its interval and when it last completed a cycle.
 *
 * The jobs run in one coroutine on worker 0, which reports here through the FFI; /health/
 * (on any worker) asks whether one is stalled, and /metrics shows each job's last success.
 * A job is stalled when it has not completed a cycle for STALL_INTERVALS of its intervals
 * plus STALL_MARGIN_MS (counted from its registration while it has never completed one):
 * the margin covers a cycle that is slow for a while (a downstream timing out) without
 * taking the replica out of service. Readers are other threads, hence the mutex; it is
 * taken a few times per job cycle and per probe, never in a hot path.
 */
#include "jobs.h"
#include "ffi.h"
#include "timer.h"
#include "text.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_JOBS 32
#define STALL_INTERVALS 3
#define STALL_MARGIN_MS 5000

typedef struct job {
    char name[64];
    int64_t every_ms;
    uint64_t since_ms;        /* monotonic: registration or last success, whichever is later */
    double last_success_unix; /* 0 until the first success */
} job_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static job_t jobs[MAX_JOBS];
static size_t njobs;

static job_t *find(const char *name)
{
    for (size_t i = 0; i < njobs; i++)
        if (strcmp(jobs[i].name, name) == 0)
            return &jobs[i];
    return NULL;
}

void os_job_register(const char *name, int64_t every_ms)
{
    pthread_mutex_lock(&lock);
    job_t *j = find(name);
    if (j == NULL && njobs < MAX_JOBS) {
        j = &jobs[njobs++];
        snprintf(j->name, sizeof(j->name), "%s", name);
        j->since_ms = os_clock_ms();
    }
    if (j != NULL)
        j->every_ms = every_ms; /* a reload may change it; the history stays */
    pthread_mutex_unlock(&lock);
}

void os_job_succeeded(const char *name)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&lock);
    job_t *j = find(name);
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
    for (size_t i = 0; i < njobs; i++) {
        uint64_t idle = now - jobs[i].since_ms;
        if (idle <= (uint64_t)(STALL_INTERVALS * jobs[i].every_ms + STALL_MARGIN_MS))
            continue;
        int n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
                         "%sjob %s has not completed a cycle for %llu ms (every %lld ms)", len ? "; " : "",
                         jobs[i].name, (unsigned long long)idle, (long long)jobs[i].every_ms);
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
    if (njobs > 0)
        os_text_put(&o, "# HELP orderservice_jobs_last_success_timestamp_seconds When each background job last completed a "
            "cycle (Unix time; 0: never).\n# TYPE orderservice_jobs_last_success_timestamp_seconds gauge\n");
    /* Job names come from routes.lua as Lua identifiers-like keys; quote and backslash are escaped anyway. */
    for (size_t i = 0; i < njobs; i++) {
        char name[2 * sizeof(jobs[i].name)], *p = name;
        for (const char *s = jobs[i].name; *s; s++) {
            if (*s == '"' || *s == '\\')
                *p++ = '\\';
            *p++ = *s == '\n' ? ' ' : *s;
        }
        *p = '\0';
        os_text_put(&o, "orderservice_jobs_last_success_timestamp_seconds{job=\"%s\"} %.3f\n", name, jobs[i].last_success_unix);
    }
    pthread_mutex_unlock(&lock);
    return o.len;
}
