-- cors, ip_allow, maintenance, headers, body_limit.
package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local filters = require("lib.filters")
local request = require("lib.request")
local response = require("lib.response")

local function conf(filter, o) return assert(filters.check_conf(filter, o or {})) end
local function header(resp, name)
    for _, h in ipairs(resp.headers) do
        if h[1] == name then return h[2] end
    end
end
local function req(fields)
    fields.method = fields.method or "GET"
    fields.path = fields.path or "/v1/orders/"
    return request.new(fields)
end

describe("cors filter", function()
    local cors = require("filters.cors")
    local c = conf(cors, { origins = { "https://shop.example" } })

    it("answers a preflight from an allowed origin with 204 and the allowed methods", function()
        local resp = cors.before(req({ method = "OPTIONS", headers = { origin = "https://shop.example",
                                                                       ["access-control-request-method"] = "POST" } }), c)
        assert.are.equal(204, resp.status)
        assert.are.equal("https://shop.example", header(resp, "access-control-allow-origin"))
        assert.matches("POST", header(resp, "access-control-allow-methods"))
        assert.matches("authorization", header(resp, "access-control-allow-headers"))
    end)

    it("gives an unlisted origin no CORS headers", function()
        local r = req({ method = "OPTIONS", headers = { origin = "https://evil.example",
                                                        ["access-control-request-method"] = "POST" } })
        local resp = cors.before(r, c)
        assert.is_nil(header(resp, "access-control-allow-origin"))
        local plain = response.json(200, {})
        cors.after(req({ headers = { origin = "https://evil.example" } }), plain, c)
        assert.is_nil(header(plain, "access-control-allow-origin"))
    end)

    it("decorates ordinary responses (a 401 too) for an allowed origin", function()
        local r = req({ headers = { origin = "https://shop.example" } })
        assert.is_nil(cors.before(r, c))
        local resp = response.json(401, {})
        cors.after(r, resp, c)
        assert.are.equal("https://shop.example", header(resp, "access-control-allow-origin"))
        assert.are.equal("Origin", header(resp, "vary"))
    end)

    it("answers * for any origin when listed", function()
        local any = conf(cors, { origins = { "*" } })
        local resp = response.json(200, {})
        cors.after(req({ headers = { origin = "https://x.example" } }), resp, any)
        assert.are.equal("*", header(resp, "access-control-allow-origin"))
    end)
end)

describe("ip_allow filter", function()
    local ip_allow = require("filters.ip_allow")
    local c = conf(ip_allow, { allow = { "10.0.0.0/8", "192.168.1.7", "fd00::/8", "::1" } })

    for _, addr in ipairs({ "10.1.2.3", "192.168.1.7", "::ffff:10.9.9.9", "fd12:3456::1", "::1" }) do
        it("lets " .. addr .. " through", function()
            assert.is_nil(ip_allow.before(req({ remote_addr = addr }), c))
        end)
    end
    for _, addr in ipairs({ "11.0.0.1", "192.168.1.8", "fe80::1", "::2", "garbage" }) do
        it("answers 403 to " .. addr, function()
            assert.are.equal(403, ip_allow.before(req({ remote_addr = addr }), c).status)
        end)
    end
    it("answers 403 without a peer address", function()
        assert.are.equal(403, ip_allow.before(req({}), c).status)
    end)
    it("parses odd CIDRs exactly", function()
        local odd = conf(ip_allow, { allow = { "172.16.0.0/12", "0.0.0.0/0" } })
        assert.is_nil(ip_allow.before(req({ remote_addr = "8.8.8.8" }), odd))
        local twelve = conf(ip_allow, { allow = { "172.16.0.0/12" } })
        assert.is_nil(ip_allow.before(req({ remote_addr = "172.31.255.255" }), twelve))
        assert.are.equal(403, ip_allow.before(req({ remote_addr = "172.32.0.0" }), twelve).status)
    end)
    it("refuses malformed CIDRs at load", function()
        for _, bad in ipairs({ "10.0.0.0/33", "256.0.0.1", "1.2.3", "::1/129", "1::2::3", "01.2.3.4" }) do
            assert.is_nil((filters.check_conf(ip_allow, { allow = { bad } })), bad)
        end
    end)
end)

describe("maintenance filter", function()
    local maintenance = require("filters.maintenance")
    it("answers 503 with the message and Retry-After", function()
        local resp = maintenance.before(req({}), conf(maintenance, { message = "back at 5", retry_after = 120 }))
        assert.are.equal(503, resp.status)
        assert.are.equal("120", header(resp, "retry-after"))
        assert.matches("back at 5", resp.body, 1, true)
    end)
end)

describe("headers filter", function()
    local headers = require("filters.headers")
    it("adds (replacing) and removes response headers", function()
        local c = conf(headers, { add = { ["X-Frame-Options"] = "DENY", ["cache-control"] = "no-store" },
                                  remove = { "Server-Timing" } })
        local resp = response.json(200, {}, { { "cache-control", "max-age=60" }, { "server-timing", "db;dur=3" } })
        headers.after(req({}), resp, c)
        assert.are.equal("no-store", header(resp, "cache-control"))
        assert.are.equal("DENY", header(resp, "x-frame-options"))
        assert.is_nil(header(resp, "server-timing"))
        assert.are.equal("application/json", header(resp, "content-type"))
    end)
    it("refuses values with line breaks and bad names", function()
        assert.is_nil((filters.check_conf(headers, { add = { x = "a\r\nb" } })))
        assert.is_nil((filters.check_conf(headers, { add = { ["bad name"] = "v" } })))
    end)
end)

describe("body_limit filter", function()
    local body_limit = require("filters.body_limit")
    local c = conf(body_limit, { max_bytes = 10 })
    it("answers a JSON 413 for a larger body", function()
        local resp = body_limit.before(req({ method = "POST", body = ("x"):rep(11) }), c)
        assert.are.equal(413, resp.status)
        assert.are.equal("application/json", header(resp, "content-type"))
    end)
    it("lets a body of exactly max_bytes through", function()
        assert.is_nil(body_limit.before(req({ method = "POST", body = ("x"):rep(10) }), c))
    end)
    it("cannot be set above h2o's own 1 MiB cap", function()
        assert.is_nil((filters.check_conf(body_limit, { max_bytes = 2 * 1024 * 1024 })))
    end)
end)
