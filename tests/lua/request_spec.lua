package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local cjson = require("cjson")
local C = require("lib.core")
local request = require("lib.request")

local function new_request(fields)
    fields = fields or {}
    fields.method = fields.method or "GET"
    fields.path = fields.path or "/v1/orders/"
    return request.new(fields)
end

local function nested_arrays(depth)
    return string.rep("[", depth) .. string.rep("]", depth)
end

describe("lib.request", function()
    describe("live()", function()
        it("reads nothing once its task is gone (response sent, or client gone)", function()
            local req = request.live(nil, "GET", "/health/", "abc")
            assert.equal("GET", req.method)
            assert.equal("/health/", req.path)
            assert.equal("abc", req.request_id)
            assert.is_nil(req:header("host"))
            assert.same({}, req.headers)
            assert.equal("", req.body)
            assert.equal("", req.query_string)
            assert.same({}, req:query())
            assert.is_nil(req.remote_addr)
            assert.same({}, req.params)
            assert.same({}, req.ctx)
        end)

        it("keeps the arrival time the host passes, else takes now", function()
            assert.equal(1234, request.live(nil, "GET", "/health/", "abc", 1234).started_ms)
            local before = tonumber(C.os_monotonic_ms())
            local started = request.live(nil, "GET", "/health/", "abc").started_ms
            assert.is_true(started >= before and started <= tonumber(C.os_monotonic_ms()))
        end)

        it("keeps what a filter sets, and a JSON error once parsed", function()
            local req = request.live(nil, "POST", "/v1/orders/", "abc")
            req.ctx.seen = true
            assert.is_true(req.ctx.seen)
            local value, err = req:json()
            assert.is_nil(value)
            assert.equal("request body is empty", err)
            assert.equal("request body is empty", select(2, req:json()))
        end)
    end)

    describe("new()", function()
        it("takes started_ms, else now", function()
            assert.equal(55, new_request({ started_ms = 55 }).started_ms)
            local before = tonumber(C.os_monotonic_ms())
            local started = new_request().started_ms
            assert.is_true(started >= before and started <= tonumber(C.os_monotonic_ms()))
            assert.has_error(function() new_request({ started_ms = "soon" }) end, "bad 'fields.started_ms' argument")
        end)

        it("exposes the fields the host passes", function()
            local params = { id = 7 }
            local req = request.new({
                method = "POST", path = "/v1/orders/7/", query_string = "a=1",
                headers = { ["content-type"] = "application/json" }, body = "{}",
                params = params, request_id = "req-1", remote_addr = "10.0.0.1",
            })
            assert.equal("POST", req.method)
            assert.equal("/v1/orders/7/", req.path)
            assert.equal("a=1", req.query_string)
            assert.equal("application/json", req.headers["content-type"])
            assert.equal("{}", req.body)
            assert.equal(params, req.params)
            assert.equal("req-1", req.request_id)
            assert.equal("10.0.0.1", req.remote_addr)
        end)

        it("defaults missing optional fields to empty values", function()
            local req = new_request()
            assert.equal("", req.body)
            assert.equal("", req.query_string)
            assert.same({}, req.headers)
            assert.same({}, req.params)
        end)

        it("gives every request its own ctx table", function()
            local a, b = new_request(), new_request()
            a.ctx.user = "ada"
            assert.same({ user = "ada" }, a.ctx)
            assert.same({}, b.ctx)
        end)

        it("raises on missing or mistyped fields", function()
            assert.has_error(function() request.new(nil) end, nil)
            assert.has_error(function() request.new({ path = "/" }) end)
            assert.has_error(function() request.new({ method = "GET", path = "/", body = 42 }) end)
            assert.has_error(function() request.new({ method = "GET", path = "/", headers = "x" }) end)
        end)
    end)

    describe("header()", function()
        local req = new_request({
            headers = { ["content-type"] = "application/json", ["x-forwarded-for"] = "1.1.1.1, 2.2.2.2" },
        })

        it("looks a header up case-insensitively", function()
            assert.equal("application/json", req:header("Content-Type"))
            assert.equal("application/json", req:header("CONTENT-TYPE"))
            assert.equal("application/json", req:header("content-type"))
        end)

        it("returns repeated headers joined as the host passed them", function()
            assert.equal("1.1.1.1, 2.2.2.2", req:header("X-Forwarded-For"))
        end)

        it("returns nil for an absent header", function()
            assert.is_nil(req:header("Authorization"))
        end)
    end)

    describe("query()", function()
        it("parses the query string into lists of values", function()
            local req = new_request({ query_string = "status=NEW&status=PAID&q=a+b%20c" })
            assert.same({ status = { "NEW", "PAID" }, q = { "a b c" } }, req:query())
        end)

        it("parses once and caches the result", function()
            local req = new_request({ query_string = "a=1" })
            assert.equal(req:query(), req:query())
        end)

        it("returns an empty table when there is no query string", function()
            assert.same({}, new_request():query())
        end)
    end)

    describe("arg()", function()
        local req = new_request({ query_string = "page=2&page=3&empty" })

        it("returns the first value of an argument", function()
            assert.equal("2", req:arg("page"))
            assert.equal("", req:arg("empty"))
        end)

        it("returns nil for an absent argument", function()
            assert.is_nil(req:arg("limit"))
        end)
    end)

    describe("args()", function()
        local req = new_request({ query_string = "page=2&page=3" })

        it("returns every value of an argument in order", function()
            assert.same({ "2", "3" }, req:args("page"))
        end)

        it("returns an empty table for an absent argument", function()
            assert.same({}, req:args("limit"))
        end)
    end)

    describe("json()", function()
        it("decodes a JSON body", function()
            local req = new_request({ body = '{"items":[{"sku":"SKU1","quantity":2}],"note":"x"}' })
            assert.same({ items = { { sku = "SKU1", quantity = 2 } }, note = "x" }, req:json())
        end)

        it("decodes once and caches the result", function()
            local req = new_request({ body = '{"a":1}' })
            assert.equal(req:json(), req:json())
        end)

        it("returns falsy values and null as decoded", function()
            assert.is_false(new_request({ body = "false" }):json())
            assert.equal(cjson.null, new_request({ body = "null" }):json())
        end)

        it("returns nil and an error for an empty body", function()
            assert.same({ nil, "request body is empty" }, { new_request():json() })
            assert.same({ nil, "request body is empty" }, { new_request({ body = " \r\n\t" }):json() })
        end)

        it("returns nil and an error for invalid JSON without raising", function()
            for _, body in ipairs({ "{", "{'a':1}", '{"a":1} trailing', "\0\255\254", "[1,]" }) do
                local value, err = new_request({ body = body }):json()
                assert.is_nil(value, body)
                assert.matches("^request body is not valid JSON: ", err)
            end
        end)

        it("refuses NaN, Infinity and hex numbers", function()
            for _, body in ipairs({ "NaN", "[Infinity]", '{"a":0x10}' }) do
                local value, err = new_request({ body = body }):json()
                assert.is_nil(value, body)
                assert.matches("^request body is not valid JSON: ", err)
            end
        end)

        it("accepts JSON nested 64 levels deep", function()
            assert.is_table(new_request({ body = nested_arrays(64) }):json())
        end)

        it("refuses JSON nested deeper than 64 levels", function()
            local value, err = new_request({ body = nested_arrays(65) }):json()
            assert.is_nil(value)
            assert.equal("request body is nested deeper than 64 levels", err)
            value, err = new_request({ body = nested_arrays(100000) }):json()
            assert.is_nil(value)
            assert.equal("request body is nested deeper than 64 levels", err)
        end)

        it("caches the error as well", function()
            local req = new_request({ body = "{" })
            local _, first = req:json()
            local value, second = req:json()
            assert.is_nil(value)
            assert.equal(first, second)
        end)
    end)
end)
