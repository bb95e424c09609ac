package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local cjson = require("cjson")
local response = require("lib.response")

local function header_list(resp)
    local list = {}
    for i, h in ipairs(resp.headers) do
        list[i] = h[1] .. ": " .. h[2]
    end
    return list
end

describe("lib.response", function()
    describe("json()", function()
        it("builds a JSON response", function()
            local resp = response.json(201, { id = 7, total = "12.50" })
            assert.equal(201, resp.status)
            assert.same({ "content-type: application/json" }, header_list(resp))
            assert.same({ id = 7, total = "12.50" }, cjson.decode(resp.body))
        end)

        it("encodes an empty Lua table as an object", function()
            assert.equal("{}", response.json(200, {}).body)
        end)

        it("encodes a table marked with array() as an array, even when empty", function()
            assert.equal("[]", response.json(200, response.array({})).body)
            assert.equal("[]", response.json(200, response.array()).body)
            assert.equal("[1,2]", response.json(200, response.array({ 1, 2 })).body)
        end)

        it("encodes marked arrays nested in objects and arrays", function()
            local body = response.json(200, {
                orders = response.array(),
                pages = { response.array({ response.array() }) },
                meta = { count = 0, filters = {} },
            }).body
            local decoded = cjson.decode(body)
            assert.matches('"orders":[]', body, 1, true)
            assert.matches('"pages":[[[]]]', body, 1, true)
            assert.matches('"filters":{}', body, 1, true)
            assert.equal(0, decoded.meta.count)
        end)

        it("encodes empty_array as [] and null as null", function()
            assert.equal('{"items":[]}', response.json(200, { items = response.empty_array }).body)
            assert.equal("[1,null]", response.json(200, { 1, response.null }).body)
        end)

        it("returns the table it marks, so it can still be filled", function()
            local items = response.array()
            items[#items + 1] = "a"
            assert.equal('["a"]', response.json(200, items).body)
        end)

        it("encodes strings as strings, so money keeps its exact text", function()
            assert.equal('{"amount":"0.10"}', response.json(200, { amount = "0.10" }).body)
        end)

        it("adds headers given as a map, sorted by name", function()
            local resp = response.json(200, {}, { ["x-b"] = "2", ["x-a"] = "1" })
            assert.same({ "content-type: application/json", "x-a: 1", "x-b: 2" }, header_list(resp))
        end)

        it("adds headers given as a list of pairs, in order", function()
            local resp = response.json(200, {}, { { "link", "<b>" }, { "link", "<a>" } })
            assert.same({ "content-type: application/json", "link: <b>", "link: <a>" }, header_list(resp))
        end)

        it("lets a given content-type replace the default one", function()
            local resp = response.json(200, {}, { ["Content-Type"] = "application/problem+json" })
            assert.same({ "content-type: application/problem+json" }, header_list(resp))
            -- the default pair is shared by every response: replaced, never changed
            assert.same({ "content-type: application/json" }, header_list(response.json(200, {})))
        end)

        it("raises on a value cjson cannot encode", function()
            assert.has_error(function() response.json(200, { f = print }) end)
            assert.has_error(function() response.json(200, { n = 0 / 0 }) end)
        end)

        it("raises on a bad status", function()
            assert.has_error(function() response.json("200", {}) end)
            assert.has_error(function() response.json(99, {}) end)
            assert.has_error(function() response.json(200.5, {}) end)
        end)

        it("raises on header names or values that could split the response", function()
            assert.has_error(function() response.json(200, {}, { ["x-a"] = "1\r\nx-b: 2" }) end)
            assert.has_error(function() response.json(200, {}, { ["x a"] = "1" }) end)
        end)
    end)

    describe("json_text() and json_with_field()", function()
        it("answers JSON text built elsewhere as it is", function()
            local resp = response.json_text(200, '{"order_id":7,"total":"12.50"}')
            assert.same({ "content-type: application/json" }, header_list(resp))
            assert.equal('{"order_id":7,"total":"12.50"}', resp.body)
            assert.has_error(function() response.json_text(200, {}) end, "bad 'text' argument")
        end)

        it("splices a JSON text into an object as one more field, without re-encoding it", function()
            local text = '[{"total":"0.10","sku":"a/b"},{"total":"99999999.99"}]'
            local body = response.json_with_field(200, { count = 2, next = response.null },
                                                  "results", text).body
            assert.matches('"results":' .. text, body, 1, true)
            assert.same({ count = 2, next = cjson.null, results = {
                { total = "0.10", sku = "a/b" }, { total = "99999999.99" } } }, cjson.decode(body))
        end)

        it("writes an object with nothing else", function()
            assert.equal('{"results":[]}', response.json_with_field(200, {}, "results", "[]").body)
            assert.same({ results = {}, page = 1 },
                        cjson.decode(response.json_with_field(200, { page = 1 }, "results", "[]").body))
        end)

        it("refuses an object that already has the field, or is not an object, or no text", function()
            assert.has_error(function()
                response.json_with_field(200, { results = 1 }, "results", "[]")
            end, "bad 'object' argument")
            assert.has_error(function()
                response.json_with_field(200, response.array({ 1 }), "results", "[]")
            end)
            assert.has_error(function()
                response.json_with_field(200, {}, "results", { "[]" })
            end, "bad 'text' argument")
        end)
    end)

    describe("html()", function()
        it("builds an HTML response", function()
            local resp = response.html(200, "<h1>Orders</h1>")
            assert.equal(200, resp.status)
            assert.equal("<h1>Orders</h1>", resp.body)
            assert.same({ "content-type: text/html; charset=utf-8" }, header_list(resp))
        end)

        it("raises when the body is not a string", function()
            assert.has_error(function() response.html(200, nil) end)
        end)
    end)

    describe("text()", function()
        it("builds a plain-text response", function()
            local resp = response.text(503, "unavailable", { ["retry-after"] = "5" })
            assert.equal(503, resp.status)
            assert.equal("unavailable", resp.body)
            assert.same({ "content-type: text/plain; charset=utf-8", "retry-after: 5" }, header_list(resp))
        end)

        it("raises when the body is not a string", function()
            assert.has_error(function() response.text(200, 42) end)
        end)
    end)

    describe("error()", function()
        it("gives every 503 a Retry-After", function()
            local resp = response.error(503, "database unavailable")
            assert.same({ "content-type: application/json", "retry-after: 1" }, header_list(resp))
            assert.same({ "content-type: application/json", "retry-after: 1" },
                        header_list(response.json(503, { status = "unhealthy" })))
        end)

        it("builds a JSON error without details", function()
            local resp = response.error(404, "order not found")
            assert.equal(404, resp.status)
            assert.equal('{"error":"order not found"}', resp.body)
            assert.same({ "content-type: application/json" }, header_list(resp))
        end)

        it("includes details when given", function()
            local resp = response.error(422, "invalid order", { quantity = "must be positive" })
            assert.same({ error = "invalid order", details = { quantity = "must be positive" } },
                        cjson.decode(resp.body))
        end)

        it("raises when the message is not a string", function()
            assert.has_error(function() response.error(500, nil) end)
        end)
    end)

    describe("header()", function()
        it("appends a header and returns the response for chaining", function()
            local resp = response.text(200, "ok")
            assert.equal(resp, resp:header("cache-control", "no-store"):header("x-n", 3))
            assert.same({ "content-type: text/plain; charset=utf-8", "cache-control: no-store", "x-n: 3" },
                        header_list(resp))
        end)

        it("keeps repeated header names", function()
            local resp = response.text(200, "ok"):header("set-cookie", "a=1"):header("set-cookie", "b=2")
            assert.equal(3, #resp.headers)
        end)

        it("raises on a bad name or a value with CR, LF or NUL", function()
            local resp = response.text(200, "ok")
            assert.has_error(function() resp:header("x", "a\nb") end)
            assert.has_error(function() resp:header("x", "a\0b") end)
            assert.has_error(function() resp:header("bad name", "v") end)
            assert.has_error(function() resp:header("x", nil) end)
        end)
    end)
end)
