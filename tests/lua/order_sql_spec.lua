package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local order_sql = require("orders.sql")

local function base(extra)
    local args = { sort = "created_at", dir = "desc", page = 1, page_size = 20 }
    for k, v in pairs(extra or {}) do
        args[k] = v
    end
    return args
end

describe("orders.sql", function()
    it("builds the order's representation in one place, for details and lists, money as text", function()
        local list = order_sql.list(base())
        for _, sql in ipairs({ order_sql.DETAILS, list }) do
            assert.truthy(sql:find([[format('{"order_id":%s,"customer_id":%s,]], 1, true))
            assert.truthy(sql:find("to_json%([op]%.order_total::text%)"))
            for _, money in ipairs({ "subtotal", "tax", "shipping_fee" }) do -- nullable: null
                assert.truthy(sql:find("COALESCE%(to_json%([op]%." .. money .. "::text%)::text, 'null'%)"), money)
            end
            assert.truthy(sql:find("to_json(i.unit_price::text)", 1, true))
            assert.truthy(sql:find("'[]'))", 1, true)) -- items: [] when none
        end
    end)

    describe("list()", function()
        it("needs only limit, offset and the count's limit without filters", function()
            local sql, params = order_sql.list(base({ page = 3 }))
            -- one row past the page tells whether a next page exists
            assert.same({ 21, 40, order_sql.COUNT_LIMIT + 1, 20 }, params)
            assert.truthy(sql:find("WHERE true", 1, true))
            assert.truthy(sql:find("ORDER BY o.created_at DESC, o.order_id DESC", 1, true))
        end)

        it("numbers parameters in filter order and never inlines values", function()
            local sql, params = order_sql.list(base({ customer_id = 5, sku = "it's", order_status =
                "PAID", created_from = "2024-01-01T00:00:00+00:00", search = { pattern = "%x%" } }))
            assert.same({ 5, "it's", "PAID", "2024-01-01T00:00:00+00:00", "%x%", 21, 0, 101, 20 }, params)
            assert.falsy(sql:find("it's", 1, true))
            assert.truthy(sql:find("o.customer_id = $1", 1, true))
            assert.truthy(sql:find("i.sku ILIKE $5", 1, true))
        end)

        it("answers one row: the page's representations as one array, in the page's order", function()
            local sql, params = order_sql.list(base({ page_size = 5 }))
            assert.same({ 6, 0, 1001, 5 }, params)
            -- numbered after LIMIT/OFFSET; only the page's own rows, not the one fetched past it
            assert.truthy(sql:find("row_number() OVER (ORDER BY p.created_at DESC, p.order_id DESC)", 1, true))
            assert.truthy(sql:find("max(p.order_id) FILTER (WHERE p.n = $4) AS last_id", 1, true))
            assert.truthy(sql:find("'[]')), ',' ORDER BY p.n)", 1, true))
            assert.truthy(sql:find("FILTER (WHERE p.n <= $4), '') || ']' AS results", 1, true))
        end)

        it("searches text through the SKUs the lookup found, or the pattern", function()
            -- one SKU: the SKU filter's own statement
            local sql, params = order_sql.list(base({ search = { pattern = "%x%", sku = "X1" } }))
            assert.same({ "X1", 21, 0, 101, 20 }, params)
            assert.equal(order_sql.list(base({ sku = "X1" })), sql)
            assert.truthy(sql:find("WHERE i.sku = $1)", 1, true))
            -- a few SKUs: exactly those, through the SKU btree, the array as the lookup wrote it
            sql, params = order_sql.list(base({ search = { pattern = "%x%", skus = "{X1,\"a,b\"}" } }))
            assert.same({ "{X1,\"a,b\"}", 21, 0, 101, 20 }, params)
            assert.truthy(sql:find("WHERE i.sku = ANY($1::varchar[]))", 1, true))
            assert.falsy(sql:find("ILIKE", 1, true))
            -- many: the pattern, out of the planner's pattern estimate and the trigram index
            sql, params = order_sql.list(base({ search = { pattern = "%x%", broad = true } }))
            assert.same({ "%x%", 21, 0, 101, 20 }, params)
            assert.truthy(sql:find("WHERE (i.sku ILIKE $1) IS DISTINCT FROM false)", 1, true))
            -- in between: the plain pattern, estimated from the statistics
            sql = order_sql.list(base({ search = { pattern = "%x%" } }))
            assert.truthy(sql:find("WHERE i.sku ILIKE $1)", 1, true))
        end)

        it("takes the list's search form from the SKU lookup's answer", function()
            local search = { pattern = "%x%" }
            assert.is_false(order_sql.sku_search(search, { matched = 0, broad = false }))
            assert.same({ pattern = "%x%" }, search)
            -- the NULLs of a row are not strings: db.null
            local null = {}
            assert.is_true(order_sql.sku_search(search, { matched = 1, broad = false, skus = "{A}", sku = "A" }))
            assert.same({ pattern = "%x%", sku = "A" }, search)
            search = { pattern = "%x%" }
            assert.is_true(order_sql.sku_search(search, { matched = 2, broad = false, skus = "{A,B}", sku = null }))
            assert.same({ pattern = "%x%", skus = "{A,B}" }, search)
            search = { pattern = "%x%" }
            assert.is_true(order_sql.sku_search(search, { matched = 40, broad = false, skus = null }))
            assert.same({ pattern = "%x%" }, search)
            assert.is_true(order_sql.sku_search(search, { matched = 106, broad = true, skus = null }))
            assert.same({ pattern = "%x%", broad = true }, search)
        end)

        it("looks SKUs up with a constant limit: the list's SKUs, and 1 SKU in BROAD_SHARE", function()
            local sql = order_sql.SKU_LOOKUP
            assert.truthy(sql:find("WHEN count(*) <= " .. order_sql.SKU_LIST_MAX .. " THEN", 1, true))
            assert.truthy(sql:find("GREATEST(" .. (order_sql.SKU_LIST_MAX + 1) .. ", c.reltuples::bigint / "
                                   .. order_sql.BROAD_SHARE .. ")", 1, true))
            assert.truthy(sql:find("k.sku ILIKE $1 LIMIT " .. order_sql.LOOKUP_MAX .. ")", 1, true))
        end)

        it("searches numbers through three indexed lookups", function()
            local sql, params = order_sql.list(base({ search = { number = 7 } }))
            assert.same({ 7, 21, 0, 1001, 20 }, params)
            assert.truthy(sql:find("SELECT $1::bigint UNION ALL", 1, true))
        end)

        it("filters on open attention flags, both ways, without parameters", function()
            local sql, params = order_sql.list(base({ needs_attention = true }))
            assert.same({ 21, 0, 1001, 20 }, params)
            assert.truthy(sql:find(" EXISTS (SELECT 1 FROM order_attention a", 1, true))
            assert.falsy(sql:find("NOT EXISTS", 1, true))
            sql = order_sql.list(base({ needs_attention = false }))
            assert.truthy(sql:find("NOT EXISTS (SELECT 1 FROM order_attention a", 1, true))
        end)

        it("sorts by total or id, ties broken by order_id", function()
            local sql = order_sql.list(base({ sort = "order_total", dir = "asc" }))
            assert.truthy(sql:find("ORDER BY o.order_total ASC, o.order_id ASC", 1, true))
            sql = order_sql.list(base({ sort = "order_id", dir = "asc" }))
            assert.truthy(sql:find("ORDER BY o.order_id ASC", 1, true))
        end)

        it("stops counting at COUNT_LIMIT + 1, with the page's filters", function()
            local sql, params = order_sql.list(base({ customer_id = 5, page = 2 }))
            local count = sql:match("count%(%*%) AS total_count FROM (.-) m%) c")
            assert.truthy(count:find("o.customer_id = $1", 1, true))
            assert.truthy(count:find("LIMIT $4", 1, true))
            assert.equal(order_sql.COUNT_LIMIT + 1, params[4])
        end)

        it("counts a text search to SEARCH_COUNT_LIMIT, everything else to COUNT_LIMIT", function()
            local _, params = order_sql.list(base({ search = { pattern = "%x%", broad = true } }))
            assert.equal(order_sql.SEARCH_COUNT_LIMIT + 1, params[4])
            _, params = order_sql.list(base({ search = { number = 7 } }))
            assert.equal(order_sql.COUNT_LIMIT + 1, params[4])
            _, params = order_sql.list(base({ sku = "A" }))
            assert.equal(order_sql.COUNT_LIMIT + 1, params[4])
            assert.is_true(order_sql.SEARCH_COUNT_LIMIT < order_sql.COUNT_LIMIT)
        end)

        it("does not count a keyset page", function()
            local sql, params = order_sql.list(base({ customer_id = 5, after = 9 }))
            assert.falsy(sql:find("count(*) AS total_count", 1, true))
            assert.truthy(sql:find("(SELECT NULL::bigint AS total_count) c", 1, true))
            assert.same({ 5, 9, 21, 0, 20 }, params)
        end)

        it("continues after an order by its own sort key, with no OFFSET to step over", function()
            local sql, params = order_sql.list(base({ after = 9 }))
            assert.same({ 9, 21, 0, 20 }, params)
            assert.truthy(sql:find("(o.created_at, o.order_id) < (SELECT a.created_at, a.order_id"
                                   .. " FROM ordersapp_order a WHERE a.order_id = $1)", 1, true))
            sql = order_sql.list(base({ after = 9, sort = "order_total", dir = "asc" }))
            assert.truthy(sql:find("(o.order_total, o.order_id) > (SELECT a.order_total, a.order_id",
                                   1, true))
            sql = order_sql.list(base({ after = 9, sort = "order_id", dir = "asc" }))
            assert.truthy(sql:find("o.order_id > $1", 1, true))
        end)
    end)
end)
