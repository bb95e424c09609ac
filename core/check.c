/*
 * check.c - owns `orderservice check`, the operators' CI gate for routes.lua and scripts/.
 *
 * It runs the same Lua code a worker runs when it loads the scripts (lib/check.lua, built
 * on lib/filters.lua, lib/router.lua and the handler resolution of lib/host.lua), in one
 * VM without workers, sockets or a database, and reports every problem rather than the
 * first. The settings are ROUTES_FILE and SCRIPTS_DIR, as for serve.
 */
#include "check.h"
#include "config.h"
#include "luahost.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>

int os_check_run(void)
{
    lua_State *L = os_lua_state_new();
    if (L == NULL) {
        fprintf(stderr, "orderservice check: cannot create a Lua state\n");
        return -1;
    }

    int rc = -1;
    /* routes.lua and the scripts read lib.config at load time, as they do in a worker. */
    lua_getglobal(L, "require");
    lua_pushstring(L, "lib.config");
    if (lua_pcall(L, 1, 1, 0) == 0) {
        lua_getfield(L, -1, "_install");
        os_config_push_lua(L, &os_config);
        if (lua_pcall(L, 1, 0, 0) == 0)
            lua_pop(L, 1);
    }
    if (lua_gettop(L) != 0) {
        fprintf(stderr, "orderservice check: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return -1;
    }
    lua_getglobal(L, "require");
    lua_pushstring(L, "lib.check");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "orderservice check: %s\n", lua_tostring(L, -1));
    } else {
        lua_getfield(L, -1, "run");
        lua_pushstring(L, os_config.routes_file);
        if (lua_pcall(L, 1, 1, 0) != 0) {
            fprintf(stderr, "orderservice check: %s\n", lua_tostring(L, -1));
        } else {
            /* lib.check.run returns the list of messages */
            int n = (int)lua_objlen(L, -1);
            for (int i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                fprintf(stderr, "%s\n", lua_tostring(L, -1));
                lua_pop(L, 1);
            }
            if (n == 0)
                printf("%s: ok\n", os_config.routes_file);
            rc = n == 0 ? 0 : -1;
        }
    }
    lua_close(L);
    return rc;
}
