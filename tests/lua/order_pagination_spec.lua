package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local order_sql = require("orders.sql")
local pagination = require("orders.pagination")

local NULL = setmetatable({}, { __tostring = function() return "null" end })

-- the row orders.sql.list answers: n orders fetched (ids from 100 down), `total` counted
local function page(n, total, size)
    return { total_count = total, fetched = n, last_id = n >= size and 100 - size or NULL }
end

local function link(arg, changes)
    assert.equal("the link argument", arg)
    local parts = {}
    for _, k in ipairs({ "page", "after" }) do
        if changes[k] ~= nil then
            parts[#parts + 1] = k .. "=" .. tostring(changes[k])
        end
    end
    return table.concat(parts, "&")
end

local function envelope(args, n, total)
    args.page_size = args.page_size or 2
    return pagination.envelope(args, page(n, total, args.page_size), link, "the link argument", NULL)
end

describe("orders.pagination", function()
    it("pages by number while the next page is within the counted orders", function()
        local out = envelope({ page = 1 }, 3, 7)
        assert.same({ 7, 1, "page=2", NULL }, { out.count, out.page, out.next, out.previous })
        assert.is_nil(out.count_capped)
        out = envelope({ page = 4 }, 1, 7)
        assert.same({ NULL, "page=3" }, { out.next, out.previous })
    end)

    it("answers an empty page beyond the end with the count", function()
        local out = envelope({ page = 50 }, 0, 7)
        assert.same({ 7, NULL }, { out.count, out.next })
    end)

    it("caps the count and says so", function()
        local out = envelope({ page = 1 }, 3, order_sql.COUNT_LIMIT + 1)
        assert.same({ order_sql.COUNT_LIMIT, true }, { out.count, out.count_capped })
        assert.equal("page=2", out.next)
    end)

    it("caps a text search's count at SEARCH_COUNT_LIMIT, and links on by page number", function()
        local search = { pattern = "%x%" }
        local out = envelope({ page = 1, search = search }, 3, order_sql.SEARCH_COUNT_LIMIT + 1)
        assert.same({ order_sql.SEARCH_COUNT_LIMIT, true }, { out.count, out.count_capped })
        out = envelope({ page = 1, search = search }, 3, order_sql.SEARCH_COUNT_LIMIT)
        assert.same({ order_sql.SEARCH_COUNT_LIMIT }, { out.count, out.count_capped })
        -- page numbers go on past the search's count, up to MAX_LINKED_OFFSET as for any list
        out = envelope({ page = order_sql.SEARCH_COUNT_LIMIT, search = search }, 3, order_sql.SEARCH_COUNT_LIMIT + 1)
        assert.equal("page=" .. (order_sql.SEARCH_COUNT_LIMIT + 1), out.next)
    end)

    it("links past the counted orders by keyset, not by an ever larger OFFSET", function()
        local last_page = pagination.MAX_LINKED_OFFSET / 2
        local out = envelope({ page = last_page }, 3, order_sql.COUNT_LIMIT + 1)
        assert.equal("page=false&after=98", out.next)
        assert.equal("page=" .. (last_page - 1), out.previous)
        out = envelope({ page = last_page - 1 }, 3, order_sql.COUNT_LIMIT + 1)
        assert.equal("page=" .. last_page, out.next)
    end)

    it("keyset pages have no count, no number and no previous link", function()
        -- the query answers a NULL count for a keyset page (orders.sql.list)
        local out = envelope({ after = 500 }, 3, NULL)
        assert.same({ NULL, NULL, NULL, "after=98" }, { out.count, out.page, out.previous, out.next })
        assert.is_nil(out.count_capped)
        out = envelope({ after = 500 }, 2, NULL)
        assert.equal(NULL, out.next)
    end)
end)
