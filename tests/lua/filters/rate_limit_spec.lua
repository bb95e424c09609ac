package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local filters = require("lib.filters")
local request = require("lib.request")
local rate_limit = require("filters.rate_limit")

describe("rate_limit filter", function()
    local clock, real_now
    before_each(function()
        real_now, clock = rate_limit.now, 1000
        rate_limit.now = function() return clock end
        rate_limit.reset()
    end)
    after_each(function() rate_limit.now = real_now end)

    local function conf(o) return assert(filters.check_conf(rate_limit, o or {})) end
    local function req(addr, principal)
        local r = request.new({ method = "GET", path = "/", remote_addr = addr })
        r.principal = principal
        return r
    end

    it("allows a burst, then answers 429 with Retry-After", function()
        local c = conf({ rate = 1, burst = 3 })
        for _ = 1, 3 do
            assert.is_nil(rate_limit.before(req("10.0.0.1"), c))
        end
        local resp = rate_limit.before(req("10.0.0.1"), c)
        assert.are.equal(429, resp.status)
        local retry
        for _, h in ipairs(resp.headers) do
            if h[1] == "retry-after" then retry = h[2] end
        end
        assert.are.equal("1", retry)
    end)

    it("refills at the rate", function()
        local c = conf({ rate = 2, burst = 1 })
        assert.is_nil(rate_limit.before(req("a"), c))
        assert.are.equal(429, rate_limit.before(req("a"), c).status)
        clock = clock + 0.5
        assert.is_nil(rate_limit.before(req("a"), c))
    end)

    it("keys by principal when there is one, else by address", function()
        local c = conf({ rate = 1, burst = 1 })
        local alice = { sub = "alice", role = "customer", customer_id = 1 }
        assert.is_nil(rate_limit.before(req("10.0.0.1", alice), c))
        assert.are.equal(429, rate_limit.before(req("10.0.0.2", alice), c).status) -- same principal, new address
        assert.is_nil(rate_limit.before(req("10.0.0.1"), c)) -- same address, anonymous: its own bucket
        assert.are.equal(429, rate_limit.before(req("10.0.0.1"), c).status)
    end)

    it("keys by address only when asked", function()
        local c = conf({ rate = 1, burst = 1, by = "address" })
        assert.is_nil(rate_limit.before(req("10.0.0.1", { sub = "a", role = "admin" }), c))
        assert.are.equal(429, rate_limit.before(req("10.0.0.1", { sub = "b", role = "admin" }), c).status)
    end)

    it("gives each bucket name its own budget", function()
        local a, b = conf({ rate = 1, burst = 1, bucket = "a" }), conf({ rate = 1, burst = 1, bucket = "b" })
        assert.is_nil(rate_limit.before(req("x"), a))
        assert.is_nil(rate_limit.before(req("x"), b))
        assert.are.equal(429, rate_limit.before(req("x"), a).status)
    end)
end)
