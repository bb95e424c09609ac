package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local query = require("lib.query")

local function count_keys(t)
    local n = 0
    for _ in pairs(t) do
        n = n + 1
    end
    return n
end

describe("lib.query", function()
    describe("decode()", function()
        it("turns '+' into a space", function()
            assert.equal("hello world", query.decode("hello+world"))
        end)

        it("decodes %XX escapes in either case", function()
            assert.equal("a b", query.decode("a%20b"))
            assert.equal("a+b", query.decode("a%2Bb"))
            assert.equal("caf\195\169", query.decode("caf%c3%A9"))
        end)

        it("leaves invalid escapes as they are", function()
            assert.equal("%zz", query.decode("%zz"))
            assert.equal("100%", query.decode("100%"))
            assert.equal("%4", query.decode("%4"))
            assert.equal("%A", query.decode("%%41"))
        end)

        it("decodes only once", function()
            assert.equal("%41", query.decode("%2541"))
        end)

        it("returns a string without escapes unchanged", function()
            assert.equal("plain", query.decode("plain"))
            assert.equal("", query.decode(""))
        end)

        it("raises when given a non-string", function()
            assert.has_error(function() query.decode(nil) end)
        end)
    end)

    describe("unescape()", function()
        it("decodes %XX escapes but keeps '+'", function()
            assert.equal("a+b c", query.unescape("a+b%20c"))
            assert.equal("%zz", query.unescape("%zz"))
        end)
    end)

    describe("escape()", function()
        it("keeps the RFC 3986 unreserved characters", function()
            local unreserved = "AZaz09-._~"
            assert.equal(unreserved, query.escape(unreserved))
        end)

        it("percent-encodes everything else with upper-case hex", function()
            assert.equal("a%20b%2Bc%2F%3F%26%3D", query.escape("a b+c/?&="))
            assert.equal("caf%C3%A9", query.escape("caf\195\169"))
        end)
    end)

    describe("parse()", function()
        it("collects repeated keys into a list, in order", function()
            assert.same({ a = { "1", "2" }, b = { "" } }, query.parse("a=1&a=2&b"))
        end)

        it("decodes keys and values, with '+' and %20 as spaces", function()
            assert.same({ ["first name"] = { "Ada Lovelace" }, q = { "a b" } },
                        query.parse("first+name=Ada%20Lovelace&q=a+b"))
        end)

        it("leaves invalid escapes as they are", function()
            assert.same({ x = { "%zz" } }, query.parse("x=%zz"))
        end)

        it("keeps everything after the first '=' in the value", function()
            assert.same({ a = { "b=c" }, e = { "" } }, query.parse("a=b=c&e="))
        end)

        it("skips empty pairs and pairs with an empty key", function()
            assert.same({ a = { "1" } }, query.parse("&&a=1&&=x&"))
        end)

        it("returns an empty table for nil or an empty string", function()
            assert.same({}, query.parse(nil))
            assert.same({}, query.parse(""))
        end)

        it("reads at most 1000 pairs and ignores the rest", function()
            local parts = {}
            for i = 1, 1500 do
                parts[i] = "k" .. i .. "=" .. i
            end
            local parsed = query.parse(table.concat(parts, "&"))
            assert.equal(1000, count_keys(parsed))
            assert.same({ "1000" }, parsed.k1000)
            assert.is_nil(parsed.k1001)
        end)

        it("counts repeated keys toward the 1000-pair cap", function()
            local parsed = query.parse(string.rep("a=1&", 1200))
            assert.equal(1000, #parsed.a)
        end)

        it("raises when given something other than a string or nil", function()
            assert.has_error(function() query.parse(42) end)
        end)
    end)

    describe("encode()", function()
        it("sorts keys so links are stable", function()
            assert.equal("a=1&b=2&c=3", query.encode({ c = "3", a = "1", b = "2" }))
        end)

        it("repeats the key for each value of a list", function()
            assert.equal("status=NEW&status=PAID", query.encode({ status = { "NEW", "PAID" } }))
        end)

        it("percent-encodes keys and values outside the unreserved set", function()
            assert.equal("q=a%20b%26c&x%20y=%2B", query.encode({ q = "a b&c", ["x y"] = "+" }))
        end)

        it("formats numbers and booleans", function()
            assert.equal("active=true&page=2", query.encode({ page = 2, active = true }))
        end)

        it("returns an empty string for an empty table and skips empty lists", function()
            assert.equal("", query.encode({}))
            assert.equal("a=1", query.encode({ a = "1", b = {} }))
        end)

        it("round-trips through parse()", function()
            local t = { cursor = { "a/b c+d" }, limit = { "50" }, tag = { "x", "y" } }
            assert.same(t, query.parse(query.encode(t)))
        end)

        it("raises on a non-table, a non-string key or an unsupported value", function()
            assert.has_error(function() query.encode("a=1") end)
            assert.has_error(function() query.encode({ [1] = "x" }) end)
            assert.has_error(function() query.encode({ a = { {} } }) end)
        end)
    end)
end)
