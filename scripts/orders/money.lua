-- money.lua - the only Lua that touches the C core's money functions.
--
-- Amounts are int64 cents (LuaJIT int64_t cdata) from parse() to format(); no money ever
-- passes through Lua floating point arithmetic. A JSON number (already a double once cjson
-- decoded it) is accepted only when its two-decimal rendering reads back as the very same
-- double, i.e. when the client's number had at most two decimals; it then goes through the
-- same exact parser as a string.

local ffi = require("ffi")
local C = require("lib.core")

local format, type, tonumber = string.format, type, tonumber
local ffi_string, ffi_new = ffi.string, ffi.new

local _M = {}

local MAX_NUMBER = 1e13 -- beyond this a double cannot hold cents exactly; far past numeric(10,2)

local cents_out = ffi_new("int64_t[1]")
local format_buf = ffi_new("char[32]")
local totals_out = ffi_new("os_order_totals_t")

local PARSE_ERRORS = {
    [-1] = "must be a decimal number such as 12.50",
    [-2] = "must have at most 2 decimals",
    [-4] = "is too large",
}

-- Turns a JSON number into the text os_money_parse reads, or nil, reason.
local function number_text(x)
    if x ~= x or x == math.huge or x == -math.huge then
        return nil, "must be a finite number"
    elseif x >= MAX_NUMBER or x <= -MAX_NUMBER then
        return nil, "is too large"
    end
    local text = format("%.2f", x)
    if tonumber(text) ~= x then
        return nil, "must have at most 2 decimals"
    end
    if text == "-0.00" then
        text = "0.00"
    end
    return text
end

-- Parses an amount given as a JSON number or a decimal string ("12.5", "12.50", "3") into
-- int64 cents. Returns cents, or nil, reason (a phrase completing "unit_price ...").
-- Negative amounts parse; callers that forbid them check `cents < 0`.
function _M.parse(value)
    local text, reason
    if type(value) == "number" then
        text, reason = number_text(value)
        if not text then
            return nil, reason
        end
    elseif type(value) == "string" then
        text = value
    else
        return nil, "must be a number or a decimal string"
    end
    local rc = C.os_money_parse(text, #text, cents_out)
    if rc ~= 0 then
        return nil, PARSE_ERRORS[rc] or "is not a valid amount"
    end
    return cents_out[0] -- a fresh int64 cdata (indexing copies the value)
end

-- Formats cents (an int64 cdata or an exact integer) as "-12.50" (always 2 decimals).
function _M.format(cents)
    local n = C.os_money_format(cents, format_buf, 32)
    if n == 0 then
        error("bad 'cents' argument", 2)
    end
    return ffi_string(format_buf, n)
end

-- True when cents fits a numeric(10,2) column.
function _M.fits_numeric_10_2(cents)
    return C.os_money_fits_numeric_10_2(cents) == 1
end

-- Order totals from parallel lists of unit prices (cents) and quantities (integers), a tax
-- rate in parts per million and a shipping fee in cents. Returns { subtotal, tax,
-- shipping, total } as int64 cdata, or nil, err ("negative" | "overflow").
function _M.totals(unit_cents, quantities, tax_ppm, shipping_cents)
    local n = #unit_cents
    if #quantities ~= n then
        error("bad 'quantities' argument: not as long as 'unit_cents'", 2)
    end
    local units = ffi_new("int64_t[?]", n > 0 and n or 1)
    local qtys = ffi_new("int64_t[?]", n > 0 and n or 1)
    for i = 1, n do
        units[i - 1] = unit_cents[i]
        qtys[i - 1] = quantities[i]
    end
    local rc = C.os_money_totals(units, qtys, n, tax_ppm, shipping_cents, totals_out)
    if rc == -3 then
        return nil, "negative"
    elseif rc ~= 0 then
        return nil, "overflow"
    end
    return {
        subtotal = totals_out.subtotal,
        tax = totals_out.tax,
        shipping = totals_out.shipping,
        total = totals_out.total,
    }
end

return _M
