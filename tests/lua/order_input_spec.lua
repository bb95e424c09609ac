package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local input = require("orders.input")
local money = require("orders.money")
local request = require("lib.request")

local TAX_PPM, SHIPPING = 50000, 5000

local function item(overrides)
    local t = { product_id = 7, sku = "SKU0001", quantity = 2, unit_price = "12.50" }
    for k, v in pairs(overrides or {}) do
        t[k] = v
    end
    return t
end

local function create(body)
    return input.create(body, TAX_PPM, SHIPPING)
end

-- the field an invalid create body is refused for
local function refused_field(body)
    local ok, err = create(body)
    assert.is_nil(ok)
    return err.field
end

local function get(qs)
    return request.new({ method = "GET", path = "/v1/orders/", query_string = qs })
end

describe("orders.input", function()
    describe("create()", function()
        it("normalizes a valid order and computes its totals", function()
            local order = assert(create({ customer_id = 3, items = { item(), item({
                product_id = 8, quantity = 1, unit_price = 0.1 }) } }))
            assert.equal(3, order.customer_id)
            assert.equal(2, #order.items)
            assert.equal("12.50", money.format(order.items[1].unit_price))
            assert.equal("0.10", money.format(order.items[2].unit_price))
            assert.equal("25.10", money.format(order.totals.subtotal))
            assert.equal("1.26", money.format(order.totals.tax)) -- 1.255 -> 1.26 (6 is even)
            assert.equal("76.36", money.format(order.totals.total))
        end)

        it("refuses a body that is not an object", function()
            assert.equal("body", refused_field("x"))
            assert.equal("body", refused_field({ 1, 2 }))
        end)

        it("refuses unknown fields", function()
            assert.equal("order_status", refused_field({ customer_id = 1, items = { item() },
                                                         order_status = "PAID" }))
            assert.equal("items[0].colour", refused_field({ customer_id = 1,
                                                            items = { item({ colour = "red" }) } }))
        end)

        it("wants a positive integer customer_id", function()
            for _, bad in ipairs({ 0, -1, 1.5, "1", true, 1e15 }) do
                assert.equal("customer_id", refused_field({ customer_id = bad, items = { item() } }))
            end
            assert.equal("customer_id", refused_field({ items = { item() } }))
        end)

        it("wants 1 to 100 items in a list", function()
            assert.equal("items", refused_field({ customer_id = 1 }))
            assert.equal("items", refused_field({ customer_id = 1, items = {} }))
            assert.equal("items", refused_field({ customer_id = 1, items = { a = item() } }))
            assert.equal("items", refused_field({ customer_id = 1, items = "x" }))
            local many = {}
            for i = 1, 101 do
                many[i] = item()
            end
            assert.equal("items", refused_field({ customer_id = 1, items = many }))
            many[101] = nil
            assert.truthy(create({ customer_id = 1, items = many }))
        end)

        it("names the item and field at fault, counting from 0", function()
            local cases = {
                { { product_id = 0 }, "items[1].product_id" },
                { { product_id = 2.5 }, "items[1].product_id" },
                { { product_id = "7" }, "items[1].product_id" },
                { { sku = "" }, "items[1].sku" },
                { { sku = ("x"):rep(101) }, "items[1].sku" },
                { { sku = 12 }, "items[1].sku" },
                { { sku = "a\nb" }, "items[1].sku" },
                { { sku = "\255\254" }, "items[1].sku" },
                { { quantity = 0 }, "items[1].quantity" },
                { { quantity = 1.5 }, "items[1].quantity" },
                { { quantity = "2" }, "items[1].quantity" },
                { { quantity = 1000001 }, "items[1].quantity" },
                { { unit_price = "1.234" }, "items[1].unit_price" },
                { { unit_price = 1.234 }, "items[1].unit_price" },
                { { unit_price = "-1.00" }, "items[1].unit_price" },
                { { unit_price = -1 }, "items[1].unit_price" },
                { { unit_price = "abc" }, "items[1].unit_price" },
                { { unit_price = true }, "items[1].unit_price" },
                { { unit_price = "100000000.00" }, "items[1].unit_price" },
            }
            for _, case in ipairs(cases) do
                assert.equal(case[2], refused_field({ customer_id = 1,
                                                      items = { item(), item(case[1]) } }))
            end
            local missing = item()
            missing.sku = nil
            assert.equal("items[0].sku", refused_field({ customer_id = 1, items = { missing } }))
        end)

        it("counts sku length in characters, not bytes", function()
            assert.truthy(create({ customer_id = 1, items = { item({ sku = ("é"):rep(100) }) } }))
            assert.equal("items[0].sku", refused_field({ customer_id = 1,
                                                         items = { item({ sku = ("é"):rep(101) }) } }))
        end)

        it("accepts a zero price and the largest quantity", function()
            assert.truthy(create({ customer_id = 1, items = { item({ unit_price = 0 }) } }))
            assert.truthy(create({ customer_id = 1, items = { item({ quantity = 1000000,
                                                                     unit_price = "1.00" }) } }))
        end)

        it("refuses an order whose total does not fit numeric(10,2)", function()
            assert.equal("items", refused_field({ customer_id = 1, items = {
                item({ quantity = 1000000, unit_price = "99999999.99" }) } }))
            -- 95238047.61 + 4761902.38 tax + 50.00 = 99,999,999.99: the largest total allowed
            assert.truthy(create({ customer_id = 1, items = { item({ quantity = 1,
                                                                     unit_price = "95238047.61" }) } }))
            assert.equal("items", refused_field({ customer_id = 1, items = {
                item({ quantity = 1, unit_price = "95238047.62" }) } }))
        end)
    end)

    describe("update()", function()
        it("takes any of the three statuses", function()
            assert.same({ order_status = "CONFIRMED" }, input.update({ order_status = "CONFIRMED" }))
            assert.same({ payment_status = "PAID", shipping_status = "Shipped" },
                        input.update({ payment_status = "PAID", shipping_status = "Shipped" }))
        end)

        it("refuses empty bodies, unknown keys and unknown values", function()
            assert.equal("body", select(2, input.update({})).field)
            assert.equal("customer_id", select(2, input.update({ customer_id = 2 })).field)
            assert.equal("order_status", select(2, input.update({ order_status = "shipped" })).field)
            assert.equal("shipping_status",
                         select(2, input.update({ shipping_status = "SHIPPED" })).field)
            assert.equal("payment_status", select(2, input.update({ payment_status = 1 })).field)
        end)
    end)

    describe("cancel()", function()
        it("takes no body, an empty object or a reason", function()
            assert.same({}, input.cancel("", nil, "request body is empty"))
            assert.same({}, input.cancel("{}", {}, nil))
            assert.same({ reason = "changed my mind" },
                        input.cancel("x", { reason = "changed my mind" }, nil))
        end)

        it("refuses bad JSON, unknown keys and bad reasons", function()
            assert.equal("body", select(2, input.cancel("{", nil, "not valid JSON")).field)
            assert.equal("why", select(2, input.cancel("x", { why = "x" }, nil)).field)
            assert.equal("reason", select(2, input.cancel("x", { reason = 5 }, nil)).field)
            assert.equal("reason", select(2, input.cancel("x", { reason = ("x"):rep(501) }, nil)).field)
        end)
    end)

    describe("idempotency_key()", function()
        it("takes 1 to 255 printable characters", function()
            assert.is_nil(input.idempotency_key(nil))
            assert.equal("abc-123 x", input.idempotency_key("abc-123 x"))
            assert.equal(("k"):rep(255), input.idempotency_key(("k"):rep(255)))
            for _, bad in ipairs({ "", ("k"):rep(256), "a\tb", "caf\195\169" }) do
                local key, err = input.idempotency_key(bad)
                assert.is_nil(key)
                assert.equal("Idempotency-Key", err.field)
            end
        end)
    end)

    describe("parse_datetime()", function()
        it("reads dates and timestamps into UTC-anchored literals", function()
            assert.is_true(input.parse_datetime("2024-02-29").date_only)
            assert.equal("2024-09-18T14:40:32+00:00", input.parse_datetime("2024-09-18T14:40:32").text)
            assert.equal("2024-09-18T14:40:00+00:00", input.parse_datetime("2024-09-18 14:40Z").text)
            assert.equal("2024-09-18T14:40:32.125+02:00",
                         input.parse_datetime("2024-09-18T14:40:32.125+0200").text)
            assert.equal("2024-09-18T14:40:32-05:00", input.parse_datetime("2024-09-18T14:40:32-05").text)
        end)

        it("refuses what is not a real date or time", function()
            for _, bad in ipairs({ "2023-02-29", "2024-13-01", "2024-00-10", "2024-04-31", "24-01-01",
                                   "2024-01-01T24:00", "2024-01-01T10:60", "2024-01-01T10:00:61",
                                   "2024-01-01T10:00+16:00", "2024-01-01x", "yesterday", "",
                                   "2024-01-01T10:00:00.1234567" }) do
                assert.is_nil(input.parse_datetime(bad), bad)
            end
        end)
    end)

    describe("list_args()", function()
        it("has defaults", function()
            assert.same({ sort = "created_at", dir = "desc", page = 1, page_size = 20 },
                        input.list_args(get("")))
        end)

        it("reads every filter", function()
            local args = assert(input.list_args(get("customer_id=4&product_id=9&sku=SKU1"
                .. "&order_status=PENDING&payment_status=PAID&shipping_status=Unknown"
                .. "&created_from=2024-01-01&created_to=2024-12-31&sort=order_total&dir=asc"
                .. "&page=3&page_size=100")))
            assert.same({ customer_id = 4, product_id = 9, sku = "SKU1", order_status = "PENDING",
                          payment_status = "PAID", shipping_status = "Unknown",
                          created_from = "2024-01-01T00:00:00+00:00",
                          created_before = "2025-01-01T00:00:00+00:00", sort = "order_total",
                          dir = "asc", page = 3, page_size = 100 }, args)
        end)

        it("treats empty arguments as absent", function()
            assert.same({ sort = "created_at", dir = "desc", page = 1, page_size = 20 },
                        input.list_args(get("customer_id=&order_status=&search=&page=")))
        end)

        it("splits the search into a number or a SKU pattern", function()
            assert.same({ number = 42 }, input.list_args(get("search=42")).search)
            assert.same({ pattern = "%sku%" }, input.list_args(get("search=+sku+")).search)
            assert.same({ pattern = "%50\\%\\_off\\\\%" },
                        input.list_args(get("search=50%25_off%5C")).search)
            assert.same({ pattern = "%0%" }, input.list_args(get("search=0")).search)
        end)

        it("refuses bad arguments, naming them", function()
            local cases = {
                { "customer_id=abc", "customer_id" }, { "customer_id=0", "customer_id" },
                { "customer_id=-1", "customer_id" }, { "product_id=1.5", "product_id" },
                { "customer_id=99999999999999999999", "customer_id" },
                { "order_status=pending", "order_status" }, { "payment_status=X", "payment_status" },
                { "shipping_status=SHIPPED", "shipping_status" }, { "sort=total", "sort" },
                { "dir=up", "dir" }, { "page=0", "page" }, { "page=x", "page" },
                { "page_size=0", "page_size" }, { "page_size=101", "page_size" },
                { "created_from=2024-02-30", "created_from" }, { "created_to=soon", "created_to" },
                { "search=" .. ("x"):rep(101), "search" }, { "sku=" .. ("x"):rep(101), "sku" },
            }
            for _, case in ipairs(cases) do
                local args, err = input.list_args(get(case[1]))
                assert.is_nil(args, case[1])
                assert.equal(case[2], err.field, case[1])
            end
        end)

        it("reads after (keyset pagination) instead of a page number, never both", function()
            assert.same({ sort = "created_at", dir = "desc", after = 77, page_size = 20 },
                        input.list_args(get("after=77")))
            for _, q in ipairs({ "after=0", "after=x", "after=-3", "after=1&page=2",
                                 "after=100000000000000" }) do
                local args, err = input.list_args(get(q))
                assert.is_nil(args, q)
                assert.equal("after", err.field, q)
            end
        end)

        it("keeps a timestamp upper bound inclusive", function()
            assert.equal("2024-01-01T10:00:00+00:00",
                         input.list_args(get("created_to=2024-01-01T10:00:00Z")).created_to)
        end)
    end)

    describe("history_args()", function()
        it("maps the history's names onto the list's", function()
            local args = assert(input.history_args(get("status_filter=SHIPPED&payment_filter=PAID"
                .. "&shipping_filter=Shipped&sort_by=Total&sort_dir=Ascending&page=2"), 44))
            assert.same({ customer_id = 44, order_status = "SHIPPED", payment_status = "PAID",
                          shipping_status = "Shipped", sort = "order_total", dir = "asc", page = 2,
                          page_size = 10 }, args)
        end)

        it("has defaults and treats All as no filter", function()
            assert.same({ customer_id = 1, sort = "created_at", dir = "desc", page = 1,
                          page_size = 10 }, input.history_args(get("status_filter=All"), 1))
        end)

        it("refuses bad arguments", function()
            for _, case in ipairs({ { "sort_by=date", "sort_by" }, { "sort_dir=asc", "sort_dir" },
                                    { "status_filter=LOST", "status_filter" },
                                    { "page=0", "page" } }) do
                local args, err = input.history_args(get(case[1]), 1)
                assert.is_nil(args)
                assert.equal(case[2], err.field)
            end
        end)
    end)
end)
