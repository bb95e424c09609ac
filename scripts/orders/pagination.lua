-- pagination.lua - the list envelope (count, page, page_size, next, previous) from the row
-- of orders.sql.list. Pure: no request, no database; the handler passes a link builder and
-- splices in the results, which PostgreSQL wrote as one JSON array. The contract is
-- docs/orders-api.md, "Lists and pagination".
--
--  - count is exact up to order_sql.count_limit(args) (COUNT_LIMIT; a text search
--    SEARCH_COUNT_LIMIT); past it, count is that limit and the envelope carries
--    "count_capped": true (the query stopped counting there: an exact count of a broad search
--    cost a full scan of the matches).
--  - next exists exactly when the query found a row past the page (it fetches one extra).
--  - Page numbers are OFFSETs, whose cost grows with the depth: a `next` link never asks
--    for an OFFSET past MAX_LINKED_OFFSET; from there it is a keyset link, after=<the last
--    order_id of this page>, whose cost does not depend on the depth.
--  - With `after` (keyset mode) count, page and previous are null: a keyset page is not
--    counted (orders.sql.list), has no number, and the way back is the client's own history
--    of links.

local order_sql = require("orders.sql")

local format = string.format

local _M = {}

_M.MAX_LINKED_OFFSET = order_sql.COUNT_LIMIT

-- args: orders.input.list_args / history_args; page: the row of order_sql.list(args)
-- (total_count, fetched, last_id); link(link_arg, changes): a relative link to this list
-- with the query arguments in `changes` set (false removes one), link_arg being what the
-- caller passed (a function and its argument rather than a closure: a closure made per
-- request keeps LuaJIT from compiling the handler); null: the JSON null. Returns the
-- envelope without its results, which the query has already written as JSON text.
function _M.envelope(args, page, link, link_arg, null)
    local size = args.page_size
    -- the query fetched the page plus at most one more row
    local more = page.fetched > size
    local out = { count = null, page_size = size, next = null, previous = null, page = null }
    local last = more and format("%d", page.last_id)
    if args.after then
        if more then
            out.next = link(link_arg, { after = last })
        end
        return out
    end
    local found = page.total_count
    out.count = found
    local cap = order_sql.count_limit(args)
    if found > cap then
        out.count, out.count_capped = cap, true
    end
    local number = args.page
    out.page = number
    if more then
        if number * size < _M.MAX_LINKED_OFFSET then
            out.next = link(link_arg, { page = format("%d", number + 1) })
        else
            out.next = link(link_arg, { page = false, after = last })
        end
    end
    if number > 1 then
        out.previous = link(link_arg, { page = format("%d", number - 1) })
    end
    return out
end

return _M
