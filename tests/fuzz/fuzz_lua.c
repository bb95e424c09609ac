/*
 * fuzz_lua.c - libFuzzer target for the Lua-side request checks: embeds LuaJIT, loads
 * tests/fuzz/lua_driver.lua (which requires scripts/lib/{json_strict,query,router,request}.lua
 * and scripts/orders/{input,sql}.lua, as the service does) and calls it with each input.
 * A Lua error is a finding: printed, then abort().
 *
 * The Lua code is not instrumented, so libFuzzer gets little coverage feedback from it: the
 * seed corpus (tests/fuzz/corpus/lua/) carries the structure, mutation does the rest. The C
 * core the scripts reach through the FFI (money) is build/liboscore.so, found through
 * OS_CORE_LIB, which tests/fuzz/run sets.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef OS_SOURCE_DIR
#error "OS_SOURCE_DIR must name the repository"
#endif

static lua_State *L;
static int driver_ref = LUA_NOREF;

static void setup(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    const char *boot = "package.path = '" OS_SOURCE_DIR "/scripts/?.lua;" OS_SOURCE_DIR "/tests/fuzz/?.lua;'"
                       " .. package.path\n"
                       "return require('lua_driver')";
    if (luaL_dostring(L, boot) != 0) {
        fprintf(stderr, "fuzz_lua: cannot load the driver: %s\n", lua_tostring(L, -1));
        abort();
    }
    driver_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (L == NULL)
        setup();
    lua_rawgeti(L, LUA_REGISTRYINDEX, driver_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        fprintf(stderr, "fuzz_lua: Lua error: %s\n", lua_tostring(L, -1));
        abort();
    }
    /* a full cycle now and then keeps memory flat over millions of runs */
    static unsigned runs;
    if (++runs % 4096 == 0)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
