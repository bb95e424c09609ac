-- Test support: installs an HS256 process key in the core library the specs load
-- (OS_CORE_LIB) and mints tokens with it, the way `orderservice token` does.
package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local ffi = require("ffi")
local cjson = require("cjson")
local C = require("lib.core")

pcall(ffi.cdef, [[
typedef struct os_jwt_key os_jwt_key_t;
os_jwt_key_t *os_jwt_key_hs256(const void *secret, size_t len);
void os_jwt_set_process_key(os_jwt_key_t *key, const char *issuer, const char *audience);
int os_jwt_sign_hs256(const os_jwt_key_t *key, const char *payload, size_t len, char *out, size_t cap,
                      size_t *out_len);
]])

local _M = { SECRET = "lua-specs-secret-0123456789abcdef0123" }

local key
function _M.install(issuer, audience)
    key = C.os_jwt_key_hs256(_M.SECRET, #_M.SECRET)
    C.os_jwt_set_process_key(key, issuer, audience)
end

function _M.uninstall()
    C.os_jwt_set_process_key(nil, nil, nil)
    key = nil
end

-- claims: a table (exp defaults to an hour from now) or a JSON string as it is.
function _M.sign(claims, secret)
    local json = claims
    if type(claims) == "table" then
        if claims.exp == nil then
            claims.exp = os.time() + 3600
        end
        json = cjson.encode(claims)
    end
    local k = secret and C.os_jwt_key_hs256(secret, #secret) or key
    local out, len = ffi.new("char[4096]"), ffi.new("size_t[1]")
    assert(C.os_jwt_sign_hs256(k, json, #json, out, 4096, len) == 0)
    return ffi.string(out, len[0])
end

function _M.b64url(s)
    local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local v = a * 65536 + (b or 0) * 256 + (c or 0)
        local n = b == nil and 2 or (c == nil and 3 or 4)
        for j = 1, n do
            local idx = math.floor(v / 2 ^ (18 - 6 * (j - 1))) % 64
            out[#out + 1] = alphabet:sub(idx + 1, idx + 1)
        end
    end
    return table.concat(out)
end

return _M
