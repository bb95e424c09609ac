/*
 * reload.h - hot reload of routes.lua and scripts/ (SIGHUP, or RELOAD_POLL_MS file watching).
 */
#ifndef OS_RELOAD_H
#define OS_RELOAD_H

#include <stdint.h>

#include "worker.h"

/** Asks every worker to build a new VM generation at its next tick. */
void os_reload_request(void);
/** A fingerprint of ROUTES_FILE and every file under SCRIPTS_DIR (paths, sizes, mtimes). */
uint64_t os_reload_fingerprint(void);
/** Called from a worker's tick: installs a new VM if a reload was requested. */
void os_reload_poll(os_worker_t *worker);

#endif
