-- The FFI surface is declared once, in core/ffi.h; scripts/lib/core.lua's ffi.cdef must
-- say the same thing, and every function it declares must exist in the core library.
package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- Declarations only: comments dropped, whitespace collapsed, split at ';'.
local function normalise(text)
    text = text:gsub("/%*.-%*/", ""):gsub("//[^\n]*", ""):gsub("%-%-[^\n]*", "")
    text = text:gsub("%s+", " "):gsub(" ?([%(%)%*,;{}]) ?", "%1")
    local decls = {}
    for decl in text:gmatch("[^;]+;") do
        decls[#decls + 1] = decl:gsub("^ ", "")
    end
    return decls
end

local header = read("core/ffi.h"):match("/%* FFI%-CDEF%-BEGIN %*/(.-)/%* FFI%-CDEF%-END %*/")
local cdef = read("scripts/lib/core.lua"):match("ffi%.cdef%[%[(.-)%]%]")

describe("the FFI boundary", function()
    it("has one FFI block in core/ffi.h and one cdef in scripts/lib/core.lua", function()
        assert.is_string(header)
        assert.is_string(cdef)
    end)

    it("declares the same things in the Lua cdef as in core/ffi.h", function()
        assert.are.same(normalise(header), normalise(cdef))
    end)

    it("finds every declared function in the core library", function()
        local C = require("lib.core")
        local count = 0
        for name in header:gmatch("[%w_%*]+%s+%**(os_[%w_]+)%s*%(") do
            assert.is_not_nil(C[name], name)
            count = count + 1
        end
        assert.is_true(count >= 20)
    end)
end)
