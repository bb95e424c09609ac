-- access_log filter: one info line per request (method, path, status, duration, request id,
-- and who: the principal's sub and role when auth let the request in), written once the
-- response is final, so on-call can follow any request. LOG_LEVEL=warn silences it;
-- requests slower than slow_ms are logged as warnings. Never logs headers or tokens.
-- The C core formats the line and keeps each worker's info lines in a buffer it writes whole
-- (ACCESS_LOG_BUFFER_BYTES, at the latest after ACCESS_LOG_FLUSH_MS): no table, no JSON
-- encoding and no write(2) per request. A slow request's warning is written at once. The
-- duration counts from the request's arrival (req.started_ms, taken by the C core), so the
-- filter has no before() step and keeps nothing in req.ctx (a table less per request).

local C = require("lib.core")

local tonumber, tostring, type = tonumber, tostring, type

local INFO, WARN = 1, 2 -- the C core's levels (core/log.h)

local _M = {
    PRIORITY = 200000, -- outermost: its log() sees the response every other filter made
    DESCRIPTION = "one log line per request; slow ones as warnings",
    schema = {
        slow_ms = { type = "number", default = 1000, min = 0, description = "log requests slower than this as warn" },
    },
}

-- A text field as the C core takes it: nil stays nil (left out), anything else a string.
local function text(v)
    if v == nil or type(v) == "string" then
        return v
    end
    return tostring(v)
end

function _M.log(req, resp, conf)
    local elapsed = tonumber(C.os_monotonic_ms()) - req.started_ms
    local level, msg = INFO, "request"
    if elapsed >= conf.slow_ms then
        level, msg = WARN, "slow request"
    end
    if C.os_log_enabled(level) == 0 then
        return
    end
    local method, path, request_id = text(req.method), text(req.path), text(req.request_id)
    local sub, role
    local principal = req.principal
    if principal then
        sub, role = text(principal.sub), text(principal.role)
    end
    C.os_log_request(level, msg, #msg, method, method and #method or 0, path, path and #path or 0, resp.status,
                     elapsed, request_id, request_id and #request_id or 0, sub, sub and #sub or 0, role,
                     role and #role or 0)
end

return _M
