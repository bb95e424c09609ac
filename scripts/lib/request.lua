-- request.lua - the request object handlers and filters receive.
--
-- Built by the host from plain fields; the query string and JSON body are parsed
-- on first use and cached. Nothing here raises on bad client input: json() returns
-- nil, err instead. JSON nested deeper than MAX_JSON_DEPTH is refused, and so are
-- duplicate keys and anything after the top-level value (lib.json_strict).
-- json_body() also insists on Content-Type: application/json (a cross-site HTML form
-- cannot send that), answering which status to give: 415 or 400.

local cjson_safe = require("cjson.safe")
local json_strict = require("lib.json_strict")
local query = require("lib.query")

local find = string.find
local lower = string.lower
local type = type

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
    if fields.headers ~= nil and type(fields.headers) ~= "table" then
        error("bad 'fields.headers' argument", 3)
    elseif fields.params ~= nil and type(fields.params) ~= "table" then
        error("bad 'fields.params' argument", 3)
    end
end

-- fields: method, path, query_string, headers (lower-cased name -> value), body,
-- params, request_id, remote_addr.
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
        ctx = {},
        _query = NOT_PARSED,
        _json = NOT_PARSED,
        _json_err = nil,
        _before_ran = 0, -- lib.host's: how many filters' before() steps have started
    }, mt)
end

-- new(fields) made of fields itself, which must hold nothing else: lib.host's table from the
-- C core (made with room for these keys), so a request costs one table less.
function _M.adopt(fields)
    check_fields(fields)
    fields.query_string = fields.query_string or ""
    fields.headers = fields.headers or {}
    fields.body = fields.body or ""
    fields.params = fields.params or {}
    fields.ctx = {}
    fields._query = NOT_PARSED
    fields._json = NOT_PARSED
    fields._before_ran = 0
    return setmetatable(fields, mt)
end

-- Case-insensitive header lookup; nil when absent.
function _M:header(name)
    if type(name) ~= "string" then
        error("bad 'name' argument", 2)
    end
    local headers = self.headers
    return headers[name] or headers[lower(name)]
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
    local value = self._json
    if value ~= NOT_PARSED then
        return value, self._json_err
    end
    local body, err = self.body, nil
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
