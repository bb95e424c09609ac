/*
 * reload.h - hot reload of routes.lua and scripts/ (SIGHUP, or RELOAD_POLL_MS file watching),
 * switched on every worker at once.
 */
#ifndef OS_RELOAD_H
#define OS_RELOAD_H

#include <h2o.h>
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
/** Registers, on pathconf and just before the Lua host's handler, the h2o handler that moves the worker to
 *  the live generation (if the workers switched) and passes every request on. */
void os_reload_register(h2o_pathconf_t *pathconf);

#endif
