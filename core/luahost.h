/*
 * luahost.h - the per-worker LuaJIT VM and the bridge from h2o requests to Lua handlers.
 */
#ifndef OS_LUAHOST_H
#define OS_LUAHOST_H

#include <h2o.h>
#include <lua.h>

#include "worker.h"

/** A Lua state with the standard libraries and package.path on SCRIPTS_DIR; NULL when out of memory. */
lua_State *os_lua_state_new(void);
/** Builds VM generation for worker: loads scripts/lib/host.lua and routes.lua. NULL on error (message in err). */
os_vm_t *os_vm_create(os_worker_t *worker, uint64_t generation, char *err, size_t errlen);
/** Releases the worker's reference; the VM is closed once its last task has finished (draining until then,
 *  counted in the orderservice_script_generations_draining gauge). */
void os_vm_release(os_vm_t *vm);
/** Starts the background coroutine (lib.host.background: the jobs of routes.lua) on worker. */
void os_luahost_start_background(os_worker_t *worker);
/** Registers the h2o handler that sends every request on pathconf to Lua; register os_reload_register's
 *  handler on pathconf first, so that a request starts on the live generation. */
void os_luahost_register(h2o_pathconf_t *pathconf);

/** Bytes the VM's Lua heap holds now (call on the VM's own worker thread). */
size_t os_vm_memory_bytes(os_vm_t *vm);

#endif
