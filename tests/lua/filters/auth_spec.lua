-- The auth filter: who gets in, what the 401 says, and what req.principal becomes.
package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local tokens = require("support.tokens")
local filters = require("lib.filters")
local request = require("lib.request")
local auth = require("filters.auth")

local function conf(options)
    return assert(filters.check_conf(auth, options or {}))
end

local function req(headers, extra)
    local fields = { method = "GET", path = "/v1/orders/", headers = headers or {} }
    for k, v in pairs(extra or {}) do
        fields[k] = v
    end
    return request.new(fields)
end

local function bearer(token)
    return { authorization = "Bearer " .. token }
end

local function challenge(resp)
    for _, h in ipairs(resp.headers) do
        if h[1] == "www-authenticate" then
            return h[2]
        end
    end
end

describe("auth filter", function()
    setup(function() tokens.install() end)
    teardown(function() tokens.uninstall() end)

    it("answers 401 with a bare Bearer challenge when no token is sent", function()
        local resp = auth.before(req(), conf())
        assert.are.equal(401, resp.status)
        assert.are.equal('Bearer realm="orderservice"', challenge(resp))
    end)

    it("lets a valid token in and puts the principal on the request", function()
        local r = req(bearer(tokens.sign({ sub = "7", role = "admin" })))
        assert.is_nil(auth.before(r, conf()))
        assert.are.same({ sub = "7", role = "admin" }, r.principal)
    end)

    it("makes a customer of a token without a role, with customer_id from sub or the claim", function()
        local r = req(bearer(tokens.sign({ sub = "44" })))
        assert.is_nil(auth.before(r, conf()))
        assert.are.same({ sub = "44", role = "customer", customer_id = 44 }, r.principal)
        r = req(bearer(tokens.sign({ sub = "user-9", role = "customer", customer_id = 9 })))
        assert.is_nil(auth.before(r, conf()))
        assert.are.equal(9, r.principal.customer_id)
    end)

    local invalid = {
        ["expired"] = function() return tokens.sign({ sub = "1", exp = os.time() - 3600 }) end,
        ["not yet valid"] = function() return tokens.sign({ sub = "1", nbf = os.time() + 3600 }) end,
        ["signed with another secret"] = function()
            return tokens.sign({ sub = "1", role = "admin" }, "another-secret-0123456789abcdef0123")
        end,
        ["alg none"] = function()
            return tokens.b64url('{"alg":"none"}') .. "." .. tokens.b64url('{"sub":"1","role":"admin","exp":4000000000}') .. "."
        end,
        ["without exp"] = function() return tokens.sign('{"sub":"1"}') end,
        ["with an unknown role"] = function() return tokens.sign({ sub = "1", role = "root" }) end,
        ["a customer token without a numeric id"] = function() return tokens.sign({ sub = "alice" }) end,
        ["truncated"] = function() return tokens.sign({ sub = "1" }):sub(1, -10) end,
        ["garbage"] = function() return "garbage" end,
        ["10 KB long"] = function() return ("A"):rep(5000) .. "." .. ("B"):rep(5000) .. ".C" end,
    }
    for what, make in pairs(invalid) do
        it("answers 401 invalid_token to a token " .. what, function()
            local r = req(bearer(make()))
            local resp = auth.before(r, conf())
            assert.are.equal(401, resp.status)
            assert.matches('error="invalid_token"', challenge(resp), 1, true)
            assert.is_nil(r.principal)
        end)
    end

    it("ignores a token in the query string", function()
        local token = tokens.sign({ sub = "1", role = "admin" })
        local resp = auth.before(req({}, { query_string = "access_token=" .. token }), conf())
        assert.are.equal(401, resp.status)
        assert.are.equal('Bearer realm="orderservice"', challenge(resp))
    end)

    it("refuses other schemes as an invalid credential", function()
        local resp = auth.before(req({ authorization = "Basic dXNlcjpwYXNz" }), conf())
        assert.are.equal(401, resp.status)
        assert.matches('error="invalid_token"', challenge(resp), 1, true)
    end)

    it("accepts the scheme in any case", function()
        assert.is_nil(auth.before(req({ authorization = "bearer " .. tokens.sign({ sub = "1" }) }), conf()))
    end)

    it("answers 403 when the role is not in the route's roles", function()
        local c = conf({ roles = { "admin", "service" } })
        local resp = auth.before(req(bearer(tokens.sign({ sub = "44" }))), c)
        assert.are.equal(403, resp.status)
        assert.is_nil(auth.before(req(bearer(tokens.sign({ sub = "s", role = "service" }))), c))
    end)

    it("lets exempt prefixes through without a token", function()
        local c = conf({ exempt_prefixes = { "/orders-doc/" } })
        assert.is_nil(auth.before(req({}, { path = "/orders-doc/index.html" }), c))
        assert.are.equal(401, auth.before(req({}, { path = "/orders-docx" }), c).status)
    end)

    it("checks iss and aud when the process is configured with them", function()
        tokens.install("https://id.example", "orders")
        local good = tokens.sign({ sub = "1", iss = "https://id.example", aud = { "x", "orders" } })
        local wrong_aud = tokens.sign({ sub = "1", iss = "https://id.example", aud = "billing" })
        local wrong_iss = tokens.sign({ sub = "1", iss = "https://evil.example", aud = "orders" })
        assert.is_nil(auth.before(req(bearer(good)), conf()))
        assert.matches("audience", challenge(auth.before(req(bearer(wrong_aud)), conf())))
        assert.matches("issuer", challenge(auth.before(req(bearer(wrong_iss)), conf())))
        tokens.install()
    end)

    it("refuses every token when no key is configured", function()
        tokens.uninstall()
        local resp = auth.before(req(bearer(tokens.sign({ sub = "1" }, tokens.SECRET))), conf())
        assert.are.equal(401, resp.status)
        tokens.install()
    end)

    it("refuses bad options at load", function()
        assert.is_nil((filters.check_conf(auth, { roles = { "root" } })))
        assert.is_nil((filters.check_conf(auth, { roles = "admin" })))
        assert.is_nil((filters.check_conf(auth, { exempt_prefixes = { "docs" } })))
    end)
end)
