-- response.lua - builds responses: { status = 200, headers = { { name, value }, ... }, body = "" }.
-- A pair may be shared by many responses (filters/headers.lua adds its own): replace a pair,
-- never change one in place.
--
-- JSON: an empty Lua table encodes as {}; mark a table with response.array(t) (or use
-- response.empty_array) to get [] instead. With OpenResty's lua-cjson that is cjson's
-- own array_mt; plain lua-cjson 2.1.0 lacks it, so marked tables are then encoded here
-- and everything else is still left to cjson. Money is never a JSON number here: it
-- travels as a string.

local cjson = require("cjson")
local new_table = require("table.new")

local concat = table.concat
local find = string.find
local getmetatable = getmetatable
local lower = string.lower
local pairs = pairs
local pcall = pcall
local sort = table.sort
local sub = string.sub
local tostring = tostring
local type = type

local json = cjson.new() -- private settings
-- 14 significant digits, the most lua-cjson 2.1.0 allows, set here rather than trusting a
-- distribution's default: every id (< 10^14, see lib.router) and count is written exactly.
json.encode_number_precision(14)
local NATIVE = json.array_mt ~= nil and json.empty_array ~= nil
local ARRAY_MT = json.array_mt or {}
local EMPTY_ARRAY = json.empty_array or setmetatable({}, {
    __newindex = function() error("response.empty_array is read-only", 2) end,
})
local MAX_DEPTH = 1000
-- A 503's Retry-After (RFC 9110 10.2.3) when the caller gives none: the usual causes (a
-- database restart, a pool briefly exhausted, a downstream circuit open) pass within seconds.
local RETRY_AFTER_SECONDS = "1"

local _M = { null = cjson.null, empty_array = EMPTY_ARRAY }
local methods = {}
local mt = { __index = methods }

-- Marks `t` (or a new table) so it encodes as a JSON array even when empty.
function _M.array(t)
    if t == nil then
        t = {}
    elseif type(t) ~= "table" then
        error("bad 't' argument", 2)
    end
    return setmetatable(t, ARRAY_MT)
end

local function is_marked(v)
    return v == EMPTY_ARRAY or getmetatable(v) == ARRAY_MT
end

-- True when a marked table occurs anywhere inside `v` (only needed without NATIVE).
local function has_marked(v, depth)
    if depth > MAX_DEPTH then
        return false -- let cjson report the cycle or the depth
    end
    for _, x in pairs(v) do
        if type(x) == "table" and (is_marked(x) or has_marked(x, depth + 1)) then
            return true
        end
    end
    return false
end

local function encode_fallback(v, depth)
    if type(v) ~= "table" or not (is_marked(v) or has_marked(v, depth)) then
        return json.encode(v)
    elseif depth > MAX_DEPTH then
        error("value is nested too deeply (or has a cycle)")
    end
    local buf, n = {}, 0
    for _ in pairs(v) do
        n = n + 1
    end
    if is_marked(v) or (n > 0 and n == #v) then
        for i = 1, #v do
            buf[i] = encode_fallback(v[i], depth + 1)
        end
        return "[" .. concat(buf, ",") .. "]"
    end
    for k, x in pairs(v) do
        if type(k) ~= "string" and type(k) ~= "number" then
            error("cannot encode a table key of type " .. type(k))
        end
        buf[#buf + 1] = json.encode(tostring(k)) .. ":" .. encode_fallback(x, depth + 1)
    end
    return "{" .. concat(buf, ",") .. "}"
end

local function encode(value)
    if NATIVE then
        return json.encode(value)
    end
    return encode_fallback(value, 1)
end

-- Header names already found valid: nearly all are constants in the code, so a request
-- pays no pattern match (which the JIT does not compile) for them. Bounded, in case a
-- script makes names from input.
local valid_names, valid_count, VALID_NAMES_MAX = {}, 0, 256

local function check_header(name, value, level)
    if not valid_names[name] then
        if type(name) ~= "string" or not find(name, "^[%w!#$%%&'*+%-.^_`|~]+$") then
            error("bad 'name' argument", level)
        elseif valid_count < VALID_NAMES_MAX then
            valid_names[name], valid_count = true, valid_count + 1
        end
    end
    if type(value) == "number" then
        value = tostring(value)
    elseif type(value) ~= "string" or find(value, "\r", 1, true) or find(value, "\n", 1, true) or
        find(value, "\0", 1, true) then
        error("bad 'value' argument", level)
    end
    return value
end

-- Appends a header (kept in order; a name may repeat). Returns the response. A Retry-After
-- given here replaces the default one a 503 got when it was made.
function methods:header(name, value)
    value = check_header(name, value, 3)
    local headers = self.headers
    if #name == 11 and lower(name) == "retry-after" then -- no lower-cased copy of other names
        for i = #headers, 1, -1 do
            if headers[i].default then
                table.remove(headers, i)
            end
        end
    end
    headers[#headers + 1] = { name, value }
    return self
end

-- The default content-type pairs, one per type (the few this module names), shared by
-- every response: a response allocates no pair for its content type.
local content_type_pairs = {}

-- headers: nil, a list of { name, value } pairs, or a map name -> value (sorted by
-- name). A content-type given here replaces the default one.
local function new(status, content_type, body, headers)
    if type(status) ~= "number" or status % 1 ~= 0 or status < 100 or status > 599 then
        error("bad 'status' argument", 3)
    end
    -- Room for the headers the default filters add (request_id, headers): no growing copies.
    local list = new_table(6, 0)
    local ct_pair = content_type_pairs[content_type]
    if not ct_pair then
        ct_pair = { "content-type", content_type }
        content_type_pairs[content_type] = ct_pair
    end
    list[1] = ct_pair
    if headers ~= nil and type(headers) ~= "table" then
        error("bad 'headers' argument", 3)
    elseif headers and headers[1] == nil then
        local names = {}
        for name in pairs(headers) do
            names[#names + 1] = name
        end
        sort(names)
        for i = 1, #names do
            list[#list + 1] = { names[i], check_header(names[i], headers[names[i]], 4) }
        end
    elseif headers then
        for i = 1, #headers do
            local pair = headers[i]
            list[#list + 1] = { pair[1], check_header(pair[1], pair[2], 4) }
        end
    end
    local retry_after = false
    for i = #list, 2, -1 do
        local name = lower(list[i][1])
        if name == "content-type" then
            list[1] = { "content-type", list[i][2] } -- the default pair is shared: replaced
            table.remove(list, i)
        elseif name == "retry-after" then
            retry_after = true
        end
    end
    -- Every 503 (a database or a downstream unavailable) tells the client when to retry.
    if status == 503 and not retry_after then
        list[#list + 1] = { "retry-after", RETRY_AFTER_SECONDS, default = true }
    end
    -- Not a tail call: the JIT cannot compile returning from a fast function called so.
    local resp = setmetatable({ status = status, headers = list, body = body }, mt)
    return resp
end

-- A JSON response; raises if `value` cannot be encoded (a function, NaN, a cycle...).
function _M.json(status, value, headers)
    local ok, body = pcall(encode, value)
    if not ok then
        error("bad 'value' argument: " .. tostring(body), 2)
    end
    return new(status, "application/json", body, headers)
end

-- A JSON response whose body, or part of it, is JSON text built elsewhere (an order's
-- representation, built by PostgreSQL): spliced in as it is, never decoded and re-encoded.
-- The text must be JSON; it is not checked here.
function _M.json_text(status, text, headers)
    if type(text) ~= "string" then
        error("bad 'text' argument", 2)
    end
    return new(status, "application/json", text, headers)
end

-- `object` (a table that encodes as a JSON object) with one more field, `name`, whose value is
-- `text`, a JSON text built elsewhere (a page of orders, built by PostgreSQL).
function _M.json_with_field(status, object, name, text, headers)
    if type(object) ~= "table" or object[name] ~= nil then
        error("bad 'object' argument", 2)
    elseif type(name) ~= "string" then
        error("bad 'name' argument", 2)
    elseif type(text) ~= "string" then
        error("bad 'text' argument", 2)
    end
    local ok, rest = pcall(encode, object)
    if not ok then
        error("bad 'object' argument: " .. tostring(rest), 2)
    elseif sub(rest, 1, 1) ~= "{" then
        error("bad 'object' argument: not a JSON object", 2)
    end
    local body = "{" .. json.encode(name) .. ":" .. text
        .. (rest == "{}" and "}" or "," .. sub(rest, 2))
    return new(status, "application/json", body, headers)
end

function _M.html(status, body, headers)
    if type(body) ~= "string" then
        error("bad 'body' argument", 2)
    end
    return new(status, "text/html; charset=utf-8", body, headers)
end

function _M.text(status, body, headers)
    if type(body) ~= "string" then
        error("bad 'body' argument", 2)
    end
    return new(status, "text/plain; charset=utf-8", body, headers)
end

-- { "error": message, "details": details }; details is left out when nil.
function _M.error(status, message, details)
    if type(message) ~= "string" then
        error("bad 'message' argument", 2)
    end
    return _M.json(status, { error = message, details = details })
end

return _M
