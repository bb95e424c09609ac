-- http.lua - downstream HTTP calls from a request or a job, without blocking the worker.
--
--   local res, err = http.request{ method = "POST", url = "http://inventory/reserve/",
--                                  headers = { ["Idempotency-Key"] = key }, json = { ... } }
--   res = { status = 201, body = "...", json = <decoded body or nil> }
--   err = { kind = "unavailable" | "timeout", maybe_sent = bool, message = "..." } when no
--         answer came back:
--     "unavailable": the request provably never reached the other side (no connection could
--                    be made); maybe_sent is false, so it is safe to treat as not done;
--     "timeout":     it may have been processed (DOWNSTREAM_TIMEOUT_MS passed, or the
--                    connection broke after the request was written); maybe_sent tells
--                    whether it had been written at all.
--
-- The whole call, including the core's one immediate retry of a kept-alive connection the
-- server had closed, is bounded by DOWNSTREAM_TIMEOUT_MS: callers do not retry inline.

local ffi = require("ffi")
local cjson = require("cjson.safe")
local C = require("lib.core")
local async = require("lib.async")

local OK, ETIMEDOUT = C.OS_OK, C.OS_ETIMEDOUT
local len_out = ffi.new("size_t[1]")

local _M = {}

local error_mt = { __tostring = function(e) return e.message end }

local function header_lines(headers)
    local lines = {}
    for name, value in pairs(headers or {}) do
        value = tostring(value)
        if name:find("[^%w%-]") or value:find("[\r\n%z]") then
            error("bad header " .. name, 3)
        end
        lines[#lines + 1] = name .. ": " .. value .. "\r\n"
    end
    table.sort(lines)
    return table.concat(lines)
end

function _M.request(opts)
    if type(opts) ~= "table" or type(opts.url) ~= "string" then
        error("bad 'opts' argument", 2)
    end
    local body = opts.body or ""
    local headers = opts.headers or {}
    if opts.json ~= nil then
        body = assert(cjson.encode(opts.json))
        headers["Content-Type"] = "application/json"
    end
    local lines = header_lines(headers)
    local task = async.task()
    local rc = async.wait(C.os_http_request(task, opts.method or "GET", opts.url, #opts.url, lines, #lines, body, #body))
    if rc ~= OK then
        return nil, setmetatable({ kind = rc == ETIMEDOUT and "timeout" or "unavailable",
                                   maybe_sent = C.os_http_maybe_sent(task) ~= 0,
                                   message = async.error_message(task) }, error_mt)
    end
    local p = C.os_http_body(task, len_out)
    local res = { status = C.os_http_status(task), body = ffi.string(p, len_out[0]) }
    res.json = cjson.decode(res.body)
    return res
end

return _M
