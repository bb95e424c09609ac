/*
 * reload.h - hot reload of routes.lua and scripts/ (SIGHUP, or RELOAD_POLL_MS file watching),
 * switched on every worker at once.
 */
#ifndef OS_RELOAD_H
#define OS_RELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "worker.h"

/** Names the workers a generation must be built on before it goes live (once, before they start). */
void os_reload_init(os_worker_t *workers, int nworkers);
/** Asks every worker to build a new VM generation at its next tick. */
void os_reload_request(void);
/** A fingerprint of ROUTES_FILE and every file under SCRIPTS_DIR (paths, inodes, sizes, mtimes); any thread. */
uint64_t os_reload_fingerprint(void);
/** Called from a worker's tick: builds the requested generation; the last worker to build it switches all. */
void os_reload_poll(os_worker_t *worker);
/** Called before a worker starts a request: moves it to the live generation if the workers switched. */
void os_reload_sync(os_worker_t *worker);
/** Counts a VM of generation that was retired with tasks still running (+1) or has finished them (-1). */
void os_reload_note_draining(uint64_t generation, int delta);
/** Appends the reload gauges in the Prometheus text format; returns the length the whole text needs. */
size_t os_reload_render(char *buf, size_t cap);

#endif
