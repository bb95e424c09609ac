-- json_strict.lua - what lua-cjson lets through and a strict JSON reader must not:
-- duplicate object keys ("unit_price": "1.00", "unit_price": "0.00" -- whoever reads the
-- first one sees another order) and anything after the top-level value ({...}\0, {...}x).
--
--   local ok, err = json_strict.check(text)   -- after cjson accepted text
--
-- A scan over the bytes, no allocation but the key sets and escaped keys; keys are compared after their
-- escapes are decoded ("a" and "\u0061" are the same key). Text cjson refused is not
-- this module's business: a structure it cannot follow is passed (cjson reports it).

local cjson = require("cjson.safe").new()

local byte, sub = string.byte, string.sub

local QUOTE, BACKSLASH, COLON, COMMA = 34, 92, 58, 44
local LBRACE, RBRACE, LBRACKET, RBRACKET = 123, 125, 91, 93

local _M = {}

-- Byte loops only (string.byte compiles; pattern matching would abort LuaJIT's traces).
local function skip_ws(s, i)
    local c = byte(s, i)
    while c == 32 or c == 9 or c == 10 or c == 13 do
        i = i + 1
        c = byte(s, i)
    end
    return i
end

-- s[i] is '"'; returns the index after the closing quote and the string's raw text, and
-- whether it has escapes; nil when unterminated.
local function scan_string(s, i)
    local j, n, escaped = i + 1, #s, false
    while j <= n do
        local c = byte(s, j)
        if c == QUOTE then
            return j + 1, sub(s, i + 1, j - 1), escaped
        elseif c == BACKSLASH then
            escaped, j = true, j + 2
        else
            j = j + 1
        end
    end
    return nil
end

-- A number, true, false or null: letters, digits, '.', '+', '-'.
local function scan_literal(s, i)
    local j = i
    while true do
        local c = byte(s, j)
        if not c or not ((c >= 48 and c <= 57) or (c >= 97 and c <= 122) or (c >= 65 and c <= 90)
                         or c == 46 or c == 43 or c == 45) then
            break
        end
        j = j + 1
    end
    return j > i and j or nil
end

local scan_value

-- Returns the index after the value, or nil, message (duplicate key) / nil (not followed).
local function scan_object(s, i, depth)
    local keys = {}
    i = skip_ws(s, i + 1)
    if byte(s, i) == RBRACE then
        return i + 1
    end
    while true do
        if byte(s, i) ~= QUOTE then
            return nil
        end
        local e, raw, escaped = scan_string(s, i)
        if not e then
            return nil
        end
        local key = raw
        if escaped then
            key = cjson.decode('"' .. raw .. '"')
            if key == nil then
                return nil
            end
        end
        if keys[key] then
            return nil, "duplicate key \"" .. sub(key, 1, 100) .. "\""
        end
        keys[key] = true
        i = skip_ws(s, e)
        if byte(s, i) ~= COLON then
            return nil
        end
        local err
        i, err = scan_value(s, i + 1, depth + 1)
        if not i then
            return nil, err
        end
        i = skip_ws(s, i)
        local c = byte(s, i)
        if c == RBRACE then
            return i + 1
        elseif c ~= COMMA then
            return nil
        end
        i = skip_ws(s, i + 1)
    end
end

local function scan_array(s, i, depth)
    i = skip_ws(s, i + 1)
    if byte(s, i) == RBRACKET then
        return i + 1
    end
    while true do
        local err
        i, err = scan_value(s, i, depth + 1)
        if not i then
            return nil, err
        end
        i = skip_ws(s, i)
        local c = byte(s, i)
        if c == RBRACKET then
            return i + 1
        elseif c ~= COMMA then
            return nil
        end
        i = i + 1
    end
end

function scan_value(s, i, depth)
    if depth > 1000 then
        return nil -- cjson's own depth limit refused this already
    end
    i = skip_ws(s, i)
    local c = byte(s, i)
    if c == LBRACE then
        return scan_object(s, i, depth)
    elseif c == LBRACKET then
        return scan_array(s, i, depth)
    elseif c == QUOTE then
        return (scan_string(s, i))
    end
    return scan_literal(s, i)
end

-- true, or nil, message for the client.
function _M.check(text)
    local i, err = scan_value(text, 1, 0)
    if not i then
        if err then
            return nil, err
        end
        return true -- not followed here; cjson decides
    end
    if skip_ws(text, i) <= #text then
        return nil, "unexpected data after the JSON value"
    end
    return true
end

return _M
