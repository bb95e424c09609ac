package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local router = require("lib.router")

local function error_of(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

local function compile_error(route_list)
    return error_of(router.new, route_list)
end

local function route(method, path, handler)
    return { method = method, path = path, handler = handler or "h" }
end

-- status and Allow of a 405 (the fourth value, the route the path matched, has its own test)
local function first3(a, b, c)
    return a, b, c
end

describe("lib.router", function()
    describe("new()", function()
        it("compiles an empty route list", function()
            local r = router.new({})
            assert.same({}, r:routes())
            assert.same({ nil, 404 }, { r:match("GET", "/") })
        end)

        it("raises when the route list is not a table", function()
            assert.matches("bad 'route_list' argument", error_of(router.new, "routes"), 1, true)
        end)

        it("keeps the declaration fields on the compiled route", function()
            local filters = { "auth", { "rate_limit", per_minute = 60 } }
            local r = router.new({
                { method = { "POST", "GET" }, path = "/v1/orders/{id}/details/",
                  handler = "orders.details", filters = filters, name = "order_details" },
            })
            local compiled = r:match("GET", "/v1/orders/7/details/")
            assert.equal("orders.details", compiled.handler)
            assert.equal(filters, compiled.filters)
            assert.equal("order_details", compiled.name)
            assert.equal("/v1/orders/{id}/details/", compiled.path)
            assert.same({ "GET", "POST" }, compiled.methods)
            assert.equal("/v1/orders/{int}/details", compiled.pattern)
        end)

        it("rejects a declaration without a handler, naming its index and path", function()
            local err = compile_error({ route("GET", "/a"), { method = "GET", path = "/v1/orders/" } })
            assert.matches("invalid route #2 (/v1/orders/): 'handler' is missing", err, 1, true)
        end)

        it("rejects an unknown method", function()
            local err = compile_error({ route("FETCH", "/v1/orders/") })
            assert.matches("invalid route #1 (/v1/orders/): unknown method 'FETCH'", err, 1, true)
        end)

        it("rejects a lower-case method", function()
            assert.matches("unknown method 'get'", compile_error({ route("get", "/a") }), 1, true)
        end)

        it("rejects an empty or repeated method list", function()
            assert.matches("invalid route #1 (/a): 'method' must be",
                           compile_error({ route({}, "/a") }), 1, true)
            assert.matches("method 'GET' is listed twice",
                           compile_error({ route({ "GET", "GET" }, "/a") }), 1, true)
        end)

        it("rejects an empty parameter '{}'", function()
            local err = compile_error({ route("GET", "/a"), route("GET", "/b"), route("GET", "/v1/{}/x") })
            assert.matches("invalid route #3 (/v1/{}/x): empty parameter '{}'", err, 1, true)
        end)

        it("rejects an unclosed parameter", function()
            local err = compile_error({ route("GET", "/v1/orders/{id") })
            assert.matches("invalid route #1 (/v1/orders/{id): unclosed '{' in segment '{id'", err, 1, true)
        end)

        it("rejects a parameter that is only part of a segment", function()
            local err = compile_error({ route("GET", "/v1/order-{id}") })
            assert.matches("a parameter must be a whole segment", err, 1, true)
            assert.matches("a parameter must be a whole segment",
                           compile_error({ route("GET", "/v1/id}") }), 1, true)
        end)

        it("rejects bad parameter names and unknown parameter types", function()
            assert.matches("bad parameter '{1x}'", compile_error({ route("GET", "/a/{1x}") }), 1, true)
            assert.matches("bad parameter '{id:}'", compile_error({ route("GET", "/a/{id:}") }), 1, true)
            assert.matches("parameter 'n' has unknown type 'float'",
                           compile_error({ route("GET", "/a/{n:float}") }), 1, true)
        end)

        it("rejects a parameter name used twice in one path", function()
            local err = compile_error({ route("GET", "/a/{id}/b/{id}") })
            assert.matches("invalid route #1 (/a/{id}/b/{id}): parameter 'id' is used twice", err, 1, true)
        end)

        it("rejects paths that do not start with '/', have '//' or odd characters", function()
            assert.matches("invalid route #1 (v1/orders): 'path' must be a string starting with '/'",
                           compile_error({ route("GET", "v1/orders") }), 1, true)
            assert.matches("invalid route #1 (/v1//orders): empty segment",
                           compile_error({ route("GET", "/v1//orders") }), 1, true)
            assert.matches("segment 'a b' has a character not allowed",
                           compile_error({ route("GET", "/a b") }), 1, true)
            assert.matches("'path' must be", compile_error({ { method = "GET", handler = "h" } }), 1, true)
        end)

        it("rejects unknown fields, so a typo cannot silently drop filters", function()
            local err = compile_error({ { method = "GET", path = "/a", handler = "h", fitlers = {} } })
            assert.matches("invalid route #1 (/a): unknown field 'fitlers'", err, 1, true)
        end)

        it("rejects filters that are not a table and a name that is not a string", function()
            local decl = route("GET", "/a")
            decl.filters = "auth"
            assert.matches("'filters' must be a table", compile_error({ decl }), 1, true)
            decl = route("GET", "/a")
            decl.name = 42
            assert.matches("'name' must be a string", compile_error({ decl }), 1, true)
        end)

        it("rejects a declaration that is not a table", function()
            assert.matches("invalid route #2: expected a table, got string",
                           compile_error({ route("GET", "/a"), "GET /b" }), 1, true)
        end)

        it("rejects a duplicate method and pattern, naming both routes", function()
            local err = compile_error({
                route("GET", "/v1/orders/{id}/"),
                route("POST", "/v1/orders/"),
                route({ "POST", "GET" }, "/v1/orders/{order_id}"),
            })
            assert.matches("invalid route #3 (/v1/orders/{order_id}): duplicates route #1 "
                           .. "(/v1/orders/{id}/); both are GET /v1/orders/{int}", err, 1, true)
        end)

        it("treats patterns differing only by a trailing slash as duplicates", function()
            local err = compile_error({ route("GET", "/health"), route("GET", "/health/") })
            assert.matches("invalid route #2 (/health/): duplicates route #1", err, 1, true)
        end)

        it("allows one pattern with different methods in separate declarations", function()
            local r = router.new({ route("GET", "/v1/orders/", "list"), route("POST", "/v1/orders", "create") })
            assert.equal("list", (r:match("GET", "/v1/orders/")).handler)
            assert.equal("create", (r:match("POST", "/v1/orders")).handler)
        end)
    end)

    describe("match()", function()
        local r = router.new({
            route("GET", "/", "root"),
            route("GET", "/health", "health"),
            route({ "GET", "POST" }, "/v1/orders/", "orders.list"),
            route("GET", "/v1/orders/{id}/", "orders.get"),
            route({ "PUT", "DELETE" }, "/v1/orders/{id}/", "orders.change"),
            route("GET", "/v1/orders/my-orders/{customer_id}/", "orders.mine"),
            route("POST", "/v1/orders/create/", "orders.create"),
            route("GET", "/v1/orders/{id}/items/{item_id}", "items.get"),
            route("GET", "/v1/orders/{order_id}/notes/{note_id}", "notes.get"),
            route("GET", "/v1/tags/popular", "tags.popular"),
            route("GET", "/v1/tags/{tag}", "tags.get"),
            route("GET", "/v1/tags/{tag}/items", "tags.items"),
            route("GET", "/v1/things/{n:int}", "things.by_number"),
            route("GET", "/v1/things/{slug}", "things.by_slug"),
            route("GET", "/v1/skus/{id:string}", "skus.get"),
            route("HEAD", "/v1/ping", "ping.head"),
            route("GET", "/v1/ping", "ping.get"),
            route("OPTIONS", "/v1/cors", "cors.options"),
        })

        local function handler_of(method, path)
            local found = r:match(method, path)
            return found and found.handler
        end

        it("matches a path with or without its trailing slash", function()
            assert.equal("orders.list", handler_of("GET", "/v1/orders/"))
            assert.equal("orders.list", handler_of("GET", "/v1/orders"))
            assert.equal("health", handler_of("GET", "/health"))
            assert.equal("health", handler_of("GET", "/health/"))
        end)

        it("matches the root path", function()
            assert.equal("root", handler_of("GET", "/"))
        end)

        it("converts an int parameter to a number", function()
            local found, params = r:match("GET", "/v1/orders/42/")
            assert.equal("orders.get", found.handler)
            assert.same({ id = 42 }, params)
            assert.equal("number", type(params.id))
        end)

        it("treats parameters named id or *_id as ints", function()
            local _, params = r:match("GET", "/v1/orders/my-orders/17")
            assert.same({ customer_id = 17 }, params)
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/my-orders/bob") })
        end)

        it("honours an explicit type over the naming convention", function()
            local _, params = r:match("GET", "/v1/skus/SKU0095")
            assert.same({ id = "SKU0095" }, params)
            local found, p = r:match("GET", "/v1/things/12")
            assert.equal("things.by_number", found.handler)
            assert.same({ n = 12 }, p)
        end)

        it("refuses ints that are zero, negative, zero-padded or not plain digits", function()
            for _, bad in ipairs({ "0", "-1", "007", "1e3", "1.5", "0x10", "+1", "%31", "1%20" }) do
                assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/" .. bad .. "/") }, bad)
            end
        end)

        it("refuses ints of 19 digits or more", function()
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/1234567890123456789") })
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/12345678901234567890") })
        end)

        it("refuses ints of 10^14 and above (the ids' one limit, written exactly by cjson)", function()
            local _, params = r:match("GET", "/v1/orders/99999999999999")
            assert.equal(99999999999999, params.id)
            assert.equal(99999999999999, router.MAX_INT)
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/100000000000000") })
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/9007199254740991") })
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/123456789012345678") })
        end)

        it("percent-decodes string parameters", function()
            assert.same({ tag = "a b" }, select(2, r:match("GET", "/v1/tags/a%20b")))
            assert.same({ tag = "a/b" }, select(2, r:match("GET", "/v1/tags/a%2Fb")))
            assert.same({ tag = "caf\195\169" }, select(2, r:match("GET", "/v1/tags/caf%C3%A9")))
        end)

        it("keeps '+' and invalid escapes in string parameters as they are", function()
            assert.same({ tag = "a+b" }, select(2, r:match("GET", "/v1/tags/a+b")))
            assert.same({ tag = "100%zz" }, select(2, r:match("GET", "/v1/tags/100%zz")))
        end)

        it("binds parameter names per route when routes share a prefix", function()
            assert.same({ id = 5, item_id = 6 }, select(2, r:match("GET", "/v1/orders/5/items/6")))
            assert.same({ order_id = 5, note_id = 9 }, select(2, r:match("GET", "/v1/orders/5/notes/9")))
        end)

        it("returns an empty params table for a route without parameters", function()
            assert.same({}, select(2, r:match("GET", "/health")))
            assert.same({}, select(2, r:match("GET", "/health"))) -- the cached match too
        end)

        it("lookup() answers as match() but with nil params for a route without parameters", function()
            for _ = 1, 2 do -- the first match and the cached one
                local route, params = r:lookup("GET", "/health")
                assert.equal("health", route.handler)
                assert.is_nil(params)
            end
            assert.same({ id = 42 }, select(2, r:lookup("GET", "/v1/orders/42/")))
            assert.same({ nil, 404 }, { r:lookup("GET", "/v2/orders/") })
            assert.matches("bad 'path' argument", error_of(r.lookup, r, "GET", nil), 1, true)
        end)

        it("prefers a literal segment over a parameter", function()
            assert.equal("tags.popular", handler_of("GET", "/v1/tags/popular"))
            assert.equal("tags.get", handler_of("GET", "/v1/tags/recent"))
            assert.equal("orders.mine", handler_of("GET", "/v1/orders/my-orders/3/"))
        end)

        it("prefers an int parameter over a string parameter", function()
            assert.equal("things.by_number", handler_of("GET", "/v1/things/12"))
            assert.equal("things.by_slug", handler_of("GET", "/v1/things/blue-lamp"))
        end)

        it("falls back to a parameter when the literal branch does not match further down", function()
            local found, params = r:match("GET", "/v1/tags/popular/items")
            assert.equal("tags.items", found.handler)
            assert.same({ tag = "popular" }, params)
        end)

        it("answers 405 with the allowed methods for a literal that is not an int", function()
            assert.same({ nil, 405, "POST" }, { first3(r:match("GET", "/v1/orders/create/")) })
            assert.equal("orders.create", handler_of("POST", "/v1/orders/create"))
        end)

        it("returns 404 for an unknown path", function()
            assert.same({ nil, 404 }, { r:match("GET", "/v2/orders/") })
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/1/unknown") })
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders/1/items/2/3/4/5/6/7") })
        end)

        it("returns 404 for paths with empty segments", function()
            assert.same({ nil, 404 }, { r:match("GET", "//") })
            assert.same({ nil, 404 }, { r:match("GET", "/v1//orders/") })
            assert.same({ nil, 404 }, { r:match("GET", "/v1/orders//") })
            assert.same({ nil, 404 }, { r:match("GET", "//health") })
        end)

        it("returns 404 for a path that does not start with '/'", function()
            assert.same({ nil, 404 }, { r:match("GET", "health") })
            assert.same({ nil, 404 }, { r:match("GET", "") })
        end)

        it("returns 405 with a sorted Allow list for a known path and wrong method", function()
            assert.same({ nil, 405, "DELETE, GET, HEAD, PUT" }, { first3(r:match("POST", "/v1/orders/12/")) })
            assert.same({ nil, 405, "GET, HEAD, POST" }, { first3(r:match("DELETE", "/v1/orders")) })
        end)

        it("serves HEAD from a GET route and lists HEAD wherever GET is allowed", function()
            local found, params = r:match("HEAD", "/v1/orders/3")
            assert.equal("orders.get", found.handler)
            assert.same({ id = 3 }, params)
            assert.same({ nil, 405, "GET, HEAD" }, { first3(r:match("POST", "/health")) })
        end)

        it("prefers an explicit HEAD route over the GET route", function()
            assert.equal("ping.head", handler_of("HEAD", "/v1/ping"))
            assert.equal("ping.get", handler_of("GET", "/v1/ping"))
        end)

        it("names the first declared route the path matches with a 405 (for the metrics' route label)", function()
            local _, status, _, matched = r:match("POST", "/v1/orders/12/")
            assert.equal(405, status)
            assert.equal("/v1/orders/{id}", (matched.path:gsub("/$", "")))
        end)

        it("does not add OPTIONS implicitly", function()
            assert.same({ nil, 405, "GET, HEAD" }, { first3(r:match("OPTIONS", "/health")) })
            assert.same({ nil, 405, "OPTIONS" }, { first3(r:match("GET", "/v1/cors")) })
        end)

        it("returns a fresh params table on every match", function()
            local _, a = r:match("GET", "/v1/orders/1")
            local _, b = r:match("GET", "/v1/orders/1")
            assert.are_not.equal(a, b)
        end)

        it("raises when method or path is not a string", function()
            assert.matches("bad 'method' argument", error_of(r.match, r, nil, "/"), 1, true)
            assert.matches("bad 'path' argument", error_of(r.match, r, "GET", nil), 1, true)
        end)
    end)

    describe("routes()", function()
        it("lists the compiled routes in declaration order", function()
            local r = router.new({ route("GET", "/b", "b"), route("GET", "/a", "a") })
            local list = r:routes()
            assert.equal(2, #list)
            assert.equal("b", list[1].handler)
            assert.equal("a", list[2].handler)
        end)

        it("returns a copy the caller may modify", function()
            local r = router.new({ route("GET", "/a", "a") })
            table.remove(r:routes())
            assert.equal(1, #r:routes())
        end)
    end)
end)
