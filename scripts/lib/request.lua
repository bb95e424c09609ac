-- request.lua - the request object handlers and filters receive.
--
-- Built from plain fields (new), or by the host around the C core's request (live): then
-- the headers, query string, body and peer address are read from h2o when first asked
-- for. The query string and JSON body are parsed on first use and cached. Nothing here raises on bad client input: json() returns
-- nil, err instead. JSON nested deeper than MAX_JSON_DEPTH is refused, and so are
-- duplicate keys and anything after the top-level value (lib.json_strict).
-- json_body() also insists on Content-Type: application/json (a cross-site HTML form
-- cannot send that), answering which status to give: 415 or 400.

local cjson_safe = require("cjson.safe")
local ffi = require("ffi")
local C = require("lib.core")
local json_strict = require("lib.json_strict")
local query = require("lib.query")

local find = string.find
local lower = string.lower
local rawget, rawset, setmetatable, tonumber, type = rawget, rawset, setmetatable, tonumber, type
local cast, ffi_string = ffi.cast, ffi.string

local MAX_JSON_DEPTH = 64

-- A private decoder, so settings made elsewhere on cjson.safe cannot leak in.
local json = cjson_safe.new()
json.decode_max_depth(MAX_JSON_DEPTH)
json.decode_invalid_numbers(false) -- strict JSON: no NaN, Infinity or hex numbers

local NOT_PARSED = {} -- sentinel: a cached value may itself be nil or false

local _M = { MAX_JSON_DEPTH = MAX_JSON_DEPTH }
local mt = { __index = _M }

local function check_string(value, name, optional)
    if type(value) ~= "string" and not (optional and value == nil) then
        error("bad '" .. name .. "' argument", 4)
    end
end

local function check_fields(fields)
    if type(fields) ~= "table" then
        error("bad 'fields' argument", 3)
    end
    check_string(fields.method, "fields.method")
    check_string(fields.path, "fields.path")
    check_string(fields.query_string, "fields.query_string", true)
    check_string(fields.body, "fields.body", true)
    check_string(fields.request_id, "fields.request_id", true)
    check_string(fields.remote_addr, "fields.remote_addr", true)
    if fields.started_ms ~= nil and type(fields.started_ms) ~= "number" then
        error("bad 'fields.started_ms' argument", 3)
    elseif fields.headers ~= nil and type(fields.headers) ~= "table" then
        error("bad 'fields.headers' argument", 3)
    elseif fields.params ~= nil and type(fields.params) ~= "table" then
        error("bad 'fields.params' argument", 3)
    end
end

-- fields: method, path, query_string, headers (lower-cased name -> value), body,
-- params, request_id, remote_addr, started_ms (when the request arrived, on the clock of
-- os_monotonic_ms; now when absent).
function _M.new(fields)
    check_fields(fields)
    return setmetatable({
        method = fields.method,
        path = fields.path,
        query_string = fields.query_string or "",
        headers = fields.headers or {},
        body = fields.body or "",
        params = fields.params or {},
        request_id = fields.request_id,
        remote_addr = fields.remote_addr,
        started_ms = fields.started_ms or tonumber(C.os_monotonic_ms()),
        ctx = {},
        _query = NOT_PARSED,
        _json = NOT_PARSED,
        _json_err = nil,
        _before_ran = 0, -- lib.host's: how many filters' before() steps have started
    }, mt)
end

-- ---- a request the C core answers: read from h2o on first use ----

local TASK_T = ffi.typeof("os_task_t *")
local QUERY, BODY, PEER = C.OS_REQUEST_QUERY, C.OS_REQUEST_BODY, C.OS_REQUEST_PEER
-- Out parameters: filled by one call and read before the next (no yield in between).
local name_out, name_len_out = ffi.new("const char *[1]"), ffi.new("size_t[1]")
local value_out, value_len_out = ffi.new("const char *[1]"), ffi.new("size_t[1]")

-- A part of the request as a string; nil when absent, when the client has gone, or once the
-- response is sent (lib.host clears _task: the cast of nil is NULL, which C answers OS_ERR).
local function part(req, which)
    if C.os_request_part(cast(TASK_T, req._task), which, value_out, value_len_out) ~= 1 then
        return nil
    end
    return ffi_string(value_out[0], tonumber(value_len_out[0]))
end

-- Every header: lower-cased name -> value, repeated ones joined with ", " (RFC 9110 5.3).
local function all_headers(req)
    local headers, task, i = {}, cast(TASK_T, req._task), 0
    while C.os_request_header_at(task, i, name_out, name_len_out, value_out, value_len_out) == 1 do
        local name = ffi_string(name_out[0], tonumber(name_len_out[0]))
        local value = ffi_string(value_out[0], tonumber(value_len_out[0]))
        local seen = headers[name]
        headers[name] = seen and seen .. ", " .. value or value
        i = i + 1
    end
    return headers
end

local lazy = {
    headers = all_headers,
    query_string = function(req) return part(req, QUERY) or "" end,
    body = function(req) return part(req, BODY) or "" end,
    remote_addr = function(req) return part(req, PEER) end,
    params = function() return {} end,
    ctx = function() return {} end,
}

local live_mt = {
    __index = function(req, key)
        local method = _M[key]
        if method ~= nil then
            return method
        end
        local make = lazy[key]
        if make then
            local value = make(req)
            rawset(req, key, value)
            return value
        elseif key == "_query" or key == "_json" then
            return NOT_PARSED -- one key less to store per request
        end
    end,
}

-- The request for the C core's task at task_addr (lib.host), which arrived at started_ms (now
-- when nil). A method other than GET and HEAD keeps running when its client goes away
-- (core/luahost.c), after which h2o has nothing left to read: its request is read whole here.
function _M.live(task_addr, method, path, request_id, started_ms)
    -- A constructor: the table is a copy of one the compiler built with every key already in
    -- place (params with no value yet, so that __index still makes it): filling it hashes no
    -- key and never grows it. Seven keys in eight slots: the one left takes the principal
    -- (filters/auth.lua) or ctx without growing the table.
    local req = { method = method, path = path, request_id = request_id, _task = task_addr, _before_ran = 0,
                  started_ms = started_ms or tonumber(C.os_monotonic_ms()), params = nil }
    setmetatable(req, live_mt)
    if method ~= "GET" and method ~= "HEAD" then
        req.headers, req.body, req.query_string, req.remote_addr = all_headers(req), part(req, BODY) or "",
            part(req, QUERY) or "", part(req, PEER)
    end
    return req
end

-- Case-insensitive header lookup; nil when absent (or, for a request the C core answers,
-- once its client has gone).
function _M:header(name)
    if type(name) ~= "string" then
        error("bad 'name' argument", 2)
    end
    local headers = rawget(self, "headers")
    if headers then
        return headers[name] or headers[lower(name)]
    end
    if C.os_request_header(cast(TASK_T, self._task), name, #name, value_out, value_len_out) ~= 1 then
        return nil
    end
    return ffi_string(value_out[0], tonumber(value_len_out[0]))
end

-- The parsed query string: name -> list of values (parsed once, then cached).
function _M:query()
    local q = self._query
    if q == NOT_PARSED then
        q = query.parse(self.query_string)
        self._query = q
    end
    return q
end

-- The first value of query argument `name`, or nil.
function _M:arg(name)
    if type(name) ~= "string" then
        error("bad 'name' argument", 2)
    end
    local list = self:query()[name]
    return list and list[1]
end

-- Every value of query argument `name`, in order; an empty table when absent.
function _M:args(name)
    if type(name) ~= "string" then
        error("bad 'name' argument", 2)
    end
    return self:query()[name] or {}
end

-- The decoded JSON body (cached), or nil, err with a short message for the client.
function _M:json()
    local value, err = self._json, self._json_err
    if value ~= NOT_PARSED or err ~= nil then
        return value, err
    end
    local body = self.body
    if not find(body, "%S") then
        value, err = nil, "request body is empty"
    else
        value, err = json.decode(body)
        if err and find(err, "too many nested", 1, true) then
            value, err = nil, "request body is nested deeper than " .. MAX_JSON_DEPTH .. " levels"
        elseif err then
            value, err = nil, "request body is not valid JSON: " .. err
        else
            local ok, serr = json_strict.check(body)
            if not ok then
                value, err = nil, "request body is not valid JSON: " .. serr
            end
        end
    end
    self._json, self._json_err = value, err
    return value, err
end

-- Whether the Content-Type is application/json (parameters: at most charset=utf-8).
function _M:is_json()
    local ct = self:header("content-type")
    if type(ct) ~= "string" then
        return false
    end
    ct = lower(ct)
    local media, params = ct:match("^%s*([^;%s]+)%s*(.*)$")
    if media ~= "application/json" then
        return false
    end
    return params == "" or params:match("^;%s*charset%s*=%s*\"?utf%-8\"?%s*$") ~= nil
end

-- The decoded JSON body of a request that must carry one: value, or nil, err, status
-- (415 without Content-Type: application/json, else 400).
function _M:json_body()
    if not self:is_json() then
        return nil, "Content-Type must be application/json", 415
    end
    local value, err = self:json()
    if err then
        return nil, err, 400
    end
    return value
end

return _M
