-- pagination.lua - the list envelope (count, page, page_size, results, next, previous) from
-- the rows of orders.sql.list. Pure: no request, no database; the handler passes a view of
-- a row and a link builder. The contract is docs/orders-api.md, "Lists and pagination".
--
--  - count is exact up to order_sql.COUNT_LIMIT; past it, count is COUNT_LIMIT and the
--    envelope carries "count_capped": true (the query stopped counting there: an exact
--    count of a broad search cost a full scan of the matches).
--  - next exists exactly when the query found a row past the page (it fetches one extra).
--  - Page numbers are OFFSETs, whose cost grows with the depth: a `next` link never asks
--    for an OFFSET past MAX_LINKED_OFFSET; from there it is a keyset link, after=<the last
--    order_id of this page>, whose cost does not depend on the depth.
--  - With `after` (keyset mode) page and previous are null: a keyset page has no number,
--    and the way back is the client's own history of links.

local order_sql = require("orders.sql")

local format, ipairs = string.format, ipairs

local _M = {}

_M.MAX_LINKED_OFFSET = order_sql.COUNT_LIMIT

-- args: orders.input.list_args / history_args; rows: the rows of order_sql.list(args);
-- results: an empty table, which gets view(row) of each order of the page, in order (the
-- handler's are the representations' JSON texts); link(link_arg, changes): a relative link
-- to this list with the query arguments in `changes` set (false removes one), link_arg
-- being what the caller passed (a function and its argument rather than a closure: a
-- closure made per request keeps LuaJIT from compiling the handler); null: the JSON null.
function _M.envelope(args, rows, results, view, link, link_arg, null)
    local size = args.page_size
    local last
    for _, row in ipairs(rows) do
        if row.order_id ~= null and row.order_id ~= nil and #results < size then
            results[#results + 1] = view(row)
            last = row.order_id
        end
    end
    -- the rows are the page plus at most one more; an empty page is one row with the count
    local more = #rows > size
    local found = rows[1] and rows[1].total_count or 0
    local out = { count = found, page_size = size, results = results, next = null,
                  previous = null, page = null }
    if found > order_sql.COUNT_LIMIT then
        out.count, out.count_capped = order_sql.COUNT_LIMIT, true
    end
    if args.after then
        if more then
            out.next = link(link_arg, { after = format("%d", last) })
        end
        return out
    end
    local page = args.page
    out.page = page
    if more then
        if page * size < _M.MAX_LINKED_OFFSET then
            out.next = link(link_arg, { page = format("%d", page + 1) })
        else
            out.next = link(link_arg, { page = false, after = format("%d", last) })
        end
    end
    if page > 1 then
        out.previous = link(link_arg, { page = format("%d", page - 1) })
    end
    return out
end

return _M
