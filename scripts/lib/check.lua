-- check.lua - `orderservice check` (core/check.c): loads routes.lua the way a worker does,
-- but collects every problem instead of stopping at the first, as "file:line: message".
-- Same code as the server: lib/router.lua, lib/filters.lua, host's handler resolution.

local filters = require("lib.filters")
local locate = require("lib.locate")
local router_mod = require("lib.router")

local _M = {}

function _M.run(routes_file)
    local problems = {}
    local function add(msg)
        problems[#problems + 1] = msg
    end
    -- loadfile's and the chunk's own errors already carry file:line.
    local chunk, err = loadfile(routes_file)
    if not chunk then
        add(err)
        return problems
    end
    local ok, decl = pcall(chunk)
    if not ok then
        add(tostring(decl))
        return problems
    end
    if type(decl) ~= "table" or type(decl.routes) ~= "table" then
        add(routes_file .. ": must return { filters = {...}, routes = {...} }")
        return problems
    end
    local where = locate.new(routes_file)
    local router
    ok, router = pcall(router_mod.new, decl.routes)
    if not ok then
        local msg = tostring(router):gsub("^[^:]*router%.lua:%d+: ", "")
        local index = tonumber(msg:match("#(%d+)"))
        local route = index and decl.routes[index]
        add((route and type(route) == "table" and where:route(index, route.path) or routes_file) .. ": " .. msg)
        return problems
    end
    if decl.filters ~= nil and type(decl.filters) ~= "table" then
        add(where:filter("filters") .. ": filters must be a table")
        return problems
    end
    local _, errors = filters.chain(decl.filters, nil)
    for _, e in ipairs(errors or {}) do
        add(where:filter(e.filter) .. ": " .. e.message)
    end
    local host = require("lib.host")
    for index, route in ipairs(router:routes()) do
        local hok, herr = pcall(host.resolve_handler, route.handler, "handler")
        if not hok then
            add(where:route_message(index, route, tostring(herr)))
        end
        local _, route_errors = filters.chain(decl.filters, route.filters)
        for _, e in ipairs(route_errors or {}) do
            if e.scope == "route" then -- global problems are reported once, above
                add(where:route_message(index, route, e.message))
            end
        end
    end
    for name, job in pairs(decl.jobs or {}) do
        local problem = host.job_problem(name, job)
        if problem then
            add(routes_file .. ": " .. problem)
        else
            local hok, herr = pcall(host.resolve_handler, job.handler, "job " .. tostring(name))
            if not hok then
                add(routes_file .. ": " .. tostring(herr))
            end
        end
    end
    return problems
end

return _M
