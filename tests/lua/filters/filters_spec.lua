-- The filter machinery (lib/filters.lua) and the route-table validation operators run as
-- `orderservice check` (lib/check.lua): schemas, merging, switching off, priority overrides,
-- and messages that name the file and line.
package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local filters = require("lib.filters")
local check = require("lib.check")

local function names(chain)
    return filters.order(chain)
end

local function write(text)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
end

describe("filter chains", function()
    local global = {
        access_log = { slow_ms = 500 },
        request_id = true,
        auth = { exempt_prefixes = { "/docs/" } },
        rate_limit = { rate = 5 },
    }

    it("orders filters by PRIORITY, highest first", function()
        local chain = assert(filters.chain(global, nil))
        assert.are.same({ "access_log", "request_id", "auth", "rate_limit" }, names(chain))
    end)

    it("switches a global filter off for one route", function()
        local chain = assert(filters.chain(global, { auth = false, rate_limit = false }))
        assert.are.same({ "access_log", "request_id" }, names(chain))
    end)

    it("adds a filter for one route", function()
        local chain = assert(filters.chain(global, { body_limit = { max_bytes = 10 } }))
        assert.are.same({ "access_log", "request_id", "auth", "rate_limit", "body_limit" }, names(chain))
    end)

    it("changes a filter's priority for one route only", function()
        -- rate limiting before auth on this route: unauthenticated floods are limited too
        local chain = assert(filters.chain(global, { rate_limit = { priority = 20000 } }))
        assert.are.same({ "access_log", "request_id", "rate_limit", "auth" }, names(chain))
        assert.are.same({ "access_log", "request_id", "auth", "rate_limit" }, names(assert(filters.chain(global, nil))))
    end)

    it("moves a filter below another and keeps its options", function()
        local chain = assert(filters.chain(global, { auth = { priority = 1, roles = { "admin" } } }))
        assert.are.same({ "access_log", "request_id", "rate_limit", "auth" }, names(chain))
        local auth = chain[4]
        assert.are.equal(1, auth.priority)
        assert.are.same({ "/docs/" }, auth.conf.exempt_prefixes) -- merged with the global options
        assert.are.same({ "admin" }, auth.conf.roles)
        assert.is_nil(auth.conf.priority) -- the filter never sees the override
    end)

    it("breaks priority ties by name", function()
        local chain = assert(filters.chain({ headers = { priority = 7 }, maintenance = { priority = 7 } }, nil))
        assert.are.same({ "headers", "maintenance" }, names(chain))
    end)

    it("merges route options over global ones key by key, and true keeps the global ones", function()
        local chain = assert(filters.chain(global, { rate_limit = { burst = 3 }, access_log = true }))
        for _, entry in ipairs(chain) do
            if entry.name == "rate_limit" then
                assert.are.equal(5, entry.conf.rate)
                assert.are.equal(3, entry.conf.burst)
            elseif entry.name == "access_log" then
                assert.are.equal(500, entry.conf.slow_ms)
            end
        end
    end)

    it("fills defaults and gives each route its own copy", function()
        local a = assert(filters.chain({ headers = true }, nil))[1].conf
        local b = assert(filters.chain({ headers = true }, nil))[1].conf
        assert.are.same({}, a.add)
        assert.are_not.equal(a.add, b.add)
    end)

    local bad = {
        { { rate_limit = { burts = 3 } }, 'unknown option "burts"' },
        { { rate_limit = { rate = "fast" } }, 'option "rate" must be a number' },
        { { rate_limit = { burst = 0 } }, 'option "burst" must be >= 1' },
        { { rate_limit = { burst = 1.5 } }, 'must be an integer' },
        { { rate_limit = { priority = "high" } }, 'option "priority" must be an integer' },
        { { rate_limit = { priority = 1e12 } }, 'option "priority" must be an integer' },
        { { ip_allow = {} }, 'option "allow" is required' },
        { { ip_allow = { allow = { "10.0.0.0/33" } } }, "is not an address or CIDR" },
        { { cors = { origins = { "*" }, credentials = true } }, "credentials" },
        { { nope = true }, 'unknown filter "nope"' },
        { { ["../x"] = true }, "must be a plain name" },
        { { auth = "yes" }, "options must be a table, true or false" },
    }
    for _, case in ipairs(bad) do
        it("refuses " .. case[2], function()
            local chain, errors = filters.chain(nil, case[1])
            assert.is_nil(chain)
            assert.matches(case[2], errors[1].message, 1, true)
            assert.are.equal("route", errors[1].scope)
        end)
    end

    it("refuses a filter module without a schema, steps or PRIORITY", function()
        assert.is_nil((filters.check_module("x", { PRIORITY = 1, before = print })))
        assert.is_nil((filters.check_module("x", { schema = {}, before = print })))
        assert.is_nil((filters.check_module("x", { PRIORITY = 1, schema = {} })))
        assert.is_nil((filters.check_module("x", { PRIORITY = 1, schema = { a = { type = "string" } }, before = print })))
        assert.is_true(filters.check_module("x", { PRIORITY = 1, schema = {}, log = print }))
    end)

    it("every shipped filter passes its own module check, with every option described", function()
        for _, name in ipairs({ "access_log", "request_id", "auth", "rate_limit", "cors", "ip_allow", "maintenance",
                                "headers", "body_limit" }) do
            assert(filters.load(name))
        end
    end)
end)

describe("orderservice check (lib/check.lua)", function()
    -- The shipped routes.lua is checked by the real binary, with the real settings, in
    -- tests/integration/test_auth.py (Commands).

    it("names the file and line of each problem, all of them at once", function()
        local path = write([[
return {
    filters = {
        access_log = { slow_ms = -1 },
    },
    routes = {
        { method = "GET", path = "/health/", handler = "health.check" },
        { method = "GET", path = "/a/", handler = "health.nope" },
        { method = "GET", path = "/b/", handler = "health.live",
          filters = { auth = { roles = { "root" }, priority = 900 } } },
    },
}
]])
        local problems = check.run(path)
        os.remove(path)
        assert.are.equal(3, #problems)
        assert.matches(path .. ":3: filter \"access_log\"", problems[1], 1, true)
        assert.matches(path .. ":7: route 2 (GET /a/): ", problems[2], 1, true)
        assert.matches('no function "nope"', problems[2], 1, true)
        assert.matches(path .. ":8: route 3 (GET /b/): filter \"auth\"", problems[3], 1, true)
    end)

    it("reports a syntax error with Lua's own file:line", function()
        local path = write("return { routes = { { method = 'GET', path = '/x' handler = 'a.b' } } }\n")
        local problems = check.run(path)
        os.remove(path)
        assert.are.equal(1, #problems)
        assert.matches(":1:", problems[1], 1, true)
    end)

    it("reports a bad route declaration at its line", function()
        local path = write([[
return {
    routes = {
        { method = "GET", path = "/ok/", handler = "health.live" },
        { method = "GIT", path = "/bad/", handler = "health.live" },
    },
}
]])
        local problems = check.run(path)
        os.remove(path)
        assert.matches(":4: invalid route #2", problems[1], 1, true)
    end)
end)
