-- rules.lua - the only Lua that asks the C core about order statuses.
--
-- kind is "order", "payment" or "shipping"; values compare exactly, case included.

local ffi = require("ffi")
local C = require("lib.core")

local type = type
local ffi_string = ffi.string

local _M = {}

local KINDS = { order = 0, payment = 1, shipping = 2 }
local TRANSITIONS = { [1] = "allowed", [0] = "refused", [-1] = "unknown", [2] = "same" }

_M.KINDS = KINDS
-- The vocabularies, for error messages (the C tables decide; these only describe them).
_M.VALUES = {
    order = { "PENDING", "CONFIRMED", "SHIPPED", "DELIVERED", "CANCELLED" },
    payment = { "PENDING", "PAID", "FAILED", "REFUNDED" },
    shipping = { "Pending", "Shipped", "Delivered", "Failed", "Unknown", "Cancelled" },
}

local function kind_code(kind)
    local code = KINDS[kind]
    if not code then
        error("bad 'kind' argument", 3)
    end
    return code
end

-- True when s is a value of the kind's vocabulary.
function _M.valid(kind, s)
    local code = kind_code(kind)
    return type(s) == "string" and C.os_status_valid(code, s, #s) == 1
end

-- "allowed" | "refused" | "unknown" (to is not a value of the kind) | "same".
function _M.transition(kind, from, to)
    local code = kind_code(kind)
    if type(to) ~= "string" then
        return "unknown"
    end
    if type(from) ~= "string" then
        from = ""
    end
    return TRANSITIONS[C.os_status_transition(code, from, #from, to, #to)]
end

-- The shipping status an order status implies (SHIPPED, DELIVERED, CANCELLED), or nil.
function _M.shipping_for_order(order_status)
    if type(order_status) ~= "string" then
        return nil
    end
    local p = C.os_status_shipping_for_order(order_status, #order_status)
    if p ~= nil then
        return ffi_string(p)
    end
    return nil
end

return _M
