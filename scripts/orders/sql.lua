-- sql.lua - every SQL text of the orders API, in one place.
--
-- Pure text: nothing here runs a query, so tests/integration/test_orders_explain.py can load
-- this module under plain LuaJIT and EXPLAIN exactly what the handlers send.
--
-- An order travels with its items as one row, and as its representation: PostgreSQL builds
-- the order's whole JSON (the columns, and the items aggregated by a correlated subquery on
-- ordersapp_orderitem's order_id index), so a page of orders and all their items is ONE query,
-- there is no N+1, and Lua splices the text into the answer without decoding it (a list's
-- page comes back as one JSON array text). Money is
-- cast to text inside the JSON so it never becomes a JSON (double) number; timestamps are
-- PostgreSQL's JSON form of timestamptz, ISO 8601 with the offset (the session runs in UTC).
--
-- The list query is built from the filters present, so each shape is planned for what it
-- really asks (a catch-all "$1 IS NULL OR col = $1" query would defeat the indexes). Each
-- text is a statement of its own (db.statement "orders_list"), prepared per connection:
-- PostgreSQL plans it for its values, and after five executions keeps a generic plan where
-- that costs no more (a SKU, a product, a customer: half the statement's time was planning);
-- where the values matter (a rare status against a common one) it goes on planning per value
-- (docs/benchmarks.md, "Prepared lists"). Filters on items,
-- and the search, are written as `o.order_id IN (subquery)` so they become semi-joins that
-- use ordersapp_orderitem's indexes; the numeric search is a UNION of three indexed lookups
-- rather than an OR, which no single index could serve.

local concat = table.concat
local format = string.format

local _M = {}

local ORDER_COLUMNS = [[
o.order_id, o.customer_id, o.order_status, o.payment_status, o.shipping_status,
       o.order_total, o.subtotal, o.tax, o.shipping_fee, o.created_at, o.updated_at]]

-- The order's representation as compact JSON text, for the order row under `alias`; items
-- is [] when the order has none. Written field by field with format(): the same text
-- row_to_json writes (strings and timestamps through to_json, money as JSON strings, a NULL
-- money column as null), a fifth cheaper, since row_to_json builds and walks a record per
-- order and per item: 100 orders cost 1.06 ms against 1.34 ms (pgbench, one client). Ids,
-- counts and quantities are integers, written as they are. tests/integration/test_orders_api.py
-- compares it with row_to_json's text over every order.
local REPRESENTATION = [[
format('{"order_id":%s,"customer_id":%s,"order_status":%s,"payment_status":%s,'
       '"shipping_status":%s,"order_total":%s,"subtotal":%s,"tax":%s,"shipping_fee":%s,'
       '"created_at":%s,"updated_at":%s,"items":%s}',
       @.order_id, @.customer_id, to_json(@.order_status), to_json(@.payment_status),
       to_json(@.shipping_status), to_json(@.order_total::text),
       COALESCE(to_json(@.subtotal::text)::text, 'null'), COALESCE(to_json(@.tax::text)::text, 'null'),
       COALESCE(to_json(@.shipping_fee::text)::text, 'null'), to_json(@.created_at),
       to_json(@.updated_at),
       COALESCE((SELECT '[' || string_agg(format('{"order_item_id":%s,"product_id":%s,"sku":%s,'
                                                 '"quantity":%s,"unit_price":%s}',
                                                 i.order_item_id, i.product_id, to_json(i.sku),
                                                 i.quantity, to_json(i.unit_price::text)),
                                          ',' ORDER BY i.order_item_id) || ']'
                   FROM ordersapp_orderitem i WHERE i.order_id = @.order_id), '[]'))]]

local representations = {}

local function representation(alias)
    local text = representations[alias]
    if not text then
        text = REPRESENTATION:gsub("@", alias)
        representations[alias] = text
    end
    return text
end

-- One order: its customer (the scoping check) and its representation.
_M.DETAILS = "SELECT o.customer_id, " .. representation("o") .. [[ AS representation
  FROM ordersapp_order o
 WHERE o.order_id = $1]]

-- The row an update or a cancel starts from, locked until the transaction ends.
_M.LOCK = [[
SELECT order_id, order_status, payment_status, shipping_status
  FROM ordersapp_order WHERE order_id = $1 FOR UPDATE]]

-- Whose order it is: the scoping check of a customer's events and cancel (primary key).
_M.OWNER = "SELECT customer_id FROM ordersapp_order WHERE order_id = $1"

_M.INSERT_ORDER = [[
INSERT INTO ordersapp_order (customer_id, order_status, payment_status, shipping_status,
                             order_total, subtotal, tax, shipping_fee)
VALUES ($1, 'PENDING', 'PENDING', 'Pending', $2, $3, $4, $5)
RETURNING order_id]]

-- $2 is a JSON array of { product_id, sku, quantity, unit_price (a string) }; the items get
-- their ids in the order the client listed them.
_M.INSERT_ITEMS = [[
INSERT INTO ordersapp_orderitem (order_id, product_id, sku, quantity, unit_price)
SELECT $1, x.product_id, x.sku, x.quantity, x.unit_price
  FROM ROWS FROM (json_to_recordset($2::json)
                  AS (product_id bigint, sku text, quantity int, unit_price numeric))
       WITH ORDINALITY AS x (product_id, sku, quantity, unit_price, n)
 ORDER BY x.n]]

-- A new order's saga starts at its first step, in the transaction that inserts the order.
_M.INSERT_SAGA = [[INSERT INTO order_sagas (order_id, step) VALUES ($1, 'reserving')]]

_M.INSERT_EVENT = [[
INSERT INTO order_events (order_id, field, from_status, to_status, actor, reason)
VALUES ($1, $2, $3, $4, $5, $6)]]

-- Only the three status columns ever change through the API; a NULL keeps the value.
_M.UPDATE_STATUS = [[
UPDATE ordersapp_order
   SET order_status = COALESCE($2, order_status),
       payment_status = COALESCE($3, payment_status),
       shipping_status = COALESCE($4, shipping_status)
 WHERE order_id = $1]]

-- The order's timeline as one JSON document (NULL rows when the order is missing): status
-- changes and saga steps (order_events), then each outbox row's queueing and its final
-- delivery (delivered, refused, voided), in time order. Built by PostgreSQL so ids and
-- timestamps are written exactly.
_M.TIMELINE = [[
SELECT json_build_object('order_id', o.order_id, 'events', COALESCE((
         SELECT json_agg(json_build_object('at', t.at, 'type', t.type, 'field', t.field,
                                           'from', t.from_status, 'to', t.to_status,
                                           'actor', t.actor, 'reason', t.reason,
                                           'kind', t.kind, 'attempts', t.attempts)
                         ORDER BY t.at, t.src, t.seq)
           FROM (SELECT e.created_at AS at, 0 AS src, e.id AS seq,
                        CASE WHEN e.field = 'saga' THEN 'saga_step' ELSE 'status_change' END AS type,
                        CASE WHEN e.field = 'saga' THEN NULL ELSE e.field END AS field,
                        e.from_status, e.to_status, e.actor, e.reason,
                        NULL::text AS kind, NULL::int AS attempts
                   FROM order_events e WHERE e.order_id = o.order_id
                 UNION ALL
                 SELECT x.created_at, 1, x.id, 'delivery_queued', NULL, NULL, NULL, NULL,
                        x.payload->>'key', x.kind, NULL
                   FROM outbox x WHERE x.order_id = o.order_id
                 UNION ALL
                 SELECT x.delivered_at, 2, x.id,
                        CASE WHEN x.last_error LIKE 'voided%' THEN 'delivery_voided'
                             WHEN x.last_error IS NULL THEN 'delivered'
                             ELSE 'delivery_refused' END,
                        NULL, NULL, NULL, NULL, COALESCE(x.last_error, x.payload->>'key'), x.kind, x.attempts
                   FROM outbox x WHERE x.order_id = o.order_id AND x.delivered_at IS NOT NULL) t),
         '[]'::json))::text AS timeline
  FROM ordersapp_order o WHERE o.order_id = $1]]

-- ---- Idempotency-Key bookkeeping (table idempotency_keys, migration 0004) ----

-- Claims (scope, key) for this request, atomically: a new row, or one taken over because
-- it expired or because its request was abandoned (in progress for over 5 minutes: far
-- beyond every timeout, so its process died). Returns one row when claimed, none when a
-- live row exists.
_M.IDEM_CLAIM = [[
INSERT INTO idempotency_keys AS k (scope, key, request_hash, status)
VALUES ($1, $2, md5($3), 'in_progress')
ON CONFLICT (scope, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, status = 'in_progress',
       response_status = NULL, response_body = NULL, order_id = NULL,
       created_at = now(), expires_at = now() + interval '24 hours'
 WHERE k.expires_at < now()
    OR (k.status = 'in_progress' AND k.order_id IS NULL
        AND k.created_at < now() - interval '5 minutes')
RETURNING k.key]]

-- A key that made an order (order_id) is never taken over while it lives: its retries
-- answer with that order.
_M.IDEM_READ = [[
SELECT request_hash = md5($3) AS same_request, status, response_status, response_body, order_id
  FROM idempotency_keys
 WHERE scope = $1 AND key = $2 AND expires_at >= now()]]

-- Written in the transaction that inserts the order.
_M.IDEM_ATTACH = [[
UPDATE idempotency_keys SET order_id = $3 WHERE scope = $1 AND key = $2]]

_M.IDEM_FINISH = [[
UPDATE idempotency_keys SET status = 'done', response_status = $3, response_body = $4
 WHERE scope = $1 AND key = $2]]

_M.IDEM_RELEASE = [[
DELETE FROM idempotency_keys
 WHERE scope = $1 AND key = $2 AND status = 'in_progress' AND order_id IS NULL]]

-- ---- the list (GET /v1/orders/ and the history) ----
--
-- What a page costs (docs/orders-api.md, "Lists and pagination"; docs/benchmarks.md has the
-- EXPLAINs at 100,000 orders):
--  - the count stops at count_limit(args) + 1 matching orders (`LIMIT` inside the count): an
--    exact count of a broad search had to find every match, over a second at 100,000 orders.
--    Counting is cheap where an index hands over the matches (a customer, a status, a product,
--    a SKU: 0.1-0.2 ms to 1,001), so those count to COUNT_LIMIT. A text search tests each
--    order's items for its text, about 1 us an order: counting to 1,001 was 1.1 of its 1.3 ms
--    of execution, so it counts to SEARCH_COUNT_LIMIT;
--  - the page fetches page_size + 1 rows, so whether a next page exists is known without
--    the count;
--  - `after` (keyset pagination) continues after a given order in the sort order: a row
--    comparison against that order's own sort key, which walks the sort's index from there
--    (cost independent of how deep the client is), where OFFSET must step over every row
--    before the page;
--  - a keyset page is not counted: a client walking with `after` has the count from its first
--    page, and counting again on every page of a walk was half of a broad search's cost
--    (as DRF's CursorPagination, which has no count either).

_M.COUNT_LIMIT = 1000
_M.SEARCH_COUNT_LIMIT = 100

-- The count's cap for a list's args: exact up to it, "at least" beyond (orders.pagination).
function _M.count_limit(args)
    local search = args.search
    if search and search.pattern then
        return _M.SEARCH_COUNT_LIMIT
    end
    return _M.COUNT_LIMIT
end

-- ---- the text search ----
--
-- `?search=text` (a pattern, orders.input) matches orders with an item whose SKU contains the
-- text. The handler first runs SKU_LOOKUP against order_skus (the distinct SKUs ever ordered,
-- migration 0009), and the list's filter follows from what it found:
--  - no SKU: no order matches; the handler answers the empty page without the list query;
--  - exactly one (search.sku): the `?sku=` filter's own text, `i.sku = $n`. Its plan does
--    not hang on the value, so PostgreSQL keeps a generic one (lib/db.lua), where `ANY` of an
--    array it cannot see is costed as ten SKUs and planned afresh each time (0.9 ms);
--  - at most SKU_LIST_MAX SKUs (search.skus): `i.sku = ANY(those)`, a few probes of the SKU
--    btree. Matching the items themselves (the trigram index) cost ~2 ms per pass, and the
--    list makes two (page and count);
--  - more, but under the broad threshold: `i.sku ILIKE`, planned from the column's
--    statistics, which decide between the trigram index and walking the orders;
--  - the broad threshold reached (search.broad: at least 1 SKU in BROAD_SHARE of a catalog
--    of at most LOOKUP_MAX * BROAD_SHARE SKUs, or one too small to tell): many orders match,
--    so walking the orders in the page's order and testing each one's items is the plan, and
--    the filter is written so the planner takes it without costing the alternatives (see
--    list). A larger catalog's broad searches take the form in between: the lookup stops at
--    LOOKUP_MAX, too few there to call the search broad.
-- Each form gives the orders the plain ILIKE gives: every SKU in an item is in order_skus.

_M.SKU_LIST_MAX = 32
_M.BROAD_SHARE = 20
_M.LOOKUP_MAX = 200

-- $1 the pattern. matched: the SKUs found, at most LOOKUP_MAX; skus: their array's text (as
-- `$n::varchar[]` reads it back) when at most SKU_LIST_MAX, else NULL; sku: the SKU when it is
-- the only one, else NULL; broad: the threshold was
-- reached (reltuples is ANALYZE's estimate, -1 before the first). The LIMIT is a constant so
-- that the statement's generic plan (it is prepared) is the trigram index's: with a computed
-- one the planner expected to stop early and chose a scan, which reads every SKU when few
-- match. It also bounds the rows the lookup rechecks (~0.25 us each).
_M.SKU_LOOKUP = format([[
SELECT count(*) AS matched,
       count(*) >= (SELECT GREATEST(%d, c.reltuples::bigint / %d)
                      FROM pg_class c WHERE c.oid = 'order_skus'::regclass) AS broad,
       CASE WHEN count(*) <= %d THEN array_agg(s.sku)::text END AS skus,
       CASE WHEN count(*) = 1 THEN min(s.sku) END AS sku
  FROM (SELECT k.sku FROM order_skus k WHERE k.sku ILIKE $1 LIMIT %d) s]],
    _M.SKU_LIST_MAX + 1, _M.BROAD_SHARE, _M.SKU_LIST_MAX, _M.LOOKUP_MAX)

local ORDER_BY = {
    created_at = "created_at %s, %s.order_id %s",
    order_total = "order_total %s, %s.order_id %s",
    order_id = "order_id %s",
}

-- The sort key of each sort as a row, for the keyset condition.
local SORT_KEY = {
    created_at = "(%s.created_at, %s.order_id)",
    order_total = "(%s.order_total, %s.order_id)",
}

local function order_by(alias, sort, dir)
    local d = dir == "asc" and "ASC" or "DESC"
    return format(alias .. "." .. ORDER_BY[sort], d, alias, d)
end

-- "after order $n in this sort": the row comparison is an index condition on the sort's index
-- (created_idx, total_idx, the customer index), the subquery an InitPlan run once. An `after`
-- naming no order compares with NULL: an empty page.
local function keyset(sort, dir, n)
    local op = dir == "asc" and ">" or "<"
    if sort == "order_id" then
        return format("o.order_id %s %s", op, n)
    end
    return format("%s %s (SELECT %s FROM ordersapp_order a WHERE a.order_id = %s)",
                  format(SORT_KEY[sort], "o", "o"), op,
                  format(SORT_KEY[sort], "a", "a"):sub(2, -2), n)
end

-- Appends value to params; returns its placeholder.
local function param(params, value)
    local n = #params + 1
    params[n] = value
    return "$" .. n
end

-- One SKU's orders: the `?sku=` filter, and a search that found one SKU (the same text, so
-- the same prepared statement).
local function sku_filter(params, sku)
    return "o.order_id IN (SELECT i.order_id FROM ordersapp_orderitem i WHERE i.sku = " .. param(params, sku) .. ")"
end

local STATUS_COLUMNS = { "order_status", "payment_status", "shipping_status" }

-- Completes a pattern search (orders.input's { pattern = ... }) from SKU_LOOKUP's row:
-- search.sku, search.skus or search.broad, per the forms above. Returns false when no SKU
-- matches.
function _M.sku_search(search, row)
    if row.matched == 0 then
        return false
    end
    if row.matched == 1 then
        search.sku = row.sku
    elseif type(row.skus) == "string" then
        search.skus = row.skus
    elseif row.broad == true then
        search.broad = true
    end
    return true
end

-- args: as returned by orders.input.list_args / history_args (page, or after, and
-- page_size), a pattern search completed by sku_search. Returns sql, params: the query
-- answers exactly one row:
--   total_count  min(matching orders, count_limit(args) + 1); NULL on a keyset page (`after`),
--                which is not counted
--   fetched      the page's orders plus at most one more (page_size + 1: a next page exists)
--   last_id      the order_id of the page's last order when the page is full, else NULL
--   results      the page's representations as one JSON array text, in the page's order
-- One row rather than one per order: the handler splices `results` into its envelope as it
-- is, with no Lua string, table or concatenation per order.
function _M.list(args)
    local where, params = {}, {}

    if args.customer_id then
        where[#where + 1] = "o.customer_id = " .. param(params, args.customer_id)
    end
    if args.product_id then
        where[#where + 1] = "o.order_id IN (SELECT i.order_id FROM ordersapp_orderitem i"
            .. " WHERE i.product_id = " .. param(params, args.product_id) .. ")"
    end
    if args.sku then
        where[#where + 1] = sku_filter(params, args.sku)
    end
    if args.needs_attention ~= nil then
        where[#where + 1] = (args.needs_attention and "" or "NOT ")
            .. "EXISTS (SELECT 1 FROM order_attention a WHERE a.order_id = o.order_id"
            .. " AND a.resolved_at IS NULL)"
    end
    for _, col in ipairs(STATUS_COLUMNS) do
        if args[col] then
            where[#where + 1] = "o." .. col .. " = " .. param(params, args[col])
        end
    end
    if args.created_from then
        where[#where + 1] = "o.created_at >= " .. param(params, args.created_from) .. "::timestamptz"
    end
    if args.created_to then
        where[#where + 1] = "o.created_at <= " .. param(params, args.created_to) .. "::timestamptz"
    end
    if args.created_before then
        where[#where + 1] = "o.created_at < " .. param(params, args.created_before) .. "::timestamptz"
    end
    local search = args.search
    if search and search.number then
        local n = param(params, search.number)
        where[#where + 1] = format("o.order_id IN (SELECT %s::bigint"
            .. " UNION ALL SELECT c.order_id FROM ordersapp_order c WHERE c.customer_id = %s"
            .. " UNION ALL SELECT i.order_id FROM ordersapp_orderitem i WHERE i.product_id = %s)",
            n, n, n)
    elseif search and search.sku then
        where[#where + 1] = sku_filter(params, search.sku)
    elseif search and search.skus then
        where[#where + 1] = "o.order_id IN (SELECT i.order_id FROM ordersapp_orderitem i"
            .. " WHERE i.sku = ANY(" .. param(params, search.skus) .. "::varchar[]))"
    elseif search and search.broad then
        -- `(x) IS DISTINCT FROM false` is x here (sku and the pattern are never NULL), but
        -- the planner neither matches it to the trigram index nor estimates the pattern over
        -- the column's 1,000 most common values and histogram (migration 0008), which cost
        -- ~0.3 ms per occurrence: it takes half the items as matching, and walks the orders.
        where[#where + 1] = "o.order_id IN (SELECT i.order_id FROM ordersapp_orderitem i"
            .. " WHERE (i.sku ILIKE " .. param(params, search.pattern) .. ") IS DISTINCT FROM false)"
    elseif search and search.pattern then
        where[#where + 1] = "o.order_id IN (SELECT i.order_id FROM ordersapp_orderitem i"
            .. " WHERE i.sku ILIKE " .. param(params, search.pattern) .. ")"
    end

    local cond = #where > 0 and concat(where, "\n   AND ") or "true"
    local page_cond = cond
    if args.after then
        page_cond = cond .. "\n   AND " .. keyset(args.sort, args.dir, param(params, args.after))
    end
    local size = args.page_size
    local limit = param(params, size + 1)
    local offset = param(params, args.after and 0 or (args.page - 1) * size)
    local count = "(SELECT NULL::bigint AS total_count) c"
    if not args.after then
        count = "(SELECT count(*) AS total_count FROM (SELECT 1 FROM ordersapp_order o\n"
            .. "         WHERE " .. cond .. "\n         LIMIT " .. param(params, _M.count_limit(args) + 1) .. ") m) c"
    end
    local page_size = param(params, size)
    local sql = "WITH page AS (\n"
        .. "SELECT " .. ORDER_COLUMNS .. "\n"
        .. "  FROM ordersapp_order o\n"
        .. " WHERE " .. page_cond .. "\n"
        .. " ORDER BY " .. order_by("o", args.sort, args.dir) .. "\n"
        .. " LIMIT " .. limit .. " OFFSET " .. offset .. "\n),\n"
        .. "numbered AS (SELECT p.*, row_number() OVER (ORDER BY " .. order_by("p", args.sort, args.dir)
        .. ") AS n FROM page p)\n"
        .. "SELECT c.total_count, a.fetched, a.last_id, a.results\n"
        .. "  FROM " .. count .. ",\n"
        .. "       (SELECT count(*) AS fetched,\n"
        .. "               max(p.order_id) FILTER (WHERE p.n = " .. page_size .. ") AS last_id,\n"
        .. "               '[' || COALESCE(string_agg(" .. representation("p")
        .. ", ',' ORDER BY p.n)\n"
        .. "                                FILTER (WHERE p.n <= " .. page_size .. "), '') || ']' AS results\n"
        .. "          FROM numbered p) a"
    return sql, params
end

return _M
