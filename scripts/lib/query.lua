-- query.lua - percent-decoding, query-string parsing and encoding.
--
-- parse() returns every key as a LIST of values so repeated keys are never lost;
-- it stops after MAX_PAIRS pairs so a hostile query string costs bounded work.

local byte = string.byte
local char = string.char
local concat = table.concat
local find = string.find
local format = string.format
local gsub = string.gsub
local pairs = pairs
local sort = table.sort
local sub = string.sub
local tonumber = tonumber
local tostring = tostring
local type = type

local MAX_PAIRS = 1000

local _M = { MAX_PAIRS = MAX_PAIRS }

local function hex_to_char(hex)
    return char(tonumber(hex, 16))
end

local function char_to_hex(c)
    return format("%%%02X", byte(c))
end

-- Percent-decodes `s` without touching '+' (path semantics). Invalid escapes
-- such as "%zz" or a trailing "%" are left as they are.
function _M.unescape(s)
    if type(s) ~= "string" then
        error("bad 's' argument", 2)
    end
    if not find(s, "%", 1, true) then
        return s
    end
    return (gsub(s, "%%(%x%x)", hex_to_char))
end

-- Decodes one query-string component: '+' becomes a space, then %XX escapes.
function _M.decode(s)
    if type(s) ~= "string" then
        error("bad 's' argument", 2)
    end
    if not find(s, "[%%+]") then
        return s
    end
    s = gsub(s, "%+", " ")
    return (gsub(s, "%%(%x%x)", hex_to_char))
end

-- Percent-encodes everything outside the RFC 3986 unreserved set.
function _M.escape(s)
    if type(s) ~= "string" then
        error("bad 's' argument", 2)
    end
    return (gsub(s, "[^%w%-%._~]", char_to_hex))
end

local decode = _M.decode
local escape = _M.escape

-- "a=1&a=2&b" -> { a = { "1", "2" }, b = { "" } }. Empty pairs ("&&") and
-- pairs with an empty key ("=x") are skipped; at most MAX_PAIRS pairs are read.
function _M.parse(qs)
    local result = {}
    if qs == nil then
        return result
    end
    if type(qs) ~= "string" then
        error("bad 'qs' argument", 2)
    end

    local len = #qs
    local pos, pairs_read = 1, 0
    while pos <= len and pairs_read < MAX_PAIRS do
        local amp = find(qs, "&", pos, true)
        local stop = amp and amp - 1 or len
        if stop >= pos then
            pairs_read = pairs_read + 1
            local eq = find(qs, "=", pos, true)
            local key, value
            if eq and eq <= stop then
                key, value = sub(qs, pos, eq - 1), decode(sub(qs, eq + 1, stop))
            else
                key, value = sub(qs, pos, stop), ""
            end
            if key ~= "" then
                key = decode(key)
                local list = result[key]
                if list then
                    list[#list + 1] = value
                else
                    result[key] = { value }
                end
            end
        end
        if not amp then
            break
        end
        pos = amp + 1
    end
    return result
end

local function encode_value(key, value)
    local tv = type(value)
    if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
        error("bad value for key '" .. key .. "': expected string, number, boolean or list", 3)
    end
    return escape(key) .. "=" .. escape(tostring(value))
end

-- { b = "x y", a = { "1", "2" } } -> "a=1&a=2&b=x%20y". Keys are sorted so links
-- are stable; a list value repeats its key; an empty list emits nothing.
function _M.encode(tbl)
    if type(tbl) ~= "table" then
        error("bad 'tbl' argument", 2)
    end
    local keys = {}
    for key in pairs(tbl) do
        if type(key) ~= "string" then
            error("bad 'tbl' argument: keys must be strings", 2)
        end
        keys[#keys + 1] = key
    end
    sort(keys)

    local parts = {}
    for i = 1, #keys do
        local key = keys[i]
        local value = tbl[key]
        if type(value) == "table" then
            for j = 1, #value do
                parts[#parts + 1] = encode_value(key, value[j])
            end
        else
            parts[#parts + 1] = encode_value(key, value)
        end
    end
    return concat(parts, "&")
end

return _M
