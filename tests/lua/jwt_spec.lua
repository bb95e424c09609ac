-- lib/jwt.lua over the FFI: the RFC 7515 vectors through os_jwt_verify with each kind of
-- process key (the clock set before their 2011 exp), and what Lua gets back on failure.
package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local ffi = require("ffi")
local tokens = require("support.tokens") -- declares the key functions
local jwt = require("lib.jwt")
local C = require("lib.core")

pcall(ffi.cdef, "os_jwt_key_t *os_jwt_key_pem(const char *pem, size_t len, char *err, size_t errlen);")

local NOW = 1300819300
local PAYLOAD = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
local A1 = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." .. PAYLOAD .. ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
local A2 = "eyJhbGciOiJSUzI1NiJ9." .. PAYLOAD .. ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7"
    .. "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArL"
    .. "IARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QO"
    .. "YEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
local A3 = "eyJhbGciOiJFUzI1NiJ9." .. PAYLOAD
    .. ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
local A1_KEY = string.char(3, 35, 53, 75, 43, 15, 165, 188, 131, 126, 6, 101, 119, 123, 166, 143, 90, 179, 40, 230,
    240, 84, 201, 40, 169, 15, 132, 178, 210, 80, 46, 191, 211, 251, 90, 146, 210, 6, 71, 239, 150, 138, 180, 195,
    119, 98, 61, 34, 61, 46, 33, 114, 5, 46, 79, 8, 192, 205, 154, 245, 103, 208, 128, 163)

local function pem_key(name)
    local f = assert(io.open("tests/c/jwt/" .. name, "rb"))
    local pem = f:read("*a")
    f:close()
    local err = ffi.new("char[256]")
    local key = C.os_jwt_key_pem(pem, #pem, err, 256)
    assert(key ~= nil, ffi.string(err))
    return key
end

describe("lib.jwt", function()
    after_each(function() tokens.uninstall() end)

    it("verifies RFC 7515 A.1 (HS256) and hands back the claims", function()
        C.os_jwt_set_process_key(C.os_jwt_key_hs256(A1_KEY, #A1_KEY), nil, nil)
        local claims = assert(jwt.verify(A1, NOW))
        assert.are.equal("joe", claims.iss)
        assert.are.equal(1300819380, claims.exp)
        assert.is_true(claims["http://example.com/is_root"])
    end)

    it("verifies RFC 7515 A.2 (RS256) and A.3 (ES256) with their public keys", function()
        C.os_jwt_set_process_key(pem_key("rfc7515_a2_rsa.pem"), nil, nil)
        assert.is_table(jwt.verify(A2, NOW))
        C.os_jwt_set_process_key(pem_key("rfc7515_a3_ec.pem"), "joe", nil)
        assert.is_table(jwt.verify(A3, NOW))
    end)

    it("refuses the vectors today, and across algorithms, with a reason", function()
        C.os_jwt_set_process_key(pem_key("rfc7515_a3_ec.pem"), nil, nil)
        local claims, code, reason = jwt.verify(A3)
        assert.is_nil(claims)
        assert.are.equal(C.OS_JWT_EEXPIRED, code)
        assert.are.equal("token expired", reason)
        claims, code = jwt.verify(A1, NOW)
        assert.is_nil(claims)
        assert.are.equal(C.OS_JWT_EALG, code)
        C.os_jwt_set_process_key(pem_key("rfc7515_a3_ec.pem"), nil, "orders")
        claims, code = jwt.verify(A3, NOW)
        assert.is_nil(claims)
        assert.are.equal(C.OS_JWT_EAUDIENCE, code)
    end)

    it("raises on a caller mistake", function()
        assert.has_error(function() jwt.verify(nil) end, "bad 'token' argument")
    end)
end)
