-- input.lua - checks what clients send to the orders API and turns it into plain,
-- trusted values for the handlers.
--
-- Every function returns the normalized value, or nil, err where err is
-- { message = "...", field = "..." }; the handler turns err into a 400 (errors become a
-- response only at the edge). Nothing here touches the database. Field paths in errors
-- use 0-based item indexes, as JSON tooling does: "items[2].quantity" is the third item.
--
-- Lenient or strict? Strict: unknown JSON keys are refused, ids must be JSON integers,
-- money must have at most 2 decimals. Empty query arguments (?order_status=) count as
-- absent, as HTML forms send them.

local money = require("orders.money")
local rules = require("orders.rules")

local byte, find, format, match, sub = string.byte, string.find, string.format, string.match,
                                       string.sub
local concat = table.concat
local ipairs, next, pairs, tonumber, type = ipairs, next, pairs, tonumber, type

local _M = {}

_M.MAX_ITEMS = 100
_M.MAX_QUANTITY = 1000000
_M.MAX_SKU_CHARS = 100
_M.MAX_REASON_CHARS = 500
-- Ids stop below 10^14, the router's limit for {id} parameters (one limit everywhere):
-- lib.response's cjson writes larger numbers with 14 significant digits (1e+14).
_M.MAX_ID = require("lib.router").MAX_INT
_M.MAX_PAGE = 1000000000
_M.MAX_PAGE_SIZE = 100
_M.MAX_SEARCH_CHARS = 100
_M.MAX_KEY_BYTES = 255

local function fail(field, message)
    return nil, { field = field, message = field .. " " .. message }
end

-- ---- scalar checks ----

local function is_integer(v, min, max)
    return type(v) == "number" and v == v and v % 1 == 0 and v >= min and v <= max
end

-- Characters in a UTF-8 string, or nil when it is not valid UTF-8 (or has control chars).
local function utf8_chars(s)
    local i, n, len = 1, 0, #s
    while i <= len do
        local c = byte(s, i)
        local extra
        if c < 0x20 or c == 0x7f then
            return nil
        elseif c < 0x80 then
            extra = 0
        elseif c >= 0xc2 and c <= 0xdf then
            extra = 1
        elseif c >= 0xe0 and c <= 0xef then
            extra = 2
        elseif c >= 0xf0 and c <= 0xf4 then
            extra = 3
        else
            return nil
        end
        if i + extra > len then
            return nil
        end
        for j = i + 1, i + extra do
            local cc = byte(s, j)
            if cc < 0x80 or cc > 0xbf then
                return nil
            end
        end
        -- overlong 3/4-byte forms, surrogates and code points past U+10FFFF
        local c2 = byte(s, i + 1)
        if (c == 0xe0 and c2 < 0xa0) or (c == 0xed and c2 > 0x9f) or (c == 0xf0 and c2 < 0x90)
            or (c == 0xf4 and c2 > 0x8f) then
            return nil
        end
        i = i + extra + 1
        n = n + 1
    end
    return n
end
_M.utf8_chars = utf8_chars

local function check_text(value, field, max_chars)
    if type(value) ~= "string" then
        return fail(field, "must be a string")
    end
    local n = utf8_chars(value)
    if not n then
        return fail(field, "must be valid UTF-8 text without control characters")
    elseif n < 1 or n > max_chars then
        return fail(field, format("must be 1 to %d characters long", max_chars))
    end
    return value
end

-- Lists are Lua sequences; cjson decodes both [] and {} to an empty table.
local function is_sequence(t)
    if type(t) ~= "table" then
        return false
    end
    local n = 0
    for _ in pairs(t) do
        n = n + 1
    end
    return n == #t
end

local function check_keys(t, allowed, prefix)
    for key in pairs(t) do
        if type(key) ~= "string" or not allowed[key] then
            local name = type(key) == "string" and key or "?"
            return fail(prefix .. name, "is not a known field")
        end
    end
    return true
end

local function check_object(body, field)
    if type(body) ~= "table" or (next(body) ~= nil and is_sequence(body)) then
        return fail(field, "must be a JSON object")
    end
    return true
end

-- ---- create ----

local CREATE_KEYS = { customer_id = true, items = true }
local ITEM_KEYS = { product_id = true, sku = true, quantity = true, unit_price = true }

-- body: the decoded JSON. Returns { customer_id, items = { { product_id, sku, quantity,
-- unit_price (int64 cents) }, ... }, totals = { subtotal, tax, shipping, total } }.
function _M.create(body, tax_ppm, shipping_cents)
    local ok, err = check_object(body, "body")
    if not ok then
        return nil, err
    end
    ok, err = check_keys(body, CREATE_KEYS, "")
    if not ok then
        return nil, err
    end
    if body.customer_id == nil then
        return fail("customer_id", "is required")
    elseif not is_integer(body.customer_id, 1, _M.MAX_ID) then
        return fail("customer_id", "must be a positive integer")
    end
    local items = body.items
    if items == nil then
        return fail("items", "is required")
    elseif not is_sequence(items) then
        return fail("items", "must be a list")
    elseif #items < 1 or #items > _M.MAX_ITEMS then
        return fail("items", format("must hold 1 to %d items", _M.MAX_ITEMS))
    end

    local out, units, qtys = {}, {}, {}
    for i = 1, #items do
        local item, prefix = items[i], format("items[%d]", i - 1)
        ok, err = check_object(item, prefix)
        if not ok then
            return nil, err
        end
        ok, err = check_keys(item, ITEM_KEYS, prefix .. ".")
        if not ok then
            return nil, err
        end
        if not is_integer(item.product_id, 1, _M.MAX_ID) then
            return fail(prefix .. ".product_id",
                        item.product_id == nil and "is required" or "must be a positive integer")
        end
        if item.sku == nil then
            return fail(prefix .. ".sku", "is required")
        end
        local sku
        sku, err = check_text(item.sku, prefix .. ".sku", _M.MAX_SKU_CHARS)
        if not sku then
            return nil, err
        end
        if not is_integer(item.quantity, 1, _M.MAX_QUANTITY) then
            return fail(prefix .. ".quantity", item.quantity == nil and "is required"
                        or format("must be an integer from 1 to %d", _M.MAX_QUANTITY))
        end
        if item.unit_price == nil then
            return fail(prefix .. ".unit_price", "is required")
        end
        local cents, reason = money.parse(item.unit_price)
        if not cents then
            return fail(prefix .. ".unit_price", reason)
        elseif cents < 0 then
            return fail(prefix .. ".unit_price", "must not be negative")
        elseif not money.fits_numeric_10_2(cents) then
            return fail(prefix .. ".unit_price", "is too large")
        end
        units[i], qtys[i] = cents, item.quantity
        out[i] = { product_id = item.product_id, sku = sku, quantity = item.quantity,
                   unit_price = cents }
    end

    local totals = money.totals(units, qtys, tax_ppm, shipping_cents)
    if not totals or not money.fits_numeric_10_2(totals.total) then
        return fail("items", "add up to an order total above 99999999.99")
    end
    return { customer_id = body.customer_id, items = out, totals = totals }
end

-- ---- update (PATCH) ----

local UPDATE_FIELDS = { "order_status", "payment_status", "shipping_status" }
local UPDATE_KIND = { order_status = "order", payment_status = "payment",
                      shipping_status = "shipping" }
_M.UPDATE_FIELDS = UPDATE_FIELDS
_M.UPDATE_KIND = UPDATE_KIND

local function check_status(kind, value, field)
    if type(value) ~= "string" or not rules.valid(kind, value) then
        return fail(field, "must be one of " .. concat(rules.VALUES[kind], ", "))
    end
    return value
end

-- Returns { order_status = ..., payment_status = ..., shipping_status = ... } (some nil).
function _M.update(body)
    local ok, err = check_object(body, "body")
    if not ok then
        return nil, err
    end
    ok, err = check_keys(body, UPDATE_KIND, "")
    if not ok then
        return nil, err
    end
    local out, any = {}, false
    for _, field in ipairs(UPDATE_FIELDS) do
        if body[field] ~= nil then
            local value
            value, err = check_status(UPDATE_KIND[field], body[field], field)
            if not value then
                return nil, err
            end
            out[field], any = value, true
        end
    end
    if not any then
        return fail("body", "must change at least one of " .. concat(UPDATE_FIELDS, ", "))
    end
    return out
end

-- ---- cancel ----

-- body: the raw request body text and its decoded value (nil for an empty body).
-- Returns { reason = string | nil }.
function _M.cancel(raw, body, json_err)
    if not find(raw or "", "%S") then
        return {}
    end
    if json_err then
        return fail("body", "must be a JSON object (" .. json_err .. ")")
    end
    local ok, err = check_object(body, "body")
    if not ok then
        return nil, err
    end
    ok, err = check_keys(body, { reason = true }, "")
    if not ok then
        return nil, err
    end
    if body.reason == nil then
        return {}
    end
    local reason
    reason, err = check_text(body.reason, "reason", _M.MAX_REASON_CHARS)
    if not reason then
        return nil, err
    end
    return { reason = reason }
end

-- ---- Idempotency-Key ----

-- nil when absent; the key, or nil, err.
function _M.idempotency_key(value)
    if value == nil then
        return nil
    end
    if #value < 1 or #value > _M.MAX_KEY_BYTES or not find(value, "^[ -~]+$") then
        return fail("Idempotency-Key", format("must be 1 to %d printable ASCII characters",
                                              _M.MAX_KEY_BYTES))
    end
    return value
end

-- ---- query arguments ----

local function arg_int(value, field, min, max)
    if not find(value, "^%d+$") or #value > 16 then
        return fail(field, format("must be an integer from %d to %d", min, max))
    end
    local n = tonumber(value)
    if n < min or n > max then
        return fail(field, format("must be an integer from %d to %d", min, max))
    end
    return n
end

local DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function is_leap(y)
    return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
end

local function days_in(y, m)
    if m == 2 and is_leap(y) then
        return 29
    end
    return DAYS[m]
end

-- "2024-09-18" or "2024-09-18T14:40:32[.123456][Z|+02:00|+0200|+02]" (a space may replace the
-- T). Returns a timestamptz literal PostgreSQL reads the same in any session time zone (no
-- offset means UTC) and whether only a date was given; or nil when the text is not a real
-- date or time.
local function parse_datetime(s)
    local y, mo, d, rest = match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
    if not y then
        return nil
    end
    y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
    if y < 1 or mo < 1 or mo > 12 or d < 1 or d > days_in(y, mo) then
        return nil
    end
    if rest == "" then
        return { y = y, mo = mo, d = d, date_only = true }
    end
    local h, mi, tail = match(rest, "^[T ](%d%d):(%d%d)(.*)$")
    if not h then
        return nil
    end
    local sec, frac = "00", ""
    local s2, f2, tail2 = match(tail, "^:(%d%d)(%.?%d*)(.*)$")
    if s2 then
        if f2 ~= "" and (not find(f2, "^%.%d+$") or #f2 > 7) then
            return nil
        end
        sec, frac, tail = s2, f2, tail2
    end
    local offset
    if tail == "" or tail == "Z" or tail == "z" then
        offset = "+00:00"
    else
        local sign, oh, om = match(tail, "^([+-])(%d%d):?(%d?%d?)$")
        if not sign or (om ~= "" and #om ~= 2) or tonumber(oh) > 15
            or (om ~= "" and tonumber(om) > 59) then
            return nil
        end
        offset = sign .. oh .. ":" .. (om ~= "" and om or "00")
    end
    h, mi = tonumber(h), tonumber(mi)
    if h > 23 or mi > 59 or tonumber(sec) > 59 then
        return nil
    end
    return { y = y, mo = mo, d = d, text = format("%04d-%02d-%02dT%02d:%02d:%s%s%s", y, mo, d, h,
                                                    mi, sec, frac, offset) }
end
_M.parse_datetime = parse_datetime

local function day_start(y, mo, d)
    return format("%04d-%02d-%02dT00:00:00+00:00", y, mo, d)
end

local function next_day(y, mo, d)
    d = d + 1
    if d > days_in(y, mo) then
        d, mo = 1, mo + 1
        if mo > 12 then
            mo, y = 1, y + 1
        end
    end
    return y, mo, d
end

local SORTS = { created_at = true, order_total = true, order_id = true }
local DIRS = { asc = true, desc = true }

local function search_term(value)
    if #value > _M.MAX_SEARCH_CHARS or not utf8_chars(value) then
        return fail("search", format("must be at most %d characters of text",
                                     _M.MAX_SEARCH_CHARS))
    end
    -- Surrounding spaces are noise from a search box.
    value = match(value, "^%s*(.-)%s*$")
    if value == "" then
        return nil
    end
    if find(value, "^%d+$") and #value <= 16 and tonumber(value) <= _M.MAX_ID then
        local n = tonumber(value)
        if n >= 1 then
            return { number = n }
        end
    end
    -- ILIKE pattern for "contains": escape the pattern characters of the user's text.
    local escaped = value:gsub("[\\%%_]", "\\%0")
    return { pattern = "%" .. escaped .. "%" }
end

-- A query argument of the request; an empty one counts as absent.
local function get(req, name)
    local value = req:arg(name)
    if value == "" then
        return nil
    end
    return value
end

local STATUS_FILTERS = { order_status = "order", payment_status = "payment", shipping_status = "shipping" }
local LIST_FILTER_NAMES = { order_status = "order_status", payment_status = "payment_status",
                            shipping_status = "shipping_status" }
local HISTORY_FILTER_NAMES = { order_status = "status_filter", payment_status = "payment_filter",
                               shipping_status = "shipping_filter", all_means_none = true }

-- The shared filter set of the list and the history: reads `names` (the query argument
-- for each filter) from the request and fills `out`.
local function read_filters(req, names, out)
    local err
    for filter, kind in pairs(STATUS_FILTERS) do
        local name = names[filter]
        local value = name and get(req, name)
        if value and not (names.all_means_none and value == "All") then
            out[filter], err = check_status(kind, value, name)
            if not out[filter] then
                return nil, err
            end
        end
    end
    local search = get(req, "search")
    if search then
        local term
        term, err = search_term(search)
        if err then
            return nil, err
        end
        out.search = term
    end
    return out
end

-- Page numbers (page, OFFSET) or keyset pagination (after = the last order_id the client
-- has): one or the other, never both, so a link means one thing.
local function read_page(req, out, default_size)
    local err
    local page, after = get(req, "page"), get(req, "after")
    if page and after then
        return fail("after", "cannot be combined with page")
    elseif after then
        out.after, err = arg_int(after, "after", 1, _M.MAX_ID)
        if not out.after then
            return nil, err
        end
    elseif page then
        out.page, err = arg_int(page, "page", 1, _M.MAX_PAGE)
        if not out.page then
            return nil, err
        end
    else
        out.page = 1
    end
    local size = get(req, "page_size")
    if size then
        out.page_size, err = arg_int(size, "page_size", 1, _M.MAX_PAGE_SIZE)
        if not out.page_size then
            return nil, err
        end
    else
        out.page_size = default_size
    end
    return out
end

local ID_FILTERS = { "customer_id", "product_id" }

-- GET /v1/orders/: returns the filters, sort and page as plain values (see order_sql.list).
function _M.list_args(req)
    local out, err = {}, nil
    for _, name in ipairs(ID_FILTERS) do
        local value = get(req, name)
        if value then
            out[name], err = arg_int(value, name, 1, _M.MAX_ID)
            if not out[name] then
                return nil, err
            end
        end
    end
    local attention = get(req, "needs_attention")
    if attention then
        if attention ~= "true" and attention ~= "false" then
            return fail("needs_attention", "must be true or false")
        end
        out.needs_attention = attention == "true"
    end
    local sku = get(req, "sku")
    if sku then
        out.sku, err = check_text(sku, "sku", _M.MAX_SKU_CHARS)
        if not out.sku then
            return nil, err
        end
    end
    local ok
    ok, err = read_filters(req, LIST_FILTER_NAMES, out)
    if not ok then
        return nil, err
    end
    local from = get(req, "created_from")
    if from then
        local t = parse_datetime(from)
        if not t then
            return fail("created_from", "must be a date (2024-09-18) or a timestamp "
                        .. "(2024-09-18T14:40:32Z)")
        end
        out.created_from = t.text or day_start(t.y, t.mo, t.d)
    end
    local to = get(req, "created_to")
    if to then
        local t = parse_datetime(to)
        if not t then
            return fail("created_to", "must be a date (2024-09-18) or a timestamp "
                        .. "(2024-09-18T14:40:32Z)")
        end
        if t.date_only then
            -- a date includes its whole day: created_at < the next day's start
            out.created_before = day_start(next_day(t.y, t.mo, t.d))
        else
            out.created_to = t.text
        end
    end
    local sort, dir = get(req, "sort") or "created_at", get(req, "dir") or "desc"
    if not SORTS[sort] then
        return fail("sort", "must be one of created_at, order_total, order_id")
    elseif not DIRS[dir] then
        return fail("dir", "must be asc or desc")
    end
    out.sort, out.dir = sort, dir
    return read_page(req, out, 20)
end

local HISTORY_SORTS = { Date = "created_at", Total = "order_total" }
local HISTORY_DIRS = { Ascending = "asc", Descending = "desc" }

-- GET /v1/orders/my-orders/{customer_id}/
function _M.history_args(req, customer_id)
    local out, err = { customer_id = customer_id }, nil
    local ok
    ok, err = read_filters(req, HISTORY_FILTER_NAMES, out)
    if not ok then
        return nil, err
    end
    local sort_by, sort_dir = get(req, "sort_by") or "Date", get(req, "sort_dir") or "Descending"
    if not HISTORY_SORTS[sort_by] then
        return fail("sort_by", "must be Date or Total")
    elseif not HISTORY_DIRS[sort_dir] then
        return fail("sort_dir", "must be Ascending or Descending")
    end
    out.sort, out.dir = HISTORY_SORTS[sort_by], HISTORY_DIRS[sort_dir]
    return read_page(req, out, 10)
end

return _M
