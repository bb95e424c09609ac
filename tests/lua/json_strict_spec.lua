package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local json_strict = require("lib.json_strict")
local request = require("lib.request")

describe("lib.json_strict", function()
    it("passes JSON with unique keys and only whitespace after the value", function()
        for _, text in ipairs({ '{"a":1,"b":[1,{"a":2}],"c":{"a":3}}', ' [1, "x", {}, []] \r\n',
                                '{"a":"x\\"y","b\\n":null}', '"s"', "12.5e3", "true", "{}" }) do
            assert.is_true(json_strict.check(text), text)
        end
    end)

    it("refuses a duplicate key at any depth", function()
        assert.same({ nil, 'duplicate key "a"' }, { json_strict.check('{"a":1,"a":2}') })
        assert.same({ nil, 'duplicate key "unit_price"' },
                    { json_strict.check('{"items":[{"unit_price":"1.00","unit_price":"0.00"}]}') })
        assert.same({ nil, 'duplicate key "b"' }, { json_strict.check('[{"x":{"b":1,"b":2}}]') })
    end)

    it("compares keys after decoding their escapes", function()
        assert.same({ nil, 'duplicate key "a"' }, { json_strict.check('{"a":1,"\\u0061":2}') })
        assert.is_true(json_strict.check('{"a":1,"\\u0062":2}'))
    end)

    it("allows the same key in sibling objects", function()
        assert.is_true(json_strict.check('[{"a":1},{"a":2}]'))
    end)

    it("refuses anything after the top-level value, NUL included", function()
        for _, text in ipairs({ '{"a":1}\0', '{"a":1}\0{}', '{"a":1} x', '{"a":1}{}', "[1] 2" }) do
            assert.same({ nil, "unexpected data after the JSON value" }, { json_strict.check(text) })
        end
    end)
end)

describe("lib.request strict bodies", function()
    local function req(body, content_type)
        return request.new({ method = "POST", path = "/", body = body,
                             headers = { ["content-type"] = content_type } })
    end

    it("json() refuses duplicate keys and trailing bytes", function()
        local value, err = req('{"a":1,"a":2}'):json()
        assert.is_nil(value)
        assert.matches("duplicate key", err)
        value, err = req('{"a":1}\0'):json()
        assert.is_nil(value)
        assert.matches("after the JSON value", err)
    end)

    it("json_body() wants Content-Type: application/json (charset=utf-8 allowed)", function()
        for _, ct in ipairs({ "application/json", "application/json; charset=utf-8",
                              "Application/JSON;charset=UTF-8", 'application/json; charset="utf-8"' }) do
            assert.same({ a = 1 }, req('{"a":1}', ct):json_body(), ct)
        end
        for _, ct in ipairs({ "text/plain", "application/x-www-form-urlencoded", "application/jsonp",
                              "application/json; charset=latin-1", "application/json; boundary=x" }) do
            assert.same({ nil, "Content-Type must be application/json", 415 }, { req('{"a":1}', ct):json_body() })
        end
        assert.same({ nil, "Content-Type must be application/json", 415 }, { req('{"a":1}'):json_body() })
        local _, err, status = req('{"a":1,"a":1}', "application/json"):json_body()
        assert.matches("duplicate key", err)
        assert.equal(400, status)
    end)
end)
