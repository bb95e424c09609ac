-- lua_driver.lua - what tests/fuzz/fuzz_lua.c runs for each input: the Lua-side request
-- checks, each called the way the service calls it. The first byte picks the target, the
-- rest is the input. A Lua error escaping any of them is a finding (the C side aborts): the
-- contract is value, or nil, err; never an error for any bytes a client can send.
--
--   0 request body: lib.request:json() (lua-cjson + lib.json_strict), then orders.input's
--     create, update and cancel on the decoded value
--   1 query string: lib.query parse / decode / unescape, and encode of what parse returned
--   2 route matcher: lib.router over the service's route shapes (method from the next byte)
--   3 list query: orders.input.list_args, then orders.sql.list on the arguments
--   4 history query: orders.input.history_args, then orders.sql.list
--   5 header values: orders.input.idempotency_key and parse_datetime
local input = require("orders.input")
local order_sql = require("orders.sql")
local query = require("lib.query")
local request = require("lib.request")
local router = require("lib.router")

local byte, sub = string.byte, string.sub

local function handler() end

-- the path shapes of routes.lua (literal segments, {id}/{customer_id} integers, a tail)
local routes = router.new({
    { method = "GET", path = "/health/", handler = handler },
    { method = "GET", path = "/v1/orders/", handler = handler },
    { method = { "POST" }, path = "/v1/orders/create/", handler = handler },
    { method = "GET", path = "/v1/orders/{id}/", handler = handler },
    { method = "GET", path = "/v1/orders/{id}/details/", handler = handler },
    { method = "PATCH", path = "/v1/orders/{id}/update/", handler = handler },
    { method = "POST", path = "/v1/orders/{id}/cancel/", handler = handler },
    { method = "GET", path = "/v1/orders/my-orders/{customer_id}/", handler = handler },
    { method = { "GET", "PUT" }, path = "/_behaviour/{name}/", handler = handler },
})
local METHODS = { "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS", "get", "" }

-- the list SQL must number exactly the parameters it returns
local function check_sql(args)
    local sql, params = order_sql.list(args)
    local highest = 0
    for n in sql:gmatch("%$(%d+)") do
        highest = math.max(highest, tonumber(n))
    end
    assert(highest == #params, "list SQL numbers $" .. highest .. " for " .. #params .. " params")
end

local targets = {
    [0] = function(s)
        local req = request.new({ method = "POST", path = "/v1/orders/", body = s,
                                  headers = { ["content-type"] = "application/json" } })
        local body, err = req:json()
        input.cancel(s, body, err)
        if body ~= nil then
            input.create(body, 50000, 500)
            input.update(body)
        end
    end,
    [1] = function(s)
        local args = query.parse(s)
        query.decode(s)
        query.unescape(s)
        query.encode(args)
    end,
    [2] = function(s)
        local method = METHODS[(byte(s, 1) or 0) % #METHODS + 1]
        routes:match(method, sub(s, 2))
    end,
    [3] = function(s)
        local args = input.list_args(request.new({ method = "GET", path = "/v1/orders/", query_string = s }))
        if args then
            check_sql(args)
        end
    end,
    [4] = function(s)
        local req = request.new({ method = "GET", path = "/v1/orders/my-orders/44/", query_string = s })
        local args = input.history_args(req, 44)
        if args then
            check_sql(args)
        end
    end,
    [5] = function(s)
        input.idempotency_key(s)
        input.parse_datetime(s)
    end,
}

return function(data)
    local which = (byte(data, 1) or 0) % 6
    targets[which](sub(data, 2))
end
