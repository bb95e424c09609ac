-- principal.lua - who is calling, as the auth filter put it on the request:
--   req.principal = { sub = "44", role = "admin" | "service" | "customer", customer_id = 44 | nil }
-- customer_id is set for customers only (their `customer_id` claim, else `sub`), always a
-- positive integer. These helpers are the one place the scoping rules are spelled out, so
-- handlers ask questions instead of comparing roles.

local ipairs, tonumber, type = ipairs, tonumber, type

local _M = {}

_M.ROLE_NAMES = { "admin", "service", "customer" }
local ROLES = {}
for _, role in ipairs(_M.ROLE_NAMES) do
    ROLES[role] = true
end

-- admin and service see and change every customer's orders.
function _M.is_staff(p)
    return p ~= nil and (p.role == "admin" or p.role == "service")
end

-- May p read (see, list, cancel) what belongs to customer_id (a number or a digit string)?
function _M.can_read_customer(p, customer_id)
    if _M.is_staff(p) then
        return true
    end
    return p ~= nil and p.role == "customer" and p.customer_id ~= nil and p.customer_id == tonumber(customer_id)
end

-- May p create an order for customer_id? The same rule as reading, kept separate so it can
-- diverge (e.g. a support role) without touching callers.
_M.can_act_for_customer = _M.can_read_customer

-- The customer a list must be narrowed to: nil for staff (everything), else p's own id.
function _M.list_scope(p)
    if _M.is_staff(p) then
        return nil
    end
    return p and p.customer_id or -1 -- -1 matches no customer: no principal sees nothing
end

-- "role:sub" for order_events.actor and the idempotency scope ("anonymous" without one).
function _M.actor(p)
    if p == nil then
        return "anonymous"
    end
    return p.role .. ":" .. p.sub
end

-- A principal from verified claims, or nil, reason. sub: a string (or an integer, which
-- some issuers emit); role defaults to customer; a customer needs a usable id.
function _M.from_claims(claims)
    local sub = claims.sub
    if type(sub) == "number" and sub % 1 == 0 then
        sub = ("%d"):format(sub)
    end
    if type(sub) ~= "string" or sub == "" or #sub > 256 then
        return nil, "token has no sub"
    end
    local role = claims.role
    if role == nil then
        role = "customer"
    elseif not ROLES[role] then
        return nil, "token has an unknown role"
    end
    local p = { sub = sub, role = role }
    if role == "customer" then
        local id = claims.customer_id
        if id == nil then
            id = sub
        end
        if type(id) == "string" and id:find("^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$") then
            id = tonumber(id)
        end
        if type(id) ~= "number" or id % 1 ~= 0 or id < 1 or id > 9007199254740991 then
            return nil, "customer token has no customer id"
        end
        p.customer_id = id
    end
    return p
end

return _M
