-- jwt.lua - bearer tokens as Lua sees them: core/jwt.c verifies (signature, alg, exp, nbf,
-- iss, aud: all of it, in one place), this module decodes the verified payload.
--
-- jwt.verify(token) -> claims table | nil, code, reason (a static text, never the token).

local ffi = require("ffi")
local cjson = require("cjson.safe")
local C = require("lib.core")

local ffi_string, tonumber, type = ffi.string, tonumber, type

local _M = { MAX_TOKEN = 8192 }

-- One payload buffer per VM: verify() never yields, so requests cannot interleave in it.
local payload = ffi.new("char[?]", _M.MAX_TOKEN)
local payload_len = ffi.new("size_t[1]")

local json = cjson.new()
json.decode_max_depth(16)

function _M.verify(token, now)
    if type(token) ~= "string" then
        error("bad 'token' argument", 2)
    end
    local rc = C.os_jwt_verify(token, #token, now or 0, payload, _M.MAX_TOKEN, payload_len)
    if rc ~= 0 then
        return nil, rc, ffi_string(C.os_jwt_strerror(rc))
    end
    local claims = json.decode(ffi_string(payload, tonumber(payload_len[0])))
    if type(claims) ~= "table" then
        return nil, C.OS_JWT_EFORMAT, "malformed token"
    end
    return claims
end

return _M
