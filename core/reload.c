/*
 * reload.c - owns hot reload of the route scripts (SIGHUP; RELOAD_POLL_MS, 0 = off) and which
 * VM generation the workers serve.
 *
 * The main thread watches ROUTES_FILE and SCRIPTS_DIR (a fingerprint of paths, sizes and
 * mtimes, every RELOAD_POLL_MS) and on a change or SIGHUP bumps `requested`. Each worker
 * notices it on its next tick and builds a whole new VM (routes, handlers, filters, jobs) that
 * it keeps aside: it goes on serving the live generation meanwhile. The worker that completes
 * the last build of a generation switches them all by storing it in `live`; every worker
 * compares `live` with its own generation before it starts a request (one atomic load) and, when
 * they differ, installs the VM it built. So once one request has started on the new version, no
 * request starting after it, on any worker, gets the old one; no worker waits for another, and
 * the only pause is each worker's own build, as before. That comparison is this file's h2o
 * handler, registered on the Lua host's path just ahead of it (os_reload_register): it moves the
 * worker to the live generation and passes the request on.
 *
 * A generation goes live only when every worker built it from the same files: each build is
 * bracketed by two fingerprints of the files, and a build that saw them change, or workers whose
 * builds saw different files (an edit landed between them), ask for another generation instead
 * of going live with two versions. A script that fails to load on any worker (logged there)
 * leaves all of them on the previous scripts. Requests already running
 * finish on the VM they started on, which is closed when its last task ends (VMs are
 * reference-counted by their tasks, in luahost.c, which also counts the older generations still
 * draining); this file publishes the live generation for /metrics. No request fails because of
 * a reload.
 *
 * `lock` guards the workers' built generations (read across workers for the switch); it is held
 * for a few loads and stores, never across a build or a Lua call.
 */
#define _GNU_SOURCE /* nftw */
#include "reload.h"
#include "config.h"
#include "log.h"
#include "luahost.h"
#include "metrics.h"

#include <assert.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static atomic_uint_fast64_t requested; /* the newest generation asked for */
static atomic_uint_fast64_t live;      /* the generation every worker starts new requests on */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static os_worker_t *all_workers;
static int nall_workers;

void os_reload_init(os_worker_t *workers, int nworkers)
{
    all_workers = workers;
    nall_workers = nworkers;
}

void os_reload_request(void)
{
    atomic_fetch_add(&requested, 1);
}

/* nftw has no user pointer: a thread's own accumulator (the main thread watches, each worker
 * checks what it built). */
static __thread uint64_t fingerprint_acc;

static void mix(uint64_t v)
{
    fingerprint_acc ^= v + 0x9e3779b97f4a7c15ull + (fingerprint_acc << 6) + (fingerprint_acc >> 2);
}

/* The inode too: a Kubernetes ConfigMap update swaps a `..data` symlink to a new directory,
 * and the new file may have the old one's size and (coarse) mtime. */
static void mix_file(const char *path, const struct stat *st)
{
    for (const char *p = path; *p; p++)
        mix((unsigned char)*p);
    mix((uint64_t)st->st_ino);
    mix((uint64_t)st->st_size);
    mix((uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec);
}

/* FTW_PHYS keeps nftw from looping through symlinked directories; a symlinked file (a
 * ConfigMap key is one) is followed here instead, so its target's changes count. */
static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    struct stat target;
    if (type == FTW_F)
        mix_file(path, st);
    else if (type == FTW_SL && stat(path, &target) == 0 && S_ISREG(target.st_mode))
        mix_file(path, &target);
    return 0;
}

uint64_t os_reload_fingerprint(void)
{
    struct stat st;
    char real[PATH_MAX];
    fingerprint_acc = 0;
    /* stat() follows ROUTES_FILE's symlinks: the file a swap points it to is what counts. */
    if (stat(os_config.routes_file, &st) == 0)
        mix_file(os_config.routes_file, &st);
    /* SCRIPTS_DIR may itself be a symlink (..data/scripts): walk what it points to now. */
    const char *dir = realpath(os_config.scripts_dir, real) != NULL ? real : os_config.scripts_dir;
    for (const char *p = dir; *p; p++)
        mix((unsigned char)*p);
    nftw(dir, visit, 16, FTW_PHYS);
    return fingerprint_acc;
}

/* Under lock: 1 when every worker has built generation g (installed or kept aside) from the
 * same files, 0 while some have not built it yet, -1 when they built it from different files. */
static int all_built(uint64_t g, uint64_t fingerprint)
{
    int same = 1;
    for (int i = 0; i < nall_workers; i++) {
        if (all_workers[i].built_generation != g)
            return 0;
        same &= all_workers[i].built_fingerprint == fingerprint;
    }
    return same ? 1 : -1;
}

/* Puts the worker's waiting VM in service; returns the one it replaces. */
static os_vm_t *install(os_worker_t *worker)
{
    os_vm_t *old = worker->vm;
    worker->vm = worker->next_vm;
    worker->vm_generation = worker->built_generation;
    worker->next_vm = NULL;
    return old;
}

/* After install: the old VM drains, the worker moves its jobs to the new one. */
static void retire(os_worker_t *worker, os_vm_t *old)
{
    os_vm_release(old); /* closed once the requests it is running have finished */
    if (os_config.jobs)
        os_luahost_start_background(worker);
    os_metrics_count_reload(worker->metrics, 1);
    os_log(OS_LOG_INFO, "scripts reloaded");
}

/* Moves worker to the live generation if the workers switched (one atomic load when they did not). */
static void sync_generation(os_worker_t *worker)
{
    uint64_t g = atomic_load(&live);
    if (g == worker->vm_generation)
        return;
    /* Only this thread replaces next_vm, and never while it holds the live generation (see
     * os_reload_poll), so the VM built for g is there. */
    assert(worker->next_vm != NULL && worker->built_generation == g);
    retire(worker, install(worker));
}

void os_reload_poll(os_worker_t *worker)
{
    sync_generation(worker);
    uint64_t wanted = atomic_load(&requested);
    if (wanted == worker->tried_generation)
        return;
    worker->tried_generation = wanted; /* a failed build is retried only when another reload is asked for */
    char err[1024];
    uint64_t files = os_reload_fingerprint();
    os_vm_t *vm = os_vm_create(worker, wanted, err, sizeof(err));
    if (vm == NULL) {
        os_log(OS_LOG_ERROR, "script reload failed, still serving the previous scripts: %s", err);
        os_metrics_count_reload(worker->metrics, 0);
        return;
    }
    if (os_reload_fingerprint() != files) {
        /* An edit landed while this VM read the files: it may hold parts of two versions. */
        os_vm_release(vm);
        os_reload_request();
        return;
    }
    os_vm_t *retired = NULL, *dropped;
    int switched = 0, built;
    pthread_mutex_lock(&lock);
    /* The workers may have switched to the VM we kept aside since the sync above: take it
     * before replacing it, or this worker would go on serving an older generation. */
    if (worker->next_vm != NULL && atomic_load(&live) == worker->built_generation)
        retired = install(worker);
    dropped = worker->next_vm; /* built for a generation that can no longer go live */
    worker->next_vm = vm;
    worker->built_generation = wanted;
    worker->built_fingerprint = files;
    /* The last build of a generation switches every worker to it (even when a newer one is
     * asked for already: that one may not load). */
    built = all_built(wanted, files);
    if (built > 0) {
        atomic_store(&live, wanted);
        os_metrics_set_scripts_generation(wanted); /* under the lock: published in order */
        switched = 1;
    } else if (built < 0) {
        os_reload_request(); /* the files changed between the workers' builds: build again */
    }
    pthread_mutex_unlock(&lock);
    if (retired != NULL)
        retire(worker, retired);
    if (dropped != NULL)
        os_vm_release(dropped); /* never ran a task: closed at once */
    if (switched)
        os_log(OS_LOG_INFO, "every worker built scripts generation %llu: switching", (unsigned long long)wanted);
    sync_generation(worker);
}

/* Ahead of the Lua host: a request never starts on a generation the workers have left. */
static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    sync_generation(H2O_STRUCT_FROM_MEMBER(os_worker_t, ctx, req->conn->ctx));
    return -1; /* the next handler (the Lua host) answers */
}

void os_reload_register(h2o_pathconf_t *pathconf)
{
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;
}
