/*
 * reload.c - owns hot reload of the route scripts (SIGHUP; RELOAD_POLL_MS, 0 = off).
 *
 * The main thread watches ROUTES_FILE and SCRIPTS_DIR (a fingerprint of paths, sizes and
 * mtimes, every RELOAD_POLL_MS) and on a change or SIGHUP bumps a generation counter. Each
 * worker notices it on its next tick and builds a whole new VM: routes, handlers, filters,
 * jobs. If that fails the worker keeps the VM it has and logs why, so a broken script never
 * replaces a working one. If it succeeds, new requests start on the new VM while requests
 * already running finish on the old one, which is closed when its last task ends (VMs are
 * reference-counted by their tasks). No request fails because of a reload.
 */
#define _GNU_SOURCE /* nftw */
#include "reload.h"
#include "config.h"
#include "log.h"
#include "luahost.h"
#include "metrics.h"

#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

static atomic_uint_fast64_t generation;

void os_reload_request(void)
{
    atomic_fetch_add(&generation, 1);
}

/* nftw has no user pointer; the main thread is the only caller, so a static accumulator is safe. */
static uint64_t fingerprint_acc;

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

void os_reload_poll(os_worker_t *worker)
{
    uint64_t wanted = atomic_load(&generation);
    if (wanted == worker->vm_generation)
        return;
    worker->vm_generation = wanted;
    char err[1024];
    os_vm_t *vm = os_vm_create(worker, err, sizeof(err));
    if (vm == NULL) {
        os_log(OS_LOG_ERROR, "script reload failed, still serving the previous scripts: %s", err);
        os_metrics_count_reload(worker->metrics, 0);
        return;
    }
    os_vm_t *old = worker->vm;
    worker->vm = vm;
    os_vm_release(old); /* closed once the requests it is running have finished */
    if (os_config.jobs && worker->id == 0)
        os_luahost_start_background(worker);
    os_metrics_count_reload(worker->metrics, 1);
    os_log(OS_LOG_INFO, "scripts reloaded");
}
